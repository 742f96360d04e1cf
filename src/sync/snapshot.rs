//! One agent's engine state as plain data, so the daemon can store it and
//! carry ownership, restore points, pending changes and writes owed across a
//! restart (SPEC §5.8, §7).
//!
//! Statuses and rules are kept by name, not by position, so a snapshot taken
//! under one mapping restores under an edited one: whatever no longer exists
//! is dropped, the rest keeps its meaning. A write that was on its way when
//! the daemon stopped is not trusted to have landed: it is sent again.

use serde::{Deserialize, Serialize};

use crate::mapping::{Profile, StatusId, TeamsTarget};
use crate::presence::Presence;
use crate::time::Timestamp;

use super::Flow;
use super::agent::{AgentState, Owner, Request, RequestKind, UnknownStatus};
use super::loop_guard::{LoopGuard, Suspended};
use super::restore::RestorePoint;

/// The snapshot's wire form. Presences are `Availability/Activity`, targets
/// are a presence or `clear`, times are microseconds since the epoch.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentSnapshot {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cc: Option<CcSnapshot>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cc_handled: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cc_requested: Option<RequestSnapshot>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub teams: Option<(String, Timestamp)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub teams_handled: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired_status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active: Option<(String, Timestamp)>,
    /// The target of a write sent and not yet answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_set: Option<(String, Timestamp)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub echo_deadline: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overridden_since: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outranked_since: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keepalive_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<(String, Timestamp)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreSnapshot>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub loop_changes: Vec<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loop_suspended: Option<SuspensionSnapshot>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CcSnapshot {
    pub status: String,
    /// `person` or `daemon`.
    pub owner: String,
    pub since: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSnapshot {
    pub status: String,
    pub at: Timestamp,
    /// `rule` or `restore`.
    pub kind: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreSnapshot {
    pub rule: String,
    pub previous: String,
    pub set: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuspensionSnapshot {
    /// The directions stopped: `cc_to_teams`, `teams_to_cc`.
    pub flows: Vec<String>,
    pub until: Timestamp,
}

fn presence_text(p: &Presence) -> String {
    p.to_string()
}

fn presence_from(text: &str) -> Option<Presence> {
    let (a, b) = text.split_once('/')?;
    Some(Presence::from_graph(a, b))
}

fn target_text(t: &TeamsTarget) -> String {
    match t {
        TeamsTarget::Set(p) => presence_text(p),
        TeamsTarget::Clear => "clear".to_string(),
    }
}

fn target_from(text: &str) -> Option<TeamsTarget> {
    if text == "clear" {
        Some(TeamsTarget::Clear)
    } else {
        presence_from(text).map(TeamsTarget::Set)
    }
}

fn owner_text(o: Owner) -> &'static str {
    match o {
        Owner::Person => "person",
        Owner::Daemon => "daemon",
        Owner::Routing => "routing",
    }
}

fn kind_text(k: RequestKind) -> &'static str {
    match k {
        RequestKind::Rule => "rule",
        RequestKind::Restore => "restore",
    }
}

fn flow_from(text: &str) -> Option<Flow> {
    match text {
        "cc_to_teams" => Some(Flow::CcToTeams),
        "teams_to_cc" => Some(Flow::TeamsToCc),
        _ => None,
    }
}

/// Takes one agent's state apart by name.
pub(crate) fn take(state: &AgentState, profile: &Profile) -> AgentSnapshot {
    let name = |s: StatusId| profile.status_name(s).to_string();
    let (loop_changes, suspension) = state.guard.parts();
    AgentSnapshot {
        cc: match (&state.cc.current, &state.cc.unknown) {
            (Some((s, owner, since)), _) => Some(CcSnapshot {
                status: name(*s),
                owner: owner_text(*owner).to_string(),
                since: *since,
            }),
            // Kept by name like every status: the snapshot does not say
            // whether the profile knew it.
            (None, Some(u)) => Some(CcSnapshot {
                status: u.name.clone(),
                owner: owner_text(u.owner).to_string(),
                since: u.since,
            }),
            (None, None) => None,
        },
        cc_handled: state.cc.handled.map(name),
        cc_requested: state.cc.requested.map(|r| RequestSnapshot {
            status: name(r.status),
            at: r.at,
            kind: kind_text(r.kind).to_string(),
        }),
        teams: state
            .teams
            .current
            .as_ref()
            .map(|(p, t)| (presence_text(p), *t)),
        teams_handled: state.teams.handled.as_ref().map(presence_text),
        desired: state.writes.desired.as_ref().map(target_text),
        desired_status: state.writes.desired_status.map(name),
        active: state
            .writes
            .active
            .as_ref()
            .map(|(t, at)| (target_text(t), *at)),
        in_flight: state
            .writes
            .in_flight
            .as_deref()
            .map(|(_, t, _)| target_text(t)),
        previous_set: state
            .writes
            .previous_set
            .as_deref()
            .map(|(p, at)| (presence_text(p), *at)),
        echo_deadline: state.writes.echo_deadline.get(),
        overridden_since: state.writes.overridden_since.get(),
        outranked_since: state.writes.outranked_since.get(),
        keepalive_at: state.writes.keepalive_at.get(),
        retry_at: state.writes.retry_at.get(),
        last_error: state.writes.last_error.as_deref().cloned(),
        restore: state.restore.and_then(|r| {
            Some(RestoreSnapshot {
                rule: profile.rules.get(usize::from(r.rule))?.name.clone(),
                previous: name(r.previous),
                set: name(r.set),
            })
        }),
        loop_changes,
        loop_suspended: suspension.map(|(what, until)| SuspensionSnapshot {
            flows: match what {
                Suspended::One(f) => vec![f.as_str().to_string()],
                Suspended::Both => vec![
                    Flow::CcToTeams.as_str().to_string(),
                    Flow::TeamsToCc.as_str().to_string(),
                ],
            },
            until,
        }),
    }
}

/// Puts one agent's state back together under `profile`. Names the profile
/// no longer knows are dropped, but for the CC status the agent holds: that
/// one is kept as unknown to the profile, and Teams gets the profile's
/// `default_teams` for it. Returns the state and whether a write was
/// owed (sent but never answered), which the engine sends again.
pub(crate) fn rebuild(
    snapshot: &AgentSnapshot,
    mut state: AgentState,
    profile: &Profile,
    now: Timestamp,
) -> AgentState {
    let id = |name: &str| profile.status_id(name);
    if let Some(c) = &snapshot.cc {
        let owner = match c.owner.as_str() {
            "daemon" => Owner::Daemon,
            "routing" => Owner::Routing,
            _ => Owner::Person,
        };
        let since = c.since.min(now);
        match id(&c.status) {
            Some(status) => state.cc.current = Some((status, owner, since)),
            None => {
                state.cc.unknown = Some(Box::new(UnknownStatus {
                    name: c.status.clone(),
                    owner,
                    since,
                }));
            }
        }
    }
    state.cc.handled = snapshot.cc_handled.as_deref().and_then(id);
    state.cc.requested = snapshot.cc_requested.as_ref().and_then(|r| {
        Some(Request {
            status: id(&r.status)?,
            at: r.at.min(now),
            kind: match r.kind.as_str() {
                "restore" => RequestKind::Restore,
                _ => RequestKind::Rule,
            },
        })
    });
    state.teams.current = snapshot
        .teams
        .as_ref()
        .and_then(|(p, t)| Some((presence_from(p)?, (*t).min(now))));
    state.teams.handled = snapshot.teams_handled.as_deref().and_then(presence_from);
    state.writes.desired_status = snapshot.desired_status.as_deref().and_then(id);
    // What the CC status maps to under the profile in force now, when it is
    // known; otherwise what was decided.
    state.writes.desired = match state.writes.desired_status {
        Some(status) => Some(profile.target_for(status).clone()),
        None if state.cc.unknown.is_some() => Some(profile.default_teams.clone()),
        None => snapshot.desired.as_deref().and_then(target_from),
    };
    state.writes.active = snapshot
        .active
        .as_ref()
        .and_then(|(t, at)| Some((target_from(t)?, (*at).min(now))));
    state.writes.previous_set = snapshot
        .previous_set
        .as_ref()
        .and_then(|(p, at)| Some(Box::new((presence_from(p)?, *at))));
    state.writes.echo_deadline.set(snapshot.echo_deadline);
    state.writes.overridden_since.set(snapshot.overridden_since);
    state.writes.outranked_since.set(snapshot.outranked_since);
    state.writes.keepalive_at.set(snapshot.keepalive_at);
    state.writes.retry_at.set(snapshot.retry_at);
    state.writes.last_error = snapshot.last_error.clone().map(Box::new);
    let in_flight = snapshot.in_flight.as_deref().and_then(target_from);
    let active = state.writes.active.as_ref().map(|(t, _)| t.clone());
    match in_flight {
        // A keep-alive was on its way: re-assert the session now.
        Some(t) if Some(&t) == active.as_ref() => state.writes.keepalive_at.set(Some(now)),
        // A write of something no longer wanted may have landed: count it
        // as what Teams has from us, so what is wanted is written again.
        Some(t) if Some(&t) != state.writes.desired.as_ref() => {
            state.writes.active = Some((t, now));
        }
        // The wanted write itself: `desired != active` sends it again.
        _ => {}
    }
    state.restore = snapshot.restore.as_ref().and_then(|r| {
        Some(RestorePoint {
            rule: u16::try_from(profile.rules.iter().position(|rule| rule.name == r.rule)?).ok()?,
            previous: id(&r.previous)?,
            set: id(&r.set)?,
        })
    });
    let suspension = snapshot.loop_suspended.as_ref().and_then(|s| {
        let flows: Vec<Flow> = s.flows.iter().filter_map(|f| flow_from(f)).collect();
        let what = match flows.as_slice() {
            [one] => Suspended::One(*one),
            [_, _, ..] => Suspended::Both,
            [] => return None,
        };
        Some((what, s.until))
    });
    state.guard = LoopGuard::from_parts(snapshot.loop_changes.clone(), suspension);
    state
}
