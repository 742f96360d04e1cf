//! Records and directory helpers for the store's tests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use proptest::prelude::*;

use super::{
    AgentRecord, Batch, CcReport, DirectoryBatch, MetaKey, OutboxEntry, OutboxPresence,
    OutboxWrite, StoredUser, WriteAction,
};
use crate::events::{NewEvent, kind};
use crate::sync::AgentSnapshot;
use crate::sync::snapshot::CcSnapshot;
use crate::time::Timestamp;

pub(crate) fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap()
}

pub(crate) fn agent(id: &str, counter: u64) -> AgentRecord {
    AgentRecord {
        id: id.to_owned(),
        teams_user: format!("{id}@contoso.example"),
        teams_user_id: Some(format!("oid-{id}")),
        upn: None,
        display_name: Some(format!("Agent {id}")),
        groups: vec!["sales".to_owned()],
        skills: BTreeMap::from([("english".to_owned(), 3)]),
        phone: None,
        profile: None,
        cc_status: Some(CcReport {
            status: "Available".to_owned(),
            at: at(1_700_000_000),
        }),
        sync: Some(Box::new(sync_state(counter))),
        queues: vec![crate::routing::Membership {
            queue: "sales".to_owned(),
            position: Some(1),
        }],
        capacity: Some(2),
        routing: Some(Box::new(crate::routing::AgentRouting {
            idle_since: Timestamp::from_secs(1_700_000_000),
            misses: u32::try_from(counter).unwrap_or(u32::MAX),
            ..Default::default()
        })),
        updated_at: at(1_700_000_000 + counter as i64),
    }
}

/// An engine snapshot that carries `counter` (as a keep-alive time).
pub(crate) fn sync_state(counter: u64) -> AgentSnapshot {
    AgentSnapshot {
        cc: Some(CcSnapshot {
            status: "Available".to_owned(),
            owner: "person".to_owned(),
            since: Timestamp::from_secs(1_700_000_000),
        }),
        teams: Some((
            "Available/Available".to_owned(),
            Timestamp::from_secs(1_700_000_000),
        )),
        keepalive_at: Some(Timestamp::from_micros(counter)),
        ..AgentSnapshot::default()
    }
}

pub(crate) fn outbox(id: &str, counter: u64) -> OutboxEntry {
    OutboxEntry {
        agent_id: id.to_owned(),
        write: OutboxWrite {
            write_id: counter,
            action: WriteAction::SetSession,
            presence: Some(OutboxPresence {
                availability: "Busy".to_owned(),
                activity: "InACall".to_owned(),
            }),
            expiry_seconds: Some(3600),
        },
        decided_at: at(1_700_000_000),
    }
}

pub(crate) fn event(secs: i64, agent_id: &str) -> NewEvent {
    NewEvent {
        kind: kind::AGENT_UPDATED.to_owned(),
        time: at(secs),
        agent_id: Some(agent_id.to_owned()),
        data: serde_json::json!({ "n": secs }),
    }
}

/// A routing contact named after an agent.
pub(crate) fn contact(agent_id: &str, counter: u64) -> crate::routing::ContactRecord {
    crate::routing::ContactRecord {
        id: format!("c-{agent_id}"),
        serial: counter,
        queue: "sales".to_owned(),
        skills: BTreeMap::new(),
        priority: 1,
        data: serde_json::json!({ "caller": counter }),
        arrived: crate::time::Timestamp::from_secs(1_700_000_000),
        queued_at: crate::time::Timestamp::from_secs(1_700_000_000),
        overflowed_from: Vec::new(),
        offers: 0,
        phase: crate::routing::Phase::Waiting,
    }
}

/// A batch with one agent, its outbox entry and `events` events at `secs`.
pub(crate) fn batch(id: &str, counter: u64, events: usize, secs: i64) -> Batch {
    Batch {
        contacts: Vec::new(),
        agents: vec![(id.to_owned(), Some(agent(id, counter)))],
        outbox: vec![(id.to_owned(), Some(outbox(id, counter)))],
        events: (0..events).map(|_| event(secs, id)).collect(),
        meta: vec![(
            MetaKey::Cursor("webhook".to_owned()),
            Some(counter.to_string()),
        )],
    }
}

/// Every file under `dir` with a SHA-256 of its bytes (directories with
/// none), to prove a refusal wrote nothing.
pub(crate) fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files.insert(path.clone(), "dir".to_owned());
                pending.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes);
                files.insert(path.clone(), super::keys::hex(digest.as_ref()));
            }
        }
    }
    files
}

/// Writes raw keys into the sled tree in `dir`, the way only a damaged or
/// foreign store would hold them.
pub(crate) fn write_raw(dir: &Path, writes: &[(&[u8], Option<&[u8]>)]) {
    // sled lets go of a dropped store's lock a moment later (see
    // `lock_store`): wait for it as the store does.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let db = loop {
        match sled::open(dir) {
            Ok(db) => break db,
            Err(e) if std::time::Instant::now() < deadline => {
                assert!(e.to_string().contains("could not acquire lock"), "{e}");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => panic!("{e}"),
        }
    };
    for (key, value) in writes {
        match value {
            Some(value) => db.insert(key, *value).unwrap(),
            None => db.remove(key).unwrap(),
        };
    }
    db.flush().unwrap();
}

fn text() -> impl Strategy<Value = String> {
    // Quotes, backslashes, control and non-ASCII characters go through JSON
    // escaping; empty strings are legal everywhere.
    "[a-z0-9 \"\\\\\n\u{e9}\u{1F600}]{0,8}"
}

fn time() -> impl Strategy<Value = DateTime<Utc>> {
    (0i64..4_000_000_000, 0u32..1_000_000_000)
        .prop_map(|(secs, nanos)| DateTime::from_timestamp(secs, nanos).unwrap())
}

fn json() -> impl Strategy<Value = serde_json::Value> {
    // No floats: serde_json's default parser may read a float back one unit
    // in the last place off, and the daemon stores none.
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        text().prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(text(), inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    any::<u64>().prop_map(Timestamp::from_micros)
}

/// Engine snapshots with the kinds of fields the engine writes (names are
/// free text: the store does not read them).
fn any_snapshot() -> impl Strategy<Value = AgentSnapshot> {
    (
        proptest::option::of((text(), text(), timestamp())),
        proptest::option::of(text()),
        proptest::option::of((text(), timestamp())),
        proptest::option::of(timestamp()),
        prop::collection::vec(timestamp(), 0..3),
    )
        .prop_map(
            |(cc, desired, teams, keepalive_at, loop_changes)| AgentSnapshot {
                cc: cc.map(|(status, owner, since)| CcSnapshot {
                    status,
                    owner,
                    since,
                }),
                desired,
                teams,
                keepalive_at,
                loop_changes,
                ..AgentSnapshot::default()
            },
        )
}

fn any_write() -> impl Strategy<Value = OutboxWrite> {
    (
        any::<u64>(),
        proptest::sample::select(vec![
            WriteAction::SetSession,
            WriteAction::ClearSession,
            WriteAction::SetPreferred,
            WriteAction::ClearPreferred,
        ]),
        proptest::option::of((text(), text())),
        proptest::option::of(any::<u64>()),
    )
        .prop_map(|(write_id, action, presence, expiry_seconds)| OutboxWrite {
            write_id,
            action,
            presence: presence.map(|(availability, activity)| OutboxPresence {
                availability,
                activity,
            }),
            expiry_seconds,
        })
}

fn agent_id() -> impl Strategy<Value = String> {
    prop_oneof![(0..5u8).prop_map(|n| format!("agent-{n}")), text(),]
}

fn agent_record(id: String) -> impl Strategy<Value = AgentRecord> {
    (
        text(),
        proptest::option::of(text()),
        proptest::option::of(text()),
        prop::collection::vec(text(), 0..3),
        prop::collection::btree_map(text(), any::<u8>(), 0..3),
        proptest::option::of((text(), time()).prop_map(|(status, at)| CcReport { status, at })),
        proptest::option::of(any_snapshot().prop_map(Box::new)),
        time(),
    )
        .prop_map(
            move |(teams_user, upn, display_name, groups, skills, cc_status, sync, updated_at)| {
                AgentRecord {
                    id: id.clone(),
                    teams_user,
                    teams_user_id: None,
                    upn,
                    display_name,
                    groups,
                    skills,
                    phone: None,
                    profile: None,
                    cc_status,
                    sync,
                    queues: Vec::new(),
                    capacity: None,
                    routing: None,
                    updated_at,
                }
            },
        )
}

fn new_event() -> impl Strategy<Value = NewEvent> {
    (
        proptest::sample::select(kind::ALL),
        time(),
        proptest::option::of(agent_id()),
        json(),
    )
        .prop_map(|(kind, time, agent_id, data)| NewEvent {
            kind: kind.to_owned(),
            time,
            agent_id,
            data,
        })
}

fn meta_key() -> impl Strategy<Value = MetaKey> {
    prop_oneof![Just(MetaKey::DeltaLink), text().prop_map(MetaKey::Cursor),]
}

/// Batches as the daemon could commit them: upserts and deletes of agents
/// and outbox entries over a few ids, events, meta.
pub(crate) fn any_batch() -> impl Strategy<Value = Batch> {
    let agent_op = agent_id().prop_flat_map(|id| {
        proptest::option::of(agent_record(id.clone())).prop_map(move |record| (id.clone(), record))
    });
    let outbox_op = agent_id().prop_flat_map(|id| {
        let entry_id = id.clone();
        proptest::option::of((any_write(), time()).prop_map(move |(write, decided_at)| {
            OutboxEntry {
                agent_id: entry_id.clone(),
                write,
                decided_at,
            }
        }))
        .prop_map(move |entry| (id.clone(), entry))
    });
    (
        prop::collection::vec(agent_op, 0..4),
        prop::collection::vec(outbox_op, 0..3),
        prop::collection::vec(new_event(), 0..4),
        prop::collection::vec((meta_key(), proptest::option::of(text())), 0..3),
        prop::collection::vec((agent_id(), 0u64..5, any::<bool>()), 0..3),
    )
        .prop_map(|(agents, outbox, events, meta, contacts)| Batch {
            agents,
            outbox,
            events,
            meta,
            contacts: contacts
                .into_iter()
                .map(|(id, counter, keep)| {
                    let c = contact(&id, counter);
                    (c.id.clone(), keep.then_some(c))
                })
                .collect(),
        })
}

/// Users as the directory stores them, over a few ids (any case).
fn stored_user() -> impl Strategy<Value = StoredUser> {
    (
        proptest::sample::select(vec!["u1", "U1", "u2", "u3", "u4"]),
        proptest::option::of(text()),
        proptest::option::of(text()),
        prop::collection::vec(text(), 0..2),
        proptest::option::of(any::<bool>()),
        proptest::option::of(any::<bool>()),
    )
        .prop_map(
            |(id, upn, mail, business_phones, teams, teams_phone)| StoredUser {
                id: id.to_owned(),
                upn,
                mail,
                business_phones,
                mobile_phone: None,
                teams,
                teams_phone,
            },
        )
}

/// Directory changes as the daemon could commit them: full reads
/// (`replace`) and delta rounds.
pub(crate) fn any_directory_batch() -> impl Strategy<Value = DirectoryBatch> {
    (
        any::<bool>(),
        prop::collection::vec(stored_user(), 0..4),
        prop::collection::vec(
            proptest::sample::select(vec!["u1", "U2", "u3", "u5"]).prop_map(str::to_owned),
            0..2,
        ),
        proptest::option::of(text()),
    )
        .prop_map(|(replace, upserts, removes, delta_link)| DirectoryBatch {
            replace,
            upserts,
            removes,
            delta_link,
        })
}
