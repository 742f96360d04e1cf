//! Why a service account has no access token, each with the fix: most are
//! fixed by signing the account in again, and every message names the
//! account and the exact command.

use thiserror::Error;

use crate::graph::auth::Rejection;
use crate::graph::model::TokenErrorBody;

/// AADSTS codes an account's refresh can fail with.
pub mod aadsts {
    /// The grant was revoked: password changed or reset, sessions revoked.
    pub const REVOKED: u64 = 50_173;
    /// The refresh token went unused for 90 days.
    pub const INACTIVE: u64 = 700_082;
    /// Multi-factor authentication is now required.
    pub const MFA_REQUIRED: u64 = 50_076;
    /// A conditional access policy blocks the sign-in.
    pub const CONDITIONAL_ACCESS: u64 = 53_003;
    /// The account (or an admin for it) has not consented to the app.
    pub const CONSENT_MISSING: u64 = 65_001;
    /// The app is not a public client: Entra wants its secret or
    /// certificate with the request.
    pub const CONFIDENTIAL_CLIENT: u64 = 7_000_218;
}

/// Who failed and what Entra said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountFailure {
    /// The account's UPN.
    pub upn: String,
    /// The command that signs it in again.
    pub login: String,
    /// Entra's refusal, when it refused.
    pub rejection: Option<Rejection>,
    /// What went wrong otherwise (transport, file system).
    pub message: Option<String>,
}

impl AccountFailure {
    pub fn new(upn: &str, login: &str) -> Box<Self> {
        Box::new(AccountFailure {
            upn: upn.to_owned(),
            login: login.to_owned(),
            rejection: None,
            message: None,
        })
    }

    /// `(HTTP 400 invalid_grant: AADSTS50173: ..., trace id ...)`.
    fn detail(&self) -> String {
        let mut parts = Vec::new();
        if let Some(r) = &self.rejection {
            let mut s = format!("HTTP {} {}", r.status, r.error);
            if let Some(d) = &r.description {
                s.push_str(": ");
                s.push_str(d);
            }
            if let Some(t) = &r.trace_id {
                s.push_str(&format!(", trace id {t}"));
            }
            if let Some(c) = &r.correlation_id {
                s.push_str(&format!(", correlation id {c}"));
            }
            parts.push(s);
        }
        if let Some(m) = &self.message {
            parts.push(m.clone());
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!(" ({})", parts.join("; "))
        }
    }
}

/// Why a service account has no access token.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum AccountError {
    #[error("service account {}: its sign-in was revoked (password changed or sessions revoked, AADSTS50173): sign it in again with `{}`{}", .0.upn, .0.login, .0.detail())]
    Revoked(Box<AccountFailure>),
    #[error("service account {}: its refresh token expired after 90 days unused (AADSTS700082): sign it in again with `{}`{}", .0.upn, .0.login, .0.detail())]
    Inactive(Box<AccountFailure>),
    #[error("service account {}: Entra now requires multi-factor authentication (AADSTS50076): sign it in again with `{}` and complete MFA, or exclude the account from the MFA policy{}", .0.upn, .0.login, .0.detail())]
    MfaRequired(Box<AccountFailure>),
    #[error("service account {}: a conditional access policy blocks its sign-in (AADSTS53003): an admin allows the daemon's host for the account, then sign it in again with `{}`{}", .0.upn, .0.login, .0.detail())]
    ConditionalAccess(Box<AccountFailure>),
    #[error("service account {}: no consent to the app's delegated permissions (AADSTS65001): an admin grants consent for Presence.Read.All (delegated), then sign it in again with `{}`{}", .0.upn, .0.login, .0.detail())]
    ConsentMissing(Box<AccountFailure>),
    #[error("service account {}: not signed in (no token in the state directory): sign it in with `{}`", .0.upn, .0.login)]
    NotSignedIn(Box<AccountFailure>),
    #[error("service account {}: Entra refused its token refresh: sign it in again with `{}`{}", .0.upn, .0.login, .0.detail())]
    Rejected(Box<AccountFailure>),
    #[error("service account {}: cannot reach Entra to refresh its token; retried later{}", .0.upn, .0.detail())]
    Unreachable(Box<AccountFailure>),
    #[error("service account {}: its token file cannot be used: fix the state directory's permissions, or sign it in again with `{}`{}", .0.upn, .0.login, .0.detail())]
    Vault(Box<AccountFailure>),
}

impl AccountError {
    /// Classifies Entra's refusal of a refresh from its AADSTS codes.
    pub fn classify(upn: &str, login: &str, status: u16, body: TokenErrorBody) -> AccountError {
        let has = |code| body.error_codes.contains(&code);
        let kind: fn(Box<AccountFailure>) -> AccountError = if has(aadsts::REVOKED) {
            AccountError::Revoked
        } else if has(aadsts::INACTIVE) {
            AccountError::Inactive
        } else if has(aadsts::MFA_REQUIRED) {
            AccountError::MfaRequired
        } else if has(aadsts::CONDITIONAL_ACCESS) {
            AccountError::ConditionalAccess
        } else if has(aadsts::CONSENT_MISSING) || body.error == "consent_required" {
            AccountError::ConsentMissing
        } else {
            AccountError::Rejected
        };
        let mut failure = AccountFailure::new(upn, login);
        failure.rejection = Some(rejection(status, body));
        kind(failure)
    }

    pub fn failure(&self) -> &AccountFailure {
        match self {
            AccountError::Revoked(f)
            | AccountError::Inactive(f)
            | AccountError::MfaRequired(f)
            | AccountError::ConditionalAccess(f)
            | AccountError::ConsentMissing(f)
            | AccountError::NotSignedIn(f)
            | AccountError::Rejected(f)
            | AccountError::Unreachable(f)
            | AccountError::Vault(f) => f,
        }
    }

    pub fn upn(&self) -> &str {
        &self.failure().upn
    }

    /// A short stable name, for metrics and `/readyz`.
    pub fn kind(&self) -> &'static str {
        match self {
            AccountError::Revoked(_) => "revoked",
            AccountError::Inactive(_) => "inactive",
            AccountError::MfaRequired(_) => "mfa_required",
            AccountError::ConditionalAccess(_) => "conditional_access",
            AccountError::ConsentMissing(_) => "consent_missing",
            AccountError::NotSignedIn(_) => "not_signed_in",
            AccountError::Rejected(_) => "rejected",
            AccountError::Unreachable(_) => "unreachable",
            AccountError::Vault(_) => "vault",
        }
    }

    /// Whether only an admin can fix it (a new sign-in, consent, policy):
    /// the daemon does not ask Entra again until the account's token file
    /// changes. Entra being unreachable is retried on its own.
    pub fn needs_admin(&self) -> bool {
        !matches!(self, AccountError::Unreachable(_))
    }

    /// What went wrong without Entra's words and ids, for the open
    /// `/readyz` and the board: the kind, the AADSTS codes and the fix.
    pub fn summary(&self) -> String {
        let f = self.failure();
        let what = match self {
            AccountError::Revoked(_) => "sign-in revoked",
            AccountError::Inactive(_) => "refresh token expired (90 days unused)",
            AccountError::MfaRequired(_) => "multi-factor authentication required",
            AccountError::ConditionalAccess(_) => "blocked by conditional access",
            AccountError::ConsentMissing(_) => "consent missing",
            AccountError::NotSignedIn(_) => "not signed in",
            AccountError::Rejected(_) => "token refresh refused",
            AccountError::Unreachable(_) => "Entra unreachable",
            AccountError::Vault(_) => "token file unusable",
        };
        let codes = f
            .rejection
            .as_ref()
            .filter(|r| !r.codes.is_empty())
            .map(|r| {
                let codes: Vec<String> = r.codes.iter().map(|c| format!("AADSTS{c}")).collect();
                format!(" ({})", codes.join(", "))
            })
            .unwrap_or_default();
        if self.needs_admin() {
            format!("{what}{codes}: run `{}`", f.login)
        } else {
            format!("{what}{codes}")
        }
    }
}

/// Entra's error body as a [`Rejection`] (first line of the description).
pub(crate) fn rejection(status: u16, body: TokenErrorBody) -> Rejection {
    Rejection {
        status,
        error: body.error,
        codes: body.error_codes,
        description: body
            .error_description
            .as_deref()
            .and_then(|d| d.lines().next())
            .map(|d| d.trim().to_owned()),
        trace_id: body.trace_id,
        correlation_id: body.correlation_id,
    }
}
