//! A standby applying the commit log to its own sled store, record by
//! record, in order, idempotently by position: a record at or below the
//! stored position is skipped, the next one is applied together with its
//! position (one atomic write), and one further ahead is a gap the caller
//! must fill first (read from the log, or restore a snapshot).
//!
//! The same [`Record::Step`] applied in the same order to the same state
//! under the same store id gives the same event seqs and ids as on the
//! active: the active commits exactly what the log holds (see
//! [`super::replicated`]), and the store numbers events from its next seq.
//!
//! How a standby gets a store with the cluster's store id: it restores a
//! snapshot ([`super::snapshot::restore`]) into an empty directory. A store
//! id is fixed when a store is created, and the log's first record cannot
//! tell a follower what the active held before it appended it (a single
//! daemon that becomes a cluster keeps its store), so a follower never
//! starts from an empty store and [`Record::Genesis`]: the active puts a
//! snapshot right after its genesis, and the log's bounded history needs
//! the snapshot path anyway. [`Record::Genesis`] is applied only by a store
//! that already has the cluster's id (the first active, when its own
//! genesis was appended but not stored).

use thiserror::Error;

use super::Position;
use super::record::{self, Record, RecordError};
use crate::events::Event;
use crate::store::{Batch, SledStore, Store, StoreError};

/// What [`apply`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The record was applied; the store is at its position now.
    Applied,
    /// The store already holds the record (its position is at or past it):
    /// nothing was written.
    AlreadyHad,
}

#[derive(Debug, Error)]
pub enum ApplyError {
    #[error("commit log record {position} cannot be applied: {reason}")]
    Undecodable { position: Position, reason: String },
    #[error(
        "commit log record {position} belongs to store {theirs}, and this node's store is {ours}: \
         the log is another cluster's, or this store was not restored from the cluster's snapshot"
    )]
    OtherStore {
        position: Position,
        ours: String,
        theirs: String,
    },
    #[error(
        "commit log record {got} does not follow this store's position {have}: \
         the records in between are needed first (or a snapshot)"
    )]
    Gap { have: Position, got: Position },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The position of the last record `sled` holds (0: none).
pub fn position(sled: &SledStore) -> Result<Position, StoreError> {
    sled.log_position()
}

/// Applies the record at `position` to `sled` (see the module's doc).
/// Callers apply one record at a time; the store refuses a position that
/// does not follow its own even if two callers race.
pub fn apply(sled: &SledStore, position: Position, record: &[u8]) -> Result<Applied, ApplyError> {
    let have = sled.log_position()?;
    if position <= have {
        return Ok(Applied::AlreadyHad);
    }
    if Some(position) != have.checked_add(1) {
        return Err(ApplyError::Gap {
            have,
            got: position,
        });
    }
    let record = record::decode(record).map_err(|e| ApplyError::Undecodable {
        position,
        reason: match e {
            RecordError::Decode(reason) | RecordError::Encode(reason) => reason,
            newer @ RecordError::NewerVersion { .. } => newer.to_string(),
        },
    })?;
    if record.store_id() != sled.store_id() {
        return Err(ApplyError::OtherStore {
            position,
            ours: sled.store_id().to_owned(),
            theirs: record.store_id().to_owned(),
        });
    }
    commit_record(sled, record, position)?;
    Ok(Applied::Applied)
}

/// Commits a decoded record to `sled` together with its position; the
/// events of a step, numbered. The active commits through here too, so
/// both sides write the same.
pub(crate) fn commit_record(
    sled: &SledStore,
    record: Record,
    position: Position,
) -> Result<Vec<Event>, StoreError> {
    match record {
        Record::Genesis { .. } => sled.commit_at(Batch::default(), position),
        Record::Step { batch, .. } => sled.commit_at(batch, position),
        Record::Directory { batch, .. } => sled
            .commit_directory_at(batch, position)
            .map(|()| Vec::new()),
        Record::DirectoryStage { first, users, .. } => sled
            .commit_directory_stage_at(first, &users, position)
            .map(|()| Vec::new()),
        Record::StagedDirectory { batch, .. } => sled
            .commit_staged_directory_at(batch, position)
            .map(|()| Vec::new()),
        Record::StepPart {
            first,
            last: false,
            data,
            ..
        } => sled
            .commit_record_part_at(first, data.as_bytes(), position)
            .map(|()| Vec::new()),
        Record::StepPart {
            first,
            last: true,
            data,
            ..
        } => {
            let whole = sled.record_with_staged_parts(first, data.as_bytes(), position)?;
            let batch = match record::decode(&whole) {
                Ok(Record::Step { store_id, batch }) if store_id == sled.store_id() => batch,
                Ok(other) => {
                    return Err(StoreError::Replication(format!(
                        "the parts ending at commit log position {position} make a {} record of store {}, not a step of this store",
                        other.kind(),
                        other.store_id()
                    )));
                }
                Err(e) => {
                    return Err(StoreError::Replication(format!(
                        "the parts ending at commit log position {position} make no record: {e}"
                    )));
                }
            };
            drop(whole);
            let events = sled.commit_at(batch, position)?;
            sled.clear_record_parts()?;
            Ok(events)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::batch;
    use crate::store::{DirectoryBatch, MetaKey};

    fn fresh() -> (tempfile::TempDir, SledStore) {
        let dir = tempfile::tempdir().unwrap();
        let sled = SledStore::open(dir.path()).unwrap();
        (dir, sled)
    }

    fn exported(sled: &SledStore) -> Vec<u8> {
        let mut out = Vec::new();
        crate::store::export(sled, &mut out).unwrap();
        out
    }

    fn step(store_id: &str, agent: &str, events: usize) -> Vec<u8> {
        record::encode(&Record::Step {
            store_id: store_id.to_owned(),
            batch: batch(agent, 1, events, 100),
        })
        .unwrap()
    }

    #[test]
    fn records_are_applied_in_order_once() {
        let (_dir, sled) = fresh();
        let id = sled.store_id().to_owned();
        let genesis = record::encode(&Record::Genesis {
            store_id: id.clone(),
        })
        .unwrap();
        assert_eq!(position(&sled).unwrap(), 0);
        assert_eq!(apply(&sled, 1, &genesis).unwrap(), Applied::Applied);
        assert_eq!(position(&sled).unwrap(), 1);
        assert_eq!(
            apply(&sled, 2, &step(&id, "a1", 2)).unwrap(),
            Applied::Applied
        );
        assert_eq!(sled.last_seq().unwrap(), 2);
        let before = exported(&sled);
        // Again, and an older one: nothing is written.
        assert_eq!(
            apply(&sled, 2, &step(&id, "a1", 2)).unwrap(),
            Applied::AlreadyHad
        );
        assert_eq!(apply(&sled, 1, &genesis).unwrap(), Applied::AlreadyHad);
        assert_eq!(
            apply(&sled, 1, b"not even a record").unwrap(),
            Applied::AlreadyHad
        );
        assert_eq!(exported(&sled), before);
        assert_eq!(sled.last_seq().unwrap(), 2);
        assert_eq!(
            sled.meta(&MetaKey::LogPosition).unwrap().as_deref(),
            Some("2")
        );
    }

    #[test]
    fn a_gap_another_store_and_garbage_are_refused_and_change_nothing() {
        let (_dir, sled) = fresh();
        let id = sled.store_id().to_owned();
        assert!(matches!(
            apply(&sled, 2, &step(&id, "a1", 1)),
            Err(ApplyError::Gap { have: 0, got: 2 })
        ));
        assert!(matches!(
            apply(&sled, 1, &step("00c0ffee00c0ffee", "a1", 1)),
            Err(ApplyError::OtherStore { position: 1, theirs, .. }) if theirs == "00c0ffee00c0ffee"
        ));
        match apply(&sled, 1, b"{\"v\":1") {
            Err(ApplyError::Undecodable {
                position: 1,
                reason,
            }) => {
                assert!(reason.contains("EOF"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        match apply(&sled, 1, br#"{"v":9,"type":"genesis","store_id":"x"}"#) {
            Err(ApplyError::Undecodable { reason, .. }) => {
                assert!(reason.contains("version 9"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        // A step the store refuses (an agent under another id) is a store error.
        let mut wrong = batch("a1", 1, 1, 0);
        wrong
            .agents
            .push(("a2".into(), Some(crate::store::testing::agent("a3", 1))));
        let wrong = record::encode(&Record::Step {
            store_id: id.clone(),
            batch: wrong,
        })
        .unwrap();
        assert!(matches!(
            apply(&sled, 1, &wrong),
            Err(ApplyError::Store(StoreError::InvalidBatch(_)))
        ));
        assert_eq!(position(&sled).unwrap(), 0);
        assert_eq!(sled.last_seq().unwrap(), 0);
        assert_eq!(sled.load().unwrap(), crate::store::Loaded::default());
    }

    #[test]
    fn a_directory_record_moves_the_position_with_the_directory() {
        let (_dir, sled) = fresh();
        let id = sled.store_id().to_owned();
        let change = record::encode(&Record::Directory {
            store_id: id,
            batch: DirectoryBatch {
                replace: true,
                delta_link: Some("https://graph.example/d".into()),
                ..DirectoryBatch::default()
            },
        })
        .unwrap();
        assert_eq!(apply(&sled, 1, &change).unwrap(), Applied::Applied);
        assert_eq!(position(&sled).unwrap(), 1);
        let directory = sled.directory().unwrap().unwrap();
        assert_eq!(
            directory.delta_link.as_deref(),
            Some("https://graph.example/d")
        );
        assert_eq!(apply(&sled, 1, &change).unwrap(), Applied::AlreadyHad);
    }

    #[test]
    fn the_store_itself_refuses_a_position_out_of_order() {
        let (_dir, sled) = fresh();
        assert!(matches!(
            sled.commit_at(Batch::default(), 2),
            Err(StoreError::Replication(_))
        ));
        sled.commit_at(batch("a1", 1, 1, 0), 1).unwrap();
        assert!(matches!(
            sled.commit_at(batch("a1", 2, 1, 0), 1),
            Err(StoreError::Replication(_))
        ));
        assert!(matches!(
            sled.commit_directory_at(DirectoryBatch::default(), 3),
            Err(StoreError::Replication(_))
        ));
        assert_eq!(sled.last_seq().unwrap(), 1);
        assert_eq!(sled.log_position().unwrap(), 1);
        // A plain commit may not name the position either.
        assert!(matches!(
            sled.commit(Batch {
                meta: vec![(MetaKey::LogPosition, Some("5".into()))],
                ..Batch::default()
            }),
            Err(StoreError::InvalidBatch(_))
        ));
    }
}
