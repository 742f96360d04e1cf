//! The users the poller reads, kept up to date by changes rather than by a
//! new list: the sync loop sends who was linked and unlinked in a step
//! ([`PollChange`], through [`PollUsersSender`]), and the poller applies them
//! to its own list ([`PollUsers`]) when a round starts, in time proportional
//! to the changes, not to the users.
//!
//! The list is a vector (the round's batches are index ranges into it) with
//! an index of where each user is; a user leaving takes the last one's
//! place, so a removal is O(1) and every user present when a round starts
//! is read in that round.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc;

/// A change to the users to poll. The id is the sender's own, shared: the
/// list keeps it rather than a copy, so a user read costs no id of its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PollChange {
    /// A user was linked: read it from the next round on.
    Add(Arc<str>),
    /// A user was unlinked: read it no more.
    Remove(Arc<str>),
}

/// The sending side: one message a step, holding that step's changes in
/// the order they happened.
#[derive(Clone, Debug)]
pub struct PollUsersSender {
    tx: mpsc::UnboundedSender<Vec<PollChange>>,
}

impl PollUsersSender {
    /// Sends `changes` (nothing when empty). Nobody listening (no poller)
    /// is fine: nothing is kept then.
    pub fn send(&self, changes: Vec<PollChange>) {
        if !changes.is_empty() {
            let _ = self.tx.send(changes);
        }
    }
}

/// The poller's list of users, and the changes waiting to be applied to it.
#[derive(Debug)]
pub struct PollUsers {
    rx: mpsc::UnboundedReceiver<Vec<PollChange>>,
    ids: Vec<Arc<str>>,
    index: HashMap<Arc<str>, usize>,
}

/// A channel of changes, and the list they apply to starting as `initial`.
pub fn poll_users(initial: impl IntoIterator<Item = String>) -> (PollUsersSender, PollUsers) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut users = PollUsers {
        rx,
        ids: Vec::new(),
        index: HashMap::new(),
    };
    for id in initial {
        users.add(Arc::from(id));
    }
    (PollUsersSender { tx }, users)
}

/// The receiving end of a [`PollUsersSender`] for whoever passes the
/// changes on rather than polling (the subscriptions' coverage, which sends
/// each user to the poller that reads it).
pub type PollChanges = mpsc::UnboundedReceiver<Vec<PollChange>>;

/// A channel of changes whose receiver is not a poller's list.
pub fn poll_changes() -> (PollUsersSender, PollChanges) {
    let (tx, rx) = mpsc::unbounded_channel();
    (PollUsersSender { tx }, rx)
}

impl PollUsers {
    /// Applies every change sent so far, in order; returns the users removed
    /// that are not in the list afterwards (to forget what was seen of them).
    pub fn refresh(&mut self) -> Vec<Arc<str>> {
        let mut removed = Vec::new();
        while let Ok(changes) = self.rx.try_recv() {
            for change in changes {
                match change {
                    PollChange::Add(id) => self.add(id),
                    PollChange::Remove(id) => {
                        if self.remove(&id) {
                            removed.push(id);
                        }
                    }
                }
            }
        }
        removed.retain(|id| !self.contains(id));
        removed
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn contains(&self, id: &str) -> bool {
        self.index.contains_key(id)
    }

    /// The list's own copy of `id`, to share rather than copy.
    pub fn shared(&self, id: &str) -> Option<Arc<str>> {
        self.index.get_key_value(id).map(|(id, _)| Arc::clone(id))
    }

    /// The users at `range` of the list, as a read asks for them.
    pub fn slice(&self, range: std::ops::Range<usize>) -> Vec<String> {
        self.ids
            .get(range)
            .unwrap_or_default()
            .iter()
            .map(|id| id.to_string())
            .collect()
    }

    /// Every user, in the list's order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.ids.iter().map(|id| &**id)
    }

    fn add(&mut self, id: Arc<str>) {
        if self.index.contains_key(&id) {
            return;
        }
        self.index.insert(Arc::clone(&id), self.ids.len());
        self.ids.push(id);
    }

    /// True when `id` was in the list.
    fn remove(&mut self, id: &str) -> bool {
        let Some(at) = self.index.remove(id) else {
            return false;
        };
        self.ids.swap_remove(at);
        if let Some(moved) = self.ids.get(at) {
            self.index.insert(Arc::clone(moved), at);
        }
        true
    }
}
