//! The sink against a loopback receiver and an in-memory store. Real time
//! throughout (the sockets need it), with short retry delays from the config.

mod receiver;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::config::{Origin, Secret, SecretLocation, SecretSource, WebhookConfig};
use crate::events::{Event, NewEvent, kind};
use crate::stop::{Stop, StopHandle};
use crate::store::{Batch, MetaKey, Store};

use super::{WebhookError, WebhookSink, WebhookState, WebhookStatus};
use crate::store::MemoryStore;
use receiver::{Receiver, Reply, Seen};

const SECRET: &str = "whsec-loopback";
/// Polling deadline: far beyond what any step needs, far below the waits a
/// broken sink would sit in.
const DEADLINE: Duration = Duration::from_secs(30);

fn config(url: &str, batch_size: usize) -> WebhookConfig {
    WebhookConfig {
        url: url.to_owned(),
        secret: SecretSource {
            purpose: "the webhook signing secret",
            location: SecretLocation::File("/nonexistent".into()),
            origin: Origin::whole_file(Path::new("test.toml")),
        },
        timeout: Duration::from_millis(500),
        max_retry_delay: Duration::from_millis(20),
        batch_size,
    }
}

fn new_event(n: u64, days_ago: i64) -> NewEvent {
    NewEvent {
        kind: kind::TEAMS_PRESENCE_CHANGED.into(),
        time: Utc::now() - chrono::Duration::days(days_ago),
        agent_id: Some(format!("agent-{n}")),
        data: serde_json::json!({ "n": n, "note": "ünïcode ✓" }),
    }
}

/// A running sink and its handles.
struct Running {
    task: JoinHandle<Result<(), WebhookError>>,
    stop: StopHandle,
    wake: broadcast::Sender<Event>,
    status: watch::Receiver<WebhookStatus>,
}

fn start(store: &Arc<MemoryStore>, config: &WebhookConfig) -> Running {
    let store: Arc<dyn Store> = store.clone();
    let sink = WebhookSink::new(config, &Secret::new(SECRET), store).unwrap();
    let status = sink.status();
    let (wake, wake_rx) = broadcast::channel(16);
    let (stop, stop_rx) = Stop::new();
    let task = tokio::spawn(sink.run(wake_rx, stop_rx));
    Running {
        task,
        stop,
        wake,
        status,
    }
}

impl Running {
    /// Asks the sink to stop and waits for it.
    async fn stop(self) -> (Result<(), WebhookError>, WebhookStatus) {
        self.stop.stop();
        let result = tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("the sink stops when asked")
            .unwrap();
        let status = self.status.borrow().clone();
        (result, status)
    }
}

/// Commits `count` events (numbered from `from`) and wakes the sink as the
/// daemon would: after the commit.
fn append(store: &MemoryStore, wake: Option<&broadcast::Sender<Event>>, from: u64, count: u64) {
    let committed = store
        .commit(Batch {
            events: (from..from + count).map(|n| new_event(n, 0)).collect(),
            ..Batch::default()
        })
        .unwrap();
    if let Some(wake) = wake {
        for event in committed {
            let _ = wake.send(event);
        }
    }
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let give_up = tokio::time::Instant::now() + DEADLINE;
    while !done() {
        assert!(
            tokio::time::Instant::now() < give_up,
            "gave up waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn cursor(store: &MemoryStore) -> Option<String> {
    store.meta(&MetaKey::Cursor("webhook".into())).unwrap()
}

fn seqs(seen: &[Seen]) -> Vec<Vec<u64>> {
    seen.iter().map(Seen::seqs).collect()
}

/// Every request holds consecutive events and starts either where the one
/// before started (a retry) or right after it ended: in order, never
/// skipping. Returns the events of each distinct batch, in order.
fn batches_in_order(seen: &[Seen]) -> Vec<Vec<u64>> {
    let mut batches: Vec<Vec<u64>> = Vec::new();
    for request in seen {
        let s = request.seqs();
        assert!(!s.is_empty(), "an empty delivery: {request:?}");
        assert!(
            s.windows(2).all(|w| w[1] == w[0] + 1),
            "not consecutive: {s:?}"
        );
        match batches.last() {
            Some(last) if *last == s => {}
            Some(last) => assert_eq!(
                s[0],
                last[last.len() - 1] + 1,
                "skipped or reordered: {:?}",
                seqs(seen)
            ),
            None => {}
        }
        if batches.last() != Some(&s) {
            batches.push(s);
        }
    }
    batches
}

#[tokio::test]
async fn delivers_every_event_in_order_with_valid_signatures() {
    let receiver = Receiver::start(SECRET).await;
    let store = Arc::new(MemoryStore::new());
    // Committed before the sink ever ran: no cursor yet, so all of them go.
    append(&store, None, 1, 7);
    let sink = start(&store, &config(&receiver.url, 3));
    until("the first seven events", || {
        cursor(&store).as_deref() == Some("7")
    })
    .await;
    append(&store, Some(&sink.wake), 8, 2);
    until("the next two", || cursor(&store).as_deref() == Some("9")).await;
    until("idle", || sink.status.borrow().state == WebhookState::Idle).await;
    let status = sink.status.borrow().clone();
    assert_eq!(status.cursor, 9);
    assert_eq!(status.last_delivered_seq, Some(9));
    assert_eq!(status.last_error, None);

    let seen = receiver.seen();
    assert_eq!(
        seqs(&seen),
        [vec![1, 2, 3], vec![4, 5, 6], vec![7], vec![8, 9]]
    );
    let stored = store.events_after(0, 100).unwrap();
    let delivered: Vec<Event> = seen.iter().flat_map(|s| s.events.clone()).collect();
    assert_eq!(delivered, stored, "the events arrive exactly as stored");
    let now = Utc::now().timestamp();
    for request in &seen {
        assert!(request.signature_valid, "{request:?}");
        assert_eq!(request.content_type, "application/json");
        let sent: i64 = request.timestamp.parse().unwrap();
        assert!((now - sent).abs() < 300, "{}", request.timestamp);
    }
    assert_eq!(seen[0].delivery, "mem1-1-mem1-3");
    assert_eq!(seen[2].delivery, "mem1-7-mem1-7");

    let (result, status) = sink.stop().await;
    assert!(result.is_ok());
    assert_eq!(status.state, WebhookState::Stopped);
    assert_eq!(status.task_state(), "stopped");
}

#[tokio::test]
async fn failures_are_retried_without_loss_or_reordering() {
    let receiver = Receiver::start(SECRET).await;
    receiver.script([
        Reply::Status(500, "database unavailable"),
        Reply::Ok,
        Reply::Status(502, ""),
        Reply::RetryAfter(429, "0"),
        // A misconfigured receiver: still retried, never dropped.
        Reply::Status(400, "unknown signature"),
        Reply::Status(401, ""),
        // Past the sink's timeout: the receiver took it, the sink cannot know.
        Reply::Slow(Duration::from_secs(2)),
        Reply::RetryAfter(503, "0"),
        Reply::Status(404, "no such hook"),
    ]);
    let store = Arc::new(MemoryStore::new());
    append(&store, None, 1, 10);
    let sink = start(&store, &config(&receiver.url, 4));
    until("all ten events", || cursor(&store).as_deref() == Some("10")).await;

    let seen = receiver.seen();
    assert_eq!(
        batches_in_order(&seen),
        [vec![1, 2, 3, 4], vec![5, 6, 7, 8], vec![9, 10]]
    );
    // Eight scripted failures (the slow answer among them), three successes.
    assert_eq!(seen.len(), 11, "{:?}", seqs(&seen));
    assert!(seen.iter().all(|s| s.signature_valid));
    // Each attempt is signed afresh, but names the same delivery.
    assert!(
        seen[2..10].iter().all(|s| s.delivery == "mem1-5-mem1-8"),
        "{seen:?}"
    );
    let status = sink.status.borrow().clone();
    let error = status.last_error.clone().unwrap_or_default();
    assert!(
        error.contains("404 Not Found") && error.contains("no such hook"),
        "{error}"
    );
    let (result, _) = sink.stop().await;
    assert!(result.is_ok());
}

#[tokio::test]
async fn retry_after_is_waited_out() {
    let receiver = Receiver::start(SECRET).await;
    receiver.script([Reply::RetryAfter(429, "1")]);
    let store = Arc::new(MemoryStore::new());
    append(&store, None, 1, 1);
    let sink = start(&store, &config(&receiver.url, 10));
    until("the retry", || receiver.seen().len() == 2).await;
    let seen = receiver.seen();
    // The policy alone would wait at most 20 ms; the receiver asked for 1 s.
    let waited = seen[1].arrived - seen[0].arrived;
    assert!(waited >= Duration::from_secs(1), "{waited:?}");
    until("the cursor", || cursor(&store).as_deref() == Some("1")).await;
    let _ = sink.stop().await;
}

#[tokio::test]
async fn a_new_sink_resumes_after_the_acknowledged_batches() {
    let receiver = Receiver::start(SECRET).await;
    let store = Arc::new(MemoryStore::new());
    append(&store, None, 1, 6);
    let first = start(&store, &config(&receiver.url, 3));
    until("six events", || cursor(&store).as_deref() == Some("6")).await;
    let (result, _) = first.stop().await;
    assert!(result.is_ok());

    // The next batch reaches the receiver, but its answer comes too late;
    // the retry is told to wait an hour, and the sink stops while it waits,
    // the cursor still at 6.
    append(&store, None, 7, 3);
    receiver.script([
        Reply::Slow(Duration::from_secs(2)),
        Reply::RetryAfter(429, "3600"),
    ]);
    let second = start(&store, &config(&receiver.url, 3));
    until("the hour's wait", || {
        matches!(
            second.status.borrow().state,
            WebhookState::Retrying { attempt: 2, .. }
        )
    })
    .await;
    let (result, status) = second.stop().await;
    assert!(result.is_ok());
    assert_eq!(status.cursor, 6);
    assert_eq!(cursor(&store).as_deref(), Some("6"));

    let third = start(&store, &config(&receiver.url, 3));
    until("the last batch", || cursor(&store).as_deref() == Some("9")).await;
    let _ = third.stop().await;
    // Acknowledged batches never come again; the unacknowledged one does.
    assert_eq!(
        seqs(&receiver.seen()),
        [
            vec![1, 2, 3],
            vec![4, 5, 6],
            vec![7, 8, 9],
            vec![7, 8, 9],
            vec![7, 8, 9]
        ]
    );
}

#[tokio::test]
async fn stop_during_a_long_retry_wait_returns_promptly() {
    let receiver = Receiver::start(SECRET).await;
    // An hour's wait, asked for by the receiver.
    receiver.script([Reply::RetryAfter(429, "3600")]);
    let store = Arc::new(MemoryStore::new());
    append(&store, None, 1, 2);
    let sink = start(&store, &config(&receiver.url, 10));
    until("the retry wait", || {
        matches!(sink.status.borrow().state, WebhookState::Retrying { .. })
    })
    .await;
    let WebhookState::Retrying { attempt, next_try } = sink.status.borrow().state.clone() else {
        unreachable!()
    };
    assert_eq!(attempt, 1);
    assert!(
        next_try > Utc::now() + chrono::Duration::minutes(30),
        "{next_try}"
    );
    // `stop` gives up after DEADLINE, far short of the hour.
    let (result, status) = sink.stop().await;
    assert!(result.is_ok());
    assert_eq!(status.state, WebhookState::Stopped);
    assert_eq!(cursor(&store), None);
    assert_eq!(receiver.seen().len(), 1);
}

#[tokio::test]
async fn stop_during_a_slow_post_ends_with_the_timeout() {
    let receiver = Receiver::start(SECRET).await;
    receiver.script([Reply::Slow(Duration::from_secs(600))]);
    let store = Arc::new(MemoryStore::new());
    append(&store, None, 1, 1);
    let sink = start(&store, &config(&receiver.url, 10));
    until("the POST", || receiver.seen().len() == 1).await;
    let (result, status) = sink.stop().await;
    assert!(result.is_ok());
    assert_eq!(status.state, WebhookState::Stopped);
    assert_eq!(cursor(&store), None);
    let error = status.last_error.unwrap_or_default();
    assert!(error.contains("timed out"), "{error}");
}

#[tokio::test]
async fn a_failed_cursor_commit_redelivers_the_batch() {
    let receiver = Receiver::start(SECRET).await;
    let store = Arc::new(MemoryStore::new());
    append(&store, None, 1, 3);
    store.fail_commits(1);
    let sink = start(&store, &config(&receiver.url, 3));
    until("the cursor", || cursor(&store).as_deref() == Some("3")).await;
    assert_eq!(seqs(&receiver.seen()), [vec![1, 2, 3], vec![1, 2, 3]]);
    let error = sink.status.borrow().last_error.clone().unwrap_or_default();
    assert!(error.contains("disk full"), "{error}");
    let _ = sink.stop().await;
}

#[tokio::test]
async fn events_pruned_before_delivery_are_reported_and_delivery_goes_on() {
    let receiver = Receiver::start(SECRET).await;
    let store = Arc::new(MemoryStore::new());
    store
        .commit(Batch {
            events: (1..=5).map(|n| new_event(n, 10)).collect(),
            meta: vec![(MetaKey::Cursor("webhook".into()), Some("2".into()))],
            ..Batch::default()
        })
        .unwrap();
    append(&store, None, 6, 3);
    assert_eq!(
        store
            .prune_events(Utc::now() - chrono::Duration::days(1), 0)
            .unwrap(),
        5
    );
    let sink = start(&store, &config(&receiver.url, 10));
    until("the rest", || cursor(&store).as_deref() == Some("8")).await;
    assert_eq!(seqs(&receiver.seen()), [vec![6, 7, 8]]);
    let error = sink.status.borrow().last_error.clone().unwrap_or_default();
    assert_eq!(
        error,
        "events 3..=5 were pruned from the log before the receiver took them"
    );
    let _ = sink.stop().await;
}

#[tokio::test]
async fn a_cursor_that_is_not_a_number_stops_the_sink() {
    let store = Arc::new(MemoryStore::new());
    store
        .commit(Batch {
            meta: vec![(MetaKey::Cursor("webhook".into()), Some("seven".into()))],
            ..Batch::default()
        })
        .unwrap();
    let sink = start(&store, &config("http://127.0.0.1:9/hook", 10));
    let result = tokio::time::timeout(DEADLINE, sink.task)
        .await
        .expect("the sink gives up")
        .unwrap();
    assert!(matches!(result, Err(WebhookError::BadCursor(ref c)) if c == "seven"));
    let status = sink.status.borrow().clone();
    assert_eq!(status.task_state(), "failed");
    assert!(status.to_string().contains("`seven`"), "{status}");
}

#[tokio::test]
async fn an_unreachable_receiver_is_retried_not_dropped() {
    // A port nobody listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let store = Arc::new(MemoryStore::new());
    append(&store, None, 1, 2);
    let sink = start(&store, &config(&format!("http://{address}/hook"), 10));
    until("a failed attempt", || {
        matches!(sink.status.borrow().state, WebhookState::Retrying { attempt, .. } if attempt >= 2)
    })
    .await;
    assert_eq!(cursor(&store), None);
    let error = sink.status.borrow().last_error.clone().unwrap_or_default();
    assert!(error.contains("connection failed"), "{error}");
    let _ = sink.stop().await;
    assert_eq!(store.commits(), 1, "only the events were committed");
}
