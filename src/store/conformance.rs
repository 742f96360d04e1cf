//! One test suite for every storage engine: what the [`Store`] trait
//! promises, checked the same way against sled and the memory store, so an
//! engine cannot drift from the others (or from what the daemon relies on).
//! What only a disk can show (reopening, damage, locks, kill -9) stays with
//! the engine's own tests and `tests/store_crash.rs`.
//!
//! Each check takes a fresh, empty store; [`engines!`] runs all of them for
//! one engine.

use super::testing::{agent, at, batch, contact, event, outbox};
use super::{
    Batch, DirectoryBatch, InboxItem, InboxKind, Loaded, MetaKey, Store, StoreError,
    StoredDirectory, StoredUser,
};

pub(super) fn a_new_store_is_empty_and_numbers_events_from_one(store: &dyn Store) {
    assert_eq!(store.load().unwrap(), Loaded::default());
    assert_eq!(store.first_seq().unwrap(), None);
    assert_eq!(store.last_seq().unwrap(), 0);
    let events = store.commit(batch("a1", 1, 1, 100)).unwrap();
    assert_eq!(store.last_seq().unwrap(), 1);
    assert_eq!(events[0].seq, 1);
    assert_eq!(events[0].id, format!("{}-1", store.store_id()));
}

pub(super) fn what_is_committed_is_loaded(store: &dyn Store) {
    let committed = store.commit(batch("a1", 7, 2, 100)).unwrap();
    store.commit(batch("a2", 8, 1, 101)).unwrap();
    let loaded = store.load().unwrap();
    assert_eq!(loaded.agents, vec![agent("a1", 7), agent("a2", 8)]);
    assert_eq!(loaded.outbox, vec![outbox("a1", 7), outbox("a2", 8)]);
    assert_eq!(loaded.last_seq, 3);
    assert_eq!(store.events_after(0, 10).unwrap()[..2], committed[..]);
    assert_eq!(
        store.meta(&MetaKey::Cursor("webhook".into())).unwrap(),
        Some("8".to_owned())
    );
    assert_eq!(store.meta(&MetaKey::DeltaLink).unwrap(), None);
}

pub(super) fn contacts_and_routing_state_are_kept_and_deleted(store: &dyn Store) {
    let mut first = batch("a1", 1, 1, 100);
    first.contacts = vec![
        ("c-a1".into(), Some(contact("a1", 1))),
        ("c-a2".into(), Some(contact("a2", 2))),
    ];
    first
        .meta
        .push((MetaKey::Routing, Some("{\"next_serial\":3}".into())));
    first.meta.push((
        MetaKey::RoutingQueue("support".into()),
        Some("{\"s\":1}".into()),
    ));
    first.meta.push((
        MetaKey::RoutingQueue("sales".into()),
        Some("{\"s\":2}".into()),
    ));
    store.commit(first).unwrap();
    let mut second = batch("a1", 2, 0, 101);
    second.contacts = vec![("c-a1".into(), None)];
    store.commit(second).unwrap();
    let loaded = store.load().unwrap();
    assert_eq!(loaded.contacts, vec![contact("a2", 2)]);
    assert_eq!(
        loaded.routing_queues,
        vec![
            ("sales".to_owned(), "{\"s\":2}".to_owned()),
            ("support".to_owned(), "{\"s\":1}".to_owned()),
        ]
    );
    assert_eq!(
        store.meta(&MetaKey::Routing).unwrap().as_deref(),
        Some("{\"next_serial\":3}")
    );
}

pub(super) fn a_contact_under_another_id_is_refused(store: &dyn Store) {
    let mut wrong = batch("a1", 1, 0, 100);
    wrong.contacts = vec![("c-x".into(), Some(contact("a1", 1)))];
    assert!(matches!(
        store.commit(wrong),
        Err(StoreError::InvalidBatch(_))
    ));
    assert_eq!(store.load().unwrap(), Loaded::default());
}

pub(super) fn seqs_strictly_increase_and_eventless_batches_take_none(store: &dyn Store) {
    let mut seen = Vec::new();
    for round in 0..4 {
        for n in 0..3 {
            let events = store.commit(batch("a1", n, 2, round)).unwrap();
            seen.extend(events.iter().map(|e| e.seq));
        }
        assert!(store.commit(batch("a1", 9, 0, round)).unwrap().is_empty());
    }
    assert_eq!(seen, (1..=24).collect::<Vec<u64>>());
    assert!(store.commit(Batch::default()).unwrap().is_empty());
    assert_eq!(store.load().unwrap().last_seq, 24);
}

pub(super) fn deleting_an_agent_deletes_its_outbox_entry_in_the_same_batch(store: &dyn Store) {
    store.commit(batch("a1", 1, 0, 0)).unwrap();
    store.commit(batch("a2", 1, 0, 0)).unwrap();
    // Listed as an upsert of the outbox too: the agent's delete still wins.
    store
        .commit(Batch {
            agents: vec![("a1".into(), None)],
            outbox: vec![("a1".into(), Some(outbox("a1", 2)))],
            ..Batch::default()
        })
        .unwrap();
    let loaded = store.load().unwrap();
    assert_eq!(loaded.agents, vec![agent("a2", 1)]);
    assert_eq!(loaded.outbox, vec![outbox("a2", 1)]);
}

pub(super) fn meta_is_set_and_cleared(store: &dyn Store) {
    let set = |value: Option<&str>| Batch {
        meta: vec![(MetaKey::DeltaLink, value.map(str::to_owned))],
        ..Batch::default()
    };
    store
        .commit(set(Some("https://graph.example/delta?token=1")))
        .unwrap();
    assert_eq!(
        store.meta(&MetaKey::DeltaLink).unwrap().as_deref(),
        Some("https://graph.example/delta?token=1")
    );
    store.commit(set(None)).unwrap();
    assert_eq!(store.meta(&MetaKey::DeltaLink).unwrap(), None);
}

pub(super) fn a_record_under_another_id_is_refused_and_nothing_is_written(store: &dyn Store) {
    let mut wrong = batch("a1", 1, 1, 0);
    wrong.agents.push(("a2".into(), Some(agent("a3", 1))));
    assert!(matches!(
        store.commit(wrong),
        Err(StoreError::InvalidBatch(problem)) if problem.contains("\"a3\"")
    ));
    let mut wrong = batch("a1", 1, 1, 0);
    wrong.outbox.push(("a2".into(), Some(outbox("a3", 1))));
    assert!(matches!(
        store.commit(wrong),
        Err(StoreError::InvalidBatch(_))
    ));
    assert_eq!(store.load().unwrap(), Loaded::default());
    // The refused events used no seqs.
    assert_eq!(store.commit(batch("a1", 1, 1, 0)).unwrap()[0].seq, 1);
}

pub(super) fn events_after_pages_through_the_log(store: &dyn Store) {
    assert_eq!(store.first_seq().unwrap(), None);
    assert!(store.events_after(0, 10).unwrap().is_empty());
    for n in 0..5 {
        store.commit(batch("a1", n, 2, n as i64)).unwrap();
    }
    assert_eq!(store.first_seq().unwrap(), Some(1));
    let seqs = |after, limit| -> Vec<u64> {
        store
            .events_after(after, limit)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect()
    };
    assert_eq!(seqs(0, 3), vec![1, 2, 3]);
    assert_eq!(seqs(3, 3), vec![4, 5, 6]);
    assert_eq!(seqs(8, 100), vec![9, 10]);
    assert_eq!(seqs(10, 100), Vec::<u64>::new());
    assert_eq!(seqs(0, 0), Vec::<u64>::new());
    assert_eq!(seqs(u64::MAX, 10), Vec::<u64>::new());
}

pub(super) fn prune_drops_old_events_but_keeps_the_newest(store: &dyn Store) {
    // Seqs 1..=10 at times 0..=9.
    store
        .commit(Batch {
            events: (0..10).map(|t| event(t, "a1")).collect(),
            ..Batch::default()
        })
        .unwrap();
    // Older than 4 are seqs 1..=4, but 8 must stay: only 2 may go.
    assert_eq!(store.prune_events(at(4), 8).unwrap(), 2);
    assert_eq!(store.first_seq().unwrap(), Some(3));
    assert_eq!(store.prune_events(at(4), 0).unwrap(), 2);
    assert_eq!(store.first_seq().unwrap(), Some(5));
    assert_eq!(store.prune_events(at(4), 0).unwrap(), 0);
    // Everything: the next seq goes on from 11, never back.
    assert_eq!(store.prune_events(at(100), 0).unwrap(), 6);
    assert_eq!(store.first_seq().unwrap(), None);
    assert_eq!(store.load().unwrap().last_seq, 10);
    assert_eq!(store.last_seq().unwrap(), 10, "pruned seqs stay spent");
    assert_eq!(store.commit(batch("a1", 1, 1, 0)).unwrap()[0].seq, 11);
    assert_eq!(store.first_seq().unwrap(), Some(11));
}

pub(super) fn prune_stops_at_the_first_event_not_old_enough(store: &dyn Store) {
    store
        .commit(Batch {
            events: [1, 50, 2, 3].iter().map(|&t| event(t, "a1")).collect(),
            ..Batch::default()
        })
        .unwrap();
    // Seq 3 is old, but dropping it would leave a hole after seq 2.
    assert_eq!(store.prune_events(at(10), 0).unwrap(), 1);
    let left: Vec<u64> = store
        .events_after(0, 10)
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(left, vec![2, 3, 4]);
}

pub(super) fn a_clean_shutdown_mark_changes_nothing_stored(store: &dyn Store) {
    store.commit(batch("a1", 1, 2, 100)).unwrap();
    let before = (store.load().unwrap(), store.events_after(0, 10).unwrap());
    store.mark_clean_shutdown().unwrap();
    assert_eq!(
        (store.load().unwrap(), store.events_after(0, 10).unwrap()),
        before
    );
    assert_eq!(store.meta(&MetaKey::DeltaLink).unwrap(), None);
    // Writing again after the mark goes on as before.
    assert_eq!(store.commit(batch("a2", 1, 1, 101)).unwrap()[0].seq, 3);
    store.mark_clean_shutdown().unwrap();
    assert_eq!(store.load().unwrap().agents.len(), 2);
}

fn stored_user(id: &str, upn: &str) -> StoredUser {
    StoredUser {
        id: id.to_owned(),
        upn: Some(upn.to_owned()),
        mail: None,
        business_phones: vec!["+1 425 555 0100".to_owned()],
        mobile_phone: None,
        teams: Some(true),
        teams_phone: Some(false),
    }
}

pub(super) fn the_directory_is_stored_whole_then_changed(store: &dyn Store) {
    assert_eq!(store.directory().unwrap(), None, "nothing stored yet");
    // Changes before any complete directory do not make one.
    store
        .commit_directory(DirectoryBatch {
            upserts: vec![stored_user("X", "x@c.example")],
            ..DirectoryBatch::default()
        })
        .unwrap();
    assert_eq!(store.directory().unwrap(), None);
    store
        .commit_directory(DirectoryBatch {
            replace: true,
            upserts: vec![
                stored_user("B", "b@c.example"),
                stored_user("a", "a@c.example"),
            ],
            removes: vec![],
            delta_link: Some("https://graph.example/d1".into()),
        })
        .unwrap();
    assert_eq!(
        store.directory().unwrap(),
        Some(StoredDirectory {
            users: vec![
                stored_user("a", "a@c.example"),
                stored_user("B", "b@c.example")
            ],
            delta_link: Some("https://graph.example/d1".into()),
        }),
        "the replace dropped X; users come in id order, any case"
    );
    store
        .commit_directory(DirectoryBatch {
            replace: false,
            upserts: vec![
                stored_user("c", "c@c.example"),
                stored_user("a", "a2@c.example"),
            ],
            removes: vec!["b".into()],
            delta_link: Some("https://graph.example/d2".into()),
        })
        .unwrap();
    let stored = store.directory().unwrap().unwrap();
    assert_eq!(
        stored.users,
        vec![
            stored_user("a", "a2@c.example"),
            stored_user("c", "c@c.example")
        ]
    );
    assert_eq!(
        stored.delta_link.as_deref(),
        Some("https://graph.example/d2")
    );
    // The directory is not part of what a step commits.
    assert_eq!(store.load().unwrap(), Loaded::default());
    assert_eq!(store.meta(&MetaKey::DeltaLink).unwrap(), None);
}

pub(super) fn the_inbox_keeps_batches_in_order_until_acknowledged(store: &dyn Store) {
    assert_eq!(store.inbox(0, 10).unwrap(), vec![]);
    let first = store
        .append_inbox(InboxKind::Changes, at(100), b"{\"value\":[1]}")
        .unwrap();
    let second = store
        .append_inbox(InboxKind::Lifecycle, at(101), b"")
        .unwrap();
    let third = store
        .append_inbox(InboxKind::Changes, at(102), &[0xFF, 0x00])
        .unwrap();
    assert_eq!((first, second, third), (1, 2, 3));
    let all = store.inbox(0, 10).unwrap();
    assert_eq!(
        all[1],
        InboxItem {
            seq: 2,
            kind: InboxKind::Lifecycle,
            received_at: at(101),
            body: Vec::new(),
        }
    );
    assert_eq!(all[2].body, [0xFF, 0x00], "bodies are kept byte for byte");
    assert_eq!(
        store
            .inbox(1, 1)
            .unwrap()
            .iter()
            .map(|i| i.seq)
            .collect::<Vec<_>>(),
        [2]
    );
    assert_eq!(store.ack_inbox(2).unwrap(), 2);
    assert_eq!(
        store.ack_inbox(2).unwrap(),
        0,
        "acknowledging twice is harmless"
    );
    assert_eq!(
        store
            .inbox(0, 10)
            .unwrap()
            .iter()
            .map(|i| i.seq)
            .collect::<Vec<_>>(),
        [3]
    );
    assert_eq!(store.ack_inbox(u64::MAX).unwrap(), 1);
    let next = store
        .append_inbox(InboxKind::Changes, at(103), b"x")
        .unwrap();
    assert_eq!(next, 4, "seqs are never reused once the inbox is empty");
    // The inbox is not part of what a step commits.
    assert_eq!(store.load().unwrap(), Loaded::default());
    assert_eq!(store.last_seq().unwrap(), 0);
}

/// More users than the sled engine writes in one part (it writes a large
/// replace in parts): the result is the same as a small replace's.
pub(super) fn a_replace_larger_than_one_part_is_stored_whole(store: &dyn Store) {
    let users = |from: usize, to: usize, domain: &str| -> Vec<StoredUser> {
        (from..to)
            .map(|i| stored_user(&format!("u{i:05}"), &format!("u{i}@{domain}")))
            .collect()
    };
    let first = users(0, 4_500, "one.example");
    store
        .commit_directory(DirectoryBatch {
            replace: true,
            upserts: first.clone(),
            removes: vec![],
            delta_link: Some("https://graph.example/one".into()),
        })
        .unwrap();
    let stored = store.directory().unwrap().unwrap();
    assert_eq!(stored.users, first);
    assert_eq!(
        stored.delta_link.as_deref(),
        Some("https://graph.example/one")
    );
    // Half of them gone, the rest changed, as many new: a replace over a
    // stored directory drops those it does not name.
    let second = users(2_250, 6_750, "two.example");
    store
        .commit_directory(DirectoryBatch {
            replace: true,
            upserts: second.clone(),
            removes: vec![],
            delta_link: None,
        })
        .unwrap();
    let stored = store.directory().unwrap().unwrap();
    assert_eq!(stored.users.len(), second.len());
    assert_eq!(stored.users, second);
    assert_eq!(
        stored.delta_link.as_deref(),
        Some("https://graph.example/one"),
        "a replace without a link keeps the stored one"
    );
    assert_eq!(store.load().unwrap(), Loaded::default());
}

/// Every check of this suite as a `#[test]` for one engine: `$fresh` makes
/// an empty store, and whatever else must live as long as it (a temporary
/// directory), as `(keep_alive, store)`.
macro_rules! engines {
    ($engine:ident, $fresh:expr) => {
        mod $engine {
            use crate::store::conformance;
            engines!(@tests $fresh;
                a_new_store_is_empty_and_numbers_events_from_one,
                what_is_committed_is_loaded,
                contacts_and_routing_state_are_kept_and_deleted,
                a_contact_under_another_id_is_refused,
                seqs_strictly_increase_and_eventless_batches_take_none,
                deleting_an_agent_deletes_its_outbox_entry_in_the_same_batch,
                meta_is_set_and_cleared,
                a_record_under_another_id_is_refused_and_nothing_is_written,
                events_after_pages_through_the_log,
                prune_drops_old_events_but_keeps_the_newest,
                prune_stops_at_the_first_event_not_old_enough,
                a_clean_shutdown_mark_changes_nothing_stored,
                the_directory_is_stored_whole_then_changed,
                a_replace_larger_than_one_part_is_stored_whole,
                the_inbox_keeps_batches_in_order_until_acknowledged,
            );
        }
    };
    (@tests $fresh:expr; $($check:ident),+ $(,)?) => {
        $(
            #[test]
            fn $check() {
                let (_keep, store) = $fresh;
                conformance::$check(&store);
            }
        )+
    };
}

mod engines {
    engines!(sled, {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::SledStore::open(dir.path()).unwrap();
        (dir, store)
    });
    engines!(memory, ((), crate::store::MemoryStore::new()));
    // The active's store in a cluster, over an in-memory commit log, after
    // its genesis: it keeps every promise its sled keeps.
    engines!(replicated, {
        let dir = tempfile::tempdir().unwrap();
        let sled = crate::store::SledStore::open(dir.path()).unwrap();
        let log = crate::cluster::memory_log::MemoryLog::new();
        let store = crate::cluster::replicated::ReplicatedStore::new(sled, log).unwrap();
        assert_eq!(store.genesis().unwrap(), 1);
        (dir, store)
    });
}
