//! The Teams directory through the real daemon against the simulator:
//! `GET /v1/directory` search and filters, one user by id, bad parameters,
//! paging while presences change and users arrive, the slower presence tier
//! in `/readyz` and `/metrics`, and a restart that is ready from the stored
//! directory before Graph answers.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::daemon_kit::{DaemonKit, until};
use serde_json::{Value, json};

/// Appended after `[sync]`: the directory tier reads every second.
const DIRECTORY: &str = r#"echo_window = "10s"

[directory]
freshness = "1s"
"#;

const XSS: &str = "<img src=x onerror=alert(1)>";

async fn json_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn directory(kit: &DaemonKit, query: &str) -> Value {
    let (status, body) = json_of(kit.get(&format!("/v1/directory?{query}")).await).await;
    assert_eq!(status, 200, "{query}: {body}");
    body
}

fn only(id: &str) -> Vec<String> {
    vec![id.to_string()]
}

fn ids(page: &Value) -> Vec<String> {
    page["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_string())
        .collect()
}

/// Adds a user to the simulator's tenant; returns its object id.
async fn add_user(kit: &DaemonKit, body: Value) -> String {
    let r = kit
        .http
        .post(format!("{}/_sim/users", kit.sim.base_url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let user: Value = r.json().await.unwrap();
    user["id"].as_str().unwrap().to_string()
}

async fn total(kit: &DaemonKit) -> u64 {
    directory(kit, "").await["total"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_filters_and_one_user_with_presence_phone_and_agent() {
    let kit = DaemonKit::start_with(6, DIRECTORY).await;
    let hostile = add_user(
        &kit,
        json!({"displayName": XSS, "userPrincipalName": "odd@contoso.example",
               "department": "Façade Ops", "jobTitle": "<b>boss</b>",
               "businessPhones": ["+44 20 7946 0958"], "teams": true}),
    )
    .await;
    let jose = add_user(
        &kit,
        json!({"displayName": "José Müller", "userPrincipalName": "jose@contoso.example",
               "department": "Support", "businessPhones": ["+1 425 555 0100"],
               "mobilePhone": "0170 555", "teams": false}), // no Teams Phone
    )
    .await;
    until(|| async { total(&kit).await == 8 }).await;

    // Search: case, accents, UPN, mail and phone digits.
    assert_eq!(
        ids(&directory(&kit, "search=JOSE+MULLER").await),
        only(&jose)
    );
    assert_eq!(ids(&directory(&kit, "search=jos%C3%A9").await), only(&jose));
    assert_eq!(
        ids(&directory(&kit, "search=odd%40contoso").await),
        only(&hostile)
    );
    assert_eq!(
        ids(&directory(&kit, "search=%2B44+20+7946").await),
        only(&hostile)
    );
    assert_eq!(ids(&directory(&kit, "search=%3Cimg").await), only(&hostile));

    // The display name comes back exactly as the directory has it: the
    // board escapes it, the API does not rewrite it.
    let (status, user) = json_of(kit.get(&format!("/v1/directory/{hostile}")).await).await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["display_name"], XSS);
    assert_eq!(user["job_title"], "<b>boss</b>");
    assert_eq!(user["department"], "Façade Ops");
    assert_eq!(user["upn"], "odd@contoso.example");
    assert_eq!(user["business_phones"], json!(["+44 20 7946 0958"]));
    assert_eq!(
        user["direct_dial"], "+442079460958",
        "Teams Phone: business number"
    );
    assert_eq!(user["agent"], Value::Null);

    // Without Teams Phone the business number is not direct; the mobile
    // is not E.164: no number to dial.
    let (_, jose_user) = json_of(kit.get(&format!("/v1/directory/{jose}")).await).await;
    assert_eq!(jose_user["direct_dial"], Value::Null, "{jose_user}");
    assert!(ids(&directory(&kit, "has_phone=false&department=support").await).contains(&jose));
    assert!(!ids(&directory(&kit, "has_phone=true").await).contains(&jose));

    // Department: exact, case and accents aside; filters AND together.
    assert_eq!(
        ids(&directory(&kit, "department=facade+ops").await),
        only(&hostile)
    );
    assert_eq!(
        directory(&kit, "department=facade+ops&search=jose").await["total"],
        0
    );

    // Presence of a user who is no agent, read by the slower tier.
    kit.user_shows(&hostile, "Busy", "InACall").await;
    until(|| async {
        let (_, user) = json_of(kit.get(&format!("/v1/directory/{hostile}")).await).await;
        user["presence"] == json!({"availability": "Busy", "activity": "InACall"})
    })
    .await;
    let busy = directory(&kit, "presence=Busy,DoNotDisturb").await;
    assert!(ids(&busy).contains(&hostile), "{busy}");
    assert!(!ids(&directory(&kit, "presence=Away").await).contains(&hostile));
    kit.user_shows(&hostile, "Away", "Away").await;
    until(|| async {
        let (_, user) = json_of(kit.get(&format!("/v1/directory/{hostile}")).await).await;
        user["presence"]["availability"] == "Away" && user["presence_since"].is_string()
    })
    .await;

    // An agent shows as linked, with the presence its own poller reads.
    kit.link("a1", 0).await;
    let (user0, _) = kit.user(0);
    until(|| async {
        let (_, user) = json_of(kit.get(&format!("/v1/directory/{user0}")).await).await;
        user["agent"] == "a1"
    })
    .await;
    kit.user_shows(&user0, "DoNotDisturb", "Presenting").await;
    until(|| async {
        let (_, user) = json_of(kit.get(&format!("/v1/directory/{user0}")).await).await;
        user["presence"]["availability"] == "DoNotDisturb"
    })
    .await;

    // One user: any case; unknown is a 404, a malformed id a 400, both in
    // the error shape.
    let (status, _) = json_of(
        kit.get(&format!("/v1/directory/{}", hostile.to_uppercase()))
            .await,
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = json_of(
        kit.get("/v1/directory/00000000-0000-0000-0000-000000000000")
            .await,
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "not_found");
    let (status, body) = json_of(kit.get("/v1/directory/a%20b").await).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "user_id");

    // The slower tier in /readyz and /metrics.
    let (_, ready) = json_of(kit.get("/readyz").await).await;
    assert!(
        ready["directory_poll"]["users"].as_u64().unwrap() >= 6,
        "{ready}"
    );
    assert!(
        kit.metric(
            "presence_sync_graph_class_requests_total",
            &[("class", "directory")]
        )
        .await
            > 0.0
    );
    assert_eq!(
        kit.metric("presence_sync_directory_users", &[("state", "listed")])
            .await,
        8.0,
        "every simulated user has Teams"
    );
    kit.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_are_400_naming_the_field_and_the_token_is_needed() {
    let kit = DaemonKit::start_with(2, DIRECTORY).await;
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=ten", "limit"),
        ("cursor=not-a-cursor", "cursor"),
        ("presence=Sleeping", "presence"),
        ("presence=Busy,,Away", "presence"),
        ("has_phone=maybe", "has_phone"),
        ("colour=red", "colour"),
        ("limit=5&limit=6", "limit"),
        ("search=%FF", "search"),
    ] {
        let (status, body) = json_of(kit.get(&format!("/v1/directory?{query}")).await).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["code"], "invalid_query", "{query}");
        assert_eq!(body["error"]["field"], field, "{query}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(field)),
            "{query}: {body}"
        );
    }
    // Empty values are no filter: a form may send every parameter.
    let (status, _) = json_of(
        kit.get("/v1/directory?search=&presence=&department=&has_phone=&limit=&cursor=")
            .await,
    )
    .await;
    assert_eq!(status, 200);
    let anonymous = kit
        .http
        .get(format!("{}/v1/directory", kit.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    kit.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_lists_everyone_once_while_presences_change_and_users_arrive() {
    let kit = DaemonKit::start_with(30, DIRECTORY).await;
    until(|| async { total(&kit).await == 30 }).await;
    let everyone: BTreeSet<String> = kit.sim.users().into_iter().map(|(id, _)| id).collect();
    for round in 0..3 {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let query = match &cursor {
                Some(c) => format!("limit=4&cursor={c}"),
                None => "limit=4".to_string(),
            };
            let page = directory(&kit, &query).await;
            assert!(page["users"].as_array().unwrap().len() <= 4);
            seen.extend(ids(&page));
            pages += 1;
            // Between pages: presences change, and a user arrives.
            let users = kit.sim.users();
            for (n, (id, _)) in users.iter().enumerate().skip(pages % 5).step_by(5) {
                let (a, b) = if (n + pages + round) % 2 == 0 {
                    ("Busy", "InACall")
                } else {
                    ("Away", "Away")
                };
                kit.user_shows(id, a, b).await;
            }
            if pages == 3 {
                add_user(&kit, json!({"teams": true})).await;
            }
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => break,
            }
        }
        let unique: BTreeSet<&String> = seen.iter().collect();
        assert_eq!(
            unique.len(),
            seen.len(),
            "round {round}: a user listed twice"
        );
        for id in &everyone {
            assert!(seen.contains(id), "round {round}: {id} skipped");
        }
    }
    kit.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_is_ready_and_links_from_the_stored_directory_before_graph_answers() {
    let mut kit = DaemonKit::start_with(5, DIRECTORY).await;
    until(|| async { total(&kit).await == 5 }).await;
    until(|| async { kit.get("/readyz").await.status().as_u16() == 200 }).await;
    let (user3, upn3) = kit.user(3);
    let (_, before) = json_of(kit.get(&format!("/v1/directory/{user3}")).await).await;

    // Graph slow to answer: the full read after the restart takes seconds.
    kit.faults(json!({"latency_ms": 4000})).await;
    let daemon = kit.daemon.take().unwrap();
    assert_eq!(
        daemon.shutdown().await,
        presence_sync::daemon::Exit::Stopped
    );
    let started = Instant::now();
    kit.boot().await;
    until(|| async { kit.get("/readyz").await.status().as_u16() == 200 }).await;
    let ready_after = started.elapsed();
    let (_, ready) = json_of(kit.get("/readyz").await).await;
    let graph = ready["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "graph")
        .unwrap()
        .clone();
    assert!(
        ready_after < Duration::from_secs(3),
        "ready after {ready_after:?}: {ready}"
    );
    assert!(
        graph["detail"]
            .as_str()
            .is_some_and(|d| d.contains("stored directory")),
        "{graph}"
    );
    // Linking by UPN works from the stored records, before Graph answers.
    let r = kit
        .put("/v1/agents/late", json!({"teams_user": upn3}))
        .await;
    assert_eq!(r.status().as_u16(), 200, "{:?}", r.text().await);
    let agent = kit.agent("late").await;
    assert_eq!(agent["linked"], true, "{agent}");
    // The listing serves the stored users (names come with the read).
    let (status, stored) = json_of(kit.get(&format!("/v1/directory/{user3}")).await).await;
    assert_eq!(status, 200);
    assert_eq!(stored["upn"], before["upn"]);
    assert_eq!(stored["direct_dial"], before["direct_dial"]);
    assert_eq!(total(&kit).await, 5);

    // Graph answers again: the full read brings the names back.
    kit.faults(json!({"latency_ms": 0})).await;
    until(|| async {
        let (_, user) = json_of(kit.get(&format!("/v1/directory/{user3}")).await).await;
        user["display_name"] == before["display_name"] && user["agent"] == "late"
    })
    .await;
    kit.stop().await;
}

/// A scope by group membership: only the group's members are listed and
/// read by the slower tier; an unknown group is named in `/v1/health`
/// until it exists; a membership change shows after the next refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scope_by_group_lists_and_reads_its_members_only_and_follows_membership() {
    const GROUP: &str = "2f1c8a4e-7b0d-4c1e-9a57-3d6f0b8e21c4";
    let sync = format!("{DIRECTORY}scope = {{ groups = [\"{GROUP}\"] }}\n");
    let kit = DaemonKit::start_with(6, &sync).await;
    let users: Vec<String> = (0..6).map(|n| kit.user(n).0).collect();

    // The group does not exist yet: the directory task says which one.
    until(|| async {
        let (_, health) = json_of(kit.get("/v1/health").await).await;
        health.to_string().contains(GROUP) && health.to_string().contains("404")
    })
    .await;
    let (_, ready) = json_of(kit.get("/readyz").await).await;
    assert!(!ready.to_string().contains(GROUP), "{ready}");
    assert!(
        ready["permissions"]["needed"]
            .as_array()
            .is_some_and(|n| n.contains(&json!("GroupMember.Read.All"))),
        "{ready}"
    );
    assert_eq!(total(&kit).await, 0, "nobody is in scope yet");

    let put_group = |members: Vec<String>| {
        let http = kit.http.clone();
        let url = format!("{}/_sim/groups", kit.sim.base_url);
        async move {
            let r = http
                .post(url)
                .json(&json!({"id": GROUP, "members": members}))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{}", r.status());
        }
    };
    put_group(vec![users[0].clone(), users[1].clone()]).await;

    // Its members are listed and their presence read; nobody else.
    until(|| async {
        let page = directory(&kit, "").await;
        let members: BTreeSet<String> = ids(&page).into_iter().collect();
        members == users[..2].iter().map(|u| u.to_lowercase()).collect()
            && page["users"]
                .as_array()
                .unwrap()
                .iter()
                .all(|u| !u["presence"].is_null())
    })
    .await;
    let (_, ready) = json_of(kit.get("/readyz").await).await;
    assert_eq!(ready["directory_poll"]["users"], 2, "{ready}");
    let (status, _) = json_of(kit.get(&format!("/v1/directory/{}", users[3])).await).await;
    assert_eq!(status, 404, "not a member: not listed");

    // Membership changes: in at the next refresh, the one who left out.
    put_group(vec![users[1].clone(), users[4].clone()]).await;
    until(|| async {
        let page = directory(&kit, "").await;
        let members: BTreeSet<String> = ids(&page).into_iter().collect();
        members == [users[1].to_lowercase(), users[4].to_lowercase()].into()
            && page["users"]
                .as_array()
                .unwrap()
                .iter()
                .all(|u| !u["presence"].is_null())
    })
    .await;
    let (_, ready) = json_of(kit.get("/readyz").await).await;
    assert_eq!(ready["directory_poll"]["users"], 2, "{ready}");
    kit.stop().await;
}
