//! What the API returns, built from what the sync loop replies: the
//! combined agent view (SPEC §3.1: the stored record, the engine's picture,
//! the router's, and whether the agent can take contacts and why not),
//! contacts and queues.

use std::time::Duration;

use crate::api::model::{
    AgentOut, CcOut, ContactOut, ErrorAt, LinkConflictOut, MissingSkill, PresenceOut, QueueFitOut,
    QueueOut, RequestedOut, RestoreOut, RoutingOut, SetBy, SuspendedOut, SyncOut, TargetOut,
    TeamsOut, WrittenOut,
};
use crate::mapping::{Profile, TeamsTarget};
use crate::presence::Presence;
use crate::routing::{AgentRoutingView, OverflowTarget, Phase, QueueView};
use crate::store::AgentRecord;
use crate::sync::AgentView;
use crate::sync::agent::{Owner, RequestKind};
use crate::time::Timestamp;

use super::sync_loop::{AgentState, AgentSync, ContactState};

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

/// The agent as the API shows it.
pub fn agent_out(state: &AgentState) -> AgentOut {
    let mut out = match &state.sync {
        AgentSync::Linked(v) => linked(&state.record, v),
        AgentSync::Unlinked { profile, conflict } => unlinked(state, profile, conflict.as_ref()),
    };
    if let Some(r) = &state.routing {
        out.routing = routing_out(r, state.at, &out.not_routable_because);
    }
    out
}

/// Why the agent cannot take contacts now, as far as its sync side goes;
/// empty when it can.
pub fn not_routable_because_of(state: &AgentState) -> Vec<String> {
    let (cc_in_profile, cc_routable) = state.cc_in_profile_and_routable();
    let (teams, held_by) = match &state.sync {
        AgentSync::Linked(v) => (v.teams_presence.as_ref(), None),
        AgentSync::Unlinked { conflict, .. } => {
            (None, conflict.as_ref().map(|(_, held_by)| held_by.as_str()))
        }
    };
    not_routable_because(RoutableFacts {
        linked: state.linked(),
        held_by,
        cc_status: state.cc_status(),
        cc_in_profile,
        cc_routable,
        teams,
        teams_blocking: state.teams_blocking(),
        profile: state.profile_name(),
    })
}

/// The view of a linked agent.
fn linked(record: &AgentRecord, view: &AgentView) -> AgentOut {
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
            writes_held: view.writes_held.clone(),
        },
        ..base(record, &view.profile, true)
    }
}

/// The view of an agent not linked to a Teams user yet; `conflict`: the
/// user it waits for and the agent holding it.
fn unlinked(
    state: &AgentState,
    profile: &Profile,
    conflict: Option<&(String, String)>,
) -> AgentOut {
    let record = &state.record;
    let status = record.cc_status.as_ref().map(|s| s.status.clone());
    let (in_profile, cc_routable) = state.cc_in_profile_and_routable();
    let because = not_routable_because_of(state);
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
            writes_held: None,
        },
        routing: crate::api::model::RoutingOut::default(),
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn later(t: Timestamp, now: Timestamp) -> Option<chrono::DateTime<chrono::Utc>> {
    (t > now).then(|| t.to_utc())
}
/// A contact as the API shows it.
pub fn contact_out(state: &ContactState) -> ContactOut {
    let (c, place) = (&state.record, state.place_in_queue);
    let (agent, expires, ended) = match &c.phase {
        Phase::Waiting => (None, None, None),
        Phase::Offered { agent, expires, .. } => {
            (Some(agent.clone()), Some(expires.to_utc()), None)
        }
        Phase::Accepted { agent, .. } => (Some(agent.clone()), None, None),
        Phase::Ended { agent, at, .. } => (agent.clone(), None, Some(at.to_utc())),
    };
    ContactOut {
        id: c.id.clone(),
        queue: c.queue.clone(),
        state: c.phase.name().to_string(),
        priority: c.priority,
        skills: c.skills.clone(),
        data: c.data.clone(),
        arrived: c.arrived.to_utc(),
        queued_at: c.queued_at.to_utc(),
        place_in_queue: place,
        agent,
        offer_expires: expires,
        offers: c.offers,
        overflowed_from: c.overflowed_from.clone(),
        ended_at: ended,
    }
}
/// A queue as the API shows it.
pub fn queue_out(v: QueueView) -> QueueOut {
    let s = &v.settings;
    QueueOut {
        name: s.name.clone(),
        strategy: s.strategy.as_str().to_string(),
        priority: s.priority,
        skills: s.skills.clone(),
        offer_timeout_seconds: secs(s.offer_timeout),
        wrap_up_seconds: secs(s.wrap_up),
        max_no_answer: s.max_no_answer,
        miss_backoff_seconds: secs(s.miss_backoff),
        max_wait_seconds: s.max_wait.map(secs),
        overflow: s.overflow.as_ref().map(|o| match o {
            OverflowTarget::Queue(q) => serde_json::json!({ "queue": q }),
            OverflowTarget::TeamsUsers(u) => serde_json::json!({ "teams_users": u }),
        }),
        waiting: v.waiting,
        longest_wait_seconds: v.longest_wait.map(secs),
        agents: v.agents,
        eligible_agents: v.eligible_agents,
        offered: v.offered_now,
        last_offered: v.last_offered.map(|(_, id)| id),
        totals: v.totals,
        completed_today: v.completed_today,
    }
}
/// The routing side of the agent view; `presence`: why the agent's
/// sync side keeps it from being routed.
fn routing_out(v: &AgentRoutingView, now: Timestamp, presence: &[String]) -> RoutingOut {
    let mut because: Vec<String> = presence.to_vec();
    because.extend(
        v.blockers
            .iter()
            .filter(|b| !b.is_presence())
            .map(ToString::to_string),
    );
    let queues: Vec<QueueFitOut> = v
        .queues
        .iter()
        .map(|f| QueueFitOut {
            queue: f.queue.clone(),
            position: f.position,
            skills_match: f.missing.is_empty(),
            missing_skills: f
                .missing
                .iter()
                .map(|(skill, needed, has)| MissingSkill {
                    skill: skill.clone(),
                    needed: *needed,
                    has: *has,
                })
                .collect(),
        })
        .collect();
    if !queues.is_empty() && queues.iter().all(|q| !q.skills_match) {
        because.push("its skills match none of its queues".to_string());
    }
    RoutingOut {
        eligible: v.eligible,
        not_eligible_because: because,
        capacity: v.capacity,
        queues,
        offered: v.offered.clone(),
        contacts: v.contacts.clone(),
        idle_since: v.state.idle_since.to_utc(),
        wrap_up_until: later(v.state.wrap_until, now),
        backoff_until: later(v.state.backoff_until, now),
        paused_since: v.state.paused_since.map(Timestamp::to_utc),
        misses: v.state.misses,
        contacts_today: v.contacts_today,
        busy_today_seconds: secs(v.busy_today),
    }
}
