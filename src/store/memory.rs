//! A [`Store`] in memory: every method as the trait describes it, nothing
//! durable. For tests of what runs over a store (the sync loop, the webhook
//! sink) without a disk, and held to the same conformance suite as the sled
//! engine (`conformance.rs`). Commits can be made to fail, to test what a
//! caller does when the disk refuses.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};

use super::{
    AgentRecord, Batch, DirectoryBatch, InboxItem, InboxKind, Loaded, MetaKey, OutboxEntry, Store,
    StoreError, StoredDirectory, StoredUser, keys,
};
use crate::events::Event;
use crate::routing::ContactRecord;

#[derive(Default)]
struct State {
    agents: BTreeMap<String, AgentRecord>,
    outbox: BTreeMap<String, OutboxEntry>,
    contacts: BTreeMap<String, ContactRecord>,
    /// Kept in order of sequence number, pruned from the front.
    events: Vec<Event>,
    meta: BTreeMap<MetaKey, String>,
    last_seq: u64,
    /// Commits still to refuse, whole.
    failing_commits: usize,
    commits: usize,
    /// The clean-shutdown mark, until the next write.
    marked_clean: bool,
    /// The stored directory's users by lower-case id, its delta link, and
    /// whether a complete one came.
    directory: (BTreeMap<String, StoredUser>, Option<String>, bool),
    /// The notification inbox in seq order, and the last seq it gave.
    inbox: (Vec<InboxItem>, u64),
}

pub struct MemoryStore {
    id: String,
    state: Mutex<State>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::with_id("mem1")
    }

    /// A store whose event ids start with `id`.
    pub fn with_id(id: &str) -> Self {
        MemoryStore {
            id: id.to_owned(),
            state: Mutex::new(State::default()),
        }
    }

    /// The next `n` commits (and inbox appends) fail without changing anything.
    pub fn fail_commits(&self, n: usize) {
        self.state().failing_commits = n;
    }

    /// Commits that succeeded.
    pub fn commits(&self) -> usize {
        self.state().commits
    }

    /// Whether a clean shutdown was marked and nothing was written since.
    pub fn marked_clean(&self) -> bool {
        self.state().marked_clean
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves no half-applied batch: a
        // batch is checked whole before anything is changed.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The checks the sled engine makes before it writes anything.
fn check(batch: &Batch) -> Result<(), StoreError> {
    let mut problems = batch
        .outbox
        .iter()
        .filter_map(|(id, e)| e.as_ref().and_then(|e| keys::outbox_problem(e, id)))
        .chain(
            batch
                .agents
                .iter()
                .filter_map(|(id, r)| r.as_ref().and_then(|r| keys::agent_problem(r, id))),
        )
        .chain(
            batch
                .contacts
                .iter()
                .filter_map(|(id, c)| c.as_ref().and_then(|c| keys::contact_problem(c, id))),
        );
    match problems.next() {
        Some(problem) => Err(StoreError::InvalidBatch(problem)),
        None => Ok(()),
    }
}

fn apply<V>(map: &mut BTreeMap<String, V>, changes: Vec<(String, Option<V>)>) {
    for (id, value) in changes {
        match value {
            Some(value) => {
                map.insert(id, value);
            }
            None => {
                map.remove(&id);
            }
        }
    }
}

impl Store for MemoryStore {
    fn store_id(&self) -> &str {
        &self.id
    }

    fn load(&self) -> Result<Loaded, StoreError> {
        let state = self.state();
        Ok(Loaded {
            agents: state.agents.values().cloned().collect(),
            outbox: state.outbox.values().cloned().collect(),
            contacts: state.contacts.values().cloned().collect(),
            routing_queues: state
                .meta
                .iter()
                .filter_map(|(key, value)| match key {
                    MetaKey::RoutingQueue(name) => Some((name.clone(), value.clone())),
                    _ => None,
                })
                .collect(),
            last_seq: state.last_seq,
        })
    }

    fn commit(&self, batch: Batch) -> Result<Vec<Event>, StoreError> {
        let mut state = self.state();
        if state.failing_commits > 0 {
            state.failing_commits -= 1;
            return Err(StoreError::Io("disk full (test)".into()));
        }
        check(&batch)?;
        if batch.is_empty() {
            state.commits += 1;
            return Ok(Vec::new());
        }
        state.marked_clean = false;
        apply(&mut state.outbox, batch.outbox);
        // An agent's delete takes its outbox entry with it, whatever order
        // the batch listed them in.
        for (id, record) in &batch.agents {
            if record.is_none() {
                state.outbox.remove(id);
            }
        }
        apply(&mut state.agents, batch.agents);
        apply(&mut state.contacts, batch.contacts);
        let mut committed = Vec::with_capacity(batch.events.len());
        for new in batch.events {
            state.last_seq += 1;
            let event = Event::committed(&self.id, state.last_seq, new);
            state.events.push(event.clone());
            committed.push(event);
        }
        for (key, value) in batch.meta {
            match value {
                Some(value) => {
                    state.meta.insert(key, value);
                }
                None => {
                    state.meta.remove(&key);
                }
            }
        }
        state.commits += 1;
        Ok(committed)
    }

    fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        let state = self.state();
        let start = state.events.partition_point(|e| e.seq <= after);
        Ok(state.events[start..].iter().take(limit).cloned().collect())
    }

    fn first_seq(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.state().events.first().map(|e| e.seq))
    }

    fn last_seq(&self) -> Result<u64, StoreError> {
        Ok(self.state().last_seq)
    }

    fn directory(&self) -> Result<Option<StoredDirectory>, StoreError> {
        let state = self.state();
        let (users, link, complete) = &state.directory;
        Ok(complete.then(|| StoredDirectory {
            users: users.values().cloned().collect(),
            delta_link: link.clone(),
        }))
    }

    fn commit_directory(&self, batch: DirectoryBatch) -> Result<(), StoreError> {
        let mut state = self.state();
        state.marked_clean = false;
        let (users, link, complete) = &mut state.directory;
        if batch.replace {
            users.clear();
            *complete = true;
        }
        for id in &batch.removes {
            users.remove(&id.to_ascii_lowercase());
        }
        for user in batch.upserts {
            users.insert(user.id.to_ascii_lowercase(), user);
        }
        if batch.delta_link.is_some() {
            *link = batch.delta_link;
        }
        Ok(())
    }

    fn meta(&self, key: &MetaKey) -> Result<Option<String>, StoreError> {
        Ok(self.state().meta.get(key).cloned())
    }

    fn prune_events(
        &self,
        before: DateTime<Utc>,
        keep_at_least: usize,
    ) -> Result<usize, StoreError> {
        let mut state = self.state();
        state.marked_clean = false;
        let prunable = state.events.len().saturating_sub(keep_at_least);
        let old = state
            .events
            .iter()
            .take(prunable)
            .take_while(|e| e.time < before)
            .count();
        state.events.drain(..old);
        Ok(old)
    }

    fn mark_clean_shutdown(&self) -> Result<(), StoreError> {
        self.state().marked_clean = true;
        Ok(())
    }

    fn append_inbox(
        &self,
        kind: InboxKind,
        received_at: DateTime<Utc>,
        body: &[u8],
    ) -> Result<u64, StoreError> {
        let mut state = self.state();
        if state.failing_commits > 0 {
            state.failing_commits -= 1;
            return Err(StoreError::Io("disk full (test)".into()));
        }
        state.marked_clean = false;
        let (items, last) = &mut state.inbox;
        *last += 1;
        items.push(InboxItem {
            seq: *last,
            kind,
            received_at,
            body: body.to_vec(),
        });
        Ok(*last)
    }

    fn inbox(&self, after: u64, limit: usize) -> Result<Vec<InboxItem>, StoreError> {
        let state = self.state();
        let items = &state.inbox.0;
        let start = items.partition_point(|i| i.seq <= after);
        Ok(items[start..].iter().take(limit).cloned().collect())
    }

    fn ack_inbox(&self, upto: u64) -> Result<usize, StoreError> {
        let mut state = self.state();
        state.marked_clean = false;
        let items = &mut state.inbox.0;
        let done = items.partition_point(|i| i.seq <= upto);
        items.drain(..done);
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::NewEvent;

    fn event(days_ago: i64) -> NewEvent {
        NewEvent {
            kind: "test".into(),
            time: Utc::now() - chrono::Duration::days(days_ago),
            agent_id: None,
            data: serde_json::Value::Null,
        }
    }

    #[test]
    fn behaves_as_the_trait_says() {
        let store = MemoryStore::new();
        let committed = store
            .commit(Batch {
                events: vec![event(10), event(9), event(1), event(0)],
                meta: vec![(MetaKey::DeltaLink, Some("d".into()))],
                ..Batch::default()
            })
            .unwrap();
        assert_eq!(
            committed.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
        assert_eq!(committed[0].id, "mem1-1");
        assert_eq!(store.events_after(1, 2).unwrap().len(), 2);
        assert_eq!(store.events_after(1, 2).unwrap()[0].seq, 2);
        assert_eq!(
            store.meta(&MetaKey::DeltaLink).unwrap().as_deref(),
            Some("d")
        );
        // Keeping at least three leaves one of the two old ones.
        assert_eq!(
            store
                .prune_events(Utc::now() - chrono::Duration::days(5), 3)
                .unwrap(),
            1
        );
        assert_eq!(store.first_seq().unwrap(), Some(2));
        store.fail_commits(1);
        assert!(store.commit(Batch::default()).is_err());
        store
            .commit(Batch {
                meta: vec![(MetaKey::DeltaLink, None)],
                ..Batch::default()
            })
            .unwrap();
        assert_eq!(store.meta(&MetaKey::DeltaLink).unwrap(), None);
        assert_eq!(store.load().unwrap().last_seq, 4);
        assert_eq!(store.commits(), 2);
    }
}
