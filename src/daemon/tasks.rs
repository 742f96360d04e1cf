//! The daemon's background tasks: each is a [`Worker`] with a
//! [`TaskName`], a [`TaskState`] shown in `/readyz`, and one shared
//! [`Stop`]; [`Workers`] runs them and, at shutdown, awaits every one of
//! them within the grace period.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::{self, JoinSet};

use crate::stop::{Stop, StopHandle};

/// Every task the daemon runs. [`as_str`](Self::as_str) is the name
/// `/readyz`, `/v1/health`, the metrics and the log show.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TaskName {
    /// The loop that owns the engine and the router and commits each step.
    SyncLoop,
    /// The Teams directory reader and its delta link.
    Directory,
    /// The directory's slower presence tier: users in scope who are not agents.
    DirectoryPoller,
    /// The presence poller.
    PresencePoller,
    /// Teams presence writes to Graph.
    PresenceWriter,
    /// The mapping-file watcher that reloads on a change.
    MappingWatch,
    /// Event-log retention.
    EventRetention,
    /// The outbound webhook sink.
    Webhook,
    /// The HTTP API server.
    Api,
    /// Presence subscriptions through the service accounts.
    Subscriptions,
    /// Slow reads of the users subscriptions cover, so a lost
    /// notification costs at most one interval.
    ReconcilePoller,
    /// The receiver of Graph's change notifications: its listener.
    NotificationReceiver,
    /// Processes the notifications the receiver stored, in order.
    Notifications,
    /// Reads the users notifications without data name.
    NotificationReads,
    /// The service accounts' tokens kept alive, and whether each works.
    ServiceAccounts,
    /// In a cluster: committed events published to NATS for consumers.
    NatsEvents,
    /// In a cluster: the store's snapshot for standbys that start empty.
    Snapshots,
}

impl TaskName {
    pub const ALL: [TaskName; 17] = [
        TaskName::SyncLoop,
        TaskName::Directory,
        TaskName::DirectoryPoller,
        TaskName::PresencePoller,
        TaskName::PresenceWriter,
        TaskName::MappingWatch,
        TaskName::EventRetention,
        TaskName::Webhook,
        TaskName::Api,
        TaskName::Subscriptions,
        TaskName::ReconcilePoller,
        TaskName::NotificationReceiver,
        TaskName::Notifications,
        TaskName::NotificationReads,
        TaskName::ServiceAccounts,
        TaskName::NatsEvents,
        TaskName::Snapshots,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskName::SyncLoop => "sync-loop",
            TaskName::Directory => "directory",
            TaskName::DirectoryPoller => "directory-poller",
            TaskName::PresencePoller => "presence-poller",
            TaskName::PresenceWriter => "presence-writer",
            TaskName::MappingWatch => "mapping-watch",
            TaskName::EventRetention => "event-retention",
            TaskName::Webhook => "webhook",
            TaskName::Api => "api",
            TaskName::Subscriptions => "subscriptions",
            TaskName::ReconcilePoller => "reconcile-poller",
            TaskName::NotificationReceiver => "notification-receiver",
            TaskName::Notifications => "notifications",
            TaskName::NotificationReads => "notification-reads",
            TaskName::ServiceAccounts => "service-accounts",
            TaskName::NatsEvents => "nats-events",
            TaskName::Snapshots => "snapshots",
        }
    }
}

impl fmt::Display for TaskName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Tasks are listed by name, as `/readyz` shows them.
impl Ord for TaskName {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialOrd for TaskName {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

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

type States = Arc<Mutex<BTreeMap<TaskName, TaskState>>>;

/// A task's handle on its own state.
#[derive(Clone, Debug)]
pub struct TaskStatus {
    name: TaskName,
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
        if let Some(state) = states.get_mut(&self.name)
            && matches!(state, TaskState::Degraded(_))
        {
            *state = TaskState::Running;
        }
    }
}

/// A background task of the daemon. Garage's `Worker` is the model, with
/// one difference: a worker here is one long `work` (a loop it owns, most
/// often) rather than steps the runner calls again and again, since each
/// of these loops keeps state across its iterations (a delta link, the
/// writes in flight, the engine).
pub trait Worker: Send + 'static {
    fn name(&self) -> TaskName;

    /// Does the task's work until `stop` is given (or the work is over),
    /// keeping its state current through `status` (it starts as
    /// [`TaskState::Starting`]). `Ok` marks it stopped, `Err` failed: the
    /// daemon then stops, since a failure is what restarting fixes.
    fn work(
        self,
        status: TaskStatus,
        stop: Stop,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// A task that failed, and why.
pub type Failure = (TaskName, String);

/// The running workers: owns their tasks, their states and the stop signal
/// they share.
pub struct Workers {
    set: JoinSet<Result<(), String>>,
    names: HashMap<task::Id, TaskName>,
    states: States,
    stop_handle: StopHandle,
    stop: Stop,
    failures_tx: mpsc::UnboundedSender<Failure>,
    failures_rx: Option<mpsc::UnboundedReceiver<Failure>>,
}

impl Default for Workers {
    fn default() -> Self {
        Self::new()
    }
}

impl Workers {
    pub fn new() -> Self {
        let (stop_handle, stop) = Stop::new();
        let (failures_tx, failures_rx) = mpsc::unbounded_channel();
        Workers {
            set: JoinSet::new(),
            names: HashMap::new(),
            states: Arc::default(),
            stop_handle,
            stop,
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

    /// Starts a worker on the shared stop signal.
    pub fn spawn<W: Worker>(&mut self, worker: W) {
        let stop = self.stop.clone();
        self.spawn_on(worker, stop);
    }

    /// Starts a worker that stops on its own signal, given before the
    /// shared one (the API: no new work is taken while the rest finish
    /// theirs). [`shutdown`](Self::shutdown) still awaits it.
    pub fn spawn_on<W: Worker>(&mut self, worker: W, stop: Stop) {
        let name = worker.name();
        let status = TaskStatus {
            name,
            states: Arc::clone(&self.states),
        };
        status.set(TaskState::Starting);
        let work = worker.work(status.clone(), stop);
        let failures = self.failures_tx.clone();
        let handle = self.set.spawn(async move {
            let result = work.await;
            status.set(match &result {
                Ok(()) => TaskState::Stopped,
                Err(e) => TaskState::Failed(e.clone()),
            });
            if let Err(e) = &result {
                let _ = failures.send((name, e.clone()));
            }
            result
        });
        self.names.insert(handle.id(), name);
    }

    /// Task failures as they happen (taken once, by whoever supervises).
    pub fn take_failures(&mut self) -> Option<mpsc::UnboundedReceiver<Failure>> {
        self.failures_rx.take()
    }

    /// Gives the stop signal and waits for every task, at most `grace`;
    /// tasks still running then are aborted. Returns the failures.
    pub async fn shutdown(mut self, grace: Duration) -> Vec<Failure> {
        self.stop_handle.stop();
        let mut failures = Vec::new();
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            match tokio::time::timeout_at(deadline, self.set.join_next_with_id()).await {
                Ok(None) => break,
                Ok(Some(Ok((id, Err(e))))) => failures.push((self.name_of(id), e)),
                Ok(Some(Ok((_, Ok(()))))) => {}
                Ok(Some(Err(e))) => failures.push((self.name_of(e.id()), e.to_string())),
                Err(_) => {
                    let late: Vec<TaskName> = self
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

    fn name_of(&self, id: task::Id) -> TaskName {
        // Every task in the set was spawned with its name recorded.
        self.names.get(&id).copied().unwrap_or(TaskName::SyncLoop)
    }
}

/// Read-only view of the tasks' states.
#[derive(Clone, Debug, Default)]
pub struct TaskBoard {
    states: States,
}

impl TaskBoard {
    pub fn snapshot(&self) -> Vec<(TaskName, TaskState)> {
        self.states
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(n, s)| (*n, s.clone()))
            .collect()
    }

    /// The state of one task; `None` before it was started.
    pub fn state_of(&self, name: TaskName) -> Option<TaskState> {
        self.states
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&name)
            .cloned()
    }

    /// Waits until `name` stopped or failed, at most `within`.
    pub async fn wait_ended(&self, name: TaskName, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline
            && !matches!(
                self.state_of(name),
                Some(TaskState::Stopped | TaskState::Failed(_)) | None
            )
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A worker made of a closure, for these tests.
    struct Test<F>(TaskName, F);

    impl<F, Fut> Worker for Test<F>
    where
        F: FnOnce(TaskStatus, Stop) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        fn name(&self) -> TaskName {
            self.0
        }

        fn work(
            self,
            status: TaskStatus,
            stop: Stop,
        ) -> impl Future<Output = Result<(), String>> + Send {
            (self.1)(status, stop)
        }
    }

    #[test]
    fn names_are_the_ones_shown_and_listed_in_their_order() {
        let mut names = TaskName::ALL;
        names.sort();
        let shown: Vec<String> = names.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "api",
                "directory",
                "directory-poller",
                "event-retention",
                "mapping-watch",
                "nats-events",
                "notification-reads",
                "notification-receiver",
                "notifications",
                "presence-poller",
                "presence-writer",
                "reconcile-poller",
                "service-accounts",
                "snapshots",
                "subscriptions",
                "sync-loop",
                "webhook"
            ]
        );
    }

    #[tokio::test]
    async fn shutdown_stops_every_task_and_reports_failures() {
        let mut workers = Workers::new();
        let board = workers.board();
        workers.spawn(Test(
            TaskName::SyncLoop,
            |status: TaskStatus, stop: Stop| async move {
                status.set(TaskState::Running);
                stop.stopped().await;
                Ok(())
            },
        ));
        workers.spawn(Test(TaskName::Webhook, |_, stop: Stop| async move {
            stop.stopped().await;
            Err("broken".to_string())
        }));
        tokio::task::yield_now().await;
        let states = board.snapshot();
        assert_eq!(states.len(), 2);
        let failures = workers.shutdown(Duration::from_secs(5)).await;
        assert_eq!(failures, vec![(TaskName::Webhook, "broken".to_string())]);
        assert_eq!(board.state_of(TaskName::SyncLoop), Some(TaskState::Stopped));
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_ignores_stop_is_reported_and_aborted() {
        let mut workers = Workers::new();
        workers.spawn(Test(TaskName::Directory, |_, _| async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        }));
        let failures = workers.shutdown(Duration::from_secs(1)).await;
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].0, TaskName::Directory);
    }

    #[tokio::test]
    async fn a_worker_on_its_own_signal_stops_first() {
        let mut workers = Workers::new();
        let board = workers.board();
        let (api_stop, own) = Stop::new();
        workers.spawn_on(
            Test(TaskName::Api, |_, stop: Stop| async move {
                stop.stopped().await;
                Ok(())
            }),
            own,
        );
        workers.spawn(Test(TaskName::SyncLoop, |_, stop: Stop| async move {
            stop.stopped().await;
            Ok(())
        }));
        api_stop.stop();
        board
            .wait_ended(TaskName::Api, Duration::from_secs(5))
            .await;
        assert_eq!(board.state_of(TaskName::Api), Some(TaskState::Stopped));
        assert_ne!(board.state_of(TaskName::SyncLoop), Some(TaskState::Stopped));
        assert!(workers.shutdown(Duration::from_secs(5)).await.is_empty());
    }
}
