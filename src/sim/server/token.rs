//! `POST /{tenant}/oauth2/v2.0/token`: Entra's client-credentials grant,
//! and the delegated grants (device code, refresh token) handed to
//! [`super::devicecode`].

use std::sync::Arc;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::errors::entra_error;
use super::{RequestCtx, Shared, form, lock};
use crate::sim::auth::TokenRequest;

pub(crate) async fn issue(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<RequestCtx>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Response {
    let pairs = form::parse(&String::from_utf8_lossy(&body));
    match form::get(&pairs, "grant_type") {
        Some(super::devicecode::DEVICE_CODE_GRANT) => {
            return super::devicecode::redeem(&shared, &ctx, &tenant, &body);
        }
        Some("refresh_token") => return super::devicecode::refresh(&shared, &ctx, &tenant, &body),
        _ => {}
    }
    let field = |name: &str| form::get(&pairs, name).map(str::to_string);
    let request = TokenRequest {
        grant_type: field("grant_type"),
        client_id: field("client_id"),
        client_secret: field("client_secret"),
        client_assertion: field("client_assertion"),
        scope: field("scope"),
    };
    let mut auth = lock(&shared.auth);
    if let Err(error) = auth.check(&tenant, &request, ctx.at) {
        return entra_error(&ctx, &error);
    }
    // Unguessable: tokens are the only credential Graph checks.
    let mut bytes = [0u8; 32];
    if SystemRandom::new().fill(&mut bytes).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let (token, expires_in) = auth.issue(&bytes, ctx.at);
    Json(json!({
        "token_type": "Bearer",
        "expires_in": expires_in,
        "ext_expires_in": expires_in,
        "access_token": token,
    }))
    .into_response()
}
