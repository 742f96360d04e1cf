//! Keep-alive: our presence session is re-asserted before Graph lets it go.
//!
//! An `Available` session fades after 5 minutes without a call; any session
//! ends at its expiry. Refreshes happen at three quarters of the interval,
//! moved earlier by a per-agent offset so that agents written together do
//! not all refresh in the same second.

use std::time::Duration;

use crate::presence::{Availability, Presence};
use crate::time::Timestamp;

use super::{AgentKey, Settings};

pub fn refresh_at(
    confirmed: Timestamp,
    presence: &Presence,
    agent: AgentKey,
    settings: &Settings,
) -> Timestamp {
    let interval = if presence.availability == Availability::Available {
        settings.available_timeout.min(settings.session_expiry)
    } else {
        settings.session_expiry
    };
    let base = interval.mul_f64(0.75);
    let spread = interval / 8;
    confirmed + base.saturating_sub(spread.mul_f64(spread_fraction(agent)))
}

/// A stable pseudo-random fraction in [0, 1) per agent.
fn spread_fraction(agent: AgentKey) -> f64 {
    let mixed = u64::from(agent.0).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> 11) as f64 / (1u64 << 53) as f64
}

/// The longest a refresh can come after the write it renews.
pub fn max_interval(settings: &Settings) -> Duration {
    settings.session_expiry.mul_f64(0.75)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refreshes_before_the_fade_and_before_expiry() {
        let settings = Settings::default();
        let t0 = Timestamp::from_secs(1000);
        for agent in 0..500 {
            let available = refresh_at(
                t0,
                &Presence::from_graph("Available", "Available"),
                AgentKey(agent),
                &settings,
            );
            assert!(available.since(t0) < settings.available_timeout);
            assert!(available.since(t0) >= settings.available_timeout.mul_f64(0.6));
            let busy = refresh_at(
                t0,
                &Presence::from_graph("Busy", "InACall"),
                AgentKey(agent),
                &settings,
            );
            assert!(busy.since(t0) < settings.session_expiry);
            assert!(busy.since(t0) <= max_interval(&settings));
        }
    }

    #[test]
    fn agents_are_spread_out() {
        let settings = Settings::default();
        let t0 = Timestamp::from_secs(0);
        let p = Presence::from_graph("Busy", "InACall");
        let mut times: Vec<_> = (0..100)
            .map(|a| refresh_at(t0, &p, AgentKey(a), &settings))
            .collect();
        times.sort();
        times.dedup();
        assert!(times.len() > 90);
    }
}
