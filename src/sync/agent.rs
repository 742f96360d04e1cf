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
    pub echo_deadline: Option<Timestamp>,
    /// Teams keeps showing something else than our write (since when).
    pub overridden_since: Option<Timestamp>,
    /// A session of the user's own outranks our confirmed write (since
    /// when); not an override: ours is kept and shows once theirs drops.
    pub outranked_since: Option<Timestamp>,
    pub keepalive_at: Option<Timestamp>,
    pub retry_at: Option<Timestamp>,
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
    pub wake_at: Option<Timestamp>,
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
            wake_at: None,
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
            std::mem::size_of::<AgentState>() <= 400,
            "{}",
            std::mem::size_of::<AgentState>()
        );
        assert!(std::mem::size_of::<Presence>() <= 32);
    }
}
