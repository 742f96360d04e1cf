//! The runtime loop breaker.
//!
//! The static cycle check proves a mapping settles on its own, but a second
//! application writing Teams, or a CC that re-maps our requests, can close a
//! loop the mapping never sees. So every agent counts the changes the daemon
//! propagated in a sliding window; past the limit, the lower-priority direction
//! is suspended for a cool-down. If changes keep coming in the remaining
//! direction, that one stops too: the number of writes per agent is bounded
//! whatever the outside world does.

use std::collections::VecDeque;
use std::time::Duration;

use crate::time::Timestamp;

use super::Flow;

/// Limits of the breaker (daemon config `[sync]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoopLimits {
    /// Propagated changes inside `window` that trip the breaker: the change
    /// that reaches this count is still made, and suspends the
    /// lower-priority direction; changes after it in that direction are held.
    pub max_changes: u32,
    pub window: Duration,
    pub cooldown: Duration,
}

impl Default for LoopLimits {
    fn default() -> Self {
        LoopLimits {
            max_changes: 6,
            window: Duration::from_secs(5 * 60),
            cooldown: Duration::from_secs(15 * 60),
        }
    }
}

/// What a suspension stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suspended {
    One(Flow),
    Both,
}

impl Suspended {
    pub fn blocks(self, flow: Flow) -> bool {
        match self {
            Suspended::One(f) => f == flow,
            Suspended::Both => true,
        }
    }
}

/// What recording a change did to the breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trip {
    Stayed,
    Suspended {
        what: Suspended,
        until: Timestamp,
        changes: u32,
    },
}

/// One agent's breaker. Nothing to keep for an agent whose changes were
/// never counted (or whose suspension ended): a pointer's room in the
/// agent's entry, rather than the room of the count and the suspension.
#[derive(Clone, Debug, Default)]
pub struct LoopGuard(Option<Box<Counted>>);

#[derive(Clone, Debug, Default)]
struct Counted {
    recent: VecDeque<Timestamp>,
    suspension: Option<(Suspended, Timestamp)>,
}

impl LoopGuard {
    fn suspended(&self) -> Option<(Suspended, Timestamp)> {
        self.0.as_ref().and_then(|c| c.suspension)
    }

    /// The active suspension, if any at `now`.
    pub fn suspension(&self, now: Timestamp) -> Option<(Suspended, Timestamp)> {
        self.suspended().filter(|(_, until)| now < *until)
    }

    pub fn blocks(&self, flow: Flow, now: Timestamp) -> bool {
        self.suspension(now).is_some_and(|(s, _)| s.blocks(flow))
    }

    /// When the current suspension ends (for scheduling the resume).
    pub fn resume_at(&self) -> Option<Timestamp> {
        self.suspended().map(|(_, until)| until)
    }

    /// Ends a suspension whose cool-down is over. True when one ended.
    pub fn resume_if_due(&mut self, now: Timestamp) -> bool {
        match self.suspended() {
            Some((_, until)) if now >= until => {
                // No suspension and nothing counted: nothing left to keep.
                self.0 = None;
                true
            }
            _ => false,
        }
    }

    /// Records one propagated change in `flow`. `lower` is the direction the
    /// profile gives up first.
    pub fn record(&mut self, flow: Flow, lower: Flow, now: Timestamp, limits: &LoopLimits) -> Trip {
        let counted = self.0.get_or_insert_with(Box::default);
        let recent = &mut counted.recent;
        while recent
            .front()
            .is_some_and(|t| now.since(*t) >= limits.window)
        {
            recent.pop_front();
        }
        recent.push_back(now);
        let cap = usize::try_from(limits.max_changes.max(1)).unwrap_or(usize::MAX);
        while recent.len() > cap {
            recent.pop_front();
        }
        if recent.len() < cap {
            return Trip::Stayed;
        }
        let what = match self.suspension(now) {
            // Already suspended and the remaining direction keeps going.
            Some((Suspended::One(_), _)) if flow != lower => Suspended::Both,
            Some((current, _)) => current,
            None => Suspended::One(lower),
        };
        let until = now + limits.cooldown;
        let counted = self.0.get_or_insert_with(Box::default);
        counted.suspension = Some((what, until));
        counted.recent.clear();
        Trip::Suspended {
            what,
            until,
            changes: limits.max_changes.max(1),
        }
    }

    /// The changes counted and the suspension, for a snapshot.
    pub fn parts(&self) -> (Vec<Timestamp>, Option<(Suspended, Timestamp)>) {
        match &self.0 {
            Some(c) => (c.recent.iter().copied().collect(), c.suspension),
            None => (Vec::new(), None),
        }
    }

    /// A guard rebuilt from [`LoopGuard::parts`]; out-of-order times are sorted.
    pub fn from_parts(
        mut recent: Vec<Timestamp>,
        suspension: Option<(Suspended, Timestamp)>,
    ) -> Self {
        if recent.is_empty() && suspension.is_none() {
            return LoopGuard(None);
        }
        recent.sort_unstable();
        LoopGuard(Some(Box::new(Counted {
            recent: recent.into(),
            suspension,
        })))
    }

    /// Heap bytes held by this guard (for the state-size benchmark).
    pub fn heap_bytes(&self) -> usize {
        self.0.as_ref().map_or(0, |c| {
            std::mem::size_of::<Counted>() + c.recent.capacity() * std::mem::size_of::<Timestamp>()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> Timestamp {
        Timestamp::from_secs(secs)
    }

    #[test]
    fn trips_on_the_sixth_change_in_five_minutes_and_resumes_after_cooldown() {
        let limits = LoopLimits::default();
        let mut guard = LoopGuard::default();
        for i in 0..5 {
            assert_eq!(
                guard.record(Flow::CcToTeams, Flow::TeamsToCc, at(i * 10), &limits),
                Trip::Stayed
            );
        }
        let trip = guard.record(Flow::CcToTeams, Flow::TeamsToCc, at(50), &limits);
        assert_eq!(
            trip,
            Trip::Suspended {
                what: Suspended::One(Flow::TeamsToCc),
                until: at(50 + 900),
                changes: 6
            }
        );
        assert!(guard.blocks(Flow::TeamsToCc, at(100)));
        assert!(!guard.blocks(Flow::CcToTeams, at(100)));
        assert!(!guard.resume_if_due(at(949)));
        assert!(guard.resume_if_due(at(950)));
        assert!(!guard.blocks(Flow::TeamsToCc, at(950)));
    }

    #[test]
    fn changes_spread_wider_than_the_window_never_trip() {
        let limits = LoopLimits::default();
        let mut guard = LoopGuard::default();
        for i in 0..100 {
            assert_eq!(
                guard.record(Flow::TeamsToCc, Flow::TeamsToCc, at(i * 61), &limits),
                Trip::Stayed
            );
        }
    }

    #[test]
    fn a_loop_in_the_preferred_direction_stops_both_directions() {
        let limits = LoopLimits::default();
        let mut guard = LoopGuard::default();
        for i in 0..6 {
            guard.record(Flow::CcToTeams, Flow::TeamsToCc, at(i), &limits);
        }
        assert!(guard.blocks(Flow::TeamsToCc, at(10)));
        let mut last = Trip::Stayed;
        for i in 10..16 {
            last = guard.record(Flow::CcToTeams, Flow::TeamsToCc, at(i), &limits);
        }
        assert!(matches!(
            last,
            Trip::Suspended {
                what: Suspended::Both,
                ..
            }
        ));
        assert!(guard.blocks(Flow::CcToTeams, at(20)));
    }

    #[test]
    fn a_guard_with_nothing_counted_holds_nothing() {
        let limits = LoopLimits::default();
        let mut guard = LoopGuard::default();
        assert_eq!((guard.heap_bytes(), guard.parts()), (0, (Vec::new(), None)));
        for i in 0..6 {
            guard.record(Flow::CcToTeams, Flow::TeamsToCc, at(i), &limits);
        }
        assert!(guard.heap_bytes() > 0);
        assert!(guard.resume_if_due(at(5 + 900)));
        assert_eq!((guard.heap_bytes(), guard.parts()), (0, (Vec::new(), None)));
        let rebuilt = LoopGuard::from_parts(Vec::new(), None);
        assert_eq!(rebuilt.heap_bytes(), 0);
        let rebuilt = LoopGuard::from_parts(vec![at(3), at(1)], None);
        assert_eq!(rebuilt.parts(), (vec![at(1), at(3)], None));
    }
}
