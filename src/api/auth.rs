//! Bearer-token auth for `/v1` (SPEC §3.1). The token is compared as a
//! SHA-256 digest in constant time, so neither its content nor its length
//! shows in response times.

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
}

impl BearerToken {
    pub fn new(secret: &Secret) -> Self {
        BearerToken {
            digest: sha256(secret.expose().as_bytes()),
        }
    }

    /// Checks the `Authorization` header.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(Refusal::Missing);
        };
        let presented = bearer_credentials(value.as_bytes()).ok_or(Refusal::Missing)?;
        verify_slices_are_equal(&sha256(presented), &self.digest).map_err(|_| Refusal::Wrong)
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
    fn debug_hides_the_digest() {
        let token = BearerToken::new(&Secret::new("s3cret"));
        assert_eq!(format!("{token:?}"), "BearerToken(<redacted>)");
    }
}
