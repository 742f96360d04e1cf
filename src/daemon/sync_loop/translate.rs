//! The engine's decisions turned into what the loop puts out: events on
//! the stream, outbox entries and Teams write jobs, and the agents they
//! make dirty.

use std::collections::BTreeSet;

use crate::events::{
    BackInProfile, EventData, LoopSuspended, NewEvent, NoData, NotInProfile, PresenceChanged,
    StatusRequest, SyncRequest, SyncRequestKind, TeamsMismatch, WriteFailed,
};
use crate::metrics::Direction;
use crate::store::{OutboxEntry, OutboxPresence, OutboxWrite, Store, WriteAction};
use crate::sync::{Decision, Reason, SyncEvent, TeamsWrite, WriteId};
use crate::time::Timestamp;

use super::super::view::{self, presence_out};
use super::super::writer::WriteJob;
use super::SyncLoop;

/// Why a Teams write went out: to renew our session, or to carry a change
/// (which the propagation metrics time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum WritePurpose {
    KeepAlive,
    Change,
}

pub(super) fn write_json(id: WriteId, write: &TeamsWrite) -> OutboxWrite {
    let (action, presence, expiry) = match write {
        TeamsWrite::SetSession { presence, expiry } => (
            WriteAction::SetSession,
            Some(presence),
            Some(expiry.as_secs()),
        ),
        TeamsWrite::ClearSession => (WriteAction::ClearSession, None, None),
        TeamsWrite::SetPreferred { presence } => (WriteAction::SetPreferred, Some(presence), None),
        TeamsWrite::ClearPreferred => (WriteAction::ClearPreferred, None, None),
    };
    OutboxWrite {
        write_id: id.0,
        action,
        presence: presence.map(|p| {
            let out = presence_out(p);
            OutboxPresence {
                availability: out.availability,
                activity: out.activity,
            }
        }),
        expiry_seconds: expiry,
    }
}

impl<S: Store> SyncLoop<S> {
    pub(super) fn event(&mut self, now: Timestamp, agent: Option<&str>, data: EventData) {
        self.step
            .events
            .push(NewEvent::new(now.to_utc(), agent.map(str::to_string), data));
    }

    /// Turns the engine's decisions into writes, events and dirty agents.
    pub(super) fn absorb(&mut self, now: Timestamp, decisions: Vec<Decision>) {
        let mut touched = BTreeSet::new();
        for d in decisions {
            match d {
                Decision::WriteTeams {
                    agent,
                    id,
                    write,
                    why,
                } => {
                    let Some(agent_id) = self.by_key.get(&agent).map(str::to_string) else {
                        continue;
                    };
                    let Some(user_id) = self
                        .agents
                        .get(agent_id.as_str())
                        .and_then(|e| e.teams_user_id().map(str::to_string))
                    else {
                        continue;
                    };
                    let reported = match why.reason {
                        Reason::CcStatusHeld { since, .. } => Some(since),
                        _ => None,
                    };
                    let purpose = if why.reason == Reason::KeepAlive {
                        WritePurpose::KeepAlive
                    } else {
                        WritePurpose::Change
                    };
                    self.writes_out.insert(id, (purpose, reported));
                    self.step.outbox.push((
                        agent_id.clone(),
                        Some(OutboxEntry {
                            agent_id: agent_id.clone(),
                            write: write_json(id, &write),
                            decided_at: Timestamp::to_utc(now),
                        }),
                    ));
                    self.outbox_agents.insert(agent_id.clone());
                    self.step.jobs.push(WriteJob {
                        key: agent,
                        agent_id: agent_id.clone(),
                        user_id,
                        id,
                        write,
                    });
                    touched.insert(agent_id);
                }
                Decision::RequestCc { agent, status, why } => {
                    let Some(agent_id) = self.by_key.get(&agent).map(str::to_string) else {
                        continue;
                    };
                    let profile = self.profile_of(agent);
                    let status_name = profile
                        .as_ref()
                        .map_or_else(String::new, |p| p.status_name(status).to_string());
                    let kind = match why.reason {
                        Reason::Restored { .. } => SyncRequestKind::Restore,
                        _ => SyncRequestKind::Rule,
                    };
                    let reason = profile.as_ref().map(|p| why.describe(p));
                    let (presence, since) = match &why.reason {
                        Reason::RuleFired {
                            presence, since, ..
                        } => (Some(presence_out(presence)), Some(*since)),
                        Reason::Restored {
                            presence, since, ..
                        } => (presence.as_ref().map(presence_out), Some(*since)),
                        _ => (None, None),
                    };
                    if let Some(since) = since {
                        self.out
                            .metrics
                            .propagation(Direction::TeamsToCc)
                            .observe_duration(now.since(since));
                    }
                    self.event(
                        now,
                        Some(&agent_id),
                        EventData::CcStatusRequested(StatusRequest::Sync(SyncRequest {
                            status: status_name,
                            kind,
                            reason,
                            teams_presence: presence,
                        })),
                    );
                    touched.insert(agent_id);
                }
                Decision::Event { agent, event } => {
                    let Some(agent_id) = self.by_key.get(&agent).map(str::to_string) else {
                        continue;
                    };
                    let data = match event {
                        SyncEvent::TeamsPresenceChanged { presence } => {
                            EventData::TeamsPresenceChanged(PresenceChanged {
                                presence: presence_out(&presence),
                            })
                        }
                        SyncEvent::LoopSuspended {
                            flows,
                            until,
                            changes,
                        } => {
                            tracing::warn!(agent = %agent_id, changes, until = %Timestamp::to_utc(until), "loop guard suspended sync");
                            EventData::SyncLoopSuspended(LoopSuspended {
                                flows: flows.into_iter().map(Into::into).collect(),
                                until: Timestamp::to_utc(until),
                                changes,
                            })
                        }
                        SyncEvent::LoopResumed => {
                            tracing::info!(agent = %agent_id, "loop guard resumed sync");
                            EventData::SyncLoopResumed(NoData)
                        }
                        SyncEvent::TeamsOverrideDetected { expected, shown } => {
                            EventData::SyncTeamsOverrideDetected(TeamsMismatch {
                                expected: presence_out(&expected),
                                shown: shown.as_ref().map(presence_out),
                            })
                        }
                        SyncEvent::TeamsOverrideCleared => {
                            EventData::SyncTeamsOverrideCleared(NoData)
                        }
                        SyncEvent::TeamsOutranked { expected, shown } => {
                            tracing::info!(
                                agent = %agent_id,
                                expected = %expected,
                                shown = ?shown.as_ref().map(ToString::to_string),
                                "Teams shows the user's own session, which Graph ranks above the daemon's write (not an override)"
                            );
                            EventData::SyncTeamsOutranked(TeamsMismatch {
                                expected: presence_out(&expected),
                                shown: shown.as_ref().map(presence_out),
                            })
                        }
                        SyncEvent::WriteFailed { message } => {
                            EventData::SyncWriteFailed(WriteFailed { message })
                        }
                        SyncEvent::StatusNotInProfile { status, teams } => {
                            let profile = self.profile_of(agent).map(|p| p.name.clone());
                            tracing::warn!(
                                agent = %agent_id, status, profile = profile.as_deref().unwrap_or(""),
                                "the agent's CC status is not in its profile: kept, not routable, Teams shows the profile's default_teams until the CC reports a status the profile has"
                            );
                            EventData::CcStatusNotInProfile(NotInProfile {
                                status,
                                profile,
                                teams_target: view::target_out(&teams),
                            })
                        }
                        SyncEvent::StatusBackInProfile { status } => {
                            let profile = self.profile_of(agent).map(|p| p.name.clone());
                            tracing::info!(
                                agent = %agent_id, status, profile = profile.as_deref().unwrap_or(""),
                                "the agent's CC status is in its profile again"
                            );
                            EventData::CcStatusBackInProfile(BackInProfile { status, profile })
                        }
                    };
                    self.event(now, Some(&agent_id), data);
                    touched.insert(agent_id);
                }
            }
        }
        for id in touched {
            self.step.dirty.insert(id);
        }
    }
}
