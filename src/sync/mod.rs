//! The sync engine: a deterministic core with no I/O and no clock.
//!
//! Adapters feed it what they saw (a Teams presence, a CC status, the result
//! of a write) together with the current time, and it answers with decisions:
//! write or clear Teams presence, ask the CC for a status, emit an event. It
//! asks to be called back at a time through [`Engine::next_wakeup`] and
//! [`Engine::tick`]. The rules of SPEC §5 each live in their own module:
//!
//! | rule | module |
//! |---|---|
//! | debounce | [`debounce`] |
//! | echo suppression and Teams manual override | [`echo`] |
//! | ownership and restore | [`restore`] |
//! | loop breaker | [`loop_guard`] |
//! | conflicts inside one debounce window | [`conflict`] |
//! | session keep-alive | [`keepalive`] |
//! | why each decision was made | [`explain`] |
//! | state carried across a restart | [`snapshot`] |
//!
//! `evaluate.rs` applies these rules to one agent in a fixed order each time
//! something about it changes or one of its wake-ups comes; `engine.rs` holds
//! the agents, their profiles and wake-ups, and takes the adapters' inputs.

// Purity enforced: no clock, no I/O, no runtime here (clippy.toml).
#![deny(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod agent;
pub mod conflict;
pub mod debounce;
pub mod echo;
mod engine;
mod evaluate;
pub mod explain;
pub mod keepalive;
pub mod loop_guard;
pub mod restore;
pub mod settings;
pub mod snapshot;
pub mod timers;
pub mod view;

pub use engine::{Engine, EngineError, Stats};
pub use explain::{Reason, Why};
pub use settings::Settings;
pub use snapshot::AgentSnapshot;
pub use view::AgentView;

use crate::mapping::{StatusId, TeamsTarget};
use crate::presence::Presence;
use crate::time::Timestamp;

/// An agent inside the engine. Adapters map their own ids to keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentKey(pub u32);

/// A profile loaded into the engine, by position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProfileId(pub u16);

/// The direction a change travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Flow {
    CcToTeams,
    TeamsToCc,
}

impl Flow {
    pub fn as_str(self) -> &'static str {
        match self {
            Flow::CcToTeams => "cc_to_teams",
            Flow::TeamsToCc => "teams_to_cc",
        }
    }
}

/// Identifies one Teams write of one agent, so a late result for a write that
/// has since been superseded is recognised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WriteId(pub u64);

/// A Graph presence call the daemon should make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TeamsWrite {
    /// `setPresence` in our session, refreshed before `expiry`.
    SetSession {
        presence: Presence,
        expiry: std::time::Duration,
    },
    /// `clearPresence` of our session.
    ClearSession,
    /// `setUserPreferredPresence`.
    SetPreferred { presence: Presence },
    /// `clearUserPreferredPresence`.
    ClearPreferred,
}

impl TeamsWrite {
    /// The presence this write makes Teams show, if it sets one.
    pub fn presence(&self) -> Option<&Presence> {
        match self {
            TeamsWrite::SetSession { presence, .. } | TeamsWrite::SetPreferred { presence } => {
                Some(presence)
            }
            TeamsWrite::ClearSession | TeamsWrite::ClearPreferred => None,
        }
    }
}

/// How a Teams write ended, as the Graph adapter reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    Done,
    /// The adapter gave up after its own retries; `message` is for the agent view.
    Failed {
        message: String,
    },
}

/// Something the engine wants done or known.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    WriteTeams {
        agent: AgentKey,
        id: WriteId,
        write: TeamsWrite,
        why: Why,
    },
    /// Ask the CC to set a status (`cc.status_requested`).
    RequestCc {
        agent: AgentKey,
        status: StatusId,
        why: Why,
    },
    Event {
        agent: AgentKey,
        event: SyncEvent,
    },
}

/// What the engine reports beyond writes and requests.
#[derive(Clone, Debug, PartialEq)]
pub enum SyncEvent {
    TeamsPresenceChanged {
        presence: Presence,
    },
    LoopSuspended {
        flows: Vec<Flow>,
        until: Timestamp,
        changes: u32,
    },
    LoopResumed,
    /// Teams keeps showing something else than our write (the user's own
    /// preferred presence hides it); the daemon stops re-writing.
    TeamsOverrideDetected {
        expected: Presence,
        shown: Option<Presence>,
    },
    TeamsOverrideCleared,
    /// Teams shows a session of the user's own that Graph ranks above our
    /// write (their meeting over our Away): not an override, nothing is
    /// stopped; ours shows once theirs drops below it.
    TeamsOutranked {
        expected: Presence,
        shown: Option<Presence>,
    },
    WriteFailed {
        message: String,
    },
    /// After a profile change (a mapping reload, a move to another
    /// profile) the agent holds a CC status its profile does not know. The
    /// status is kept and Teams shows the profile's `default_teams`.
    StatusNotInProfile {
        status: String,
        teams: TeamsTarget,
    },
    /// A status the agent's profile did not know is in it again and shows
    /// in Teams as the profile maps it.
    StatusBackInProfile {
        status: String,
    },
}

/// One thing that happened, for [`Engine::handle`]: the same as calling the
/// matching method. Handy for replaying recorded or generated sequences.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    TeamsObserved {
        agent: AgentKey,
        presence: Presence,
    },
    CcReported {
        agent: AgentKey,
        status: StatusId,
    },
    WriteDone {
        agent: AgentKey,
        id: WriteId,
        outcome: WriteOutcome,
    },
    Tick,
}

/// Desired Teams target as the engine tracks it: a profile target resolved
/// for the write mode.
pub(crate) fn write_for(
    target: &TeamsTarget,
    mode: crate::mapping::WriteMode,
    expiry: std::time::Duration,
) -> TeamsWrite {
    use crate::mapping::WriteMode;
    match (target, mode) {
        (TeamsTarget::Set(p), WriteMode::Session) => TeamsWrite::SetSession {
            presence: p.clone(),
            expiry,
        },
        (TeamsTarget::Set(p), WriteMode::Preferred) => TeamsWrite::SetPreferred {
            presence: p.clone(),
        },
        (TeamsTarget::Clear, WriteMode::Session) => TeamsWrite::ClearSession,
        (TeamsTarget::Clear, WriteMode::Preferred) => TeamsWrite::ClearPreferred,
    }
}

#[cfg(test)]
mod tests;
