//! The daemon's background tasks: each has a name, a state shown in
//! `/readyz`, and one shared stop signal; shutdown awaits every one of them.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

/// Why a task is not doing its job, said twice: `summary` for the open
/// `/readyz` (no ids, nothing about the tenant or the app), `detail` in
/// full for the authenticated `/v1/health` and the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub summary: String,
    pub detail: String,
}

impl Problem {
    pub fn new(summary: impl Into<String>, detail: impl Into<String>) -> Self {
        Problem {
            summary: summary.into(),
            detail: detail.into(),
        }
    }

    /// A problem whose text has nothing private in it.
    pub fn plain(text: impl Into<String>) -> Self {
        let text = text.into();
        Problem {
            summary: text.clone(),
            detail: text,
        }
    }

    /// A failed Graph call.
    pub fn graph(e: &crate::graph::GraphError) -> Self {
        Problem::new(e.summary(), e.to_string())
    }
}

/// Where a task is in its life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskState {
    Starting,
    Running,
    /// Running but not doing its job (Graph unreachable or refusing us,
    /// receiver failing); the problem says why.
    Degraded(Problem),
    Stopped,
    Failed(String),
}

impl TaskState {
    pub fn label(&self) -> &'static str {
        match self {
            TaskState::Starting => "starting",
            TaskState::Running => "running",
            TaskState::Degraded(_) => "degraded",
            TaskState::Stopped => "stopped",
            TaskState::Failed(_) => "failed",
        }
    }

    /// Why it is degraded or failed, in full.
    pub fn detail(&self) -> &str {
        match self {
            TaskState::Degraded(p) => &p.detail,
            TaskState::Failed(d) => d,
            _ => "",
        }
    }

    /// Why, as the open `/readyz` may say it.
    pub fn summary(&self) -> &str {
        match self {
            TaskState::Degraded(p) => &p.summary,
            TaskState::Failed(d) => d,
            _ => "",
        }
    }
}

type States = Arc<Mutex<BTreeMap<&'static str, TaskState>>>;

/// A task's handle on its own state.
#[derive(Clone, Debug)]
pub struct TaskStatus {
    name: &'static str,
    states: States,
}

impl TaskStatus {
    pub fn set(&self, state: TaskState) {
        self.states
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(self.name, state);
    }

    /// Back to running if degraded (what degraded it is over); any other
    /// state stays.
    pub fn clear_degraded(&self) {
        let mut states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(state) = states.get_mut(self.name)
            && matches!(state, TaskState::Degraded(_))
        {
            *state = TaskState::Running;
        }
    }
}

/// Resolves when the stop signal is given (or its sender is gone).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    // An error means the sender is gone: stop as well.
    let _ = stop.wait_for(|s| *s).await;
}

/// The set of running tasks.
pub struct Tasks {
    set: JoinSet<(&'static str, Result<(), String>)>,
    states: States,
    stop_tx: watch::Sender<bool>,
    failures_tx: mpsc::UnboundedSender<(&'static str, String)>,
    failures_rx: Option<mpsc::UnboundedReceiver<(&'static str, String)>>,
}

impl Default for Tasks {
    fn default() -> Self {
        Self::new()
    }
}

impl Tasks {
    pub fn new() -> Self {
        let (stop_tx, _) = watch::channel(false);
        let (failures_tx, failures_rx) = mpsc::unbounded_channel();
        Tasks {
            set: JoinSet::new(),
            states: Arc::default(),
            stop_tx,
            failures_tx,
            failures_rx: Some(failures_rx),
        }
    }

    /// A view of every task's state, for `/readyz`.
    pub fn board(&self) -> TaskBoard {
        TaskBoard {
            states: Arc::clone(&self.states),
        }
    }

    pub fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop_tx.subscribe()
    }

    /// Starts a named task. It gets its status handle and the stop signal;
    /// an `Err` it returns marks it failed.
    pub fn spawn<F, Fut>(&mut self, name: &'static str, task: F)
    where
        F: FnOnce(TaskStatus, watch::Receiver<bool>) -> Fut,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let status = TaskStatus {
            name,
            states: Arc::clone(&self.states),
        };
        status.set(TaskState::Starting);
        let fut = task(status.clone(), self.stop_tx.subscribe());
        let failures = self.failures_tx.clone();
        self.set.spawn(async move {
            let result = fut.await;
            status.set(match &result {
                Ok(()) => TaskState::Stopped,
                Err(e) => TaskState::Failed(e.clone()),
            });
            if let Err(e) = &result {
                let _ = failures.send((name, e.clone()));
            }
            (name, result)
        });
    }

    /// Task failures as they happen (taken once, by whoever supervises).
    pub fn take_failures(&mut self) -> Option<mpsc::UnboundedReceiver<(&'static str, String)>> {
        self.failures_rx.take()
    }

    /// Gives the stop signal and waits for every task, at most `grace`;
    /// tasks still running then are aborted. Returns the failures.
    pub async fn shutdown(mut self, grace: Duration) -> Vec<(&'static str, String)> {
        let _ = self.stop_tx.send(true);
        let mut failures = Vec::new();
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            match tokio::time::timeout_at(deadline, self.set.join_next()).await {
                Ok(None) => break,
                Ok(Some(Ok((name, Err(e))))) => failures.push((name, e)),
                Ok(Some(Ok((_, Ok(()))))) => {}
                Ok(Some(Err(e))) => failures.push(("unknown", e.to_string())),
                Err(_) => {
                    let late: Vec<&'static str> = self
                        .states
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .iter()
                        .filter(|(_, s)| !matches!(s, TaskState::Stopped | TaskState::Failed(_)))
                        .map(|(n, _)| *n)
                        .collect();
                    for name in late {
                        failures.push((name, format!("did not stop within {grace:?}")));
                    }
                    self.set.abort_all();
                    break;
                }
            }
        }
        failures
    }
}

/// Read-only view of the tasks' states.
#[derive(Clone, Debug, Default)]
pub struct TaskBoard {
    states: States,
}

impl TaskBoard {
    pub fn snapshot(&self) -> Vec<(&'static str, TaskState)> {
        self.states
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(n, s)| (*n, s.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shutdown_stops_every_task_and_reports_failures() {
        let mut tasks = Tasks::new();
        let board = tasks.board();
        tasks.spawn("waits", |status, mut stop| async move {
            status.set(TaskState::Running);
            stopped(&mut stop).await;
            Ok(())
        });
        tasks.spawn("fails", |_, mut stop| async move {
            stopped(&mut stop).await;
            Err("broken".to_string())
        });
        tokio::task::yield_now().await;
        let states = board.snapshot();
        assert_eq!(states.len(), 2);
        let failures = tasks.shutdown(Duration::from_secs(5)).await;
        assert_eq!(failures, vec![("fails", "broken".to_string())]);
        let states = board.snapshot();
        assert!(
            states
                .iter()
                .any(|(n, s)| *n == "waits" && *s == TaskState::Stopped)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_ignores_stop_is_reported_and_aborted() {
        let mut tasks = Tasks::new();
        tasks.spawn("stubborn", |_, _| async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        });
        let failures = tasks.shutdown(Duration::from_secs(1)).await;
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].0, "stubborn");
    }
}
