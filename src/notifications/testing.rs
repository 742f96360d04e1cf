//! Test support: what Graph does on its side of a rich notification —
//! encrypt a presence for our certificate, sign validation tokens with a
//! key it publishes — so tests can make notifications the receiver must
//! accept, and tamper with them.

use std::sync::{Arc, OnceLock};

use aws_lc_rs::cipher::{AES_256, EncryptionContext, PaddedBlockEncryptingKey, UnboundCipherKey};
use aws_lc_rs::hmac;
use aws_lc_rs::iv::FixedLength;
use aws_lc_rs::rand::{SystemRandom, fill};
use aws_lc_rs::rsa::{KeySize, OAEP_SHA1_MGF1SHA1, OaepPublicEncryptingKey, PrivateDecryptingKey};
use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};

use super::jwt::{GRAPH_NOTIFICATION_PUBLISHER, Jwks, TokenExpectations};
use super::payload::EncryptedContent;
use super::rich::Decryption;

pub(crate) const CLIENT_ID: &str = "8e460676-ae3f-4b1e-8790-ee0fb5d6148f";
pub(crate) const TENANT_ID: &str = "84bd8158-6d4d-4958-8b9f-9d6445542f95";
pub(crate) const CERTIFICATE_ID: &str = "presence-sync-test-cert";
/// Stands in for the certificate's DER: only its digest is used.
pub(crate) const CERTIFICATE_DER: &[u8] = b"test certificate DER";

pub(crate) fn expectations() -> TokenExpectations {
    TokenExpectations {
        client_id: CLIENT_ID.into(),
        tenant_id: TENANT_ID.into(),
    }
}

/// Graph's side: our certificate's public key.
pub(crate) struct Encryptor {
    public: OaepPublicEncryptingKey,
    thumbprint: String,
}

impl Encryptor {
    /// `plain` encrypted as Graph does.
    pub(crate) fn encrypt(&self, plain: &[u8]) -> EncryptedContent {
        let mut key = [0u8; 32];
        fill(&mut key).unwrap();
        let mut wrapped = vec![0; self.public.ciphertext_size()];
        let wrapped = self
            .public
            .encrypt(&OAEP_SHA1_MGF1SHA1, &key, &mut wrapped, None)
            .unwrap()
            .to_vec();
        let cipher =
            PaddedBlockEncryptingKey::cbc_pkcs7(UnboundCipherKey::new(&AES_256, &key).unwrap())
                .unwrap();
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&key[..16]);
        let mut data = plain.to_vec();
        cipher
            .less_safe_encrypt(&mut data, EncryptionContext::Iv128(FixedLength::from(iv)))
            .unwrap();
        let signature = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &key), &data);
        EncryptedContent {
            data: STANDARD.encode(&data),
            data_signature: STANDARD.encode(signature.as_ref()),
            data_key: STANDARD.encode(&wrapped),
            encryption_certificate_id: Some(CERTIFICATE_ID.into()),
            encryption_certificate_thumbprint: Some(self.thumbprint.clone()),
        }
    }
}

/// A fresh key pair: our decryption and Graph's encryption for it.
pub(crate) fn test_decryption() -> (Decryption, Encryptor) {
    let key = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
    let public = OaepPublicEncryptingKey::new(key.public_key()).unwrap();
    let decryption = Decryption::new(key, CERTIFICATE_DER, CERTIFICATE_ID).unwrap();
    let thumbprint = decryption.thumbprint();
    (decryption, Encryptor { public, thumbprint })
}

/// One key pair for every test of a run (generating one takes a while).
pub(crate) fn shared_decryption() -> &'static (Arc<Decryption>, Encryptor) {
    static PAIR: OnceLock<(Arc<Decryption>, Encryptor)> = OnceLock::new();
    PAIR.get_or_init(|| {
        let (decryption, encryptor) = test_decryption();
        (Arc::new(decryption), encryptor)
    })
}

/// Entra's side: a signing key it publishes under `kid`.
pub(crate) struct Signer {
    key: RsaKeyPair,
    pub(crate) kid: String,
}

impl Signer {
    pub(crate) fn new(kid: &str) -> Self {
        Signer {
            key: RsaKeyPair::generate(KeySize::Rsa2048).unwrap(),
            kid: kid.into(),
        }
    }

    /// The claims of a validation token Graph would send at `now`.
    pub(crate) fn claims(&self, now: DateTime<Utc>) -> serde_json::Value {
        let t = now.timestamp();
        serde_json::json!({
            "aud": CLIENT_ID,
            "iss": format!("https://sts.windows.net/{TENANT_ID}/"),
            "iat": t, "nbf": t, "exp": t + 3600,
            "appid": GRAPH_NOTIFICATION_PUBLISHER,
            "appidacr": "2",
            "tid": TENANT_ID,
            "ver": "1.0",
        })
    }

    /// `claims` as an RS256 JWT signed with this key.
    pub(crate) fn token(&self, claims: &serde_json::Value) -> String {
        let header =
            serde_json::json!({"typ": "JWT", "alg": "RS256", "kid": self.kid, "x5t": self.kid});
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
            .unwrap();
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    /// The key set Entra publishes, as JSON.
    pub(crate) fn jwks_json(&self) -> String {
        let public = self.key.public_key();
        serde_json::json!({"keys": [{
            "kty": "RSA", "use": "sig", "kid": self.kid, "x5t": self.kid,
            "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
            "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
        }]})
        .to_string()
    }

    pub(crate) fn jwks(&self) -> Jwks {
        Jwks::parse(self.jwks_json().as_bytes()).unwrap()
    }
}

/// One signing key for every test of a run.
pub(crate) fn shared_signer() -> &'static Signer {
    static SIGNER: OnceLock<Signer> = OnceLock::new();
    SIGNER.get_or_init(|| Signer::new("graph-key-1"))
}
