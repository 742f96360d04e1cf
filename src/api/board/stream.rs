//! `GET /v1/board/stream`: the status board's live updates as server-sent
//! events, coalesced so that a busy tenant does not flood a browser.
//!
//! The stream listens to the same committed events as `GET /v1/events` and
//! notes which agents they name. At most every [`FLUSH_EVERY`] it sends one
//! `update` ([`BoardUpdate`]): those agents as they are now (read in one
//! call), the queues when they differ from what it sent last, and the health
//! report when that differs (looked at every [`HEALTH_EVERY`]). More than
//! [`MAX_AGENTS`] changed agents, or a subscription that fell behind, is
//! sent as `resync` instead: the page reads its page of agents again.
//!
//! A browser cannot put a header on an `EventSource` or a WebSocket, so the
//! page reads this with `fetch()` and the bearer header; the format is plain
//! SSE all the same. The stream ends when the API's [`Shutdown`] triggers,
//! so the server's graceful stop is not held up by it.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::{broadcast, mpsc};
use tokio::time::{Instant, MissedTickBehavior, interval, timeout};

use super::super::model::{BoardUpdate, Health, QueueOut};
use super::super::service::Service;
use super::super::shutdown::Shutdown;

/// At most one update this often.
pub const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// The health report (and the queues' waiting times) are looked at this often.
pub const HEALTH_EVERY: Duration = Duration::from_secs(2);
/// A comment line this long after the last thing sent keeps proxies and
/// the browser from taking a quiet stream for a dead one.
pub const KEEPALIVE_EVERY: Duration = Duration::from_secs(15);
/// More changed agents than this in one update are sent as `resync`.
pub const MAX_AGENTS: usize = 200;
/// A browser that does not take an update within this long is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// The streaming response; the work runs in its own task and stops when
/// the client goes or the API stops.
pub(crate) fn respond<S: Service>(service: Arc<S>, shutdown: Shutdown) -> Response {
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    // Subscribed before answering: nothing committed from here on is missed.
    let live = service.subscribe();
    tokio::spawn(run(service, shutdown, live, tx));
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, Infallible>(chunk), rx))
    });
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

/// What changed since the last update.
#[derive(Debug, Default)]
struct Pending {
    agents: BTreeSet<String>,
    resync: bool,
    /// Something happened that may move a queue's numbers.
    queues: bool,
}

impl Pending {
    fn note(&mut self, agent: Option<String>) {
        self.queues = true;
        if let Some(agent) = agent
            && !self.resync
        {
            self.agents.insert(agent);
            if self.agents.len() > MAX_AGENTS {
                self.agents.clear();
                self.resync = true;
            }
        }
    }
}

/// What the client was sent last, so only differences go out.
#[derive(Debug, Default)]
struct Sent {
    queues: Option<Vec<QueueOut>>,
    health: Option<Health>,
}

async fn run<S: Service>(
    service: Arc<S>,
    shutdown: Shutdown,
    mut live: broadcast::Receiver<crate::events::Event>,
    tx: mpsc::Sender<Bytes>,
) {
    let stopping = shutdown.triggered();
    tokio::pin!(stopping);
    let mut flush = interval(FLUSH_EVERY);
    flush.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut pending = Pending {
        queues: true,
        ..Pending::default()
    };
    let mut sent = Sent::default();
    // The first flush (at once) sends the queues and the health report.
    let mut health_due = Instant::now();
    let mut last_sent = Instant::now();
    loop {
        // Biased, and the flush before the events: a tenant that never
        // stops sending events must not keep its updates from leaving.
        tokio::select! {
            biased;
            () = &mut stopping => return,
            () = tx.closed() => return,
            _ = flush.tick() => {
                let now = Instant::now();
                let health = now >= health_due;
                if health {
                    health_due = now + HEALTH_EVERY;
                    // Waiting times grow without events.
                    pending.queues = true;
                }
                let update = collect(&*service, std::mem::take(&mut pending), health, &mut sent).await;
                let chunk = match update {
                    Some(update) => match serde_json::to_string(&update) {
                        Ok(json) => Some(format!("event: update\ndata: {json}\n\n")),
                        Err(error) => {
                            tracing::warn!(%error, "board stream: cannot serialise an update");
                            None
                        }
                    },
                    None if last_sent.elapsed() >= KEEPALIVE_EVERY => Some(": keepalive\n\n".to_string()),
                    None => None,
                };
                if let Some(chunk) = chunk {
                    match timeout(SEND_TIMEOUT, tx.send(Bytes::from(chunk))).await {
                        Ok(Ok(())) => last_sent = Instant::now(),
                        _ => return,
                    }
                }
            }
            received = live.recv() => match received {
                Ok(event) => pending.note(event.agent_id),
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    pending.resync = true;
                    pending.queues = true;
                    pending.agents.clear();
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

/// The update for what is pending; `None` when nothing differs.
async fn collect<S: Service>(
    service: &S,
    pending: Pending,
    health: bool,
    sent: &mut Sent,
) -> Option<BoardUpdate> {
    let mut update = BoardUpdate {
        resync: pending.resync,
        ..BoardUpdate::default()
    };
    if !pending.agents.is_empty() {
        let ids: Vec<String> = pending.agents.into_iter().collect();
        match service.agents_by_id(ids.clone()).await {
            Ok(agents) => {
                let found: BTreeSet<&str> = agents.iter().map(|a| a.id.as_str()).collect();
                update.removed = ids
                    .iter()
                    .filter(|id| !found.contains(id.as_str()))
                    .cloned()
                    .collect();
                update.agents = agents;
            }
            // The loop is busy or stopping: the page reads its agents again.
            Err(_) => update.resync = true,
        }
    }
    if pending.queues
        && let Ok(queues) = service.queues().await
        && sent.queues.as_ref() != Some(&queues)
    {
        sent.queues = Some(queues.clone());
        update.queues = Some(queues);
    }
    if health {
        let report = service.health().await;
        if sent.health.as_ref() != Some(&report) {
            sent.health = Some(report.clone());
            update.health = Some(report);
        }
    }
    let empty = update.agents.is_empty()
        && update.removed.is_empty()
        && !update.resync
        && update.queues.is_none()
        && update.health.is_none();
    (!empty).then_some(update)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_many_changed_agents_become_a_resync() {
        let mut pending = Pending::default();
        for n in 0..MAX_AGENTS {
            pending.note(Some(format!("a{n}")));
        }
        pending.note(Some("a0".into()));
        assert_eq!(pending.agents.len(), MAX_AGENTS);
        assert!(!pending.resync);
        pending.note(Some("one-more".into()));
        assert!(pending.resync);
        assert!(pending.agents.is_empty());
        pending.note(Some("after".into()));
        assert!(pending.agents.is_empty(), "a resync covers every agent");
        assert!(pending.queues);
    }
}
