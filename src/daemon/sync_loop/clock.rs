//! The clock the loop reads: once when a step starts, and that one time is
//! what every decision of the step is made with. Tests hand the loop a
//! clock they move by hand.

use crate::time::Timestamp;

/// Where the loop gets the time from.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// The wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}
