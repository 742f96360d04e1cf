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
//!
//! What the node runner must know (measured with nats-server 2.9.10 on
//! loopback, see `tests/cluster_nats.rs`):
//! - The connection reconnects by itself, forever, to any server of the
//!   cluster (0 to 2 s between tries); meanwhile every request fails
//!   within the request timeout and [`Nats::status`] says disconnected.
//! - [`Nats::provision`] right after a cluster has elected its meta leader
//!   can still be refused for a moment: retry it.
//! - When the leader of a stream or bucket dies, JetStream elects another
//!   in about 4 to 9 s (its Raft election timeout); appends, renewals and
//!   reads answer `Unavailable` (or time out) until then. Retrying the
//!   same append at the same position is safe (see [`log`]).
//! - A renewal can succeed after the lease's `valid_until` (its bucket was
//!   leaderless meanwhile): the compare-and-set proves no other node took
//!   the lease, so the holder may act again; only `LeaseError::Lost` means
//!   another node may be active. With a lease TTL under the election time,
//!   a dead bucket leader can cost the active its lease.
//! - A record must fit the server's `max_payload` ([`Nats::max_payload`],
//!   1 MiB by default); a bigger one is refused as `Unavailable` every time.
//! - Starting a read (an ordered consumer) can time out right after a
//!   NATS node died; the next read starts it again.

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
