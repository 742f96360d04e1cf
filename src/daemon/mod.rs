//! The running service (`presence-sync run`): the store, the sync loop
//! around the engine, the Graph poller, writer and directory reader, the
//! HTTP API, mapping reloads, and the stop and liveness plumbing.
//!
//! | concept | module |
//! |---|---|
//! | the loop that owns the engine and commits each step | [`sync_loop`] |
//! | Teams writes to Graph | [`writer`] |
//! | the directory task (full read, delta link, stored records) and auto-linking by UPN | [`directory`] |
//! | mapping profiles in force and their reload | [`mappings`] |
//! | the agent view the API returns | [`view`] |
//! | the API's handler trait, implemented | [`service`] |
//! | task names and states, the `Worker` trait and the runner | [`tasks`] |
//! | every worker the daemon runs | [`workers`] |
//! | Prometheus metrics | [`metrics`] |
//! | granted against needed permissions, writes held without them | [`permissions`] |
//! | signals, systemd notify and the watchdog's liveness check | [`lifecycle`] |

pub mod cluster;
pub mod directory;
pub mod lifecycle;
pub mod mappings;
pub mod metrics;
pub mod permissions;
pub mod service;
pub mod store;
pub mod subscriptions;
pub mod sync_loop;
pub mod tasks;
pub mod view;
pub mod workers;
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
use crate::directory::{DirectoryRecord, DirectoryView};
use crate::graph::{
    AuthError, Credential, GraphClient, GraphError, PollReport, PollTarget, TokioClock,
};
use crate::store::{MetaKey, OpenCheck, SledStore, Store, StoreError};
use crate::webhook::WebhookSink;

use self::directory::{DirectoryReader, DirectoryUpdate};
use self::mappings::Reload;
use self::metrics::Metrics;
use self::service::DaemonService;
use self::store::DaemonStore;
use self::subscriptions::setup::{self, Channels};
use self::sync_loop::{Command, Inputs, Outputs, SyncLoop};
use self::tasks::{Failure, TaskName, Workers};
use self::workers::{
    ApiWorker, DirectoryPollerWorker, DirectoryWorker, MappingWatch, PollerWorker, RetentionWorker,
    SyncLoopWorker, WebhookWorker, WriterWorker,
};

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
    /// How often mapping files are checked for changes.
    pub mapping_check_interval: Duration,
    /// Teams writes sent at once.
    pub max_writes_in_flight: usize,
    /// How long shutdown waits for tasks before aborting them.
    pub stop_grace: Duration,
    /// How often retention prunes the event log.
    pub retention_interval: Duration,
    /// While a needed Graph permission is missing, how often a new token
    /// is asked for (consent granted meanwhile shows in its roles).
    pub permission_recheck: Duration,
    /// The clock presence subscriptions are planned on (expiries,
    /// renewals); tokio's by default. Tests run hours of renewals on the
    /// simulator's manual clock.
    pub subscription_clock: Option<crate::graph::SharedClock>,
    /// How soon a failed service account is tried again.
    pub account_retry: Duration,
    /// In a cluster: this start is a term as the active node (the
    /// replicated store, the gate, events and snapshots to NATS).
    pub cluster: Option<cluster::term::ActiveTerm>,
}

impl Default for DaemonOptions {
    fn default() -> Self {
        DaemonOptions {
            directory_interval: Duration::from_secs(60),
            mapping_check_interval: Duration::from_secs(2),
            max_writes_in_flight: 32,
            stop_grace: Duration::from_secs(20),
            retention_interval: Duration::from_secs(3600),
            permission_recheck: Duration::from_secs(300),
            subscription_clock: None,
            account_retry: crate::accounts::token::FAILED_RETRY,
            cluster: None,
        }
    }
}

/// A started daemon.
pub struct Daemon {
    pub api_addr: SocketAddr,
    /// The notification receiver's address, with subscriptions on.
    pub receiver_addr: Option<SocketAddr>,
    pub state_dir: PathBuf,
    workers: Workers,
    commands: mpsc::Sender<Command>,
    config: Config,
    grace: Duration,
    api_stop: api::Shutdown,
    metrics: Arc<Metrics>,
    store: Arc<DaemonStore>,
    /// What the config in force asks of Graph (for the permissions).
    uses: watch::Sender<crate::graph::permissions::Uses>,
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
        let (api_token, viewer_token) = config.api.read_tokens()?;
        let credential = Credential::load(&config.graph.auth)?;
        let certificate_not_after = credential.certificate_not_after();
        if let Some(not_after) = certificate_not_after {
            let (usable, text) = permissions::certificate_check(not_after, chrono::Utc::now());
            if !usable || text.starts_with("warning") {
                tracing::warn!("{text}");
            } else {
                tracing::info!("{text}");
            }
        }
        let gate = options.cluster.as_ref().map(|term| Arc::clone(&term.gate));
        let graph = GraphClient::builder(&config.graph, credential)
            .gate(gate.clone())
            .build()?;
        let webhook_secret = match &config.webhook {
            Some(webhook) => Some(webhook.secret.read()?),
            None => None,
        };
        let state_dir = config.store.state_dir.clone();
        let store = {
            let dir = state_dir.clone();
            let cache_bytes = config.store.cache_mb.saturating_mul(1024 * 1024);
            tokio::task::spawn_blocking(move || SledStore::open_with_cache(&dir, cache_bytes))
                .await
                .map_err(|e| DaemonError::Task(format!("opening the store: {e}")))??
        };
        match store.opened() {
            OpenCheck::Deep => tracing::warn!(
                "the store was not closed cleanly (a crash, a kill or a power cut): every record was checked at open"
            ),
            OpenCheck::AfterCleanShutdown => {
                tracing::info!("the store was closed cleanly: opened with the quick checks")
            }
            OpenCheck::Created => tracing::info!("a new store was created"),
        }
        // The agents, and the stored directory: linking, overflow numbers
        // and readiness work from it at once; the full read refreshes it
        // behind. Its own delta link goes with it; an older store kept only
        // the link. Read once, with sled opened again after.
        let (store, loaded, stored_directory) = {
            let cache_bytes = config.store.cache_mb.saturating_mul(1024 * 1024);
            tokio::task::spawn_blocking(move || store.load_for_start(cache_bytes))
                .await
                .map_err(|e| DaemonError::Task(format!("loading the store: {e}")))??
        };
        // As a cluster's active node every batch goes to the commit log
        // first; a refused append shuts the gate at once.
        let store = Arc::new(match &options.cluster {
            Some(term) => {
                let replicated = (term.replicate)(store)?;
                let mut state = replicated.state();
                let gate = Arc::clone(&term.gate);
                tokio::spawn(async move {
                    let stopped = |s: &crate::cluster::replicated::ReplicaState| {
                        *s != crate::cluster::replicated::ReplicaState::Active
                    };
                    if state.wait_for(stopped).await.is_ok() {
                        gate.close("the commit log refused this node's append (another node has appended since, or NATS did not answer); it steps down");
                    }
                });
                DaemonStore::Cluster(replicated)
            }
            None => DaemonStore::Local(store),
        });
        // Who each poller reads: straight from the loop and the view, or
        // through the subscriptions' coverage when they are on.
        let (channels, routing) = Channels::new(config.subscriptions.enabled);
        let directory_view = Arc::new(DirectoryView::new(
            &config.directory.scope,
            Some(channels.view_tier.clone()),
        ));
        let mut delta_link = store.meta(&MetaKey::DeltaLink)?;
        let restored_directory = stored_directory.map(|stored| {
            if stored.delta_link.is_some() {
                delta_link = stored.delta_link;
            }
            tracing::info!(
                users = stored.users.len(),
                "the stored directory is in use until the full read refreshes it"
            );
            directory_view.restore(
                stored
                    .users
                    .iter()
                    .map(DirectoryRecord::from_stored)
                    .collect(),
            )
        });

        let poll_report = PollReport::new(TokioClock::shared());
        let directory_report = PollReport::new(TokioClock::shared());
        let reconcile_report = PollReport::new(TokioClock::shared());
        let prepared = setup::Prepared::new(&config, TokioClock::shared(), options.account_retry)?;
        let mut metrics = Metrics::new(graph.throttle().clone(), poll_report.clone())
            .map_err(|e| DaemonError::Task(format!("metrics: {e}")))?
            .with_directory(directory_report.clone(), Arc::clone(&directory_view));
        if routing.is_some() {
            metrics = metrics
                .with_subscriptions(
                    prepared.status.1.clone(),
                    Arc::clone(&reconcile_report),
                    Arc::clone(&prepared.read_now),
                    Arc::clone(&prepared.counters),
                    prepared.accounts.clone(),
                )
                .map_err(|e| DaemonError::Task(format!("metrics: {e}")))?;
        }
        let metrics = Arc::new(metrics);
        if let Some(not_after) = certificate_not_after {
            metrics
                .certificate_expiry
                .with([])
                .set(not_after.timestamp() as f64);
        }
        let (commands_tx, commands_rx) = mpsc::channel(4096);
        let (presence_tx, presence_rx) = mpsc::channel(65_536);
        let (results_tx, results_rx) = mpsc::channel(4096);
        let (writes_tx, writes_rx) = mpsc::unbounded_channel();
        let (events_tx, _) = broadcast::channel(4096);
        let (status_tx, status_rx) = watch::channel(Default::default());
        let outputs = Outputs {
            events: events_tx.clone(),
            writes: writes_tx,
            poll_users: channels.loop_users.clone(),
            status: status_tx,
            metrics: metrics.daemon.clone(),
            directory_view: Arc::clone(&directory_view),
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

        if restored_directory.is_some() {
            // The loop's first step: links and phones from the stored users.
            commands_tx
                .send(Command::Directory(DirectoryUpdate::Replace {
                    delta_link: None,
                }))
                .await
                .map_err(|_| DaemonError::Task("the sync loop is gone".into()))?;
        }
        let mut workers = Workers::new();
        let board = workers.board();
        workers.spawn(SyncLoopWorker {
            sync_loop,
            inputs: Inputs {
                commands: commands_rx,
                presences: presence_rx,
                write_results: results_rx,
            },
        });
        workers.spawn(DirectoryWorker {
            reader: DirectoryReader {
                graph: graph.clone(),
                view: Arc::clone(&directory_view),
                store: Arc::clone(&store) as Arc<dyn Store>,
                groups: config.directory.scope.groups().to_vec(),
            },
            delta_link,
            interval: options.directory_interval,
            commands: commands_tx.clone(),
        });
        // How the poller's last read went: Graph as a whole, for the writer too.
        let (health_tx, _) = watch::channel(None);
        let graph_health = health_tx.subscribe();
        workers.spawn(DirectoryPollerWorker {
            graph: graph.clone(),
            freshness: config.directory.freshness,
            report: directory_report,
            users: channels.directory_users,
            view: Arc::clone(&directory_view),
            gate: channels.gate.clone(),
        });
        workers.spawn(PollerWorker {
            graph: graph.clone(),
            view: Arc::clone(&directory_view),
            target: PollTarget::from_config(&config.budget),
            report: poll_report.clone(),
            users: channels.agent_users,
            presences: presence_tx.clone(),
            health: health_tx,
            gate: channels.gate.clone(),
        });
        let subscriptions = match (routing, channels.gate) {
            (Some(routing), Some(gate)) => Some(
                setup::start(
                    routing,
                    prepared,
                    setup::Start {
                        config: &config,
                        graph: &graph,
                        store: Arc::clone(&store) as Arc<dyn Store>,
                        view: Arc::clone(&directory_view),
                        presences: presence_tx,
                        gate,
                        clock: options
                            .subscription_clock
                            .clone()
                            .unwrap_or_else(TokioClock::shared),
                        reconcile: reconcile_report,
                    },
                    &mut workers,
                )
                .await?,
            ),
            _ => None,
        };
        let receiver_addr = subscriptions.as_ref().map(|s| s.receiver_addr);
        let (uses, uses_rx) = watch::channel(crate::graph::permissions::Uses {
            scope_groups: !config.directory.scope.groups().is_empty(),
            ..permissions::uses(&mappings.profiles, &config.routing)
        });
        let (permission_watch, permissions) = permissions::PermissionWatch::new(
            graph.throttle().tokens().clone(),
            uses_rx,
            crate::graph::permissions::consent_url(
                &config.graph.login_base,
                &config.graph.tenant_id,
                &config.graph.client_id,
            ),
            options.permission_recheck,
            commands_tx.clone(),
            metrics.permission_missing.clone(),
        );
        workers.spawn(WriterWorker {
            permissions: Some(permission_watch),
            graph: graph.clone(),
            jobs: writes_rx,
            results: results_tx,
            max_in_flight: options.max_writes_in_flight,
            deadline: config.engine_settings().write_answer_timeout / 2,
            graph_health,
        });
        workers.spawn(MappingWatch {
            current: mappings,
            config_file: config.file.clone(),
            interval: options.mapping_check_interval,
            commands: commands_tx.clone(),
            reload_errors: metrics.daemon.mapping_reloads.with(["error"]),
            uses: uses.clone(),
        });
        workers.spawn(RetentionWorker {
            store: Arc::clone(&store),
            retention: config.store.event_retention,
            keep: config.store.event_keep_at_least,
            interval: options.retention_interval,
        });
        if let (Some(webhook), Some(secret)) = (&config.webhook, &webhook_secret) {
            let shared: Arc<dyn Store> = Arc::clone(&store) as Arc<dyn Store>;
            let sink = WebhookSink::new(webhook, secret, shared)
                .map_err(|e| DaemonError::Task(format!("webhook sink: {e}")))?;
            workers.spawn(WebhookWorker {
                sink,
                wake: events_tx.subscribe(),
            });
        }
        if let Some(term) = &options.cluster {
            if let Some(sink) = &term.events {
                workers.spawn(cluster::events::EventsWorker {
                    store: Arc::clone(&store),
                    sink: Arc::clone(sink),
                    wake: events_tx.subscribe(),
                });
            }
            if let (Some(sink), Some(replicated)) = (&term.snapshots, store.cluster()) {
                workers.spawn(cluster::snapshots::SnapshotWorker {
                    store: Arc::clone(replicated),
                    sink: Arc::clone(sink),
                    interval: term.snapshot_interval,
                });
            }
        }
        let service = Arc::new(DaemonService {
            commands: commands_tx.clone(),
            store: Arc::clone(&store),
            events: events_tx,
            status: status_rx,
            board,
            metrics: Arc::clone(&metrics),
            directory: Arc::clone(&directory_view),
            subscriptions,
            cluster: options
                .cluster
                .as_ref()
                .map(|term| Arc::clone(&term.status)),
            permissions,
            proxy: crate::http::proxy_in_use(&config.graph.outbound),
            certificate_not_after,
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
                viewer_token,
                max_body_bytes: config.api.max_body_bytes,
                shutdown: api_stop.clone(),
                gate,
            },
        );
        workers.spawn_on(ApiWorker { listener, router }, api_stop.stop());
        tracing::info!(%api_addr, state_dir = %state_dir.display(), "presence-sync started");
        Ok(Daemon {
            api_addr,
            receiver_addr,
            state_dir,
            workers,
            commands: commands_tx,
            grace: options.stop_grace,
            config,
            api_stop,
            metrics,
            store,
            uses,
        })
    }

    /// Reads the config's `[mappings]` and every mapping file again; a
    /// bad file is logged with its errors and the config and mappings in
    /// force stay.
    pub async fn reload(&self) -> Result<(), Vec<Diagnostic>> {
        match mappings::reload(&self.config.file, &self.commands, &self.uses).await {
            Reload::Applied(_) | Reload::LoopGone => Ok(()),
            Reload::Refused(errors) => {
                self.metrics.daemon.mapping_reloads.with(["error"]).inc();
                Err(errors)
            }
        }
    }

    /// As a cluster's active node: the last commit-log record committed.
    pub fn cluster_position(&self) -> Option<crate::cluster::Position> {
        self.store.cluster().map(|store| store.position())
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
    pub fn take_failures(&mut self) -> Option<mpsc::UnboundedReceiver<Failure>> {
        self.workers.take_failures()
    }

    /// Stops taking work (the API first), lets the sync loop commit what it
    /// took, and waits for every task.
    pub async fn shutdown(self) -> Exit {
        // The API first, and wait for it: requests it already took reach
        // the sync loop before the loop is told to stop.
        self.api_stop.trigger();
        self.workers
            .board()
            .wait_ended(TaskName::Api, self.grace / 2)
            .await;
        let failures = self.workers.shutdown(self.grace).await;
        if failures.is_empty() {
            // Every task stopped and the sync loop committed what it took:
            // the next start may skip the store's deep check.
            let store = Arc::clone(&self.store);
            match tokio::task::spawn_blocking(move || store.mark_clean_shutdown()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot mark the store closed cleanly; the next start checks every record")
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot mark the store closed cleanly; the next start checks every record")
                }
            }
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
