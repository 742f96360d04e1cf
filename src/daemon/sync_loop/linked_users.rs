//! The Teams users linked to agents ([`LinkedUsers`]): which agent holds
//! each, and the links and unlinks the presence poller has not been told of
//! yet. A step sends those once it is committed (`step.rs`), so the poller
//! learns of a change in time proportional to the change, whatever the
//! number of agents.

use std::collections::HashMap;

use crate::graph::poller::PollChange;

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
