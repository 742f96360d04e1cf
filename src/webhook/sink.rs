//! The delivery loop: the event log, in order, to one URL, at least once.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::hmac;
use backoff::ExponentialBackoff;
use backoff::backoff::Backoff;
use chrono::Utc;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use serde::Serialize;
use thiserror::Error;
use tokio::sync::broadcast::error::TryRecvError;
use tokio::sync::{broadcast, watch};

use crate::config::{Secret, WebhookConfig};
use crate::events::Event;
use crate::http::{self, parse_retry_after, transport_message};
use crate::stop::Stop;
use crate::store::{Batch, MetaKey, Store, StoreError};

use super::signature::{DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_with};
use super::status::{WebhookState, WebhookStatus};

/// The consumer name of the sink's cursor in the store's metadata.
pub const CURSOR_NAME: &str = "webhook";

/// The first retry's wait (before jitter), unless `max_retry_delay` is shorter.
const INITIAL_RETRY_DELAY: Duration = Duration::from_secs(1);
/// A `Retry-After` longer than this (and than `max_retry_delay`) is cut to
/// it, so that one odd header cannot stall the sink for days.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(3600);
/// How often an idle sink looks at the log without being woken: a commit
/// whose broadcast it missed is delivered this late at worst.
const IDLE_RECHECK: Duration = Duration::from_secs(30);
/// How much of a refusing receiver's answer is kept for the logs.
const ERROR_BODY_EXCERPT: usize = 512;

/// Why the sink stopped without being asked to.
#[derive(Debug, Error)]
pub enum WebhookError {
    #[error("the webhook's HTTP client could not be set up: {0}")]
    Setup(String),
    #[error(
        "the webhook cursor in the store is `{0}`, not a sequence number; refusing to guess \
         where delivery stopped (inspect the store with `presence-sync export`)"
    )]
    BadCursor(String),
    #[error("the events could not be written as JSON: {0}")]
    Encode(String),
}

/// The outbound webhook sink (SPEC §3.2).
///
/// It POSTs the event log to the configured URL in batches of
/// `batch_size`, in sequence order, signed (see [`super::signature`]). After
/// any 2xx it stores the last delivered sequence number as its cursor
/// (`MetaKey::Cursor("webhook")`) and goes on; every failure is retried, with
/// exponential backoff and jitter up to `max_retry_delay`, for as long as it
/// takes: events are never dropped or skipped. A restart resumes after the
/// cursor, so the batch in flight when the daemon stopped may come twice;
/// receivers de-duplicate by event `id`.
///
/// Without a cursor (a store that never had a webhook), delivery starts from
/// the oldest event the store still keeps.
pub struct WebhookSink {
    store: Arc<dyn Store>,
    http: reqwest::Client,
    url: String,
    key: hmac::Key,
    batch_size: usize,
    max_retry_delay: Duration,
    status: watch::Sender<WebhookStatus>,
}

impl fmt::Debug for WebhookSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a receiver's token in its query; the key is secret.
        f.debug_struct("WebhookSink")
            .field("batch_size", &self.batch_size)
            .field("max_retry_delay", &self.max_retry_delay)
            .finish_non_exhaustive()
    }
}

/// The body of every POST.
#[derive(Serialize)]
struct Payload<'a> {
    events: &'a [Event],
}

impl WebhookSink {
    /// A sink for `config`, signing with `secret` (read from
    /// `config.secret`), reading the log from `store`.
    pub fn new(
        config: &WebhookConfig,
        secret: &Secret,
        store: Arc<dyn Store>,
    ) -> Result<WebhookSink, WebhookError> {
        // No redirects: the configured URL is the one that must answer.
        let http =
            http::client(config.timeout).map_err(|e| WebhookError::Setup(transport_message(&e)))?;
        Ok(WebhookSink {
            store,
            http,
            url: config.url.clone(),
            key: hmac::Key::new(hmac::HMAC_SHA256, secret.expose().as_bytes()),
            batch_size: config.batch_size.max(1),
            max_retry_delay: config.max_retry_delay,
            status: watch::Sender::new(WebhookStatus::starting()),
        })
    }

    /// The sink's status, updated as it works and kept after it stops.
    pub fn status(&self) -> watch::Receiver<WebhookStatus> {
        self.status.subscribe()
    }

    /// Delivers until `stop` is given (or its handle is dropped). `wake`
    /// is the daemon's feed of committed events; the sink only uses it as a
    /// signal to look at the log, so it must be sent to after the commit,
    /// and lagging on it loses nothing.
    ///
    /// On stop, a POST in flight is finished (it is bounded by `timeout`)
    /// and acknowledged if it succeeded; a wait between retries is cut
    /// short. Returns an error only for what retrying cannot fix.
    pub async fn run(
        self,
        mut wake: broadcast::Receiver<Event>,
        stop: Stop,
    ) -> Result<(), WebhookError> {
        let result = self.deliver(&mut wake, &stop).await;
        match &result {
            Ok(()) => self.status.send_modify(|s| s.state = WebhookState::Stopped),
            Err(error) => {
                tracing::error!(%error, "the webhook sink stopped");
                self.status.send_modify(|s| {
                    s.state = WebhookState::Failed {
                        error: error.to_string(),
                    }
                });
            }
        }
        result
    }

    async fn deliver(
        &self,
        wake: &mut broadcast::Receiver<Event>,
        stop: &Stop,
    ) -> Result<(), WebhookError> {
        let mut retry = RetryDelays::new(self.max_retry_delay);
        let mut cursor = loop {
            if stop.is_stopped() {
                return Ok(());
            }
            match self.on_store(|store| store.meta(&cursor_key())).await {
                Ok(value) => break parse_cursor(value)?,
                Err(error) => {
                    if !self
                        .back_off(&mut retry, &Failure::Store(error), stop)
                        .await
                    {
                        return Ok(());
                    }
                }
            }
        };
        retry.reset();
        self.status.send_modify(|s| s.cursor = cursor);
        let mut wake_open = true;
        loop {
            if stop.is_stopped() {
                return Ok(());
            }
            // Wake-ups from before this read are answered by it.
            drain(wake, &mut wake_open);
            let limit = self.batch_size;
            let events = match self
                .on_store(move |store| store.events_after(cursor, limit))
                .await
            {
                Ok(events) => events,
                Err(error) => {
                    if !self
                        .back_off(&mut retry, &Failure::Store(error), stop)
                        .await
                    {
                        return Ok(());
                    }
                    continue;
                }
            };
            let (Some(first), Some(last)) = (events.first(), events.last()) else {
                self.status.send_modify(|s| s.state = WebhookState::Idle);
                if !wait_for_events(wake, &mut wake_open, stop).await {
                    return Ok(());
                }
                continue;
            };
            if cursor > 0 && first.seq > cursor + 1 {
                let message = format!(
                    "events {}..={} were pruned from the log before the receiver took them",
                    cursor + 1,
                    first.seq - 1
                );
                tracing::warn!(
                    after = cursor,
                    next = first.seq,
                    "webhook: {message}; raise [store] event_retention or event_keep_at_least"
                );
                self.status.send_modify(|s| {
                    s.last_error = Some(message);
                    s.last_error_at = Some(Utc::now());
                });
            }
            let (first_seq, last_seq) = (first.seq, last.seq);
            let body = serde_json::to_vec(&Payload { events: &events })
                .map_err(|e| WebhookError::Encode(e.to_string()))?;
            let delivery = format!("{}-{}", first.id, last.id);
            let mut attempt = 1;
            loop {
                self.status.send_modify(|s| {
                    s.state = WebhookState::Delivering {
                        first_seq,
                        last_seq,
                        attempt,
                    }
                });
                match self.post(&body, &delivery).await {
                    Ok(()) => break,
                    Err(failure) => {
                        if !self.back_off(&mut retry, &failure, stop).await {
                            return Ok(());
                        }
                        attempt += 1;
                    }
                }
            }
            let acknowledged = Batch {
                meta: vec![(cursor_key(), Some(last_seq.to_string()))],
                ..Batch::default()
            };
            if let Err(error) = self.on_store(move |store| store.commit(acknowledged)).await {
                // The receiver has the batch but the cursor did not move:
                // the batch goes again, which at-least-once allows.
                if !self
                    .back_off(&mut retry, &Failure::Store(error), stop)
                    .await
                {
                    return Ok(());
                }
                continue;
            }
            cursor = last_seq;
            retry.reset();
            tracing::debug!(first_seq, last_seq, "webhook delivered");
            self.status.send_modify(|s| {
                s.cursor = last_seq;
                s.last_delivered_seq = Some(last_seq);
                s.last_delivered_at = Some(Utc::now());
            });
        }
    }

    /// One attempt at one batch.
    async fn post(&self, body: &[u8], delivery: &str) -> Result<(), Failure> {
        // Signed afresh each attempt: receivers refuse old timestamps, and a
        // retry may come long after the first try.
        let timestamp = Utc::now().timestamp().to_string();
        let signature = sign_with(&self.key, &timestamp, body);
        let response = self
            .http
            .post(&self.url)
            .header(CONTENT_TYPE, "application/json")
            .header(
                USER_AGENT,
                concat!("presence-sync/", env!("CARGO_PKG_VERSION")),
            )
            .header(TIMESTAMP_HEADER, &timestamp)
            .header(SIGNATURE_HEADER, signature)
            .header(DELIVERY_HEADER, delivery)
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| Failure::Transport(transport_message(&e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = if matches!(
            status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        ) {
            response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, Utc::now()))
        } else {
            None
        };
        let body = excerpt(response).await;
        Err(Failure::Status {
            status,
            retry_after,
            body,
        })
    }

    /// Records `failure`, then waits before the next attempt. False when
    /// stopped while waiting.
    async fn back_off(&self, retry: &mut RetryDelays, failure: &Failure, stop: &Stop) -> bool {
        let delay = retry.next(failure.retry_after());
        let attempt = retry.failures;
        let message = failure.to_string();
        match failure {
            Failure::Status { status, .. }
                if status.is_client_error() && !failure.is_transient() =>
            {
                tracing::error!(
                    attempt,
                    %status,
                    body = ?failure.body(),
                    retry_in = ?delay,
                    "the webhook receiver refused a delivery; retrying, since events are never \
                     dropped: check the receiver's configuration and its copy of the secret"
                );
            }
            _ => {
                tracing::warn!(attempt, error = %message, retry_in = ?delay, "webhook delivery failed")
            }
        }
        let now = Utc::now();
        self.status.send_modify(|s| {
            s.state = WebhookState::Retrying {
                attempt,
                next_try: now + delay,
            };
            s.last_error = Some(message);
            s.last_error_at = Some(now);
        });
        stop.sleep(delay).await
    }

    /// Runs a store call off the async threads, as the store asks.
    async fn on_store<T: Send + 'static>(
        &self,
        call: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = Arc::clone(&self.store);
        match tokio::task::spawn_blocking(move || call(store.as_ref())).await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(StoreError::Io(format!("the store call was cancelled: {e}"))),
        }
    }
}

fn cursor_key() -> MetaKey {
    MetaKey::Cursor(CURSOR_NAME.to_owned())
}

fn parse_cursor(value: Option<String>) -> Result<u64, WebhookError> {
    match value {
        None => Ok(0),
        Some(text) => text
            .trim()
            .parse()
            .map_err(|_| WebhookError::BadCursor(text)),
    }
}

/// Why one attempt failed.
#[derive(Debug)]
enum Failure {
    Status {
        status: StatusCode,
        retry_after: Option<Duration>,
        /// The start of the answer, control characters escaped.
        body: String,
    },
    Transport(String),
    Store(StoreError),
}

impl Failure {
    fn retry_after(&self) -> Option<Duration> {
        match self {
            Failure::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether the receiver said "later" rather than "no".
    fn is_transient(&self) -> bool {
        match self {
            Failure::Status { status, .. } => {
                matches!(
                    *status,
                    StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS
                ) || !status.is_client_error()
            }
            _ => true,
        }
    }

    fn body(&self) -> &str {
        match self {
            Failure::Status { body, .. } => body,
            _ => "",
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Status { status, body, .. } if body.is_empty() => {
                write!(f, "the receiver answered {status}")
            }
            Failure::Status { status, body, .. } => {
                write!(f, "the receiver answered {status}: {body}")
            }
            Failure::Transport(message) => write!(f, "the POST failed: {message}"),
            Failure::Store(error) => write!(f, "{error}"),
        }
    }
}

/// The start of an error answer, for the logs. Reading it is bounded by the
/// client's timeout like the rest of the request.
async fn excerpt(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < ERROR_BODY_EXCERPT {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    let cut = bytes.len() > ERROR_BODY_EXCERPT;
    bytes.truncate(ERROR_BODY_EXCERPT);
    let text = String::from_utf8_lossy(&bytes);
    let mut out: String = text.trim().chars().flat_map(char::escape_default).collect();
    if cut {
        out.push('…');
    }
    out
}

/// The waits between attempts: backoff's exponential policy with jitter,
/// starting at 1 s (or `max`, if shorter), never above `max`, with no limit
/// on elapsed time. A `Retry-After` is honoured: the wait is at least that.
struct RetryDelays {
    backoff: ExponentialBackoff,
    max: Duration,
    /// Failed attempts since the last success.
    failures: u32,
}

impl RetryDelays {
    fn new(max: Duration) -> Self {
        let initial = INITIAL_RETRY_DELAY.min(max);
        let mut backoff = ExponentialBackoff {
            initial_interval: initial,
            current_interval: initial,
            max_interval: max,
            multiplier: 2.0,
            randomization_factor: 0.5,
            max_elapsed_time: None,
            ..ExponentialBackoff::default()
        };
        backoff.reset();
        RetryDelays {
            backoff,
            max,
            failures: 0,
        }
    }

    fn next(&mut self, retry_after: Option<Duration>) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let policy = self
            .backoff
            .next_backoff()
            .unwrap_or(self.max)
            .min(self.max);
        match retry_after {
            Some(asked) => policy.max(asked.min(RETRY_AFTER_CAP.max(self.max))),
            None => policy,
        }
    }

    fn reset(&mut self) {
        self.backoff.reset();
        self.failures = 0;
    }
}

/// Takes every pending wake-up; notes a closed feed.
fn drain(wake: &mut broadcast::Receiver<Event>, open: &mut bool) {
    while *open {
        match wake.try_recv() {
            Ok(_) | Err(TryRecvError::Lagged(_)) => {}
            Err(TryRecvError::Empty) => break,
            Err(TryRecvError::Closed) => *open = false,
        }
    }
}

/// Waits for a wake-up, the idle re-check, or stop; false when stopped.
async fn wait_for_events(
    wake: &mut broadcast::Receiver<Event>,
    open: &mut bool,
    stop: &Stop,
) -> bool {
    tokio::select! {
        biased;
        () = stop.stopped() => false,
        received = wake.recv(), if *open => {
            if matches!(received, Err(broadcast::error::RecvError::Closed)) {
                *open = false;
            }
            true
        }
        () = tokio::time::sleep(IDLE_RECHECK) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_to_the_ceiling_and_honour_retry_after() {
        let max = Duration::from_secs(300);
        let mut delays = RetryDelays::new(max);
        let first = delays.next(None);
        // 1 s with ±50 % jitter.
        assert!(first >= Duration::from_millis(500) && first <= Duration::from_millis(1500));
        let mut last = first;
        for _ in 0..30 {
            last = delays.next(None);
            assert!(last <= max, "{last:?}");
        }
        // After 30 doublings the policy sits at the ceiling, jitter and all.
        assert!(last >= max / 2, "{last:?}");
        assert_eq!(delays.failures, 31);
        // A Retry-After longer than the policy's wait is waited out...
        delays.reset();
        assert_eq!(delays.failures, 0);
        assert_eq!(
            delays.next(Some(Duration::from_secs(120))),
            Duration::from_secs(120)
        );
        // ...up to an hour, and a shorter one never shortens the wait.
        assert_eq!(
            delays.next(Some(Duration::from_secs(86_400))),
            Duration::from_secs(3600)
        );
        let short = delays.next(Some(Duration::ZERO));
        assert!(short >= Duration::from_secs(2), "{short:?}");
    }

    #[test]
    fn a_short_ceiling_also_shortens_the_first_wait() {
        let mut delays = RetryDelays::new(Duration::from_millis(20));
        for _ in 0..5 {
            assert!(delays.next(None) <= Duration::from_millis(20));
        }
    }

    #[test]
    fn only_408_and_429_among_4xx_are_transient() {
        let failure = |code: u16| Failure::Status {
            status: StatusCode::from_u16(code).unwrap(),
            retry_after: None,
            body: String::new(),
        };
        assert!(!failure(400).is_transient());
        assert!(!failure(401).is_transient());
        assert!(failure(408).is_transient());
        assert!(failure(429).is_transient());
        assert!(failure(500).is_transient());
        assert!(failure(302).is_transient());
        assert!(Failure::Transport("timed out".into()).is_transient());
    }

    #[test]
    fn cursors_parse_or_refuse() {
        assert_eq!(parse_cursor(None).unwrap(), 0);
        assert_eq!(parse_cursor(Some("42".into())).unwrap(), 42);
        assert!(matches!(
            parse_cursor(Some("4x".into())),
            Err(WebhookError::BadCursor(_))
        ));
    }
}
