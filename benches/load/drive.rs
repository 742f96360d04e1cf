//! The load itself: the simulator's users listed through Graph, agents
//! registered through the daemon's API by concurrent clients, then CC status
//! changes and Teams changes at set rates, each timed until the other side
//! shows it.
//!
//! CC → Teams: an agent of the first half toggles between `Available` and
//! `On contact` (the shipped default mapping: clear / `Busy/InACall`); the
//! change counts as seen when the simulator shows the mapped presence. The
//! simulator's control API answers a client-presence post with the user's
//! presence as Teams shows it, so the tool reposts the client presence it
//! set itself (`Available/Available`, unchanged) to read it without spending
//! Graph's budget. It reads only once the debounce has nearly passed, then
//! every 50 ms (the resolution of the CC → Teams figures).
//!
//! Teams → CC: a user of the second half joins a meeting
//! (`Busy/InAMeeting`) or leaves it (`Available/Available`) in their own
//! client; the change counts as seen when the event stream carries
//! `cc.status_requested` for the agent (`Meeting`, or `Available` when the
//! meeting rule restores). The tool then does what a CC does: reports the
//! requested status.
//!
//! An agent takes part in one change at a time, and rests one debounce plus
//! a second after it, so its next change is never folded into the last.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use presence_sync::demo::contact_center::ApiClient;
use presence_sync::events::kind;
use presence_sync::stop::Stop;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::processes::SimInfo;

/// A plain HTTP client for the daemon's API and the simulator.
#[derive(Clone)]
pub struct Http {
    pub client: reqwest::Client,
    pub daemon: String,
    pub token: String,
    pub sim: String,
}

impl Http {
    pub fn new(clients: usize, daemon: String, token: String, sim: String) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(clients.max(8) * 2)
            .build()?;
        Ok(Http {
            client,
            daemon,
            token,
            sim,
        })
    }

    /// `PUT` to the daemon's API; an error unless 2xx.
    pub async fn put_daemon(&self, path: &str, body: &Value) -> anyhow::Result<()> {
        let response = self
            .client
            .put(format!("{}{path}", self.daemon))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            bail!("PUT {path}: {status}: {text}");
        }
        Ok(())
    }

    pub async fn get_text(&self, url: &str) -> anyhow::Result<String> {
        let response = self.client.get(url).send().await?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            bail!("GET {url}: {status}");
        }
        Ok(text)
    }

    /// `POST /_sim/users/{id}/presence`: sets the user's own client presence
    /// and answers the presence Teams shows, as `(availability, activity)`.
    pub async fn sim_client(
        &self,
        user: &str,
        presence: (&str, &str),
    ) -> anyhow::Result<(String, String)> {
        let response = self
            .client
            .post(format!("{}/_sim/users/{user}/presence", self.sim))
            .json(&json!({"availability": presence.0, "activity": presence.1}))
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        if !status.is_success() {
            bail!("POST /_sim/users/{user}/presence: {status}: {body}");
        }
        let field = |name: &str| {
            body.get(name)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        Ok((field("availability"), field("activity")))
    }
}

/// A simulated user the tool drives: Graph id and UPN.
#[derive(Clone, Debug)]
pub struct User {
    pub id: String,
    pub upn: String,
}

/// The first `want` users of the simulator, through Graph (one call per
/// 999 users, before the daemon starts).
pub async fn list_users(http: &Http, sim: &SimInfo, want: usize) -> anyhow::Result<Vec<User>> {
    Ok(sim
        .users(&http.client, want)
        .await?
        .into_iter()
        .map(|(id, upn)| User { id, upn })
        .collect())
}

/// When each of `n` jobs completed (since the start, in order), run by
/// `clients` concurrent workers, and the failures.
pub struct Batch {
    pub done: Vec<Duration>,
    pub errors: usize,
    pub first_error: Option<String>,
    pub elapsed: Duration,
}

impl Batch {
    /// Jobs per second over the first and the last tenth of the batch.
    pub fn rates(&self) -> (f64, f64, f64) {
        let n = self.done.len();
        if n == 0 {
            return (0.0, 0.0, 0.0);
        }
        let k = (n / 10).max(1);
        let secs = |d: Duration| d.as_secs_f64().max(1e-9);
        let start = k as f64 / secs(self.done[k - 1]);
        let end = k as f64 / secs(self.done[n - 1].saturating_sub(self.done[n - 1 - k]));
        let all = n as f64 / secs(self.done[n - 1]);
        (start, end, all)
    }
}

pub async fn batch<F, Fut>(n: usize, clients: usize, job: F) -> Batch
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let job = Arc::new(job);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..clients.clamp(1, n.max(1)) {
        let next = next.clone();
        let job = job.clone();
        workers.spawn(async move {
            let mut done = Vec::new();
            let mut errors = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                match job(i).await {
                    Ok(()) => done.push(started.elapsed()),
                    Err(e) => errors.push(e.to_string()),
                }
            }
            (done, errors)
        });
    }
    let mut result = Batch {
        done: Vec::with_capacity(n),
        errors: 0,
        first_error: None,
        elapsed: Duration::ZERO,
    };
    while let Some(joined) = workers.join_next().await {
        match joined {
            Ok((done, errors)) => {
                result.done.extend(done);
                result.errors += errors.len();
                if result.first_error.is_none() {
                    result.first_error = errors.into_iter().next();
                }
            }
            Err(e) => {
                result.errors += 1;
                result.first_error.get_or_insert(e.to_string());
            }
        }
    }
    result.done.sort();
    result.elapsed = started.elapsed();
    result
}

/// What became of one change.
#[derive(Debug)]
pub enum Outcome {
    /// Seen on the other side this long after the debounce (may be
    /// negative by up to the polling step).
    Seen {
        beyond_ms: f64,
        unexpected: bool,
    },
    TimedOut,
    Failed(String),
}

/// One direction's figures.
#[derive(Debug, Default)]
pub struct FlowResult {
    pub changes: usize,
    /// Ticks with no agent free to change (the pool was too small).
    pub skipped: usize,
    pub beyond_ms: Vec<f64>,
    /// Seen, but not what the mapping says (another status requested).
    pub unexpected: usize,
    pub timed_out: usize,
    pub failed: usize,
    pub first_failure: Option<String>,
}

impl FlowResult {
    fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Seen {
                beyond_ms,
                unexpected,
            } => {
                self.beyond_ms.push(beyond_ms);
                if unexpected {
                    self.unexpected += 1;
                }
            }
            Outcome::TimedOut => self.timed_out += 1,
            Outcome::Failed(e) => {
                self.failed += 1;
                self.first_failure.get_or_insert(e);
            }
        }
    }
}

/// Agents free to change: `(free from, agent index, toggled state)`.
type Pool = Arc<Mutex<VecDeque<(Instant, usize, bool)>>>;

fn take(pool: &Pool, now: Instant) -> Option<(usize, bool)> {
    let mut pool = pool.lock().unwrap_or_else(|p| p.into_inner());
    match pool.front() {
        Some((free_at, _, _)) if *free_at <= now => pool.pop_front().map(|(_, i, s)| (i, s)),
        _ => None,
    }
}

fn give_back(pool: &Pool, free_at: Instant, agent: usize, state: bool) {
    pool.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push_back((free_at, agent, state));
}

/// How a flow runs.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    pub rate: f64,
    pub run_for: Duration,
    pub debounce: Duration,
    /// How long past the debounce a change may take before it counts as
    /// timed out.
    pub patience: Duration,
}

/// Starts one change per `1 / rate` for `run_for`, each on a free agent,
/// then waits for all of them (each bounded by its own patience).
async fn drive<F, Fut>(pace: Pace, pool: Pool, change: F) -> FlowResult
where
    F: Fn(usize, bool) -> Fut,
    Fut: Future<Output = (Outcome, bool)> + Send + 'static,
{
    let mut result = FlowResult::default();
    if pace.rate <= 0.0 {
        return result;
    }
    let period = Duration::from_secs_f64(1.0 / pace.rate.min(10_000.0));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    let mut running = tokio::task::JoinSet::new();
    let rest = pace.debounce + Duration::from_secs(1);
    while started.elapsed() < pace.run_for {
        ticker.tick().await;
        while let Some(joined) = running.try_join_next() {
            if let Ok(outcome) = joined {
                result.add(outcome);
            }
        }
        let Some((agent, state)) = take(&pool, Instant::now()) else {
            result.skipped += 1;
            continue;
        };
        result.changes += 1;
        let work = change(agent, state);
        let pool = pool.clone();
        running.spawn(async move {
            let (outcome, state) = work.await;
            give_back(&pool, Instant::now() + rest, agent, state);
            outcome
        });
    }
    while let Some(joined) = running.join_next().await {
        match joined {
            Ok(outcome) => result.add(outcome),
            Err(e) => result.add(Outcome::Failed(e.to_string())),
        }
    }
    result
}

/// The client presence every driven user holds unless in a meeting.
pub const AVAILABLE: (&str, &str) = ("Available", "Available");
const MEETING: (&str, &str) = ("Busy", "InAMeeting");
const ON_CONTACT: (&str, &str) = ("Busy", "InACall");

/// CC → Teams on `agents` (indices into `ids`/`users`).
pub async fn cc_to_teams(
    http: Http,
    ids: Arc<Vec<String>>,
    users: Arc<Vec<User>>,
    agents: std::ops::Range<usize>,
    pace: Pace,
) -> FlowResult {
    let now = Instant::now();
    let pool: Pool = Arc::new(Mutex::new(agents.map(|i| (now, i, false)).collect()));
    drive(pace, pool, move |agent, on_contact| {
        let http = http.clone();
        let id = ids[agent].clone();
        let user = users[agent].id.clone();
        async move {
            let next = !on_contact;
            let (status, expect) = if next {
                ("On contact", ON_CONTACT)
            } else {
                ("Available", AVAILABLE)
            };
            let t0 = Instant::now();
            if let Err(e) = http
                .put_daemon(
                    &format!("/v1/agents/{id}/status"),
                    &json!({"status": status}),
                )
                .await
            {
                return (Outcome::Failed(e.to_string()), on_contact);
            }
            let step = Duration::from_millis(50);
            tokio::time::sleep_until((t0 + pace.debounce.saturating_sub(2 * step)).into()).await;
            let deadline = t0 + pace.debounce + pace.patience;
            while Instant::now() < deadline {
                match http.sim_client(&user, AVAILABLE).await {
                    Ok((availability, activity))
                        if availability == expect.0 && activity == expect.1 =>
                    {
                        let beyond = t0.elapsed().as_secs_f64() - pace.debounce.as_secs_f64();
                        return (
                            Outcome::Seen {
                                beyond_ms: beyond * 1000.0,
                                unexpected: false,
                            },
                            next,
                        );
                    }
                    Ok(_) => {}
                    Err(e) => return (Outcome::Failed(e.to_string()), next),
                }
                tokio::time::sleep(step).await;
            }
            (Outcome::TimedOut, next)
        }
    })
    .await
}

/// Who waits for which agent's `cc.status_requested`.
pub type Waiters = Arc<Mutex<HashMap<String, oneshot::Sender<(Instant, String)>>>>;

/// Follows the daemon's event stream until `stop`, handing each
/// `cc.status_requested` to whoever waits for that agent; counts the ones
/// nobody waited for. Reconnects (at most 20 times) if the stream drops.
pub async fn follow_requests(
    api: ApiClient,
    waiters: Waiters,
    stop: Stop,
) -> anyhow::Result<usize> {
    let mut unexpected = 0usize;
    let mut since = None;
    for _ in 0..20 {
        let result = api
            .follow_events(
                since,
                |event| {
                    since = Some(since.unwrap_or(0).max(event.seq));
                    if event.kind != kind::CC_STATUS_REQUESTED {
                        return;
                    }
                    let status = event
                        .data
                        .get("status")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    let waiter = event.agent_id.as_ref().and_then(|agent| {
                        waiters
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(agent)
                    });
                    match waiter {
                        Some(tx) => {
                            let _ = tx.send((Instant::now(), status));
                        }
                        None => unexpected += 1,
                    }
                },
                stop.clone(),
            )
            .await;
        if stop.is_stopped() {
            return Ok(unexpected);
        }
        if let Err(e) = result {
            eprintln!("load: the event stream dropped ({e}); reconnecting");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!("the event stream dropped 20 times")
}

/// Teams → CC on `agents`.
pub async fn teams_to_cc(
    http: Http,
    ids: Arc<Vec<String>>,
    users: Arc<Vec<User>>,
    agents: std::ops::Range<usize>,
    pace: Pace,
    waiters: Waiters,
) -> FlowResult {
    let now = Instant::now();
    let pool: Pool = Arc::new(Mutex::new(agents.map(|i| (now, i, false)).collect()));
    drive(pace, pool, move |agent, in_meeting| {
        let http = http.clone();
        let id = ids[agent].clone();
        let user = users[agent].id.clone();
        let waiters = waiters.clone();
        async move {
            let next = !in_meeting;
            let (presence, expect) = if next {
                (MEETING, "Meeting")
            } else {
                (AVAILABLE, "Available")
            };
            let (tx, rx) = oneshot::channel();
            waiters
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id.clone(), tx);
            let t0 = Instant::now();
            if let Err(e) = http.sim_client(&user, presence).await {
                waiters
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                return (Outcome::Failed(e.to_string()), in_meeting);
            }
            let waited = tokio::time::timeout(pace.debounce + pace.patience, rx).await;
            let (seen_at, status) = match waited {
                Ok(Ok(seen)) => seen,
                _ => {
                    waiters
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&id);
                    return (Outcome::TimedOut, next);
                }
            };
            let beyond = seen_at.duration_since(t0).as_secs_f64() - pace.debounce.as_secs_f64();
            // What a CC does with the request: sets the status.
            let outcome = match http
                .put_daemon(
                    &format!("/v1/agents/{id}/status"),
                    &json!({"status": status}),
                )
                .await
            {
                Ok(()) => Outcome::Seen {
                    beyond_ms: beyond * 1000.0,
                    unexpected: status != expect,
                },
                Err(e) => Outcome::Failed(e.to_string()),
            };
            (outcome, next)
        }
    })
    .await
}
