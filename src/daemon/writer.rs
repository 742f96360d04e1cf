//! Sends the engine's Teams writes to Graph and reports how each ended.
//!
//! The engine keeps at most one write in flight per agent, so writes of
//! different agents run side by side here without reordering anyone's.
//! The Graph client does the throttling and retrying; this adds an overall
//! deadline so a write can never hang the agent.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::graph::permissions::{Permission, Refusal, classify_refusal, refusal_message};
use crate::graph::{GraphClient, GraphError};
use crate::stop::Stop;
use crate::sync::{AgentKey, TeamsWrite, WriteId, WriteOutcome};

use super::tasks::{Problem, TaskState, TaskStatus};

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
    ) -> impl Future<Output = Result<(), GraphError>> + Send;

    /// Graph refused a write for want of a permission: the next token is
    /// asked for at once, so its roles say what is granted now.
    fn refused(&self) {}
}

/// Every write (set, clear, keep-alive, hand-back) spends the budget as
/// [`crate::graph::CallClass::Write`]: it gets the next request before any
/// waiting read.
impl TeamsWriter for GraphClient {
    async fn write(&self, user_id: &str, write: &TeamsWrite) -> Result<(), GraphError> {
        self.execute(user_id, write).await
    }

    fn refused(&self) {
        self.throttle().tokens().refresh_soon();
    }
}

/// Runs writes until stopped. Writes still in flight then are abandoned:
/// the store's outbox has them, and they are sent again after a restart.
///
/// Writes for the same Teams user go one at a time, in order: a hand-back
/// after an agent is deleted must not overtake (or be overtaken by) the
/// write still on its way for that user.
pub async fn run<W: TeamsWriter>(
    writer: Arc<W>,
    mut jobs: mpsc::UnboundedReceiver<WriteJob>,
    results: mpsc::Sender<WriteResult>,
    max_in_flight: usize,
    deadline: Duration,
    status: TaskStatus,
    stop: Stop,
) -> Result<(), String> {
    let permits = Arc::new(Semaphore::new(max_in_flight.max(1)));
    let mut running: JoinSet<String> = JoinSet::new();
    // Users with a write on its way, and the writes waiting behind it.
    let mut queued: HashMap<String, VecDeque<WriteJob>> = HashMap::new();
    status.set(TaskState::Running);
    loop {
        let job = tokio::select! {
            () = stop.stopped() => break,
            Some(done) = running.join_next(), if !running.is_empty() => {
                let Ok(user) = done else { continue };
                match queued.get_mut(&user).and_then(VecDeque::pop_front) {
                    Some(next) => next,
                    None => {
                        queued.remove(&user);
                        continue;
                    }
                }
            }
            job = jobs.recv() => {
                let Some(job) = job else { break };
                if let Some(waiting) = queued.get_mut(&job.user_id) {
                    waiting.push_back(job);
                    continue;
                }
                queued.insert(job.user_id.clone(), VecDeque::new());
                job
            }
        };
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            break;
        };
        let writer = Arc::clone(&writer);
        let results = results.clone();
        let status = status.clone();
        running.spawn(async move {
            // The task's health is that of its last answer: a failure of
            // Graph as a whole degrades it, one user's refusal does not.
            let outcome = match tokio::time::timeout(
                deadline,
                writer.write(&job.user_id, &job.write),
            )
            .await
            {
                Ok(Ok(())) => {
                    status.set(TaskState::Running);
                    WriteOutcome::Done
                }
                Ok(Err(error)) => {
                    if error.is_outage() {
                        status.set(TaskState::Degraded(Problem::graph(&error)));
                    }
                    let message = match classify_refusal(error.status().unwrap_or(0), error.code())
                    {
                        Some(Refusal::PermissionMissing { code }) => {
                            writer.refused();
                            format!(
                                "{} ({error})",
                                refusal_message(Permission::PresenceReadWriteAll, &code)
                            )
                        }
                        None => error.to_string(),
                    };
                    WriteOutcome::Failed { message }
                }
                Err(_) => {
                    let message = format!("no answer from Graph within {deadline:?}");
                    status.set(TaskState::Degraded(Problem::plain(message.clone())));
                    WriteOutcome::Failed { message }
                }
            };
            drop(permit);
            if let WriteOutcome::Failed { message } = &outcome {
                tracing::warn!(agent = %job.agent_id, error = %message, "Teams write failed");
            }
            let user = job.user_id.clone();
            // The loop may be gone at shutdown; the outbox keeps the write.
            let _ = results.send(WriteResult { job, outcome }).await;
            user
        });
    }
    running.abort_all();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    use crate::daemon::tasks::{TaskName, Worker, Workers};

    /// Records the order writes start and end in, per user; the first write
    /// of `slow` takes a while.
    #[derive(Default)]
    struct Recorder {
        log: Mutex<Vec<String>>,
    }

    impl TeamsWriter for Recorder {
        async fn write(&self, user_id: &str, write: &TeamsWrite) -> Result<(), GraphError> {
            let what = format!(
                "{user_id}:{}",
                write.presence().map_or("clear".into(), |p| p.to_string())
            );
            self.log.lock().unwrap().push(format!("start {what}"));
            if user_id == "slow" && write.presence().is_some() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            self.log.lock().unwrap().push(format!("end {what}"));
            Ok(())
        }
    }

    /// The writer as the daemon runs it, on the recorder.
    struct Writes {
        writer: Arc<Recorder>,
        jobs: mpsc::UnboundedReceiver<WriteJob>,
        results: mpsc::Sender<WriteResult>,
    }

    impl Worker for Writes {
        fn name(&self) -> TaskName {
            TaskName::PresenceWriter
        }

        async fn work(self, status: TaskStatus, stop: Stop) -> Result<(), String> {
            let deadline = Duration::from_secs(5);
            run(
                self.writer,
                self.jobs,
                self.results,
                8,
                deadline,
                status,
                stop,
            )
            .await
        }
    }

    fn job(user: &str, id: u64, write: TeamsWrite) -> WriteJob {
        WriteJob {
            key: AgentKey(0),
            agent_id: "a".into(),
            user_id: user.into(),
            id: WriteId(id),
            write,
        }
    }

    #[tokio::test]
    async fn writes_for_one_user_never_overlap_and_keep_their_order() {
        let recorder = Arc::new(Recorder::default());
        let (jobs_tx, jobs_rx) = mpsc::unbounded_channel();
        let (results_tx, mut results_rx) = mpsc::channel(16);
        let mut workers = Workers::new();
        workers.spawn(Writes {
            writer: Arc::clone(&recorder),
            jobs: jobs_rx,
            results: results_tx,
        });
        let set = TeamsWrite::SetSession {
            presence: crate::presence::Presence::from_graph("Busy", "InACall"),
            expiry: Duration::from_secs(3600),
        };
        jobs_tx.send(job("slow", 1, set.clone())).unwrap();
        jobs_tx
            .send(job("slow", 2, TeamsWrite::ClearSession))
            .unwrap();
        jobs_tx.send(job("fast", 3, set)).unwrap();
        for _ in 0..3 {
            results_rx.recv().await.unwrap();
        }
        let log = recorder.log.lock().unwrap().clone();
        let pos = |s: &str| log.iter().position(|l| l == s).unwrap();
        assert!(
            pos("end slow:Busy/InACall") < pos("start slow:clear"),
            "{log:?}"
        );
        // Another user's write did not wait behind the slow one.
        assert!(
            pos("end fast:Busy/InACall") < pos("end slow:Busy/InACall"),
            "{log:?}"
        );
        workers.shutdown(Duration::from_secs(5)).await;
    }
}
