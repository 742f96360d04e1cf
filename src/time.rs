//! Time as the pure cores see it: a plain number handed in by the caller.
//!
//! The sync engine and the routing core never read a clock. Adapters pass
//! `Timestamp::now()` (or a test's fake time) with every input, which is what
//! makes the cores deterministic and lets tests run hours of behaviour in
//! microseconds.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(u64);

impl Timestamp {
    pub const ZERO: Timestamp = Timestamp(0);

    pub const fn from_micros(micros: u64) -> Self {
        Timestamp(micros)
    }

    pub const fn from_secs(secs: u64) -> Self {
        Timestamp(secs.saturating_mul(1_000_000))
    }

    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// Reads the wall clock. Only adapters call this; the cores never do.
    pub fn now() -> Self {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Timestamp(u64::try_from(since.as_micros()).unwrap_or(u64::MAX))
    }

    pub fn saturating_add(self, d: Duration) -> Self {
        Timestamp(
            self.0
                .saturating_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
        )
    }

    /// As a UTC date-time, for wire formats (the epoch if out of range).
    pub fn to_utc(self) -> chrono::DateTime<chrono::Utc> {
        i64::try_from(self.0)
            .ok()
            .and_then(chrono::DateTime::from_timestamp_micros)
            .unwrap_or_default()
    }

    /// From a UTC date-time; times before the epoch count as the epoch.
    pub fn from_utc(at: chrono::DateTime<chrono::Utc>) -> Self {
        Timestamp(u64::try_from(at.timestamp_micros()).unwrap_or(0))
    }

    /// Time elapsed from `earlier` to `self`; zero when `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl std::ops::Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, d: Duration) -> Timestamp {
        self.saturating_add(d)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0 / 1_000_000;
        let micros = self.0 % 1_000_000;
        write!(f, "{secs}.{micros:06}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_round_trips_and_clamps_out_of_range_values() {
        let t = Timestamp::from_micros(1_700_000_000_123_456);
        assert_eq!(Timestamp::from_utc(t.to_utc()), t);
        assert_eq!(t.to_utc().to_rfc3339(), "2023-11-14T22:13:20.123456+00:00");
        assert_eq!(
            Timestamp::from_micros(u64::MAX).to_utc(),
            chrono::DateTime::<chrono::Utc>::default()
        );
        let before_epoch = chrono::DateTime::from_timestamp(-5, 0).unwrap_or_default();
        assert_eq!(Timestamp::from_utc(before_epoch), Timestamp::ZERO);
    }

    #[test]
    fn arithmetic_saturates_instead_of_panicking() {
        let t = Timestamp::from_micros(u64::MAX - 1);
        assert_eq!(
            t + Duration::from_secs(10),
            Timestamp::from_micros(u64::MAX)
        );
        assert_eq!(Timestamp::ZERO.since(t), Duration::ZERO);
        assert_eq!(
            Timestamp::from_secs(20).since(Timestamp::from_secs(5)),
            Duration::from_secs(15)
        );
    }
}
