//! The route table: every route the contact-center API serves, each with its
//! method, path, auth, handler and documentation in one [`Route`] entry of
//! [`ROUTES`]. The router, the list tests hold the API to, and the OpenAPI
//! document's operations are all read from it, so a route cannot be served
//! without an auth decision and a description. Also here: the router built
//! from the table, and the error shape for everything axum answers on its own
//! (unknown routes, wrong methods, rejected bodies).
//!
//! Graph's change notifications are not served here: they have their own
//! listener and router ([`crate::receiver`]), with nothing else on it.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodFilter;
use axum::{Router, body};

use crate::config::Secret;

use super::auth::Tokens;
use super::board;
use super::error::ApiError;
use super::extract::is_json;
use super::handlers::Endpoint;
use super::openapi::{self, Body, Content, Failure, OperationDoc, Param, Reply, Text};
use super::service::Service;
use super::shutdown::Shutdown;

/// An HTTP method a route answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Get,
    Put,
    Post,
    Delete,
}

impl Verb {
    /// The method as HTTP spells it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Put => "PUT",
            Verb::Post => "POST",
            Verb::Delete => "DELETE",
        }
    }

    pub(super) fn filter(self) -> MethodFilter {
        match self {
            Verb::Get => MethodFilter::GET,
            Verb::Put => MethodFilter::PUT,
            Verb::Post => MethodFilter::POST,
            Verb::Delete => MethodFilter::DELETE,
        }
    }
}

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    /// Anyone: probes and the scraper cannot hold a token, and the API
    /// description is public. Documented with `security: []`.
    Open,
    /// Only a request with `Authorization: Bearer <token>`; others get 401
    /// before the handler runs, and the viewer token gets 403. Documented
    /// with the 401 and 403 answers.
    Token,
    /// A read-only route: the API token or the viewer token
    /// (`[api] viewer_token_file`); others get 401. Documented with the 401
    /// answer and `x-viewer-token: true`.
    Viewer,
}

/// One route: what answers it, who may call it, and how it is documented.
#[derive(Clone, Copy, Debug)]
pub struct Route {
    pub verb: Verb,
    /// The path, with `{name}` for path parameters (axum's and OpenAPI's
    /// spelling alike).
    pub path: &'static str,
    pub auth: Auth,
    pub(crate) handler: Endpoint,
    pub doc: OperationDoc,
}

impl Route {
    /// Whether the route answers without a token.
    pub fn is_open(&self) -> bool {
        self.auth == Auth::Open
    }
}

/// The Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const AGENT: &str = "/v1/agents/{agent_id}";

/// What a request for one agent, queue or contact by its id can fail with,
/// besides the token check: a malformed id, none by that id, a daemon that
/// cannot answer now.
const ONE_BY_ID: &[Failure] = &[Failure::BadRequest, Failure::NotFound, Failure::Unavailable];

/// The answer a contact action gives.
const CONTACT_ACTION_REPLY: &[Reply] = &[Reply::json(200, "The contact after it.", "ContactOut")];

/// What a contact action can fail with.
const CONTACT_ACTION_ERRORS: &[Failure] = &[
    Failure::BadRequest,
    Failure::NotFound,
    Failure::Conflict,
    Failure::UnsupportedMediaType,
    Failure::Unavailable,
];

/// Every route the API serves. The router registers exactly these (with
/// their auth), the OpenAPI document describes exactly these, and tests hold
/// both to it.
pub const ROUTES: &[Route] = &[
    Route {
        verb: Verb::Get,
        path: "/v1/directory",
        auth: Auth::Viewer,
        handler: Endpoint::ListDirectory,
        doc: OperationDoc {
            id: "listDirectory",
            summary: "The Teams directory: every Teams user in scope, agents or not, with presence",
            description: Text::Plain(
                "Users with their ids, UPN, names, department, title, phones, the number to dial \
                them directly, their Teams presence and since when, and the agent linked. Agents are \
                read at the agent freshness, everyone else in the slower directory tier \
                (`[directory] freshness`, 30 s by default); `[directory] scope` decides who is listed \
                beyond the agents. Filters combine with AND. Pages follow the display name (folded), \
                then the id; `next_cursor` goes on after the last user of a page, whatever changed \
                between pages. A bad parameter is a 400 naming it in `field`.",
            ),
            params: &[Param::DirectoryQuery],
            body: Body::None,
            replies: &[Reply::json(200, "A page of users.", "DirectoryList")],
            errors: &[Failure::BadRequest],
        },
    },
    Route {
        verb: Verb::Get,
        path: "/v1/directory/{user_id}",
        auth: Auth::Viewer,
        handler: Endpoint::GetDirectoryUser,
        doc: OperationDoc {
            id: "getDirectoryUser",
            summary: "One Teams user of the directory",
            description: Text::Plain(
                "A user the directory lists, by object id (any case); 404 for any other.",
            ),
            params: &[Param::UserId],
            body: Body::None,
            replies: &[Reply::json(200, "The user.", "DirectoryUser")],
            errors: &[Failure::BadRequest, Failure::NotFound],
        },
    },
    Route {
        verb: Verb::Put,
        path: AGENT,
        auth: Auth::Token,
        handler: Endpoint::PutAgent,
        doc: OperationDoc {
            id: "putAgent",
            summary: "Create or replace an agent",
            description: Text::Plain(
                "Durable when answered. The body replaces the agent's settings: a field left \
                out (or null) goes back to its default (no groups, skills or queues, capacity 1, the \
                profile its groups decide, the directory's display name and phone), it is not kept from \
                before. The agent's runtime state is not a setting and stays: its CC status, its Teams \
                link while `teams_user` names the same user, sync state and routing counters. \
                `teams_user` is a Teams object id or a UPN / e-mail in the directory; with `auto_link` \
                an address not in the directory yet is accepted and linked when it appears.",
            ),
            params: &[Param::AgentId],
            body: Body::Json("AgentUpsert"),
            replies: &[Reply::json(
                200,
                "The agent as the daemon now sees it.",
                "AgentOut",
            )],
            errors: &[
                Failure::BadRequest,
                Failure::PayloadTooLarge,
                Failure::UnsupportedMediaType,
                Failure::Unprocessable,
                Failure::Unavailable,
            ],
        },
    },
    Route {
        verb: Verb::Get,
        path: AGENT,
        auth: Auth::Viewer,
        handler: Endpoint::GetAgent,
        doc: OperationDoc {
            id: "getAgent",
            summary: "One agent: CC status, Teams presence, routability and sync state",
            description: Text::None,
            params: &[Param::AgentId],
            body: Body::None,
            replies: &[Reply::json(200, "The agent.", "AgentOut")],
            errors: ONE_BY_ID,
        },
    },
    Route {
        verb: Verb::Delete,
        path: AGENT,
        auth: Auth::Token,
        handler: Endpoint::DeleteAgent,
        doc: OperationDoc {
            id: "deleteAgent",
            summary: "Delete an agent",
            description: Text::None,
            params: &[Param::AgentId],
            body: Body::None,
            replies: &[Reply::empty(204, "Deleted.")],
            errors: ONE_BY_ID,
        },
    },
    Route {
        verb: Verb::Put,
        path: "/v1/agents/{agent_id}/status",
        auth: Auth::Token,
        handler: Endpoint::PutStatus,
        doc: OperationDoc {
            id: "putAgentStatus",
            summary: "Report an agent's CC status",
            description: Text::Plain(
                "Durable when answered. A status the agent's profile does not know is a 422 \
                naming `status`.",
            ),
            params: &[Param::AgentId],
            body: Body::Json("StatusReport"),
            replies: &[Reply::json(200, "The agent after the report.", "AgentOut")],
            errors: &[
                Failure::BadRequest,
                Failure::NotFound,
                Failure::PayloadTooLarge,
                Failure::UnsupportedMediaType,
                Failure::Unprocessable,
                Failure::Unavailable,
            ],
        },
    },
    Route {
        verb: Verb::Get,
        path: "/v1/agents",
        auth: Auth::Viewer,
        handler: Endpoint::ListAgents,
        doc: OperationDoc {
            id: "listAgents",
            summary: "Every agent, or a page of them",
            description: Text::Plain(
                "Without parameters, every agent (as before). With `limit`, `cursor` or \
                `search`, a page in order of agent id: at most `limit` agents (default 100, at \
                most 1000) after `cursor` (the `next_cursor` of the page before), of those whose \
                id, display name or UPN contains `search` (case-insensitive); `next_cursor` is \
                null on the last page and `total` counts every match.",
            ),
            params: &[Param::Limit, Param::Cursor, Param::Search],
            body: Body::None,
            replies: &[Reply::json(200, "The agents.", "AgentList")],
            errors: &[Failure::BadRequest, Failure::Unavailable],
        },
    },
    Route {
        verb: Verb::Post,
        path: "/v1/agents/{agent_id}/resume",
        auth: Auth::Token,
        handler: Endpoint::ResumeAgent,
        doc: OperationDoc {
            id: "resumeAgent",
            summary: "Lift a routing pause after missed offers",
            description: Text::Plain(
                "Clears the pause and the count of missed offers. A new CC status                 for the agent does the same.",
            ),
            params: &[Param::AgentId],
            body: Body::None,
            replies: &[Reply::json(200, "The agent.", "AgentOut")],
            errors: ONE_BY_ID,
        },
    },
    Route {
        verb: Verb::Get,
        path: "/v1/queues",
        auth: Auth::Viewer,
        handler: Endpoint::ListQueues,
        doc: OperationDoc {
            id: "listQueues",
            summary: "Every routing queue with its waiting contacts and agents",
            description: Text::None,
            params: &[],
            body: Body::None,
            replies: &[Reply::json(200, "The queues.", "QueueList")],
            errors: &[Failure::Unavailable],
        },
    },
    Route {
        verb: Verb::Get,
        path: "/v1/queues/{queue}",
        auth: Auth::Viewer,
        handler: Endpoint::GetQueue,
        doc: OperationDoc {
            id: "getQueue",
            summary: "One routing queue",
            description: Text::None,
            params: &[Param::Queue],
            body: Body::None,
            replies: &[Reply::json(200, "The queue.", "QueueOut")],
            errors: ONE_BY_ID,
        },
    },
    Route {
        verb: Verb::Post,
        path: "/v1/contacts",
        auth: Auth::Token,
        handler: Endpoint::AddContact,
        doc: OperationDoc {
            id: "addContact",
            summary: "Queue a contact; it is offered at once when an agent is free",
            description: Text::Plain(
                "Durable when answered. The chosen agent is reserved and a                 `routing.offered` event carries the contact, the agent, its Teams UPN and phone.                 An unknown queue is a 422 naming `queue`; a `contact_id` already used is a 409.",
            ),
            params: &[],
            body: Body::Json("ContactIn"),
            replies: &[Reply::json(
                201,
                "The contact, waiting or offered.",
                "ContactOut",
            )],
            errors: &[
                Failure::BadRequest,
                Failure::Conflict,
                Failure::PayloadTooLarge,
                Failure::UnsupportedMediaType,
                Failure::Unprocessable,
                Failure::Unavailable,
            ],
        },
    },
    Route {
        verb: Verb::Get,
        path: "/v1/contacts/{contact_id}",
        auth: Auth::Viewer,
        handler: Endpoint::GetContact,
        doc: OperationDoc {
            id: "getContact",
            summary: "One contact (kept a day after it ends)",
            description: Text::None,
            params: &[Param::ContactId],
            body: Body::None,
            replies: &[Reply::json(200, "The contact.", "ContactOut")],
            errors: ONE_BY_ID,
        },
    },
    Route {
        verb: Verb::Post,
        path: "/v1/contacts/{contact_id}/accept",
        auth: Auth::Token,
        handler: Endpoint::AcceptContact,
        doc: OperationDoc {
            id: "acceptContact",
            summary: "accept a contact",
            description: Text::Plain(
                "The agent takes the offered contact; it counts as busy (the queue's                     `on_contact_status`, when set, is applied as its CC status). Durable when answered. A contact in the wrong                     state for this (say, accepting one that is waiting) is a 409.",
            ),
            params: &[Param::ContactId],
            body: Body::OptionalJson("ContactActionIn"),
            replies: CONTACT_ACTION_REPLY,
            errors: CONTACT_ACTION_ERRORS,
        },
    },
    Route {
        verb: Verb::Post,
        path: "/v1/contacts/{contact_id}/decline",
        auth: Auth::Token,
        handler: Endpoint::DeclineContact,
        doc: OperationDoc {
            id: "declineContact",
            summary: "decline a contact",
            description: Text::Plain(
                "The agent turns the offer down: the contact goes back to its place in                     the queue and the agent backs off; too many misses in a row pause it. Durable when answered. A contact in the wrong                     state for this (say, accepting one that is waiting) is a 409.",
            ),
            params: &[Param::ContactId],
            body: Body::OptionalJson("ContactActionIn"),
            replies: CONTACT_ACTION_REPLY,
            errors: CONTACT_ACTION_ERRORS,
        },
    },
    Route {
        verb: Verb::Post,
        path: "/v1/contacts/{contact_id}/complete",
        auth: Auth::Token,
        handler: Endpoint::CompleteContact,
        doc: OperationDoc {
            id: "completeContact",
            summary: "complete a contact",
            description: Text::Plain(
                "The contact is over; the agent goes into the queue's wrap-up. Durable when answered. A contact in the wrong                     state for this (say, accepting one that is waiting) is a 409.",
            ),
            params: &[Param::ContactId],
            body: Body::OptionalJson("ContactActionIn"),
            replies: CONTACT_ACTION_REPLY,
            errors: CONTACT_ACTION_ERRORS,
        },
    },
    Route {
        verb: Verb::Post,
        path: "/v1/contacts/{contact_id}/abandon",
        auth: Auth::Token,
        handler: Endpoint::AbandonContact,
        doc: OperationDoc {
            id: "abandonContact",
            summary: "abandon a contact",
            description: Text::Plain(
                "The caller hung up before an agent took the contact (waiting or offered). Durable when answered. A contact in the wrong                     state for this (say, accepting one that is waiting) is a 409.",
            ),
            params: &[Param::ContactId],
            body: Body::OptionalJson("ContactActionIn"),
            replies: CONTACT_ACTION_REPLY,
            errors: CONTACT_ACTION_ERRORS,
        },
    },
    Route {
        verb: Verb::Get,
        path: "/v1/events",
        auth: Auth::Token,
        handler: Endpoint::Events,
        doc: OperationDoc {
            id: "streamEvents",
            summary: "The event stream (WebSocket)",
            description: Text::Built(openapi::events_description),
            params: &[Param::Since],
            body: Body::None,
            replies: &[Reply {
                status: 101,
                description: "Switching to the WebSocket protocol. Frames from the server: \
                    `Event` or `StreamGap`.",
                content: Content::EventFrames,
            }],
            errors: &[
                Failure::BadRequest,
                Failure::Unprocessable,
                Failure::Unavailable,
            ],
        },
    },
    Route {
        verb: Verb::Get,
        path: "/v1/board/stream",
        auth: Auth::Viewer,
        handler: Endpoint::BoardStream,
        doc: OperationDoc {
            id: "boardStream",
            summary: "The status board's live updates (server-sent events)",
            description: Text::Built(openapi::board_stream_description),
            params: &[],
            body: Body::None,
            replies: &[Reply {
                status: 200,
                description: "A `text/event-stream` that lasts until the client leaves or the \
                    daemon stops.",
                content: Content::EventStream,
            }],
            errors: &[Failure::Unavailable],
        },
    },
    Route {
        verb: Verb::Get,
        path: "/v1/health",
        auth: Auth::Viewer,
        handler: Endpoint::Health,
        doc: OperationDoc {
            id: "health",
            summary: "Readiness in full, with the Graph app in use",
            description: Text::Plain(
                "The same checks and tasks as `/readyz`, with every detail as it is \
                (what Graph and Entra answered, with their request and trace ids) and the tenant and \
                client id the daemon signs in with. `/readyz` is open, so it leaves those out.",
            ),
            params: &[],
            body: Body::None,
            replies: &[
                Reply::json(200, "Ready.", "HealthReport"),
                Reply::json(
                    503,
                    "Not ready; the failing checks say why.",
                    "HealthReport",
                ),
            ],
            errors: &[],
        },
    },
    Route {
        verb: Verb::Get,
        path: "/v1/openapi.json",
        auth: Auth::Open,
        handler: Endpoint::OpenApi,
        doc: OperationDoc {
            id: "getOpenApi",
            summary: "This document (no token needed)",
            description: Text::None,
            params: &[],
            body: Body::None,
            replies: &[Reply {
                status: 200,
                description: "The OpenAPI 3.1 description of the API.",
                content: Content::JsonObject,
            }],
            errors: &[],
        },
    },
    Route {
        verb: Verb::Get,
        path: "/healthz",
        auth: Auth::Open,
        handler: Endpoint::Healthz,
        doc: OperationDoc {
            id: "healthz",
            summary: "Liveness (no token needed)",
            description: Text::None,
            params: &[],
            body: Body::None,
            replies: &[Reply::json(200, "The process answers.", "Health")],
            errors: &[],
        },
    },
    Route {
        verb: Verb::Get,
        path: "/readyz",
        auth: Auth::Open,
        handler: Endpoint::Readyz,
        doc: OperationDoc {
            id: "readyz",
            summary: "Readiness and its checks (no token needed)",
            description: Text::Plain(
                "The store, the mappings, and Graph as each task that calls it \
                (`directory`, `presence-poller`, `presence-writer`) last found it: 503 within seconds \
                of Graph failing or refusing the app's credentials, 200 again once calls go through. \
                Details never name the tenant, the app or a user (but for the admin-consent URL while a \
                Graph permission is missing: it is the fix); `GET /v1/health` has them.",
            ),
            params: &[],
            body: Body::None,
            replies: &[
                Reply::json(200, "Ready.", "Readiness"),
                Reply::json(503, "Not ready; the failing checks say why.", "Readiness"),
            ],
            errors: &[],
        },
    },
    Route {
        verb: Verb::Get,
        path: "/metrics",
        auth: Auth::Open,
        handler: Endpoint::Metrics,
        doc: OperationDoc {
            id: "metrics",
            summary: "Prometheus metrics (no token needed)",
            description: Text::Plain(
                "Open like the health endpoints, for scrapers; it includes \
                `presence_sync_ws_clients`, the event stream clients connected now.",
            ),
            params: &[],
            body: Body::None,
            replies: &[Reply {
                status: 200,
                description: "The Prometheus text exposition format.",
                content: Content::Metrics,
            }],
            errors: &[],
        },
    },
];

/// The paths served without a token, from [`ROUTES`].
pub fn open_paths() -> impl Iterator<Item = &'static str> {
    ROUTES
        .iter()
        .filter(|route| route.is_open())
        .map(|route| route.path)
}

/// How the API is set up.
#[derive(Clone, Debug)]
pub struct ApiSettings {
    /// The bearer token every `/v1` route but the OpenAPI document requires.
    pub token: Secret,
    /// The read-only viewer token, accepted on [`Auth::Viewer`] routes.
    pub viewer_token: Option<Secret>,
    /// Larger request bodies get 413.
    pub max_body_bytes: usize,
    /// Triggering it closes every open event stream (see [`Shutdown`]); pass
    /// the same value's [`Shutdown::stop`] to [`serve`](super::serve).
    pub shutdown: Shutdown,
    /// In a cluster, the active node's gate: once it shuts, every request
    /// (and every answer not yet sent) gets 503 `not_active`.
    pub gate: Option<Arc<crate::cluster::gate::Gate>>,
}

/// In a cluster: nothing is answered by a node that is no longer active,
/// neither a request that arrives after its gate shut nor one whose answer
/// was ready only after.
async fn active_only(
    State(gate): State<Arc<crate::cluster::gate::Gate>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(why) = gate.why_not() {
        return not_active(why);
    }
    let response = next.run(request).await;
    match gate.why_not() {
        Some(why) => not_active(why),
        None => response,
    }
}

fn not_active(why: String) -> Response {
    let mut response = ApiError::new(
        503,
        "not_active",
        format!(
            "this node is no longer the active one ({why}); send the request to the active node"
        ),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    response
}

/// What every handler is given.
pub(super) struct AppState<S> {
    pub(super) service: Arc<S>,
    pub(super) tokens: Tokens,
    pub(super) shutdown: Shutdown,
    /// The OpenAPI document, rendered once.
    pub(super) openapi: Bytes,
}

impl<S> Clone for AppState<S> {
    fn clone(&self) -> Self {
        AppState {
            service: self.service.clone(),
            tokens: self.tokens.clone(),
            shutdown: self.shutdown.clone(),
            openapi: self.openapi.clone(),
        }
    }
}

/// The API over `service`.
pub fn router<S: Service>(service: Arc<S>, settings: ApiSettings) -> Router {
    build(service, settings).0
}

/// The router, with each route of [`ROUTES`] behind the auth the table gives
/// it, and the routes it serves (as registered).
fn build<S: Service>(
    service: Arc<S>,
    settings: ApiSettings,
) -> (Router, Vec<(&'static str, &'static str)>) {
    let state = AppState {
        service,
        tokens: Tokens::new(&settings.token, settings.viewer_token.as_ref()),
        shutdown: settings.shutdown,
        openapi: Bytes::from(openapi::document().to_string()),
    };
    let mut api = Router::new();
    let mut served = Vec::with_capacity(ROUTES.len());
    for route in ROUTES {
        let handler = route.handler.method_router::<S>(route.verb);
        let handler = match route.auth {
            Auth::Open => handler,
            Auth::Token => handler.route_layer(middleware::from_fn_with_state(
                state.clone(),
                require_token::<S>,
            )),
            Auth::Viewer => handler.route_layer(middleware::from_fn_with_state(
                state.clone(),
                require_viewer::<S>,
            )),
        };
        api = api.route(route.path, handler);
        served.push((route.verb.as_str(), route.path));
    }
    let mut router = api
        .with_state(state)
        .merge(board::router())
        .layer(DefaultBodyLimit::max(settings.max_body_bytes));
    if let Some(gate) = settings.gate {
        router = router.layer(middleware::from_fn_with_state(gate, active_only));
    }
    let router = router
        .layer(middleware::from_fn(error_shape))
        .layer(middleware::from_fn(board::security_headers));
    (router, served)
}

async fn require_token<S: Service>(
    State(state): State<AppState<S>>,
    request: Request,
    next: Next,
) -> Response {
    match state.tokens.require_api(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal.into_response(),
    }
}

async fn require_viewer<S: Service>(
    State(state): State<AppState<S>>,
    request: Request,
    next: Next,
) -> Response {
    match state.tokens.require_viewer(request.headers()) {
        Ok(_) => next.run(request).await,
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

#[cfg(test)]
pub(crate) fn served_routes<S: Service>(
    service: Arc<S>,
    settings: ApiSettings,
) -> Vec<(&'static str, &'static str)> {
    build(service, settings).1
}
