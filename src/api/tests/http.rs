use reqwest::Method;
use serde_json::{Value, json};

use super::super::ROUTES;
use super::super::model::{AgentList, AgentOut, ErrorBody, Readiness};
use super::super::routes::METRICS_CONTENT_TYPE;
use super::{Api, Fake, STATUSES, TOKEN, error_of, start, start_gated};

const LIMIT: usize = 4096;

/// A request for a listed route that reaches its handler.
fn concrete(path: &str) -> String {
    path.replace("{agent_id}", "agent-1")
        .replace("{user_id}", "user-1")
}

fn body_for(path: &str) -> Option<&'static str> {
    if path.ends_with("/status") {
        Some(r#"{"status":"Available"}"#)
    } else if path.starts_with("/v1/agents/") {
        Some(r#"{"teams_user":"a@contoso.example"}"#)
    } else {
        None
    }
}

#[tokio::test]
async fn health_is_open_and_ok() {
    let api = start(Fake::new(64), LIMIT).await;
    let response = api.client.get(api.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"status": "ok"})
    );
}

#[tokio::test]
async fn v1_requires_the_bearer_token() {
    let api = start(Fake::new(64), LIMIT).await;

    let missing = api.client.get(api.url("/v1/agents")).send().await.unwrap();
    let challenge = missing.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    let (status, body) = error_of(missing).await;
    assert_eq!((status, body.error.code.as_str()), (401, "unauthorized"));

    let wrong = api
        .client
        .get(api.url("/v1/agents"))
        .bearer_auth("test-token-7f3b")
        .send()
        .await
        .unwrap();
    let challenge = wrong.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        challenge.starts_with("Bearer") && challenge.contains("invalid_token"),
        "{challenge}"
    );
    assert_eq!(error_of(wrong).await.0, 401);

    let other_scheme = api
        .client
        .get(api.url("/v1/agents"))
        .basic_auth("cc", Some(super::TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(other_scheme).await.0, 401);

    let right = api.get("/v1/agents").await;
    assert_eq!(right.status(), 200);
    assert_eq!(right.json::<AgentList>().await.unwrap().agents, vec![]);
}

/// Every listed route reaches a handler (neither 404 nor 405), and only the
/// open ones answer without a token.
#[tokio::test]
async fn every_listed_route_exists_and_only_open_ones_skip_auth() {
    let api = start(Fake::new(64), LIMIT).await;
    for route in ROUTES {
        let path = &route.path;
        api.create_agent("agent-1").await;
        let method = Method::from_bytes(route.verb.as_str().as_bytes()).unwrap();
        let url = concrete(path);
        let with_body = |request: reqwest::RequestBuilder| match body_for(path) {
            Some(body) if method == Method::PUT => request
                .header("content-type", "application/json")
                .body(body),
            _ => request,
        };

        let response = with_body(api.authed(method.clone(), &url))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        // The board's stream lasts: its answer is its head.
        let text = if *path == "/v1/board/stream" {
            assert_eq!(status, 200, "{path}");
            assert!(
                response.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("text/event-stream")
            );
            String::new()
        } else {
            response.text().await.unwrap()
        };
        // A 404 from the handler (no such queue or contact in the fake) is
        // fine; the router's own 404 says "no route".
        assert!(
            !(status == 404 && text.contains("no route")) && status != 405 && status < 500,
            "{method} {path}: {status} {text}"
        );
        if *path == "/v1/events" {
            // Not a WebSocket upgrade, but the route answered.
            let error: super::super::model::ErrorBody = serde_json::from_str(&text).unwrap();
            assert_eq!(error.error.code, "websocket_required");
        } else if path.starts_with("/v1/queues/")
            || path.starts_with("/v1/contacts")
            || path.starts_with("/v1/directory/")
        {
            // The fake has no queues or contacts: its answer comes back in
            // the error shape (the daemon's routing is tested end to end).
            let error: super::super::model::ErrorBody = serde_json::from_str(&text).unwrap();
            assert!(
                status >= 400,
                "{method} {path}: {status} {}",
                error.error.message
            );
        } else {
            assert!(status < 300, "{method} {path}: {status} {text}");
        }

        let anonymous = with_body(api.client.request(method.clone(), api.url(&url)))
            .send()
            .await
            .unwrap();
        if route.is_open() {
            assert_ne!(anonymous.status(), 401, "{method} {path} should be open");
        } else {
            assert_eq!(error_of(anonymous).await.0, 401, "{method} {path}");
        }
    }
}

#[tokio::test]
async fn other_methods_on_listed_paths_are_405_in_the_error_shape() {
    let api = start(Fake::new(64), LIMIT).await;
    let listed: Vec<(&str, &str)> = ROUTES
        .iter()
        .map(|route| (route.verb.as_str(), route.path))
        .collect();
    let mut paths: Vec<&str> = listed.iter().map(|(_, path)| *path).collect();
    paths.dedup();
    for path in paths {
        for method in ["GET", "PUT", "POST", "DELETE", "PATCH"] {
            if listed.contains(&(method, path)) {
                continue;
            }
            let response = api
                .authed(
                    Method::from_bytes(method.as_bytes()).unwrap(),
                    &concrete(path),
                )
                .send()
                .await
                .unwrap();
            let allow = response
                .headers()
                .get("allow")
                .map(|v| v.to_str().unwrap().to_string());
            let (status, body) = error_of(response).await;
            assert_eq!(
                (status, body.error.code.as_str()),
                (405, "method_not_allowed"),
                "{method} {path}"
            );
            let allow = allow.unwrap_or_else(|| panic!("{method} {path}: no Allow header"));
            for (allowed, _) in listed.iter().filter(|(_, p)| *p == path) {
                assert!(allow.contains(allowed), "{method} {path}: Allow {allow}");
            }
        }
    }
}

#[tokio::test]
async fn unknown_routes_are_404_in_the_error_shape() {
    let api = start(Fake::new(64), LIMIT).await;
    // `/` is the status board.
    for path in [
        "/board",
        "/board/nope.js",
        "/v1",
        "/v2/agents",
        "/v1/agents/a/b/c",
        "/v1/agent",
        "/metrics/x",
    ] {
        let (status, body) = error_of(api.get(path).await).await;
        assert_eq!(
            (status, body.error.code.as_str()),
            (404, "not_found"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn invalid_agent_ids_are_400_naming_agent_id() {
    let api = start(Fake::new(64), LIMIT).await;
    let too_long = "a".repeat(129);
    for id in [
        "a%20b",
        "a%2Fb",
        "%C3%A9",
        "a%0Ab",
        too_long.as_str(),
        "a%FF",
        "*",
        "a+b",
    ] {
        for (method, path) in [
            (Method::GET, format!("/v1/agents/{id}")),
            (Method::DELETE, format!("/v1/agents/{id}")),
        ] {
            let (status, body) = error_of(api.authed(method, &path).send().await.unwrap()).await;
            assert_eq!(status, 400, "{path}");
            assert_eq!(body.error.field.as_deref(), Some("agent_id"), "{path}");
        }
        for (path, body) in [
            (format!("/v1/agents/{id}"), r#"{"teams_user":"u"}"#),
            (
                format!("/v1/agents/{id}/status"),
                r#"{"status":"Available"}"#,
            ),
        ] {
            let (status, error) = error_of(api.put_json(&path, body).await).await;
            assert_eq!(
                (status, error.error.field.as_deref()),
                (400, Some("agent_id")),
                "{path}"
            );
        }
    }
    // The longest id is fine.
    api.create_agent(&"a".repeat(128)).await;
}

#[tokio::test]
async fn bad_bodies_are_400_naming_the_field() {
    let api = start(Fake::new(64), LIMIT).await;
    api.create_agent("agent-1").await;
    let cases = [
        ("/v1/agents/agent-1", "{", "invalid_json", None),
        ("/v1/agents/agent-1", "", "invalid_json", None),
        (
            "/v1/agents/agent-1",
            r#"{"teams_user":"u","colour":"red"}"#,
            "unknown_field",
            Some("colour"),
        ),
        (
            "/v1/agents/agent-1",
            r#"{"display_name":"Ann"}"#,
            "missing_field",
            Some("teams_user"),
        ),
        (
            "/v1/agents/agent-1",
            r#"{"teams_user":"u","skills":{"fr":"high"}}"#,
            "invalid_type",
            Some("skills.fr"),
        ),
        (
            "/v1/agents/agent-1",
            r#"{"teams_user":"u","groups":["a",{}]}"#,
            "invalid_type",
            Some("groups[1]"),
        ),
        (
            "/v1/agents/agent-1",
            r#"{"teams_user":"u","auto_link":"yes"}"#,
            "invalid_type",
            Some("auto_link"),
        ),
        (
            "/v1/agents/agent-1/status",
            r#"{"status":"Available","extra":1}"#,
            "unknown_field",
            Some("extra"),
        ),
        (
            "/v1/agents/agent-1/status",
            r#"{}"#,
            "missing_field",
            Some("status"),
        ),
        (
            "/v1/agents/agent-1/status",
            r#"{"status":"Busy","at":"noon"}"#,
            "invalid_value",
            Some("at"),
        ),
        (
            "/v1/agents/agent-1/status",
            r#"{"status":7}"#,
            "invalid_type",
            Some("status"),
        ),
    ];
    for (path, body, code, field) in cases {
        let (status, error) = error_of(api.put_json(path, body).await).await;
        assert_eq!(
            (
                status,
                error.error.code.as_str(),
                error.error.field.as_deref()
            ),
            (400, code, field),
            "{path} {body}: {}",
            error.error.message
        );
    }
}

#[tokio::test]
async fn bodies_not_sent_as_json_are_415() {
    let api = start(Fake::new(64), LIMIT).await;
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut request = api
            .authed(Method::PUT, "/v1/agents/agent-1")
            .body(r#"{"teams_user":"u"}"#);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let (status, body) = error_of(request.send().await.unwrap()).await;
        assert_eq!(
            (status, body.error.code.as_str()),
            (415, "unsupported_media_type"),
            "{content_type:?}"
        );
    }
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let api = start(Fake::new(64), LIMIT).await;
    // Padded with group names, which are short but may be many.
    let groups = |bytes: usize| vec!["x".repeat(60); bytes / 63].join("\",\"");
    let big = format!(
        r#"{{"teams_user":"u","groups":["{}"]}}"#,
        groups(LIMIT + 63)
    );
    let (status, body) = error_of(api.put_json("/v1/agents/agent-1", &big).await).await;
    assert_eq!(
        (status, body.error.code.as_str()),
        (413, "payload_too_large")
    );
    // Just under the limit is fine.
    let fits = format!(
        r#"{{"teams_user":"u","groups":["{}"]}}"#,
        groups(LIMIT - 64)
    );
    assert!(
        fits.len() < LIMIT && fits.len() > LIMIT - 128,
        "{}",
        fits.len()
    );
    assert_eq!(
        api.put_json("/v1/agents/agent-1", &fits).await.status(),
        200
    );
}

#[tokio::test]
async fn service_errors_keep_their_status_and_field() {
    let api = start(Fake::new(64), LIMIT).await;
    let (status, body) = error_of(
        api.put_json("/v1/agents/ghost/status", r#"{"status":"Available"}"#)
            .await,
    )
    .await;
    assert_eq!((status, body.error.code.as_str()), (404, "not_found"));

    api.create_agent("agent-1").await;
    let (status, body) = error_of(
        api.put_json("/v1/agents/agent-1/status", r#"{"status":"Dancing"}"#)
            .await,
    )
    .await;
    assert_eq!(
        (
            status,
            body.error.code.as_str(),
            body.error.field.as_deref()
        ),
        (422, "unknown_status", Some("status"))
    );

    let (status, body) = error_of(
        api.put_json(
            "/v1/agents/agent-1",
            r#"{"teams_user":"u","skills":{"fr":101}}"#,
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, body.error.field.as_deref()),
        (422, Some("skills.fr"))
    );

    let (status, _) = error_of(
        api.authed(Method::DELETE, "/v1/agents/ghost")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn agents_round_trip() {
    let api = start(Fake::new(64), LIMIT).await;
    let response = api
        .put_json(
            "/v1/agents/agent-1",
            r#"{"teams_user":"a@contoso.example","groups":["sales"],"skills":{"fr":80},"profile":"sales"}"#,
        )
        .await;
    assert_eq!(response.status(), 200);
    let created: AgentOut = response.json().await.unwrap();
    assert_eq!(
        (created.groups.clone(), created.profile.as_str()),
        (vec!["sales".to_string()], "sales")
    );

    let reported = api
        .put_json(
            "/v1/agents/agent-1/status",
            &format!(r#"{{"status":"{}"}}"#, STATUSES[2]),
        )
        .await;
    assert_eq!(reported.status(), 200);
    let reported: AgentOut = reported.json().await.unwrap();
    assert_eq!(reported.cc.status.as_deref(), Some(STATUSES[2]));

    let one: AgentOut = api.get("/v1/agents/agent-1").await.json().await.unwrap();
    assert_eq!(one, reported);
    let all: AgentList = api.get("/v1/agents").await.json().await.unwrap();
    assert_eq!(all.agents, vec![reported]);

    let deleted = api
        .authed(Method::DELETE, "/v1/agents/agent-1")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(error_of(api.get("/v1/agents/agent-1").await).await.0, 404);
}

#[tokio::test]
async fn readyz_is_503_when_not_ready() {
    let api = start(Fake::new(64), LIMIT).await;
    let ready = api.client.get(api.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    assert!(ready.json::<Readiness>().await.unwrap().ready);

    api.fake.set_ready(false);
    let not_ready = api.client.get(api.url("/readyz")).send().await.unwrap();
    assert_eq!(not_ready.status(), 503);
    let body: Readiness = not_ready.json().await.unwrap();
    assert!(!body.ready && !body.checks[0].ok);
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let api = start(Fake::new(64), LIMIT).await;
    let response = api.client.get(api.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], METRICS_CONTENT_TYPE);
    let text = response.text().await.unwrap();
    assert!(
        text.contains("\npresence_sync_fake_up 1\n# HELP presence_sync_ws_clients "),
        "{text}"
    );
    assert!(
        text.contains("\n# TYPE presence_sync_ws_clients gauge\n"),
        "{text}"
    );
    assert!(text.ends_with("\npresence_sync_ws_clients 0\n"), "{text}");
}

#[tokio::test]
async fn events_needs_a_websocket_and_a_numeric_since() {
    let api = start(Fake::new(64), LIMIT).await;
    let (status, body) = error_of(api.get("/v1/events").await).await;
    assert_eq!(
        (status, body.error.code.as_str()),
        (400, "websocket_required")
    );
    for since in ["-1", "abc", "", "1.5", "99999999999999999999999"] {
        let (status, body) = error_of(api.get(&format!("/v1/events?since={since}")).await).await;
        assert_eq!(
            (status, body.error.field.as_deref()),
            (400, Some("since")),
            "{since}"
        );
    }
}

#[tokio::test]
async fn openapi_document_is_served_without_a_token() {
    let api = start(Fake::new(64), LIMIT).await;
    let response = api
        .client
        .get(api.url("/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let document: Value = response.json().await.unwrap();
    assert_eq!(document, super::super::openapi::document());
}

/// Sends `request` as raw bytes and reads the answer until the server
/// closes the connection.
async fn raw_exchange(api: &Api, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(api.addr).await.unwrap();
    // The server may answer and close before reading a request it refuses.
    let _ = socket.write_all(request).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(super::DEADLINE, socket.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn requests_hyper_cannot_read_are_answered_in_the_error_shape() {
    let api = start(Fake::new(64), LIMIT).await;
    let long_path = format!(
        "GET /v1/agents/{} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\n\r\n",
        "a".repeat(100_000)
    );
    let huge_header = format!(
        "GET /healthz HTTP/1.1\r\nhost: x\r\nx-pad: {}\r\n\r\n",
        "p".repeat(1_000_000)
    );
    for (request, status, code) in [
        (long_path.into_bytes(), "414", "uri_too_long"),
        (
            b"GET /v1/agents/\x01 HTTP/1.1\r\nhost: x\r\n\r\n".to_vec(),
            "400",
            "bad_request",
        ),
        (b"NOT HTTP AT ALL\r\n\r\n".to_vec(), "400", "bad_request"),
        (huge_header.into_bytes(), "431", "headers_too_large"),
    ] {
        let answer = raw_exchange(&api, &request).await;
        let (head, body) = answer
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("no answer: {answer:?}"));
        assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{head}"
        );
        let body: ErrorBody = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert_eq!(body.error.code, code, "{head}");
        assert!(!body.error.message.is_empty());
    }
    // The server still answers normally afterwards.
    assert_eq!(api.get("/healthz").await.status(), 200);
}

#[tokio::test]
async fn a_node_no_longer_active_answers_nothing_but_not_active() {
    let gate = std::sync::Arc::new(crate::cluster::gate::Gate::open());
    let api = start_gated(Fake::new(64), LIMIT, Some(gate.clone())).await;
    api.create_agent("agent-1").await;
    assert_eq!(api.get("/v1/agents/agent-1").await.status(), 200);

    gate.close("another node took over the lease");
    for path in ["/v1/agents/agent-1", "/healthz", "/readyz", "/"] {
        let response = api.get(path).await;
        assert_eq!(response.headers()["retry-after"], "1", "{path}");
        let (status, body) = error_of(response).await;
        assert_eq!(
            (status, body.error.code.as_str()),
            (503, "not_active"),
            "{path}"
        );
        assert!(
            body.error
                .message
                .contains("another node took over the lease"),
            "{}",
            body.error.message
        );
    }
    let put = api
        .put_json("/v1/agents/agent-2/status", r#"{"status":"Available"}"#)
        .await;
    assert_eq!(put.status(), 503);
}
