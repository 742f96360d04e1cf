//! The tenant's app registration and the tokens it has issued: Entra ID's
//! client-credentials rules, pure (time and token text passed in).

use std::collections::HashMap;
use std::time::Duration;

use crate::time::Timestamp;

/// The one scope an app-only Graph token may ask for.
pub const GRAPH_DEFAULT_SCOPE: &str = "https://graph.microsoft.com/.default";

/// Entra's default `expires_in` for client-credentials tokens.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3599);

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
    client_id: String,
    expires_at: Timestamp,
}

#[derive(Clone, Debug)]
pub struct Auth {
    registration: Registration,
    lifetime: Duration,
    tokens: HashMap<String, Issued>,
    /// Fault injection: the (correct) secret has passed its end date.
    secret_expired: bool,
}

impl Auth {
    pub fn new(registration: Registration, lifetime: Duration) -> Self {
        Auth {
            registration,
            lifetime,
            tokens: HashMap::new(),
            secret_expired: false,
        }
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

    /// Checks a token request for tenant `tenant` (the URL segment).
    /// The order follows Entra's: tenant, grant, app, credential, scope.
    pub fn check(&self, tenant: &str, request: &TokenRequest) -> Result<(), EntraError> {
        let reg = &self.registration;
        if !tenant.eq_ignore_ascii_case(&reg.tenant_id)
            && !tenant.eq_ignore_ascii_case(&reg.tenant_domain)
        {
            return Err(EntraError::new(
                400,
                "invalid_request",
                90002,
                format!(
                    "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
                ),
            ));
        }
        let required = |name: &str, value: &Option<String>| match value {
            Some(v) if !v.is_empty() => Ok(()),
            _ => Err(EntraError::new(
                400,
                "invalid_request",
                900144,
                format!("The request body must contain the following parameter: '{name}'."),
            )),
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
        required("client_id", &request.client_id)?;
        let client_id = request.client_id.as_deref().unwrap_or_default();
        if !client_id.eq_ignore_ascii_case(&reg.client_id) {
            return Err(EntraError::new(
                400,
                "unauthorized_client",
                700016,
                format!(
                    "Application with identifier '{client_id}' was not found in the directory '{}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant.",
                    reg.tenant_id
                ),
            ));
        }
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
                // No certificate is registered with the simulator's app.
                return Err(EntraError::new(
                    401,
                    "invalid_client",
                    700027,
                    "Client assertion failed signature validation.".into(),
                ));
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

    /// Records `token` (random text the caller drew) as issued `now`;
    /// returns `expires_in` in seconds.
    pub fn issue(&mut self, token: String, now: Timestamp) -> u64 {
        self.tokens.retain(|_, issued| now < issued.expires_at);
        self.tokens.insert(
            token,
            Issued {
                client_id: self.registration.client_id.clone(),
                expires_at: now + self.lifetime,
            },
        );
        self.lifetime.as_secs()
    }

    /// The client id a bearer token was issued to, if it is valid at `now`.
    pub fn validate(&self, token: Option<&str>, now: Timestamp) -> Result<&str, TokenRejection> {
        let token = token
            .filter(|t| !t.is_empty())
            .ok_or(TokenRejection::Missing)?;
        let issued = self.tokens.get(token).ok_or(TokenRejection::Unknown)?;
        if now >= issued.expires_at {
            return Err(TokenRejection::Expired);
        }
        Ok(&issued.client_id)
    }

    /// Every issued token stops working now (fault injection). They are
    /// kept, marked expired, so callers see "expired" rather than "unknown".
    pub fn expire_all(&mut self, now: Timestamp) {
        for issued in self.tokens.values_mut() {
            issued.expires_at = issued.expires_at.min(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth::new(
            Registration {
                tenant_id: "tenant-guid".into(),
                tenant_domain: "contoso.test".into(),
                client_id: "client-guid".into(),
                client_secret: "s3cret".into(),
                base_url: "http://127.0.0.1:1".into(),
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
        assert_eq!(auth.check("tenant-guid", &good()), Ok(()));
        assert_eq!(auth.check("Contoso.Test", &good()), Ok(()));
        let own_scope = TokenRequest {
            scope: Some("http://127.0.0.1:1/.default".into()),
            ..good()
        };
        assert_eq!(auth.check("tenant-guid", &own_scope), Ok(()));
    }

    #[test]
    fn each_mistake_gets_its_aadsts_code() {
        let auth = auth();
        let code = |tenant: &str, change: &dyn Fn(&mut TokenRequest)| {
            let mut request = good();
            change(&mut request);
            auth.check(tenant, &request).unwrap_err()
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
        let e = auth.check("tenant-guid", &good()).unwrap_err();
        assert_eq!(
            (e.status, e.error, e.code),
            (401, "invalid_client", 7000222)
        );
        let mut wrong = good();
        wrong.client_secret = Some("wrong".into());
        assert_eq!(auth.check("tenant-guid", &wrong).unwrap_err().code, 7000215);
    }

    #[test]
    fn tokens_expire_after_their_lifetime_or_on_demand() {
        let mut auth = auth();
        let t0 = Timestamp::from_secs(1000);
        assert_eq!(auth.issue("tok".into(), t0), 60);
        assert_eq!(
            auth.validate(Some("tok"), t0 + Duration::from_secs(59)),
            Ok("client-guid")
        );
        assert_eq!(
            auth.validate(Some("tok"), t0 + Duration::from_secs(60)),
            Err(TokenRejection::Expired)
        );
        assert_eq!(
            auth.validate(Some("other"), t0),
            Err(TokenRejection::Unknown)
        );
        assert_eq!(auth.validate(None, t0), Err(TokenRejection::Missing));
        auth.issue("tok2".into(), t0);
        auth.expire_all(t0 + Duration::from_secs(1));
        assert_eq!(
            auth.validate(Some("tok2"), t0 + Duration::from_secs(1)),
            Err(TokenRejection::Expired)
        );
    }
}
