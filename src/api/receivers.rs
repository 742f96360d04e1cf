//! Inbound receivers: endpoints that other services call to deliver
//! something to presence-sync, as opposed to the contact-center API of
//! [`routes`](super::routes). They share the API's listener, body limit and
//! error shape, and nothing else:
//! - they are not in [`ROUTES`](super::ROUTES) and not in the OpenAPI
//!   document, which describe the contact-center API;
//! - they never take the API token: each receiver proves its caller its own
//!   way ([`ReceiverAuth`]);
//! - they live outside `/v1`, so the two tables cannot claim one path.
//!
//! Microsoft Graph change notifications come here next: a `POST` Graph calls
//! once with a `validationToken` query to echo back as `text/plain` (the
//! subscription handshake), then with batches of notifications whose
//! `clientState` must be the secret the subscription was created with.
//!
//! The table is empty until that receiver lands: [`router`] serves nothing
//! yet, and [`routes::router`](super::routes::router) already merges it in.

use axum::Router;
use axum::routing::MethodRouter;

use super::routes::Verb;

/// How a receiver knows its caller is who it says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReceiverAuth {
    /// Microsoft Graph change notifications: the subscription handshake
    /// (`validationToken` echoed back) and, on every notification, the
    /// `clientState` the subscription was created with.
    GraphClientState,
}

/// One inbound receiver.
#[derive(Clone, Copy, Debug)]
pub struct Receiver {
    pub verb: Verb,
    /// Outside `/v1`.
    pub path: &'static str,
    pub auth: ReceiverAuth,
    pub(crate) handler: Inbound,
    /// What calls it and what it does with what it receives.
    pub summary: &'static str,
}

/// The handler of one receiver; none yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Inbound {}

impl Inbound {
    fn method_router(self, _verb: Verb) -> MethodRouter {
        match self {}
    }
}

/// Every inbound receiver.
pub const RECEIVERS: &[Receiver] = &[];

/// The receivers of [`RECEIVERS`], each behind its own auth.
pub(super) fn router() -> Router {
    RECEIVERS.iter().fold(Router::new(), |router, receiver| {
        router.route(receiver.path, receiver.handler.method_router(receiver.verb))
    })
}
