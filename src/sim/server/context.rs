//! Per-request plumbing: request ids, stats, and the gate every Graph call
//! passes (latency, bearer token, budget, injected errors) in that order —
//! the budget is per app, so the token is checked before counting.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::errors::{graph_error, throttled};
use super::{Shared, lock};
use crate::sim::auth::Needs;
use crate::time::Timestamp;

/// What handlers know about the request they answer.
#[derive(Clone, Debug)]
pub(crate) struct RequestCtx {
    pub request_id: String,
    pub client_request_id: String,
    pub at: Timestamp,
}

/// The calling app, set by the gate once its token checks out.
#[derive(Clone, Debug)]
pub(crate) struct CallerApp(pub String);

pub(crate) async fn request_context(
    State(shared): State<Arc<Shared>>,
    mut request: Request,
    next: Next,
) -> Response {
    let request_id = shared.new_id();
    // Graph echoes the caller's client-request-id, or makes one up.
    let client_request_id = request
        .headers()
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| request_id.clone());
    let label = format!(
        "{} {}",
        request.method(),
        request
            .extensions()
            .get::<MatchedPath>()
            .map_or("(unmatched)", |p| p.as_str())
    );
    let ctx = RequestCtx {
        request_id: request_id.clone(),
        client_request_id: client_request_id.clone(),
        at: shared.clock.now(),
    };
    request.extensions_mut().insert(ctx);
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        ("request-id", &request_id),
        ("client-request-id", &client_request_id),
    ] {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    }
    if !label.contains(" /_sim/") {
        let mut stats = lock(&shared.stats);
        stats.total += 1;
        *stats
            .by_endpoint
            .entry(label)
            .or_default()
            .entry(response.status().as_u16())
            .or_default() += 1;
    }
    response
}

pub(crate) async fn graph_gate(
    State(shared): State<Arc<Shared>>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(ctx) = request.extensions().get::<RequestCtx>().cloned() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let latency = lock(&shared.faults).latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let now = shared.clock.now();
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    let app = match lock(&shared.auth).validate(bearer, now) {
        Ok(caller) => caller.clone(),
        Err(rejection) => {
            let mut response = graph_error(
                &ctx,
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationToken",
                &rejection.to_string(),
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\""),
            );
            return response;
        }
    };
    // Authorisation before the budget: a call the roles do not allow is
    // refused as Graph refuses it, and spends nothing.
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    // Subscriptions decide for themselves (delegated only, 403 for an app
    // token, in Graph's words); elsewhere a delegated token's scopes count
    // as an app token's roles.
    if !path.starts_with("/v1.0/subscriptions") {
        let needs = needs_for(&path);
        let granted = match &app.user {
            Some(user) => &user.scopes,
            None => &app.roles,
        };
        if !needs.allowed(granted) {
            return forbidden(&ctx, needs);
        }
    }
    if let Err(retry) = lock(&shared.throttle).admit(now) {
        lock(&shared.stats).throttled += 1;
        return throttled(&ctx, retry);
    }
    let injected = {
        let mut faults = lock(&shared.faults);
        let rate = faults.error_rate;
        (rate > 0.0 && faults.rng.chance(rate)).then(|| faults.rng.chance(0.5))
    };
    if let Some(unavailable) = injected {
        lock(&shared.stats).faults_injected += 1;
        return if unavailable {
            graph_error(
                &ctx,
                StatusCode::SERVICE_UNAVAILABLE,
                "serviceNotAvailable",
                "The service is temporarily unavailable. Please try again later.",
            )
        } else {
            graph_error(
                &ctx,
                StatusCode::INTERNAL_SERVER_ERROR,
                "generalException",
                "An unspecified error has occurred.",
            )
        };
    }
    request
        .extensions_mut()
        .insert(CallerApp(app.client_id.clone()));
    request.extensions_mut().insert(app);
    next.run(request).await
}

/// The roles a Graph route needs (its matched path).
fn needs_for(path: &str) -> Needs {
    if path.contains("/groups/") {
        Needs::GroupMemberRead
    } else if path.contains("/presence/") {
        Needs::PresenceWrite
    } else if path.contains("presence") || path.contains("Presence") {
        Needs::PresenceRead
    } else {
        Needs::UserRead
    }
}

/// Graph's 403 for a call the token's roles do not allow: the directory
/// answers `Authorization_RequestDenied` with its sentence, the presence
/// service a bare `Forbidden` with an empty message.
fn forbidden(ctx: &RequestCtx, needs: Needs) -> Response {
    match needs {
        Needs::UserRead | Needs::GroupMemberRead => graph_error(
            ctx,
            StatusCode::FORBIDDEN,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        ),
        Needs::PresenceRead | Needs::PresenceWrite => {
            graph_error(ctx, StatusCode::FORBIDDEN, "Forbidden", "")
        }
    }
}
