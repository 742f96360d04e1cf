//! The sled engine's own tests: opening, the check, locks, durability;
//! what every engine promises is in `conformance.rs`.

use super::*;
use crate::store::SCHEMA_VERSION;
use crate::store::testing::{agent, at, batch, event, snapshot, write_raw};

fn damaged_problem(result: Result<SledStore, StoreError>) -> String {
    match result {
        Err(StoreError::Damaged { problem, .. }) => problem,
        other => panic!("expected Damaged, got {other:?}"),
    }
}

/// A store with a little of everything, closed again.
fn closed_store(dir: &Path) {
    let store = SledStore::open(dir).unwrap();
    store.commit(batch("a1", 1, 2, 100)).unwrap();
}

#[test]
fn a_new_store_gets_a_private_dir_an_id_and_seq_one() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("state");
    let store = SledStore::open(&dir).unwrap();
    assert!(
        keys::is_valid_store_id(store.store_id()),
        "{}",
        store.store_id()
    );
    assert_eq!(store.load().unwrap(), Loaded::default());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
    let events = store.commit(batch("a1", 1, 1, 100)).unwrap();
    assert_eq!(events[0].seq, 1);
    assert_eq!(events[0].id, format!("{}-1", store.store_id()));
}

#[test]
fn two_stores_get_different_ids() {
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let one = SledStore::open(one.path()).unwrap();
    let two = SledStore::open(two.path()).unwrap();
    assert_ne!(one.store_id(), two.store_id());
}

/// What a commit makes visible is in the conformance suite; a reopen
/// must find all of it, under the same store id.
#[test]
fn a_store_moved_aside_leaves_room_for_a_new_one_and_keeps_what_is_beside() {
    let dir = tempfile::tempdir().unwrap();
    let accounts = dir.path().join(crate::accounts::vault::ACCOUNTS_DIR);
    std::fs::create_dir_all(&accounts).unwrap();
    std::fs::write(accounts.join("svc.token"), "kept").unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let id = store.store_id().to_owned();
    store.commit(batch("a1", 7, 2, 100)).unwrap();
    store.mark_clean_shutdown().unwrap();
    drop(store);

    let now = chrono::DateTime::parse_from_rfc3339("2026-12-05T07:00:00.250Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let moved = SledStore::move_aside(dir.path(), now).unwrap();
    assert_eq!(
        moved,
        dir.path().join("replaced").join("20261205T070000.250Z")
    );
    assert!(is_empty_or_missing(dir.path()).unwrap());
    assert_eq!(
        std::fs::read_to_string(accounts.join("svc.token")).unwrap(),
        "kept"
    );
    let fresh = SledStore::open(dir.path()).unwrap();
    assert_ne!(fresh.store_id(), id, "a new store");
    drop(fresh);
    let old = SledStore::open(&moved).unwrap();
    assert_eq!(
        (old.store_id(), old.load().unwrap().agents),
        (id.as_str(), vec![agent("a1", 7)])
    );
}

#[test]
fn what_is_committed_is_loaded_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let id = store.store_id().to_owned();
    store.commit(batch("a1", 7, 2, 100)).unwrap();
    store.commit(batch("a2", 8, 1, 101)).unwrap();
    let before = (store.load().unwrap(), store.events_after(0, 10).unwrap());
    let cursor = MetaKey::Cursor("webhook".into());
    let meta = store.meta(&cursor).unwrap();
    drop(store);

    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(store.store_id(), id);
    assert_eq!(before.0.agents, vec![agent("a1", 7), agent("a2", 8)]);
    assert_eq!(
        (store.load().unwrap(), store.events_after(0, 10).unwrap()),
        before
    );
    assert_eq!(store.meta(&cursor).unwrap(), meta);
    assert_eq!(meta.as_deref(), Some("8"));
}

#[test]
fn routing_contacts_and_state_survive_a_reopen_and_an_export() {
    use crate::store::testing::contact;
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let mut first = batch("a1", 1, 1, 100);
    first.contacts = vec![
        ("c-a1".into(), Some(contact("a1", 1))),
        ("c-a2".into(), Some(contact("a2", 2))),
    ];
    first
        .meta
        .push((MetaKey::Routing, Some("{\"next_serial\":3}".into())));
    store.commit(first).unwrap();
    let mut second = batch("a1", 2, 0, 101);
    second.contacts = vec![("c-a1".into(), None)];
    store.commit(second).unwrap();
    drop(store);

    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(store.load().unwrap().contacts, vec![contact("a2", 2)]);
    assert_eq!(
        store.meta(&MetaKey::Routing).unwrap().as_deref(),
        Some("{\"next_serial\":3}")
    );
    let mut text = Vec::new();
    let stats = crate::store::export(&store, &mut text).unwrap();
    assert_eq!(stats.contacts, 1);
    drop(store);
    let copy = tempfile::tempdir().unwrap();
    crate::store::import(copy.path(), &text[..]).unwrap();
    let imported = SledStore::open(copy.path()).unwrap();
    assert_eq!(imported.load().unwrap().contacts, vec![contact("a2", 2)]);
    assert_eq!(
        imported.meta(&MetaKey::Routing).unwrap().as_deref(),
        Some("{\"next_serial\":3}")
    );
}

#[test]
fn seqs_strictly_increase_across_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let mut seen = Vec::new();
    for round in 0..4 {
        let store = SledStore::open(dir.path()).unwrap();
        for n in 0..3 {
            let events = store.commit(batch("a1", n, 2, round)).unwrap();
            seen.extend(events.iter().map(|e| e.seq));
        }
        // A batch without events assigns nothing.
        assert!(store.commit(batch("a1", 9, 0, round)).unwrap().is_empty());
    }
    assert_eq!(seen, (1..=24).collect::<Vec<u64>>());
}

/// Retention itself is in the conformance suite; what only a disk shows
/// is that the seqs pruned away stay spent across a reopen.
#[test]
fn pruned_seqs_are_never_reused_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    store
        .commit(Batch {
            events: (0..10).map(|t| event(t, "a1")).collect(),
            ..Batch::default()
        })
        .unwrap();
    assert_eq!(store.prune_events(at(100), 0).unwrap(), 10);
    assert_eq!(store.first_seq().unwrap(), None);
    drop(store);
    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(store.load().unwrap().last_seq, 10);
    assert_eq!(store.commit(batch("a1", 1, 1, 0)).unwrap()[0].seq, 11);
    assert_eq!(store.first_seq().unwrap(), Some(11));
}

#[test]
fn a_newer_schema_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    closed_store(dir.path());
    write_raw(dir.path(), &[(b"m/schema", Some(b"2"))]);
    let before = snapshot(dir.path());
    for _ in 0..2 {
        match SledStore::open(dir.path()) {
            Err(StoreError::NewerSchema {
                found: 2, known, ..
            }) => {
                assert_eq!(known, SCHEMA_VERSION)
            }
            other => panic!("expected NewerSchema, got {other:?}"),
        }
    }
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn damaged_stores_are_refused_with_the_problem_named() {
    /// A raw key, its new value (`None`: removed), what the refusal says.
    type Case<'a> = (&'a [u8], Option<&'a [u8]>, &'a str);
    let cases: &[Case<'_>] = &[
        (b"m/schema", Some(b"one"), "`schema` is garbled"),
        (b"m/schema", None, "`schema` is missing"),
        (b"m/store_id", None, "`store_id` is missing"),
        (b"m/store_id", Some(b"XYZ"), "`store_id` is garbled"),
        (b"m/next_seq", Some(b"-1"), "`next_seq` is garbled"),
        (
            b"m/next_seq",
            Some(b"2"),
            "event seq 2 is not below the next seq 2",
        ),
        (
            b"a/a1",
            Some(b"{\"id\":"),
            "the record \"a/a1\" cannot be decoded",
        ),
        (
            b"a/a9",
            Some(br#"{"not":"an agent"}"#),
            "the record \"a/a9\" cannot be decoded",
        ),
        (
            b"o/a1",
            Some(b"[]"),
            "the record \"o/a1\" cannot be decoded",
        ),
        (
            b"e/\0\0\0\0\0\0\0\x01",
            Some(b"{}"),
            "the record e/1 cannot be decoded",
        ),
        (
            b"e/1",
            Some(b"{}"),
            "the event key \"e/1\" is not a sequence number",
        ),
        (
            b"m/routing-old",
            Some(b"x"),
            "unknown meta record \"m/routing-old\"",
        ),
        (
            b"x/1",
            Some(b"{}"),
            "the key \"x/1\" belongs to no record family",
        ),
        (
            b"\xff\xfe",
            Some(b"{}"),
            "the key 0xfffe belongs to no record family",
        ),
    ];
    for (key, value, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        closed_store(dir.path());
        write_raw(dir.path(), &[(key, *value)]);
        let before = snapshot(dir.path());
        let problem = damaged_problem(SledStore::open(dir.path()));
        assert!(
            problem.contains(expected),
            "{}: {problem:?} should say {expected:?}",
            keys::describe_key(key)
        );
        assert_eq!(snapshot(dir.path()), before, "{expected}");
    }
}

#[test]
fn a_record_under_the_wrong_key_is_damage() {
    let dir = tempfile::tempdir().unwrap();
    closed_store(dir.path());
    let other = serde_json::to_vec(&agent("a2", 1)).unwrap();
    write_raw(dir.path(), &[(b"a/a1", Some(&other))]);
    let problem = damaged_problem(SledStore::open(dir.path()));
    assert!(problem.contains("\"a1\" has id \"a2\""), "{problem}");
}

#[test]
fn a_directory_of_other_files_is_not_a_store() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("notes.txt"), "hello").unwrap();
    let before = snapshot(dir.path());
    let problem = damaged_problem(SledStore::open(dir.path()));
    assert!(
        problem.contains("holds no presence-sync store"),
        "{problem}"
    );
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn garbage_sled_files_are_damage_not_a_crash() {
    let mut noise: u64 = 0x2545_f491_4f6c_dd1d;
    let mut garbage = |len: usize| -> Vec<u8> {
        (0..len)
            .map(|_| {
                noise ^= noise << 13;
                noise ^= noise >> 7;
                noise ^= noise << 17;
                noise as u8
            })
            .collect()
    };
    // Random `conf`, then a real `conf` beside a random `db`.
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("conf"), garbage(64)).unwrap();
    fs::write(dir.path().join("db"), garbage(4096)).unwrap();
    let before = snapshot(dir.path());
    let problem = damaged_problem(SledStore::open(dir.path()));
    assert!(problem.contains("settings file `conf`"), "{problem}");
    assert_eq!(snapshot(dir.path()), before);

    for db_len in [0, 100, 4096, 600_000] {
        let dir = tempfile::tempdir().unwrap();
        closed_store(dir.path());
        fs::write(dir.path().join("db"), garbage(db_len)).unwrap();
        for entry in fs::read_dir(dir.path()).unwrap() {
            let path = entry.unwrap().path();
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("snap."))
            {
                fs::remove_file(path).unwrap();
            }
        }
        let before = snapshot(dir.path());
        let problem = damaged_problem(SledStore::open(dir.path()));
        assert!(problem.contains("holds no records"), "{problem}");
        assert_eq!(snapshot(dir.path()), before, "garbage db of {db_len} bytes");
    }
}

#[test]
fn an_interrupted_first_start_is_refused_not_reinitialised() {
    let dir = tempfile::tempdir().unwrap();
    drop(sled::open(dir.path()).unwrap());
    let problem = damaged_problem(SledStore::open(dir.path()));
    assert!(problem.contains("holds no records"), "{problem}");
}

#[test]
fn a_store_in_use_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    assert!(matches!(
        SledStore::open(dir.path()),
        Err(StoreError::Locked { .. })
    ));
    drop(store);
    SledStore::open(dir.path()).unwrap();
}

#[test]
fn commits_from_several_threads_get_distinct_contiguous_seqs() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let mut seqs: Vec<u64> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|t| {
                let store = &store;
                scope.spawn(move || {
                    (0..10)
                        .flat_map(|n| store.commit(batch(&format!("a{t}"), n, 2, 0)).unwrap())
                        .map(|e| e.seq)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=80).collect::<Vec<u64>>());
    let stored: Vec<u64> = store
        .events_after(0, 100)
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(stored, seqs);
}

/// Waits for sled to let go of a store dropped a moment ago, then opens it.
fn reopen(dir: &Path) -> SledStore {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match SledStore::open(dir) {
            Err(StoreError::Locked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other.unwrap(),
        }
    }
}

#[test]
fn a_clean_shutdown_spares_the_next_open_the_deep_check_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(store.opened(), OpenCheck::Created);
    store.commit(batch("a1", 1, 2, 100)).unwrap();
    store.mark_clean_shutdown().unwrap();
    let before = store.load().unwrap();
    drop(store);
    assert!(dir.path().join(marker::FILE).is_file());

    let store = reopen(dir.path());
    assert_eq!(store.opened(), OpenCheck::AfterCleanShutdown);
    assert_eq!(store.load().unwrap(), before);
    // Taken at open: a crash from here on leads to the deep check.
    assert!(!dir.path().join(marker::FILE).exists());
    drop(store);
    assert_eq!(reopen(dir.path()).opened(), OpenCheck::Deep);
}

#[test]
fn a_commit_after_the_mark_withdraws_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    store.mark_clean_shutdown().unwrap();
    store.commit(batch("a1", 1, 2, 100)).unwrap();
    assert!(!dir.path().join(marker::FILE).exists());
    drop(store);
    let store = reopen(dir.path());
    assert_eq!(store.opened(), OpenCheck::Deep);
    assert_eq!(store.load().unwrap().agents, vec![agent("a1", 1)]);
}

#[test]
fn a_marker_that_vouches_for_another_state_is_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    closed_store(dir.path());
    marker::write(dir.path(), "0123456789abcdef", 99).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match SledStore::open(dir.path()) {
            Err(StoreError::Locked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(StoreError::Io(message)) => {
                assert!(
                    message.contains("changed while it was being checked"),
                    "{message}"
                );
                break;
            }
            other => panic!("expected the marker refused, got {other:?}"),
        }
    }
    // Gone with the refusal: the next open checks every key.
    assert_eq!(reopen(dir.path()).opened(), OpenCheck::Deep);
}

#[test]
fn the_deep_check_on_demand_counts_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(SledStore::check_dir(dir.path()).unwrap(), None);
    let store = SledStore::open(dir.path()).unwrap();
    store.commit(batch("a1", 1, 2, 100)).unwrap();
    store.commit(batch("a2", 1, 1, 101)).unwrap();
    assert!(matches!(
        SledStore::check_dir(dir.path()),
        Err(StoreError::Locked { .. })
    ));
    store.mark_clean_shutdown().unwrap();
    drop(store);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let before = snapshot(dir.path());
    let summary = SledStore::check_dir(dir.path()).unwrap().unwrap();
    assert_eq!(
        (
            summary.agents,
            summary.outbox,
            summary.events,
            summary.first_seq,
            summary.next_seq
        ),
        (2, 2, 3, Some(1), 4)
    );
    assert!(summary.closed_cleanly);
    assert_eq!(snapshot(dir.path()), before);
    // The marker is still there for the daemon's next start.
    assert_eq!(reopen(dir.path()).opened(), OpenCheck::AfterCleanShutdown);
}

#[test]
fn the_notification_inbox_survives_a_reopen_and_keeps_numbering() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    store
        .append_inbox(crate::store::InboxKind::Changes, at(100), b"one")
        .unwrap();
    store
        .append_inbox(crate::store::InboxKind::Changes, at(101), b"two")
        .unwrap();
    store.ack_inbox(1).unwrap();
    drop(store);
    let store = reopen(dir.path());
    let kept = store.inbox(0, 10).unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!((kept[0].seq, kept[0].body.as_slice()), (2, &b"two"[..]));
    let next = store
        .append_inbox(crate::store::InboxKind::Lifecycle, at(102), b"three")
        .unwrap();
    assert_eq!(next, 3);
}

#[test]
fn a_start_reads_everything_once_then_goes_on_with_sled_opened_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let id = store.store_id().to_owned();
    store.commit(batch("a1", 1, 2, 100)).unwrap();
    let user = crate::store::StoredUser {
        id: "u1".into(),
        upn: Some("ann@contoso.example".into()),
        mail: None,
        business_phones: Vec::new(),
        mobile_phone: None,
        teams: Some(true),
        teams_phone: None,
    };
    store
        .commit_directory(crate::store::DirectoryBatch {
            replace: true,
            upserts: vec![user.clone()],
            removes: Vec::new(),
            delta_link: Some("link".into()),
        })
        .unwrap();
    store.mark_clean_shutdown().unwrap();
    let before = store.load().unwrap();
    drop(store);

    let (store, loaded, directory) = reopen(dir.path()).load_for_start(1 << 20).unwrap();
    assert_eq!(loaded, before);
    let directory = directory.unwrap();
    assert_eq!(directory.users, vec![user]);
    assert_eq!(directory.delta_link.as_deref(), Some("link"));
    assert_eq!(store.store_id(), id);
    assert_eq!(store.opened(), OpenCheck::AfterCleanShutdown);
    // The store opened again takes commits where the first left off.
    let events = store.commit(batch("a2", 1, 1, 101)).unwrap();
    assert_eq!(events[0].seq, 3);
    assert_eq!(store.load().unwrap().agents.len(), 2);
    drop(store);
    assert_eq!(reopen(dir.path()).load().unwrap().agents.len(), 2);

    // A new store has nothing to read and stays as it is.
    let fresh = tempfile::tempdir().unwrap();
    let (store, loaded, directory) = SledStore::open(fresh.path())
        .unwrap()
        .load_for_start(1 << 20)
        .unwrap();
    assert_eq!(loaded, Loaded::default());
    assert!(directory.is_none());
    assert_eq!(store.opened(), OpenCheck::Created);
}

#[test]
fn a_store_is_created_beside_the_accounts_tokens_and_its_check_leaves_them_out() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join(crate::accounts::vault::ACCOUNTS_DIR);
    std::fs::create_dir(&tokens).unwrap();
    std::fs::write(tokens.join("svc.json"), b"{}").unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(store.opened(), OpenCheck::Created);
    store.commit(batch("a1", 1, 1, 100)).unwrap();
    drop(store);
    assert!(tokens.join("svc.json").is_file(), "the tokens stay");
    let agents = SledStore::read_agents(dir.path()).unwrap().unwrap();
    assert_eq!(agents.len(), 1);
    // Anything else that is not the store is still refused.
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("notes.txt"), b"mine").unwrap();
    assert!(SledStore::open(other.path()).is_err());
}

fn directory_user(n: u8, upn: &str) -> StoredUser {
    StoredUser {
        id: format!("user-{n}"),
        upn: Some(format!("{upn}{n}@tenant.example")),
        mail: None,
        business_phones: vec![],
        mobile_phone: None,
        teams: Some(true),
        teams_phone: None,
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    /// The record that ends a staged replace, written a few users at a
    /// time, leaves what one batch of the staged users and its own would:
    /// the stage's users with the record's winning over them, nothing else,
    /// the record's link (or the stored one), and an empty stage.
    #[test]
    fn a_staged_replace_in_parts_is_the_replace_whole(
        before in proptest::collection::btree_set(0u8..60, 0..40),
        stages in proptest::collection::vec(proptest::collection::btree_set(0u8..60, 0..20), 1..4),
        upserts in proptest::collection::btree_set(0u8..60, 0..10),
        removes in proptest::collection::btree_set(0u8..60, 0..5),
        link in proptest::option::of("[a-z]{1,8}"),
        part in 1usize..7,
    ) {
        let parent = tempfile::tempdir().unwrap();
        let store = SledStore::open(&parent.path().join("state")).unwrap();
        store
            .commit_directory_at(
                DirectoryBatch {
                    replace: true,
                    upserts: before.iter().map(|&n| directory_user(n, "old")).collect(),
                    removes: vec![],
                    delta_link: Some("https://graph.example/old".into()),
                },
                1,
            )
            .unwrap();
        let mut expected = std::collections::BTreeMap::new();
        for (i, stage) in stages.iter().enumerate() {
            let users: Vec<StoredUser> = stage.iter().map(|&n| directory_user(n, "staged")).collect();
            for user in &users {
                expected.insert(user.id.clone(), user.clone());
            }
            store.commit_directory_stage_at(i == 0, &users, 2 + i as u64).unwrap();
        }
        for &n in &upserts {
            let user = directory_user(n, "new");
            expected.insert(user.id.clone(), user);
        }
        let position = 2 + stages.len() as u64;
        store
            .write_staged_replace_at(
                DirectoryBatch {
                    replace: true,
                    upserts: upserts.iter().map(|&n| directory_user(n, "new")).collect(),
                    removes: removes.iter().map(|n| format!("USER-{n}")).collect(),
                    delta_link: link.clone(),
                },
                position,
                part,
            )
            .unwrap();
        proptest::prop_assert_eq!(store.log_position().unwrap(), position);
        let directory = store.directory().unwrap().expect("a complete directory");
        let mut got: Vec<StoredUser> = directory.users;
        got.sort_by(|a, b| a.id.cmp(&b.id));
        let want: Vec<StoredUser> = expected.into_values().collect();
        proptest::prop_assert_eq!(got, want);
        proptest::prop_assert_eq!(
            directory.delta_link,
            Some(link.unwrap_or_else(|| "https://graph.example/old".into()))
        );
        proptest::prop_assert_eq!(store.directory_parts().unwrap().staged, vec![]);
    }
}

/// Killed between its parts, the record that ends a staged replace leaves
/// the position before it and no directory shown; applied again, it gives
/// the directory it would have given at once.
#[test]
fn a_staged_replace_cut_short_is_applied_again_whole() {
    let parent = tempfile::tempdir().unwrap();
    let store = SledStore::open(&parent.path().join("state")).unwrap();
    let old: Vec<StoredUser> = (0..30).map(|n| directory_user(n, "old")).collect();
    store
        .commit_directory_at(
            DirectoryBatch {
                replace: true,
                upserts: old,
                removes: vec![],
                delta_link: Some("https://graph.example/old".into()),
            },
            1,
        )
        .unwrap();
    let staged: Vec<StoredUser> = (20..50).map(|n| directory_user(n, "staged")).collect();
    store.commit_directory_stage_at(true, &staged, 2).unwrap();
    // What a kill after the first parts leaves: the directory marked
    // incomplete, some old users gone, some staged ones copied.
    let tree = store.directory_tree().unwrap();
    tree.remove(directory::COMPLETE).unwrap();
    for n in 0..10u8 {
        tree.remove(format!("u/user-{n}").as_bytes()).unwrap();
    }
    for user in &staged[..10] {
        tree.insert(
            format!("u/{}", user.id).as_bytes(),
            serde_json::to_vec(user).unwrap(),
        )
        .unwrap();
    }
    drop(tree);
    assert_eq!(store.directory().unwrap(), None);
    assert_eq!(store.log_position().unwrap(), 2);
    let finish = DirectoryBatch {
        replace: true,
        upserts: vec![directory_user(55, "new")],
        removes: vec![],
        delta_link: None,
    };
    store.write_staged_replace_at(finish, 3, 4).unwrap();
    let directory = store.directory().unwrap().unwrap();
    let mut want = staged;
    want.push(directory_user(55, "new"));
    let mut got = directory.users;
    got.sort_by(|a, b| a.id.cmp(&b.id));
    want.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(got, want);
    assert_eq!(
        directory.delta_link.as_deref(),
        Some("https://graph.example/old"),
        "a replace without a link keeps the stored one"
    );
}
