//! How the daemon starts presence subscriptions when `[subscriptions]
//! enabled`: the channels that put the coverage between the pollers and
//! those who tell them whom to read, then every worker: the service
//! accounts, the subscription worker, the receiver's listener, the inbox's
//! processing, the reads notifications ask for and reconciliation.
//!
//! Without subscriptions the sync loop and the directory view send their
//! changes straight to their pollers, as before.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};

use super::graph_calls::GraphCalls;
use super::inflow::{Inflow, ReadNow, ReadNowStats};
use super::worker::{PollerLists, SubscriptionWorker, SubscriptionsStatus};
use crate::accounts::AccountTokens;
use crate::config::Config;
use crate::daemon::DaemonError;
use crate::daemon::tasks::Workers;
use crate::daemon::workers::{
    AccountsWorker, NotificationsWorker, ReadNowWorker, ReceiverWorker, ReconcilePollerWorker,
    SubscriptionsWorker,
};
use crate::directory::DirectoryView;
use crate::graph::poller::{
    PollChanges, PollUsers, PollUsersSender, SequenceGate, poll_changes, poll_users,
};
use crate::graph::subscriptions::EncryptionCertificate;
use crate::graph::{GraphClient, PollReport, PresenceUpdate, SharedClock};
use crate::notifications::Decryption;
use crate::receiver::{self, Counters, InboxWorker, KeySet, ReceiverSettings};
use crate::store::Store;
use crate::subscriptions::{AccountId, PlannerSettings};

/// Who the pollers read, and where changes to that go.
pub struct Channels {
    /// The sync loop sends who it linked and unlinked here.
    pub loop_users: PollUsersSender,
    /// The directory view sends its tier's changes here.
    pub view_tier: PollUsersSender,
    /// The agent poller's list.
    pub agent_users: PollUsers,
    /// The directory tier's list.
    pub directory_users: PollUsers,
    /// With subscriptions: the gate every presence source shares.
    pub gate: Option<Arc<SequenceGate>>,
}

/// With subscriptions: what the coverage routes, for [`start`].
pub struct Routing {
    agents: PollChanges,
    directory: PollChanges,
    pollers: PollerLists,
    reconcile_users: PollUsers,
}

impl Channels {
    /// The channels, and with `subscriptions` what [`start`] routes.
    pub fn new(subscriptions: bool) -> (Channels, Option<Routing>) {
        let (agent_tx, agent_users) = poll_users(Vec::new());
        let (directory_tx, directory_users) = poll_users(Vec::new());
        if !subscriptions {
            let channels = Channels {
                loop_users: agent_tx,
                view_tier: directory_tx,
                agent_users,
                directory_users,
                gate: None,
            };
            return (channels, None);
        }
        let (loop_users, agents) = poll_changes();
        let (view_tier, directory) = poll_changes();
        let (reconcile_tx, reconcile_users) = poll_users(Vec::new());
        let channels = Channels {
            loop_users,
            view_tier,
            agent_users,
            directory_users,
            gate: Some(SequenceGate::new()),
        };
        let routing = Routing {
            agents,
            directory,
            pollers: PollerLists {
                agent: agent_tx,
                directory: directory_tx,
                reconcile: reconcile_tx,
            },
            reconcile_users,
        };
        (channels, Some(routing))
    }
}

/// What the running subscriptions show: for `/readyz`, `/v1/health`,
/// `/metrics` and the board.
#[derive(Clone)]
pub struct SubscriptionsHandle {
    pub status: watch::Receiver<SubscriptionsStatus>,
    pub accounts: Vec<Arc<AccountTokens>>,
    pub counters: Arc<Counters>,
    pub reconcile: Arc<PollReport>,
    pub read_now: Arc<ReadNowStats>,
    /// The receiver's address (its listener bound).
    pub receiver_addr: std::net::SocketAddr,
}

/// What [`start`] is given by the daemon.
pub struct Start<'a> {
    pub config: &'a Config,
    pub graph: &'a GraphClient,
    pub store: Arc<dyn Store>,
    pub view: Arc<DirectoryView>,
    pub presences: mpsc::Sender<PresenceUpdate>,
    pub gate: Arc<SequenceGate>,
    pub clock: SharedClock,
    pub reconcile: Arc<PollReport>,
}

/// The handle's parts made before the metrics, which read them.
pub struct Prepared {
    pub status: (
        watch::Sender<SubscriptionsStatus>,
        watch::Receiver<SubscriptionsStatus>,
    ),
    pub counters: Arc<Counters>,
    pub read_now: Arc<ReadNowStats>,
    /// The service accounts (none without subscriptions).
    pub accounts: Vec<Arc<AccountTokens>>,
}

impl Prepared {
    pub fn new(
        config: &Config,
        clock: SharedClock,
        retry: Duration,
    ) -> Result<Prepared, DaemonError> {
        let accounts = if config.subscriptions.enabled {
            crate::accounts::accounts_for(config, clock, retry).map_err(DaemonError::Task)?
        } else {
            Vec::new()
        };
        Ok(Prepared {
            status: watch::channel(SubscriptionsStatus::default()),
            counters: Arc::default(),
            read_now: Arc::default(),
            accounts,
        })
    }
}

/// Starts every subscription worker on `workers`.
pub async fn start(
    routing: Routing,
    prepared: Prepared,
    start: Start<'_>,
    workers: &mut Workers,
) -> Result<SubscriptionsHandle, DaemonError> {
    let config = start.config;
    let subs = &config.subscriptions;
    let (Some(notification_url), lifecycle_url) =
        (subs.notification_url.clone(), subs.lifecycle_url.clone())
    else {
        return Err(DaemonError::Task(
            "[subscriptions] is enabled without notification_url".into(),
        ));
    };
    let client_state = subs.client_state.read()?;

    // Rich notifications: the certificate Graph encrypts for, and our key.
    let (decryption, encryption) = match &subs.encryption {
        None => (None, None),
        Some(files) => {
            let pem = std::fs::read_to_string(&files.certificate_file).map_err(|e| {
                DaemonError::Task(format!(
                    "cannot read the notification encryption certificate {}: {e}",
                    files.certificate_file.display()
                ))
            })?;
            let key = files.key.read()?;
            let probe = Decryption::from_pem(&pem, &key, "")
                .map_err(|e| DaemonError::Task(format!("the notification encryption key: {e}")))?;
            // The certificate's SHA-1 thumbprint names it to Graph.
            let id = probe.thumbprint();
            let decryption = Decryption::from_pem(&pem, &key, id.clone())
                .map_err(|e| DaemonError::Task(format!("the notification encryption key: {e}")))?;
            let der = crate::graph::auth::pem_block(&pem, "CERTIFICATE").ok_or_else(|| {
                DaemonError::Task(format!(
                    "{} holds no `BEGIN CERTIFICATE` block",
                    files.certificate_file.display()
                ))
            })?;
            use base64::Engine;
            (
                Some(Arc::new(decryption)),
                Some(EncryptionCertificate {
                    certificate: base64::engine::general_purpose::STANDARD.encode(der),
                    id,
                }),
            )
        }
    };

    let settings = ReceiverSettings {
        listen: subs.listen,
        notification_path: notification_url.path().to_string(),
        lifecycle_path: lifecycle_url.as_ref().map_or_else(
            || notification_url.path().to_string(),
            |u| u.path().to_string(),
        ),
        client_state: client_state.clone(),
        max_body: subs.max_body,
        decryption,
        client_id: config.graph.client_id.clone(),
        tenant_id: config.graph.tenant_id.clone(),
        jwks_url: format!(
            "{}/common/discovery/v2.0/keys",
            config.graph.login_base.trim_end_matches('/')
        ),
    };
    let wake = Arc::new(Notify::new());
    let router = receiver::router(
        &settings,
        Arc::clone(&start.store),
        wake.clone(),
        prepared.counters.clone(),
    )
    .map_err(|e| DaemonError::Task(e.to_string()))?;
    let listener = receiver::bind(&settings)
        .await
        .map_err(|e| DaemonError::Task(e.to_string()))?;
    let receiver_addr = listener.local_addr().map_err(|error| DaemonError::Bind {
        addr: settings.listen,
        error,
    })?;

    let accounts = prepared.accounts;
    let health_map: BTreeMap<AccountId, bool> = accounts
        .iter()
        .map(|a| (AccountId::from(a.upn()), a.status().is_ok()))
        .collect();
    let (health_tx, health_rx) = watch::channel(health_map);

    let http = crate::http::client_with(Duration::from_secs(10), &config.graph.outbound)
        .map_err(|e| DaemonError::Task(e.to_string()))?;
    let (outcomes_tx, outcomes_rx) = mpsc::channel(1024);
    let inbox = InboxWorker::new(
        &settings,
        Arc::clone(&start.store),
        KeySet::new(settings.jwks_url.clone(), http),
        wake,
        prepared.counters.clone(),
        outcomes_tx,
    );
    let inflow = Inflow {
        gate: Arc::clone(&start.gate),
        observer: Some(Arc::clone(&start.view) as Arc<dyn crate::graph::poller::PresenceObserver>),
        presences: start.presences.clone(),
    };
    let (read_now_tx, read_now_rx) = mpsc::unbounded_channel();
    let (lifecycle_tx, lifecycle_rx) = mpsc::channel(256);

    let calls = GraphCalls::new(
        start.graph.clone(),
        &accounts,
        notification_url,
        lifecycle_url,
        client_state,
        encryption,
    );
    let settings_plan = PlannerSettings {
        capacity: subs.max_users_per_subscription,
        lifetime: subs.lifetime,
        renew_before: subs.renew_before,
        ..PlannerSettings::default()
    };
    workers.spawn(AccountsWorker {
        accounts: accounts.clone(),
        health: health_tx,
    });
    workers.spawn(SubscriptionsWorker(SubscriptionWorker {
        calls: Arc::new(calls),
        settings: settings_plan,
        accounts: accounts.iter().map(|a| AccountId::from(a.upn())).collect(),
        health: health_rx,
        agents: routing.agents,
        directory: routing.directory,
        pollers: routing.pollers,
        lifecycle: lifecycle_rx,
        read_now: read_now_tx.clone(),
        status: prepared.status.0,
        clock: start.clock.clone(),
    }));
    workers.spawn(ReceiverWorker { listener, router });
    workers.spawn(NotificationsWorker {
        inbox,
        outcomes: outcomes_rx,
        inflow: inflow.clone(),
        read_now: read_now_tx,
        lifecycle: lifecycle_tx,
    });
    workers.spawn(ReadNowWorker {
        reader: ReadNow {
            source: start.graph.clone(),
            inflow,
            requests: read_now_rx,
            gather: Duration::from_millis(100),
            timeout: Duration::from_secs(30),
            stats: prepared.read_now.clone(),
        },
    });
    workers.spawn(ReconcilePollerWorker {
        graph: start.graph.clone(),
        interval: subs.reconcile_interval,
        report: Arc::clone(&start.reconcile),
        users: routing.reconcile_users,
        view: Arc::clone(&start.view),
        presences: start.presences,
        gate: start.gate,
    });
    tracing::info!(
        %receiver_addr,
        accounts = accounts.len(),
        "presence subscriptions on: notifications are received on their own listener"
    );
    Ok(SubscriptionsHandle {
        status: prepared.status.1,
        accounts,
        counters: prepared.counters,
        reconcile: start.reconcile,
        read_now: prepared.read_now,
        receiver_addr,
    })
}
