//! Linking agents to Teams users: linking and attaching an agent to the
//! engine, detaching it, linking the agents waiting for their user, and
//! the conflict when another agent holds that user.

use crate::events::{AgentLinked, EventData, LinkConflict};
use crate::store::{CcReport, Store};
use crate::sync::{AgentSnapshot, Decision};
use crate::time::Timestamp;

use super::super::directory;
use super::super::writer::WriteJob;
use super::SyncLoop;

impl<S: Store> SyncLoop<S> {
    /// Links an agent to a Teams user and starts syncing it.
    pub(super) fn link(&mut self, now: Timestamp, id: &str, user_id: &str) {
        let user = self.directory.get(user_id).cloned();
        let Some(entry) = self.agents.get_mut(id) else {
            return;
        };
        entry.record.teams_user_id = Some(user_id.to_string());
        entry.conflict = None;
        if let Some(user) = &user {
            entry.record.upn = user.user_principal_name().map(str::to_string);
            if entry.record.display_name.is_none() {
                entry.record.display_name = user.display_name().map(str::to_string);
            }
            if entry.record.phone.is_none() {
                entry.record.phone = directory::phone_of(user);
            }
        }
        entry.record.sync = None;
        self.attach(now, id, None);
        self.event(
            now,
            Some(id),
            EventData::AgentLinked(AgentLinked {
                teams_user_id: user_id.to_string(),
            }),
        );
    }

    /// Puts a linked agent into the engine, from its snapshot when there is one.
    pub(super) fn attach(&mut self, now: Timestamp, id: &str, snapshot: Option<&AgentSnapshot>) {
        let Some(entry) = self.agents.get(id) else {
            return;
        };
        let (pid, _) = self.profile_for(&entry.record);
        let user_id = entry.record.teams_user_id.clone().unwrap_or_default();
        let cc = entry.record.cc_status.clone();
        let mut out = Vec::new();
        let key = match snapshot {
            Some(s) => self.engine.restore_agent(now, pid, s, &mut out),
            None => self.engine.add_agent(pid),
        };
        let key = match key {
            Ok(k) => k,
            Err(e) => {
                tracing::error!(agent = %id, error = %e, "cannot add the agent to the sync engine");
                return;
            }
        };
        self.by_key.insert(key, id.to_string());
        self.by_user.insert(user_id, id.to_string());
        if let Some(entry) = self.agents.get_mut(id) {
            entry.key = Some(key);
        }
        if snapshot.is_none()
            && let Some(cc) = cc
        {
            let _ = self.engine.restore_cc_named(
                now,
                key,
                &cc.status,
                Timestamp::from_utc(cc.at),
                &mut out,
            );
        }
        self.step.dirty.insert(id.to_string());
        self.step.poll_changed = true;
        self.absorb(now, out);
    }

    /// Takes an agent out of the engine (unlinked or deleted); presence the
    /// daemon set is handed back.
    pub(super) fn detach(&mut self, now: Timestamp, id: &str) {
        let Some(entry) = self.agents.get_mut(id) else {
            return;
        };
        let Some(key) = entry.key.take() else {
            return;
        };
        // Keep the CC status for when the agent is linked again.
        if let Ok(v) = self.engine.view(key, now)
            && let (Some(status), Some(since)) = (v.cc_status, v.cc_since)
        {
            entry.record.cc_status = Some(CcReport {
                status,
                at: Timestamp::to_utc(since),
            });
        }
        let user_id = entry.record.teams_user_id.take();
        entry.record.sync = None;
        let mut out = Vec::new();
        let _ = self.engine.remove_agent(now, key, &mut out);
        // The hand-back write goes out with the agent's old user id.
        for d in out {
            if let Decision::WriteTeams { id: wid, write, .. } = d
                && let Some(user) = &user_id
            {
                self.step.jobs.push(WriteJob {
                    key,
                    agent_id: id.to_string(),
                    user_id: user.clone(),
                    id: wid,
                    write,
                });
            }
        }
        self.by_key.remove(&key);
        if let Some(user) = user_id {
            self.by_user.remove(&user);
        }
        if self.outbox_agents.remove(id) {
            self.step.outbox.push((id.to_string(), None));
        }
        self.step.dirty.insert(id.to_string());
        self.step.poll_changed = true;
    }

    /// Agents waiting for their Teams user: links those the directory has
    /// and nobody holds; says why of those another agent holds.
    pub(super) fn link_waiting(&mut self, now: Timestamp) {
        // Every agent linked (the usual case): nobody waits, no scan.
        if self.by_key.len() >= self.agents.len() {
            return;
        }
        let waiting: Vec<(String, String)> = self
            .agents
            .values()
            .filter(|e| e.key.is_none())
            .filter_map(|e| {
                let user = self.directory.find(&e.record.teams_user)?;
                Some((e.record.id.clone(), user.id.to_ascii_lowercase()))
            })
            .collect();
        for (id, user_id) in waiting {
            // Two agents may wait for the same user: the first one takes it,
            // the others are told who has it.
            match self.by_user.get(&user_id).cloned() {
                None => self.link(now, &id, &user_id),
                Some(holder) => self.link_conflict(now, &id, &user_id, &holder),
            }
        }
    }

    /// Records that `id` waits for a Teams user `holder` has; an event and
    /// a log line the first time, as a `PUT` naming that user gets a 409.
    pub(super) fn link_conflict(&mut self, now: Timestamp, id: &str, user_id: &str, holder: &str) {
        let Some(entry) = self.agents.get_mut(id) else {
            return;
        };
        let conflict = (user_id.to_string(), holder.to_string());
        if entry.conflict.as_ref() == Some(&conflict) {
            return;
        }
        entry.conflict = Some(conflict);
        let teams_user = entry.record.teams_user.clone();
        tracing::warn!(
            agent = %id, teams_user = %teams_user, held_by = %holder,
            "the agent's Teams user is already linked to another agent; it stays unlinked"
        );
        self.event(
            now,
            Some(id),
            EventData::AgentLinkConflict(LinkConflict {
                teams_user,
                teams_user_id: user_id.to_string(),
                held_by: holder.to_string(),
            }),
        );
    }
}
