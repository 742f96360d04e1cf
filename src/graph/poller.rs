//! The presence poller: reads every linked user's presence on a schedule
//! derived from the user count and the request budget, and passes on only
//! what changed.
//!
//! Arithmetic of the default target: 50,000 users in batches of 650 are 77
//! calls per round; a round every 5 s is 15.4 calls/s, 462 per 30 s, well
//! under the 1,500 per 30 s budget, and the rest is left to writes and the
//! directory. Past what the budget's share allows, the round gets longer
//! instead of the budget being overrun.
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

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::GraphClient;
use super::clock::SharedClock;
use super::error::GraphError;
use super::model::GraphPresence;
use super::presence::{MAX_IDS_PER_CALL, PresenceRead};
use super::throttle::ThrottleConfig;
use crate::presence::Presence;
use crate::stop::Stop;

/// What the poller aims for.
#[derive(Clone, Debug, PartialEq)]
pub struct PollTarget {
    /// Every user is read at least this often, as far as the budget allows.
    pub max_staleness: Duration,
    /// The share of the budget's sustained rate polling may use; the rest is
    /// kept for writes, keep-alives and the directory.
    pub budget_share: f64,
    /// Ids per call, at most 650.
    pub batch_size: usize,
}

impl Default for PollTarget {
    fn default() -> Self {
        PollTarget {
            max_staleness: Duration::from_secs(5),
            budget_share: 0.6,
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
    /// per second.
    pub fn new(users: usize, rate: f64, target: &PollTarget) -> PollPlan {
        let batch_size = target.batch_size.clamp(1, MAX_IDS_PER_CALL);
        let count = users.div_ceil(batch_size);
        let allowed = rate * target.budget_share.clamp(0.0, 1.0);
        let floor = target.max_staleness.min(MAX_INTERVAL);
        let interval = if count == 0 {
            floor
        } else {
            let needed = count as f64 / allowed;
            if needed.is_finite() && needed < MAX_INTERVAL.as_secs_f64() {
                // Rounded up, so the rate stays under `allowed`.
                (Duration::from_secs_f64(needed) + Duration::from_micros(1)).max(floor)
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

/// The last presence seen of a user.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    presence: Presence,
    sequence_number: Option<String>,
}

/// Whether `new` is news after `old`: another value or another version, but
/// never an older version (a read that overtook a newer one).
fn is_news(old: Option<&Seen>, new: &GraphPresence) -> bool {
    let Some(old) = old else { return true };
    if let (Some(before), Some(now)) = (&old.sequence_number, &new.sequence_number)
        && now < before
    {
        return false;
    }
    old.presence != new.presence || old.sequence_number != new.sequence_number
}

/// Reads the linked users' presence, round after round.
pub struct Poller<S> {
    source: Arc<S>,
    clock: SharedClock,
    /// Requests per second the budget sustains.
    rate: f64,
    target: PollTarget,
    users: watch::Receiver<Arc<Vec<String>>>,
    max_in_flight: usize,
    /// The last presence seen of each user, and the number of the read
    /// that brought it.
    seen: HashMap<String, (Seen, u64)>,
    /// Where the poller says how its last read went: `None` answered,
    /// else the failure of Graph as a whole it met.
    health: Option<watch::Sender<Option<GraphError>>>,
}

/// A read that came back: its number (in the order they were sent), how
/// many ids it asked for, and what Graph said.
type Done = (u64, usize, Result<PresenceRead, GraphError>);

impl<S: PresenceSource + 'static> Poller<S> {
    /// `users` holds the ids to poll; a new list takes effect at the next round.
    pub fn new(
        source: S,
        clock: SharedClock,
        rate: f64,
        target: PollTarget,
        users: watch::Receiver<Arc<Vec<String>>>,
    ) -> Self {
        Poller {
            source: Arc::new(source),
            clock,
            rate,
            target,
            users,
            max_in_flight: MAX_IN_FLIGHT,
            seen: HashMap::new(),
            health: None,
        }
    }

    /// Reports how each read went on `health`: `None` after one Graph
    /// answered, the error after one that failed for Graph as a whole
    /// (not one user's refusal).
    pub fn report_health(mut self, health: watch::Sender<Option<GraphError>>) -> Self {
        self.health = Some(health);
        self
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
    pub async fn run(mut self, updates: mpsc::Sender<PresenceUpdate>, stop: Stop) {
        let mut reads: JoinSet<Done> = JoinSet::new();
        let max_in_flight = self.max_in_flight;
        let mut sent: u64 = 0;
        let mut start = self.clock.now();
        loop {
            let ids = self.users.borrow_and_update().clone();
            let plan = PollPlan::new(ids.len(), self.rate, &self.target);
            let linked: HashSet<&str> = ids.iter().map(String::as_str).collect();
            self.seen.retain(|id, _| linked.contains(id.as_str()));
            tracing::debug!(users = ids.len(), batches = plan.batches.len(), interval = ?plan.interval, in_flight = reads.len(), "poll round");
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
                    () = updates.closed() => return,
                    Some(done) = reads.join_next(), if !reads.is_empty() => {
                        let done = match done {
                            Ok(done) => done,
                            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                            Err(_) => continue,
                        };
                        if !self.pass_on(done, &linked, &updates, &stop).await {
                            return;
                        }
                    }
                    () = self.clock.sleep_until(at), if may_wake => {
                        if !due {
                            break;
                        }
                        let source = self.source.clone();
                        let ids = ids.clone();
                        let batch = plan.batches[next].clone();
                        let number = sent;
                        reads.spawn(async move {
                            let read = source.read(&ids[batch.clone()]).await;
                            (number, batch.len(), read)
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
        (number, asked, read): Done,
        linked: &HashSet<&str>,
        updates: &mpsc::Sender<PresenceUpdate>,
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
        if let Some((id, error)) = read.refused.first() {
            tracing::warn!(users = read.refused.len(), first = %id, %error, "Graph refused these users' presence");
        }
        if let Some(unread) = &read.unread {
            tracing::warn!(ids = unread.ids.len(), error = %unread.error, "part of a presence poll batch failed");
        }
        for p in read.presences {
            // A user unlinked since the read left is not news.
            if !linked.contains(p.id.as_str()) || !self.remember(&p, number) {
                continue;
            }
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
            sequence_number: p.sequence_number.clone(),
        };
        match self.seen.get_mut(&p.id) {
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
                self.seen.insert(p.id.clone(), (fresh, read));
                true
            }
        }
    }
}

#[cfg(test)]
mod tests;
