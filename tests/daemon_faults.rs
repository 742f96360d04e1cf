//! The daemon under Graph faults, in-process against the simulator: a 5xx
//! storm with slow answers and expired tokens, and a 429 storm. Every write
//! the CC statuses call for still lands, and the metrics say what happened.

mod common;

use common::daemon_kit::{DaemonKit, until};
use presence_sync::metrics::{find, parse_text};
use serde_json::json;

const AGENTS: usize = 6;

async fn faults(kit: &DaemonKit, body: serde_json::Value) {
    let r = kit
        .http
        .post(format!("{}/_sim/faults", kit.sim.base_url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{:?}", r.text().await);
}

async fn metric(kit: &DaemonKit, name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = kit.get("/metrics").await.text().await.unwrap();
    let samples = parse_text(&text).unwrap();
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| find(std::slice::from_ref(*s), name, labels).is_some())
        .map(|s| s.value)
        .sum()
}

/// Links the agents, sends each a status, and waits until Teams shows it.
async fn all_writes_land(kit: &DaemonKit) {
    for a in 0..AGENTS {
        kit.link(&format!("a{a}"), a).await;
    }
    for a in 0..AGENTS {
        let status = if a % 2 == 0 { "On contact" } else { "Lunch" };
        let r = kit.status(&format!("a{a}"), status).await;
        assert_eq!(r.status(), 200);
    }
    for a in 0..AGENTS {
        let (user, _) = kit.user(a);
        let want = if a % 2 == 0 {
            "Busy/InACall"
        } else {
            "Away/Away"
        };
        until(|| async { kit.teams(&user).await == want }).await;
    }
    let deadline = tokio::time::Instant::now() + common::daemon_kit::PATIENCE;
    while metric(kit, "presence_sync_outbox_depth", &[]).await != 0.0 {
        if tokio::time::Instant::now() > deadline {
            let agents = kit.get("/v1/agents").await.text().await.unwrap();
            panic!("the outbox did not drain: {agents}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_land_through_a_5xx_storm_slow_answers_and_expired_tokens() {
    let kit = DaemonKit::start(AGENTS).await;
    until(|| async { kit.get("/readyz").await.status() == 200 }).await;
    // One answer in five fails: a write fails all of its 5 attempts about
    // once in 3,000, and then waits the engine's minute before its retry.
    faults(
        &kit,
        json!({"error_rate": 0.2, "latency_ms": 150, "expire_tokens": true}),
    )
    .await;
    all_writes_land(&kit).await;
    let server_errors = metric(
        &kit,
        "presence_sync_graph_calls_total",
        &[("outcome", "server_error")],
    )
    .await;
    assert!(server_errors > 0.0, "the storm did not happen");
    faults(&kit, json!({"error_rate": 0.0, "latency_ms": 0})).await;
    kit.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_land_through_a_429_storm() {
    let kit = DaemonKit::start(AGENTS).await;
    until(|| async { kit.get("/readyz").await.status() == 200 }).await;
    // Below what the daemon's poller and directory reader ask for at the
    // tests' pace: 429s all round.
    faults(&kit, json!({"throttle_budget": 150})).await;
    all_writes_land(&kit).await;
    assert!(metric(&kit, "presence_sync_graph_throttled_total", &[]).await > 0.0);
    faults(&kit, json!({"throttle_budget": null})).await;
    kit.stop().await;
}
