//! The agents the loop holds: each one's entry ([`AgentEntry`]), the
//! profile it is on, its state as replies carry it ([`AgentState`]: the
//! record, the engine's view, the router's; the API builds its JSON view
//! from it in `daemon/view.rs`), and the
//! `agent.routable_changed` events when its routability moves. The index
//! itself (`agents`, `by_key`, `by_user`) is on [`SyncLoop`]; linking
//! changes it in `linking.rs`.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::events::{EventData, RoutableChanged};
use crate::mapping::Profile;
use crate::routing::{AgentRoutingView, ContactRecord, Membership};
use crate::store::{AgentRecord, CcReport, Store};
use crate::sync::{AgentKey, AgentView, ProfileId};
use crate::time::Timestamp;

use super::super::view;
use super::SyncLoop;
use super::command::{AgentFilter, AgentPage};
use super::error::LoopError;

/// One agent as the loop holds it: its settings and what the daemon knows
/// of it, in a compact form of its [`AgentRecord`] (one entry per agent,
/// so every byte counts tens of thousands of times). What every agent has
/// is held inline, the ids shared with the loop's indexes; the settings
/// most agents leave empty are boxed together and absent when all are.
/// The record's `sync` and `routing` are not held: the engine and the
/// router hold that state, and the commit builds both from them (one copy
/// per agent).
pub(super) struct AgentEntry {
    /// The agent's id: the same allocation as its key in the loop's map
    /// and in the linked-user indexes.
    id: Arc<str>,
    /// As the CC gave it: a Teams object id or a UPN / e-mail.
    teams_user: Box<str>,
    /// The Teams object id once known: the same allocation as the key the
    /// linked users are found by.
    teams_user_id: Option<Arc<str>>,
    upn: Option<Box<str>>,
    display_name: Option<Box<str>>,
    /// Inline rather than with the rare settings: linking gives it from
    /// the directory to every agent whose user has a direct dial.
    phone: Option<Box<str>>,
    updated_at: DateTime<Utc>,
    /// `None` when all of them are empty or absent.
    rare: Option<Box<RareSettings>>,
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

/// The settings most agents leave empty, and the CC status kept for an
/// agent not linked (see [`AgentRecord`]).
#[derive(Debug, Default, PartialEq)]
struct RareSettings {
    groups: Vec<String>,
    skills: BTreeMap<String, u8>,
    profile: Option<String>,
    cc_status: Option<CcReport>,
    queues: Vec<Membership>,
    capacity: Option<u8>,
}

impl RareSettings {
    fn is_empty(&self) -> bool {
        *self == RareSettings::default()
    }
}

const NO_GROUPS: &[String] = &[];
const NO_QUEUES: &[Membership] = &[];
static NO_SKILLS: BTreeMap<String, u8> = BTreeMap::new();

fn boxed(text: Option<String>) -> Option<Box<str>> {
    text.map(String::into_boxed_str)
}

impl AgentEntry {
    /// A new entry from its record, boxed as the loop's map holds it: its
    /// nodes then hold a pointer per agent rather than the whole entry,
    /// which keeps the room a node leaves unused small. The record's
    /// `sync` and `routing` are left out (the engine and the router take
    /// them).
    pub(super) fn new(record: AgentRecord) -> Box<Self> {
        let mut entry = Box::new(AgentEntry {
            id: Arc::from(record.id.as_str()),
            teams_user: Box::from(""),
            teams_user_id: None,
            upn: None,
            display_name: None,
            phone: None,
            updated_at: record.updated_at,
            rare: None,
            key: None,
            routable: None,
            conflict: None,
            routing_stored: false,
        });
        entry.set_record(record);
        entry
    }

    /// Takes the settings and what is known of the agent from `record`
    /// (a `PUT`); its id stays, and the Teams user id keeps its shared
    /// allocation when it is the same.
    pub(super) fn set_record(&mut self, record: AgentRecord) {
        let AgentRecord {
            id: _,
            teams_user,
            teams_user_id,
            upn,
            display_name,
            groups,
            skills,
            phone,
            profile,
            cc_status,
            sync: _,
            queues,
            capacity,
            routing: _,
            updated_at,
        } = record;
        self.teams_user = teams_user.into_boxed_str();
        self.set_teams_user_id(teams_user_id.as_deref());
        self.upn = boxed(upn);
        self.display_name = boxed(display_name);
        self.phone = boxed(phone);
        self.updated_at = updated_at;
        let rare = RareSettings {
            groups,
            skills,
            profile,
            cc_status,
            queues,
            capacity,
        };
        self.rare = (!rare.is_empty()).then(|| Box::new(rare));
    }

    /// The record as the store keeps it, without the engine's and the
    /// router's state (`sync` and `routing` are `None`).
    pub(super) fn to_record(&self) -> AgentRecord {
        AgentRecord {
            id: self.id.to_string(),
            teams_user: self.teams_user.to_string(),
            teams_user_id: self.teams_user_id().map(str::to_string),
            upn: self.upn().map(str::to_string),
            display_name: self.display_name().map(str::to_string),
            groups: self.groups().to_vec(),
            skills: self.skills().clone(),
            phone: self.phone().map(str::to_string),
            profile: self.profile().map(str::to_string),
            cc_status: self.cc_status().cloned(),
            sync: None,
            queues: self.queues().to_vec(),
            capacity: self.capacity(),
            routing: None,
            updated_at: self.updated_at,
        }
    }

    pub(super) fn id(&self) -> &Arc<str> {
        &self.id
    }

    pub(super) fn teams_user(&self) -> &str {
        &self.teams_user
    }

    pub(super) fn teams_user_id(&self) -> Option<&str> {
        self.teams_user_id.as_deref()
    }

    /// The Teams user id as the linked-user index shares it.
    pub(super) fn teams_user_id_shared(&self) -> Option<&Arc<str>> {
        self.teams_user_id.as_ref()
    }

    /// Sets the Teams user id; the same one again keeps its allocation.
    pub(super) fn set_teams_user_id(&mut self, user_id: Option<&str>) {
        if self.teams_user_id.as_deref() != user_id {
            self.teams_user_id = user_id.map(Arc::from);
        }
    }

    pub(super) fn take_teams_user_id(&mut self) -> Option<Arc<str>> {
        self.teams_user_id.take()
    }

    pub(super) fn upn(&self) -> Option<&str> {
        self.upn.as_deref()
    }

    pub(super) fn set_upn(&mut self, upn: Option<&str>) {
        self.upn = upn.map(Box::from);
    }

    pub(super) fn display_name(&self) -> Option<&str> {
        self.display_name.as_deref()
    }

    pub(super) fn set_display_name(&mut self, name: Option<&str>) {
        self.display_name = name.map(Box::from);
    }

    pub(super) fn phone(&self) -> Option<&str> {
        self.phone.as_deref()
    }

    pub(super) fn set_phone(&mut self, phone: Option<&str>) {
        self.phone = phone.map(Box::from);
    }

    pub(super) fn groups(&self) -> &[String] {
        self.rare.as_deref().map_or(NO_GROUPS, |r| &r.groups)
    }

    pub(super) fn skills(&self) -> &BTreeMap<String, u8> {
        self.rare.as_deref().map_or(&NO_SKILLS, |r| &r.skills)
    }

    pub(super) fn profile(&self) -> Option<&str> {
        self.rare.as_deref().and_then(|r| r.profile.as_deref())
    }

    pub(super) fn queues(&self) -> &[Membership] {
        self.rare.as_deref().map_or(NO_QUEUES, |r| &r.queues)
    }

    pub(super) fn capacity(&self) -> Option<u8> {
        self.rare.as_deref().and_then(|r| r.capacity)
    }

    /// The latest CC status report, kept for an agent not linked.
    pub(super) fn cc_status(&self) -> Option<&CcReport> {
        self.rare.as_deref().and_then(|r| r.cc_status.as_ref())
    }

    pub(super) fn set_cc_status(&mut self, report: Option<CcReport>) {
        match (&mut self.rare, report) {
            (Some(rare), report) => {
                rare.cc_status = report;
                if rare.is_empty() {
                    self.rare = None;
                }
            }
            (None, None) => {}
            (None, Some(report)) => {
                self.rare = Some(Box::new(RareSettings {
                    cc_status: Some(report),
                    ..RareSettings::default()
                }));
            }
        }
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
    pub(super) fn profile_for(&self, entry: &AgentEntry) -> (ProfileId, Arc<Profile>) {
        let name = self.mappings.profile_for(entry.profile(), entry.groups());
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
                profile: self.profile_for(entry).1,
                conflict: entry.conflict.as_deref().cloned(),
            },
        };
        Ok(AgentState {
            record: entry.to_record(),
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
            Some(needle) => [Some(id), entry.display_name(), entry.upn()]
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
            .map(|(id, _)| &**id)
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
        Some(self.profile_for(self.agents.get(id)?).1)
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
            let Some(entry) = self.agents.get_mut(id.as_str()) else {
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::store::{AgentRecord, CcReport};

    fn plain() -> AgentRecord {
        AgentRecord {
            teams_user_id: Some("00000000-0000-0000-0000-0000000000a1".into()),
            upn: Some("ann@example.com".into()),
            display_name: Some("Ann".into()),
            ..AgentRecord::new(
                "a1".into(),
                "ann@example.com".into(),
                Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
            )
        }
    }

    /// One entry per agent: its inline part has a budget a careless field
    /// breaks (it was 336 bytes holding the whole record).
    #[test]
    fn entry_stays_within_its_budget() {
        assert!(
            std::mem::size_of::<AgentEntry>() <= 136,
            "{}",
            std::mem::size_of::<AgentEntry>()
        );
    }

    #[test]
    fn a_plain_record_goes_round_without_the_rare_settings() {
        let record = plain();
        let entry = AgentEntry::new(record.clone());
        assert!(entry.rare.is_none());
        assert_eq!(entry.to_record(), record);
    }

    #[test]
    fn every_setting_goes_round() {
        let mut record = plain();
        record.groups = vec!["g1".into(), "g2".into()];
        record.skills = BTreeMap::from([("fr".to_string(), 80)]);
        record.phone = Some("+331".into());
        record.profile = Some("p".into());
        record.cc_status = Some(CcReport {
            status: "Busy".into(),
            at: record.updated_at,
        });
        record.queues = vec![Membership {
            queue: "sales".into(),
            position: Some(1),
        }];
        record.capacity = Some(3);
        let entry = AgentEntry::new(record.clone());
        assert_eq!(entry.to_record(), record);
        assert_eq!(entry.groups(), &["g1".to_string(), "g2".to_string()][..]);
        assert_eq!(entry.profile(), Some("p"));
        assert_eq!(entry.capacity(), Some(3));
    }

    #[test]
    fn the_engine_and_router_state_is_left_out() {
        let mut record = plain();
        record.routing = Some(Box::default());
        let entry = AgentEntry::new(record);
        assert_eq!(entry.to_record(), plain());
    }

    #[test]
    fn a_cc_status_alone_boxes_and_unboxes_the_rare_settings() {
        let mut entry = AgentEntry::new(plain());
        let report = CcReport {
            status: "Available".into(),
            at: plain().updated_at,
        };
        entry.set_cc_status(Some(report.clone()));
        assert_eq!(entry.cc_status(), Some(&report));
        assert_eq!(entry.to_record().cc_status, Some(report));
        entry.set_cc_status(None);
        assert!(entry.rare.is_none());
        assert_eq!(entry.to_record(), plain());
    }

    #[test]
    fn the_same_teams_user_id_keeps_its_shared_allocation() {
        let mut entry = AgentEntry::new(plain());
        let shared = entry.teams_user_id_shared().cloned();
        entry.set_record(plain());
        assert!(
            shared
                .zip(entry.teams_user_id_shared())
                .is_some_and(|(a, b)| Arc::ptr_eq(&a, b))
        );
        entry.set_teams_user_id(Some("00000000-0000-0000-0000-0000000000b2"));
        assert_eq!(
            entry.teams_user_id(),
            Some("00000000-0000-0000-0000-0000000000b2")
        );
    }
}
