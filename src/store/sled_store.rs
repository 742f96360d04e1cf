//! The [`Store`] on sled: one tree, and per commit one `apply_batch`, then
//! sled's `flush` and an `fdatasync` (see [`super::keys`] for the layout).
//!
//! Opening checks every key before the daemon may use the store, and refuses
//! (without writing) a store from a newer schema, a damaged store and a
//! directory that holds something other than a store.

use std::fs;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;

use super::keys::{self, AGENT, CONTACT, EVENT, META, OUTBOX};
use super::{AgentRecord, Batch, Loaded, MetaKey, OutboxEntry, SCHEMA_VERSION, Store, StoreError};
use crate::events::Event;
use crate::routing::ContactRecord;

/// sled's page cache bound; the daemon's working set is small and the
/// default (1 GiB) would let sled hold far more than it needs.
const CACHE_CAPACITY_BYTES: u64 = 64 * 1024 * 1024;

/// The files sled 0.34 keeps in its directory; a non-empty directory without
/// them is not a store and is never handed to sled (which would write into it).
const SLED_CONF: &str = "conf";
const SLED_DB: &str = "db";

/// How long a held store lock is waited for, and how often it is tried.
const LOCK_WAIT: Duration = Duration::from_secs(3);
const LOCK_RETRY: Duration = Duration::from_millis(10);

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
    /// Opens the store in `dir`, creating it (mode 0700) when the directory
    /// is missing or empty. An existing store is checked key by key first.
    ///
    /// sled writes to its files whenever it opens them, even to read, so the
    /// check runs on a scratch copy (in the temp directory) while the store
    /// is locked: a store that is refused is left byte for byte as it was.
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        if prepare_dir(dir)? {
            let db = open_sled(dir, dir)?;
            let (store_id, next_seq) = initialise(&db, dir)?;
            return SledStore::new(dir, db, store_id, next_seq);
        }
        check_sled_files(dir)?;
        let checked = {
            let _lock = lock_store(dir)?;
            let copy = ScratchCopy::of(dir)?;
            let db = open_sled(copy.path(), dir)?;
            check(&db, dir)?
        };
        // Between the check and this open another process could take the
        // store: sled's own lock refuses us then. One that opened and closed
        // it in between ran this same check; comparing the meta catches a
        // store that is no longer the one checked.
        let db = open_sled(dir, dir)?;
        if store_meta(&db, dir)? != checked {
            return Err(StoreError::Io(format!(
                "the store in {} changed while it was being checked; open it again",
                dir.display()
            )));
        }
        let (store_id, next_seq) = checked;
        SledStore::new(dir, db, store_id, next_seq)
    }

    fn new(
        dir: &Path,
        db: sled::Db,
        store_id: String,
        next_seq: u64,
    ) -> Result<SledStore, StoreError> {
        Ok(SledStore {
            dir: dir.to_path_buf(),
            log_file: open_log_file(dir)?,
            db,
            store_id,
            next_seq: Mutex::new(next_seq),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The agents the store in `dir` holds, read from a scratch copy so the
    /// store is left as it was (for `check`). `None` for a missing or empty
    /// directory; a store in use by another process (the running daemon)
    /// is refused with [`StoreError::Locked`].
    pub fn read_agents(dir: &Path) -> Result<Option<Vec<AgentRecord>>, StoreError> {
        if is_empty_or_missing(dir)? {
            return Ok(None);
        }
        check_sled_files(dir)?;
        let _lock = lock_store(dir)?;
        let copy = ScratchCopy::of(dir)?;
        let db = open_sled(copy.path(), dir)?;
        let agents = db
            .range(AGENT.to_vec()..keys::family_end(AGENT))
            .map(|item| {
                let (key, value) = item.map_err(|e| sled_error(dir, e))?;
                decode(dir, &key, &value)
            })
            .collect::<Result<Vec<AgentRecord>, StoreError>>()?;
        Ok(Some(agents))
    }

    /// Runs `f` on the raw tree with commits held off, so it sees one
    /// consistent state: the store id and the next seq it shows match every
    /// record it reads.
    pub(crate) fn with_commits_paused<R>(&self, f: impl FnOnce(&sled::Db, &str, u64) -> R) -> R {
        let next_seq = self.lock();
        f(&self.db, &self.store_id, *next_seq)
    }

    fn lock(&self) -> MutexGuard<'_, u64> {
        // The guarded value only moves after a batch is applied, so it is
        // right even if a holder panicked.
        self.next_seq
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn sled_error(&self, e: sled::Error) -> StoreError {
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

    fn durable(&self) -> Result<(), StoreError> {
        make_durable(&self.db, &self.log_file, &self.dir)
    }
}

impl SledStore {
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
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut next_seq = self.lock();
        let mut writes = sled::Batch::default();
        // The outbox first, so an agent deleted in the same batch takes its
        // outbox entry with it whatever order the caller listed them in.
        for (agent_id, entry) in &batch.outbox {
            let key = keys::outbox_key(agent_id);
            match entry {
                Some(entry) => {
                    if let Some(problem) = keys::outbox_problem(entry, agent_id) {
                        return Err(StoreError::InvalidBatch(problem));
                    }
                    writes.insert(key, encode(entry)?);
                }
                None => writes.remove(key),
            }
        }
        for (agent_id, record) in &batch.agents {
            match record {
                Some(record) => {
                    if let Some(problem) = keys::agent_problem(record, agent_id) {
                        return Err(StoreError::InvalidBatch(problem));
                    }
                    writes.insert(keys::agent_key(agent_id), encode(record)?);
                }
                None => {
                    writes.remove(keys::agent_key(agent_id));
                    writes.remove(keys::outbox_key(agent_id));
                }
            }
        }
        for (id, record) in &batch.contacts {
            match record {
                Some(record) => {
                    if let Some(problem) = keys::contact_problem(record, id) {
                        return Err(StoreError::InvalidBatch(problem));
                    }
                    writes.insert(keys::contact_key(id), encode(record)?);
                }
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

    fn meta(&self, key: &MetaKey) -> Result<Option<String>, StoreError> {
        let key = keys::meta_key(&keys::meta_name(key));
        let value = self.db.get(&key).map_err(|e| self.sled_error(e))?;
        value
            .map(|v| utf8(&self.dir, &key, &v).map(str::to_owned))
            .transpose()
    }

    /// Drops from the oldest event on while events are older than `before`,
    /// stopping at the first that is not, so the kept log stays one unbroken
    /// range of seqs. The next seq is untouched: seqs are never reused.
    fn prune_events(
        &self,
        before: DateTime<Utc>,
        keep_at_least: usize,
    ) -> Result<usize, StoreError> {
        let _commits_held = self.lock();
        let range = || EVENT.to_vec()..keys::family_end(EVENT);
        let kept = self.db.range(range()).count();
        let may_drop = kept.saturating_sub(keep_at_least);
        let mut deletes = sled::Batch::default();
        let mut dropped = 0;
        for item in self.db.range(range()).take(may_drop) {
            let (key, value) = item.map_err(|e| self.sled_error(e))?;
            let event: Event = decode(&self.dir, &key, &value)?;
            if event.time >= before {
                break;
            }
            deletes.remove(key);
            dropped += 1;
        }
        if dropped > 0 {
            self.db
                .apply_batch(deletes)
                .map_err(|e| self.sled_error(e))?;
            self.durable()?;
        }
        Ok(dropped)
    }
}

/// Writes a whole store (the records of an import) into the empty or
/// missing `dir` as one batch and makes it durable.
pub(crate) fn create_with(dir: &Path, records: sled::Batch) -> Result<(), StoreError> {
    if !prepare_dir(dir)? {
        return Err(StoreError::NotEmpty {
            dir: dir.to_path_buf(),
        });
    }
    let db = open_sled(dir, dir)?;
    db.apply_batch(records).map_err(|e| sled_error(dir, e))?;
    make_durable(&db, &open_log_file(dir)?, dir)?;
    sync_dir(dir)
}

/// sled's `flush` writes its buffers with `sync_file_range`, which neither
/// reaches the drive's cache nor records a grown file's length; the
/// `fdatasync` here does (on any handle of the file), so a commit survives
/// a power cut and not only a crash of the process.
fn make_durable(db: &sled::Db, log_file: &fs::File, dir: &Path) -> Result<(), StoreError> {
    db.flush().map_err(|e| sled_error(dir, e))?;
    log_file
        .sync_data()
        .map_err(|e| StoreError::Io(format!("syncing the store in {}: {e}", dir.display())))
}

fn open_log_file(dir: &Path) -> Result<fs::File, StoreError> {
    let path = dir.join(SLED_DB);
    fs::File::open(&path).map_err(|e| StoreError::Io(format!("opening {}: {e}", path.display())))
}

/// Makes the new store's files part of the directory durably.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::Io(format!("syncing {}: {e}", dir.display())))
}

/// True when `dir` is missing or empty (then created, mode 0700): a place
/// for a new store.
pub(crate) fn prepare_dir(dir: &Path) -> Result<bool, StoreError> {
    let fresh = is_empty_or_missing(dir)?;
    if fresh && !dir.exists() {
        create_private_dir(dir)?;
    }
    Ok(fresh)
}

pub(crate) fn is_empty_or_missing(dir: &Path) -> Result<bool, StoreError> {
    match fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(StoreError::Io(format!("reading {}: {e}", dir.display()))),
    }
}

fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| StoreError::Io(format!("creating {}: {e}", dir.display())))
}

/// Refuses a non-empty directory that sled did not write, before sled
/// would add its own files to it or overwrite a `conf` it cannot read.
fn check_sled_files(dir: &Path) -> Result<(), StoreError> {
    let damaged = |problem: String| StoreError::Damaged {
        dir: dir.to_path_buf(),
        problem,
    };
    let not_a_store = || {
        damaged(format!(
            "it is not empty and holds no presence-sync store (no sled `{SLED_CONF}` and `{SLED_DB}` files)"
        ))
    };
    let conf_path = dir.join(SLED_CONF);
    if !dir.join(SLED_DB).is_file() {
        return Err(not_a_store());
    }
    let conf = match fs::read(&conf_path) {
        Ok(conf) => conf,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(not_a_store()),
        Err(e) => {
            return Err(StoreError::Io(format!(
                "reading {}: {e}",
                conf_path.display()
            )));
        }
    };
    if !is_sled_conf(&conf) {
        return Err(damaged(format!(
            "the storage engine's settings file `{SLED_CONF}` is unreadable"
        )));
    }
    Ok(())
}

/// sled's `conf`: `name: value` lines naming its format settings, then a
/// 4-byte checksum.
fn is_sled_conf(conf: &[u8]) -> bool {
    let Some(text) = conf
        .len()
        .checked_sub(4)
        .and_then(|end| std::str::from_utf8(&conf[..end]).ok())
    else {
        return false;
    };
    let names: Vec<&str> = text
        .lines()
        .filter_map(|line| line.split_once(": ").map(|(name, _)| name))
        .collect();
    ["segment_size", "use_compression", "version"]
        .iter()
        .all(|needed| names.contains(needed))
}

/// Takes sled's lock on `dir` (the same `flock` on `db` sled takes), so no
/// daemon writes to the store while it is copied for the check.
///
/// A store dropped in this process a moment ago may still be locked: sled
/// 0.34 closes its file from background threads after `Db` is dropped
/// (sled issues #1234, #1289). So a held lock is retried for a short while
/// before the store counts as in use.
fn lock_store(dir: &Path) -> Result<fs::File, StoreError> {
    let path = dir.join(SLED_DB);
    let file = fs::File::open(&path)
        .map_err(|e| StoreError::Io(format!("opening {}: {e}", path.display())))?;
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(LOCK_RETRY);
            }
            Err(fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked {
                    dir: dir.to_path_buf(),
                });
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(StoreError::Io(format!("locking {}: {e}", path.display())));
            }
        }
    }
}

/// A private copy of a store's files, removed when dropped.
struct ScratchCopy {
    path: PathBuf,
}

impl ScratchCopy {
    fn of(dir: &Path) -> Result<ScratchCopy, StoreError> {
        let mut salt = [0u8; 8];
        SystemRandom::new()
            .fill(&mut salt)
            .map_err(|_| StoreError::Io("the system random source failed".to_owned()))?;
        let path = std::env::temp_dir().join(format!(
            "presence-sync-check-{}-{}",
            std::process::id(),
            keys::hex(&salt)
        ));
        create_private_dir(&path)?;
        let copy = ScratchCopy { path };
        copy_files(dir, &copy.path)?;
        Ok(copy)
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchCopy {
    fn drop(&mut self) {
        // Best effort: a leftover copy in the temp directory harms nothing.
        let _ = fs::remove_dir_all(&self.path);
    }
}

fn copy_files(from: &Path, to: &Path) -> Result<(), StoreError> {
    let io_error = |what: &Path, e: io::Error| {
        StoreError::Io(format!("copying {} for its check: {e}", what.display()))
    };
    for entry in fs::read_dir(from).map_err(|e| io_error(from, e))? {
        let entry = entry.map_err(|e| io_error(from, e))?;
        let source = entry.path();
        let target = to.join(entry.file_name());
        let kind = entry.file_type().map_err(|e| io_error(&source, e))?;
        if kind.is_dir() {
            fs::create_dir(&target).map_err(|e| io_error(&target, e))?;
            copy_files(&source, &target)?;
        } else {
            fs::copy(&source, &target).map_err(|e| io_error(&source, e))?;
        }
    }
    Ok(())
}

/// Opens sled on `path`; errors name `dir`, the store the caller asked for
/// (`path` may be its scratch copy).
fn open_sled(path: &Path, dir: &Path) -> Result<sled::Db, StoreError> {
    let config = sled::Config::new()
        .path(path)
        .cache_capacity(CACHE_CAPACITY_BYTES);
    // sled 0.34 panics on some malformed files instead of returning an
    // error; a store it cannot read is a damaged store, not a crash.
    match panic::catch_unwind(AssertUnwindSafe(|| config.open())) {
        Ok(opened) => opened.map_err(|e| sled_error(dir, e)),
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("no message");
            Err(StoreError::Damaged {
                dir: dir.to_path_buf(),
                problem: format!("the storage engine could not read its files ({what})"),
            })
        }
    }
}

fn sled_error(dir: &Path, e: sled::Error) -> StoreError {
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

/// Sets up a new store's meta in one durable batch.
fn initialise(db: &sled::Db, dir: &Path) -> Result<(String, u64), StoreError> {
    let mut id = [0u8; keys::STORE_ID_BYTES];
    SystemRandom::new()
        .fill(&mut id)
        .map_err(|_| StoreError::Io("the system random source failed".to_owned()))?;
    let store_id = keys::hex(&id);
    let next_seq = 1;
    let mut meta = sled::Batch::default();
    meta.insert(
        keys::meta_key(keys::META_SCHEMA),
        SCHEMA_VERSION.to_string().as_bytes(),
    );
    meta.insert(keys::meta_key(keys::META_STORE_ID), store_id.as_bytes());
    meta.insert(
        keys::meta_key(keys::META_NEXT_SEQ),
        next_seq.to_string().as_bytes(),
    );
    db.apply_batch(meta).map_err(|e| sled_error(dir, e))?;
    make_durable(db, &open_log_file(dir)?, dir)?;
    sync_dir(dir)?;
    Ok((store_id, next_seq))
}

/// Reads the store's meta and checks every key against it. Returns the
/// store id and the next seq.
fn check(db: &sled::Db, dir: &Path) -> Result<(String, u64), StoreError> {
    let (store_id, next_seq) = store_meta(db, dir)?;
    for item in db.iter() {
        let (key, value) = item.map_err(|e| sled_error(dir, e))?;
        check_record(dir, &key, &value, &store_id, next_seq)?;
    }
    Ok((store_id, next_seq))
}

/// The schema (refused when newer), the store id and the next seq.
fn store_meta(db: &sled::Db, dir: &Path) -> Result<(String, u64), StoreError> {
    let damaged = |problem: String| StoreError::Damaged {
        dir: dir.to_path_buf(),
        problem,
    };
    if db.is_empty() {
        return Err(damaged(
            "it holds no records: its first start was interrupted before the store was set up, \
             or it is not a presence-sync store (a new store needs an empty directory)"
                .to_owned(),
        ));
    }
    let read_meta = |name: &str| -> Result<String, StoreError> {
        let key = keys::meta_key(name);
        match db.get(&key).map_err(|e| sled_error(dir, e))? {
            Some(value) => Ok(utf8(dir, &key, &value)?.to_owned()),
            None => Err(damaged(format!("the meta record `{name}` is missing"))),
        }
    };
    let garbled = |name: &str, value: &str, want: &str| {
        damaged(format!(
            "the meta record `{name}` is garbled: {value:?} is not {want}"
        ))
    };

    let schema_text = read_meta(keys::META_SCHEMA)?;
    let schema: u32 = schema_text
        .parse()
        .map_err(|_| garbled(keys::META_SCHEMA, &schema_text, "a schema version"))?;
    if schema > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            dir: dir.to_path_buf(),
            found: schema,
            known: SCHEMA_VERSION,
        });
    }
    if schema == 0 {
        return Err(garbled(keys::META_SCHEMA, &schema_text, "a schema version"));
    }
    let store_id = read_meta(keys::META_STORE_ID)?;
    if !keys::is_valid_store_id(&store_id) {
        return Err(garbled(
            keys::META_STORE_ID,
            &store_id,
            "a store id (16 hex digits)",
        ));
    }
    let next_text = read_meta(keys::META_NEXT_SEQ)?;
    let next_seq = next_text
        .parse::<u64>()
        .ok()
        .filter(|&n| n >= 1)
        .ok_or_else(|| garbled(keys::META_NEXT_SEQ, &next_text, "a sequence number"))?;
    Ok((store_id, next_seq))
}

fn check_record(
    dir: &Path,
    key: &[u8],
    value: &[u8],
    store_id: &str,
    next_seq: u64,
) -> Result<(), StoreError> {
    let damaged = |problem: String| StoreError::Damaged {
        dir: dir.to_path_buf(),
        problem,
    };
    fn text_key<'k>(dir: &Path, key: &[u8], rest: &'k [u8]) -> Result<&'k str, StoreError> {
        std::str::from_utf8(rest).map_err(|_| StoreError::Damaged {
            dir: dir.to_path_buf(),
            problem: format!("the key {} is not text", keys::describe_key(key)),
        })
    }
    let problem = if let Some(rest) = key.strip_prefix(AGENT) {
        let id = text_key(dir, key, rest)?;
        keys::agent_problem(&decode::<AgentRecord>(dir, key, value)?, id)
    } else if let Some(rest) = key.strip_prefix(OUTBOX) {
        let id = text_key(dir, key, rest)?;
        keys::outbox_problem(&decode::<OutboxEntry>(dir, key, value)?, id)
    } else if let Some(rest) = key.strip_prefix(CONTACT) {
        let id = text_key(dir, key, rest)?;
        keys::contact_problem(&decode::<ContactRecord>(dir, key, value)?, id)
    } else if key.starts_with(EVENT) {
        let seq = event_seq(key).ok_or_else(|| {
            damaged(format!(
                "the event key {} is not a sequence number",
                keys::describe_key(key)
            ))
        })?;
        keys::event_problem(&decode::<Event>(dir, key, value)?, seq, store_id, next_seq)
    } else if let Some(rest) = key.strip_prefix(META) {
        let name = text_key(dir, key, rest)?;
        utf8(dir, key, value)?;
        (!keys::is_store_meta(name) && keys::parse_meta_name(name).is_none())
            .then(|| format!("unknown meta record {}", keys::describe_key(key)))
    } else {
        Some(format!(
            "the key {} belongs to no record family this build knows",
            keys::describe_key(key)
        ))
    };
    match problem {
        Some(problem) => Err(damaged(problem)),
        None => Ok(()),
    }
}

fn event_seq(key: &[u8]) -> Option<u64> {
    let rest = key.strip_prefix(EVENT)?;
    <[u8; 8]>::try_from(rest).ok().map(u64::from_be_bytes)
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::InvalidBatch(e.to_string()))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::{agent, at, batch, event, snapshot, write_raw};

    fn damaged_problem(result: Result<SledStore, StoreError>) -> String {
        match result {
            Err(StoreError::Damaged { problem, .. }) => problem,
            other => panic!("expected Damaged, got {other:?}"),
        }
    }

    /// A store with a little of everything, closed again.
    fn closed_store(dir: &Path) {
        let store = SledStore::open(dir).unwrap();
        store.commit(batch("a1", 1, 2, 100)).unwrap();
    }

    #[test]
    fn a_new_store_gets_a_private_dir_an_id_and_seq_one() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("state");
        let store = SledStore::open(&dir).unwrap();
        assert!(
            keys::is_valid_store_id(store.store_id()),
            "{}",
            store.store_id()
        );
        assert_eq!(store.load().unwrap(), Loaded::default());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&dir).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        let events = store.commit(batch("a1", 1, 1, 100)).unwrap();
        assert_eq!(events[0].seq, 1);
        assert_eq!(events[0].id, format!("{}-1", store.store_id()));
    }

    #[test]
    fn two_stores_get_different_ids() {
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let one = SledStore::open(one.path()).unwrap();
        let two = SledStore::open(two.path()).unwrap();
        assert_ne!(one.store_id(), two.store_id());
    }

    /// What a commit makes visible is in the conformance suite; a reopen
    /// must find all of it, under the same store id.
    #[test]
    fn what_is_committed_is_loaded_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let id = store.store_id().to_owned();
        store.commit(batch("a1", 7, 2, 100)).unwrap();
        store.commit(batch("a2", 8, 1, 101)).unwrap();
        let before = (store.load().unwrap(), store.events_after(0, 10).unwrap());
        let cursor = MetaKey::Cursor("webhook".into());
        let meta = store.meta(&cursor).unwrap();
        drop(store);

        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(store.store_id(), id);
        assert_eq!(before.0.agents, vec![agent("a1", 7), agent("a2", 8)]);
        assert_eq!(
            (store.load().unwrap(), store.events_after(0, 10).unwrap()),
            before
        );
        assert_eq!(store.meta(&cursor).unwrap(), meta);
        assert_eq!(meta.as_deref(), Some("8"));
    }

    #[test]
    fn routing_contacts_and_state_survive_a_reopen_and_an_export() {
        use crate::store::testing::contact;
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let mut first = batch("a1", 1, 1, 100);
        first.contacts = vec![
            ("c-a1".into(), Some(contact("a1", 1))),
            ("c-a2".into(), Some(contact("a2", 2))),
        ];
        first
            .meta
            .push((MetaKey::Routing, Some("{\"next_serial\":3}".into())));
        store.commit(first).unwrap();
        let mut second = batch("a1", 2, 0, 101);
        second.contacts = vec![("c-a1".into(), None)];
        store.commit(second).unwrap();
        drop(store);

        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(store.load().unwrap().contacts, vec![contact("a2", 2)]);
        assert_eq!(
            store.meta(&MetaKey::Routing).unwrap().as_deref(),
            Some("{\"next_serial\":3}")
        );
        let mut text = Vec::new();
        let stats = crate::store::export(&store, &mut text).unwrap();
        assert_eq!(stats.contacts, 1);
        drop(store);
        let copy = tempfile::tempdir().unwrap();
        crate::store::import(copy.path(), &text[..]).unwrap();
        let imported = SledStore::open(copy.path()).unwrap();
        assert_eq!(imported.load().unwrap().contacts, vec![contact("a2", 2)]);
        assert_eq!(
            imported.meta(&MetaKey::Routing).unwrap().as_deref(),
            Some("{\"next_serial\":3}")
        );
    }

    #[test]
    fn seqs_strictly_increase_across_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let mut seen = Vec::new();
        for round in 0..4 {
            let store = SledStore::open(dir.path()).unwrap();
            for n in 0..3 {
                let events = store.commit(batch("a1", n, 2, round)).unwrap();
                seen.extend(events.iter().map(|e| e.seq));
            }
            // A batch without events assigns nothing.
            assert!(store.commit(batch("a1", 9, 0, round)).unwrap().is_empty());
        }
        assert_eq!(seen, (1..=24).collect::<Vec<u64>>());
    }

    /// Retention itself is in the conformance suite; what only a disk shows
    /// is that the seqs pruned away stay spent across a reopen.
    #[test]
    fn pruned_seqs_are_never_reused_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        store
            .commit(Batch {
                events: (0..10).map(|t| event(t, "a1")).collect(),
                ..Batch::default()
            })
            .unwrap();
        assert_eq!(store.prune_events(at(100), 0).unwrap(), 10);
        assert_eq!(store.first_seq().unwrap(), None);
        drop(store);
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(store.load().unwrap().last_seq, 10);
        assert_eq!(store.commit(batch("a1", 1, 1, 0)).unwrap()[0].seq, 11);
        assert_eq!(store.first_seq().unwrap(), Some(11));
    }

    #[test]
    fn a_newer_schema_is_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        closed_store(dir.path());
        write_raw(dir.path(), &[(b"m/schema", Some(b"2"))]);
        let before = snapshot(dir.path());
        for _ in 0..2 {
            match SledStore::open(dir.path()) {
                Err(StoreError::NewerSchema {
                    found: 2, known, ..
                }) => {
                    assert_eq!(known, SCHEMA_VERSION)
                }
                other => panic!("expected NewerSchema, got {other:?}"),
            }
        }
        assert_eq!(snapshot(dir.path()), before);
    }

    #[test]
    fn damaged_stores_are_refused_with_the_problem_named() {
        /// A raw key, its new value (`None`: removed), what the refusal says.
        type Case<'a> = (&'a [u8], Option<&'a [u8]>, &'a str);
        let cases: &[Case<'_>] = &[
            (b"m/schema", Some(b"one"), "`schema` is garbled"),
            (b"m/schema", None, "`schema` is missing"),
            (b"m/store_id", None, "`store_id` is missing"),
            (b"m/store_id", Some(b"XYZ"), "`store_id` is garbled"),
            (b"m/next_seq", Some(b"-1"), "`next_seq` is garbled"),
            (
                b"m/next_seq",
                Some(b"2"),
                "event seq 2 is not below the next seq 2",
            ),
            (
                b"a/a1",
                Some(b"{\"id\":"),
                "the record \"a/a1\" cannot be decoded",
            ),
            (
                b"a/a9",
                Some(br#"{"not":"an agent"}"#),
                "the record \"a/a9\" cannot be decoded",
            ),
            (
                b"o/a1",
                Some(b"[]"),
                "the record \"o/a1\" cannot be decoded",
            ),
            (
                b"e/\0\0\0\0\0\0\0\x01",
                Some(b"{}"),
                "the record e/1 cannot be decoded",
            ),
            (
                b"e/1",
                Some(b"{}"),
                "the event key \"e/1\" is not a sequence number",
            ),
            (
                b"m/routing-old",
                Some(b"x"),
                "unknown meta record \"m/routing-old\"",
            ),
            (
                b"x/1",
                Some(b"{}"),
                "the key \"x/1\" belongs to no record family",
            ),
            (
                b"\xff\xfe",
                Some(b"{}"),
                "the key 0xfffe belongs to no record family",
            ),
        ];
        for (key, value, expected) in cases {
            let dir = tempfile::tempdir().unwrap();
            closed_store(dir.path());
            write_raw(dir.path(), &[(key, *value)]);
            let before = snapshot(dir.path());
            let problem = damaged_problem(SledStore::open(dir.path()));
            assert!(
                problem.contains(expected),
                "{}: {problem:?} should say {expected:?}",
                keys::describe_key(key)
            );
            assert_eq!(snapshot(dir.path()), before, "{expected}");
        }
    }

    #[test]
    fn a_record_under_the_wrong_key_is_damage() {
        let dir = tempfile::tempdir().unwrap();
        closed_store(dir.path());
        let other = serde_json::to_vec(&agent("a2", 1)).unwrap();
        write_raw(dir.path(), &[(b"a/a1", Some(&other))]);
        let problem = damaged_problem(SledStore::open(dir.path()));
        assert!(problem.contains("\"a1\" has id \"a2\""), "{problem}");
    }

    #[test]
    fn a_directory_of_other_files_is_not_a_store() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("notes.txt"), "hello").unwrap();
        let before = snapshot(dir.path());
        let problem = damaged_problem(SledStore::open(dir.path()));
        assert!(
            problem.contains("holds no presence-sync store"),
            "{problem}"
        );
        assert_eq!(snapshot(dir.path()), before);
    }

    #[test]
    fn garbage_sled_files_are_damage_not_a_crash() {
        let mut noise: u64 = 0x2545_f491_4f6c_dd1d;
        let mut garbage = |len: usize| -> Vec<u8> {
            (0..len)
                .map(|_| {
                    noise ^= noise << 13;
                    noise ^= noise >> 7;
                    noise ^= noise << 17;
                    noise as u8
                })
                .collect()
        };
        // Random `conf`, then a real `conf` beside a random `db`.
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("conf"), garbage(64)).unwrap();
        fs::write(dir.path().join("db"), garbage(4096)).unwrap();
        let before = snapshot(dir.path());
        let problem = damaged_problem(SledStore::open(dir.path()));
        assert!(problem.contains("settings file `conf`"), "{problem}");
        assert_eq!(snapshot(dir.path()), before);

        for db_len in [0, 100, 4096, 600_000] {
            let dir = tempfile::tempdir().unwrap();
            closed_store(dir.path());
            fs::write(dir.path().join("db"), garbage(db_len)).unwrap();
            for entry in fs::read_dir(dir.path()).unwrap() {
                let path = entry.unwrap().path();
                if path
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("snap."))
                {
                    fs::remove_file(path).unwrap();
                }
            }
            let before = snapshot(dir.path());
            let problem = damaged_problem(SledStore::open(dir.path()));
            assert!(problem.contains("holds no records"), "{problem}");
            assert_eq!(snapshot(dir.path()), before, "garbage db of {db_len} bytes");
        }
    }

    #[test]
    fn an_interrupted_first_start_is_refused_not_reinitialised() {
        let dir = tempfile::tempdir().unwrap();
        drop(sled::open(dir.path()).unwrap());
        let problem = damaged_problem(SledStore::open(dir.path()));
        assert!(problem.contains("holds no records"), "{problem}");
    }

    #[test]
    fn a_store_in_use_is_locked() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        assert!(matches!(
            SledStore::open(dir.path()),
            Err(StoreError::Locked { .. })
        ));
        drop(store);
        SledStore::open(dir.path()).unwrap();
    }

    #[test]
    fn commits_from_several_threads_get_distinct_contiguous_seqs() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let mut seqs: Vec<u64> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4)
                .map(|t| {
                    let store = &store;
                    scope.spawn(move || {
                        (0..10)
                            .flat_map(|n| store.commit(batch(&format!("a{t}"), n, 2, 0)).unwrap())
                            .map(|e| e.seq)
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect()
        });
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=80).collect::<Vec<u64>>());
        let stored: Vec<u64> = store
            .events_after(0, 100)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(stored, seqs);
    }
}
