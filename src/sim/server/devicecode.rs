//! Entra's device-code flow and refresh grant for delegated sign-in
//! (`POST /{tenant}/oauth2/v2.0/devicecode`, the `device_code` and
//! `refresh_token` grants of the token endpoint), and the control routes
//! that play the user at the browser: `POST /_sim/devicecode/approve
//! {"user_code","upn"}` and `.../decline {"user_code"}`.
//!
//! These are public-client requests: `client_id` alone is enough, as the
//! contract with the daemon says; a secret or assertion sent along is
//! ignored.

use std::sync::Arc;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::errors::{bad_request, entra_error, graph_error};
use super::presence::parse_object;
use super::{RequestCtx, Shared, form, lock};
use crate::sim::auth::missing;
use crate::sim::delegated::{ApprovalError, SERVICE_ACCOUNT_PREFIX, SignedIn, parse_scopes};

/// The device-code grant type (RFC 8628).
pub(crate) const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The page a user would open; the simulator's user is the control route.
pub(crate) const VERIFICATION_URI: &str = "https://microsoft.com/devicelogin";

/// `count` random bytes, base64url: codes and tokens nobody can guess.
pub(crate) fn random_text(count: usize) -> Option<String> {
    let mut bytes = vec![0u8; count];
    SystemRandom::new().fill(&mut bytes).ok()?;
    Some(URL_SAFE_NO_PAD.encode(bytes))
}

/// A user code as Entra shows them: nine letters and digits that read
/// unambiguously.
fn user_code() -> Option<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 9];
    SystemRandom::new().fill(&mut bytes).ok()?;
    Some(
        bytes
            .iter()
            .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
            .collect(),
    )
}

fn fields(body: &Bytes) -> Vec<(String, String)> {
    form::parse(&String::from_utf8_lossy(body))
}

/// `POST /{tenant}/oauth2/v2.0/devicecode` `client_id`, `scope`.
pub(crate) async fn start(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<RequestCtx>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Response {
    let pairs = fields(&body);
    let client_id = form::get(&pairs, "client_id");
    let checked = {
        let auth = lock(&shared.auth);
        auth.check_tenant(&tenant)
            .and_then(|()| auth.check_client_id(client_id))
            .and_then(|()| {
                let scope = form::get(&pairs, "scope")
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| missing("scope"))?;
                parse_scopes(scope, &shared.base_url)
            })
    };
    let scopes = match checked {
        Ok(scopes) => scopes,
        Err(error) => return entra_error(&ctx, &error),
    };
    let (Some(device_code), Some(user_code)) = (random_text(48), user_code()) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let issued = lock(&shared.delegated).start(
        client_id.unwrap_or_default(),
        scopes,
        device_code,
        user_code,
        ctx.at,
    );
    Json(json!({
        "device_code": issued.device_code,
        "user_code": issued.user_code,
        "verification_uri": VERIFICATION_URI,
        "expires_in": issued.expires_in,
        "interval": issued.interval,
        "message": format!(
            "To sign in, use a web browser to open the page {VERIFICATION_URI} and enter the code {} to authenticate.",
            issued.user_code
        ),
    }))
    .into_response()
}

/// The token endpoint's `urn:ietf:params:oauth:grant-type:device_code` grant.
pub(crate) fn redeem(shared: &Shared, ctx: &RequestCtx, tenant: &str, body: &Bytes) -> Response {
    let pairs = fields(body);
    let client_id = form::get(&pairs, "client_id");
    if let Err(error) = {
        let auth = lock(&shared.auth);
        auth.check_tenant(tenant)
            .and_then(|()| auth.check_client_id(client_id))
    } {
        return entra_error(ctx, &error);
    }
    let Some(device_code) = form::get(&pairs, "device_code").filter(|c| !c.is_empty()) else {
        return entra_error(ctx, &missing("device_code"));
    };
    let service_accounts = service_accounts(shared, ctx);
    let result = lock(&shared.delegated).poll(
        client_id.unwrap_or_default(),
        device_code,
        &service_accounts,
        ctx.at,
    );
    match result {
        Ok(signed_in) => tokens(shared, ctx, client_id.unwrap_or_default(), &signed_in),
        Err(error) => entra_error(ctx, &error),
    }
}

/// The token endpoint's `refresh_token` grant.
pub(crate) fn refresh(shared: &Shared, ctx: &RequestCtx, tenant: &str, body: &Bytes) -> Response {
    let pairs = fields(body);
    let client_id = form::get(&pairs, "client_id");
    if let Err(error) = {
        let auth = lock(&shared.auth);
        auth.check_tenant(tenant)
            .and_then(|()| auth.check_client_id(client_id))
    } {
        return entra_error(ctx, &error);
    }
    if let Some(scope) = form::get(&pairs, "scope").filter(|s| !s.is_empty())
        && let Err(error) = parse_scopes(scope, &shared.base_url)
    {
        return entra_error(ctx, &error);
    }
    let Some(token) = form::get(&pairs, "refresh_token").filter(|t| !t.is_empty()) else {
        return entra_error(ctx, &missing("refresh_token"));
    };
    let result = lock(&shared.delegated).refresh(client_id.unwrap_or_default(), token, ctx.at);
    match result {
        Ok(signed_in) => tokens(shared, ctx, client_id.unwrap_or_default(), &signed_in),
        Err(error) => entra_error(ctx, &error),
    }
}

/// Users auto-approve may sign in as: UPNs starting with `svc-`.
fn service_accounts(shared: &Shared, ctx: &RequestCtx) -> Vec<(String, String)> {
    if !lock(&shared.delegated).auto_approve() {
        return Vec::new();
    }
    let accounts: Vec<(String, String)> = shared
        .tenant(ctx.at)
        .directory()
        .users()
        .filter(|u| {
            u.user_principal_name
                .to_lowercase()
                .starts_with(SERVICE_ACCOUNT_PREFIX)
        })
        .map(|u| (u.user_principal_name.clone(), u.id.clone()))
        .collect();
    if accounts.is_empty() {
        tracing::warn!(
            "auto-approve cannot sign in: no user's UPN starts with '{SERVICE_ACCOUNT_PREFIX}'; add one with POST /_sim/users or approve with POST /_sim/devicecode/approve"
        );
    }
    accounts
}

/// The token response of a delegated grant: access, refresh (with
/// `offline_access`) and id tokens.
fn tokens(shared: &Shared, ctx: &RequestCtx, client_id: &str, signed_in: &SignedIn) -> Response {
    let (Some(nonce), Some(refresh_token)) = (random_text(32), random_text(64)) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let (access_token, expires_in, tenant_id) = {
        let mut auth = lock(&shared.auth);
        let (token, expires_in) =
            auth.issue_delegated(signed_in.user.clone(), nonce.as_bytes(), ctx.at);
        (token, expires_in, auth.registration().tenant_id.clone())
    };
    let secs = ctx.at.as_micros() / 1_000_000;
    let id_claims = json!({
        "aud": client_id,
        "iss": format!("{}/{tenant_id}/v2.0", shared.base_url),
        "iat": secs,
        "nbf": secs,
        "exp": secs + expires_in,
        "oid": signed_in.user.oid,
        "preferred_username": signed_in.user.upn,
        "sub": signed_in.user.oid,
        "tid": tenant_id,
        "ver": "2.0",
    });
    let id_token = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(json!({"typ": "JWT", "alg": "RS256", "kid": "sim"}).to_string()),
        URL_SAFE_NO_PAD.encode(id_claims.to_string()),
        URL_SAFE_NO_PAD.encode(nonce.as_bytes()),
    );
    let mut body = json!({
        "token_type": "Bearer",
        "scope": signed_in.user.scopes.join(" "),
        "expires_in": expires_in,
        "ext_expires_in": expires_in,
        "access_token": access_token,
        "id_token": id_token,
    });
    if signed_in.offline {
        lock(&shared.delegated).keep_refresh_token(
            client_id,
            refresh_token.clone(),
            signed_in,
            ctx.at,
        );
        body["refresh_token"] = Value::String(refresh_token);
    }
    Json(body).into_response()
}

/// `POST /_sim/devicecode/approve {"user_code","upn"}`: the user signs in
/// at the verification page as `upn` (a user of the tenant) and approves.
pub(crate) async fn approve(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<RequestCtx>,
    body: Bytes,
) -> Response {
    let body = match parse_object(&ctx, &body) {
        Ok(b) => b,
        Err(response) => return response,
    };
    let text = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_string);
    let (Some(user_code), Some(upn)) = (text("user_code"), text("upn")) else {
        return bad_request(
            &ctx,
            "approve needs {\"user_code\": the code the client was given, \"upn\": a user of the tenant}.",
        );
    };
    let result = shared.approve_device_code(&user_code, &upn, ctx.at);
    match result {
        Ok((upn, oid)) => {
            Json(json!({"user_code": user_code, "upn": upn, "oid": oid})).into_response()
        }
        Err(error) => refused(&ctx, error),
    }
}

/// `POST /_sim/devicecode/decline {"user_code"}`: the user says no.
pub(crate) async fn decline(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<RequestCtx>,
    body: Bytes,
) -> Response {
    let body = match parse_object(&ctx, &body) {
        Ok(b) => b,
        Err(response) => return response,
    };
    let Some(user_code) = body.get("user_code").and_then(Value::as_str) else {
        return bad_request(&ctx, "decline needs {\"user_code\"}.");
    };
    match lock(&shared.delegated).decline(user_code, ctx.at) {
        Ok(()) => Json(json!({"user_code": user_code, "declined": true})).into_response(),
        Err(error) => refused(&ctx, error),
    }
}

fn refused(ctx: &RequestCtx, error: ApprovalError) -> Response {
    match error {
        ApprovalError::UnknownUser(_) => bad_request(ctx, &error.to_string()),
        ApprovalError::UnknownCode(_) => {
            graph_error(ctx, StatusCode::NOT_FOUND, "NotFound", &error.to_string())
        }
        _ => graph_error(ctx, StatusCode::CONFLICT, "Conflict", &error.to_string()),
    }
}

impl Shared {
    /// A user of the tenant (`upn`, or its id) approves `user_code`;
    /// returns the UPN and object id signed in.
    pub(crate) fn approve_device_code(
        &self,
        user_code: &str,
        upn: &str,
        now: crate::time::Timestamp,
    ) -> Result<(String, String), ApprovalError> {
        let user = self
            .tenant(now)
            .directory()
            .get(upn)
            .map(|u| (u.user_principal_name.clone(), u.id.clone()));
        let (upn, oid) = user.ok_or_else(|| ApprovalError::UnknownUser(upn.to_string()))?;
        lock(&self.delegated).approve(user_code, &upn, &oid, now)?;
        Ok((upn, oid))
    }
}
