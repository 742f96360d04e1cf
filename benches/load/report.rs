//! What the load tool found: the counters it reads from both processes
//! (`/metrics`, `/_sim/stats`), latency percentiles, and the report as a
//! table or as JSON.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

/// Prometheus text: each metric's samples summed over their labels.
pub fn metric_sums(text: &str) -> BTreeMap<String, f64> {
    let mut sums = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let mut parts = line.split_whitespace();
        let (Some(series), Some(value)) = (parts.next(), parts.next()) else {
            continue;
        };
        let name = series.split('{').next().unwrap_or(series);
        if let Ok(v) = value.parse::<f64>() {
            *sums.entry(name.to_string()).or_insert(0.0) += v;
        }
    }
    sums
}

/// The simulator's counters that matter here.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct SimCounts {
    pub graph_calls: u64,
    pub throttled_429: u64,
    /// Answered 2xx on setPresence / clearPresence (and the preferred ones).
    pub presence_writes: u64,
    /// Answered 2xx on getPresencesByUserId and the single reads.
    pub presence_reads: u64,
}

impl SimCounts {
    pub fn from_stats(stats: &Value) -> SimCounts {
        let mut counts = SimCounts {
            graph_calls: stats.get("total").and_then(Value::as_u64).unwrap_or(0),
            throttled_429: stats.get("throttled").and_then(Value::as_u64).unwrap_or(0),
            ..SimCounts::default()
        };
        let Some(requests) = stats.get("requests").and_then(Value::as_object) else {
            return counts;
        };
        for (endpoint, by_status) in requests {
            let ok: u64 = by_status
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(status, _)| status.starts_with('2'))
                .filter_map(|(_, n)| n.as_u64())
                .sum();
            if endpoint.starts_with("POST ")
                && (endpoint.contains("/presence/set") || endpoint.contains("/presence/clear"))
            {
                counts.presence_writes += ok;
            } else if endpoint.contains("getPresencesByUserId") || endpoint.ends_with("/presence") {
                counts.presence_reads += ok;
            }
        }
        counts
    }

    pub fn since(self, before: SimCounts) -> SimCounts {
        SimCounts {
            graph_calls: self.graph_calls.saturating_sub(before.graph_calls),
            throttled_429: self.throttled_429.saturating_sub(before.throttled_429),
            presence_writes: self.presence_writes.saturating_sub(before.presence_writes),
            presence_reads: self.presence_reads.saturating_sub(before.presence_reads),
        }
    }
}

/// Latencies beyond the debounce, in milliseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    pub samples: usize,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

impl Latency {
    pub fn of(samples: &[f64]) -> Latency {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let rank = |q: f64| {
            if sorted.is_empty() {
                return None;
            }
            let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
            Some(sorted[i])
        };
        Latency {
            samples: sorted.len(),
            p50_ms: rank(0.50),
            p99_ms: rank(0.99),
            max_ms: sorted.last().copied(),
        }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Flow {
    pub rate_per_s: f64,
    pub changes: usize,
    pub skipped_no_free_agent: usize,
    pub beyond_debounce: Latency,
    pub unexpected: usize,
    pub timed_out: usize,
    pub failed: usize,
    pub first_failure: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Registration {
    pub agents: usize,
    pub clients: usize,
    pub seconds: f64,
    pub per_s_first_tenth: f64,
    pub per_s_last_tenth: f64,
    pub per_s_overall: f64,
    pub errors: usize,
    pub first_error: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Restart {
    pub stop_s: f64,
    pub healthz_s: f64,
    pub readyz_s: f64,
    /// At `/readyz`.
    pub rss_bytes: Option<u64>,
    /// A few seconds later (5 s; 1 s in the smoke run).
    pub rss_bytes_settled: Option<u64>,
    pub store_bytes_before: u64,
    pub store_bytes_after: u64,
}

/// The run's mode, as reports name it.
pub fn mode_name(subscriptions: bool) -> &'static str {
    if subscriptions {
        "subscriptions + reconciliation"
    } else {
        "polling alone"
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// `polling alone` or `subscriptions + reconciliation`.
    pub mode: String,
    pub smoke: bool,
    pub binary: String,
    pub agents: usize,
    pub budget_per_30s: u32,
    pub debounce_s: f64,
    pub drive_seconds: f64,
    /// First start, empty store.
    pub first_start_healthz_s: f64,
    pub first_start_readyz_s: f64,
    /// At the first `/readyz`, when the first full directory read has just
    /// been stored and indexed (a peak), then as long after it as a
    /// restart's second reading: the empty daemon with its directory.
    pub rss_bytes_empty: Option<u64>,
    pub rss_bytes_empty_settled: Option<u64>,
    pub rss_bytes_registered: Option<u64>,
    pub rss_bytes_after_drive: Option<u64>,
    pub store_bytes_registered: u64,
    pub registration: Registration,
    /// The first CC status of every agent (`Available`), same clients.
    pub status_reports: Registration,
    pub cc_to_teams: Flow,
    pub teams_to_cc: Flow,
    /// `cc.status_requested` events nobody waited for.
    pub unexpected_requests: usize,
    /// Counted by the simulator while the changes ran.
    pub sim_during_drive: SimCounts,
    /// How long that window was, in seconds (the changes and the last
    /// ones' wait).
    pub window_s: f64,
    /// Counted by the simulator over the whole run.
    pub sim_total: SimCounts,
    /// The daemon's own counters (`/metrics`, summed over labels) at the end
    /// of the drive: Graph calls, 429s seen, Teams writes, CC requests.
    pub daemon_metrics: BTreeMap<String, f64>,
    pub restarts: Vec<Restart>,
    /// The status board's first load once the agents are registered.
    pub board: Option<crate::board::BoardLoad>,
    /// With subscriptions on: the accounts, coverage and notifications.
    pub subscriptions: Option<crate::subscriptions::SubscriptionsReport>,
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_000_000.0)
}

fn opt_mb(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "-".to_string(), mb)
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:+.0} ms"))
}

impl Report {
    /// Per minute over the changes' window.
    pub fn per_minute(&self, count: u64) -> Option<f64> {
        (self.window_s > 0.0).then(|| count as f64 * 60.0 / self.window_s)
    }

    pub fn print_table(&self) {
        let empty = self.rss_bytes_empty_settled.or(self.rss_bytes_empty);
        let per_agent = |rss: Option<u64>| match (rss, empty) {
            (Some(now), Some(empty)) if self.agents > 0 => format!(
                " ({:.2} KB/agent above the settled empty daemon)",
                now.saturating_sub(empty) as f64 / 1000.0 / self.agents as f64
            ),
            _ => String::new(),
        };
        let rows: Vec<(String, String)> = vec![
            (
                "setting".into(),
                format!(
                    "{} agents, budget {}/30 s, debounce {:.1} s, changes for {:.0} s{}",
                    self.agents,
                    self.budget_per_30s,
                    self.debounce_s,
                    self.drive_seconds,
                    if self.smoke { " (smoke run)" } else { "" }
                ),
            ),
            (
                "first start (empty store) to /healthz, /readyz".into(),
                format!(
                    "{:.2} s, {:.2} s",
                    self.first_start_healthz_s, self.first_start_readyz_s
                ),
            ),
            (
                format!(
                    "registering agents, {} clients (first/last tenth, all)",
                    self.registration.clients
                ),
                format!(
                    "{:.0}/s, {:.0}/s, {:.0}/s; {} errors",
                    self.registration.per_s_first_tenth,
                    self.registration.per_s_last_tenth,
                    self.registration.per_s_overall,
                    self.registration.errors
                ),
            ),
            (
                "acknowledged status reports (first/last tenth, all)".into(),
                format!(
                    "{:.0}/s, {:.0}/s, {:.0}/s; {} errors",
                    self.status_reports.per_s_first_tenth,
                    self.status_reports.per_s_last_tenth,
                    self.status_reports.per_s_overall,
                    self.status_reports.errors
                ),
            ),
            (
                format!(
                    "CC status -> Teams beyond the debounce, {:.1}/s",
                    self.cc_to_teams.rate_per_s
                ),
                flow_line(&self.cc_to_teams),
            ),
            (
                format!(
                    "Teams change -> cc.status_requested beyond the debounce, {:.1}/s",
                    self.teams_to_cc.rate_per_s
                ),
                flow_line(&self.teams_to_cc),
            ),
            (
                "Teams writes (2xx) vs changes driven, during the drive".into(),
                format!(
                    "{} writes for {} CC + {} Teams changes; {} presence reads",
                    self.sim_during_drive.presence_writes,
                    self.cc_to_teams.changes,
                    self.teams_to_cc.changes,
                    self.sim_during_drive.presence_reads
                ),
            ),
            (
                "429s (simulator: drive / whole run; daemon's count)".into(),
                format!(
                    "{} / {}; {}",
                    self.sim_during_drive.throttled_429,
                    self.sim_total.throttled_429,
                    self.daemon_metrics
                        .get("presence_sync_graph_throttled_total")
                        .map_or_else(|| "-".to_string(), |v| format!("{v:.0}"))
                ),
            ),
            (
                "Graph calls (simulator: drive / whole run)".into(),
                format!(
                    "{} / {}",
                    self.sim_during_drive.graph_calls, self.sim_total.graph_calls
                ),
            ),
            (
                "RSS: empty (at /readyz, then settled), registered, after the changes".into(),
                format!(
                    "{} then {}, {}{}, {}{}",
                    opt_mb(self.rss_bytes_empty),
                    opt_mb(self.rss_bytes_empty_settled),
                    opt_mb(self.rss_bytes_registered),
                    per_agent(self.rss_bytes_registered),
                    opt_mb(self.rss_bytes_after_drive),
                    per_agent(self.rss_bytes_after_drive)
                ),
            ),
            (
                "store on disk, registered".into(),
                mb(self.store_bytes_registered),
            ),
            (
                "Graph presence reads, all calls per minute during the drive".into(),
                format!(
                    "{}, {} (window {:.0} s)",
                    per_min(self.per_minute(self.sim_during_drive.presence_reads)),
                    per_min(self.per_minute(self.sim_during_drive.graph_calls)),
                    self.window_s
                ),
            ),
        ];
        let mut rows = rows;
        if let Some(s) = &self.subscriptions {
            let (subscribed, polled) = s.subscribed_polled();
            let n = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
            rows.push((
                "service accounts, each login".into(),
                format!(
                    "{}; {}",
                    s.accounts.len(),
                    s.login_s
                        .iter()
                        .map(|t| format!("{t:.1} s"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
            rows.push((
                "every agent subscribed after registration".into(),
                s.covered_after_s
                    .map_or_else(|| "not reached".to_string(), |t| format!("{t:.1} s")),
            ));
            rows.push((
                "users subscribed, polled (/readyz after the drive)".into(),
                format!("{}, {}", n(subscribed), n(polled)),
            ));
            rows.push((
                "notifications delivered during the drive (failed, dropped)".into(),
                format!(
                    "{} ({}, {}); subscriptions live {}, created {}",
                    s.during_drive.delivered,
                    s.during_drive.failed,
                    s.during_drive.dropped,
                    s.during_drive.subscriptions_live,
                    s.during_drive.subscriptions_created
                ),
            ));
        }
        if let Some(b) = &self.board {
            rows.push((
                "status board first load: page + files, data, first update".into(),
                format!(
                    "{:.0} ms in all: {:.0} ms ({:.0} KB), {:.0} ms (50 agents, queues, health: \
                     {:.0} KB), {:.0} ms",
                    b.total_ms,
                    b.page_ms,
                    b.page_bytes as f64 / 1000.0,
                    b.data_ms,
                    b.data_bytes as f64 / 1000.0,
                    b.stream_ms
                ),
            ));
            rows.push((
                "every agent unpaged (what the board does not load)".into(),
                format!("{:.0} ms, {}", b.all_agents_ms, mb(b.all_agents_bytes)),
            ));
        }
        for (i, r) in self.restarts.iter().enumerate() {
            rows.push((
                format!("restart {}: stop, /healthz, /readyz", i + 1),
                format!(
                    "{:.2} s, {:.2} s, {:.2} s; RSS {}, then {}{}; store {} -> {}",
                    r.stop_s,
                    r.healthz_s,
                    r.readyz_s,
                    opt_mb(r.rss_bytes),
                    opt_mb(r.rss_bytes_settled),
                    per_agent(r.rss_bytes_settled),
                    mb(r.store_bytes_before),
                    mb(r.store_bytes_after)
                ),
            ));
        }
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        println!();
        println!(
            "end to end, {}: the daemon and the simulator ({})",
            self.mode, self.binary
        );
        for (key, value) in rows {
            println!("  {key:<width$}  {value}");
        }
        for (name, flow) in [
            ("CC -> Teams", &self.cc_to_teams),
            ("Teams -> CC", &self.teams_to_cc),
        ] {
            if let Some(failure) = &flow.first_failure {
                println!("  {name}: first failure: {failure}");
            }
        }
        if self.unexpected_requests > 0 {
            println!(
                "  {} cc.status_requested events for agents the tool was not changing",
                self.unexpected_requests
            );
        }
    }
}

fn per_min(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.0}/min"))
}

/// The runs of `--compare` side by side: the figures the comparison is
/// about, one column a run.
pub fn print_comparison(reports: &[Report]) {
    if reports.is_empty() {
        return;
    }
    let cell = |f: &dyn Fn(&Report) -> String| -> Vec<String> { reports.iter().map(f).collect() };
    let latency = |flow: &Flow| {
        format!(
            "{} / {}",
            ms(flow.beyond_debounce.p50_ms),
            ms(flow.beyond_debounce.p99_ms)
        )
    };
    let subs = |r: &Report, f: &dyn Fn(&crate::subscriptions::SubscriptionsReport) -> String| {
        r.subscriptions.as_ref().map_or_else(|| "-".to_string(), f)
    };
    let rows: Vec<(&str, Vec<String>)> = vec![
        ("mode", cell(&|r| r.mode.clone())),
        (
            "Graph presence reads per minute",
            cell(&|r| per_min(r.per_minute(r.sim_during_drive.presence_reads))),
        ),
        (
            "Graph calls per minute (all)",
            cell(&|r| per_min(r.per_minute(r.sim_during_drive.graph_calls))),
        ),
        (
            "Teams -> CC beyond debounce p50 / p99",
            cell(&|r| latency(&r.teams_to_cc)),
        ),
        (
            "Teams -> CC seen / timed out",
            cell(&|r| {
                format!(
                    "{} / {}",
                    r.teams_to_cc.beyond_debounce.samples, r.teams_to_cc.timed_out
                )
            }),
        ),
        (
            "CC -> Teams beyond debounce p50 / p99",
            cell(&|r| latency(&r.cc_to_teams)),
        ),
        (
            "429s during the drive",
            cell(&|r| r.sim_during_drive.throttled_429.to_string()),
        ),
        (
            "notifications delivered",
            cell(&|r| subs(r, &|s| s.during_drive.delivered.to_string())),
        ),
        (
            "users subscribed / polled",
            cell(&|r| {
                subs(r, &|s| {
                    let (a, b) = s.subscribed_polled();
                    let n = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
                    format!("{} / {}", n(a), n(b))
                })
            }),
        ),
        (
            "daemon RSS after the drive",
            cell(&|r| opt_mb(r.rss_bytes_after_drive)),
        ),
    ];
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let col = rows
        .iter()
        .flat_map(|(_, v)| v.iter().map(String::len))
        .max()
        .unwrap_or(0);
    println!();
    println!(
        "compared, {} agents, changes for {:.0} s:",
        reports[0].agents, reports[0].drive_seconds
    );
    for (key, values) in rows {
        let values: Vec<String> = values.iter().map(|v| format!("{v:<col$}")).collect();
        println!("  {key:<width$}  {}", values.join("  "));
    }
}

fn flow_line(flow: &Flow) -> String {
    format!(
        "p50 {}, p99 {}, max {} ({} seen of {}; {} timed out, {} failed, {} unexpected, {} ticks without a free agent)",
        ms(flow.beyond_debounce.p50_ms),
        ms(flow.beyond_debounce.p99_ms),
        ms(flow.beyond_debounce.max_ms),
        flow.beyond_debounce.samples,
        flow.changes,
        flow.timed_out,
        flow.failed,
        flow.unexpected,
        flow.skipped_no_free_agent
    )
}
