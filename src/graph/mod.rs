//! The Teams side: Microsoft Graph.
//!
//! One concept a module:
//!
//! | concept | module |
//! |---|---|
//! | what Graph sends and receives | [`model`] |
//! | the app's token (secret or certificate) | [`auth`] |
//! | the Graph throttle: 429 pauses, retries, ids, timeouts | [`throttle`] |
//! | the budget's scheduler: call classes, writes first, AIMD after a 429 | [`throttle::scheduler`] |
//! | presence reads and writes | [`presence`] |
//! | users and the delta link | [`directory`] |
//! | the presence poller and its schedule | [`poller`] |
//! | the adapter's clock (testable time) | [`clock`] |
//! | how a call failed | [`error`] |
//! | permissions needed, granted and missing; Graph's 403s | [`permissions`] |
//! | what the request path sent, for metrics (calls, budget used) | [`call_stats`] |
//! | presence subscriptions, with a service account's token | [`subscriptions`] |
//!
//! [`GraphClient`] ties them together; every call it makes goes through the
//! one [`throttle::Throttle`].

pub mod auth;
pub mod call_stats;
pub mod clock;
pub mod directory;
pub mod error;
pub mod model;
pub mod permissions;
pub mod poller;
pub mod presence;
pub mod subscriptions;
pub mod throttle;

#[cfg(test)]
pub(crate) mod testing;

use std::sync::Arc;

use reqwest::{Method, Url};

pub use auth::{AuthError, CertificateCredential, Credential, TokenCache, TokenEndpoint};
pub use clock::{Clock, SharedClock, TokioClock};
pub use directory::{DeltaChanges, DeltaOutcome};
pub use error::GraphError;
pub use poller::{PollPlan, PollReport, PollStatus, PollTarget, Poller, PresenceUpdate};
pub use presence::{MAX_IDS_PER_CALL, PresenceRead, Unread};
pub use subscriptions::{Subscription, SubscriptionRequest};
pub use throttle::{
    Budget, BudgetReport, CallClass, GraphRequest, GraphResponse, RetryPolicy, Throttle,
    ThrottleConfig, TokenSource,
};

use crate::config::{GraphAuth, GraphConfig};
use crate::http;

/// The Graph API version every path is under.
const API_VERSION: &str = "v1.0";

/// A Graph client for one tenant and app. Cheap to clone; clones share the
/// token, the budget and the connection pool.
#[derive(Clone, Debug)]
pub struct GraphClient {
    throttle: Arc<Throttle>,
    /// `{graph_base}/v1.0`.
    base: Url,
    /// Our app id: the `sessionId` of our presence sessions.
    client_id: String,
}

impl Credential {
    /// Reads the credential the config names: the secret, or the
    /// certificate file and its key.
    pub fn load(auth: &GraphAuth) -> Result<Credential, AuthError> {
        let unusable = |message: String| AuthError::Credential { message };
        match auth {
            GraphAuth::ClientSecret(source) => source
                .read()
                .map(Credential::Secret)
                .map_err(|e| unusable(e.to_string())),
            GraphAuth::Certificate {
                certificate_file,
                key,
            } => {
                let certificate = std::fs::read_to_string(certificate_file).map_err(|e| {
                    unusable(format!(
                        "cannot read the certificate `{}`: {e}",
                        certificate_file.display()
                    ))
                })?;
                let key = key.read().map_err(|e| unusable(e.to_string()))?;
                CertificateCredential::from_pem(&certificate, &key).map(Credential::Certificate)
            }
        }
    }
}

/// Builds a [`GraphClient`]; tests inject a clock, the daemon may share one
/// budget between clients of the same tenant.
pub struct GraphClientBuilder<'a> {
    config: &'a GraphConfig,
    credential: Credential,
    clock: Option<SharedClock>,
    throttle: Option<ThrottleConfig>,
    budget: Option<Arc<Budget>>,
    gate: Option<Arc<crate::cluster::gate::Gate>>,
}

impl<'a> GraphClientBuilder<'a> {
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Knobs beyond what [`GraphConfig`] holds.
    pub fn throttle(mut self, throttle: ThrottleConfig) -> Self {
        self.throttle = Some(throttle);
        self
    }

    /// Spend from an existing budget (another client of the same tenant).
    pub fn budget(mut self, budget: Arc<Budget>) -> Self {
        self.budget = Some(budget);
        self
    }

    /// In a cluster: every call checks the active node's gate first.
    pub fn gate(mut self, gate: Option<Arc<crate::cluster::gate::Gate>>) -> Self {
        self.gate = gate;
        self
    }

    pub fn build(self) -> Result<GraphClient, GraphError> {
        let config = self.config;
        let clock = self.clock.unwrap_or_else(TokioClock::shared);
        let throttle_config = self
            .throttle
            .unwrap_or_else(|| ThrottleConfig::from_graph(config));
        let base = base_url(&config.graph_base)?;
        base_url(&config.login_base)?;
        let http =
            http::client_with(throttle_config.request_timeout, &config.outbound).map_err(|e| {
                GraphError::Setup {
                    message: e.to_string(),
                }
            })?;
        let tokens = Arc::new(TokenCache::new(
            http.clone(),
            TokenEndpoint::new(
                &config.login_base,
                &config.tenant_id,
                &config.client_id,
                &config.graph_base,
            ),
            self.credential,
            clock.clone(),
            throttle_config.retry.clone(),
            throttle_config.request_timeout,
        ));
        let budget = self
            .budget
            .unwrap_or_else(|| Arc::new(Budget::new(&throttle_config, clock.clone())));
        let mut throttle = Throttle::new(http, budget, tokens, throttle_config, clock);
        if let Some(gate) = self.gate {
            throttle = throttle.with_gate(gate);
        }
        Ok(GraphClient {
            throttle: Arc::new(throttle),
            base,
            client_id: config.client_id.clone(),
        })
    }
}

/// `{base}/v1.0` as a URL we can append path segments to.
fn base_url(base: &str) -> Result<Url, GraphError> {
    let bad = |reason| GraphError::Url {
        url: base.to_owned(),
        reason,
    };
    let mut url = Url::parse(base).map_err(|_| bad("not a URL"))?;
    if !matches!(url.scheme(), "https" | "http") || url.cannot_be_a_base() {
        return Err(bad("not an http(s) URL"));
    }
    url.path_segments_mut()
        .map_err(|_| bad("not a base URL"))?
        .pop_if_empty()
        .push(API_VERSION);
    Ok(url)
}

impl GraphClient {
    /// A client for `config` with `credential`, on tokio's clock.
    pub fn new(config: &GraphConfig, credential: Credential) -> Result<GraphClient, GraphError> {
        GraphClient::builder(config, credential).build()
    }

    pub fn builder(config: &GraphConfig, credential: Credential) -> GraphClientBuilder<'_> {
        GraphClientBuilder {
            config,
            credential,
            clock: None,
            throttle: None,
            budget: None,
            gate: None,
        }
    }

    /// The request path every call of this client takes.
    pub fn throttle(&self) -> &Arc<Throttle> {
        &self.throttle
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// `{graph_base}/v1.0/{segments...}`, each segment escaped.
    pub(crate) fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.extend(segments);
        }
        url
    }

    /// A paging link Graph gave us, refused if it leaves the Graph host: the
    /// bearer token must go nowhere else.
    pub(crate) fn link(&self, link: &str) -> Result<Url, GraphError> {
        let bad = |reason| GraphError::Url {
            url: link.to_owned(),
            reason,
        };
        let url = Url::parse(link).map_err(|_| bad("not a URL"))?;
        if url.scheme() != self.base.scheme()
            || url.host_str() != self.base.host_str()
            || url.port_or_known_default() != self.base.port_or_known_default()
        {
            return Err(bad("not on the configured Graph host"));
        }
        Ok(url)
    }

    pub(crate) async fn call(
        &self,
        class: CallClass,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
        what: &'static str,
    ) -> Result<GraphResponse, GraphError> {
        self.throttle
            .send(&GraphRequest {
                method,
                url,
                body,
                what,
                class,
            })
            .await
    }
}

#[cfg(test)]
mod tests;
