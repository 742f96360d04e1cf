use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::super::service::Service;
use super::{Api, DEADLINE, Fake, Incoming, TOKEN, WsClient, start};
use crate::events::kind;

const LIMIT: usize = 4096;

fn range(from: u64, through: u64) -> Vec<u64> {
    (from..=through).collect()
}

/// Polls until the metrics show `n` stream clients.
async fn wait_for_clients(api: &Api, n: usize) {
    let line = format!("\npresence_sync_ws_clients {n}\n");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let text = api.metrics_text().await;
        if text.contains(&line) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "metrics never showed {n} clients: {text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The async client the CC would use: only the handshake is needed here.
async fn handshake_status(api: &Api, token: Option<&str>) -> u16 {
    let mut request = format!("ws://{}/v1/events", api.addr)
        .into_client_request()
        .unwrap();
    if let Some(token) = token {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    match tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(request))
        .await
        .expect("handshake timed out")
    {
        Ok((_, response)) => response.status().as_u16(),
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("handshake failed: {other}"),
    }
}

#[tokio::test]
async fn the_stream_needs_the_token() {
    let api = start(Fake::new(64), LIMIT).await;
    assert_eq!(handshake_status(&api, None).await, 401);
    assert_eq!(handshake_status(&api, Some("nope")).await, 401);
    assert_eq!(handshake_status(&api, Some(TOKEN)).await, 101);
}

#[tokio::test]
async fn replays_from_since_zero_then_goes_live() {
    let api = start(Fake::new(64), LIMIT).await;
    api.fake.emit_many(5);
    let mut ws = WsClient::connect(api.addr, "?since=0").await;
    let first = ws.next_json().await;
    let stored = api.fake.events_after(0, 1).await.unwrap();
    assert_eq!(first, serde_json::to_value(&stored[0]).unwrap());
    assert_eq!(ws.seqs_through(5).await, range(2, 5));

    api.fake
        .emit(kind::AGENT_UPDATED, Some("a1"), json!({"why": "test"}));
    let live = ws.next_json().await;
    assert_eq!(
        (
            live["seq"].as_u64(),
            live["type"].as_str(),
            live["agent_id"].as_str()
        ),
        (Some(6), Some("agent.updated"), Some("a1"))
    );
    api.fake.emit_many(2);
    assert_eq!(ws.seqs_through(8).await, range(7, 8));
}

#[tokio::test]
async fn without_since_only_new_events_arrive() {
    let api = start(Fake::new(64), LIMIT).await;
    api.fake.emit_many(5);
    let mut ws = WsClient::connect(api.addr, "").await;
    // The stream is set up once it answers.
    ws.round_trip().await;
    api.fake.emit_many(2);
    assert_eq!(ws.seqs_through(7).await, range(6, 7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_after_disconnects_without_gap_or_duplicate() {
    const TOTAL: u64 = 600;
    let api = start(Fake::new(16), LIMIT).await;
    // Slow log reads: the stream sees the same events in the log and live,
    // and must send each once.
    api.fake.log_read_delay_ms.store(3, Ordering::SeqCst);
    api.fake.emit_many(50);
    let fake = api.fake.clone();
    let producer = tokio::spawn(async move {
        for i in 0..(TOTAL - 50) {
            fake.emit(kind::CC_STATUS_REPORTED, Some("a1"), json!({ "i": i }));
            if i % 4 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    });
    let mut received: Vec<u64> = Vec::new();
    let mut hops = 0;
    while received.last().copied().unwrap_or(0) < TOTAL {
        let since = received.last().copied().unwrap_or(0);
        let mut ws = WsClient::connect(api.addr, &format!("?since={since}")).await;
        // Take a stretch, then drop the connection without a close frame.
        let stop_at = (since + 120).min(TOTAL);
        received.extend(ws.seqs_through(stop_at).await);
        ws.vanish();
        hops += 1;
    }
    producer.await.unwrap();
    assert!(hops >= 4, "{hops} connections");
    let repeated: Vec<u64> = received
        .windows(2)
        .filter(|pair| pair[1] <= pair[0])
        .map(|pair| pair[1])
        .collect();
    assert!(
        repeated.is_empty(),
        "sent again or out of order: {repeated:?}"
    );
    assert_eq!(received, range(1, TOTAL), "a gap");
}

#[tokio::test]
async fn a_lagging_stream_still_sends_every_event() {
    // A two-event subscription buffer, and a burst published without a
    // yield: the stream's subscription must lag.
    let api = start(Fake::new(2), LIMIT).await;
    let mut ws = WsClient::connect(api.addr, "?since=0").await;
    api.fake.emit_many(1);
    assert_eq!(ws.seqs_through(1).await, vec![1]);
    let log_reads_before = api.fake.events_after_calls.load(Ordering::SeqCst);

    api.fake.emit_many(300);
    assert_eq!(ws.seqs_through(301).await, range(2, 301));
    assert!(
        api.fake.events_after_calls.load(Ordering::SeqCst) > log_reads_before,
        "the stream never went back to the log"
    );
    // And it is live again afterwards.
    api.fake.emit_many(1);
    assert_eq!(ws.seqs_through(302).await, vec![302]);
}

#[tokio::test]
async fn tells_about_events_pruned_before_since() {
    let api = start(Fake::new(64), LIMIT).await;
    api.fake.emit_many(20);
    api.fake.prune_through(10);

    for since in [0, 3, 9] {
        let mut ws = WsClient::connect(api.addr, &format!("?since={since}")).await;
        assert_eq!(
            ws.next_json().await,
            json!({"type": "stream.gap", "data": {"requested_since": since, "first_available": 11}})
        );
        assert_eq!(ws.seqs_through(20).await, range(11, 20));
    }

    // Asking from just before the oldest event kept is no gap.
    let mut ws = WsClient::connect(api.addr, "?since=10").await;
    assert_eq!(ws.seqs_through(20).await, range(11, 20));
}

#[tokio::test]
async fn answers_pings() {
    let api = start(Fake::new(64), LIMIT).await;
    let mut ws = WsClient::connect(api.addr, "?since=0").await;
    ws.round_trip().await;
    ws.round_trip().await;
}

#[tokio::test]
async fn metrics_count_stream_clients() {
    let api = start(Fake::new(64), LIMIT).await;
    wait_for_clients(&api, 0).await;
    let mut first = WsClient::connect(api.addr, "").await;
    let mut second = WsClient::connect(api.addr, "?since=0").await;
    first.round_trip().await;
    second.round_trip().await;
    wait_for_clients(&api, 2).await;
    first.vanish();
    wait_for_clients(&api, 1).await;
    assert_eq!(api.shutdown.open_streams(), 1);
}

#[tokio::test]
async fn shutdown_closes_streams_with_going_away() {
    let api = start(Fake::new(64), LIMIT).await;
    let mut ws = WsClient::connect(api.addr, "?since=0").await;
    ws.round_trip().await;

    api.shutdown.trigger();
    assert_eq!(ws.next().await, Incoming::Close(Some(1001)));
    assert_eq!(ws.next().await, Incoming::Ended);
    tokio::time::timeout(DEADLINE, api.shutdown.streams_closed())
        .await
        .expect("a stream stayed open");
    tokio::time::timeout(DEADLINE, api.server)
        .await
        .expect("serve did not return")
        .unwrap()
        .unwrap();
    assert!(tokio::net::TcpStream::connect(api.addr).await.is_err());
}
