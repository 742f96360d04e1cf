//! The active/standby pair's cost and its takeover time (issue 17):
//! acknowledged status updates per second and their latency, one daemon
//! without `[cluster]` against the pair on a 3-node NATS JetStream cluster
//! (R=3) on this machine; then the takeover time over repeated SIGKILLs of
//! the active node (until the other one is active and acknowledges a
//! status report), each killed node started again as the standby.
//!
//! `cargo bench --bench cluster` runs it against the release binary. Knobs
//! (flag or variable):
//!
//! | flag | variable | default | |
//! |---|---|---|---|
//! | `--agents N` | `CLUSTER_AGENTS` | 50 | agents (and simulated users) |
//! | `--clients C` | `CLUSTER_CLIENTS` | 16 | concurrent API clients |
//! | `--seconds S` | `CLUSTER_SECONDS` | 20 | how long each mode is driven |
//! | `--kills K` | `CLUSTER_KILLS` | 20 | SIGKILLs of the active node, timed |
//! | `--lease-ttl D` | `CLUSTER_LEASE_TTL` | `2s` | `[cluster] lease_ttl` |
//! | `--bin PATH` | `CLUSTER_BIN` | the binary cargo built | `presence-sync` to run |
//!
//! Under `cargo test --all-targets` (no `--bench` argument) it makes a smoke
//! run with the debug binary: 8 agents, 4 clients, 2 s per mode, 2 kills;
//! it fails unless both modes acknowledged reports without errors and
//! every kill was taken over (`CLUSTER_BIN` picks another binary here too). Without `nats-server` it says so and
//! succeeds, unless `PRESENCE_SYNC_REQUIRE_NATS=1`.

#[path = "../common/cli.rs"]
mod cli;
#[path = "../../tests/common/cluster_kit.rs"]
mod cluster_kit;
// The NATS servers of the cluster tests.
#[path = "../../tests/common/nats.rs"]
#[allow(dead_code)]
mod nats;
// Child processes, for `cluster_kit` and `nats`.
#[path = "../../tests/common/proc_kit.rs"]
mod proc_kit;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;

use cluster_kit::{Answer, CYCLE, ClusterSettings, Node, Sim};
use nats::{NatsCluster, ServerAuth};

#[derive(Clone, Debug)]
struct Knobs {
    smoke: bool,
    agents: usize,
    clients: usize,
    seconds: f64,
    kills: usize,
    lease_ttl: Duration,
    bin: PathBuf,
}

impl Knobs {
    fn smoke() -> Knobs {
        Knobs {
            smoke: true,
            agents: 8,
            clients: 4,
            seconds: 2.0,
            kills: 2,
            lease_ttl: Duration::from_secs(2),
            bin: PathBuf::from(env!("CARGO_BIN_EXE_presence-sync")),
        }
    }

    fn parse() -> anyhow::Result<Knobs> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        if !cli::is_bench(&args) {
            let mut knobs = Knobs::smoke();
            if let Some(bin) = std::env::var_os("CLUSTER_BIN") {
                knobs.bin = bin.into();
            }
            return Ok(knobs);
        }
        let mut knobs = Knobs {
            smoke: false,
            agents: 50,
            clients: 16,
            seconds: 20.0,
            kills: 20,
            ..Knobs::smoke()
        };
        let mut set = |key: &str, value: &str| -> anyhow::Result<()> {
            let bad = |what: &str| format!("--{key} {value}: {what}");
            match key {
                "agents" => knobs.agents = value.parse().with_context(|| bad("a count"))?,
                "clients" => knobs.clients = value.parse().with_context(|| bad("a count"))?,
                "seconds" => knobs.seconds = value.parse().with_context(|| bad("seconds"))?,
                "kills" => knobs.kills = value.parse().with_context(|| bad("a count"))?,
                "lease-ttl" => {
                    knobs.lease_ttl = presence_sync::duration::parse_duration(value)
                        .map_err(anyhow::Error::msg)?
                }
                "bin" => knobs.bin = value.into(),
                _ => bail!("unknown knob --{key}"),
            }
            Ok(())
        };
        let keys = ["agents", "clients", "seconds", "kills", "lease-ttl", "bin"];
        cli::apply("CLUSTER", &keys, &[], &args, &mut set)?;
        if !(1..=50_000).contains(&knobs.agents) {
            bail!("--agents must be 1 to 50000");
        }
        if !(0.5..=3_600.0).contains(&knobs.seconds) {
            bail!("--seconds must be 0.5 to 3600");
        }
        knobs.clients = knobs.clients.clamp(1, 512);
        knobs.kills = knobs.kills.min(200);
        Ok(knobs)
    }

    /// An upper bound on the whole run.
    fn deadline(&self) -> Duration {
        let per_kill = 60.0 + self.lease_ttl.as_secs_f64();
        Duration::from_secs_f64(
            300.0 + 2.0 * self.seconds + self.agents as f64 * 0.2 + self.kills as f64 * per_kill,
        )
    }
}

/// Acknowledged status reports of one mode.
#[derive(Debug, Default)]
struct Throughput {
    mode: &'static str,
    acked: usize,
    errors: usize,
    first_error: Option<String>,
    seconds: f64,
    /// Milliseconds per acknowledged report, sorted.
    latencies_ms: Vec<f64>,
}

impl Throughput {
    fn per_second(&self) -> f64 {
        self.acked as f64 / self.seconds.max(f64::EPSILON)
    }
}

fn main() -> std::process::ExitCode {
    let knobs = match Knobs::parse() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("cluster: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = match cli::runtime("cluster") {
        Ok(r) => r,
        Err(code) => return code,
    };
    let limit = knobs.deadline();
    let result = runtime.block_on(async {
        match tokio::time::timeout(limit, run(&knobs)).await {
            Ok(result) => result,
            Err(_) => bail!("the run took longer than its bound ({limit:?}); stopped"),
        }
    });
    match result {
        Ok(None) => std::process::ExitCode::SUCCESS,
        Ok(Some((modes, takeovers))) => {
            print_table(&knobs, &modes, &takeovers);
            if knobs.smoke
                && let Err(e) = smoke_verdict(&knobs, &modes, &takeovers)
            {
                eprintln!("cluster (smoke): {e}");
                return std::process::ExitCode::FAILURE;
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cluster: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn smoke_verdict(
    knobs: &Knobs,
    modes: &[Throughput],
    takeovers: &[Result<f64, String>],
) -> anyhow::Result<()> {
    for mode in modes {
        if mode.acked == 0 || mode.errors > 0 {
            bail!(
                "{}: {} acknowledged, {} errors (first: {:?})",
                mode.mode,
                mode.acked,
                mode.errors,
                mode.first_error
            );
        }
    }
    let failed: Vec<&String> = takeovers.iter().filter_map(|t| t.as_ref().err()).collect();
    if takeovers.len() != knobs.kills || !failed.is_empty() {
        bail!("takeovers failed: {failed:?}");
    }
    Ok(())
}

fn note(text: &str) {
    eprintln!("cluster: {text}");
}

type Outcome = Option<(Vec<Throughput>, Vec<Result<f64, String>>)>;

async fn run(knobs: &Knobs) -> anyhow::Result<Outcome> {
    if !knobs.bin.is_file() {
        bail!("no binary at {}", knobs.bin.display());
    }
    let Some(mut nats) = NatsCluster::start_ready(
        "cluster bench",
        3,
        ServerAuth::None,
        Duration::from_secs(60),
    )
    .await
    else {
        return Ok(None);
    };
    let dir = tempfile::Builder::new()
        .prefix("presence-sync-cluster-")
        .tempdir()?;
    note(&format!("state directory {}", dir.path().display()));
    let sim = Sim::start(&knobs.bin, dir.path(), knobs.agents).await?;
    let http = cluster_kit::http()?;
    let patience = Duration::from_secs(120);

    // One daemon, no [cluster].
    note("single node");
    let mut single = Node::write(&knobs.bin, dir.path(), "single", &sim, None, "2s")?;
    single.start(patience).await?;
    let agents = register(&http, &single.base, &sim, knobs.agents).await?;
    let single_run = drive(&http, &single.base, &agents, knobs, "single node").await;
    single.kill();

    // The pair.
    note("pair on a 3-node NATS cluster (R=3)");
    let mut settings = ClusterSettings::new(nats.urls());
    settings.lease_ttl = knobs.lease_ttl;
    let mut nodes = vec![
        Node::write(
            &knobs.bin,
            dir.path(),
            "node-a",
            &sim,
            Some(&settings),
            "2s",
        )?,
        Node::write(
            &knobs.bin,
            dir.path(),
            "node-b",
            &sim,
            Some(&settings),
            "2s",
        )?,
    ];
    nodes[0].start(patience).await?;
    nodes[0].wait_active(&http, patience).await?;
    nodes[1].start(patience).await?;
    nodes[1].wait_caught_up_standby(&http, patience).await?;
    let agents = register(&http, &nodes[0].base, &sim, knobs.agents).await?;
    let pair_run = drive(&http, &nodes[0].base, &agents, knobs, "pair (active, R=3)").await;

    // Takeovers.
    let mut takeovers = Vec::new();
    for k in 0..knobs.kills {
        note(&format!("kill {} of {}", k + 1, knobs.kills));
        let active = match active_of(&http, &nodes).await {
            Some(i) => i,
            None => {
                takeovers.push(Err("no node was active before the kill".into()));
                break;
            }
        };
        let other = 1 - active;
        nodes[active].kill();
        let killed = Instant::now();
        let within = knobs.lease_ttl + Duration::from_secs(60);
        let agent = &agents[k % agents.len()];
        let mut n = k;
        let took = loop {
            n += 1;
            let status = CYCLE[n % CYCLE.len()];
            if cluster_kit::put_status(&http, &nodes[other].base, agent, status)
                .await
                .is_ok()
            {
                break Ok(killed.elapsed().as_secs_f64());
            }
            if killed.elapsed() > within {
                break Err(format!(
                    "node {} did not acknowledge a report within {within:?} of the kill",
                    nodes[other].id
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let failed = took.is_err();
        takeovers.push(took);
        if failed {
            break;
        }
        nodes[active].start(patience).await?;
        nodes[active]
            .wait_caught_up_standby(&http, patience)
            .await?;
    }
    for node in &mut nodes {
        node.kill();
    }
    nats.kill(0);
    drop(sim);
    Ok(Some((vec![single_run, pair_run], takeovers)))
}

/// The running node whose `/readyz` says active.
async fn active_of(http: &reqwest::Client, nodes: &[Node]) -> Option<usize> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        for (i, node) in nodes.iter().enumerate() {
            if node.proc.is_some() && node.role(http).await.as_deref() == Some("active") {
                return Some(i);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Registers `bench-N` on user N for each agent.
async fn register(
    http: &reqwest::Client,
    base: &str,
    sim: &Sim,
    count: usize,
) -> anyhow::Result<Arc<Vec<String>>> {
    let mut ids = Vec::new();
    for (n, (_, upn)) in sim.users.iter().take(count).enumerate() {
        let id = format!("bench-{n}");
        let answer = cluster_kit::call(
            http,
            reqwest::Method::PUT,
            base,
            &format!("/v1/agents/{id}"),
            Some(&json!({"teams_user": upn, "auto_link": true})),
        )
        .await;
        if !answer.is_ok() {
            bail!("registering {id}: {answer:?}");
        }
        ids.push(id);
    }
    Ok(Arc::new(ids))
}

/// `clients` concurrent clients, each over its share of the agents, send
/// status reports for `seconds`; every answer is timed.
async fn drive(
    http: &reqwest::Client,
    base: &str,
    agents: &Arc<Vec<String>>,
    knobs: &Knobs,
    mode: &'static str,
) -> Throughput {
    let run_for = Duration::from_secs_f64(knobs.seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..knobs.clients.min(agents.len()) {
        let http = http.clone();
        let base = base.to_owned();
        let agents = Arc::clone(agents);
        let clients = knobs.clients.min(agents.len());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            let mut first_error = None;
            let mine: Vec<&String> = agents.iter().skip(client).step_by(clients).collect();
            let mut i = 0usize;
            while started.elapsed() < run_for {
                let agent = mine[i % mine.len()];
                let status = CYCLE[(i / mine.len()) % CYCLE.len()];
                i += 1;
                let sent = Instant::now();
                match cluster_kit::put_status(&http, &base, agent, status).await {
                    Answer::Ok(_) => latencies.push(sent.elapsed().as_secs_f64() * 1000.0),
                    other => {
                        errors += 1;
                        first_error.get_or_insert_with(|| format!("{agent} {status}: {other:?}"));
                    }
                }
            }
            (latencies, errors, first_error)
        }));
    }
    let mut result = Throughput {
        mode,
        ..Throughput::default()
    };
    for task in tasks {
        match task.await {
            Ok((latencies, errors, first_error)) => {
                result.acked += latencies.len();
                result.latencies_ms.extend(latencies);
                result.errors += errors;
                if result.first_error.is_none() {
                    result.first_error = first_error;
                }
            }
            Err(e) => {
                result.errors += 1;
                result.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    result.seconds = started.elapsed().as_secs_f64();
    result.latencies_ms.sort_by(f64::total_cmp);
    result
}

fn print_table(knobs: &Knobs, modes: &[Throughput], takeovers: &[Result<f64, String>]) {
    println!();
    println!(
        "Acknowledged status updates ({} agents, {} clients, {:.0} s per mode{})",
        knobs.agents,
        knobs.clients,
        knobs.seconds,
        if knobs.smoke { ", smoke run" } else { "" }
    );
    println!(
        "| mode | acknowledged | per second | p50 ms | p99 ms | max ms | errors |\n|---|---|---|---|---|---|---|"
    );
    for m in modes {
        let p = |q: f64| cluster_kit::percentile(&m.latencies_ms, q);
        println!(
            "| {} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {} |",
            m.mode,
            m.acked,
            m.per_second(),
            p(50.0),
            p(99.0),
            m.latencies_ms.last().copied().unwrap_or(f64::NAN),
            m.errors
        );
    }
    let mut times: Vec<f64> = takeovers.iter().filter_map(|t| t.clone().ok()).collect();
    times.sort_by(f64::total_cmp);
    let failed = takeovers.len() - times.len();
    println!();
    println!(
        "Takeover after SIGKILL of the active (lease_ttl {:?}): until the other node acknowledges a status report",
        knobs.lease_ttl
    );
    println!(
        "| kills | taken over | min s | p50 s | p90 s | max s | mean s |\n|---|---|---|---|---|---|---|"
    );
    let mean = if times.is_empty() {
        f64::NAN
    } else {
        times.iter().sum::<f64>() / times.len() as f64
    };
    println!(
        "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
        takeovers.len(),
        times.len(),
        times.first().copied().unwrap_or(f64::NAN),
        cluster_kit::percentile(&times, 50.0),
        cluster_kit::percentile(&times, 90.0),
        times.last().copied().unwrap_or(f64::NAN),
        mean
    );
    if failed > 0 {
        for t in takeovers.iter().filter_map(|t| t.as_ref().err()) {
            println!("failed: {t}");
        }
    }
}
