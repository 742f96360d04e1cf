//! A validated mapping profile: what the sync engine and routing read.
//!
//! Built only by the loader (`mapping::load_profile`), so everything here already
//! passed validation: statuses resolve, pairs are writable, there are no
//! shadowed rules and no cycles.

use std::time::Duration;

use crate::presence::{Presence, PresencePattern};

/// Index of a CC status within its profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatusId(pub u16);

/// Which way changes flow for agents on this profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Both,
    CcToTeams,
    TeamsToCc,
    Off,
}

impl Direction {
    pub fn cc_to_teams(self) -> bool {
        matches!(self, Direction::Both | Direction::CcToTeams)
    }
    pub fn teams_to_cc(self) -> bool {
        matches!(self, Direction::Both | Direction::TeamsToCc)
    }
}

/// One of the two systems kept in sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    Cc,
    Teams,
}

/// How the daemon writes Teams presence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteMode {
    /// `setPresence` in our own session: the user's manual choice still wins.
    Session,
    /// `setUserPreferredPresence`: overrides what the user chose by hand.
    Preferred,
}

/// What a CC status shows in Teams.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TeamsTarget {
    Set(Presence),
    /// Release our presence so Teams shows the user's own.
    Clear,
}

/// A CC status the profile knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CcStatus {
    pub name: String,
    pub routable: bool,
}

/// A Teams → CC rule. Rules are tried in file order; the first whose `when`
/// matches the presence and whose `replaces` holds the current CC status fires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The rule's name in explanations and logs (its position when unnamed).
    pub name: String,
    pub when: Vec<PresencePattern>,
    pub set: StatusId,
    /// CC statuses this rule may replace; `None` means any.
    pub replaces: Option<Vec<StatusId>>,
    /// Put the replaced status back when the Teams condition ends.
    pub restore: bool,
    /// Overrides the profile's debounce for presences this rule matches.
    pub debounce: Option<Duration>,
}

impl Rule {
    pub fn matches_presence(&self, presence: &Presence) -> bool {
        self.when.iter().any(|p| p.matches(presence))
    }

    pub fn may_replace(&self, status: StatusId) -> bool {
        self.replaces.as_ref().is_none_or(|r| r.contains(&status))
    }
}

/// A validated profile.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    pub name: String,
    pub direction: Direction,
    pub debounce: Duration,
    /// The side that wins when both change inside one debounce window; the
    /// other direction is the one the loop guard suspends.
    pub prefer: Side,
    pub write_mode: WriteMode,
    /// Indexed by `StatusId`.
    pub statuses: Vec<CcStatus>,
    /// Indexed by `StatusId`; unlisted statuses hold the profile's default.
    pub cc_to_teams: Vec<TeamsTarget>,
    /// `default_teams`: what Teams shows for a status without a `teams`
    /// key, and for a status an agent holds that the profile does not know
    /// (it was removed from the file, or the agent moved to this profile).
    pub default_teams: TeamsTarget,
    pub rules: Vec<Rule>,
    /// Teams presences that make an agent unroutable.
    pub blocking: Vec<PresencePattern>,
}

impl Profile {
    pub fn status_id(&self, name: &str) -> Option<StatusId> {
        self.statuses
            .iter()
            .position(|s| s.name == name)
            .and_then(|i| u16::try_from(i).ok())
            .map(StatusId)
    }

    pub fn status(&self, id: StatusId) -> Option<&CcStatus> {
        self.statuses.get(usize::from(id.0))
    }

    pub fn status_name(&self, id: StatusId) -> &str {
        self.status(id).map_or("?", |s| s.name.as_str())
    }

    pub fn target_for(&self, id: StatusId) -> &TeamsTarget {
        self.cc_to_teams
            .get(usize::from(id.0))
            .unwrap_or(&TeamsTarget::Clear)
    }

    /// The first rule that fires for `presence` while the CC shows `current`.
    pub fn rule_for(&self, presence: &Presence, current: StatusId) -> Option<(usize, &Rule)> {
        self.rules
            .iter()
            .enumerate()
            .find(|(_, r)| r.matches_presence(presence) && r.may_replace(current))
    }

    pub fn is_blocking(&self, presence: &Presence) -> bool {
        self.blocking.iter().any(|p| p.matches(presence))
    }
}
