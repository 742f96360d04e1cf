//! Real `nats-server` processes for the cluster tests: one node or a
//! 3-node cluster (routes between them), JetStream on, each node on free
//! loopback ports with its store in a temporary directory. Nodes can be
//! killed (SIGKILL), stopped, paused and restarted on the same ports and
//! store. Every process is killed when the harness drops.
//!
//! Needs `super::proc_kit` beside it (the cluster benchmark includes
//! both files).
//!
//! Without `nats-server` a test says why and skips, unless
//! `PRESENCE_SYNC_REQUIRE_NATS=1` (CI), which makes that a failure.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Debian's `nats-server`.
pub const NATS_SERVER: &str = "/usr/bin/nats-server";
/// Set in CI: a missing `nats-server` fails the test instead of skipping it.
pub const REQUIRE: &str = "PRESENCE_SYNC_REQUIRE_NATS";

/// The server binary (`nats-server` on the PATH or Debian's), or `None`
/// (the test skips, said why) — a failure when [`REQUIRE`] is set.
pub fn nats_server_or_skip(test: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("nats-server"))
                .find(|p| p.is_file())
        })
        .or_else(|| Some(PathBuf::from(NATS_SERVER)).filter(|p| p.is_file()));
    match found {
        Some(path) => Some(path),
        None if std::env::var(REQUIRE).is_ok_and(|v| v == "1") => {
            panic!("{test}: nats-server is missing, and {REQUIRE}=1 says it must run")
        }
        None => {
            eprintln!(
                "{test}: skipped: nats-server is missing (Debian: apt-get install nats-server)"
            );
            None
        }
    }
}

/// How clients prove themselves to the servers.
#[derive(Clone, Debug)]
pub enum ServerAuth {
    None,
    Token(String),
    User { user: String, password: String },
}

struct Node {
    name: String,
    port: u16,
    http_port: u16,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// One or three `nats-server` processes.
pub struct NatsCluster {
    binary: PathBuf,
    nodes: Vec<Node>,
    dir: tempfile::TempDir,
}

/// A free loopback port (bound then released: another process could take
/// it meanwhile, which the tests would see as a failed start).
/// `n` distinct free loopback ports: each stays bound until all are
/// chosen, so none is handed out twice (a node's monitor port once got
/// another node's).
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    listeners
        .iter()
        .map(|listener| listener.local_addr().expect("its address").port())
        .collect()
}

impl NatsCluster {
    /// One node with JetStream; `None` when `nats-server` is missing.
    pub fn single(test: &str, auth: ServerAuth) -> Option<NatsCluster> {
        let binary = nats_server_or_skip(test)?;
        Some(NatsCluster::start(binary, 1, auth, ""))
    }

    /// Three routed nodes with JetStream (R=3 possible); `None` when
    /// `nats-server` is missing.
    pub fn three(test: &str, auth: ServerAuth) -> Option<NatsCluster> {
        let binary = nats_server_or_skip(test)?;
        Some(NatsCluster::start(binary, 3, auth, ""))
    }

    /// `nodes` nodes (1, or 3 routed), started and then ready as
    /// [`NatsCluster::wait_ready`] says; `None` when `nats-server` is
    /// missing.
    pub async fn start_ready(
        test: &str,
        nodes: usize,
        auth: ServerAuth,
        patience: Duration,
    ) -> Option<NatsCluster> {
        NatsCluster::start_ready_with(test, nodes, auth, patience, "").await
    }

    /// [`NatsCluster::start_ready`] with `extra` added to every node's
    /// config (`max_payload: 16384`, say).
    pub async fn start_ready_with(
        test: &str,
        nodes: usize,
        auth: ServerAuth,
        patience: Duration,
        extra: &str,
    ) -> Option<NatsCluster> {
        let binary = nats_server_or_skip(test)?;
        let cluster = NatsCluster::start(binary, nodes, auth, extra);
        cluster.wait_ready(patience).await;
        Some(cluster)
    }

    fn start(binary: PathBuf, count: usize, auth: ServerAuth, extra: &str) -> NatsCluster {
        let dir = tempfile::tempdir().expect("a temp dir");
        let ports: Vec<(u16, u16, u16)> = free_ports(3 * count)
            .chunks(3)
            .map(|p| (p[0], p[1], p[2]))
            .collect();
        let auth_block = match &auth {
            ServerAuth::None => String::new(),
            ServerAuth::Token(token) => format!("authorization {{ token: \"{token}\" }}\n"),
            ServerAuth::User { user, password } => format!(
                "authorization {{ users: [ {{ user: \"{user}\", password: \"{password}\" }} ] }}\n"
            ),
        };
        let mut nodes = Vec::new();
        for (i, (port, cluster_port, http_port)) in ports.iter().enumerate() {
            let name = format!("n{}", i + 1);
            let store = dir.path().join(&name);
            std::fs::create_dir_all(&store).expect("the node's store dir");
            let mut text = format!(
                "server_name: {name}\nlisten: 127.0.0.1:{port}\nhttp: 127.0.0.1:{http_port}\n\
                 jetstream {{ store_dir: \"{}\", max_memory_store: 64MB, max_file_store: 2GB }}\n{auth_block}{extra}",
                store.display()
            );
            if count > 1 {
                let routes: Vec<String> = ports
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, (_, c, _))| format!("nats-route://127.0.0.1:{c}"))
                    .collect();
                text.push_str(&format!(
                    "cluster {{ name: presence_sync_test, listen: 127.0.0.1:{cluster_port}, routes: [{}] }}\n",
                    routes.join(", ")
                ));
            }
            let config = dir.path().join(format!("{name}.conf"));
            std::fs::write(&config, text).expect("write the node's config");
            nodes.push(Node {
                log: dir.path().join(format!("{name}.log")),
                name,
                port: *port,
                http_port: *http_port,
                config,
                child: None,
            });
        }
        let mut cluster = NatsCluster { binary, nodes, dir };
        for i in 0..count {
            cluster.restart(i);
        }
        cluster
    }

    /// The client URLs of every node (`nats://127.0.0.1:PORT`).
    pub fn urls(&self) -> Vec<String> {
        (0..self.nodes.len()).map(|i| self.url(i)).collect()
    }

    pub fn url(&self, node: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[node].port)
    }

    /// The node's server name (`n1`, ...).
    pub fn name(&self, node: usize) -> &str {
        &self.nodes[node].name
    }

    /// The index of the node with this server name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The node's log so far (for a failing test's message).
    pub fn log(&self, node: usize) -> String {
        std::fs::read_to_string(&self.nodes[node].log).unwrap_or_default()
    }

    /// Starts (again) a node that is not running, on its ports and store.
    pub fn restart(&mut self, node: usize) {
        let binary = self.binary.clone();
        let n = &mut self.nodes[node];
        assert!(n.child.is_none(), "{} is already running", n.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&n.log)
            .expect("open the node's log");
        let child = Command::new(binary)
            .arg("-c")
            .arg(&n.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the log"))
            .stderr(log)
            .spawn()
            .expect("start nats-server");
        n.child = Some(child);
    }

    fn signal(&self, node: usize, signal: libc::c_int) {
        if let Some(child) = &self.nodes[node].child {
            let pid = libc::pid_t::try_from(child.id()).expect("a pid");
            // SAFETY: kill(2) on a process this harness started.
            unsafe {
                libc::kill(pid, signal);
            }
        }
    }

    /// SIGKILL: the node dies at once, as in a crash.
    pub fn kill(&mut self, node: usize) {
        self.signal(node, libc::SIGCONT);
        self.signal(node, libc::SIGKILL);
        if let Some(mut child) = self.nodes[node].child.take() {
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait: a clean stop.
    pub fn stop(&mut self, node: usize) {
        self.signal(node, libc::SIGCONT);
        self.signal(node, libc::SIGTERM);
        if let Some(mut child) = self.nodes[node].child.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the node hangs with its sockets open (requests time out).
    pub fn pause(&self, node: usize) {
        self.signal(node, libc::SIGSTOP);
        if let Some(child) = &self.nodes[node].child {
            super::proc_kit::wait_stopped(child.id());
        }
    }

    /// SIGCONT after [`NatsCluster::pause`].
    pub fn resume(&self, node: usize) {
        self.signal(node, libc::SIGCONT);
    }

    pub fn is_running(&self, node: usize) -> bool {
        self.nodes[node].child.is_some()
    }

    /// Waits until every running node is healthy and JetStream has a meta
    /// leader that all of them know (and, in a cluster, the routes between
    /// running nodes are up); returns how long that took. Panics with the
    /// nodes' logs after `patience`.
    pub async fn wait_ready(&self, patience: Duration) -> Duration {
        let start = Instant::now();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("an HTTP client");
        let running: Vec<usize> = (0..self.nodes.len())
            .filter(|i| self.is_running(*i))
            .collect();
        loop {
            if self.ready(&http, &running).await {
                return start.elapsed();
            }
            if start.elapsed() > patience {
                let logs: Vec<String> = running
                    .iter()
                    .map(|i| format!("--- {} ---\n{}", self.name(*i), self.log(*i)))
                    .collect();
                panic!("NATS not ready within {patience:?}:\n{}", logs.join("\n"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn ready(&self, http: &reqwest::Client, running: &[usize]) -> bool {
        let mut leaders = Vec::new();
        for &i in running {
            let base = format!("http://127.0.0.1:{}", self.nodes[i].http_port);
            let Ok(health) = http.get(format!("{base}/healthz")).send().await else {
                return false;
            };
            if !health.status().is_success() {
                return false;
            }
            if self.nodes.len() > 1 {
                let Some(routez) = get_json(http, &format!("{base}/routez")).await else {
                    return false;
                };
                let routes = routez["num_routes"].as_u64().unwrap_or(0);
                if routes < (running.len() as u64).saturating_sub(1) {
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
        }
        leaders.windows(2).all(|w| w[0] == w[1])
    }

    /// The server name of the leader of `stream` (from the node's `/jsz`),
    /// if a node says it.
    pub async fn stream_leader(&self, stream: &str) -> Option<String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .ok()?;
        for i in (0..self.nodes.len()).filter(|i| self.is_running(*i)) {
            let url = format!(
                "http://127.0.0.1:{}/jsz?accounts=true&streams=true",
                self.nodes[i].http_port
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
}

async fn get_json(http: &reqwest::Client, url: &str) -> Option<serde_json::Value> {
    let response = http.get(url).send().await.ok()?;
    response.json().await.ok()
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                if let Ok(pid) = libc::pid_t::try_from(child.id()) {
                    // SAFETY: kill(2) on a process this harness started.
                    unsafe {
                        libc::kill(pid, libc::SIGCONT);
                    }
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
