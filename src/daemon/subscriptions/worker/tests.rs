//! The worker against a fake Graph, on tokio's paused clock.

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use super::*;
use crate::daemon::subscriptions::calls::{CallFuture, Listed};
use crate::daemon::tasks::Workers;
use crate::graph::clock::{Clock, Sleep};
use crate::graph::poller::{PollChange, PollUsers, poll_changes, poll_users};

/// tokio's paused time, with a wall clock that follows it.
#[derive(Debug)]
struct PausedWall {
    origin: tokio::time::Instant,
    wall: DateTime<Utc>,
}

impl Clock for PausedWall {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
    fn sleep_until(&self, deadline: Duration) -> Sleep {
        Box::pin(tokio::time::sleep_until(self.origin + deadline))
    }
    fn wall(&self) -> DateTime<Utc> {
        self.wall + chrono::Duration::from_std(self.now()).unwrap()
    }
}

#[derive(Default)]
struct Fake {
    log: Mutex<Vec<String>>,
    subs: Mutex<BTreeMap<String, Listed>>,
    /// Creates refused as conflicts before one goes through.
    conflicts: Mutex<u32>,
    next: Mutex<u32>,
    /// How long a list takes (Graph slow at start).
    list_delay: Mutex<Duration>,
}

const URL: &str = "https://presence.example/graph/notifications";

impl Fake {
    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl SubscriptionCalls for Arc<Fake> {
    fn create(
        &self,
        account: AccountId,
        members: Vec<UserId>,
        expires_at: Timestamp,
    ) -> CallFuture<(String, Timestamp)> {
        let fake = Arc::clone(self);
        Box::pin(async move {
            fake.log
                .lock()
                .unwrap()
                .push(format!("create {account} {}", members.len()));
            {
                let mut c = fake.conflicts.lock().unwrap();
                if *c > 0 {
                    *c -= 1;
                    return Err(CallFailure::Conflict);
                }
            }
            let id = {
                let mut n = fake.next.lock().unwrap();
                *n += 1;
                format!("sub-{n}")
            };
            fake.subs.lock().unwrap().insert(
                id.clone(),
                Listed {
                    id: id.clone(),
                    members,
                    expires_at,
                    notification_url: URL.into(),
                    certificate_id: None,
                },
            );
            Ok((id, expires_at))
        })
    }
    fn renew(&self, _: AccountId, id: String, at: Timestamp) -> CallFuture<Timestamp> {
        let fake = Arc::clone(self);
        Box::pin(async move {
            fake.log.lock().unwrap().push(format!("renew {id}"));
            match fake.subs.lock().unwrap().get_mut(&id) {
                Some(s) => {
                    s.expires_at = at;
                    Ok(at)
                }
                None => Err(CallFailure::Gone),
            }
        })
    }
    fn reauthorize(&self, _: AccountId, id: String) -> CallFuture<()> {
        let fake = Arc::clone(self);
        Box::pin(async move {
            fake.log.lock().unwrap().push(format!("reauthorize {id}"));
            Ok(())
        })
    }
    fn delete(&self, _: AccountId, id: String) -> CallFuture<()> {
        let fake = Arc::clone(self);
        Box::pin(async move {
            fake.log.lock().unwrap().push(format!("delete {id}"));
            match fake.subs.lock().unwrap().remove(&id) {
                Some(_) => Ok(()),
                None => Err(CallFailure::Gone),
            }
        })
    }
    fn list(&self, account: AccountId) -> CallFuture<Vec<Listed>> {
        let fake = Arc::clone(self);
        Box::pin(async move {
            fake.log.lock().unwrap().push(format!("list {account}"));
            let delay = *fake.list_delay.lock().unwrap();
            tokio::time::sleep(delay).await;
            Ok(fake.subs.lock().unwrap().values().cloned().collect())
        })
    }
    fn notification_url(&self) -> &str {
        URL
    }

    fn certificate_id(&self) -> Option<&str> {
        None
    }
}

struct Rig {
    fake: Arc<Fake>,
    agents: PollUsersSender,
    agent_poller: PollUsers,
    reconcile_poller: PollUsers,
    health: watch::Sender<BTreeMap<AccountId, bool>>,
    lifecycle: mpsc::Sender<(String, Lifecycle)>,
    read_now: mpsc::UnboundedReceiver<Vec<UserId>>,
    status: watch::Receiver<SubscriptionsStatus>,
    workers: Workers,
    _directory: PollUsersSender,
    _directory_poller: PollUsers,
}

fn account(n: usize) -> AccountId {
    AccountId::from(format!("svc-{n}@contoso.com"))
}

fn rig(fake: Arc<Fake>, accounts: usize) -> Rig {
    let (agents, agents_rx) = poll_changes();
    let (directory, directory_rx) = poll_changes();
    let (agent_tx, agent_poller) = poll_users(Vec::new());
    let (dir_tx, directory_poller) = poll_users(Vec::new());
    let (rec_tx, reconcile_poller) = poll_users(Vec::new());
    let list: Vec<AccountId> = (0..accounts).map(account).collect();
    let (health, health_rx) = watch::channel(list.iter().map(|a| (a.clone(), true)).collect());
    let (lifecycle, lifecycle_rx) = mpsc::channel(16);
    let (read_now_tx, read_now) = mpsc::unbounded_channel();
    let (status_tx, status) = watch::channel(SubscriptionsStatus::default());
    let worker = SubscriptionWorker {
        calls: Arc::new(Arc::clone(&fake)),
        settings: PlannerSettings::default(),
        accounts: list,
        health: health_rx,
        agents: agents_rx,
        directory: directory_rx,
        pollers: PollerLists {
            agent: agent_tx,
            directory: dir_tx,
            reconcile: rec_tx,
        },
        lifecycle: lifecycle_rx,
        read_now: read_now_tx,
        status: status_tx,
        clock: Arc::new(PausedWall {
            origin: tokio::time::Instant::now(),
            wall: Utc::now(),
        }),
    };
    let mut workers = Workers::new();
    workers.spawn(crate::daemon::workers::SubscriptionsWorker(worker));
    Rig {
        fake,
        agents,
        agent_poller,
        reconcile_poller,
        health,
        lifecycle,
        read_now,
        status,
        workers,
        _directory: directory,
        _directory_poller: directory_poller,
    }
}

fn link(rig: &Rig, n: usize) {
    rig.agents.send(
        (0..n)
            .map(|i| PollChange::Add(format!("agent-{i:04}").into()))
            .collect(),
    );
}

async fn settle() {
    tokio::time::sleep(Duration::from_secs(2)).await;
}

#[tokio::test(start_paused = true)]
async fn linked_agents_are_subscribed_and_move_to_reconciliation() {
    let mut rig = rig(Arc::new(Fake::default()), 2);
    link(&rig, 1_000);
    settle().await;
    rig.agent_poller.refresh();
    rig.reconcile_poller.refresh();
    assert_eq!(rig.reconcile_poller.len(), 1_000);
    assert_eq!(
        rig.agent_poller.len(),
        0,
        "covered agents leave the fast poller"
    );
    let log = rig.fake.log();
    assert_eq!(log.iter().filter(|l| l.starts_with("create")).count(), 2);
    let status = rig.status.borrow_and_update().clone();
    assert_eq!((status.subscribed, status.polled), (1_000, 0));
    assert_eq!(status.calls.get(&("create", "ok")), Some(&2));

    // An account's token fails: its users are polled fast again at once.
    let mut health = rig.health.borrow().clone();
    health.insert(account(0), false);
    rig.health.send_replace(health);
    tokio::time::sleep(Duration::from_millis(10)).await;
    rig.agent_poller.refresh();
    rig.reconcile_poller.refresh();
    assert_eq!(rig.agent_poller.len(), 500);
    assert_eq!(rig.reconcile_poller.len(), 500);
    rig.workers.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn subscriptions_are_renewed_for_hours_without_a_gap() {
    let mut rig = rig(Arc::new(Fake::default()), 1);
    link(&rig, 10);
    settle().await;
    for _ in 0..(4 * 60) {
        tokio::time::sleep(Duration::from_secs(60)).await;
        rig.reconcile_poller.refresh();
        assert_eq!(rig.reconcile_poller.len(), 10);
    }
    let log = rig.fake.log();
    assert_eq!(log.iter().filter(|l| l.starts_with("create")).count(), 1);
    let renewals = log.iter().filter(|l| l.starts_with("renew")).count();
    assert!(
        (4..=6).contains(&renewals),
        "{renewals} renewals in 4 hours"
    );
    rig.workers.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn lifecycle_events_are_acted_on() {
    let mut rig = rig(Arc::new(Fake::default()), 1);
    link(&rig, 3);
    settle().await;
    let id = rig.fake.subs.lock().unwrap().keys().next().unwrap().clone();

    rig.lifecycle
        .send((id.clone(), Lifecycle::Missed))
        .await
        .unwrap();
    let users = rig.read_now.recv().await.unwrap();
    assert_eq!(users.len(), 3);

    rig.lifecycle
        .send((id.clone(), Lifecycle::ReauthorizationRequired))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(rig.fake.log().contains(&format!("reauthorize {id}")));

    rig.fake.subs.lock().unwrap().clear();
    rig.lifecycle
        .send((id.clone(), Lifecycle::SubscriptionRemoved))
        .await
        .unwrap();
    assert_eq!(rig.read_now.recv().await.unwrap().len(), 3);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(rig.fake.subs.lock().unwrap().len(), 1, "created anew");
    rig.reconcile_poller.refresh();
    assert_eq!(rig.reconcile_poller.len(), 3);
    rig.workers.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn a_subscription_from_before_a_restart_is_kept_and_strays_deleted() {
    let fake = Arc::new(Fake::default());
    let far = Timestamp::from_utc(Utc::now()) + Duration::from_secs(3_000);
    for (id, url, cert) in [
        ("old-rich", URL, Some("an-old-certificate")),
        ("old-1", URL, None),
        ("old-2", URL, None),
        ("theirs", "https://other.example/", None),
    ] {
        fake.subs.lock().unwrap().insert(
            id.into(),
            Listed {
                id: id.into(),
                members: vec![UserId::from("agent-0000")],
                expires_at: far,
                notification_url: url.into(),
                certificate_id: cert.map(str::to_string),
            },
        );
    }
    let mut rig = rig(Arc::clone(&fake), 1);
    link(&rig, 1);
    settle().await;
    let log = fake.log();
    assert!(!log.iter().any(|l| l.starts_with("create")), "{log:?}");
    assert!(log.contains(&"delete old-2".to_string()), "{log:?}");
    assert!(
        log.contains(&"delete old-rich".to_string()),
        "made for another certificate: {log:?}"
    );
    assert!(fake.subs.lock().unwrap().contains_key("old-1"));
    assert!(fake.subs.lock().unwrap().contains_key("theirs"));
    rig.reconcile_poller.refresh();
    assert_eq!(rig.reconcile_poller.len(), 1);
    rig.workers.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn a_conflicting_create_clears_ours_and_tries_again() {
    let fake = Arc::new(Fake::default());
    *fake.conflicts.lock().unwrap() = 1;
    let mut rig = rig(Arc::clone(&fake), 1);
    link(&rig, 2);
    settle().await;
    let log = fake.log();
    assert_eq!(
        log.iter().filter(|l| l.starts_with("create")).count(),
        2,
        "{log:?}"
    );
    rig.reconcile_poller.refresh();
    assert_eq!(rig.reconcile_poller.len(), 2);
    rig.workers.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn the_pollers_are_fed_while_graph_is_slow_to_list_at_start() {
    let fake = Arc::new(Fake::default());
    *fake.list_delay.lock().unwrap() = Duration::from_secs(25);
    let mut rig = rig(Arc::clone(&fake), 1);
    link(&rig, 5);
    tokio::time::sleep(Duration::from_secs(2)).await;
    rig.agent_poller.refresh();
    assert_eq!(rig.agent_poller.len(), 5, "polled while the list is out");
    assert!(!fake.log().iter().any(|l| l.starts_with("create")));
    tokio::time::sleep(Duration::from_secs(30)).await;
    rig.agent_poller.refresh();
    rig.reconcile_poller.refresh();
    assert_eq!(
        rig.reconcile_poller.len(),
        5,
        "covered once listed and created"
    );
    assert_eq!(rig.agent_poller.len(), 0);
    rig.workers.shutdown(Duration::from_secs(5)).await;
}
