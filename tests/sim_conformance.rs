//! The simulator's responses against Microsoft's documented payloads in
//! `../shared/graph/examples/`: every field a documented example shows must
//! be in ours with the same JSON type (see `same_shape`).

mod common;

use common::shared::{shared_json, shared_path};
use common::sim_kit::{GRAPH_SCOPE, Kit, options};
use presence_sync::sim::SimOptions;
use reqwest::StatusCode;
use serde_json::{Value, json};

const EXAMPLES: &str = "graph/examples";

/// Differences between a documented example and our payload. Rules:
/// - every key of a documented object exists in ours (we may have more);
/// - values have the same JSON type; a documented `null` says only that the
///   field may be null, so any type of ours matches it;
/// - arrays are compared by their first element (a documented non-empty
///   array needs a non-empty one of ours).
fn same_shape(documented: &Value, ours: &Value, path: &str, problems: &mut Vec<String>) {
    match (documented, ours) {
        (Value::Null, _) => {}
        (Value::Object(doc), Value::Object(our)) => {
            for (key, doc_value) in doc {
                let at = format!("{path}.{key}");
                match our.get(key) {
                    Some(our_value) => same_shape(doc_value, our_value, &at, problems),
                    None => problems.push(format!("{at}: missing")),
                }
            }
        }
        (Value::Array(doc), Value::Array(our)) => match (doc.first(), our.first()) {
            (Some(d), Some(o)) => same_shape(d, o, &format!("{path}[0]"), problems),
            (Some(_), None) => problems.push(format!("{path}: documented non-empty, ours empty")),
            _ => {}
        },
        (Value::String(_), Value::String(_))
        | (Value::Number(_), Value::Number(_))
        | (Value::Bool(_), Value::Bool(_)) => {}
        (doc, our) => problems.push(format!(
            "{path}: documented {}, ours {}",
            kind(doc),
            kind(our)
        )),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn assert_same_shape(example: &str, documented: &Value, ours: &Value) {
    let mut problems = Vec::new();
    same_shape(documented, ours, "$", &mut problems);
    assert!(
        problems.is_empty(),
        "{example}: our payload differs from Microsoft's example:\n  {}\nours: {ours}",
        problems.join("\n  ")
    );
}

#[test]
fn the_comparer_catches_missing_fields_and_type_changes() {
    let doc = json!({"a": "x", "b": [{"c": 1}], "d": null});
    let mut problems = Vec::new();
    same_shape(
        &doc,
        &json!({"a": "y", "b": [{"c": 2}], "d": 5, "extra": true}),
        "$",
        &mut problems,
    );
    assert!(problems.is_empty(), "{problems:?}");
    same_shape(&doc, &json!({"a": 1, "b": [{}]}), "$", &mut problems);
    assert_eq!(
        problems,
        vec![
            "$.a: documented string, ours number",
            "$.b[0].c: missing",
            "$.d: missing"
        ]
    );
    problems.clear();
    same_shape(
        &doc,
        &json!({"a": "x", "b": [], "d": null}),
        "$",
        &mut problems,
    );
    assert_eq!(problems, vec!["$.b: documented non-empty, ours empty"]);
}

/// Loads `examples/<name>`, or `None` when `../shared` is absent (skipped).
fn example(name: &str) -> Option<Value> {
    shared_json(&format!("{EXAMPLES}/{name}"))
}

/// A simulator whose users have every documented field filled in.
async fn full_kit() -> Kit {
    let kit = Kit::start(SimOptions {
        users: 0,
        ..options()
    })
    .await;
    for (name, upn) in [
        ("Adele Vance", "adelev"),
        ("Alex Wilber", "alexw"),
        ("Megan Bowen", "meganb"),
    ] {
        let added = kit
            .control(
                "/users",
                &json!({
                    "displayName": name,
                    "userPrincipalName": format!("{upn}@contoso.test"),
                    "jobTitle": "Retail Manager",
                    "businessPhones": ["+1 425 555 0109"],
                    "mobilePhone": "+1 425 555 0199",
                }),
            )
            .await;
        assert_eq!(added.status(), StatusCode::CREATED);
    }
    kit
}

#[tokio::test]
async fn token_responses_match_entra() {
    if shared_path(EXAMPLES).is_none() {
        return;
    }
    let kit = full_kit().await;
    let Some(documented) = example("auth-v2-service__token-response.json") else {
        return;
    };
    let ok = kit
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
    assert_same_shape("token response", &documented, &ok.json().await.unwrap());

    let Some(documented) = example("entra-v2-oauth2-client-creds-grant-flow__error-response.json")
    else {
        return;
    };
    let refused = kit
        .token_request(
            &kit.sim.tenant_id,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &kit.sim.client_id),
                ("client_secret", &kit.sim.client_secret),
                ("scope", "https://foo.microsoft.com/.default"),
            ],
        )
        .await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let ours: Value = refused.json().await.unwrap();
    assert_same_shape("token error", &documented, &ours);
    assert_eq!(ours["error"], documented["error"]);
    assert_eq!(ours["error_codes"], documented["error_codes"]);
    kit.stop().await;
}

#[tokio::test]
async fn presence_responses_match_the_docs() {
    if shared_path(EXAMPLES).is_none() {
        return;
    }
    let kit = full_kit().await;
    let ids = kit.sim.user_ids();
    kit.set_presence(&ids[0], "DoNotDisturb", "Presenting", "PT1H")
        .await;
    let user_presence = kit.json(&format!("/users/{}/presence", ids[0])).await;
    for name in [
        "presence-get__example1-get-your-presence__response.json",
        "presence-get__example2-get-user-presence__response.json",
        "resource-presence__json-representation__template.json",
    ] {
        let Some(documented) = example(name) else {
            return;
        };
        assert_same_shape(name, &documented, &user_presence);
    }
    let name = "presence-get__example3-get-user-presences__response.json";
    let Some(documented) = example(name) else {
        return;
    };
    let communications = kit
        .json(&format!("/communications/presences/{}", ids[1]))
        .await;
    assert_same_shape(name, &documented, &communications);

    let name =
        "cloudcommunications-getpresencesbyuserid__get-presence-multiple-users__request.json";
    let Some(request) = example(name) else { return };
    // The documented request's ids are not ours; its shape is the request.
    assert!(request["ids"].is_array());
    let name =
        "cloudcommunications-getpresencesbyuserid__get-presence-multiple-users__response.json";
    let Some(documented) = example(name) else {
        return;
    };
    let response = kit
        .post(
            "/communications/getPresencesByUserId",
            &json!({"ids": [ids[0], ids[1]]}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_same_shape(name, &documented, &response.json().await.unwrap());
    kit.stop().await;
}

#[tokio::test]
async fn documented_write_requests_are_accepted() {
    if shared_path(EXAMPLES).is_none() {
        return;
    }
    let kit = full_kit().await;
    let id = kit.user(0);
    // The documented bodies, with our app id as the session (Graph requires it).
    let Some(mut set) = example("presence-setpresence__set-presence__request.json") else {
        return;
    };
    set["sessionId"] = json!(kit.sim.client_id);
    let response = kit
        .post(&format!("/users/{id}/presence/setPresence"), &set)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let Some(preferred) =
        example("presence-setuserpreferredpresence__setUserPreferredPresence__request.json")
    else {
        return;
    };
    let response = kit
        .post(
            &format!("/users/{id}/presence/setUserPreferredPresence"),
            &preferred,
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(kit.presence(&id).await, "DoNotDisturb/DoNotDisturb");
    let Some(mut clear) = example("presence-clearpresence__clear--presence__request.json") else {
        return;
    };
    clear["sessionId"] = json!(kit.sim.client_id);
    let response = kit
        .post(&format!("/users/{id}/presence/clearPresence"), &clear)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    kit.stop().await;
}

#[tokio::test]
async fn user_delta_pages_match_the_docs() {
    if shared_path(EXAMPLES).is_none() {
        return;
    }
    let kit = full_kit().await;
    let page = |select: &'static str| {
        let url = kit.url(&format!("/v1.0/users/delta{select}"));
        kit.http
            .get(url)
            .bearer_auth(&kit.token)
            .header("Prefer", "odata.maxpagesize=1")
            .send()
    };
    let Some(documented) = example("user-delta__example1-user_delta__response.json") else {
        return;
    };
    let ours: Value = page("").await.unwrap().json().await.unwrap();
    assert_same_shape("user delta example 1", &documented, &ours);

    let Some(documented) = example("user-delta__example2-user_delta_select__response.json") else {
        return;
    };
    let ours: Value = page("?$select=displayName,jobTitle,mobilePhone")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_same_shape("user delta example 2", &documented, &ours);

    let Some(documented) = example("user-delta__example3-user_delta_minimal__response.json") else {
        return;
    };
    let ours: Value = page("?$select=displayName,jobTitle")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_same_shape("user delta example 3", &documented, &ours);
    kit.stop().await;
}

#[tokio::test]
async fn error_bodies_match_the_docs() {
    if shared_path(EXAMPLES).is_none() {
        return;
    }
    let kit = Kit::start(SimOptions {
        budget: Some(1),
        ..options()
    })
    .await;
    let Some(documented) = example("errors__example-error-response.json") else {
        return;
    };
    let missing = kit.get("/users/00000000-0000-4000-8000-000000000000").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_same_shape(
        "error response",
        &documented,
        &missing.json().await.unwrap(),
    );

    let Some(documented) = example("throttling__sample-429-response__body.json") else {
        return;
    };
    let throttled = kit.get("/users").await;
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(throttled.headers().contains_key("retry-after"));
    let ours: Value = throttled.json().await.unwrap();
    assert_same_shape("429 body", &documented, &ours);
    assert_eq!(ours["error"]["code"], documented["error"]["code"]);
    kit.stop().await;
}

#[test]
fn a_missing_shared_path_skips_unless_required() {
    let required = std::env::var("PRESENCE_SYNC_REQUIRE_SHARED").as_deref() == Ok("1");
    let outcome = std::panic::catch_unwind(|| shared_path("graph/no-such-directory"));
    match outcome {
        Ok(found) => {
            assert!(!required, "must fail when PRESENCE_SYNC_REQUIRE_SHARED=1");
            assert!(found.is_none());
        }
        Err(_) => assert!(required, "must skip, not fail, by default"),
    }
}
