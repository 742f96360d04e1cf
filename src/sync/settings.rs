//! Engine-wide settings (daemon config `[sync]` and Graph facts).

use std::time::Duration;

use super::loop_guard::LoopLimits;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// How long after our write (or request) a matching value on the other
    /// side is our own echo, and after which a write Teams does not show counts
    /// as overridden by the user.
    pub echo_window: Duration,
    pub loop_limits: LoopLimits,
    /// `expirationDuration` of our setPresence sessions (Graph allows 5 min to 4 h).
    pub session_expiry: Duration,
    /// Graph fades an `Available` app session after this long without a call.
    pub available_timeout: Duration,
    /// How long to wait before trying again a write the Graph adapter gave up on.
    pub retry_after_failure: Duration,
    /// A write the adapter has not answered by then counts as failed, so an
    /// answer lost on the way never blocks an agent's writes for good.
    pub write_answer_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            echo_window: Duration::from_secs(5 * 60),
            loop_limits: LoopLimits::default(),
            session_expiry: Duration::from_secs(60 * 60),
            available_timeout: Duration::from_secs(5 * 60),
            retry_after_failure: Duration::from_secs(60),
            write_answer_timeout: Duration::from_secs(120),
        }
    }
}
