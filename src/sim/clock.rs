//! The simulator's clock: the only place its adapter reads time.
//!
//! The tenant, the throttle and the token store take the time as an argument;
//! the server asks this clock. Tests use a manual clock and move it, so a
//! 10-minute presence fade or a token expiry takes microseconds, not minutes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::time::Timestamp;

/// A shared clock handle; clones see the same time.
#[derive(Clone, Debug)]
pub struct SimClock {
    inner: Arc<Inner>,
}

#[derive(Debug)]
enum Inner {
    /// The wall clock plus an offset that `advance` grows (so even a real
    /// clock can jump ahead, e.g. in a demo).
    Real { offset_micros: AtomicU64 },
    /// Time stands still until `advance` or `set` moves it.
    Manual { micros: AtomicU64 },
}

impl SimClock {
    pub fn real() -> Self {
        SimClock {
            inner: Arc::new(Inner::Real {
                offset_micros: AtomicU64::new(0),
            }),
        }
    }

    /// A clock frozen at `start`.
    pub fn manual(start: Timestamp) -> Self {
        SimClock {
            inner: Arc::new(Inner::Manual {
                micros: AtomicU64::new(start.as_micros()),
            }),
        }
    }

    /// A manual clock starting at the current wall-clock time, so dates in
    /// responses look plausible.
    pub fn manual_from_now() -> Self {
        SimClock::manual(Timestamp::now())
    }

    pub fn now(&self) -> Timestamp {
        match &*self.inner {
            Inner::Real { offset_micros } => {
                Timestamp::now() + Duration::from_micros(offset_micros.load(Ordering::SeqCst))
            }
            Inner::Manual { micros } => Timestamp::from_micros(micros.load(Ordering::SeqCst)),
        }
    }

    /// Moves the clock forward; works on both kinds.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_micros()).unwrap_or(u64::MAX);
        let cell = match &*self.inner {
            Inner::Real { offset_micros } => offset_micros,
            Inner::Manual { micros } => micros,
        };
        let _ = cell.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
            Some(v.saturating_add(by))
        });
    }

    pub fn is_manual(&self) -> bool {
        matches!(&*self.inner, Inner::Manual { .. })
    }
}

impl Default for SimClock {
    fn default() -> Self {
        SimClock::real()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = SimClock::manual(Timestamp::from_secs(100));
        let other = clock.clone();
        assert_eq!(clock.now(), Timestamp::from_secs(100));
        other.advance(Duration::from_secs(5));
        assert_eq!(clock.now(), Timestamp::from_secs(105));
    }

    #[test]
    fn real_clock_can_jump_ahead() {
        let clock = SimClock::real();
        let before = Timestamp::now();
        clock.advance(Duration::from_secs(3600));
        assert!(clock.now().since(before) >= Duration::from_secs(3600));
    }
}
