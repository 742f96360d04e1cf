//! The app's access token: client credentials with a secret or a
//! certificate, cached, refreshed before it expires, one refresh at a time.
//!
//! A token due for refresh is kept while refreshing fails (Entra down)
//! until it really expires; a permanent refusal is remembered for a
//! hold-off so that Graph calls do not each ask Entra again.
//!
//! Entra's refusals are classified from their AADSTS codes, because each has
//! a different fix an admin must make (renew the secret, fix the client id,
//! grant consent) and `/readyz`, logs and metrics say which.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_lc_rs::digest;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use thiserror::Error;

use super::clock::SharedClock;
use super::model::{TokenErrorBody, TokenResponse};
use super::permissions::{Granted, granted_roles};
use super::throttle::{RetryPolicy, new_request_id};
use crate::config::Secret;
use crate::http::transport_message;

/// AADSTS codes with a meaning the daemon reports on its own.
pub mod aadsts {
    /// The client secret has expired.
    pub const EXPIRED_SECRET: u64 = 7_000_222;
    /// The client secret is wrong.
    pub const INVALID_SECRET: u64 = 7_000_215;
    /// No app with this client id in the tenant.
    pub const UNKNOWN_APP: u64 = 700_016;
    /// The scope is not valid (wrong Graph host for the cloud).
    pub const INVALID_SCOPE: u64 = 70_011;
    /// No admin (or user) consent for the app.
    pub const CONSENT_MISSING: u64 = 65_001;
    /// The client assertion's signature did not verify: wrong certificate.
    pub const INVALID_CERTIFICATE: u64 = 700_027;
    /// The client assertion is outside its valid time (clock skew, or a
    /// certificate past its end date).
    pub const ASSERTION_EXPIRED: u64 = 700_024;
    /// No tenant with this id or domain in this cloud.
    pub const TENANT_NOT_FOUND: u64 = 90_002;
    /// The tenant identifier is neither a GUID nor a domain.
    pub const TENANT_INVALID: u64 = 900_023;
    /// The app is disabled in the tenant.
    pub const APP_DISABLED: u64 = 7_000_112;
}

/// What Entra said when it refused a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    /// OAuth `error`, e.g. `invalid_client`.
    pub error: String,
    pub codes: Vec<u64>,
    /// Entra's first line of `error_description` (the rest repeats the ids).
    pub description: Option<String>,
    pub trace_id: Option<String>,
    pub correlation_id: Option<String>,
}

impl Rejection {
    fn summary(&self) -> String {
        let mut s = format!("HTTP {} {}", self.status, self.error);
        if let Some(d) = &self.description {
            s.push_str(": ");
            s.push_str(d);
        }
        if let Some(t) = &self.trace_id {
            s.push_str(&format!(" (trace id {t}"));
            if let Some(c) = &self.correlation_id {
                s.push_str(&format!(", correlation id {c}"));
            }
            s.push(')');
        }
        s
    }
}

/// Why the app has no token. Each message names the fix.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("the Graph client secret has expired: an admin creates a new secret for the app (Entra admin center, App registrations, Certificates & secrets) and puts it in the secret file ({})", .0.summary())]
    ExpiredSecret(Box<Rejection>),
    #[error("the Graph client secret is wrong: put the secret's value (not its id) in the secret file ({})", .0.summary())]
    InvalidSecret(Box<Rejection>),
    #[error("Entra refused the client certificate's assertion: upload this certificate to the app registration, or configure the one uploaded ({})", .0.summary())]
    InvalidCertificate(Box<Rejection>),
    #[error("Entra refused the client assertion's time: check the host's clock, and that the certificate has not expired ({})", .0.summary())]
    AssertionExpired(Box<Rejection>),
    #[error("no app with this client id in the tenant: check graph.client_id, and that the app is registered in this tenant and cloud ({})", .0.summary())]
    UnknownApp(Box<Rejection>),
    #[error("the app is disabled in the tenant: an admin enables its enterprise application ({})", .0.summary())]
    AppDisabled(Box<Rejection>),
    #[error("no such tenant in this cloud: check graph.tenant_id and login_base ({})", .0.summary())]
    TenantNotFound(Box<Rejection>),
    #[error("the token scope is not valid: check graph_base for this cloud ({})", .0.summary())]
    InvalidScope(Box<Rejection>),
    #[error("an admin has not granted consent to the app: grant admin consent (`presence-sync permissions` prints the URL) ({})", .0.summary())]
    ConsentMissing(Box<Rejection>),
    #[error("Entra refused the token request ({})", .0.summary())]
    Rejected(Box<Rejection>),
    /// Entra could not be reached or kept failing (transport, timeout, 5xx).
    #[error("cannot get a token from Entra: {message}")]
    Unreachable { message: String },
    /// Our own credential cannot be used (unreadable key or certificate).
    #[error("the Graph credential cannot be used: {message}")]
    Credential { message: String },
}

impl AuthError {
    /// Classifies Entra's refusal from its AADSTS codes.
    pub fn classify(status: u16, body: TokenErrorBody) -> AuthError {
        let description = body
            .error_description
            .as_deref()
            .and_then(|d| d.lines().next())
            .map(|d| d.trim().to_owned());
        let rejection = Box::new(Rejection {
            status,
            error: body.error.clone(),
            codes: body.error_codes.clone(),
            description,
            trace_id: body.trace_id,
            correlation_id: body.correlation_id,
        });
        let has = |code| body.error_codes.contains(&code);
        if has(aadsts::EXPIRED_SECRET) {
            AuthError::ExpiredSecret(rejection)
        } else if has(aadsts::INVALID_SECRET) {
            AuthError::InvalidSecret(rejection)
        } else if has(aadsts::INVALID_CERTIFICATE) {
            AuthError::InvalidCertificate(rejection)
        } else if has(aadsts::ASSERTION_EXPIRED) {
            AuthError::AssertionExpired(rejection)
        } else if has(aadsts::UNKNOWN_APP) {
            AuthError::UnknownApp(rejection)
        } else if has(aadsts::APP_DISABLED) {
            AuthError::AppDisabled(rejection)
        } else if has(aadsts::TENANT_NOT_FOUND) || has(aadsts::TENANT_INVALID) {
            AuthError::TenantNotFound(rejection)
        } else if has(aadsts::INVALID_SCOPE) || body.error == "invalid_scope" {
            AuthError::InvalidScope(rejection)
        } else if has(aadsts::CONSENT_MISSING) || body.error == "consent_required" {
            AuthError::ConsentMissing(rejection)
        } else {
            AuthError::Rejected(rejection)
        }
    }

    /// What went wrong without what Entra said (its description names the
    /// app's client id and the tenant; its trace ids identify the request):
    /// for the open `/readyz`. The AADSTS codes stay, they are public.
    pub fn summary(&self) -> String {
        let (what, rejection) = match self {
            AuthError::ExpiredSecret(r) => (
                "the Graph client secret has expired: an admin must create a new one",
                Some(r),
            ),
            AuthError::InvalidSecret(r) => (
                "the Graph client secret is wrong: put the secret's value (not its id) in the secret file",
                Some(r),
            ),
            AuthError::InvalidCertificate(r) => (
                "Entra refused the client certificate's assertion: upload the certificate to the app",
                Some(r),
            ),
            AuthError::AssertionExpired(r) => (
                "Entra refused the client assertion's time: check the clock and the certificate's end date",
                Some(r),
            ),
            AuthError::UnknownApp(r) => (
                "no app with this client id in the tenant: check graph.client_id",
                Some(r),
            ),
            AuthError::AppDisabled(r) => (
                "the app is disabled in the tenant: an admin enables it",
                Some(r),
            ),
            AuthError::TenantNotFound(r) => (
                "no such tenant in this cloud: check graph.tenant_id and login_base",
                Some(r),
            ),
            AuthError::InvalidScope(r) => ("the token scope is not valid", Some(r)),
            AuthError::ConsentMissing(r) => (
                "an admin has not granted consent to the app: grant admin consent",
                Some(r),
            ),
            AuthError::Rejected(r) => ("Entra refused the token request", Some(r)),
            AuthError::Unreachable { .. } => ("cannot get a token from Entra", None),
            AuthError::Credential { .. } => ("the Graph credential cannot be used", None),
        };
        match rejection.filter(|r| !r.codes.is_empty()) {
            Some(r) => {
                let codes: Vec<String> = r.codes.iter().map(|c| format!("AADSTS{c}")).collect();
                format!("{what} ({})", codes.join(", "))
            }
            None => what.to_string(),
        }
    }

    /// A short stable name, for metrics and `/readyz`.
    pub fn kind(&self) -> &'static str {
        match self {
            AuthError::ExpiredSecret(_) => "expired_secret",
            AuthError::InvalidSecret(_) => "invalid_secret",
            AuthError::InvalidCertificate(_) => "invalid_certificate",
            AuthError::AssertionExpired(_) => "assertion_expired",
            AuthError::UnknownApp(_) => "unknown_app",
            AuthError::AppDisabled(_) => "app_disabled",
            AuthError::TenantNotFound(_) => "tenant_not_found",
            AuthError::InvalidScope(_) => "invalid_scope",
            AuthError::ConsentMissing(_) => "consent_missing",
            AuthError::Rejected(_) => "rejected",
            AuthError::Unreachable { .. } => "unreachable",
            AuthError::Credential { .. } => "credential",
        }
    }
}

// ---------------------------------------------------------------- credentials

/// How the app proves who it is.
pub enum Credential {
    Secret(Secret),
    Certificate(CertificateCredential),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Secret(_) => f.write_str("Credential::Secret(<redacted>)"),
            Credential::Certificate(c) => write!(f, "Credential::Certificate({})", c.x5t_s256),
        }
    }
}

/// A certificate credential: the private key signs client assertions, the
/// certificate's thumbprints tell Entra which uploaded certificate to check.
pub struct CertificateCredential {
    key: RsaKeyPair,
    /// base64url SHA-256 of the certificate's DER.
    x5t_s256: String,
    /// base64url SHA-1 of the DER, for tenants that only know `x5t`.
    x5t: String,
    /// The certificate's end date (`notAfter`), when its DER reads.
    not_after: Option<DateTime<Utc>>,
}

/// How long a client assertion is valid: long enough for one token request
/// and its retries, short enough to be useless if it leaks.
const ASSERTION_LIFETIME: Duration = Duration::from_secs(600);

impl CertificateCredential {
    /// From the PEM certificate and the PEM private key (PKCS#8 `PRIVATE
    /// KEY`, or PKCS#1 `RSA PRIVATE KEY`).
    pub fn from_pem(certificate_pem: &str, key_pem: &Secret) -> Result<Self, AuthError> {
        let bad = |message: String| AuthError::Credential { message };
        let cert = pem_block(certificate_pem, "CERTIFICATE")
            .ok_or_else(|| bad("no CERTIFICATE block in the certificate file".into()))?;
        let key = if let Some(der) = pem_block(key_pem.expose(), "PRIVATE KEY") {
            RsaKeyPair::from_pkcs8(&der)
        } else if let Some(der) = pem_block(key_pem.expose(), "RSA PRIVATE KEY") {
            RsaKeyPair::from_der(&der)
        } else {
            return Err(bad(
                "no PRIVATE KEY or RSA PRIVATE KEY block in the key file".into(),
            ));
        }
        .map_err(|e| bad(format!("the private key is not a usable RSA key: {e}")))?;
        Ok(CertificateCredential::new(key, &cert))
    }

    /// From a key pair and the certificate's DER.
    pub fn new(key: RsaKeyPair, certificate_der: &[u8]) -> Self {
        let s256 = digest::digest(&digest::SHA256, certificate_der);
        let s1 = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, certificate_der);
        CertificateCredential {
            key,
            x5t_s256: URL_SAFE_NO_PAD.encode(s256.as_ref()),
            x5t: URL_SAFE_NO_PAD.encode(s1.as_ref()),
            not_after: certificate_not_after(certificate_der),
        }
    }

    /// When the certificate expires, if its DER could be read.
    pub fn not_after(&self) -> Option<DateTime<Utc>> {
        self.not_after
    }

    /// A signed client assertion (RS256 JWT) for `audience` (the token URL).
    pub fn assertion(
        &self,
        audience: &str,
        client_id: &str,
        now: DateTime<Utc>,
    ) -> Result<String, AuthError> {
        let header = serde_json::json!({
            "alg": "RS256",
            "typ": "JWT",
            "x5t#S256": self.x5t_s256,
            "x5t": self.x5t,
        });
        let nbf = now.timestamp();
        let claims = serde_json::json!({
            "aud": audience,
            "iss": client_id,
            "sub": client_id,
            "jti": new_request_id(),
            "nbf": nbf,
            "iat": nbf,
            "exp": nbf.saturating_add(ASSERTION_LIFETIME.as_secs() as i64),
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| AuthError::Credential {
                message: "signing the client assertion failed".into(),
            })?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }
}

impl Credential {
    /// The certificate's end date, for a certificate credential.
    pub fn certificate_not_after(&self) -> Option<DateTime<Utc>> {
        match self {
            Credential::Secret(_) => None,
            Credential::Certificate(c) => c.not_after(),
        }
    }
}

/// The end date of the first certificate in a PEM file.
pub fn pem_certificate_not_after(pem: &str) -> Option<DateTime<Utc>> {
    certificate_not_after(&pem_block(pem, "CERTIFICATE")?)
}

/// One DER element: its tag, its content and what follows it.
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7F);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// An X.509 certificate's `notAfter` (RFC 5280: UTCTime before 2050,
/// GeneralizedTime after), read from its DER; `None` for anything else.
pub fn certificate_not_after(der: &[u8]) -> Option<DateTime<Utc>> {
    let (0x30, certificate, _) = der_element(der)? else {
        return None;
    };
    let (0x30, tbs, _) = der_element(certificate)? else {
        return None;
    };
    let mut rest = tbs;
    if rest.first() == Some(&0xA0) {
        rest = der_element(rest)?.2;
    }
    // serialNumber, signature, issuer.
    for expected in [0x02, 0x30, 0x30] {
        let (tag, _, next) = der_element(rest)?;
        if tag != expected {
            return None;
        }
        rest = next;
    }
    let (0x30, validity, _) = der_element(rest)? else {
        return None;
    };
    let (_, _, after) = der_element(validity)?;
    let (tag, time, _) = der_element(after)?;
    let text = std::str::from_utf8(time).ok()?;
    let full = match tag {
        0x17 => {
            let year: u32 = text.get(..2)?.parse().ok()?;
            format!("{}{text}", if year < 50 { "20" } else { "19" })
        }
        0x18 => text.to_owned(),
        _ => return None,
    };
    let naive =
        chrono::NaiveDateTime::parse_from_str(full.strip_suffix('Z')?, "%Y%m%d%H%M%S").ok()?;
    Some(naive.and_utc())
}

/// The DER inside the first `-----BEGIN {label}-----` block.
pub(crate) fn pem_block(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    let body: String = pem[start..stop]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    STANDARD.decode(body).ok().filter(|der| !der.is_empty())
}

// ---------------------------------------------------------------- the cache

/// Where and as whom to ask for tokens.
#[derive(Clone, Debug)]
pub struct TokenEndpoint {
    /// `{login_base}/{tenant}/oauth2/v2.0/token`.
    pub url: String,
    pub client_id: String,
    /// `{graph_base}/.default`.
    pub scope: String,
}

impl TokenEndpoint {
    pub fn new(login_base: &str, tenant_id: &str, client_id: &str, graph_base: &str) -> Self {
        TokenEndpoint {
            url: format!(
                "{}/{tenant_id}/oauth2/v2.0/token",
                login_base.trim_end_matches('/')
            ),
            client_id: client_id.to_owned(),
            scope: format!("{}/.default", graph_base.trim_end_matches('/')),
        }
    }
}

/// A cached access token.
#[derive(Clone, Debug)]
struct Cached {
    token: Arc<Secret>,
    /// When to start asking for a new one (clock time): expiry less the margin.
    refresh_at: Duration,
    /// When Entra's `expires_in` runs out (clock time): the token is used
    /// until then even when refreshing it keeps failing.
    expires_at: Duration,
}

/// A refusal remembered so that callers get it without asking Entra again.
#[derive(Clone, Debug)]
struct Refusal {
    error: AuthError,
    /// Clock time before which Entra is not asked again.
    until: Duration,
}

#[derive(Debug, Default)]
struct State {
    cached: Option<Cached>,
    /// Fetches completed, so callers that waited on a failed fetch share its
    /// error instead of each trying again in turn.
    fetches: u64,
    last_error: Option<AuthError>,
    /// The last permanent refusal (expired or wrong secret, unknown app,
    /// bad scope, ...), answered from here until its hold-off ends.
    refusal: Option<Refusal>,
    /// Permanent refusals in a row: the hold-off grows with them.
    refusals: u32,
    /// Failed refreshes in a row while the cached token was still valid.
    refresh_failures: u32,
    /// No refresh before this clock time (backoff after a failed refresh).
    retry_refresh_at: Duration,
}

/// The first hold-off after a permanent refusal; it doubles with each
/// refusal in a row, up to [`REFUSAL_HOLD_OFF_MAX`]. A new client (a config
/// reload) starts over.
pub const REFUSAL_HOLD_OFF: Duration = Duration::from_secs(30);
pub const REFUSAL_HOLD_OFF_MAX: Duration = Duration::from_secs(600);

/// The first wait after an early refresh failed while the token is still
/// valid; it doubles with each failure in a row, up to [`REFRESH_RETRY_MAX`].
const REFRESH_RETRY: Duration = Duration::from_secs(5);
const REFRESH_RETRY_MAX: Duration = Duration::from_secs(60);

/// `first × 2^(n-1)`, at most `max`.
fn doubling(first: Duration, n: u32, max: Duration) -> Duration {
    first
        .saturating_mul(1u32 << n.saturating_sub(1).min(16))
        .min(max)
}

/// The app's token, fetched once and shared by every caller.
pub struct TokenCache {
    http: reqwest::Client,
    endpoint: TokenEndpoint,
    credential: Credential,
    clock: SharedClock,
    retry: RetryPolicy,
    timeout: Duration,
    fetches: AtomicU64,
    /// Short critical sections only: never held across an await.
    state: std::sync::Mutex<State>,
    /// Held by the one caller talking to Entra (single flight). Callers
    /// without a valid token wait on it; callers with one never do.
    fetching: tokio::sync::Mutex<()>,
    /// The application roles of the newest token (`None` before the first).
    granted: tokio::sync::watch::Sender<Option<Granted>>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("endpoint", &self.endpoint)
            .field("credential", &self.credential)
            .finish_non_exhaustive()
    }
}

/// Refresh this long before Entra's `expires_in` runs out (or at three
/// quarters of a short lifetime): a request must not leave with a token that
/// expires on the way.
fn refresh_margin(expires_in: Duration) -> Duration {
    (expires_in / 4).min(Duration::from_secs(300))
}

/// What a caller of [`TokenCache::token`] does next.
enum Plan {
    /// The answer, without asking Entra.
    Ready(Result<Arc<Secret>, AuthError>),
    /// The token is still valid but due for a refresh: one attempt, and the
    /// current token if it fails.
    Refresh(Arc<Secret>),
    /// No valid token: fetch one (with retries).
    Fetch,
}

impl TokenCache {
    pub fn new(
        http: reqwest::Client,
        endpoint: TokenEndpoint,
        credential: Credential,
        clock: SharedClock,
        retry: RetryPolicy,
        timeout: Duration,
    ) -> Self {
        TokenCache {
            http,
            endpoint,
            credential,
            clock,
            retry,
            timeout,
            fetches: AtomicU64::new(0),
            state: std::sync::Mutex::new(State::default()),
            fetching: tokio::sync::Mutex::new(()),
            granted: tokio::sync::watch::channel(None).0,
        }
    }

    /// The application roles of each new token, as they change: `None`
    /// until the first token, then what its `roles` claim grants.
    pub fn granted(&self) -> tokio::sync::watch::Receiver<Option<Granted>> {
        self.granted.subscribe()
    }

    /// Makes the next [`TokenCache::token`] ask Entra for a new token (one
    /// attempt; the current token stays in use if it fails): consent
    /// granted since shows in the new token's roles.
    pub fn refresh_soon(&self) {
        let now = self.clock.now();
        let mut state = self.state();
        state.retry_refresh_at = Duration::ZERO;
        if let Some(cached) = &mut state.cached {
            cached.refresh_at = cached.refresh_at.min(now);
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is plain values, consistent after every statement.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A valid token: the cached one, or a fresh one when it is near expiry.
    ///
    /// - Concurrent callers without a valid token share one fetch and its
    ///   outcome.
    /// - A token due for refresh but still valid is served to everyone while
    ///   one caller makes a single refresh attempt; if it fails, the token is
    ///   kept until it really expires and the refresh is retried later, with
    ///   backoff.
    /// - A permanent refusal (expired secret, unknown app, ...) is answered
    ///   from memory for a hold-off (30 s, doubling up to 10 min) instead of
    ///   asking Entra on every Graph call.
    pub async fn token(&self) -> Result<Arc<Secret>, AuthError> {
        let seen = self.fetches.load(Ordering::Acquire);
        let mut flight = None;
        loop {
            let plan = self.plan(seen);
            match (plan, &flight) {
                (Plan::Ready(answer), _) => return answer,
                (Plan::Refresh(current), None) => match self.fetching.try_lock() {
                    // Check again as the one refresher: another may just
                    // have finished.
                    Ok(guard) => flight = Some(guard),
                    // Someone is refreshing: the current token is still good.
                    Err(_) => return Ok(current),
                },
                (Plan::Refresh(_), Some(_)) => {
                    let outcome = self.fetch_once().await.map_err(|e| match e {
                        Fetch::Transient(message) => {
                            Fetch::Transient(format!("{message} (early refresh)"))
                        }
                        other => other,
                    });
                    return self.store(outcome);
                }
                (Plan::Fetch, None) => flight = Some(self.fetching.lock().await),
                (Plan::Fetch, Some(_)) => {
                    let outcome = self.fetch().await;
                    return self.store(outcome);
                }
            }
        }
    }

    /// How long the access token held now stays valid (`None`: none held),
    /// and the last failure to get one, in words (`None` once one came).
    /// For the health report; never the token itself.
    pub fn status(&self) -> (Option<Duration>, Option<String>) {
        let now = self.clock.now();
        let state = self.state();
        let expires_in = state
            .cached
            .as_ref()
            .filter(|cached| now < cached.expires_at)
            .map(|cached| cached.expires_at - now);
        (expires_in, state.last_error.as_ref().map(|e| e.summary()))
    }

    fn plan(&self, seen: u64) -> Plan {
        let now = self.clock.now();
        let state = self.state();
        let refusal = state.refusal.as_ref().filter(|r| now < r.until);
        if let Some(cached) = &state.cached {
            if now < cached.refresh_at {
                return Plan::Ready(Ok(cached.token.clone()));
            }
            if now < cached.expires_at {
                if refusal.is_some() || now < state.retry_refresh_at {
                    return Plan::Ready(Ok(cached.token.clone()));
                }
                return Plan::Refresh(cached.token.clone());
            }
        }
        if let Some(refusal) = refusal {
            return Plan::Ready(Err(refusal.error.clone()));
        }
        if state.fetches != seen
            && let Some(error) = &state.last_error
        {
            return Plan::Ready(Err(error.clone()));
        }
        Plan::Fetch
    }

    /// Keeps a fetch's outcome; a token still valid survives a failure.
    fn store(&self, outcome: Result<Cached, Fetch>) -> Result<Arc<Secret>, AuthError> {
        let now = self.clock.now();
        let mut state = self.state();
        // Counted when done: a caller that started waiting during this fetch
        // sees the count move and takes its outcome.
        state.fetches += 1;
        self.fetches.store(state.fetches, Ordering::Release);
        let (error, permanent) = match outcome {
            Ok(cached) => {
                let token = cached.token.clone();
                let granted = granted_roles(token.expose());
                self.granted.send_if_modified(|current| {
                    let changed = current.as_ref() != Some(&granted);
                    *current = Some(granted);
                    changed
                });
                state.cached = Some(cached);
                state.last_error = None;
                state.refusal = None;
                state.refusals = 0;
                state.refresh_failures = 0;
                state.retry_refresh_at = Duration::ZERO;
                return Ok(token);
            }
            Err(Fetch::Final(error)) => (error, true),
            Err(Fetch::Transient(message)) => (AuthError::Unreachable { message }, false),
        };
        state.last_error = Some(error.clone());
        if permanent {
            state.refusals = state.refusals.saturating_add(1);
            let hold_off = doubling(REFUSAL_HOLD_OFF, state.refusals, REFUSAL_HOLD_OFF_MAX);
            tracing::error!(kind = error.kind(), %error, ?hold_off, "Entra refused the token request; not asking again before the hold-off ends");
            state.refusal = Some(Refusal {
                error: error.clone(),
                until: now.saturating_add(hold_off),
            });
        }
        match &state.cached {
            Some(cached) if now < cached.expires_at => {
                let token = cached.token.clone();
                let expires_in = cached.expires_at - now;
                state.refresh_failures = state.refresh_failures.saturating_add(1);
                let wait = doubling(REFRESH_RETRY, state.refresh_failures, REFRESH_RETRY_MAX);
                state.retry_refresh_at = now.saturating_add(wait);
                tracing::warn!(kind = error.kind(), %error, ?expires_in, retry_in = ?wait, "token refresh failed; the current token is used until it expires");
                Ok(token)
            }
            _ => {
                if !permanent {
                    tracing::warn!(kind = error.kind(), %error, "token request failed");
                }
                state.cached = None;
                Err(error)
            }
        }
    }

    /// Forgets `stale` (Graph refused it with 401) so the next call fetches
    /// a new one; a token already replaced by another caller is kept.
    pub async fn invalidate(&self, stale: &Arc<Secret>) {
        let mut state = self.state();
        if state
            .cached
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(&c.token, stale))
        {
            state.cached = None;
        }
    }

    async fn fetch(&self) -> Result<Cached, Fetch> {
        let mut backoff = self.retry.backoff();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let message = match self.fetch_once().await {
                Err(Fetch::Transient(message)) => message,
                done => return done,
            };
            let wait = backoff::backoff::Backoff::next_backoff(&mut backoff);
            match wait {
                Some(wait) if attempt < self.retry.max_attempts => {
                    tracing::debug!(attempt, ?wait, %message, "token request will be retried");
                    super::clock::sleep(self.clock.as_ref(), wait).await;
                }
                _ => {
                    return Err(Fetch::Transient(format!("{message} ({attempt} attempts)")));
                }
            }
        }
    }

    async fn fetch_once(&self) -> Result<Cached, Fetch> {
        let mut form: Vec<(&str, String)> = vec![
            ("client_id", self.endpoint.client_id.clone()),
            ("scope", self.endpoint.scope.clone()),
            ("grant_type", "client_credentials".into()),
        ];
        match &self.credential {
            Credential::Secret(secret) => {
                form.push(("client_secret", secret.expose().to_owned()));
            }
            Credential::Certificate(cert) => {
                let assertion = cert
                    .assertion(
                        &self.endpoint.url,
                        &self.endpoint.client_id,
                        self.clock.wall(),
                    )
                    .map_err(Fetch::Final)?;
                form.push((
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
                ));
                form.push(("client_assertion", assertion));
            }
        }
        let started = self.clock.now();
        let response = self
            .http
            .post(&self.endpoint.url)
            .header("client-request-id", new_request_id())
            .form(&form)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| Fetch::Transient(transport_message(&e)))?;
        let status = response.status().as_u16();
        let body = super::throttle::read_body(response, super::throttle::MAX_BODY)
            .await
            .map_err(|e| match e {
                super::throttle::BodyError::Transport(e) => Fetch::Transient(transport_message(&e)),
                super::throttle::BodyError::TooLarge => Fetch::Final(AuthError::Unreachable {
                    message: format!(
                        "the token answer (HTTP {status}) is longer than {} bytes",
                        super::throttle::MAX_BODY
                    ),
                }),
            })?;
        if status == 429 || status >= 500 {
            return Err(Fetch::Transient(format!("Entra answered HTTP {status}")));
        }
        if !(200..300).contains(&status) {
            let parsed: TokenErrorBody =
                serde_json::from_slice(&body).unwrap_or_else(|_| TokenErrorBody {
                    error: format!("http_{status}"),
                    ..TokenErrorBody::default()
                });
            return Err(Fetch::Final(AuthError::classify(status, parsed)));
        }
        let token: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
            Fetch::Final(AuthError::Unreachable {
                message: format!("unreadable token answer: {e}"),
            })
        })?;
        let lifetime = Duration::from_secs(token.expires_in);
        Ok(Cached {
            token: Arc::new(token.access_token),
            refresh_at: started.saturating_add(lifetime - refresh_margin(lifetime)),
            expires_at: started.saturating_add(lifetime),
        })
    }
}

enum Fetch {
    /// Worth another attempt: transport, timeout, 429, 5xx.
    Transient(String),
    Final(AuthError),
}

#[cfg(test)]
mod tests;
