//! The Teams directory at scale, end to end on loopback: the daemon in
//! process against the embedded simulator holding Microsoft's 1,500
//! requests per 30 s budget, with a tenant of 50,000 users (scripted Teams
//! drift) of whom 10,000 are agents.
//!
//! It measures, in order:
//! 1. the directory view's memory at that size (RSS growth while a view of
//!    the tenant's users is built, before anything else runs);
//! 2. with `[directory] scope = "agents"` (the slower tier off): Graph
//!    requests per minute by call class, 429s, and the agent tier's round
//!    and oldest read, sampled every second;
//! 3. a restart with `scope = "all"`: how soon `/readyz` is 200 from the
//!    stored directory, then the same numbers with the slower tier reading
//!    the 40,000 others, and `GET /v1/directory` latency over HTTP (searches,
//!    filters and pages, one at a time) while both tiers read.
//!
//! `cargo bench --bench directory` (about five minutes). `DIRECTORY_USERS`,
//! `DIRECTORY_AGENTS`, `DIRECTORY_SECS` and `DIRECTORY_QUERIES` change the
//! sizes. Under `cargo test` (no `--bench` argument) it makes a smoke run of
//! a few seconds.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use presence_sync::config::{Config, DirectoryScope, Environment};
use presence_sync::daemon::{Daemon, DaemonOptions, Exit};
use presence_sync::directory::DirectoryView;
use presence_sync::graph::model::User;
use presence_sync::sim::{self, SimHandle, SimOptions};
use reqwest::Client;
use serde_json::{Value, json};

const BUDGET: u32 = 1_500;
const TOKEN: &str = "bench-token-0123456789";

struct Settings {
    users: usize,
    agents: usize,
    measure: Duration,
    queries: usize,
}

fn number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

impl Settings {
    fn from_env() -> Settings {
        if !std::env::args().any(|a| a == "--bench") {
            return Settings {
                users: 300,
                agents: 40,
                measure: Duration::from_secs(2),
                queries: 40,
            };
        }
        Settings {
            users: number("DIRECTORY_USERS", 50_000),
            agents: number("DIRECTORY_AGENTS", 10_000),
            measure: Duration::from_secs(number("DIRECTORY_SECS", 60) as u64),
            queries: number("DIRECTORY_QUERIES", 2_000),
        }
    }
}

/// Resident memory of this process, in bytes (Linux).
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Gives the allocator's free pages back, so RSS shows what is live.
fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own free lists; it takes no
    // pointers and is safe to call at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Users shaped as the simulator makes them, for the memory measurement.
fn synthetic_users(n: usize) -> Vec<User> {
    const NAMES: &[&str] = &[
        "Adele", "José", "Łukasz", "Priya", "Kenji", "Fatima", "Jonas", "Elena",
    ];
    const SURNAMES: &[&str] = &["Vance", "Müller", "Nowak", "Shah", "Tanaka", "Okafor"];
    (0..n)
        .map(|i| {
            let name = format!(
                "{} {}",
                NAMES[i % NAMES.len()],
                SURNAMES[(i / 7) % SURNAMES.len()]
            );
            let upn = format!("user{i}@contoso.example");
            let department = ["Sales", "Support", "Billing", "Operations"][i % 4];
            serde_json::from_value(json!({
                "id": format!("{:08x}-4792-4def-b2c9-{:012x}", i, i * 7919),
                "displayName": name,
                "userPrincipalName": upn,
                "mail": upn,
                "department": department,
                "jobTitle": "Customer Service Agent",
                "businessPhones": [format!("+1 {} 555 {:04}", 200 + i / 100 % 400, 100 + i % 100)],
                "mobilePhone": format!("+1 {} 555 {:04}", 600 + i / 100 % 400, 100 + i % 100),
                "assignedPlans": [
                    {"capabilityStatus": "Enabled", "service": "TeamspaceAPI",
                     "servicePlanId": "57ff2da0-773e-42df-b2af-ffb7a2317929"},
                    {"capabilityStatus": "Enabled", "service": "MicrosoftCommunicationsOnline",
                     "servicePlanId": "4828c8ec-dc2e-4779-b502-87ac9ce28ab7"}
                ]
            }))
            .expect("a user")
        })
        .collect()
}

fn write_config(dir: &Path, sim: &SimHandle, scope: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("graph-secret"), &sim.client_secret).expect("secret");
    std::fs::write(dir.join("api-token"), TOKEN).expect("token");
    let mappings = Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings/default.toml");
    let config = format!(
        r#"
[graph]
tenant_id = "{tenant}"
client_id = "{client}"
client_secret_file = "{dir}/graph-secret"
login_base = "{base}"
graph_base = "{base}"
requests_per_30s = {BUDGET}

[api]
listen = "127.0.0.1:0"
token_file = "{dir}/api-token"

[store]
state_dir = "{dir}/state"

[mappings.profiles.default]
file = "{mappings}"

[directory]
scope = "{scope}"
"#,
        tenant = sim.tenant_id,
        client = sim.client_id,
        base = sim.base_url,
        dir = dir.display(),
        mappings = mappings.display(),
    );
    let path = dir.join("presence-sync.toml");
    std::fs::write(&path, config).expect("config");
    path
}

struct Api {
    http: Client,
    base: String,
}

impl Api {
    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("GET");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn metrics(&self) -> Vec<presence_sync::metrics::Sample> {
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        presence_sync::metrics::parse_text(&text).expect("metrics parse")
    }
}

fn metric(samples: &[presence_sync::metrics::Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| presence_sync::metrics::find(std::slice::from_ref(*s), name, labels).is_some())
        .map(|s| s.value)
        .sum()
}

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "{what}: not in 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn boot(config: &Path) -> (Daemon, Api) {
    let config = Config::load_with(config, &Environment::default()).expect("config");
    let daemon = Daemon::start(config, DaemonOptions::default())
        .await
        .expect("daemon starts");
    let api = Api {
        http: Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client"),
        base: format!("http://{}", daemon.api_addr),
    };
    (daemon, api)
}

/// One phase's numbers.
#[derive(Debug, Default)]
struct Phase {
    agent_per_min: f64,
    directory_per_min: f64,
    write_per_min: f64,
    throttled: f64,
    agent_round: f64,
    agent_oldest_max: f64,
    tier_users: u64,
    tier_round: f64,
    tier_oldest_max: f64,
}

async fn measure(api: &Api, seconds: Duration) -> Phase {
    let class = |s: &[presence_sync::metrics::Sample], c: &str| {
        metric(
            s,
            "presence_sync_graph_class_requests_total",
            &[("class", c)],
        )
    };
    let before = api.metrics().await;
    let started = Instant::now();
    let mut phase = Phase::default();
    while started.elapsed() < seconds {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (_, ready) = api.get("/readyz").await;
        let poll = &ready["poll"];
        let tier = &ready["directory_poll"];
        phase.agent_round = poll["round_seconds"].as_f64().unwrap_or(0.0);
        phase.agent_oldest_max = phase
            .agent_oldest_max
            .max(poll["oldest_read_seconds"].as_f64().unwrap_or(0.0));
        phase.tier_users = tier["users"].as_u64().unwrap_or(0);
        phase.tier_round = tier["round_seconds"].as_f64().unwrap_or(0.0);
        phase.tier_oldest_max = phase
            .tier_oldest_max
            .max(tier["oldest_read_seconds"].as_f64().unwrap_or(0.0));
    }
    let after = api.metrics().await;
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    phase.agent_per_min = (class(&after, "agent_read") - class(&before, "agent_read")) / minutes;
    phase.directory_per_min = (class(&after, "directory") - class(&before, "directory")) / minutes;
    phase.write_per_min = (class(&after, "write") - class(&before, "write")) / minutes;
    phase.throttled = metric(&after, "presence_sync_graph_throttled_total", &[])
        - metric(&before, "presence_sync_graph_throttled_total", &[]);
    phase
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

/// Searches, filters and pages, one at a time; the latency of each.
async fn queries(api: &Api, sim: &SimHandle, n: usize) -> (Vec<Duration>, usize) {
    let users = sim.users();
    let mut times = Vec::with_capacity(n);
    let mut matched = 0usize;
    let mut cursor: Option<String> = None;
    for i in 0..n {
        let query = match i % 6 {
            0 => {
                let (_, upn) = &users[(i * 7919) % users.len()];
                let prefix: String = upn.chars().take(5).collect();
                format!("search={prefix}")
            }
            1 => "search=mull&limit=50".to_string(),
            2 => "presence=Busy,DoNotDisturb&department=sales".to_string(),
            3 => "has_phone=true&limit=200".to_string(),
            4 => format!("search=555+{:04}", 100 + i % 100),
            _ => match cursor.take() {
                Some(c) => format!("limit=100&cursor={c}"),
                None => "limit=100".to_string(),
            },
        };
        let started = Instant::now();
        let (status, body) = api.get(&format!("/v1/directory?{query}")).await;
        times.push(started.elapsed());
        assert_eq!(status, 200, "{query}: {body}");
        matched += body["total"].as_u64().unwrap_or(0) as usize;
        if i % 6 == 5 {
            cursor = body["next_cursor"].as_str().map(str::to_string);
        }
    }
    times.sort();
    (times, matched)
}

async fn register(api: &Api, sim: &SimHandle, agents: usize) {
    let users = sim.users();
    let ids: Vec<String> = users
        .iter()
        .take(agents)
        .map(|(id, _)| id.clone())
        .collect();
    let ids = Arc::new(ids);
    let mut tasks = Vec::new();
    for worker in 0..64 {
        let ids = Arc::clone(&ids);
        let http = api.http.clone();
        let base = api.base.clone();
        tasks.push(tokio::spawn(async move {
            for (n, id) in ids.iter().enumerate().skip(worker).step_by(64) {
                let r = http
                    .put(format!("{base}/v1/agents/agent-{n}"))
                    .bearer_auth(TOKEN)
                    .json(&json!({"teams_user": id}))
                    .send()
                    .await
                    .expect("PUT agent");
                assert!(r.status().is_success(), "agent {n}: {}", r.status());
            }
        }));
    }
    for task in tasks {
        task.await.expect("registration");
    }
}

fn print_phase(name: &str, p: &Phase) {
    println!(
        "| {name} | {:.0} | {:.0} | {:.0} | {} | {:.2} s | {:.2} s | {} | {:.1} s | {:.1} s |",
        p.agent_per_min,
        p.directory_per_min,
        p.write_per_min,
        p.throttled,
        p.agent_round,
        p.agent_oldest_max,
        p.tier_users,
        p.tier_round,
        p.tier_oldest_max,
    );
}

async fn run(settings: &Settings) {
    // 1. The directory's memory, before anything else grows the heap: the
    // view, with the one index of its records the sync loop looks users up
    // in, as the daemon holds it (freed temporaries given back first).
    let users = synthetic_users(settings.users);
    trim();
    let before = rss();
    let view = DirectoryView::new(&DirectoryScope::All, None);
    let replaced = view.replace(&users);
    drop(replaced);
    trim();
    let after_view = rss();
    let per_user = |bytes: u64| bytes as f64 / settings.users as f64;
    println!(
        "directory at {} users: the view and its index {:.1} MB ({:.0} bytes a user)",
        settings.users,
        after_view.saturating_sub(before) as f64 / 1e6,
        per_user(after_view.saturating_sub(before)),
    );
    drop(users);
    drop(view);

    let sim = sim::spawn(SimOptions {
        users: settings.users,
        budget: Some(BUDGET),
        scripted: true,
        ..SimOptions::default()
    })
    .await
    .expect("simulator");
    let dir = tempfile::tempdir().expect("temp dir");

    // 2. The agents only: the slower tier has nobody to read.
    let config = write_config(dir.path(), &sim, "agents");
    let started = Instant::now();
    let (daemon, api) = boot(&config).await;
    wait_for("the directory read", async || {
        let (_, ready) = api.get("/readyz").await;
        ready["checks"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["name"] == "graph" && c["ok"] == true))
    })
    .await;
    println!(
        "first start: ready after the full read of {} users in {:.1} s",
        settings.users,
        started.elapsed().as_secs_f64()
    );
    let registering = Instant::now();
    register(&api, &sim, settings.agents).await;
    wait_for("every agent polled", async || {
        let (_, ready) = api.get("/readyz").await;
        ready["poll"]["users"].as_u64() == Some(settings.agents as u64)
    })
    .await;
    println!(
        "{} agents registered and polled in {:.1} s",
        settings.agents,
        registering.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let agents_only = measure(&api, settings.measure).await;
    assert_eq!(daemon.shutdown().await, Exit::Stopped);

    // 3. Everyone: a restart from the stored directory, then both tiers.
    let config = write_config(dir.path(), &sim, "all");
    let restarted = Instant::now();
    let (daemon, api) = boot(&config).await;
    wait_for("ready after the restart", async || {
        api.get("/readyz").await.0 == 200
    })
    .await;
    let ready_after = restarted.elapsed();
    wait_for("the full read after the restart", async || {
        let (_, ready) = api.get("/readyz").await;
        ready["checks"].as_array().is_some_and(|c| {
            c.iter().any(|c| {
                c["name"] == "graph"
                    && c["detail"]
                        .as_str()
                        .is_some_and(|d| d.starts_with("reachable"))
            })
        })
    })
    .await;
    let read_after = restarted.elapsed();
    println!(
        "restart with the stored directory: /readyz 200 after {:.2} s; the full read done after {:.1} s",
        ready_after.as_secs_f64(),
        read_after.as_secs_f64()
    );
    // One directory round to settle.
    tokio::time::sleep(Duration::from_secs(
        35u64.min(settings.measure.as_secs() + 1),
    ))
    .await;
    let (times, matched) = queries(&api, &sim, settings.queries).await;
    let everyone = measure(&api, settings.measure).await;
    let (_, listing) = api.get("/v1/directory?limit=1").await;
    assert_eq!(daemon.shutdown().await, Exit::Stopped);
    sim.shutdown().await.expect("simulator stops");

    println!();
    println!(
        "| scope | agent reads/min | directory reads/min | writes/min | 429s | agent round | agent oldest read, max | tier users | tier round | tier oldest read, max |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    print_phase("agents", &agents_only);
    print_phase("all", &everyone);
    println!();
    println!(
        "GET /v1/directory over HTTP at {} users ({} listed), {} queries one at a time while both tiers read: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} matches in all)",
        settings.users,
        listing["total"],
        times.len(),
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3,
        times.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        matched,
    );
}

fn main() {
    let settings = Settings::from_env();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(run(&settings));
}
