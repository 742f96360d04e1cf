//! The presence poller: reads every linked user's presence on a round
//! derived from the budget that writes leave, and passes on only what
//! changed.
//!
//! The round: writes are served first by the budget's scheduler
//! ([`super::throttle::scheduler`]); at each round's start the poller asks
//! it for the spare rate (the rate limit, after any 429, less what writes
//! used lately) and reads as fast as that allows, bounded by
//! [`PollTarget::read_share_max`] of the rate limit (the most reads may take),
//! [`PollTarget::freshness_floor`] (every user at least that often, budget
//! allowing, however busy writes are) and [`PollTarget::round_min`] (never
//! more often than that).
//!
//! Arithmetic of the defaults against Microsoft's 1,500 requests per 30 s
//! (48.4/s sustained after the burst): reads may take 60 %, 29 calls/s. With
//! writes idle, 10,000 users are 16 calls of 650 ids, a round of 0.55 s;
//! 50,000 users are 77 calls, a round of 2.65 s. When writes take all the
//! budget, the round falls back to the 5 s floor (77 calls in 5 s is 15.4
//! calls/s, 32 % of the budget), and the reads then only get what writes
//! leave. Past what the ceiling allows, the round gets longer instead of
//! the budget being overrun.
//!
//! Batches are spread evenly over the round rather than sent at once, so the
//! budget sees a steady trickle and every user's staleness is the round
//! length, not the round length plus a burst's queueing.
//!
//! Each batch leaves at its planned time whether or not the reads before it
//! have come back (up to [`MAX_IN_FLIGHT`] at once), so Graph's
//! latency does not stretch the round: at 200 ms a read, 77 sequential
//! reads would take 15 s. The throttle's budget still bounds the rate. A
//! read that comes back after a newer read of the same user is dropped.
//!
//! [`PollReport`] is what the poller tells `/metrics` and `/readyz`: the
//! round and the age of the oldest read.
//!
//! The users to read come as changes from the sync loop and are applied at
//! each round's start ([`PollUsers`]): no step and no round rebuilds the list.

use std::collections::HashMap;
use std::ops::Range;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::GraphClient;
use super::clock::SharedClock;
use super::error::GraphError;
use super::model::GraphPresence;
use super::presence::{MAX_IDS_PER_CALL, PresenceRead};
use super::throttle::{Budget, CallClass, ThrottleConfig};
use crate::config::BudgetConfig;
use crate::presence::Presence;
use crate::stop::Stop;

pub use self::gate::SequenceGate;
pub use self::users::{
    PollChange, PollChanges, PollUsers, PollUsersSender, poll_changes, poll_users,
};

/// What the poller aims for.
#[derive(Clone, Debug, PartialEq)]
pub struct PollTarget {
    /// The shortest round: no user is read more often than this.
    pub round_min: Duration,
    /// The largest share of the budget's rate (after any 429) reads may
    /// take; the rest is kept for writes, keep-alives and the directory.
    pub read_share_max: f64,
    /// Every user is read at least this often, as far as the budget and
    /// `read_share_max` allow, however busy writes are.
    pub freshness_floor: Duration,
    /// Ids per call, at most 650.
    pub batch_size: usize,
}

impl Default for PollTarget {
    fn default() -> Self {
        PollTarget::from_config(&BudgetConfig::default())
    }
}

impl PollTarget {
    /// The target the config's `[graph]` budget keys set.
    pub fn from_config(config: &BudgetConfig) -> Self {
        PollTarget {
            round_min: config.poll_round_min,
            read_share_max: config.read_share_max,
            freshness_floor: config.read_freshness_floor,
            batch_size: MAX_IDS_PER_CALL,
        }
    }
}

/// Reads in flight at once, by default; a batch due while this many are
/// out waits for one to come back. At the default budget's 29 reads a
/// second, 16 covers reads of up to half a second without delay.
pub const MAX_IN_FLIGHT: usize = 16;

/// Rounds never get longer than this, whatever the budget: a day-long round
/// means a configuration error, not a schedule.
const MAX_INTERVAL: Duration = Duration::from_secs(86_400);

/// One round of polling.
#[derive(Clone, Debug, PartialEq)]
pub struct PollPlan {
    /// The round's length: every user is read once per interval.
    pub interval: Duration,
    /// Index ranges into the id list, in order, each at most `batch_size`
    /// long, together covering every index exactly once.
    pub batches: Vec<Range<usize>>,
    /// When each batch is sent, from the round's start.
    pub offsets: Vec<Duration>,
}

impl PollPlan {
    /// The plan for `users` ids when the budget sustains `rate` requests
    /// per second and nothing else uses it.
    pub fn new(users: usize, rate: f64, target: &PollTarget) -> PollPlan {
        PollPlan::with_spare(users, rate, rate, target)
    }

    /// The plan for `users` ids when the budget sustains `rate` requests
    /// per second and the callers served before reads leave `spare` of it:
    /// reads take the spare rate, at least what the freshness floor needs,
    /// at most `read_share_max` of `rate`.
    pub fn with_spare(users: usize, rate: f64, spare: f64, target: &PollTarget) -> PollPlan {
        let batch_size = target.batch_size.clamp(1, MAX_IDS_PER_CALL);
        let count = users.div_ceil(batch_size);
        let sane = |r: f64| if r.is_nan() { 0.0 } else { r.max(0.0) };
        let ceiling = sane(rate) * sane(target.read_share_max).min(1.0);
        let floor_rate = count as f64 / target.freshness_floor.as_secs_f64().max(1e-3);
        let allowed = sane(spare).max(floor_rate).min(ceiling);
        let shortest = target.round_min.min(MAX_INTERVAL);
        let interval = if count == 0 {
            shortest
        } else {
            let needed = count as f64 / allowed;
            if needed.is_finite() && needed < MAX_INTERVAL.as_secs_f64() {
                // Rounded up, so the rate stays under `allowed`.
                (Duration::from_secs_f64(needed) + Duration::from_micros(1)).max(shortest)
            } else {
                MAX_INTERVAL
            }
        };
        let mut batches = Vec::with_capacity(count);
        // Even sizes rather than full batches and a stub.
        if let (Some(base), Some(extra)) = (users.checked_div(count), users.checked_rem(count)) {
            let mut start = 0;
            for i in 0..count {
                let len = base + usize::from(i < extra);
                batches.push(start..start + len);
                start += len;
            }
        }
        let offsets = (0..count)
            .map(|i| interval.mul_f64(i as f64 / count as f64))
            .collect();
        PollPlan {
            interval,
            batches,
            offsets,
        }
    }

    /// The plan under a throttle's budget.
    pub fn for_budget(users: usize, budget: &ThrottleConfig, target: &PollTarget) -> PollPlan {
        PollPlan::new(users, budget.sustained_rate(), target)
    }

    /// Requests per second this plan makes.
    pub fn request_rate(&self) -> f64 {
        self.batches.len() as f64 / self.interval.as_secs_f64()
    }
}

/// How the poller is doing, for `/metrics` and `/readyz`.
#[derive(Clone, Debug, PartialEq)]
pub struct PollStatus {
    /// The current round: every user is read once per round.
    pub round: Duration,
    /// Users polled.
    pub users: usize,
    /// Requests per second the round uses.
    pub read_rate: f64,
    /// How long ago the least recently read user was read (from when that
    /// read was sent); `None` with no users. A user not read yet counts
    /// from the poller's start.
    pub oldest_read_age: Option<Duration>,
}

/// What the poller publishes as it goes; cheap to read at any time.
#[derive(Debug)]
pub struct PollReport {
    clock: SharedClock,
    state: Mutex<ReportState>,
}

#[derive(Debug)]
struct ReportState {
    round: Duration,
    users: usize,
    read_rate: f64,
    /// When each batch of the current plan was last read in full.
    read_at: Vec<Option<Duration>>,
    /// When the poller started: the age of what was never read.
    started: Duration,
}

impl PollReport {
    pub fn new(clock: SharedClock) -> Arc<PollReport> {
        let started = clock.now();
        Arc::new(PollReport {
            clock,
            state: Mutex::new(ReportState {
                round: Duration::ZERO,
                users: 0,
                read_rate: 0.0,
                read_at: Vec::new(),
                started,
            }),
        })
    }

    /// The clock the poller must run on for ages to be right.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    pub fn status(&self) -> PollStatus {
        let now = self.clock.now();
        let state = lock(&self.state);
        let oldest = state
            .read_at
            .iter()
            .map(|at| at.unwrap_or(state.started))
            .min();
        PollStatus {
            round: state.round,
            users: state.users,
            read_rate: state.read_rate,
            oldest_read_age: (state.users > 0)
                .then(|| now.saturating_sub(oldest.unwrap_or(state.started))),
        }
    }

    /// A round starts with `plan` for `users` ids. Batches are index ranges
    /// of a list that may have changed: when their number changes, every
    /// batch takes the oldest read time known, so freshness is never
    /// overstated.
    fn round(&self, plan: &PollPlan, users: usize) {
        let mut state = lock(&self.state);
        state.round = plan.interval;
        state.users = users;
        state.read_rate = plan.request_rate();
        if state.read_at.len() != plan.batches.len() {
            let oldest = if state.read_at.iter().any(Option::is_none) {
                None
            } else {
                state.read_at.iter().flatten().min().copied()
            };
            state.read_at = vec![oldest; plan.batches.len()];
        }
    }

    /// Batch `batch` was read in full from a read sent at `sent`.
    fn read(&self, batch: usize, sent: Duration) {
        let mut state = lock(&self.state);
        if let Some(at) = state.read_at.get_mut(batch) {
            *at = Some(at.map_or(sent, |t| t.max(sent)));
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A presence that changed since the poller last saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresenceUpdate {
    pub user_id: String,
    pub presence: Presence,
    pub sequence_number: Option<String>,
    /// Everything Graph said (status message, out of office, ...).
    pub graph: GraphPresence,
}

/// Where the poller reads presences from: Graph, or a test's fake.
pub trait PresenceSource: Send + Sync {
    fn read<'a>(
        &'a self,
        ids: &'a [String],
    ) -> Pin<Box<dyn Future<Output = Result<PresenceRead, GraphError>> + Send + 'a>>;
}

impl PresenceSource for GraphClient {
    fn read<'a>(
        &'a self,
        ids: &'a [String],
    ) -> Pin<Box<dyn Future<Output = Result<PresenceRead, GraphError>> + Send + 'a>> {
        Box::pin(self.get_presences(ids))
    }
}

/// Graph read as the directory's slower tier: every call is
/// [`CallClass::Directory`], served after every write and agent read.
pub struct DirectoryReads(pub GraphClient);

impl PresenceSource for DirectoryReads {
    fn read<'a>(
        &'a self,
        ids: &'a [String],
    ) -> Pin<Box<dyn Future<Output = Result<PresenceRead, GraphError>> + Send + 'a>> {
        Box::pin(self.0.get_presences_as(CallClass::Directory, ids))
    }
}

/// Graph read as reconciliation of subscribed users: every call is
/// [`CallClass::Reconcile`], served after every other class.
pub struct ReconcileReads(pub GraphClient);

impl PresenceSource for ReconcileReads {
    fn read<'a>(
        &'a self,
        ids: &'a [String],
    ) -> Pin<Box<dyn Future<Output = Result<PresenceRead, GraphError>> + Send + 'a>> {
        Box::pin(self.0.get_presences_as(CallClass::Reconcile, ids))
    }
}

/// Told of every presence that is news, as the poller finds it: the
/// directory view keeps everyone's presence this way.
pub trait PresenceObserver: Send + Sync {
    fn observed(&self, user_id: &str, presence: &Presence);
}

/// The last presence seen of a user.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    presence: Presence,
    sequence_number: Option<SequenceText>,
}

/// A presence's sequence number as Graph sent it, held without an
/// allocation of its own when it is short (Graph's are, and one is kept for
/// every user read): compared byte by byte, as the text is.
#[derive(Clone, Debug, PartialEq, Eq)]
enum SequenceText {
    Inline {
        len: u8,
        bytes: [u8; SequenceText::INLINE],
    },
    Boxed(Box<str>),
}

impl SequenceText {
    const INLINE: usize = 22;

    fn new(text: &str) -> Self {
        match u8::try_from(text.len()) {
            Ok(len) if text.len() <= Self::INLINE => {
                let mut bytes = [0; Self::INLINE];
                bytes[..text.len()].copy_from_slice(text.as_bytes());
                SequenceText::Inline { len, bytes }
            }
            _ => SequenceText::Boxed(text.into()),
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            SequenceText::Inline { len, bytes } => &bytes[..usize::from(*len).min(Self::INLINE)],
            SequenceText::Boxed(text) => text.as_bytes(),
        }
    }
}

/// Whether `new` is news after `old`: another value or another version, but
/// never an older version (a read that overtook a newer one).
fn is_news(old: Option<&Seen>, new: &GraphPresence) -> bool {
    let Some(old) = old else { return true };
    let before = old.sequence_number.as_ref().map(SequenceText::as_bytes);
    let now = new.sequence_number.as_deref().map(str::as_bytes);
    if let (Some(before), Some(now)) = (before, now)
        && now < before
    {
        return false;
    }
    old.presence != new.presence || before != now
}

/// Reads the linked users' presence, round after round.
pub struct Poller<S> {
    source: Arc<S>,
    clock: SharedClock,
    /// Requests per second the budget sustains, when no scheduler says
    /// what is spare.
    rate: f64,
    /// The budget's scheduler: the round follows its spare rate.
    budget: Option<Arc<Budget>>,
    report: Arc<PollReport>,
    target: PollTarget,
    users: PollUsers,
    max_in_flight: usize,
    /// The last presence seen of each user, and the number of the read
    /// that brought it; keyed by the id the list of users holds.
    seen: HashMap<Arc<str>, (Seen, u64)>,
    /// Where the poller says how its last read went: `None` answered,
    /// else the failure of Graph as a whole it met.
    health: Option<watch::Sender<Option<GraphError>>>,
    /// The budget class whose spare rate sizes the round.
    class: CallClass,
    observer: Option<Arc<dyn PresenceObserver>>,
    /// Shared with the other sources of presence, when there are any.
    gate: Option<Arc<SequenceGate>>,
}

/// A read that came back: its number (in the order they were sent), its
/// batch in the round's plan, when it was sent, how many ids it asked for,
/// and what Graph said.
type Done = (
    u64,
    usize,
    Duration,
    usize,
    Result<PresenceRead, GraphError>,
);

impl<S: PresenceSource + 'static> Poller<S> {
    /// `users` holds the ids to poll; changes sent to it take effect at the
    /// next round.
    pub fn new(
        source: S,
        clock: SharedClock,
        rate: f64,
        target: PollTarget,
        users: PollUsers,
    ) -> Self {
        let report = PollReport::new(clock.clone());
        Poller {
            source: Arc::new(source),
            clock,
            rate,
            budget: None,
            report,
            target,
            users,
            max_in_flight: MAX_IN_FLIGHT,
            seen: HashMap::new(),
            health: None,
            class: CallClass::AgentRead,
            observer: None,
            gate: None,
        }
    }

    /// Sizes the round from the spare rate of `class` (the agent poller's
    /// is [`CallClass::AgentRead`], the default); its reads must spend the
    /// budget as the same class (see [`DirectoryReads`]).
    pub fn class(mut self, class: CallClass) -> Self {
        self.class = class;
        self
    }

    /// Tells `observer` of every presence that is news.
    pub fn observe(mut self, observer: Arc<dyn PresenceObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Passes on only what `gate` lets through: what no other source of
    /// presence has already overtaken.
    pub fn gate(mut self, gate: Arc<SequenceGate>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Reports how each read went on `health`: `None` after one Graph
    /// answered, the error after one that failed for Graph as a whole
    /// (not one user's refusal).
    pub fn report_health(mut self, health: watch::Sender<Option<GraphError>>) -> Self {
        self.health = Some(health);
        self
    }

    /// Sizes each round from what `budget`'s scheduler leaves to agent
    /// reads, instead of the fixed rate given to [`Poller::new`].
    pub fn budget(mut self, budget: Arc<Budget>) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Publishes the round and read freshness on `report`.
    pub fn publish(mut self, report: Arc<PollReport>) -> Self {
        self.report = report;
        self
    }

    /// What the poller publishes.
    pub fn report(&self) -> &Arc<PollReport> {
        &self.report
    }

    /// The plan for this round: from the scheduler's spare rate when there
    /// is one.
    fn plan(&self, users: usize) -> PollPlan {
        match &self.budget {
            Some(budget) => PollPlan::with_spare(
                users,
                budget.rate_limit(),
                budget.spare_rate(self.class),
                &self.target,
            ),
            None => PollPlan::new(users, self.rate, &self.target),
        }
    }

    fn health(&self, outcome: Option<&GraphError>) {
        if let Some(health) = &self.health {
            health.send_replace(outcome.cloned());
        }
    }

    /// At most `n` reads in flight at once (at least 1).
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n.max(1);
        self
    }

    /// Polls until `stop` is given (or its handle goes) or nobody listens
    /// to `updates` any more. Reads still in flight then are abandoned.
    pub async fn run(self, updates: mpsc::Sender<PresenceUpdate>, stop: Stop) {
        self.run_to(Some(updates), stop).await;
    }

    /// Polls until `stop` is given, telling only the observer what is news.
    pub async fn run_observed(self, stop: Stop) {
        self.run_to(None, stop).await;
    }

    async fn run_to(mut self, updates: Option<mpsc::Sender<PresenceUpdate>>, stop: Stop) {
        let closed = async {
            match &updates {
                Some(updates) => updates.closed().await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(closed);
        let mut reads: JoinSet<Done> = JoinSet::new();
        let max_in_flight = self.max_in_flight;
        let mut sent: u64 = 0;
        let mut start = self.clock.now();
        loop {
            // The list stays as it is until the next round: the plan's
            // batches are ranges of it.
            for gone in self.users.refresh() {
                self.seen.remove(&gone);
            }
            let users = self.users.len();
            let plan = self.plan(users);
            self.report.round(&plan, users);
            tracing::debug!(users, batches = plan.batches.len(), interval = ?plan.interval, in_flight = reads.len(), "poll round");
            let mut next = 0;
            loop {
                let due = next < plan.batches.len();
                let at = match plan.offsets.get(next) {
                    Some(offset) => start.saturating_add(*offset),
                    None => start.saturating_add(plan.interval),
                };
                // A batch waits for room; the round's end does not.
                let may_wake = !due || reads.len() < max_in_flight;
                tokio::select! {
                    biased;
                    () = stop.stopped() => return,
                    () = &mut closed => return,
                    Some(done) = reads.join_next(), if !reads.is_empty() => {
                        let done = match done {
                            Ok(done) => done,
                            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                            Err(_) => continue,
                        };
                        if !self.pass_on(done, updates.as_ref(), &stop).await {
                            return;
                        }
                    }
                    () = self.clock.sleep_until(at), if may_wake => {
                        if !due {
                            break;
                        }
                        let source = self.source.clone();
                        let ids = self.users.slice(plan.batches[next].clone());
                        let number = sent;
                        let (index, at) = (next, self.clock.now());
                        reads.spawn(async move {
                            let read = source.read(&ids).await;
                            (number, index, at, ids.len(), read)
                        });
                        sent += 1;
                        next += 1;
                    }
                }
            }
            // The next round starts one interval after this one did; more
            // than a round behind (reads at their cap), it starts now.
            start = start.saturating_add(plan.interval);
            let now = self.clock.now();
            if now > start.saturating_add(plan.interval) {
                start = now;
            }
        }
    }

    /// Sends on what a read found that is news; false when the poller must
    /// stop (stopped, or nobody listens).
    async fn pass_on(
        &mut self,
        (number, batch, sent_at, asked, read): Done,
        updates: Option<&mpsc::Sender<PresenceUpdate>>,
        stop: &Stop,
    ) -> bool {
        let read = match read {
            Ok(read) => read,
            Err(error) => {
                tracing::warn!(ids = asked, %error, "presence poll batch failed");
                if error.is_outage() {
                    self.health(Some(&error));
                }
                return true;
            }
        };
        match read.unread.as_ref().map(|u| &u.error) {
            Some(error) if error.is_outage() => self.health(Some(error)),
            _ => self.health(None),
        }
        if read.unread.is_none() {
            self.report.read(batch, sent_at);
        }
        if let Some((id, error)) = read.refused.first() {
            tracing::warn!(users = read.refused.len(), first = %id, %error, "Graph refused these users' presence");
        }
        if let Some(unread) = &read.unread {
            tracing::warn!(ids = unread.ids.len(), error = %unread.error, "part of a presence poll batch failed");
        }
        for p in read.presences {
            // A user unlinked since the read left is not news.
            if !self.users.contains(&p.id) || !self.remember(&p, number) {
                continue;
            }
            if let Some(gate) = &self.gate
                && !gate.pass(&p.id, p.sequence_number.as_deref())
            {
                continue;
            }
            if let Some(observer) = &self.observer {
                observer.observed(&p.id, &p.presence);
            }
            let Some(updates) = updates else {
                continue;
            };
            let update = PresenceUpdate {
                user_id: p.id.clone(),
                presence: p.presence.clone(),
                sequence_number: p.sequence_number.clone(),
                graph: p,
            };
            match stop.unless_stopped(updates.send(update)).await {
                Some(Ok(())) => {}
                Some(Err(_)) | None => return false,
            }
        }
        true
    }

    /// Records `p`, brought by read number `read`; true when it is news. A
    /// read older than the one that brought what is known is never news.
    fn remember(&mut self, p: &GraphPresence, read: u64) -> bool {
        let fresh = Seen {
            presence: p.presence.clone(),
            sequence_number: p.sequence_number.as_deref().map(SequenceText::new),
        };
        match self.seen.get_mut(p.id.as_str()) {
            Some((_, last)) if *last > read => false,
            Some((old, last)) => {
                *last = read;
                if !is_news(Some(old), p) {
                    return false;
                }
                *old = fresh;
                true
            }
            None => {
                let id = self
                    .users
                    .shared(&p.id)
                    .unwrap_or_else(|| Arc::from(p.id.as_str()));
                self.seen.insert(id, (fresh, read));
                true
            }
        }
    }
}

mod gate;
#[cfg(test)]
mod tests;
mod users;
