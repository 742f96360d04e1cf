//! The handlers of the agent commands: `PUT` and `DELETE` of an agent and
//! the CC status reports, with the API errors the engine's refusals map
//! to. Queue and contact commands are handled in `routing.rs`.

use std::collections::BTreeMap;

use crate::api::ApiError;
use crate::api::model::{AgentUpsert, SetBy, StatusReport};
use crate::events::kind;
use crate::mapping::Profile;
use crate::store::{AgentRecord, CcReport, Store};
use crate::sync::EngineError;
use crate::time::Timestamp;

use super::super::directory;
use super::super::view;
use super::agents::AgentEntry;
use super::{SyncLoop, routing};

pub(super) fn engine_error(e: EngineError, field: &str) -> ApiError {
    match e {
        EngineError::UnknownStatus { .. } => {
            ApiError::unprocessable(field, "unknown_status", e.to_string())
        }
        EngineError::UnknownProfile => {
            ApiError::unprocessable("profile", "unknown_profile", e.to_string())
        }
        EngineError::UnknownAgent => ApiError::new(404, "not_found", e.to_string()),
        EngineError::NoProfiles | EngineError::TooManyProfiles | EngineError::Full => {
            ApiError::new(503, "unavailable", e.to_string())
        }
    }
}

pub(super) fn status_error(profile: &Profile, status: &str) -> ApiError {
    ApiError::unprocessable(
        "status",
        "unknown_status",
        format!(
            "status `{status}` is not in profile `{}`{}",
            profile.name,
            crate::diagnostics::did_you_mean(
                status,
                profile.statuses.iter().map(|s| s.name.as_str())
            )
        ),
    )
}

impl<S: Store> SyncLoop<S> {
    pub(super) fn put_agent(
        &mut self,
        now: Timestamp,
        id: &str,
        body: AgentUpsert,
    ) -> Result<(), ApiError> {
        let teams_user = body.teams_user.trim().to_string();
        if teams_user.is_empty() || teams_user.len() > 320 {
            return Err(ApiError::unprocessable(
                "teams_user",
                "invalid_teams_user",
                "teams_user must be a Teams object id or a UPN (1–320 characters)",
            ));
        }
        if let Some(profile) = &body.profile
            && !self.mappings.has_profile(profile)
        {
            return Err(ApiError::unprocessable(
                "profile",
                "unknown_profile",
                format!(
                    "no profile `{profile}`{}",
                    crate::diagnostics::did_you_mean(
                        profile,
                        self.mappings.profiles.iter().map(|p| p.name.as_str())
                    )
                ),
            ));
        }
        routing::check_agent_routing(&self.router, body.queues.as_ref(), body.capacity)?;
        if let Some(skills) = &body.skills
            && let Some((name, level)) = skills.iter().find(|(n, l)| n.is_empty() || **l > 100)
        {
            return Err(ApiError::unprocessable(
                &format!("skills.{name}"),
                "invalid_skill",
                format!("skill `{name}` level {level}: a skill needs a name and a level 0–100"),
            ));
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
            let same = e.record.teams_user.eq_ignore_ascii_case(&teams_user)
                || e.record
                    .upn
                    .as_deref()
                    .is_some_and(|u| u.eq_ignore_ascii_case(&teams_user));
            e.key.and(e.record.teams_user_id.clone()).filter(|_| same)
        }) {
            Some(linked)
        } else if body.auto_link || !self.directory.loaded() {
            None
        } else {
            return Err(ApiError::unprocessable(
                "teams_user",
                "unknown_teams_user",
                format!(
                    "no Teams user `{teams_user}` in the directory; send its object id, or `auto_link: true` to link it when it appears"
                ),
            ));
        };
        if let Some(user_id) = &resolved
            && let Some(other) = self.by_user.get(user_id)
            && other != id
        {
            return Err(ApiError::new(
                409,
                "teams_user_taken",
                format!("Teams user `{teams_user}` is already linked to agent `{other}`"),
            )
            .with_field("teams_user"));
        }

        let existing = self.agents.get(id).map(|e| e.record.clone());
        let mut record = existing.clone().unwrap_or_else(|| AgentRecord {
            id: id.to_string(),
            teams_user: teams_user.clone(),
            teams_user_id: None,
            upn: None,
            display_name: None,
            groups: Vec::new(),
            skills: BTreeMap::new(),
            phone: None,
            profile: None,
            cc_status: None,
            sync: None,
            queues: Vec::new(),
            capacity: None,
            routing: None,
            updated_at: now.to_utc(),
        });
        // A PUT replaces the agent's settings (HTTP semantics): whatever the
        // body leaves out, or sends as null, goes back to its default; the
        // display name and phone default to the directory's. The agent's
        // runtime state (CC status, link, sync and routing state) is not a
        // setting and stays.
        let directory_user = resolved.as_deref().and_then(|u| self.directory.get(u));
        record.teams_user = teams_user;
        record.display_name = body
            .display_name
            .or_else(|| directory_user.and_then(|u| u.display_name().map(str::to_string)));
        record.phone = body
            .phone
            .or_else(|| directory_user.and_then(directory::phone_of));
        record.groups = body.groups.unwrap_or_default();
        record.skills = body.skills.unwrap_or_default();
        record.profile = body.profile;
        record.queues = body.queues.unwrap_or_default();
        record.capacity = body.capacity;
        record.updated_at = now.to_utc();
        let mut routed = Vec::new();
        self.router
            .upsert_agent(now, id, routing::spec_of(&record), &mut routed);

        let was_linked_to = existing.as_ref().and_then(|r| r.teams_user_id.clone());
        let entry = self.agents.entry(id.to_string()).or_insert(AgentEntry {
            record: record.clone(),
            key: None,
            routable: None,
            conflict: None,
        });
        let had_key = entry.key;
        entry.record = record;
        // Worked out again below or at the next directory update.
        entry.conflict = None;
        self.step.dirty.insert(id.to_string());
        self.event(
            now,
            kind::AGENT_UPDATED,
            Some(id),
            serde_json::json!({
                "created": existing.is_none(),
            }),
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
        } else if let Some(key) = had_key {
            // Same Teams user: the profile may have changed with the groups.
            let (pid, _) = self.profile_for(&self.agents[id].record);
            let mut out = Vec::new();
            self.engine
                .set_agent_profile(now, key, pid, &mut out)
                .map_err(|e| engine_error(e, "profile"))?;
            self.absorb(now, out);
        }
        Ok(())
    }

    pub(super) fn delete_agent(&mut self, now: Timestamp, id: &str) -> Result<(), ApiError> {
        if !self.agents.contains_key(id) {
            return Err(ApiError::not_found("agent", id));
        }
        self.detach(now, id);
        let mut out = Vec::new();
        self.router.remove_agent(now, id, &mut out);
        // Gone before its decisions are absorbed: no status is set for it.
        self.agents.remove(id);
        self.absorb_routing(now, out);
        self.step.dirty.remove(id);
        self.step.deleted.insert(id.to_string());
        self.event(now, kind::AGENT_DELETED, Some(id), serde_json::Value::Null);
        // Its Teams user may be what another agent waits for.
        self.link_waiting(now);
        Ok(())
    }

    pub(super) fn report(
        &mut self,
        now: Timestamp,
        id: &str,
        body: StatusReport,
    ) -> Result<(), ApiError> {
        self.report_status(now, id, body, true)
    }

    /// A CC status for an agent. `from_cc`: the CC reported it (a new one
    /// lifts a routing pause); else routing set it on the agent's behalf.
    pub(super) fn report_status(
        &mut self,
        now: Timestamp,
        id: &str,
        body: StatusReport,
        from_cc: bool,
    ) -> Result<(), ApiError> {
        let entry = self
            .agents
            .get(id)
            .ok_or_else(|| ApiError::not_found("agent", id))?;
        let at = body.at.map(Timestamp::from_utc).unwrap_or(now).min(now);
        let (_, profile) = self.profile_for(&entry.record);
        let status_id = profile
            .status_id(&body.status)
            .ok_or_else(|| status_error(&profile, &body.status))?;
        let current = match entry.key {
            Some(key) => self
                .engine
                .view(key, now)
                .ok()
                .and_then(|v| Some((v.cc_status?, v.cc_since?))),
            None => entry
                .record
                .cc_status
                .as_ref()
                .map(|c| (c.status.clone(), Timestamp::from_utc(c.at))),
        };
        // Only a report that says when it happened can be out of order; the
        // same status again is a harmless retry.
        if let Some((status, since)) = current.clone()
            && body.at.is_some()
            && status != body.status
            && at < since
        {
            return Err(ApiError::new(
                409,
                "stale_status",
                format!(
                    "a newer status was reported for {}; this one is from {}",
                    Timestamp::to_utc(since).to_rfc3339(),
                    Timestamp::to_utc(at).to_rfc3339()
                ),
            )
            .with_field("at"));
        }
        // A new status from the CC means the agent is at its desk again:
        // a routing pause after missed offers ends.
        if from_cc && current.as_ref().is_none_or(|(s, _)| *s != body.status) {
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
                .map_err(|e| engine_error(e, "status"))?;
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
                    entry.record.cc_status = Some(CcReport {
                        status: body.status.clone(),
                        at: Timestamp::to_utc(at),
                    });
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
        if previous.as_deref() != Some(body.status.as_str()) {
            self.event(
                now,
                kind::CC_STATUS_REPORTED,
                Some(id),
                serde_json::json!({
                    "status": body.status,
                    "previous_status": previous,
                    "set_by": set_by,
                    "at": Timestamp::to_utc(since),
                }),
            );
        }
        // What the status leads to (a Teams write, ...) comes after it.
        self.absorb(now, out);
        self.step.dirty.insert(id.to_string());
        Ok(())
    }
}
