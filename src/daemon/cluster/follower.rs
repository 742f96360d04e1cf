//! A standby keeping its store current: it applies the commit log's
//! records in order, and restores the latest snapshot first when its store
//! cannot continue from the log (empty, another cluster's, or behind the
//! history the log keeps).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use super::status::ClusterStatus;
use crate::cluster::Position;
use crate::cluster::apply::{self, Applied, ApplyError};
use crate::cluster::nats::{ClusterError, JetStreamLog, Snapshots};
use crate::cluster::snapshot;
use crate::store::{SledStore, StoreError};

/// Records read and applied at once.
const BATCH: usize = 256;

#[derive(Debug, Error)]
pub enum FollowError {
    #[error(transparent)]
    Nats(#[from] ClusterError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "the commit log has records this node's store cannot continue from, and NATS holds no snapshot yet; waiting for the active node's first snapshot"
    )]
    NoSnapshot,
    #[error("{0}")]
    Task(String),
}

/// What the follower needs; the store itself is passed to each call.
pub struct Follower {
    pub dir: PathBuf,
    pub cache_bytes: u64,
    pub log: JetStreamLog,
    pub snapshots: Snapshots,
    pub status: Arc<ClusterStatus>,
}

/// A standby's open store and the last record it holds.
pub struct Followed {
    pub store: Arc<SledStore>,
    pub position: Position,
}

impl Follower {
    /// Opens the store, restoring the latest snapshot when the store cannot
    /// continue from the log.
    pub async fn open(&self) -> Result<Followed, FollowError> {
        let store = self.open_store().await?;
        let position = apply::position(&store)?;
        self.status.set_position(position);
        let (first, last) = self.log.bounds().await?;
        self.status.set_log_last(last);
        let behind_history = last > 0 && position + 1 < first;
        // A store that never was in this cluster: another store id, so it
        // cannot take the log's records; the snapshot carries the cluster's.
        let outsider = last > 0 && position == 0;
        // Ahead of the log: another cluster's store, or a log that was
        // deleted and made again.
        let ahead = position > last;
        if behind_history || outsider || ahead {
            tracing::info!(
                position,
                first,
                last,
                "this node's store cannot continue from the commit log; restoring the latest snapshot"
            );
            return self.restore(store).await;
        }
        Ok(Followed { store, position })
    }

    async fn open_store(&self) -> Result<Arc<SledStore>, FollowError> {
        let dir = self.dir.clone();
        let cache = self.cache_bytes;
        let store = tokio::task::spawn_blocking(move || SledStore::open_with_cache(&dir, cache))
            .await
            .map_err(|e| FollowError::Task(format!("opening the store: {e}")))??;
        Ok(Arc::new(store))
    }

    /// Replaces the store with the latest snapshot (the old one moved
    /// aside), and returns it open.
    pub async fn restore(&self, store: Arc<SledStore>) -> Result<Followed, FollowError> {
        // Without a snapshot the store stays as it is (reopened next time).
        let Some((meta, bytes)) = self.snapshots.latest().await? else {
            return Err(FollowError::NoSnapshot);
        };
        // The store must be closed before its files move: the only other
        // holder is the caller's, which gave it up.
        let store = Arc::try_unwrap(store).map_err(|_| {
            FollowError::Task("the store is still in use; cannot replace it".into())
        })?;
        drop(store);
        let dir = self.dir.clone();
        let position = meta.position;
        let moved = tokio::task::spawn_blocking(move || {
            let moved = SledStore::move_aside(&dir, chrono::Utc::now())?;
            snapshot::restore(&dir, &meta, &bytes)?;
            Ok::<_, StoreError>(moved)
        })
        .await
        .map_err(|e| FollowError::Task(format!("restoring the snapshot: {e}")))??;
        tracing::warn!(
            position,
            moved = %moved.display(),
            "restored the cluster's latest snapshot; the previous store was moved aside"
        );
        let store = self.open_store().await?;
        self.status.set_position(position);
        Ok(Followed { store, position })
    }

    /// Reads what follows `followed.position` (waiting up to `wait` for it)
    /// and applies it. Returns the store (another one when a snapshot had
    /// to replace it) and how many records were applied.
    pub async fn step(
        &self,
        mut followed: Followed,
        wait: Duration,
    ) -> Result<(Followed, usize), (Option<Followed>, FollowError)> {
        let records = match self.log.read(followed.position + 1, BATCH, wait).await {
            Ok(records) => records,
            Err(e) => return Err((Some(followed), e.into())),
        };
        let Some(&(first, _)) = records.first() else {
            return Ok((followed, 0));
        };
        if first > followed.position + 1 {
            // The log no longer keeps what this store needs next.
            return match self.restore(followed.store).await {
                Ok(restored) => Ok((restored, 0)),
                Err(e) => Err((None, e)),
            };
        }
        let store = Arc::clone(&followed.store);
        let (position, applied, error) = tokio::task::spawn_blocking(move || {
            let mut position = None;
            let mut applied = 0;
            for (at, bytes) in records {
                match apply::apply(&store, at, &bytes) {
                    Ok(Applied::Applied) => {
                        applied += 1;
                        position = Some(at);
                    }
                    Ok(Applied::AlreadyHad) => position = Some(at),
                    Err(e) => return (position, applied, Some(e)),
                }
            }
            (position, applied, None)
        })
        .await
        .unwrap_or_else(|e| {
            (
                None,
                0,
                Some(ApplyError::Store(StoreError::Io(format!(
                    "applying records did not finish: {e}"
                )))),
            )
        });
        if let Some(position) = position {
            followed.position = followed.position.max(position);
            self.status.set_position(followed.position);
        }
        match error {
            None => Ok((followed, applied)),
            // Records of a store this one is not: the cluster's snapshot
            // replaces it.
            Some(ApplyError::OtherStore { .. }) => match self.restore(followed.store).await {
                Ok(restored) => Ok((restored, applied)),
                Err(e) => Err((None, e)),
            },
            Some(ApplyError::Store(e)) => Err((Some(followed), FollowError::Store(e))),
            Some(e) => Err((Some(followed), FollowError::Task(e.to_string()))),
        }
    }

    /// Applies every record up to the log's last one (a standby about to
    /// take over; no other node appends while it holds the lease).
    pub async fn catch_up(
        &self,
        mut followed: Followed,
    ) -> Result<Followed, (Option<Followed>, FollowError)> {
        let last = match self.log.bounds().await {
            Ok((_, last)) => last,
            Err(e) => return Err((Some(followed), e.into())),
        };
        self.status.set_log_last(last);
        while followed.position < last {
            followed = self.step(followed, Duration::from_millis(500)).await?.0;
        }
        Ok(followed)
    }
}
