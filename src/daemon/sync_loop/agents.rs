//! The agents the loop holds: each one's entry ([`AgentEntry`]), the
//! profile it is on, its view as the API shows it, and the
//! `agent.routable_changed` events when its routability moves. The index
//! itself (`agents`, `by_key`, `by_user`) is on [`SyncLoop`]; linking
//! changes it in `linking.rs`.

use std::sync::Arc;
use std::time::Duration;

use crate::api::ApiError;
use crate::api::model::AgentOut;
use crate::events::{EventData, RoutableChanged};
use crate::mapping::Profile;
use crate::store::{AgentRecord, Store};
use crate::sync::{AgentKey, ProfileId};
use crate::time::Timestamp;

use super::super::view;
use super::SyncLoop;
use super::handlers::engine_error;

pub(super) struct AgentEntry {
    pub(super) record: AgentRecord,
    pub(super) key: Option<AgentKey>,
    pub(super) routable: Option<bool>,
    /// Waiting for a Teams user another agent holds: the user's id and
    /// that agent. Worked out again at every directory update.
    pub(super) conflict: Option<(String, String)>,
}

impl<S: Store> SyncLoop<S> {
    pub(super) fn profile_for(&self, record: &AgentRecord) -> (ProfileId, Arc<Profile>) {
        let name = self
            .mappings
            .profile_for(record.profile.as_deref(), &record.groups);
        let id = self.engine.profile_id(name).unwrap_or(ProfileId(0));
        let profile = self
            .engine
            .profiles()
            .get(usize::from(id.0))
            .or_else(|| self.engine.profiles().first())
            .cloned();
        // The engine always has at least one profile.
        (id, profile.unwrap_or_else(|| Arc::new(empty_profile())))
    }

    pub(super) fn view(&self, id: &str, now: Timestamp) -> Result<AgentOut, ApiError> {
        let entry = self
            .agents
            .get(id)
            .ok_or_else(|| ApiError::not_found("agent", id))?;
        let mut out = match entry.key {
            Some(key) => {
                let v = self
                    .engine
                    .view(key, now)
                    .map_err(|e| engine_error(e, ""))?;
                view::linked(&entry.record, &v)
            }
            None => {
                let (_, profile) = self.profile_for(&entry.record);
                view::unlinked(&entry.record, &profile, entry.conflict.as_ref())
            }
        };
        out.routing = self.routing_view(id, now, &out);
        Ok(out)
    }

    pub(super) fn profile_of(&self, key: AgentKey) -> Option<Arc<Profile>> {
        let id = self.by_key.get(&key)?;
        Some(self.profile_for(&self.agents.get(id)?.record).1)
    }

    /// Emits `agent.routable_changed` for dirty agents whose routability moved.
    pub(super) fn routable_changes(&mut self, now: Timestamp) {
        let dirty: Vec<String> = self.step.dirty.iter().cloned().collect();
        for id in dirty {
            let Ok(v) = self.view(&id, now) else {
                continue;
            };
            self.gate(now, &id, &v);
            let Some(entry) = self.agents.get_mut(&id) else {
                continue;
            };
            if entry.routable != Some(v.routable) {
                let first = entry.routable.is_none();
                entry.routable = Some(v.routable);
                if !first || v.routable {
                    self.event(
                        now,
                        Some(&id),
                        EventData::AgentRoutableChanged(RoutableChanged {
                            routable: v.routable,
                            not_routable_because: v.not_routable_because,
                        }),
                    );
                }
            }
        }
    }
}

pub(super) fn empty_profile() -> Profile {
    Profile {
        name: String::new(),
        direction: crate::mapping::Direction::Off,
        debounce: Duration::ZERO,
        prefer: crate::mapping::Side::Cc,
        write_mode: crate::mapping::WriteMode::Session,
        statuses: Vec::new(),
        cc_to_teams: Vec::new(),
        default_teams: crate::mapping::TeamsTarget::Clear,
        rules: Vec::new(),
        blocking: Vec::new(),
    }
}
