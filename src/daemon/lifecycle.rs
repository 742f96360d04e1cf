//! The daemon's life under a service manager (SPEC §8): READY once the store
//! is open and the listener bound, watchdog pings only while the sync loop
//! answers, SIGHUP reloads the mappings, SIGTERM stops taking work, lets the
//! loop commit what it took, and exits.

use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};

use crate::config::Config;
use crate::systemd::{self, Notifier};

use super::{Daemon, DaemonError, DaemonOptions, Exit};

/// Environment variable of the watchdog test: after this many seconds the
/// sync loop stops answering its liveness check, as a hung loop would. Off
/// unless set; for proving the unit's watchdog, never for production.
pub const STALL_FAULT_ENV: &str = "PRESENCE_SYNC_FAULT_STALL_AFTER_SECS";

/// Runs the daemon until SIGTERM or SIGINT (or a task failure).
pub async fn run(config: Config, options: DaemonOptions) -> Result<Exit, DaemonError> {
    if config.cluster.is_some() {
        // One node of an active/standby pair (docs/cluster.md).
        return super::cluster::node::run(config, options).await;
    }
    let notifier = Notifier::from_env();
    let mut term = signal(SignalKind::terminate()).map_err(signal_error)?;
    let mut int = signal(SignalKind::interrupt()).map_err(signal_error)?;
    let mut hup = signal(SignalKind::hangup()).map_err(signal_error)?;

    let mut daemon = Daemon::start(config, options).await?;
    let mut failures = daemon
        .take_failures()
        .ok_or_else(|| DaemonError::Task("task failures already taken".into()))?;
    if let Err(e) = notifier.ready() {
        tracing::warn!(error = %e, "cannot tell systemd we are ready");
    }
    let _ = notifier.status(&format!("serving on {}", daemon.api_addr));

    let ping_every = systemd::watchdog_interval();
    let mut watchdog = tokio::time::interval(ping_every.unwrap_or(Duration::from_secs(3600)));
    watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stall_after = std::env::var(STALL_FAULT_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    if stall_after.is_some() {
        tracing::warn!("{STALL_FAULT_ENV} is set: the liveness check will fail on purpose");
    }

    let exit = loop {
        tokio::select! {
            _ = term.recv() => break None,
            _ = int.recv() => break None,
            _ = hup.recv() => {
                let _ = notifier.reloading();
                match daemon.reload().await {
                    Ok(()) => tracing::info!("reload: mappings read again"),
                    Err(errors) => {
                        for e in &errors {
                            tracing::error!("{e}");
                        }
                        tracing::error!("reload refused: the config or a mapping file has errors; the config and mappings in force stay");
                    }
                }
                let _ = notifier.ready();
            }
            _ = watchdog.tick(), if ping_every.is_some() => {
                let stalled = stall_after.is_some_and(|at| tokio::time::Instant::now() >= at);
                // A liveness check, not a timer: the ping goes only when the
                // sync loop itself went round.
                // Half the ping period at most, so one slow answer still
                // leaves a ping in time.
                let within = ping_every.unwrap_or_default() / 2;
                if !stalled && daemon.alive(within).await {
                    let _ = notifier.watchdog();
                } else {
                    tracing::error!("the sync loop did not answer its liveness check");
                }
            }
            Some((name, failure)) = failures.recv() => break Some(format!("{name}: {failure}")),
        }
    };
    let _ = notifier.stopping();
    if let Some(failure) = exit {
        tracing::error!(%failure, "a task failed; stopping");
        let _ = daemon.shutdown().await;
        return Ok(Exit::Failed(failure));
    }
    tracing::info!("stopping: no new work, committing what was taken");
    Ok(daemon.shutdown().await)
}

fn signal_error(e: std::io::Error) -> DaemonError {
    DaemonError::Task(format!("cannot listen for signals: {e}"))
}
