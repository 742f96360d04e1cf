//! What the adapters feed the loop: presences read from Graph, the
//! results of Teams writes, directory updates, and mapping reloads.

use std::collections::HashMap;

use crate::events::{EventData, HeldStatus, MappingsReloaded, PresenceWritten, WriteAction};
use crate::graph::PresenceUpdate;
use crate::metrics::{Direction, TeamsWriteKind};
use crate::store::{MetaKey, Store};
use crate::sync::{ProfileId, TeamsWrite, WriteOutcome};
use crate::time::Timestamp;

use super::super::directory::{self, DirectoryUpdate};
use super::super::mappings::MappingSet;
use super::super::view::presence_out;
use super::super::writer::WriteResult;
use super::SyncLoop;
use super::translate::WritePurpose;

impl<S: Store> SyncLoop<S> {
    pub(super) fn presence(&mut self, now: Timestamp, update: PresenceUpdate) {
        let Some(id) = self.by_user.get(&update.user_id.to_ascii_lowercase()) else {
            return;
        };
        let Some(key) = self.agents.get(id).and_then(|e| e.key) else {
            return;
        };
        let mut out = Vec::new();
        if self
            .engine
            .observe_teams(now, key, update.presence, &mut out)
            .is_ok()
        {
            self.absorb(now, out);
        }
    }

    /// Holds or releases Teams writes (see [`crate::sync::Engine::set_writes_held`]).
    pub(super) fn hold_writes(&mut self, now: Timestamp, why: Option<String>) {
        if self.engine.writes_held() == why.as_deref() {
            return;
        }
        // The permissions' own log line says why; this is the detail.
        match &why {
            Some(why) => tracing::debug!(%why, "Teams writes are held"),
            None => {
                tracing::debug!("Teams writes are released: each agent's newest target goes out")
            }
        }
        let mut out = Vec::new();
        self.engine.set_writes_held(now, why, &mut out);
        self.absorb(now, out);
    }

    pub(super) fn write_result(&mut self, now: Timestamp, result: WriteResult) {
        let job = result.job;
        let (purpose, reported) = self
            .writes_out
            .remove(&job.id)
            .unwrap_or((WritePurpose::Change, None));
        if self.by_key.get(&job.key) != Some(job.agent_id.as_str()) {
            // The agent was unlinked or deleted meanwhile.
            return;
        }
        let done = result.outcome == WriteOutcome::Done;
        let kind = match (&job.write, purpose) {
            (_, WritePurpose::KeepAlive) => TeamsWriteKind::Keepalive,
            (
                TeamsWrite::SetSession { .. } | TeamsWrite::SetPreferred { .. },
                WritePurpose::Change,
            ) => TeamsWriteKind::Set,
            _ => TeamsWriteKind::Clear,
        };
        self.out
            .metrics
            .teams_write(kind, if done { "ok" } else { "failed" })
            .inc();
        let mut out = Vec::new();
        match self
            .engine
            .write_done(now, job.key, job.id, result.outcome, &mut out)
        {
            Ok(true) => {}
            // Superseded or given up on (or the agent's slot now holds
            // another link): none of its bookkeeping applies.
            Ok(false) | Err(_) => return,
        }
        if done {
            if purpose == WritePurpose::Change {
                let presence = job.write.presence().map(presence_out);
                self.event(
                    now,
                    Some(&job.agent_id),
                    EventData::TeamsWritten(PresenceWritten {
                        action: match job.write {
                            TeamsWrite::SetSession { .. } | TeamsWrite::SetPreferred { .. } => {
                                WriteAction::Set
                            }
                            TeamsWrite::ClearSession | TeamsWrite::ClearPreferred => {
                                WriteAction::Clear
                            }
                        },
                        presence,
                    }),
                );
                if let Some(reported) = reported {
                    self.out
                        .metrics
                        .propagation(Direction::CcToTeams)
                        .observe_duration(now.since(reported));
                }
            }
            if self.outbox_agents.remove(&job.agent_id) {
                self.step.outbox.push((job.agent_id.clone(), None));
            }
        }
        self.step.dirty.insert(job.agent_id);
        self.absorb(now, out);
    }

    /// The directory view took a change (the view is shared: the users are
    /// looked up there, as it stands now).
    pub(super) fn directory_update(&mut self, now: Timestamp, update: DirectoryUpdate) {
        let (full, link, changed, mut removed) = match update {
            DirectoryUpdate::Replace { delta_link } => (true, delta_link, Vec::new(), Vec::new()),
            DirectoryUpdate::Changes {
                changed,
                removed,
                delta_link,
            } => (false, Some(delta_link), changed, removed),
        };
        self.directory_changed(full, &changed);
        // Linked agents whose user may have changed: every one after a full
        // read, else those of the users changed.
        let users: Vec<String> = if full {
            self.by_user.keys().map(str::to_string).collect()
        } else {
            changed
        };
        for user_id in users {
            let Some(id) = self.by_user.get(&user_id).map(str::to_string) else {
                continue;
            };
            let Some(user) = self.directory.record(&user_id) else {
                // After a full read, a linked user the directory does not
                // have is gone, whether or not this process ever saw it.
                if full {
                    removed.push(user_id);
                }
                continue;
            };
            let upn = user.user_principal_name().map(str::to_string);
            let phone = directory::phone_of(&user);
            if let Some(entry) = self.agents.get_mut(id.as_str())
                && (entry.upn() != upn.as_deref() || (entry.phone().is_none() && phone.is_some()))
            {
                entry.set_upn(upn.as_deref());
                if entry.phone().is_none() {
                    entry.set_phone(phone.as_deref());
                }
                self.step.dirty.insert(id);
            }
        }
        if let Some(link) = link {
            self.step.meta.push((MetaKey::DeltaLink, Some(link)));
        }
        for user in removed {
            if let Some(id) = self.by_user.get(&user).map(str::to_string) {
                tracing::info!(agent = %id, user = %user, "Teams user left the directory; agent unlinked");
                self.detach(now, &id);
            }
        }
        self.link_waiting(now);
    }

    pub(super) fn reload(&mut self, now: Timestamp, set: MappingSet) {
        // Each linked agent goes to the profile the new set gives it (its
        // groups may point at another one now) in one step, so what it
        // holds is judged against the profile it ends up on.
        let mut assign = HashMap::new();
        for entry in self.agents.values() {
            let Some(key) = entry.key else {
                continue;
            };
            let name = set.profile_for(entry.profile(), entry.groups());
            if let Some(i) = set.profiles.iter().position(|p| p.name == name)
                && let Ok(i) = u16::try_from(i)
            {
                assign.insert(key, ProfileId(i));
            }
        }
        let mut out = Vec::new();
        if let Err(e) =
            self.engine
                .replace_profiles_assigning(now, set.profiles.clone(), &assign, &mut out)
        {
            tracing::error!(error = %e, "mapping reload refused");
            return;
        }
        self.mappings = set;
        self.absorb(now, out);
        let linked: Vec<String> = self
            .agents
            .iter()
            .filter(|(_, e)| e.key.is_some())
            .map(|(id, _)| id.to_string())
            .collect();
        self.step.dirty.extend(linked);
        // Agents holding a status their profile does not have: said in the
        // reload's result, besides each agent's own event.
        let not_in_profile: Vec<HeldStatus> = self
            .agents
            .keys()
            .filter_map(|id| {
                let state = self.state(id, now).ok()?;
                let (in_profile, _) = state.cc_in_profile_and_routable();
                (!in_profile).then(|| HeldStatus {
                    agent_id: id.to_string(),
                    status: state.cc_status().map(str::to_string),
                    profile: state.profile_name().to_string(),
                })
            })
            .collect();
        let profiles = self.mappings.profile_names();
        self.out.metrics.mapping_reloads.with(["ok"]).inc();
        if not_in_profile.is_empty() {
            tracing::info!(?profiles, "mappings reloaded");
        } else {
            tracing::warn!(
                ?profiles,
                agents = not_in_profile.len(),
                "mappings reloaded; agents hold CC statuses their profile does not have (kept, not routable, Teams shows the profile's default_teams): {}",
                serde_json::to_value(&not_in_profile).unwrap_or_default()
            );
        }
        self.event(
            now,
            None,
            EventData::MappingsReloaded(MappingsReloaded {
                profiles,
                statuses_not_in_profile: not_in_profile,
            }),
        );
    }
}
