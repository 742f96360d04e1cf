//! The Graph simulator over HTTP, as a Graph client sees it: loopback only,
//! a manual clock so fades and expiries take no real time.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::sim_kit::{GRAPH_SCOPE, Kit, graph_error, options};
use presence_sync::sim::SimOptions;
use reqwest::StatusCode;
use serde_json::{Value, json};

const MIN: Duration = Duration::from_secs(60);

#[tokio::test]
async fn token_flow_and_every_token_error() {
    let kit = Kit::start(options()).await;
    let sim = &kit.sim;
    let good = [
        ("grant_type", "client_credentials"),
        ("client_id", sim.client_id.as_str()),
        ("client_secret", sim.client_secret.as_str()),
        ("scope", GRAPH_SCOPE),
    ];
    let ok = kit.token_request(&sim.tenant_id, &good).await;
    assert_eq!(ok.status(), StatusCode::OK);
    let body: Value = ok.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);
    assert!(body["access_token"].as_str().unwrap().len() >= 40);
    // The tenant's domain works in place of its id.
    let by_domain = kit.token_request(&sim.tenant_domain, &good).await;
    assert_eq!(by_domain.status(), StatusCode::OK);

    let with = |name: &'static str, value: &'static str| {
        let mut form: Vec<(&str, &str)> =
            good.iter().filter(|(k, _)| *k != name).copied().collect();
        if !value.is_empty() {
            form.push((name, value));
        }
        form
    };
    // (tenant in the URL, form, status, OAuth error, AADSTS code)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16, &'a str, u64);
    let cases: Vec<Case> = vec![
        (
            sim.tenant_id.as_str(),
            with("client_secret", "wrong"),
            401,
            "invalid_client",
            7000215,
        ),
        (
            sim.tenant_id.as_str(),
            with("client_id", "00000000-0000-4000-8000-000000000000"),
            400,
            "unauthorized_client",
            700016,
        ),
        (
            sim.tenant_id.as_str(),
            with("scope", "https://foo.microsoft.com/.default"),
            400,
            "invalid_scope",
            70011,
        ),
        (
            sim.tenant_id.as_str(),
            with("scope", ""),
            400,
            "invalid_request",
            900144,
        ),
        (
            sim.tenant_id.as_str(),
            with("client_secret", ""),
            401,
            "invalid_client",
            7000216,
        ),
        (
            sim.tenant_id.as_str(),
            with("grant_type", "password"),
            400,
            "unsupported_grant_type",
            70003,
        ),
        (
            "other.example",
            good.to_vec(),
            400,
            "invalid_request",
            90002,
        ),
    ];
    for (tenant, form, status, error, code) in cases {
        let response = kit.token_request(tenant, &form).await;
        assert_eq!(response.status().as_u16(), status, "{error} {code}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], error);
        assert_eq!(body["error_codes"], json!([code]));
        let description = body["error_description"].as_str().unwrap();
        assert!(
            description.starts_with(&format!("AADSTS{code}:")),
            "{description}"
        );
        for field in ["timestamp", "trace_id", "correlation_id"] {
            assert!(body[field].is_string(), "{field} in {body}");
        }
    }
    kit.stop().await;
}

#[tokio::test]
async fn graph_calls_need_a_valid_token_and_echo_request_ids() {
    let kit = Kit::start(options()).await;
    let url = kit.url("/v1.0/users");
    let none = kit.http.get(&url).send().await.unwrap();
    assert_eq!(
        graph_error(none, StatusCode::UNAUTHORIZED).await,
        "InvalidAuthenticationToken"
    );
    let bad = kit
        .http
        .get(&url)
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(
        graph_error(bad, StatusCode::UNAUTHORIZED).await,
        "InvalidAuthenticationToken"
    );

    let ok = kit
        .http
        .get(&url)
        .bearer_auth(&kit.token)
        .header("client-request-id", "7a1e2d3c-0000-4000-8000-00000000abcd")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(
        ok.headers()["client-request-id"],
        "7a1e2d3c-0000-4000-8000-00000000abcd"
    );
    let request_id = ok.headers()["request-id"].to_str().unwrap().to_string();
    assert_eq!(request_id.len(), 36);
    // Without one, Graph still answers with a client-request-id.
    let plain = kit.get("/users").await;
    assert!(plain.headers().contains_key("client-request-id"));
    assert_ne!(plain.headers()["request-id"].to_str().unwrap(), request_id);
    kit.stop().await;
}

#[tokio::test]
async fn tokens_expire_after_their_lifetime_and_on_demand() {
    let kit = Kit::start(SimOptions {
        token_lifetime: Duration::from_secs(60),
        ..options()
    })
    .await;
    let response = kit
        .token_request(
            &kit.sim.tenant_id,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &kit.sim.client_id),
                ("client_secret", &kit.sim.client_secret),
                ("scope", GRAPH_SCOPE),
            ],
        )
        .await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["expires_in"], 60);
    assert_eq!(kit.get("/users").await.status(), StatusCode::OK);
    kit.sim.advance(Duration::from_secs(59));
    assert_eq!(kit.get("/users").await.status(), StatusCode::OK);
    kit.sim.advance(Duration::from_secs(1));
    let expired = kit.get("/users").await;
    assert!(expired.headers().contains_key("www-authenticate"));
    assert_eq!(
        graph_error(expired, StatusCode::UNAUTHORIZED).await,
        "InvalidAuthenticationToken"
    );

    let mut kit = kit;
    kit.token = kit.fetch_token().await;
    assert_eq!(kit.get("/users").await.status(), StatusCode::OK);
    let faults = kit
        .control("/faults", &json!({"expire_tokens": true}))
        .await;
    assert_eq!(faults.status(), StatusCode::OK);
    assert_eq!(kit.get("/users").await.status(), StatusCode::UNAUTHORIZED);
    kit.token = kit.fetch_token().await;
    assert_eq!(kit.get("/users").await.status(), StatusCode::OK);

    // An expired secret is its own AADSTS code, so admins get the right fix.
    let on = kit
        .control("/faults", &json!({"secret_expired": true}))
        .await;
    assert_eq!(on.status(), StatusCode::OK);
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", kit.sim.client_id.as_str()),
        ("client_secret", kit.sim.client_secret.as_str()),
        ("scope", GRAPH_SCOPE),
    ];
    let refused = kit.token_request(&kit.sim.tenant_id, &form).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error_codes"], json!([7000222]));
    kit.control("/faults", &json!({"secret_expired": false}))
        .await;
    assert_eq!(
        kit.token_request(&kit.sim.tenant_id, &form).await.status(),
        StatusCode::OK
    );
    kit.stop().await;
}

/// Roles as admin consent grants them: tokens carry them in `roles`,
/// calls they do not allow get Graph's 403 bodies (and spend no budget),
/// and a grant through `/_sim/roles` shows in the next token.
#[tokio::test]
async fn calls_need_the_granted_roles_and_a_grant_takes_effect_at_the_next_token() {
    use presence_sync::graph::permissions::{Granted, granted_roles};
    let mut kit = Kit::start(SimOptions {
        roles: vec!["Presence.Read.All".into()],
        ..options()
    })
    .await;
    assert_eq!(
        granted_roles(&kit.token),
        Granted::Roles(["Presence.Read.All".to_string()].into())
    );
    let user = kit.sim.user_ids()[0].clone();
    assert_eq!(
        kit.get(&format!("/users/{user}/presence")).await.status(),
        StatusCode::OK
    );
    let users = kit.get("/users").await;
    let body: Value = {
        assert_eq!(users.status(), StatusCode::FORBIDDEN);
        users.json().await.unwrap()
    };
    assert_eq!(body["error"]["code"], "Authorization_RequestDenied");
    assert_eq!(
        body["error"]["message"],
        "Insufficient privileges to complete the operation."
    );
    assert!(body["error"]["innerError"]["request-id"].is_string());
    let set = json!({
        "sessionId": kit.sim.client_id,
        "availability": "Busy",
        "activity": "InACall",
        "expirationDuration": "PT1H",
    });
    let path = format!("/users/{user}/presence/setPresence");
    assert_eq!(
        graph_error(kit.post(&path, &set).await, StatusCode::FORBIDDEN).await,
        "Forbidden"
    );

    let granted = kit
        .control(
            "/roles",
            &json!({"grant": ["Presence.ReadWrite.All", "User.Read.All"]}),
        )
        .await;
    assert_eq!(granted.status(), StatusCode::OK);
    let body: Value = granted.json().await.unwrap();
    assert_eq!(
        body["roles"],
        json!([
            "Presence.Read.All",
            "Presence.ReadWrite.All",
            "User.Read.All"
        ])
    );
    // The token in hand keeps its roles; the next one has the grant.
    assert_eq!(kit.post(&path, &set).await.status(), StatusCode::FORBIDDEN);
    kit.token = kit.fetch_token().await;
    assert_eq!(kit.post(&path, &set).await.status(), StatusCode::OK);
    assert_eq!(kit.get("/users").await.status(), StatusCode::OK);
    assert_eq!(kit.sim.answered("setPresence", 403), 2);

    // Revoked, and none at all: a token without the `roles` claim.
    kit.control("/roles", &json!({"revoke": ["Presence.ReadWrite.All"]}))
        .await;
    kit.token = kit.fetch_token().await;
    assert_eq!(kit.post(&path, &set).await.status(), StatusCode::FORBIDDEN);
    kit.control("/roles", &json!({"roles": []})).await;
    kit.token = kit.fetch_token().await;
    assert_eq!(
        granted_roles(&kit.token),
        Granted::Roles(Default::default())
    );
    let bad = kit
        .control("/roles", &json!({"roles": "User.Read.All"}))
        .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let typo = kit.control("/roles", &json!({"grants": []})).await;
    assert_eq!(typo.status(), StatusCode::BAD_REQUEST);
    // A user's fields by Graph's names only: a `upn` is not a UPN.
    let users = kit.sim.user_ids().len();
    let typo = kit
        .control("/users", &json!({"upn": "svc-presence-1@contoso.test"}))
        .await;
    assert_eq!(typo.status(), StatusCode::BAD_REQUEST);
    let body: Value = typo.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("userPrincipalName"),
        "{body}"
    );
    assert_eq!(kit.sim.user_ids().len(), users, "nobody was added");
    kit.stop().await;
}

#[tokio::test]
async fn set_presence_follows_the_documented_rules() {
    let kit = Kit::start(options()).await;
    let id = kit.user(0);
    assert_eq!(kit.presence(&id).await, "Offline/Offline");

    let ok = kit.set_presence(&id, "Busy", "InACall", "PT1H").await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert!(ok.bytes().await.unwrap().is_empty(), "200 with no body");
    assert_eq!(kit.presence(&id).await, "Busy/InACall");

    for (availability, activity) in [
        ("Busy", "InAMeeting"),
        ("Busy", "Busy"),
        ("Offline", "Offline"),
        ("Available", "Away"),
    ] {
        let refused = kit.set_presence(&id, availability, activity, "PT1H").await;
        assert_eq!(
            graph_error(refused, StatusCode::BAD_REQUEST).await,
            "BadRequest"
        );
    }
    for expiry in ["PT4M", "PT4H1M", "soon"] {
        let refused = kit.set_presence(&id, "Away", "Away", expiry).await;
        assert_eq!(
            graph_error(refused, StatusCode::BAD_REQUEST).await,
            "BadRequest"
        );
    }
    // The session id must be the caller's app id.
    let foreign = kit
        .post(
            &format!("/users/{id}/presence/setPresence"),
            &json!({"sessionId": "00000000-0000-4000-8000-000000000001", "availability": "Away", "activity": "Away"}),
        )
        .await;
    assert_eq!(
        graph_error(foreign, StatusCode::BAD_REQUEST).await,
        "BadRequest"
    );
    let unknown = kit
        .set_presence(
            "00000000-0000-4000-8000-000000000002",
            "Away",
            "Away",
            "PT1H",
        )
        .await;
    assert_eq!(
        graph_error(unknown, StatusCode::NOT_FOUND).await,
        "Request_ResourceNotFound"
    );
    let garbage = kit
        .http
        .post(kit.url(&format!("/v1.0/users/{id}/presence/setPresence")))
        .bearer_auth(&kit.token)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(
        graph_error(garbage, StatusCode::BAD_REQUEST).await,
        "BadRequest"
    );

    // clearPresence: 200, then 404 for the session that is gone.
    let clear = json!({"sessionId": kit.sim.client_id});
    let path = format!("/users/{id}/presence/clearPresence");
    assert_eq!(kit.post(&path, &clear).await.status(), StatusCode::OK);
    assert_eq!(kit.presence(&id).await, "Offline/Offline");
    assert_eq!(
        graph_error(kit.post(&path, &clear).await, StatusCode::NOT_FOUND).await,
        "NotFound"
    );
    kit.stop().await;
}

#[tokio::test]
async fn available_fades_after_5_and_10_minutes_and_expires() {
    let kit = Kit::start(options()).await;
    let id = kit.user(1);
    assert_eq!(
        kit.set_presence(&id, "Available", "Available", "PT30M")
            .await
            .status(),
        StatusCode::OK
    );
    let first = kit.json(&format!("/users/{id}/presence")).await;
    assert_eq!(kit.presence(&id).await, "Available/Available");
    kit.sim.advance(5 * MIN);
    assert_eq!(kit.presence(&id).await, "Available/AvailableInactive");
    kit.sim.advance(5 * MIN);
    assert_eq!(kit.presence(&id).await, "Away/Away");
    let faded = kit.json(&format!("/users/{id}/presence")).await;
    assert!(
        faded["sequenceNumber"].as_str().unwrap() > first["sequenceNumber"].as_str().unwrap(),
        "sequenceNumber grows with the fade"
    );
    // A refresh brings it back; the expiry ends it.
    assert_eq!(
        kit.set_presence(&id, "Available", "Available", "PT5M")
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(kit.presence(&id).await, "Available/Available");
    kit.sim.advance(5 * MIN);
    assert_eq!(kit.presence(&id).await, "Offline/Offline");
    let clear = kit
        .post(
            &format!("/users/{id}/presence/clearPresence"),
            &json!({"sessionId": kit.sim.client_id}),
        )
        .await;
    assert_eq!(
        clear.status(),
        StatusCode::NOT_FOUND,
        "an expired session is gone"
    );
    kit.stop().await;
}

#[tokio::test]
async fn preferred_presence_overrides_sessions_while_one_exists() {
    let kit = Kit::start(options()).await;
    let id = kit.user(2);
    let set_preferred = |availability: &'static str, activity: &'static str| json!({"availability": availability, "activity": activity, "expirationDuration": "PT8H"});
    let path = format!("/users/{id}/presence/setUserPreferredPresence");
    assert_eq!(
        kit.post(&path, &set_preferred("DoNotDisturb", "DoNotDisturb"))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        kit.presence(&id).await,
        "Offline/Offline",
        "no session: preference not shown"
    );
    assert_eq!(
        kit.set_presence(&id, "Busy", "InACall", "PT1H")
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(kit.presence(&id).await, "DoNotDisturb/DoNotDisturb");
    let refused = kit.post(&path, &set_preferred("Busy", "InACall")).await;
    assert_eq!(
        graph_error(refused, StatusCode::BAD_REQUEST).await,
        "BadRequest"
    );
    // Without expirationDuration the documented default applies (a day for DND).
    let default = kit
        .post(
            &path,
            &json!({"availability": "DoNotDisturb", "activity": "DoNotDisturb"}),
        )
        .await;
    assert_eq!(default.status(), StatusCode::OK);
    let clear = format!("/users/{id}/presence/clearUserPreferredPresence");
    assert_eq!(kit.post(&clear, &json!({})).await.status(), StatusCode::OK);
    assert_eq!(kit.presence(&id).await, "Busy/InACall");
    assert_eq!(
        kit.post(&clear, &json!({})).await.status(),
        StatusCode::OK,
        "clearing twice is fine"
    );

    // The user's own choice, via the control endpoint, hides our session too.
    let manual = kit
        .control(
            &format!("/users/{id}/preferred"),
            &json!({"availability": "Away", "activity": "Away"}),
        )
        .await;
    assert_eq!(manual.status(), StatusCode::OK);
    let shown: Value = manual.json().await.unwrap();
    assert_eq!(shown["availability"], "Away");
    assert_eq!(kit.presence(&id).await, "Away/Away");
    let cleared = kit
        .control(&format!("/users/{id}/preferred"), &Value::Null)
        .await;
    assert_eq!(cleared.status(), StatusCode::OK);
    assert_eq!(kit.presence(&id).await, "Busy/InACall");
    kit.stop().await;
}

#[tokio::test]
async fn the_users_own_client_session_aggregates_with_ours() {
    let kit = Kit::start(options()).await;
    let id = kit.user(3);
    let client = kit
        .control(
            &format!("/users/{id}/presence"),
            &json!({"availability": "Busy", "activity": "InAMeeting"}),
        )
        .await;
    assert_eq!(client.status(), StatusCode::OK);
    assert_eq!(kit.presence(&id).await, "Busy/InAMeeting");
    kit.set_presence(&id, "Available", "Available", "PT1H")
        .await;
    assert_eq!(
        kit.presence(&id).await,
        "Busy/InAMeeting",
        "Busy beats Available"
    );
    kit.set_presence(&id, "DoNotDisturb", "Presenting", "PT1H")
        .await;
    assert_eq!(
        kit.presence(&id).await,
        "DoNotDisturb/Presenting",
        "DoNotDisturb beats Busy"
    );
    kit.control(
        &format!("/users/{id}/presence"),
        &json!({"availability": "Offline", "activity": "Offline"}),
    )
    .await;
    assert_eq!(kit.presence(&id).await, "DoNotDisturb/Presenting");
    let unknown = kit
        .control(
            "/users/nobody@contoso.test/presence",
            &json!({"availability": "Busy", "activity": "Busy"}),
        )
        .await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    // By UPN works on Graph's path too.
    let upn = kit.json(&format!("/users/{id}")).await["userPrincipalName"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(kit.presence(&upn).await, "DoNotDisturb/Presenting");
    kit.stop().await;
}

#[tokio::test]
async fn get_presences_by_user_id_batches_up_to_650() {
    let kit = Kit::start(options()).await;
    let ids = kit.sim.user_ids();
    kit.set_presence(&ids[0], "Busy", "InACall", "PT1H").await;
    let unknown = "00000000-0000-4000-8000-00000000beef";
    let body = json!({"ids": [ids[0], ids[1], unknown]});
    let response = kit
        .post("/communications/getPresencesByUserId", &body)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let value: Value = response.json().await.unwrap();
    let got: Vec<(String, String)> = value["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().into(),
                p["availability"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (ids[0].clone(), "Busy".into()),
            (ids[1].clone(), "Offline".into())
        ],
        "unknown ids are left out"
    );

    let many = |n: usize| json!({"ids": (0..n).map(|i| format!("00000000-0000-4000-8000-{i:012x}")).collect::<Vec<_>>()});
    assert_eq!(
        kit.post("/communications/getPresencesByUserId", &many(650))
            .await
            .status(),
        StatusCode::OK
    );
    let too_many = kit
        .post("/communications/getPresencesByUserId", &many(651))
        .await;
    assert_eq!(
        graph_error(too_many, StatusCode::BAD_REQUEST).await,
        "BadRequest"
    );
    let malformed = kit
        .post(
            "/communications/getPresencesByUserId",
            &json!({"ids": ["not-a-guid"]}),
        )
        .await;
    assert_eq!(
        graph_error(malformed, StatusCode::BAD_REQUEST).await,
        "BadRequest"
    );
    let missing = kit
        .post("/communications/getPresencesByUserId", &json!({}))
        .await;
    assert_eq!(
        graph_error(missing, StatusCode::BAD_REQUEST).await,
        "BadRequest"
    );

    let single = kit
        .json(&format!("/communications/presences/{}", ids[0]))
        .await;
    assert_eq!(single["value"][0]["activity"], "InACall");
    kit.stop().await;
}

#[tokio::test]
async fn past_the_budget_calls_get_429_with_retry_after() {
    let kit = Kit::start(SimOptions {
        budget: Some(5),
        ..options()
    })
    .await;
    for _ in 0..5 {
        assert_eq!(kit.get("/users").await.status(), StatusCode::OK);
    }
    kit.sim.advance(Duration::from_millis(2500));
    let refused = kit.get("/users").await;
    let retry: f64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((27.0..=27.5).contains(&retry), "Retry-After {retry}");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "TooManyRequests");
    assert_eq!(body["error"]["innerError"]["status"], "429");
    // The token endpoint is Entra's, not Graph's: not throttled.
    kit.fetch_token().await;
    assert_eq!(kit.sim.stats().throttled, 1);
    kit.sim.advance(Duration::from_secs(28));
    assert_eq!(kit.get("/users").await.status(), StatusCode::OK);

    // A new budget via faults; null lifts it.
    kit.control("/faults", &json!({"throttle_budget": 0})).await;
    assert_eq!(
        kit.get("/users").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    kit.control("/faults", &json!({"throttle_budget": null}))
        .await;
    assert_eq!(kit.get("/users").await.status(), StatusCode::OK);
    kit.stop().await;
}

#[tokio::test]
async fn faults_inject_errors_and_latency() {
    let kit = Kit::start(options()).await;
    let on = kit.control("/faults", &json!({"error_rate": 1.0})).await;
    assert_eq!(on.status(), StatusCode::OK);
    let mut codes = HashSet::new();
    for _ in 0..20 {
        let response = kit.get("/users").await;
        let status = response.status();
        assert!(
            status == StatusCode::INTERNAL_SERVER_ERROR
                || status == StatusCode::SERVICE_UNAVAILABLE
        );
        codes.insert(graph_error(response, status).await);
    }
    assert_eq!(
        codes,
        HashSet::from([
            "generalException".to_string(),
            "serviceNotAvailable".to_string()
        ])
    );
    assert_eq!(kit.sim.stats().faults_injected, 20);

    kit.control("/faults", &json!({"error_rate": 0.0, "latency_ms": 150}))
        .await;
    let started = Instant::now();
    assert_eq!(kit.get("/users").await.status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(150));
    kit.control("/faults", &json!({"latency_ms": 0})).await;

    for bad in [
        json!({"error_rate": 2}),
        json!({"latency": 5}),
        json!({"expire_tokens": "yes"}),
    ] {
        let refused = kit.control("/faults", &bad).await;
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    kit.stop().await;
}

#[tokio::test]
async fn users_page_with_top_and_select() {
    let kit = Kit::start(SimOptions {
        users: 25,
        ..options()
    })
    .await;
    let mut seen = HashSet::new();
    let mut page = kit
        .json("/users?$top=10&$select=id,userPrincipalName,assignedPlans")
        .await;
    let mut pages = 1;
    loop {
        for user in page["value"].as_array().unwrap() {
            assert!(
                user["userPrincipalName"]
                    .as_str()
                    .unwrap()
                    .ends_with("@contoso.test")
            );
            assert!(user["assignedPlans"].is_array());
            assert!(user.get("displayName").is_none(), "only what was selected");
            seen.insert(user["id"].as_str().unwrap().to_string());
        }
        let Some(next) = page["@odata.nextLink"].as_str() else {
            break;
        };
        let response = kit.get_link(next).await;
        assert_eq!(response.status(), StatusCode::OK);
        page = response.json().await.unwrap();
        pages += 1;
    }
    assert_eq!((pages, seen.len()), (3, 25));

    let all = kit.json("/users").await;
    let first = &all["value"][0];
    for field in [
        "id",
        "displayName",
        "mail",
        "userPrincipalName",
        "businessPhones",
        "mobilePhone",
    ] {
        assert!(first.get(field).is_some(), "default select has {field}");
    }
    assert!(
        first.get("assignedPlans").is_none(),
        "assignedPlans only when selected"
    );
    let too_big = kit.get("/users?$top=1000").await;
    assert_eq!(
        graph_error(too_big, StatusCode::BAD_REQUEST).await,
        "BadRequest"
    );
    let unknown = kit.get("/users?$select=id,shoeSize").await;
    assert_eq!(
        graph_error(unknown, StatusCode::BAD_REQUEST).await,
        "BadRequest"
    );
    kit.stop().await;
}

/// Follows nextLinks from `first` to the deltaLink; returns the users' ids
/// and the deltaLink.
async fn delta_round(kit: &Kit, first: reqwest::Response) -> (Vec<String>, String) {
    let mut ids = Vec::new();
    let mut response = first;
    loop {
        assert_eq!(response.status(), StatusCode::OK);
        let page: Value = response.json().await.unwrap();
        for user in page["value"].as_array().unwrap() {
            ids.push(user["id"].as_str().unwrap().to_string());
        }
        if let Some(delta) = page["@odata.deltaLink"].as_str() {
            assert!(page.get("@odata.nextLink").is_none());
            return (ids, delta.to_string());
        }
        let next = page["@odata.nextLink"]
            .as_str()
            .expect("nextLink or deltaLink")
            .to_string();
        response = kit.get_link(&next).await;
    }
}

#[tokio::test]
async fn delta_returns_everyone_then_only_new_users() {
    let kit = Kit::start(SimOptions {
        users: 7,
        ..options()
    })
    .await;
    let first = kit
        .http
        .get(kit.url("/v1.0/users/delta?$select=displayName,mail"))
        .bearer_auth(&kit.token)
        .header("Prefer", "odata.maxpagesize=3")
        .send()
        .await
        .unwrap();
    let (ids, delta_link) = delta_round(&kit, first).await;
    assert_eq!(ids, kit.sim.user_ids(), "7 users over 3 pages, in order");

    let (none, delta_link) = delta_round(&kit, kit.get_link(&delta_link).await).await;
    assert!(none.is_empty(), "no change, no users");

    let added = kit
        .control(
            "/users",
            &json!({"displayName": "Nia Okafor", "userPrincipalName": "nia.okafor@contoso.test"}),
        )
        .await;
    assert_eq!(added.status(), StatusCode::CREATED);
    let added: Value = added.json().await.unwrap();
    let response = kit.get_link(&delta_link).await;
    let page: Value = response.json().await.unwrap();
    let users = page["value"].as_array().unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0]["id"], added["id"]);
    assert_eq!(users[0]["displayName"], "Nia Okafor");
    assert!(
        users[0].get("jobTitle").is_none(),
        "the round keeps its $select"
    );

    let duplicate = kit
        .control(
            "/users",
            &json!({"userPrincipalName": "NIA.OKAFOR@contoso.test"}),
        )
        .await;
    assert_eq!(duplicate.status(), StatusCode::CONFLICT);

    let stale = kit.get("/users/delta?$deltatoken=0123456789abcdef").await;
    assert_eq!(
        graph_error(stale, StatusCode::GONE).await,
        "syncStateNotFound"
    );
    // Delta tokens last 7 days.
    let fresh = page["@odata.deltaLink"].as_str().unwrap().to_string();
    kit.sim.advance(Duration::from_secs(7 * 24 * 3600));
    let mut kit = kit;
    kit.token = kit.fetch_token().await;
    assert_eq!(
        graph_error(kit.get_link(&fresh).await, StatusCode::GONE).await,
        "syncStateNotFound"
    );
    let latest = kit.json("/users/delta?$deltatoken=latest").await;
    assert_eq!(latest["value"], json!([]));
    assert!(latest["@odata.deltaLink"].is_string());
    kit.stop().await;
}

#[tokio::test]
async fn stats_count_by_endpoint_and_status() {
    let kit = Kit::start(SimOptions {
        budget: Some(2),
        ..options()
    })
    .await;
    kit.get("/users").await;
    kit.get("/users").await;
    kit.get("/users").await;
    let stats: Value = kit
        .http
        .get(kit.url("/_sim/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        stats["requests"]["GET /v1.0/users"],
        json!({"200": 2, "429": 1})
    );
    assert_eq!(
        stats["requests"]["POST /{tenant}/oauth2/v2.0/token"],
        json!({"200": 1})
    );
    assert_eq!(stats["throttled"], 1);
    assert_eq!(stats["total"], 4);
    kit.stop().await;
}

async fn snapshot(kit: &Kit) -> Vec<String> {
    let ids = kit.sim.user_ids();
    let body = kit
        .post("/communications/getPresencesByUserId", &json!({"ids": ids}))
        .await;
    let value: Value = body.json().await.unwrap();
    value["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{}/{}",
                p["availability"].as_str().unwrap(),
                p["activity"].as_str().unwrap()
            )
        })
        .collect()
}

#[tokio::test]
async fn scripted_users_drift_reproducibly() {
    let scripted = || SimOptions {
        users: 30,
        scripted: true,
        script_rate: 30.0,
        seed: 11,
        ..options()
    };
    let a = Kit::start(scripted()).await;
    let b = Kit::start(scripted()).await;
    let start = snapshot(&a).await;
    a.sim.advance(30 * MIN);
    b.sim.advance(30 * MIN);
    let later_a = snapshot(&a).await;
    let later_b = snapshot(&b).await;
    assert_eq!(later_a, later_b, "same seed, same day");
    assert_ne!(start, later_a, "users moved");
    assert!(
        later_a.iter().collect::<HashSet<_>>().len() >= 3,
        "{later_a:?}"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn shutdown_is_prompt_with_pooled_connections_open() {
    let kit = Kit::start(options()).await;
    kit.get("/users").await;
    let started = Instant::now();
    let Kit { sim, http, .. } = kit;
    sim.shutdown().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    drop(http);
}
