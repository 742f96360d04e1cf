//! `/v1.0/subscriptions`: create (with the validation handshake to both
//! URLs), list, read, renew (`PATCH`), reauthorize and delete, over the
//! pure [`crate::sim::subscriptions`] rules, answered in Graph's shapes.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::errors::graph_error;
use super::presence::parse_object;
use super::{RequestCtx, Shared, lock};
use crate::sim::auth;
use crate::sim::notify::{delivery, graph_datetime, rich};
use crate::sim::subscriptions::{Caller, NewSubscription, Subscription, SubscriptionError};
use crate::time::Timestamp;

/// A subscription as Graph returns it.
pub(crate) fn subscription_json(s: &Subscription, graph_base: &str) -> Value {
    json!({
        "@odata.context": format!("{graph_base}/$metadata#subscriptions/$entity"),
        "id": s.id,
        "resource": s.resource,
        "applicationId": s.application_id,
        "changeType": s.change_type,
        "clientState": s.client_state,
        "notificationUrl": s.notification_url,
        "lifecycleNotificationUrl": s.lifecycle_url,
        "expirationDateTime": graph_datetime(s.expires_at),
        "creatorId": s.creator_id,
        "includeResourceData": s.encryption.is_some(),
        "encryptionCertificateId": s.encryption.as_ref().map(|e| e.certificate_id.clone()),
        "latestSupportedTlsVersion": "v1_2",
        "notificationContentType": "application/json",
    })
}

fn caller(app: &auth::Caller) -> Caller {
    Caller {
        application_id: app.client_id.clone(),
        user_oid: app.user.as_ref().map(|u| u.oid.clone()),
    }
}

fn refused(ctx: &RequestCtx, error: SubscriptionError) -> Response {
    let (status, code) = match &error {
        SubscriptionError::AppOnly | SubscriptionError::Quota => {
            (StatusCode::FORBIDDEN, "ExtensionError")
        }
        SubscriptionError::BadRequest(_) | SubscriptionError::UnknownUsers(_) => {
            (StatusCode::BAD_REQUEST, "InvalidRequest")
        }
        SubscriptionError::Conflict(_) => (StatusCode::CONFLICT, "ExtensionError"),
        SubscriptionError::NotFound(_) => (StatusCode::NOT_FOUND, "ResourceNotFound"),
    };
    graph_error(ctx, status, code, &error.to_string())
}

fn parse_datetime(value: Option<&Value>) -> Result<Option<Timestamp>, SubscriptionError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => chrono::DateTime::parse_from_rfc3339(text)
            .map(|at| Some(Timestamp::from_utc(at.with_timezone(&chrono::Utc))))
            .map_err(|_| {
                SubscriptionError::BadRequest(format!(
                    "expirationDateTime '{text}' is not a date-time like 2024-01-01T10:00:00.0000000Z."
                ))
            }),
        Some(other) => Err(SubscriptionError::BadRequest(format!(
            "expirationDateTime must be a string, not {other}."
        ))),
    }
}

fn read_new(body: &serde_json::Map<String, Value>) -> Result<NewSubscription, SubscriptionError> {
    let text = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_string);
    let required = |name: &str| {
        text(name)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| SubscriptionError::BadRequest(format!("{name} is required.")))
    };
    Ok(NewSubscription {
        change_type: required("changeType")?,
        notification_url: required("notificationUrl")?,
        lifecycle_url: text("lifecycleNotificationUrl").filter(|t| !t.is_empty()),
        resource: required("resource")?,
        expires_at: parse_datetime(body.get("expirationDateTime"))?,
        client_state: text("clientState"),
        include_resource_data: body
            .get("includeResourceData")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        encryption_certificate: text("encryptionCertificate"),
        encryption_certificate_id: text("encryptionCertificateId"),
    })
}

/// The token Graph sends in a handshake; its spaces and colons test the
/// receiver's URL decoding.
fn validation_token(shared: &Shared) -> String {
    format!(
        "Validation: Testing client application reachability for subscription Request-Id: {}",
        shared.new_id()
    )
}

/// `POST /v1.0/subscriptions`.
pub(crate) async fn create(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<RequestCtx>,
    Extension(app): Extension<auth::Caller>,
    body: Bytes,
) -> Response {
    let body = match parse_object(&ctx, &body) {
        Ok(b) => b,
        Err(response) => return response,
    };
    let who = caller(&app);
    if who.user_oid.is_none() {
        return refused(&ctx, SubscriptionError::AppOnly);
    }
    let new = match read_new(&body) {
        Ok(n) => n,
        Err(error) => return refused(&ctx, error),
    };
    let checked = {
        let users: std::collections::HashSet<String> = {
            let tenant = shared.tenant(ctx.at);
            tenant
                .directory()
                .users()
                .map(|u| u.id.to_lowercase())
                .collect()
        };
        lock(&shared.subscriptions).check_new(
            &who,
            new,
            shared.new_id(),
            |id| users.contains(&id.to_lowercase()),
            rich::check_certificate,
            ctx.at,
        )
    };
    let checked = match checked {
        Ok(c) => c,
        Err(error) => return refused(&ctx, error),
    };
    let mut urls = vec![checked.subscription.notification_url.clone()];
    urls.extend(checked.subscription.lifecycle_url.clone());
    for url in urls {
        let token = validation_token(&shared);
        let result = delivery::handshake(&shared.http, &url, &token).await;
        {
            let mut notifier = lock(&shared.notifier);
            notifier.stats.handshakes += 1;
            if result.is_err() {
                notifier.stats.handshakes_failed += 1;
            }
        }
        if let Err(error) = result {
            return graph_error(
                &ctx,
                StatusCode::BAD_REQUEST,
                "InvalidRequest",
                &format!(
                    "Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request. ({error})"
                ),
            );
        }
    }
    let now = shared.clock.now();
    let inserted = lock(&shared.subscriptions).insert(checked, now);
    match inserted {
        Ok(subscription) => {
            shared.baseline(&subscription, now);
            lock(&shared.notifier).stats.subscriptions_created += 1;
            (
                StatusCode::CREATED,
                Json(subscription_json(&subscription, &shared.graph_base())),
            )
                .into_response()
        }
        Err(error) => refused(&ctx, error),
    }
}

/// `GET /v1.0/subscriptions`: the caller's own.
pub(crate) async fn list(
    State(shared): State<Arc<Shared>>,
    Extension(app): Extension<auth::Caller>,
) -> Response {
    let graph = shared.graph_base();
    let value: Vec<Value> = lock(&shared.subscriptions)
        .list(&caller(&app), shared.clock.now())
        .iter()
        .map(|s| subscription_json(s, &graph))
        .collect();
    Json(json!({
        "@odata.context": format!("{graph}/$metadata#subscriptions"),
        "value": value,
    }))
    .into_response()
}

/// `GET /v1.0/subscriptions/{id}`.
pub(crate) async fn one(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<RequestCtx>,
    Extension(app): Extension<auth::Caller>,
    Path(id): Path<String>,
) -> Response {
    let result = lock(&shared.subscriptions).get(&caller(&app), &id, ctx.at);
    match result {
        Ok(s) => Json(subscription_json(&s, &shared.graph_base())).into_response(),
        Err(error) => refused(&ctx, error),
    }
}

/// `PATCH /v1.0/subscriptions/{id} {expirationDateTime}`.
pub(crate) async fn renew(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<RequestCtx>,
    Extension(app): Extension<auth::Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let body = match parse_object(&ctx, &body) {
        Ok(b) => b,
        Err(response) => return response,
    };
    let expires_at = match parse_datetime(body.get("expirationDateTime")) {
        Ok(at) => at,
        Err(error) => return refused(&ctx, error),
    };
    let result = lock(&shared.subscriptions).renew(&caller(&app), &id, expires_at, ctx.at);
    match result {
        Ok(s) => Json(subscription_json(&s, &shared.graph_base())).into_response(),
        Err(error) => refused(&ctx, error),
    }
}

/// `POST /v1.0/subscriptions/{id}/reauthorize` → 204.
pub(crate) async fn reauthorize(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<RequestCtx>,
    Extension(app): Extension<auth::Caller>,
    Path(id): Path<String>,
) -> Response {
    let result = lock(&shared.subscriptions).reauthorize(&caller(&app), &id, ctx.at);
    match result {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => refused(&ctx, error),
    }
}

/// `DELETE /v1.0/subscriptions/{id}` → 204.
pub(crate) async fn delete(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<RequestCtx>,
    Extension(app): Extension<auth::Caller>,
    Path(id): Path<String>,
) -> Response {
    let result = lock(&shared.subscriptions).delete(&caller(&app), &id, ctx.at);
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => refused(&ctx, error),
    }
}
