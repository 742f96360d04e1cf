//! Defects found by a new user and a hostile tester, each proven fixed
//! through the real daemon against the simulator: CC status reports on the
//! event stream, readiness that follows every Graph worker without leaking
//! tenant details, two agents waiting for one Teams user, `set_by: routing`,
//! and offers withdrawn from an agent that stops being eligible.

mod common;

use std::time::Duration;

use common::daemon_kit::{DaemonKit, PATIENCE, until};
use presence_sync::events::kind;
use serde_json::{Value, json};

/// Appended after `[sync]`: one queue that sets statuses on contacts.
const ROUTING: &str = r#"echo_window = "10s"

[routing.queues.sales]
strategy = "top-down"
offer_timeout = "60s"
wrap_up = "1s"
on_contact_status = "On contact"
after_contact_status = "Available"
"#;

async fn json_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// `/readyz` without a token, as a probe sees it.
async fn readyz(kit: &DaemonKit) -> (u16, String) {
    let r = kit
        .http
        .get(format!("{}/readyz", kit.base))
        .send()
        .await
        .expect("GET /readyz");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

/// Polls `/readyz` until `want` holds for its status and body; returns the body.
async fn readyz_until(
    kit: &DaemonKit,
    within: Duration,
    want: impl Fn(u16, &str) -> bool,
) -> String {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let (status, body) = readyz(kit).await;
        if want(status, &body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz did not change in time: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn graph_check(body: &str) -> Value {
    let v: Value = serde_json::from_str(body).expect("readyz JSON");
    v["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "graph"))
        .cloned()
        .unwrap_or(Value::Null)
}

fn assert_no_tenant_detail(kit: &DaemonKit, body: &str) {
    assert!(
        !body.contains(&kit.sim.client_id),
        "the open /readyz names the client id: {body}"
    );
    assert!(
        !body.contains(&kit.sim.tenant_id),
        "the open /readyz names the tenant: {body}"
    );
}

/// Links an agent to user `n` in the sales queue and makes it Available.
async fn routable(kit: &DaemonKit, id: &str, n: usize, position: u32) {
    let queues = json!([{"queue": "sales", "position": position}]);
    kit.routable(id, n, json!({ "queues": queues })).await;
}

// ---- item 4: cc.status_reported ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reported_cc_status_is_on_the_event_stream_with_who_set_it_and_when() {
    let kit = DaemonKit::start(2).await;
    kit.link("a1", 0).await;
    let mut events = kit.events(0).await;
    let before = chrono::Utc::now();
    assert_eq!(kit.status("a1", "Lunch").await.status(), 200);
    let seen = events
        .until(|e| e.kind == kind::CC_STATUS_REPORTED && e.agent_id.as_deref() == Some("a1"))
        .await;
    let first = seen.last().unwrap();
    assert_eq!(first.data["status"], "Lunch");
    assert_eq!(first.data["previous_status"], Value::Null);
    assert_eq!(first.data["set_by"], "agent");
    let at: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(first.data["at"].clone()).expect("`at` is a time");
    assert!(at >= before - chrono::Duration::seconds(1), "{at}");

    // Another status, then the same again (a retry: no event).
    assert_eq!(kit.status("a1", "Available").await.status(), 200);
    assert_eq!(kit.status("a1", "Available").await.status(), 200);
    assert_eq!(kit.status("a1", "Offline").await.status(), 200);
    let seen = events
        .until(|e| e.kind == kind::CC_STATUS_REPORTED && e.data["status"] == "Offline")
        .await;
    let reports: Vec<&presence_sync::events::Event> = seen
        .iter()
        .filter(|e| e.kind == kind::CC_STATUS_REPORTED)
        .collect();
    assert_eq!(
        reports.len(),
        2,
        "the retry is not reported again: {reports:#?}"
    );
    assert_eq!(reports[0].data["status"], "Available");
    assert_eq!(reports[0].data["previous_status"], "Lunch");
    assert!(reports[0].data["at"].is_string());
    assert_eq!(reports[1].data["previous_status"], "Available");
    kit.stop().await;
}

// ---- item 6: readiness follows every Graph worker ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_goes_503_within_seconds_of_graph_failing_names_the_workers_and_heals() {
    let kit = DaemonKit::start(3).await;
    kit.link("a1", 0).await;
    kit.link("a2", 1).await;
    let body = readyz_until(&kit, PATIENCE, |s, _| s == 200).await;
    assert_no_tenant_detail(&kit, &body);

    kit.faults(json!({"error_rate": 1.0})).await;
    // A CC status calls for a Teams write, which fails too.
    assert_eq!(kit.status("a1", "Lunch").await.status(), 200);
    let body = readyz_until(&kit, Duration::from_secs(15), |s, b| {
        s == 503
            && graph_check(b)["detail"]
                .as_str()
                .is_some_and(|d| d.contains("presence-poller"))
    })
    .await;
    let graph = graph_check(&body);
    assert_eq!(graph["ok"], false, "{body}");
    let detail = graph["detail"].as_str().unwrap();
    assert!(detail.starts_with("not usable"), "{detail}");
    assert!(
        detail.contains("Graph answered 50"),
        "says what failed: {detail}"
    );
    assert_no_tenant_detail(&kit, &body);
    let body = readyz_until(&kit, PATIENCE, |_, b| {
        graph_check(b)["detail"]
            .as_str()
            .is_some_and(|d| d.contains("presence-writer"))
    })
    .await;
    let v: Value = serde_json::from_str(&body).unwrap();
    let writer = v["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "presence-writer")
        .unwrap();
    assert_eq!(writer["state"], "degraded", "{body}");
    assert_no_tenant_detail(&kit, &body);

    kit.faults(json!({"error_rate": 0.0})).await;
    let body = readyz_until(&kit, PATIENCE, |s, _| s == 200).await;
    assert_eq!(graph_check(&body)["ok"], true, "{body}");
    kit.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_secret_makes_readyz_503_and_only_the_authenticated_view_names_the_app() {
    let kit = DaemonKit::start(3).await;
    kit.link("a1", 0).await;
    readyz_until(&kit, PATIENCE, |s, _| s == 200).await;

    kit.faults(json!({"secret_expired": true, "expire_tokens": true}))
        .await;
    let body = readyz_until(&kit, Duration::from_secs(15), |s, b| {
        s == 503
            && graph_check(b)["detail"]
                .as_str()
                .is_some_and(|d| d.contains("presence-poller"))
    })
    .await;
    let detail = graph_check(&body)["detail"].as_str().unwrap().to_string();
    assert!(detail.contains("client secret has expired"), "{detail}");
    assert!(detail.contains("AADSTS7000222"), "{detail}");
    assert_no_tenant_detail(&kit, &body);

    // Behind the token: Entra's own words and the app's identity.
    let r = kit.get("/v1/health").await;
    assert_eq!(r.status(), 503);
    let health: Value = r.json().await.unwrap();
    assert_eq!(health["graph"]["client_id"], kit.sim.client_id.as_str());
    assert_eq!(health["graph"]["tenant_id"], kit.sim.tenant_id.as_str());
    assert_eq!(health["graph"]["auth"], "client_secret");
    assert!(
        health.to_string().contains(&kit.sim.client_id),
        "Entra's description names the app: {health}"
    );
    let unauthenticated = kit
        .http
        .get(format!("{}/v1/health", kit.base))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);

    // Entra is not asked again before the refusal's hold-off (30 s) ends.
    kit.faults(json!({"secret_expired": false})).await;
    readyz_until(&kit, 2 * PATIENCE, |s, _| s == 200).await;
    assert_eq!(kit.get("/v1/health").await.status(), 200);
    kit.stop().await;
}

// ---- item 7: two agents waiting for one Teams user ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_that_loses_an_auto_link_race_says_who_holds_the_user_and_links_once_freed() {
    let kit = DaemonKit::start(1).await;
    let upn = "late.joiner@contoso.example";
    for id in ["w1", "w2"] {
        let r = kit
            .put(
                &format!("/v1/agents/{id}"),
                json!({"teams_user": upn, "auto_link": true}),
            )
            .await;
        assert_eq!(r.status(), 200, "{:?}", r.text().await);
    }
    let mut events = kit.events(0).await;
    let r = kit
        .http
        .post(format!("{}/_sim/users", kit.sim.base_url))
        .json(&json!({"userPrincipalName": upn, "displayName": "Late"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let seen = events.until(|e| e.kind == kind::AGENT_LINK_CONFLICT).await;
    let conflict = seen.last().unwrap();
    let loser = conflict
        .agent_id
        .clone()
        .expect("the event names its agent");
    let holder = conflict.data["held_by"].as_str().unwrap().to_string();
    assert_ne!(loser, holder);
    assert!(seen.iter().any(|e| e.kind == kind::AGENT_LINKED
        && e.agent_id.as_deref() == Some(holder.as_str())));
    assert_eq!(conflict.data["teams_user"], upn);

    let view = kit.agent(&loser).await;
    assert_eq!(view["linked"], false);
    assert_eq!(view["link_conflict"]["held_by"], holder.as_str());
    assert_eq!(
        view["link_conflict"]["teams_user_id"],
        kit.agent(&holder).await["teams_user_id"]
    );
    let because = view["not_routable_because"].to_string();
    assert!(because.contains(&format!("agent `{holder}`")), "{because}");
    assert_eq!(kit.agent(&holder).await["link_conflict"], Value::Null);

    // The holder goes: the one waiting takes the user.
    let r = kit
        .http
        .delete(format!("{}/v1/agents/{holder}", kit.base))
        .bearer_auth(&kit.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    until(|| async { kit.agent(&loser).await["linked"] == true }).await;
    assert_eq!(kit.agent(&loser).await["link_conflict"], Value::Null);
    kit.stop().await;
}

// ---- item 11: set_by routing ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_routing_applies_say_set_by_routing() {
    let kit = DaemonKit::start_with(2, ROUTING).await;
    routable(&kit, "a1", 0, 1).await;
    assert_eq!(kit.agent("a1").await["cc"]["set_by"], "agent");
    let mut events = kit.events(0).await;
    let (status, body) = json_of(
        kit.post(
            "/v1/contacts",
            json!({"queue": "sales", "contact_id": "c1"}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, body["agent"].as_str()),
        (201, Some("a1")),
        "{body}"
    );
    let (status, body) = json_of(kit.post("/v1/contacts/c1/accept", json!({})).await).await;
    assert_eq!(status, 200, "{body}");
    let agent = kit.agent("a1").await;
    assert_eq!(agent["cc"]["status"], "On contact");
    assert_eq!(agent["cc"]["set_by"], "routing");
    let seen = events
        .until(|e| e.kind == kind::CC_STATUS_REPORTED && e.data["status"] == "On contact")
        .await;
    assert_eq!(seen.last().unwrap().data["set_by"], "routing");

    let (status, body) = json_of(kit.post("/v1/contacts/c1/complete", json!({})).await).await;
    assert_eq!(status, 200, "{body}");
    let agent = kit.agent("a1").await;
    assert_eq!(agent["cc"]["status"], "Available");
    assert_eq!(agent["cc"]["set_by"], "routing");
    // The CC echoing what routing asked for changes nothing; the agent's
    // own next status is the agent's.
    assert_eq!(kit.status("a1", "Available").await.status(), 200);
    assert_eq!(kit.agent("a1").await["cc"]["set_by"], "routing");
    assert_eq!(kit.status("a1", "Lunch").await.status(), 200);
    assert_eq!(kit.agent("a1").await["cc"]["set_by"], "agent");
    kit.stop().await;
}

// ---- item 14: offers withdrawn from an agent no longer eligible ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_is_withdrawn_when_its_agent_goes_to_lunch_and_goes_to_the_next_agent() {
    let kit = DaemonKit::start_with(3, ROUTING).await;
    routable(&kit, "a1", 0, 1).await;
    routable(&kit, "a2", 1, 2).await;
    let mut events = kit.events(0).await;
    let (status, body) = json_of(
        kit.post(
            "/v1/contacts",
            json!({"queue": "sales", "contact_id": "c1"}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, body["agent"].as_str()),
        (201, Some("a1")),
        "{body}"
    );

    assert_eq!(kit.status("a1", "Lunch").await.status(), 200);
    let seen = events
        .until(|e| e.kind == kind::ROUTING_OFFERED && e.agent_id.as_deref() == Some("a2"))
        .await;
    let withdrawn = seen
        .iter()
        .find(|e| e.kind == kind::ROUTING_OFFER_WITHDRAWN)
        .expect("the offer to a1 is withdrawn before a2 gets it");
    assert_eq!(withdrawn.agent_id.as_deref(), Some("a1"));
    assert_eq!(withdrawn.data["contact"], "c1");
    assert_eq!(withdrawn.data["reason"], "cc_status_not_routable");
    assert!(
        !seen
            .iter()
            .any(|e| e.kind == kind::ROUTING_RONA || e.kind == kind::ROUTING_DECLINED),
        "{seen:#?}"
    );
    let (_, contact) = json_of(kit.get("/v1/contacts/c1").await).await;
    assert_eq!(contact["state"], "offered");
    assert_eq!(contact["agent"], "a2");
    let a1 = kit.agent("a1").await;
    assert_eq!(a1["routing"]["misses"], 0, "no miss counted: {a1}");
    assert_eq!(a1["routing"]["offered"], Value::Null);
    assert_eq!(a1["routing"]["backoff_until"], Value::Null);
    let (_, queue) = json_of(kit.get("/v1/queues/sales").await).await;
    assert_eq!(queue["totals"]["rona"], 0, "{queue}");
    assert_eq!(queue["totals"]["declined"], 0, "{queue}");
    kit.stop().await;
}
