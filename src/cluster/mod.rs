//! Beyond one machine (`[cluster]`): an active/standby pair on NATS
//! JetStream. Without `[cluster]` nothing here runs and the daemon is one
//! process on its sled store, as always.
//!
//! The design (docs/cluster.md says it for operators):
//! - **The commit log is a JetStream stream.** Every batch the active
//!   commits (one sync-loop step, a directory change, a consumer cursor) is
//!   first appended to the tenant's log stream as a [`record::Record`], then
//!   committed to the local sled store together with its log position; the
//!   caller hears back only after both. Standbys apply the same records in
//!   the same order to their own sled, idempotently by position.
//! - **Fencing by the stream.** Every append says which position it follows
//!   (`Nats-Expected-Last-Sequence`; one subject, so the same as the subject's): a deposed active cannot append
//!   after its successor, and stops at its first refused append.
//! - **Leadership by a KV lease** with a TTL, renewed by compare-and-set.
//! - **Snapshots** bound the history a new standby needs.
//! - **Events for many consumers** on a subject per type, de-duplicated by
//!   event id.
//!
//! | concept | module |
//! |---|---|
//! | whether this node may act (Graph calls, API answers) | [`gate`] |
//! | the log's record format | [`record`] |
//! | the store that appends before it commits | [`replicated`] |
//! | a standby applying records to its sled | [`apply`] |
//! | snapshots: taking and restoring | [`snapshot`] |
//! | an in-memory commit log, for tests | [`memory_log`] |
//! | lease timing rules (pure) | [`lease`] |
//! | NATS: connection, streams, the lease bucket, events, snapshots | [`nats`] |

pub mod apply;
pub mod gate;
pub mod lease;
pub mod memory_log;
pub mod nats;
pub mod record;
pub mod replicated;
pub mod snapshot;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A place in the commit log: JetStream's sequence number of a record in
/// the tenant's log stream. 0 is "before the first record".
pub type Position = u64;

/// Why an append did not go into the log.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum LogError {
    /// The log has moved past `expected`: another node appended, so this
    /// node is no longer the active one.
    #[error(
        "fenced: the commit log is no longer at position {expected} (another node has appended since); this node steps down"
    )]
    Fenced {
        expected: Position,
        /// The log's last position, when NATS said it.
        found: Option<Position>,
    },
    /// NATS refused or did not answer in time: the record may or may not
    /// be in the log.
    #[error("the commit log is unavailable: {0}")]
    Unavailable(String),
}

/// The replicated commit log as the store sees it.
///
/// Blocking: the store's callers run it off the async threads
/// (`spawn_blocking`), so an implementation must not need the calling
/// thread to be inside a runtime, and must give up within its own timeout.
pub trait CommitLog: Send + Sync + 'static {
    /// Appends `record` only if the log's last record is at
    /// `expected_last` (0: the log is empty), and returns the new record's
    /// position once the log has it durably (JetStream's publish ack).
    fn append(&self, record: &[u8], expected_last: Position) -> Result<Position, LogError>;
}

/// What a snapshot is of: the whole store as of a log position.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    /// The store id every node of the cluster shares (event ids).
    pub store_id: String,
    /// The last record the snapshot includes.
    pub position: Position,
    pub taken_at: DateTime<Utc>,
    /// The snapshot's size in bytes (JSON lines, `presence-sync export`'s format).
    pub bytes: u64,
}
