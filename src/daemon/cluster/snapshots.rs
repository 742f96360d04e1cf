//! The active node's snapshots: every `snapshot_interval` the whole store,
//! as of its log position, replaces the previous snapshot, so the log needs
//! to keep only `history` for a standby that starts empty or falls behind.

use std::sync::Arc;
use std::time::Duration;

use super::term::{ClusterStore, SnapshotSink};
use crate::daemon::tasks::{Problem, TaskName, TaskState, TaskStatus, Worker};
use crate::stop::Stop;

/// A failed snapshot is tried again after this long (or the interval, if shorter).
const RETRY: Duration = Duration::from_secs(30);

/// See the module documentation.
pub struct SnapshotWorker {
    pub store: Arc<dyn ClusterStore>,
    pub sink: Arc<dyn SnapshotSink>,
    pub interval: Duration,
}

impl Worker for SnapshotWorker {
    fn name(&self) -> TaskName {
        TaskName::Snapshots
    }

    async fn work(self, status: TaskStatus, stop: Stop) -> Result<(), String> {
        status.set(TaskState::Running);
        let mut wait = self.interval;
        let mut last_position = None;
        while stop.sleep(wait).await {
            wait = self.interval;
            if last_position == Some(self.store.position()) {
                // Nothing committed since the last one.
                continue;
            }
            let store = Arc::clone(&self.store);
            let taken = tokio::task::spawn_blocking(move || store.snapshot())
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
            let result = match taken {
                Ok((meta, file)) => {
                    let position = meta.position;
                    let size = meta.bytes;
                    match stop.unless_stopped(self.sink.put(meta, file)).await {
                        None => break,
                        Some(Ok(())) => {
                            tracing::info!(position, bytes = size, "snapshot stored");
                            last_position = Some(position);
                            Ok(())
                        }
                        Some(Err(e)) => Err(format!("cannot store the snapshot in NATS: {e}")),
                    }
                }
                Err(e) => Err(format!("cannot take a snapshot: {e}")),
            };
            match result {
                Ok(()) => status.set(TaskState::Running),
                Err(why) => {
                    tracing::warn!(%why, "snapshot failed; trying again");
                    status.set(TaskState::Degraded(Problem::plain(why)));
                    wait = RETRY.min(self.interval);
                }
            }
        }
        Ok(())
    }
}
