//! The `validationTokens` of a rich notification batch: RS256 JWTs that
//! prove Microsoft Graph sent it to us. Each must be signed by a key of
//! Entra's published key set (JWKS, read here, fetched by the receiver),
//! be meant for our app (`aud`), come from the Graph change-notification
//! publisher (`appid`), be issued for our tenant (`iss`), and be valid now
//! (`nbf`, `exp`, with [`CLOCK_SKEW`] either way).
//!
//! Pure: the key set and the time are passed in. Every refusal is a
//! [`TokenRejection`] naming what failed.

use std::collections::BTreeMap;

use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use thiserror::Error;

/// The app id of Microsoft Graph's change-notification publisher: every
/// validation token names it in `appid`.
pub const GRAPH_NOTIFICATION_PUBLISHER: &str = "0bf30f3b-4a52-48df-9a82-234910c4a086";

/// How far apart our clock and Entra's may be: the identity libraries'
/// usual five minutes.
pub const CLOCK_SKEW: chrono::Duration = chrono::Duration::minutes(5);

/// Why a key set could not be read.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum JwksError {
    #[error("the key set is not JSON of the form {{\"keys\":[…]}}: {0}")]
    NotJson(String),
    #[error("the key set holds no usable RSA signing key")]
    NoKeys,
}

/// Entra's signing keys by key id (`kid`).
#[derive(Clone, Debug, Default)]
pub struct Jwks {
    keys: BTreeMap<String, RsaPublicKeyComponents<Vec<u8>>>,
}

#[derive(Deserialize)]
struct WireJwks {
    keys: Vec<WireJwk>,
}

#[derive(Deserialize)]
struct WireJwk {
    #[serde(default)]
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default, rename = "use")]
    usage: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
}

impl Jwks {
    /// Reads `{"keys":[{"kty":"RSA","kid","n","e",…}]}`. Keys that are not
    /// RSA, are for encryption, or lack a `kid`, `n` or `e` are left out;
    /// a set with none left is an error.
    pub fn parse(body: &[u8]) -> Result<Jwks, JwksError> {
        let wire: WireJwks =
            serde_json::from_slice(body).map_err(|e| JwksError::NotJson(e.to_string()))?;
        let keys: BTreeMap<_, _> = wire
            .keys
            .into_iter()
            .filter(|k| k.kty == "RSA" && k.usage.as_deref().is_none_or(|u| u == "sig"))
            .filter_map(|k| {
                let n = URL_SAFE_NO_PAD.decode(k.n?.trim_end_matches('=')).ok()?;
                let e = URL_SAFE_NO_PAD.decode(k.e?.trim_end_matches('=')).ok()?;
                Some((k.kid?, RsaPublicKeyComponents { n, e }))
            })
            .collect();
        if keys.is_empty() {
            return Err(JwksError::NoKeys);
        }
        Ok(Jwks { keys })
    }

    /// Whether the set has a key with this id.
    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// What a validation token must say to be ours.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenExpectations {
    /// Our app's client id: the token's audience.
    pub client_id: String,
    /// Our tenant: the token's issuer.
    pub tenant_id: String,
}

/// Why a validation token was refused. [`TokenRejection::reason`] names
/// each for the metrics.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum TokenRejection {
    #[error("the token is not a JWT: {0}")]
    Malformed(String),
    #[error("the token is signed with `{0}`, not RS256")]
    Algorithm(String),
    #[error("the token is signed with key `{0}`, which the key set does not hold")]
    UnknownKey(String),
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token is for audience `{found}`, not our app `{expected}`")]
    WrongAudience { found: String, expected: String },
    #[error("the token was issued to app `{found}`, not Graph's change-notification publisher")]
    WrongPublisher { found: String },
    #[error("the token was issued by `{found}`, not for our tenant `{tenant}`")]
    WrongIssuer { found: String, tenant: String },
    #[error("the token expired at {0}")]
    Expired(DateTime<Utc>),
    #[error("the token is not valid before {0}")]
    NotYetValid(DateTime<Utc>),
}

impl TokenRejection {
    /// A short, stable name for metrics labels.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenRejection::Malformed(_) => "token_malformed",
            TokenRejection::Algorithm(_) => "token_algorithm",
            TokenRejection::UnknownKey(_) => "token_unknown_key",
            TokenRejection::BadSignature => "token_signature",
            TokenRejection::WrongAudience { .. } => "token_audience",
            TokenRejection::WrongPublisher { .. } => "token_publisher",
            TokenRejection::WrongIssuer { .. } => "token_issuer",
            TokenRejection::Expired(_) => "token_expired",
            TokenRejection::NotYetValid(_) => "token_not_yet_valid",
        }
    }
}

#[derive(Deserialize)]
struct Header {
    #[serde(default)]
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    x5t: Option<String>,
}

/// The claims a validation token is checked on.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct TokenClaims {
    #[serde(deserialize_with = "one_or_many")]
    pub aud: Vec<String>,
    #[serde(default)]
    pub iss: String,
    #[serde(default)]
    pub appid: Option<String>,
    /// v2.0 tokens name the app `azp`.
    #[serde(default)]
    pub azp: Option<String>,
    #[serde(default)]
    pub tid: Option<String>,
    pub exp: i64,
    #[serde(default)]
    pub nbf: Option<i64>,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(one) => vec![one],
        OneOrMany::Many(many) => many,
    })
}

/// The key id a token names (`kid`, else `x5t`), so the receiver can tell
/// an unknown key (fetch the key set again) from a bad token.
pub fn key_id(token: &str) -> Result<String, TokenRejection> {
    let (signed, _) = split(token)?;
    let (header, _) = split_signed(signed)?;
    let header: Header = decode_part(header, "header")?;
    header
        .kid
        .or(header.x5t)
        .ok_or_else(|| TokenRejection::Malformed("the header names no key (`kid`)".into()))
}

/// Checks one validation token against the key set, our expectations and
/// the time `now`; its claims when it is ours.
pub fn validate_token(
    token: &str,
    keys: &Jwks,
    expected: &TokenExpectations,
    now: DateTime<Utc>,
) -> Result<TokenClaims, TokenRejection> {
    let (signed, signature_b64) = split(token)?;
    let (header_b64, claims_b64) = split_signed(signed)?;
    let header: Header = decode_part(header_b64, "header")?;
    if header.alg != "RS256" {
        return Err(TokenRejection::Algorithm(
            header.alg.chars().take(20).collect(),
        ));
    }
    let kid = header
        .kid
        .or(header.x5t)
        .ok_or_else(|| TokenRejection::Malformed("the header names no key (`kid`)".into()))?;
    let Some(key) = keys.keys.get(&kid) else {
        return Err(TokenRejection::UnknownKey(kid.chars().take(80).collect()));
    };
    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .map_err(|_| TokenRejection::Malformed("the signature is not base64url".into()))?;
    key.verify(&RSA_PKCS1_2048_8192_SHA256, signed.as_bytes(), &signature)
        .map_err(|_| TokenRejection::BadSignature)?;

    let claims: TokenClaims = decode_part(claims_b64, "claims")?;
    if !claims
        .aud
        .iter()
        .any(|a| a.eq_ignore_ascii_case(&expected.client_id))
    {
        return Err(TokenRejection::WrongAudience {
            found: claims.aud.join(", ").chars().take(200).collect(),
            expected: expected.client_id.clone(),
        });
    }
    let app = claims
        .appid
        .as_deref()
        .or(claims.azp.as_deref())
        .unwrap_or("");
    if !app.eq_ignore_ascii_case(GRAPH_NOTIFICATION_PUBLISHER) {
        return Err(TokenRejection::WrongPublisher {
            found: app.chars().take(80).collect(),
        });
    }
    if !issued_for(&claims.iss, &expected.tenant_id) {
        return Err(TokenRejection::WrongIssuer {
            found: claims.iss.chars().take(200).collect(),
            tenant: expected.tenant_id.clone(),
        });
    }
    let at = |secs: i64| DateTime::from_timestamp(secs, 0).unwrap_or(DateTime::<Utc>::MIN_UTC);
    let exp = at(claims.exp);
    if now > exp + CLOCK_SKEW {
        return Err(TokenRejection::Expired(exp));
    }
    if let Some(nbf) = claims.nbf.map(at)
        && now + CLOCK_SKEW < nbf
    {
        return Err(TokenRejection::NotYetValid(nbf));
    }
    Ok(claims)
}

/// `https://sts.windows.net/{tenant}/` (v1.0) or
/// `https://login.microsoftonline.com/{tenant}/v2.0` (v2.0).
fn issued_for(iss: &str, tenant: &str) -> bool {
    let matches = |rest: Option<&str>, suffix: &str| {
        rest.and_then(|r| r.strip_suffix(suffix))
            .is_some_and(|t| !tenant.is_empty() && t.eq_ignore_ascii_case(tenant))
    };
    matches(iss.strip_prefix("https://sts.windows.net/"), "/")
        || matches(
            iss.strip_prefix("https://login.microsoftonline.com/"),
            "/v2.0",
        )
}

/// `(header.claims, signature)`.
fn split(token: &str) -> Result<(&str, &str), TokenRejection> {
    let (signed, signature) = token
        .trim()
        .rsplit_once('.')
        .ok_or_else(|| TokenRejection::Malformed("it has no `.`-separated parts".into()))?;
    Ok((signed, signature))
}

fn split_signed(signed: &str) -> Result<(&str, &str), TokenRejection> {
    match signed.split_once('.') {
        Some((header, claims)) if !claims.contains('.') => Ok((header, claims)),
        _ => Err(TokenRejection::Malformed(
            "it does not have three `.`-separated parts".into(),
        )),
    }
}

fn decode_part<T: serde::de::DeserializeOwned>(
    part: &str,
    what: &str,
) -> Result<T, TokenRejection> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenRejection::Malformed(format!("its {what} is not base64url")))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| TokenRejection::Malformed(format!("its {what} does not read: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notifications::testing::{
        CLIENT_ID, Signer, TENANT_ID, expectations, shared_signer,
    };

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_765_000_000, 0).unwrap()
    }

    #[test]
    fn a_token_graph_would_send_is_accepted() {
        let signer = shared_signer();
        let token = signer.token(&signer.claims(now()));
        let claims = validate_token(&token, &signer.jwks(), &expectations(), now()).unwrap();
        assert_eq!(claims.aud, [CLIENT_ID]);
        assert_eq!(key_id(&token).unwrap(), signer.kid);
    }

    #[test]
    fn each_wrong_claim_is_refused_by_name() {
        let signer = shared_signer();
        let keys = signer.jwks();
        let check = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut claims = signer.claims(now());
            edit(&mut claims);
            validate_token(&signer.token(&claims), &keys, &expectations(), now())
                .unwrap_err()
                .reason()
        };
        assert_eq!(
            check(&|c| c["aud"] = "someone-else".into()),
            "token_audience"
        );
        assert_eq!(
            check(&|c| c["appid"] = "another-app".into()),
            "token_publisher"
        );
        assert_eq!(
            check(&|c| c["iss"] = "https://sts.windows.net/other-tenant/".into()),
            "token_issuer"
        );
        let exp = now().timestamp() - 301;
        assert_eq!(check(&|c| c["exp"] = exp.into()), "token_expired");
        let nbf = now().timestamp() + 301;
        assert_eq!(check(&|c| c["nbf"] = nbf.into()), "token_not_yet_valid");
        // Within the skew both ways is fine.
        let mut claims = signer.claims(now());
        claims["exp"] = (now().timestamp() - 299).into();
        claims["nbf"] = (now().timestamp() + 299).into();
        assert!(validate_token(&signer.token(&claims), &keys, &expectations(), now()).is_ok());
        // The v2.0 issuer and an audience list are accepted too.
        claims["iss"] = format!("https://login.microsoftonline.com/{TENANT_ID}/v2.0").into();
        claims["aud"] = serde_json::json!(["x", CLIENT_ID]);
        assert!(validate_token(&signer.token(&claims), &keys, &expectations(), now()).is_ok());
    }

    #[test]
    fn a_token_signed_by_another_key_or_altered_is_refused() {
        let signer = shared_signer();
        let forger = Signer::new(&signer.kid);
        let forged = forger.token(&forger.claims(now()));
        assert_eq!(
            validate_token(&forged, &signer.jwks(), &expectations(), now()),
            Err(TokenRejection::BadSignature)
        );
        let stranger = Signer::new("other-kid");
        let unknown = stranger.token(&stranger.claims(now()));
        assert_eq!(
            validate_token(&unknown, &signer.jwks(), &expectations(), now())
                .unwrap_err()
                .reason(),
            "token_unknown_key"
        );
        // Claims swapped under a valid signature.
        let good = signer.token(&signer.claims(now()));
        let mut claims = signer.claims(now());
        claims["aud"] = "attacker".into();
        let other = signer.token(&claims);
        let parts: Vec<&str> = good.split('.').collect();
        let swapped = format!(
            "{}.{}.{}",
            parts[0],
            other.split('.').nth(1).unwrap(),
            parts[2]
        );
        assert_eq!(
            validate_token(&swapped, &signer.jwks(), &expectations(), now()),
            Err(TokenRejection::BadSignature)
        );
    }

    #[test]
    fn only_rs256_is_accepted() {
        let signer = shared_signer();
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"k"}"#);
        let claims = URL_SAFE_NO_PAD.encode(signer.claims(now()).to_string());
        let token = format!("{header}.{claims}.");
        assert_eq!(
            validate_token(&token, &signer.jwks(), &expectations(), now()),
            Err(TokenRejection::Algorithm("none".into()))
        );
        for bad in ["", "abc", "a.b", "a.b.c.d", "!.!.!"] {
            assert_eq!(
                validate_token(bad, &signer.jwks(), &expectations(), now())
                    .unwrap_err()
                    .reason(),
                "token_malformed",
                "{bad}"
            );
        }
    }

    #[test]
    fn key_sets_keep_only_rsa_signing_keys() {
        let body = br#"{"keys":[
            {"kty":"RSA","use":"sig","kid":"a","n":"AQAB","e":"AQAB","x5t":"a"},
            {"kty":"EC","kid":"b","x":"..","y":".."},
            {"kty":"RSA","use":"enc","kid":"c","n":"AQAB","e":"AQAB"},
            {"kty":"RSA","kid":"d","n":"!!","e":"AQAB"},
            {"kty":"RSA","n":"AQAB","e":"AQAB"}]}"#;
        let keys = Jwks::parse(body).unwrap();
        assert_eq!(keys.len(), 1);
        assert!(keys.contains("a"));
        assert!(matches!(
            Jwks::parse(br#"{"keys":[]}"#),
            Err(JwksError::NoKeys)
        ));
        assert!(matches!(Jwks::parse(b"[]"), Err(JwksError::NotJson(_))));
    }

    proptest::proptest! {
        #[test]
        fn any_token_is_refused_or_accepted_never_a_panic(token in "[A-Za-z0-9_.-]{0,200}") {
            let signer = shared_signer();
            let _ = key_id(&token);
            proptest::prop_assert!(validate_token(&token, &signer.jwks(), &expectations(), now()).is_err());
        }

        #[test]
        fn any_key_set_reads_or_is_refused(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = Jwks::parse(&body);
        }
    }
}
