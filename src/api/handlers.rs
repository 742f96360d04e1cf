//! The handlers behind the routes of [`ROUTES`](super::routes::ROUTES):
//! each reads its input with the extractors of [`extract`](super::extract),
//! calls the [`Service`] and answers JSON (or upgrades, for the event stream).
//! [`Endpoint`] names them, so the route table can point at a handler without
//! naming the service type.

use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, on};
use serde_json::json;

use super::board;
use super::error::ApiError;
use super::events_stream::stream_events;
use super::extract::{
    AgentId, AgentsQuery, ApiJson, ContactId, DirectoryParams, DirectoryUserId, EventsQuery,
    OptionalJson, QueueName,
};
use super::model::{
    AgentList, AgentOut, AgentQuery, AgentUpsert, ContactAction, ContactActionIn, ContactIn,
    QueueList, StatusReport,
};
use super::routes::{AppState, METRICS_CONTENT_TYPE, Verb};
use super::service::Service;

/// The handler of one route. Each is named once in the route table, which
/// is what makes it reachable: a handler left out of the table is dead code
/// the build refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    PutAgent,
    GetAgent,
    DeleteAgent,
    PutStatus,
    ListAgents,
    ResumeAgent,
    ListQueues,
    GetQueue,
    AddContact,
    GetContact,
    AcceptContact,
    DeclineContact,
    CompleteContact,
    AbandonContact,
    ListDirectory,
    GetDirectoryUser,
    Events,
    BoardStream,
    Health,
    OpenApi,
    Healthz,
    Readyz,
    Metrics,
}

impl Endpoint {
    /// The handler answering `verb` on its route.
    pub(super) fn method_router<S: Service>(self, verb: Verb) -> MethodRouter<AppState<S>> {
        let verb = verb.filter();
        match self {
            Endpoint::PutAgent => on(verb, put_agent::<S>),
            Endpoint::GetAgent => on(verb, get_agent::<S>),
            Endpoint::DeleteAgent => on(verb, delete_agent::<S>),
            Endpoint::PutStatus => on(verb, put_status::<S>),
            Endpoint::ListAgents => on(verb, list_agents::<S>),
            Endpoint::ResumeAgent => on(verb, resume_agent::<S>),
            Endpoint::ListQueues => on(verb, list_queues::<S>),
            Endpoint::GetQueue => on(verb, get_queue::<S>),
            Endpoint::AddContact => on(verb, add_contact::<S>),
            Endpoint::GetContact => on(verb, get_contact::<S>),
            Endpoint::AcceptContact => on(verb, accept_contact::<S>),
            Endpoint::DeclineContact => on(verb, decline_contact::<S>),
            Endpoint::CompleteContact => on(verb, complete_contact::<S>),
            Endpoint::AbandonContact => on(verb, abandon_contact::<S>),
            Endpoint::ListDirectory => on(verb, list_directory::<S>),
            Endpoint::GetDirectoryUser => on(verb, get_directory_user::<S>),
            Endpoint::Events => on(verb, events::<S>),
            Endpoint::BoardStream => on(verb, board_stream::<S>),
            Endpoint::Health => on(verb, health::<S>),
            Endpoint::OpenApi => on(verb, openapi_document::<S>),
            Endpoint::Healthz => on(verb, healthz),
            Endpoint::Readyz => on(verb, readyz::<S>),
            Endpoint::Metrics => on(verb, metrics::<S>),
        }
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

async fn list_agents<S: Service>(
    State(state): State<AppState<S>>,
    AgentsQuery(query): AgentsQuery,
) -> Result<Response, ApiError> {
    match query {
        None => every_agent(state.service, UNPAGED_CHUNK).await,
        Some(query) => {
            let (agents, page) = state.service.agents_page(query).await?;
            let list = AgentList {
                agents,
                page: Some(page),
            };
            Ok(Json(list).into_response())
        }
    }
}

/// Agents the unpaged `GET /v1/agents` reads from the service at a time.
pub(crate) const UNPAGED_CHUNK: usize = 500;

/// Where the unpaged list's writing is.
enum Unpaged {
    /// The first page, read before the response began; `more` is the
    /// cursor of the next one.
    First {
        agents: Vec<AgentOut>,
        more: Option<String>,
    },
    /// The next page to read, after this id.
    Read { after: String },
}

/// Every agent (`GET /v1/agents` without parameters), `{agents: [...]}` as
/// one list, read `chunk` agents at a time in id order and written as each
/// page is read: the body of 50,000 agents is never held whole, nor their
/// states, and the sync loop answers other requests between the pages.
/// Each agent is as it was when its page was read. A failure before the
/// first page is the request's error; one after it ends the body early,
/// which the client sees as a broken response.
pub(crate) async fn every_agent<S: Service>(
    service: Arc<S>,
    chunk: usize,
) -> Result<Response, ApiError> {
    let page = move |after: Option<String>| AgentQuery {
        cursor: after,
        limit: chunk,
        search: None,
    };
    let (agents, end) = service.agents_page(page(None)).await?;
    let start = Unpaged::First {
        agents,
        more: end.next_cursor,
    };
    let body = futures_util::stream::unfold(Some(start), move |state| {
        let service = Arc::clone(&service);
        async move {
            let (agents, more, first) = match state? {
                Unpaged::First { agents, more } => (agents, more, true),
                Unpaged::Read { after } => match service.agents_page(page(Some(after))).await {
                    Ok((agents, end)) => (agents, end.next_cursor, false),
                    Err(e) => {
                        let broken = std::io::Error::other(format!(
                            "reading the next page of agents failed: {}",
                            e.message
                        ));
                        return Some((Err(broken), None));
                    }
                },
            };
            let mut out = Vec::with_capacity(agents.len().saturating_mul(1024));
            if first {
                out.extend_from_slice(b"{\"agents\":[");
            }
            for (i, agent) in agents.iter().enumerate() {
                if !(first && i == 0) {
                    out.push(b',');
                }
                if let Err(e) = serde_json::to_writer(&mut out, agent) {
                    return Some((Err(std::io::Error::other(e)), None));
                }
            }
            let next = match more {
                Some(after) => Some(Unpaged::Read { after }),
                None => {
                    out.extend_from_slice(b"]}");
                    None
                }
            };
            Some((Ok::<_, std::io::Error>(Bytes::from(out)), next))
        }
    });
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        Body::from_stream(body),
    )
        .into_response())
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

async fn list_directory<S: Service>(
    State(state): State<AppState<S>>,
    DirectoryParams(query): DirectoryParams,
) -> Result<Response, ApiError> {
    Ok(Json(state.service.directory(query).await?).into_response())
}

async fn get_directory_user<S: Service>(
    State(state): State<AppState<S>>,
    DirectoryUserId(id): DirectoryUserId,
) -> Result<Response, ApiError> {
    Ok(Json(state.service.directory_user(id).await?).into_response())
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

async fn board_stream<S: Service>(State(state): State<AppState<S>>) -> Result<Response, ApiError> {
    if state.shutdown.is_triggered() {
        return Err(ApiError::unavailable("presence-sync is stopping"));
    }
    Ok(board::stream::respond(
        state.service.clone(),
        state.shutdown.clone(),
    ))
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
