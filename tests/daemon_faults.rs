//! The daemon under Graph faults, in-process against the simulator: a 5xx
//! storm with slow answers and expired tokens, and a 429 storm. Every write
//! the CC statuses call for still lands, and the metrics say what happened.

mod common;

use common::daemon_kit::{DaemonKit, until};
use serde_json::json;

const AGENTS: usize = 6;

/// Links the agents, sends each a status, and waits until Teams shows it.
/// Links the agents and sends each a status.
async fn report_all(kit: &DaemonKit) {
    for a in 0..AGENTS {
        kit.link(&format!("a{a}"), a).await;
    }
    for a in 0..AGENTS {
        let status = if a % 2 == 0 { "On contact" } else { "Lunch" };
        let r = kit.status(&format!("a{a}"), status).await;
        assert_eq!(r.status(), 200);
    }
}

/// Waits until Graph confirmed every agent's write and the outbox is empty.
async fn all_writes_land(kit: &DaemonKit, patience: std::time::Duration) {
    // Confirmed by Graph, as the daemon saw it (reading the simulator here
    // would spend the budget the storm is about).
    for a in 0..AGENTS {
        let want = if a % 2 == 0 { "InACall" } else { "Away" };
        let id = format!("a{a}");
        let deadline = tokio::time::Instant::now() + patience;
        while kit.agent(&id).await["teams"]["written"]["target"]["presence"]["activity"] != want {
            assert!(
                tokio::time::Instant::now() < deadline,
                "agent {id} not written"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    let deadline = tokio::time::Instant::now() + common::daemon_kit::PATIENCE;
    while kit.metric("presence_sync_outbox_depth", &[]).await != 0.0 {
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
    kit.faults(json!({"error_rate": 0.2, "latency_ms": 150, "expire_tokens": true}))
        .await;
    report_all(&kit).await;
    all_writes_land(&kit, common::daemon_kit::PATIENCE).await;
    for a in 0..AGENTS {
        let (user, _) = kit.user(a);
        let want = if a % 2 == 0 {
            "Busy/InACall"
        } else {
            "Away/Away"
        };
        until(|| async { kit.teams(&user).await == want }).await;
    }
    let server_errors = kit
        .metric(
            "presence_sync_graph_calls_total",
            &[("outcome", "server_error")],
        )
        .await;
    assert!(server_errors > 0.0, "the storm did not happen");
    kit.faults(json!({"error_rate": 0.0, "latency_ms": 0}))
        .await;
    kit.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_owed_through_a_429_storm_all_land_when_it_ends() {
    // The poller and the directory reader ask for about 8 requests a
    // second at the tests' pace; the tenant allows 2: 429s all round, with
    // the agents' changes reported in the middle of it. Nothing may be lost:
    // when Graph takes requests again, every write owed lands (a write that
    // gave up in the storm waits the engine's retry minute, so this test
    // waits longer than the others).
    let kit = DaemonKit::start(AGENTS).await;
    until(|| async { kit.get("/readyz").await.status() == 200 }).await;
    kit.faults(json!({"throttle_budget": 60})).await;
    report_all(&kit).await;
    until(|| async { kit.metric("presence_sync_graph_throttled_total", &[]).await > 0.0 }).await;
    kit.faults(json!({"throttle_budget": null})).await;
    all_writes_land(&kit, 4 * common::daemon_kit::PATIENCE).await;
    for a in 0..AGENTS {
        let (user, _) = kit.user(a);
        let want = if a % 2 == 0 {
            "Busy/InACall"
        } else {
            "Away/Away"
        };
        until(|| async { kit.teams(&user).await == want }).await;
    }
    kit.stop().await;
}
