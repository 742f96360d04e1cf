//! The end-to-end load tool: `presence-sync sim` and `presence-sync run` as
//! separate processes of the built binary on loopback, N agents registered
//! through the API by concurrent clients, CC status changes and Teams
//! changes at set rates, then restarts with the agents in the store.
//! Reports latencies beyond the debounce, Teams writes vs changes, 429s,
//! the daemon's RSS, the store's size and start-up times.
//!
//! `cargo bench --bench load -- --agents 2000 --seconds 30` runs it against
//! the release binary (`cargo bench` builds it). Knobs (flag or variable):
//!
//! | flag | variable | default | |
//! |---|---|---|---|
//! | `--agents N` | `LOAD_AGENTS` | 2000 | agents (and simulated users) |
//! | `--clients C` | `LOAD_CLIENTS` | 64 | concurrent API clients for registration |
//! | `--cc-rate R` | `LOAD_CC_RATE` | 20 | CC status changes per second |
//! | `--teams-rate R` | `LOAD_TEAMS_RATE` | 10 | Teams changes per second |
//! | `--seconds S` | `LOAD_SECONDS` | 60 | how long changes are started |
//! | `--restarts K` | `LOAD_RESTARTS` | 2 | SIGTERM + start again, timed |
//! | `--budget B` | `LOAD_BUDGET` | 1500 | the simulator's Graph calls per 30 s |
//! | `--debounce D` | `LOAD_DEBOUNCE` | the mapping's (15s) | e.g. `2s` |
//! | `--state-dir DIR` | `LOAD_STATE_DIR` | the temp dir | where the store goes (its disk counts) |
//! | `--bin PATH` | `LOAD_BIN` | the binary cargo built | `presence-sync` to run |
//! | `--json` | `LOAD_JSON=1` | off | the report as JSON on stdout |
//! | `--subscriptions` | `LOAD_SUBSCRIPTIONS=1` | off | presence subscriptions on (below) |
//! | `--compare` | `LOAD_COMPARE=1` | off | polling alone, then subscriptions, side by side |
//! | `--notification-delay D` | `LOAD_NOTIFICATION_DELAY` | the simulator's (1 s) | e.g. `5s` |
//! | `--notification-jitter D` | `LOAD_NOTIFICATION_JITTER` | none | up to this much more, at random |
//!
//! With subscriptions the simulator also has one service account per 650
//! agents (`svc-presence-N@` its domain) and approves device codes itself
//! (`sim --auto-approve`); each account is signed in with `presence-sync
//! login` before the daemon's first start, and the daemon's config turns
//! `[subscriptions]` on with them, its receiver on a free loopback port.
//! Before the changes start the tool waits for the subscriptions to watch
//! every agent (`/readyz` `subscriptions.users_subscribed`); it reports
//! how long that took, Graph presence reads per minute over the changes'
//! window, the notifications the simulator delivered, and users
//! subscribed vs polled. `--compare` makes two whole runs in one
//! invocation, the same knobs but for subscriptions, and prints a table of
//! both after their own reports.
//!
//! The binary: `CARGO_BIN_EXE_presence-sync`, which cargo sets for benches
//! and points at the binary of the profile being built (release under
//! `cargo bench`, debug under `cargo test`).
//!
//! Under `cargo test --all-targets` (no `--bench` argument) it makes a smoke
//! run with the debug binary: 20 agents, a 1 s debounce, changes for 4 s,
//! one restart; it fails unless every step worked and at least one change
//! of each direction was seen. With `LOAD_SUBSCRIPTIONS=1` it runs polling
//! alone and then with subscriptions (as `--compare`, about 15 s more),
//! and fails too unless every agent was watched and notifications were
//! delivered.

mod board;
#[path = "../common/cli.rs"]
mod cli;
mod drive;
mod processes;
// Child processes and the simulator's banner, shared with the tests.
#[path = "../../tests/common/proc_kit.rs"]
mod proc_kit;
mod report;
mod subscriptions;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use presence_sync::demo::contact_center::ApiClient;
use presence_sync::stop::Stop;
use serde_json::{Value, json};

use drive::{Http, Pace};
use processes::{DaemonFiles, Proc};
use report::{Flow, Registration, Report, Restart, SimCounts};

#[derive(Clone, Debug)]
struct Knobs {
    smoke: bool,
    agents: usize,
    clients: usize,
    cc_rate: f64,
    teams_rate: f64,
    seconds: f64,
    restarts: u32,
    budget: u32,
    debounce: Option<Duration>,
    state_dir: Option<PathBuf>,
    bin: PathBuf,
    json: bool,
    subscriptions: bool,
    compare: bool,
    notification_delay: Option<Duration>,
    notification_jitter: Option<Duration>,
}

/// The most agents the tool will drive (the simulator's own limit is 1 M).
const MAX_AGENTS: usize = 200_000;

impl Knobs {
    fn smoke() -> Knobs {
        Knobs {
            smoke: true,
            agents: 20,
            clients: 8,
            cc_rate: 2.0,
            teams_rate: 2.0,
            seconds: 4.0,
            restarts: 1,
            budget: 1_500,
            debounce: Some(Duration::from_secs(1)),
            state_dir: None,
            bin: PathBuf::from(env!("CARGO_BIN_EXE_presence-sync")),
            json: false,
            subscriptions: false,
            compare: false,
            notification_delay: None,
            notification_jitter: None,
        }
    }

    fn parse() -> anyhow::Result<Knobs> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        if !cli::is_bench(&args) {
            // Subscriptions add about 15 s (a sign-in takes 5): only when
            // asked for.
            let with_subscriptions =
                std::env::var("LOAD_SUBSCRIPTIONS").is_ok_and(|v| v != "0" && !v.is_empty());
            let mut knobs = Knobs {
                compare: with_subscriptions,
                ..Knobs::smoke()
            };
            if let Ok(bin) = std::env::var("LOAD_BIN") {
                knobs.bin = bin.into();
            }
            return Ok(knobs);
        }
        let mut knobs = Knobs {
            smoke: false,
            agents: 2_000,
            clients: 64,
            cc_rate: 20.0,
            teams_rate: 10.0,
            seconds: 60.0,
            restarts: 2,
            debounce: None,
            ..Knobs::smoke()
        };
        let mut set = |key: &str, value: &str| -> anyhow::Result<()> {
            let bad = |what: &str| format!("{key} {value}: {what}");
            match key {
                "agents" => knobs.agents = value.parse().with_context(|| bad("a count"))?,
                "clients" => knobs.clients = value.parse().with_context(|| bad("a count"))?,
                "cc-rate" => knobs.cc_rate = value.parse().with_context(|| bad("per second"))?,
                "teams-rate" => {
                    knobs.teams_rate = value.parse().with_context(|| bad("per second"))?
                }
                "seconds" => knobs.seconds = value.parse().with_context(|| bad("seconds"))?,
                "restarts" => knobs.restarts = value.parse().with_context(|| bad("a count"))?,
                "budget" => knobs.budget = value.parse().with_context(|| bad("calls per 30 s"))?,
                "debounce" => {
                    knobs.debounce = Some(
                        presence_sync::duration::parse_duration(value)
                            .map_err(anyhow::Error::msg)?,
                    )
                }
                "state-dir" => knobs.state_dir = Some(value.into()),
                "bin" => knobs.bin = value.into(),
                "json" => knobs.json = value != "0" && !value.is_empty(),
                "subscriptions" => knobs.subscriptions = value != "0" && !value.is_empty(),
                "compare" => knobs.compare = value != "0" && !value.is_empty(),
                "notification-delay" => {
                    knobs.notification_delay = Some(
                        presence_sync::duration::parse_duration(value)
                            .map_err(anyhow::Error::msg)?,
                    )
                }
                "notification-jitter" => {
                    knobs.notification_jitter = Some(
                        presence_sync::duration::parse_duration(value)
                            .map_err(anyhow::Error::msg)?,
                    )
                }
                _ => bail!("unknown knob --{key}"),
            }
            Ok(())
        };
        let keys = [
            "agents",
            "clients",
            "cc-rate",
            "teams-rate",
            "seconds",
            "restarts",
            "budget",
            "debounce",
            "state-dir",
            "bin",
            "json",
            "subscriptions",
            "compare",
            "notification-delay",
            "notification-jitter",
        ];
        let switches = ["json", "subscriptions", "compare"];
        cli::apply("LOAD", &keys, &switches, &args, &mut set)?;
        if knobs.agents < 4 || knobs.agents > MAX_AGENTS {
            bail!("--agents must be 4 to {MAX_AGENTS}");
        }
        if !(0.0..=10_000.0).contains(&knobs.cc_rate)
            || !(0.0..=10_000.0).contains(&knobs.teams_rate)
        {
            bail!("rates must be 0 to 10000 per second");
        }
        if !(0.0..=86_400.0).contains(&knobs.seconds) {
            bail!("--seconds must be 0 to 86400");
        }
        knobs.clients = knobs.clients.clamp(1, 1_024);
        knobs.restarts = knobs.restarts.min(50);
        Ok(knobs)
    }

    /// Service accounts' sign-ins and the wait for the subscriptions to
    /// cover every agent, at most.
    fn subscriptions_patience(&self) -> (Duration, Duration) {
        let covered = if self.smoke {
            30.0
        } else {
            180.0 + self.agents as f64 / 100.0
        };
        (Duration::from_secs(60), Duration::from_secs_f64(covered))
    }

    /// How long after a start's `/readyz` the second RSS reading is taken:
    /// the start's follow-up (the first poll round, a full directory read)
    /// has given its memory back by then.
    fn settle(&self) -> Duration {
        Duration::from_secs(if self.smoke { 1 } else { 5 })
    }

    /// An upper bound on the whole run; past it the tool stops and fails.
    fn deadline(&self, debounce: Duration) -> Duration {
        let agents = self.agents as f64;
        let per_phase = 120.0 + agents / 100.0;
        let subscriptions = if self.subscriptions {
            let (login, covered) = self.subscriptions_patience();
            let accounts = self.agents.div_ceil(subscriptions::USERS_PER_SUBSCRIPTION) as f64;
            accounts * login.as_secs_f64() + covered.as_secs_f64()
        } else {
            0.0
        };
        Duration::from_secs_f64(
            subscriptions
                + self.seconds
                + 3.0 * debounce.as_secs_f64()
                + 90.0
                + 4.0 * per_phase
                + f64::from(self.restarts) * (60.0 + per_phase),
        )
    }
}

fn main() -> std::process::ExitCode {
    let knobs = match Knobs::parse() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("load: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = match cli::runtime("load") {
        Ok(r) => r,
        Err(code) => return code,
    };
    let runs: Vec<Knobs> = if knobs.compare {
        [false, true]
            .into_iter()
            .map(|subscriptions| Knobs {
                subscriptions,
                ..knobs.clone()
            })
            .collect()
    } else {
        vec![knobs.clone()]
    };
    let mut reports = Vec::new();
    let mut failed = false;
    for run_knobs in runs {
        let mode = report::mode_name(run_knobs.subscriptions);
        if knobs.compare {
            note(&knobs, &format!("run: {mode}"));
        }
        match runtime.block_on(run(run_knobs)) {
            Ok(report) => {
                if !knobs.json {
                    report.print_table();
                }
                if knobs.smoke
                    && let Err(e) = smoke_verdict(&report)
                {
                    eprintln!("load (smoke): {e}");
                    failed = true;
                }
                reports.push(report);
            }
            Err(e) => {
                eprintln!("load ({mode}): {e:#}");
                failed = true;
            }
        }
    }
    if knobs.json {
        let value = if knobs.compare {
            serde_json::to_value(&reports)
        } else {
            serde_json::to_value(reports.first())
        };
        match value.and_then(|v| serde_json::to_string_pretty(&v)) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("load: {e}"),
        }
    } else if knobs.compare {
        report::print_comparison(&reports);
    }
    if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}

/// What a smoke run must show for the tool to count as working.
fn smoke_verdict(report: &Report) -> anyhow::Result<()> {
    if report.registration.errors > 0 || report.status_reports.errors > 0 {
        bail!("registration or status reports failed");
    }
    for (name, flow) in [
        ("CC -> Teams", &report.cc_to_teams),
        ("Teams -> CC", &report.teams_to_cc),
    ] {
        if flow.beyond_debounce.samples == 0 || flow.failed > 0 {
            bail!("{name}: no change seen, or one failed");
        }
    }
    if report.restarts.len() != 1 || report.rss_bytes_registered.is_none() {
        bail!("the restart or the RSS reading is missing");
    }
    if report
        .board
        .as_ref()
        .is_none_or(|b| b.page_bytes == 0 || b.data_bytes == 0)
    {
        bail!("the status board's first load is missing");
    }
    if let Some(subs) = &report.subscriptions {
        let (subscribed, _) = subs.subscribed_polled();
        if subs.covered_after_s.is_none()
            || subscribed.is_none_or(|n| (n as usize) < report.agents)
            || subs.during_drive.delivered == 0
        {
            bail!(
                "subscriptions: not every agent watched, or no notification delivered; /readyz: {}",
                subs.readyz_after_drive
            );
        }
    }
    Ok(())
}

fn note(knobs: &Knobs, text: &str) {
    if !knobs.json {
        eprintln!("load: {text}");
    }
}

async fn run(knobs: Knobs) -> anyhow::Result<Report> {
    let mapping = processes::mapping_text(knobs.debounce)?;
    let debounce = processes::mapping_debounce(&mapping)?;
    let limit = knobs.deadline(debounce);
    match tokio::time::timeout(limit, run_within(&knobs, mapping, debounce)).await {
        Ok(result) => result,
        Err(_) => bail!("the run took longer than its bound ({limit:?}); stopped"),
    }
}

async fn sim_stats(http: &Http) -> anyhow::Result<Value> {
    let text = http.get_text(&format!("{}/_sim/stats", http.sim)).await?;
    Ok(serde_json::from_str(&text)?)
}

async fn sim_counts(http: &Http) -> anyhow::Result<SimCounts> {
    Ok(SimCounts::from_stats(&sim_stats(http).await?))
}

async fn start_timed(
    knobs: &Knobs,
    files: &DaemonFiles,
    http: &Http,
) -> anyhow::Result<(Proc, f64, f64)> {
    let started = Instant::now();
    let mut daemon = processes::start_daemon(&knobs.bin, files)?;
    let within = Duration::from_secs(120) + Duration::from_millis(knobs.agents as u64);
    let healthz = processes::wait_ok(
        &http.client,
        &format!("{}/healthz", files.base),
        started,
        within,
        &mut daemon,
    )
    .await?;
    let readyz = processes::wait_ok(
        &http.client,
        &format!("{}/readyz", files.base),
        started,
        within,
        &mut daemon,
    )
    .await?;
    Ok((daemon, healthz.as_secs_f64(), readyz.as_secs_f64()))
}

fn registration(batch: &drive::Batch, clients: usize) -> Registration {
    let (start, end, all) = batch.rates();
    Registration {
        agents: batch.done.len(),
        clients,
        seconds: batch.elapsed.as_secs_f64(),
        per_s_first_tenth: start,
        per_s_last_tenth: end,
        per_s_overall: all,
        errors: batch.errors,
        first_error: batch.first_error.clone(),
    }
}

fn flow(rate: f64, result: drive::FlowResult) -> Flow {
    Flow {
        rate_per_s: rate,
        changes: result.changes,
        skipped_no_free_agent: result.skipped,
        beyond_debounce: report::Latency::of(&result.beyond_ms),
        unexpected: result.unexpected,
        timed_out: result.timed_out,
        failed: result.failed,
        first_failure: result.first_failure,
    }
}

async fn run_within(knobs: &Knobs, mapping: String, debounce: Duration) -> anyhow::Result<Report> {
    let mut report = Report {
        smoke: knobs.smoke,
        binary: knobs.bin.display().to_string(),
        agents: knobs.agents,
        budget_per_30s: knobs.budget,
        debounce_s: debounce.as_secs_f64(),
        drive_seconds: knobs.seconds,
        mode: report::mode_name(knobs.subscriptions).to_string(),
        ..Report::default()
    };
    if !knobs.bin.is_file() {
        bail!("no binary at {}", knobs.bin.display());
    }
    let dir = match &knobs.state_dir {
        Some(parent) => {
            std::fs::create_dir_all(parent)?;
            tempfile::Builder::new()
                .prefix("presence-sync-load-")
                .tempdir_in(parent)?
        }
        None => tempfile::Builder::new()
            .prefix("presence-sync-load-")
            .tempdir()?,
    };
    note(knobs, &format!("state directory {}", dir.path().display()));

    // The simulator, and its users (listed through Graph).
    let (mut sim, info) = processes::start_sim(
        &knobs.bin,
        dir.path(),
        knobs.agents,
        knobs.budget,
        knobs.subscriptions,
    )?;
    let accounts = if knobs.subscriptions {
        subscriptions::account_names(knobs.agents, &info.tenant_domain)
    } else {
        Vec::new()
    };
    let files = processes::write_daemon_files(dir.path(), &info, &mapping, &accounts)?;
    let http = Http::new(
        knobs.clients,
        files.base.clone(),
        files.token.clone(),
        info.base_url.clone(),
    )?;
    let users = Arc::new(drive::list_users(&http, &info, knobs.agents).await?);
    let mut subs = None;
    if knobs.subscriptions {
        // After the listing, so the agents are the first users and the
        // accounts come after them.
        subscriptions::add_accounts(&http, &accounts).await?;
        if knobs.notification_delay.is_some() || knobs.notification_jitter.is_some() {
            subscriptions::set_delay(
                &http,
                knobs.notification_delay.unwrap_or(Duration::from_secs(1)),
                knobs.notification_jitter.unwrap_or_default(),
            )
            .await?;
        }
        let (login_within, _) = knobs.subscriptions_patience();
        let mut login_s = Vec::new();
        for (i, account) in accounts.iter().enumerate() {
            note(
                knobs,
                &format!("signing in {account} ({} of {})", i + 1, accounts.len()),
            );
            let bin = knobs.bin.clone();
            let config = files.config.clone();
            let dir = files.dir.clone();
            let upn = account.clone();
            let took = tokio::task::spawn_blocking(move || {
                processes::login(&bin, &config, &dir, &upn, login_within)
            })
            .await??;
            login_s.push(took.as_secs_f64());
        }
        subs = Some(subscriptions::SubscriptionsReport {
            accounts: accounts.clone(),
            login_s,
            notification_delay_ms: knobs.notification_delay.map(|d| d.as_millis() as u64),
            notification_jitter_ms: knobs.notification_jitter.map(|d| d.as_millis() as u64),
            ..Default::default()
        });
    }
    let ids: Arc<Vec<String>> = Arc::new(
        (0..knobs.agents)
            .map(|i| format!("load-{:06}", i + 1))
            .collect(),
    );
    {
        let http = http.clone();
        let users = users.clone();
        let set = drive::batch(knobs.agents, knobs.clients, move |i| {
            let http = http.clone();
            let user = users[i].id.clone();
            async move { http.sim_client(&user, drive::AVAILABLE).await.map(|_| ()) }
        })
        .await;
        if set.errors > 0 {
            bail!(
                "setting the users' own presence failed {} times: {}",
                set.errors,
                set.first_error.unwrap_or_default()
            );
        }
    }

    // The daemon, empty.
    note(knobs, "starting the daemon (empty store)");
    let (mut daemon, healthz, readyz) = start_timed(knobs, &files, &http).await?;
    report.first_start_healthz_s = healthz;
    report.first_start_readyz_s = readyz;
    report.rss_bytes_empty = daemon.pid().and_then(processes::rss_bytes);
    tokio::time::sleep(knobs.settle()).await;
    daemon.check_alive()?;
    report.rss_bytes_empty_settled = daemon.pid().and_then(processes::rss_bytes);

    // Agents.
    note(
        knobs,
        &format!(
            "registering {} agents, {} clients",
            knobs.agents, knobs.clients
        ),
    );
    let batch = {
        let http = http.clone();
        let users = users.clone();
        let ids = ids.clone();
        drive::batch(knobs.agents, knobs.clients, move |i| {
            let http = http.clone();
            let path = format!("/v1/agents/{}", ids[i]);
            let body = json!({"teams_user": users[i].upn, "auto_link": true});
            async move { http.put_daemon(&path, &body).await }
        })
        .await
    };
    report.registration = registration(&batch, knobs.clients);
    if batch.errors > 0 {
        bail!(
            "{} registrations failed: {}",
            batch.errors,
            batch.first_error.unwrap_or_default()
        );
    }
    let batch = {
        let http = http.clone();
        let ids = ids.clone();
        drive::batch(knobs.agents, knobs.clients, move |i| {
            let http = http.clone();
            let path = format!("/v1/agents/{}/status", ids[i]);
            async move {
                http.put_daemon(&path, &json!({"status": "Available"}))
                    .await
            }
        })
        .await
    };
    report.status_reports = registration(&batch, knobs.clients);
    if batch.errors > 0 {
        bail!(
            "{} status reports failed: {}",
            batch.errors,
            batch.first_error.unwrap_or_default()
        );
    }
    daemon.check_alive()?;
    report.rss_bytes_registered = daemon.pid().and_then(processes::rss_bytes);
    report.store_bytes_registered = processes::dir_size(&files.store);
    note(knobs, "the status board's first load");
    report.board = Some(board::first_load(&http).await?);
    if let Some(subs) = subs.as_mut() {
        note(knobs, "waiting for the subscriptions to watch every agent");
        let (_, within) = knobs.subscriptions_patience();
        let (after, section) =
            subscriptions::wait_covered(&http, &files.base, knobs.agents, within, &mut daemon)
                .await?;
        if after.is_none() {
            note(
                knobs,
                &format!(
                    "the subscriptions did not watch every agent within {within:?}: {section}"
                ),
            );
        }
        subs.covered_after_s = after;
        subs.readyz_at_coverage = section;
    }
    // The first statuses settle (their debounce) before changes start.
    tokio::time::sleep(debounce + Duration::from_secs(2)).await;

    // Changes, both directions at once, on disjoint halves of the agents.
    note(
        knobs,
        &format!(
            "changes for {:.0} s: CC {}/s, Teams {}/s (debounce {:?})",
            knobs.seconds, knobs.cc_rate, knobs.teams_rate, debounce
        ),
    );
    let patience = if knobs.smoke {
        Duration::from_secs(20)
    } else {
        Duration::from_secs(60)
    };
    let pace = |rate| Pace {
        rate,
        run_for: Duration::from_secs_f64(knobs.seconds),
        debounce,
        patience,
    };
    let waiters: drive::Waiters = Arc::default();
    let (stop_stream, stream_stop) = Stop::new();
    let api = ApiClient::new(files.base.clone(), files.token.clone())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let follower = tokio::spawn(drive::follow_requests(
        api,
        waiters.clone(),
        stream_stop.clone(),
    ));
    // Let the stream connect before the first Teams change.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sim_before = sim_counts(&http).await?;
    let notes_before = sim_stats(&http).await?;
    let window = Instant::now();
    let half = knobs.agents / 2;
    let (cc, teams) = tokio::join!(
        drive::cc_to_teams(
            http.clone(),
            ids.clone(),
            users.clone(),
            0..half,
            pace(knobs.cc_rate)
        ),
        drive::teams_to_cc(
            http.clone(),
            ids.clone(),
            users.clone(),
            half..knobs.agents,
            pace(knobs.teams_rate),
            waiters,
        ),
    );
    let sim_after = sim_counts(&http).await?;
    report.window_s = window.elapsed().as_secs_f64();
    let notes_after = sim_stats(&http).await?;
    if let Some(subs) = subs.as_mut() {
        subs.during_drive = subscriptions::NotificationCounts::from_stats(&notes_after)
            .since(subscriptions::NotificationCounts::from_stats(&notes_before));
        subs.readyz_after_drive = subscriptions::readyz_section(&http, &files.base)
            .await
            .unwrap_or(Value::Null);
    }
    stop_stream.stop();
    report.unexpected_requests = match tokio::time::timeout(Duration::from_secs(15), follower).await
    {
        Ok(Ok(Ok(n))) => n,
        Ok(Ok(Err(e))) => bail!("event stream: {e}"),
        _ => bail!("the event stream did not stop"),
    };
    report.cc_to_teams = flow(knobs.cc_rate, cc);
    report.teams_to_cc = flow(knobs.teams_rate, teams);
    report.sim_during_drive = sim_after.since(sim_before);
    let metrics = http.get_text(&format!("{}/metrics", files.base)).await?;
    report.daemon_metrics = report::metric_sums(&metrics)
        .into_iter()
        .filter(|(name, _)| {
            [
                "presence_sync_graph_calls_total",
                "presence_sync_graph_throttled_total",
                "presence_sync_teams_writes_total",
                "presence_sync_cc_requests_total",
                "presence_sync_debounced_total",
                "presence_sync_echo_suppressed_total",
            ]
            .contains(&name.as_str())
        })
        .collect();
    daemon.check_alive()?;
    report.rss_bytes_after_drive = daemon.pid().and_then(processes::rss_bytes);

    // Restarts with the agents in the store.
    for i in 0..knobs.restarts {
        note(knobs, &format!("restart {} of {}", i + 1, knobs.restarts));
        let stop_s = daemon.terminate(Duration::from_secs(60))?.as_secs_f64();
        let store_bytes_before = processes::dir_size(&files.store);
        let (restarted, healthz_s, readyz_s) = start_timed(knobs, &files, &http).await?;
        daemon = restarted;
        let rss_bytes = daemon.pid().and_then(processes::rss_bytes);
        let store_bytes_after = processes::dir_size(&files.store);
        tokio::time::sleep(knobs.settle()).await;
        daemon.check_alive()?;
        report.restarts.push(Restart {
            stop_s,
            healthz_s,
            readyz_s,
            rss_bytes,
            rss_bytes_settled: daemon.pid().and_then(processes::rss_bytes),
            store_bytes_before,
            store_bytes_after,
        });
    }
    report.sim_total = sim_counts(&http).await?;
    report.subscriptions = subs;
    sim.check_alive()?;

    let _ = daemon.terminate(Duration::from_secs(60));
    drop(sim);
    drop(dir);
    Ok(report)
}
