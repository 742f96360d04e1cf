//! The debounce rule: a change propagates only after it held for its window,
//! so a status that lasted less never reaches the other side.

use std::time::Duration;

use crate::mapping::{Profile, StatusId};
use crate::presence::Presence;
use crate::time::Timestamp;

use super::agent::{AgentState, CcSide, TeamsSide};
use super::restore::RestorePoint;

/// When the CC side's pending change may propagate (None: nothing pending).
pub fn cc_due(cc: &CcSide, debounce: Duration) -> Option<Timestamp> {
    let (status, _, since) = cc.current?;
    (cc.handled != Some(status)).then(|| since + debounce)
}

/// The window a Teams presence must hold: that of the rule that would fire
/// for it with the CC showing `cc` (its own, or the profile's); when none
/// would but a restore is waiting, the restoring rule's window applies to
/// leaving its condition.
pub fn teams_window(
    profile: &Profile,
    presence: &Presence,
    cc: Option<StatusId>,
    restore: Option<&RestorePoint>,
) -> Duration {
    if let Some((_, rule)) = cc.and_then(|status| profile.rule_for(presence, status)) {
        return rule.debounce.unwrap_or(profile.debounce);
    }
    restore
        .and_then(|r| profile.rules.get(usize::from(r.rule)))
        .and_then(|r| r.debounce)
        .unwrap_or(profile.debounce)
}

/// When the Teams side's pending change may be evaluated, with its window.
pub fn teams_due(
    teams: &TeamsSide,
    profile: &Profile,
    cc: Option<StatusId>,
    restore: Option<&RestorePoint>,
) -> Option<(Timestamp, Duration)> {
    let (presence, since) = teams.current.as_ref()?;
    if teams.handled.as_ref() == Some(presence) {
        return None;
    }
    let window = teams_window(profile, presence, cc, restore);
    Some((*since + window, window))
}

/// [`teams_due`] for an agent as it stands: its CC status and restore point.
pub fn teams_due_now(state: &AgentState, profile: &Profile) -> Option<(Timestamp, Duration)> {
    teams_due(
        &state.teams,
        profile,
        state.cc.status(),
        state.restore.as_ref(),
    )
}
