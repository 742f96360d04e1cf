//! `/_sim/...`: control endpoints for tests and demos, outside Graph's paths
//! and without auth. Errors use Graph's error shape too, so one client
//! helper reads both.
//!
//! Helpers return `Result<_, Response>` so a handler can `?`-style return
//! the ready Graph error; the Err size does not matter at these rates.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::errors::{bad_request, graph_error, user_not_found};
use super::presence::{pair, parse_iso_duration, parse_object, presence_json};
use super::users::full_user_json;
use super::{RequestCtx, Shared, lock};
use crate::sim::directory::{DirectoryError, NewUser};
use crate::sim::tenant::TenantError;

/// `POST /_sim/users`: every field optional; what is missing is generated.
/// Unknown fields are refused (a `upn` for `userPrincipalName` must not
/// silently make someone else).
pub(crate) async fn add_user(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<RequestCtx>,
    body: Bytes,
) -> Response {
    const FIELDS: &[&str] = &[
        "displayName",
        "givenName",
        "surname",
        "userPrincipalName",
        "mail",
        "jobTitle",
        "businessPhones",
        "mobilePhone",
        "teams",
        "department",
    ];
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        match parse_fields(&ctx, &body, FIELDS) {
            Ok(b) => b,
            Err(response) => return response,
        }
    };
    let text = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_string);
    let phones = body
        .get("businessPhones")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect::<Vec<_>>()
        });
    let new = NewUser {
        display_name: text("displayName"),
        given_name: text("givenName"),
        surname: text("surname"),
        user_principal_name: text("userPrincipalName"),
        mail: text("mail"),
        job_title: text("jobTitle"),
        business_phones: phones,
        mobile_phone: text("mobilePhone"),
        teams_phone: body.get("teams").and_then(Value::as_bool),
        department: text("department"),
    };
    let mut tenant = shared.tenant(ctx.at);
    match tenant.add_user(new, ctx.at) {
        Ok(index) => match tenant.user_at(index) {
            Some(user) => (StatusCode::CREATED, Json(full_user_json(user))).into_response(),
            None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        },
        Err(error @ DirectoryError::DuplicateUpn(_)) => {
            graph_error(&ctx, StatusCode::CONFLICT, "Conflict", &error.to_string())
        }
        Err(error @ DirectoryError::BadUpn(_)) => bad_request(&ctx, &error.to_string()),
    }
}

/// `POST /_sim/users/{id}/presence {availability, activity}`: what the user
/// shows in their own Teams client. `Offline` (or `null`) signs them out.
pub(crate) async fn set_client(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<RequestCtx>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let presence = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Null) => None,
        _ => match parse_object(&ctx, &body).and_then(|b| pair(&ctx, &b)) {
            Ok(p) => Some(p),
            Err(response) => return response,
        },
    };
    let mut tenant = shared.tenant(ctx.at);
    match tenant.set_client(&id, presence, ctx.at) {
        Ok(()) => current(&mut tenant, &ctx, &id),
        Err(_) => user_not_found(&ctx, &id),
    }
}

/// `POST /_sim/users/{id}/preferred {availability, activity,
/// expirationDuration?}` sets the user's manual choice (no expiry unless
/// given); `null` or `{"availability": null}` clears it.
pub(crate) async fn set_preferred(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<RequestCtx>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let parsed = serde_json::from_slice::<Value>(&body).unwrap_or(Value::Bool(false));
    let clear = parsed.is_null() || parsed.get("availability").is_some_and(Value::is_null);
    let mut tenant = shared.tenant(ctx.at);
    let result = if clear {
        tenant.clear_preferred(&id, ctx.at)
    } else {
        let body = match parse_object(&ctx, &body) {
            Ok(b) => b,
            Err(response) => return response,
        };
        let presence = match pair(&ctx, &body) {
            Ok(p) => p,
            Err(response) => return response,
        };
        let expiration = match body.get("expirationDuration").and_then(Value::as_str) {
            None => None,
            Some(text) => match parse_iso_duration(text) {
                Some(d) => Some(d),
                None => return bad_request(&ctx, "expirationDuration must look like PT1H."),
            },
        };
        tenant.set_preferred(&id, presence, expiration, ctx.at)
    };
    match result {
        Ok(()) => current(&mut tenant, &ctx, &id),
        Err(TenantError::UnknownUser(_)) => user_not_found(&ctx, &id),
        Err(error) => bad_request(&ctx, &error.to_string()),
    }
}

fn current(tenant: &mut crate::sim::tenant::Tenant, ctx: &RequestCtx, id: &str) -> Response {
    match tenant.presence(id, ctx.at) {
        Some(view) => Json(presence_json(&view)).into_response(),
        None => user_not_found(ctx, id),
    }
}

/// A control body: a JSON object with no field outside `fields` (a typo
/// must not silently change nothing).
#[allow(clippy::result_large_err)] // the answer, once, at a request's edge
fn parse_fields(
    ctx: &RequestCtx,
    body: &[u8],
    fields: &[&str],
) -> Result<serde_json::Map<String, Value>, Response> {
    let body = parse_object(ctx, body)?;
    match body.keys().find(|k| !fields.contains(&k.as_str())) {
        Some(unknown) => Err(bad_request(
            ctx,
            &format!("unknown field '{unknown}'; known: {}", fields.join(", ")),
        )),
        None => Ok(body),
    }
}

/// `POST /_sim/faults`: each field optional, unknown fields refused (a typo
/// must not silently inject nothing). Besides the Graph faults,
/// `secret_expired` makes the token endpoint answer AADSTS7000222.
pub(crate) async fn faults(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<RequestCtx>,
    body: Bytes,
) -> Response {
    const FIELDS: &[&str] = &[
        "error_rate",
        "latency_ms",
        "throttle_budget",
        "expire_tokens",
        "secret_expired",
    ];
    let body = match parse_fields(&ctx, &body, FIELDS) {
        Ok(b) => b,
        Err(response) => return response,
    };
    let error_rate = match body.get("error_rate") {
        None => None,
        Some(v) => match v.as_f64() {
            Some(rate) if (0.0..=1.0).contains(&rate) => Some(rate),
            _ => return bad_request(&ctx, "error_rate must be a number from 0 to 1."),
        },
    };
    let latency = match body.get("latency_ms") {
        None => None,
        Some(v) => match v.as_u64() {
            Some(ms) if ms <= 600_000 => Some(Duration::from_millis(ms)),
            _ => {
                return bad_request(
                    &ctx,
                    "latency_ms must be a whole number of milliseconds up to 600000.",
                );
            }
        },
    };
    let budget = match body.get("throttle_budget") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(v) => match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) => Some(Some(n)),
            None => {
                return bad_request(
                    &ctx,
                    "throttle_budget must be a whole number of requests per 30 s, or null for no limit.",
                );
            }
        },
    };
    let expire = match body.get("expire_tokens") {
        None => false,
        Some(v) => match v.as_bool() {
            Some(b) => b,
            None => return bad_request(&ctx, "expire_tokens must be true or false."),
        },
    };
    let secret_expired = match body.get("secret_expired") {
        None => None,
        Some(v) => match v.as_bool() {
            Some(b) => Some(b),
            None => return bad_request(&ctx, "secret_expired must be true or false."),
        },
    };
    {
        let mut faults = lock(&shared.faults);
        if let Some(rate) = error_rate {
            faults.error_rate = rate;
        }
        if let Some(latency) = latency {
            faults.latency = latency;
        }
    }
    if let Some(budget) = budget {
        lock(&shared.throttle).set_budget(budget);
    }
    if expire {
        lock(&shared.auth).expire_all(ctx.at);
    }
    if let Some(expired) = secret_expired {
        lock(&shared.auth).set_secret_expired(expired);
    }
    Json(faults_json(&shared)).into_response()
}

fn faults_json(shared: &Shared) -> Value {
    let faults = lock(&shared.faults);
    json!({
        "error_rate": faults.error_rate,
        "latency_ms": u64::try_from(faults.latency.as_millis()).unwrap_or(u64::MAX),
        "throttle_budget": lock(&shared.throttle).budget(),
        "secret_expired": lock(&shared.auth).secret_expired(),
    })
}

/// `GET /_sim/roles`: the application roles granted to the app.
pub(crate) async fn roles(State(shared): State<Arc<Shared>>) -> Response {
    Json(json!({ "roles": lock(&shared.auth).roles() })).into_response()
}

/// `POST /_sim/roles {"roles": [...]}` replaces the granted roles, or
/// `{"grant": [...], "revoke": [...]}` changes them (an admin consenting,
/// or removing a permission). As in Entra, the next token carries them;
/// tokens issued before keep theirs until they expire.
pub(crate) async fn set_roles(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<RequestCtx>,
    body: Bytes,
) -> Response {
    const FIELDS: &[&str] = &["roles", "grant", "revoke"];
    let body = match parse_fields(&ctx, &body, FIELDS) {
        Ok(b) => b,
        Err(response) => return response,
    };
    let mut lists = BTreeMap::new();
    for name in FIELDS {
        let Some(value) = body.get(*name) else {
            continue;
        };
        let list: Option<Vec<String>> = value.as_array().and_then(|items| {
            items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect()
        });
        match list {
            Some(list) => {
                lists.insert(*name, list);
            }
            None => {
                return bad_request(&ctx, &format!("{name} must be a list of role names."));
            }
        }
    }
    let mut auth = lock(&shared.auth);
    let mut roles: Vec<String> = match lists.remove("roles") {
        Some(roles) => roles,
        None => auth.roles().to_vec(),
    };
    roles.extend(lists.remove("grant").unwrap_or_default());
    let revoke = lists.remove("revoke").unwrap_or_default();
    roles.retain(|r| !revoke.iter().any(|x| x.eq_ignore_ascii_case(r)));
    auth.set_roles(roles);
    Json(json!({ "roles": auth.roles() })).into_response()
}

/// `POST /_sim/clock {"advance_seconds": n}`: moves the simulator's clock
/// (fades, expiries and token lifetimes follow), for demos.
pub(crate) async fn clock(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<RequestCtx>,
    body: Bytes,
) -> Response {
    let body = match parse_object(&ctx, &body) {
        Ok(b) => b,
        Err(response) => return response,
    };
    match body.get("advance_seconds").and_then(Value::as_f64) {
        Some(secs) if (0.0..=1e9).contains(&secs) => {
            shared.clock.advance(Duration::from_secs_f64(secs));
            Json(json!({ "now": super::errors::iso_date(shared.clock.now()) })).into_response()
        }
        _ => bad_request(
            &ctx,
            "advance_seconds must be a number of seconds, 0 or more.",
        ),
    }
}

/// `GET /_sim/stats`.
pub(crate) async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    Json(stats_json(&shared)).into_response()
}

pub(crate) fn stats_json(shared: &Shared) -> Value {
    let stats = lock(&shared.stats);
    let requests: BTreeMap<&String, BTreeMap<String, u64>> = stats
        .by_endpoint
        .iter()
        .map(|(endpoint, by_status)| {
            (
                endpoint,
                by_status.iter().map(|(s, n)| (s.to_string(), *n)).collect(),
            )
        })
        .collect();
    let n = lock(&shared.notifier).stats.clone();
    let now = shared.clock.now();
    let subscriptions = {
        let mut all = lock(&shared.subscriptions);
        all.remove_expired(now);
        all.all(now).count()
    };
    json!({
        "requests": requests,
        "total": stats.total,
        "throttled": stats.throttled,
        "faults_injected": stats.faults_injected,
        "subscriptions": {
            "live": subscriptions,
            "created": n.subscriptions_created,
        },
        "notifications": {
            "delivered": n.delivered,
            "dropped": n.dropped,
            "duplicated": n.duplicated,
            "failed": n.failed,
            "slow": n.slow,
            "retries": n.retries,
            "handshakes": n.handshakes,
            "handshakes_failed": n.handshakes_failed,
            "lifecycle_delivered": n.lifecycle_delivered,
        },
    })
}
