//! Signing a service account in: OAuth's device-code flow. Entra gives a
//! code and a URL; the admin opens the URL anywhere, signs in as the
//! account and enters the code; meanwhile the daemon polls the token
//! endpoint at the interval Entra asked for (5 s more after each
//! `slow_down`) until the sign-in succeeds, is declined or the code
//! expires.

use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use super::entra::{EntraClient, Refused};
use super::error::rejection;
use crate::config::Secret;
use crate::graph::auth::Rejection;

/// The longest a device code is waited for, in seconds.
const MAX_CODE_LIFETIME: u64 = 3600;
/// The longest wait between polls Entra may ask for, in seconds.
const MAX_INTERVAL: u64 = 60;

/// Entra's answer to the device-code request. Not `Debug`: the device
/// code redeems the sign-in.
pub struct DeviceCode {
    pub device_code: Secret,
    /// What the admin types at `verification_uri`.
    pub user_code: String,
    pub verification_uri: String,
    /// How long the code stays valid (15 minutes at Entra).
    pub expires_in: Duration,
    /// How long to wait between polls.
    pub interval: Duration,
    /// Entra's sentence for the admin: the URL and the code.
    pub message: String,
}

#[derive(Deserialize)]
struct RawDeviceCode {
    device_code: String,
    user_code: String,
    verification_uri: String,
    expires_in: u64,
    #[serde(default)]
    interval: Option<u64>,
    #[serde(default)]
    message: Option<String>,
}

/// A finished sign-in. Not `Debug`: it holds the refresh token.
pub struct SignedIn {
    /// Who signed in (the id token's `preferred_username`).
    pub upn: Option<String>,
    pub oid: Option<String>,
    pub refresh_token: Secret,
}

/// How polling waits; Entra's values, with knobs for tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PollTiming {
    /// Added to the interval after each `slow_down` (RFC 8628: 5 s).
    pub slow_down: Duration,
    /// The shortest wait between polls, whatever Entra says.
    pub min_interval: Duration,
    /// Failed polls in a row (no answer, 5xx) before giving up.
    pub max_transient: u32,
}

impl Default for PollTiming {
    fn default() -> Self {
        PollTiming {
            slow_down: Duration::from_secs(5),
            min_interval: Duration::from_secs(1),
            max_transient: 10,
        }
    }
}

/// Why a sign-in did not finish.
#[derive(Debug, Error)]
pub enum LoginError {
    #[error("the sign-in was declined")]
    Declined,
    #[error("the code expired before the sign-in was finished: run the command again")]
    Expired,
    #[error(
        "Entra gave no refresh token: the app must be allowed `offline_access` (delegated); \
         an admin grants consent for Presence.Read.All and offline_access"
    )]
    NoRefreshToken,
    #[error("Entra's answer does not say who signed in (no id token with preferred_username)")]
    NoUsername,
    #[error("Entra refused: HTTP {} {}{}{}", .0.status, .0.error,
        .0.description.as_deref().map(|d| format!(": {d}")).unwrap_or_default(),
        hint(&.0.codes))]
    Refused(Box<Rejection>),
    #[error("cannot reach Entra: {0}")]
    Unreachable(String),
}

/// A fix for the refusals an admin can act on.
fn hint(codes: &[u64]) -> &'static str {
    if codes.contains(&super::error::aadsts::CONFIDENTIAL_CLIENT) {
        " (the app registration must allow public client flows: Authentication, \"Allow public client flows\" = Yes; or configure the app's secret or certificate)"
    } else if codes.contains(&super::error::aadsts::CONSENT_MISSING) {
        " (an admin grants consent for the delegated permissions Presence.Read.All and offline_access)"
    } else if codes.contains(&super::error::aadsts::CONDITIONAL_ACCESS) {
        " (a conditional access policy blocks the account from this host)"
    } else {
        ""
    }
}

fn refused(failure: Refused) -> LoginError {
    match failure {
        Refused::Status(status, body) => LoginError::Refused(Box::new(rejection(status, body))),
        Refused::Transient(message) => LoginError::Unreachable(message),
    }
}

/// Asks Entra for a device code for the accounts' scope.
pub async fn request_code(entra: &EntraClient) -> Result<DeviceCode, LoginError> {
    let endpoints = entra.endpoints();
    let form = [
        ("client_id", endpoints.client_id.clone()),
        ("scope", endpoints.scope.clone()),
    ];
    let body = entra
        .post(&endpoints.device_code_url, &form)
        .await
        .map_err(refused)?;
    let raw: RawDeviceCode = serde_json::from_slice(&body)
        .map_err(|e| LoginError::Unreachable(format!("unreadable device-code answer: {e}")))?;
    let message = raw.message.unwrap_or_else(|| {
        format!(
            "To sign in, use a web browser to open the page {} and enter the code {} to authenticate.",
            raw.verification_uri, raw.user_code
        )
    });
    Ok(DeviceCode {
        device_code: Secret::new(raw.device_code),
        user_code: raw.user_code,
        verification_uri: raw.verification_uri,
        // Entra's numbers, bounded: its codes last 15 minutes, its
        // interval is 5 s.
        expires_in: Duration::from_secs(raw.expires_in.min(MAX_CODE_LIFETIME)),
        interval: Duration::from_secs(raw.interval.unwrap_or(5).min(MAX_INTERVAL)),
        message,
    })
}

/// Polls until the sign-in succeeds, is declined or the code expires.
pub async fn wait_for_sign_in(
    entra: &EntraClient,
    code: &DeviceCode,
    timing: PollTiming,
) -> Result<SignedIn, LoginError> {
    let deadline = tokio::time::Instant::now() + code.expires_in;
    let mut interval = code.interval.max(timing.min_interval);
    let mut transient = 0u32;
    loop {
        tokio::time::sleep(interval).await;
        if tokio::time::Instant::now() >= deadline {
            return Err(LoginError::Expired);
        }
        let form = vec![
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:device_code".to_owned(),
            ),
            ("device_code", code.device_code.expose().to_owned()),
        ];
        match entra.token(form).await {
            Ok(answer) => {
                let refresh_token = answer.refresh_token.ok_or(LoginError::NoRefreshToken)?;
                let claims = answer.id_token.unwrap_or_default();
                return Ok(SignedIn {
                    upn: claims.username().map(str::to_owned),
                    oid: claims.oid,
                    refresh_token,
                });
            }
            Err(Refused::Status(status, body)) => match body.error.as_str() {
                "authorization_pending" => transient = 0,
                "slow_down" => {
                    transient = 0;
                    interval = interval.saturating_add(timing.slow_down);
                }
                "authorization_declined" | "access_denied" => return Err(LoginError::Declined),
                "expired_token" => return Err(LoginError::Expired),
                _ => return Err(refused(Refused::Status(status, body))),
            },
            Err(Refused::Transient(message)) => {
                transient += 1;
                if transient >= timing.max_transient {
                    return Err(LoginError::Unreachable(format!(
                        "{message} ({transient} polls in a row)"
                    )));
                }
            }
        }
    }
}
