//! Error bodies in the shapes Microsoft documents: Graph's
//! `{"error":{code,message,innerError}}` and Entra's token errors.

use axum::Json;
use axum::extract::Extension;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::RequestCtx;
use crate::sim::auth::EntraError;
use crate::sim::throttle::RetryAfter;
use crate::time::Timestamp;

/// Graph's innerError date: ISO 8601 without offset, e.g. `2020-08-18T12:51:51`.
pub(crate) fn graph_date(at: Timestamp) -> String {
    Timestamp::to_utc(at)
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string()
}

/// ISO 8601 UTC with `Z`, for dates in resources.
pub(crate) fn iso_date(at: Timestamp) -> String {
    at.to_utc().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub(crate) fn graph_error(
    ctx: &RequestCtx,
    status: StatusCode,
    code: &str,
    message: &str,
) -> Response {
    let body = json!({
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": graph_date(ctx.at),
                "request-id": ctx.request_id,
                "client-request-id": ctx.client_request_id,
            }
        }
    });
    (status, Json(body)).into_response()
}

pub(crate) fn bad_request(ctx: &RequestCtx, message: &str) -> Response {
    graph_error(ctx, StatusCode::BAD_REQUEST, "BadRequest", message)
}

pub(crate) fn user_not_found(ctx: &RequestCtx, id: &str) -> Response {
    graph_error(
        ctx,
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
        &format!(
            "Resource '{id}' does not exist or one of its queried reference-property objects are not present."
        ),
    )
}

/// 429 as in Graph's throttling page: the body's innerError carries code,
/// status and message too, and `Retry-After` may have decimals.
pub(crate) fn throttled(ctx: &RequestCtx, retry: RetryAfter) -> Response {
    let body = json!({
        "error": {
            "code": "TooManyRequests",
            "innerError": {
                "code": "429",
                "date": graph_date(ctx.at),
                "message": "Please retry after",
                "request-id": ctx.request_id,
                "client-request-id": ctx.client_request_id,
                "status": "429"
            },
            "message": "Please retry again later."
        }
    });
    let mut response = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&retry.header_value()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// Entra's token error, with the trace and correlation ids also inside the
/// description as Entra writes them.
pub(crate) fn entra_error(ctx: &RequestCtx, error: &EntraError) -> Response {
    let timestamp = Timestamp::to_utc(ctx.at)
        .format("%Y-%m-%d %H:%M:%SZ")
        .to_string();
    let body = json!({
        "error": error.error,
        "error_description": format!(
            "AADSTS{}: {}\r\nTrace ID: {}\r\nCorrelation ID: {}\r\nTimestamp: {}",
            error.code, error.description, ctx.request_id, ctx.client_request_id, timestamp
        ),
        "error_codes": [error.code],
        "timestamp": timestamp,
        "trace_id": ctx.request_id,
        "correlation_id": ctx.client_request_id,
    });
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_REQUEST);
    (status, Json(body)).into_response()
}

pub(crate) async fn not_found(ctx: Option<Extension<RequestCtx>>) -> Response {
    match ctx {
        Some(Extension(ctx)) => graph_error(
            &ctx,
            StatusCode::NOT_FOUND,
            "UnknownError",
            "Resource not found for the segment.",
        ),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
