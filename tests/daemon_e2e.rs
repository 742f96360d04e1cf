//! The daemon end to end (SPEC §5.9): the real daemon in-process against the
//! embedded Graph simulator on free loopback ports, a temp state dir, and a
//! mapping with a 2 s debounce. Nothing here times anything: tests wait for
//! states with generous deadlines and read times from the daemon's records.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::daemon_kit::{DaemonKit, until};
use presence_sync::events::kind;
use serde_json::json;

fn at(v: &serde_json::Value) -> DateTime<Utc> {
    serde_json::from_value(v.clone()).expect("a time")
}

/// *call*: CC On contact → Teams Busy/InACall one debounce later, not before;
/// CC Available → Teams handed back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_reaches_teams_after_the_debounce_and_not_before() {
    let kit = DaemonKit::start(3).await;
    let (user, _) = kit.user(0);
    kit.link("a1", 0).await;
    assert!(kit.status("a1", "Available").await.status().is_success());
    let r = kit.status("a1", "On contact").await;
    assert_eq!(r.status(), 200);
    until(|| async { kit.teams(&user).await == "Busy/InACall" }).await;
    let agent = kit.agent("a1").await;
    let since = at(&agent["cc"]["since"]);
    let written = at(&agent["teams"]["written"]["at"]);
    assert!(
        written - since >= chrono::Duration::seconds(2),
        "written {written} only {:?} after the status changed at {since}",
        written - since
    );
    assert_eq!(
        agent["teams"]["written"]["target"]["presence"]["activity"],
        "InACall"
    );

    kit.status("a1", "Available").await;
    until(|| async { kit.teams(&user).await != "Busy/InACall" }).await;
    kit.stop().await;
}

/// *blip*: a status held shorter than the debounce never reaches Teams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blip_shorter_than_the_debounce_never_reaches_teams() {
    let kit = DaemonKit::start(3).await;
    kit.link("a1", 0).await;
    kit.status("a1", "Available").await;
    let mut stream = kit.events(0).await;
    kit.status("a1", "Lunch").await;
    kit.status("a1", "Available").await;
    // Long past the debounce; then a marker change that does propagate.
    tokio::time::sleep(Duration::from_secs(3)).await;
    kit.status("a1", "On contact").await;
    let seen = stream
        .until(|e| e.kind == kind::TEAMS_WRITTEN && e.agent_id.as_deref() == Some("a1"))
        .await;
    let written: Vec<_> = seen
        .iter()
        .filter(|e| e.kind == kind::TEAMS_WRITTEN)
        .collect();
    assert_eq!(written.len(), 1, "{written:#?}");
    assert_eq!(written[0].data["presence"]["availability"], "Busy");
    let metrics = kit.get("/metrics").await.text().await.unwrap();
    #[cfg(target_os = "linux")]
    assert!(
        metrics.lines().any(|l| l
            .strip_prefix("presence_sync_process_resident_bytes ")
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(|v| v > 1e6)),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("presence_sync_debounced_total ") && !l.ends_with(" 0")),
        "{metrics}"
    );
    kit.stop().await;
}

/// *meeting-latch*: Teams Busy/InAMeeting → `cc.status_requested` Meeting on
/// the stream; the CC's Meeting is our echo and not pushed back; when the
/// meeting ends Available is requested back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meeting_asks_the_cc_for_meeting_and_restores_available() {
    let kit = DaemonKit::start(3).await;
    let (user, _) = kit.user(0);
    kit.link("a1", 0).await;
    kit.status("a1", "Available").await;
    let mut stream = kit.events(0).await;
    kit.user_shows(&user, "Busy", "InAMeeting").await;
    let seen = stream.until(|e| e.kind == kind::CC_STATUS_REQUESTED).await;
    let request = seen.last().unwrap();
    assert_eq!(request.agent_id.as_deref(), Some("a1"));
    assert_eq!(request.data["status"], "Meeting");
    assert_eq!(request.data["kind"], "rule");
    // The CC does as asked: that is our echo.
    kit.status("a1", "Meeting").await;
    until(|| async { kit.agent("a1").await["cc"]["set_by"] == "daemon" }).await;
    let agent = kit.agent("a1").await;
    assert_eq!(agent["routable"], false);
    assert!(
        agent["not_routable_because"]
            .to_string()
            .contains("Meeting")
    );

    kit.user_shows(&user, "Available", "Available").await;
    let seen = stream.until(|e| e.kind == kind::CC_STATUS_REQUESTED).await;
    let restore = seen.last().unwrap();
    assert_eq!(restore.data["status"], "Available");
    assert_eq!(restore.data["kind"], "restore");
    assert!(
        !seen.iter().any(
            |e| e.kind == kind::TEAMS_WRITTEN && e.data["presence"]["activity"] == "InAMeeting"
        ),
        "Meeting was pushed back to Teams: {seen:#?}"
    );
    kit.stop().await;
}

/// *two-writers*: a second writer answers every change with its own; the
/// loop guard suspends the agent, says so, and resumes after the cool-down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_loop_through_a_second_writer_is_suspended_and_resumes() {
    let kit = DaemonKit::start_with(
        3,
        "echo_window = \"10s\"\nloop_max_changes = 4\nloop_window = \"5m\"\nloop_cooldown = \"4s\"",
    )
    .await;
    let (user, _) = kit.user(0);
    kit.link("a1", 0).await;
    kit.status("a1", "Available").await;
    let mut stream = kit.events(0).await;
    // The second writer flips Teams whenever the CC takes our request.
    kit.user_shows(&user, "Busy", "InAMeeting").await;
    let mut suspended = None;
    while suspended.is_none() {
        let event = stream.next().await.expect("events keep coming");
        match event.kind.as_str() {
            kind::CC_STATUS_REQUESTED => {
                let status = event.data["status"].as_str().unwrap().to_string();
                kit.status("a1", &status).await;
                if status == "Meeting" {
                    kit.user_shows(&user, "Available", "Available").await;
                } else {
                    kit.user_shows(&user, "Busy", "InAMeeting").await;
                }
            }
            kind::SYNC_LOOP_SUSPENDED => suspended = Some(event),
            _ => {}
        }
    }
    let suspended = suspended.unwrap();
    assert_eq!(suspended.data["flows"], json!(["teams_to_cc"]));
    let agent = kit.agent("a1").await;
    assert!(agent["sync"]["suspended"].is_object(), "{agent}");
    let seen = stream.until(|e| e.kind == kind::SYNC_LOOP_RESUMED).await;
    let during: Vec<_> = seen
        .iter()
        .filter(|e| e.kind == kind::CC_STATUS_REQUESTED)
        .collect();
    assert!(during.is_empty(), "requests while suspended: {during:#?}");
    let metrics = kit.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("presence_sync_loop_suspensions_total 1"),
        "{metrics}"
    );
    kit.stop().await;
}

/// A consumer that loses its connection across a daemon restart resumes from
/// its last seq with no gap and no loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_resumes_across_a_restart_with_no_gap() {
    let mut kit = DaemonKit::start(3).await;
    kit.link("a1", 0).await;
    kit.link("a2", 1).await;
    let mut stream = kit.events(0).await;
    let mut seen: Vec<u64> = Vec::new();
    kit.status("a1", "Lunch").await;
    // Lunch reaches Teams before the restart, so Available later clears it.
    let first = stream
        .until(|e| e.kind == kind::TEAMS_WRITTEN && e.agent_id.as_deref() == Some("a1"))
        .await;
    assert_eq!(
        first.last().unwrap().data["presence"]["availability"],
        "Away"
    );
    seen.extend(first.iter().map(|e| e.seq));
    let last = *seen.last().unwrap();
    drop(stream);
    // Events committed while nobody listens, across a restart.
    kit.status("a2", "On contact").await;
    kit.restart().await;
    kit.status("a2", "Lunch").await;
    kit.status("a1", "Available").await;
    let mut stream = kit.events(last).await;
    let rest = stream
        .until(|e| {
            e.kind == kind::TEAMS_WRITTEN
                && e.agent_id.as_deref() == Some("a1")
                && e.data["action"] == "clear"
        })
        .await;
    seen.extend(rest.iter().map(|e| e.seq));
    let expected: Vec<u64> = (seen[0]..=*seen.last().unwrap()).collect();
    assert_eq!(seen, expected, "a gap or a duplicate");
    let ids: BTreeSet<_> = rest.iter().map(|e| e.id.clone()).collect();
    assert_eq!(ids.len(), rest.len());
    kit.stop().await;
}

/// *new-user*: an agent waiting for its UPN is linked within one delta poll
/// of the user being added to the tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_tenant_user_is_auto_linked_by_upn() {
    let kit = DaemonKit::start(2).await;
    until(|| async { kit.get("/readyz").await.status() == 200 }).await;
    let upn = "new.agent@contoso.test";
    let r = kit
        .put(
            "/v1/agents/n1",
            json!({"teams_user": upn, "auto_link": true}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(kit.agent("n1").await["linked"], false);
    let r = kit
        .http
        .post(format!("{}/_sim/users", kit.sim.base_url))
        .json(&json!({"userPrincipalName": upn, "displayName": "New Agent"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    until(|| async { kit.agent("n1").await["linked"] == true }).await;
    let agent = kit.agent("n1").await;
    assert_eq!(agent["upn"], upn);
    assert_eq!(agent["display_name"], "New Agent");
    kit.stop().await;
}

/// Bad input is refused whole, with the error shape, and nothing is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_statuses_and_users_are_refused_with_the_field() {
    let kit = DaemonKit::start(2).await;
    until(|| async { kit.get("/readyz").await.status() == 200 }).await;
    let r = kit
        .put("/v1/agents/x", json!({"teams_user": "nobody@contoso.test"}))
        .await;
    assert_eq!(r.status(), 422);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["field"], "teams_user");
    assert_eq!(kit.get("/v1/agents/x").await.status(), 404);
    kit.link("a1", 0).await;
    let r = kit.status("a1", "Lunchh").await;
    assert_eq!(r.status(), 422);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["field"], "status");
    assert!(body["error"]["message"].as_str().unwrap().contains("Lunch"));
    assert_eq!(
        kit.agent("a1").await["cc"]["status"],
        serde_json::Value::Null
    );
    kit.stop().await;
}

/// Readiness says what is missing: with Graph unreachable the daemon still
/// serves, and `/readyz` names Graph as the reason. (A restart is ready at
/// once from the stored directory; Graph's failure turns it 503 as soon as
/// the directory reader meets it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_says_why_when_graph_is_unreachable() {
    let kit = DaemonKit::start(2).await;
    until(|| async { kit.get("/readyz").await.status() == 200 }).await;
    let mut kit = kit;
    // Point the daemon at a port nobody listens on and restart it.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let text = std::fs::read_to_string(&kit.config_path).unwrap();
    std::fs::write(&kit.config_path, text.replace(&kit.sim.base_url, &dead_url)).unwrap();
    kit.restart().await;
    assert_eq!(kit.get("/healthz").await.status(), 200);
    until(|| async { kit.get("/readyz").await.status() == 503 }).await;
    let r = kit.get("/readyz").await;
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    let graph = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "graph")
        .unwrap()
        .clone();
    assert_eq!(graph["ok"], false, "{body}");
    kit.stop().await;
}

/// The webhook sink posts the same events as the stream, signed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_sink_posts_signed_events() {
    use std::sync::{Arc, Mutex};
    type Got = Arc<Mutex<Vec<(axum::http::HeaderMap, axum::body::Bytes)>>>;
    let got: Got = Arc::default();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post({
            let got = Arc::clone(&got);
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let got = Arc::clone(&got);
                async move {
                    got.lock().unwrap().push((headers, body));
                    axum::http::StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let secret_dir = tempfile::tempdir().unwrap();
    let secret_file = secret_dir.path().join("webhook-secret");
    std::fs::write(&secret_file, "hook-secret").unwrap();
    let kit = DaemonKit::start_with(
        2,
        &format!(
            "echo_window = \"10s\"\n\n[webhook]\nurl = \"{url}\"\nsecret_file = \"{}\"\n",
            secret_file.display()
        ),
    )
    .await;
    kit.link("a1", 0).await;
    until(|| async {
        got.lock()
            .unwrap()
            .iter()
            .any(|(_, body)| String::from_utf8_lossy(body).contains("agent.linked"))
    })
    .await;
    for (headers, body) in got.lock().unwrap().iter() {
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
        };
        assert!(presence_sync::webhook::verify_signature(
            b"hook-secret",
            text(presence_sync::webhook::TIMESTAMP_HEADER),
            body,
            text(presence_sync::webhook::SIGNATURE_HEADER),
        ));
        let parsed: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert!(parsed["events"].as_array().is_some_and(|e| !e.is_empty()));
    }
    kit.stop().await;
    server.abort();
}

/// A mapping file edited on disk is reloaded: a good edit takes effect, a
/// broken one is reported with its position and the last good mapping stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapping_edits_are_reloaded_and_a_broken_file_keeps_the_old_mapping() {
    let kit = DaemonKit::start(2).await;
    let (user, _) = kit.user(0);
    kit.link("a1", 0).await;
    let mapping = kit.dir.path().join("mapping.toml");
    let original = std::fs::read_to_string(&mapping).unwrap();

    // Broken: an unknown status in a rule.
    let broken = original.replace("set = \"Meeting\"", "set = \"Meetting\"");
    std::fs::write(&mapping, &broken).unwrap();
    until(|| async {
        let body: serde_json::Value = kit.get("/readyz").await.json().await.unwrap();
        body["tasks"].as_array().unwrap().iter().any(|t| {
            t["name"] == "mapping-watch"
                && t["detail"].as_str().unwrap_or("").contains("mapping.toml:")
        })
    })
    .await;
    let metrics = kit.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("presence_sync_mapping_reloads_total{outcome=\"error\"} 1"),
        "{metrics}"
    );
    // The old mapping is in force: Lunch still maps to Away.
    kit.status("a1", "Lunch").await;
    until(|| async { kit.teams(&user).await == "Away/Away" }).await;

    // Good: Lunch now shows as Busy/InACall.
    let edited = original.replace(
        "Lunch = { teams = \"Away/Away\" }",
        "Lunch = { teams = \"Busy/InACall\" }",
    );
    assert_ne!(edited, original);
    std::fs::write(&mapping, &edited).unwrap();
    until(|| async { kit.teams(&user).await == "Busy/InACall" }).await;
    let metrics = kit.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("presence_sync_mapping_reloads_total{outcome=\"ok\"} 1"),
        "{metrics}"
    );
    kit.stop().await;
}
/// Re-PUT of an agent with its UPN while the directory is not (yet) read
/// after a restart must not unlink it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_put_by_upn_before_the_directory_is_read_keeps_the_link() {
    let mut kit = DaemonKit::start(2).await;
    let (_, upn) = kit.user(0);
    kit.link("a1", 0).await;
    kit.status("a1", "Lunch").await;
    until(|| async { !kit.agent("a1").await["teams"]["written"].is_null() }).await;
    // Graph unreachable after the restart: the directory cannot be read.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let text = std::fs::read_to_string(&kit.config_path).unwrap();
    std::fs::write(&kit.config_path, text.replace(&kit.sim.base_url, &dead_url)).unwrap();
    kit.restart().await;
    assert_eq!(kit.agent("a1").await["linked"], true);
    // The CC re-sends its roster, same UPN as before.
    let r = kit.put("/v1/agents/a1", json!({"teams_user": upn})).await;
    assert_eq!(r.status(), 200);
    let a = kit.agent("a1").await;
    assert_eq!(a["linked"], true, "re-PUT unlinked the agent: {a}");
    kit.stop().await;
}

/// Two agents waiting for the same UPN must not both be linked to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_waiting_agents_with_one_upn_are_not_both_linked() {
    let kit = DaemonKit::start(2).await;
    until(|| async { kit.get("/readyz").await.status() == 200 }).await;
    let upn = "late.agent@contoso.test";
    for id in ["w1", "w2"] {
        let r = kit
            .put(
                &format!("/v1/agents/{id}"),
                json!({"teams_user": upn, "auto_link": true}),
            )
            .await;
        assert_eq!(r.status(), 200);
    }
    let r = kit
        .http
        .post(format!("{}/_sim/users", kit.sim.base_url))
        .json(&json!({"userPrincipalName": upn, "displayName": "Late"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    until(|| async {
        kit.agent("w1").await["linked"] == true || kit.agent("w2").await["linked"] == true
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let w1 = kit.agent("w1").await;
    let w2 = kit.agent("w2").await;
    assert!(
        !(w1["linked"] == true && w2["linked"] == true),
        "both linked to one Teams user: {} / {}",
        w1["teams_user_id"],
        w2["teams_user_id"]
    );
    kit.stop().await;
}
