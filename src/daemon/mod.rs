//! The running service (`presence-sync run`): the store, the sync loop
//! around the engine, the Graph poller, writer and directory reader, the
//! HTTP API, mapping reloads, and the stop and liveness plumbing.
//!
//! | concept | module |
//! |---|---|
//! | the loop that owns the engine and commits each step | [`sync_loop`] |
//! | Teams writes to Graph | [`writer`] |
//! | the directory and auto-linking by UPN | [`directory`] |
//! | mapping profiles in force and their reload | [`mappings`] |
//! | the agent view the API returns | [`view`] |
//! | the API's handler trait, implemented | [`service`] |
//! | named background tasks, their states and stop | [`tasks`] |
//! | Prometheus metrics | [`metrics`] |
//! | signals, systemd notify and the watchdog's liveness check | [`lifecycle`] |

pub mod directory;
pub mod lifecycle;
pub mod mappings;
pub mod metrics;
pub mod service;
pub mod sync_loop;
pub mod tasks;
pub mod view;
pub mod writer;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::api::model::GraphAppOut;
use crate::api::{self, ApiSettings};
use crate::config::{Config, GraphAuth, SecretError};
use crate::diagnostics::Diagnostic;
use crate::graph::{
    AuthError, Credential, GraphClient, GraphError, PollTarget, Poller, TokioClock,
};
use crate::store::{MetaKey, SledStore, Store, StoreError};
use crate::webhook::{WebhookSink, WebhookState, WebhookStatus};

use self::mappings::MappingSet;
use self::metrics::Metrics;
use self::service::DaemonService;
use self::sync_loop::{Command, Inputs, Outputs, SyncLoop};
use self::tasks::{Problem, TaskState, Tasks, stopped};

/// Why the daemon could not start. Each maps to its own exit code in `main`.
#[derive(Debug, Error)]
pub enum DaemonError {
    #[error("mapping files have errors:\n{}", render(.0))]
    Mappings(Vec<Diagnostic>),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("secret: {0}")]
    Secret(#[from] SecretError),
    #[error("Graph credential: {0}")]
    Credential(#[from] AuthError),
    #[error("Graph client: {0}")]
    Graph(#[from] GraphError),
    #[error("cannot listen on {addr}: {error}")]
    Bind {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("sync engine: {0}")]
    Engine(#[from] crate::sync::EngineError),
    #[error("{0}")]
    Task(String),
}

fn render(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Knobs the config file does not carry: tests and the demo turn them.
#[derive(Clone, Debug)]
pub struct DaemonOptions {
    /// How often the users delta link is polled (SPEC: one minute).
    pub directory_interval: Duration,
    /// Every user's presence read at least this often, budget allowing.
    pub poll_staleness: Duration,
    /// How often mapping files are checked for changes.
    pub mapping_check_interval: Duration,
    /// Teams writes sent at once.
    pub max_writes_in_flight: usize,
    /// How long shutdown waits for tasks before aborting them.
    pub stop_grace: Duration,
    /// How often retention prunes the event log.
    pub retention_interval: Duration,
}

impl Default for DaemonOptions {
    fn default() -> Self {
        DaemonOptions {
            directory_interval: Duration::from_secs(60),
            poll_staleness: PollTarget::default().max_staleness,
            mapping_check_interval: Duration::from_secs(2),
            max_writes_in_flight: 32,
            stop_grace: Duration::from_secs(20),
            retention_interval: Duration::from_secs(3600),
        }
    }
}

/// A started daemon.
pub struct Daemon {
    pub api_addr: SocketAddr,
    pub state_dir: PathBuf,
    tasks: Tasks,
    commands: mpsc::Sender<Command>,
    config: Config,
    grace: Duration,
    api_stop: api::Shutdown,
    metrics: Arc<Metrics>,
}

/// What ended a running daemon.
#[derive(Debug, PartialEq, Eq)]
pub enum Exit {
    /// Asked to stop; every task stopped in time.
    Stopped,
    /// A task failed (the store, most likely); the text says which and why.
    Failed(String),
}

impl Daemon {
    /// Opens the store, restores the agents, binds the API and starts every
    /// task. Returns once the listener is bound and the store is open: the
    /// moment to tell systemd READY. Graph is not waited for.
    pub async fn start(config: Config, options: DaemonOptions) -> Result<Daemon, DaemonError> {
        let mappings = mappings::load_for(&config).map_err(DaemonError::Mappings)?;
        // Everything that can refuse to start without touching the disk is
        // checked before the store is opened (which creates the state
        // directory): a missing secret must not leave an empty store behind.
        let api_token = config.api.token.read()?;
        let credential = Credential::load(&config.graph.auth)?;
        let graph = GraphClient::new(&config.graph, credential)?;
        let webhook_secret = match &config.webhook {
            Some(webhook) => Some(webhook.secret.read()?),
            None => None,
        };
        let state_dir = config.store.state_dir.clone();
        let store = {
            let dir = state_dir.clone();
            tokio::task::spawn_blocking(move || SledStore::open(&dir))
                .await
                .map_err(|e| DaemonError::Task(format!("opening the store: {e}")))??
        };
        let store = Arc::new(store);
        let loaded = {
            let store = Arc::clone(&store);
            tokio::task::spawn_blocking(move || store.load())
                .await
                .map_err(|e| DaemonError::Task(format!("loading the store: {e}")))??
        };
        let delta_link = store.meta(&MetaKey::DeltaLink)?;

        let metrics = Arc::new(
            Metrics::new(graph.throttle().clone())
                .map_err(|e| DaemonError::Task(format!("metrics: {e}")))?,
        );
        let (commands_tx, commands_rx) = mpsc::channel(4096);
        let (presence_tx, presence_rx) = mpsc::channel(65_536);
        let (results_tx, results_rx) = mpsc::channel(4096);
        let (writes_tx, writes_rx) = mpsc::unbounded_channel();
        let (events_tx, _) = broadcast::channel(4096);
        let (poll_tx, poll_rx) = watch::channel(Arc::new(Vec::new()));
        let (status_tx, status_rx) = watch::channel(Default::default());
        let outputs = Outputs {
            events: events_tx.clone(),
            writes: writes_tx,
            poll_users: poll_tx,
            status: status_tx,
            metrics: metrics.daemon.clone(),
        };
        let mut sync_loop = SyncLoop::restore(
            config.engine_settings(),
            mappings.clone(),
            config.routing.clone(),
            loaded,
            Arc::clone(&store),
            outputs,
        )?;
        sync_loop
            .commit_initial()
            .await
            .map_err(DaemonError::Task)?;

        let listener = tokio::net::TcpListener::bind(config.api.listen)
            .await
            .map_err(|error| DaemonError::Bind {
                addr: config.api.listen,
                error,
            })?;
        let api_addr = listener.local_addr().map_err(|error| DaemonError::Bind {
            addr: config.api.listen,
            error,
        })?;

        let mut tasks = Tasks::new();
        let board = tasks.board();
        let inputs = Inputs {
            commands: commands_rx,
            presences: presence_rx,
            write_results: results_rx,
        };
        tasks.spawn("sync-loop", move |status, stop| {
            sync_loop.run(inputs, status, stop)
        });

        {
            let graph = graph.clone();
            let interval = options.directory_interval;
            let (dir_tx, mut dir_rx) = mpsc::channel(4);
            let commands = commands_tx.clone();
            tasks.spawn("directory", move |status, stop| async move {
                // Directory updates are forwarded as commands, in order.
                let forward = tokio::spawn(async move {
                    while let Some(update) = dir_rx.recv().await {
                        if commands.send(Command::Directory(update)).await.is_err() {
                            break;
                        }
                    }
                });
                let result =
                    directory::run(graph, delta_link, interval, dir_tx, status, stop).await;
                let _ = forward.await;
                result
            });
        }
        // How the poller's last read went: Graph as a whole, for the writer too.
        let (health_tx, poll_health) = watch::channel(None);
        {
            let graph = graph.clone();
            let rate = graph.throttle().config().sustained_rate();
            let mut health_rx = poll_health.clone();
            let target = PollTarget {
                max_staleness: options.poll_staleness,
                ..PollTarget::default()
            };
            tasks.spawn("presence-poller", move |status, stop| async move {
                status.set(TaskState::Running);
                // The board shows how the poller's last read went.
                let board = status.clone();
                let mirror = tokio::spawn(async move {
                    while health_rx.changed().await.is_ok() {
                        let state = match &*health_rx.borrow_and_update() {
                            None => TaskState::Running,
                            Some(error) => TaskState::Degraded(Problem::graph(error)),
                        };
                        board.set(state);
                    }
                });
                Poller::new(graph, TokioClock::shared(), rate, target, poll_rx)
                    .report_health(health_tx)
                    .run(presence_tx, stop)
                    .await;
                // The poller is gone with its sender: the mirror ends.
                let _ = mirror.await;
                Ok(())
            });
        }
        {
            let writer = Arc::new(graph.clone());
            let max = options.max_writes_in_flight;
            let deadline = config.engine_settings().write_answer_timeout / 2;
            let mut graph_health = poll_health.clone();
            tasks.spawn("presence-writer", move |status, stop| async move {
                // A writer degraded by Graph failing as a whole is clear
                // again once a later read goes through: its own next write
                // may be a minute away.
                let board = status.clone();
                let heal = tokio::spawn(async move {
                    while graph_health.changed().await.is_ok() {
                        if graph_health.borrow_and_update().is_none() {
                            board.clear_degraded();
                        }
                    }
                });
                let result =
                    writer::run(writer, writes_rx, results_tx, max, deadline, status, stop).await;
                heal.abort();
                result
            });
        }
        {
            let commands = commands_tx.clone();
            let config_file = config.file.clone();
            let interval = options.mapping_check_interval;
            let reload_errors = metrics.daemon.mapping_reloads.with(["error"]);
            tasks.spawn("mapping-watch", move |status, stop| {
                watch_mappings(
                    mappings,
                    config_file,
                    interval,
                    commands,
                    reload_errors,
                    status,
                    stop,
                )
            });
        }
        {
            let store = Arc::clone(&store);
            let retention = config.store.event_retention;
            let keep = config.store.event_keep_at_least;
            let interval = options.retention_interval;
            tasks.spawn("event-retention", move |status, stop| {
                prune_events(store, retention, keep, interval, status, stop)
            });
        }
        if let (Some(webhook), Some(secret)) = (&config.webhook, &webhook_secret) {
            let shared: Arc<dyn Store> = Arc::clone(&store) as Arc<dyn Store>;
            let sink = WebhookSink::new(webhook, secret, shared)
                .map_err(|e| DaemonError::Task(format!("webhook sink: {e}")))?;
            let mut sink_status = sink.status();
            let wake = events_tx.subscribe();
            tasks.spawn("webhook", move |status, stop| async move {
                // The board shows what the sink says about itself.
                let board = status.clone();
                let mirror = tokio::spawn(async move {
                    loop {
                        let now = sink_status.borrow_and_update().clone();
                        board.set(match &now.state {
                            WebhookState::Retrying { .. } => {
                                // The receiver's answer stays out of the open view.
                                let quiet = WebhookStatus {
                                    last_error: None,
                                    ..now.clone()
                                };
                                TaskState::Degraded(Problem::new(
                                    quiet.to_string(),
                                    now.to_string(),
                                ))
                            }
                            WebhookState::Failed { error } => TaskState::Failed(error.clone()),
                            WebhookState::Starting => TaskState::Starting,
                            _ => TaskState::Running,
                        });
                        if sink_status.changed().await.is_err() {
                            break;
                        }
                    }
                });
                let result = sink.run(wake, stop).await.map_err(|e| e.to_string());
                mirror.abort();
                result
            });
        }
        let service = Arc::new(DaemonService {
            commands: commands_tx.clone(),
            store: Arc::clone(&store),
            events: events_tx,
            status: status_rx,
            board,
            metrics: Arc::clone(&metrics),
            graph: GraphAppOut {
                tenant_id: config.graph.tenant_id.clone(),
                client_id: config.graph.client_id.clone(),
                auth: match config.graph.auth {
                    GraphAuth::ClientSecret(_) => "client_secret",
                    GraphAuth::Certificate { .. } => "certificate",
                }
                .to_string(),
                login_base: config.graph.login_base.clone(),
                graph_base: config.graph.graph_base.clone(),
            },
        });
        let api_stop = api::Shutdown::new();
        let router = api::router(
            service,
            ApiSettings {
                token: api_token,
                max_body_bytes: config.api.max_body_bytes,
                shutdown: api_stop.clone(),
            },
        );
        let stopped_serving = api_stop.triggered();
        tasks.spawn("api", move |status, _stop| async move {
            status.set(TaskState::Running);
            api::serve(listener, router, stopped_serving)
                .await
                .map_err(|e| format!("the API server failed: {e}"))
        });
        tracing::info!(%api_addr, state_dir = %state_dir.display(), "presence-sync started");
        Ok(Daemon {
            api_addr,
            state_dir,
            tasks,
            commands: commands_tx,
            grace: options.stop_grace,
            config,
            api_stop,
            metrics,
        })
    }

    /// Reads the config's `[mappings]` and every mapping file again; a
    /// bad file is logged with its errors and the config and mappings in
    /// force stay.
    pub async fn reload(&self) -> Result<(), Vec<Diagnostic>> {
        let file = self.config.file.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            Config::load(&file)
                .map_err(|e| e.diagnostics)
                .and_then(|config| mappings::load_for(&config).map(|set| (set, config.routing)))
        })
        .await
        .unwrap_or_else(|e| {
            Err(vec![Diagnostic::whole_file(
                &self.config.file,
                format!("reading the config did not finish: {e}"),
            )])
        });
        match loaded {
            Ok((set, routing)) => {
                let _ = self
                    .commands
                    .send(Command::Reload(set, Some(routing)))
                    .await;
                Ok(())
            }
            Err(errors) => {
                self.metrics.daemon.mapping_reloads.with(["error"]).inc();
                Err(errors)
            }
        }
    }

    /// Asks the sync loop to go round once: true when it answered in time.
    pub async fn alive(&self, within: Duration) -> bool {
        let (tx, rx) = oneshot::channel();
        tokio::time::timeout(within, async {
            self.commands.send(Command::Ping(tx)).await.ok()?;
            rx.await.ok()
        })
        .await
        .ok()
        .flatten()
        .is_some()
    }

    /// Task failures as they happen (the store failing, the API server
    /// dying); taken once by the supervisor.
    pub fn take_failures(&mut self) -> Option<mpsc::UnboundedReceiver<(&'static str, String)>> {
        self.tasks.take_failures()
    }

    /// Stops taking work (the API first), lets the sync loop commit what it
    /// took, and waits for every task.
    pub async fn shutdown(self) -> Exit {
        // The API first, and wait for it: requests it already took reach
        // the sync loop before the loop is told to stop.
        self.api_stop.trigger();
        let board = self.tasks.board();
        let deadline = tokio::time::Instant::now() + self.grace / 2;
        while tokio::time::Instant::now() < deadline
            && board.snapshot().iter().any(|(n, s)| {
                *n == "api" && !matches!(s, TaskState::Stopped | TaskState::Failed(_))
            })
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let failures = self.tasks.shutdown(self.grace).await;
        if failures.is_empty() {
            tracing::info!("presence-sync stopped");
            Exit::Stopped
        } else {
            let text = failures
                .iter()
                .map(|(n, e)| format!("{n}: {e}"))
                .collect::<Vec<_>>()
                .join("; ");
            tracing::error!(failures = %text, "presence-sync stopped with failures");
            Exit::Failed(text)
        }
    }
}

/// Reloads mappings when one of their files changes.
async fn watch_mappings(
    mut current: MappingSet,
    config_file: PathBuf,
    interval: Duration,
    commands: mpsc::Sender<Command>,
    reload_errors: crate::metrics::Counter,
    status: tasks::TaskStatus,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    status.set(TaskState::Running);
    let mut reported_bad = false;
    loop {
        tokio::select! {
            () = stopped(&mut stop) => return Ok(()),
            () = tokio::time::sleep(interval) => {}
        }
        if !current.files_changed() {
            continue;
        }
        // The times are taken before reading, so a fix saved while a broken
        // file is being read is still seen as a change next time.
        let seen: Vec<_> = current
            .files
            .iter()
            .map(|(p, _)| {
                (
                    p.clone(),
                    std::fs::metadata(p).and_then(|m| m.modified()).ok(),
                )
            })
            .collect();
        // The config is read again too: a SIGHUP may have changed which
        // profiles and groups there are since this task started.
        let file = config_file.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            Config::load(&file)
                .map_err(|e| e.diagnostics)
                .and_then(|config| mappings::load_for(&config).map(|set| (set, config.routing)))
        })
        .await
        .map_err(|e| format!("reading the mappings: {e}"))?;
        match loaded {
            Ok((set, routing)) => {
                current = set.clone();
                reported_bad = false;
                status.set(TaskState::Running);
                if commands
                    .send(Command::Reload(set, Some(routing)))
                    .await
                    .is_err()
                {
                    return Ok(());
                }
            }
            Err(errors) => {
                // One bad save is reported once.
                if !reported_bad {
                    reload_errors.inc();
                    for e in &errors {
                        tracing::error!("{e}");
                    }
                    tracing::error!(
                        "the config or a mapping file has errors; the config and mappings in force stay"
                    );
                }
                reported_bad = true;
                current.files = seen;
                status.set(TaskState::Degraded(Problem::plain(format!(
                    "mapping files have errors: {}",
                    render(&errors)
                ))));
            }
        }
    }
}

/// Drops events older than the retention, keeping the newest ones.
async fn prune_events<S: Store>(
    store: Arc<S>,
    retention: Duration,
    keep: usize,
    interval: Duration,
    status: tasks::TaskStatus,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    status.set(TaskState::Running);
    loop {
        let before = chrono::Utc::now()
            - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::days(7));
        let s = Arc::clone(&store);
        match tokio::task::spawn_blocking(move || s.prune_events(before, keep)).await {
            Ok(Ok(n)) if n > 0 => tracing::info!(events = n, "pruned events past retention"),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => status.set(TaskState::Degraded(Problem::plain(e.to_string()))),
            Err(e) => status.set(TaskState::Degraded(Problem::plain(e.to_string()))),
        }
        tokio::select! {
            () = stopped(&mut stop) => return Ok(()),
            () = tokio::time::sleep(interval) => {}
        }
    }
}
