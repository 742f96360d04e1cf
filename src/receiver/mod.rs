//! The receiver of Microsoft Graph change notifications: an internet-facing
//! listener of its own (the operator's reverse proxy maps the public
//! `notificationUrl` and `lifecycleNotificationUrl` to it), apart from the
//! contact-center API so that nothing but these two paths is exposed.
//!
//! Durable first: a batch whose every `clientState` is ours is written to
//! the store's inbox, and only then answered 202 — Graph wants an answer
//! within 3 seconds, and a batch answered is a batch kept, whatever happens
//! next. A worker then drains the inbox in order, runs each batch through
//! the pure checks of [`crate::notifications`] (validation tokens against
//! Entra's key set, decryption, duplicates) and hands the outcomes to the
//! rest of the daemon on a channel.
//!
//! | subject | file |
//! |---|---|
//! | the settings and the errors of setting up | `mod.rs` |
//! | the listener and its two routes: handshake, checks, inbox, 202 | `server.rs` |
//! | Entra's signing keys: fetched with a timeout, cached, fetched again for an unknown key | `keys.rs` |
//! | the worker that drains the inbox into outcomes, and its counters | `inbox.rs` |

mod inbox;
mod keys;
mod server;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;

use thiserror::Error;

pub use inbox::{Counters, CountersSnapshot, DrainError, InboxWorker};
pub use keys::KeySet;
pub use server::{bind, router, serve};

use crate::config::Secret;
use crate::notifications::{Decryption, TokenExpectations};

/// What the receiver needs, mapped from the config's `[subscriptions]`.
#[derive(Clone, Debug)]
pub struct ReceiverSettings {
    /// Its own socket (the reverse proxy's upstream).
    pub listen: SocketAddr,
    /// The path of the public `notificationUrl`.
    pub notification_path: String,
    /// The path of the public `lifecycleNotificationUrl`.
    pub lifecycle_path: String,
    /// The `clientState` the subscriptions are created with.
    pub client_state: Secret,
    /// Larger bodies are refused with 413.
    pub max_body: usize,
    /// Our certificate's private key, when subscriptions are rich.
    pub decryption: Option<Arc<Decryption>>,
    /// Our app: the validation tokens' audience.
    pub client_id: String,
    /// Our tenant: the validation tokens' issuer.
    pub tenant_id: String,
    /// Entra's signing keys, `{login_base}/common/discovery/v2.0/keys`.
    pub jwks_url: String,
}

impl ReceiverSettings {
    pub(crate) fn expectations(&self) -> TokenExpectations {
        TokenExpectations {
            client_id: self.client_id.clone(),
            tenant_id: self.tenant_id.clone(),
        }
    }
}

/// Why the receiver cannot start.
#[derive(Debug, Error)]
pub enum ReceiverError {
    #[error(
        "the receiver's path `{path}` cannot be served: {why} \
         (the path of notification_url and lifecycle_url, e.g. `/graph/notifications`)"
    )]
    Path { path: String, why: &'static str },
    #[error(
        "notification_url and lifecycle_url have the same path `{0}`; give each its own \
         (e.g. `/graph/notifications` and `/graph/lifecycle`)"
    )]
    SamePath(String),
    #[error("cannot listen on {addr} for Graph notifications: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}
