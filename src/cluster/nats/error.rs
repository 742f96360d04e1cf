//! Why a NATS operation failed, in an operator's terms.

use std::time::Duration;

use thiserror::Error;

/// A NATS operation that did not succeed. Every variant names what was
/// being done; none carries a secret.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ClusterError {
    /// No server of the list could be reached or accepted us.
    #[error("cannot connect to NATS at {urls}: {reason}")]
    Connect { urls: String, reason: String },
    /// A configured credential could not be read.
    #[error("cannot read the NATS credentials: {0}")]
    Credentials(String),
    /// NATS did not answer within the request timeout.
    #[error("NATS did not answer {what} within {}ms", .timeout.as_millis())]
    Timeout { what: String, timeout: Duration },
    /// NATS answered with an error, or the connection failed under the request.
    #[error("NATS: {what} failed: {reason}")]
    Request { what: String, reason: String },
    /// A stream or bucket exists with settings this node cannot change.
    #[error("NATS: {what}: {reason}")]
    Provision { what: String, reason: String },
    /// Something stored in NATS is not what this node wrote.
    #[error("NATS: {what} holds unreadable data: {reason}")]
    Decode { what: String, reason: String },
    /// A name or value this node was asked to use is not valid in NATS.
    #[error("{0}")]
    Invalid(String),
}

impl ClusterError {
    pub(crate) fn request(what: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        ClusterError::Request {
            what: what.into(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn decode(what: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        ClusterError::Decode {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}

/// Why a lease renewal failed.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum LeaseError {
    /// The lease key moved on (another node holds it, or it expired):
    /// this node is no longer the active one.
    #[error("the leadership lease is lost: {0}")]
    Lost(String),
    /// NATS did not confirm the renewal: retry until the lease's end.
    #[error("the leadership lease could not be renewed: {0}")]
    Unavailable(String),
}

/// Runs `future` under `timeout`, naming `what` when it runs out.
pub(crate) async fn bounded<T, E: std::fmt::Display>(
    what: &str,
    timeout: Duration,
    future: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, ClusterError> {
    match tokio::time::timeout(timeout, future).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(ClusterError::request(what, error)),
        Err(_) => Err(ClusterError::Timeout {
            what: what.to_owned(),
            timeout,
        }),
    }
}
