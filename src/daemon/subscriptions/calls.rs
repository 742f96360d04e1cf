//! What the subscription worker asks of Graph, as a trait: the worker is
//! tested against a fake, and the daemon gives it Graph called with each
//! service account's own token ([`super::graph_calls`]).

use std::future::Future;
use std::pin::Pin;

use crate::subscriptions::{AccountId, UserId};
use crate::time::Timestamp;

/// A future the worker runs as its own task.
pub type CallFuture<T> = Pin<Box<dyn Future<Output = Result<T, CallFailure>> + Send + 'static>>;

/// Why a call failed, as the worker acts on it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallFailure {
    /// Graph has no such subscription (404).
    #[error("the subscription no longer exists")]
    Gone,
    /// The account already has a presence subscription for this app (409).
    #[error("the account already has a presence subscription for this app")]
    Conflict,
    /// Anything else, in words.
    #[error("{0}")]
    Other(String),
}

/// A subscription Graph holds for an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub id: String,
    /// The users its resource names; empty when it is not a presence
    /// subscription.
    pub members: Vec<UserId>,
    pub expires_at: Timestamp,
    /// Where it delivers: ours, or another deployment's.
    pub notification_url: String,
    /// The certificate rich notifications are encrypted for, if any.
    pub certificate_id: Option<String>,
}

/// Graph's subscription calls, each made with `account`'s token.
pub trait SubscriptionCalls: Send + Sync + 'static {
    /// Creates a presence subscription; returns its id and the expiry
    /// Graph set.
    fn create(
        &self,
        account: AccountId,
        members: Vec<UserId>,
        expires_at: Timestamp,
    ) -> CallFuture<(String, Timestamp)>;
    /// Moves the expiry; returns the one Graph set.
    fn renew(&self, account: AccountId, id: String, expires_at: Timestamp)
    -> CallFuture<Timestamp>;
    fn reauthorize(&self, account: AccountId, id: String) -> CallFuture<()>;
    fn delete(&self, account: AccountId, id: String) -> CallFuture<()>;
    /// The account's subscriptions for this app.
    fn list(&self, account: AccountId) -> CallFuture<Vec<Listed>>;
    /// Our notification URL, to tell our subscriptions from others'.
    fn notification_url(&self) -> &str;
    /// The certificate our subscriptions are encrypted for (`None`: basic
    /// notifications): one made for another is replaced.
    fn certificate_id(&self) -> Option<&str>;
}
