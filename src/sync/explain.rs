//! Why the engine decided what it did, kept per agent for the API to show.

use std::time::Duration;

use crate::duration::format_duration;
use crate::mapping::{Profile, StatusId};
use crate::presence::Presence;
use crate::time::Timestamp;

use super::Flow;

/// The reason behind one decision.
#[derive(Clone, Debug, PartialEq)]
pub struct Why {
    pub flow: Flow,
    pub reason: Reason,
    /// When the decision was made.
    pub at: Timestamp,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Reason {
    /// The CC status held for the debounce; Teams shows what the profile maps it to.
    CcStatusHeld {
        status: StatusId,
        since: Timestamp,
        debounce: Duration,
    },
    /// A Teams → CC rule fired on a presence that held for its debounce.
    RuleFired {
        rule: u16,
        presence: Presence,
        since: Timestamp,
        debounce: Duration,
        replaced: StatusId,
    },
    /// The Teams condition of `rule` ended; the status it replaced is put back.
    Restored {
        rule: u16,
        presence: Option<Presence>,
        since: Timestamp,
        debounce: Duration,
    },
    /// Our session is re-asserted before Graph lets it lapse.
    KeepAlive,
    /// A failed write is tried again.
    Retry,
    /// The mapping changed, and with it what the CC status shows in Teams.
    MappingChanged { status: StatusId },
    /// The agent holds a CC status its profile does not know: Teams shows
    /// the profile's `default_teams`.
    StatusNotInProfile,
    /// The agent was removed: presence the daemon set is handed back.
    AgentRemoved,
    /// A write decided before the daemon restarted, not confirmed then: sent again.
    Resumed,
}

impl Why {
    /// One line for people: which rule, which direction, why.
    pub fn describe(&self, profile: &Profile) -> String {
        let rule_name = |rule: &u16| {
            profile
                .rules
                .get(usize::from(*rule))
                .map_or("?", |r| r.name.as_str())
                .to_string()
        };
        let text = match &self.reason {
            Reason::CcStatusHeld {
                status, debounce, ..
            } => format!(
                "CC status `{}` held {} → Teams as profile `{}` maps it",
                profile.status_name(*status),
                format_duration(*debounce),
                profile.name
            ),
            Reason::RuleFired {
                rule,
                presence,
                debounce,
                replaced,
                ..
            } => format!(
                "Teams {presence} held {} → rule `{}` replaced CC status `{}`",
                format_duration(*debounce),
                rule_name(rule),
                profile.status_name(*replaced)
            ),
            Reason::Restored { rule, presence, .. } => format!(
                "Teams left the condition of rule `{}`{} → CC status restored",
                rule_name(rule),
                presence
                    .as_ref()
                    .map(|p| format!(" (now {p})"))
                    .unwrap_or_default()
            ),
            Reason::KeepAlive => "session kept alive before it lapses".to_string(),
            Reason::Retry => "retrying a write that failed".to_string(),
            Reason::MappingChanged { status } => format!(
                "profile `{}` changed what CC status `{}` shows in Teams",
                profile.name,
                profile.status_name(*status)
            ),
            Reason::StatusNotInProfile => format!(
                "the CC status is not in profile `{}`: Teams shows its default_teams",
                profile.name
            ),
            Reason::AgentRemoved => "agent removed: presence handed back".to_string(),
            Reason::Resumed => "write decided before a restart, sent again".to_string(),
        };
        format!("{}: {text}", self.flow.as_str())
    }
}
