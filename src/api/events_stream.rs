//! `GET /v1/events?since=SEQ` over WebSocket (SPEC §3.2): every committed
//! event after `since`, oldest first, one text frame each, then live ones.
//!
//! Resuming must leave no gap, so the stream subscribes to live events
//! *before* it reads the log: anything committed while the log is being read
//! is then in the subscription too, and the cursor (the last seq sent) drops
//! the overlap. When the subscription falls behind (`Lagged`) or skips a
//! number, the stream goes back to reading the log from its cursor. When the
//! log no longer holds what the client asks for (retention pruned it), the
//! client is told with a `stream.gap` frame before the first event kept.

use std::future::Future;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use serde_json::json;
use tokio::sync::broadcast;
use tokio::time::{Instant, interval_at, timeout};

use crate::events::Event;

use super::error::ApiError;
use super::service::Service;
use super::shutdown::Shutdown;

/// Events read from the log per call.
pub const PAGE: usize = 500;
/// The `type` of the frame telling a client that events it asked for were pruned.
pub const GAP: &str = "stream.gap";

/// A client that does not take a frame within this long is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle connections are pinged so proxies keep them and dead peers show.
const PING_EVERY: Duration = Duration::from_secs(30);
/// A client silent (not even a pong) for this long is gone.
const SILENCE_LIMIT: Duration = Duration::from_secs(90);
/// How long a closing stream waits for the client's close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// WebSocket close codes (RFC 6455 §7.4.1).
const GOING_AWAY: u16 = 1001;
const INTERNAL_ERROR: u16 = 1011;

/// What the stream sends.
#[derive(Clone, Debug, PartialEq)]
enum Frame {
    Event(Event),
    Gap {
        requested_since: u64,
        first_available: u64,
    },
}

impl Frame {
    fn to_json(&self) -> Result<String, serde_json::Error> {
        match self {
            Frame::Event(event) => serde_json::to_string(event),
            Frame::Gap {
                requested_since,
                first_available,
            } => serde_json::to_string(&json!({
                "type": GAP,
                "data": {
                    "requested_since": requested_since,
                    "first_available": first_available,
                },
            })),
        }
    }
}

/// Why a stream ended.
enum End {
    /// The daemon is stopping.
    Stopping,
    /// The daemon cannot read its event log.
    Failed(ApiError),
    /// The client sent a close frame.
    ClientClosed,
    /// The connection broke, timed out or went silent.
    ClientGone,
}

/// Serves one upgraded connection until the client leaves or the daemon stops.
pub(crate) async fn stream_events<S: Service>(
    mut socket: WebSocket,
    service: std::sync::Arc<S>,
    shutdown: Shutdown,
    since: Option<u64>,
) {
    let _counted = shutdown.stream_opened();
    let close = match run(&mut socket, &*service, &shutdown, since).await {
        End::ClientGone => return,
        End::ClientClosed => {
            // tungstenite answers the close frame on the next read.
            let _ = timeout(CLOSE_WAIT, socket.recv()).await;
            return;
        }
        End::Stopping => CloseFrame {
            code: GOING_AWAY,
            reason: "presence-sync is stopping; reconnect with since=<last seq>".into(),
        },
        End::Failed(error) => {
            tracing::warn!(%error, "event stream: cannot read the event log");
            CloseFrame {
                code: INTERNAL_ERROR,
                reason: "the event log cannot be read now; reconnect with since=<last seq>".into(),
            }
        }
    };
    if send(&mut socket, Message::Close(Some(close))).await.is_ok() {
        // Wait for the client's answer so it sees a clean close, not a reset.
        let _ = timeout(CLOSE_WAIT, async {
            while let Some(Ok(message)) = socket.recv().await {
                if matches!(message, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
}

async fn run<S: Service>(
    socket: &mut WebSocket,
    service: &S,
    shutdown: &Shutdown,
    since: Option<u64>,
) -> End {
    let mut feed = match Feed::open(service, since).await {
        Ok(feed) => feed,
        Err(error) => return End::Failed(error),
    };
    let stopping = shutdown.triggered();
    tokio::pin!(stopping);
    let mut ping = interval_at(Instant::now() + PING_EVERY, PING_EVERY);
    let mut last_heard = Instant::now();
    loop {
        // Biased: a stop or a client frame is handled before the next page
        // of a long replay.
        tokio::select! {
            biased;
            () = &mut stopping => return End::Stopping,
            inbound = socket.recv() => match inbound {
                None | Some(Err(_)) => return End::ClientGone,
                Some(Ok(Message::Close(_))) => return End::ClientClosed,
                // Pings are answered by tungstenite; anything else a client
                // sends has no meaning here.
                Some(Ok(_)) => last_heard = Instant::now(),
            },
            _ = ping.tick() => {
                if last_heard.elapsed() > SILENCE_LIMIT
                    || send(socket, Message::Ping(Bytes::new())).await.is_err()
                {
                    return End::ClientGone;
                }
            }
            frames = feed.next() => match frames {
                Ok(frames) => {
                    for frame in frames {
                        let text = match frame.to_json() {
                            Ok(text) => text,
                            Err(error) => {
                                return End::Failed(ApiError::new(500, "internal", error.to_string()));
                            }
                        };
                        if send(socket, Message::Text(text.into())).await.is_err() {
                            return End::ClientGone;
                        }
                    }
                }
                Err(error) => return End::Failed(error),
            },
        }
    }
}

async fn send(socket: &mut WebSocket, message: Message) -> Result<(), ()> {
    match timeout(SEND_TIMEOUT, socket.send(message)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// The events one client still has to get, in order, each once.
struct Feed<'a, S> {
    service: &'a S,
    live: broadcast::Receiver<Event>,
    /// The last seq handed out (or skipped over by a gap).
    cursor: u64,
    /// Reading the log rather than the subscription.
    catching_up: bool,
}

impl<'a, S: Service> Feed<'a, S> {
    async fn open(service: &'a S, since: Option<u64>) -> Result<Self, ApiError> {
        // First, so nothing committed from here on can be missed.
        let live = service.subscribe();
        let cursor = match since {
            Some(since) => since,
            None => {
                newest_seq(service.first_seq().await?, |after| async move {
                    Ok(service.events_after(after, 1).await?.first().map(|e| e.seq))
                })
                .await?
            }
        };
        Ok(Feed {
            service,
            live,
            cursor,
            catching_up: true,
        })
    }

    /// The next frames to send (possibly none). Cancel-safe: the state only
    /// changes after the last await.
    async fn next(&mut self) -> Result<Vec<Frame>, ApiError> {
        if self.catching_up {
            let page = self.service.events_after(self.cursor, PAGE).await?;
            let skipped = page
                .first()
                .is_some_and(|e| e.seq > self.cursor.saturating_add(1));
            // A skipped number is a gap only if retention removed it; a log
            // may also just not use every number.
            let first = if skipped {
                self.service.first_seq().await?
            } else {
                None
            };
            let mut frames = Vec::with_capacity(page.len() + 1);
            if let Some(first) = first.filter(|first| *first > self.cursor.saturating_add(1)) {
                frames.push(Frame::Gap {
                    requested_since: self.cursor,
                    first_available: first,
                });
                self.cursor = first - 1;
            }
            let full = page.len() >= PAGE;
            let cursor_before = self.cursor;
            for event in page {
                if event.seq > self.cursor {
                    self.cursor = event.seq;
                    frames.push(Frame::Event(event));
                }
            }
            // A full page that moved nothing on would be read forever.
            self.catching_up = full && self.cursor > cursor_before;
            return Ok(frames);
        }
        match self.live.recv().await {
            Ok(event) if event.seq <= self.cursor => Ok(Vec::new()),
            Ok(event) if event.seq == self.cursor.saturating_add(1) => {
                self.cursor = event.seq;
                Ok(vec![Frame::Event(event)])
            }
            // Something between the cursor and this event did not come
            // through the subscription (or the log skips a number): the log
            // has the answer, this event included.
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                self.catching_up = true;
                Ok(Vec::new())
            }
            Err(broadcast::error::RecvError::Closed) => Err(ApiError::unavailable(
                "the daemon stopped publishing events",
            )),
        }
    }
}

/// The newest seq in the log, found with `first_after(x)` (the first seq
/// greater than `x`, if any) in O(log n) probes: the service has no "last
/// seq" call, and reading the whole log to find its end would cost a client
/// that only wants live events a full replay. The log may grow meanwhile;
/// any answer between the newest seq at the start and at the end is right,
/// because the subscription is already open.
async fn newest_seq<F, Fut>(first: Option<u64>, mut first_after: F) -> Result<u64, ApiError>
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = Result<Option<u64>, ApiError>>,
{
    let Some(mut known) = first else {
        return Ok(0);
    };
    // Gallop: double the step until a probe finds nothing after it.
    let mut step = 1u64;
    let mut beyond = loop {
        let probe = known.saturating_add(step);
        match first_after(probe).await? {
            Some(seq) if seq > known => known = seq,
            _ => break probe,
        }
        step = step.saturating_mul(2);
    };
    // Now `known` exists and nothing follows `beyond`: bisect.
    while known < beyond {
        let middle = known + (beyond - known) / 2;
        match first_after(middle).await? {
            Some(seq) if seq > known => known = seq,
            _ => beyond = middle,
        }
    }
    Ok(known)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn newest_of(seqs: &[u64]) -> (u64, usize) {
        let mut probes = 0;
        let newest = newest_seq(seqs.first().copied(), |after| {
            probes += 1;
            let found = seqs.iter().copied().find(|seq| *seq > after);
            async move { Ok(found) }
        })
        .await
        .unwrap();
        (newest, probes)
    }

    #[tokio::test]
    async fn newest_seq_finds_the_end_of_any_log() {
        assert_eq!(newest_of(&[]).await.0, 0);
        assert_eq!(newest_of(&[7]).await.0, 7);
        assert_eq!(newest_of(&[1, 2]).await.0, 2);
        for len in [3u64, 10, 64, 65, 1000] {
            let contiguous: Vec<u64> = (1..=len).collect();
            assert_eq!(newest_of(&contiguous).await.0, len);
            let pruned_with_holes: Vec<u64> = (1..=len).map(|n| 40 + n * 3).collect();
            assert_eq!(newest_of(&pruned_with_holes).await.0, 40 + len * 3);
        }
    }

    #[tokio::test]
    async fn newest_seq_takes_logarithmic_probes() {
        let log: Vec<u64> = (1..=1_000_000).collect();
        let (newest, probes) = newest_of(&log).await;
        assert_eq!(newest, 1_000_000);
        assert!(probes <= 2 * 21, "{probes} probes");
    }

    #[tokio::test]
    async fn newest_seq_handles_the_top_of_the_range() {
        assert_eq!(newest_of(&[u64::MAX - 1, u64::MAX]).await.0, u64::MAX);
    }

    #[test]
    fn gap_frame_shape() {
        let frame = Frame::Gap {
            requested_since: 3,
            first_available: 11,
        };
        let value: serde_json::Value = serde_json::from_str(&frame.to_json().unwrap()).unwrap();
        assert_eq!(
            value,
            json!({"type": "stream.gap", "data": {"requested_since": 3, "first_available": 11}})
        );
    }
}
