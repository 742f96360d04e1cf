//! What the engine remembers about one agent.
//!
//! Kept small (see the state-size benchmark): ids instead of names, and only
//! the facts the rules need.

use crate::mapping::{StatusId, TeamsTarget};
use crate::presence::Presence;
use crate::time::Timestamp;

use super::loop_guard::LoopGuard;
use super::restore::RestorePoint;
use std::sync::Arc;

use super::{ProfileId, Why, WriteId};

/// Who set a value: the person (or their own client), the daemon's sync
/// rules, or routing (a contact's `on_contact_status` and
/// `after_contact_status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    Person,
    Daemon,
    /// Routing set it for a contact. For the sync rules it is the agent's
    /// own status (shown in Teams as mapped, never overwritten by a
    /// restore); only the view tells it apart.
    Routing,
}

/// An optional time in the room of a time: half of an `Option<Timestamp>`,
/// which matters for the several of them every agent keeps. "None" is the
/// last microsecond representable; a time that far out (only ever reached by
/// saturating arithmetic, some 580,000 years from now) is kept one
/// microsecond earlier, which no comparison against a real time can tell.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct OptTimestamp(u64);

impl OptTimestamp {
    pub const NONE: OptTimestamp = OptTimestamp(u64::MAX);

    pub const fn get(self) -> Option<Timestamp> {
        if self.0 == u64::MAX {
            None
        } else {
            Some(Timestamp::from_micros(self.0))
        }
    }

    pub fn set(&mut self, at: Option<Timestamp>) {
        *self = OptTimestamp::from(at);
    }

    pub fn take(&mut self) -> Option<Timestamp> {
        std::mem::replace(self, OptTimestamp::NONE).get()
    }

    pub const fn is_some(self) -> bool {
        self.0 != u64::MAX
    }

    pub const fn is_none(self) -> bool {
        self.0 == u64::MAX
    }

    /// `at` as this type keeps it: the same time, except the very last one.
    pub fn kept(at: Timestamp) -> Timestamp {
        Timestamp::from_micros(at.as_micros().min(u64::MAX - 1))
    }
}

impl Default for OptTimestamp {
    fn default() -> Self {
        OptTimestamp::NONE
    }
}

impl From<Option<Timestamp>> for OptTimestamp {
    fn from(at: Option<Timestamp>) -> Self {
        match at {
            Some(at) => OptTimestamp(OptTimestamp::kept(at).as_micros()),
            None => OptTimestamp::NONE,
        }
    }
}

impl std::fmt::Debug for OptTimestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

/// The contact-center side of an agent.
#[derive(Clone, Debug, Default)]
pub struct CcSide {
    /// The latest status the CC reported, who set it and since when.
    pub current: Option<(StatusId, Owner, Timestamp)>,
    /// The status whose Teams target was last decided; `current != handled`
    /// means a change is waiting for its debounce.
    pub handled: Option<StatusId>,
    /// A status we asked the CC for and not yet seen back: its report is our echo.
    pub requested: Option<Request>,
    /// The status the CC last reported when the agent's profile does not
    /// know it (the mapping dropped it, or the agent moved to a profile
    /// without it); `current` is `None` meanwhile. Kept, never dropped: it
    /// shows in the agent view, Teams shows the profile's `default_teams`,
    /// and it becomes `current` again once a profile knows it.
    pub unknown: Option<Box<UnknownStatus>>,
}

/// A CC status the agent's profile does not know, by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownStatus {
    pub name: String,
    pub owner: Owner,
    pub since: Timestamp,
}

/// A status the daemon asked the CC for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub status: StatusId,
    pub at: Timestamp,
    pub kind: RequestKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    /// A Teams → CC rule set it: its echo is the daemon's and never goes back to Teams.
    Rule,
    /// The status a rule replaced, put back: the agent's own status again,
    /// so it shows in Teams as the profile maps it.
    Restore,
}

impl CcSide {
    pub fn status(&self) -> Option<StatusId> {
        self.current.map(|(s, _, _)| s)
    }

    /// Who set the status the agent holds and since when, known to its
    /// profile or not.
    pub fn held(&self) -> Option<(Owner, Timestamp)> {
        match (&self.current, &self.unknown) {
            (Some((_, owner, since)), _) => Some((*owner, *since)),
            (None, Some(u)) => Some((u.owner, u.since)),
            (None, None) => None,
        }
    }
}

/// The Teams side of an agent.
#[derive(Clone, Debug, Default)]
pub struct TeamsSide {
    /// The latest presence read from Graph and since when it showed.
    pub current: Option<(Presence, Timestamp)>,
    /// The presence the Teams → CC rules were last evaluated on.
    pub handled: Option<Presence>,
}

impl TeamsSide {
    pub fn presence(&self) -> Option<&Presence> {
        self.current.as_ref().map(|(p, _)| p)
    }
}

/// Our writes to Teams for an agent.
#[derive(Clone, Debug, Default)]
pub struct WriteSide {
    /// What the CC status says Teams should show (None: nothing decided yet).
    pub desired: Option<TeamsTarget>,
    /// The CC status `desired` was derived from, to derive it again when the
    /// mapping changes.
    pub desired_status: Option<StatusId>,
    /// The target of the last write Graph confirmed, and when.
    pub active: Option<(TeamsTarget, Timestamp)>,
    /// The write on its way, the target it carries and when it was sent.
    /// Boxed, as are `previous_set` and `last_error`: absent for an agent
    /// at rest, and a pointer then rather than the value's room.
    pub in_flight: Option<Box<(WriteId, TeamsTarget, Timestamp)>>,
    /// The presence our previous write set, and when a newer write replaced
    /// it: Teams lags, so showing it shortly after is still our echo.
    pub previous_set: Option<Box<(Presence, Timestamp)>>,
    /// Why `desired` is what it is: sent along when a coalesced write goes out.
    pub desired_why: Option<Arc<Why>>,
    /// When a confirmed set must show in Teams, or it counts as overridden.
    pub echo_deadline: OptTimestamp,
    /// Teams keeps showing something else than our write (since when).
    pub overridden_since: OptTimestamp,
    /// A session of the user's own outranks our confirmed write (since
    /// when); not an override: ours is kept and shows once theirs drops.
    pub outranked_since: OptTimestamp,
    pub keepalive_at: OptTimestamp,
    pub retry_at: OptTimestamp,
    pub last_error: Option<Box<(String, Timestamp)>>,
}

/// Everything about one agent.
#[derive(Clone, Debug)]
pub struct AgentState {
    pub profile: ProfileId,
    pub cc: CcSide,
    pub teams: TeamsSide,
    pub writes: WriteSide,
    pub restore: Option<RestorePoint>,
    pub guard: LoopGuard,
    /// The last decision and why it was made.
    pub last_why: Option<Arc<Why>>,
    /// The earliest wake-up this agent has asked for.
    pub wake_at: OptTimestamp,
}

impl AgentState {
    pub fn new(profile: ProfileId) -> Self {
        AgentState {
            profile,
            cc: CcSide::default(),
            teams: TeamsSide::default(),
            writes: WriteSide::default(),
            restore: None,
            guard: LoopGuard::default(),
            last_why: None,
            wake_at: OptTimestamp::NONE,
        }
    }

    /// Heap bytes owned by this agent, beyond its inline size.
    pub fn heap_bytes(&self) -> usize {
        // Both reasons usually point at the same allocation; count it once.
        let why = std::mem::size_of::<Why>() + 16;
        let whys = match (&self.last_why, &self.writes.desired_why) {
            (Some(a), Some(b)) if Arc::ptr_eq(a, b) => why,
            (a, b) => why * (usize::from(a.is_some()) + usize::from(b.is_some())),
        };
        let boxed = |present: bool, size: usize| if present { size } else { 0 };
        self.guard.heap_bytes()
            + boxed(
                self.writes.in_flight.is_some(),
                std::mem::size_of::<(WriteId, TeamsTarget, Timestamp)>(),
            )
            + boxed(
                self.writes.previous_set.is_some(),
                std::mem::size_of::<(Presence, Timestamp)>(),
            )
            + boxed(
                self.writes.last_error.is_some(),
                std::mem::size_of::<(String, Timestamp)>(),
            )
            + self.cc.unknown.as_ref().map_or(0, |u| {
                std::mem::size_of::<UnknownStatus>() + u.name.capacity()
            })
            + whys
            + self
                .writes
                .last_error
                .as_deref()
                .map_or(0, |(m, _)| m.capacity())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The target is at most 1 KiB of engine state per agent, heap included
    /// (measured by `cargo bench --bench engine`); the inline part is the
    /// bulk of it, so it has a budget of its own that a careless field breaks.
    #[test]
    fn inline_state_stays_within_its_budget() {
        assert!(
            std::mem::size_of::<AgentState>() <= 312,
            "{}",
            std::mem::size_of::<AgentState>()
        );
        // The engine keeps `Option<AgentState>` slots: no room for the tag.
        assert_eq!(
            std::mem::size_of::<Option<AgentState>>(),
            std::mem::size_of::<AgentState>()
        );
        assert_eq!(std::mem::size_of::<OptTimestamp>(), 8);
        assert!(std::mem::size_of::<Presence>() <= 32);
    }

    #[test]
    fn an_optional_time_reads_back_as_set() {
        let mut t = OptTimestamp::default();
        assert_eq!((t.get(), t.is_none(), t.is_some()), (None, true, false));
        for micros in [0, 1, 1_700_000_000_123_456, u64::MAX - 1] {
            t.set(Some(Timestamp::from_micros(micros)));
            assert_eq!(t.get(), Some(Timestamp::from_micros(micros)));
            assert!(t.is_some());
        }
        // The last representable time is kept one microsecond earlier.
        t.set(Some(Timestamp::from_micros(u64::MAX)));
        assert_eq!(t.take(), Some(Timestamp::from_micros(u64::MAX - 1)));
        assert_eq!(t, OptTimestamp::NONE);
        assert_eq!(format!("{t:?}"), "None");
    }
}
