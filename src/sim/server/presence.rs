//! Presence reads and writes on Graph's paths.
//!
//! Helpers return `Result<_, Response>` so a handler can `?`-style return
//! the ready Graph error; the Err size does not matter at these rates.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::context::CallerApp;
use super::errors::{bad_request, graph_error, user_not_found};
use super::{RequestCtx, Shared};
use crate::presence::Presence;
use crate::sim::rng::is_guid;
use crate::sim::tenant::{PresenceView, Tenant, TenantError};

/// getPresencesByUserId's documented maximum.
pub const MAX_IDS: usize = 650;

pub(crate) fn presence_json(view: &PresenceView) -> Value {
    json!({
        "id": view.id,
        "availability": view.presence.availability.as_str(),
        "activity": view.presence.activity.as_str(),
        "statusMessage": null,
        "outOfOfficeSettings": { "message": null, "isOutOfOffice": false },
        "sequenceNumber": view.sequence_number,
    })
}

pub(crate) async fn get_user(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<RequestCtx>,
    Path(id): Path<String>,
) -> Response {
    let view = shared.tenant(ctx.at).presence(&id, ctx.at);
    match view {
        Some(view) => {
            let mut body = presence_json(&view);
            body["@odata.context"] = json!(format!(
                "{}/$metadata#users('{}')/presence/$entity",
                shared.graph_base(),
                view.id
            ));
            Json(body).into_response()
        }
        None => user_not_found(&ctx, &id),
    }
}

/// `/communications/presences/{id}`: Microsoft's docs (example 3) and the Dev
/// Proxy mocks show a `{"value":[...]}` collection here, so the simulator
/// answers that shape; clients must accept an entity too (FACTS.md).
pub(crate) async fn get_communications(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<RequestCtx>,
    Path(id): Path<String>,
) -> Response {
    let view = shared.tenant(ctx.at).presence(&id, ctx.at);
    match view {
        Some(view) => Json(json!({
            "@odata.context": format!("{}/$metadata#communications/presences", shared.graph_base()),
            "value": [presence_json(&view)],
        }))
        .into_response(),
        None => user_not_found(&ctx, &id),
    }
}

/// Unknown (well-formed) ids are left out of the answer: the docs promise
/// one presence per user found and say nothing of the rest, and leaving them
/// out is what a client must cope with anyway. Malformed ids are a 400.
pub(crate) async fn by_user_ids(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<RequestCtx>,
    body: Bytes,
) -> Response {
    let body = match parse_object(&ctx, &body) {
        Ok(b) => b,
        Err(response) => return response,
    };
    let Some(ids) = body.get("ids").and_then(Value::as_array) else {
        return bad_request(
            &ctx,
            "The request body must contain 'ids', an array of user ids.",
        );
    };
    if ids.len() > MAX_IDS {
        return bad_request(
            &ctx,
            &format!(
                "Too many ids: {} (at most {MAX_IDS} per request).",
                ids.len()
            ),
        );
    }
    let mut wanted = Vec::with_capacity(ids.len());
    for id in ids {
        match id.as_str() {
            Some(id) if is_guid(id) => {
                if !wanted.iter().any(|w: &&str| w.eq_ignore_ascii_case(id)) {
                    wanted.push(id);
                }
            }
            _ => {
                return bad_request(
                    &ctx,
                    &format!("Invalid user id {id}: ids must be object ids (GUIDs)."),
                );
            }
        }
    }
    let mut tenant = shared.tenant(ctx.at);
    let value: Vec<Value> = wanted
        .iter()
        .filter_map(|id| tenant.presence(id, ctx.at))
        .map(|view| presence_json(&view))
        .collect();
    Json(json!({
        "@odata.context": format!("{}/$metadata#Collection(microsoft.graph.presence)", shared.graph_base()),
        "value": value,
    }))
    .into_response()
}

/// Graph ties an app's presence session to the app: `sessionId` must be
/// the calling app's client id.
fn check_session(
    ctx: &RequestCtx,
    body: &serde_json::Map<String, Value>,
    app: &str,
) -> Result<(), Response> {
    let Some(session) = body.get("sessionId").and_then(Value::as_str) else {
        return Err(bad_request(ctx, "sessionId is required."));
    };
    if !session.eq_ignore_ascii_case(app) {
        return Err(bad_request(
            ctx,
            "sessionId must be the application (client) id of the calling app.",
        ));
    }
    Ok(())
}

pub(crate) async fn set(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<RequestCtx>,
    Extension(CallerApp(app)): Extension<CallerApp>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Response> {
    let body = parse_object(&ctx, &body)?;
    check_session(&ctx, &body, &app)?;
    let presence = pair(&ctx, &body)?;
    let expiration = duration_field(&ctx, &body)?;
    let result = shared.tenant(ctx.at).set_presence(
        &id,
        &app.to_ascii_lowercase(),
        presence,
        expiration,
        ctx.at,
    );
    Ok(answer(&ctx, &id, result))
}

pub(crate) async fn clear(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<RequestCtx>,
    Extension(CallerApp(app)): Extension<CallerApp>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Response> {
    let body = parse_object(&ctx, &body)?;
    check_session(&ctx, &body, &app)?;
    let result = shared
        .tenant(ctx.at)
        .clear_presence(&id, &app.to_ascii_lowercase(), ctx.at);
    Ok(answer(&ctx, &id, result))
}

pub(crate) async fn set_preferred(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<RequestCtx>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Response> {
    let body = parse_object(&ctx, &body)?;
    let presence = pair(&ctx, &body)?;
    let expiration =
        duration_field(&ctx, &body)?.unwrap_or_else(|| Tenant::default_preferred_expiry(&presence));
    let result = shared
        .tenant(ctx.at)
        .set_preferred(&id, presence, Some(expiration), ctx.at);
    Ok(answer(&ctx, &id, result))
}

/// The docs ask for `{}`; an empty body is accepted too.
pub(crate) async fn clear_preferred(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<RequestCtx>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if !body.iter().all(u8::is_ascii_whitespace)
        && let Err(response) = parse_object(&ctx, &body)
    {
        return response;
    }
    let result = shared.tenant(ctx.at).clear_preferred(&id, ctx.at);
    answer(&ctx, &id, result)
}

/// 200 with no body, as Graph answers presence writes.
fn answer(ctx: &RequestCtx, id: &str, result: Result<(), TenantError>) -> Response {
    match result {
        Ok(()) => StatusCode::OK.into_response(),
        Err(TenantError::UnknownUser(_)) => user_not_found(ctx, id),
        Err(TenantError::SessionNotFound(session)) => graph_error(
            ctx,
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("The presence session {session} does not exist."),
        ),
        Err(error @ (TenantError::InvalidPair(..) | TenantError::InvalidDuration)) => {
            bad_request(ctx, &error.to_string())
        }
    }
}

pub(crate) fn parse_object(
    ctx: &RequestCtx,
    body: &[u8],
) -> Result<serde_json::Map<String, Value>, Response> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(bad_request(ctx, "The request body must be a JSON object.")),
        Err(error) => Err(bad_request(
            ctx,
            &format!("Invalid JSON in the request body: {error}"),
        )),
    }
}

pub(crate) fn pair(
    ctx: &RequestCtx,
    body: &serde_json::Map<String, Value>,
) -> Result<Presence, Response> {
    match (
        body.get("availability").and_then(Value::as_str),
        body.get("activity").and_then(Value::as_str),
    ) {
        (Some(a), Some(b)) => Ok(Presence::from_graph(a, b)),
        _ => Err(bad_request(
            ctx,
            "availability and activity are required strings.",
        )),
    }
}

fn duration_field(
    ctx: &RequestCtx,
    body: &serde_json::Map<String, Value>,
) -> Result<Option<Duration>, Response> {
    match body.get("expirationDuration") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => parse_iso_duration(text).map(Some).ok_or_else(|| {
            bad_request(
                ctx,
                &format!("expirationDuration '{text}' is not an ISO 8601 duration such as PT1H."),
            )
        }),
        Some(_) => Err(bad_request(
            ctx,
            "expirationDuration must be a string such as PT1H.",
        )),
    }
}

/// ISO 8601 durations as Graph takes them: `PT5M`, `PT1H30M`, `P1D`,
/// `P7DT12H`. Years, months and weeks are refused (not fixed lengths).
pub(crate) fn parse_iso_duration(text: &str) -> Option<Duration> {
    let upper = text.trim().to_ascii_uppercase();
    let rest = upper.strip_prefix('P')?;
    let (days, time) = match rest.split_once('T') {
        Some((days, time)) => (days, Some(time)),
        None => (rest, None),
    };
    let mut total = Duration::ZERO;
    if !days.is_empty() {
        let n: u64 = days.strip_suffix('D')?.parse().ok()?;
        total = total.checked_add(Duration::from_secs(n.checked_mul(86_400)?))?;
    }
    if let Some(time) = time {
        total = total.checked_add(crate::duration::parse_duration(&format!("PT{time}")).ok()?)?;
    } else if days.is_empty() {
        return None;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reachable from request bodies: an absurd duration is refused, not a panic.
    #[test]
    fn a_huge_duration_is_refused_not_a_panic() {
        assert_eq!(parse_iso_duration("P213503982334601DT8H"), None);
    }

    #[test]
    fn iso_durations() {
        assert_eq!(parse_iso_duration("PT5M"), Some(Duration::from_secs(300)));
        assert_eq!(
            parse_iso_duration("pt1h30m"),
            Some(Duration::from_secs(5400))
        );
        assert_eq!(parse_iso_duration("P1D"), Some(Duration::from_secs(86_400)));
        assert_eq!(
            parse_iso_duration("P1DT1H"),
            Some(Duration::from_secs(90_000))
        );
        for bad in ["", "P", "PT", "5M", "P1W", "P1Y", "PTxM"] {
            assert_eq!(parse_iso_duration(bad), None, "{bad}");
        }
    }
}
