//! The store the running daemon commits to: its sled store alone, or, as
//! a cluster's active node, the replicated store that appends each batch to
//! the commit log first. Everything above it sees one [`Store`].

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::cluster::term::ClusterStore;
use crate::events::Event;
use crate::store::{
    Batch, DirectoryBatch, InboxItem, InboxKind, Loaded, MetaKey, SledStore, Store, StoreError,
    StoredDirectory,
};

/// See the module documentation.
pub enum DaemonStore {
    Local(SledStore),
    Cluster(Arc<dyn ClusterStore>),
}

impl DaemonStore {
    fn inner(&self) -> &dyn Store {
        match self {
            DaemonStore::Local(store) => store,
            DaemonStore::Cluster(store) => store.as_ref(),
        }
    }

    /// The replicated store, as a cluster's active node.
    pub fn cluster(&self) -> Option<&Arc<dyn ClusterStore>> {
        match self {
            DaemonStore::Local(_) => None,
            DaemonStore::Cluster(store) => Some(store),
        }
    }
}

impl Store for DaemonStore {
    fn store_id(&self) -> &str {
        self.inner().store_id()
    }

    fn load(&self) -> Result<Loaded, StoreError> {
        self.inner().load()
    }

    fn commit(&self, batch: Batch) -> Result<Vec<Event>, StoreError> {
        self.inner().commit(batch)
    }

    fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.inner().events_after(after, limit)
    }

    fn first_seq(&self) -> Result<Option<u64>, StoreError> {
        self.inner().first_seq()
    }

    fn last_seq(&self) -> Result<u64, StoreError> {
        self.inner().last_seq()
    }

    fn meta(&self, key: &MetaKey) -> Result<Option<String>, StoreError> {
        self.inner().meta(key)
    }

    fn prune_events(
        &self,
        before: DateTime<Utc>,
        keep_at_least: usize,
    ) -> Result<usize, StoreError> {
        self.inner().prune_events(before, keep_at_least)
    }

    fn directory(&self) -> Result<Option<StoredDirectory>, StoreError> {
        self.inner().directory()
    }

    fn commit_directory(&self, batch: DirectoryBatch) -> Result<(), StoreError> {
        self.inner().commit_directory(batch)
    }

    fn mark_clean_shutdown(&self) -> Result<(), StoreError> {
        self.inner().mark_clean_shutdown()
    }

    fn append_inbox(
        &self,
        kind: InboxKind,
        received_at: DateTime<Utc>,
        body: &[u8],
    ) -> Result<u64, StoreError> {
        self.inner().append_inbox(kind, received_at, body)
    }

    fn inbox(&self, after: u64, limit: usize) -> Result<Vec<InboxItem>, StoreError> {
        self.inner().inbox(after, limit)
    }

    fn ack_inbox(&self, upto: u64) -> Result<usize, StoreError> {
        self.inner().ack_inbox(upto)
    }
}
