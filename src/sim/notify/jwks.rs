//! The simulator's own signing key: it signs the `validationTokens` of rich
//! notifications (RS256), and is published as Entra publishes its keys, at
//! `GET /common/discovery/v2.0/keys` and `GET /{tenant}/discovery/v2.0/keys`.
//!
//! Entra's keys come with certificates; this one has none, so its `kid` and
//! `x5t` are both the base64url SHA-1 of its public key (PKCS#1 DER) — a
//! receiver finds the key by `kid` as it would in Entra's set.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::time::Timestamp;

/// The app id Graph's change-notification service signs as.
pub const NOTIFICATION_APP_ID: &str = "0bf30f3b-4a52-48df-9a82-234910c4a086";

/// How long a validation token is valid.
pub const VALIDATION_TOKEN_LIFETIME: u64 = 3600;

/// Why the key could not be made or used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the simulator's signing key: {0}")]
pub struct SigningError(String);

/// An RSA key that signs validation tokens.
pub struct SigningKey {
    key: RsaKeyPair,
    kid: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A new 2048-bit key (made once per simulator, on first use).
    pub fn generate() -> Result<Self, SigningError> {
        let key =
            RsaKeyPair::generate(KeySize::Rsa2048).map_err(|e| SigningError(e.to_string()))?;
        let sha1 = aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
            key.public_key().as_ref(),
        );
        Ok(SigningKey {
            kid: URL_SAFE_NO_PAD.encode(sha1.as_ref()),
            key,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// `{"keys":[{kty, use, kid, x5t, n, e}]}`.
    pub fn jwks(&self) -> Value {
        let public = self.key.public_key();
        json!({
            "keys": [{
                "kty": "RSA",
                "use": "sig",
                "kid": self.kid,
                "x5t": self.kid,
                "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
                "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
            }]
        })
    }

    /// A validation token for the app `audience` of tenant `tenant_id`, as
    /// the contract lists its claims.
    pub fn validation_token(
        &self,
        audience: &str,
        tenant_id: &str,
        now: Timestamp,
    ) -> Result<String, SigningError> {
        let secs = now.as_micros() / 1_000_000;
        let header = json!({"typ": "JWT", "alg": "RS256", "kid": self.kid, "x5t": self.kid});
        let claims = json!({
            "aud": audience,
            "iss": format!("https://sts.windows.net/{tenant_id}/"),
            "iat": secs,
            "nbf": secs,
            "exp": secs + VALIDATION_TOKEN_LIFETIME,
            "appid": NOTIFICATION_APP_ID,
            "azp": NOTIFICATION_APP_ID,
            "tid": tenant_id,
            "ver": "1.0",
        });
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0u8; self.key.public_modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signed.as_bytes(),
                &mut signature,
            )
            .map_err(|e| SigningError(e.to_string()))?;
        Ok(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}
