//! The active node's gate: whether this node may still act on the outside
//! world (send a Graph call, answer an API request).
//!
//! It is open while the node's lease is valid by its own monotonic clock
//! (the deadline the lease rules give: the moment the last successful
//! renewal was *sent*, plus the TTL, less a margin) and it was not closed.
//! Checking it is two atomic loads and a clock read, so the one Graph
//! request path and the API check it on every call and every answer. A node
//! resumed after a SIGSTOP longer than its lease finds its deadline past
//! before it sends anything; a fenced append or a lost renewal closes it for
//! good. Each term as active gets a new gate.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// See the module documentation.
#[derive(Debug)]
pub struct Gate {
    origin: Instant,
    /// Nanoseconds after `origin` the gate stays open until; `u64::MAX`: no
    /// deadline (a single node).
    until: AtomicU64,
    closed: AtomicBool,
    why: Mutex<Option<String>>,
    changed: watch::Sender<bool>,
}

impl Gate {
    /// A gate with no deadline: open until [`Gate::close`] (a single node).
    pub fn open() -> Gate {
        Gate::with_deadline(None)
    }

    /// A gate open until `deadline` (the lease's), extended by renewals.
    pub fn until(deadline: Instant) -> Gate {
        Gate::with_deadline(Some(deadline))
    }

    fn with_deadline(deadline: Option<Instant>) -> Gate {
        let origin = Instant::now();
        let gate = Gate {
            origin,
            until: AtomicU64::new(u64::MAX),
            closed: AtomicBool::new(false),
            why: Mutex::new(None),
            changed: watch::channel(false).0,
        };
        if let Some(deadline) = deadline {
            gate.until.store(gate.nanos_at(deadline), Ordering::SeqCst);
        }
        gate
    }

    fn nanos_at(&self, at: Instant) -> u64 {
        let nanos = at.saturating_duration_since(self.origin).as_nanos();
        u64::try_from(nanos).unwrap_or(u64::MAX - 1)
    }

    /// Moves the deadline to `deadline` if that is later (a renewal that
    /// answered late never shortens a later one's).
    pub fn extend(&self, deadline: Instant) {
        let at = self.nanos_at(deadline);
        self.until.fetch_max(at, Ordering::SeqCst);
    }

    /// Closes the gate for good, with the reason people are told.
    pub fn close(&self, why: impl Into<String>) {
        if !self.closed.swap(true, Ordering::SeqCst) {
            if let Ok(mut slot) = self.why.lock() {
                *slot = Some(why.into());
            }
            self.changed.send_replace(true);
        }
    }

    /// Whether the node may act now.
    pub fn may_act(&self) -> bool {
        self.may_act_at(Instant::now())
    }

    /// [`Gate::may_act`] at a given instant.
    pub fn may_act_at(&self, now: Instant) -> bool {
        if self.closed.load(Ordering::SeqCst) {
            return false;
        }
        let until = self.until.load(Ordering::SeqCst);
        until == u64::MAX || self.nanos_at(now) < until
    }

    /// Why the node may not act, in words; `None` while it may.
    pub fn why_not(&self) -> Option<String> {
        if self.closed.load(Ordering::SeqCst) {
            let why = self.why.lock().ok().and_then(|w| w.clone());
            return Some(why.unwrap_or_else(|| "this node stepped down".into()));
        }
        if self.may_act() {
            None
        } else {
            Some(
                "this node's lease is not confirmed (its renewal has not been answered); it acts again once it is, or steps down"
                    .into(),
            )
        }
    }

    /// How long the gate stays open from `now` (`None`: no deadline).
    pub fn remaining_at(&self, now: Instant) -> Option<Duration> {
        let until = self.until.load(Ordering::SeqCst);
        (until != u64::MAX).then(|| Duration::from_nanos(until.saturating_sub(self.nanos_at(now))))
    }

    /// Turns true when the gate is closed.
    pub fn closed(&self) -> watch::Receiver<bool> {
        self.changed.subscribe()
    }

    /// Whether [`Gate::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_until_the_deadline_then_shut() {
        let now = Instant::now();
        let gate = Gate::until(now + Duration::from_secs(5));
        assert!(gate.may_act_at(now));
        assert!(gate.may_act_at(now + Duration::from_millis(4_999)));
        assert!(!gate.may_act_at(now + Duration::from_secs(5)));
        assert!(!gate.may_act_at(now + Duration::from_secs(60)));
    }

    #[test]
    fn renewals_extend_but_never_shorten() {
        let now = Instant::now();
        let gate = Gate::until(now + Duration::from_secs(5));
        gate.extend(now + Duration::from_secs(8));
        gate.extend(now + Duration::from_secs(6));
        assert!(gate.may_act_at(now + Duration::from_millis(7_900)));
        assert!(!gate.may_act_at(now + Duration::from_secs(8)));
    }

    #[test]
    fn closing_is_for_good_and_says_why() {
        let gate = Gate::open();
        assert!(gate.may_act());
        assert_eq!(gate.why_not(), None);
        let mut closed = gate.closed();
        gate.close("fenced: another node appended");
        gate.extend(Instant::now() + Duration::from_secs(3600));
        assert!(!gate.may_act());
        assert!(gate.is_closed());
        assert!(*closed.borrow_and_update());
        assert_eq!(
            gate.why_not().as_deref(),
            Some("fenced: another node appended")
        );
        gate.close("a second reason is not kept");
        assert_eq!(
            gate.why_not().as_deref(),
            Some("fenced: another node appended")
        );
    }

    #[test]
    fn a_past_deadline_gives_its_reason() {
        let gate = Gate::until(Instant::now());
        assert!(!gate.may_act());
        assert!(gate.why_not().is_some_and(|w| w.contains("not confirmed")));
        assert_eq!(gate.remaining_at(Instant::now()), Some(Duration::ZERO));
        assert_eq!(Gate::open().remaining_at(Instant::now()), None);
    }
}
