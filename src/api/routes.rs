//! The router: which handler answers which route, under which auth, and the
//! error shape for everything axum answers on its own (unknown routes, wrong
//! methods, rejected bodies).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::handler::Handler;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on};
use axum::{Router, body};
use serde_json::json;

use crate::config::Secret;

use super::auth::BearerToken;
use super::error::ApiError;
use super::events_stream::stream_events;
use super::extract::{AgentId, ApiJson, ContactId, EventsQuery, OptionalJson, QueueName, is_json};
use super::model::{
    AgentList, AgentUpsert, ContactAction, ContactActionIn, ContactIn, QueueList, StatusReport,
};
use super::openapi;
use super::service::Service;
use super::shutdown::Shutdown;

/// Every route the API serves, as (method, path). The router registers
/// exactly these, the OpenAPI document describes exactly these, and tests
/// hold both to it.
pub const ROUTES: &[(&str, &str)] = &[
    ("PUT", "/v1/agents/{agent_id}"),
    ("GET", "/v1/agents/{agent_id}"),
    ("DELETE", "/v1/agents/{agent_id}"),
    ("PUT", "/v1/agents/{agent_id}/status"),
    ("GET", "/v1/agents"),
    ("POST", "/v1/agents/{agent_id}/resume"),
    ("GET", "/v1/queues"),
    ("GET", "/v1/queues/{queue}"),
    ("POST", "/v1/contacts"),
    ("GET", "/v1/contacts/{contact_id}"),
    ("POST", "/v1/contacts/{contact_id}/accept"),
    ("POST", "/v1/contacts/{contact_id}/decline"),
    ("POST", "/v1/contacts/{contact_id}/complete"),
    ("POST", "/v1/contacts/{contact_id}/abandon"),
    ("GET", "/v1/events"),
    ("GET", "/v1/health"),
    ("GET", "/v1/openapi.json"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
];

/// The paths served without a token: probes and the scraper cannot hold one,
/// and the API description is public.
pub const OPEN_PATHS: &[&str] = &["/healthz", "/readyz", "/metrics", "/v1/openapi.json"];

/// The Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How the API is set up.
#[derive(Clone, Debug)]
pub struct ApiSettings {
    /// The bearer token every `/v1` route but the OpenAPI document requires.
    pub token: Secret,
    /// Larger request bodies get 413.
    pub max_body_bytes: usize,
    /// Triggering it closes every open event stream (see [`Shutdown`]); pass
    /// the same value's [`Shutdown::triggered`] to [`serve`](super::serve).
    pub shutdown: Shutdown,
}

struct AppState<S> {
    service: Arc<S>,
    token: BearerToken,
    shutdown: Shutdown,
    openapi: Bytes,
}

impl<S> Clone for AppState<S> {
    fn clone(&self) -> Self {
        AppState {
            service: self.service.clone(),
            token: self.token.clone(),
            shutdown: self.shutdown.clone(),
            openapi: self.openapi.clone(),
        }
    }
}

/// The API over `service`.
pub fn router<S: Service>(service: Arc<S>, settings: ApiSettings) -> Router {
    build(service, settings).0
}

#[derive(Clone, Copy)]
enum Verb {
    Get,
    Put,
    Post,
    Delete,
}

impl Verb {
    fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Put => "PUT",
            Verb::Post => "POST",
            Verb::Delete => "DELETE",
        }
    }

    fn filter(self) -> MethodFilter {
        match self {
            Verb::Get => MethodFilter::GET,
            Verb::Put => MethodFilter::PUT,
            Verb::Post => MethodFilter::POST,
            Verb::Delete => MethodFilter::DELETE,
        }
    }
}

/// Registers routes and writes down each one, so the list of what is served
/// comes from the registrations themselves.
struct Table<S> {
    router: Router<AppState<S>>,
    served: Vec<(&'static str, &'static str)>,
}

impl<S: Service> Table<S> {
    fn new() -> Self {
        Table {
            router: Router::new(),
            served: Vec::new(),
        }
    }

    fn add<H, T>(mut self, verb: Verb, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, AppState<S>>,
        T: 'static,
    {
        self.served.push((verb.as_str(), path));
        self.router = self.router.route(path, on(verb.filter(), handler));
        self
    }
}

/// The router and the routes it serves.
fn build<S: Service>(
    service: Arc<S>,
    settings: ApiSettings,
) -> (Router, Vec<(&'static str, &'static str)>) {
    let state = AppState {
        service,
        token: BearerToken::new(&settings.token),
        shutdown: settings.shutdown,
        openapi: Bytes::from(openapi::document().to_string()),
    };
    let agent = "/v1/agents/{agent_id}";
    let protected = Table::new()
        .add(Verb::Put, agent, put_agent::<S>)
        .add(Verb::Get, agent, get_agent::<S>)
        .add(Verb::Delete, agent, delete_agent::<S>)
        .add(Verb::Put, "/v1/agents/{agent_id}/status", put_status::<S>)
        .add(Verb::Get, "/v1/agents", list_agents::<S>)
        .add(
            Verb::Post,
            "/v1/agents/{agent_id}/resume",
            resume_agent::<S>,
        )
        .add(Verb::Get, "/v1/queues", list_queues::<S>)
        .add(Verb::Get, "/v1/queues/{queue}", get_queue::<S>)
        .add(Verb::Post, "/v1/contacts", add_contact::<S>)
        .add(Verb::Get, "/v1/contacts/{contact_id}", get_contact::<S>)
        .add(
            Verb::Post,
            "/v1/contacts/{contact_id}/accept",
            accept_contact::<S>,
        )
        .add(
            Verb::Post,
            "/v1/contacts/{contact_id}/decline",
            decline_contact::<S>,
        )
        .add(
            Verb::Post,
            "/v1/contacts/{contact_id}/complete",
            complete_contact::<S>,
        )
        .add(
            Verb::Post,
            "/v1/contacts/{contact_id}/abandon",
            abandon_contact::<S>,
        )
        .add(Verb::Get, "/v1/events", events::<S>)
        .add(Verb::Get, "/v1/health", health::<S>);
    let open = Table::new()
        .add(Verb::Get, "/v1/openapi.json", openapi_document::<S>)
        .add(Verb::Get, "/healthz", healthz)
        .add(Verb::Get, "/readyz", readyz::<S>)
        .add(Verb::Get, "/metrics", metrics::<S>);
    let served = protected.served.into_iter().chain(open.served).collect();
    let router = protected
        .router
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_token::<S>,
        ))
        .merge(open.router)
        .layer(DefaultBodyLimit::max(settings.max_body_bytes))
        .layer(middleware::from_fn(error_shape))
        .with_state(state);
    (router, served)
}

async fn require_token<S: Service>(
    State(state): State<AppState<S>>,
    request: Request,
    next: Next,
) -> Response {
    match state.token.check(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal.into_response(),
    }
}

/// Gives every 4xx and 5xx that is not already in the error shape (axum's
/// 404 and 405, rejections of its own extractors) the `{"error":…}` body,
/// keeping its status and headers (`Allow` on a 405).
async fn error_shape(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path: String = request.uri().path().chars().take(200).collect();
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(response.headers()) {
        return response;
    }
    let (mut parts, original) = response.into_parts();
    let error = match status {
        StatusCode::NOT_FOUND => ApiError::new(404, "not_found", format!("no route `{path}`")),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::new(
            405,
            "method_not_allowed",
            format!("{method} is not allowed on `{path}`"),
        ),
        _ => {
            let text = body::to_bytes(original, 1024)
                .await
                .ok()
                .and_then(|bytes| String::from_utf8(bytes.to_vec()).ok())
                .filter(|text| !text.trim().is_empty())
                .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string());
            ApiError::new(status.as_u16(), code_for(status), text)
        }
    };
    let (shaped, body) = error.into_response().into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.extend(shaped.headers);
    Response::from_parts(parts, body)
}

pub(crate) fn code_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "request_timeout",
        413 => "payload_too_large",
        414 => "uri_too_long",
        415 => "unsupported_media_type",
        422 => "unprocessable",
        429 => "too_many_requests",
        431 => "headers_too_large",
        503 => "unavailable",
        s if s >= 500 => "internal",
        _ => "bad_request",
    }
}

async fn put_agent<S: Service>(
    State(state): State<AppState<S>>,
    AgentId(id): AgentId,
    ApiJson(body): ApiJson<AgentUpsert>,
) -> Result<Response, ApiError> {
    let agent = state.service.put_agent(id, body).await?;
    Ok(Json(agent).into_response())
}

async fn get_agent<S: Service>(
    State(state): State<AppState<S>>,
    AgentId(id): AgentId,
) -> Result<Response, ApiError> {
    Ok(Json(state.service.agent(id).await?).into_response())
}

async fn delete_agent<S: Service>(
    State(state): State<AppState<S>>,
    AgentId(id): AgentId,
) -> Result<StatusCode, ApiError> {
    state.service.delete_agent(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn put_status<S: Service>(
    State(state): State<AppState<S>>,
    AgentId(id): AgentId,
    ApiJson(body): ApiJson<StatusReport>,
) -> Result<Response, ApiError> {
    Ok(Json(state.service.put_status(id, body).await?).into_response())
}

async fn list_agents<S: Service>(State(state): State<AppState<S>>) -> Result<Response, ApiError> {
    let agents = state.service.agents().await?;
    Ok(Json(AgentList { agents }).into_response())
}

async fn resume_agent<S: Service>(
    State(state): State<AppState<S>>,
    AgentId(id): AgentId,
) -> Result<Response, ApiError> {
    Ok(Json(state.service.resume_agent(id).await?).into_response())
}

async fn list_queues<S: Service>(State(state): State<AppState<S>>) -> Result<Response, ApiError> {
    let queues = state.service.queues().await?;
    Ok(Json(QueueList { queues }).into_response())
}

async fn get_queue<S: Service>(
    State(state): State<AppState<S>>,
    QueueName(name): QueueName,
) -> Result<Response, ApiError> {
    Ok(Json(state.service.queue(name).await?).into_response())
}

async fn add_contact<S: Service>(
    State(state): State<AppState<S>>,
    ApiJson(body): ApiJson<ContactIn>,
) -> Result<Response, ApiError> {
    let contact = state.service.add_contact(body).await?;
    Ok((StatusCode::CREATED, Json(contact)).into_response())
}

async fn get_contact<S: Service>(
    State(state): State<AppState<S>>,
    ContactId(id): ContactId,
) -> Result<Response, ApiError> {
    Ok(Json(state.service.contact(id).await?).into_response())
}

/// One handler a contact action, each naming its `ContactAction`.
macro_rules! contact_actions {
    ($($handler:ident => $action:ident),+ $(,)?) => {$(
        async fn $handler<S: Service>(
            state: State<AppState<S>>,
            id: ContactId,
            body: OptionalJson<ContactActionIn>,
        ) -> Result<Response, ApiError> {
            contact_action(state, id, body, ContactAction::$action).await
        }
    )+};
}

contact_actions!(
    accept_contact => Accept,
    decline_contact => Decline,
    complete_contact => Complete,
    abandon_contact => Abandon,
);

async fn contact_action<S: Service>(
    State(state): State<AppState<S>>,
    ContactId(id): ContactId,
    OptionalJson(body): OptionalJson<ContactActionIn>,
    action: ContactAction,
) -> Result<Response, ApiError> {
    let contact = state.service.contact_action(id, action, body).await?;
    Ok(Json(contact).into_response())
}

/// Event streams accept frames up to this size from clients, who only ever
/// send pings and close frames.
const CLIENT_FRAME_LIMIT: usize = 64 * 1024;

async fn events<S: Service>(
    State(state): State<AppState<S>>,
    query: EventsQuery,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let upgrade = upgrade.map_err(|rejection| {
        ApiError::new(
            rejection.status().as_u16(),
            "websocket_required",
            format!(
                "GET /v1/events is a WebSocket: open it with an upgrade request ({})",
                rejection.body_text()
            ),
        )
    })?;
    if state.shutdown.is_triggered() {
        return Err(ApiError::unavailable("presence-sync is stopping"));
    }
    if let Some(since) = query.since {
        // Sequence numbers are never reused, so a cursor past the newest
        // one ever committed was not handed out by this store: a stream
        // would wait for events that already have other numbers.
        let last = state.service.last_seq().await?;
        if since > last {
            return Err(ApiError::unprocessable(
                "since",
                "cursor_ahead",
                format!(
                    "since={since} is past the end of this event log (the newest event is seq {last}): \
                     the cursor comes from another or a wiped store. Reconnect with since={last} \
                     (or without since) for what comes next, or since=0 for every event kept"
                ),
            ));
        }
    }
    let AppState {
        service, shutdown, ..
    } = state;
    Ok(upgrade
        .max_message_size(CLIENT_FRAME_LIMIT)
        .max_frame_size(CLIENT_FRAME_LIMIT)
        .on_upgrade(move |socket| stream_events(socket, service, shutdown, query.since)))
}

async fn openapi_document<S: Service>(State(state): State<AppState<S>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        state.openapi.clone(),
    )
        .into_response()
}

async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

async fn readyz<S: Service>(State(state): State<AppState<S>>) -> Response {
    let readiness = state.service.readiness().await;
    let status = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(readiness)).into_response()
}

async fn health<S: Service>(State(state): State<AppState<S>>) -> Response {
    let health = state.service.health().await;
    let status = if health.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(health)).into_response()
}

async fn metrics<S: Service>(State(state): State<AppState<S>>) -> Response {
    let mut text = state.service.metrics().await;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&format!(
        "# HELP presence_sync_ws_clients Event stream (WebSocket) clients connected now.\n\
         # TYPE presence_sync_ws_clients gauge\n\
         presence_sync_ws_clients {}\n",
        state.shutdown.open_streams()
    ));
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(METRICS_CONTENT_TYPE),
        )],
        text,
    )
        .into_response()
}

#[cfg(test)]
pub(crate) fn served_routes<S: Service>(
    service: Arc<S>,
    settings: ApiSettings,
) -> Vec<(&'static str, &'static str)> {
    build(service, settings).1
}
