//! Crash safety of the daemon as a process (SPEC §5.9 *crash*, §7): the
//! test runs `presence-sync run` as a child, fires a burst of status updates
//! from several clients, kills the daemon with SIGKILL in the middle, starts
//! it again on the same state dir, and proves that every acknowledged update
//! is reflected and every Teams write owed is sent. It repeats that for
//! `PRESENCE_SYNC_CRASH_ROUNDS` kills (20 by default, as CI runs it; the
//! longer documented run is 100).

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::daemon_kit::{PATIENCE, sim_options, write_config};
use common::process_kit::start;
use presence_sync::sim;
use serde_json::{Value, json};

const AGENTS: usize = 20;
const UPDATES_PER_ROUND: usize = 1000;
const STATUSES: &[(&str, &str)] = &[
    ("Available", "clear"),
    ("On contact", "Busy/InACall"),
    ("Lunch", "Away/Away"),
];

/// Per agent: the last status acknowledged, and the one in flight.
type Acked = (Option<&'static str>, Option<&'static str>);

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn put(http: &reqwest::Client, base: &str, path: &str, body: Value) -> Option<u16> {
    let r = http
        .put(format!("{base}{path}"))
        .bearer_auth("test-token-0123456789")
        .json(&body)
        .send()
        .await
        .ok()?;
    Some(r.status().as_u16())
}

async fn agent(http: &reqwest::Client, base: &str, id: &str) -> Value {
    http.get(format!("{base}/v1/agents/{id}"))
        .bearer_auth("test-token-0123456789")
        .send()
        .await
        .expect("GET agent")
        .json()
        .await
        .expect("agent JSON")
}

fn rounds() -> usize {
    std::env::var("PRESENCE_SYNC_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_in_a_burst_loses_no_acknowledged_update_and_no_owed_write() {
    let sim = sim::spawn(sim_options(AGENTS)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &sim, "echo_window = \"10s\"");
    let log = dir.path().join("daemon.log");
    let http = client();
    let users = sim.users();

    let mut daemon = start(&config, &log).await;
    for (i, (id, _)) in users.iter().enumerate() {
        let status = put(
            &http,
            &daemon.base,
            &format!("/v1/agents/a{i}"),
            json!({"teams_user": id}),
        )
        .await;
        assert_eq!(status, Some(200));
    }
    // Per agent: the last status acknowledged, and one sent but not (yet)
    // acknowledged, which may or may not have landed before the kill.
    let acked: Arc<Mutex<BTreeMap<usize, Acked>>> = Arc::default();
    let mut seed: u64 = 0x5eed;
    for round in 0..rounds() {
        // One client per agent, each sending its agent's updates in order,
        // so "the last acknowledged" is well defined per agent.
        let mut tasks = Vec::new();
        let per_agent = UPDATES_PER_ROUND / AGENTS;
        for a in 0..AGENTS {
            let http = http.clone();
            let base = daemon.base.clone();
            let acked = Arc::clone(&acked);
            tasks.push(tokio::spawn(async move {
                for n in 0..per_agent {
                    let (status, _) = STATUSES[(a + n + round) % STATUSES.len()];
                    acked.lock().unwrap().entry(a).or_default().1 = Some(status);
                    match put(
                        &http,
                        &base,
                        &format!("/v1/agents/a{a}/status"),
                        json!({"status": status}),
                    )
                    .await
                    {
                        Some(200) => {
                            acked.lock().unwrap().insert(a, (Some(status), None));
                        }
                        // Killed mid-request: not acknowledged, may or may not have landed.
                        _ => return n,
                    }
                }
                per_agent
            }));
        }
        // Kill somewhere in the burst.
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let wait = Duration::from_millis(50 + (seed >> 33) % 400);
        tokio::time::sleep(wait).await;
        daemon.child.kill().expect("SIGKILL");
        let _ = daemon.child.wait();
        let mut done = 0;
        for t in tasks {
            done += t.await.unwrap();
        }
        // A clean store after every kill: it opens, checked record by
        // record (the kill left no clean-shutdown marker), and every
        // acknowledged update is there.
        let log_from = std::fs::read_to_string(&log).map_or(0, |t| t.len());
        daemon = start(&config, &log).await;
        let started = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            started[log_from..].contains("every record was checked at open"),
            "round {round}: no deep check after a kill:\n{}",
            &started[log_from..]
        );
        let snapshot = acked.lock().unwrap().clone();
        for (a, (last_acked, maybe)) in snapshot {
            let view = agent(&http, &daemon.base, &format!("a{a}")).await;
            let shown = view["cc"]["status"].as_str();
            // The update in flight at the kill may have landed; otherwise the
            // last acknowledged one must show, never an older one.
            let ok = shown == last_acked || (maybe.is_some() && shown == maybe);
            assert!(
                ok,
                "round {round}: agent a{a} acked {last_acked:?} (in flight {maybe:?}) but shows {shown:?}"
            );
            // What shows now is the baseline of the next round (an update
            // that landed unacknowledged is as good as acknowledged).
            let baseline = if shown == maybe { maybe } else { last_acked };
            acked.lock().unwrap().insert(a, (baseline, None));
        }
        eprintln!("round {round}: killed after {wait:?}, {done} updates acknowledged this round");
    }
    // Every owed write is sent: Teams ends up showing what each agent's
    // status maps to, and the outbox drains.
    let final_statuses: Vec<String> = futures_util::future::join_all((0..AGENTS).map(|a| {
        let http = http.clone();
        let base = daemon.base.clone();
        async move {
            agent(&http, &base, &format!("a{a}")).await["cc"]["status"]
                .as_str()
                .unwrap_or("")
                .to_string()
        }
    }))
    .await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let metrics = http
            .get(format!("{}/metrics", daemon.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let drained = metrics.lines().any(|l| l == "presence_sync_outbox_depth 0");
        let mut all_match = true;
        for (a, status) in final_statuses.iter().enumerate() {
            let view = agent(&http, &daemon.base, &format!("a{a}")).await;
            let target = STATUSES
                .iter()
                .find(|(s, _)| s == status)
                .map(|(_, t)| *t)
                .unwrap_or("clear");
            let written = &view["teams"]["written"];
            let shows = match target {
                "clear" => written.is_null() || written["target"]["action"] == "clear",
                pair => {
                    let p = &written["target"]["presence"];
                    format!(
                        "{}/{}",
                        p["availability"].as_str().unwrap_or(""),
                        p["activity"].as_str().unwrap_or("")
                    ) == pair
                }
            };
            all_match &= shows;
        }
        if drained && all_match {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "writes owed were not all sent:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // And the simulator, not only the daemon's record, shows them.
    let token = common::daemon_kit::graph_token(&http, &sim).await;
    for (a, status) in final_statuses.iter().enumerate() {
        let Some((_, pair)) = STATUSES.iter().find(|(s, t)| s == status && *t != "clear") else {
            continue;
        };
        let body: Value = http
            .get(format!(
                "{}/v1.0/users/{}/presence",
                sim.base_url, users[a].0
            ))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let shown = format!(
            "{}/{}",
            body["availability"].as_str().unwrap_or("?"),
            body["activity"].as_str().unwrap_or("?")
        );
        assert_eq!(&shown, pair, "agent a{a} ({status}) in Teams");
    }
    // A clean stop spares the next start the deep check.
    common::process_kit::signal(&daemon.child, libc::SIGTERM);
    assert!(
        common::process_kit::wait_exit(&mut daemon.child)
            .await
            .success()
    );
    let log_from = std::fs::read_to_string(&log).map_or(0, |t| t.len());
    let mut daemon = start(&config, &log).await;
    let started = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        started[log_from..].contains("the store was closed cleanly"),
        "no quick open after a clean stop:\n{}",
        &started[log_from..]
    );
    daemon.child.kill().unwrap();
    let _ = daemon.child.wait();
    sim.shutdown().await.unwrap();
}
