//! The combined picture of one agent, as the API shows it.

use crate::mapping::{Profile, TeamsTarget};
use crate::presence::Presence;
use crate::time::Timestamp;

use super::agent::{AgentState, Owner};
use super::loop_guard::Suspended;
use super::{Flow, debounce};

#[derive(Clone, Debug, PartialEq)]
pub struct AgentView {
    pub profile: String,
    pub cc_status: Option<String>,
    pub cc_set_by: Option<Owner>,
    pub cc_since: Option<Timestamp>,
    pub cc_routable: bool,
    pub teams_presence: Option<Presence>,
    pub teams_since: Option<Timestamp>,
    /// The profile blocks routing while Teams shows this presence.
    pub teams_blocking: bool,
    /// What the CC status says Teams should show.
    pub teams_target: Option<TeamsTarget>,
    /// What the last write Graph confirmed set, and when.
    pub teams_written: Option<(TeamsTarget, Timestamp)>,
    pub write_in_flight: bool,
    /// A change is waiting for its debounce until then.
    pub debouncing_until: Option<Timestamp>,
    pub suspended: Option<(Vec<Flow>, Timestamp)>,
    pub teams_override_since: Option<Timestamp>,
    pub last_error: Option<(String, Timestamp)>,
    /// The last decision, explained.
    pub last_decision: Option<String>,
}

impl AgentView {
    pub(crate) fn build(state: &AgentState, profile: &Profile, now: Timestamp) -> Self {
        let cc_due = debounce::cc_due(&state.cc, profile.debounce);
        let teams_due =
            debounce::teams_due(&state.teams, profile, state.restore.as_ref()).map(|(t, _)| t);
        let debouncing_until = [cc_due, teams_due]
            .into_iter()
            .flatten()
            .filter(|t| *t > now)
            .max();
        AgentView {
            profile: profile.name.clone(),
            cc_status: state
                .cc
                .status()
                .map(|s| profile.status_name(s).to_string()),
            cc_set_by: state.cc.current.map(|(_, o, _)| o),
            cc_since: state.cc.current.map(|(_, _, t)| t),
            cc_routable: state
                .cc
                .status()
                .and_then(|s| profile.status(s))
                .is_some_and(|s| s.routable),
            teams_presence: state.teams.presence().cloned(),
            teams_since: state.teams.current.as_ref().map(|(_, t)| *t),
            teams_blocking: state
                .teams
                .presence()
                .is_some_and(|p| profile.is_blocking(p)),
            teams_target: state.writes.desired.clone(),
            teams_written: state.writes.active.clone(),
            write_in_flight: state.writes.in_flight.is_some(),
            debouncing_until,
            suspended: state.guard.suspension(now).map(|(what, until)| {
                let flows = match what {
                    Suspended::One(f) => vec![f],
                    Suspended::Both => vec![Flow::CcToTeams, Flow::TeamsToCc],
                };
                (flows, until)
            }),
            teams_override_since: state.writes.overridden_since,
            last_error: state.writes.last_error.clone(),
            last_decision: state.last_why.as_ref().map(|w| w.describe(profile)),
        }
    }
}
