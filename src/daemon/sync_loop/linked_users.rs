//! The Teams users linked to agents ([`LinkedUsers`]): which agent holds
//! each, and the links and unlinks the presence poller has not been told of
//! yet; and the agent each of the engine's keys stands for ([`KeyedAgents`]). A step sends those once it is committed (`step.rs`), so the poller
//! learns of a change in time proportional to the change, whatever the
//! number of agents.

use std::collections::HashMap;

use crate::graph::poller::PollChange;
use crate::sync::AgentKey;

/// Each linked Teams user's id and the agent holding it, with the changes
/// since they were last taken.
#[derive(Debug, Default)]
pub(super) struct LinkedUsers {
    holders: HashMap<String, String>,
    changes: Vec<PollChange>,
    /// Every link and unlink with its agent, for the directory view
    /// (a user moving to another agent is no change to the poller).
    links: Vec<(String, Option<String>)>,
}

impl LinkedUsers {
    /// The agent holding `user`.
    pub(super) fn get(&self, user: &str) -> Option<&String> {
        self.holders.get(user)
    }

    /// `agent` holds `user` now; returns the agent that held it before.
    pub(super) fn insert(&mut self, user: String, agent: String) -> Option<String> {
        self.links.push((user.clone(), Some(agent.clone())));
        let before = self.holders.insert(user.clone(), agent);
        if before.is_none() {
            self.changes.push(PollChange::Add(user));
        }
        before
    }

    /// Nobody holds `user` now; returns the agent that held it.
    pub(super) fn remove(&mut self, user: &str) -> Option<String> {
        let before = self.holders.remove(user);
        if before.is_some() {
            self.changes.push(PollChange::Remove(user.to_string()));
            self.links.push((user.to_string(), None));
        }
        before
    }

    /// The linked users' ids.
    pub(super) fn keys(&self) -> impl Iterator<Item = &String> {
        self.holders.keys()
    }

    /// The links and unlinks since the last call, in order.
    pub(super) fn take_changes(&mut self) -> Vec<PollChange> {
        std::mem::take(&mut self.changes)
    }

    /// The links (with their agent) and unlinks since the last call, in order.
    pub(super) fn take_links(&mut self) -> Vec<(String, Option<String>)> {
        std::mem::take(&mut self.links)
    }
}

/// The agent id each engine key stands for. The engine hands out keys as
/// dense slot numbers (reusing those freed), so a vector indexed by them
/// holds the ids without a hash table's room and hashing.
#[derive(Debug, Default)]
pub(super) struct KeyedAgents {
    ids: Vec<Option<String>>,
    len: usize,
}

impl KeyedAgents {
    pub(super) fn get(&self, key: &AgentKey) -> Option<&String> {
        self.ids.get(key.0 as usize)?.as_ref()
    }

    pub(super) fn insert(&mut self, key: AgentKey, id: String) {
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

    pub(super) fn remove(&mut self, key: &AgentKey) -> Option<String> {
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
