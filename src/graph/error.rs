//! How a Graph call failed, with what Graph said about it.
//!
//! Every failure keeps the `client-request-id` we sent and, when Graph
//! answered, its `request-id`: the two ids Microsoft support asks for.

use std::time::Duration;

use thiserror::Error;

use super::auth::AuthError;

/// A Graph call that did not succeed, after the request path's own retries.
/// Cloned when one failure stands for many ids (a refused batch).
#[derive(Clone, Debug, Error)]
pub enum GraphError {
    /// Graph answered with an error status.
    #[error(
        "Graph answered {status}{}{}{}",
        code.as_deref().map(|c| format!(" {c}")).unwrap_or_default(),
        message.as_deref().map(|m| format!(": {m}")).unwrap_or_default(),
        ids(request_id.as_deref(), client_request_id)
    )]
    Status {
        status: u16,
        /// Graph's error code (`error.code`), e.g. `syncStateNotFound`.
        code: Option<String>,
        message: Option<String>,
        request_id: Option<String>,
        client_request_id: String,
        /// `Retry-After` of the last answer, when it had one.
        retry_after: Option<Duration>,
    },
    /// No answer within the request timeout, on every attempt.
    #[error(
        "Graph did not answer within {timeout:?} ({attempts} attempts){}",
        ids(None, client_request_id)
    )]
    Timeout {
        timeout: Duration,
        attempts: u32,
        client_request_id: String,
    },
    /// Could not reach Graph (DNS, connect, TLS, reset), on every attempt.
    #[error(
        "cannot reach Graph ({attempts} attempts): {message}{}",
        ids(None, client_request_id)
    )]
    Connection {
        message: String,
        attempts: u32,
        client_request_id: String,
    },
    /// No token: the app's credentials were refused or Entra is unreachable.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// No delegated token: a service account's sign-in cannot be used.
    #[error(transparent)]
    Account(#[from] crate::accounts::AccountError),
    /// Graph answered 2xx with a body we cannot read.
    #[error("unreadable answer from Graph to {what}: {message}{}", ids(request_id.as_deref(), client_request_id))]
    Decode {
        what: &'static str,
        message: String,
        request_id: Option<String>,
        client_request_id: String,
    },
    /// A URL that cannot be called: a bad base URL in the config, or a paging
    /// link that leaves the Graph host (our token must not go elsewhere).
    #[error("invalid Graph URL `{url}`: {reason}")]
    Url { url: String, reason: &'static str },
    /// The HTTP client could not be set up (TLS roots, resolver).
    #[error("cannot set up the HTTP client: {message}")]
    Setup { message: String },
    /// In a cluster: this node is no longer the active one (its lease ran
    /// out or another node took over), so nothing was sent.
    #[error("not sent: {reason}")]
    NotActive { reason: String },
}

fn ids(request_id: Option<&str>, client_request_id: &str) -> String {
    match request_id {
        Some(id) => format!(" (request-id {id}, client-request-id {client_request_id})"),
        None => format!(" (client-request-id {client_request_id})"),
    }
}

impl GraphError {
    /// The HTTP status Graph answered, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            GraphError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Graph's error code, if it sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            GraphError::Status { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// How the call failed without Graph's or Entra's own words and ids
    /// (which can name the tenant, the app or a user): for the open
    /// `/readyz`. The full text is the error's `Display`.
    pub fn summary(&self) -> String {
        match self {
            GraphError::Status { status, code, .. } => {
                let refusal = super::permissions::classify_refusal(*status, code.as_deref());
                let why = if refusal.is_some() {
                    ": the app lacks the permission for this call (an admin grants it with admin consent)"
                } else {
                    ""
                };
                match code {
                    Some(code) => format!("Graph answered {status} {code}{why}"),
                    None => format!("Graph answered {status}{why}"),
                }
            }
            GraphError::Timeout {
                timeout, attempts, ..
            } => format!("Graph did not answer within {timeout:?} ({attempts} attempts)"),
            GraphError::Connection { attempts, .. } => {
                format!("cannot reach Graph ({attempts} attempts)")
            }
            GraphError::Auth(e) => e.summary(),
            GraphError::Account(e) => e.summary(),
            GraphError::Decode { what, .. } => format!("unreadable answer from Graph to {what}"),
            GraphError::Url { reason, .. } => format!("invalid Graph URL: {reason}"),
            GraphError::Setup { .. } => "cannot set up the HTTP client".to_string(),
            GraphError::NotActive { .. } => "not sent: this node is no longer active".to_string(),
        }
    }

    /// Whether the failure is Graph's or the app's as a whole (unreachable,
    /// failing, throttling, refusing our token), rather than one user's
    /// (an unknown id, a write Graph refused for that user).
    pub fn is_outage(&self) -> bool {
        match self {
            GraphError::Status { status, .. } => *status >= 500 || matches!(status, 401 | 429),
            GraphError::Timeout { .. }
            | GraphError::Connection { .. }
            | GraphError::Auth(_)
            | GraphError::Decode { .. }
            | GraphError::Url { .. }
            | GraphError::Setup { .. } => true,
            // One service account's sign-in: its subscriptions stop, Graph
            // and the app's own token are fine.
            GraphError::Account(_) => false,
            // Graph is fine; this node stopped calling it.
            GraphError::NotActive { .. } => false,
        }
    }

    /// Graph's `request-id`, if it answered.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            GraphError::Status { request_id, .. } | GraphError::Decode { request_id, .. } => {
                request_id.as_deref()
            }
            _ => None,
        }
    }
}
