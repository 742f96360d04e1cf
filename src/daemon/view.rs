//! The combined agent view the API returns (SPEC §3.1): the stored record,
//! the engine's picture, and whether the agent can take contacts and why not.

use crate::api::model::{
    AgentOut, CcOut, ErrorAt, LinkConflictOut, PresenceOut, RequestedOut, RestoreOut, SetBy,
    SuspendedOut, SyncOut, TargetOut, TeamsOut, WrittenOut,
};
use crate::mapping::{Profile, TeamsTarget};
use crate::presence::Presence;
use crate::store::AgentRecord;
use crate::sync::AgentView;
use crate::sync::agent::{Owner, RequestKind};
use crate::time::Timestamp;

pub fn presence_out(p: &Presence) -> PresenceOut {
    PresenceOut {
        availability: p.availability.as_str().to_string(),
        activity: p.activity.as_str().to_string(),
    }
}

pub fn target_out(t: &TeamsTarget) -> TargetOut {
    match t {
        TeamsTarget::Set(p) => TargetOut {
            action: "set".into(),
            presence: Some(presence_out(p)),
        },
        TeamsTarget::Clear => TargetOut {
            action: "clear".into(),
            presence: None,
        },
    }
}

pub fn set_by(o: Owner) -> SetBy {
    match o {
        Owner::Person => SetBy::Agent,
        Owner::Daemon => SetBy::Daemon,
        Owner::Routing => SetBy::Routing,
    }
}

/// What decides whether an agent can take contacts now.
pub struct RoutableFacts<'a> {
    pub linked: bool,
    /// The agent holding the Teams user this unlinked one waits for.
    pub held_by: Option<&'a str>,
    pub cc_status: Option<&'a str>,
    pub cc_in_profile: bool,
    pub cc_routable: bool,
    pub teams: Option<&'a Presence>,
    pub teams_blocking: bool,
    pub profile: &'a str,
}

/// Why an agent cannot take contacts now; empty when it can.
pub fn not_routable_because(facts: RoutableFacts<'_>) -> Vec<String> {
    let RoutableFacts {
        linked,
        held_by,
        cc_status,
        cc_in_profile,
        cc_routable,
        teams,
        teams_blocking,
        profile,
    } = facts;
    let mut reasons = Vec::new();
    match held_by {
        _ if linked => {}
        Some(other) => reasons.push(format!(
            "not linked: its Teams user is already linked to agent `{other}`"
        )),
        None => reasons.push("not linked to a Teams user".to_string()),
    }
    match cc_status {
        None => reasons.push("no CC status reported yet".to_string()),
        Some(status) if !cc_in_profile => reasons.push(format!(
            "CC status `{status}` is not in profile `{profile}` (the mapping no longer has it)"
        )),
        Some(status) if !cc_routable => reasons.push(format!(
            "CC status `{status}` is not routable in profile `{profile}`"
        )),
        Some(_) => {}
    }
    if teams_blocking && let Some(p) = teams {
        reasons.push(format!("Teams shows {p}, which profile `{profile}` blocks"));
    }
    reasons
}

/// The view of a linked agent.
pub fn linked(record: &AgentRecord, view: &AgentView) -> AgentOut {
    let because = not_routable_because(RoutableFacts {
        linked: true,
        held_by: None,
        cc_status: view.cc_status.as_deref(),
        cc_in_profile: view.cc_status_in_profile,
        cc_routable: view.cc_routable,
        teams: view.teams_presence.as_ref(),
        teams_blocking: view.teams_blocking,
        profile: &view.profile,
    });
    AgentOut {
        cc: CcOut {
            status: view.cc_status.clone(),
            in_profile: view.cc_status_in_profile,
            set_by: view.cc_set_by.map(set_by),
            since: view.cc_since.map(Timestamp::to_utc),
            routable: view.cc_routable,
            pending_until: view.cc_pending_until.map(Timestamp::to_utc),
            requested: view.cc_requested.as_ref().map(|(s, k, at)| RequestedOut {
                status: s.clone(),
                kind: match k {
                    RequestKind::Rule => "rule".into(),
                    RequestKind::Restore => "restore".into(),
                },
                at: Timestamp::to_utc(*at),
            }),
        },
        teams: TeamsOut {
            presence: view.teams_presence.as_ref().map(presence_out),
            set_by: view.teams_set_by.map(set_by),
            since: view.teams_since.map(Timestamp::to_utc),
            blocking: view.teams_blocking,
            pending_until: view.teams_pending_until.map(Timestamp::to_utc),
            target: view.teams_target.as_ref().map(target_out),
            written: view.teams_written.as_ref().map(|(t, at)| WrittenOut {
                target: target_out(t),
                at: Timestamp::to_utc(*at),
            }),
        },
        routable: because.is_empty(),
        not_routable_because: because,
        sync: SyncOut {
            debouncing_until: view.debouncing_until.map(Timestamp::to_utc),
            suspended: view.suspended.as_ref().map(|(flows, until)| SuspendedOut {
                flows: flows.iter().map(|f| f.as_str().to_string()).collect(),
                until: Timestamp::to_utc(*until),
            }),
            teams_override_since: view.teams_override_since.map(Timestamp::to_utc),
            teams_outranked_since: view.teams_outranked_since.map(Timestamp::to_utc),
            write_in_flight: view.write_in_flight,
            last_error: view.last_error.as_ref().map(|(m, at)| ErrorAt {
                message: m.clone(),
                at: Timestamp::to_utc(*at),
            }),
            restore: view.restore.as_ref().map(|(rule, status)| RestoreOut {
                rule: rule.clone(),
                status: status.clone(),
            }),
            last_decision: view.last_decision.clone(),
        },
        ..base(record, &view.profile, true)
    }
}

/// The view of an agent not linked to a Teams user yet; `conflict`: the
/// user it waits for and the agent holding it.
pub fn unlinked(
    record: &AgentRecord,
    profile: &Profile,
    conflict: Option<&(String, String)>,
) -> AgentOut {
    let status = record.cc_status.as_ref().map(|s| s.status.clone());
    let known = status.as_deref().map(|s| profile.status_id(s));
    let in_profile = !matches!(known, Some(None));
    let cc_routable = known
        .flatten()
        .and_then(|id| profile.status(id))
        .is_some_and(|s| s.routable);
    let because = not_routable_because(RoutableFacts {
        linked: false,
        held_by: conflict.map(|(_, held_by)| held_by.as_str()),
        cc_status: status.as_deref(),
        cc_in_profile: in_profile,
        cc_routable,
        teams: None,
        teams_blocking: false,
        profile: &profile.name,
    });
    AgentOut {
        cc: CcOut {
            status,
            in_profile,
            set_by: record.cc_status.as_ref().map(|_| SetBy::Agent),
            since: record.cc_status.as_ref().map(|s| s.at),
            routable: cc_routable,
            pending_until: None,
            requested: None,
        },
        routable: false,
        not_routable_because: because,
        link_conflict: conflict.map(|(user, held_by)| LinkConflictOut {
            teams_user_id: user.clone(),
            held_by: held_by.clone(),
        }),
        ..base(record, &profile.name, false)
    }
}

fn base(record: &AgentRecord, profile: &str, linked: bool) -> AgentOut {
    AgentOut {
        id: record.id.clone(),
        teams_user: record.teams_user.clone(),
        teams_user_id: record.teams_user_id.clone(),
        upn: record.upn.clone(),
        display_name: record.display_name.clone(),
        groups: record.groups.clone(),
        skills: record.skills.clone(),
        phone: record.phone.clone(),
        profile: profile.to_string(),
        linked,
        link_conflict: None,
        cc: CcOut {
            status: None,
            in_profile: true,
            set_by: None,
            since: None,
            routable: false,
            pending_until: None,
            requested: None,
        },
        teams: TeamsOut {
            presence: None,
            set_by: None,
            since: None,
            blocking: false,
            pending_until: None,
            target: None,
            written: None,
        },
        routable: false,
        not_routable_because: Vec::new(),
        sync: SyncOut {
            debouncing_until: None,
            suspended: None,
            teams_override_since: None,
            teams_outranked_since: None,
            write_in_flight: false,
            last_error: None,
            restore: None,
            last_decision: None,
        },
        routing: crate::api::model::RoutingOut::default(),
    }
}
