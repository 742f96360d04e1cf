//! The router's timers: offer timeouts (RONA), maximum waits, the end of an
//! agent's wrap-up or back-off. Every input first runs those that are due
//! (and forgets contacts that ended long enough ago); the caller asks when
//! the next one is due and calls `tick` then.

use super::*;

/// Ended contacts kept (so a late `complete` gets "already completed", not
/// "unknown"), at most this many...
const MAX_ENDED: usize = 10_000;
/// ...and for at most this long.
const ENDED_KEPT: Duration = Duration::from_secs(24 * 3600);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Timer {
    /// An offer's timeout (RONA).
    Offer(u64),
    /// A waiting contact's maximum wait.
    Overflow(u64),
    /// An agent's wrap-up or back-off ends.
    Agent(usize),
}

impl Router {
    /// Runs what is due at `now`.
    pub fn tick(&mut self, now: Timestamp, out: &mut Vec<RoutingDecision>) {
        self.advance(now, out);
    }

    /// When [`tick`](Self::tick) next has something to do.
    pub fn next_wakeup(&self) -> Option<Timestamp> {
        self.timers.first().map(|(at, _)| *at)
    }

    /// Arms a contact's maximum-wait timer in its current queue (one in the
    /// past fires at once and overflows it on the next dispatch).
    pub(super) fn arm_overflow(&mut self, serial: u64) {
        let Some(c) = self.contacts.get(&serial) else {
            return;
        };
        let wait = self
            .queue_index
            .get(&c.queue)
            .and_then(|q| self.queues[*q].settings.max_wait);
        if let Some(wait) = wait {
            self.timers
                .insert((c.queued_at + wait, Timer::Overflow(serial)));
        }
    }

    /// Brings the router up to `now` before an input: due timers, then the
    /// dispatch they call for, so the input meets a settled router.
    pub(super) fn advance(&mut self, now: Timestamp, out: &mut Vec<RoutingDecision>) {
        self.run_timers(now, out);
        self.dispatch(now, out);
    }

    pub(super) fn run_timers(&mut self, now: Timestamp, out: &mut Vec<RoutingDecision>) {
        while let Some(&(at, timer)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            match timer {
                Timer::Offer(serial) => {
                    // A timer left from an earlier offer of the same contact
                    // is stale: only the current offer's own timer counts.
                    let due = self.contacts.get(&serial).is_some_and(
                        |c| matches!(c.phase, Phase::Offered { expires, .. } if expires == at),
                    );
                    if due {
                        self.miss(now, serial, Miss::NoAnswer, out);
                    }
                }
                Timer::Overflow(serial) => self.pending_contacts.push(serial),
                Timer::Agent(slot) => self.refresh(slot, now),
            }
        }
        while let Some(&serial) = self.ended.front() {
            let old = self.contacts.get(&serial).is_none_or(|c| match c.phase {
                Phase::Ended { at, .. } => at + ENDED_KEPT <= now,
                _ => true,
            });
            if !old && self.ended.len() <= MAX_ENDED {
                break;
            }
            self.ended.pop_front();
            if let Some(c) = self.contacts.remove(&serial) {
                self.contact_index.remove(&c.id);
                self.dirty_contacts.remove(&serial);
                self.removed_contacts.push(c.id);
            }
        }
    }
}
