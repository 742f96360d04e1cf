//! The agents the loop holds: each one's entry ([`AgentEntry`]), the
//! profile it is on, its state as replies carry it ([`AgentState`]: the
//! record, the engine's view, the router's; the API builds its JSON view
//! from it in `daemon/view.rs`), and the
//! `agent.routable_changed` events when its routability moves. The index
//! itself (`agents`, `by_key`, `by_user`) is on [`SyncLoop`]; linking
//! changes it in `linking.rs`.

use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use crate::events::{EventData, RoutableChanged};
use crate::mapping::Profile;
use crate::routing::{AgentRoutingView, ContactRecord};
use crate::store::{AgentRecord, Store};
use crate::sync::{AgentKey, AgentView, ProfileId};
use crate::time::Timestamp;

use super::super::view;
use super::SyncLoop;
use super::command::{AgentFilter, AgentPage};
use super::error::LoopError;

pub(super) struct AgentEntry {
    /// The agent's settings and what the daemon knows of it. Its `sync`
    /// and `routing` stay `None` here: the engine and the router hold that
    /// state, and the commit builds both from them (one copy per agent).
    pub(super) record: AgentRecord,
    pub(super) key: Option<AgentKey>,
    pub(super) routable: Option<bool>,
    /// Waiting for a Teams user another agent holds: the user's id and
    /// that agent. Worked out again when the directory changes that user or
    /// the user is let go. Boxed: rare, and a pointer when absent.
    pub(super) conflict: Option<Box<(String, String)>>,
    /// The stored record carries the router's state for the agent (the
    /// router changed it, or it was stored so before a restart).
    pub(super) routing_stored: bool,
}

impl AgentEntry {
    /// A new entry, boxed as the loop's map holds it: its nodes then hold
    /// a pointer per agent rather than the whole entry, which keeps the
    /// room a node leaves unused small.
    pub(super) fn new(record: AgentRecord) -> Box<Self> {
        Box::new(AgentEntry {
            record,
            key: None,
            routable: None,
            conflict: None,
            routing_stored: false,
        })
    }
}

/// An agent as the loop knows it at one time: what replies carry.
#[derive(Clone, Debug)]
pub struct AgentState {
    pub record: AgentRecord,
    pub sync: AgentSync,
    /// The router's side; `None` when the router does not hold the agent.
    pub routing: Option<AgentRoutingView>,
    /// When this was taken.
    pub at: Timestamp,
}

/// The sync side of an agent.
#[derive(Clone, Debug)]
pub enum AgentSync {
    /// Linked to its Teams user: the engine's view.
    Linked(Box<AgentView>),
    /// Waiting for its Teams user; `conflict`: that user's id and the
    /// agent holding it.
    Unlinked {
        profile: Arc<Profile>,
        conflict: Option<(String, String)>,
    },
}

impl AgentState {
    pub fn linked(&self) -> bool {
        matches!(self.sync, AgentSync::Linked(_))
    }

    /// The profile in force.
    pub fn profile_name(&self) -> &str {
        match &self.sync {
            AgentSync::Linked(v) => &v.profile,
            AgentSync::Unlinked { profile, .. } => &profile.name,
        }
    }

    /// The CC status the agent holds.
    pub fn cc_status(&self) -> Option<&str> {
        match &self.sync {
            AgentSync::Linked(v) => v.cc_status.as_deref(),
            AgentSync::Unlinked { .. } => self.record.cc_status.as_ref().map(|c| c.status.as_str()),
        }
    }

    /// Whether its profile has the CC status it holds (true when none),
    /// and whether it marks it routable.
    pub fn cc_in_profile_and_routable(&self) -> (bool, bool) {
        match &self.sync {
            AgentSync::Linked(v) => (v.cc_status_in_profile, v.cc_routable),
            AgentSync::Unlinked { profile, .. } => {
                let known = self.cc_status().map(|s| profile.status_id(s));
                let routable = known
                    .flatten()
                    .and_then(|id| profile.status(id))
                    .is_some_and(|s| s.routable);
                (!matches!(known, Some(None)), routable)
            }
        }
    }

    /// Its profile blocks routing while Teams shows what it shows.
    pub fn teams_blocking(&self) -> bool {
        match &self.sync {
            AgentSync::Linked(v) => v.teams_blocking,
            AgentSync::Unlinked { .. } => false,
        }
    }
}

/// A contact as the router holds it, and its place among those waiting in
/// its queue (1-based).
#[derive(Clone, Debug)]
pub struct ContactState {
    pub record: ContactRecord,
    pub place_in_queue: Option<usize>,
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

    pub(super) fn state(&self, id: &str, now: Timestamp) -> Result<AgentState, LoopError> {
        let entry = self
            .agents
            .get(id)
            .ok_or_else(|| LoopError::UnknownAgent(id.to_string()))?;
        let sync = match entry.key {
            Some(key) => AgentSync::Linked(Box::new(
                self.engine
                    .view(key, now)
                    .map_err(|source| LoopError::Engine { field: "", source })?,
            )),
            None => AgentSync::Unlinked {
                profile: self.profile_for(&entry.record).1,
                conflict: entry.conflict.as_deref().cloned(),
            },
        };
        Ok(AgentState {
            record: entry.record.clone(),
            sync,
            routing: self.router.agent_view(id, now),
            at: now,
        })
    }

    /// A page of agents in id order, filtered; `total` counts every match.
    pub(super) fn agents_page(&self, filter: &AgentFilter, now: Timestamp) -> AgentPage {
        let needle = filter
            .search
            .as_deref()
            .map(str::to_lowercase)
            .filter(|s| !s.is_empty());
        let matches = |id: &str, entry: &AgentEntry| match &needle {
            None => true,
            Some(needle) => [
                Some(id),
                entry.record.display_name.as_deref(),
                entry.record.upn.as_deref(),
            ]
            .into_iter()
            .flatten()
            .any(|text| text.to_lowercase().contains(needle.as_str())),
        };
        let total = match &needle {
            None => self.agents.len(),
            Some(_) => self
                .agents
                .iter()
                .filter(|(id, entry)| matches(id, entry))
                .count(),
        };
        let after = match &filter.after {
            Some(after) => Bound::Excluded(after.as_str()),
            None => Bound::Unbounded,
        };
        let mut page: Vec<&str> = self
            .agents
            .range::<str, _>((after, Bound::Unbounded))
            .filter(|(id, entry)| matches(id, entry))
            .map(|(id, _)| id.as_str())
            .take(filter.limit.saturating_add(1))
            .collect();
        let next = if page.len() > filter.limit {
            page.truncate(filter.limit);
            page.last().map(|id| id.to_string())
        } else {
            None
        };
        AgentPage {
            agents: page
                .into_iter()
                .filter_map(|id| self.state(id, now).ok())
                .collect(),
            next,
            total,
        }
    }

    pub(super) fn profile_of(&self, key: AgentKey) -> Option<Arc<Profile>> {
        let id = self.by_key.get(&key)?;
        Some(self.profile_for(&self.agents.get(id)?.record).1)
    }

    /// Emits `agent.routable_changed` for dirty agents whose routability moved.
    pub(super) fn routable_changes(&mut self, now: Timestamp) {
        let dirty: Vec<String> = self.step.dirty.iter().cloned().collect();
        for id in dirty {
            let Ok(state) = self.state(&id, now) else {
                continue;
            };
            self.gate(now, &id, &state);
            let because = view::not_routable_because_of(&state);
            let routable = because.is_empty();
            let Some(entry) = self.agents.get_mut(&id) else {
                continue;
            };
            if entry.routable != Some(routable) {
                let first = entry.routable.is_none();
                entry.routable = Some(routable);
                if !first || routable {
                    self.event(
                        now,
                        Some(&id),
                        EventData::AgentRoutableChanged(RoutableChanged {
                            routable,
                            not_routable_because: because,
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
