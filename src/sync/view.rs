//! The combined picture of one agent, as the API shows it (SPEC §3.1).

use crate::mapping::{Profile, TeamsTarget};
use crate::presence::Presence;
use crate::time::Timestamp;

use super::agent::{AgentState, Owner, RequestKind};
use super::loop_guard::Suspended;
use super::{Flow, Settings, debounce, echo};

#[derive(Clone, Debug, PartialEq)]
pub struct AgentView {
    pub profile: String,
    pub cc_status: Option<String>,
    /// False when the agent holds a status its profile does not know (see
    /// [`crate::sync::SyncEvent::StatusNotInProfile`]).
    pub cc_status_in_profile: bool,
    pub cc_set_by: Option<Owner>,
    pub cc_since: Option<Timestamp>,
    pub cc_routable: bool,
    /// A CC change waiting for its debounce, and when it is due.
    pub cc_pending_until: Option<Timestamp>,
    /// A status the daemon asked the CC for and has not seen back yet.
    pub cc_requested: Option<(String, RequestKind, Timestamp)>,
    /// What the daemon will put back when a rule's Teams condition ends:
    /// the rule's name and the status.
    pub restore: Option<(String, String)>,
    pub teams_presence: Option<Presence>,
    pub teams_since: Option<Timestamp>,
    /// Who Teams shows: our write (`Daemon`) or the user's own presence.
    pub teams_set_by: Option<Owner>,
    /// The profile blocks routing while Teams shows this presence.
    pub teams_blocking: bool,
    /// A Teams change waiting for its debounce, and when it is due.
    pub teams_pending_until: Option<Timestamp>,
    /// What the CC status says Teams should show.
    pub teams_target: Option<TeamsTarget>,
    /// What the last write Graph confirmed set, and when.
    pub teams_written: Option<(TeamsTarget, Timestamp)>,
    pub write_in_flight: bool,
    /// The later of the two pending changes' due times.
    pub debouncing_until: Option<Timestamp>,
    pub suspended: Option<(Vec<Flow>, Timestamp)>,
    pub teams_override_since: Option<Timestamp>,
    /// A session of the user's own outranks our write (not an override).
    pub teams_outranked_since: Option<Timestamp>,
    pub last_error: Option<(String, Timestamp)>,
    /// The last decision, explained.
    pub last_decision: Option<String>,
    /// Why writes to Teams are held for every agent (the app lacks the
    /// permission to write presence), for agents whose profile writes.
    pub writes_held: Option<String>,
}

impl AgentView {
    pub(crate) fn build(
        state: &AgentState,
        profile: &Profile,
        settings: &Settings,
        now: Timestamp,
    ) -> Self {
        let cc_pending_until = debounce::cc_due(&state.cc, profile.debounce);
        let teams_pending_until = debounce::teams_due_now(state, profile).map(|(t, _)| t);
        let debouncing_until = [cc_pending_until, teams_pending_until]
            .into_iter()
            .flatten()
            .filter(|t| *t > now)
            .max();
        let teams_set_by = state.teams.presence().map(|p| {
            if echo::is_teams_echo(&state.writes, p, now, settings.echo_window) {
                Owner::Daemon
            } else {
                Owner::Person
            }
        });
        AgentView {
            profile: profile.name.clone(),
            cc_status: state
                .cc
                .status()
                .map(|s| profile.status_name(s).to_string())
                .or_else(|| state.cc.unknown.as_ref().map(|u| u.name.clone())),
            cc_status_in_profile: state.cc.unknown.is_none(),
            cc_set_by: state.cc.held().map(|(o, _)| o),
            cc_since: state.cc.held().map(|(_, t)| t),
            cc_routable: state
                .cc
                .status()
                .and_then(|s| profile.status(s))
                .is_some_and(|s| s.routable),
            cc_pending_until,
            cc_requested: state
                .cc
                .requested
                .map(|r| (profile.status_name(r.status).to_string(), r.kind, r.at)),
            restore: state.restore.map(|r| {
                let rule = profile
                    .rules
                    .get(usize::from(r.rule))
                    .map_or_else(String::new, |rule| rule.name.clone());
                (rule, profile.status_name(r.previous).to_string())
            }),
            teams_presence: state.teams.presence().cloned(),
            teams_since: state.teams.current.as_ref().map(|(_, t)| *t),
            teams_set_by,
            teams_blocking: state
                .teams
                .presence()
                .is_some_and(|p| profile.is_blocking(p)),
            teams_pending_until,
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
            teams_override_since: state.writes.overridden_since.get(),
            teams_outranked_since: state.writes.outranked_since.get(),
            last_error: state.writes.last_error.as_deref().cloned(),
            last_decision: state.last_why.as_ref().map(|w| w.describe(profile)),
            writes_held: None,
        }
    }
}
