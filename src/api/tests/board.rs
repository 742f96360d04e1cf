//! The status board's side of the API: the viewer token, the page's files
//! and headers, paging agents, and the live stream.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use super::super::ROUTES;
use super::super::board::{ASSETS, CONTENT_SECURITY_POLICY, SECURITY_HEADERS};
use super::super::model::{AgentList, BoardUpdate};
use super::super::routes::Auth;
use super::{Api, DEADLINE, Fake, VIEWER, error_of, start};

const LIMIT: usize = 4096;

fn concrete(path: &str) -> String {
    path.replace("{agent_id}", "agent-1")
        .replace("{contact_id}", "c-1")
        .replace("{queue}", "q1")
}

fn as_viewer(api: &Api, method: Method, path: &str) -> reqwest::RequestBuilder {
    api.client
        .request(method, api.url(path))
        .bearer_auth(VIEWER)
}

/// The viewer token reads every read-only route and is refused, with 403
/// in the error shape and a message for people, on every other route.
#[tokio::test]
async fn the_viewer_token_reads_and_never_writes() {
    let api = start(Fake::new(64), LIMIT).await;
    api.create_agent("agent-1").await;
    for route in ROUTES {
        let method = Method::from_bytes(route.verb.as_str().as_bytes()).unwrap();
        let path = concrete(route.path);
        let response = as_viewer(&api, method.clone(), &path)
            .header("content-type", "application/json")
            .body(r#"{"teams_user":"a@contoso.example","status":"Busy","queue":"q1"}"#)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        match route.auth {
            Auth::Token => {
                let challenge = response.headers()["www-authenticate"]
                    .to_str()
                    .unwrap()
                    .to_string();
                assert!(challenge.contains("insufficient_scope"), "{challenge}");
                let (status, body) = error_of(response).await;
                assert_eq!(
                    (status, body.error.code.as_str()),
                    (403, "forbidden"),
                    "{method} {path}"
                );
                assert!(body.error.message.contains("API token"), "{body:?}");
            }
            Auth::Viewer | Auth::Open => {
                assert!(status != 401 && status != 403, "{method} {path}: {status}");
            }
        }
    }
    // Nothing was written by the refused requests.
    let agent: Value = api.get("/v1/agents/agent-1").await.json().await.unwrap();
    assert_eq!(agent["cc"]["status"], Value::Null);
    // A wrong token is still a 401 on read-only routes.
    let wrong = api
        .client
        .get(api.url("/v1/agents"))
        .bearer_auth("viewer-token-91c3")
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(wrong).await.0, 401);
}

/// Only reads take the viewer token, and the OpenAPI document says which
/// routes do and what the others answer it.
#[test]
fn only_reads_take_the_viewer_token_and_the_document_says_so() {
    let document = super::super::openapi::document();
    let mut viewer = Vec::new();
    for route in ROUTES {
        let operation = &document["paths"][route.path][route.verb.as_str().to_ascii_lowercase()];
        let responses = &operation["responses"];
        match route.auth {
            Auth::Viewer => {
                assert_eq!(route.verb.as_str(), "GET", "{}", route.path);
                assert_eq!(operation["x-viewer-token"], true, "{}", route.path);
                assert!(responses.get("401").is_some() && responses.get("403").is_none());
                viewer.push(route.path);
            }
            Auth::Token => {
                assert!(operation.get("x-viewer-token").is_none(), "{}", route.path);
                assert_eq!(
                    responses["403"]["$ref"], "#/components/responses/Forbidden",
                    "{}",
                    route.path
                );
            }
            Auth::Open => assert!(responses.get("403").is_none()),
        }
    }
    viewer.sort_unstable();
    assert_eq!(
        viewer,
        [
            "/v1/agents",
            "/v1/agents/{agent_id}",
            "/v1/board/stream",
            "/v1/contacts/{contact_id}",
            "/v1/directory",
            "/v1/directory/{user_id}",
            "/v1/health",
            "/v1/queues",
            "/v1/queues/{queue}",
        ]
    );
}

#[tokio::test]
async fn the_page_is_served_with_its_types_tags_and_headers() {
    let api = start(Fake::new(64), LIMIT).await;
    for asset in ASSETS {
        let response = api.client.get(api.url(asset.path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{}", asset.path);
        let headers = response.headers().clone();
        assert_eq!(
            headers["content-type"], asset.content_type,
            "{}",
            asset.path
        );
        assert_eq!(headers["content-security-policy"], CONTENT_SECURITY_POLICY);
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["referrer-policy"], "no-referrer");
        let etag = headers["etag"].to_str().unwrap().to_string();
        assert_eq!(response.bytes().await.unwrap().as_ref(), asset.body);
        let again = api
            .client
            .get(api.url(asset.path))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{}", asset.path);
        assert!(again.bytes().await.unwrap().is_empty());
    }
}

/// The API's JSON, its errors and the open probes carry the same headers.
#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let api = start(Fake::new(64), LIMIT).await;
    let answers = [
        api.get("/v1/agents").await,
        api.client.get(api.url("/v1/agents")).send().await.unwrap(),
        api.client.get(api.url("/no/such")).send().await.unwrap(),
        api.client.get(api.url("/healthz")).send().await.unwrap(),
    ];
    for response in answers {
        for (name, value) in SECURITY_HEADERS {
            assert_eq!(
                response.headers().get(*name).map(|v| v.to_str().unwrap()),
                Some(*value),
                "{} {name}",
                response.url()
            );
        }
    }
}

#[tokio::test]
async fn agents_come_in_pages_when_asked() {
    let api = start(Fake::new(1024), LIMIT).await;
    for n in 0..25 {
        api.create_agent(&format!("agent-{n:02}")).await;
    }
    let all: AgentList = api.get("/v1/agents").await.json().await.unwrap();
    assert_eq!((all.agents.len(), all.page), (25, None));
    let text = api.get("/v1/agents").await.text().await.unwrap();
    assert!(!text.contains("next_cursor"), "{text}");

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/agents?limit=10&cursor={c}"),
            None => "/v1/agents?limit=10".to_string(),
        };
        let page: AgentList = api.get(&path).await.json().await.unwrap();
        let end = page.page.expect("a page");
        assert_eq!(end.total, 25);
        assert!(page.agents.len() <= 10);
        seen.extend(page.agents.into_iter().map(|a| a.id));
        match end.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let expected: Vec<String> = (0..25).map(|n| format!("agent-{n:02}")).collect();
    assert_eq!(seen, expected);

    let found: AgentList = api
        .get("/v1/agents?search=AGENT-1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(found.agents.len(), 10);
    assert_eq!(found.page.unwrap().total, 10);

    let (status, body) = error_of(api.get("/v1/agents?limit=0").await).await;
    assert_eq!((status, body.error.field.as_deref()), (400, Some("limit")));
    let (status, body) = error_of(api.get("/v1/agents?colour=red").await).await;
    assert_eq!((status, body.error.field.as_deref()), (400, Some("colour")));
}

#[tokio::test]
async fn every_agent_unpaged_is_written_page_by_page_as_one_list() {
    use super::super::handlers::{UNPAGED_CHUNK, every_agent};

    let api = start(Fake::new(1024), LIMIT).await;
    // More than two of the pages the list is read in.
    let count = UNPAGED_CHUNK * 2 + 3;
    for n in 0..count {
        api.create_agent(&format!("agent-{n:04}")).await;
    }
    let whole = AgentList {
        agents: api.fake.all_agents(),
        page: None,
    };
    let response = api.get("/v1/agents").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "{:?}",
        response.headers()
    );
    let text = response.text().await.unwrap();
    assert_eq!(text, serde_json::to_string(&whole).unwrap());
    assert_eq!(whole.agents.len(), count);

    // Pages of one agent, and an empty list, are the same shape.
    let one = every_agent(Arc::clone(&api.fake), 1).await.unwrap();
    let bytes = axum::body::to_bytes(one.into_body(), usize::MAX)
        .await
        .unwrap();
    assert_eq!(bytes, serde_json::to_vec(&whole).unwrap());
    let empty = every_agent(Fake::new(16), 7).await.unwrap();
    let bytes = axum::body::to_bytes(empty.into_body(), usize::MAX)
        .await
        .unwrap();
    assert_eq!(&bytes[..], br#"{"agents":[]}"#);
}

/// Reads SSE `update` events from a streaming response.
struct Updates {
    body: reqwest::Response,
    buffer: String,
}

impl Updates {
    /// The next update, `None` when the stream ends.
    async fn next(&mut self) -> Option<BoardUpdate> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                if let Some(data) = frame.lines().find_map(|line| line.strip_prefix("data: ")) {
                    assert!(frame.starts_with("event: update\n"), "{frame}");
                    return Some(serde_json::from_str(data).unwrap());
                }
                continue;
            }
            let chunk = tokio::time::timeout(DEADLINE, self.body.chunk())
                .await
                .expect("the stream sends within the deadline")
                .ok()??;
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

#[tokio::test]
async fn the_stream_sends_changed_agents_and_ends_when_the_api_stops() {
    let api = start(Fake::new(1024), LIMIT).await;
    api.create_agent("agent-1").await;
    api.create_agent("agent-2").await;
    let response = as_viewer(&api, Method::GET, "/v1/board/stream")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let mut updates = Updates {
        body: response,
        buffer: String::new(),
    };
    let first = updates.next().await.unwrap();
    assert!(
        first.queues.is_some() && first.health.is_some(),
        "{first:?}"
    );
    assert!(first.agents.is_empty());

    // Several changes to one agent close together come as one agent.
    for status in ["Busy", "Lunch", "Available"] {
        let response = api
            .put_json(
                "/v1/agents/agent-2/status",
                &format!(r#"{{"status":"{status}"}}"#),
            )
            .await;
        assert_eq!(response.status(), 200);
    }
    let mut last = None;
    while last.is_none() {
        let update = updates.next().await.unwrap();
        assert!(
            update.agents.iter().all(|a| a.id == "agent-2"),
            "{update:?}"
        );
        if let Some(agent) = update
            .agents
            .iter()
            .find(|a| a.cc.status.as_deref() == Some("Available"))
        {
            last = Some(agent.clone());
        }
    }
    let response = api
        .client
        .delete(api.url("/v1/agents/agent-1"))
        .bearer_auth(super::TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    loop {
        let update = updates.next().await.unwrap();
        if update.removed == vec!["agent-1".to_string()] {
            break;
        }
    }

    api.shutdown.trigger();
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        while updates.next().await.is_some() {}
    })
    .await;
    assert!(end.is_ok(), "the stream ends when the API stops");
}

/// A tenant whose events never stop still gets its updates out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_events_does_not_hold_updates_back() {
    let fake = Fake::new(64);
    let api = start(fake.clone(), LIMIT).await;
    api.create_agent("agent-1").await;
    let response = as_viewer(&api, Method::GET, "/v1/board/stream")
        .send()
        .await
        .unwrap();
    let mut updates = Updates {
        body: response,
        buffer: String::new(),
    };
    updates.next().await.unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = {
        let (fake, stop) = (fake.clone(), stop.clone());
        std::thread::spawn(move || {
            // Far more than one update's worth, without end; a pause now
            // and then keeps the fake's log (kept in memory) modest.
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for _ in 0..50 {
                    fake.emit(
                        crate::events::kind::AGENT_UPDATED,
                        Some("agent-1"),
                        serde_json::json!({}),
                    );
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    for _ in 0..3 {
        let update = updates.next().await.expect("updates keep coming");
        assert!(
            update.resync || update.agents.iter().any(|a| a.id == "agent-1"),
            "{update:?}"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    flood.join().unwrap();
}
