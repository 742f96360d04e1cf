//! A simulated contact center for the demo: it registers agents with the
//! daemon's API, moves them through the statuses of the shipped default
//! mapping (calls, wrap-up, lunch, short blips the debounce swallows), and
//! does what a real CC does with `cc.status_requested`: sets the status.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::events::{Event, kind};
use crate::sim::rng::Rng;
use crate::stop::Stop;

/// How the demo talks to the daemon.
#[derive(Clone, Debug)]
pub struct ApiClient {
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
}

#[derive(Debug, thiserror::Error)]
pub enum CcError {
    #[error("API call {what} failed: {message}")]
    Api { what: String, message: String },
    #[error("event stream: {0}")]
    Stream(String),
}

impl ApiClient {
    pub fn new(base: String, token: String) -> Result<Self, CcError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| CcError::Api {
                what: "client".into(),
                message: e.to_string(),
            })?;
        Ok(ApiClient { base, token, http })
    }

    pub async fn put(&self, path: &str, body: serde_json::Value) -> Result<(), CcError> {
        self.send(reqwest::Method::PUT, path, body).await.map(drop)
    }

    /// POSTs `body`; returns the reply's JSON body.
    pub async fn post(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> Result<serde_json::Value, CcError> {
        self.send(reqwest::Method::POST, path, body).await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: serde_json::Value,
    ) -> Result<serde_json::Value, CcError> {
        let what = format!("{method} {path}");
        let response = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .map_err(|e| CcError::Api {
                what: what.clone(),
                message: e.to_string(),
            })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if status.is_success() {
            Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
        } else {
            Err(CcError::Api {
                what,
                message: format!("{status}: {text}"),
            })
        }
    }

    pub async fn get_text(&self, path: &str) -> Result<String, CcError> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| CcError::Api {
                what: format!("GET {path}"),
                message: e.to_string(),
            })?;
        response.text().await.map_err(|e| CcError::Api {
            what: format!("GET {path}"),
            message: e.to_string(),
        })
    }

    /// Follows the event stream from `since`, handing each event to `on_event`.
    pub async fn follow_events(
        &self,
        since: Option<u64>,
        mut on_event: impl FnMut(Event),
        stop: Stop,
    ) -> Result<u64, CcError> {
        let query = since.map(|s| format!("?since={s}")).unwrap_or_default();
        let url = format!(
            "{}/v1/events{query}",
            self.base.replacen("http://", "ws://", 1)
        );
        let mut request = url
            .into_client_request()
            .map_err(|e| CcError::Stream(e.to_string()))?;
        let header = format!("Bearer {}", self.token)
            .parse()
            .map_err(|_| CcError::Stream("token is not a valid header".into()))?;
        request.headers_mut().insert("authorization", header);
        let (mut socket, _) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::connect_async(request),
        )
        .await
        .map_err(|_| CcError::Stream("connect timed out".into()))?
        .map_err(|e| CcError::Stream(e.to_string()))?;
        let mut last = since.unwrap_or(0);
        loop {
            tokio::select! {
                () = stop.stopped() => {
                    let _ = socket.close(None).await;
                    return Ok(last);
                }
                message = socket.next() => match message {
                    Some(Ok(Message::Text(text))) => {
                        if let Ok(event) = serde_json::from_str::<Event>(text.as_str()) {
                            last = last.max(event.seq);
                            on_event(event);
                        }
                    }
                    Some(Ok(Message::Ping(p))) => { let _ = socket.send(Message::Pong(p)).await; }
                    Some(Ok(Message::Close(_))) | None => return Ok(last),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(CcError::Stream(e.to_string())),
                }
            }
        }
    }
}

/// What an agent does between contacts in the simulated CC. Contacts
/// themselves (and their wrap-up) come from routing: see [`super::contacts`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Activity {
    Available,
    Lunch,
    Break,
    /// A status held for a few seconds only: the debounce keeps it out of Teams.
    Blip,
}

impl Activity {
    fn status(self) -> &'static str {
        match self {
            Activity::Available => "Available",
            Activity::Lunch | Activity::Blip => "Lunch",
            Activity::Break => "Break",
        }
    }
}

struct DemoAgent {
    id: String,
    activity: Activity,
    next_at: Instant,
}

pub(super) fn secs(rng: &mut Rng, low: u64, high: u64) -> Duration {
    Duration::from_secs(low + rng.below(high.saturating_sub(low).max(1)))
}

/// The demo's id for the `index`th simulated user's agent.
pub fn agent_id(index: usize) -> String {
    format!("agent-{:03}", index + 1)
}

/// The example queues an agent serves: every agent takes support, every
/// other one sales too, so both queues have agents and some agents have two.
fn queues_of(index: usize) -> serde_json::Value {
    if index.is_multiple_of(2) {
        serde_json::json!([{"queue": "sales"}, {"queue": "support"}])
    } else {
        serde_json::json!([{"queue": "support"}])
    }
}

/// Registers one agent per `(id, upn)` and runs them until stopped: breaks,
/// lunch and short blips between contacts. An agent on a contact or in its
/// wrap-up (`busy`) is left to routing.
pub async fn run(
    api: ApiClient,
    users: Vec<(String, String)>,
    seed: u64,
    busy: Busy,
    stop: Stop,
) -> Result<(), CcError> {
    let mut rng = Rng::new(seed);
    let mut agents = Vec::new();
    for (i, (_, upn)) in users.iter().enumerate() {
        let id = agent_id(i);
        api.put(
            &format!("/v1/agents/{id}"),
            serde_json::json!({
                "teams_user": upn,
                "auto_link": true,
                "skills": {"support": 50 + (i % 5) as u8 * 10},
                "queues": queues_of(i),
            }),
        )
        .await?;
        api.put(
            &format!("/v1/agents/{id}/status"),
            serde_json::json!({"status": "Available"}),
        )
        .await?;
        let first = secs(&mut rng, 20, 90);
        agents.push(DemoAgent {
            id,
            activity: Activity::Available,
            next_at: Instant::now() + first,
        });
    }
    loop {
        let next = agents
            .iter()
            .map(|a| a.next_at)
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(60));
        tokio::select! {
            () = stop.stopped() => return Ok(()),
            () = tokio::time::sleep_until(next) => {}
        }
        let now = Instant::now();
        for agent in agents.iter_mut().filter(|a| a.next_at <= now) {
            if busy.contains(&agent.id) {
                // On a contact: look again once it is likely over.
                agent.next_at = now + secs(&mut rng, 20, 60);
                continue;
            }
            let (activity, hold) = match agent.activity {
                Activity::Available => {
                    let roll = rng.below(100);
                    if roll < 25 {
                        (Activity::Blip, secs(&mut rng, 3, 8))
                    } else if roll < 40 {
                        (Activity::Break, secs(&mut rng, 30, 60))
                    } else if roll < 50 {
                        (Activity::Lunch, secs(&mut rng, 60, 120))
                    } else {
                        // Stays available a while longer: free for contacts,
                        // and for Teams meetings to pull into `Meeting`.
                        (Activity::Available, secs(&mut rng, 30, 90))
                    }
                }
                _ => (Activity::Available, secs(&mut rng, 60, 180)),
            };
            agent.activity = activity;
            agent.next_at = now + hold;
            let result = api
                .put(
                    &format!("/v1/agents/{}/status", agent.id),
                    serde_json::json!({"status": activity.status()}),
                )
                .await;
            if let Err(e) = result {
                tracing::warn!(agent = %agent.id, error = %e, "demo CC could not report a status");
            }
        }
    }
}

/// The agents on a contact or in its wrap-up, shared by the activity loop
/// and the contacts.
#[derive(Clone, Debug, Default)]
pub struct Busy(std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>);

impl Busy {
    pub fn contains(&self, agent: &str) -> bool {
        self.0.lock().is_ok_and(|set| set.contains(agent))
    }

    pub fn set(&self, agent: &str, busy: bool) {
        if let Ok(mut set) = self.0.lock() {
            if busy {
                set.insert(agent.to_string());
            } else {
                set.remove(agent);
            }
        }
    }
}

/// Does what the CC is asked: sets each requested status, a moment later.
pub async fn answer_requests(
    api: ApiClient,
    mut on_event: impl FnMut(&Event) + Send,
    stop: Stop,
) -> Result<(), CcError> {
    // Requests from earlier runs of the demo are history: start from now.
    let mut since: Option<u64> = None;
    let (requests_tx, mut requests_rx) = tokio::sync::mpsc::unbounded_channel::<(String, String)>();
    let answering = {
        let api = api.clone();
        tokio::spawn(async move {
            while let Some((agent, status)) = requests_rx.recv().await {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let _ = api
                    .put(
                        &format!("/v1/agents/{agent}/status"),
                        serde_json::json!({"status": status}),
                    )
                    .await;
            }
        })
    };
    loop {
        let result = api
            .follow_events(
                since,
                |event| {
                    if event.kind == kind::CC_STATUS_REQUESTED
                        && let (Some(agent), Some(status)) = (
                            event.agent_id.clone(),
                            event.data.get("status").and_then(|s| s.as_str()),
                        )
                    {
                        let _ = requests_tx.send((agent, status.to_string()));
                    }
                    since = Some(since.unwrap_or(0).max(event.seq));
                    on_event(&event);
                },
                stop.clone(),
            )
            .await;
        if stop.is_stopped() {
            break;
        }
        if let Err(e) = result {
            tracing::warn!(error = %e, "demo CC lost the event stream; reconnecting");
        }
        tokio::select! {
            () = stop.stopped() => break,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    answering.abort();
    Ok(())
}
