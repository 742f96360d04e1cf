//! The Graph budget's scheduler end to end, in-process against the
//! simulator: in a 429 storm that never lets up, CC→Teams writes still
//! land (they are served before the poller's reads), and the poll round,
//! each class's share, the rate after the 429s and read freshness show in
//! `/metrics` and `/readyz`.

mod common;

use std::time::Duration;

use common::daemon_kit::{DaemonKit, PATIENCE, until};
use serde_json::json;

const AGENTS: usize = 6;

/// The activity each agent's status maps to.
fn wanted(a: usize) -> &'static str {
    if a.is_multiple_of(2) {
        "InACall"
    } else {
        "Away"
    }
}

async fn written(kit: &DaemonKit, a: usize) -> bool {
    kit.agent(&format!("a{a}")).await["teams"]["written"]["target"]["presence"]["activity"]
        == wanted(a)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_land_during_a_429_storm_not_only_after_it() {
    let kit = DaemonKit::start(AGENTS).await;
    until(|| async { kit.get("/readyz").await.status() == 200 }).await;
    for a in 0..AGENTS {
        kit.link(&format!("a{a}"), a).await;
    }
    let configured = kit.metric("presence_sync_graph_rate_limit", &[]).await;
    assert!(configured > 0.0);

    // The tenant now allows 2 requests a second; the poller alone asks for
    // more (a round every 200 ms) and the directory reader beside it: 429s
    // all round, for as long as this test runs.
    kit.faults(json!({"throttle_budget": 60})).await;
    until(|| async { kit.metric("presence_sync_graph_throttled_total", &[]).await > 0.0 }).await;

    // The agents' statuses change in the middle of the storm.
    for a in 0..AGENTS {
        let status = if a.is_multiple_of(2) {
            "On contact"
        } else {
            "Lunch"
        };
        let r = kit.status(&format!("a{a}"), status).await;
        assert_eq!(r.status(), 200);
    }
    let throttled_at_reports = kit.metric("presence_sync_graph_throttled_total", &[]).await;

    // Every write is confirmed by Graph while the storm goes on (the
    // budget in the simulator is still 60 per 30 s). The writes get the
    // requests Graph grants before any waiting read does.
    let deadline = tokio::time::Instant::now() + 2 * PATIENCE;
    for a in 0..AGENTS {
        while !written(&kit, a).await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "agent a{a} not written during the storm: {}",
                kit.agent(&format!("a{a}")).await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // The storm was still on when they landed: Graph keeps refusing the
    // reads after the last write was confirmed.
    let throttled_when_written = kit.metric("presence_sync_graph_throttled_total", &[]).await;
    until(|| async {
        kit.metric("presence_sync_graph_throttled_total", &[]).await > throttled_when_written
    })
    .await;
    assert!(throttled_when_written >= throttled_at_reports);
    assert!(
        kit.metric(
            "presence_sync_graph_calls_total",
            &[("endpoint", "setPresence"), ("outcome", "ok")]
        )
        .await
            > 0.0
    );
    // The scheduler slowed down for the 429s; never above the budget.
    let lowered = kit.metric("presence_sync_graph_rate_limit", &[]).await;
    assert!(
        lowered < configured,
        "rate {lowered} after 429s, {configured} configured"
    );

    kit.faults(json!({"throttle_budget": null})).await;
    kit.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poll_round_and_the_budget_show_in_metrics_and_readyz() {
    let kit = DaemonKit::start(AGENTS).await;
    until(|| async { kit.get("/readyz").await.status() == 200 }).await;
    for a in 0..AGENTS {
        kit.link(&format!("a{a}"), a).await;
    }
    // The poller reads the linked agents, in rounds of the configured
    // shortest round (200 ms here): the budget is idle.
    until(|| async {
        let ready: serde_json::Value = kit.get("/readyz").await.json().await.unwrap();
        ready["poll"]["users"] == AGENTS && ready["poll"]["oldest_read_seconds"].is_number()
    })
    .await;
    let ready: serde_json::Value = kit.get("/readyz").await.json().await.unwrap();
    let poll = &ready["poll"];
    assert_eq!(poll["round_seconds"].as_f64(), Some(0.2), "{poll}");
    assert!(poll["reads_per_second"].as_f64().unwrap() > 0.0, "{poll}");
    assert!(poll["rate_limit"].as_f64().unwrap() > 0.0, "{poll}");

    let health: serde_json::Value = kit.get("/v1/health").await.json().await.unwrap();
    assert_eq!(health["poll"]["users"], AGENTS, "{health}");

    assert_eq!(
        kit.metric("presence_sync_poll_round_seconds", &[]).await,
        0.2
    );
    until(|| async {
        kit.metric(
            "presence_sync_graph_budget_share",
            &[("class", "agent_read")],
        )
        .await
            > 0.0
    })
    .await;
    for class in ["write", "agent_read", "directory", "reconcile"] {
        let text = kit.get("/metrics").await.text().await.unwrap();
        assert!(
            text.contains(&format!(
                "presence_sync_graph_budget_share{{class=\"{class}\"}}"
            )),
            "{class}"
        );
    }
    let oldest = kit
        .metric("presence_sync_poll_oldest_read_seconds", &[])
        .await;
    assert!(oldest < 30.0, "{oldest}");
    kit.stop().await;
}
