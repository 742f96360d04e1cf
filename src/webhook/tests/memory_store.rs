//! A [`Store`] in memory, for the sink's tests: every method as the trait
//! describes it, plus commits that can be made to fail.

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use crate::events::Event;
use crate::store::{AgentRecord, Batch, Loaded, MetaKey, OutboxEntry, Store, StoreError};

#[derive(Default)]
struct State {
    agents: BTreeMap<String, AgentRecord>,
    outbox: BTreeMap<String, OutboxEntry>,
    events: Vec<Event>,
    meta: BTreeMap<MetaKey, String>,
    last_seq: u64,
    /// Commits still to refuse, whole.
    failing_commits: usize,
    commits: usize,
}

pub(super) struct MemoryStore {
    id: String,
    state: Mutex<State>,
}

impl MemoryStore {
    pub(super) fn new() -> Self {
        MemoryStore {
            id: "mem1".to_owned(),
            state: Mutex::new(State::default()),
        }
    }

    /// The next `n` commits fail without changing anything.
    pub(super) fn fail_commits(&self, n: usize) {
        self.state.lock().unwrap().failing_commits = n;
    }

    /// Commits that succeeded.
    pub(super) fn commits(&self) -> usize {
        self.state.lock().unwrap().commits
    }
}

impl Store for MemoryStore {
    fn store_id(&self) -> &str {
        &self.id
    }

    fn load(&self) -> Result<Loaded, StoreError> {
        let state = self.state.lock().unwrap();
        Ok(Loaded {
            agents: state.agents.values().cloned().collect(),
            outbox: state.outbox.values().cloned().collect(),
            contacts: Vec::new(),
            routing_queues: Vec::new(),
            last_seq: state.last_seq,
        })
    }

    fn commit(&self, batch: Batch) -> Result<Vec<Event>, StoreError> {
        let mut state = self.state.lock().unwrap();
        if state.failing_commits > 0 {
            state.failing_commits -= 1;
            return Err(StoreError::Io("disk full (test)".into()));
        }
        for (id, record) in batch.agents {
            match record {
                Some(record) => {
                    state.agents.insert(id, record);
                }
                None => {
                    state.agents.remove(&id);
                    state.outbox.remove(&id);
                }
            }
        }
        for (id, entry) in batch.outbox {
            match entry {
                Some(entry) => {
                    state.outbox.insert(id, entry);
                }
                None => {
                    state.outbox.remove(&id);
                }
            }
        }
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
        let state = self.state.lock().unwrap();
        Ok(state
            .events
            .iter()
            .filter(|e| e.seq > after)
            .take(limit)
            .cloned()
            .collect())
    }

    fn first_seq(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.state.lock().unwrap().events.first().map(|e| e.seq))
    }

    fn last_seq(&self) -> Result<u64, StoreError> {
        Ok(self.state.lock().unwrap().last_seq)
    }

    fn meta(&self, key: &MetaKey) -> Result<Option<String>, StoreError> {
        Ok(self.state.lock().unwrap().meta.get(key).cloned())
    }

    fn prune_events(
        &self,
        before: DateTime<Utc>,
        keep_at_least: usize,
    ) -> Result<usize, StoreError> {
        let mut state = self.state.lock().unwrap();
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
}

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
