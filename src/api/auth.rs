//! Bearer-token auth for `/v1` (SPEC §3.1). The token is compared as a
//! SHA-256 digest in constant time, so neither its content nor its length
//! shows in response times.
//!
//! Two credentials: the API token, which may call everything, and an
//! optional viewer token (`[api] viewer_token_file`) for the status board
//! and other read-only callers, which may call the routes marked
//! [`Auth::Viewer`](super::routes::Auth::Viewer) and is refused with 403 on
//! the others.

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest::{SHA256, digest};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::config::Secret;

use super::error::ApiError;

/// The token the API expects, kept only as its digest.
#[derive(Clone)]
pub struct BearerToken {
    digest: [u8; 32],
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Missing,
    Wrong,
    /// The viewer token on a route that needs the API token.
    ReadOnly,
}

/// Which credential a request carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Credential {
    /// The API token: every route.
    Api,
    /// The viewer token: read-only routes.
    Viewer,
}

/// The API token and the viewer token, when one is configured.
#[derive(Clone, Debug)]
pub struct Tokens {
    api: BearerToken,
    viewer: Option<BearerToken>,
}

impl Tokens {
    pub fn new(api: &Secret, viewer: Option<&Secret>) -> Self {
        Tokens {
            api: BearerToken::new(api),
            viewer: viewer.map(BearerToken::new),
        }
    }

    /// The credential the `Authorization` header carries. Both digests are
    /// compared whichever matches, so the time taken does not say which.
    pub fn identify(&self, headers: &HeaderMap) -> Result<Credential, Refusal> {
        let presented = presented(headers)?;
        let api = self.api.matches(&presented);
        let viewer = self.viewer.as_ref().is_some_and(|v| v.matches(&presented));
        match (api, viewer) {
            (true, _) => Ok(Credential::Api),
            (false, true) => Ok(Credential::Viewer),
            (false, false) => Err(Refusal::Wrong),
        }
    }

    /// The check for a route that needs the API token.
    pub fn require_api(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        match self.identify(headers)? {
            Credential::Api => Ok(()),
            Credential::Viewer => Err(Refusal::ReadOnly),
        }
    }

    /// The check for a read-only route: either token.
    pub fn require_viewer(&self, headers: &HeaderMap) -> Result<Credential, Refusal> {
        self.identify(headers)
    }
}

/// The digest of the bearer credentials in `headers`.
fn presented(headers: &HeaderMap) -> Result<[u8; 32], Refusal> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(Refusal::Missing);
    };
    let presented = bearer_credentials(value.as_bytes()).ok_or(Refusal::Missing)?;
    Ok(sha256(presented))
}

impl BearerToken {
    pub fn new(secret: &Secret) -> Self {
        BearerToken {
            digest: sha256(secret.expose().as_bytes()),
        }
    }

    /// Checks the `Authorization` header.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        if self.matches(&presented(headers)?) {
            Ok(())
        } else {
            Err(Refusal::Wrong)
        }
    }

    /// Whether a presented token's digest is this token's, in constant time.
    fn matches(&self, presented: &[u8; 32]) -> bool {
        verify_slices_are_equal(presented, &self.digest).is_ok()
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, bytes).as_ref());
    out
}

/// The credentials of `Bearer <token>`; the scheme is case-insensitive
/// (RFC 7235). Another scheme or an empty token is no bearer token at all.
fn bearer_credentials(value: &[u8]) -> Option<&[u8]> {
    let scheme = b"bearer ";
    if value.len() <= scheme.len() || !value[..scheme.len()].eq_ignore_ascii_case(scheme) {
        return None;
    }
    let token = value[scheme.len()..].trim_ascii();
    (!token.is_empty()).then_some(token)
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        // RFC 6750 §3: name the scheme, and say `invalid_token` when one was sent.
        let (error, challenge) = match self {
            Refusal::Missing => (
                ApiError::new(
                    401,
                    "unauthorized",
                    "send the API token as `Authorization: Bearer <token>`",
                ),
                HeaderValue::from_static("Bearer realm=\"presence-sync\""),
            ),
            Refusal::Wrong => (
                ApiError::new(401, "unauthorized", "the bearer token is not valid"),
                HeaderValue::from_static("Bearer realm=\"presence-sync\", error=\"invalid_token\""),
            ),
            // RFC 6750 §3.1: a valid token without the rights is 403,
            // `insufficient_scope`.
            Refusal::ReadOnly => (
                ApiError::new(
                    403,
                    "forbidden",
                    "the viewer token can only read (the status board and GET routes); \
                     changing anything needs the API token",
                ),
                HeaderValue::from_static(
                    "Bearer realm=\"presence-sync\", error=\"insufficient_scope\"",
                ),
            ),
        };
        let mut response = error.into_response();
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, challenge);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &[u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_bytes(value).unwrap(),
        );
        headers
    }

    #[test]
    fn accepts_only_the_token() {
        let token = BearerToken::new(&Secret::new("s3cret"));
        assert_eq!(token.check(&headers(b"Bearer s3cret")), Ok(()));
        assert_eq!(token.check(&headers(b"bearer  s3cret ")), Ok(()));
        assert_eq!(token.check(&headers(b"Bearer s3cre")), Err(Refusal::Wrong));
        assert_eq!(
            token.check(&headers(b"Bearer s3cret2")),
            Err(Refusal::Wrong)
        );
        assert_eq!(token.check(&headers(b"Bearer S3CRET")), Err(Refusal::Wrong));
        assert_eq!(
            token.check(&headers(b"Basic czNjcmV0")),
            Err(Refusal::Missing)
        );
        assert_eq!(token.check(&headers(b"Bearer ")), Err(Refusal::Missing));
        assert_eq!(token.check(&headers(b"s3cret")), Err(Refusal::Missing));
        assert_eq!(token.check(&HeaderMap::new()), Err(Refusal::Missing));
    }

    #[test]
    fn the_viewer_token_reads_and_the_api_token_does_everything() {
        let tokens = Tokens::new(&Secret::new("api-t0ken"), Some(&Secret::new("v1ewer")));
        let api = headers(b"Bearer api-t0ken");
        let viewer = headers(b"Bearer v1ewer");
        let wrong = headers(b"Bearer v1ewe");
        assert_eq!(tokens.require_api(&api), Ok(()));
        assert_eq!(tokens.require_api(&viewer), Err(Refusal::ReadOnly));
        assert_eq!(tokens.require_api(&wrong), Err(Refusal::Wrong));
        assert_eq!(tokens.require_viewer(&api), Ok(Credential::Api));
        assert_eq!(tokens.require_viewer(&viewer), Ok(Credential::Viewer));
        assert_eq!(tokens.require_viewer(&wrong), Err(Refusal::Wrong));
        assert_eq!(
            tokens.require_viewer(&HeaderMap::new()),
            Err(Refusal::Missing)
        );
        let api_only = Tokens::new(&Secret::new("api-t0ken"), None);
        assert_eq!(api_only.require_viewer(&viewer), Err(Refusal::Wrong));
        assert_eq!(api_only.require_viewer(&api), Ok(Credential::Api));
    }

    #[test]
    fn debug_hides_the_digest() {
        let token = BearerToken::new(&Secret::new("s3cret"));
        assert_eq!(format!("{token:?}"), "BearerToken(<redacted>)");
    }
}
