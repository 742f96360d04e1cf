//! The real daemon in-process against the embedded Graph simulator, on free
//! loopback ports, with a temp state dir and a short debounce.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use presence_sync::config::{Config, Environment};
use presence_sync::daemon::{Daemon, DaemonOptions, Exit};
use presence_sync::events::Event;
use presence_sync::sim::{self, SimHandle, SimOptions};
use reqwest::{Client, Response};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Long enough for a loaded CI machine; tests poll, they never time things.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The mapping of these tests: the shipped default's shape with a 2 s
/// debounce, and Lunch written as `Away/Away` so that tests see two kinds of
/// writes (the simulator's users have no Teams client session of their own
/// unless a test gives them one, so nothing outranks it there).
pub const MAPPING: &str = r#"
description = "test profile"
direction = "both"
debounce = "2s"
prefer = "cc"
write_mode = "session"
default_teams = "clear"

[statuses]
Available = { routable = true, teams = "clear" }
"On contact" = { teams = "Busy/InACall" }
Meeting = { teams = "clear" }
Lunch = { teams = "Away/Away" }
Offline = {}

[[teams_to_cc]]
name = "meeting"
when = ["Busy/InAMeeting"]
set = "Meeting"
replaces = ["Available"]
restore = true

[routing]
blocking = ["Busy/InAMeeting", "DoNotDisturb/*"]
"#;

/// The read-only viewer token of the daemons these tests start.
pub const VIEWER_TOKEN: &str = "test-viewer-token-9876543210";

pub struct DaemonKit {
    pub sim: SimHandle,
    pub daemon: Option<Daemon>,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub base: String,
    pub token: String,
    pub http: Client,
    pub options: DaemonOptions,
}

pub fn options() -> DaemonOptions {
    DaemonOptions {
        directory_interval: Duration::from_millis(300),
        mapping_check_interval: Duration::from_millis(200),
        stop_grace: Duration::from_secs(10),
        ..DaemonOptions::default()
    }
}

/// Writes the config, secrets and mapping for a daemon against `sim`.
pub fn write_config(dir: &Path, sim: &SimHandle, sync: &str) -> PathBuf {
    write_config_with(dir, sim, sync, "")
}

/// [`write_config`] with more `[graph]` keys (`graph`: TOML lines).
pub fn write_config_with(dir: &Path, sim: &SimHandle, sync: &str, graph: &str) -> PathBuf {
    std::fs::write(dir.join("graph-secret"), &sim.client_secret).unwrap();
    std::fs::write(dir.join("api-token"), "test-token-0123456789").unwrap();
    std::fs::write(dir.join("viewer-token"), VIEWER_TOKEN).unwrap();
    if !dir.join("mapping.toml").exists() {
        std::fs::write(dir.join("mapping.toml"), MAPPING).unwrap();
    }
    let config = format!(
        r#"
[graph]
tenant_id = "{tenant}"
client_id = "{client}"
client_secret_file = "{dir}/graph-secret"
login_base = "{base}"
graph_base = "{base}"
request_timeout = "5s"
poll_round_min = "200ms"
{graph}

[api]
listen = "127.0.0.1:0"
token_file = "{dir}/api-token"
viewer_token_file = "{dir}/viewer-token"

[store]
state_dir = "{dir}/state"

[sync]
{sync}

[mappings]
default_profile = "default"

[mappings.profiles.default]
file = "{dir}/mapping.toml"
"#,
        tenant = sim.tenant_id,
        client = sim.client_id,
        base = sim.base_url,
        dir = dir.display(),
        graph = graph,
    );
    let path = dir.join("presence-sync.toml");
    std::fs::write(&path, config).unwrap();
    path
}

pub fn sim_options(users: usize) -> SimOptions {
    SimOptions {
        users,
        budget: None,
        ..SimOptions::default()
    }
}

impl DaemonKit {
    pub async fn start(users: usize) -> DaemonKit {
        Self::start_with(users, "echo_window = \"10s\"").await
    }

    pub async fn start_with(users: usize, sync: &str) -> DaemonKit {
        Self::start_opts(users, sync, options()).await
    }

    pub async fn start_opts(users: usize, sync: &str, options: DaemonOptions) -> DaemonKit {
        Self::start_sim(sim_options(users), sync, options).await
    }

    /// With the simulator started from `sim_options` (granted roles, ...).
    pub async fn start_sim(
        sim_options: SimOptions,
        sync: &str,
        options: DaemonOptions,
    ) -> DaemonKit {
        Self::start_custom(sim_options, |_, _| String::new(), sync, options).await
    }

    /// With `graph(dir, sim)` giving more `[graph]` keys (a proxy, a CA
    /// file written into `dir`).
    pub async fn start_custom(
        sim_options: SimOptions,
        graph: impl FnOnce(&Path, &SimHandle) -> String,
        sync: &str,
        options: DaemonOptions,
    ) -> DaemonKit {
        let sim = sim::spawn(sim_options).await.expect("simulator starts");
        let dir = tempfile::tempdir().unwrap();
        let extra = graph(dir.path(), &sim);
        let config_path = write_config_with(dir.path(), &sim, sync, &extra);
        let http = Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        let mut kit = DaemonKit {
            sim,
            daemon: None,
            dir,
            config_path,
            base: String::new(),
            token: "test-token-0123456789".into(),
            http,
            options,
        };
        kit.boot().await;
        kit
    }

    pub async fn boot(&mut self) {
        let config = Config::load_with(&self.config_path, &Environment::default())
            .unwrap_or_else(|e| panic!("config: {e}"));
        let daemon = Daemon::start(config, self.options.clone())
            .await
            .unwrap_or_else(|e| panic!("daemon starts: {e}"));
        self.base = format!("http://{}", daemon.api_addr);
        self.daemon = Some(daemon);
    }

    /// Stops the daemon cleanly and starts it again on the same state.
    pub async fn restart(&mut self) {
        let daemon = self.daemon.take().expect("running");
        assert_eq!(daemon.shutdown().await, Exit::Stopped);
        self.boot().await;
    }

    pub async fn stop(mut self) {
        if let Some(daemon) = self.daemon.take() {
            assert_eq!(daemon.shutdown().await, Exit::Stopped);
        }
        self.sim.shutdown().await.expect("simulator stops");
    }

    pub fn user(&self, n: usize) -> (String, String) {
        self.sim.users()[n].clone()
    }

    pub async fn put(&self, path: &str, body: Value) -> Response {
        self.http
            .put(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("PUT")
    }

    /// Sets the simulator's Graph faults (`POST /_sim/faults`).
    #[allow(dead_code)]
    pub async fn faults(&self, body: Value) {
        let r = self
            .http
            .post(format!("{}/_sim/faults", self.sim.base_url))
            .json(&body)
            .send()
            .await
            .expect("POST /_sim/faults");
        assert!(r.status().is_success(), "{:?}", r.text().await);
    }

    /// The sum of the daemon's `/metrics` samples of `name` with `labels`.
    #[allow(dead_code)]
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = self.get("/metrics").await.text().await.expect("metrics");
        let samples = presence_sync::metrics::parse_text(&text).expect("metrics text");
        samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                presence_sync::metrics::find(std::slice::from_ref(*s), name, labels).is_some()
            })
            .map(|s| s.value)
            .sum()
    }

    pub async fn get(&self, path: &str) -> Response {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("GET")
    }

    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("POST")
    }

    pub async fn agent(&self, id: &str) -> Value {
        self.get(&format!("/v1/agents/{id}"))
            .await
            .json()
            .await
            .expect("agent JSON")
    }

    pub async fn link(&self, id: &str, user: usize) {
        let (_, upn) = self.user(user);
        let r = self
            .put(
                &format!("/v1/agents/{id}"),
                json!({"teams_user": upn, "auto_link": true}),
            )
            .await;
        assert!(r.status().is_success(), "{:?}", r.text().await);
        until(|| async { self.agent(id).await["linked"] == json!(true) }).await;
    }

    /// Links agent `id` to user `user`, PUTs it again with `settings`
    /// (queues, skills, ... besides its Teams user), makes it Available and
    /// waits until routing finds it eligible.
    pub async fn routable(&self, id: &str, user: usize, settings: Value) {
        self.link(id, user).await;
        let (_, upn) = self.user(user);
        let mut body = settings;
        body["teams_user"] = json!(upn);
        let r = self.put(&format!("/v1/agents/{id}"), body).await;
        let status = r.status().as_u16();
        assert_eq!(status, 200, "{:?}", r.text().await);
        assert_eq!(self.status(id, "Available").await.status(), 200);
        until(|| async { self.agent(id).await["routing"]["eligible"] == json!(true) }).await;
    }

    pub async fn status(&self, id: &str, status: &str) -> Response {
        self.put(
            &format!("/v1/agents/{id}/status"),
            json!({"status": status}),
        )
        .await
    }

    /// What Teams shows for a user, read from the simulator through Graph
    /// with a fresh token (fault tests expire tokens under our feet).
    pub async fn teams(&self, user_id: &str) -> String {
        let token = graph_token(&self.http, &self.sim).await;
        let body: Value = self
            .http
            .get(format!(
                "{}/v1.0/users/{user_id}/presence",
                self.sim.base_url
            ))
            .bearer_auth(&token)
            .send()
            .await
            .expect("presence")
            .json()
            .await
            .unwrap_or_default();
        format!(
            "{}/{}",
            body["availability"].as_str().unwrap_or("?"),
            body["activity"].as_str().unwrap_or("?")
        )
    }

    /// The user's own Teams client shows this (e.g. a meeting starts).
    pub async fn user_shows(&self, user_id: &str, availability: &str, activity: &str) {
        let r = self
            .http
            .post(format!(
                "{}/_sim/users/{user_id}/presence",
                self.sim.base_url
            ))
            .json(&json!({"availability": availability, "activity": activity}))
            .send()
            .await
            .expect("sim control");
        assert!(r.status().is_success());
    }

    pub async fn events(&self, since: u64) -> EventStream {
        let url = format!(
            "{}/v1/events?since={since}",
            self.base.replacen("http", "ws", 1)
        );
        let mut request = url.into_client_request().unwrap();
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {}", self.token).parse().unwrap(),
        );
        let (socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("WebSocket connects");
        EventStream { socket }
    }
}

pub async fn graph_token(http: &Client, sim: &SimHandle) -> String {
    let body: Value = http
        .post(sim.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", sim.client_id.as_str()),
            ("client_secret", sim.client_secret.as_str()),
            ("scope", &format!("{}/.default", sim.base_url)),
        ])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("token JSON");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
}

pub struct EventStream {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl EventStream {
    /// The next event, or `None` when the stream ends or PATIENCE passes.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            let message = tokio::time::timeout(PATIENCE, self.socket.next())
                .await
                .ok()??;
            match message.ok()? {
                Message::Text(text) => {
                    if let Ok(event) = serde_json::from_str::<Event>(text.as_str()) {
                        return Some(event);
                    }
                }
                Message::Close(_) => return None,
                _ => {}
            }
        }
    }

    /// Events until one matches; all of them, the match last.
    pub async fn until(&mut self, what: impl Fn(&Event) -> bool) -> Vec<Event> {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + 2 * PATIENCE;
        while tokio::time::Instant::now() < deadline
            && let Some(event) = self.next().await
        {
            let done = what(&event);
            seen.push(event);
            if done {
                return seen;
            }
        }
        panic!("the event did not come; saw {seen:#?}");
    }
}

/// Polls `check` until it holds, for at most PATIENCE.
pub async fn until<F, Fut>(check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
