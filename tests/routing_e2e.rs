//! The routing core through the real daemon: queues from the config,
//! contacts offered to agents whose CC status and Teams presence allow it,
//! accept/decline/complete/abandon, overflow to a Teams user's direct-dial
//! number, `routing.*` events, bad input, and routing state across a restart.

mod common;

use common::daemon_kit::{DaemonKit, until};
use presence_sync::events::kind;
use serde_json::{Value, json};

/// Appended after `[sync]`: the queues these tests use.
const ROUTING: &str = r#"echo_window = "10s"

[routing.queues.sales]
strategy = "longest-idle"
offer_timeout = "30s"
wrap_up = "1s"
on_contact_status = "On contact"
after_contact_status = "Available"

[routing.queues.vip]
strategy = "top-down"
skills = { english = 50 }
priority = 5

[routing.queues.night]
strategy = "round-robin"
max_wait = "1s"
overflow_teams_users = ["nobody@contoso.example", "user2@contoso.example"]
"#;

async fn json_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Links an agent to user `n`, puts it in `queues`, and makes it Available.
async fn routable(kit: &DaemonKit, id: &str, n: usize, queues: Value) {
    let settings = json!({"queues": queues, "skills": {"english": 80}});
    kit.routable(id, n, settings).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_is_offered_accepted_and_completed_and_the_agent_shows_busy_in_teams() {
    let kit = DaemonKit::start_with(3, ROUTING).await;
    let mut events = kit.events(0).await;
    routable(&kit, "a1", 0, json!([{"queue": "sales"}])).await;
    let (user0, upn0) = kit.user(0);

    let (status, contact) = json_of(
        kit.post(
            "/v1/contacts",
            json!({"queue": "sales", "contact_id": "call-1", "data": {"caller": "+15550100"}}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{contact}");
    assert_eq!(contact["state"], "offered");
    assert_eq!(contact["agent"], "a1");

    let seen = events.until(|e| e.kind == kind::ROUTING_OFFERED).await;
    let offered = seen.last().unwrap();
    assert_eq!(offered.agent_id.as_deref(), Some("a1"));
    assert_eq!(offered.data["contact"], "call-1");
    assert_eq!(offered.data["teams_upn"], upn0.as_str());
    assert!(
        offered.data["phone"]
            .as_str()
            .is_some_and(|p| !p.is_empty())
    );
    assert_eq!(offered.data["data"]["caller"], "+15550100");
    assert!(seen.iter().any(|e| e.kind == kind::ROUTING_QUEUED));

    // Reserved: not eligible, and why.
    let agent = kit.agent("a1").await;
    assert_eq!(agent["routing"]["offered"], "call-1");
    assert_eq!(agent["routing"]["eligible"], false);
    let because = agent["routing"]["not_eligible_because"].to_string();
    assert!(because.contains("reserved"), "{because}");

    // Accepting by another agent is refused; by a1 it makes a1 busy.
    let (status, body) = json_of(
        kit.post("/v1/contacts/call-1/accept", json!({"agent_id": "a2"}))
            .await,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("wrong_agent"))
    );
    let (status, body) = json_of(kit.post("/v1/contacts/call-1/accept", json!({})).await).await;
    assert_eq!(
        (status, body["state"].as_str()),
        (200, Some("accepted")),
        "{body}"
    );
    events.until(|e| e.kind == kind::ROUTING_ACCEPTED).await;
    let requested = events.until(|e| e.kind == kind::CC_STATUS_REQUESTED).await;
    assert_eq!(requested.last().unwrap().data["kind"], "routing");
    assert_eq!(kit.agent("a1").await["cc"]["status"], "On contact");
    until(|| async { kit.teams(&user0).await == "Busy/InACall" }).await;

    let (status, body) = json_of(kit.post("/v1/contacts/call-1/complete", json!({})).await).await;
    assert_eq!(
        (status, body["state"].as_str()),
        (200, Some("completed")),
        "{body}"
    );
    events.until(|e| e.kind == kind::ROUTING_COMPLETED).await;
    assert_eq!(kit.agent("a1").await["cc"]["status"], "Available");

    let (_, queue) = json_of(kit.get("/v1/queues/sales").await).await;
    assert_eq!(queue["totals"]["offered"], 1);
    assert_eq!(queue["totals"]["accepted"], 1);
    assert_eq!(queue["totals"]["completed"], 1);
    // Served today, as the status board shows it.
    assert_eq!(queue["completed_today"], 1);
    assert_eq!(queue["strategy"], "longest-idle");
    let (_, list) = json_of(kit.get("/v1/queues").await).await;
    assert_eq!(list["queues"].as_array().map(Vec::len), Some(3));
    kit.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_in_a_meeting_or_without_the_skill_is_not_offered_and_says_why() {
    let kit = DaemonKit::start_with(3, ROUTING).await;
    routable(&kit, "a1", 0, json!([{"queue": "sales"}])).await;
    let (user0, _) = kit.user(0);
    // Teams shows a meeting: the profile blocks routing.
    kit.user_shows(&user0, "Busy", "InAMeeting").await;
    until(|| async { kit.agent("a1").await["routing"]["eligible"] == json!(false) }).await;
    let (_, contact) = json_of(
        kit.post(
            "/v1/contacts",
            json!({"queue": "sales", "contact_id": "c1"}),
        )
        .await,
    )
    .await;
    assert_eq!(contact["state"], "waiting");
    assert_eq!(contact["place_in_queue"], 1);
    let because = kit.agent("a1").await["routing"]["not_eligible_because"].to_string();
    assert!(because.contains("Teams shows"), "{because}");
    // The meeting ends: the waiting contact is offered.
    kit.user_shows(&user0, "Available", "Available").await;
    until(|| async {
        let (_, c) = json_of(kit.get("/v1/contacts/c1").await).await;
        c["state"] == "offered"
    })
    .await;

    // A contact needing a skill no agent has waits; the agent view names it.
    let (status, body) = json_of(
        kit.post(
            "/v1/contacts",
            json!({"queue": "sales", "contact_id": "c2", "skills": {"french": 60}}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, body["state"].as_str()),
        (201, Some("waiting")),
        "{body}"
    );
    kit.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overflow_to_teams_users_gives_the_direct_dial_number() {
    let kit = DaemonKit::start_with(4, ROUTING).await;
    let mut events = kit.events(0).await;
    let (_, upn2) = kit.user(2);
    // The directory is read once the daemon is ready.
    until(|| async { kit.get("/readyz").await.status() == 200 }).await;
    // The queue names the tenant's user: the config is edited and reloaded
    // (SIGHUP), which also shows queues are reloadable.
    let text = std::fs::read_to_string(&kit.config_path).unwrap();
    std::fs::write(
        &kit.config_path,
        text.replace("user2@contoso.example", &upn2),
    )
    .unwrap();
    kit.daemon.as_ref().unwrap().reload().await.unwrap();
    until(|| async {
        let (_, q) = json_of(kit.get("/v1/queues/night").await).await;
        q["overflow"]["teams_users"][1] == upn2.as_str()
    })
    .await;
    let (status, _) = json_of(
        kit.post(
            "/v1/contacts",
            json!({"queue": "night", "contact_id": "late"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201);
    let seen = events.until(|e| e.kind == kind::ROUTING_OVERFLOW).await;
    let overflow = &seen.last().unwrap().data;
    assert_eq!(overflow["contact"], "late");
    assert_eq!(overflow["from_queue"], "night");
    let users = overflow["teams_users"].as_array().unwrap();
    assert_eq!(
        users[0]["teams_user_id"],
        Value::Null,
        "not in the directory"
    );
    assert_eq!(users[1]["upn"], upn2.as_str());
    assert_eq!(overflow["number"], users[1]["phone"]);
    assert!(
        overflow["number"]
            .as_str()
            .is_some_and(|n| n.starts_with('+'))
    );
    let (_, c) = json_of(kit.get("/v1/contacts/late").await).await;
    assert_eq!(c["state"], "overflowed");
    kit.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_routing_input_gets_a_clear_4xx() {
    let kit = DaemonKit::start_with(2, ROUTING).await;
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "/v1/contacts",
            json!({"queue": "nope"}),
            422,
            "unknown_queue",
        ),
        (
            "/v1/contacts",
            json!({"queue": "sales", "colour": 1}),
            400,
            "",
        ),
        (
            "/v1/contacts",
            json!({"queue": "sales", "priority": 300}),
            400,
            "",
        ),
        (
            "/v1/contacts",
            json!({"queue": "sales", "skills": {"english": 101}}),
            422,
            "invalid",
        ),
        ("/v1/contacts/ghost/accept", json!({}), 404, "not_found"),
    ];
    for (path, body, status, code) in cases {
        let (got, answer) = json_of(kit.post(path, body.clone()).await).await;
        assert_eq!(got, status, "{path} {body}: {answer}");
        if !code.is_empty() {
            assert_eq!(answer["error"]["code"], code, "{answer}");
        }
    }
    let (status, _) = json_of(
        kit.post(
            "/v1/contacts",
            json!({"queue": "sales", "contact_id": "dup"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201);
    let (status, body) = json_of(
        kit.post(
            "/v1/contacts",
            json!({"queue": "sales", "contact_id": "dup"}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("contact_exists"))
    );
    // Waiting, so it cannot be accepted, declined or completed.
    for action in ["accept", "decline", "complete"] {
        let (status, body) = json_of(
            kit.post(&format!("/v1/contacts/dup/{action}"), json!({}))
                .await,
        )
        .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (409, Some("wrong_state")),
            "{action}"
        );
    }
    let (status, body) = json_of(kit.post("/v1/contacts/dup/abandon", json!({})).await).await;
    assert_eq!((status, body["state"].as_str()), (200, Some("abandoned")));
    let (status, _) = json_of(kit.post("/v1/contacts/dup/abandon", json!({})).await).await;
    assert_eq!(status, 409);
    assert_eq!(kit.get("/v1/queues/nope").await.status(), 404);
    assert_eq!(kit.get("/v1/contacts/nope").await.status(), 404);
    // Agents: unknown queues and impossible capacities.
    let (_, upn) = kit.user(0);
    for (body, field) in [
        (
            json!({"teams_user": upn, "queues": [{"queue": "salez"}]}),
            "queues[0].queue",
        ),
        (json!({"teams_user": upn, "capacity": 0}), "capacity"),
        (
            json!({"teams_user": upn, "queues": [{"queue": "sales"}, {"queue": "sales"}]}),
            "queues[1].queue",
        ),
    ] {
        let (status, answer) = json_of(kit.put("/v1/agents/a1", body).await).await;
        assert_eq!(status, 422, "{answer}");
        assert_eq!(answer["error"]["field"], field, "{answer}");
    }
    assert_eq!(
        kit.post("/v1/agents/ghost/resume", json!({}))
            .await
            .status(),
        404
    );
    kit.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_and_accepted_contacts_survive_a_restart() {
    let mut kit = DaemonKit::start_with(3, ROUTING).await;
    routable(&kit, "a1", 0, json!([{"queue": "sales"}])).await;
    for id in ["first", "second"] {
        let (status, _) = json_of(
            kit.post("/v1/contacts", json!({"queue": "sales", "contact_id": id}))
                .await,
        )
        .await;
        assert_eq!(status, 201);
    }
    let (status, _) = json_of(kit.post("/v1/contacts/first/accept", json!({})).await).await;
    assert_eq!(status, 200);
    kit.restart().await;
    let (_, first) = json_of(kit.get("/v1/contacts/first").await).await;
    assert_eq!(first["state"], "accepted");
    assert_eq!(first["agent"], "a1");
    let (_, second) = json_of(kit.get("/v1/contacts/second").await).await;
    assert_eq!(second["state"], "waiting");
    let (_, queue) = json_of(kit.get("/v1/queues/sales").await).await;
    assert_eq!(queue["waiting"], 1);
    assert_eq!(queue["totals"]["accepted"], 1);
    // The agent finishes its contact after the restart and takes the next.
    let (status, _) = json_of(kit.post("/v1/contacts/first/complete", json!({})).await).await;
    assert_eq!(status, 200);
    let (_, queue) = json_of(kit.get("/v1/queues/sales").await).await;
    assert_eq!(queue["completed_today"], 1, "{queue}");
    until(|| async {
        let (_, c) = json_of(kit.get("/v1/contacts/second").await).await;
        c["state"] == "offered"
    })
    .await;
    kit.stop().await;
}

/// Arbitrary bodies for the routing routes against the real router: never
/// a 5xx, errors always in the error shape, accepted contacts well formed.
#[test]
fn arbitrary_routing_input_never_answers_5xx() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestCaseError, TestRunner};

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let kit = runtime.block_on(async {
        let kit = DaemonKit::start_with(2, ROUTING).await;
        routable(&kit, "a1", 0, json!([{"queue": "sales"}, {"queue": "vip"}])).await;
        kit
    });
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (0u64..400).prop_map(|n| json!(n)),
        prop::sample::select(vec!["sales", "vip", "night", "nope", "", "c1", "a1"])
            .prop_map(|s| json!(s)),
        any::<String>().prop_map(Value::String),
    ];
    let value = leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,8}|english", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    let key = prop::sample::select(vec![
        "queue",
        "contact_id",
        "skills",
        "priority",
        "data",
        "agent_id",
        "colour",
    ]);
    let body = prop::collection::vec((key, value), 0..6).prop_map(|pairs| {
        Value::Object(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    });
    let route = prop::sample::select(vec!["", "/accept", "/decline", "/complete", "/abandon"]);
    let id = prop_oneof![Just("c1".to_string()), "[A-Za-z0-9%._-]{1,12}"];
    let mut runner = TestRunner::new(Config {
        cases: 128,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&(route, id, body), |(route, id, body)| {
        let path = if route.is_empty() {
            "/v1/contacts".to_string()
        } else {
            format!("/v1/contacts/{id}{route}")
        };
        let (status, text) = runtime
            .block_on(async {
                let r = kit.post(&path, body.clone()).await;
                let status = r.status().as_u16();
                Ok::<_, String>((status, r.text().await.map_err(|e| e.to_string())?))
            })
            .map_err(TestCaseError::fail)?;
        prop_assert!(status < 500, "{path} {body}: {status} {text}");
        let answer: Value = serde_json::from_str(&text)
            .map_err(|e| TestCaseError::fail(format!("{path}: not JSON: {e}: {text}")))?;
        if status >= 400 {
            prop_assert!(answer["error"]["code"].is_string(), "{path} {body}: {text}");
        } else {
            prop_assert!(answer["state"].is_string(), "{path} {body}: {text}");
        }
        Ok(())
    });
    runtime.block_on(kit.stop());
    if let Err(failure) = result {
        panic!("{failure}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_are_timed_in_the_metrics() {
    let kit = DaemonKit::start_with(2, ROUTING).await;
    let (status, _) = json_of(kit.post("/v1/contacts", json!({"queue": "sales"})).await).await;
    assert_eq!(status, 201);
    let text = kit.get("/metrics").await.text().await.unwrap();
    assert!(
        text.lines()
            .any(|l| l == "presence_sync_routing_decision_seconds_count 1"),
        "{text}"
    );
    assert!(text.lines().any(|l| l == "presence_sync_routing_waiting 1"));
    kit.stop().await;
}
