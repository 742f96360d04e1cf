use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use proptest::prelude::*;

use super::*;
use crate::graph::clock::TokioClock;

const RATE_1500: f64 = 1_451.0 / 30.0; // the default budget's sustained rate

/// A fixed 5 s round at most: the target these tests were written for.
fn five_second_rounds() -> PollTarget {
    PollTarget {
        round_min: Duration::from_secs(5),
        ..PollTarget::default()
    }
}

#[test]
fn fifty_thousand_users_are_read_every_five_seconds() {
    let plan = PollPlan::new(50_000, RATE_1500, &five_second_rounds());
    assert_eq!(plan.interval, Duration::from_secs(5));
    assert_eq!(plan.batches.len(), 77);
    // 462 calls per 30 s, inside the 60 % share of the budget.
    assert!((plan.request_rate() * 30.0 - 462.0).abs() < 1e-6);
    assert!(plan.request_rate() <= RATE_1500 * 0.6);
}

#[test]
fn past_the_budget_the_round_gets_longer() {
    let plan = PollPlan::new(200_000, RATE_1500, &five_second_rounds());
    assert_eq!(plan.batches.len(), 308);
    assert!(plan.interval > Duration::from_secs(10));
    assert!(plan.request_rate() <= RATE_1500 * 0.6);
}

#[test]
fn degenerate_inputs_give_a_usable_plan() {
    let none = PollPlan::new(0, RATE_1500, &five_second_rounds());
    assert!(none.batches.is_empty());
    assert_eq!(none.interval, Duration::from_secs(5));
    let starved = PollPlan::new(10, 0.0, &five_second_rounds());
    assert_eq!(starved.interval, MAX_INTERVAL);
    let odd = PollPlan::new(
        10,
        f64::NAN,
        &PollTarget {
            batch_size: 0,
            read_share_max: -1.0,
            ..five_second_rounds()
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
            round_min: Duration::from_millis(staleness_ms),
            read_share_max: share,
            freshness_floor: Duration::from_millis(staleness_ms),
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
        prop_assert!(plan.interval >= target.round_min);
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
        sequence_number: seq.map(SequenceText::new),
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
    /// Every id asked for, in order.
    asked: Mutex<Vec<String>>,
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
            self.asked.lock().unwrap().extend(ids.iter().cloned());
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
    let (_users_tx, users) = poll_users(ids);
    let (tx, mut rx) = mpsc::channel(4_096);
    let (stop_tx, stop) = Stop::new();
    let poller = Poller::new(
        fake.clone(),
        clock.clone(),
        RATE_1500,
        five_second_rounds(),
        users,
    );
    let task = tokio::spawn(poller.run(tx, stop));

    // The first batch is read, the second not yet sent.
    tokio::time::sleep(Duration::from_millis(1_000)).await;

    // First round: everyone is news.
    tokio::time::sleep(Duration::from_millis(3_900)).await;
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

    stop_tx.stop();
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
    let (users_tx, users) = poll_users(vec!["a".to_owned()]);
    let (tx, mut rx) = mpsc::channel(16);
    let (_stop_tx, stop) = Stop::new();
    let poller = Poller::new(fake.clone(), clock, RATE_1500, five_second_rounds(), users);
    let task = tokio::spawn(poller.run(tx, stop));
    assert_eq!(rx.recv().await.unwrap().user_id, "a");
    users_tx.send(vec![PollChange::Add("b".into())]);
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

/// Reads that take `latency` each; records when "u0"'s batch was read and
/// how many reads were out at once.
struct Slow {
    clock: SharedClock,
    latency: Duration,
    reads_of_first: Mutex<Vec<Duration>>,
    in_flight: Mutex<(usize, usize)>,
}

impl Slow {
    fn new(clock: SharedClock, latency: Duration) -> Arc<Slow> {
        Arc::new(Slow {
            clock,
            latency,
            reads_of_first: Mutex::new(Vec::new()),
            in_flight: Mutex::new((0, 0)),
        })
    }

    fn most_in_flight(&self) -> usize {
        self.in_flight.lock().unwrap().1
    }
}

impl PresenceSource for Arc<Slow> {
    fn read<'a>(
        &'a self,
        ids: &'a [String],
    ) -> Pin<Box<dyn Future<Output = Result<PresenceRead, GraphError>> + Send + 'a>> {
        Box::pin(async move {
            let now = self.clock.now();
            if ids[0] == "u0" {
                self.reads_of_first.lock().unwrap().push(now);
            }
            {
                let mut n = self.in_flight.lock().unwrap();
                n.0 += 1;
                n.1 = n.1.max(n.0);
            }
            self.clock.sleep_until(now + self.latency).await;
            self.in_flight.lock().unwrap().0 -= 1;
            Ok(PresenceRead::default())
        })
    }
}

// Read latency does not stretch the round: batches leave at their time.
#[tokio::test(start_paused = true)]
async fn fifty_thousand_users_stay_within_5s_with_200ms_graph_latency() {
    let clock = TokioClock::shared();
    let slow = Slow::new(clock.clone(), Duration::from_millis(200));
    let ids: Vec<String> = (0..50_000).map(|i| format!("u{i}")).collect();
    let (_users_tx, users) = poll_users(ids);
    let (tx, _rx) = mpsc::channel(16);
    let (stop_tx, stop) = Stop::new();
    let poller = Poller::new(slow.clone(), clock, RATE_1500, five_second_rounds(), users);
    let task = tokio::spawn(poller.run(tx, stop));
    tokio::time::sleep(Duration::from_secs(40)).await;
    stop_tx.stop();
    task.await.unwrap();
    let reads = slow.reads_of_first.lock().unwrap().clone();
    let gaps: Vec<Duration> = reads.windows(2).map(|w| w[1] - w[0]).collect();
    // SPEC §2.3: every user read at least every 5 s up to 50,000 users.
    assert!(reads.len() >= 8, "{reads:?}");
    assert!(
        gaps.iter().all(|g| *g <= Duration::from_secs(5)),
        "gaps between reads of the same user: {gaps:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn reads_in_flight_are_capped_and_stop_is_prompt() {
    let clock = TokioClock::shared();
    // Far slower than a round: reads pile up to the cap.
    let slow = Slow::new(clock.clone(), Duration::from_secs(3_600));
    let ids: Vec<String> = (0..50_000).map(|i| format!("u{i}")).collect();
    let (_users_tx, users) = poll_users(ids);
    let (tx, _rx) = mpsc::channel(16);
    let (stop_tx, stop) = Stop::new();
    let poller = Poller::new(
        slow.clone(),
        clock.clone(),
        RATE_1500,
        five_second_rounds(),
        users,
    )
    .max_in_flight(8);
    let task = tokio::spawn(poller.run(tx, stop));
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(slow.most_in_flight(), 8);
    let asked = clock.now();
    stop_tx.stop();
    task.await.unwrap();
    assert_eq!(clock.now(), asked, "stopped without waiting for the reads");
}

/// Answers "u0" with `first` after a long wait on the first read, and with
/// `later` at once on every later read.
struct Overtaken {
    clock: SharedClock,
    reads: Mutex<usize>,
}

impl PresenceSource for Arc<Overtaken> {
    fn read<'a>(
        &'a self,
        _ids: &'a [String],
    ) -> Pin<Box<dyn Future<Output = Result<PresenceRead, GraphError>> + Send + 'a>> {
        Box::pin(async move {
            let n = {
                let mut reads = self.reads.lock().unwrap();
                *reads += 1;
                *reads
            };
            let pair = if n == 1 {
                // Still out when the next round's read comes back.
                let now = self.clock.now();
                self.clock.sleep_until(now + Duration::from_secs(7)).await;
                "Available/Available"
            } else {
                "Busy/InACall"
            };
            Ok(PresenceRead {
                presences: vec![GraphPresence {
                    id: "u0".into(),
                    presence: Presence::parse_pair(pair).unwrap(),
                    status_message: None,
                    out_of_office: None,
                    sequence_number: None,
                    work_location: None,
                }],
                ..PresenceRead::default()
            })
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_read_overtaken_by_a_newer_one_is_not_passed_on() {
    let clock = TokioClock::shared();
    let source = Arc::new(Overtaken {
        clock: clock.clone(),
        reads: Mutex::new(0),
    });
    let (_users_tx, users) = poll_users(vec!["u0".to_owned()]);
    let (tx, mut rx) = mpsc::channel(16);
    let (stop_tx, stop) = Stop::new();
    let poller = Poller::new(source, clock, RATE_1500, five_second_rounds(), users);
    let task = tokio::spawn(poller.run(tx, stop));
    tokio::time::sleep(Duration::from_secs(12)).await;
    stop_tx.stop();
    task.await.unwrap();
    let mut got = Vec::new();
    while let Ok(update) = rx.try_recv() {
        got.push(update.presence.to_string());
    }
    assert_eq!(got, ["Busy/InACall"], "the late, older read is dropped");
}

// The list the poller reads follows the changes sent, whatever their order
// and however they are grouped, and its batches stay a partition of it.
proptest! {
    #[test]
    fn the_user_list_follows_the_changes_sent(
        initial in proptest::collection::btree_set(0u8..24, 0..12),
        steps in proptest::collection::vec(
            proptest::collection::vec((any::<bool>(), 0u8..24), 0..8),
            0..12,
        ),
    ) {
        let name = |i: u8| format!("u{i}");
        let (tx, mut users) = poll_users(initial.iter().map(|i| name(*i)));
        let mut model: std::collections::BTreeSet<String> =
            initial.iter().map(|i| name(*i)).collect();
        for step in steps {
            let before = model.clone();
            let mut changes = Vec::new();
            for (add, i) in step {
                if add {
                    model.insert(name(i));
                    changes.push(PollChange::Add(name(i).into()));
                } else {
                    model.remove(&name(i));
                    changes.push(PollChange::Remove(name(i).into()));
                }
            }
            tx.send(changes);
            // Every user gone since, and none still there (one added and
            // removed in between may be among them).
            let gone: std::collections::BTreeSet<String> = users.refresh().iter().map(|id| id.to_string()).collect();
            for id in before.difference(&model) {
                prop_assert!(gone.contains(id), "{} not reported gone", id);
            }
            prop_assert!(gone.is_disjoint(&model));
            prop_assert_eq!(users.len(), model.len());
            let listed: Vec<String> = users.slice(0..users.len());
            let set: std::collections::BTreeSet<String> = listed.iter().cloned().collect();
            prop_assert_eq!(set.len(), listed.len(), "no user twice");
            prop_assert_eq!(&set, &model);
            for id in &model {
                prop_assert!(users.contains(id));
            }
            prop_assert_eq!(users.iter().count(), model.len());
        }
    }
}

#[tokio::test(start_paused = true)]
async fn after_links_and_unlinks_every_linked_user_is_read_once_a_round() {
    let clock = TokioClock::shared();
    let fake = Arc::new(Fake::default());
    *fake.clock.lock().unwrap() = Some(clock.clone());
    let ids: Vec<String> = (0..1_000).map(|i| format!("u{i}")).collect();
    for i in 0..1_300 {
        fake.presences
            .lock()
            .unwrap()
            .insert(format!("u{i}"), "Available/Available");
    }
    let (users_tx, users) = poll_users(ids);
    let (tx, mut rx) = mpsc::channel(4_096);
    let (stop_tx, stop) = Stop::new();
    let poller = Poller::new(
        fake.clone(),
        clock.clone(),
        RATE_1500,
        five_second_rounds(),
        users,
    );
    let task = tokio::spawn(poller.run(tx, stop));

    // Mid-way through the second round: 300 unlinked (some from the middle,
    // some from the end), 300 linked, one unlinked and linked again.
    tokio::time::sleep(Duration::from_millis(7_000)).await;
    let mut changes: Vec<PollChange> = (0..1_000)
        .filter(|i| i % 4 == 1 || *i >= 950)
        .take(300)
        .map(|i| PollChange::Remove(format!("u{i}").into()))
        .collect();
    let removed: HashSet<String> = changes
        .iter()
        .map(|c| match c {
            PollChange::Remove(id) | PollChange::Add(id) => id.to_string(),
        })
        .collect();
    changes.extend((1_000..1_300).map(|i| PollChange::Add(format!("u{i}").into())));
    changes.push(PollChange::Remove("u0".into()));
    users_tx.send(changes);
    users_tx.send(vec![PollChange::Add("u0".into())]);
    let linked: HashSet<String> = (0..1_300)
        .map(|i| format!("u{i}"))
        .filter(|id| !removed.contains(id))
        .collect();
    assert_eq!(linked.len(), 1_000 - removed.len() + 300);

    // The third round reads the new list: each linked user once, nobody else.
    tokio::time::sleep(Duration::from_millis(2_900)).await;
    fake.asked.lock().unwrap().clear();
    while rx.try_recv().is_ok() {}
    tokio::time::sleep(Duration::from_millis(5_000)).await;
    let asked = fake.asked.lock().unwrap().clone();
    let once: HashSet<String> = asked.iter().cloned().collect();
    assert_eq!(asked.len(), once.len(), "a user read twice in a round");
    assert_eq!(once, linked);
    // Only the newly linked are news.
    let mut news = HashSet::new();
    while let Ok(update) = rx.try_recv() {
        news.insert(update.user_id);
    }
    let added: HashSet<String> = (1_000..1_300).map(|i| format!("u{i}")).collect();
    assert_eq!(news, added);

    stop_tx.stop();
    task.await.unwrap();
}

proptest! {
    /// A sequence number is held as the same bytes, short or long, so news
    /// and order are judged on the text Graph sent.
    #[test]
    fn sequence_text_keeps_the_text(a in "[0-9A-Za-z]{0,40}", b in "[0-9A-Za-z]{0,40}") {
        let (ta, tb) = (SequenceText::new(&a), SequenceText::new(&b));
        prop_assert_eq!(ta.as_bytes(), a.as_bytes());
        prop_assert_eq!(ta.as_bytes().cmp(tb.as_bytes()), a.cmp(&b));
        prop_assert_eq!(ta == tb, a == b);
    }
}

#[test]
fn the_list_and_the_seen_keep_the_senders_id_not_a_copy() {
    let (tx, mut users) = poll_users(Vec::new());
    let id: Arc<str> = Arc::from("u1");
    tx.send(vec![PollChange::Add(Arc::clone(&id))]);
    assert!(users.refresh().is_empty());
    assert!(Arc::ptr_eq(&users.shared("u1").unwrap(), &id));
    tx.send(vec![PollChange::Remove(Arc::from("u1"))]);
    let gone = users.refresh();
    assert_eq!(gone, [Arc::from("u1")]);
    assert!(users.is_empty());
}

#[test]
fn a_change_and_a_seen_user_stay_within_their_budget() {
    // An id shared with the sender, where a copy took the same 24 bytes
    // and an allocation of its own.
    assert!(
        std::mem::size_of::<PollChange>() <= 24,
        "{}",
        std::mem::size_of::<PollChange>()
    );
    assert!(
        std::mem::size_of::<(Arc<str>, (Seen, u64))>() <= 80,
        "{}",
        std::mem::size_of::<(Arc<str>, (Seen, u64))>()
    );
}
