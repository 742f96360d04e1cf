//! The Teams users linked to agents ([`LinkedUsers`]): which agent holds
//! each, and the links and unlinks the presence poller has not been told of
//! yet; and the agent each of the engine's keys stands for ([`KeyedAgents`]). A step sends those once it is committed (`step.rs`), so the poller
//! learns of a change in time proportional to the change, whatever the
//! number of agents.

use std::collections::HashMap;
use std::sync::Arc;

use crate::graph::poller::PollChange;
use crate::sync::AgentKey;

/// Each linked Teams user's id and the agent holding it, with the changes
/// since they were last taken. The ids are the agents' entries' own
/// (shared, not copied): one allocation per id whatever the indexes
/// holding it.
#[derive(Debug, Default)]
pub(super) struct LinkedUsers {
    holders: HashMap<Arc<str>, Arc<str>>,
    changes: Vec<PollChange>,
    /// Every link and unlink with its agent, for the directory view
    /// (a user moving to another agent is no change to the poller).
    links: Vec<(Arc<str>, Option<Arc<str>>)>,
}

impl LinkedUsers {
    /// The agent holding `user`.
    pub(super) fn get(&self, user: &str) -> Option<&str> {
        self.holders.get(user).map(|a| &**a)
    }

    /// `agent` holds `user` now; returns the agent that held it before.
    pub(super) fn insert(&mut self, user: Arc<str>, agent: Arc<str>) -> Option<Arc<str>> {
        self.links
            .push((Arc::clone(&user), Some(Arc::clone(&agent))));
        let before = self.holders.insert(Arc::clone(&user), agent);
        if before.is_none() {
            self.changes.push(PollChange::Add(Arc::clone(&user)));
        }
        before
    }

    /// Nobody holds `user` now; returns the agent that held it.
    pub(super) fn remove(&mut self, user: &str) -> Option<Arc<str>> {
        let (user, before) = self.holders.remove_entry(user)?;
        self.changes.push(PollChange::Remove(Arc::clone(&user)));
        self.links.push((user, None));
        Some(before)
    }

    /// The linked users' ids.
    pub(super) fn keys(&self) -> impl Iterator<Item = &str> {
        self.holders.keys().map(|u| &**u)
    }

    /// The links and unlinks since the last call, in order.
    pub(super) fn take_changes(&mut self) -> Vec<PollChange> {
        std::mem::take(&mut self.changes)
    }

    /// The links (with their agent) and unlinks since the last call, in
    /// order, as the directory view takes them (the ids shared, not
    /// copied).
    pub(super) fn take_links(&mut self) -> Vec<(Arc<str>, Option<Arc<str>>)> {
        std::mem::take(&mut self.links)
    }
}

/// The agent id each engine key stands for. The engine hands out keys as
/// dense slot numbers (reusing those freed), so a vector indexed by them
/// holds the ids without a hash table's room and hashing.
#[derive(Debug, Default)]
pub(super) struct KeyedAgents {
    ids: Vec<Option<Arc<str>>>,
    len: usize,
}

impl KeyedAgents {
    pub(super) fn get(&self, key: &AgentKey) -> Option<&str> {
        self.ids.get(key.0 as usize)?.as_deref()
    }

    pub(super) fn insert(&mut self, key: AgentKey, id: Arc<str>) {
        let slot = key.0 as usize;
        if slot >= self.ids.len() {
            // Grown by an eighth, as the engine grows its slots.
            let more = slot + 1 - self.ids.len();
            if self.ids.capacity() < slot + 1 {
                self.ids.reserve_exact(more.max(self.ids.len() / 8));
            }
            self.ids.resize(slot + 1, None);
        }
        if self.ids[slot].replace(id).is_none() {
            self.len += 1;
        }
    }

    pub(super) fn remove(&mut self, key: &AgentKey) -> Option<Arc<str>> {
        let removed = self.ids.get_mut(key.0 as usize)?.take();
        if removed.is_some() {
            self.len -= 1;
        }
        removed
    }

    /// How many keys stand for an agent (the agents linked).
    pub(super) fn len(&self) -> usize {
        self.len
    }
}
