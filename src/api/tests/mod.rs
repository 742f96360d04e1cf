//! The API against an in-memory [`Service`], over real loopback sockets.

mod board;
mod http;
mod props;
mod routes;
pub(crate) mod schema;
mod ws;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::model::{
    AgentOut, AgentUpsert, CcOut, ErrorBody, Readiness, StatusReport, SyncOut, TeamsOut,
};
use super::{ApiError, ApiSettings, Service, Shutdown, router, serve};
use crate::config::Secret;
use crate::events::{Event, NewEvent, kind};

pub(super) const TOKEN: &str = "test-token-7f3a";
/// The read-only viewer token of these tests.
pub(super) const VIEWER: &str = "viewer-token-91c2";
/// Statuses the fake knows; others are a 422.
pub(super) const STATUSES: &[&str] = &["Available", "Busy", "Lunch", "After-call work"];
/// Long enough for a loaded CI machine; waits poll and end early.
pub(super) const DEADLINE: Duration = Duration::from_secs(30);

fn time() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default()
}

/// A [`Service`] over maps and a vector, with a broadcast channel as small
/// as a test needs to make subscribers lag.
pub(super) struct Fake {
    agents: Mutex<BTreeMap<String, AgentOut>>,
    log: Mutex<Log>,
    live: broadcast::Sender<Event>,
    ready: AtomicBool,
    /// How often the event log was read, to see a lagging stream fall back to it.
    pub events_after_calls: AtomicUsize,
    /// Delays reads of the log, in milliseconds, so events committed
    /// meanwhile reach a stream both from the log and from its subscription.
    pub log_read_delay_ms: AtomicU64,
}

#[derive(Default)]
struct Log {
    events: Vec<Event>,
    last_seq: u64,
}

impl Fake {
    /// Every agent the fake holds, in id order.
    pub fn all_agents(&self) -> Vec<AgentOut> {
        self.agents.lock().unwrap().values().cloned().collect()
    }

    pub fn new(live_capacity: usize) -> Arc<Self> {
        Arc::new(Fake {
            agents: Mutex::new(BTreeMap::new()),
            log: Mutex::new(Log::default()),
            live: broadcast::channel(live_capacity).0,
            ready: AtomicBool::new(true),
            events_after_calls: AtomicUsize::new(0),
            log_read_delay_ms: AtomicU64::new(0),
        })
    }

    /// Commits an event: appended and published under one lock, so
    /// subscribers see the log's order.
    pub fn emit(&self, kind: &str, agent_id: Option<&str>, data: Value) -> Event {
        let mut log = self.log.lock().unwrap();
        log.last_seq += 1;
        let event = Event::committed(
            "fake",
            log.last_seq,
            NewEvent {
                kind: kind.to_string(),
                time: time(),
                agent_id: agent_id.map(str::to_string),
                data,
            },
        );
        log.events.push(event.clone());
        let _ = self.live.send(event.clone());
        event
    }

    pub fn emit_many(&self, n: usize) {
        for i in 0..n {
            self.emit(kind::MAPPINGS_RELOADED, None, json!({ "n": i }));
        }
    }

    /// Retention: drops every event with `seq <= through`.
    pub fn prune_through(&self, through: u64) {
        self.log.lock().unwrap().events.retain(|e| e.seq > through);
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    fn view(id: &str, body: &AgentUpsert) -> AgentOut {
        AgentOut {
            id: id.to_string(),
            teams_user: body.teams_user.clone(),
            teams_user_id: None,
            upn: None,
            display_name: body.display_name.clone(),
            groups: body.groups.clone().unwrap_or_default(),
            skills: body.skills.clone().unwrap_or_default(),
            phone: body.phone.clone(),
            profile: body.profile.clone().unwrap_or_else(|| "default".into()),
            linked: false,
            link_conflict: None,
            cc: CcOut {
                status: None,
                in_profile: true,
                set_by: None,
                since: None,
                routable: false,
                pending_until: None,
                requested: None,
            },
            teams: TeamsOut {
                presence: None,
                set_by: None,
                since: None,
                blocking: false,
                pending_until: None,
                target: None,
                written: None,
            },
            routable: false,
            not_routable_because: vec!["not linked".into()],
            sync: SyncOut {
                debouncing_until: None,
                suspended: None,
                teams_override_since: None,
                teams_outranked_since: None,
                write_in_flight: false,
                last_error: None,
                restore: None,
                last_decision: None,
                writes_held: None,
            },
            routing: crate::api::model::RoutingOut::default(),
        }
    }
}

/// Routing lives in the daemon: the fake knows no queues or contacts, so
/// the routes answer its 404s in the error shape.
impl Service for Fake {
    async fn resume_agent(&self, id: String) -> Result<AgentOut, ApiError> {
        self.agent(id).await
    }

    async fn queues(&self) -> Result<Vec<crate::api::model::QueueOut>, ApiError> {
        Ok(Vec::new())
    }

    async fn queue(&self, name: String) -> Result<crate::api::model::QueueOut, ApiError> {
        Err(ApiError::not_found("queue", &name))
    }

    async fn directory(
        &self,
        _query: crate::directory::DirectoryQuery,
    ) -> Result<crate::api::model::DirectoryList, ApiError> {
        Ok(crate::api::model::DirectoryList {
            users: Vec::new(),
            next_cursor: None,
            total: 0,
        })
    }

    async fn directory_user(
        &self,
        id: String,
    ) -> Result<crate::api::model::DirectoryUserOut, ApiError> {
        Err(ApiError::not_found("Teams user", &id))
    }

    async fn add_contact(
        &self,
        body: crate::api::model::ContactIn,
    ) -> Result<crate::api::model::ContactOut, ApiError> {
        Err(ApiError::unprocessable(
            "queue",
            "unknown_queue",
            format!("no queue `{}`", body.queue),
        ))
    }

    async fn contact(&self, id: String) -> Result<crate::api::model::ContactOut, ApiError> {
        Err(ApiError::not_found("contact", &id))
    }

    async fn contact_action(
        &self,
        id: String,
        _action: crate::api::model::ContactAction,
        _body: crate::api::model::ContactActionIn,
    ) -> Result<crate::api::model::ContactOut, ApiError> {
        Err(ApiError::not_found("contact", &id))
    }

    async fn put_agent(&self, id: String, body: AgentUpsert) -> Result<AgentOut, ApiError> {
        if body.teams_user.trim().is_empty() {
            return Err(ApiError::unprocessable(
                "teams_user",
                "unknown_teams_user",
                "no such Teams user",
            ));
        }
        if let Some((skill, _)) = body
            .skills
            .iter()
            .flatten()
            .find(|(_, level)| **level > 100)
        {
            return Err(ApiError::unprocessable(
                &format!("skills.{skill}"),
                "invalid_level",
                "skill levels are 0 to 100",
            ));
        }
        let view = Fake::view(&id, &body);
        self.agents.lock().unwrap().insert(id.clone(), view.clone());
        self.emit(kind::AGENT_UPDATED, Some(&id), json!({}));
        Ok(view)
    }

    async fn delete_agent(&self, id: String) -> Result<(), ApiError> {
        if self.agents.lock().unwrap().remove(&id).is_none() {
            return Err(ApiError::not_found("agent", &id));
        }
        self.emit(kind::AGENT_DELETED, Some(&id), json!({}));
        Ok(())
    }

    async fn put_status(&self, id: String, body: StatusReport) -> Result<AgentOut, ApiError> {
        if !STATUSES.contains(&body.status.as_str()) {
            return Err(ApiError::unprocessable(
                "status",
                "unknown_status",
                format!("`{}` is not a status of the agent's profile", body.status),
            ));
        }
        let view = {
            let mut agents = self.agents.lock().unwrap();
            let agent = agents
                .get_mut(&id)
                .ok_or_else(|| ApiError::not_found("agent", &id))?;
            agent.cc.status = Some(body.status.clone());
            agent.cc.since = Some(body.at.unwrap_or_else(time));
            agent.clone()
        };
        self.emit(
            kind::CC_STATUS_REPORTED,
            Some(&id),
            json!({ "status": body.status }),
        );
        Ok(view)
    }

    async fn agents_page(
        &self,
        query: super::model::AgentQuery,
    ) -> Result<(Vec<AgentOut>, super::model::PageOut), ApiError> {
        let agents = self.agents.lock().unwrap();
        let needle = query.search.unwrap_or_default();
        let matching: Vec<&AgentOut> = agents
            .values()
            .filter(|a| {
                a.id.to_lowercase().contains(&needle)
                    || a.display_name
                        .as_deref()
                        .is_some_and(|n| n.to_lowercase().contains(&needle))
            })
            .collect();
        let total = matching.len();
        let rest: Vec<AgentOut> = matching
            .into_iter()
            .filter(|a| query.cursor.as_ref().is_none_or(|c| a.id > *c))
            .cloned()
            .collect();
        let next_cursor = (rest.len() > query.limit).then(|| rest[query.limit - 1].id.clone());
        let page = rest.into_iter().take(query.limit).collect();
        Ok((page, super::model::PageOut { next_cursor, total }))
    }

    async fn agents_by_id(&self, ids: Vec<String>) -> Result<Vec<AgentOut>, ApiError> {
        let agents = self.agents.lock().unwrap();
        Ok(ids
            .iter()
            .filter_map(|id| agents.get(id).cloned())
            .collect())
    }

    async fn agent(&self, id: String) -> Result<AgentOut, ApiError> {
        self.agents
            .lock()
            .unwrap()
            .get(&id)
            .cloned()
            .ok_or_else(|| ApiError::not_found("agent", &id))
    }

    async fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Event>, ApiError> {
        self.events_after_calls.fetch_add(1, Ordering::SeqCst);
        let delay = self.log_read_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let log = self.log.lock().unwrap();
        Ok(log
            .events
            .iter()
            .filter(|e| e.seq > after)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn first_seq(&self) -> Result<Option<u64>, ApiError> {
        Ok(self.log.lock().unwrap().events.first().map(|e| e.seq))
    }

    async fn last_seq(&self) -> Result<u64, ApiError> {
        Ok(self.log.lock().unwrap().last_seq)
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.live.subscribe()
    }

    async fn readiness(&self) -> Readiness {
        let ready = self.ready.load(Ordering::SeqCst);
        Readiness {
            ready,
            checks: vec![super::model::Check {
                name: "store".into(),
                ok: ready,
                detail: if ready { "open" } else { "not open" }.into(),
            }],
            tasks: vec![],
            poll: None,
            directory_poll: None,
            permissions: None,
            subscriptions: None,
            cluster: None,
        }
    }

    async fn health(&self) -> super::model::Health {
        let r = self.readiness().await;
        super::model::Health {
            ready: r.ready,
            checks: r.checks,
            tasks: r.tasks,
            graph: super::model::GraphAppOut {
                tenant_id: "tenant".into(),
                client_id: "client".into(),
                auth: "client_secret".into(),
                login_base: "https://login.example".into(),
                graph_base: "https://graph.example".into(),
            },
            poll: r.poll,
            directory_poll: r.directory_poll,
            stats: None,
            permissions: r.permissions,
            subscriptions: r.subscriptions,
            cluster: r.cluster,
        }
    }

    async fn metrics(&self) -> String {
        // No trailing newline: the API must still start its own lines on a new one.
        "# HELP presence_sync_fake_up The fake is up.\n# TYPE presence_sync_fake_up gauge\npresence_sync_fake_up 1"
            .to_string()
    }
}

/// The API served on a loopback port.
pub(super) struct Api {
    pub addr: SocketAddr,
    pub fake: Arc<Fake>,
    pub shutdown: Shutdown,
    pub client: reqwest::Client,
    pub server: tokio::task::JoinHandle<std::io::Result<()>>,
}

pub(super) async fn start(fake: Arc<Fake>, max_body_bytes: usize) -> Api {
    start_gated(fake, max_body_bytes, None).await
}

/// [`start`] as a cluster's active node, behind `gate`.
pub(super) async fn start_gated(
    fake: Arc<Fake>,
    max_body_bytes: usize,
    gate: Option<Arc<crate::cluster::gate::Gate>>,
) -> Api {
    let shutdown = Shutdown::new();
    let settings = ApiSettings {
        token: Secret::new(TOKEN),
        viewer_token: Some(Secret::new(VIEWER)),
        max_body_bytes,
        shutdown: shutdown.clone(),
        gate,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(fake.clone(), settings);
    let server = tokio::spawn(serve(listener, app, shutdown.stop()));
    let client = reqwest::Client::builder()
        .timeout(DEADLINE)
        .build()
        .unwrap();
    Api {
        addr,
        fake,
        shutdown,
        client,
        server,
    }
}

impl Api {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A request with the right token.
    pub fn authed(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(TOKEN)
    }

    pub async fn put_json(&self, path: &str, body: &str) -> reqwest::Response {
        self.authed(reqwest::Method::PUT, path)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.authed(reqwest::Method::GET, path)
            .send()
            .await
            .unwrap()
    }

    pub async fn create_agent(&self, id: &str) {
        let response = self
            .put_json(
                &format!("/v1/agents/{id}"),
                r#"{"teams_user":"a@contoso.example"}"#,
            )
            .await;
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
    }

    pub async fn metrics_text(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// Reads an error response: its status and body, checking the shape.
pub(super) async fn error_of(response: reqwest::Response) -> (u16, ErrorBody) {
    let status = response.status().as_u16();
    assert!(status >= 400, "expected an error, got {status}");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        content_type.starts_with("application/json"),
        "{status}: content type {content_type:?}"
    );
    let text = response.text().await.unwrap();
    let body: ErrorBody = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{status}: not the error shape ({e}): {text}"));
    assert!(
        !body.error.code.is_empty() && !body.error.message.is_empty(),
        "{text}"
    );
    (status, body)
}

/// What a WebSocket test client received.
#[derive(Debug, PartialEq)]
pub(super) enum Incoming {
    Text(String),
    Pong(Vec<u8>),
    Close(Option<u16>),
    /// The connection ended.
    Ended,
}

enum Command {
    Ping(Vec<u8>),
    /// Disconnect without a close frame, as a crashing client would.
    Vanish,
}

/// A WebSocket client on its own thread: tungstenite's blocking client, as
/// the crate has no futures `Stream` trait in scope to drive the async one.
pub(super) struct WsClient {
    incoming: mpsc::UnboundedReceiver<Incoming>,
    commands: std::sync::mpsc::Sender<Command>,
}

impl WsClient {
    /// Connects to `/v1/events` with the query `query` (like `?since=3`).
    pub async fn connect(addr: SocketAddr, query: &str) -> WsClient {
        let url = format!("ws://{addr}/v1/events{query}");
        let (incoming_tx, incoming) = mpsc::unbounded_channel();
        let (commands, commands_rx) = std::sync::mpsc::channel();
        let (connected_tx, connected) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let socket = match open_socket(&url, addr) {
                Ok(socket) => {
                    let _ = connected_tx.send(Ok(()));
                    socket
                }
                Err(error) => {
                    let _ = connected_tx.send(Err(error));
                    return;
                }
            };
            pump(socket, &incoming_tx, &commands_rx);
        });
        tokio::time::timeout(DEADLINE, connected)
            .await
            .expect("connecting timed out")
            .expect("the client thread ended")
            .expect("the WebSocket handshake failed");
        WsClient { incoming, commands }
    }

    pub async fn next(&mut self) -> Incoming {
        match tokio::time::timeout(DEADLINE, self.incoming.recv()).await {
            Ok(Some(incoming)) => incoming,
            Ok(None) => Incoming::Ended,
            Err(_) => panic!("nothing arrived on the event stream in {DEADLINE:?}"),
        }
    }

    /// The next text frame, as JSON.
    pub async fn next_json(&mut self) -> Value {
        match self.next().await {
            Incoming::Text(text) => serde_json::from_str(&text).unwrap(),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// Event seqs up to and including `last`.
    pub async fn seqs_through(&mut self, last: u64) -> Vec<u64> {
        let mut seqs = Vec::new();
        while seqs.last().is_none_or(|seq| *seq < last) {
            let frame = self.next_json().await;
            seqs.push(
                frame["seq"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("not an event: {frame}")),
            );
        }
        seqs
    }

    /// Pings and waits for the pong. Also proves the stream has finished
    /// setting up: the server reads client frames only from then on.
    pub async fn round_trip(&mut self) {
        self.commands.send(Command::Ping(b"sync".to_vec())).unwrap();
        match self.next().await {
            Incoming::Pong(payload) => assert_eq!(payload, b"sync"),
            other => panic!("expected the pong, got {other:?}"),
        }
    }

    pub fn vanish(self) {
        let _ = self.commands.send(Command::Vanish);
    }
}

type BlockingSocket = tungstenite::WebSocket<std::net::TcpStream>;

fn open_socket(url: &str, addr: SocketAddr) -> Result<BlockingSocket, String> {
    let mut request = url.into_client_request().map_err(|e| e.to_string())?;
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {TOKEN}").parse().map_err(|_| "header")?,
    );
    let stream = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(DEADLINE))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(DEADLINE))
        .map_err(|e| e.to_string())?;
    let (socket, _) = tungstenite::client::client(request, stream).map_err(|e| e.to_string())?;
    // From now on reads return often, so commands are seen.
    socket
        .get_ref()
        .set_read_timeout(Some(Duration::from_millis(20)))
        .map_err(|e| e.to_string())?;
    Ok(socket)
}

fn pump(
    mut socket: BlockingSocket,
    incoming: &mpsc::UnboundedSender<Incoming>,
    commands: &std::sync::mpsc::Receiver<Command>,
) {
    use tungstenite::Message;
    loop {
        match commands.try_recv() {
            Ok(Command::Ping(payload)) => {
                let _ = socket.send(Message::Ping(payload.into()));
            }
            Ok(Command::Vanish) | Err(std::sync::mpsc::TryRecvError::Disconnected) => return,
            Err(std::sync::mpsc::TryRecvError::Empty) => {}
        }
        let received = match socket.read() {
            Ok(Message::Text(text)) => Incoming::Text(text.to_string()),
            Ok(Message::Pong(payload)) => Incoming::Pong(payload.to_vec()),
            Ok(Message::Close(frame)) => Incoming::Close(frame.map(|f| u16::from(f.code))),
            Ok(_) => continue,
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(_) => {
                let _ = incoming.send(Incoming::Ended);
                return;
            }
        };
        if incoming.send(received).is_err() {
            return;
        }
    }
}
