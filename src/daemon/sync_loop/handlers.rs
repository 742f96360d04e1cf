//! The handlers of the agent commands: `PUT` and `DELETE` of an agent and
//! the CC statuses the CC reports or routing sets, with what they refuse
//! ([`LoopError`]). Queue and contact commands are handled in `routing.rs`.

use std::sync::Arc;

use crate::events::wire::SetBy;
use crate::events::{AgentUpdated, EventData, NoData, StatusReported};
use crate::store::{AgentRecord, CcReport, Store};
use crate::time::Timestamp;

use super::super::directory;
use super::super::view;
use super::agents::AgentEntry;
use super::command::{AgentSettings, CcStatusReport};
use super::error::{LoopError, suggestion};
use super::{SyncLoop, routing};

/// Who puts an agent in a CC status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum StatusSource {
    /// The CC reported it: a new one lifts a routing pause.
    Cc,
    /// Routing set it for a contact (`on_contact_status`, `after_contact_status`).
    Routing,
}

impl<S: Store> SyncLoop<S> {
    pub(super) fn put_agent(
        &mut self,
        now: Timestamp,
        id: &str,
        settings: AgentSettings,
    ) -> Result<(), LoopError> {
        let teams_user = settings.teams_user.clone();
        if let Some(profile) = &settings.profile
            && !self.mappings.has_profile(profile)
        {
            return Err(LoopError::UnknownProfile {
                profile: profile.clone(),
                suggestion: suggestion(
                    profile,
                    self.mappings.profiles.iter().map(|p| p.name.as_str()),
                ),
            });
        }
        routing::check_agent_routing(&self.router, &settings.queues, settings.capacity)?;
        if let Some((name, level)) = settings
            .skills
            .iter()
            .find(|(n, l)| n.is_empty() || **l > 100)
        {
            return Err(LoopError::InvalidSkill {
                name: name.clone(),
                level: *level,
            });
        }
        // Where the Teams user is: a given object id, a UPN the directory
        // knows, or (when asked, or before the directory is read) later.
        let resolved: Option<String> = if directory::is_object_id(&teams_user) {
            Some(teams_user.to_ascii_lowercase())
        } else if let Some(user) = self.directory.find(&teams_user) {
            Some(user.id.to_ascii_lowercase())
        } else if let Some(linked) = self.agents.get(id).and_then(|e| {
            // The same UPN again while the directory is not read yet (just
            // after a restart): keep the link the agent has.
            let same = e.teams_user().eq_ignore_ascii_case(&teams_user)
                || e.upn().is_some_and(|u| u.eq_ignore_ascii_case(&teams_user));
            e.key
                .and(e.teams_user_id().map(str::to_string))
                .filter(|_| same)
        }) {
            Some(linked)
        } else if settings.auto_link || !self.directory.loaded() {
            None
        } else {
            return Err(LoopError::UnknownTeamsUser(teams_user));
        };
        if let Some(user_id) = &resolved
            && let Some(other) = self.by_user.get(user_id)
            && other != id
        {
            return Err(LoopError::TeamsUserTaken {
                teams_user,
                holder: other.to_string(),
            });
        }

        let existing = self.agents.get(id).map(|e| e.to_record());
        let created = existing.is_none();
        let was_linked_to = existing.as_ref().and_then(|r| r.teams_user_id.clone());
        let mut record = existing
            .unwrap_or_else(|| AgentRecord::new(id.to_string(), teams_user.clone(), now.to_utc()));
        // A PUT replaces the agent's settings (HTTP semantics): whatever the
        // body leaves out, or sends as null, goes back to its default; the
        // display name and phone default to the directory's. The agent's
        // runtime state (CC status, link, sync and routing state) is not a
        // setting and stays.
        let directory_user = resolved.as_deref().and_then(|u| self.directory.record(u));
        let directory_user = directory_user.as_deref();
        record.teams_user = teams_user;
        record.display_name = settings
            .display_name
            .or_else(|| directory_user.and_then(|u| u.display_name().map(str::to_string)));
        record.phone = settings
            .phone
            .or_else(|| directory_user.and_then(directory::phone_of));
        record.groups = settings.groups;
        record.skills = settings.skills;
        record.profile = settings.profile;
        record.queues = settings.queues;
        record.capacity = settings.capacity;
        record.updated_at = now.to_utc();

        let had_key = match self.agents.get_mut(id) {
            Some(entry) => {
                let had_key = entry.key;
                entry.set_record(record);
                // Worked out again below or at the next directory update.
                entry.conflict = None;
                had_key
            }
            None => {
                let entry = AgentEntry::new(record);
                self.agents.insert(Arc::clone(entry.id()), entry);
                None
            }
        };
        let mut routed = Vec::new();
        if let Some(entry) = self.agents.get(id) {
            self.router
                .upsert_agent(now, id, routing::spec_of(entry), &mut routed);
        }
        self.step.dirty.insert(id.to_string());
        self.event(
            now,
            Some(id),
            EventData::AgentUpdated(AgentUpdated { created }),
        );
        self.absorb_routing(now, routed);

        if was_linked_to != resolved || had_key.is_none() {
            if had_key.is_some() {
                self.detach(now, id);
            }
            if let Some(user_id) = resolved {
                self.link(now, id, &user_id);
            }
            if had_key.is_some() {
                // The user it let go may be what another agent waits for.
                self.link_waiting(now);
            }
        } else if let Some(key) = had_key
            && let Some(entry) = self.agents.get(id)
        {
            // Same Teams user: the profile may have changed with the groups.
            let (pid, _) = self.profile_for(entry);
            let mut out = Vec::new();
            self.engine
                .set_agent_profile(now, key, pid, &mut out)
                .map_err(|source| LoopError::Engine {
                    field: "profile",
                    source,
                })?;
            self.absorb(now, out);
        }
        self.note_waiting(id);
        Ok(())
    }

    pub(super) fn delete_agent(&mut self, now: Timestamp, id: &str) -> Result<(), LoopError> {
        if !self.agents.contains_key(id) {
            return Err(LoopError::UnknownAgent(id.to_string()));
        }
        self.detach(now, id);
        let mut out = Vec::new();
        self.router.remove_agent(now, id, &mut out);
        // Gone before its decisions are absorbed: no status is set for it.
        if let Some(entry) = self.agents.remove(id) {
            self.waiting.remove(id, entry.teams_user());
        }
        self.absorb_routing(now, out);
        self.step.dirty.remove(id);
        self.step.deleted.insert(id.to_string());
        self.event(now, Some(id), EventData::AgentDeleted(NoData));
        // Its Teams user may be what another agent waits for.
        self.link_waiting(now);
        Ok(())
    }

    pub(super) fn report(
        &mut self,
        now: Timestamp,
        id: &str,
        report: CcStatusReport,
    ) -> Result<(), LoopError> {
        self.set_cc_status(now, id, &report.status, report.at, StatusSource::Cc)
    }

    /// Puts an agent in a CC status, as the CC reported it (`at`: when it
    /// changed there) or as routing set it.
    pub(super) fn set_cc_status(
        &mut self,
        now: Timestamp,
        id: &str,
        status: &str,
        reported_at: Option<Timestamp>,
        source: StatusSource,
    ) -> Result<(), LoopError> {
        let from_cc = source == StatusSource::Cc;
        let entry = self
            .agents
            .get(id)
            .ok_or_else(|| LoopError::UnknownAgent(id.to_string()))?;
        let at = reported_at.unwrap_or(now).min(now);
        let (_, profile) = self.profile_for(entry);
        let status_id = profile
            .status_id(status)
            .ok_or_else(|| LoopError::UnknownStatus {
                status: status.to_string(),
                profile: profile.name.clone(),
                suggestion: suggestion(status, profile.statuses.iter().map(|s| s.name.as_str())),
            })?;
        let current = match entry.key {
            Some(key) => self
                .engine
                .view(key, now)
                .ok()
                .and_then(|v| Some((v.cc_status?, v.cc_since?))),
            None => entry
                .cc_status()
                .map(|c| (c.status.clone(), Timestamp::from_utc(c.at))),
        };
        // Only a report that says when it happened can be out of order; the
        // same status again is a harmless retry.
        if let Some((held, since)) = current.clone()
            && reported_at.is_some()
            && held != status
            && at < since
        {
            return Err(LoopError::StaleStatus { since, at });
        }
        // A new status from the CC means the agent is at its desk again:
        // a routing pause after missed offers ends.
        if from_cc && current.as_ref().is_none_or(|(s, _)| *s != status) {
            let mut out = Vec::new();
            let _ = self.router.resume_agent(now, id, &mut out);
            self.absorb_routing(now, out);
        }
        let previous = current.map(|(status, _)| status);
        let mut out = Vec::new();
        let (set_by, since) = match self.agents.get(id).and_then(|e| e.key) {
            Some(key) => {
                if from_cc {
                    self.engine
                        .report_cc_since(now, key, status_id, at, &mut out)
                } else {
                    self.engine.report_cc_routed(now, key, status_id, &mut out)
                }
                .map_err(|source| LoopError::Engine {
                    field: "status",
                    source,
                })?;
                let v = self.engine.view(key, now).ok();
                (
                    v.as_ref()
                        .and_then(|v| v.cc_set_by)
                        .map_or(SetBy::Agent, view::set_by),
                    v.and_then(|v| v.cc_since).unwrap_or(at),
                )
            }
            None => {
                if let Some(entry) = self.agents.get_mut(id) {
                    entry.set_cc_status(Some(CcReport {
                        status: status.to_string(),
                        at: Timestamp::to_utc(at),
                    }));
                }
                (
                    if from_cc {
                        SetBy::Agent
                    } else {
                        SetBy::Routing
                    },
                    at,
                )
            }
        };
        // The same status again is a retry and changes nothing.
        if previous.as_deref() != Some(status) {
            self.event(
                now,
                Some(id),
                EventData::CcStatusReported(StatusReported {
                    status: status.to_string(),
                    previous_status: previous,
                    set_by,
                    at: Timestamp::to_utc(since),
                }),
            );
        }
        // What the status leads to (a Teams write, ...) comes after it.
        self.absorb(now, out);
        self.step.dirty.insert(id.to_string());
        Ok(())
    }
}
