//! The tenant's app registration and the tokens it has issued: Entra ID's
//! client-credentials rules, pure (time and token text passed in).

use std::collections::HashMap;
use std::time::Duration;

use crate::time::Timestamp;

/// The one scope an app-only Graph token may ask for.
pub const GRAPH_DEFAULT_SCOPE: &str = "https://graph.microsoft.com/.default";

/// Entra's default `expires_in` for client-credentials tokens.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3599);

/// The application roles granted by default: every one the daemon uses.
pub const DEFAULT_ROLES: [&str; 4] = [
    "GroupMember.Read.All",
    "Presence.Read.All",
    "Presence.ReadWrite.All",
    "User.Read.All",
];

/// What a Graph call needs: any one of these roles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    /// Presence reads: Presence.Read.All or Presence.ReadWrite.All.
    PresenceRead,
    /// Presence writes: Presence.ReadWrite.All.
    PresenceWrite,
    /// Users and delta: User.Read.All or a broader user or directory role.
    UserRead,
    /// A group's members: GroupMember.Read.All or a broader group or
    /// directory role.
    GroupMemberRead,
}

impl Needs {
    pub fn roles(self) -> &'static [&'static str] {
        match self {
            Needs::PresenceRead => &["Presence.Read.All", "Presence.ReadWrite.All"],
            Needs::PresenceWrite => &["Presence.ReadWrite.All"],
            Needs::UserRead => &[
                "User.Read.All",
                "User.ReadWrite.All",
                "Directory.Read.All",
                "Directory.ReadWrite.All",
            ],
            Needs::GroupMemberRead => &[
                "GroupMember.Read.All",
                "GroupMember.ReadWrite.All",
                "Group.Read.All",
                "Group.ReadWrite.All",
                "Directory.Read.All",
                "Directory.ReadWrite.All",
            ],
        }
    }

    /// Whether a token with `roles` may make the call.
    pub fn allowed(self, roles: &[String]) -> bool {
        self.roles()
            .iter()
            .any(|need| roles.iter().any(|r| r.eq_ignore_ascii_case(need)))
    }
}

/// The app a valid bearer token was issued to, and the roles it carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub client_id: String,
    pub roles: Vec<String>,
    /// The signed-in user of a delegated token; `None` for app-only.
    pub user: Option<SignedInUser>,
}

/// The user a delegated token acts for, and the scopes it was granted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedInUser {
    pub upn: String,
    /// The user's object id (`oid`).
    pub oid: String,
    /// The delegated scopes (`scp`), e.g. `Presence.Read.All`.
    pub scopes: Vec<String>,
}

/// The app registration the simulator accepts.
#[derive(Clone, Debug)]
pub struct Registration {
    pub tenant_id: String,
    /// The tenant's domain, accepted in place of its id in the token URL.
    pub tenant_domain: String,
    pub client_id: String,
    pub client_secret: String,
    /// The simulator's own base URL. A client derives the scope from its
    /// Graph host (`{graph_base}/.default`, as national clouds need), so
    /// pointed at the simulator it asks for `{base_url}/.default`.
    pub base_url: String,
    /// A certificate registered with the app, for client assertions.
    pub certificate: Option<RegisteredCertificate>,
}

/// A certificate credential of the app registration: what Entra keeps of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisteredCertificate {
    /// SHA-256 of the certificate's DER: the `x5t#S256` a client names it by.
    pub sha256: Vec<u8>,
    /// The RSA public key (PKCS#1 `RSAPublicKey` DER) assertions must verify with.
    pub public_key: Vec<u8>,
}

impl RegisteredCertificate {
    pub fn new(certificate_der: &[u8], public_key: Vec<u8>) -> Self {
        let sha256 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, certificate_der);
        RegisteredCertificate {
            sha256: sha256.as_ref().to_vec(),
            public_key,
        }
    }
}

/// A client-credentials token request's form fields.
#[derive(Clone, Debug, Default)]
pub struct TokenRequest {
    pub grant_type: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_assertion: Option<String>,
    pub scope: Option<String>,
}

/// An Entra token error: the HTTP status, the OAuth `error`, the AADSTS code
/// and its text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("AADSTS{code}: {description}")]
pub struct EntraError {
    pub status: u16,
    pub error: &'static str,
    pub code: u32,
    pub description: String,
}

impl EntraError {
    fn new(status: u16, error: &'static str, code: u32, description: String) -> Self {
        EntraError {
            status,
            error,
            code,
            description,
        }
    }
}

/// Why a bearer token was refused (Graph: 401 InvalidAuthenticationToken).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejection {
    #[error("Access token is empty.")]
    Missing,
    #[error("Access token validation failure. Invalid token.")]
    Unknown,
    #[error("Lifetime validation failed, the token is expired.")]
    Expired,
}

#[derive(Clone, Debug)]
struct Issued {
    caller: Caller,
    expires_at: Timestamp,
}

#[derive(Clone, Debug)]
pub struct Auth {
    registration: Registration,
    lifetime: Duration,
    tokens: HashMap<String, Issued>,
    /// Fault injection: the (correct) secret has passed its end date.
    secret_expired: bool,
    /// The application roles an admin granted (consented to). A token
    /// carries the roles granted when it was issued, as in Entra: a grant
    /// shows in the next token.
    roles: Vec<String>,
}

impl Auth {
    pub fn new(registration: Registration, lifetime: Duration) -> Self {
        Auth {
            registration,
            lifetime,
            tokens: HashMap::new(),
            secret_expired: false,
            roles: DEFAULT_ROLES.iter().map(|r| r.to_string()).collect(),
        }
    }

    /// The roles granted to the app now (sorted, no duplicates).
    pub fn roles(&self) -> &[String] {
        &self.roles
    }

    /// Replaces the granted roles; tokens issued before keep theirs.
    pub fn set_roles(&mut self, roles: impl IntoIterator<Item = String>) {
        let mut roles: Vec<String> = roles
            .into_iter()
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty())
            .collect();
        roles.sort();
        roles.dedup();
        self.roles = roles;
    }

    /// From now on the right secret is refused as expired (AADSTS7000222),
    /// as Entra does once a secret's end date passes.
    pub fn set_secret_expired(&mut self, expired: bool) {
        self.secret_expired = expired;
    }

    pub fn secret_expired(&self) -> bool {
        self.secret_expired
    }

    pub fn registration(&self) -> &Registration {
        &self.registration
    }

    /// The tenant in a login URL must be this one, by id or domain.
    pub fn check_tenant(&self, tenant: &str) -> Result<(), EntraError> {
        let reg = &self.registration;
        if tenant.eq_ignore_ascii_case(&reg.tenant_id)
            || tenant.eq_ignore_ascii_case(&reg.tenant_domain)
        {
            return Ok(());
        }
        Err(EntraError::new(
            400,
            "invalid_request",
            90002,
            format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
            ),
        ))
    }

    /// The `client_id` of a request must be the registered app's.
    pub fn check_client_id(&self, client_id: Option<&str>) -> Result<(), EntraError> {
        let reg = &self.registration;
        let client_id = client_id
            .filter(|c| !c.is_empty())
            .ok_or_else(|| missing("client_id"))?;
        if client_id.eq_ignore_ascii_case(&reg.client_id) {
            return Ok(());
        }
        Err(EntraError::new(
            400,
            "unauthorized_client",
            700016,
            format!(
                "Application with identifier '{client_id}' was not found in the directory '{}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant.",
                reg.tenant_id
            ),
        ))
    }

    /// Checks a token request for tenant `tenant` (the URL segment).
    /// The order follows Entra's: tenant, grant, app, credential, scope.
    pub fn check(
        &self,
        tenant: &str,
        request: &TokenRequest,
        now: Timestamp,
    ) -> Result<(), EntraError> {
        let reg = &self.registration;
        self.check_tenant(tenant)?;
        let required = |name: &str, value: &Option<String>| match value {
            Some(v) if !v.is_empty() => Ok(()),
            _ => Err(missing(name)),
        };
        required("grant_type", &request.grant_type)?;
        if request.grant_type.as_deref() != Some("client_credentials") {
            return Err(EntraError::new(
                400,
                "unsupported_grant_type",
                70003,
                "The app requested an unsupported grant type.".into(),
            ));
        }
        self.check_client_id(request.client_id.as_deref())?;
        match (&request.client_secret, &request.client_assertion) {
            (Some(secret), _) if !secret.is_empty() => {
                if *secret != reg.client_secret {
                    return Err(EntraError::new(
                        401,
                        "invalid_client",
                        7000215,
                        "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app.".into(),
                    ));
                }
                if self.secret_expired {
                    return Err(EntraError::new(
                        401,
                        "invalid_client",
                        7000222,
                        format!(
                            "The provided client secret keys for app '{}' are expired. Visit the Azure portal to create new keys for your app.",
                            reg.client_id
                        ),
                    ));
                }
            }
            (_, Some(assertion)) if !assertion.is_empty() => {
                let audience = format!(
                    "{}/{tenant}/oauth2/v2.0/token",
                    reg.base_url.trim_end_matches('/')
                );
                check_assertion(reg, assertion, &audience, now)?;
            }
            _ => {
                return Err(EntraError::new(
                    401,
                    "invalid_client",
                    7000216,
                    "'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.".into(),
                ));
            }
        }
        required("scope", &request.scope)?;
        let scope = request.scope.as_deref().unwrap_or_default();
        let own_scope = format!("{}/.default", reg.base_url.trim_end_matches('/'));
        if scope != GRAPH_DEFAULT_SCOPE && scope != own_scope {
            return Err(EntraError::new(
                400,
                "invalid_scope",
                70011,
                format!(
                    "The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid."
                ),
            ));
        }
        Ok(())
    }

    /// Issues a token `now`: a JWT whose claims carry the app, the tenant,
    /// the lifetime and the roles granted now, made unguessable by `nonce`
    /// (random bytes the caller drew; they stand in for the signature).
    /// Returns the token and `expires_in` in seconds.
    pub fn issue(&mut self, nonce: &[u8], now: Timestamp) -> (String, u64) {
        use base64::Engine;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        self.tokens.retain(|_, issued| now < issued.expires_at);
        let expires_at = now + self.lifetime;
        let secs = |t: Timestamp| t.as_micros() / 1_000_000;
        let reg = &self.registration;
        let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "kid": "sim"});
        let mut claims = serde_json::json!({
            "aud": "https://graph.microsoft.com",
            "iss": format!("https://sts.windows.net/{}/", reg.tenant_id),
            "iat": secs(now),
            "nbf": secs(now),
            "exp": secs(expires_at),
            "appid": reg.client_id,
            "tid": reg.tenant_id,
            "idtyp": "app",
            "ver": "1.0",
        });
        // A token without granted roles has no `roles` claim, as Entra's.
        if !self.roles.is_empty() {
            claims["roles"] = serde_json::json!(self.roles);
        }
        let token = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string()),
            URL_SAFE_NO_PAD.encode(nonce)
        );
        self.tokens.insert(
            token.clone(),
            Issued {
                caller: Caller {
                    client_id: reg.client_id.clone(),
                    roles: self.roles.clone(),
                    user: None,
                },
                expires_at,
            },
        );
        (token, self.lifetime.as_secs())
    }

    /// Issues a delegated token `now` for `user`: JWT-shaped like the app
    /// ones, but with `scp`, `upn` and `oid` and no `roles`, as Entra's
    /// delegated tokens. Returns the token and `expires_in` in seconds.
    pub fn issue_delegated(
        &mut self,
        user: SignedInUser,
        nonce: &[u8],
        now: Timestamp,
    ) -> (String, u64) {
        use base64::Engine;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        self.tokens.retain(|_, issued| now < issued.expires_at);
        let expires_at = now + self.lifetime;
        let secs = |t: Timestamp| t.as_micros() / 1_000_000;
        let reg = &self.registration;
        let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "kid": "sim"});
        let claims = serde_json::json!({
            "aud": "https://graph.microsoft.com",
            "iss": format!("https://sts.windows.net/{}/", reg.tenant_id),
            "iat": secs(now),
            "nbf": secs(now),
            "exp": secs(expires_at),
            "appid": reg.client_id,
            "tid": reg.tenant_id,
            "idtyp": "user",
            "scp": user.scopes.join(" "),
            "upn": user.upn,
            "unique_name": user.upn,
            "oid": user.oid,
            "ver": "1.0",
        });
        let token = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string()),
            URL_SAFE_NO_PAD.encode(nonce)
        );
        self.tokens.insert(
            token.clone(),
            Issued {
                caller: Caller {
                    client_id: reg.client_id.clone(),
                    roles: Vec::new(),
                    user: Some(user),
                },
                expires_at,
            },
        );
        (token, self.lifetime.as_secs())
    }

    /// The app a bearer token was issued to and its roles, if it is valid
    /// at `now`.
    pub fn validate(&self, token: Option<&str>, now: Timestamp) -> Result<&Caller, TokenRejection> {
        let token = token
            .filter(|t| !t.is_empty())
            .ok_or(TokenRejection::Missing)?;
        let issued = self.tokens.get(token).ok_or(TokenRejection::Unknown)?;
        if now >= issued.expires_at {
            return Err(TokenRejection::Expired);
        }
        Ok(&issued.caller)
    }

    /// `upn`'s delegated access tokens stop working now, as Graph's
    /// continuous access evaluation does once a user's sessions are
    /// revoked: the next call gets 401 and the refresh token is refused.
    pub fn revoke_user(&mut self, upn: &str, now: Timestamp) -> usize {
        let mut n = 0;
        for issued in self.tokens.values_mut() {
            if issued
                .caller
                .user
                .as_ref()
                .is_some_and(|u| u.upn.eq_ignore_ascii_case(upn))
                && issued.expires_at > now
            {
                issued.expires_at = now;
                n += 1;
            }
        }
        n
    }

    /// Every issued token stops working now (fault injection). They are
    /// kept, marked expired, so callers see "expired" rather than "unknown".
    pub fn expire_all(&mut self, now: Timestamp) {
        for issued in self.tokens.values_mut() {
            issued.expires_at = issued.expires_at.min(now);
        }
    }
}

/// AADSTS900144: a required form field is missing or empty.
pub fn missing(name: &str) -> EntraError {
    EntraError::new(
        400,
        "invalid_request",
        900144,
        format!("The request body must contain the following parameter: '{name}'."),
    )
}

/// Validates a client assertion as Entra does for a certificate credential:
/// an RS256 JWT naming a registered certificate, signed by its key, for this
/// token URL, issued by the app for itself, and not expired.
fn check_assertion(
    reg: &Registration,
    assertion: &str,
    audience: &str,
    now: Timestamp,
) -> Result<(), EntraError> {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    let refuse = |code: u32, text: &str| {
        Err(EntraError::new(
            401,
            "invalid_client",
            code,
            text.to_string(),
        ))
    };
    let Some(certificate) = &reg.certificate else {
        return refuse(
            700027,
            "Client assertion failed signature validation: the app has no certificate registered.",
        );
    };
    let parts: Vec<&str> = assertion.split('.').collect();
    let [header, claims, signature] = parts.as_slice() else {
        return refuse(50027, "JWT token is invalid or malformed.");
    };
    let json = |part: &str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
    };
    let (Some(header), Some(claims), Ok(signature)) = (
        json(header),
        json(claims),
        URL_SAFE_NO_PAD.decode(signature),
    ) else {
        return refuse(50027, "JWT token is invalid or malformed.");
    };
    let named = header["x5t#S256"]
        .as_str()
        .and_then(|t| URL_SAFE_NO_PAD.decode(t).ok());
    if header["alg"] != "RS256" || named.as_deref() != Some(certificate.sha256.as_slice()) {
        return refuse(
            700027,
            "Client assertion contains an invalid signature: the key was not found.",
        );
    }
    let signed = &assertion[..assertion.len() - parts[2].len() - 1];
    let key = aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
        &certificate.public_key,
    );
    if key.verify(signed.as_bytes(), &signature).is_err() {
        return refuse(700027, "Client assertion failed signature validation.");
    }
    if claims["aud"] != audience {
        return refuse(
            700212,
            "No matching federated identity record found for presented assertion audience.",
        );
    }
    if claims["iss"] != reg.client_id.as_str() || claims["sub"] != reg.client_id.as_str() {
        return refuse(
            700211,
            "No matching federated identity record found for presented assertion issuer.",
        );
    }
    let now_secs = i64::try_from(now.as_micros() / 1_000_000).unwrap_or(i64::MAX);
    if claims["exp"].as_i64().is_none_or(|exp| exp <= now_secs) {
        return refuse(
            700024,
            "Client assertion is not within its valid time range.",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp::from_secs(1_800_000_000);

    fn auth() -> Auth {
        Auth::new(
            Registration {
                tenant_id: "tenant-guid".into(),
                tenant_domain: "contoso.test".into(),
                client_id: "client-guid".into(),
                client_secret: "s3cret".into(),
                base_url: "http://127.0.0.1:1".into(),
                certificate: None,
            },
            Duration::from_secs(60),
        )
    }

    fn good() -> TokenRequest {
        TokenRequest {
            grant_type: Some("client_credentials".into()),
            client_id: Some("client-guid".into()),
            client_secret: Some("s3cret".into()),
            client_assertion: None,
            scope: Some(GRAPH_DEFAULT_SCOPE.into()),
        }
    }

    #[test]
    fn a_correct_request_passes_for_the_tenant_id_or_domain() {
        let auth = auth();
        assert_eq!(auth.check("tenant-guid", &good(), NOW), Ok(()));
        assert_eq!(auth.check("Contoso.Test", &good(), NOW), Ok(()));
        let own_scope = TokenRequest {
            scope: Some("http://127.0.0.1:1/.default".into()),
            ..good()
        };
        assert_eq!(auth.check("tenant-guid", &own_scope, NOW), Ok(()));
    }

    #[test]
    fn each_mistake_gets_its_aadsts_code() {
        let auth = auth();
        let code = |tenant: &str, change: &dyn Fn(&mut TokenRequest)| {
            let mut request = good();
            change(&mut request);
            auth.check(tenant, &request, NOW).unwrap_err()
        };
        assert_eq!(code("other", &|_| {}).code, 90002);
        let e = code("tenant-guid", &|r| r.client_secret = Some("wrong".into()));
        assert_eq!(
            (e.status, e.error, e.code),
            (401, "invalid_client", 7000215)
        );
        let e = code("tenant-guid", &|r| r.client_id = Some("nope".into()));
        assert_eq!(
            (e.status, e.error, e.code),
            (400, "unauthorized_client", 700016)
        );
        let e = code("tenant-guid", &|r| {
            r.scope = Some("https://foo.microsoft.com/.default".into())
        });
        assert_eq!((e.status, e.error, e.code), (400, "invalid_scope", 70011));
        assert_eq!(code("tenant-guid", &|r| r.scope = None).code, 900144);
        assert_eq!(
            code("tenant-guid", &|r| r.client_secret = None).code,
            7000216
        );
        assert_eq!(
            code("tenant-guid", &|r| r.grant_type = Some("password".into())).code,
            70003
        );
    }

    #[test]
    fn an_expired_secret_is_told_apart_from_a_wrong_one() {
        let mut auth = auth();
        auth.set_secret_expired(true);
        let e = auth.check("tenant-guid", &good(), NOW).unwrap_err();
        assert_eq!(
            (e.status, e.error, e.code),
            (401, "invalid_client", 7000222)
        );
        let mut wrong = good();
        wrong.client_secret = Some("wrong".into());
        assert_eq!(
            auth.check("tenant-guid", &wrong, NOW).unwrap_err().code,
            7000215
        );
    }

    #[test]
    fn tokens_expire_after_their_lifetime_or_on_demand() {
        let mut auth = auth();
        let t0 = Timestamp::from_secs(1000);
        let (tok, expires_in) = auth.issue(b"one", t0);
        assert_eq!(expires_in, 60);
        assert_eq!(
            auth.validate(Some(&tok), t0 + Duration::from_secs(59))
                .map(|c| c.client_id.as_str()),
            Ok("client-guid")
        );
        assert_eq!(
            auth.validate(Some(&tok), t0 + Duration::from_secs(60)),
            Err(TokenRejection::Expired)
        );
        assert_eq!(
            auth.validate(Some("other"), t0),
            Err(TokenRejection::Unknown)
        );
        assert_eq!(auth.validate(None, t0), Err(TokenRejection::Missing));
        let (tok2, _) = auth.issue(b"two", t0);
        auth.expire_all(t0 + Duration::from_secs(1));
        assert_eq!(
            auth.validate(Some(&tok2), t0 + Duration::from_secs(1)),
            Err(TokenRejection::Expired)
        );
    }

    #[test]
    fn a_token_carries_the_roles_granted_when_it_was_issued() {
        use crate::graph::permissions::{Granted, granted_roles};
        let mut auth = auth();
        let t0 = Timestamp::from_secs(1000);
        let (all, _) = auth.issue(b"a", t0);
        assert_eq!(
            granted_roles(&all),
            Granted::Roles(DEFAULT_ROLES.iter().map(|r| r.to_string()).collect())
        );
        auth.set_roles(["User.Read.All".to_string(), "Presence.Read.All".into()]);
        let (fewer, _) = auth.issue(b"b", t0);
        let caller = auth.validate(Some(&fewer), t0).unwrap();
        assert!(Needs::PresenceRead.allowed(&caller.roles));
        assert!(!Needs::PresenceWrite.allowed(&caller.roles));
        // The earlier token keeps what it was issued with.
        let caller = auth.validate(Some(&all), t0).unwrap();
        assert!(Needs::PresenceWrite.allowed(&caller.roles));
        auth.set_roles([]);
        let (none, _) = auth.issue(b"c", t0);
        assert_eq!(granted_roles(&none), Granted::Roles(Default::default()));
        assert!(!Needs::UserRead.allowed(&auth.validate(Some(&none), t0).unwrap().roles));
    }

    mod assertions {
        use aws_lc_rs::encoding::AsDer;
        use aws_lc_rs::rsa::KeySize;
        use aws_lc_rs::signature::{KeyPair, RsaKeyPair};
        use chrono::{DateTime, Utc};

        use super::*;
        use crate::graph::CertificateCredential;

        const CERT: &[u8] = b"the certificate's DER stands in here; only its digest matters";

        fn key() -> RsaKeyPair {
            RsaKeyPair::generate(KeySize::Rsa2048).unwrap()
        }

        fn auth_with(key: &RsaKeyPair) -> Auth {
            let mut auth = auth();
            auth.registration.certificate = Some(RegisteredCertificate::new(
                CERT,
                key.public_key().as_ref().to_vec(),
            ));
            auth
        }

        fn request(signer: RsaKeyPair, audience: &str, at: Timestamp) -> TokenRequest {
            let credential = CertificateCredential::new(signer, CERT);
            let secs = i64::try_from(at.as_micros() / 1_000_000).unwrap();
            let when = DateTime::<Utc>::from_timestamp(secs, 0).unwrap();
            TokenRequest {
                client_secret: None,
                client_assertion: Some(
                    credential.assertion(audience, "client-guid", when).unwrap(),
                ),
                ..good()
            }
        }

        const AUDIENCE: &str = "http://127.0.0.1:1/tenant-guid/oauth2/v2.0/token";

        #[test]
        fn a_signed_assertion_for_the_registered_certificate_passes() {
            let signer = key();
            let auth = auth_with(&signer);
            assert_eq!(
                auth.check("tenant-guid", &request(signer, AUDIENCE, NOW), NOW),
                Ok(())
            );
        }

        #[test]
        fn each_flaw_gets_its_aadsts_code() {
            let trusted = key();
            let pkcs8 = trusted.as_der().unwrap();
            let signer = || RsaKeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
            let auth = auth_with(&trusted);
            let code = |r: TokenRequest, now| auth.check("tenant-guid", &r, now).unwrap_err().code;
            assert_eq!(
                code(request(key(), AUDIENCE, NOW), NOW),
                700027,
                "another key"
            );
            let late = Timestamp::from_secs(1_800_000_000 + 3600);
            assert_eq!(
                code(request(signer(), AUDIENCE, NOW), late),
                700024,
                "expired"
            );
            let elsewhere = request(signer(), "https://elsewhere/token", NOW);
            assert_eq!(code(elsewhere, NOW), 700212, "another audience");
            let garbled = TokenRequest {
                client_assertion: Some("not.a.jwt".into()),
                ..request(signer(), AUDIENCE, NOW)
            };
            assert_eq!(code(garbled, NOW), 50027, "not a JWT");
            let no_certificate = super::auth();
            let r = request(signer(), AUDIENCE, NOW);
            assert_eq!(
                no_certificate
                    .check("tenant-guid", &r, NOW)
                    .unwrap_err()
                    .code,
                700027
            );
        }
    }
}
