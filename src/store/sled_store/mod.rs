//! The [`Store`] on sled: one tree, and per commit one `apply_batch`, then
//! sled's `flush` and an `fdatasync` (see [`super::keys`] for the layout).
//!
//! Opening makes the cheap checks (the lock, the schema, the store id, the
//! next seq) on a store closed cleanly, and checks every key of one that
//! was not; it refuses a store from a newer schema, a damaged store and a
//! directory that holds something other than a store.
//!
//! | concept | file |
//! |---|---|
//! | the store handle, its reads, errors and record decoding | `mod.rs` |
//! | opening: directory, sled's files, the lock, the scratch copy, a new store | `open.rs` |
//! | the clean-shutdown marker that lets an open skip the deep check | `marker.rs` |
//! | the deep check (after an unclean shutdown, and `check --store`): meta, then every key and record | `check.rs` |
//! | durable writes: a batch (agents, outbox, contacts, events, meta), pruning, fsync | `write.rs` |
//! | the stored directory, its own tree: compact users and their delta link | `directory.rs` |
//! | the notification inbox, its own tree: received batches until processed | `inbox.rs` |
//! | a cluster's records too large for its log: their parts, staged in their own tree | `record_parts.rs` |

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;

use super::keys::{self, AGENT, CONTACT, EVENT, OUTBOX};
use super::{
    Batch, DirectoryBatch, InboxItem, InboxKind, Loaded, MetaKey, Store, StoreError,
    StoredDirectory, StoredUser,
};
use crate::events::Event;

mod check;
mod directory;
mod inbox;
mod marker;
mod open;
mod record_parts;
#[cfg(test)]
mod tests;
mod write;

pub use check::StoreSummary;
pub(crate) use directory::DirectoryParts;
pub(crate) use open::{create_with, is_empty_or_missing};

/// How an open made sure of the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenCheck {
    /// There was none: a new store was created.
    Created,
    /// The last process closed it cleanly: the cheap checks only.
    AfterCleanShutdown,
    /// It was not closed cleanly: every key was checked.
    Deep,
}

pub struct SledStore {
    dir: PathBuf,
    db: sled::Db,
    store_id: String,
    /// The next sequence number to assign. Held for the whole of a commit so
    /// seqs go to disk in the order they were assigned, and by pruning and
    /// export so they see no half-assigned range.
    next_seq: Mutex<u64>,
    /// sled's log file, for the fsync its own flush leaves out.
    log_file: fs::File,
    opened: OpenCheck,
    /// The clean-shutdown marker is on disk: a commit withdraws it first.
    marked_clean: AtomicBool,
    /// Held for an inbox append or ack, so seqs go to disk in order.
    inbox: Mutex<()>,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("dir", &self.dir)
            .field("store_id", &self.store_id)
            .finish_non_exhaustive()
    }
}

impl SledStore {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How this open made sure of the store.
    pub fn opened(&self) -> OpenCheck {
        self.opened
    }

    /// In a cluster: commits `batch` together with the commit log position
    /// of the record it came from, as one atomic, durable write. `position`
    /// must follow the stored [`SledStore::log_position`] by exactly one
    /// ([`StoreError::Replication`] otherwise, nothing written). An empty
    /// batch stores the position alone.
    pub fn commit_at(&self, batch: Batch, position: u64) -> Result<Vec<Event>, StoreError> {
        self.write_batch_at(batch, Some(position))
    }

    /// In a cluster: [`Store::commit_directory`] together with the commit
    /// log position, as one sled transaction over the directory's tree and
    /// the main one. The position must follow the stored one by one.
    pub fn commit_directory_at(
        &self,
        batch: DirectoryBatch,
        position: u64,
    ) -> Result<(), StoreError> {
        self.write_directory_at(batch, Some(position))
    }

    /// In a cluster: stages directory users for a replace too large for one
    /// commit log record, with the record's position. `first` empties what
    /// an unfinished replace left staged. Staged users are not part of the
    /// directory until [`SledStore::commit_staged_directory_at`].
    pub fn commit_directory_stage_at(
        &self,
        first: bool,
        users: &[StoredUser],
        position: u64,
    ) -> Result<(), StoreError> {
        self.write_directory_stage_at(first, users, position)
    }

    /// In a cluster: the last part of a replace that came in several
    /// records: `batch` (a replace) with the staged users among its
    /// upserts, with the record's position. Written in parts, yet shown
    /// whole or not at all, and applied again whole after a crash
    /// (see `write_staged_replace_at`).
    pub fn commit_staged_directory_at(
        &self,
        batch: DirectoryBatch,
        position: u64,
    ) -> Result<(), StoreError> {
        self.write_staged_replace_at(batch, position, directory::REPLACE_PART)
    }

    /// In a cluster: the commit log position of the last record this store
    /// holds ([`MetaKey::LogPosition`]); 0 when none.
    pub fn log_position(&self) -> Result<u64, StoreError> {
        self.stored_log_position()
    }

    /// Withdraws the clean-shutdown marker before the store is written again.
    pub(super) fn withdraw_clean_mark(&self) -> Result<(), StoreError> {
        if self.marked_clean.swap(false, Ordering::SeqCst) {
            marker::remove(&self.dir)?;
        }
        Ok(())
    }

    /// Runs `f` on the raw tree with commits held off, so it sees one
    /// consistent state: the store id and the next seq it shows match every
    /// record it reads.
    pub(crate) fn with_commits_paused<R>(&self, f: impl FnOnce(&sled::Db, &str, u64) -> R) -> R {
        let next_seq = self.lock();
        f(&self.db, &self.store_id, *next_seq)
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, u64> {
        // The guarded value only moves after a batch is applied, so it is
        // right even if a holder panicked.
        self.next_seq
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn sled_error(&self, e: sled::Error) -> StoreError {
        sled_error(&self.dir, e)
    }

    fn family<T: DeserializeOwned>(&self, prefix: &[u8]) -> Result<Vec<T>, StoreError> {
        self.db
            .range(prefix.to_vec()..keys::family_end(prefix))
            .map(|item| {
                let (key, value) = item.map_err(|e| self.sled_error(e))?;
                decode(&self.dir, &key, &value)
            })
            .collect()
    }

    fn routing_queues(&self) -> Result<Vec<(String, String)>, StoreError> {
        let prefix = keys::meta_key(keys::META_ROUTING_QUEUE_PREFIX);
        self.db
            .scan_prefix(&prefix)
            .map(|item| {
                let (key, value) = item.map_err(|e| self.sled_error(e))?;
                let name = utf8(&self.dir, &key, &key[prefix.len()..])?.to_owned();
                Ok((name, utf8(&self.dir, &key, &value)?.to_owned()))
            })
            .collect()
    }
}

impl Store for SledStore {
    fn store_id(&self) -> &str {
        &self.store_id
    }

    fn load(&self) -> Result<Loaded, StoreError> {
        let next_seq = self.lock();
        Ok(Loaded {
            agents: self.family(AGENT)?,
            outbox: self.family(OUTBOX)?,
            contacts: self.family(CONTACT)?,
            routing_queues: self.routing_queues()?,
            last_seq: *next_seq - 1,
        })
    }

    fn commit(&self, batch: Batch) -> Result<Vec<Event>, StoreError> {
        self.write_batch(batch)
    }

    fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        let Some(start) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        self.db
            .range(keys::event_key(start)..keys::family_end(EVENT))
            .take(limit)
            .map(|item| {
                let (key, value) = item.map_err(|e| self.sled_error(e))?;
                decode(&self.dir, &key, &value)
            })
            .collect()
    }

    fn last_seq(&self) -> Result<u64, StoreError> {
        Ok(self.lock().saturating_sub(1))
    }

    fn first_seq(&self) -> Result<Option<u64>, StoreError> {
        let first = self
            .db
            .range(EVENT.to_vec()..keys::family_end(EVENT))
            .next()
            .transpose()
            .map_err(|e| self.sled_error(e))?;
        Ok(first.and_then(|(key, _)| event_seq(&key)))
    }

    fn directory(&self) -> Result<Option<StoredDirectory>, StoreError> {
        self.read_directory()
    }

    fn commit_directory(&self, batch: DirectoryBatch) -> Result<(), StoreError> {
        self.write_directory(batch)
    }

    fn meta(&self, key: &MetaKey) -> Result<Option<String>, StoreError> {
        let key = keys::meta_key(&keys::meta_name(key));
        let value = self.db.get(&key).map_err(|e| self.sled_error(e))?;
        value
            .map(|v| utf8(&self.dir, &key, &v).map(str::to_owned))
            .transpose()
    }

    fn prune_events(
        &self,
        before: DateTime<Utc>,
        keep_at_least: usize,
    ) -> Result<usize, StoreError> {
        self.prune(before, keep_at_least)
    }

    fn mark_clean_shutdown(&self) -> Result<(), StoreError> {
        // Commits held off: the marker vouches for this very state.
        let next_seq = self.lock();
        self.durable()?;
        marker::write(&self.dir, &self.store_id, *next_seq)?;
        self.marked_clean.store(true, Ordering::SeqCst);
        Ok(())
    }

    fn append_inbox(
        &self,
        kind: InboxKind,
        received_at: DateTime<Utc>,
        body: &[u8],
    ) -> Result<u64, StoreError> {
        self.append_to_inbox(kind, received_at, body)
    }

    fn inbox(&self, after: u64, limit: usize) -> Result<Vec<InboxItem>, StoreError> {
        self.read_inbox(after, limit)
    }

    fn ack_inbox(&self, upto: u64) -> Result<usize, StoreError> {
        self.ack_inbox_upto(upto)
    }
}

pub(super) fn sled_error(dir: &Path, e: sled::Error) -> StoreError {
    match e {
        // sled reports a held lock only in its message.
        sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
            StoreError::Locked {
                dir: dir.to_path_buf(),
            }
        }
        sled::Error::Io(io) => StoreError::Io(format!("{}: {io}", dir.display())),
        sled::Error::Corruption { at, .. } => StoreError::Damaged {
            dir: dir.to_path_buf(),
            problem: match at {
                Some(at) => format!("the storage engine found corrupt data at {at}"),
                None => "the storage engine found corrupt data".to_owned(),
            },
        },
        sled::Error::Unsupported(what) => StoreError::Damaged {
            dir: dir.to_path_buf(),
            problem: format!("the storage engine refused its files: {what}"),
        },
        other => StoreError::Io(format!("{}: {other}", dir.display())),
    }
}

pub(super) fn event_seq(key: &[u8]) -> Option<u64> {
    let rest = key.strip_prefix(EVENT)?;
    <[u8; 8]>::try_from(rest).ok().map(u64::from_be_bytes)
}

pub(crate) fn decode<T: DeserializeOwned>(
    dir: &Path,
    key: &[u8],
    value: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(value).map_err(|e| StoreError::Damaged {
        dir: dir.to_path_buf(),
        problem: format!(
            "the record {} cannot be decoded: {e}",
            keys::describe_key(key)
        ),
    })
}

pub(crate) fn utf8<'v>(dir: &Path, key: &[u8], value: &'v [u8]) -> Result<&'v str, StoreError> {
    std::str::from_utf8(value).map_err(|_| StoreError::Damaged {
        dir: dir.to_path_buf(),
        problem: format!("the meta record {} is not text", keys::describe_key(key)),
    })
}
