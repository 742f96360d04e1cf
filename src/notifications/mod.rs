//! Microsoft Graph change notifications, as pure functions: reading what
//! Graph posts, checking it came from Graph for us, decrypting rich
//! notifications, and making duplicates and reordering harmless. The
//! receiver (`crate::receiver`) does the HTTP, the storage and the key-set
//! fetch around it.
//!
//! Nothing here does I/O or reads a clock: the time, the key set and the
//! secrets are passed in, so every check is a plain test.
//!
//! | subject | file |
//! |---|---|
//! | the payloads: change and lifecycle collections, the user a change is about | `payload.rs` |
//! | the `clientState` check, in constant time | `client_state.rs` |
//! | rich notifications: the key unwrapped, the signature checked, the presence decrypted | `rich.rs` |
//! | validation tokens: the key set, RS256, audience, publisher, issuer, lifetime | `jwt.rs` |
//! | duplicates and reordering: sequence numbers and a window of identities | `dedupe.rs` |
//! | one batch through every check, to typed outcomes | `process.rs` |

#![deny(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod client_state;
pub mod dedupe;
pub mod jwt;
pub mod payload;
pub mod process;
pub mod rich;
#[cfg(test)]
pub(crate) mod testing;

pub use client_state::client_state_matches;
pub use dedupe::{Dedupe, Identity, Verdict};
pub use jwt::{Jwks, JwksError, TokenExpectations, TokenRejection, key_id, validate_token};
pub use payload::{
    ChangeNotification, ChangeNotificationCollection, EncryptedContent, LifecycleEvent,
    LifecycleNotification, LifecycleNotificationCollection, PayloadError, parse_changes,
    parse_lifecycle,
};
pub use process::{
    Checks, NotificationOutcome, Processed, Rejection, process_changes, process_lifecycle,
};
pub use rich::{Decryption, RichError};
