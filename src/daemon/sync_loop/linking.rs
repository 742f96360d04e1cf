//! Linking agents to Teams users: linking and attaching an agent to the
//! engine, detaching it, linking the agents waiting for their user (found
//! through [`Waiting`], by the name each waits for), and the conflict when
//! another agent holds that user.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::directory::DirectoryRecord;
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
        let user = self.directory.record(user_id);
        let Some(entry) = self.agents.get_mut(id) else {
            return;
        };
        entry.set_teams_user_id(Some(user_id));
        entry.conflict = None;
        if let Some(user) = &user {
            entry.set_upn(user.user_principal_name());
            if entry.display_name().is_none() {
                entry.set_display_name(user.display_name());
            }
            if entry.phone().is_none() {
                entry.set_phone(directory::phone_of(user).as_deref());
            }
        }
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
        let (pid, _) = self.profile_for(entry);
        // The ids are the entry's own, shared by the indexes.
        let agent = Arc::clone(entry.id());
        let user_id = entry
            .teams_user_id_shared()
            .cloned()
            .unwrap_or_else(|| Arc::from(""));
        let teams_user = entry.teams_user().to_string();
        let cc = entry.cc_status().cloned();
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
        self.by_key.insert(key, Arc::clone(&agent));
        self.by_user.insert(user_id, agent);
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
        self.waiting.remove(id, &teams_user);
        // Restored from a stored snapshot, the record is as stored: only
        // what restoring decides (absorbed below) makes it dirty.
        if snapshot.is_none() {
            self.step.dirty.insert(id.to_string());
        }
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
            entry.set_cc_status(Some(CcReport {
                status,
                at: Timestamp::to_utc(since),
            }));
        }
        let user_id = entry.take_teams_user_id();
        self.waiting.insert(id, entry.teams_user());
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
                    user_id: user.to_string(),
                    id: wid,
                    write,
                });
            }
        }
        self.by_key.remove(&key);
        if let Some(user) = user_id {
            self.by_user.remove(&user);
            // Another agent may wait for the user let go.
            self.waiting.released.push(user.to_string());
        }
        if self.outbox_agents.remove(id) {
            self.step.outbox.push((id.to_string(), None));
        }
        self.step.dirty.insert(id.to_string());
        self.step.poll_changed = true;
    }

    /// Agents waiting for their Teams user: links those the directory has
    /// and nobody holds; says why of those another agent holds. Only the
    /// agents that can have moved are looked at: those waiting for a user
    /// let go since the last call or for a name the directory now gives
    /// (after a full directory read, every agent waiting).
    pub(super) fn link_waiting(&mut self, now: Timestamp) {
        let released = std::mem::take(&mut self.waiting.released);
        let named = std::mem::take(&mut self.waiting.named);
        let everyone = std::mem::take(&mut self.waiting.everyone);
        if self.waiting.is_empty() {
            return;
        }
        // (name, agent) pairs to look at.
        let candidates: Vec<(String, String)> = if everyone {
            self.waiting.pairs().collect()
        } else {
            let mut names: BTreeSet<String> = named.into_iter().collect();
            for user in released {
                names.extend(directory_names(self.directory.record(&user).as_deref()));
            }
            names
                .iter()
                .flat_map(|name| self.waiting.pairs_for(name))
                .collect()
        };
        // In the agents' order, as a scan of them all would find them.
        let mut waiting = BTreeMap::new();
        for (name, id) in candidates {
            let entry = self.agents.get(id.as_str());
            let still = entry.filter(|e| e.key.is_none() && e.teams_user().to_lowercase() == name);
            let Some(entry) = still else {
                // Linked, renamed or deleted since: not waiting under this name.
                self.waiting.remove(&id, &name);
                continue;
            };
            if let Some(user) = self.directory.find(entry.teams_user()) {
                waiting.insert(id, user.id.to_ascii_lowercase());
            }
        }
        for (id, user_id) in waiting {
            // Two agents may wait for the same user: the first one takes it,
            // the others are told who has it.
            match self.by_user.get(&user_id).map(str::to_string) {
                None => self.link(now, &id, &user_id),
                Some(holder) => self.link_conflict(now, &id, &user_id, &holder),
            }
        }
    }

    /// Notes agent `id` as waiting for its Teams user if it is not linked
    /// (after a `PUT` that left it so).
    pub(super) fn note_waiting(&mut self, id: &str) {
        if let Some(entry) = self.agents.get(id)
            && entry.key.is_none()
        {
            self.waiting.insert(id, entry.teams_user());
        }
    }

    /// The directory changed these users (`full`: it was read whole): the
    /// agents waiting for one of their names are looked at by the next
    /// [`SyncLoop::link_waiting`].
    pub(super) fn directory_changed(&mut self, full: bool, users: &[String]) {
        if full {
            self.waiting.everyone = true;
            return;
        }
        for user in users {
            let names = directory_names(self.directory.record(user).as_deref());
            self.waiting.named.extend(names);
        }
    }

    /// Records that `id` waits for a Teams user `holder` has; an event and
    /// a log line the first time, as a `PUT` naming that user gets a 409.
    pub(super) fn link_conflict(&mut self, now: Timestamp, id: &str, user_id: &str, holder: &str) {
        let Some(entry) = self.agents.get_mut(id) else {
            return;
        };
        let conflict = (user_id.to_string(), holder.to_string());
        if entry.conflict.as_deref() == Some(&conflict) {
            return;
        }
        entry.conflict = Some(Box::new(conflict));
        let teams_user = entry.teams_user().to_string();
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

/// The names under which the directory finds a user (its UPN and mail),
/// as [`Waiting`] keys them.
fn directory_names(user: Option<&DirectoryRecord>) -> Vec<String> {
    let Some(user) = user else {
        return Vec::new();
    };
    [user.user_principal_name(), user.mail()]
        .into_iter()
        .flatten()
        .map(str::to_lowercase)
        .collect()
}

/// The agents not linked, by the name they wait for (their `teams_user`,
/// lowercased as the directory looks names up), and what may have freed
/// or named a user for them since the last look: users let go, names the
/// directory now gives, or a full directory read. Entries are checked
/// against the agent when looked up, so one the agent has moved away from
/// since (linked, renamed, deleted) is harmless and dropped then.
#[derive(Debug, Default)]
pub(super) struct Waiting {
    by_name: HashMap<String, BTreeSet<String>>,
    /// Teams users let go (unlinked or deleted agents).
    pub(super) released: Vec<String>,
    /// Names the directory added or changed.
    pub(super) named: Vec<String>,
    /// The directory was read whole: everyone waiting is looked at.
    pub(super) everyone: bool,
}

impl Waiting {
    pub(super) fn insert(&mut self, id: &str, teams_user: &str) {
        self.by_name
            .entry(teams_user.to_lowercase())
            .or_default()
            .insert(id.to_string());
    }

    pub(super) fn remove(&mut self, id: &str, teams_user: &str) {
        let name = teams_user.to_lowercase();
        if let Some(ids) = self.by_name.get_mut(&name) {
            ids.remove(id);
            if ids.is_empty() {
                self.by_name.remove(&name);
            }
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Every (name, agent) pair.
    fn pairs(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.by_name
            .iter()
            .flat_map(|(name, ids)| ids.iter().map(move |id| (name.clone(), id.clone())))
    }

    /// The (name, agent) pairs of one name.
    fn pairs_for<'a>(&'a self, name: &'a str) -> impl Iterator<Item = (String, String)> + 'a {
        self.by_name
            .get(name)
            .into_iter()
            .flatten()
            .map(move |id| (name.to_string(), id.clone()))
    }
}
