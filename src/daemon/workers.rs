//! Every worker the daemon runs, one struct each: what it is given at
//! start and how its state on the board follows its work. The work itself
//! lives with its subject ([`sync_loop`](super::sync_loop),
//! [`directory`](super::directory), [`writer`](super::writer), the Graph
//! poller, the webhook sink, the API server); [`Daemon::start`](super::Daemon::start)
//! builds these and hands them to [`Workers`](super::tasks::Workers).

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, watch};

use crate::directory::DirectoryView;
use crate::events::Event;
use crate::graph::poller::PollUsers;
use crate::graph::poller::{DirectoryReads, PresenceSource, ReconcileReads, SequenceGate};
use crate::graph::{
    CallClass, GraphClient, GraphError, PollReport, PollTarget, Poller, PresenceUpdate,
};
use crate::metrics::Counter;
use crate::stop::Stop;
use crate::store::Store;
use crate::webhook::{WebhookSink, WebhookState, WebhookStatus};

use super::mappings::{self, MappingSet, Reload};
use super::subscriptions::{Inflow, ReadNow, SubscriptionWorker};
use super::sync_loop::{Command, Inputs, SyncLoop};
use super::tasks::{Problem, TaskName, TaskState, TaskStatus, Worker};
use super::writer::{self, WriteJob, WriteResult};
use super::{directory, render};

/// How the presence poller's last read went: `None` when it went through.
/// Graph as a whole, so the writer follows it too.
pub type GraphHealth = watch::Receiver<Option<GraphError>>;

/// The loop that owns the engine and the router.
pub struct SyncLoopWorker<S: Store> {
    pub sync_loop: SyncLoop<S>,
    pub inputs: Inputs,
}

impl<S: Store> Worker for SyncLoopWorker<S> {
    fn name(&self) -> TaskName {
        TaskName::SyncLoop
    }

    fn work(
        self,
        status: TaskStatus,
        stop: Stop,
    ) -> impl Future<Output = Result<(), String>> + Send {
        self.sync_loop.run(self.inputs, status, stop)
    }
}

/// Reads the directory and follows its delta link; its updates reach the
/// sync loop as commands, in order.
pub struct DirectoryWorker {
    pub reader: directory::DirectoryReader,
    pub delta_link: Option<String>,
    pub interval: Duration,
    pub commands: mpsc::Sender<Command>,
}

impl Worker for DirectoryWorker {
    fn name(&self) -> TaskName {
        TaskName::Directory
    }

    async fn work(self, status: TaskStatus, stop: Stop) -> Result<(), String> {
        let (updates, mut updates_rx) = mpsc::channel(4);
        let commands = self.commands;
        // Ends once the reader is gone and what it sent is passed on.
        let forward = async move {
            while let Some(update) = updates_rx.recv().await {
                if commands.send(Command::Directory(update)).await.is_err() {
                    break;
                }
            }
        };
        let read = directory::run(
            self.reader,
            self.delta_link,
            self.interval,
            updates,
            status,
            stop,
        );
        let (result, ()) = tokio::join!(read, forward);
        result
    }
}

/// Reads every linked user's presence; the board shows how its last read
/// went, and so does `health` for the writer.
pub struct PollerWorker {
    pub graph: GraphClient,
    /// Told of every agent's presence that is news.
    pub view: Arc<DirectoryView>,
    pub target: PollTarget,
    /// Where the poller says its round and read freshness.
    pub report: Arc<PollReport>,
    pub users: PollUsers,
    pub presences: mpsc::Sender<PresenceUpdate>,
    pub health: watch::Sender<Option<GraphError>>,
    /// Shared with the other presence sources when subscriptions are on.
    pub gate: Option<Arc<SequenceGate>>,
}

impl Worker for PollerWorker {
    fn name(&self) -> TaskName {
        TaskName::PresencePoller
    }

    async fn work(self, status: TaskStatus, stop: Stop) -> Result<(), String> {
        status.set(TaskState::Running);
        // Ends with the poller, which holds the sender.
        let mirror = mirror_health(self.health.subscribe(), status);
        // The round follows what the budget's writes leave.
        let throttle = self.graph.throttle().clone();
        let mut poller = Poller::new(
            self.graph,
            self.report.clock().clone(),
            throttle.config().sustained_rate(),
            self.target,
            self.users,
        )
        .budget(throttle.budget().clone())
        .publish(self.report)
        .report_health(self.health)
        .observe(self.view);
        if let Some(gate) = self.gate {
            poller = poller.gate(gate);
        }
        let poll = poller.run(self.presences, stop);
        tokio::join!(poll, mirror);
        Ok(())
    }
}

/// Reconciliation: reads the users subscriptions cover once an interval,
/// as the budget's last class, so a notification Graph dropped costs at
/// most one interval. Agents' news goes to the sync loop, everyone's to the
/// view, through the gate every presence source shares.
pub struct ReconcilePollerWorker {
    pub graph: GraphClient,
    pub interval: Duration,
    pub report: Arc<PollReport>,
    pub users: PollUsers,
    pub view: Arc<DirectoryView>,
    pub presences: mpsc::Sender<PresenceUpdate>,
    pub gate: Arc<SequenceGate>,
}

/// The most of the budget's rate reconciliation may take.
pub const RECONCILE_SHARE_MAX: f64 = 0.10;

impl Worker for ReconcilePollerWorker {
    fn name(&self) -> TaskName {
        TaskName::ReconcilePoller
    }

    async fn work(self, status: TaskStatus, stop: Stop) -> Result<(), String> {
        status.set(TaskState::Running);
        let (health_tx, health) = watch::channel(None);
        let mirror = mirror_health(health, status);
        let poll = slow_tier(
            ReconcileReads(self.graph.clone()),
            &self.graph,
            CallClass::Reconcile,
            self.interval,
            RECONCILE_SHARE_MAX,
            SlowTier {
                report: self.report,
                users: self.users,
                view: self.view,
                health: health_tx,
            },
        )
        .gate(self.gate)
        .run(self.presences, stop);
        tokio::join!(poll, mirror);
        Ok(())
    }
}

/// What a slower tier's poller reports to and reads for.
struct SlowTier {
    report: Arc<PollReport>,
    users: PollUsers,
    view: Arc<DirectoryView>,
    health: watch::Sender<Option<GraphError>>,
}

/// A poller of a slower tier (the directory's, reconciliation): every user
/// once an `interval` from what the classes before it leave, never more
/// often; when they leave nothing, still once in DIRECTORY_FLOOR_ROUNDS
/// intervals, waiting behind every class served first, so one busy moment
/// at a round's start does not stretch the round for long. At most
/// `share_max` of the budget's rate.
fn slow_tier<S: PresenceSource + 'static>(
    source: S,
    graph: &GraphClient,
    class: CallClass,
    interval: Duration,
    share_max: f64,
    tier: SlowTier,
) -> Poller<S> {
    let throttle = graph.throttle().clone();
    let target = PollTarget {
        round_min: interval,
        read_share_max: share_max,
        freshness_floor: interval.saturating_mul(DIRECTORY_FLOOR_ROUNDS),
        batch_size: crate::graph::presence::MAX_IDS_PER_CALL,
    };
    Poller::new(
        source,
        tier.report.clock().clone(),
        throttle.config().sustained_rate(),
        target,
        tier.users,
    )
    .class(class)
    .budget(throttle.budget().clone())
    .publish(tier.report)
    .report_health(tier.health)
    .observe(tier.view)
}

/// Mirrors a poller's last Graph error into its task's state, until the
/// poller (which holds the sender) ends.
async fn mirror_health(mut health: GraphHealth, status: TaskStatus) {
    while health.changed().await.is_ok() {
        let state = match &*health.borrow_and_update() {
            None => TaskState::Running,
            Some(error) => TaskState::Degraded(Problem::graph(error)),
        };
        status.set(state);
    }
}

/// The directory's slower presence tier: reads the users in scope who are
/// not agents, at the directory freshness, as the budget's `directory`
/// class (after every write and agent read), and tells the view what is
/// news.
pub struct DirectoryPollerWorker {
    pub graph: GraphClient,
    pub freshness: Duration,
    pub report: Arc<PollReport>,
    pub users: PollUsers,
    pub view: Arc<DirectoryView>,
    /// Shared with the other presence sources when subscriptions are on.
    pub gate: Option<Arc<SequenceGate>>,
}

impl Worker for DirectoryPollerWorker {
    fn name(&self) -> TaskName {
        TaskName::DirectoryPoller
    }

    async fn work(self, status: TaskStatus, stop: Stop) -> Result<(), String> {
        status.set(TaskState::Running);
        let (health_tx, health) = watch::channel(None);
        let mirror = mirror_health(health, status);
        let mut poller = slow_tier(
            DirectoryReads(self.graph.clone()),
            &self.graph,
            CallClass::Directory,
            self.freshness,
            DIRECTORY_SHARE_MAX,
            SlowTier {
                report: self.report,
                users: self.users,
                view: self.view,
                health: health_tx,
            },
        );
        if let Some(gate) = self.gate {
            poller = poller.gate(gate);
        }
        let poll = poller.run_observed(stop);
        tokio::join!(poll, mirror);
        Ok(())
    }
}

/// The most of the budget's rate the directory tier may take, of what the
/// writes and agent reads leave: headroom, so a rise in agent reads is
/// served at once rather than after directory reads already granted.
pub const DIRECTORY_SHARE_MAX: f64 = 0.25;

/// The directory tier's longest round, in freshnesses, however little the
/// agents leave (2 minutes at the default 30 s).
pub const DIRECTORY_FLOOR_ROUNDS: u32 = 4;

/// Sends the engine's Teams writes to Graph.
pub struct WriterWorker {
    /// Granted against needed: holds and releases the writes.
    pub permissions: Option<super::permissions::PermissionWatch>,
    pub graph: GraphClient,
    pub jobs: mpsc::UnboundedReceiver<WriteJob>,
    pub results: mpsc::Sender<WriteResult>,
    pub max_in_flight: usize,
    pub deadline: Duration,
    pub graph_health: GraphHealth,
}

impl Worker for WriterWorker {
    fn name(&self) -> TaskName {
        TaskName::PresenceWriter
    }

    async fn work(self, status: TaskStatus, stop: Stop) -> Result<(), String> {
        // A writer degraded by Graph failing as a whole is clear again once
        // a later read goes through: its own next write may be a minute away.
        let board = status.clone();
        let mut graph_health = self.graph_health;
        let heal = async move {
            while graph_health.changed().await.is_ok() {
                if graph_health.borrow_and_update().is_none() {
                    board.clear_degraded();
                }
            }
        };
        let permissions = self.permissions;
        let permission_stop = stop.clone();
        let heal = async move {
            match permissions {
                Some(watch) => {
                    tokio::join!(heal, watch.run(permission_stop));
                }
                None => heal.await,
            }
        };
        let write = writer::run(
            Arc::new(self.graph),
            self.jobs,
            self.results,
            self.max_in_flight,
            self.deadline,
            status,
            stop,
        );
        beside(write, heal).await
    }
}

/// Reloads the config and mappings when one of the mapping files changes.
pub struct MappingWatch {
    /// The set in force, whose files are watched.
    pub current: MappingSet,
    pub config_file: PathBuf,
    pub interval: Duration,
    pub commands: mpsc::Sender<Command>,
    pub reload_errors: Counter,
    /// What the config in force asks of Graph.
    pub uses: tokio::sync::watch::Sender<crate::graph::permissions::Uses>,
}

impl Worker for MappingWatch {
    fn name(&self) -> TaskName {
        TaskName::MappingWatch
    }

    async fn work(mut self, status: TaskStatus, stop: Stop) -> Result<(), String> {
        status.set(TaskState::Running);
        let mut reported_bad = false;
        loop {
            if !stop.sleep(self.interval).await {
                return Ok(());
            }
            if !self.current.files_changed() {
                continue;
            }
            // The times are taken before reading, so a fix saved while a
            // broken file is being read is still seen as a change next time.
            let seen = mappings::modified_times(&self.current.files);
            // The config is read again too: a SIGHUP may have changed which
            // profiles and groups there are since this task started.
            match mappings::reload(&self.config_file, &self.commands, &self.uses).await {
                Reload::Applied(set) => {
                    self.current = set;
                    reported_bad = false;
                    status.set(TaskState::Running);
                }
                Reload::LoopGone => return Ok(()),
                Reload::Refused(errors) => {
                    // One bad save is reported once.
                    if !reported_bad {
                        self.reload_errors.inc();
                        for e in &errors {
                            tracing::error!("{e}");
                        }
                        tracing::error!(
                            "the config or a mapping file has errors; the config and mappings in force stay"
                        );
                    }
                    reported_bad = true;
                    self.current.files = seen;
                    status.set(TaskState::Degraded(Problem::plain(format!(
                        "mapping files have errors: {}",
                        render(&errors)
                    ))));
                }
            }
        }
    }
}

/// Drops events older than the retention, keeping the newest ones.
pub struct RetentionWorker<S: Store> {
    pub store: Arc<S>,
    pub retention: Duration,
    pub keep: usize,
    pub interval: Duration,
}

impl<S: Store> Worker for RetentionWorker<S> {
    fn name(&self) -> TaskName {
        TaskName::EventRetention
    }

    async fn work(self, status: TaskStatus, stop: Stop) -> Result<(), String> {
        status.set(TaskState::Running);
        loop {
            let before = chrono::Utc::now()
                - chrono::Duration::from_std(self.retention).unwrap_or(chrono::Duration::days(7));
            let store = Arc::clone(&self.store);
            let keep = self.keep;
            match tokio::task::spawn_blocking(move || store.prune_events(before, keep)).await {
                Ok(Ok(n)) if n > 0 => tracing::info!(events = n, "pruned events past retention"),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => status.set(TaskState::Degraded(Problem::plain(e.to_string()))),
                Err(e) => status.set(TaskState::Degraded(Problem::plain(e.to_string()))),
            }
            if !stop.sleep(self.interval).await {
                return Ok(());
            }
        }
    }
}

/// Delivers the event log to the webhook; the board shows what the sink
/// says about itself.
pub struct WebhookWorker {
    pub sink: WebhookSink,
    /// The daemon's feed of committed events, as a wake-up.
    pub wake: broadcast::Receiver<Event>,
}

impl Worker for WebhookWorker {
    fn name(&self) -> TaskName {
        TaskName::Webhook
    }

    async fn work(self, status: TaskStatus, stop: Stop) -> Result<(), String> {
        let mut sink_status = self.sink.status();
        let mirror = async move {
            loop {
                let now = sink_status.borrow_and_update().clone();
                status.set(board_state(&now));
                if sink_status.changed().await.is_err() {
                    break;
                }
            }
        };
        let deliver = async move {
            self.sink
                .run(self.wake, stop)
                .await
                .map_err(|e| e.to_string())
        };
        beside(deliver, mirror).await
    }
}

/// The sink's own status as a task state.
fn board_state(now: &WebhookStatus) -> TaskState {
    match &now.state {
        WebhookState::Retrying { .. } => {
            // The receiver's answer stays out of the open view.
            let quiet = WebhookStatus {
                last_error: None,
                ..now.clone()
            };
            TaskState::Degraded(Problem::new(quiet.to_string(), now.to_string()))
        }
        WebhookState::Failed { error } => TaskState::Failed(error.clone()),
        WebhookState::Starting => TaskState::Starting,
        _ => TaskState::Running,
    }
}

/// The HTTP API. It stops on the API's own signal, given before the
/// shared one: requests it took reach the sync loop before the loop stops.
pub struct ApiWorker {
    pub listener: TcpListener,
    pub router: Router,
}

impl Worker for ApiWorker {
    fn name(&self) -> TaskName {
        TaskName::Api
    }

    async fn work(self, status: TaskStatus, stop: Stop) -> Result<(), String> {
        status.set(TaskState::Running);
        crate::api::serve(self.listener, self.router, stop)
            .await
            .map_err(|e| format!("the API server failed: {e}"))
    }
}

/// Runs `work` with `side` next to it in the same task, and returns what
/// `work` returns; `side` is dropped then if it has not ended before.
async fn beside<T>(work: impl Future<Output = T>, side: impl Future<Output = ()>) -> T {
    tokio::pin!(work);
    tokio::pin!(side);
    let mut side_done = false;
    loop {
        tokio::select! {
            out = &mut work => return out,
            () = &mut side, if !side_done => side_done = true,
        }
    }
}

/// The receiver of Graph's change notifications: its own listener, with
/// nothing else on it.
pub struct ReceiverWorker {
    pub listener: TcpListener,
    pub router: Router,
}

impl Worker for ReceiverWorker {
    fn name(&self) -> TaskName {
        TaskName::NotificationReceiver
    }

    async fn work(self, status: TaskStatus, stop: Stop) -> Result<(), String> {
        status.set(TaskState::Running);
        crate::receiver::serve(self.listener, self.router, stop)
            .await
            .map_err(|e| format!("the notification receiver stopped: {e}"))
    }
}

/// Drains the notification inbox in order and hands each outcome on: a
/// rich notification's presence to the sync loop (through the gate every
/// presence source shares), users named by basic ones to be read at once,
/// lifecycle events to the subscription worker.
pub struct NotificationsWorker {
    pub inbox: crate::receiver::InboxWorker,
    pub outcomes: mpsc::Receiver<crate::notifications::NotificationOutcome>,
    pub inflow: Inflow,
    pub read_now: mpsc::UnboundedSender<Vec<crate::subscriptions::UserId>>,
    pub lifecycle: mpsc::Sender<(String, crate::notifications::LifecycleEvent)>,
}

impl Worker for NotificationsWorker {
    fn name(&self) -> TaskName {
        TaskName::Notifications
    }

    async fn work(self, status: TaskStatus, stop: Stop) -> Result<(), String> {
        use crate::notifications::NotificationOutcome;
        status.set(TaskState::Running);
        let NotificationsWorker {
            inbox,
            mut outcomes,
            inflow,
            read_now,
            lifecycle,
        } = self;
        let drain = inbox.run(stop.clone());
        // Ends when the inbox worker (the sender) ends.
        let forward = async move {
            while let Some(outcome) = outcomes.recv().await {
                match outcome {
                    NotificationOutcome::Presence(p) => {
                        if !inflow.offer(*p).await {
                            break;
                        }
                    }
                    NotificationOutcome::ReadNow(ids) => {
                        let _ = read_now.send(ids.into_iter().map(Into::into).collect());
                    }
                    NotificationOutcome::Lifecycle {
                        subscription_id,
                        event,
                    } => {
                        if lifecycle.send((subscription_id, event)).await.is_err() {
                            break;
                        }
                    }
                }
            }
        };
        tokio::join!(drain, forward);
        Ok(())
    }
}

/// Reads the users notifications name (basic notifications, `missed`).
pub struct ReadNowWorker {
    pub reader: ReadNow<GraphClient>,
}

impl Worker for ReadNowWorker {
    fn name(&self) -> TaskName {
        TaskName::NotificationReads
    }

    async fn work(self, status: TaskStatus, stop: Stop) -> Result<(), String> {
        status.set(TaskState::Running);
        self.reader.run(stop).await;
        Ok(())
    }
}

/// Runs the subscription worker.
pub struct SubscriptionsWorker(pub SubscriptionWorker);

impl Worker for SubscriptionsWorker {
    fn name(&self) -> TaskName {
        TaskName::Subscriptions
    }

    fn work(
        self,
        status: TaskStatus,
        stop: Stop,
    ) -> impl Future<Output = Result<(), String>> + Send {
        self.0.run(status, stop)
    }
}

/// The service accounts: each refreshed at least as often as keeps its
/// refresh token alive, and whether each works, for the subscription
/// worker, at once on every change.
pub struct AccountsWorker {
    pub accounts: Vec<Arc<crate::accounts::AccountTokens>>,
    pub health: watch::Sender<std::collections::BTreeMap<crate::subscriptions::AccountId, bool>>,
}

impl Worker for AccountsWorker {
    fn name(&self) -> TaskName {
        TaskName::ServiceAccounts
    }

    async fn work(self, status: TaskStatus, stop: Stop) -> Result<(), String> {
        status.set(TaskState::Running);
        let health = Arc::new(self.health);
        let mut tasks = tokio::task::JoinSet::new();
        for account in self.accounts {
            tasks.spawn(Arc::clone(&account).keep_alive(stop.clone()));
            let mut watch = account.watch();
            let health = Arc::clone(&health);
            let stop = stop.clone();
            tasks.spawn(async move {
                loop {
                    let ok = watch.borrow_and_update().is_ok();
                    health.send_if_modified(|map| {
                        let key = crate::subscriptions::AccountId::from(account.upn());
                        map.insert(key, ok) != Some(ok)
                    });
                    if !ok {
                        tracing::warn!(account = %account.upn(), "a service account's token stopped working: its users are polled");
                    }
                    match stop.unless_stopped(watch.changed()).await {
                        Some(Ok(())) => {}
                        Some(Err(_)) | None => break,
                    }
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        Ok(())
    }
}
