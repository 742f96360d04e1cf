//! One term as the active node: what [`Daemon::start`](crate::daemon::Daemon::start)
//! is given to run as the cluster's active node rather than alone. The
//! NATS side is reached through the traits here, so the daemon's part is
//! tested with the in-memory commit log and fakes.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::status::ClusterStatus;
use crate::cluster::gate::Gate;
use crate::cluster::replicated::{ReplicaState, ReplicatedStore};
use crate::cluster::{Position, SnapshotMeta};
use crate::events::Event;
use crate::store::{SledStore, Store, StoreError};

/// A boxed future, for the object-safe sinks below.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The active node's store: appends each batch to the commit log before it
/// commits it (`cluster::replicated`).
pub trait ClusterStore: Store {
    /// The last log record the store holds.
    fn position(&self) -> Position;
    /// Leaves [`ReplicaState::Active`] once an append was refused or went
    /// unanswered: the store commits nothing more and the node must step down.
    fn state(&self) -> watch::Receiver<ReplicaState>;
    /// The whole store as of its position, commits held meanwhile, in an
    /// unlinked file beside the store, read from its start.
    fn snapshot(&self) -> Result<(SnapshotMeta, std::fs::File), StoreError>;
}

/// Where committed events go for consumers beyond the API (NATS subjects).
pub trait EventSink: Send + Sync + 'static {
    /// Publishes `events` in order; each carries its id for de-duplication.
    fn publish<'a>(&'a self, events: &'a [Event]) -> BoxFuture<'a, Result<(), String>>;
}

/// Where snapshots are kept for standbys that start empty.
pub trait SnapshotSink: Send + Sync + 'static {
    /// Stores the snapshot `meta` describes, read from `file`.
    fn put(&self, meta: SnapshotMeta, file: std::fs::File) -> BoxFuture<'_, Result<(), String>>;
}

/// Wraps the opened sled store in the replicated one.
pub type Replicate =
    Arc<dyn Fn(SledStore) -> Result<Arc<dyn ClusterStore>, StoreError> + Send + Sync>;

/// What a term as active needs beyond a single daemon's config.
#[derive(Clone)]
pub struct ActiveTerm {
    /// Shut when the lease runs out or the node steps down: no Graph call
    /// and no API answer after.
    pub gate: Arc<Gate>,
    pub replicate: Replicate,
    pub status: Arc<ClusterStatus>,
    pub events: Option<Arc<dyn EventSink>>,
    pub snapshots: Option<Arc<dyn SnapshotSink>>,
    pub snapshot_interval: Duration,
}

impl fmt::Debug for ActiveTerm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActiveTerm")
            .field("gate", &self.gate)
            .field("status", &self.status)
            .field("events", &self.events.is_some())
            .field("snapshots", &self.snapshots.is_some())
            .field("snapshot_interval", &self.snapshot_interval)
            .finish()
    }
}

impl ClusterStore for ReplicatedStore {
    fn position(&self) -> Position {
        ReplicatedStore::position(self)
    }

    fn state(&self) -> watch::Receiver<ReplicaState> {
        ReplicatedStore::state(self)
    }

    fn snapshot(&self) -> Result<(SnapshotMeta, std::fs::File), StoreError> {
        ReplicatedStore::snapshot_file(self)
    }
}
