//! The loop's steps driven directly: a memory store, a clock moved by
//! hand, no daemon, no Graph. Each test hands a step its inputs and looks
//! at what the step replied, committed and sent out.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::config::RoutingConfig;
use crate::events::{Event, kind};
use crate::graph::PresenceUpdate;
use crate::graph::model::{GraphPresence, User};
use crate::graph::poller::{PollChange, PollUsers, poll_users};
use crate::mapping::parse_profile;
use crate::metrics::{DaemonMetrics, Registry};
use crate::presence::Presence;
use crate::store::{Loaded, MemoryStore, Store};
use crate::sync::{Settings, WriteOutcome};
use crate::time::Timestamp;

use super::super::directory::DirectoryUpdate;
use super::super::mappings::MappingSet;
use super::super::writer::{WriteJob, WriteResult};
use super::step::Input;
use super::*;
use crate::config::DirectoryScope;
use crate::directory::DirectoryView;

const PROFILE: &str = r#"
debounce = "2s"
[statuses]
Available = { routable = true, teams = "clear" }
Busy = { teams = "Busy/InACall" }
Meeting = { teams = "clear" }

[[teams_to_cc]]
name = "meeting"
when = ["Busy/InAMeeting"]
set = "Meeting"
replaces = ["Available"]
restore = true
"#;

const USER_A: &str = "00000000-0000-0000-0000-0000000000a1";
const USER_B: &str = "00000000-0000-0000-0000-0000000000b2";
const START: Timestamp = Timestamp::from_secs(1_700_000_000);

/// A clock the test moves.
struct FakeClock(Mutex<Timestamp>);

impl FakeClock {
    fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *now = *now + by;
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct Harness {
    sync: SyncLoop<MemoryStore>,
    store: Arc<MemoryStore>,
    clock: Arc<FakeClock>,
    writes: mpsc::UnboundedReceiver<WriteJob>,
    live: broadcast::Receiver<Event>,
    /// The poller's list, as the loop's changes keep it.
    polled: PollUsers,
    /// The directory view the loop looks users up in.
    view: Arc<DirectoryView>,
}

/// A directory change as the directory task makes it: the view takes the
/// users, then the loop is told.
enum TestUpdate {
    Replace {
        users: Vec<User>,
        delta_link: Option<String>,
    },
    Changes {
        changed: Vec<User>,
        removed: Vec<String>,
        delta_link: String,
    },
}

fn test_view() -> Arc<DirectoryView> {
    Arc::new(DirectoryView::new(&DirectoryScope::All, None))
}

/// The one profile every test runs under.
fn test_mappings() -> MappingSet {
    let profile = match parse_profile("default", Path::new("default.toml"), PROFILE) {
        Ok(p) => p,
        Err(e) => panic!("the test profile does not load: {e:?}"),
    };
    MappingSet {
        profiles: vec![Arc::new(profile)],
        groups: HashMap::new(),
        files: Vec::new(),
    }
}

/// The loop's metrics, on a registry of their own.
fn test_metrics() -> DaemonMetrics {
    match DaemonMetrics::register(&Registry::new()) {
        Ok(m) => m,
        Err(e) => panic!("metrics: {e}"),
    }
}

impl Harness {
    async fn new() -> Self {
        let mappings = test_mappings();
        let metrics = test_metrics();
        let (events, live) = broadcast::channel(1024);
        let (writes_tx, writes) = mpsc::unbounded_channel();
        let (poll_tx, polled) = poll_users(Vec::new());
        let view = test_view();
        let out = Outputs {
            events,
            writes: writes_tx,
            poll_users: poll_tx,
            status: watch::channel(LoopStatus::default()).0,
            metrics,
            directory_view: Arc::clone(&view),
        };
        let store = Arc::new(MemoryStore::new());
        let clock = Arc::new(FakeClock(Mutex::new(START)));
        let sync = SyncLoop::restore_with_clock(
            Settings::default(),
            mappings,
            RoutingConfig::default(),
            Loaded::default(),
            Arc::clone(&store),
            out,
            Arc::clone(&clock) as Arc<dyn Clock>,
        );
        let Ok(mut sync) = sync else {
            panic!("the loop does not restore");
        };
        assert_eq!(sync.commit_initial().await, Ok(()));
        Harness {
            sync,
            store,
            clock,
            writes,
            live,
            polled,
            view,
        }
    }

    /// One step at the fake clock's time.
    async fn step(&mut self, inputs: Vec<Input>) -> Result<(), String> {
        let now = self.clock.now();
        self.sync.step(now, inputs).await
    }

    /// One step with one command; its reply.
    async fn ask<T>(&mut self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> T {
        let (tx, mut rx) = oneshot::channel();
        let _ = self.step(vec![Input::Command(make(tx))]).await;
        match rx.try_recv() {
            Ok(reply) => reply,
            Err(e) => panic!("no reply after the step: {e}"),
        }
    }

    async fn put(&mut self, id: &str, settings: AgentSettings) -> Result<AgentState, LoopError> {
        let id = id.to_string();
        self.ask(|reply| Command::PutAgent {
            id,
            settings,
            reply,
        })
        .await
    }

    async fn report(&mut self, id: &str, status: &str) -> Result<AgentState, LoopError> {
        let id = id.to_string();
        let report = CcStatusReport {
            status: status.to_string(),
            at: None,
        };
        self.ask(|reply| Command::ReportStatus { id, report, reply })
            .await
    }

    async fn directory(&mut self, update: TestUpdate) {
        let update = match update {
            TestUpdate::Replace { users, delta_link } => {
                self.view.replace(&users);
                DirectoryUpdate::Replace { delta_link }
            }
            TestUpdate::Changes {
                changed,
                removed,
                delta_link,
            } => {
                let (records, removed) = self.view.change(&changed, &removed);
                DirectoryUpdate::Changes {
                    changed: records.iter().map(|r| r.key().to_string()).collect(),
                    removed,
                    delta_link,
                }
            }
        };
        let step = self.step(vec![Input::Command(Command::Directory(update))]);
        assert_eq!(step.await, Ok(()));
    }

    /// Every committed event of a type, oldest first.
    fn committed(&self, kind: &str) -> Vec<Event> {
        match self.store.events_after(0, 10_000) {
            Ok(events) => events.into_iter().filter(|e| e.kind == kind).collect(),
            Err(e) => panic!("reading events: {e}"),
        }
    }

    /// The users the poller reads once it has applied what the loop sent,
    /// checked against the loop's own agents (linked, with a user).
    fn polled(&mut self) -> BTreeSet<String> {
        self.polled.refresh();
        let polled: BTreeSet<String> = self.polled.iter().map(str::to_string).collect();
        assert_eq!(polled.len(), self.polled.len(), "a user listed twice");
        let linked: BTreeSet<String> = self
            .sync
            .agents
            .values()
            .filter(|e| e.key.is_some())
            .filter_map(|e| e.teams_user_id().map(str::to_string))
            .collect();
        assert_eq!(polled, linked, "the poller's list is not the linked users");
        polled
    }

    fn outbox(&self) -> Vec<String> {
        match self.store.load() {
            Ok(loaded) => loaded.outbox.into_iter().map(|o| o.agent_id).collect(),
            Err(e) => panic!("loading: {e}"),
        }
    }
}

fn settings(teams_user: &str) -> AgentSettings {
    AgentSettings {
        teams_user: teams_user.to_string(),
        auto_link: false,
        display_name: None,
        groups: Vec::new(),
        skills: Default::default(),
        phone: None,
        profile: None,
        queues: Vec::new(),
        capacity: None,
    }
}

fn user(id: &str, upn: &str) -> User {
    User {
        id: id.to_string(),
        user_principal_name: Some(Some(upn.to_string())),
        ..User::default()
    }
}

fn presence_read(user_id: &str, availability: &str, activity: &str) -> Input {
    let presence = Presence::from_graph(availability, activity);
    Input::Presence(PresenceUpdate {
        user_id: user_id.to_string(),
        presence: presence.clone(),
        sequence_number: None,
        graph: GraphPresence {
            id: user_id.to_string(),
            presence,
            status_message: None,
            out_of_office: None,
            sequence_number: None,
            work_location: None,
        },
    })
}

#[tokio::test]
async fn a_reply_waits_until_its_batch_is_durable() {
    let mut h = Harness::new().await;
    let (tx, mut rx) = oneshot::channel();
    let now = h.clock.now();
    h.sync.input(
        now,
        Input::Command(Command::PutAgent {
            id: "a1".into(),
            settings: settings(USER_A),
            reply: tx,
        }),
    );
    // Decided, not committed: nobody hears of it yet.
    assert!(rx.try_recv().is_err());
    assert!(h.live.try_recv().is_err());
    assert!(matches!(h.store.load(), Ok(l) if l.agents.is_empty()));
    assert_eq!(h.sync.commit(now).await, Ok(()));
    let Ok(Ok(state)) = rx.try_recv() else {
        panic!("no reply after the commit");
    };
    assert!(state.linked());
    assert!(matches!(h.store.load(), Ok(l) if l.agents.len() == 1));
    assert_eq!(
        h.live.try_recv().map(|e| e.kind),
        Ok(kind::AGENT_UPDATED.to_string())
    );
}

#[tokio::test]
async fn a_failed_commit_fails_the_replies_and_sends_nothing() {
    let mut h = Harness::new().await;
    h.store.fail_commits(1);
    let (tx, mut rx) = oneshot::channel();
    let step = h.step(vec![Input::Command(Command::PutAgent {
        id: "a1".into(),
        settings: settings(USER_A),
        reply: tx,
    })]);
    assert!(step.await.is_err());
    assert!(matches!(rx.try_recv(), Ok(Err(LoopError::StoreFailed(_)))));
    assert!(h.live.try_recv().is_err(), "no event goes out");
    assert!(h.committed(kind::AGENT_UPDATED).is_empty());
}

#[tokio::test]
async fn every_time_a_step_stamps_is_the_time_it_started_with() {
    let mut h = Harness::new().await;
    h.clock.advance(Duration::from_secs(7));
    let now = h.clock.now();
    let Ok(state) = h.put("a1", settings(USER_A)).await else {
        panic!("the agent is refused");
    };
    assert_eq!(state.at, now);
    assert_eq!(state.record.updated_at, now.to_utc());
    let events = match h.store.events_after(0, 100) {
        Ok(e) => e,
        Err(e) => panic!("{e}"),
    };
    assert!(events.len() >= 2, "agent.updated and agent.linked at least");
    assert!(events.iter().all(|e| e.time == now.to_utc()));
}

#[tokio::test]
async fn a_put_with_an_object_id_links_at_once() {
    let mut h = Harness::new().await;
    let Ok(state) = h.put("a1", settings(USER_A)).await else {
        panic!("the agent is refused");
    };
    assert!(state.linked());
    assert_eq!(state.record.teams_user_id.as_deref(), Some(USER_A));
    assert_eq!(h.committed(kind::AGENT_LINKED).len(), 1);
}

#[tokio::test]
async fn a_put_with_a_upn_the_directory_knows_links_to_its_user() {
    let mut h = Harness::new().await;
    h.directory(TestUpdate::Replace {
        users: vec![user(USER_A, "ann@example.com")],
        delta_link: None,
    })
    .await;
    let Ok(state) = h.put("a1", settings("Ann@Example.com")).await else {
        panic!("the agent is refused");
    };
    assert!(state.linked());
    assert_eq!(state.record.teams_user_id.as_deref(), Some(USER_A));
    assert_eq!(state.record.upn.as_deref(), Some("ann@example.com"));
    // A UPN the loaded directory does not know is refused unless asked to wait.
    assert_eq!(
        h.put("a2", settings("bob@example.com")).await.err(),
        Some(LoopError::UnknownTeamsUser("bob@example.com".into()))
    );
}

#[tokio::test]
async fn an_agent_waiting_for_its_user_is_linked_when_the_directory_has_it() {
    let mut h = Harness::new().await;
    h.directory(TestUpdate::Replace {
        users: Vec::new(),
        delta_link: None,
    })
    .await;
    let waiting = AgentSettings {
        auto_link: true,
        ..settings("bob@example.com")
    };
    let Ok(state) = h.put("b1", waiting).await else {
        panic!("the agent is refused");
    };
    assert!(!state.linked());
    assert!(h.committed(kind::AGENT_LINKED).is_empty());
    h.directory(TestUpdate::Changes {
        changed: vec![user(USER_B, "bob@example.com")],
        removed: Vec::new(),
        delta_link: "next".into(),
    })
    .await;
    let id = "b1".to_string();
    let Ok(state) = h.ask(|reply| Command::Agent { id, reply }).await else {
        panic!("no agent");
    };
    assert!(state.linked());
    assert_eq!(state.record.teams_user_id.as_deref(), Some(USER_B));
    let linked = h.committed(kind::AGENT_LINKED);
    assert_eq!(linked.len(), 1);
    assert_eq!(linked[0].agent_id.as_deref(), Some("b1"));
}

#[tokio::test]
async fn a_teams_user_another_agent_holds_is_a_conflict() {
    let mut h = Harness::new().await;
    assert!(h.put("a1", settings(USER_A)).await.is_ok());
    // Named by its object id: refused, naming the holder.
    assert_eq!(
        h.put("a2", settings(USER_A)).await.err(),
        Some(LoopError::TeamsUserTaken {
            teams_user: USER_A.into(),
            holder: "a1".into(),
        })
    );
    // Waiting by UPN: taken in, not linked, told who holds the user.
    let waiting = AgentSettings {
        auto_link: true,
        ..settings("ann@example.com")
    };
    assert!(h.put("a3", waiting).await.is_ok());
    h.directory(TestUpdate::Replace {
        users: vec![user(USER_A, "ann@example.com")],
        delta_link: None,
    })
    .await;
    let id = "a3".to_string();
    let Ok(state) = h.ask(|reply| Command::Agent { id, reply }).await else {
        panic!("no agent");
    };
    let AgentSync::Unlinked { conflict, .. } = &state.sync else {
        panic!("a3 took a user another agent holds");
    };
    assert_eq!(conflict, &Some((USER_A.to_string(), "a1".to_string())));
    assert_eq!(h.committed(kind::AGENT_LINK_CONFLICT).len(), 1);
}

#[tokio::test]
async fn a_cc_status_goes_to_teams_through_the_outbox() {
    let mut h = Harness::new().await;
    assert!(h.put("a1", settings(USER_A)).await.is_ok());
    assert!(h.report("a1", "Busy").await.is_ok());
    assert!(h.writes.try_recv().is_err(), "held for the debounce");
    assert!(h.outbox().is_empty());
    h.clock.advance(Duration::from_secs(3));
    assert_eq!(h.step(Vec::new()).await, Ok(()));
    let Ok(job) = h.writes.try_recv() else {
        panic!("no Teams write after the debounce");
    };
    assert_eq!(job.agent_id, "a1");
    assert_eq!(job.user_id, USER_A);
    assert_eq!(h.outbox(), ["a1"]);
    let done = Input::WriteResult(WriteResult {
        job,
        outcome: WriteOutcome::Done,
    });
    assert_eq!(h.step(vec![done]).await, Ok(()));
    assert!(h.outbox().is_empty(), "the write result clears the outbox");
    assert_eq!(h.committed(kind::TEAMS_WRITTEN).len(), 1);
}

#[tokio::test]
async fn a_teams_meeting_requests_a_cc_status_once_the_debounce_has_passed() {
    let mut h = Harness::new().await;
    assert!(h.put("a1", settings(USER_A)).await.is_ok());
    assert!(h.report("a1", "Available").await.is_ok());
    h.clock.advance(Duration::from_secs(5));
    let read = presence_read(USER_A, "Busy", "InAMeeting");
    assert_eq!(h.step(vec![read]).await, Ok(()));
    assert_eq!(h.committed(kind::TEAMS_PRESENCE_CHANGED).len(), 1);
    assert!(h.committed(kind::CC_STATUS_REQUESTED).is_empty());
    h.clock.advance(Duration::from_secs(1));
    assert_eq!(h.step(Vec::new()).await, Ok(()));
    assert!(h.committed(kind::CC_STATUS_REQUESTED).is_empty());
    h.clock.advance(Duration::from_secs(2));
    assert_eq!(h.step(Vec::new()).await, Ok(()));
    let requested = h.committed(kind::CC_STATUS_REQUESTED);
    assert_eq!(requested.len(), 1);
    assert_eq!(requested[0].data["status"], "Meeting");
    assert_eq!(requested[0].time, h.clock.now().to_utc());
}

#[tokio::test]
async fn an_unknown_status_is_refused_with_a_suggestion_and_changes_nothing() {
    let mut h = Harness::new().await;
    assert!(h.put("a1", settings(USER_A)).await.is_ok());
    assert_eq!(
        h.report("a1", "Availabel").await.err(),
        Some(LoopError::UnknownStatus {
            status: "Availabel".into(),
            profile: "default".into(),
            suggestion: Some("Available".into()),
        })
    );
    assert!(h.committed(kind::CC_STATUS_REPORTED).is_empty());
    assert_eq!(
        h.report("nobody", "Available").await.err(),
        Some(LoopError::UnknownAgent("nobody".into()))
    );
}

#[tokio::test]
async fn the_routing_gate_follows_the_engine_view() {
    let mut h = Harness::new().await;
    let Ok(state) = h.put("a1", settings(USER_A)).await else {
        panic!("the agent is refused");
    };
    let gate = routing::gate_of(&state);
    assert!(gate.linked && !gate.cc_routable && !gate.teams_blocking);
    let Ok(state) = h.report("a1", "Available").await else {
        panic!("the status is refused");
    };
    assert!(routing::gate_of(&state).cc_routable);
    assert_eq!(h.committed(kind::AGENT_ROUTABLE_CHANGED).len(), 1);
}

#[tokio::test]
async fn an_agent_waiting_for_a_held_user_takes_it_once_let_go() {
    let mut h = Harness::new().await;
    h.directory(TestUpdate::Replace {
        users: vec![user(USER_B, "bob@example.com")],
        delta_link: None,
    })
    .await;
    assert!(h.put("a1", settings(USER_A)).await.is_ok());
    let waiting = |name: &str| AgentSettings {
        auto_link: true,
        ..settings(name)
    };
    // Waiting for Ann (by a name the directory does not give yet; a1 holds
    // her by her object id), and for a name nobody has.
    assert!(h.put("a2", waiting("ANN@example.com")).await.is_ok());
    assert!(h.put("a3", waiting("carl@example.com")).await.is_ok());
    h.directory(TestUpdate::Changes {
        changed: vec![user(USER_A, "ann@example.com")],
        removed: Vec::new(),
        delta_link: "d1".into(),
    })
    .await;
    // Ann comes into the directory: a2 is told a1 holds her.
    assert_eq!(h.committed(kind::AGENT_LINK_CONFLICT).len(), 1);
    // a1 moves to Bob: Ann is let go, and a2 takes her.
    assert!(h.put("a1", settings(USER_B)).await.is_ok());
    let linked: Vec<Option<String>> = h
        .committed(kind::AGENT_LINKED)
        .into_iter()
        .map(|e| e.agent_id)
        .collect();
    assert_eq!(
        linked,
        [Some("a1".into()), Some("a1".into()), Some("a2".into())]
    );
    assert_eq!(h.sync.by_user.get(USER_A), Some("a2"));
    // a2 is deleted: Ann is free again, and nobody waits for her.
    let id = "a2".to_string();
    let deleted = h.ask(|reply| Command::DeleteAgent { id, reply }).await;
    assert_eq!(deleted, Ok(()));
    assert!(h.sync.by_user.get(USER_A).is_none());
    // Carl comes into the directory: a3 is linked to him, and nothing else moves.
    h.directory(TestUpdate::Changes {
        changed: vec![user(
            "00000000-0000-0000-0000-0000000000c3",
            "carl@example.com",
        )],
        removed: Vec::new(),
        delta_link: "d2".into(),
    })
    .await;
    assert_eq!(h.committed(kind::AGENT_LINKED).len(), 4);
    assert_eq!(
        h.sync.by_user.get("00000000-0000-0000-0000-0000000000c3"),
        Some("a3")
    );
    // Nobody is left waiting, and the index holds nobody either.
    assert!(h.sync.agents.values().all(|e| e.key.is_some()));
    h.sync.link_waiting(h.clock.now());
    assert!(h.sync.waiting.is_empty(), "{:?}", h.sync.waiting);
}

/// The harness's store, keeping the ids of the agent records each commit
/// wrote.
struct Recording {
    inner: Arc<MemoryStore>,
    agents_written: Mutex<Vec<Vec<String>>>,
    meta_written: Mutex<Vec<crate::store::MetaKey>>,
}

impl Recording {
    fn written(&self) -> Vec<Vec<String>> {
        self.agents_written
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Store for Recording {
    fn store_id(&self) -> &str {
        self.inner.store_id()
    }
    fn load(&self) -> Result<Loaded, crate::store::StoreError> {
        self.inner.load()
    }
    fn commit(&self, batch: crate::store::Batch) -> Result<Vec<Event>, crate::store::StoreError> {
        self.agents_written
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(batch.agents.iter().map(|(id, _)| id.clone()).collect());
        self.meta_written
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(batch.meta.iter().map(|(key, _)| key.clone()));
        self.inner.commit(batch)
    }
    fn events_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, crate::store::StoreError> {
        self.inner.events_after(after, limit)
    }
    fn first_seq(&self) -> Result<Option<u64>, crate::store::StoreError> {
        self.inner.first_seq()
    }
    fn last_seq(&self) -> Result<u64, crate::store::StoreError> {
        self.inner.last_seq()
    }
    fn meta(
        &self,
        key: &crate::store::MetaKey,
    ) -> Result<Option<String>, crate::store::StoreError> {
        self.inner.meta(key)
    }
    fn prune_events(
        &self,
        before: chrono::DateTime<chrono::Utc>,
        keep_at_least: usize,
    ) -> Result<usize, crate::store::StoreError> {
        self.inner.prune_events(before, keep_at_least)
    }
    fn mark_clean_shutdown(&self) -> Result<(), crate::store::StoreError> {
        self.inner.mark_clean_shutdown()
    }
    fn directory(&self) -> Result<Option<crate::store::StoredDirectory>, crate::store::StoreError> {
        self.inner.directory()
    }
    fn commit_directory(
        &self,
        batch: crate::store::DirectoryBatch,
    ) -> Result<(), crate::store::StoreError> {
        self.inner.commit_directory(batch)
    }
}

/// A restart over the harness's store: restores, commits what restoring
/// decided, and returns the agent records each commit wrote.
async fn restart(h: &Harness, loaded: Loaded) -> Vec<Vec<String>> {
    restart_recording(h, loaded).await.written()
}

/// [`restart`], returning the store that recorded what was written.
async fn restart_recording(h: &Harness, loaded: Loaded) -> Arc<Recording> {
    let mappings = test_mappings();
    let metrics = test_metrics();
    let out = Outputs {
        events: broadcast::channel(1024).0,
        writes: mpsc::unbounded_channel().0,
        poll_users: poll_users(Vec::new()).0,
        status: watch::channel(LoopStatus::default()).0,
        metrics,
        directory_view: test_view(),
    };
    let store = Arc::new(Recording {
        inner: Arc::clone(&h.store),
        agents_written: Mutex::new(Vec::new()),
        meta_written: Mutex::new(Vec::new()),
    });
    let mut sync = match SyncLoop::restore_with_clock(
        Settings::default(),
        mappings,
        RoutingConfig::default(),
        loaded,
        Arc::clone(&store),
        out,
        Arc::clone(&h.clock) as Arc<dyn Clock>,
    ) {
        Ok(sync) => sync,
        Err(e) => panic!("the loop does not restore: {e}"),
    };
    assert_eq!(sync.commit_initial().await, Ok(()));
    store
}

#[tokio::test]
async fn a_restart_writes_only_the_agents_whose_state_changed() {
    let mut h = Harness::new().await;
    let agents = 30;
    for n in 0..agents {
        let user = format!("00000000-0000-0000-0000-{n:012x}");
        assert!(h.put(&format!("a{n}"), settings(&user)).await.is_ok());
        let status = if n % 2 == 0 { "Available" } else { "Busy" };
        assert!(h.report(&format!("a{n}"), status).await.is_ok());
    }
    h.clock.advance(Duration::from_secs(5));
    assert_eq!(h.step(Vec::new()).await, Ok(()));
    let load = |h: &Harness| match h.store.load() {
        Ok(l) => l,
        Err(e) => panic!("{e}"),
    };
    // A first restart writes at most the agents whose engine state moved
    // on since their last commit (a debounce that ended without a
    // decision), never all of them again for nothing; no event repeats.
    let before = load(&h);
    let first = restart(&h, before.clone()).await;
    assert!(first.len() <= 1, "one commit: {first:?}");
    let stored = load(&h);
    assert_eq!(stored.agents.len(), agents);
    assert_eq!(
        stored.last_seq, before.last_seq,
        "a restart repeats no event"
    );

    // Restored as stored: no agent record is written but those of the
    // agents that owe Teams a write (the `Busy` half here, never answered:
    // the write is decided again, under a new id).
    let owing: Vec<String> = stored.outbox.iter().map(|o| o.agent_id.clone()).collect();
    assert_eq!(owing.len(), agents / 2);
    let again = restart(&h, stored.clone()).await;
    let mut written = again.concat();
    written.sort();
    let mut expected = owing.clone();
    expected.sort();
    assert_eq!(written, expected);

    // One agent whose stored engine state is gone: only it is written.
    let mut changed = stored.clone();
    changed.agents[0].sync = None;
    let id = changed.agents[0].id.clone();
    assert!(!owing.contains(&id), "{id} is an `Available` one");
    let again = restart(&h, changed).await;
    assert!(again.concat().contains(&id));
    assert!(again.concat().len() <= owing.len() + 1);
    assert!(load(&h).agents[0].sync.is_some());
    // The next restart finds it as stored again.
    let again = restart(&h, load(&h)).await;
    assert!(!again.concat().contains(&id), "rewrote {again:?}");
}

#[tokio::test]
async fn a_restart_after_a_debounce_that_decided_nothing_writes_no_agent_for_it() {
    let mut h = Harness::new().await;
    let agents = 12;
    for n in 0..agents {
        assert!(
            h.put(&format!("a{n}"), settings(&object_id(n)))
                .await
                .is_ok()
        );
        assert!(h.report(&format!("a{n}"), "Available").await.is_ok());
    }
    // Teams shows each user available: a change the engine takes in (an
    // event, the agent written), then a debounce that ends without a
    // decision (no rule for `Available`): nothing is written for it.
    let reads = (0..agents)
        .map(|n| presence_read(&object_id(n), "Available", "Available"))
        .collect();
    assert_eq!(h.step(reads).await, Ok(()));
    h.clock.advance(Duration::from_secs(5));
    assert_eq!(h.step(Vec::new()).await, Ok(()));
    let stored = match h.store.load() {
        Ok(l) => l,
        Err(e) => panic!("{e}"),
    };
    assert!(stored.outbox.is_empty(), "no write owed");
    // The engine's state moved on since the last commit (the debounce
    // ended); restoring derives the same again, so no agent is rewritten.
    let first = restart(&h, stored.clone()).await;
    assert!(first.concat().is_empty(), "rewrote {first:?}");
    let again = restart(&h, stored).await;
    assert!(again.concat().is_empty(), "rewrote {again:?}");
}

#[tokio::test]
async fn a_start_rewrites_the_routing_state_only_when_it_changed() {
    let h = Harness::new().await;
    let load = |h: &Harness| match h.store.load() {
        Ok(l) => l,
        Err(e) => panic!("{e}"),
    };
    // The first start stored the router-wide state (its seed).
    let stored = match h.store.meta(&crate::store::MetaKey::Routing) {
        Ok(Some(text)) => text,
        other => panic!("no routing state stored: {other:?}"),
    };
    let again = restart_recording(&h, load(&h)).await;
    let meta = again
        .meta_written
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    assert!(meta.is_empty(), "rewrote {meta:?}");
    assert_eq!(
        h.store.meta(&crate::store::MetaKey::Routing).ok().flatten(),
        Some(stored)
    );
}

fn object_id(i: usize) -> String {
    format!("00000000-0000-0000-0000-{i:012x}")
}

fn users(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|id| id.to_string()).collect()
}

#[tokio::test]
async fn the_poller_is_told_exactly_the_linked_users() {
    let mut h = Harness::new().await;
    let user_c = object_id(0xc3);
    assert!(h.polled().is_empty());
    assert!(h.put("a1", settings(USER_A)).await.is_ok());
    assert!(h.put("a2", settings(USER_B)).await.is_ok());
    assert_eq!(h.polled(), users(&[USER_A, USER_B]));
    // Linked to another user: the old one is read no more.
    assert!(h.put("a1", settings(&user_c)).await.is_ok());
    assert_eq!(h.polled(), users(&[USER_B, &user_c]));
    // Other settings, the same user: no change.
    let grouped = AgentSettings {
        groups: vec!["night".into()],
        ..settings(USER_B)
    };
    assert!(h.put("a2", grouped).await.is_ok());
    assert_eq!(h.polled(), users(&[USER_B, &user_c]));
    // Deleted, then put again.
    let id = "a2".to_string();
    assert_eq!(
        h.ask(|reply| Command::DeleteAgent { id, reply }).await,
        Ok(())
    );
    assert_eq!(h.polled(), users(&[&user_c]));
    assert!(h.put("a2", settings(USER_B)).await.is_ok());
    assert_eq!(h.polled(), users(&[USER_B, &user_c]));
    // Linked and deleted in one step: never read.
    let (put_tx, _put_rx) = oneshot::channel();
    let (del_tx, _del_rx) = oneshot::channel();
    let step = h.step(vec![
        Input::Command(Command::PutAgent {
            id: "a4".into(),
            settings: settings(&object_id(0xd4)),
            reply: put_tx,
        }),
        Input::Command(Command::DeleteAgent {
            id: "a4".into(),
            reply: del_tx,
        }),
    ]);
    assert_eq!(step.await, Ok(()));
    assert_eq!(h.polled(), users(&[USER_B, &user_c]));
    // A user leaving the directory unlinks its agent; one waiting by UPN is
    // linked when its user appears.
    h.directory(TestUpdate::Replace {
        users: vec![
            user(USER_A, "ann@example.com"),
            user(USER_B, "bob@example.com"),
            user(&user_c, "carl@example.com"),
        ],
        delta_link: None,
    })
    .await;
    let waiting = AgentSettings {
        auto_link: true,
        ..settings("eve@example.com")
    };
    assert!(h.put("a5", waiting).await.is_ok());
    let user_e = object_id(0xe5);
    h.directory(TestUpdate::Changes {
        changed: vec![user(&user_e, "eve@example.com")],
        removed: vec![USER_B.to_string()],
        delta_link: "next".into(),
    })
    .await;
    assert_eq!(h.polled(), users(&[&user_c, &user_e]));
    // The user a deleted agent let go is taken, in the same step, by one
    // waiting for it: unlinked and linked again, still read.
    let user_f = object_id(0xf6);
    assert!(h.put("a6", settings(&user_f)).await.is_ok());
    let waiting = AgentSettings {
        auto_link: true,
        ..settings("fay@example.com")
    };
    assert!(h.put("a7", waiting).await.is_ok());
    h.directory(TestUpdate::Changes {
        changed: vec![user(&user_f, "fay@example.com")],
        removed: Vec::new(),
        delta_link: "later".into(),
    })
    .await;
    assert_eq!(h.polled(), users(&[&user_c, &user_e, &user_f]));
    let id = "a6".to_string();
    assert_eq!(
        h.ask(|reply| Command::DeleteAgent { id, reply }).await,
        Ok(())
    );
    assert_eq!(h.sync.by_user.get(&user_f), Some("a7"));
    assert_eq!(h.polled(), users(&[&user_c, &user_e, &user_f]));
}

#[tokio::test]
async fn agents_registered_many_a_step_are_all_polled() {
    let mut h = Harness::new().await;
    let mut replies = Vec::new();
    for chunk in (0..3_000).collect::<Vec<usize>>().chunks(64) {
        let mut inputs = Vec::new();
        for i in chunk {
            let (reply, rx) = oneshot::channel();
            replies.push(rx);
            inputs.push(Input::Command(Command::PutAgent {
                id: format!("agent-{i}"),
                settings: settings(&object_id(*i)),
                reply,
            }));
        }
        assert_eq!(h.step(inputs).await, Ok(()));
    }
    for mut rx in replies {
        assert!(matches!(rx.try_recv(), Ok(Ok(_))));
    }
    let polled = h.polled();
    assert_eq!(polled.len(), 3_000);
    assert!((0..3_000).all(|i| polled.contains(&object_id(i))));
    // What a step changed is sent when it is committed.
    let (reply, _rx) = oneshot::channel();
    let step = h.step(vec![Input::Command(Command::DeleteAgent {
        id: "agent-7".into(),
        reply,
    })]);
    assert_eq!(step.await, Ok(()));
    assert_eq!(h.sync.by_user.take_changes(), Vec::<PollChange>::new());
    assert_eq!(h.polled().len(), 2_999);
}
