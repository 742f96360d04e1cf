//! `presence-sync run` with `[cluster]`: one node of the pair, for the life
//! of the process. It starts as a standby (its store following the commit
//! log, its API redirecting to the active node), takes the lease when nobody
//! holds it, catches up to the log's end, and runs a term as the active node
//! (the daemon as always, over the replicated store, behind the gate) until
//! it is stopped or steps down; then it is a standby again.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::signal::unix::{SignalKind, signal};

use super::follower::{FollowError, Followed, Follower};
use super::standby_api;
use super::status::{ClusterStatus, Role};
use super::term::{ActiveTerm, BoxFuture, ClusterStore, EventSink, SnapshotSink};
use crate::api::model::{LeaseHolderOut, NodeOut};
use crate::cluster::gate::Gate;
use crate::cluster::nats::{
    EventsPublisher, KvLease, Lease, LeaseError, LeaseHolder, Nats, NodeReport, Snapshots,
};
use crate::cluster::replicated::ReplicatedStore;
use crate::cluster::{CommitLog, LogError, Position, SnapshotMeta};
use crate::config::{ClusterConfig, Config};
use crate::daemon::{Daemon, DaemonError, DaemonOptions, Exit};
use crate::events::Event;
use crate::stop::{Stop, StopHandle};
use crate::store::{SledStore, Store};
use crate::systemd::{self, Notifier};

/// How long a standby waits for the next record before it looks at the
/// lease and its signals again.
const FOLLOW_WAIT: Duration = Duration::from_millis(250);
/// Waits after a failure talking to NATS while standing by.
const RETRY: Duration = Duration::from_secs(2);
/// How often the node reports itself and reads the others and the log's end.
const REPORT_EVERY: Duration = Duration::from_secs(1);
/// How long the API's port is tried while the last term's listener closes.
const BIND_FOR: Duration = Duration::from_secs(10);

/// Why the process stops.
enum Ending {
    Signal,
    Failed(String),
}

/// Runs the node until SIGTERM or SIGINT.
pub async fn run(config: Config, options: DaemonOptions) -> Result<Exit, DaemonError> {
    let Some(cluster) = config.cluster.clone() else {
        return Err(DaemonError::Task("no [cluster] section".into()));
    };
    let notifier = Notifier::from_env();
    let mut signals = Signals::new()?;
    let status = Arc::new(ClusterStatus::new(&cluster.node_id, &cluster.tenant));
    let mut api = Some(StandbyApi::start(&config, Arc::clone(&status)).await?);
    if let Err(e) = notifier.ready() {
        tracing::warn!(error = %e, "cannot tell systemd we are ready");
    }
    let _ = notifier.status("standby: connecting to NATS");
    let Some(nats) = connect(&cluster, &status, &mut signals).await else {
        if let Some(api) = api.take() {
            api.stop().await;
        }
        return Ok(Exit::Stopped);
    };
    let (monitor_stop, monitor) = Stop::new();
    tokio::spawn(monitor_loop(
        nats.clone(),
        Arc::clone(&status),
        cluster.clone(),
        monitor,
    ));
    let follower = Follower {
        dir: config.store.state_dir.clone(),
        cache_bytes: config.store.cache_mb.saturating_mul(1024 * 1024),
        log: nats.log(),
        snapshots: nats.snapshots(),
        status: Arc::clone(&status),
    };
    let ending = loop {
        status.set_role(Role::Standby);
        let _ = notifier.status("standby: following the commit log");
        let Some((followed, lease)) =
            stand_by(&follower, &nats, &cluster, &status, &mut signals, &notifier).await
        else {
            break Ending::Signal;
        };
        if let Some(api) = api.take() {
            api.stop().await;
        }
        match active_term(
            &config,
            &options,
            &cluster,
            &nats,
            &status,
            followed,
            lease,
            &mut signals,
            &notifier,
        )
        .await
        {
            Term::SteppedDown => {}
            Term::Ended(ending) => break ending,
        }
        api = Some(StandbyApi::start(&config, Arc::clone(&status)).await?);
    };
    let _ = notifier.stopping();
    monitor_stop.stop();
    if let Some(api) = api.take() {
        api.stop().await;
    }
    match ending {
        Ending::Signal => Ok(Exit::Stopped),
        Ending::Failed(why) => Ok(Exit::Failed(why)),
    }
}

/// The process's signals, and the watchdog's rhythm.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    ping_every: Option<Duration>,
    next_ping: Instant,
}

impl Signals {
    fn new() -> Result<Signals, DaemonError> {
        let error =
            |e: std::io::Error| DaemonError::Task(format!("cannot listen for signals: {e}"));
        Ok(Signals {
            term: signal(SignalKind::terminate()).map_err(error)?,
            int: signal(SignalKind::interrupt()).map_err(error)?,
            hup: signal(SignalKind::hangup()).map_err(error)?,
            ping_every: systemd::watchdog_interval(),
            next_ping: Instant::now(),
        })
    }

    /// Resolves on SIGTERM or SIGINT.
    async fn stop(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }

    /// A standby's watchdog ping, when one is due: it is alive as long as
    /// it goes round its loop.
    fn ping_if_due(&mut self, notifier: &Notifier) {
        if let Some(every) = self.ping_every
            && Instant::now() >= self.next_ping
        {
            let _ = notifier.watchdog();
            self.next_ping = Instant::now() + every / 2;
        }
    }
}

/// The API of a node that is not active, on the daemon's listen address.
struct StandbyApi {
    stop: StopHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl StandbyApi {
    async fn start(config: &Config, status: Arc<ClusterStatus>) -> Result<StandbyApi, DaemonError> {
        let addr = config.api.listen;
        let deadline = Instant::now() + BIND_FOR;
        let listener = loop {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(listener) => break listener,
                // The last term's listener may take a moment to close.
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => return Err(DaemonError::Bind { addr, error }),
            }
        };
        let (stop, stopped) = Stop::new();
        let task = tokio::spawn(crate::api::serve(
            listener,
            standby_api::router(status),
            stopped,
        ));
        Ok(StandbyApi { stop, task })
    }

    /// Stops it and waits until its port is free.
    async fn stop(self) {
        self.stop.stop();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

/// Connects and provisions, trying again until it works or a signal comes.
async fn connect(
    cluster: &ClusterConfig,
    status: &Arc<ClusterStatus>,
    signals: &mut Signals,
) -> Option<Nats> {
    loop {
        let attempt = async {
            let nats = Nats::connect(cluster).await?;
            nats.provision().await?;
            Ok::<_, crate::cluster::nats::ClusterError>(nats)
        };
        let result = tokio::select! {
            () = signals.stop() => return None,
            result = attempt => result,
        };
        match result {
            Ok(nats) => {
                status.nats_ok();
                tracing::info!(tenant = %cluster.tenant, node = %cluster.node_id, "connected to NATS");
                return Some(nats);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot use NATS yet; trying again");
                status.nats_failed(e.to_string());
                tokio::select! {
                    () = signals.stop() => return None,
                    () = tokio::time::sleep(RETRY) => {}
                }
            }
        }
    }
}

/// The node's reports: its NATS connection, the log's end, the lease
/// holder, and every node's role and position (its own published).
async fn monitor_loop(nats: Nats, status: Arc<ClusterStatus>, cluster: ClusterConfig, stop: Stop) {
    let log = nats.log();
    let lease = nats.lease();
    let nodes = nats.nodes();
    loop {
        let connection = nats.status();
        status.set_nats_connection(connection.connected, connection.server);
        let round = async {
            let (_, last) = log.bounds().await?;
            status.set_log_last(last);
            let holder = lease.holder().await?;
            status.set_holder(holder.map(holder_out));
            let out = status.out();
            let role = match status.role() {
                Role::Active => crate::cluster::nats::Role::Active,
                _ => crate::cluster::nats::Role::Standby,
            };
            nodes
                .put(&NodeReport {
                    node_id: cluster.node_id.clone(),
                    role,
                    position: out.position,
                    api_url: cluster.advertise_url.to_string(),
                    at: chrono::Utc::now(),
                })
                .await?;
            let all = nodes.all().await?;
            status.set_nodes(
                all.into_iter()
                    .map(|r| NodeOut {
                        node_id: r.node_id,
                        role: match r.role {
                            crate::cluster::nats::Role::Active => "active".into(),
                            crate::cluster::nats::Role::Standby => "standby".into(),
                        },
                        position: r.position,
                        api_url: r.api_url,
                        at: r.at,
                    })
                    .collect(),
            );
            Ok::<_, crate::cluster::nats::ClusterError>(())
        };
        match stop.unless_stopped(round).await {
            None => return,
            Some(Ok(())) => status.nats_ok(),
            Some(Err(e)) => status.nats_failed(e.to_string()),
        }
        if !stop.sleep(REPORT_EVERY).await {
            return;
        }
    }
}

fn holder_out(holder: LeaseHolder) -> LeaseHolderOut {
    LeaseHolderOut {
        node_id: holder.node_id,
        api_url: holder.api_url,
        since: holder.since,
    }
}

/// Standing by: the store follows the log; the lease is tried whenever
/// nobody holds it. Returns the store, caught up to the log's end, and the
/// lease; `None` on a signal.
async fn stand_by(
    follower: &Follower,
    nats: &Nats,
    cluster: &ClusterConfig,
    status: &Arc<ClusterStatus>,
    signals: &mut Signals,
    notifier: &Notifier,
) -> Option<(Followed, Lease)> {
    let kv = nats.lease();
    let every = kv.timing().acquire_interval();
    let mut followed = None;
    let mut next_look = Instant::now();
    loop {
        signals.ping_if_due(notifier);
        let current = match followed.take() {
            Some(current) => current,
            None => {
                let opened = tokio::select! {
                    () = signals.stop() => return None,
                    opened = follower.open() => opened,
                };
                match opened {
                    Ok(opened) => opened,
                    Err(e) => {
                        report_follow_error(status, &e);
                        tokio::select! {
                            () = signals.stop() => return None,
                            () = tokio::time::sleep(RETRY) => {}
                        }
                        continue;
                    }
                }
            }
        };
        // A SIGHUP while standing by waits: the mappings are read when
        // this node becomes active, and the reload happens then.
        let stepped = tokio::select! {
            biased;
            () = signals.stop() => return None,
            stepped = follower.step(current, FOLLOW_WAIT) => stepped,
        };
        match stepped {
            Ok((current, _)) => followed = Some(current),
            Err((current, e)) => {
                followed = current;
                report_follow_error(status, &e);
                tokio::select! {
                    () = signals.stop() => return None,
                    () = tokio::time::sleep(RETRY) => {}
                }
                continue;
            }
        }
        if Instant::now() < next_look {
            continue;
        }
        next_look = Instant::now() + every;
        let me = LeaseHolder {
            node_id: cluster.node_id.clone(),
            api_url: cluster.advertise_url.to_string(),
            since: chrono::Utc::now(),
        };
        match kv.acquire(&me).await {
            Ok(Some(lease)) => {
                tracing::info!("took the lease; catching up to the end of the commit log");
                let Some(current) = followed.take() else {
                    continue;
                };
                match follower.catch_up(current).await {
                    Ok(current) => return Some((current, lease)),
                    Err((current, e)) => {
                        followed = current;
                        report_follow_error(status, &e);
                        let _ = kv.release(&lease).await;
                    }
                }
            }
            Ok(None) => {}
            Err(e) => status.nats_failed(e.to_string()),
        }
    }
}

fn report_follow_error(status: &ClusterStatus, error: &FollowError) {
    tracing::warn!(%error, "standby: cannot follow the commit log; trying again");
    status.nats_failed(error.to_string());
}

/// How a term as active ended.
enum Term {
    /// Back to standby.
    SteppedDown,
    /// The process stops.
    Ended(Ending),
}

/// The commit log as the active's store appends to it: nothing once the
/// gate has shut for good; while its deadline has passed but a renewal may
/// still confirm the lease, or NATS does not answer (a JetStream leader
/// election takes seconds), the append waits and is tried again, within
/// `patience`. Trying again is safe: the same record at the same position
/// is answered with its first position, and one after a successor's is
/// fenced.
struct GatedLog {
    log: Arc<dyn CommitLog>,
    gate: Arc<Gate>,
    patience: Duration,
}

/// Between two tries of an append.
const APPEND_RETRY: Duration = Duration::from_millis(200);

impl CommitLog for GatedLog {
    fn append(&self, record: &[u8], expected_last: Position) -> Result<Position, LogError> {
        let give_up = Instant::now() + self.patience;
        loop {
            if self.gate.is_closed() {
                let why = self.gate.why_not().unwrap_or_default();
                return Err(LogError::Unavailable(why));
            }
            let last_error = if self.gate.may_act() {
                match self.log.append(record, expected_last) {
                    Err(LogError::Unavailable(why)) => why,
                    answer => return answer,
                }
            } else {
                self.gate.why_not().unwrap_or_default()
            };
            if Instant::now() >= give_up {
                return Err(LogError::Unavailable(format!(
                    "{last_error} (for {:?})",
                    self.patience
                )));
            }
            // Called off the async threads (the store's callers run it in
            // spawn_blocking), so a plain sleep is the wait.
            std::thread::sleep(APPEND_RETRY);
        }
    }
}

struct NatsEvents(EventsPublisher);

impl EventSink for NatsEvents {
    fn publish<'a>(&'a self, events: &'a [Event]) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move { self.0.publish(events).await.map_err(|e| e.to_string()) })
    }
}

struct NatsSnapshots(Snapshots);

impl SnapshotSink for NatsSnapshots {
    fn put(&self, meta: SnapshotMeta, file: std::fs::File) -> BoxFuture<'_, Result<(), String>> {
        let file = tokio::fs::File::from_std(file);
        Box::pin(async move { self.0.put(&meta, file).await.map_err(|e| e.to_string()) })
    }
}

/// Keeps the lease: renews it a third of the TTL after each renewal was
/// sent. A renewal refused (another node holds it) shuts the gate for good.
/// While NATS does not answer, the gate shuts by itself at the lease's end
/// (nothing acts), and the renewal is tried on for two more TTLs: one that
/// then succeeds proves by its compare-and-set that nobody took the lease,
/// and reopens the gate (a JetStream election costs a pause, not a
/// takeover); after that the node steps down.
async fn keep_lease(
    kv: KvLease,
    lease: Arc<Mutex<Lease>>,
    gate: Arc<Gate>,
    status: Arc<ClusterStatus>,
) {
    let timing = kv.timing();
    let grace = timing.ttl() * 2;
    let mut sent = Instant::now();
    loop {
        let at = timing.renew_at(sent);
        let mut closed = gate.closed();
        tokio::select! {
            _ = closed.wait_for(|c| *c) => return,
            () = tokio::time::sleep_until(at.into()) => {}
        }
        loop {
            let current = lease.lock().unwrap_or_else(PoisonError::into_inner).clone();
            sent = Instant::now();
            match kv.renew(&current).await {
                Ok(renewed) => {
                    gate.extend(renewed.valid_until);
                    *lease.lock().unwrap_or_else(PoisonError::into_inner) = renewed;
                    status.nats_ok();
                    break;
                }
                Err(LeaseError::Lost(why)) => {
                    gate.close(format!("another node took the lease ({why})"));
                    return;
                }
                Err(LeaseError::Unavailable(why)) => {
                    status.nats_failed(why.clone());
                    let now = Instant::now();
                    match timing.retry_in(current.valid_until, now) {
                        Some(wait) => tokio::time::sleep(wait).await,
                        None if now < current.valid_until + grace => {
                            tokio::time::sleep(timing.ttl() / 10).await;
                        }
                        None => {
                            gate.close(format!(
                                "the lease ran out: NATS did not confirm its renewal ({why})"
                            ));
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// A term as the active node.
#[allow(clippy::too_many_arguments)]
async fn active_term(
    config: &Config,
    options: &DaemonOptions,
    cluster: &ClusterConfig,
    nats: &Nats,
    status: &Arc<ClusterStatus>,
    followed: Followed,
    lease: Lease,
    signals: &mut Signals,
    notifier: &Notifier,
) -> Term {
    let gate = Arc::new(Gate::until(lease.valid_until));
    let lease = Arc::new(Mutex::new(lease));
    let kv = nats.lease();
    let keeper = tokio::spawn(keep_lease(
        kv.clone(),
        Arc::clone(&lease),
        Arc::clone(&gate),
        Arc::clone(status),
    ));
    let log = Arc::new(GatedLog {
        log: Arc::new(nats.log()),
        gate: Arc::clone(&gate),
        patience: cluster.lease_ttl * 3,
    });
    // The store is handed to the daemon closed (and marked so, which
    // spares the start its deep check); an empty log gets its first record
    // and the first snapshot before anything else.
    if let Err(why) = prepare_store(followed, &log, nats).await {
        return step_down(status, &gate, &kv, &lease, keeper, why).await;
    }
    let replicate_log: Arc<dyn CommitLog> = log;
    // Room for the message's headers within what the server takes.
    let max_record = nats.max_payload().saturating_sub(4096);
    let term = ActiveTerm {
        gate: Arc::clone(&gate),
        replicate: Arc::new(move |sled: SledStore| {
            let store = ReplicatedStore::new(sled, Arc::clone(&replicate_log))?
                .with_max_record_bytes(max_record);
            Ok(Arc::new(store) as Arc<dyn ClusterStore>)
        }),
        status: Arc::clone(status),
        events: Some(Arc::new(NatsEvents(nats.events()))),
        snapshots: Some(Arc::new(NatsSnapshots(nats.snapshots()))),
        snapshot_interval: cluster.snapshot_interval,
    };
    let started = Daemon::start(
        config.clone(),
        DaemonOptions {
            cluster: Some(term),
            ..options.clone()
        },
    )
    .await;
    let mut daemon = match started {
        Ok(daemon) => daemon,
        Err(e) => {
            // What fails one node's start (a mapping, a secret, the port)
            // fails the others' too: stop, and let the service manager say so.
            tracing::error!(error = %e, "cannot start as the active node");
            gate.close(format!("the daemon could not start: {e}"));
            keeper.abort();
            let current = lease.lock().unwrap_or_else(PoisonError::into_inner).clone();
            let _ = kv.release(&current).await;
            return Term::Ended(Ending::Failed(e.to_string()));
        }
    };
    status.took_over();
    status.set_holder(Some(holder_out(
        lease
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .holder
            .clone(),
    )));
    tracing::warn!(node = %cluster.node_id, api = %daemon.api_addr, "this node is now the active one");
    let _ = notifier.status(&format!("active, serving on {}", daemon.api_addr));
    let Some(mut failures) = daemon.take_failures() else {
        let _ = daemon.shutdown().await;
        return Term::Ended(Ending::Failed("task failures already taken".into()));
    };
    let ping_every = signals.ping_every;
    let mut watchdog = tokio::time::interval(ping_every.unwrap_or(Duration::from_secs(3600)));
    watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut closed = gate.closed();
    // The gate's deadline passing is a pause (nothing acts); the lease
    // keeper decides whether it becomes a step-down.
    let mut report = tokio::time::interval(Duration::from_millis(250));
    let ended = loop {
        tokio::select! {
            _ = signals.term.recv() => break None,
            _ = signals.int.recv() => break None,
            _ = signals.hup.recv() => {
                let _ = notifier.reloading();
                if let Err(errors) = daemon.reload().await {
                    for e in &errors {
                        tracing::error!("{e}");
                    }
                    tracing::error!("reload refused: the config or a mapping file has errors; the config and mappings in force stay");
                }
                let _ = notifier.ready();
            }
            _ = watchdog.tick(), if ping_every.is_some() => {
                if daemon.alive(ping_every.unwrap_or_default() / 2).await {
                    let _ = notifier.watchdog();
                } else {
                    tracing::error!("the sync loop did not answer its liveness check");
                }
            }
            _ = closed.wait_for(|c| *c) => break Some(None),
            _ = report.tick() => {
                if let Some(position) = daemon.cluster_position() {
                    status.set_position(position);
                }
            }
            Some((name, failure)) = failures.recv() => {
                if gate.may_act() {
                    break Some(Some(format!("{name}: {failure}")));
                }
                break Some(None);
            }
        }
    };
    match ended {
        // Stopped by a signal: the daemon commits what it took, then the
        // lease goes so a standby takes over at once.
        None => {
            let _ = notifier.stopping();
            tracing::info!(
                "stopping: no new work, committing what was taken, then letting go of the lease"
            );
            let exit = daemon.shutdown().await;
            gate.close("this node is stopping");
            keeper.abort();
            let current = lease.lock().unwrap_or_else(PoisonError::into_inner).clone();
            let _ = kv.release(&current).await;
            Term::Ended(match exit {
                Exit::Stopped => Ending::Signal,
                Exit::Failed(why) => Ending::Failed(why),
            })
        }
        Some(Some(failure)) => {
            // A task failed while this node may still act: the same as a
            // single daemon, the process stops (the lease goes).
            tracing::error!(%failure, "a task failed; stopping");
            let _ = daemon.shutdown().await;
            gate.close("this node stopped after a failure");
            keeper.abort();
            let current = lease.lock().unwrap_or_else(PoisonError::into_inner).clone();
            let _ = kv.release(&current).await;
            Term::Ended(Ending::Failed(failure))
        }
        Some(None) => {
            let why = gate
                .why_not()
                .unwrap_or_else(|| "this node stepped down".into());
            gate.close(why.clone());
            let _ = daemon.shutdown().await;
            step_down(status, &gate, &kv, &lease, keeper, why).await
        }
    }
}

/// Closes the store a term starts from (writing the log's first record
/// and the first snapshot on an empty log), marked closed cleanly.
async fn prepare_store(followed: Followed, log: &Arc<GatedLog>, nats: &Nats) -> Result<(), String> {
    let Followed { store, position } = followed;
    let store =
        Arc::try_unwrap(store).map_err(|_| "the standby's store is still in use".to_string())?;
    if position > 0 {
        return tokio::task::spawn_blocking(move || store.mark_clean_shutdown())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string());
    }
    let log: Arc<dyn CommitLog> = Arc::clone(log) as Arc<dyn CommitLog>;
    let first = tokio::task::spawn_blocking(move || {
        let replicated = ReplicatedStore::new(store, log)?;
        replicated.genesis()?;
        let snapshot = replicated.snapshot_file()?;
        let store = replicated.into_sled();
        store.mark_clean_shutdown()?;
        Ok::<_, crate::store::StoreError>(snapshot)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("cannot start the commit log: {e}"))?;
    let (meta, file) = first;
    tracing::info!(store_id = %meta.store_id, "the commit log was empty: this store starts it");
    nats.snapshots()
        .put(&meta, tokio::fs::File::from_std(file))
        .await
        .map_err(|e| format!("cannot store the first snapshot: {e}"))
}

async fn step_down(
    status: &Arc<ClusterStatus>,
    gate: &Arc<Gate>,
    kv: &KvLease,
    lease: &Arc<Mutex<Lease>>,
    keeper: tokio::task::JoinHandle<()>,
    why: String,
) -> Term {
    gate.close(why.clone());
    keeper.abort();
    tracing::warn!(%why, "stepped down: this node is a standby again");
    status.stepped_down(why);
    // Let go of the lease if it is still ours (a failed start, a store
    // that could not be prepared): a refused release means it is not.
    let current = lease.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let _ = kv.release(&current).await;
    Term::SteppedDown
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::memory_log::MemoryLog;

    #[test]
    fn a_gated_log_appends_until_the_gate_shuts_then_nothing() {
        let memory = MemoryLog::new();
        let gate = Arc::new(Gate::open());
        let gated = GatedLog {
            log: memory.clone(),
            gate: Arc::clone(&gate),
            patience: Duration::from_secs(1),
        };
        assert_eq!(gated.append(b"one", 0), Ok(1));
        gate.close("another node took the lease");
        assert!(matches!(
            gated.append(b"two", 1),
            Err(LogError::Unavailable(why)) if why.contains("another node")
        ));
        assert_eq!(memory.last(), 1, "nothing reached the log");
    }

    #[test]
    fn an_unanswered_append_is_tried_again_and_a_paused_gate_waits() {
        let memory = MemoryLog::new();
        let gate = Arc::new(Gate::until(Instant::now() + Duration::from_secs(60)));
        let gated = GatedLog {
            log: memory.clone(),
            gate: Arc::clone(&gate),
            patience: Duration::from_secs(5),
        };
        memory.fail_next(LogError::Unavailable("no answer".into()));
        assert_eq!(gated.append(b"one", 0), Ok(1), "the second try lands");
        // A successor's record: the retry is fenced, not stored twice.
        memory.append_as_other(b"theirs");
        assert!(matches!(
            gated.append(b"two", 1),
            Err(LogError::Fenced { .. })
        ));

        // Past its deadline the gate pauses appends until a renewal.
        let paused = Arc::new(Gate::until(Instant::now()));
        let waiting = GatedLog {
            log: memory.clone(),
            gate: Arc::clone(&paused),
            patience: Duration::from_secs(5),
        };
        let renew = {
            let paused = Arc::clone(&paused);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                paused.extend(Instant::now() + Duration::from_secs(60));
            })
        };
        assert_eq!(waiting.append(b"three", 2), Ok(3));
        renew.join().unwrap();

        // Never confirmed: given up after the patience, nothing appended.
        let lapsed = GatedLog {
            log: memory.clone(),
            gate: Arc::new(Gate::until(Instant::now())),
            patience: Duration::from_millis(300),
        };
        assert!(matches!(
            lapsed.append(b"four", 3),
            Err(LogError::Unavailable(_))
        ));
        assert_eq!(memory.last(), 3);
    }
}
