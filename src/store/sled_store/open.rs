//! Opening a store: a missing or empty directory becomes a new store (mode
//! 0700, a fresh id, seq 1); anything else must hold sled's own files.
//!
//! A store the last process closed cleanly (the clean-shutdown marker, see
//! [`super::marker`]) is opened with the cheap checks only: the lock, the
//! schema, the store id and the next seq. Without the marker (a crash, a
//! kill, a power cut, a store from an import or another tool) the store is
//! locked, copied to a scratch directory and checked there key by key
//! before the real store is opened, as `presence-sync check --store` does
//! on demand. The copy is kept for that path because sled writes to its
//! files whenever it opens them, even to read (measured: a plain open and
//! drop rewrites `db` and adds a `snap.*`), so a store refused by the deep
//! check is left byte for byte as it was.

use std::fs;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};

use super::check::{StoreSummary, check, store_meta};
use super::marker;
use super::write::{make_durable, open_log_file, sync_dir};
use super::{OpenCheck, SledStore, decode, sled_error};
use crate::store::keys::{self, AGENT};
use crate::store::{AgentRecord, Loaded, SCHEMA_VERSION, Store, StoreError, StoredDirectory};

/// sled's page cache bound unless the config sets `[store] cache_mb`; the
/// daemon's working set is small and sled's default (1 GiB) would let it
/// hold far more than it needs.
const DEFAULT_CACHE_BYTES: u64 = 8 * 1024 * 1024;

/// The files sled 0.34 keeps in its directory; a non-empty directory without
/// them is not a store and is never handed to sled (which would write into it).
const SLED_CONF: &str = "conf";
pub(super) const SLED_DB: &str = "db";

/// How long a held store lock is waited for, and how often it is tried.
const LOCK_WAIT: Duration = Duration::from_secs(3);
const LOCK_RETRY: Duration = Duration::from_millis(10);

impl SledStore {
    /// Opens the store in `dir`, creating it (mode 0700) when the directory
    /// is missing or empty. An existing store closed cleanly gets the cheap
    /// checks; one that was not is checked key by key first, on a scratch
    /// copy (in the temp directory) while the store is locked, so a store
    /// that is refused is left byte for byte as it was.
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        Self::open_with_cache(dir, DEFAULT_CACHE_BYTES)
    }

    /// [`SledStore::open`] with sled's page cache bounded to `cache_bytes`.
    pub fn open_with_cache(dir: &Path, cache_bytes: u64) -> Result<SledStore, StoreError> {
        if prepare_dir(dir)? {
            let db = open_sled(dir, dir, cache_bytes)?;
            let (store_id, next_seq) = initialise(&db, dir)?;
            return SledStore::new(dir, db, store_id, next_seq, OpenCheck::Created);
        }
        check_sled_files(dir)?;
        let (checked, how) = {
            let lock = lock_store(dir)?;
            match marker::take(dir)? {
                Some(closed) => {
                    // Let go of our lock for sled's own, as below.
                    drop(lock);
                    (closed, OpenCheck::AfterCleanShutdown)
                }
                None => {
                    let copy = ScratchCopy::of(dir)?;
                    let db = open_sled(copy.path(), dir, cache_bytes)?;
                    let summary = check(&db, dir)?;
                    ((summary.store_id, summary.next_seq), OpenCheck::Deep)
                }
            }
        };
        // Between the check and this open another process could take the
        // store: sled's own lock refuses us then. One that opened and closed
        // it in between ran this same check; comparing the meta catches a
        // store that is no longer the one checked (or a marker left by
        // another store).
        let db = open_sled(dir, dir, cache_bytes)?;
        if store_meta(&db, dir)? != checked {
            return Err(StoreError::Io(format!(
                "the store in {} changed while it was being checked; open it again",
                dir.display()
            )));
        }
        let (store_id, next_seq) = checked;
        SledStore::new(dir, db, store_id, next_seq, how)
    }

    /// The deep check of the store in `dir`, on a scratch copy, leaving the
    /// store as it was (`presence-sync check --store`). A store in use by
    /// another process (the running daemon) is refused with
    /// [`StoreError::Locked`]; a missing or empty directory is `Ok(None)`.
    pub fn check_dir(dir: &Path) -> Result<Option<StoreSummary>, StoreError> {
        if is_empty_or_missing(dir)? {
            return Ok(None);
        }
        check_sled_files(dir)?;
        let _lock = lock_store(dir)?;
        let copy = ScratchCopy::of(dir)?;
        let db = open_sled(copy.path(), dir, DEFAULT_CACHE_BYTES)?;
        let mut summary = check(&db, dir)?;
        summary.closed_cleanly = marker::is_present(dir);
        Ok(Some(summary))
    }

    fn new(
        dir: &Path,
        db: sled::Db,
        store_id: String,
        next_seq: u64,
        opened: OpenCheck,
    ) -> Result<SledStore, StoreError> {
        Ok(SledStore {
            dir: dir.to_path_buf(),
            log_file: open_log_file(dir)?,
            db,
            store_id,
            next_seq: Mutex::new(next_seq),
            opened,
            marked_clean: AtomicBool::new(false),
            inbox: Mutex::new(()),
        })
    }
    /// Everything a start restores, read once: the agents and the rest of
    /// [`Loaded`], and the stored directory. sled then is opened again, so
    /// the pages that reading took (every agent and every stored user) do
    /// not stay in its cache: sled evicts only as later reads fill a cache
    /// shard's queue, and frees what it evicted later still, so one full
    /// read leaves far more than `cache_bytes` in memory for a long while.
    /// A new store has nothing to read and is kept as it is.
    pub fn load_for_start(
        self,
        cache_bytes: u64,
    ) -> Result<(SledStore, Loaded, Option<StoredDirectory>), StoreError> {
        let loaded = self.load()?;
        let directory = self.read_directory()?;
        if self.opened == OpenCheck::Created {
            return Ok((self, loaded, directory));
        }
        let SledStore {
            dir,
            db,
            store_id,
            next_seq,
            opened,
            marked_clean,
            log_file,
            inbox: _,
        } = self;
        // Nothing was written since the open; whatever sled still holds to
        // write goes to disk before it is let go.
        db.flush().map_err(|e| sled_error(&dir, e))?;
        drop(db);
        drop(log_file);
        let db = reopen_sled(&dir, cache_bytes)?;
        let next_seq = next_seq.into_inner().unwrap_or_else(|e| e.into_inner());
        let store = SledStore::new(&dir, db, store_id, next_seq, opened)?;
        store.marked_clean.store(
            marked_clean.into_inner(),
            std::sync::atomic::Ordering::SeqCst,
        );
        Ok((store, loaded, directory))
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
        let db = open_sled(copy.path(), dir, DEFAULT_CACHE_BYTES)?;
        let agents = db
            .range(AGENT.to_vec()..keys::family_end(AGENT))
            .map(|item| {
                let (key, value) = item.map_err(|e| sled_error(dir, e))?;
                decode(dir, &key, &value)
            })
            .collect::<Result<Vec<AgentRecord>, StoreError>>()?;
        Ok(Some(agents))
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
    let db = open_sled(dir, dir, DEFAULT_CACHE_BYTES)?;
    db.apply_batch(records).map_err(|e| sled_error(dir, e))?;
    make_durable(&db, &open_log_file(dir)?, dir)?;
    sync_dir(dir)
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

/// What may sit in the state directory beside the store: the service
/// accounts' token folder (`presence-sync login` may write it before the
/// daemon first starts). A store is created next to it, and its deep
/// check's scratch copy leaves it out.
const BESIDE_THE_STORE: &[&str] = &[crate::accounts::vault::ACCOUNTS_DIR, REPLACED_DIR];

/// Where [`SledStore::move_aside`] keeps stores a cluster's snapshot
/// replaced, one folder each, named by the time.
pub const REPLACED_DIR: &str = "replaced";

fn beside_the_store(name: &std::ffi::OsStr) -> bool {
    BESIDE_THE_STORE
        .iter()
        .any(|b| name == std::ffi::OsStr::new(b))
}

impl SledStore {
    /// Moves the store in `dir` (not the folders kept beside it) into
    /// `dir/replaced/<time>/`, leaving `dir` ready for a new store, and
    /// returns where it went. Nothing is deleted: an admin can look at it,
    /// `export` it, or remove it. The store must not be open.
    pub fn move_aside(
        dir: &Path,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<PathBuf, StoreError> {
        let io_error = |what: &str, path: &Path, e: io::Error| {
            StoreError::Io(format!("{what} {}: {e}", path.display()))
        };
        let target = dir
            .join(REPLACED_DIR)
            .join(now.format("%Y%m%dT%H%M%S%.3fZ").to_string());
        let entries: Vec<_> = match fs::read_dir(dir) {
            Ok(entries) => entries
                .flatten()
                .filter(|entry| !beside_the_store(&entry.file_name()))
                .collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(target),
            Err(e) => return Err(io_error("reading", dir, e)),
        };
        create_private_dir(&target)?;
        for entry in entries {
            let to = target.join(entry.file_name());
            fs::rename(entry.path(), &to).map_err(|e| io_error("moving", &entry.path(), e))?;
        }
        Ok(target)
    }
}

pub(crate) fn is_empty_or_missing(dir: &Path) -> Result<bool, StoreError> {
    match fs::read_dir(dir) {
        Ok(entries) => Ok(entries
            .flatten()
            .all(|entry| beside_the_store(&entry.file_name()))),
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
        if beside_the_store(&entry.file_name()) {
            continue;
        }
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
fn open_sled(path: &Path, dir: &Path, cache_bytes: u64) -> Result<sled::Db, StoreError> {
    let config = sled::Config::new().path(path).cache_capacity(cache_bytes);
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

/// Opens sled on `dir` again just after this process let go of it: sled
/// 0.34 closes its files from background threads after `Db` is dropped
/// (see [`lock_store`]), so a refusal is retried for a short while.
fn reopen_sled(dir: &Path, cache_bytes: u64) -> Result<sled::Db, StoreError> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match open_sled(dir, dir, cache_bytes) {
            Ok(db) => return Ok(db),
            Err(_) if Instant::now() < deadline => std::thread::sleep(LOCK_RETRY),
            Err(e) => return Err(e),
        }
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
