//! Which poller reads whom while subscriptions are on.
//!
//! The sync loop says who is linked (agents) and the directory view who
//! else is in scope; both send their changes here instead of to their
//! pollers. A user covered by an active subscription is read by the
//! reconciliation poller (slowly: notifications bring the changes); any
//! other user by the poller of its tier at the normal freshness. When
//! coverage changes (a subscription created, an account failed), the users
//! concerned move between pollers at once.
//!
//! Kept as plain data with no channels, so the rules are tested directly;
//! the worker sends what [`Routed`] collects.

use std::collections::{HashMap, HashSet};

use crate::graph::poller::PollChange;
use crate::subscriptions::{UserId, Wanted};

/// Where a user's changes come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    /// Linked agents, read by the agent poller when not covered.
    Agent,
    /// Other users in the directory's scope, read by its slower tier.
    Directory,
}

/// The changes for each poller, collected over one turn of the worker.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Routed {
    pub agent: Vec<PollChange>,
    pub directory: Vec<PollChange>,
    pub reconcile: Vec<PollChange>,
}

impl Routed {
    fn to(&mut self, tier: Tier, covered: bool) -> &mut Vec<PollChange> {
        match (covered, tier) {
            (true, _) => &mut self.reconcile,
            (false, Tier::Agent) => &mut self.agent,
            (false, Tier::Directory) => &mut self.directory,
        }
    }
}

/// A set with an order: who is chosen first within a tier when accounts
/// run short of room.
#[derive(Debug, Default)]
struct Members {
    ids: Vec<UserId>,
    index: HashMap<UserId, usize>,
}

impl Members {
    /// Keeps `id` itself (shared with the poller's list), not a copy.
    fn insert(&mut self, id: &UserId) -> bool {
        if self.index.contains_key(id) {
            return false;
        }
        let id = UserId::clone(id);
        self.index.insert(id.clone(), self.ids.len());
        self.ids.push(id);
        true
    }

    /// The last user takes the removed one's place: O(1), and the order
    /// only matters between tiers, which are apart.
    fn remove(&mut self, id: &str) -> bool {
        let Some(at) = self.index.remove(id) else {
            return false;
        };
        self.ids.swap_remove(at);
        if let Some(moved) = self.ids.get(at) {
            self.index.insert(moved.clone(), at);
        }
        true
    }

    fn contains(&self, id: &str) -> bool {
        self.index.contains_key(id)
    }
}

/// The users of both tiers and who of them is covered.
#[derive(Debug, Default)]
pub struct Coverage {
    agents: Members,
    others: Members,
    covered: HashSet<UserId>,
}

impl Coverage {
    pub fn new() -> Self {
        Coverage::default()
    }

    /// Applies a tier's changes; true when the users wanted changed.
    pub fn apply(&mut self, tier: Tier, changes: Vec<PollChange>, out: &mut Routed) -> bool {
        let mut changed = false;
        for change in changes {
            let (id, add) = match &change {
                PollChange::Add(id) => (id, true),
                PollChange::Remove(id) => (id, false),
            };
            let members = match tier {
                Tier::Agent => &mut self.agents,
                Tier::Directory => &mut self.others,
            };
            let took = if add {
                members.insert(id)
            } else {
                members.remove(id)
            };
            if took {
                changed = true;
                let covered = self.covered.contains(id);
                // A covered user leaves reconciliation only when in neither
                // tier any more: for a moment it can be in both (linked as
                // an agent before the view drops it from its tier).
                let still_wanted = !add && !self.tiers_of(id).is_empty();
                if !(covered && still_wanted) {
                    out.to(tier, covered).push(change);
                }
            }
        }
        changed
    }

    /// Sets who is covered now; users whose coverage changed move between
    /// pollers.
    pub fn set_covered(&mut self, covered: HashSet<UserId>, out: &mut Routed) {
        for id in covered.difference(&self.covered) {
            for tier in self.tiers_of(id) {
                out.to(tier, false)
                    .push(PollChange::Remove(UserId::clone(id)));
                out.reconcile.push(PollChange::Add(UserId::clone(id)));
            }
        }
        for id in self.covered.difference(&covered) {
            for tier in self.tiers_of(id) {
                out.reconcile.push(PollChange::Remove(UserId::clone(id)));
                out.to(tier, false).push(PollChange::Add(UserId::clone(id)));
            }
        }
        self.covered = covered;
    }

    fn tiers_of(&self, id: &str) -> Vec<Tier> {
        let mut tiers = Vec::new();
        if self.agents.contains(id) {
            tiers.push(Tier::Agent);
        }
        if self.others.contains(id) {
            tiers.push(Tier::Directory);
        }
        tiers
    }

    /// Who subscriptions should cover, agents first.
    pub fn wanted(&self) -> Wanted {
        Wanted {
            agents: self.agents.ids.clone(),
            others: self.others.ids.clone(),
        }
    }

    /// Users of either tier now read by notifications (and reconciliation).
    pub fn subscribed(&self) -> usize {
        self.covered
            .iter()
            .filter(|id| self.agents.contains(id) || self.others.contains(id))
            .count()
    }

    /// Users of either tier read by polling alone.
    pub fn polled(&self) -> usize {
        let all = self.agents.ids.len()
            + self
                .others
                .ids
                .iter()
                .filter(|id| !self.agents.contains(id))
                .count();
        all - self.subscribed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(ids: &[&str]) -> Vec<PollChange> {
        ids.iter().map(|i| PollChange::Add((*i).into())).collect()
    }

    fn set(ids: &[&str]) -> HashSet<UserId> {
        ids.iter().map(|i| UserId::from(*i)).collect()
    }

    #[test]
    fn uncovered_users_go_to_their_tier_and_covered_ones_to_reconciliation() {
        let mut c = Coverage::new();
        let mut out = Routed::default();
        assert!(c.apply(Tier::Agent, add(&["a1", "a2"]), &mut out));
        assert!(c.apply(Tier::Directory, add(&["d1"]), &mut out));
        assert_eq!(out.agent, add(&["a1", "a2"]));
        assert_eq!(out.directory, add(&["d1"]));
        assert!(out.reconcile.is_empty());

        let mut out = Routed::default();
        c.set_covered(set(&["a1", "d1"]), &mut out);
        assert_eq!(out.agent, vec![PollChange::Remove("a1".into())]);
        assert_eq!(out.directory, vec![PollChange::Remove("d1".into())]);
        let mut moved = out.reconcile.clone();
        moved.sort_by_key(|c| format!("{c:?}"));
        assert_eq!(moved, add(&["a1", "d1"]));
        assert_eq!((c.subscribed(), c.polled()), (2, 1));

        // A covered agent leaving leaves reconciliation; a new one covered
        // already goes straight there.
        let mut out = Routed::default();
        c.apply(Tier::Agent, vec![PollChange::Remove("a1".into())], &mut out);
        c.set_covered(set(&["a1", "d1", "a3"]), &mut out);
        c.apply(Tier::Agent, add(&["a3"]), &mut out);
        assert_eq!(
            out.reconcile,
            vec![
                PollChange::Remove("a1".into()),
                PollChange::Add("a3".into())
            ]
        );
        assert!(out.agent.is_empty());

        // An account fails: its users are polled at their tier at once.
        let mut out = Routed::default();
        c.set_covered(HashSet::new(), &mut out);
        assert_eq!(out.agent, add(&["a3"]));
        assert_eq!(out.directory, add(&["d1"]));
        assert_eq!(out.reconcile.len(), 2);
        assert_eq!((c.subscribed(), c.polled()), (0, 3));
    }

    #[test]
    fn a_covered_user_in_both_tiers_stays_read_when_it_leaves_one() {
        let mut c = Coverage::new();
        let mut out = Routed::default();
        c.apply(Tier::Directory, add(&["u"]), &mut out);
        c.set_covered(set(&["u"]), &mut out);
        // Linked as an agent before the view drops it from its tier.
        c.apply(Tier::Agent, add(&["u"]), &mut out);
        let mut out = Routed::default();
        c.apply(
            Tier::Directory,
            vec![PollChange::Remove("u".into())],
            &mut out,
        );
        assert!(out.reconcile.is_empty(), "still read by reconciliation");
        c.apply(Tier::Agent, vec![PollChange::Remove("u".into())], &mut out);
        assert_eq!(out.reconcile, vec![PollChange::Remove("u".into())]);
    }

    #[test]
    fn repeated_changes_change_nothing_and_order_is_kept() {
        let mut c = Coverage::new();
        let mut out = Routed::default();
        c.apply(Tier::Agent, add(&["a1", "a2", "a3"]), &mut out);
        assert!(!c.apply(Tier::Agent, add(&["a2"]), &mut out));
        assert!(!c.apply(Tier::Agent, vec![PollChange::Remove("zz".into())], &mut out));
        c.apply(Tier::Agent, vec![PollChange::Remove("a2".into())], &mut out);
        c.apply(Tier::Agent, add(&["a4"]), &mut out);
        let wanted = c.wanted();
        let order: Vec<&str> = wanted.agents.iter().map(|a| &**a).collect();
        assert_eq!(order, ["a1", "a3", "a4"]);
    }
}
