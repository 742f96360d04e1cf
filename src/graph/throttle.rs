//! The Graph throttle: the one request path every Graph call takes.
//!
//! - A per-tenant request budget ([`Budget`], in [`scheduler`]) shared by
//!   every caller, so reads, writes and directory pages together never go
//!   over what Microsoft allows; writes are served first, reads take what
//!   is left, and a 429 lowers the rate for a while.
//! - A 429 pauses the whole budget until its `Retry-After` (seconds, decimal
//!   seconds such as `2.128`, or an HTTP date): every caller waits, not only
//!   the one that was told, so a storm cannot become a retry storm.
//! - 5xx, timeouts and connection errors are retried with exponential
//!   backoff and jitter (backoff's policy; we sleep on our own clock), a
//!   bounded number of times.
//! - A 401 refreshes the token once and retries once.
//! - Each kind of retry has its own count: 429s waited out do not use up
//!   the attempts for 5xx, nor the other way round.
//! - Answers are read up to [`ThrottleConfig::max_body`]; a longer one is
//!   an error, not a daemon out of memory.
//! - Every request carries a fresh `client-request-id`; every failure is
//!   logged with Graph's `request-id`; every request has a timeout.
//! - The bearer token is the app's ([`TokenCache`]), or another
//!   [`TokenSource`]'s (a service account's delegated token for
//!   subscriptions, [`Throttle::send_as`]): the same budget and retries.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use backoff::ExponentialBackoff;
use backoff::backoff::Backoff;
use reqwest::{Method, Url};

use super::auth::TokenCache;
use super::call_stats::{CallStats, outcome_of_status};
use super::clock::SharedClock;
use super::error::GraphError;
use super::model::GraphErrorBody;
use crate::config::{GraphConfig, Secret};
use crate::http::{parse_retry_after, transport_message};

pub mod scheduler;

pub use scheduler::{Budget, BudgetReport, CallClass};

/// The window Microsoft states presence budgets in.
pub const BUDGET_WINDOW: Duration = Duration::from_secs(30);

/// Backoff for transient failures: how long, how often.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included, counting only the attempts that
    /// failed transiently (5xx, timeout, connection): a call also gets its
    /// throttled retries and its one 401 retry on top.
    pub max_attempts: u32,
    pub initial_interval: Duration,
    pub max_interval: Duration,
    pub multiplier: f64,
    /// Jitter: each wait is drawn from `interval × (1 ± factor)`.
    pub randomization_factor: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_interval: Duration::from_millis(500),
            max_interval: Duration::from_secs(30),
            multiplier: 2.0,
            randomization_factor: 0.5,
        }
    }
}

impl RetryPolicy {
    /// backoff's delay policy with no elapsed-time limit: the attempt count
    /// bounds retries, and backoff's own clock is never consulted.
    pub fn backoff(&self) -> ExponentialBackoff {
        let mut b = ExponentialBackoff {
            initial_interval: self.initial_interval,
            current_interval: self.initial_interval,
            max_interval: self.max_interval,
            multiplier: self.multiplier.max(1.0),
            randomization_factor: self.randomization_factor.clamp(0.0, 1.0),
            max_elapsed_time: None,
            ..ExponentialBackoff::default()
        };
        b.reset();
        b
    }
}

/// The throttle's knobs.
#[derive(Clone, Debug, PartialEq)]
pub struct ThrottleConfig {
    /// Requests allowed per `window` for this app in this tenant.
    pub requests: u32,
    pub window: Duration,
    /// Requests that may leave back to back after a quiet spell. The
    /// sustained rate is lowered by as much (less the one request the burst
    /// and the rate share), so that no window of length `window` ever holds
    /// more than `requests`.
    pub burst: u32,
    /// Per attempt, connect to last byte.
    pub request_timeout: Duration,
    /// For 5xx, timeouts and connection errors.
    pub retry: RetryPolicy,
    /// 429s one call may wait out before it gives up.
    pub max_throttled_retries: u32,
    /// The longest `Retry-After` obeyed as is; longer ones are cut to this
    /// (a broken or hostile value must not stop the daemon for days).
    pub max_retry_after: Duration,
    /// Wait after a 429 without `Retry-After`.
    pub default_retry_after: Duration,
    /// The longest answer body read; a longer one fails the call.
    pub max_body: usize,
}

/// Bodies Graph sends are far smaller (a page of 999 users is a few MiB).
pub const MAX_BODY: usize = 16 * 1024 * 1024;

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            requests: 1_500,
            window: BUDGET_WINDOW,
            burst: 50,
            request_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            max_throttled_retries: 20,
            max_retry_after: Duration::from_secs(600),
            default_retry_after: Duration::from_secs(5),
            max_body: MAX_BODY,
        }
    }
}

impl ThrottleConfig {
    /// The config's budget and timeout, the rest at defaults.
    pub fn from_graph(config: &GraphConfig) -> Self {
        ThrottleConfig {
            requests: config.requests_per_30s.max(1),
            window: BUDGET_WINDOW,
            request_timeout: config.request_timeout,
            ..ThrottleConfig::default()
        }
    }

    /// Requests per second the budget sustains (after the burst allowance).
    pub fn sustained_rate(&self) -> f64 {
        let (sustained, _) = self.split();
        f64::from(sustained) / self.window.as_secs_f64().max(1e-9)
    }

    /// (sustained requests per window, burst). GCRA lets `burst` requests
    /// leave at once and then one every `window / sustained`: a window
    /// then holds at most `burst + sustained - 1`, which is `requests`
    /// (so 1 request per window allows 1, not 2).
    pub(crate) fn split(&self) -> (u32, u32) {
        let requests = self.requests.max(1);
        let burst = self.burst.clamp(1, (requests / 2).max(1));
        (requests - burst + 1, burst)
    }
}

// ---------------------------------------------------------------- tokens

/// A boxed future of a [`TokenSource`].
pub type TokenFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where a request's bearer token comes from.
pub trait TokenSource: Send + Sync {
    /// A valid token, or why there is none.
    fn bearer(&self) -> TokenFuture<'_, Result<Arc<Secret>, GraphError>>;
    /// Graph refused `stale` with 401: the next [`TokenSource::bearer`]
    /// must not return it.
    fn refused<'a>(&'a self, stale: &'a Arc<Secret>) -> TokenFuture<'a, ()>;
}

impl TokenSource for TokenCache {
    fn bearer(&self) -> TokenFuture<'_, Result<Arc<Secret>, GraphError>> {
        Box::pin(async move { self.token().await.map_err(GraphError::from) })
    }

    fn refused<'a>(&'a self, stale: &'a Arc<Secret>) -> TokenFuture<'a, ()> {
        Box::pin(self.invalidate(stale))
    }
}

// ---------------------------------------------------------------- requests

/// One Graph call, as the request path sends it (perhaps several times).
#[derive(Clone, Debug)]
pub struct GraphRequest {
    pub method: Method,
    pub url: Url,
    /// JSON body.
    pub body: Option<Vec<u8>>,
    /// What the call is, for logs and errors (`getPresencesByUserId`).
    pub what: &'static str,
    /// Whose turn it is in the budget.
    pub class: CallClass,
}

/// Graph's successful answer.
#[derive(Clone, Debug)]
pub struct GraphResponse {
    pub status: u16,
    pub request_id: Option<String>,
    pub client_request_id: String,
    pub body: Vec<u8>,
}

/// The request path: budget, token, retries, ids, timeouts.
pub struct Throttle {
    http: reqwest::Client,
    budget: Arc<Budget>,
    tokens: Arc<TokenCache>,
    config: ThrottleConfig,
    clock: SharedClock,
    stats: CallStats,
    /// In a cluster, the active node's gate: no call leaves once it shut.
    gate: Option<Arc<crate::cluster::gate::Gate>>,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle")
            .field("config", &self.config)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

/// What to do after a failed attempt.
enum Next {
    Retry { wait: Duration },
    Fail(GraphError),
}

impl Throttle {
    /// `budget` may be shared with other throttles of the same tenant.
    pub fn new(
        http: reqwest::Client,
        budget: Arc<Budget>,
        tokens: Arc<TokenCache>,
        config: ThrottleConfig,
        clock: SharedClock,
    ) -> Self {
        Throttle {
            http,
            budget,
            tokens,
            config,
            clock,
            stats: CallStats::default(),
            gate: None,
        }
    }

    /// Calls leave only while `gate` is open (checked before each attempt,
    /// after the budget's wait).
    pub fn with_gate(mut self, gate: Arc<crate::cluster::gate::Gate>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Calls sent so far, for metrics.
    pub fn stats(&self) -> &CallStats {
        &self.stats
    }

    pub fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }

    pub fn config(&self) -> &ThrottleConfig {
        &self.config
    }

    pub fn tokens(&self) -> &Arc<TokenCache> {
        &self.tokens
    }

    /// Sends `request` with the app's token until Graph answers 2xx, or
    /// gives up with the reason.
    pub async fn send(&self, request: &GraphRequest) -> Result<GraphResponse, GraphError> {
        self.send_as(request, self.tokens.as_ref()).await
    }

    /// [`Throttle::send`] with the token of `tokens` (a service account's):
    /// the same budget, retries and ids.
    pub async fn send_as(
        &self,
        request: &GraphRequest,
        tokens: &dyn TokenSource,
    ) -> Result<GraphResponse, GraphError> {
        let mut backoff = self.config.retry.backoff();
        // Attempts in all, for logs and errors.
        let mut attempts = 0u32;
        // Each kind of retry is bounded on its own.
        let mut failures = 0u32;
        let mut throttled = 0u32;
        let mut refreshed = false;
        loop {
            let sent_at = self.budget.acquire(request.class).await;
            if let Some(reason) = self.gate.as_ref().and_then(|gate| gate.why_not()) {
                return Err(GraphError::NotActive { reason });
            }
            let token = tokens.bearer().await?;
            attempts += 1;
            let client_request_id = new_request_id();
            let mut builder = self
                .http
                .request(request.method.clone(), request.url.clone())
                .bearer_auth(token.expose())
                .header("client-request-id", &client_request_id)
                .header("return-client-request-id", "true")
                .header(reqwest::header::ACCEPT, "application/json")
                .timeout(self.config.request_timeout);
            if let Some(body) = &request.body {
                builder = builder
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone());
            }
            let exchanged = exchange(builder, self.config.max_body).await;
            self.stats.record(
                request.what,
                match &exchanged {
                    Ok(answer) => outcome_of_status(answer.status),
                    Err(f) if f.too_large.is_some() => "too_large",
                    Err(_) => "no_answer",
                },
            );
            let next = match exchanged {
                Ok(answer) if (200..300).contains(&answer.status) => {
                    return Ok(GraphResponse {
                        status: answer.status,
                        request_id: answer.request_id,
                        client_request_id,
                        body: answer.body,
                    });
                }
                Ok(answer) => {
                    let retry_after = answer
                        .retry_after
                        .as_deref()
                        .and_then(|v| parse_retry_after(v, self.clock.wall()))
                        .map(|d| d.min(self.config.max_retry_after));
                    let error = answer.into_error(client_request_id, retry_after);
                    log_failure(request, &error, attempts);
                    match error.status() {
                        Some(401) if !refreshed => {
                            refreshed = true;
                            tokens.refused(&token).await;
                            Next::Retry {
                                wait: Duration::ZERO,
                            }
                        }
                        Some(429) => {
                            throttled += 1;
                            if throttled > self.config.max_throttled_retries {
                                Next::Fail(error)
                            } else {
                                let wait = retry_after.unwrap_or(self.config.default_retry_after);
                                self.budget
                                    .pause_until(self.clock.now().saturating_add(wait));
                                self.budget.throttled(sent_at);
                                Next::Retry {
                                    wait: Duration::ZERO,
                                }
                            }
                        }
                        Some(status) if status >= 500 || status == 408 => {
                            if retry_after.is_some() && status == 503 {
                                // Graph throttles with 503 + Retry-After too.
                                let wait = retry_after.unwrap_or_default();
                                self.budget
                                    .pause_until(self.clock.now().saturating_add(wait));
                                self.budget.throttled(sent_at);
                            }
                            failures += 1;
                            self.transient(&mut backoff, failures, retry_after, error)
                        }
                        _ => Next::Fail(error),
                    }
                }
                Err(Failure {
                    too_large: Some(request_id),
                    message,
                    ..
                }) => {
                    let error = GraphError::Decode {
                        what: request.what,
                        message,
                        request_id,
                        client_request_id,
                    };
                    log_failure(request, &error, attempts);
                    Next::Fail(error)
                }
                Err(failure) => {
                    let error = failure.into_error(
                        client_request_id,
                        attempts,
                        self.config.request_timeout,
                    );
                    log_failure(request, &error, attempts);
                    failures += 1;
                    self.transient(&mut backoff, failures, None, error)
                }
            };
            match next {
                Next::Fail(error) => return Err(error),
                Next::Retry { wait } => {
                    if !wait.is_zero() {
                        super::clock::sleep(self.clock.as_ref(), wait).await;
                    }
                }
            }
        }
    }

    /// After the `failures`-th transient failure of a call.
    fn transient(
        &self,
        backoff: &mut ExponentialBackoff,
        failures: u32,
        retry_after: Option<Duration>,
        error: GraphError,
    ) -> Next {
        if failures >= self.config.retry.max_attempts {
            return Next::Fail(error);
        }
        match backoff.next_backoff() {
            Some(wait) => Next::Retry {
                wait: wait.max(retry_after.unwrap_or_default()),
            },
            None => Next::Fail(error),
        }
    }
}

fn log_failure(request: &GraphRequest, error: &GraphError, attempt: u32) {
    let (status, code, request_id, client_request_id) = match error {
        GraphError::Status {
            status,
            code,
            request_id,
            client_request_id,
            ..
        } => (
            Some(*status),
            code.as_deref(),
            request_id.as_deref(),
            client_request_id.as_str(),
        ),
        GraphError::Timeout {
            client_request_id, ..
        }
        | GraphError::Connection {
            client_request_id, ..
        } => (None, None, None, client_request_id.as_str()),
        _ => (None, None, None, ""),
    };
    // A 404 is often an answer, not a fault (clearing a session that is
    // already gone); callers that mind it say so at their level.
    if status == Some(404) {
        tracing::debug!(
            call = request.what,
            code,
            request_id,
            client_request_id,
            attempt,
            %error,
            "Graph answered 404"
        );
        return;
    }
    tracing::warn!(
        call = request.what,
        status,
        code,
        request_id,
        client_request_id,
        attempt,
        %error,
        "Graph call failed"
    );
}

/// An answer read to the end.
struct Answer {
    status: u16,
    request_id: Option<String>,
    retry_after: Option<String>,
    body: Vec<u8>,
}

/// A request that got no (usable) answer.
struct Failure {
    timed_out: bool,
    /// The answer was longer than allowed (with Graph's request id).
    too_large: Option<Option<String>>,
    message: String,
}

impl Failure {
    fn into_error(self, client_request_id: String, attempts: u32, timeout: Duration) -> GraphError {
        if self.timed_out {
            GraphError::Timeout {
                timeout,
                attempts,
                client_request_id,
            }
        } else {
            GraphError::Connection {
                message: self.message,
                attempts,
                client_request_id,
            }
        }
    }
}

impl Answer {
    fn into_error(self, client_request_id: String, retry_after: Option<Duration>) -> GraphError {
        let body: GraphErrorBody = serde_json::from_slice(&self.body).unwrap_or_default();
        let inner_id = body
            .error
            .inner_error
            .as_ref()
            .and_then(|i| i.request_id.clone());
        GraphError::Status {
            status: self.status,
            code: body.error.code,
            message: body.error.message,
            request_id: self.request_id.or(inner_id),
            client_request_id,
            retry_after,
        }
    }
}

async fn exchange(builder: reqwest::RequestBuilder, max_body: usize) -> Result<Answer, Failure> {
    let failure = |e: reqwest::Error| Failure {
        timed_out: e.is_timeout(),
        too_large: None,
        message: transport_message(&e),
    };
    let response = builder.send().await.map_err(failure)?;
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let status = response.status().as_u16();
    let request_id = header("request-id");
    let retry_after = header("retry-after");
    let body = match read_body(response, max_body).await {
        Ok(body) => body,
        Err(BodyError::Transport(e)) => return Err(failure(e)),
        Err(BodyError::TooLarge) => {
            return Err(Failure {
                timed_out: false,
                too_large: Some(request_id),
                message: format!("the answer is longer than {max_body} bytes (HTTP {status})"),
            });
        }
    };
    Ok(Answer {
        status,
        request_id,
        retry_after,
        body,
    })
}

pub(crate) enum BodyError {
    Transport(reqwest::Error),
    TooLarge,
}

/// The body, read to the end unless it is longer than `max` bytes.
pub(crate) async fn read_body(
    mut response: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, BodyError> {
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > max {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A random (v4) UUID for `client-request-id` and assertion ids.
pub fn new_request_id() -> String {
    let mut bytes = [0u8; 16];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        // Uniqueness is all these ids need; without the system RNG a clock
        // and a counter still give that.
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let t = crate::time::Timestamp::now().as_micros();
        bytes[..8].copy_from_slice(&t.to_be_bytes());
        bytes[8..].copy_from_slice(&n.to_be_bytes());
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests;
