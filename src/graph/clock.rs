//! Time as the Graph adapter sees it: one clock for the throttle, the retry
//! waits, token expiry and the poller.
//!
//! Everything that waits goes through [`Clock`], so tests run hours of
//! throttling in microseconds: [`TokioClock`] follows tokio's clock (which
//! `tokio::time::pause` controls) and tests can inject their own. governor
//! would read the real monotonic clock on its own; [`GovernorClock`] makes it
//! read ours instead.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// A future that completes when a [`Clock`] reaches a point in time.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The adapter's time source.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Monotonic time since an arbitrary origin fixed for the clock's life.
    fn now(&self) -> Duration;
    /// Completes once [`Clock::now`] has reached `deadline`.
    fn sleep_until(&self, deadline: Duration) -> Sleep;
    /// The wall clock, for `Retry-After` given as an HTTP date.
    fn wall(&self) -> DateTime<Utc>;
}

/// A shared clock.
pub type SharedClock = Arc<dyn Clock>;

/// tokio's clock: real time in the daemon, paused and auto-advanced time in
/// tests that call `tokio::time::pause`.
#[derive(Debug, Clone)]
pub struct TokioClock {
    origin: tokio::time::Instant,
}

impl TokioClock {
    /// Must be called inside a tokio runtime when time is paused, so the
    /// origin is on the paused timeline.
    pub fn new() -> Self {
        TokioClock {
            origin: tokio::time::Instant::now(),
        }
    }

    pub fn shared() -> SharedClock {
        Arc::new(TokioClock::new())
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        TokioClock::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn sleep_until(&self, deadline: Duration) -> Sleep {
        let at = self
            .origin
            .checked_add(deadline)
            // Far enough to mean "never" without overflowing the runtime's timer.
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86_400 * 365));
        Box::pin(tokio::time::sleep_until(at))
    }

    fn wall(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// governor's view of a [`Clock`]: nanoseconds since the clock's origin.
#[derive(Debug, Clone)]
pub struct GovernorClock(pub SharedClock);

impl governor::clock::Clock for GovernorClock {
    type Instant = governor::nanos::Nanos;

    fn now(&self) -> Self::Instant {
        governor::nanos::Nanos::from(self.0.now())
    }
}

/// Sleeps for `duration` on `clock`.
pub async fn sleep(clock: &dyn Clock, duration: Duration) {
    let deadline = clock.now().saturating_add(duration);
    clock.sleep_until(deadline).await;
}

#[cfg(test)]
pub(crate) mod testing {
    //! A clock whose sleeps return at once after moving time forward: for
    //! tests that talk to a loopback server, where tokio's paused time would
    //! also advance while a socket is merely waiting for bytes.

    use std::sync::Mutex;

    use super::*;

    #[derive(Debug)]
    pub struct InstantClock {
        now: Mutex<Duration>,
        wall_origin: DateTime<Utc>,
        sleeps: Mutex<Vec<Duration>>,
    }

    impl InstantClock {
        pub fn new() -> Arc<Self> {
            Arc::new(InstantClock {
                now: Mutex::new(Duration::ZERO),
                wall_origin: Utc::now(),
                sleeps: Mutex::new(Vec::new()),
            })
        }

        /// Every sleep asked for, in order, as lengths.
        pub fn sleeps(&self) -> Vec<Duration> {
            self.sleeps.lock().unwrap().clone()
        }

        pub fn advance(&self, by: Duration) {
            *self.now.lock().unwrap() += by;
        }
    }

    impl Clock for InstantClock {
        fn now(&self) -> Duration {
            *self.now.lock().unwrap()
        }

        fn sleep_until(&self, deadline: Duration) -> Sleep {
            {
                let mut now = self.now.lock().unwrap();
                if deadline > *now {
                    self.sleeps.lock().unwrap().push(deadline - *now);
                    *now = deadline;
                }
            }
            Box::pin(tokio::task::yield_now())
        }

        fn wall(&self) -> DateTime<Utc> {
            self.wall_origin + chrono::Duration::from_std(self.now()).unwrap_or_default()
        }
    }
}
