//! The leadership lease's timing rules, pure: every instant is passed in,
//! nothing here reads a clock.
//!
//! The lease is a key in a NATS KV bucket whose `max_age` is the TTL: the
//! server forgets the key `ttl` after it stored it, and another node may
//! take it from then on. The holder cannot know when the server stored its
//! write, only when it sent it; the write was stored after that, so
//! counting from the send is on the safe side. The holder then keeps a
//! `margin` on top, for the difference between its clock's rate and the
//! server's, and for the time it needs to stop acting as the active node
//! (a Graph write already on its way) once it finds its lease is over.
//!
//! ```text
//! sent ──── renew_at ──────────── valid_until ── (sent + ttl: the key expires)
//!           (ttl / 3)             (ttl - margin)
//! ```
//!
//! A failed renewal is retried until `valid_until`; past it the node acts
//! as a standby even if it could not hear back from NATS.

use std::time::{Duration, Instant};

/// The smallest margin kept, whatever the TTL.
const MARGIN_MIN: Duration = Duration::from_millis(100);

/// The timing of a lease of a given TTL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseTiming {
    ttl: Duration,
    margin: Duration,
}

impl LeaseTiming {
    /// The rules for `ttl` (the lease bucket's `max_age`): a margin of a
    /// fifth of the TTL, at least 100 ms but never more than half the TTL.
    pub fn new(ttl: Duration) -> Self {
        let margin = (ttl / 5).max(MARGIN_MIN).min(ttl / 2);
        LeaseTiming { ttl, margin }
    }

    /// The TTL the bucket is given.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// What the holder keeps off the end of its lease.
    pub fn margin(&self) -> Duration {
        self.margin
    }

    /// Until when a lease acquired or renewed by a request sent at `sent`
    /// may be acted on.
    pub fn valid_until(&self, sent: Instant) -> Instant {
        add(sent, self.ttl.saturating_sub(self.margin))
    }

    /// When to renew a lease acquired or renewed by a request sent at
    /// `sent`: a third of the TTL later, which leaves two more tries before
    /// the lease is over.
    pub fn renew_at(&self, sent: Instant) -> Instant {
        add(sent, self.ttl / 3)
    }

    /// Whether a lease valid until `valid_until` may still be acted on at `now`.
    pub fn is_valid(&self, valid_until: Instant, now: Instant) -> bool {
        now < valid_until
    }

    /// How long to wait at `now` before the next try at a renewal that
    /// failed (NATS unavailable), for a lease valid until `valid_until`: a
    /// tenth of the TTL, but no later than the lease's end. `None` once the
    /// lease is over: the node must step down.
    pub fn retry_in(&self, valid_until: Instant, now: Instant) -> Option<Duration> {
        if !self.is_valid(valid_until, now) {
            return None;
        }
        let left = valid_until.saturating_duration_since(now);
        Some((self.ttl / 10).min(left))
    }

    /// How often a node without the lease tries to acquire it: a third of
    /// the TTL, so that an expired lease is taken within `ttl + ttl / 3` of
    /// its holder's last renewal.
    pub fn acquire_interval(&self) -> Duration {
        self.ttl / 3
    }
}

/// `at + d`, or `at` itself in the (unreachable with configured TTLs) case
/// that the sum does not fit an `Instant`.
fn add(at: Instant, d: Duration) -> Instant {
    at.checked_add(d).unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(5);

    #[test]
    fn a_lease_is_valid_until_the_ttl_minus_the_margin_from_the_send() {
        let timing = LeaseTiming::new(TTL);
        let sent = Instant::now();
        assert_eq!(timing.margin(), Duration::from_secs(1));
        assert_eq!(timing.valid_until(sent), sent + Duration::from_secs(4));
        assert!(timing.is_valid(timing.valid_until(sent), sent + Duration::from_millis(3999)));
        assert!(!timing.is_valid(timing.valid_until(sent), sent + Duration::from_secs(4)));
    }

    #[test]
    fn renewal_comes_at_a_third_of_the_ttl_well_before_the_end() {
        let timing = LeaseTiming::new(TTL);
        let sent = Instant::now();
        let renew = timing.renew_at(sent);
        assert_eq!(renew - sent, TTL / 3);
        // Time for more than one retry between the renewal and the end.
        assert!(
            timing.valid_until(sent) - renew
                > 2 * timing
                    .retry_in(timing.valid_until(sent), renew)
                    .unwrap_or_default()
        );
    }

    #[test]
    fn the_margin_stays_between_100ms_and_half_the_ttl() {
        assert_eq!(
            LeaseTiming::new(Duration::from_millis(300)).margin(),
            Duration::from_millis(100)
        );
        assert_eq!(
            LeaseTiming::new(Duration::from_millis(150)).margin(),
            Duration::from_millis(75)
        );
        assert_eq!(
            LeaseTiming::new(Duration::from_secs(60)).margin(),
            Duration::from_secs(12)
        );
        assert_eq!(LeaseTiming::new(Duration::ZERO).margin(), Duration::ZERO);
    }

    #[test]
    fn a_failed_renewal_is_retried_until_the_lease_is_over() {
        let timing = LeaseTiming::new(TTL);
        let sent = Instant::now();
        let until = timing.valid_until(sent);
        assert_eq!(
            timing.retry_in(until, sent + Duration::from_secs(2)),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            timing.retry_in(until, until - Duration::from_millis(200)),
            Some(Duration::from_millis(200))
        );
        assert_eq!(timing.retry_in(until, until), None);
        assert_eq!(timing.retry_in(until, until + TTL), None);
    }

    #[test]
    fn huge_ttls_do_not_overflow() {
        let timing = LeaseTiming::new(Duration::MAX);
        let sent = Instant::now();
        // Not representable: the lease stays at the send instant (already over).
        assert!(!timing.is_valid(timing.valid_until(sent), sent));
        let _ = timing.renew_at(sent);
    }
}
