//! The subscription calls made to Graph, each with its service account's
//! own token, through the same request path (budget, retries, ids) as every
//! other Graph call.

use std::collections::HashMap;
use std::sync::Arc;

use reqwest::Url;

use super::calls::{CallFailure, CallFuture, Listed, SubscriptionCalls};
use crate::accounts::AccountTokens;
use crate::config::Secret;
use crate::graph::subscriptions::{EncryptionCertificate, SubscriptionRequest};
use crate::graph::{GraphClient, GraphError};
use crate::subscriptions::{AccountId, UserId};
use crate::time::Timestamp;

/// Graph, as each account.
#[derive(Clone)]
pub struct GraphCalls {
    inner: Arc<Inner>,
}

struct Inner {
    graph: GraphClient,
    accounts: HashMap<AccountId, Arc<AccountTokens>>,
    notification_url: Url,
    lifecycle_url: Option<Url>,
    client_state: Secret,
    encryption: Option<EncryptionCertificate>,
    notification_url_text: String,
}

impl GraphCalls {
    pub fn new(
        graph: GraphClient,
        accounts: &[Arc<AccountTokens>],
        notification_url: Url,
        lifecycle_url: Option<Url>,
        client_state: Secret,
        encryption: Option<EncryptionCertificate>,
    ) -> Self {
        GraphCalls {
            inner: Arc::new(Inner {
                graph,
                accounts: accounts
                    .iter()
                    .map(|a| (AccountId::from(a.upn()), Arc::clone(a)))
                    .collect(),
                notification_url_text: notification_url.to_string(),
                notification_url,
                lifecycle_url,
                client_state,
                encryption,
            }),
        }
    }
}

impl Inner {
    fn account(&self, account: &AccountId) -> Result<Arc<AccountTokens>, CallFailure> {
        self.accounts.get(account).cloned().ok_or_else(|| {
            CallFailure::Other(format!("no service account `{account}` is configured"))
        })
    }
}

fn failure(e: GraphError) -> CallFailure {
    match e.status() {
        Some(404) => CallFailure::Gone,
        Some(409) => CallFailure::Conflict,
        _ => CallFailure::Other(e.to_string()),
    }
}

impl SubscriptionCalls for GraphCalls {
    fn create(
        &self,
        account: AccountId,
        members: Vec<UserId>,
        expires_at: Timestamp,
    ) -> CallFuture<(String, Timestamp)> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            let tokens = inner.account(&account)?;
            let mut request = SubscriptionRequest::new(
                members.iter().map(|m| m.to_string()).collect(),
                inner.notification_url.clone(),
                inner.lifecycle_url.clone(),
                inner.client_state.clone(),
                expires_at.to_utc(),
            )
            .map_err(|e| CallFailure::Other(e.to_string()))?;
            if let Some(certificate) = &inner.encryption {
                request = request.with_encryption(certificate.clone());
            }
            let created = inner
                .graph
                .create_subscription(&*tokens, &request)
                .await
                .map_err(failure)?;
            Ok((
                created.id,
                Timestamp::from_utc(created.expiration_date_time),
            ))
        })
    }

    fn renew(
        &self,
        account: AccountId,
        id: String,
        expires_at: Timestamp,
    ) -> CallFuture<Timestamp> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            let tokens = inner.account(&account)?;
            let renewed = inner
                .graph
                .renew_subscription(&*tokens, &id, expires_at.to_utc())
                .await
                .map_err(failure)?;
            Ok(Timestamp::from_utc(renewed.expiration_date_time))
        })
    }

    fn reauthorize(&self, account: AccountId, id: String) -> CallFuture<()> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            let tokens = inner.account(&account)?;
            inner
                .graph
                .reauthorize_subscription(&*tokens, &id)
                .await
                .map_err(failure)
        })
    }

    fn delete(&self, account: AccountId, id: String) -> CallFuture<()> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            let tokens = inner.account(&account)?;
            match inner.graph.delete_subscription(&*tokens, &id).await {
                Ok(true) => Ok(()),
                Ok(false) => Err(CallFailure::Gone),
                Err(e) => Err(failure(e)),
            }
        })
    }

    fn list(&self, account: AccountId) -> CallFuture<Vec<Listed>> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            let tokens = inner.account(&account)?;
            let listed = inner
                .graph
                .list_subscriptions(&*tokens)
                .await
                .map_err(failure)?;
            Ok(listed
                .into_iter()
                .map(|s| Listed {
                    members: s
                        .user_ids()
                        .unwrap_or_default()
                        .into_iter()
                        .map(UserId::from)
                        .collect(),
                    id: s.id,
                    expires_at: Timestamp::from_utc(s.expiration_date_time),
                    notification_url: s.notification_url.unwrap_or_default(),
                    certificate_id: s.encryption_certificate_id,
                })
                .collect())
        })
    }

    fn notification_url(&self) -> &str {
        &self.inner.notification_url_text
    }

    fn certificate_id(&self) -> Option<&str> {
        self.inner.encryption.as_ref().map(|c| c.id.as_str())
    }
}
