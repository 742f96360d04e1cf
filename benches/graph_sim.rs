//! The presence poller against the embedded Graph simulator, on real time
//! and loopback: Graph requests per 1,000 users per minute in steady state,
//! the time from a presence change to the poller passing it on, and 429s,
//! with the simulator holding Microsoft's 1,500 requests per 30 s budget.
//! Then, in the same run, the per-user approach (`GET /users/{id}/presence`
//! for each user) at the same freshness, and the ratio of requests.
//!
//! `cargo bench --bench graph_sim` (about four minutes: 10,000 and 50,000
//! users, 60 s of steady state each, 30 s of the per-user approach).
//! `GRAPH_SIM_SIZES=10000` and `GRAPH_SIM_STEADY_SECS=30` shorten it.
//! Under `cargo test` (no `--bench` argument) it makes a few-second smoke run.
//!
//! The per-user approach cannot read 10,000 users every 5 s within 1,500
//! requests per 30 s (it would need 60,000), so it runs for real on the
//! largest slice of users the poller's share of the budget (60 %) allows at
//! that freshness (145 users), and what the whole tenant would need is
//! computed from the measured rate. Users change presence through
//! `/_sim/users/{id}/presence` (10 a second for the batched poller, fewer
//! for the slice); a change counts as seen when the poller passes on that
//! user with the new presence.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use presence_sync::config::{GraphAuth, GraphConfig, Origin, Secret, SecretLocation, SecretSource};
use presence_sync::graph::poller::PresenceSource;
use presence_sync::graph::poller::poll_users;
use presence_sync::graph::{
    Credential, GraphClient, GraphError, PollPlan, PollTarget, Poller, PresenceRead,
    PresenceUpdate, TokioClock,
};
use presence_sync::presence::Presence;
use presence_sync::sim::{self, SimClock, SimHandle, SimOptions};
use presence_sync::stop::Stop;
use serde_json::json;
use tokio::sync::mpsc;

/// Microsoft's documented presence budget.
const BUDGET: u32 = 1_500;
const BY_IDS: &str = "POST /v1.0/communications/getPresencesByUserId";
const GET_PRESENCE: &str = "GET /v1.0/users/{id}/presence";

/// What users switch between in their own Teams client.
const STATES: &[(&str, &str)] = &[
    ("Available", "Available"),
    ("Busy", "InAMeeting"),
    ("Busy", "InACall"),
    ("Away", "Away"),
    ("DoNotDisturb", "Presenting"),
    ("BeRightBack", "BeRightBack"),
];

struct Settings {
    sizes: Vec<usize>,
    /// Steady state measured for the batched poller, per size.
    steady: Duration,
    /// Steady state measured for the per-user approach, per size.
    per_user: Duration,
    /// Presence changes made per second while measuring.
    changes_per_sec: f64,
    /// The freshness target: every user read at least this often.
    staleness: Duration,
}

impl Settings {
    fn from_env() -> Settings {
        let bench = std::env::args().any(|a| a == "--bench");
        if !bench {
            return Settings {
                sizes: vec![1_000],
                steady: Duration::from_secs(1),
                per_user: Duration::from_secs(1),
                changes_per_sec: 5.0,
                staleness: Duration::from_secs(1),
            };
        }
        let sizes = std::env::var("GRAPH_SIM_SIZES")
            .ok()
            .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
            .unwrap_or_else(|| vec![10_000, 50_000]);
        let steady = std::env::var("GRAPH_SIM_STEADY_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60);
        Settings {
            sizes,
            steady: Duration::from_secs(steady),
            per_user: Duration::from_secs(steady.div_ceil(2)),
            changes_per_sec: 10.0,
            staleness: Duration::from_secs(5),
        }
    }
}

fn config(sim: &SimHandle) -> GraphConfig {
    GraphConfig {
        tenant_id: sim.tenant_id.clone(),
        client_id: sim.client_id.clone(),
        auth: GraphAuth::ClientSecret(SecretSource {
            purpose: "the Graph client secret",
            location: SecretLocation::File("/nonexistent".into()),
            origin: Origin::whole_file(std::path::Path::new("bench.toml")),
        }),
        login_base: sim.base_url.clone(),
        graph_base: sim.base_url.clone(),
        requests_per_30s: BUDGET,
        request_timeout: Duration::from_secs(10),
        session_expiry: Duration::from_secs(3600),
        outbound: Default::default(),
    }
}

/// The per-user approach: one `GET /users/{id}/presence` per id.
struct PerUser(GraphClient);

impl PresenceSource for PerUser {
    fn read<'a>(
        &'a self,
        ids: &'a [String],
    ) -> Pin<Box<dyn Future<Output = Result<PresenceRead, GraphError>> + Send + 'a>> {
        Box::pin(async move {
            let mut read = PresenceRead::default();
            for id in ids {
                read.calls += 1;
                read.presences.push(self.0.get_presence(id).await?);
            }
            Ok(read)
        })
    }
}

/// Changes made and not yet seen: user → (when, what).
type Pending = Arc<Mutex<HashMap<String, (Instant, Presence)>>>;

/// What one measured phase found.
struct Phase {
    users: usize,
    interval: Duration,
    requests: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
    /// Changes made but never seen (none expected).
    unseen: usize,
    /// Updates for users nobody changed (should be none).
    spurious: u64,
    /// 429s the simulator sent during the phase.
    throttled: u64,
}

impl Phase {
    fn per_minute(&self) -> f64 {
        self.requests as f64 * 60.0 / self.elapsed.as_secs_f64()
    }

    fn per_1000_per_minute(&self) -> f64 {
        self.per_minute() * 1_000.0 / self.users as f64
    }

    fn percentile(&self, p: f64) -> Option<Duration> {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let last = sorted.len().checked_sub(1)?;
        let rank = ((last as f64) * p).round() as usize;
        sorted.get(rank.min(last)).copied()
    }
}

/// How one phase polls and how long it is measured.
struct PhaseSpec<'a> {
    target: PollTarget,
    /// Requests per second the client's budget sustains.
    rate: f64,
    steady: Duration,
    changes_per_sec: f64,
    /// The simulator route whose requests are counted.
    endpoint: &'a str,
    /// The state each user was last switched to (an index into `STATES`),
    /// kept across phases so a change always changes something.
    states: &'a mut HashMap<String, usize>,
}

/// Runs a poller over `ids` on `source` until it has read everyone once,
/// then measures `spec.steady` with presence changes going on.
async fn measure<S: PresenceSource + 'static>(
    sim: &SimHandle,
    source: S,
    ids: Vec<String>,
    spec: PhaseSpec<'_>,
) -> Phase {
    let PhaseSpec {
        target,
        rate,
        steady,
        changes_per_sec,
        endpoint,
        states,
    } = spec;
    let users = ids.len();
    let throttled_before = sim.stats().throttled;
    let plan = PollPlan::new(users, rate, &target);
    let ids = Arc::new(ids);
    let (_users_tx, users_rx) = poll_users(ids.iter().cloned());
    let (stop_tx, stop_rx) = Stop::new();
    let (updates_tx, mut updates) = mpsc::channel::<PresenceUpdate>(65_536);
    let poller = Poller::new(source, TokioClock::shared(), rate, target, users_rx);
    let poller = tokio::spawn(poller.run(updates_tx, stop_rx));

    // Warm-up: the first round reports everyone.
    let mut first = 0;
    while first < users {
        if updates.recv().await.is_none() {
            break;
        }
        first += 1;
    }

    let pending: Pending = Arc::default();
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let spurious = Arc::new(Mutex::new(0u64));
    let consumer = {
        let pending = pending.clone();
        let latencies = latencies.clone();
        let spurious = spurious.clone();
        tokio::spawn(async move {
            while let Some(update) = updates.recv().await {
                let seen = Instant::now();
                let mut pending = pending.lock().unwrap();
                match pending.get(&update.user_id) {
                    Some((at, want)) if *want == update.presence => {
                        latencies.lock().unwrap().push(seen - *at);
                        pending.remove(&update.user_id);
                    }
                    _ => *spurious.lock().unwrap() += 1,
                }
            }
        })
    };

    let before = sim.stats();
    let started = Instant::now();
    let http = reqwest::Client::new();
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = started;
    let gap = Duration::from_secs_f64(1.0 / changes_per_sec);
    while started.elapsed() < steady {
        next += gap;
        tokio::time::sleep_until(next.into()).await;
        rng = xorshift(rng);
        let index = (rng % users as u64) as usize;
        if pending.lock().unwrap().contains_key(&ids[index]) {
            continue;
        }
        let state = states
            .get(&ids[index])
            .map_or(0, |s| (s + 1) % STATES.len());
        states.insert(ids[index].clone(), state);
        let (availability, activity) = STATES[state];
        let presence = Presence::from_graph(availability, activity);
        pending
            .lock()
            .unwrap()
            .insert(ids[index].clone(), (Instant::now(), presence));
        let response = http
            .post(format!(
                "{}/_sim/users/{}/presence",
                sim.base_url, ids[index]
            ))
            .json(&json!({ "availability": availability, "activity": activity }))
            .send()
            .await
            .expect("the simulator takes presence changes");
        assert!(response.status().is_success());
    }
    let elapsed = started.elapsed();
    let after = sim.stats();
    // The last changes are seen within a round; wait for them (bounded).
    let drain = Instant::now();
    while !pending.lock().unwrap().is_empty() && drain.elapsed() < 2 * plan.interval {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    stop_tx.stop();
    poller.await.expect("the poller stops");
    consumer.await.expect("the consumer stops");
    let count = |stats: &presence_sync::sim::SimStats| -> u64 {
        stats
            .requests
            .get(endpoint)
            .map_or(0, |by_status| by_status.values().sum())
    };
    let latencies = latencies.lock().unwrap().clone();
    let unseen = pending.lock().unwrap().len();
    let spurious = *spurious.lock().unwrap();
    Phase {
        users,
        interval: plan.interval,
        requests: count(&after) - count(&before),
        elapsed,
        latencies,
        unseen,
        spurious,
        // Over the whole phase: warm-up, steady state and drain.
        throttled: sim.stats().throttled - throttled_before,
    }
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.2} s", d.as_secs_f64()))
}

async fn run_size(users: usize, settings: &Settings) -> (Phase, Phase) {
    let sim = sim::spawn(SimOptions {
        users,
        budget: Some(BUDGET),
        clock: SimClock::real(),
        seed: 7,
        ..SimOptions::default()
    })
    .await
    .expect("the simulator starts");
    let client = GraphClient::builder(
        &config(&sim),
        Credential::Secret(Secret::new(sim.client_secret.clone())),
    )
    .build()
    .expect("the client builds");
    let rate = client.throttle().config().sustained_rate();
    let ids = sim.user_ids();
    let mut states = HashMap::new();

    // The batched poller: getPresencesByUserId, 650 ids a call.
    let target = PollTarget {
        round_min: settings.staleness,
        ..PollTarget::default()
    };
    let batched = measure(
        &sim,
        client.clone(),
        ids.clone(),
        PhaseSpec {
            target: target.clone(),
            rate,
            steady: settings.steady,
            changes_per_sec: settings.changes_per_sec,
            endpoint: BY_IDS,
            states: &mut states,
        },
    )
    .await;

    // The batched phase used at most a third of the simulator's window, so
    // the per-user phase (at most the same share as the poller) fits beside
    // it without waiting for the window to empty.
    // The per-user approach at the same freshness, on the largest slice the
    // same share of the budget allows.
    let per_user_target = PollTarget {
        batch_size: 1,
        ..target.clone()
    };
    let fits = (rate * target.read_share_max * target.round_min.as_secs_f64()).floor() as usize;
    let slice: Vec<String> = ids.iter().take(fits.min(users)).cloned().collect();
    let per_user = measure(
        &sim,
        PerUser(client.clone()),
        slice,
        PhaseSpec {
            target: per_user_target,
            rate,
            steady: settings.per_user,
            changes_per_sec: (settings.changes_per_sec / 4.0).max(1.0),
            endpoint: GET_PRESENCE,
            states: &mut states,
        },
    )
    .await;
    sim.shutdown().await.expect("the simulator stops");
    (batched, per_user)
}

fn main() {
    let settings = Settings::from_env();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    println!(
        "Graph simulator on loopback, budget {BUDGET} requests per 30 s, every user read every {} s",
        settings.staleness.as_secs_f64()
    );
    let mut rows = Vec::new();
    for &users in &settings.sizes {
        let (batched, per_user) = runtime.block_on(run_size(users, &settings));
        rows.push((users, batched, per_user));
    }

    println!();
    println!(
        "| tenant | approach | users polled | round | Graph requests/min | per 1,000 users/min | change seen, p50 | p99 | changes seen | 429s | other updates |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (users, batched, per_user) in &rows {
        for (name, phase) in [
            ("batched, getPresencesByUserId", batched),
            ("per user, GET /users/{id}/presence", per_user),
        ] {
            println!(
                "| {users} | {name} | {} | {:.2} s | {:.0} | {:.1} | {} | {} | {}/{} | {} | {} |",
                phase.users,
                phase.interval.as_secs_f64(),
                phase.per_minute(),
                phase.per_1000_per_minute(),
                secs(phase.percentile(0.5)),
                secs(phase.percentile(0.99)),
                phase.latencies.len(),
                phase.latencies.len() + phase.unseen,
                phase.throttled,
                phase.spurious,
            );
        }
    }

    let budget_per_min = f64::from(BUDGET) * 2.0;
    println!();
    println!(
        "| tenant | batched requests/min | share of the budget | per-user requests/min needed | × the budget ({budget_per_min:.0}/min) | per-user ÷ batched |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for (users, batched, per_user) in &rows {
        let needed = per_user.per_1000_per_minute() * *users as f64 / 1_000.0;
        println!(
            "| {users} | {:.0} | {:.1} % | {needed:.0} | {:.1} | {:.0} |",
            batched.per_minute(),
            100.0 * batched.per_minute() / budget_per_min,
            needed / budget_per_min,
            per_user.per_1000_per_minute() / batched.per_1000_per_minute(),
        );
    }
}
