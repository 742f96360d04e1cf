//! Presence subscriptions: Graph's change notifications for up to 650
//! users each, made, renewed, reauthorized, deleted and listed with a
//! service account's delegated token (Graph refuses an app-only token for
//! presence subscriptions).
//!
//! Every call takes the one request path ([`super::throttle::Throttle::send_as`]):
//! the budget, 429 and `Retry-After`, retries, `client-request-id`. They go
//! as [`CallClass::Write`]: a handful an hour, and a subscription that
//! expires because reads kept it waiting loses every notification after,
//! so they must not queue behind the poller; a class of their own would
//! rank right after writes and change nothing the budget does today.

use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::{Method, Url};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::throttle::TokenSource;
use super::{CallClass, GraphClient, GraphError, GraphResponse};
use crate::config::Secret;

/// Graph's limit of users in one presence subscription.
pub const MAX_USERS: usize = 650;

/// The certificate Graph encrypts rich notifications for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptionCertificate {
    /// base64 of the certificate's DER.
    pub certificate: String,
    /// Our name for it, echoed in every notification
    /// (`encryptionCertificateId`).
    pub id: String,
}

/// Why a subscription request cannot be made.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum RequestError {
    #[error("a presence subscription needs at least one user")]
    NoUsers,
    #[error("{0} users in one presence subscription: Graph takes at most {MAX_USERS}")]
    TooManyUsers(usize),
    #[error("`{0}` is not a Graph user id (letters, digits and `-` only)")]
    BadUserId(String),
}

/// A presence subscription to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionRequest {
    user_ids: Vec<String>,
    pub notification_url: Url,
    pub lifecycle_url: Option<Url>,
    pub client_state: Secret,
    pub expires_at: DateTime<Utc>,
    pub encryption: Option<EncryptionCertificate>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    change_type: &'static str,
    notification_url: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    lifecycle_notification_url: Option<&'a str>,
    resource: String,
    expiration_date_time: String,
    client_state: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    include_resource_data: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    encryption_certificate: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    encryption_certificate_id: Option<&'a str>,
}

/// Graph's user ids are GUIDs; nothing that could close the quoted list.
fn is_user_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Graph's date-time for `expirationDateTime`.
fn graph_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl SubscriptionRequest {
    /// A subscription to `user_ids`' presence until `expires_at`.
    pub fn new(
        user_ids: Vec<String>,
        notification_url: Url,
        lifecycle_url: Option<Url>,
        client_state: Secret,
        expires_at: DateTime<Utc>,
    ) -> Result<Self, RequestError> {
        if user_ids.is_empty() {
            return Err(RequestError::NoUsers);
        }
        if user_ids.len() > MAX_USERS {
            return Err(RequestError::TooManyUsers(user_ids.len()));
        }
        if let Some(bad) = user_ids.iter().find(|id| !is_user_id(id)) {
            return Err(RequestError::BadUserId(bad.clone()));
        }
        Ok(SubscriptionRequest {
            user_ids,
            notification_url,
            lifecycle_url,
            client_state,
            expires_at,
            encryption: None,
        })
    }

    /// Rich notifications: the presence comes encrypted for `certificate`.
    pub fn with_encryption(mut self, certificate: EncryptionCertificate) -> Self {
        self.encryption = Some(certificate);
        self
    }

    pub fn user_ids(&self) -> &[String] {
        &self.user_ids
    }

    /// `/communications/presences?$filter=id in ('a','b')`.
    pub fn resource(&self) -> String {
        presence_resource(&self.user_ids)
    }

    /// The JSON Graph is sent.
    pub fn body(&self) -> Vec<u8> {
        let body = Body {
            change_type: "updated",
            notification_url: self.notification_url.as_str(),
            lifecycle_notification_url: self.lifecycle_url.as_ref().map(Url::as_str),
            resource: self.resource(),
            expiration_date_time: graph_time(self.expires_at),
            client_state: self.client_state.expose(),
            include_resource_data: self.encryption.as_ref().map(|_| true),
            encryption_certificate: self.encryption.as_ref().map(|e| e.certificate.as_str()),
            encryption_certificate_id: self.encryption.as_ref().map(|e| e.id.as_str()),
        };
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

/// The resource of a presence subscription to `ids`.
pub fn presence_resource(ids: &[String]) -> String {
    let quoted: Vec<String> = ids.iter().map(|id| format!("'{id}'")).collect();
    format!(
        "/communications/presences?$filter=id in ({})",
        quoted.join(",")
    )
}

/// The user ids of a presence subscription's resource (`None`: not one).
pub fn parse_presence_resource(resource: &str) -> Option<Vec<String>> {
    let rest = resource
        .trim_start_matches('/')
        .strip_prefix("communications/presences?$filter=")?;
    let list = rest
        .trim()
        .strip_prefix("id in (")
        .or_else(|| rest.trim().strip_prefix("id in("))?
        .strip_suffix(')')?;
    list.split(',')
        .map(|item| {
            let id = item.trim().strip_prefix('\'')?.strip_suffix('\'')?;
            is_user_id(id).then(|| id.to_owned())
        })
        .collect()
}

/// A subscription as Graph answers it. The `clientState` it echoes is not
/// kept: the daemon has its own.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    pub id: String,
    #[serde(default)]
    pub resource: String,
    #[serde(default)]
    pub change_type: Option<String>,
    #[serde(default)]
    pub notification_url: Option<String>,
    #[serde(default)]
    pub lifecycle_notification_url: Option<String>,
    pub expiration_date_time: DateTime<Utc>,
    #[serde(default)]
    pub application_id: Option<String>,
    /// The signed-in account that made it.
    #[serde(default)]
    pub creator_id: Option<String>,
    #[serde(default)]
    pub include_resource_data: Option<bool>,
    #[serde(default)]
    pub encryption_certificate_id: Option<String>,
}

impl Subscription {
    /// The users it covers, when it is a presence subscription.
    pub fn user_ids(&self) -> Option<Vec<String>> {
        parse_presence_resource(&self.resource)
    }
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    value: Vec<Subscription>,
    #[serde(rename = "@odata.nextLink", default)]
    next_link: Option<String>,
}

fn decode<T: for<'de> Deserialize<'de>>(
    response: &GraphResponse,
    what: &'static str,
) -> Result<T, GraphError> {
    serde_json::from_slice(&response.body).map_err(|e| GraphError::Decode {
        what,
        message: e.to_string(),
        request_id: response.request_id.clone(),
        client_request_id: response.client_request_id.clone(),
    })
}

impl GraphClient {
    async fn subscription_call(
        &self,
        tokens: &dyn TokenSource,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
        what: &'static str,
    ) -> Result<GraphResponse, GraphError> {
        self.throttle()
            .send_as(
                &super::GraphRequest {
                    method,
                    url,
                    body,
                    what,
                    class: CallClass::Write,
                },
                tokens,
            )
            .await
    }

    /// `POST /subscriptions` as the account `tokens` signs in.
    pub async fn create_subscription(
        &self,
        tokens: &dyn TokenSource,
        request: &SubscriptionRequest,
    ) -> Result<Subscription, GraphError> {
        let response = self
            .subscription_call(
                tokens,
                Method::POST,
                self.url(&["subscriptions"]),
                Some(request.body()),
                "createSubscription",
            )
            .await?;
        decode(&response, "createSubscription")
    }

    /// `PATCH /subscriptions/{id}`: a new expiry.
    pub async fn renew_subscription(
        &self,
        tokens: &dyn TokenSource,
        id: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<Subscription, GraphError> {
        let body = serde_json::json!({ "expirationDateTime": graph_time(expires_at) });
        let response = self
            .subscription_call(
                tokens,
                Method::PATCH,
                self.url(&["subscriptions", id]),
                Some(body.to_string().into_bytes()),
                "renewSubscription",
            )
            .await?;
        decode(&response, "renewSubscription")
    }

    /// `POST /subscriptions/{id}/reauthorize`, after a
    /// `reauthorizationRequired` lifecycle event.
    pub async fn reauthorize_subscription(
        &self,
        tokens: &dyn TokenSource,
        id: &str,
    ) -> Result<(), GraphError> {
        self.subscription_call(
            tokens,
            Method::POST,
            self.url(&["subscriptions", id, "reauthorize"]),
            None,
            "reauthorizeSubscription",
        )
        .await
        .map(|_| ())
    }

    /// `DELETE /subscriptions/{id}`; `false` when it was already gone
    /// (404), which is fine.
    pub async fn delete_subscription(
        &self,
        tokens: &dyn TokenSource,
        id: &str,
    ) -> Result<bool, GraphError> {
        match self
            .subscription_call(
                tokens,
                Method::DELETE,
                self.url(&["subscriptions", id]),
                None,
                "deleteSubscription",
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.status() == Some(404) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `GET /subscriptions`: the account's own, every page.
    pub async fn list_subscriptions(
        &self,
        tokens: &dyn TokenSource,
    ) -> Result<Vec<Subscription>, GraphError> {
        let mut url = self.url(&["subscriptions"]);
        let mut all = Vec::new();
        // A bound on pages: a link that loops must not spin forever.
        for _ in 0..1_000 {
            let response = self
                .subscription_call(tokens, Method::GET, url, None, "listSubscriptions")
                .await?;
            let page: Page = decode(&response, "listSubscriptions")?;
            all.extend(page.value);
            match page.next_link {
                Some(link) => url = self.link(&link)?,
                None => break,
            }
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests;
