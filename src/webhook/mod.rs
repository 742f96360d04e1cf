//! The outbound webhook sink (SPEC §3.2): the event stream for
//! contact-center software that cannot hold a WebSocket.
//!
//! - [`sink`]: the delivery loop — batches from the event log, in sequence
//!   order, POSTed and retried with backoff until a 2xx, then the cursor
//!   stored; at least once, never skipping.
//! - [`signature`]: the HMAC-SHA256 signing scheme, and its check for
//!   receivers.
//! - [`status`]: what the sink is doing, for `/readyz`.

pub mod signature;
pub mod sink;
pub mod status;

pub use signature::{DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, verify_signature};
pub use sink::{CURSOR_NAME, WebhookError, WebhookSink};
pub use status::{WebhookState, WebhookStatus};

#[cfg(test)]
mod tests;
