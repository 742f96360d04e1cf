//! The active/standby pair as real processes, for the cluster end-to-end
//! tests (`tests/cluster_e2e.rs`) and the cluster benchmark
//! (`benches/cluster`, which includes this file by path): a 3-node
//! `nats-server` JetStream cluster on free loopback ports, `presence-sync
//! sim` as a process, and `presence-sync run` nodes with a `[cluster]`
//! section sharing both. Every process is killed when its handle drops.
//!
//! Self-contained on purpose (std, libc, reqwest, tokio, serde_json,
//! tempfile, anyhow), so that the benchmark can use it too.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// Set in CI: a missing `nats-server` fails instead of skipping.
pub const REQUIRE_NATS: &str = "PRESENCE_SYNC_REQUIRE_NATS";

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

// ---------------------------------------------------------------------------
// Processes

/// A child process killed (SIGCONT first, in case it is stopped) when
/// dropped.
pub struct Proc {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> anyhow::Result<Proc> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("cannot start the {name}"))?;
        Ok(Proc {
            name: name.to_owned(),
            child: Some(child),
            log: log.to_owned(),
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Fails, naming the log, when the process has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(child) = self.child.as_mut()
            && let Some(status) = child.try_wait()?
        {
            self.child = None;
            bail!(
                "the {} exited ({status}); its log {}:\n{}",
                self.name,
                self.log.display(),
                log_tail(&self.log, 30)
            );
        }
        Ok(())
    }

    /// Sends `signal` to the process, if it runs.
    pub fn signal(&self, signal: libc::c_int) -> anyhow::Result<()> {
        let Some(child) = &self.child else {
            bail!("the {} is not running", self.name);
        };
        let pid = libc::pid_t::try_from(child.id()).context("pid out of range")?;
        // SAFETY: kill(2) on our own child, not yet reaped (we hold its
        // `Child`), so the pid cannot have been reused.
        let rc = unsafe { libc::kill(pid, signal) };
        if rc != 0 {
            bail!("kill({pid}, {signal}) failed for the {}", self.name);
        }
        Ok(())
    }

    /// SIGKILL and reap: the process is gone when this returns.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = self.signal_pid(&child, libc::SIGCONT);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn signal_pid(&self, child: &Child, signal: libc::c_int) -> Option<()> {
        let pid = libc::pid_t::try_from(child.id()).ok()?;
        // SAFETY: as in `signal`.
        unsafe { libc::kill(pid, signal) };
        Some(())
    }

    /// SIGSTOP, returning once the kernel shows the process stopped.
    pub fn pause(&self) -> anyhow::Result<()> {
        self.signal(libc::SIGSTOP)?;
        let pid = self.pid().context("not running")?;
        let stat = format!("/proc/{pid}/stat");
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            let text = std::fs::read_to_string(&stat).unwrap_or_default();
            // "pid (comm) S ...": the state follows the command's ')'.
            if text
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('T'))
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        bail!("the {} did not stop within 2 s of SIGSTOP", self.name)
    }

    pub fn resume(&self) -> anyhow::Result<()> {
        self.signal(libc::SIGCONT)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last `lines` lines of a log, for failure messages.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A port free on loopback now (bound, then released for a child to bind).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("no free loopback port")?;
    Ok(listener.local_addr()?.port())
}

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
// NATS

/// The `nats-server` binary, or `None` with the reason printed (the caller
/// skips) — an error when [`REQUIRE_NATS`]`=1`.
pub fn nats_server_or_skip(what: &str) -> anyhow::Result<Option<PathBuf>> {
    let found = std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("nats-server"))
                .find(|p| p.is_file())
        })
        .or_else(|| Some(PathBuf::from("/usr/bin/nats-server")).filter(|p| p.is_file()));
    match found {
        Some(path) => Ok(Some(path)),
        None if std::env::var(REQUIRE_NATS).is_ok_and(|v| v == "1") => {
            bail!("{what}: nats-server is missing, and {REQUIRE_NATS}=1 says it must run")
        }
        None => {
            eprintln!(
                "{what}: skipped: nats-server is missing (Debian: apt-get install nats-server)"
            );
            Ok(None)
        }
    }
}

struct NatsNode {
    name: String,
    port: u16,
    http_port: u16,
    config: PathBuf,
    log: PathBuf,
    proc: Option<Proc>,
}

/// Three routed `nats-server` processes with JetStream, each on free
/// loopback ports with its store in a temporary directory.
pub struct NatsServers {
    binary: PathBuf,
    nodes: Vec<NatsNode>,
    dir: tempfile::TempDir,
}

impl NatsServers {
    /// Three nodes, ready (a JetStream meta leader all of them know), or
    /// `None` when `nats-server` is missing (said why).
    pub async fn three(what: &str) -> anyhow::Result<Option<NatsServers>> {
        let Some(binary) = nats_server_or_skip(what)? else {
            return Ok(None);
        };
        let dir = tempfile::Builder::new().prefix("ps-nats-").tempdir()?;
        let mut ports = Vec::new();
        for _ in 0..3 {
            ports.push((free_port()?, free_port()?, free_port()?));
        }
        let mut nodes = Vec::new();
        for (i, (port, cluster_port, http_port)) in ports.iter().enumerate() {
            let name = format!("n{}", i + 1);
            let store = dir.path().join(&name);
            std::fs::create_dir_all(&store)?;
            let routes: Vec<String> = ports
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, (_, c, _))| format!("nats-route://127.0.0.1:{c}"))
                .collect();
            let text = format!(
                "server_name: {name}\nlisten: 127.0.0.1:{port}\nhttp: 127.0.0.1:{http_port}\n\
                 jetstream {{ store_dir: \"{}\", max_memory_store: 64MB, max_file_store: 1GB }}\n\
                 cluster {{ name: presence_sync_e2e, listen: 127.0.0.1:{cluster_port}, routes: [{}] }}\n",
                store.display(),
                routes.join(", ")
            );
            let config = dir.path().join(format!("{name}.conf"));
            std::fs::write(&config, text)?;
            nodes.push(NatsNode {
                log: dir.path().join(format!("{name}.log")),
                name,
                port: *port,
                http_port: *http_port,
                config,
                proc: None,
            });
        }
        let mut servers = NatsServers { binary, nodes, dir };
        for i in 0..3 {
            servers.restart(i)?;
        }
        servers.wait_ready(Duration::from_secs(60)).await?;
        Ok(Some(servers))
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.port))
            .collect()
    }

    pub fn name(&self, node: usize) -> &str {
        &self.nodes[node].name
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// Starts (again) a node that is not running, on its ports and store.
    pub fn restart(&mut self, node: usize) -> anyhow::Result<()> {
        let n = &mut self.nodes[node];
        if n.proc.is_some() {
            bail!("{} is already running", n.name);
        }
        let mut command = Command::new(&self.binary);
        command.arg("-c").arg(&n.config);
        n.proc = Some(Proc::spawn(
            &format!("nats-server {}", n.name),
            command,
            &n.log,
        )?);
        Ok(())
    }

    /// SIGKILL: the node dies at once, as in a crash.
    pub fn kill(&mut self, node: usize) {
        if let Some(mut proc) = self.nodes[node].proc.take() {
            proc.kill();
        }
    }

    pub fn is_running(&self, node: usize) -> bool {
        self.nodes[node].proc.is_some()
    }

    /// Waits until every running node is healthy, routed to the others
    /// that run, and agrees on one JetStream meta leader.
    pub async fn wait_ready(&self, within: Duration) -> anyhow::Result<Duration> {
        let start = Instant::now();
        let http = http()?;
        loop {
            if self.ready(&http).await {
                return Ok(start.elapsed());
            }
            if start.elapsed() > within {
                let logs: Vec<String> = self
                    .nodes
                    .iter()
                    .map(|n| format!("--- {} ---\n{}", n.name, log_tail(&n.log, 20)))
                    .collect();
                bail!("NATS not ready within {within:?}:\n{}", logs.join("\n"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn ready(&self, http: &reqwest::Client) -> bool {
        let running: Vec<&NatsNode> = self.nodes.iter().filter(|n| n.proc.is_some()).collect();
        let mut leaders = Vec::new();
        for node in &running {
            let base = format!("http://127.0.0.1:{}", node.http_port);
            let healthy = http
                .get(format!("{base}/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if !healthy {
                return false;
            }
            let Some(routez) = get_json(http, &format!("{base}/routez")).await else {
                return false;
            };
            if routez["num_routes"].as_u64().unwrap_or(0) < (running.len() as u64 - 1) {
                return false;
            }
            let Some(jsz) = get_json(http, &format!("{base}/jsz")).await else {
                return false;
            };
            match jsz["meta_cluster"]["leader"].as_str() {
                Some(leader) if !leader.is_empty() => leaders.push(leader.to_owned()),
                _ => return false,
            }
        }
        leaders.windows(2).all(|w| w[0] == w[1])
    }

    /// The server name of `stream`'s leader, as a running node reports it.
    pub async fn stream_leader(&self, stream: &str) -> Option<String> {
        let http = http().ok()?;
        for node in self.nodes.iter().filter(|n| n.proc.is_some()) {
            let url = format!(
                "http://127.0.0.1:{}/jsz?accounts=true&streams=true",
                node.http_port
            );
            let Some(jsz) = get_json(&http, &url).await else {
                continue;
            };
            for account in jsz["account_details"].as_array().into_iter().flatten() {
                for s in account["stream_detail"].as_array().into_iter().flatten() {
                    if s["name"] == stream
                        && let Some(leader) = s["cluster"]["leader"].as_str()
                    {
                        return Some(leader.to_owned());
                    }
                }
            }
        }
        None
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

async fn get_json(http: &reqwest::Client, url: &str) -> Option<Value> {
    http.get(url).send().await.ok()?.json().await.ok()
}

// ---------------------------------------------------------------------------
// The Graph simulator

/// `presence-sync sim` as a process, its credentials and users.
pub struct Sim {
    pub proc: Proc,
    pub base_url: String,
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: String,
    /// (object id, UPN) of each user, in listing order.
    pub users: Vec<(String, String)>,
    http: reqwest::Client,
}

impl Sim {
    /// `sim --listen 127.0.0.1:PORT --users N --budget 0` (no throttling);
    /// waits for its banner and lists its users through Graph.
    pub async fn start(bin: &Path, dir: &Path, users: usize) -> anyhow::Result<Sim> {
        let port = free_port()?;
        let log = dir.join("sim.log");
        let stderr = std::fs::File::create(&log)?;
        let mut child = Command::new(bin)
            .args(["sim", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--users", &users.to_string(), "--budget", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("cannot start {} sim", bin.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut proc = Proc {
            name: "simulator".into(),
            child: Some(child),
            log,
        };
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        // Reads the banner and then the rest of stdout, so the pipe never
        // fills while the simulator runs.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let (mut base_url, mut tenant_id, mut client_id, mut client_secret) =
            (String::new(), String::new(), String::new(), String::new());
        let deadline = Instant::now() + Duration::from_secs(60);
        while client_secret.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("the simulator printed no credentials within 60 s");
            }
            let Ok(line) = rx.recv_timeout(left.min(Duration::from_millis(500))) else {
                proc.check_alive()?;
                continue;
            };
            let value = |key: &str| line.trim().strip_prefix(key).map(|v| v.trim().to_owned());
            if let Some(v) = value("base URL (login and Graph host):") {
                base_url = v;
            } else if let Some(v) = value("tenant id:") {
                tenant_id = v;
            } else if let Some(v) = value("client id:") {
                client_id = v;
            } else if let Some(v) = value("client secret:") {
                client_secret = v;
            }
        }
        if base_url.is_empty() || tenant_id.is_empty() || client_id.is_empty() {
            bail!("the simulator's banner lacked its URL, tenant or client id");
        }
        let mut sim = Sim {
            proc,
            base_url,
            tenant_id,
            client_id,
            client_secret,
            users: Vec::new(),
            http: http()?,
        };
        sim.users = sim.list_users(users).await?;
        Ok(sim)
    }

    async fn token(&self) -> anyhow::Result<String> {
        let body: Value = self
            .http
            .post(format!(
                "{}/{}/oauth2/v2.0/token",
                self.base_url, self.tenant_id
            ))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", self.client_id.as_str()),
                ("client_secret", self.client_secret.as_str()),
                ("scope", "https://graph.microsoft.com/.default"),
            ])
            .send()
            .await?
            .json()
            .await?;
        Ok(body["access_token"]
            .as_str()
            .context("the simulator issued no token")?
            .to_owned())
    }

    async fn list_users(&self, want: usize) -> anyhow::Result<Vec<(String, String)>> {
        let token = self.token().await?;
        let mut users = Vec::new();
        let mut next = Some(format!(
            "{}/v1.0/users?$top=999&$select=id,userPrincipalName",
            self.base_url
        ));
        for _ in 0..(want / 999 + 2) {
            let Some(url) = next.take() else { break };
            let page: Value = self
                .http
                .get(&url)
                .bearer_auth(&token)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            for user in page["value"].as_array().into_iter().flatten() {
                if let (Some(id), Some(upn)) =
                    (user["id"].as_str(), user["userPrincipalName"].as_str())
                {
                    users.push((id.to_owned(), upn.to_owned()));
                }
            }
            next = page["@odata.nextLink"].as_str().map(str::to_owned);
        }
        if users.len() < want {
            bail!("the simulator lists {} users, not {want}", users.len());
        }
        Ok(users)
    }

    /// `availability/activity` of a user as Graph shows it.
    pub async fn presence(&self, user_id: &str) -> anyhow::Result<String> {
        let token = self.token().await?;
        let body: Value = self
            .http
            .get(format!("{}/v1.0/users/{user_id}/presence", self.base_url))
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
            .get(format!("{}/_sim/stats", self.base_url))
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
        std::fs::write(dir.join("graph-secret"), &sim.client_secret)?;
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
            tenant = sim.tenant_id,
            client = sim.client_id,
            secret = quote(&dir.join("graph-secret")),
            sim = sim.base_url,
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
