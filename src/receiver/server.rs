//! The listener and its two routes. Each answers:
//! - `?validationToken=…` (the subscription handshake, on either path):
//!   200 `text/plain` with the decoded token, whatever the body;
//! - a body over `max_body`: 413;
//! - a body that is not a notification collection: 400, naming what is wrong;
//! - a batch with any item whose `clientState` is not ours: 403, nothing kept;
//! - otherwise the body goes to the store's inbox, durably, then 202;
//! - a store that refuses: 503 (Graph delivers again later).
//!
//! Any other path is 404 and any other method 405, all in the API's error
//! shape; hyper's own answers to unreadable requests are shaped too.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::Utc;
use futures_util::StreamExt;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};

use super::inbox::Counters;
use super::{ReceiverError, ReceiverSettings};
use crate::api::ApiError;
use crate::config::Secret;
use crate::notifications::{client_state_matches, parse_changes, parse_lifecycle};
use crate::stop::Stop;
use crate::store::{InboxKind, Store};

/// What every request shares.
#[derive(Clone)]
struct Shared {
    store: Arc<dyn Store>,
    client_state: Secret,
    max_body: usize,
    /// Wakes the inbox worker after an append.
    wake: Arc<Notify>,
    counters: Arc<Counters>,
    /// Requests handled at once; more are answered 503 at once (Graph
    /// tries again), so slow or many clients cannot pin the memory of
    /// unbounded bodies.
    slots: Arc<Semaphore>,
}

/// Requests the receiver handles at once.
pub const MAX_CONCURRENT: usize = 64;

/// A request must be read, checked and stored within this; a client
/// trickling its body is answered 408 (Graph itself wants an answer in 3 s).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds the receiver's own socket.
pub async fn bind(settings: &ReceiverSettings) -> Result<TcpListener, ReceiverError> {
    TcpListener::bind(settings.listen)
        .await
        .map_err(|source| ReceiverError::Listen {
            addr: settings.listen,
            source,
        })
}

/// The receiver's router: the two notification paths and nothing else.
/// `wake` is notified after each batch is stored (give the same one to the
/// [`InboxWorker`](super::InboxWorker)).
pub fn router(
    settings: &ReceiverSettings,
    store: Arc<dyn Store>,
    wake: Arc<Notify>,
    counters: Arc<Counters>,
) -> Result<Router, ReceiverError> {
    check_path(&settings.notification_path)?;
    check_path(&settings.lifecycle_path)?;
    if settings.notification_path == settings.lifecycle_path {
        return Err(ReceiverError::SamePath(settings.notification_path.clone()));
    }
    let shared = Shared {
        store,
        client_state: settings.client_state.clone(),
        max_body: settings.max_body,
        wake,
        counters,
        slots: Arc::new(Semaphore::new(MAX_CONCURRENT)),
    };
    let route = |kind: InboxKind| {
        let shared = shared.clone();
        post(move |request: Request| receive(shared, kind, request))
    };
    Ok(Router::new()
        .route(&settings.notification_path, route(InboxKind::Changes))
        .route(&settings.lifecycle_path, route(InboxKind::Lifecycle))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed))
}

/// Serves `router` on `listener` until `stop`, then finishes the requests
/// in flight (each is a store append: short). hyper's own bare error
/// answers are rewritten in the JSON error shape, as on the API's listener.
pub async fn serve(listener: TcpListener, router: Router, stop: Stop) -> io::Result<()> {
    crate::api::server::serve(listener, router, stop).await
}

fn check_path(path: &str) -> Result<(), ReceiverError> {
    let why = if !path.starts_with('/') {
        Some("it must start with `/`")
    } else if path.contains(['{', '}', '*']) {
        Some("it must not contain `{`, `}` or `*`")
    } else if path.contains(['?', '#']) || path.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        Some("it must be a plain path, without a query, fragment or spaces")
    } else {
        None
    };
    match why {
        Some(why) => Err(ReceiverError::Path {
            path: path.to_owned(),
            why,
        }),
        None => Ok(()),
    }
}

async fn receive(shared: Shared, kind: InboxKind, request: Request) -> Response {
    let Ok(_slot) = Arc::clone(&shared.slots).try_acquire_owned() else {
        shared.counters.refused("batch_busy");
        return ApiError::unavailable(
            "the receiver is handling as many requests as it takes at once; try again",
        )
        .into_response();
    };
    let handled = tokio::time::timeout(REQUEST_TIMEOUT, handle(&shared, kind, request))
        .await
        .unwrap_or_else(|_| {
            Err(ApiError::new(
                408,
                "request_timeout",
                format!(
                    "the request was not received within {} s",
                    REQUEST_TIMEOUT.as_secs()
                ),
            ))
        });
    match handled {
        Ok(response) => response,
        Err(error) => {
            shared.counters.refused(refusal_reason(&error));
            error.into_response()
        }
    }
}

fn refusal_reason(error: &ApiError) -> &'static str {
    match error.status {
        413 => "batch_too_large",
        408 => "batch_timeout",
        403 => "batch_client_state",
        400 => "batch_malformed",
        _ => "batch_not_stored",
    }
}

async fn handle(shared: &Shared, kind: InboxKind, request: Request) -> Result<Response, ApiError> {
    if let Some(token) = validation_token(request.uri().query())? {
        let mut response = (StatusCode::OK, token).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response.headers_mut().insert(
            "x-content-type-options",
            HeaderValue::from_static("nosniff"),
        );
        return Ok(response);
    }
    if let Some(length) = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && length > shared.max_body as u64
    {
        return Err(too_large(shared.max_body));
    }
    let body = read_body(request.into_body(), shared.max_body).await?;
    check_batch(kind, &body, &shared.client_state)?;
    let store = Arc::clone(&shared.store);
    let received_at = Utc::now();
    let stored = tokio::task::spawn_blocking(move || store.append_inbox(kind, received_at, &body))
        .await
        .map_err(|_| store_unavailable("the store task stopped"))?;
    match stored {
        Ok(_) => {
            shared.wake.notify_one();
            Ok(StatusCode::ACCEPTED.into_response())
        }
        Err(e) => {
            tracing::error!(error = %e, "a Graph notification batch could not be stored; Graph will deliver it again");
            Err(store_unavailable(&e.to_string()))
        }
    }
}

fn store_unavailable(why: &str) -> ApiError {
    ApiError::unavailable(format!(
        "the notification batch could not be stored ({why}); it was not accepted, so Graph delivers it again"
    ))
}

/// The batch's every `clientState` is ours; the body reads.
pub(super) fn check_batch(
    kind: InboxKind,
    body: &[u8],
    client_state: &Secret,
) -> Result<(), ApiError> {
    let states: Vec<Option<String>> = match kind {
        InboxKind::Changes => parse_changes(body)
            .map_err(|e| malformed(&e))?
            .value
            .into_iter()
            .map(|n| n.client_state)
            .collect(),
        InboxKind::Lifecycle => parse_lifecycle(body)
            .map_err(|e| malformed(&e))?
            .value
            .into_iter()
            .map(|n| n.client_state)
            .collect(),
    };
    if let Some(index) = states
        .iter()
        .position(|given| !client_state_matches(client_state, given.as_deref()))
    {
        return Err(ApiError::new(
            403,
            "client_state_mismatch",
            format!(
                "notification {index} does not carry the clientState this receiver's subscriptions \
                 were created with; the batch was not kept"
            ),
        ));
    }
    Ok(())
}

fn malformed(error: &dyn std::fmt::Display) -> ApiError {
    ApiError::bad_request(
        "malformed_notification",
        format!("the body is not a Graph notification batch: {error}"),
    )
}

/// Reads at most `max` bytes of `body`: 413 beyond, 400 when it breaks off.
async fn read_body(body: Body, max: usize) -> Result<Vec<u8>, ApiError> {
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request(
                "unreadable_body",
                format!("the body could not be read: {e}"),
            )
        })?;
        if bytes.len().saturating_add(chunk.len()) > max {
            return Err(too_large(max));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

fn too_large(max: usize) -> ApiError {
    ApiError::new(
        413,
        "payload_too_large",
        format!("the notification batch is larger than this receiver accepts ({max} bytes)"),
    )
}

/// The decoded `validationToken` of the query, if it has one.
fn validation_token(query: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(query) = query else { return Ok(None) };
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name == "validationToken" {
            return percent_decode(value).map(Some).ok_or_else(|| {
                ApiError::bad_request(
                    "bad_validation_token",
                    "the validationToken is not URL-encoded UTF-8 text",
                )
                .with_field("validationToken")
            });
        }
    }
    Ok(None)
}

/// `application/x-www-form-urlencoded` decoding: `%XX` and `+` for a space.
pub(super) fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

async fn not_found(request: Request) -> ApiError {
    let path: String = request.uri().path().chars().take(200).collect();
    ApiError::new(
        404,
        "not_found",
        format!(
            "no route `{path}`: this listener takes only Graph's change and lifecycle notifications"
        ),
    )
}

async fn method_not_allowed(method: Method, request: Request) -> ApiError {
    let path: String = request.uri().path().chars().take(200).collect();
    ApiError::new(
        405,
        "method_not_allowed",
        format!("{method} is not allowed on `{path}`: Graph POSTs its notifications"),
    )
}
