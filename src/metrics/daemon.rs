//! The daemon's metrics (SPEC §8), by the names dashboards and alerts use.

use super::{
    Counter, CounterVec, Gauge, GaugeVec, Histogram, HistogramVec, MetricsError, Registry,
};

/// Propagation latency buckets, in seconds: from a debounced change that
/// went straight through to one held back by throttling for minutes.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0,
];

/// Routing decisions take microseconds (`BENCHMARKS.md`); the buckets
/// reach up to where one would be a problem.
const ROUTING_DECISION_BUCKETS: [f64; 8] = [
    0.000_005, 0.000_01, 0.000_02, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.01,
];

/// Store commit buckets, in seconds: an fsync takes from under a
/// millisecond on an SSD to a second on a struggling disk.
pub const STORE_COMMIT_BUCKETS: [f64; 11] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Which way a change propagated: the `direction` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    CcToTeams,
    TeamsToCc,
}

impl Direction {
    pub const ALL: [Direction; 2] = [Direction::CcToTeams, Direction::TeamsToCc];

    pub fn label(self) -> &'static str {
        match self {
            Direction::CcToTeams => "cc_to_teams",
            Direction::TeamsToCc => "teams_to_cc",
        }
    }
}

/// What a Teams presence write did: the `kind` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TeamsWriteKind {
    /// `setPresence`.
    Set,
    /// `clearPresence`.
    Clear,
    /// A `setPresence` repeated before our session expires.
    Keepalive,
}

impl TeamsWriteKind {
    pub const ALL: [TeamsWriteKind; 3] = [
        TeamsWriteKind::Set,
        TeamsWriteKind::Clear,
        TeamsWriteKind::Keepalive,
    ];

    pub fn label(self) -> &'static str {
        match self {
            TeamsWriteKind::Set => "set",
            TeamsWriteKind::Clear => "clear",
            TeamsWriteKind::Keepalive => "keepalive",
        }
    }
}

/// Every metric the daemon exports, all named `presence_sync_*`.
///
/// Label values the code knows in advance are created at start, so their
/// series exist (at zero) before the first event and `rate()` sees the
/// first increase. `outcome` and `endpoint` values are short fixed words
/// chosen by the caller (`ok`, `throttled`, `error`, ...), never outside
/// input: every distinct value is a series kept until restart.
#[derive(Clone, Debug)]
pub struct DaemonMetrics {
    /// Graph requests by `endpoint` (e.g. `token`, `presence_read`,
    /// `set_presence`, `users_delta`) and `outcome`.
    pub graph_calls: CounterVec<2>,
    /// Graph answers with 429 Too Many Requests.
    pub graph_throttled: Counter,
    /// Graph requests taken from the current 30-second budget.
    pub graph_budget_in_use: Gauge,
    /// Per call class (`write`, `agent_read`, `directory`, `reconcile`),
    /// its requests in the last 30 s as a share of the budget.
    pub graph_budget_share: GaugeVec<1>,
    /// Per call class, callers waiting for the budget.
    pub graph_budget_waiting: GaugeVec<1>,
    /// Requests per second the budget's scheduler allows now: the budget's
    /// sustained rate, lowered after a 429 until it recovers.
    pub graph_rate_limit: Gauge,
    /// The presence poller's round: every agent is read once per round.
    pub poll_round_seconds: Gauge,
    /// Seconds since the least recently read agent's presence was read.
    pub poll_oldest_read_seconds: Gauge,
    /// Requests the budget granted, by call class, since the start: the
    /// agent tier is `agent_read`, the directory's slower tier and the
    /// users delta `directory`.
    pub graph_class_requests: CounterVec<1>,
    /// The directory tier's round: every user it reads is read once a round.
    pub directory_poll_round_seconds: Gauge,
    /// Seconds since the directory tier's least recently read user was read.
    pub directory_poll_oldest_read_seconds: Gauge,
    /// Directory users, by `state`: `known`, `listed`, `tier` (read by the
    /// directory's slower tier).
    pub directory_users: GaugeVec<1>,
    /// Seconds from a change in one system to its write in the other, by
    /// `direction`; see [`DaemonMetrics::propagation`].
    pub propagation_seconds: HistogramVec<1>,
    /// Changes absorbed by the debounce window.
    pub debounced: Counter,
    /// Values recognised as the echo of our own write.
    pub echo_suppressed: Counter,
    /// Agents whose sync the loop guard suspended.
    pub loop_suspensions: Counter,
    /// Manual Teams changes that took precedence over ours.
    pub teams_overrides: Counter,
    pub teams_outranked: Counter,
    /// Teams presence writes by `kind` (`set`, `clear`, `keepalive`) and
    /// `outcome`; see [`DaemonMetrics::teams_write`].
    pub teams_writes: CounterVec<2>,
    /// Requests to the contact-center API.
    pub cc_requests: Counter,
    /// Teams writes waiting in the outbox.
    pub outbox_depth: Gauge,
    /// The process's resident memory, read when scraped.
    pub process_resident_bytes: Gauge,
    /// Contacts waiting in routing queues.
    pub routing_waiting: Gauge,
    /// Contacts offered to agents.
    pub routing_offers: Counter,
    /// Seconds the routing core took to decide on a new contact.
    pub routing_decision_seconds: Histogram,
    /// Known agents, by whether they are linked to a Teams user.
    pub agents: GaugeVec<1>,
    /// Events appended to the event log.
    pub events_committed: Counter,
    /// Seconds per durable store commit.
    pub store_commit_seconds: Histogram,
    /// Mapping reloads (SIGHUP) by `outcome` (`ok`, `error`).
    pub mapping_reloads: CounterVec<1>,
}

impl DaemonMetrics {
    /// Registers every metric in `registry`. Fails only if a name is taken
    /// already (a second call on the same registry).
    pub fn register(registry: &Registry) -> Result<Self, MetricsError> {
        let metrics = DaemonMetrics {
            graph_calls: registry.counter_vec(
                "presence_sync_graph_calls_total",
                "Microsoft Graph requests, by endpoint and outcome.",
                ["endpoint", "outcome"],
            )?,
            graph_throttled: registry.counter(
                "presence_sync_graph_throttled_total",
                "Microsoft Graph answers with 429 Too Many Requests.",
            )?,
            graph_budget_in_use: registry.gauge(
                "presence_sync_graph_budget_in_use",
                "Microsoft Graph requests taken from the current 30-second budget.",
            )?,
            graph_budget_share: registry.gauge_vec(
                "presence_sync_graph_budget_share",
                "Microsoft Graph requests of the last 30 seconds as a share of the budget, by call class.",
                ["class"],
            )?,
            graph_budget_waiting: registry.gauge_vec(
                "presence_sync_graph_budget_waiting",
                "Microsoft Graph calls waiting for the budget, by call class.",
                ["class"],
            )?,
            graph_rate_limit: registry.gauge(
                "presence_sync_graph_rate_limit",
                "Microsoft Graph requests per second allowed now (lowered after a 429, then recovering).",
            )?,
            poll_round_seconds: registry.gauge(
                "presence_sync_poll_round_seconds",
                "Seconds per presence poll round: every linked agent is read once a round.",
            )?,
            poll_oldest_read_seconds: registry.gauge(
                "presence_sync_poll_oldest_read_seconds",
                "Seconds since the least recently read linked agent's presence was read.",
            )?,
            graph_class_requests: registry.counter_vec(
                "presence_sync_graph_class_requests_total",
                "Microsoft Graph requests granted by the budget, by call class.",
                ["class"],
            )?,
            directory_poll_round_seconds: registry.gauge(
                "presence_sync_directory_poll_round_seconds",
                "Seconds per round of the directory's slower presence tier: every user it reads is read once a round.",
            )?,
            directory_poll_oldest_read_seconds: registry.gauge(
                "presence_sync_directory_poll_oldest_read_seconds",
                "Seconds since the directory tier's least recently read user's presence was read.",
            )?,
            directory_users: registry.gauge_vec(
                "presence_sync_directory_users",
                "Teams users of the directory, by state: known, listed, tier (read by the slower tier).",
                ["state"],
            )?,
            propagation_seconds: registry.histogram_vec(
                "presence_sync_propagation_seconds",
                "Seconds from a status change in one system to its write in the other, by direction.",
                ["direction"],
                &LATENCY_BUCKETS,
            )?,
            debounced: registry.counter(
                "presence_sync_debounced_total",
                "Status changes absorbed by the debounce window.",
            )?,
            echo_suppressed: registry.counter(
                "presence_sync_echo_suppressed_total",
                "Status values recognised as the echo of our own write.",
            )?,
            loop_suspensions: registry.counter(
                "presence_sync_loop_suspensions_total",
                "Agents whose sync the loop guard suspended.",
            )?,
            teams_overrides: registry.counter(
                "presence_sync_teams_overrides_total",
                "Manual Teams presence changes that took precedence over ours.",
            )?,
            teams_outranked: registry.counter(
                "presence_sync_teams_outranked_total",
                "Confirmed writes that a session of the user's own outranked in Teams (not overrides).",
            )?,
            teams_writes: registry.counter_vec(
                "presence_sync_teams_writes_total",
                "Teams presence writes, by kind (set, clear, keepalive) and outcome.",
                ["kind", "outcome"],
            )?,
            cc_requests: registry.counter(
                "presence_sync_cc_requests_total",
                "Requests to the contact-center API.",
            )?,
            outbox_depth: registry.gauge(
                "presence_sync_outbox_depth",
                "Teams presence writes waiting in the outbox.",
            )?,
            process_resident_bytes: registry.gauge(
                "presence_sync_process_resident_bytes",
                "Memory the daemon's process holds in RAM (its resident set, VmRSS), read at each scrape; 0 where the system does not say.",
            )?,
            routing_waiting: registry.gauge(
                "presence_sync_routing_waiting",
                "Contacts waiting in routing queues.",
            )?,
            routing_offers: registry.counter(
                "presence_sync_routing_offers_total",
                "Contacts offered to agents by the routing core.",
            )?,
            routing_decision_seconds: registry.histogram(
                "presence_sync_routing_decision_seconds",
                "Seconds the routing core took to queue or offer a new contact.",
                &ROUTING_DECISION_BUCKETS,
            )?,
            agents: registry.gauge_vec(
                "presence_sync_agents",
                "Known agents, by whether they are linked to a Teams user.",
                ["linked"],
            )?,
            events_committed: registry.counter(
                "presence_sync_events_committed_total",
                "Events appended to the event log.",
            )?,
            store_commit_seconds: registry.histogram(
                "presence_sync_store_commit_seconds",
                "Seconds per durable store commit.",
                &STORE_COMMIT_BUCKETS,
            )?,
            mapping_reloads: registry.counter_vec(
                "presence_sync_mapping_reloads_total",
                "Mapping reloads, by outcome (ok, error).",
                ["outcome"],
            )?,
        };
        for direction in Direction::ALL {
            metrics.propagation(direction);
        }
        for linked in [true, false] {
            metrics.agents_linked(linked);
        }
        for outcome in ["ok", "error"] {
            metrics.mapping_reloads.with([outcome]);
        }
        for class in crate::graph::CallClass::ALL {
            metrics.graph_budget_share.with([class.label()]);
            metrics.graph_budget_waiting.with([class.label()]);
            metrics.graph_class_requests.with([class.label()]);
        }
        for state in ["known", "listed", "tier"] {
            metrics.directory_users.with([state]);
        }
        Ok(metrics)
    }

    /// The propagation histogram for one direction.
    pub fn propagation(&self, direction: Direction) -> Histogram {
        self.propagation_seconds.with([direction.label()])
    }

    /// The Teams write counter for one kind and outcome.
    pub fn teams_write(&self, kind: TeamsWriteKind, outcome: &str) -> Counter {
        self.teams_writes.with([kind.label(), outcome])
    }

    /// The agent gauge for linked (`true`) or unlinked agents.
    pub fn agents_linked(&self, linked: bool) -> Gauge {
        self.agents.with([if linked { "true" } else { "false" }])
    }
}
