//! Test helpers: a tiny scripted HTTP peer on loopback and a config for it.
//! It exercises the client's reactions, not Graph's fidelity.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::clock::SharedClock;
use super::throttle::{RetryPolicy, ThrottleConfig};
use super::{Credential, GraphClient};
use crate::config::{GraphAuth, GraphConfig, Origin, Secret, SecretLocation, SecretSource};

/// A request the peer received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn is_token(&self) -> bool {
        self.path.ends_with("/oauth2/v2.0/token")
    }
}

/// What the peer answers.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    /// Real time to wait before answering.
    pub delay: Duration,
}

impl Reply {
    pub fn new(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.into(),
            delay: Duration::ZERO,
        }
    }

    pub fn ok(body: impl Into<String>) -> Reply {
        Reply::new(200, body)
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }

    /// A Graph error body with a request-id header.
    pub fn graph_error(status: u16, code: &str, request_id: &str) -> Reply {
        Reply::new(
            status,
            serde_json::json!({"error": {"code": code, "message": format!("{code} happened"),
                "innerError": {"request-id": request_id, "date": "2024-01-01T00:00:00"}}})
            .to_string(),
        )
        .header("request-id", request_id)
    }

    /// A token answer; `n` makes each token distinct.
    pub fn token(n: usize) -> Reply {
        Reply::ok(
            serde_json::json!({"token_type": "Bearer", "expires_in": 3599,
                "access_token": format!("token-{n}")})
            .to_string(),
        )
    }
}

type Handler = dyn Fn(&Seen, &[Seen]) -> Reply + Send + Sync;

/// The scripted peer.
pub struct Peer {
    pub base: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Peer {
    /// Serves on 127.0.0.1:0; `handler` gets each request and every earlier one.
    pub async fn start(handler: impl Fn(&Seen, &[Seen]) -> Reply + Send + Sync + 'static) -> Peer {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let handler: Arc<Handler> = Arc::new(handler);
        let log = seen.clone();
        let app = axum::Router::new().fallback(move |request: Request| {
            let handler = handler.clone();
            let log = log.clone();
            async move {
                let (parts, body) = request.into_parts();
                let body = axum::body::to_bytes(body, usize::MAX)
                    .await
                    .map(|b| b.to_vec())
                    .unwrap_or_default();
                let request = Seen {
                    method: parts.method.to_string(),
                    path: parts.uri.path().to_owned(),
                    query: parts.uri.query().unwrap_or_default().to_owned(),
                    headers: parts.headers,
                    body,
                };
                let reply = {
                    let mut log = log.lock().unwrap();
                    let reply = handler(&request, &log);
                    log.push(request);
                    reply
                };
                if !reply.delay.is_zero() {
                    tokio::time::sleep(reply.delay).await;
                }
                let mut response = Response::new(Body::from(reply.body));
                *response.status_mut() = StatusCode::from_u16(reply.status).unwrap();
                response
                    .headers_mut()
                    .insert("content-type", "application/json".parse().unwrap());
                for (name, value) in reply.headers {
                    response.headers_mut().insert(name, value.parse().unwrap());
                }
                response.into_response()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Peer {
            base: format!("http://{addr}"),
            seen: seen.clone(),
        }
    }

    /// Requests to Graph (token requests left out).
    pub fn graph_requests(&self) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| !s.is_token())
            .cloned()
            .collect()
    }

    pub fn token_requests(&self) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.is_token())
            .count()
    }
}

pub const CLIENT_ID: &str = "22553876-f5ab-4529-bffb-cfe50aa89f87";

pub fn config(base: &str) -> GraphConfig {
    GraphConfig {
        tenant_id: "contoso.example".into(),
        client_id: CLIENT_ID.into(),
        auth: GraphAuth::ClientSecret(SecretSource {
            purpose: "the Graph client secret",
            location: SecretLocation::File("/nonexistent".into()),
            origin: Origin::whole_file(Path::new("test.toml")),
        }),
        login_base: base.into(),
        graph_base: base.into(),
        requests_per_30s: 1_500,
        request_timeout: Duration::from_secs(10),
        session_expiry: Duration::from_secs(3600),
        outbound: Default::default(),
    }
}

/// Fast knobs: small waits, few attempts.
pub fn throttle() -> ThrottleConfig {
    ThrottleConfig {
        retry: RetryPolicy {
            max_attempts: 4,
            initial_interval: Duration::from_millis(100),
            max_interval: Duration::from_secs(2),
            ..RetryPolicy::default()
        },
        max_throttled_retries: 3,
        ..ThrottleConfig::default()
    }
}

pub fn client(peer: &Peer, clock: SharedClock, throttle: ThrottleConfig) -> GraphClient {
    GraphClient::builder(
        &config(&peer.base),
        Credential::Secret(Secret::new("s3cret")),
    )
    .clock(clock)
    .throttle(throttle)
    .build()
    .unwrap()
}
