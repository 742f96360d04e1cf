//! The daemon's metrics: the registry of [`crate::metrics`], fed by the sync
//! loop as it goes, with the counters other parts keep themselves (the Graph
//! request path, the engine) mirrored in when read.

use std::sync::Arc;

use crate::api::model::HealthStats;
use crate::directory::DirectoryView;
use crate::graph::{PollReport, Throttle};
use crate::metrics::{Counter, DaemonMetrics, GaugeVec, MetricsError, Registry};
use crate::receiver::Counters;

use super::subscriptions::metrics::SubscriptionMetrics;
use super::subscriptions::{ReadNowStats, SubscriptionsStatus};

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub daemon: DaemonMetrics,
    /// `presence_sync_graph_permission_missing{permission}`: 1 while a
    /// permission the config needs is not granted.
    pub permission_missing: GaugeVec<1>,
    /// `presence_sync_graph_certificate_expiry_timestamp_seconds`: when the
    /// certificate credential expires (unix seconds; absent with a secret).
    pub certificate_expiry: GaugeVec<0>,
    throttle: Arc<Throttle>,
    poll: Arc<PollReport>,
    /// The directory's slower tier, and the view it reads for.
    directory: Option<(Arc<PollReport>, Arc<DirectoryView>)>,
    /// Presence subscriptions, when enabled.
    subscriptions: Option<SubscriptionMetrics>,
}

/// The process's resident memory in bytes, from `/proc/self/status`
/// (Linux); `None` where there is no such file or it does not say.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    resident_bytes_in(&status)
}

/// The `VmRSS:` line of a `/proc/<pid>/status` text, in bytes (the kernel
/// writes it in kB, meaning KiB).
fn resident_bytes_in(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let mut words = line.split_whitespace();
    let kib: u64 = words.next()?.parse().ok()?;
    match (words.next(), words.next()) {
        (Some("kB"), None) => kib.checked_mul(1024),
        _ => None,
    }
}

/// Brings a counter up to a total counted elsewhere (never down: counters
/// only grow, and a total only grows while the process lives).
pub fn mirror(counter: &Counter, total: u64) {
    let have = counter.get();
    if total > have {
        counter.inc_by(total - have);
    }
}

impl Metrics {
    /// The poll report is the presence poller's (round, read freshness).
    pub fn poll(&self) -> &Arc<PollReport> {
        &self.poll
    }

    /// The directory tier's report and the view, when the daemon has them.
    pub fn directory(&self) -> Option<&(Arc<PollReport>, Arc<DirectoryView>)> {
        self.directory.as_ref()
    }

    /// Reports the directory's slower tier and its view too.
    pub fn with_directory(mut self, report: Arc<PollReport>, view: Arc<DirectoryView>) -> Self {
        self.directory = Some((report, view));
        self
    }

    /// The subscriptions' metrics, when enabled.
    pub fn subscriptions(&self) -> Option<&SubscriptionMetrics> {
        self.subscriptions.as_ref()
    }

    /// Reports presence subscriptions too.
    pub fn with_subscriptions(
        mut self,
        status: tokio::sync::watch::Receiver<SubscriptionsStatus>,
        reconcile: Arc<PollReport>,
        read_now: Arc<ReadNowStats>,
        counters: Arc<Counters>,
        accounts: Vec<Arc<crate::accounts::AccountTokens>>,
    ) -> Result<Self, MetricsError> {
        self.subscriptions = Some(SubscriptionMetrics::register(
            &self.registry,
            status,
            reconcile,
            read_now,
            counters,
            accounts,
        )?);
        Ok(self)
    }

    /// Graph requests per second the budget allows now.
    pub fn rate_limit(&self) -> f64 {
        self.throttle.budget().rate_limit()
    }

    pub fn new(throttle: Arc<Throttle>, poll: Arc<PollReport>) -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let daemon = DaemonMetrics::register(&registry)?;
        let permission_missing = registry.gauge_vec(
            "presence_sync_graph_permission_missing",
            "1 while an application permission the config needs is not granted to the app (read from the access token's roles)",
            ["permission"],
        )?;
        let certificate_expiry = registry.gauge_vec(
            "presence_sync_graph_certificate_expiry_timestamp_seconds",
            "When the Graph client certificate expires, in unix seconds (only with a certificate credential)",
            [],
        )?;
        Ok(Metrics {
            registry,
            daemon,
            permission_missing,
            certificate_expiry,
            throttle,
            poll,
            directory: None,
            subscriptions: None,
        })
    }

    /// The numbers of the health report: Graph's budget, 429s, failures and
    /// token, the loop guard, overrides and the outbox.
    pub fn health_stats(&self) -> HealthStats {
        let stats = self.throttle.stats();
        let (mut throttled, mut failed) = (0, 0);
        for ((_, outcome), n) in stats.calls() {
            match outcome {
                "ok" => {}
                "throttled" => throttled += n,
                _ => failed += n,
            }
        }
        let (expires_in, token_error) = self.throttle.tokens().status();
        HealthStats {
            graph_budget_per_30s: self.throttle.config().requests,
            graph_budget_in_use: stats.in_window() as u64,
            graph_throttled_total: throttled,
            graph_failed_total: failed,
            token_expires_in_seconds: expires_in.map(|d| d.as_secs_f64().floor()),
            token_error,
            loop_suspensions_total: self.daemon.loop_suspensions.get(),
            teams_overrides_total: self.daemon.teams_overrides.get(),
            outbox_depth: self.daemon.outbox_depth.get().max(0.0) as u64,
        }
    }

    /// The text exposition, format 0.0.4.
    pub fn render(&self) -> String {
        self.daemon
            .process_resident_bytes
            .set(resident_bytes().unwrap_or(0) as f64);
        let stats = self.throttle.stats();
        let mut throttled = 0;
        for ((endpoint, outcome), n) in stats.calls() {
            if outcome == "throttled" {
                throttled += n;
            }
            mirror(&self.daemon.graph_calls.with([endpoint, outcome]), n);
        }
        mirror(&self.daemon.graph_throttled, throttled);
        self.daemon
            .graph_budget_in_use
            .set(stats.in_window() as f64);
        let budget = self.throttle.budget().report();
        for (class, share) in budget.shares {
            self.daemon
                .graph_budget_share
                .with([class.label()])
                .set(share);
        }
        for (class, waiting) in budget.waiting {
            self.daemon
                .graph_budget_waiting
                .with([class.label()])
                .set(waiting as f64);
        }
        self.daemon.graph_rate_limit.set(budget.rate_limit);
        for (class, granted) in budget.granted {
            mirror(
                &self.daemon.graph_class_requests.with([class.label()]),
                granted,
            );
        }
        if let Some((report, view)) = &self.directory {
            let tier = report.status();
            self.daemon
                .directory_poll_round_seconds
                .set(tier.round.as_secs_f64());
            self.daemon
                .directory_poll_oldest_read_seconds
                .set(tier.oldest_read_age.map_or(0.0, |age| age.as_secs_f64()));
            let status = view.status();
            for (state, n) in [
                ("known", status.users),
                ("listed", status.listed),
                ("tier", status.tier_users),
            ] {
                self.daemon.directory_users.with([state]).set(n as f64);
            }
        }
        let poll = self.poll.status();
        if let Some(subscriptions) = &self.subscriptions {
            subscriptions.render(poll.round);
        }
        self.daemon.poll_round_seconds.set(poll.round.as_secs_f64());
        self.daemon
            .poll_oldest_read_seconds
            .set(poll.oldest_read_age.map_or(0.0, |age| age.as_secs_f64()));
        self.registry.render()
    }
}

#[cfg(test)]
mod tests {
    use super::resident_bytes_in;

    #[test]
    fn the_resident_set_is_read_from_the_status_text() {
        let status =
            "Name:\tpresence-sync\nVmPeak:\t  900000 kB\nVmRSS:\t  270768 kB\nThreads:\t9\n";
        assert_eq!(resident_bytes_in(status), Some(270_768 * 1024));
    }

    #[test]
    fn a_status_text_that_does_not_say_gives_nothing() {
        for status in [
            "",
            "Name:\tx\n",
            "VmRSS:\n",
            "VmRSS:\t 12 MB\n",
            "VmRSS:\t twelve kB\n",
            "VmRSS:\t 12 kB extra\n",
            "VmRSS:\t -12 kB\n",
            "VmRSS:\t 18446744073709551615 kB\n",
        ] {
            assert_eq!(resident_bytes_in(status), None, "{status:?}");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_a_resident_set() {
        assert!(super::resident_bytes().is_some_and(|b| b > 0));
    }
}
