//! The Teams directory for everyone, not only agents (`GET /v1/directory`):
//! what is known of each user, their presence, the agent linked, and the
//! search over them.
//!
//! | concept | file |
//! |---|---|
//! | a user in compact form, the direct-dial rule | `record.rs` |
//! | folding text for case- and accent-insensitive search | `fold.rs` |
//! | the query: parameters, their checks, the opaque cursor | `query.rs` |
//! | the shared view the tasks keep and the API reads; who the slower tier reads | `view.rs` |
//! | the one index of users by id, UPN and mail, which the sync loop looks up | `view/known.rs` |
//!
//! Who keeps it: the directory task (`daemon/directory.rs`) reads users
//! and follows the delta link, the sync loop reports links, the agent
//! poller and the directory's own, slower presence tier report presences.
//! The store keeps only the compact records linking and direct dial need
//! (see `store::StoredUser`); presence lives in memory only.

pub mod fold;
pub mod query;
pub mod record;
pub mod view;

pub use query::{DirectoryQuery, QueryError, SortKey};
pub use record::{DirectoryRecord, dialable};
pub use view::{DirectoryPage, DirectoryStatus, DirectoryUser, DirectoryView, Replaced};
