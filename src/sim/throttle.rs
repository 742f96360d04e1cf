//! The request budget: at most `budget` Graph calls in any 30-second window.
//!
//! A sliding window (a log of admitted calls) rather than fixed buckets: a
//! fixed window lets a client send twice the budget across a boundary, which
//! would hide exactly the bursts the daemon's governor must prevent. The log
//! holds at most `budget` timestamps, so memory is bounded by the budget.
//! Refused calls do not consume budget (a client that hammers after a 429 is
//! refused, but does not push its own recovery further out).

use std::collections::VecDeque;
use std::time::Duration;

use crate::time::Timestamp;

/// Graph's presence window.
pub const WINDOW: Duration = Duration::from_secs(30);

/// Graph's documented presence budget per app per tenant.
pub const DEFAULT_BUDGET: u32 = 1_500;

#[derive(Clone, Debug)]
pub struct Throttle {
    /// `None`: unlimited.
    budget: Option<u32>,
    admitted: VecDeque<Timestamp>,
    refused: u64,
}

/// A refusal: how long until a call would be admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl RetryAfter {
    /// Seconds as Graph writes them, decimals allowed (`2.128`), never 0.
    pub fn header_value(&self) -> String {
        let millis = self.0.as_millis().max(1);
        let text = format!("{}.{:03}", millis / 1000, millis % 1000);
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

impl Throttle {
    pub fn new(budget: Option<u32>) -> Self {
        Throttle {
            budget,
            admitted: VecDeque::new(),
            refused: 0,
        }
    }

    pub fn budget(&self) -> Option<u32> {
        self.budget
    }

    /// Takes effect on the next call; calls already in the window still count.
    pub fn set_budget(&mut self, budget: Option<u32>) {
        self.budget = budget;
    }

    /// Admits (and counts) one call at `now`, or says when to retry.
    pub fn admit(&mut self, now: Timestamp) -> Result<(), RetryAfter> {
        while let Some(first) = self.admitted.front() {
            if now.since(*first) >= WINDOW {
                self.admitted.pop_front();
            } else {
                break;
            }
        }
        let Some(budget) = self.budget else {
            // Unlimited: keep no log at all.
            self.admitted.clear();
            return Ok(());
        };
        let budget = usize::try_from(budget).unwrap_or(usize::MAX);
        if self.admitted.len() < budget {
            self.admitted.push_back(now);
            return Ok(());
        }
        self.refused += 1;
        // One call is admitted again once enough of the logged calls have
        // left the window to bring the count below the budget (the budget
        // may have shrunk below the log's length).
        let leaving = self.admitted.len() - budget;
        let wait = match self.admitted.get(leaving) {
            Some(at) => WINDOW.saturating_sub(now.since(*at)),
            None => WINDOW,
        };
        Err(RetryAfter(wait.max(Duration::from_millis(1))))
    }

    /// How many calls were refused with a 429 so far.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Calls counted in the window ending at the last `admit`.
    pub fn in_window(&self) -> usize {
        self.admitted.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Timestamp {
        Timestamp::from_micros(1_000_000_000 + ms * 1000)
    }

    #[test]
    fn admits_the_budget_then_refuses_until_the_oldest_call_leaves() {
        let mut throttle = Throttle::new(Some(3));
        assert!(throttle.admit(t(0)).is_ok());
        assert!(throttle.admit(t(1000)).is_ok());
        assert!(throttle.admit(t(2000)).is_ok());
        let refused = throttle.admit(t(2500)).unwrap_err();
        assert_eq!(refused, RetryAfter(Duration::from_millis(27_500)));
        assert_eq!(refused.header_value(), "27.5");
        assert_eq!(throttle.refused(), 1);
        // Sliding: the first call leaves at 30 s, so one more fits then.
        assert!(throttle.admit(t(30_000)).is_ok());
        assert!(throttle.admit(t(30_001)).is_err());
        assert!(throttle.admit(t(31_000)).is_ok());
    }

    #[test]
    fn refused_calls_do_not_use_budget() {
        let mut throttle = Throttle::new(Some(1));
        assert!(throttle.admit(t(0)).is_ok());
        for ms in 1..100 {
            assert!(throttle.admit(t(ms)).is_err());
        }
        assert!(throttle.admit(t(30_000)).is_ok());
        assert_eq!(throttle.refused(), 99);
    }

    #[test]
    fn a_smaller_budget_waits_for_enough_calls_to_leave() {
        let mut throttle = Throttle::new(Some(4));
        for ms in [0, 1000, 2000, 3000] {
            assert!(throttle.admit(t(ms)).is_ok());
        }
        throttle.set_budget(Some(2));
        // Two calls (at 0 and 1 s) must leave, then a third for room: the
        // one at 2 s, which leaves at 32 s.
        let wait = throttle.admit(t(3000)).unwrap_err();
        assert_eq!(wait, RetryAfter(Duration::from_secs(29)));
        throttle.set_budget(None);
        assert!(throttle.admit(t(3000)).is_ok());
    }

    #[test]
    fn zero_budget_refuses_everything() {
        let mut throttle = Throttle::new(Some(0));
        let wait = throttle.admit(t(0)).unwrap_err();
        assert_eq!(wait, RetryAfter(WINDOW));
    }

    #[test]
    fn retry_after_is_never_zero_and_keeps_decimals() {
        assert_eq!(RetryAfter(Duration::ZERO).header_value(), "0.001");
        assert_eq!(
            RetryAfter(Duration::from_millis(2128)).header_value(),
            "2.128"
        );
        assert_eq!(RetryAfter(Duration::from_secs(10)).header_value(), "10");
    }
}
