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

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::GraphClient;
use super::clock::SharedClock;
use super::error::GraphError;
use super::model::GraphPresence;
use super::presence::{MAX_IDS_PER_CALL, PresenceRead};
use super::throttle::ThrottleConfig;
use crate::presence::Presence;

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
    source: S,
    clock: SharedClock,
    /// Requests per second the budget sustains.
    rate: f64,
    target: PollTarget,
    users: watch::Receiver<Arc<Vec<String>>>,
    seen: HashMap<String, Seen>,
}

impl<S: PresenceSource> Poller<S> {
    /// `users` holds the ids to poll; a new list takes effect at the next round.
    pub fn new(
        source: S,
        clock: SharedClock,
        rate: f64,
        target: PollTarget,
        users: watch::Receiver<Arc<Vec<String>>>,
    ) -> Self {
        Poller {
            source,
            clock,
            rate,
            target,
            users,
            seen: HashMap::new(),
        }
    }

    /// Polls until `stop` turns true (or its sender goes) or nobody listens
    /// to `updates` any more.
    pub async fn run(
        mut self,
        updates: mpsc::Sender<PresenceUpdate>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            let ids = self.users.borrow_and_update().clone();
            let plan = PollPlan::new(ids.len(), self.rate, &self.target);
            let start = self.clock.now();
            let linked: HashSet<&str> = ids.iter().map(String::as_str).collect();
            self.seen.retain(|id, _| linked.contains(id.as_str()));
            tracing::debug!(users = ids.len(), batches = plan.batches.len(), interval = ?plan.interval, "poll round");
            for (batch, offset) in plan.batches.iter().zip(&plan.offsets) {
                let wake = self.clock.sleep_until(start.saturating_add(*offset));
                if until_stopped(&mut stop, wake).await.is_none() {
                    return;
                }
                let read = self.source.read(&ids[batch.clone()]);
                let Some(read) = until_stopped(&mut stop, read).await else {
                    return;
                };
                match read {
                    Ok(read) => {
                        if let Some((id, error)) = read.refused.first() {
                            tracing::warn!(users = read.refused.len(), first = %id, %error, "Graph refused these users' presence");
                        }
                        if let Some(unread) = &read.unread {
                            tracing::warn!(ids = unread.ids.len(), error = %unread.error, "part of a presence poll batch failed");
                        }
                        for p in read.presences {
                            if !self.remember(&p) {
                                continue;
                            }
                            let update = PresenceUpdate {
                                user_id: p.id.clone(),
                                presence: p.presence.clone(),
                                sequence_number: p.sequence_number.clone(),
                                graph: p,
                            };
                            if updates.send(update).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(error) => {
                        tracing::warn!(ids = batch.len(), %error, "presence poll batch failed");
                    }
                }
            }
            let wake = self.clock.sleep_until(start.saturating_add(plan.interval));
            if until_stopped(&mut stop, wake).await.is_none() {
                return;
            }
        }
    }

    /// Records `p`; true when it is news.
    fn remember(&mut self, p: &GraphPresence) -> bool {
        if !is_news(self.seen.get(&p.id), p) {
            return false;
        }
        self.seen.insert(
            p.id.clone(),
            Seen {
                presence: p.presence.clone(),
                sequence_number: p.sequence_number.clone(),
            },
        );
        true
    }
}

/// Runs `work` unless `stop` says stop first; `None` when stopped.
async fn until_stopped<F: Future>(stop: &mut watch::Receiver<bool>, work: F) -> Option<F::Output> {
    if *stop.borrow_and_update() {
        return None;
    }
    tokio::select! {
        out = work => Some(out),
        _ = async {
            loop {
                if stop.changed().await.is_err() || *stop.borrow_and_update() {
                    return;
                }
            }
        } => None,
    }
}

#[cfg(test)]
mod tests;
