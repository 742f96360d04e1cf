//! The active node's store: every commit is appended to the commit log
//! first, then committed to the local sled store together with its log
//! position, one commit at a time; the caller hears back after both.
//!
//! A commit encodes its batch as a [`Record::Step`], decodes it again and
//! commits what was decoded: the active's sled then holds exactly what every
//! standby will apply from the same bytes (the same event seqs, ids and
//! values), and a batch that would not read back is refused before it
//! reaches the log. A step larger than the log takes
//! ([`ReplicatedStore::with_max_record_bytes`]) comes in parts
//! ([`Record::StepPart`]), committed whole with the last one. Directory
//! changes go the same way as [`Record::Directory`], cut into several
//! records when one would be too large (see [`super::record`]). Everything else (reads, pruning, the clean-shutdown
//! mark, the notification inbox) is the local store's: pruning runs on each
//! node by the same retention, and the inbox is not replicated (a node that
//! takes over reconciles by polling).
//!
//! The append says which position it follows. When the log has moved on
//! ([`LogError::Fenced`]: another node took over) nothing is committed, the
//! store turns [`ReplicaState::Fenced`] and refuses every later commit.
//! When the log does not answer ([`LogError::Unavailable`]) nothing is
//! committed here either, but the record may be in the log: the store no
//! longer knows the log's position and turns [`ReplicaState::Unsure`],
//! refusing every later commit too. Either way the node steps down and
//! catches up as a standby ([`super::apply`]), from its own sled's position.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use super::apply::commit_record;
use super::record::{self, Record};
use super::{CommitLog, LogError, Position, SnapshotMeta, snapshot};
use crate::events::Event;
use crate::store::{
    Batch, DirectoryBatch, InboxItem, InboxKind, Loaded, MetaKey, SledStore, Store, StoreError,
    StoredDirectory,
};

/// Whether the store still commits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicaState {
    /// Appending and committing.
    Active,
    /// An append was refused because another node appended since: this
    /// node is no longer the active one. Nothing more is committed.
    Fenced,
    /// An append's outcome is unknown (the log did not answer, or the local
    /// commit failed after the log took the record): this node no longer
    /// knows the log's position. Nothing more is committed.
    Unsure,
}

/// The largest record appended unless [`ReplicatedStore::with_max_record_bytes`]
/// says otherwise: NATS's default `max_payload` (1 MiB) less room for the
/// message's headers.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1024 * 1024 - 4096;

/// The store of the active node in a cluster.
pub struct ReplicatedStore {
    sled: SledStore,
    log: Arc<dyn CommitLog>,
    /// A larger record is refused before it is appended: the log would
    /// refuse it too, but only after the store turned unsure.
    max_record_bytes: usize,
    /// Held for a whole commit (append, then sled); holds the position the
    /// next append follows.
    commit: Mutex<Position>,
    /// The position, for readers that must not wait for an append.
    position: AtomicU64,
    state: watch::Sender<ReplicaState>,
    fenced: watch::Sender<bool>,
}

impl std::fmt::Debug for ReplicatedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicatedStore")
            .field("sled", &self.sled)
            .field("position", &self.position())
            .field("state", &*self.state.borrow())
            .finish_non_exhaustive()
    }
}

impl ReplicatedStore {
    /// The store over `sled`, appending to `log` from the position `sled`
    /// holds (0 for a store that never was in a cluster: see
    /// [`ReplicatedStore::genesis`]).
    pub fn new(sled: SledStore, log: Arc<dyn CommitLog>) -> Result<Self, StoreError> {
        let position = sled.log_position()?;
        Ok(ReplicatedStore {
            sled,
            log,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            commit: Mutex::new(position),
            position: AtomicU64::new(position),
            state: watch::Sender::new(ReplicaState::Active),
            fenced: watch::Sender::new(false),
        })
    }

    /// Appends no record larger than `max` bytes: a step or a directory
    /// change that is larger comes in several records, and one that cannot
    /// (a directory user larger than a record) is refused
    /// ([`StoreError::InvalidBatch`], nothing appended, the store still
    /// active). Set it from the NATS server's `max_payload`, less room for
    /// headers.
    pub fn with_max_record_bytes(mut self, max: usize) -> Self {
        self.max_record_bytes = max;
        self
    }

    /// The position of the last record committed here.
    pub fn position(&self) -> Position {
        self.position.load(Ordering::SeqCst)
    }

    pub fn sled(&self) -> &SledStore {
        &self.sled
    }

    /// The local store back, for the node to go on as a standby from it.
    pub fn into_sled(self) -> SledStore {
        self.sled
    }

    /// True once an append was fenced: another node appended since this
    /// one last did.
    pub fn fenced(&self) -> watch::Receiver<bool> {
        self.fenced.subscribe()
    }

    /// Whether the store still commits; anything but
    /// [`ReplicaState::Active`] means the node must step down.
    pub fn state(&self) -> watch::Receiver<ReplicaState> {
        self.state.subscribe()
    }

    /// The active's first act on an empty log: appends
    /// [`Record::Genesis`] (expecting an empty log) and stores its
    /// position. A store already in the log returns its position and
    /// appends nothing; a log that is not empty fences this node.
    pub fn genesis(&self) -> Result<Position, StoreError> {
        let mut position = self.lock();
        if *position > 0 {
            return Ok(*position);
        }
        self.refuse_unless_active()?;
        let prepared = self.prepare(&[Record::Genesis {
            store_id: self.sled.store_id().to_owned(),
        }])?;
        self.append_all(&mut position, prepared)?;
        Ok(*position)
    }

    /// A snapshot of the store as of its position, taken with commits held.
    /// Refused unless the store is still active (a node that stepped down
    /// must not replace the new active's snapshot), and while its position
    /// is in the middle of a step that comes in parts (an append failed
    /// between them, or this node caught up to a part as a standby).
    pub fn snapshot(&self) -> Result<(SnapshotMeta, Vec<u8>), StoreError> {
        let _commits_held = self.lock();
        self.refuse_snapshot_now()?;
        snapshot::take(&self.sled)
    }

    /// [`ReplicatedStore::snapshot`] in a file beside the store, read from
    /// its start ([`snapshot::take_file`]).
    pub fn snapshot_file(&self) -> Result<(SnapshotMeta, std::fs::File), StoreError> {
        let _commits_held = self.lock();
        self.refuse_snapshot_now()?;
        snapshot::take_file(&self.sled)
    }

    fn refuse_snapshot_now(&self) -> Result<(), StoreError> {
        self.refuse_unless_active()?;
        if self.sled.record_parts_pending()? {
            return Err(StoreError::Replication(
                "the store is between the parts of a step; a snapshot waits for the next record"
                    .to_owned(),
            ));
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Position> {
        // The position moves only once a record is both appended and
        // committed, so it is right even if a holder panicked.
        self.commit
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn refuse_if_too_large(&self, bytes: &[u8]) -> Result<(), StoreError> {
        if bytes.len() <= self.max_record_bytes {
            return Ok(());
        }
        Err(StoreError::InvalidBatch(format!(
            "the change is {} bytes as a commit log record, more than the log takes ({} bytes); \
             nothing was committed",
            bytes.len(),
            self.max_record_bytes
        )))
    }

    fn refuse_unless_active(&self) -> Result<(), StoreError> {
        match *self.state.borrow() {
            ReplicaState::Active => Ok(()),
            ReplicaState::Fenced => Err(StoreError::Fenced(
                "another node has appended to the commit log since this one last did; \
                 this node commits nothing more and steps down"
                    .to_owned(),
            )),
            ReplicaState::Unsure => Err(StoreError::Replication(
                "an earlier append to the commit log has no known outcome; this node commits \
                 nothing more until it has caught up with the log as a standby"
                    .to_owned(),
            )),
        }
    }

    fn turn(&self, state: ReplicaState) {
        self.state.send_replace(state);
        if state == ReplicaState::Fenced {
            self.fenced.send_replace(true);
        }
    }

    /// Appends `bytes` after `expected`; any failure changes the state.
    fn append(&self, bytes: &[u8], expected: Position) -> Result<Position, StoreError> {
        match self.log.append(bytes, expected) {
            Ok(new) if Some(new) == expected.checked_add(1) => Ok(new),
            Ok(new) => {
                self.turn(ReplicaState::Unsure);
                Err(StoreError::Replication(format!(
                    "the commit log put the record at position {new}, expected {}",
                    expected.saturating_add(1)
                )))
            }
            Err(e @ LogError::Fenced { .. }) => {
                tracing::warn!(error = %e, "the commit log fenced this node");
                self.turn(ReplicaState::Fenced);
                Err(StoreError::Fenced(e.to_string()))
            }
            Err(e @ LogError::Unavailable(_)) => {
                tracing::warn!(error = %e, "an append to the commit log has no known outcome");
                self.turn(ReplicaState::Unsure);
                Err(StoreError::Replication(e.to_string()))
            }
        }
    }

    /// Encodes `records` and reads them back, before anything is appended:
    /// what is committed here is what the log holds, and a record that
    /// would not read back or fit is refused with nothing appended.
    fn prepare(&self, records: &[Record]) -> Result<Vec<(Vec<u8>, Record)>, StoreError> {
        records
            .iter()
            .map(|record| {
                let bytes = record::encode(record).map_err(refused)?;
                self.refuse_if_too_large(&bytes)?;
                let decoded = record::decode(&bytes).map_err(refused)?;
                Ok((bytes, decoded))
            })
            .collect()
    }

    /// A step as records ready to append: one when it fits, else its
    /// parts ([`record::step_parts`]), which every node puts together and
    /// commits whole with the last part. The step is read back whole
    /// first, so what the parts make is what was encoded.
    fn step_records(&self, batch: Batch) -> Result<Vec<(Vec<u8>, Record)>, StoreError> {
        let store_id = self.sled.store_id().to_owned();
        let step = Record::Step {
            store_id: store_id.clone(),
            batch,
        };
        let bytes = record::encode(&step).map_err(refused)?;
        if bytes.len() <= self.max_record_bytes {
            let decoded = record::decode(&bytes).map_err(refused)?;
            return Ok(vec![(bytes, decoded)]);
        }
        drop(step);
        record::decode(&bytes).map_err(refused)?;
        let parts =
            record::step_parts(&store_id, &bytes, self.max_record_bytes).map_err(refused)?;
        drop(bytes);
        self.prepare(&parts)
    }

    /// Appends and commits the prepared records one by one; the events of
    /// the steps among them. Called with commits held.
    fn append_all(
        &self,
        position: &mut Position,
        prepared: Vec<(Vec<u8>, Record)>,
    ) -> Result<Vec<Event>, StoreError> {
        let mut events = Vec::new();
        for (bytes, record) in prepared {
            let new = self.append(&bytes, *position)?;
            events.extend(self.committed(position, new, |sled| commit_record(sled, record, new))?);
        }
        Ok(events)
    }

    /// A directory change as records that each fit: one when it fits; a
    /// delta round as several (the removes first, the delta link with the
    /// last); a replace as stages of its users, then the replace that
    /// swaps them in.
    fn directory_records(&self, batch: DirectoryBatch) -> Result<Vec<Record>, StoreError> {
        let store_id = self.sled.store_id().to_owned();
        let whole = Record::Directory {
            store_id: store_id.clone(),
            batch,
        };
        let size = record::encode(&whole).map_err(refused)?.len();
        let Record::Directory { batch, .. } = whole else {
            return Err(StoreError::InvalidBatch(
                "a directory change is not a directory record".to_owned(),
            ));
        };
        if size <= self.max_record_bytes {
            return Ok(vec![Record::Directory { store_id, batch }]);
        }
        let envelope = record::encode(&Record::Directory {
            store_id: store_id.clone(),
            batch: DirectoryBatch {
                replace: true,
                delta_link: batch.delta_link.clone(),
                ..DirectoryBatch::default()
            },
        })
        .map_err(refused)?
        .len();
        // Room for the items of one record, with some to spare for separators.
        let budget = self.max_record_bytes.saturating_sub(envelope + 64);
        let DirectoryBatch {
            replace,
            upserts,
            removes,
            delta_link,
        } = batch;
        let user_chunks = chunks(upserts, budget)?;
        let mut records = Vec::new();
        if replace {
            // At least one stage, the first: it empties anything an
            // unfinished replace left staged.
            let mut stages = user_chunks.into_iter();
            let first = stages.next().unwrap_or_default();
            records.push(Record::DirectoryStage {
                store_id: store_id.clone(),
                first: true,
                users: first,
            });
            records.extend(stages.map(|users| Record::DirectoryStage {
                store_id: store_id.clone(),
                first: false,
                users,
            }));
            records.push(Record::StagedDirectory {
                store_id,
                batch: DirectoryBatch {
                    replace: true,
                    upserts: Vec::new(),
                    removes,
                    delta_link,
                },
            });
        } else {
            let batches = chunks(removes, budget)?
                .into_iter()
                .map(|removes| DirectoryBatch {
                    removes,
                    ..DirectoryBatch::default()
                })
                .chain(user_chunks.into_iter().map(|upserts| DirectoryBatch {
                    upserts,
                    ..DirectoryBatch::default()
                }));
            records.extend(batches.map(|batch| Record::Directory {
                store_id: store_id.clone(),
                batch,
            }));
            match records.last_mut() {
                Some(Record::Directory { batch, .. }) => batch.delta_link = delta_link,
                _ => {
                    records.push(Record::Directory {
                        store_id,
                        batch: DirectoryBatch {
                            delta_link,
                            ..DirectoryBatch::default()
                        },
                    });
                }
            }
        }
        Ok(records)
    }

    /// Commits locally what the log now holds at `new`; a failure leaves
    /// the log ahead of the store, so the store turns unsure.
    fn committed<T>(
        &self,
        position: &mut Position,
        new: Position,
        commit: impl FnOnce(&SledStore) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match commit(&self.sled) {
            Ok(value) => {
                *position = new;
                self.position.store(new, Ordering::SeqCst);
                Ok(value)
            }
            Err(e) => {
                tracing::error!(error = %e, position = new, "a record in the commit log could not be committed locally");
                self.turn(ReplicaState::Unsure);
                Err(e)
            }
        }
    }
}

fn refused(e: record::RecordError) -> StoreError {
    StoreError::InvalidBatch(e.to_string())
}

/// `items` in runs whose JSON takes at most `budget` bytes each.
fn chunks<T: serde::Serialize>(items: Vec<T>, budget: usize) -> Result<Vec<Vec<T>>, StoreError> {
    let mut runs: Vec<Vec<T>> = Vec::new();
    let mut current = Vec::new();
    let mut used = 0;
    for item in items {
        let size = serde_json::to_vec(&item)
            .map_err(|e| StoreError::InvalidBatch(e.to_string()))?
            .len()
            + 1;
        if size > budget {
            return Err(StoreError::InvalidBatch(format!(
                "one directory entry takes {size} bytes, more than a commit log record has room for ({budget})"
            )));
        }
        if used + size > budget && !current.is_empty() {
            runs.push(std::mem::take(&mut current));
            used = 0;
        }
        used += size;
        current.push(item);
    }
    if !current.is_empty() {
        runs.push(current);
    }
    Ok(runs)
}

impl Store for ReplicatedStore {
    fn store_id(&self) -> &str {
        self.sled.store_id()
    }

    fn load(&self) -> Result<Loaded, StoreError> {
        self.sled.load()
    }

    fn commit(&self, batch: Batch) -> Result<Vec<Event>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(problem) = batch.problem() {
            return Err(StoreError::InvalidBatch(problem));
        }
        let prepared = self.step_records(batch)?;
        let mut position = self.lock();
        self.refuse_unless_active()?;
        self.append_all(&mut position, prepared)
    }

    fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.sled.events_after(after, limit)
    }

    fn first_seq(&self) -> Result<Option<u64>, StoreError> {
        self.sled.first_seq()
    }

    fn last_seq(&self) -> Result<u64, StoreError> {
        self.sled.last_seq()
    }

    fn meta(&self, key: &MetaKey) -> Result<Option<String>, StoreError> {
        self.sled.meta(key)
    }

    fn prune_events(
        &self,
        before: chrono::DateTime<chrono::Utc>,
        keep_at_least: usize,
    ) -> Result<usize, StoreError> {
        self.sled.prune_events(before, keep_at_least)
    }

    fn directory(&self) -> Result<Option<StoredDirectory>, StoreError> {
        self.sled.directory()
    }

    fn commit_directory(&self, batch: DirectoryBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let records = self.directory_records(batch)?;
        let prepared = self.prepare(&records)?;
        drop(records);
        let mut position = self.lock();
        self.refuse_unless_active()?;
        self.append_all(&mut position, prepared).map(|_| ())
    }

    fn mark_clean_shutdown(&self) -> Result<(), StoreError> {
        self.sled.mark_clean_shutdown()
    }

    fn append_inbox(
        &self,
        kind: InboxKind,
        received_at: chrono::DateTime<chrono::Utc>,
        body: &[u8],
    ) -> Result<u64, StoreError> {
        self.sled.append_inbox(kind, received_at, body)
    }

    fn inbox(&self, after: u64, limit: usize) -> Result<Vec<InboxItem>, StoreError> {
        self.sled.inbox(after, limit)
    }

    fn ack_inbox(&self, upto: u64) -> Result<usize, StoreError> {
        self.sled.ack_inbox(upto)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::cluster::apply::{Applied, apply};
    use crate::cluster::memory_log::MemoryLog;
    use crate::store::testing::{agent, any_batch, any_directory_batch, batch};
    use crate::store::{DirectoryParts, export};

    /// An active over a new sled and a new log, after its genesis.
    struct Cluster {
        _dirs: tempfile::TempDir,
        log: Arc<MemoryLog>,
        active: ReplicatedStore,
    }

    fn cluster() -> Cluster {
        let dirs = tempfile::tempdir().unwrap();
        let log = MemoryLog::new();
        let sled = SledStore::open(&dirs.path().join("active")).unwrap();
        let active = ReplicatedStore::new(sled, log.clone()).unwrap();
        assert_eq!(active.genesis().unwrap(), 1);
        Cluster {
            _dirs: dirs,
            log,
            active,
        }
    }

    impl Cluster {
        /// A new standby: the active's snapshot restored into a new directory.
        fn standby(&self, name: &str) -> SledStore {
            let (meta, bytes) = self.active.snapshot().unwrap();
            let dir = self._dirs.path().join(name);
            snapshot::restore(&dir, &meta, &bytes).unwrap();
            SledStore::open(&dir).unwrap()
        }

        /// Applies every record the log keeps to `standby`.
        fn catch_up(&self, standby: &SledStore) {
            for (position, bytes) in self.log.records() {
                let expected = if position <= standby.log_position().unwrap() {
                    Applied::AlreadyHad
                } else {
                    Applied::Applied
                };
                assert_eq!(apply(standby, position, &bytes).unwrap(), expected);
            }
        }
    }

    fn exported(sled: &SledStore) -> String {
        let mut out = Vec::new();
        export(sled, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn assert_same(active: &SledStore, standby: &SledStore) {
        assert_eq!(exported(standby), exported(active));
        assert_eq!(
            standby.directory_parts().unwrap(),
            active.directory_parts().unwrap()
        );
        assert_eq!(standby.store_id(), active.store_id());
    }

    #[derive(Clone, Debug)]
    enum Op {
        Step(Batch),
        Directory(DirectoryBatch),
    }

    fn any_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => any_batch().prop_map(Op::Step),
            1 => any_directory_batch().prop_map(Op::Directory),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// A standby applying the log ends byte for byte where the active
        /// is: the same records, events with the same seqs and ids, the
        /// same directory, the same log position.
        #[test]
        fn a_standby_applying_the_log_ends_where_the_active_is(
            ops in prop::collection::vec(any_op(), 0..10),
        ) {
            let c = cluster();
            let standby = c.standby("standby");
            let mut committed = Vec::new();
            for op in ops {
                match op {
                    Op::Step(batch) => committed.extend(c.active.commit(batch).unwrap()),
                    Op::Directory(batch) => c.active.commit_directory(batch).unwrap(),
                }
            }
            c.catch_up(&standby);
            assert_same(c.active.sled(), &standby);
            prop_assert_eq!(standby.log_position().unwrap(), c.log.last());
            prop_assert_eq!(c.active.position(), c.log.last());
            let position_line = format!(
                r#"{{"kind":"meta","key":"log_position","value":"{}"}}"#,
                c.log.last()
            );
            prop_assert!(exported(&standby).contains(&position_line));
            // What the active's callers heard is what the standby holds.
            prop_assert_eq!(standby.events_after(0, usize::MAX).unwrap(), committed);
        }
    }

    #[test]
    fn a_standby_from_a_later_snapshot_catches_up_with_the_rest_of_the_log() {
        let c = cluster();
        let early = c.standby("early");
        for n in 0..6 {
            c.active.commit(batch(&format!("a{n}"), n, 2, 100)).unwrap();
        }
        c.active
            .commit_directory(DirectoryBatch {
                replace: true,
                delta_link: Some("https://graph.example/d".into()),
                ..DirectoryBatch::default()
            })
            .unwrap();
        let late_snapshot = c.active.snapshot().unwrap();
        assert_eq!(late_snapshot.0.position, 8);
        for n in 0..5 {
            c.active.commit(batch("a1", 10 + n, 1, 200)).unwrap();
        }
        // The log forgets what the snapshot holds.
        c.log.forget_before(late_snapshot.0.position + 1);
        let dir = c._dirs.path().join("late");
        snapshot::restore(&dir, &late_snapshot.0, &late_snapshot.1).unwrap();
        let late = SledStore::open(&dir).unwrap();
        c.catch_up(&late);
        assert_same(c.active.sled(), &late);
        assert_eq!(late.last_seq().unwrap(), 17);
        // A standby behind the forgotten records sees a gap, and needs the
        // snapshot.
        let (first, last) = c.log.bounds();
        assert_eq!((first, last), (9, 13));
        let (_, bytes) = &c.log.read(first, 1)[0];
        assert!(matches!(
            apply(&early, first, bytes),
            Err(crate::cluster::apply::ApplyError::Gap { have: 1, got: 9 })
        ));
        assert_eq!(early.log_position().unwrap(), 1);
    }

    #[test]
    fn a_fenced_store_commits_nothing_more() {
        let c = cluster();
        c.active.commit(batch("a1", 1, 1, 100)).unwrap();
        let fenced = c.active.fenced();
        let before = exported(c.active.sled());
        let successor = c.log.append_as_other(b"a successor's record");
        assert_eq!(successor, 3);
        assert!(matches!(
            c.active.commit(batch("a2", 1, 1, 100)),
            Err(StoreError::Fenced(_))
        ));
        assert!(*fenced.borrow());
        assert_eq!(*c.active.state().borrow(), ReplicaState::Fenced);
        assert_eq!(exported(c.active.sled()), before);
        assert_eq!(c.active.position(), 2);
        // Later commits are refused without reaching the log.
        c.log
            .fail_next(LogError::Unavailable("must not be asked".into()));
        assert!(matches!(
            c.active.commit(batch("a3", 1, 1, 100)),
            Err(StoreError::Fenced(_))
        ));
        assert!(matches!(
            c.active.commit_directory(DirectoryBatch {
                replace: true,
                ..DirectoryBatch::default()
            }),
            Err(StoreError::Fenced(_))
        ));
        assert_eq!(c.log.last(), 3);
        assert_eq!(exported(c.active.sled()), before);
        assert_eq!(c.active.sled().log_position().unwrap(), 2);
    }

    #[test]
    fn an_unanswered_append_commits_nothing_and_the_store_turns_unsure() {
        let c = cluster();
        let before = exported(c.active.sled());
        c.log.fail_next(LogError::Unavailable("no answer".into()));
        assert!(matches!(
            c.active.commit(batch("a1", 1, 1, 100)),
            Err(StoreError::Replication(message)) if message.contains("no answer")
        ));
        assert_eq!(*c.active.state().borrow(), ReplicaState::Unsure);
        assert!(!*c.active.fenced().borrow(), "unsure is not fenced");
        assert_eq!(exported(c.active.sled()), before);
        assert!(matches!(
            c.active.commit(batch("a1", 1, 1, 100)),
            Err(StoreError::Replication(_))
        ));
        assert_eq!(c.log.last(), 1, "nothing reached the log");
    }

    #[test]
    fn a_record_whose_ack_was_lost_is_applied_when_the_node_catches_up() {
        let c = cluster();
        let standby = c.standby("standby");
        c.active.commit(batch("a1", 1, 2, 100)).unwrap();
        c.log.lose_next_ack();
        assert!(matches!(
            c.active.commit(batch("a2", 1, 1, 100)),
            Err(StoreError::Replication(_))
        ));
        assert_eq!(c.log.last(), 3, "the record is in the log");
        assert_eq!(c.active.sled().log_position().unwrap(), 2, "not here");
        assert_eq!(*c.active.state().borrow(), ReplicaState::Unsure);
        c.catch_up(&standby);
        // The node steps down and catches up from its own sled.
        let Cluster {
            _dirs, log, active, ..
        } = c;
        let old_active = active.into_sled();
        assert_eq!(
            apply(&old_active, 3, &log.read(3, 1)[0].1).unwrap(),
            Applied::Applied
        );
        assert_same(&old_active, &standby);
        assert_eq!(old_active.last_seq().unwrap(), 3);
    }

    #[test]
    fn a_local_commit_failing_after_the_append_turns_the_store_unsure() {
        let c = cluster();
        // The sled moves on behind the store's back (only a misuse can do
        // this): the record appended next cannot be committed here.
        c.active.sled().commit_at(Batch::default(), 2).unwrap();
        assert!(matches!(
            c.active.commit(batch("a1", 1, 1, 100)),
            Err(StoreError::Replication(_))
        ));
        assert_eq!(c.log.last(), 2);
        assert_eq!(*c.active.state().borrow(), ReplicaState::Unsure);
        assert_eq!(c.active.position(), 1);
    }

    #[test]
    fn refused_and_empty_batches_never_reach_the_log() {
        let c = cluster();
        let mut wrong = batch("a1", 1, 1, 0);
        wrong.agents.push(("a2".into(), Some(agent("a3", 1))));
        assert!(matches!(
            c.active.commit(wrong),
            Err(StoreError::InvalidBatch(_))
        ));
        assert!(matches!(
            c.active.commit(Batch {
                meta: vec![(MetaKey::LogPosition, Some("9".into()))],
                ..Batch::default()
            }),
            Err(StoreError::InvalidBatch(_))
        ));
        assert!(c.active.commit(Batch::default()).unwrap().is_empty());
        c.active
            .commit_directory(DirectoryBatch::default())
            .unwrap();
        assert_eq!(c.log.last(), 1);
        assert_eq!(*c.active.state().borrow(), ReplicaState::Active);
        assert_eq!(c.active.commit(batch("a1", 1, 1, 0)).unwrap()[0].seq, 1);
        assert_eq!(c.log.last(), 2);
    }

    #[test]
    fn a_directory_user_larger_than_a_record_is_refused_before_the_append() {
        let c = cluster();
        let active = c.active.with_max_record_bytes(2048);
        active.commit(batch("a1", 1, 1, 0)).unwrap();
        let mut huge = directory_user(0);
        huge.upn = Some("x".repeat(4096));
        assert!(matches!(
            active.commit_directory(DirectoryBatch {
                upserts: vec![huge],
                ..DirectoryBatch::default()
            }),
            Err(StoreError::InvalidBatch(_))
        ));
        assert_eq!(c.log.last(), 2);
        assert_eq!(*active.state().borrow(), ReplicaState::Active);
        active.commit(batch("a1", 2, 1, 0)).unwrap();
        assert_eq!(c.log.last(), 3);
    }

    /// A step of many agents: more than one record of `max` bytes holds.
    fn large_step(agents: usize) -> Batch {
        let mut large = Batch::default();
        for n in 0..agents {
            let step = batch(&format!("agent-{n:04}"), n as u64, 2, 100);
            large.agents.extend(step.agents);
            large.events.extend(step.events);
            large.outbox.extend(step.outbox);
        }
        large
            .meta
            .push((MetaKey::DeltaLink, Some("\"quoted\" é ✓ \\".repeat(300))));
        large
    }

    #[test]
    fn a_step_larger_than_a_record_comes_in_parts_and_is_committed_whole() {
        let c = cluster();
        let standby = c.standby("standby");
        let active = c.active.with_max_record_bytes(2048);
        let first = active.commit(batch("a1", 1, 1, 0)).unwrap().len();
        let step = large_step(40);
        let expected_events = step.events.len();
        let events = active.commit(step).unwrap();
        assert_eq!(events.len(), expected_events);
        let kinds: Vec<&str> = c
            .log
            .read(3, usize::MAX)
            .iter()
            .map(|(_, bytes)| record::decode(bytes).unwrap().kind())
            .collect();
        assert!(kinds.len() > 3, "{kinds:?}");
        assert!(kinds.iter().all(|k| *k == "step_part"), "{kinds:?}");
        for (_, bytes) in c.log.records() {
            assert!(bytes.len() <= 2048);
        }
        // A standby applying the parts one at a time shows nothing of the
        // step until its last part, then all of it.
        let records = c.log.records();
        let (last, parts) = records.split_last().unwrap();
        let mut before = None;
        for (position, bytes) in parts {
            apply(&standby, *position, bytes).unwrap();
            match position {
                1 => {}
                2 => before = Some(exported(&standby)),
                _ => assert_eq!(standby.load().unwrap().agents.len(), 1),
            }
        }
        assert_eq!(standby.log_position().unwrap(), last.0 - 1);
        // Only the position moved.
        let position_line = |text: &str| {
            text.lines()
                .filter(|line| !line.contains(r#""key":"log_position""#))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(
            position_line(&exported(&standby)),
            position_line(&before.unwrap())
        );
        apply(&standby, last.0, &last.1).unwrap();
        assert_same(active.sled(), &standby);
        assert_eq!(
            standby.events_after(0, usize::MAX).unwrap().len(),
            first + expected_events
        );
        assert_eq!(*active.state().borrow(), ReplicaState::Active);
        active.commit(batch("a1", 2, 1, 0)).unwrap();
        let (position, bytes) = c.log.records().pop().unwrap();
        apply(&standby, position, &bytes).unwrap();
        assert_same(active.sled(), &standby);
    }

    #[test]
    fn a_step_cut_short_is_never_applied_and_the_next_one_goes_on() {
        let SilentCluster {
            dirs: _dirs,
            log,
            active,
            standby,
        } = silent_at_5();
        // Parts 2 to 4 are appended, the fifth goes unanswered.
        assert!(matches!(
            active.commit(large_step(20)),
            Err(StoreError::Replication(_))
        ));
        assert_eq!(*active.state().borrow(), ReplicaState::Unsure);
        for (position, bytes) in log.records() {
            apply(&standby, position, &bytes).unwrap();
        }
        assert_eq!(standby.log_position().unwrap(), 4);
        assert!(standby.load().unwrap().agents.is_empty());
        assert_eq!(standby.last_seq().unwrap(), 0);
        // Another node's step follows: applied, and the parts left never
        // make a record with it.
        let next = record::encode(&Record::Step {
            store_id: standby.store_id().to_owned(),
            batch: batch("a9", 1, 1, 0),
        })
        .unwrap();
        let position = log.append_as_other(&next);
        assert_eq!(apply(&standby, position, &next).unwrap(), Applied::Applied);
        assert_eq!(standby.load().unwrap().agents.len(), 1);
        // A last part that does not follow staged parts is refused.
        let stray = record::encode(&Record::StepPart {
            store_id: standby.store_id().to_owned(),
            first: false,
            last: true,
            data: "{}".into(),
        })
        .unwrap();
        let position = log.append_as_other(&stray);
        assert!(apply(&standby, position, &stray).is_err());
        assert_eq!(standby.log_position().unwrap(), position - 1);
    }

    fn directory_user(n: usize) -> crate::store::StoredUser {
        crate::store::StoredUser {
            id: format!("user-{n}"),
            upn: Some(format!("user-{n}@contoso.example")),
            mail: None,
            business_phones: vec![],
            mobile_phone: None,
            teams: None,
            teams_phone: None,
        }
    }

    #[test]
    fn a_directory_change_larger_than_a_record_comes_in_several() {
        let c = cluster();
        let standby = c.standby("standby");
        let active = c.active.with_max_record_bytes(2048);
        active
            .commit_directory(DirectoryBatch {
                replace: true,
                upserts: (0..10).map(directory_user).collect(),
                removes: vec![],
                delta_link: Some("https://graph.example/d1".into()),
            })
            .unwrap();
        assert_eq!(c.log.last(), 2, "a small replace is one record");
        // A full read of 60 users: stages, then the replace.
        active
            .commit_directory(DirectoryBatch {
                replace: true,
                upserts: (5..65).map(directory_user).collect(),
                removes: vec!["user-6".into()],
                delta_link: Some("https://graph.example/d2".into()),
            })
            .unwrap();
        let kinds = |from: Position| -> Vec<&'static str> {
            c.log
                .read(from, usize::MAX)
                .iter()
                .map(|(_, bytes)| record::decode(bytes).unwrap().kind())
                .collect()
        };
        let full_read = kinds(3);
        assert!(full_read.len() >= 3, "{full_read:?}");
        assert_eq!(full_read[0], "directory_stage");
        assert_eq!(full_read.last(), Some(&"staged_directory"));
        for (_, bytes) in c.log.records() {
            assert!(bytes.len() <= 2048);
        }
        let directory = active.directory().unwrap().unwrap();
        let mut ids: Vec<String> = directory.users.iter().map(|u| u.id.clone()).collect();
        ids.sort();
        let mut expected: Vec<String> = (5..65).map(|n| format!("user-{n}")).collect();
        expected.sort();
        assert_eq!(
            ids, expected,
            "the upsert of user-6 wins over its remove, as in one batch"
        );
        assert_eq!(
            directory.delta_link.as_deref(),
            Some("https://graph.example/d2")
        );
        // A delta round too large: several records, the link with the last.
        let before = c.log.last();
        active
            .commit_directory(DirectoryBatch {
                replace: false,
                upserts: (100..150).map(directory_user).collect(),
                removes: (5..35).map(|n| format!("USER-{n}")).collect(),
                delta_link: Some("https://graph.example/d3".into()),
            })
            .unwrap();
        let delta = kinds(before + 1);
        assert!(delta.len() > 1 && delta.iter().all(|k| *k == "directory"));
        let directory = active.directory().unwrap().unwrap();
        assert_eq!(directory.users.len(), 80);
        assert_eq!(
            directory.delta_link.as_deref(),
            Some("https://graph.example/d3")
        );
        for (position, bytes) in c.log.records() {
            apply(&standby, position, &bytes).unwrap();
        }
        assert_same(active.sled(), &standby);
        assert_eq!(active.sled().directory_parts().unwrap().staged, vec![]);
    }

    #[test]
    fn no_snapshot_is_taken_between_the_parts_of_a_step() {
        let SilentCluster {
            dirs: _dirs,
            log,
            active,
            standby,
        } = silent_at_5();
        assert!(active.commit(large_step(20)).is_err());
        // The node whose append went unanswered takes no snapshot.
        assert!(matches!(
            active.snapshot_file(),
            Err(StoreError::Replication(_))
        ));
        for (position, bytes) in log.records() {
            apply(&standby, position, &bytes).unwrap();
        }
        assert!(standby.record_parts_pending().unwrap());
        // Made active with parts staged at its position, it takes none
        // until its next record.
        let promoted = ReplicatedStore::new(standby, log.clone()).unwrap();
        assert!(matches!(
            promoted.snapshot_file(),
            Err(StoreError::Replication(reason)) if reason.contains("between the parts")
        ));
        promoted.commit(batch("a1", 1, 1, 0)).unwrap();
        assert!(!promoted.sled().record_parts_pending().unwrap());
        let (meta, _) = promoted.snapshot().unwrap();
        assert_eq!(meta.position, 5);
    }

    /// A log that answers nothing for the record at one position.
    struct SilentAt {
        log: Arc<MemoryLog>,
        at: Position,
    }

    impl CommitLog for SilentAt {
        fn append(&self, record: &[u8], expected_last: Position) -> Result<Position, LogError> {
            if expected_last + 1 == self.at {
                return Err(LogError::Unavailable("silent".into()));
            }
            self.log.append(record, expected_last)
        }
    }

    /// An active whose log answers nothing for position 5, records of at
    /// most 1 KiB, after its genesis; and a standby from its snapshot.
    struct SilentCluster {
        dirs: tempfile::TempDir,
        log: Arc<MemoryLog>,
        active: ReplicatedStore,
        standby: SledStore,
    }

    fn silent_at_5() -> SilentCluster {
        let dirs = tempfile::tempdir().unwrap();
        let log = MemoryLog::new();
        let silent = Arc::new(SilentAt {
            log: log.clone(),
            at: 5,
        });
        let sled = SledStore::open(&dirs.path().join("active")).unwrap();
        let active = ReplicatedStore::new(sled, silent)
            .unwrap()
            .with_max_record_bytes(1024);
        active.genesis().unwrap();
        let (meta, bytes) = active.snapshot().unwrap();
        snapshot::restore(&dirs.path().join("standby"), &meta, &bytes).unwrap();
        let standby = SledStore::open(&dirs.path().join("standby")).unwrap();
        SilentCluster {
            dirs,
            log,
            active,
            standby,
        }
    }

    #[test]
    fn a_replace_cut_short_shows_nothing_of_itself_until_its_last_record() {
        let SilentCluster {
            dirs,
            log,
            active,
            standby,
        } = silent_at_5();
        let old = DirectoryBatch {
            replace: true,
            upserts: (0..3).map(directory_user).collect(),
            removes: vec![],
            delta_link: Some("https://graph.example/old".into()),
        };
        active.commit_directory(old).unwrap();
        // Records 3 and 4 stage the users; the replace, 5, goes unanswered.
        let new = DirectoryBatch {
            replace: true,
            upserts: (10..40).map(directory_user).collect(),
            removes: vec![],
            delta_link: Some("https://graph.example/new".into()),
        };
        assert!(matches!(
            active.commit_directory(new.clone()),
            Err(StoreError::Replication(_))
        ));
        assert_eq!(*active.state().borrow(), ReplicaState::Unsure);
        let shown = active.directory().unwrap();
        for (position, bytes) in log.records() {
            apply(&standby, position, &bytes).unwrap();
        }
        assert_eq!(standby.directory().unwrap(), shown);
        assert_eq!(
            shown.as_ref().and_then(|d| d.delta_link.as_deref()),
            Some("https://graph.example/old")
        );
        let staged: Vec<&str> = log
            .read(3, usize::MAX)
            .iter()
            .map(|(_, bytes)| record::decode(bytes).unwrap().kind())
            .collect();
        assert_eq!(staged, ["directory_stage", "directory_stage"]);
        assert_eq!(standby.directory_parts().unwrap().staged.len(), 30);
        // A snapshot taken now carries the stage; a node restored from it
        // and one that applied the log agree once the replace is finished.
        let (meta, bytes) = snapshot::take(&standby).unwrap();
        snapshot::restore(&dirs.path().join("restored"), &meta, &bytes).unwrap();
        let restored = SledStore::open(&dirs.path().join("restored")).unwrap();
        assert_eq!(
            restored.directory_parts().unwrap(),
            standby.directory_parts().unwrap()
        );
        let finish = record::encode(&Record::StagedDirectory {
            store_id: standby.store_id().to_owned(),
            batch: DirectoryBatch {
                upserts: vec![],
                ..new
            },
        })
        .unwrap();
        let position = log.append_as_other(&finish);
        for store in [&standby, &restored] {
            assert_eq!(apply(store, position, &finish).unwrap(), Applied::Applied);
            let directory = store.directory().unwrap().unwrap();
            assert_eq!(
                directory.delta_link.as_deref(),
                Some("https://graph.example/new")
            );
            assert_eq!(store.directory_parts().unwrap().staged, vec![]);
        }
        assert_same(&standby, &restored);
        // The successor's replace took the staged users: the new directory.
        let mut ids: Vec<String> = standby
            .directory()
            .unwrap()
            .unwrap()
            .users
            .into_iter()
            .map(|u| u.id)
            .collect();
        ids.sort();
        let mut expected: Vec<String> = (10..40).map(|n| format!("user-{n}")).collect();
        expected.sort();
        assert_eq!(ids, expected);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]

        /// Steps and directory changes cut into records that fit a small
        /// log leave the store that whole records leave, on the active and
        /// its standby, and the active's callers hear the same events.
        #[test]
        fn a_store_in_small_records_is_the_same_store(
            ops in prop::collection::vec(any_op(), 1..8),
        ) {
            let whole = cluster();
            let small = cluster();
            let standby = small.standby("standby");
            let small_active = small.active.with_max_record_bytes(400);
            // The two stores differ by their ids and log positions only.
            let small_id = small_active.store_id().to_owned();
            let whole_id = whole.active.store_id().to_owned();
            let same = |text: String, id: &str, log: &MemoryLog| {
                text.replace(id, "STORE").replace(
                    &format!(r#""key":"log_position","value":"{}""#, log.last()),
                    "POSITION",
                )
            };
            for op in ops {
                match op {
                    Op::Step(batch) => {
                        let heard = small_active.commit(batch.clone()).unwrap();
                        let expected = whole.active.commit(batch).unwrap();
                        prop_assert_eq!(
                            same(format!("{heard:?}"), &small_id, &small.log),
                            same(format!("{expected:?}"), &whole_id, &whole.log)
                        );
                    }
                    Op::Directory(batch) => {
                        whole.active.commit_directory(batch.clone()).unwrap();
                        small_active.commit_directory(batch).unwrap();
                    }
                }
            }
            prop_assert_eq!(
                same(exported(small_active.sled()), &small_id, &small.log),
                same(exported(whole.active.sled()), &whole_id, &whole.log)
            );
            prop_assert_eq!(small_active.directory().unwrap(), whole.active.directory().unwrap());
            for (position, bytes) in small.log.records() {
                apply(&standby, position, &bytes).unwrap();
            }
            assert_same(small_active.sled(), &standby);
        }

        /// Directory changes cut into records that fit a small log leave
        /// the same directory as whole ones, on the active and its standby.
        #[test]
        fn a_directory_in_small_records_is_the_same_directory(
            changes in prop::collection::vec(any_directory_batch(), 1..6),
        ) {
            let whole = cluster();
            let small = cluster();
            let standby = small.standby("standby");
            let small_active = small.active.with_max_record_bytes(640);
            for change in changes {
                whole.active.commit_directory(change.clone()).unwrap();
                small_active.commit_directory(change).unwrap();
            }
            let mut expected = whole.active.sled().directory_parts().unwrap();
            expected.staged.clear();
            let mut got = small_active.sled().directory_parts().unwrap();
            got.staged.clear();
            prop_assert_eq!(got, expected);
            prop_assert_eq!(small_active.directory().unwrap(), whole.active.directory().unwrap());
            for (position, bytes) in small.log.records() {
                apply(&standby, position, &bytes).unwrap();
            }
            assert_same(small_active.sled(), &standby);
        }
    }

    #[test]
    fn genesis_happens_once_and_only_on_an_empty_log() {
        let c = cluster();
        assert_eq!(c.active.genesis().unwrap(), 1);
        assert_eq!(c.log.last(), 1);
        assert_eq!(
            c.active.meta(&MetaKey::LogPosition).unwrap().as_deref(),
            Some("1")
        );
        let Ok(crate::cluster::record::Record::Genesis { store_id }) =
            crate::cluster::record::decode(&c.log.records()[0].1)
        else {
            panic!("the first record is not a genesis");
        };
        assert_eq!(store_id, c.active.store_id());
        // A second node with a store of its own cannot start the same log.
        let other_dir = tempfile::tempdir().unwrap();
        let other = ReplicatedStore::new(SledStore::open(other_dir.path()).unwrap(), c.log.clone())
            .unwrap();
        assert!(matches!(other.genesis(), Err(StoreError::Fenced(_))));
        assert!(*other.fenced().borrow());
        assert_eq!(other.sled().log_position().unwrap(), 0);
    }

    #[test]
    fn a_reopened_store_goes_on_from_its_position() {
        let c = cluster();
        c.active.commit(batch("a1", 1, 1, 0)).unwrap();
        let Cluster { _dirs, log, active } = c;
        let dir = active.sled().dir().to_path_buf();
        drop(active);
        let reopened = ReplicatedStore::new(reopen(&dir), log.clone()).unwrap();
        assert_eq!(reopened.position(), 2);
        assert_eq!(reopened.commit(batch("a1", 2, 1, 0)).unwrap()[0].seq, 2);
        assert_eq!(log.last(), 3);
    }

    /// Opens the store in `dir` just after this process let go of it.
    fn reopen(dir: &std::path::Path) -> SledStore {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match SledStore::open(dir) {
                Ok(store) => return store,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn commits_from_many_threads_are_logged_in_the_order_they_are_stored() {
        let c = cluster();
        let standby = c.standby("standby");
        let active = Arc::new(c.active);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let active = Arc::clone(&active);
                std::thread::spawn(move || {
                    let mut seqs = Vec::new();
                    for n in 0..10 {
                        let events = active.commit(batch(&format!("a{t}"), n, 2, 100)).unwrap();
                        seqs.extend(events.iter().map(|e| e.seq));
                    }
                    seqs
                })
            })
            .collect();
        let mut seqs: Vec<u64> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=80).collect::<Vec<_>>());
        for (position, bytes) in c.log.records() {
            apply(&standby, position, &bytes).unwrap();
        }
        assert_same(active.sled(), &standby);
        assert_eq!(active.position(), 41);
        assert_eq!(
            DirectoryParts::default(),
            standby.directory_parts().unwrap()
        );
    }
}
