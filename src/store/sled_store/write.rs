//! The durable writes: a commit is one sled batch (outbox, agents, contacts,
//! events with their seqs, meta), applied, flushed and `fdatasync`ed before
//! it returns; pruning drops the oldest events the same way.

use std::fs;
use std::path::Path;

use chrono::{DateTime, Utc};

use super::open::SLED_DB;
use super::{SledStore, decode, sled_error};
use crate::events::Event;
use crate::store::keys::{self, EVENT};
use crate::store::{Batch, MetaKey, Store, StoreError};

impl SledStore {
    /// Commits `batch` (see [`Store::commit`](crate::store::Store::commit)).
    pub(super) fn write_batch(&self, batch: Batch) -> Result<Vec<Event>, StoreError> {
        self.write_batch_at(batch, None)
    }

    /// Commits `batch`, and with `position` the commit log position it
    /// brings the store to, in the same atomic write. The position must
    /// follow the stored one by exactly one (checked with commits held), so
    /// records are never applied twice or out of order.
    pub(super) fn write_batch_at(
        &self,
        batch: Batch,
        position: Option<u64>,
    ) -> Result<Vec<Event>, StoreError> {
        if let Some(problem) = batch.problem() {
            return Err(StoreError::InvalidBatch(problem));
        }
        if batch.is_empty() && position.is_none() {
            return Ok(Vec::new());
        }
        let mut next_seq = self.lock();
        let mut writes = sled::Batch::default();
        if let Some(position) = position {
            self.check_next_position(position)?;
            writes.insert(
                keys::meta_key(&keys::meta_name(&MetaKey::LogPosition)),
                position.to_string().as_bytes(),
            );
        }
        self.withdraw_clean_mark()?;
        // The outbox first, so an agent deleted in the same batch takes its
        // outbox entry with it whatever order the caller listed them in.
        for (agent_id, entry) in &batch.outbox {
            let key = keys::outbox_key(agent_id);
            match entry {
                Some(entry) => writes.insert(key, encode(entry)?),
                None => writes.remove(key),
            }
        }
        for (agent_id, record) in &batch.agents {
            match record {
                Some(record) => writes.insert(keys::agent_key(agent_id), encode(record)?),
                None => {
                    writes.remove(keys::agent_key(agent_id));
                    writes.remove(keys::outbox_key(agent_id));
                }
            }
        }
        for (id, record) in &batch.contacts {
            match record {
                Some(record) => writes.insert(keys::contact_key(id), encode(record)?),
                None => writes.remove(keys::contact_key(id)),
            }
        }
        let first = *next_seq;
        let mut committed = Vec::with_capacity(batch.events.len());
        for (seq, new) in (first..).zip(batch.events) {
            let event = Event::committed(&self.store_id, seq, new);
            writes.insert(keys::event_key(seq), encode(&event)?);
            committed.push(event);
        }
        let after = first + committed.len() as u64;
        if after != first {
            writes.insert(
                keys::meta_key(keys::META_NEXT_SEQ),
                after.to_string().as_bytes(),
            );
        }
        for (key, value) in &batch.meta {
            let key = keys::meta_key(&keys::meta_name(key));
            match value {
                Some(value) => writes.insert(key, value.as_bytes()),
                None => writes.remove(key),
            }
        }
        self.db
            .apply_batch(writes)
            .map_err(|e| self.sled_error(e))?;
        // The tree holds the batch now (readers see it), so its seqs are
        // spent even if the flush below fails: they are never handed out twice.
        *next_seq = after;
        self.durable()?;
        Ok(committed)
    }

    /// Drops from the oldest event on while events are older than `before`,
    /// stopping at the first that is not, so the kept log stays one unbroken
    /// range of seqs. The next seq is untouched: seqs are never reused.
    /// Reads only the old events and, when there are some, the newer ones as
    /// far as `keep_at_least`: when nothing is old enough (the usual case at
    /// a start) that is one event, not the whole log.
    pub(super) fn prune(
        &self,
        before: DateTime<Utc>,
        keep_at_least: usize,
    ) -> Result<usize, StoreError> {
        let _commits_held = self.lock();
        self.withdraw_clean_mark()?;
        let mut events = self.db.range(EVENT.to_vec()..keys::family_end(EVENT));
        let mut old = Vec::new();
        // Events kept after the old ones, counted as far as `keep_at_least`.
        let mut newer = 0;
        for item in events.by_ref() {
            let (key, value) = item.map_err(|e| self.sled_error(e))?;
            let event: Event = decode(&self.dir, &key, &value)?;
            if event.time >= before {
                newer = 1;
                break;
            }
            old.push(key);
        }
        if old.is_empty() {
            return Ok(0);
        }
        while newer < keep_at_least {
            match events.next().transpose().map_err(|e| self.sled_error(e))? {
                Some(_) => newer += 1,
                None => break,
            }
        }
        let keep_of_old = keep_at_least.saturating_sub(newer);
        let dropped = old.len().saturating_sub(keep_of_old);
        if dropped > 0 {
            let mut deletes = sled::Batch::default();
            for key in old.into_iter().take(dropped) {
                deletes.remove(key);
            }
            self.db
                .apply_batch(deletes)
                .map_err(|e| self.sled_error(e))?;
            self.durable()?;
        }
        Ok(dropped)
    }

    /// The commit log position stored (0: none yet).
    pub(super) fn stored_log_position(&self) -> Result<u64, StoreError> {
        let Some(text) = self.meta(&MetaKey::LogPosition)? else {
            return Ok(0);
        };
        text.parse().map_err(|_| StoreError::Damaged {
            dir: self.dir.clone(),
            problem: format!("the meta record `log_position` is garbled: {text:?} is not a number"),
        })
    }

    /// Refuses a position that does not follow the stored one by one.
    /// Called with commits held.
    pub(super) fn check_next_position(&self, position: u64) -> Result<(), StoreError> {
        let stored = self.stored_log_position()?;
        if stored.checked_add(1) == Some(position) {
            Ok(())
        } else {
            Err(StoreError::Replication(format!(
                "commit log position {position} does not follow the stored position {stored}"
            )))
        }
    }

    pub(super) fn durable(&self) -> Result<(), StoreError> {
        make_durable(&self.db, &self.log_file, &self.dir)
    }
}

/// sled's `flush` writes its buffers with `sync_file_range`, which neither
/// reaches the drive's cache nor records a grown file's length; the
/// `fdatasync` here does (on any handle of the file), so a commit survives
/// a power cut and not only a crash of the process.
pub(super) fn make_durable(
    db: &sled::Db,
    log_file: &fs::File,
    dir: &Path,
) -> Result<(), StoreError> {
    db.flush().map_err(|e| sled_error(dir, e))?;
    log_file
        .sync_data()
        .map_err(|e| StoreError::Io(format!("syncing the store in {}: {e}", dir.display())))
}

pub(super) fn open_log_file(dir: &Path) -> Result<fs::File, StoreError> {
    let path = dir.join(SLED_DB);
    fs::File::open(&path).map_err(|e| StoreError::Io(format!("opening {}: {e}", path.display())))
}

/// Makes the new store's files part of the directory durably.
pub(super) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::Io(format!("syncing {}: {e}", dir.display())))
}

pub(super) fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::InvalidBatch(e.to_string()))
}
