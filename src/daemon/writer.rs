//! Sends the engine's Teams writes to Graph and reports how each ended.
//!
//! The engine keeps at most one write in flight per agent, so writes of
//! different agents run side by side here without reordering anyone's.
//! The Graph client does the throttling and retrying; this adds an overall
//! deadline so a write can never hang the agent.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use crate::graph::GraphClient;
use crate::sync::{AgentKey, TeamsWrite, WriteId, WriteOutcome};

use super::tasks::{TaskState, TaskStatus, stopped};

/// One write to make.
#[derive(Clone, Debug, PartialEq)]
pub struct WriteJob {
    pub key: AgentKey,
    pub agent_id: String,
    /// The Teams object id.
    pub user_id: String,
    pub id: WriteId,
    pub write: TeamsWrite,
}

/// How a write ended, for the sync loop.
#[derive(Clone, Debug, PartialEq)]
pub struct WriteResult {
    pub job: WriteJob,
    pub outcome: WriteOutcome,
}

/// Where writes go: Graph, or a test's fake.
pub trait TeamsWriter: Send + Sync + 'static {
    fn write(
        &self,
        user_id: &str,
        write: &TeamsWrite,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

impl TeamsWriter for GraphClient {
    async fn write(&self, user_id: &str, write: &TeamsWrite) -> Result<(), String> {
        self.execute(user_id, write)
            .await
            .map_err(|e| e.to_string())
    }
}

/// Runs writes until stopped. Writes still in flight then are abandoned:
/// the store's outbox has them, and they are sent again after a restart.
pub async fn run<W: TeamsWriter>(
    writer: Arc<W>,
    mut jobs: mpsc::UnboundedReceiver<WriteJob>,
    results: mpsc::Sender<WriteResult>,
    max_in_flight: usize,
    deadline: Duration,
    status: TaskStatus,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    let permits = Arc::new(Semaphore::new(max_in_flight.max(1)));
    let mut running = JoinSet::new();
    status.set(TaskState::Running);
    loop {
        tokio::select! {
            () = stopped(&mut stop) => break,
            Some(_) = running.join_next(), if !running.is_empty() => {}
            job = jobs.recv() => {
                let Some(job) = job else { break };
                let Ok(permit) = Arc::clone(&permits).acquire_owned().await else { break };
                let writer = Arc::clone(&writer);
                let results = results.clone();
                running.spawn(async move {
                    let outcome = match tokio::time::timeout(deadline, writer.write(&job.user_id, &job.write)).await {
                        Ok(Ok(())) => WriteOutcome::Done,
                        Ok(Err(message)) => WriteOutcome::Failed { message },
                        Err(_) => WriteOutcome::Failed {
                            message: format!("no answer from Graph within {deadline:?}"),
                        },
                    };
                    drop(permit);
                    if let WriteOutcome::Failed { message } = &outcome {
                        tracing::warn!(agent = %job.agent_id, error = %message, "Teams write failed");
                    }
                    // The loop may be gone at shutdown; the outbox keeps the write.
                    let _ = results.send(WriteResult { job, outcome }).await;
                });
            }
        }
    }
    running.abort_all();
    Ok(())
}
