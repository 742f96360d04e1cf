//! Entra's endpoints as the service accounts use them: the device-code
//! request, and the token endpoint for the device-code and refresh grants.
//!
//! The requests carry the client id alone (the public-client flow, which
//! the app registration allows with "Allow public client flows"). When
//! Entra answers that the app is confidential (AADSTS7000218), the app's
//! own secret or certificate assertion is added and kept from then on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Deserialize;

use super::error::aadsts;
use crate::config::{GraphConfig, Secret};
use crate::graph::Credential;
use crate::graph::model::TokenErrorBody;
use crate::graph::throttle::{BodyError, MAX_BODY, new_request_id, read_body};
use crate::http::transport_message;

/// Where the accounts' requests go, and what they ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountEndpoints {
    /// `{login_base}/{tenant}/oauth2/v2.0/devicecode`.
    pub device_code_url: String,
    /// `{login_base}/{tenant}/oauth2/v2.0/token`.
    pub token_url: String,
    pub client_id: String,
    /// `{graph_base}/Presence.Read.All offline_access`: presence read as
    /// the account, and a refresh token.
    pub scope: String,
}

impl AccountEndpoints {
    pub fn new(login_base: &str, tenant: &str, client_id: &str, graph_base: &str) -> Self {
        let base = format!("{}/{tenant}/oauth2/v2.0", login_base.trim_end_matches('/'));
        AccountEndpoints {
            device_code_url: format!("{base}/devicecode"),
            token_url: format!("{base}/token"),
            client_id: client_id.to_owned(),
            scope: format!(
                "{}/Presence.Read.All offline_access",
                graph_base.trim_end_matches('/')
            ),
        }
    }

    pub fn from_config(config: &GraphConfig) -> Self {
        AccountEndpoints::new(
            &config.login_base,
            &config.tenant_id,
            &config.client_id,
            &config.graph_base,
        )
    }
}

/// Entra's answer to a successful token request. Not `Debug`: it holds
/// tokens.
pub struct TokenAnswer {
    pub access_token: Secret,
    /// A new refresh token (Entra rotates it on every use).
    pub refresh_token: Option<Secret>,
    /// Seconds.
    pub expires_in: u64,
    /// The signed-in user's claims, unverified (`None` without an id token).
    pub id_token: Option<IdClaims>,
}

/// What the id token says of the signed-in user.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct IdClaims {
    #[serde(default)]
    pub preferred_username: Option<String>,
    #[serde(default)]
    pub upn: Option<String>,
    #[serde(default)]
    pub oid: Option<String>,
}

impl IdClaims {
    /// The signed-in UPN: `preferred_username`, else `upn`.
    pub fn username(&self) -> Option<&str> {
        self.preferred_username.as_deref().or(self.upn.as_deref())
    }
}

/// Reads a JWT's claims without checking its signature: the token came
/// from Entra over TLS, and only says who signed in.
pub fn id_claims(jwt: &str) -> Option<IdClaims> {
    use base64::Engine;
    use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
    let claims = jwt.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(claims)
        .or_else(|_| URL_SAFE.decode(claims))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[derive(Deserialize)]
struct RawTokenAnswer {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    id_token: Option<String>,
}

/// A token request that did not succeed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Entra answered 4xx with its error body.
    Status(u16, TokenErrorBody),
    /// No answer, 429 or 5xx: worth trying again later.
    Transient(String),
}

/// The HTTP side of the accounts' requests to Entra.
pub struct EntraClient {
    http: reqwest::Client,
    endpoints: AccountEndpoints,
    /// The app's credential, sent once Entra says the app is confidential.
    credential: Option<Arc<Credential>>,
    confidential: AtomicBool,
    timeout: Duration,
}

impl std::fmt::Debug for EntraClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntraClient")
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

impl EntraClient {
    /// `timeout` bounds each request, connect to last byte.
    pub fn new(
        http: reqwest::Client,
        endpoints: AccountEndpoints,
        credential: Option<Arc<Credential>>,
        timeout: Duration,
    ) -> Self {
        EntraClient {
            http,
            endpoints,
            credential,
            confidential: AtomicBool::new(false),
            timeout,
        }
    }

    /// For `config`'s tenant and app, through its proxy and CA file; the
    /// app's credential is loaded when it can be (a confidential app needs
    /// it), and left out when not.
    pub fn from_config(config: &GraphConfig) -> Result<Self, String> {
        let http = crate::http::client_with(config.request_timeout, &config.outbound)
            .map_err(|e| e.to_string())?;
        let credential = Credential::load(&config.auth).ok().map(Arc::new);
        Ok(EntraClient::new(
            http,
            AccountEndpoints::from_config(config),
            credential,
            config.request_timeout,
        ))
    }

    pub fn endpoints(&self) -> &AccountEndpoints {
        &self.endpoints
    }

    /// POSTs `form` to `url` (adding the app's credential once Entra asked
    /// for it); the body of a 2xx.
    pub(crate) async fn post(
        &self,
        url: &str,
        form: &[(&'static str, String)],
    ) -> Result<Vec<u8>, Refused> {
        match self.post_once(url, form).await {
            Err(Refused::Status(_, body))
                if body.error_codes.contains(&aadsts::CONFIDENTIAL_CLIENT)
                    && self.credential.is_some()
                    && !self.confidential.swap(true, Ordering::AcqRel) =>
            {
                self.post_once(url, form).await
            }
            other => other,
        }
    }

    async fn post_once(
        &self,
        url: &str,
        form: &[(&'static str, String)],
    ) -> Result<Vec<u8>, Refused> {
        let mut form = form.to_vec();
        if self.confidential.load(Ordering::Acquire)
            && let Some(credential) = &self.credential
        {
            match credential.as_ref() {
                Credential::Secret(secret) => {
                    form.push(("client_secret", secret.expose().to_owned()));
                }
                Credential::Certificate(cert) => {
                    let assertion = cert
                        .assertion(
                            &self.endpoints.token_url,
                            &self.endpoints.client_id,
                            chrono::Utc::now(),
                        )
                        .map_err(|e| Refused::Transient(e.to_string()))?;
                    form.push((
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
                    ));
                    form.push(("client_assertion", assertion));
                }
            }
        }
        let response = self
            .http
            .post(url)
            .header("client-request-id", new_request_id())
            .form(&form)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| Refused::Transient(transport_message(&e)))?;
        let status = response.status().as_u16();
        let body = read_body(response, MAX_BODY).await.map_err(|e| match e {
            BodyError::Transport(e) => Refused::Transient(transport_message(&e)),
            BodyError::TooLarge => {
                Refused::Transient(format!("Entra's answer (HTTP {status}) is too long"))
            }
        })?;
        if status == 429 || status >= 500 {
            return Err(Refused::Transient(format!("Entra answered HTTP {status}")));
        }
        if !(200..300).contains(&status) {
            let parsed = serde_json::from_slice(&body).unwrap_or_else(|_| TokenErrorBody {
                error: format!("http_{status}"),
                ..TokenErrorBody::default()
            });
            return Err(Refused::Status(status, parsed));
        }
        Ok(body)
    }

    /// A token request (`grant_type` and the rest in `form`; the client id
    /// is added).
    pub(crate) async fn token(
        &self,
        mut form: Vec<(&'static str, String)>,
    ) -> Result<TokenAnswer, Refused> {
        form.push(("client_id", self.endpoints.client_id.clone()));
        let body = self.post(&self.endpoints.token_url, &form).await?;
        let raw: RawTokenAnswer = serde_json::from_slice(&body)
            .map_err(|e| Refused::Transient(format!("unreadable token answer: {e}")))?;
        let expires_in = match &raw.expires_in {
            Some(serde_json::Value::Number(n)) => n.as_u64(),
            Some(serde_json::Value::String(s)) => s.parse().ok(),
            _ => None,
        }
        .unwrap_or(3600);
        Ok(TokenAnswer {
            access_token: Secret::new(raw.access_token),
            refresh_token: raw.refresh_token.filter(|t| !t.is_empty()).map(Secret::new),
            expires_in,
            id_token: raw.id_token.as_deref().and_then(id_claims),
        })
    }
}
