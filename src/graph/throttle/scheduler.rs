//! The presence budget's scheduler: who gets the next request.
//!
//! Every Graph call that spends the per-tenant presence budget names its
//! [`CallClass`]. The classes are served in strict order: a waiting
//! [`CallClass::Write`] always gets the next request before any waiting
//! read, and each slower tier only gets what the tiers above it leave.
//! Within a class, callers are served first come, first served.
//!
//! The budget itself is governor's GCRA rate limiter over the configured
//! budget, so no window of [`super::BUDGET_WINDOW`] ever holds more than
//! the budget's requests, whatever the classes and the pacing above it do.
//! After a 429 the daemon also paces itself below the budget (AIMD: the
//! rate is lowered, once per round of requests sent at the old rate, and
//! then recovers additively up to the budget): a storm of 429s meets a
//! slower daemon, not the same one again.
//!
//! The 429 pause (`Retry-After`) is kept here too, because it stops every
//! class alike; the throttle decides when to pause and when to retry.
//!
//! The presence poller reads [`Budget::spare_rate`] to size its round from
//! what writes leave; [`Budget::report`] is what `/metrics` shows.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::sync::Notify;

use super::ThrottleConfig;
use crate::graph::clock::{GovernorClock, SharedClock};

/// What a Graph call is for, in the order the budget serves them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CallClass {
    /// Presence writes: set and clear of our session or the preferred
    /// presence, keep-alives, hand-backs. Always first.
    Write,
    /// The presence poller's reads of linked agents.
    AgentRead,
    /// The directory: users and their presence beyond the agents.
    Directory,
    /// Reconciliation reads, slowest of all.
    Reconcile,
}

impl CallClass {
    /// Every class, first served first.
    pub const ALL: [CallClass; 4] = [
        CallClass::Write,
        CallClass::AgentRead,
        CallClass::Directory,
        CallClass::Reconcile,
    ];

    /// The `class` label in metrics.
    pub fn label(self) -> &'static str {
        match self {
            CallClass::Write => "write",
            CallClass::AgentRead => "agent_read",
            CallClass::Directory => "directory",
            CallClass::Reconcile => "reconcile",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The rate after a 429: this share of what it was.
pub const DECREASE: f64 = 0.5;
/// The rate never goes below this share of the budget.
pub const MIN_RATE_SHARE: f64 = 0.1;
/// The share of the budget the rate gains back per second without a 429.
pub const RECOVERY_PER_SECOND: f64 = 0.05;
/// How far back the rate of each class is measured, for the poller's spare
/// budget: short, so the poller follows writes as they rise and fall.
pub const RATE_WINDOW: Duration = Duration::from_secs(5);

/// The per-tenant request budget every Graph call spends from.
pub struct Budget {
    /// The configured budget: the hard limit every grant passes.
    limiter: RateLimiter<NotKeyed, InMemoryState, GovernorClock, NoOpMiddleware<Nanos>>,
    clock: SharedClock,
    /// The period between requests at the full budget (rounded up).
    period: Duration,
    /// Requests per window, as configured.
    requests: u32,
    window: Duration,
    state: Mutex<State>,
    /// Told whenever the head of the queue may have changed.
    wake: Notify,
}

struct State {
    /// The last grant: while the rate is lowered, the next one waits the
    /// lowered rate's period after it.
    last_grant: Option<Duration>,
    /// Clock time before which nobody may send (a 429's `Retry-After`).
    paused_until: Duration,
    /// Waiting callers' tickets, by class.
    waiting: [VecDeque<u64>; 4],
    next_ticket: u64,
    aimd: Aimd,
    /// Grants of the last window, oldest first (at most the budget's worth).
    recent: VecDeque<(Duration, CallClass)>,
    /// Grants since the start, by class.
    granted: [u64; 4],
}

/// The rate's share of the budget: lowered after a 429, regained with time.
#[derive(Clone, Copy, Debug)]
struct Aimd {
    /// The share at `since`.
    share: f64,
    /// From when the share grows again (the end of the 429's pause).
    since: Duration,
    /// When the share was last lowered: a 429 to a request sent before
    /// that was answered to the old rate and does not lower it again.
    lowered_at: Option<Duration>,
}

impl Aimd {
    fn share(&self, now: Duration) -> f64 {
        let grown = now.saturating_sub(self.since).as_secs_f64() * RECOVERY_PER_SECOND;
        (self.share + grown).min(1.0)
    }
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budget")
            .field("requests", &self.requests)
            .field("window", &self.window)
            .field("paused_until", &self.paused_until())
            .finish_non_exhaustive()
    }
}

/// What the scheduler is doing, for metrics and health.
#[derive(Clone, Debug, PartialEq)]
pub struct BudgetReport {
    /// Requests per second allowed now, after slowing down for 429s.
    pub rate_limit: f64,
    /// Requests per second the configured budget sustains.
    pub configured_rate: f64,
    /// Per class, its grants in the last window as a share of the budget.
    pub shares: [(CallClass, f64); 4],
    /// Per class, callers waiting for a request.
    pub waiting: [(CallClass, usize); 4],
    /// Per class, requests granted since the start.
    pub granted: [(CallClass, u64); 4],
}

/// What a waiting caller does next.
enum Step {
    Granted(Duration),
    Sleep(Duration),
    Wait,
}

impl Budget {
    pub fn new(config: &ThrottleConfig, clock: SharedClock) -> Self {
        let (sustained, burst) = config.split();
        // Rounded up: a period a nanosecond short would let one more
        // request into a window.
        let period = u64::try_from(config.window.as_nanos().div_ceil(u128::from(sustained)))
            .map(Duration::from_nanos)
            .unwrap_or(Duration::MAX)
            .max(Duration::from_nanos(1));
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        // `with_period` only refuses a zero period, excluded above.
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        Budget {
            limiter: RateLimiter::direct_with_clock(quota, GovernorClock(clock.clone())),
            clock,
            period,
            requests: config.requests.max(1),
            window: config.window,
            state: Mutex::new(State {
                last_grant: None,
                paused_until: Duration::ZERO,
                waiting: Default::default(),
                next_ticket: 0,
                aimd: Aimd {
                    share: 1.0,
                    since: Duration::ZERO,
                    lowered_at: None,
                },
                recent: VecDeque::new(),
                granted: [0; 4],
            }),
            wake: Notify::new(),
        }
    }

    /// Waits for a pause to end, for every caller of a higher class (and
    /// earlier callers of this one), and for a request's share of the
    /// budget. Returns the clock time of the grant.
    pub async fn acquire(&self, class: CallClass) -> Duration {
        let ticket = {
            let mut state = lock(&self.state);
            let ticket = state.next_ticket;
            state.next_ticket += 1;
            state.waiting[class.index()].push_back(ticket);
            ticket
        };
        // Leaves the queue if the caller gives up (dropped future).
        let mut queued = Queued {
            budget: self,
            class,
            ticket,
            armed: true,
        };
        loop {
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.step(class, ticket) {
                Step::Granted(at) => {
                    queued.armed = false;
                    self.wake.notify_waiters();
                    return at;
                }
                Step::Sleep(until) => {
                    tokio::select! {
                        () = self.clock.sleep_until(until) => {}
                        () = notified => {}
                    }
                }
                Step::Wait => notified.await,
            }
        }
    }

    fn step(&self, class: CallClass, ticket: u64) -> Step {
        let now = self.clock.now();
        let mut state = lock(&self.state);
        if state.paused_until > now {
            return Step::Sleep(state.paused_until);
        }
        let head = state.waiting.iter().find_map(|q| q.front().copied());
        if head != Some(ticket) {
            return Step::Wait;
        }
        let share = state.aimd.share(now).max(MIN_RATE_SHARE);
        // Paced below the budget after a 429: one request per lowered
        // period, no bursts, until the rate has recovered.
        if share < 1.0
            && let Some(last) = state.last_grant
        {
            let next = last.saturating_add(self.period.div_f64(share));
            if next > now {
                return Step::Sleep(next);
            }
        }
        if let Err(not_until) = self.limiter.check() {
            let wait = not_until.wait_time_from(Nanos::from(now));
            return Step::Sleep(now.saturating_add(wait.max(Duration::from_nanos(1))));
        }
        state.last_grant = Some(now);
        state.waiting[class.index()].pop_front();
        state.recent.push_back((now, class));
        state.granted[class.index()] += 1;
        let window = self.window;
        while state
            .recent
            .front()
            .is_some_and(|(t, _)| now.saturating_sub(*t) >= window)
        {
            state.recent.pop_front();
        }
        Step::Granted(now)
    }

    /// Stops every caller until `until` (clock time); a later pause wins.
    pub fn pause_until(&self, until: Duration) {
        let mut state = lock(&self.state);
        if until > state.paused_until {
            state.paused_until = until;
        }
    }

    /// The end of the current pause, if one is running.
    pub fn paused_until(&self) -> Option<Duration> {
        let until = lock(&self.state).paused_until;
        (until > self.clock.now()).then_some(until)
    }

    /// Graph answered 429 to a request granted at `sent_at`: the rate drops
    /// to [`DECREASE`] of what it is, unless it already dropped after that
    /// request left, or at the same instant (one storm, one decrease per
    /// round of requests). It
    /// grows back from the end of the current pause.
    pub fn throttled(&self, sent_at: Duration) {
        let now = self.clock.now();
        let mut state = lock(&self.state);
        if state.aimd.lowered_at.is_some_and(|at| sent_at <= at) {
            return;
        }
        let share = (state.aimd.share(now) * DECREASE).max(MIN_RATE_SHARE);
        state.aimd = Aimd {
            share,
            since: state.paused_until.max(now),
            lowered_at: Some(now),
        };
        tracing::info!(
            rate_share = share,
            "Graph throttled us: the request rate is lowered"
        );
    }

    /// Requests per second the budget sustains when no 429 slowed it.
    pub fn configured_rate(&self) -> f64 {
        1.0 / self.period.as_secs_f64().max(1e-9)
    }

    /// Requests per second allowed now, after slowing down for 429s.
    pub fn rate_limit(&self) -> f64 {
        let share = lock(&self.state).aimd.share(self.clock.now());
        self.configured_rate() * share.max(MIN_RATE_SHARE)
    }

    /// Requests per second `class` may count on now: the rate limit less
    /// what the classes before it used over the last [`RATE_WINDOW`] and
    /// what they have waiting. Never below 0.
    pub fn spare_rate(&self, class: CallClass) -> f64 {
        let now = self.clock.now();
        let limit = self.rate_limit();
        let state = lock(&self.state);
        let used = state
            .recent
            .iter()
            .rev()
            .take_while(|(t, _)| now.saturating_sub(*t) < RATE_WINDOW)
            .filter(|(_, c)| *c < class)
            .count();
        let waiting: usize = state.waiting[..class.index()]
            .iter()
            .map(VecDeque::len)
            .sum();
        let demand = (used + waiting) as f64 / RATE_WINDOW.as_secs_f64();
        (limit - demand).max(0.0)
    }

    /// What the scheduler is doing now.
    pub fn report(&self) -> BudgetReport {
        let now = self.clock.now();
        let rate_limit = self.rate_limit();
        let state = lock(&self.state);
        let mut granted = [0usize; 4];
        for (t, class) in &state.recent {
            if now.saturating_sub(*t) < self.window {
                granted[class.index()] += 1;
            }
        }
        let requests = f64::from(self.requests);
        BudgetReport {
            rate_limit,
            configured_rate: self.configured_rate(),
            shares: CallClass::ALL.map(|c| (c, granted[c.index()] as f64 / requests)),
            waiting: CallClass::ALL.map(|c| (c, state.waiting[c.index()].len())),
            granted: CallClass::ALL.map(|c| (c, state.granted[c.index()])),
        }
    }
}

/// A caller's place in the queue, given up if its future is dropped.
struct Queued<'a> {
    budget: &'a Budget,
    class: CallClass,
    ticket: u64,
    armed: bool,
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        {
            let mut state = lock(&self.budget.state);
            let queue = &mut state.waiting[self.class.index()];
            if let Some(at) = queue.iter().position(|t| *t == self.ticket) {
                queue.remove(at);
            }
        }
        self.budget.wake.notify_waiters();
    }
}

/// A poisoned lock only means another caller panicked mid-update of plain
/// numbers: the values are still usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests;
