//! The active/standby pair as real processes, for the cluster end-to-end
//! tests (`tests/cluster_e2e.rs`) and the cluster benchmark
//! (`benches/cluster`, which includes this file by path): a 3-node
//! `nats-server` JetStream cluster on free loopback ports, `presence-sync
//! sim` as a process, and `presence-sync run` nodes with a `[cluster]`
//! section sharing both. Every process is killed when its handle drops.
//!
//! The NATS servers come from `tests/common/nats.rs`, the processes from
//! `super::proc_kit` (the benchmark includes both files beside this one).
//! This file needs std, reqwest, tokio, serde_json, tempfile and anyhow
//! only, so that the benchmark can use it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::proc_kit::{Proc, SimInfo, free_port, log_tail};

/// The API token every node of these runs accepts.
pub const API_TOKEN: &str = "cluster-test-token-0123456789";

/// The tenant name of the streams and buckets (`PS_e2e_LOG`, ...).
pub const TENANT: &str = "e2e";

/// What Teams shows for each CC status under [`MAPPING`] when the user has
/// no Teams session of their own (the simulator's users have none).
pub fn teams_for(status: &str) -> &'static str {
    match status {
        "Lunch" => "Away/Away",
        "On contact" => "Busy/InACall",
        // `clear`: no session left, so Offline.
        _ => "Offline/Offline",
    }
}

/// The statuses a driver cycles through: consecutive ones, and those two
/// apart, always differ, so every committed report is a change (an event).
pub const CYCLE: [&str; 3] = ["Lunch", "On contact", "Available"];

/// The mapping of these runs; `{debounce}` is replaced.
const MAPPING: &str = r#"
description = "cluster test profile"
direction = "both"
debounce = "{debounce}"
prefer = "cc"
write_mode = "session"
default_teams = "clear"

[statuses]
Available = { routable = true, teams = "clear" }
"On contact" = { teams = "Busy/InACall" }
Lunch = { teams = "Away/Away" }
Offline = {}
"#;

/// An HTTP client that never follows redirects (a 307 is an answer to
/// look at) and gives up on every request after 10 s.
pub fn http() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(2))
        .build()?)
}

// ---------------------------------------------------------------------------
// The Graph simulator

/// `presence-sync sim` as a process, its credentials and users.
pub struct Sim {
    pub proc: Proc,
    pub info: SimInfo,
    /// (object id, UPN) of each user, in listing order.
    pub users: Vec<(String, String)>,
    http: reqwest::Client,
}

impl Sim {
    /// `sim --listen 127.0.0.1:PORT --users N --budget 0` (no throttling);
    /// waits for its banner and lists its users through Graph.
    pub async fn start(bin: &Path, dir: &Path, users: usize) -> anyhow::Result<Sim> {
        let (proc, info) = super::proc_kit::start_sim(bin, dir, users, 0, false)?;
        let http = http()?;
        Ok(Sim {
            users: info.users(&http, users).await?,
            proc,
            info,
            http,
        })
    }

    /// `availability/activity` of a user as Graph shows it.
    pub async fn presence(&self, user_id: &str) -> anyhow::Result<String> {
        let token = self.info.token(&self.http).await?;
        let body: Value = self
            .http
            .get(format!(
                "{}/v1.0/users/{user_id}/presence",
                self.info.base_url
            ))
            .bearer_auth(&token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(format!(
            "{}/{}",
            body["availability"].as_str().unwrap_or("?"),
            body["activity"].as_str().unwrap_or("?")
        ))
    }

    /// Successful presence writes (`setPresence`, `clearPresence`, ...)
    /// the simulator has answered, from `/_sim/stats`.
    pub async fn presence_writes(&self) -> anyhow::Result<u64> {
        let stats: Value = self
            .http
            .get(format!("{}/_sim/stats", self.info.base_url))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let mut writes = 0;
        for (endpoint, by_status) in stats["requests"].as_object().into_iter().flatten() {
            if endpoint.starts_with("POST ")
                && (endpoint.contains("/presence/set") || endpoint.contains("/presence/clear"))
            {
                writes += by_status
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(status, _)| status.starts_with('2'))
                    .filter_map(|(_, n)| n.as_u64())
                    .sum::<u64>();
            }
        }
        Ok(writes)
    }

    /// Waits until the count of presence writes stays the same for
    /// `quiet`; returns it.
    pub async fn writes_settled(&self, quiet: Duration, within: Duration) -> anyhow::Result<u64> {
        let start = Instant::now();
        let mut last = self.presence_writes().await?;
        let mut since = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = self.presence_writes().await?;
            if now != last {
                last = now;
                since = Instant::now();
            } else if since.elapsed() >= quiet {
                return Ok(now);
            }
            if start.elapsed() > within {
                bail!("Graph writes did not settle within {within:?} (at {last})");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Daemon nodes

/// What a node's `[cluster]` section says beyond its names and address.
#[derive(Clone, Debug)]
pub struct ClusterSettings {
    pub nats_urls: Vec<String>,
    pub replicas: usize,
    pub lease_ttl: Duration,
    pub history: &'static str,
    pub snapshot_interval: &'static str,
    pub request_timeout: &'static str,
}

impl ClusterSettings {
    /// The pair of the tests: R=3, a 2 s lease, 10 min of history, a
    /// snapshot every 10 s, NATS requests bounded at 2 s.
    pub fn new(nats_urls: Vec<String>) -> ClusterSettings {
        ClusterSettings {
            nats_urls,
            replicas: 3,
            lease_ttl: Duration::from_secs(2),
            history: "10m",
            snapshot_interval: "10s",
            request_timeout: "2s",
        }
    }
}

/// A daemon's files and address; its process when running.
pub struct Node {
    pub id: String,
    pub dir: PathBuf,
    pub config: PathBuf,
    /// `http://127.0.0.1:PORT`, also its advertised URL.
    pub base: String,
    pub proc: Option<Proc>,
    bin: PathBuf,
}

impl Node {
    /// Writes a node's config, token and mapping under `parent/<id>`;
    /// without `cluster`, a single daemon as today.
    pub fn write(
        bin: &Path,
        parent: &Path,
        id: &str,
        sim: &Sim,
        cluster: Option<&ClusterSettings>,
        debounce: &str,
    ) -> anyhow::Result<Node> {
        let dir = parent.join(id);
        std::fs::create_dir_all(&dir)?;
        let dir = std::fs::canonicalize(&dir)?;
        let port = free_port()?;
        let base = format!("http://127.0.0.1:{port}");
        std::fs::write(dir.join("api-token"), API_TOKEN)?;
        std::fs::write(dir.join("graph-secret"), &sim.info.client_secret)?;
        std::fs::write(
            dir.join("mapping.toml"),
            MAPPING.replace("{debounce}", debounce),
        )?;
        let quote = |p: &Path| toml_quote(&p.display().to_string());
        let mut text = format!(
            "[graph]\n\
             tenant_id = \"{tenant}\"\n\
             client_id = \"{client}\"\n\
             client_secret_file = {secret}\n\
             login_base = \"{sim}\"\n\
             graph_base = \"{sim}\"\n\
             request_timeout = \"5s\"\n\
             poll_round_min = \"500ms\"\n\n\
             [api]\n\
             listen = \"127.0.0.1:{port}\"\n\
             token_file = {token}\n\n\
             [store]\n\
             state_dir = {state}\n\n\
             [log]\n\
             level = \"info\"\n\n\
             [sync]\n\
             echo_window = \"10s\"\n\n\
             [routing.queues.inbound]\n\
             strategy = \"longest-idle\"\n\n\
             [mappings]\n\
             default_profile = \"default\"\n\n\
             [mappings.profiles.default]\n\
             file = {mapping}\n",
            tenant = sim.info.tenant_id,
            client = sim.info.client_id,
            secret = quote(&dir.join("graph-secret")),
            sim = sim.info.base_url,
            token = quote(&dir.join("api-token")),
            state = quote(&dir.join("state")),
            mapping = quote(&dir.join("mapping.toml")),
        );
        if let Some(c) = cluster {
            let urls: Vec<String> = c.nats_urls.iter().map(|u| toml_quote(u)).collect();
            text.push_str(&format!(
                "\n[cluster]\n\
                 nats_urls = [{urls}]\n\
                 tenant = \"{TENANT}\"\n\
                 node_id = \"{id}\"\n\
                 advertise_url = \"{base}\"\n\
                 replicas = {replicas}\n\
                 lease_ttl = \"{ttl}ms\"\n\
                 history = \"{history}\"\n\
                 snapshot_interval = \"{snapshot}\"\n\
                 request_timeout = \"{timeout}\"\n",
                urls = urls.join(", "),
                replicas = c.replicas,
                ttl = c.lease_ttl.as_millis(),
                history = c.history,
                snapshot = c.snapshot_interval,
                timeout = c.request_timeout,
            ));
        }
        let config = dir.join("presence-sync.toml");
        std::fs::write(&config, text)?;
        Ok(Node {
            id: id.to_owned(),
            dir,
            config,
            base,
            proc: None,
            bin: bin.to_owned(),
        })
    }

    /// `presence-sync run --config` (its output appended to `daemon.log`),
    /// then waits (at most `within`) for `/healthz` to answer.
    pub async fn start(&mut self, within: Duration) -> anyhow::Result<()> {
        if self.proc.is_some() {
            bail!("node {} is already running", self.id);
        }
        let mut command = Command::new(&self.bin);
        command.arg("run").arg("--config").arg(&self.config);
        let mut proc = Proc::spawn(
            &format!("node {}", self.id),
            command,
            &self.dir.join("daemon.log"),
        )?;
        let http = http()?;
        let start = Instant::now();
        loop {
            let up = http
                .get(format!("{}/healthz", self.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if up {
                break;
            }
            proc.check_alive()?;
            if start.elapsed() > within {
                bail!(
                    "node {} did not answer /healthz within {within:?}:\n{}",
                    self.id,
                    log_tail(proc.log(), 30)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.proc = Some(proc);
        Ok(())
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("daemon.log")
    }

    pub fn log_tail(&self) -> String {
        log_tail(&self.log_path(), 40)
    }

    /// SIGKILL; the process is gone when this returns.
    pub fn kill(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.kill();
        }
    }

    pub fn proc(&self) -> anyhow::Result<&Proc> {
        self.proc
            .as_ref()
            .with_context(|| format!("node {} is not running", self.id))
    }

    /// The `cluster` section of its `/readyz` (either status code), or
    /// `None` when it does not answer or has none.
    pub async fn cluster(&self, http: &reqwest::Client) -> Option<Value> {
        let response = tokio::time::timeout(
            Duration::from_secs(3),
            http.get(format!("{}/readyz", self.base)).send(),
        )
        .await
        .ok()?
        .ok()?;
        let body: Value = response.json().await.ok()?;
        let cluster = body.get("cluster")?.clone();
        (!cluster.is_null()).then_some(cluster)
    }

    pub async fn role(&self, http: &reqwest::Client) -> Option<String> {
        self.cluster(http)
            .await
            .and_then(|c| c["role"].as_str().map(str::to_owned))
    }

    /// Waits until its `cluster` section satisfies `check`; returns it.
    pub async fn wait_cluster(
        &self,
        http: &reqwest::Client,
        what: &str,
        within: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let start = Instant::now();
        let mut last = Value::Null;
        loop {
            if let Some(cluster) = self.cluster(http).await {
                if check(&cluster) {
                    return Ok(cluster);
                }
                last = cluster;
            }
            if start.elapsed() > within {
                bail!(
                    "node {} not {what} within {within:?}; its /readyz cluster: {last}\nits log:\n{}",
                    self.id,
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until it is the active node (`cluster.role == "active"`).
    pub async fn wait_active(
        &self,
        http: &reqwest::Client,
        within: Duration,
    ) -> anyhow::Result<Value> {
        self.wait_cluster(http, "active", within, |c| c["role"] == "active")
            .await
    }

    /// Waits until it is a standby holding every record of the log.
    pub async fn wait_caught_up_standby(
        &self,
        http: &reqwest::Client,
        within: Duration,
    ) -> anyhow::Result<Value> {
        self.wait_cluster(http, "a standby with lag 0", within, |c| {
            c["role"] == "standby" && c["lag_records"] == 0 && c["log_last"].as_u64().is_some()
        })
        .await
    }
}

fn toml_quote(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| format!("\"{text}\""))
}

// ---------------------------------------------------------------------------
// The API, as the contact center calls it

/// One answer of the API.
#[derive(Clone, Debug)]
pub enum Answer {
    /// 2xx: acknowledged.
    Ok(Value),
    /// 307 to this URL (a standby's redirect).
    Redirect(String),
    /// Another status: code and body.
    Refused(u16, Value),
    /// No answer (refused connection, reset, timeout).
    Unreachable(String),
}

impl Answer {
    pub fn is_ok(&self) -> bool {
        matches!(self, Answer::Ok(_))
    }
}

/// `method` `base``path` with the API token and a JSON body.
pub async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    base: &str,
    path: &str,
    body: Option<&Value>,
) -> Answer {
    let mut request = http
        .request(method, format!("{base}{path}"))
        .bearer_auth(API_TOKEN);
    if let Some(body) = body {
        request = request.json(body);
    }
    match request.send().await {
        Err(e) => Answer::Unreachable(e.to_string()),
        Ok(response) => {
            let status = response.status().as_u16();
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body: Value = response.json().await.unwrap_or(Value::Null);
            match (status, location) {
                (200..=299, _) => Answer::Ok(body),
                (307, Some(location)) => Answer::Redirect(location),
                _ => Answer::Refused(status, body),
            }
        }
    }
}

/// `PUT /v1/agents/{id}/status`.
pub async fn put_status(http: &reqwest::Client, base: &str, agent: &str, status: &str) -> Answer {
    call(
        http,
        reqwest::Method::PUT,
        base,
        &format!("/v1/agents/{agent}/status"),
        Some(&json!({"status": status})),
    )
    .await
}

/// The scheme, host and port of a URL (`http://127.0.0.1:PORT`).
pub fn origin(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.split('/').next().unwrap_or(rest);
            format!("{scheme}://{host}")
        }
        None => url.to_owned(),
    }
}

/// A contact center client of the pair: sends to the node it believes
/// active, follows a standby's 307 to the active one, and on 503 or no
/// answer tries the other nodes, until `patience` runs out. Answers the
/// final answer and the node that gave it.
pub async fn call_pair(
    http: &reqwest::Client,
    bases: &[String],
    current: &mut usize,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
    patience: Duration,
) -> Answer {
    let start = Instant::now();
    let mut answer;
    loop {
        let base = bases[*current % bases.len()].clone();
        answer = call(http, method.clone(), &base, path, body).await;
        match &answer {
            Answer::Ok(_) => return answer,
            Answer::Redirect(location) => {
                let to = origin(location);
                if let Some(i) = bases.iter().position(|b| *b == to) {
                    *current = i;
                }
            }
            // A 4xx other than a standby's is the API's final word.
            Answer::Refused(status, _) if *status != 503 && *status < 500 => return answer,
            _ => {
                *current = (*current + 1) % bases.len();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        if start.elapsed() > patience {
            return answer;
        }
    }
}

/// Percentile `p` (0..=100) of sorted samples.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}
