//! Both sides changed inside one debounce window: the profile's preferred
//! side goes first, and the other change is evaluated right after against the
//! new state — deferred, never dropped.

use crate::mapping::Side;
use crate::time::Timestamp;

/// What to do with the two pending sides now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Sides to act on now, in order.
    pub now: [Option<Side>; 2],
    /// A side held back until the other side's change matures.
    pub deferred_until: Option<Timestamp>,
}

/// `cc_due` / `teams_due`: when each side's pending change matures.
pub fn plan(
    cc_due: Option<Timestamp>,
    teams_due: Option<Timestamp>,
    prefer: Side,
    now: Timestamp,
) -> Plan {
    let cc_ready = cc_due.is_some_and(|t| t <= now);
    let teams_ready = teams_due.is_some_and(|t| t <= now);
    let loser = match prefer {
        Side::Cc => Side::Teams,
        Side::Teams => Side::Cc,
    };
    match (cc_ready, teams_ready) {
        (true, true) => Plan {
            now: [Some(prefer), Some(loser)],
            deferred_until: None,
        },
        (true, false) | (false, true) => {
            let (ready, other_due) = if cc_ready {
                (Side::Cc, teams_due)
            } else {
                (Side::Teams, cc_due)
            };
            match other_due {
                // The winner is still settling: the loser waits for it.
                Some(due) if ready == loser => Plan {
                    now: [None, None],
                    deferred_until: Some(due),
                },
                _ => Plan {
                    now: [Some(ready), None],
                    deferred_until: None,
                },
            }
        }
        (false, false) => Plan {
            now: [None, None],
            deferred_until: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: u64) -> Option<Timestamp> {
        Some(Timestamp::from_secs(s))
    }

    #[test]
    fn the_preferred_side_goes_first_when_both_are_due() {
        let p = plan(t(10), t(12), Side::Teams, Timestamp::from_secs(20));
        assert_eq!(p.now, [Some(Side::Teams), Some(Side::Cc)]);
    }

    #[test]
    fn the_loser_waits_for_a_winner_still_settling() {
        let p = plan(t(10), t(25), Side::Teams, Timestamp::from_secs(20));
        assert_eq!(p.now, [None, None]);
        assert_eq!(p.deferred_until, t(25));
        let p = plan(t(10), t(25), Side::Cc, Timestamp::from_secs(20));
        assert_eq!(p.now, [Some(Side::Cc), None]);
    }

    #[test]
    fn a_lone_change_goes_when_due() {
        assert_eq!(
            plan(None, t(5), Side::Cc, Timestamp::from_secs(5)).now,
            [Some(Side::Teams), None]
        );
        assert_eq!(
            plan(None, t(5), Side::Cc, Timestamp::from_secs(4)).now,
            [None, None]
        );
    }
}
