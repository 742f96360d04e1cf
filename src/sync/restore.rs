//! Ownership and restore for the Teams → CC direction.
//!
//! When a rule with `restore` replaces a CC status, the daemon remembers what
//! it replaced and what it set. When the Teams condition ends it puts the old
//! status back — but only while the CC still shows the status the daemon set:
//! a status the agent picked by hand in between is theirs and stays.

use crate::mapping::{Profile, StatusId};
use crate::presence::Presence;

use super::agent::Owner;

/// What to put back, and which rule's condition must end first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestorePoint {
    pub rule: u16,
    pub previous: StatusId,
    pub set: StatusId,
}

/// What the Teams → CC direction does for a presence that held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TeamsToCc {
    /// A rule fires: ask the CC for `set`.
    Fire {
        rule: u16,
        set: StatusId,
    },
    /// The restoring rule's condition ended: ask for `previous` back.
    Restore {
        rule: u16,
        previous: StatusId,
    },
    Nothing,
}

/// Decides for `presence` with the CC showing `current` (set by `owner`).
/// `echo` is true when Teams shows our own write: rules never fire on our own
/// echo, but leaving a rule's condition still restores.
pub fn decide(
    profile: &Profile,
    presence: &Presence,
    current: StatusId,
    owner: Owner,
    restore: Option<&RestorePoint>,
    echo: bool,
) -> TeamsToCc {
    if !echo
        && let Some((index, rule)) = profile.rule_for(presence, current)
        && rule.set != current
        && let Ok(rule_index) = u16::try_from(index)
    {
        return TeamsToCc::Fire {
            rule: rule_index,
            set: rule.set,
        };
    }
    if let Some(point) = restore {
        let condition_holds = profile
            .rules
            .get(usize::from(point.rule))
            .is_some_and(|r| r.matches_presence(presence));
        if !condition_holds && current == point.set && owner == Owner::Daemon {
            return TeamsToCc::Restore {
                rule: point.rule,
                previous: point.previous,
            };
        }
    }
    TeamsToCc::Nothing
}

/// The restore point after rule `rule` fired, replacing `replaced` with `set`.
/// A chain of restoring rules keeps the status from before the first one.
pub fn after_fire(
    profile: &Profile,
    existing: Option<RestorePoint>,
    rule: u16,
    replaced: StatusId,
    set: StatusId,
) -> Option<RestorePoint> {
    let restores = profile
        .rules
        .get(usize::from(rule))
        .is_some_and(|r| r.restore);
    if !restores {
        return None;
    }
    let previous = match existing {
        Some(point) if point.set == replaced => point.previous,
        _ => replaced,
    };
    Some(RestorePoint {
        rule,
        previous,
        set,
    })
}
