//! A webhook receiver on loopback that records every request and answers
//! from a script.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::events::Event;
use crate::webhook::{DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature};

/// How the receiver answers one request.
#[derive(Clone, Debug)]
pub(super) enum Reply {
    Ok,
    /// This status, with this body.
    Status(u16, &'static str),
    /// 429 or 503 with `Retry-After: <value>`.
    RetryAfter(u16, &'static str),
    /// Answers 200 only after this long: past the sink's timeout, the sink
    /// sees a timeout though the receiver took the events.
    Slow(Duration),
}

/// One request as the receiver saw it.
#[derive(Clone, Debug)]
pub(super) struct Seen {
    pub arrived: Instant,
    pub content_type: String,
    pub timestamp: String,
    pub delivery: String,
    pub signature_valid: bool,
    pub events: Vec<Event>,
}

impl Seen {
    pub fn seqs(&self) -> Vec<u64> {
        self.events.iter().map(|e| e.seq).collect()
    }
}

#[derive(Default)]
struct Inner {
    script: VecDeque<Reply>,
    seen: Vec<Seen>,
}

#[derive(Clone)]
struct Shared {
    secret: Vec<u8>,
    inner: Arc<Mutex<Inner>>,
}

pub(super) struct Receiver {
    pub url: String,
    shared: Shared,
    server: JoinHandle<()>,
}

impl Receiver {
    /// Listens on `127.0.0.1:0`; checks signatures against `secret`.
    pub async fn start(secret: &str) -> Receiver {
        let shared = Shared {
            secret: secret.as_bytes().to_vec(),
            inner: Arc::default(),
        };
        let app = Router::new()
            .route("/hook", post(hook))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            url,
            shared,
            server,
        }
    }

    /// The next requests get these answers, in order; after them, 200.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.shared.inner.lock().unwrap().script.extend(replies);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.shared.inner.lock().unwrap().seen.clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn hook(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let timestamp = header(TIMESTAMP_HEADER);
    let signature = header(SIGNATURE_HEADER);
    let signature_valid = verify_signature(&shared.secret, &timestamp, &body, &signature);
    #[derive(serde::Deserialize)]
    struct Payload {
        events: Vec<Event>,
    }
    let events = serde_json::from_slice::<Payload>(&body)
        .map(|p| p.events)
        .unwrap_or_default();
    let reply = {
        let mut inner = shared.inner.lock().unwrap();
        let reply = inner.script.pop_front().unwrap_or(Reply::Ok);
        inner.seen.push(Seen {
            arrived: Instant::now(),
            content_type: header("content-type"),
            timestamp,
            delivery: header(DELIVERY_HEADER),
            signature_valid,
            events,
        });
        reply
    };
    match reply {
        Reply::Ok => StatusCode::OK.into_response(),
        Reply::Status(code, body) => (status(code), body).into_response(),
        Reply::RetryAfter(code, after) => (status(code), [("retry-after", after)]).into_response(),
        Reply::Slow(wait) => {
            tokio::time::sleep(wait).await;
            StatusCode::OK.into_response()
        }
    }
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap()
}
