//! The daemon's metrics: the registry of [`crate::metrics`], fed by the sync
//! loop as it goes, with the counters other parts keep themselves (the Graph
//! request path, the engine) mirrored in when read.

use std::sync::Arc;

use crate::graph::Throttle;
use crate::metrics::{Counter, DaemonMetrics, MetricsError, Registry};

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub daemon: DaemonMetrics,
    throttle: Arc<Throttle>,
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
    pub fn new(throttle: Arc<Throttle>) -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let daemon = DaemonMetrics::register(&registry)?;
        Ok(Metrics {
            registry,
            daemon,
            throttle,
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
        self.registry.render()
    }
}
