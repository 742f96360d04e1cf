use std::collections::HashMap;
use std::sync::Mutex;

use proptest::prelude::*;

use super::*;
use crate::graph::clock::TokioClock;

const RATE_1500: f64 = 1_451.0 / 30.0; // the default budget's sustained rate

#[test]
fn fifty_thousand_users_are_read_every_five_seconds() {
    let plan = PollPlan::new(50_000, RATE_1500, &PollTarget::default());
    assert_eq!(plan.interval, Duration::from_secs(5));
    assert_eq!(plan.batches.len(), 77);
    // 462 calls per 30 s, inside the 60 % share of the budget.
    assert!((plan.request_rate() * 30.0 - 462.0).abs() < 1e-6);
    assert!(plan.request_rate() <= RATE_1500 * 0.6);
}

#[test]
fn past_the_budget_the_round_gets_longer() {
    let plan = PollPlan::new(200_000, RATE_1500, &PollTarget::default());
    assert_eq!(plan.batches.len(), 308);
    assert!(plan.interval > Duration::from_secs(10));
    assert!(plan.request_rate() <= RATE_1500 * 0.6);
}

#[test]
fn degenerate_inputs_give_a_usable_plan() {
    let none = PollPlan::new(0, RATE_1500, &PollTarget::default());
    assert!(none.batches.is_empty());
    assert_eq!(none.interval, Duration::from_secs(5));
    let starved = PollPlan::new(10, 0.0, &PollTarget::default());
    assert_eq!(starved.interval, MAX_INTERVAL);
    let odd = PollPlan::new(
        10,
        f64::NAN,
        &PollTarget {
            batch_size: 0,
            budget_share: -1.0,
            ..PollTarget::default()
        },
    );
    assert_eq!(odd.batches.len(), 10);
}

proptest! {
    #[test]
    fn plans_cover_every_user_once_within_the_budget(
        users in 0usize..200_000,
        requests in 10u32..20_000,
        share in 0.05f64..1.0,
        batch_size in 1usize..2_000,
        staleness_ms in 100u64..60_000,
    ) {
        let rate = f64::from(requests) / 30.0;
        let target = PollTarget {
            max_staleness: Duration::from_millis(staleness_ms),
            budget_share: share,
            batch_size,
        };
        let plan = PollPlan::new(users, rate, &target);
        let mut next = 0;
        for b in &plan.batches {
            prop_assert_eq!(b.start, next);
            prop_assert!(!b.is_empty() && b.len() <= batch_size.min(MAX_IDS_PER_CALL));
            next = b.end;
        }
        prop_assert_eq!(next, users);
        prop_assert!(plan.interval >= target.max_staleness);
        if plan.interval < MAX_INTERVAL {
            prop_assert!(plan.request_rate() <= rate * share * (1.0 + 1e-9));
        }
        // Spread over the round, in order, each inside it.
        prop_assert_eq!(plan.offsets.len(), plan.batches.len());
        prop_assert!(plan.offsets.windows(2).all(|w| w[0] < w[1]));
        prop_assert!(plan.offsets.iter().all(|o| *o < plan.interval));
        // Fewest batches the size allows.
        prop_assert_eq!(plan.batches.len(), users.div_ceil(batch_size.clamp(1, MAX_IDS_PER_CALL)));
    }
}

#[test]
fn news_is_a_new_value_or_a_newer_version() {
    let p = |a: &str, seq: Option<&str>| GraphPresence {
        id: "u".into(),
        presence: Presence::parse_pair(a).unwrap(),
        status_message: None,
        out_of_office: None,
        sequence_number: seq.map(str::to_owned),
        work_location: None,
    };
    let seen = |a: &str, seq: Option<&str>| Seen {
        presence: Presence::parse_pair(a).unwrap(),
        sequence_number: seq.map(str::to_owned),
    };
    assert!(is_news(None, &p("Busy/InACall", None)));
    assert!(!is_news(
        Some(&seen("Busy/InACall", None)),
        &p("Busy/InACall", None)
    ));
    assert!(is_news(
        Some(&seen("Busy/InACall", None)),
        &p("Away/Away", None)
    ));
    assert!(is_news(
        Some(&seen("Busy/InACall", Some("A1"))),
        &p("Busy/InACall", Some("A2"))
    ));
    assert!(
        !is_news(
            Some(&seen("Busy/InACall", Some("A2"))),
            &p("Away/Away", Some("A1"))
        ),
        "stale"
    );
}

/// A fake tenant: presences by id, and when each batch was asked for.
#[derive(Default)]
struct Fake {
    presences: Mutex<HashMap<String, &'static str>>,
    calls: Mutex<Vec<(Duration, usize)>>,
    clock: Mutex<Option<SharedClock>>,
}

impl PresenceSource for Arc<Fake> {
    fn read<'a>(
        &'a self,
        ids: &'a [String],
    ) -> Pin<Box<dyn Future<Output = Result<PresenceRead, GraphError>> + Send + 'a>> {
        Box::pin(async move {
            let now = self.clock.lock().unwrap().as_ref().unwrap().now();
            self.calls.lock().unwrap().push((now, ids.len()));
            let map = self.presences.lock().unwrap();
            let presences = ids
                .iter()
                .filter_map(|id| {
                    map.get(id).map(|pair| GraphPresence {
                        id: id.clone(),
                        presence: Presence::parse_pair(pair).unwrap(),
                        status_message: None,
                        out_of_office: None,
                        sequence_number: None,
                        work_location: None,
                    })
                })
                .collect();
            Ok(PresenceRead {
                presences,
                ..PresenceRead::default()
            })
        })
    }
}

#[tokio::test(start_paused = true)]
async fn the_loop_spreads_batches_and_passes_on_only_changes() {
    let clock = TokioClock::shared();
    let fake = Arc::new(Fake::default());
    *fake.clock.lock().unwrap() = Some(clock.clone());
    let ids: Vec<String> = (0..1_300).map(|i| format!("u{i}")).collect();
    for id in &ids {
        fake.presences
            .lock()
            .unwrap()
            .insert(id.clone(), "Available/Available");
    }
    let (_users_tx, users) = watch::channel(Arc::new(ids));
    let (tx, mut rx) = mpsc::channel(4_096);
    let (stop_tx, stop) = watch::channel(false);
    let poller = Poller::new(
        fake.clone(),
        clock.clone(),
        RATE_1500,
        PollTarget::default(),
        users,
    );
    let task = tokio::spawn(poller.run(tx, stop));

    // First round: everyone is news.
    tokio::time::sleep(Duration::from_millis(4_900)).await;
    let mut first = 0;
    while rx.try_recv().is_ok() {
        first += 1;
    }
    assert_eq!(first, 1_300);
    let calls = fake.calls.lock().unwrap().clone();
    assert_eq!(calls.iter().map(|c| c.1).collect::<Vec<_>>(), [650, 650]);
    assert_eq!(
        calls[1].0 - calls[0].0,
        Duration::from_millis(2_500),
        "spread over the round"
    );

    // One user changes: only that user comes through in the next round.
    fake.presences
        .lock()
        .unwrap()
        .insert("u7".into(), "Busy/InACall");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let update = rx.try_recv().unwrap();
    assert_eq!(update.user_id, "u7");
    assert_eq!(update.presence.to_string(), "Busy/InACall");
    assert!(rx.try_recv().is_err());

    stop_tx.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_loop_follows_the_linked_users_and_stops_when_nobody_listens() {
    let clock = TokioClock::shared();
    let fake = Arc::new(Fake::default());
    *fake.clock.lock().unwrap() = Some(clock.clone());
    fake.presences
        .lock()
        .unwrap()
        .insert("a".into(), "Away/Away");
    fake.presences
        .lock()
        .unwrap()
        .insert("b".into(), "Away/Away");
    let (users_tx, users) = watch::channel(Arc::new(vec!["a".to_owned()]));
    let (tx, mut rx) = mpsc::channel(16);
    let (_stop_tx, stop) = watch::channel(false);
    let poller = Poller::new(fake.clone(), clock, RATE_1500, PollTarget::default(), users);
    let task = tokio::spawn(poller.run(tx, stop));
    assert_eq!(rx.recv().await.unwrap().user_id, "a");
    users_tx
        .send(Arc::new(vec!["a".to_owned(), "b".to_owned()]))
        .unwrap();
    assert_eq!(rx.recv().await.unwrap().user_id, "b");
    drop(rx);
    fake.presences
        .lock()
        .unwrap()
        .insert("a".into(), "Busy/InACall");
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the poller stops once its receiver is gone")
        .unwrap();
}
