//! The daemon's metrics: the registry of [`crate::metrics`], fed by the sync
//! loop as it goes, with the counters other parts keep themselves (the Graph
//! request path, the engine) mirrored in when read.

use std::sync::Arc;

use crate::graph::{PollReport, Throttle};
use crate::metrics::{Counter, DaemonMetrics, GaugeVec, MetricsError, Registry};

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
        })
    }

    /// The text exposition, format 0.0.4.
    pub fn render(&self) -> String {
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
        let poll = self.poll.status();
        self.daemon.poll_round_seconds.set(poll.round.as_secs_f64());
        self.daemon
            .poll_oldest_read_seconds
            .set(poll.oldest_read_age.map_or(0.0, |age| age.as_secs_f64()));
        self.registry.render()
    }
}
