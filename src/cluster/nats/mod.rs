//! The cluster's NATS side: one connection per node, the tenant's log
//! stream, events stream, lease and nodes KV buckets, and snapshot object
//! store.
//!
//! | concept | module |
//! |---|---|
//! | connecting, provisioning, the connection's status | [`connect`] |
//! | stream, subject and bucket names | [`names`] |
//! | the commit log on a stream (fenced appends, reads) | [`log`] |
//! | the leadership lease in a KV bucket | [`kv_lease`] |
//! | events on a subject per type | [`events`] |
//! | snapshots in an object store | [`snapshots`] |
//! | what each node reports of itself | [`nodes`] |
//! | errors | [`error`] |
//!
//! [`Nats`] is cheap to clone: every handle shares one client.

pub mod connect;
pub mod error;
pub mod events;
pub mod kv_lease;
pub mod log;
pub mod names;
pub mod nodes;
pub mod snapshots;

pub use connect::{Nats, NatsStatus};
pub use error::{ClusterError, LeaseError};
pub use events::EventsPublisher;
pub use kv_lease::{KvLease, Lease, LeaseHolder};
pub use log::JetStreamLog;
pub use names::Names;
pub use nodes::{NodeReport, NodeReports, Role};
pub use snapshots::Snapshots;
