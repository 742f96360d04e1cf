//! When a subscription renews: `renew_before` its expiry, moved later by a
//! share of that margin derived from its id, so subscriptions created in
//! the same second renew spread over half the margin instead of together.
//! Each renewal sets a new expiry from its own time, so they stay apart.

use std::time::Duration;

use crate::splitmix::mix;
use crate::time::Timestamp;

/// When the subscription `id`, expiring at `expires_at`, is renewed.
///
/// Never later than `renew_before / 2` before the expiry, never earlier
/// than `renew_before` before it (or `created`, for a lifetime shorter than
/// the margin).
pub fn renew_at(
    id: &str,
    created: Timestamp,
    expires_at: Timestamp,
    renew_before: Duration,
) -> Timestamp {
    let lifetime = expires_at.since(created);
    let margin = renew_before.min(lifetime);
    let earliest = Timestamp::from_micros(
        expires_at
            .as_micros()
            .saturating_sub(u64::try_from(margin.as_micros()).unwrap_or(u64::MAX)),
    );
    let spread = u64::try_from((margin / 2).as_micros()).unwrap_or(u64::MAX);
    let offset = if spread == 0 { 0 } else { hash(id) % spread };
    earliest.saturating_add(Duration::from_micros(offset))
}

fn hash(id: &str) -> u64 {
    id.bytes().fold(0x5EED_u64, |h, b| mix(h ^ u64::from(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn renewals_fall_in_the_first_half_of_the_margin() {
        let created = Timestamp::from_secs(1_000);
        let expires = created + 55 * MIN;
        for n in 0..200 {
            let at = renew_at(&format!("sub-{n}"), created, expires, 10 * MIN);
            assert!(at >= expires_minus(expires, 10 * MIN), "{n}");
            assert!(at < expires_minus(expires, 5 * MIN), "{n}");
        }
    }

    #[test]
    fn subscriptions_created_together_renew_apart() {
        let created = Timestamp::from_secs(1_000);
        let expires = created + 55 * MIN;
        let mut times: Vec<u64> = (0..50)
            .map(|n| renew_at(&format!("sub-{n}"), created, expires, 10 * MIN).as_micros())
            .collect();
        times.sort_unstable();
        times.dedup();
        assert_eq!(times.len(), 50, "every renewal at its own time");
        let span = times[49] - times[0];
        assert!(span > 4 * 60 * 1_000_000, "spread over minutes: {span} µs");
    }

    #[test]
    fn a_lifetime_shorter_than_the_margin_renews_after_creation() {
        let created = Timestamp::from_secs(1_000);
        let expires = created + 2 * MIN;
        let at = renew_at("x", created, expires, 10 * MIN);
        assert!(at >= created && at < expires);
    }

    fn expires_minus(t: Timestamp, d: Duration) -> Timestamp {
        Timestamp::from_micros(t.as_micros() - d.as_micros() as u64)
    }
}
