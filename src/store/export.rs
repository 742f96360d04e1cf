//! Backups as JSON lines: `presence-sync export` and `presence-sync import`.
//!
//! The first line is a header, then one line per record:
//!
//! ```text
//! {"kind":"presence-sync-export","schema":1,"store_id":"5f0c…","next_seq":812}
//! {"kind":"agent","record":{…AgentRecord…}}
//! {"kind":"outbox","entry":{…OutboxEntry…}}
//! {"kind":"contact","record":{…ContactRecord…}}
//! {"kind":"event","event":{…Event…}}
//! {"kind":"meta","key":"delta_link","value":"https://…"}
//! {"kind":"meta","key":"cursor:webhook","value":"790"}
//! ```
//!
//! An import keeps the store id and the next seq, so event ids and seqs go
//! on where they left off and consumers resuming with `since=SEQ` see no
//! difference. Export then import then export gives the same bytes.

use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::keys::{self, AGENT, CONTACT, EVENT, META, OUTBOX};
use super::sled_store::{self, decode, utf8};
use super::{AgentRecord, OutboxEntry, SCHEMA_VERSION, SledStore, Store, StoreError};
use crate::events::Event;
use crate::routing::ContactRecord;

/// The `kind` of an export's header line.
pub const EXPORT_KIND: &str = "presence-sync-export";

/// What an export wrote or an import restored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackupStats {
    pub store_id: String,
    pub next_seq: u64,
    pub agents: usize,
    pub outbox: usize,
    pub contacts: usize,
    pub events: usize,
    /// Daemon meta records (delta link, consumer cursors).
    pub meta: usize,
}

/// One line for people: `3 agents, 1 owed Teams write, 0 contacts, 120
/// events and 2 metadata records of store 5f0c… (next seq 121)`.
impl std::fmt::Display for BackupStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        write!(
            f,
            "{}, {}, {}, {} and {} of store {} (next seq {})",
            count(self.agents, "agent", "agents"),
            count(self.outbox, "owed Teams write", "owed Teams writes"),
            count(self.contacts, "contact", "contacts"),
            count(self.events, "event", "events"),
            count(self.meta, "metadata record", "metadata records"),
            self.store_id,
            self.next_seq
        )
    }
}

pub type ExportStats = BackupStats;
pub type ImportStats = BackupStats;

/// One line of an export, as read back.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", deny_unknown_fields)]
enum Line {
    #[serde(rename = "presence-sync-export")]
    Header {
        schema: u32,
        store_id: String,
        next_seq: u64,
    },
    #[serde(rename = "agent")]
    Agent { record: AgentRecord },
    #[serde(rename = "outbox")]
    Outbox { entry: OutboxEntry },
    #[serde(rename = "contact")]
    Contact { record: ContactRecord },
    #[serde(rename = "event")]
    Event { event: Event },
    #[serde(rename = "meta")]
    Meta { key: String, value: String },
}

/// One line of an export, as written (borrowing, so records are not copied).
#[derive(Serialize)]
#[serde(tag = "kind")]
enum LineOut<'a> {
    #[serde(rename = "presence-sync-export")]
    Header {
        schema: u32,
        store_id: &'a str,
        next_seq: u64,
    },
    #[serde(rename = "agent")]
    Agent { record: &'a AgentRecord },
    #[serde(rename = "outbox")]
    Outbox { entry: &'a OutboxEntry },
    #[serde(rename = "contact")]
    Contact { record: &'a ContactRecord },
    #[serde(rename = "event")]
    Event { event: &'a Event },
    #[serde(rename = "meta")]
    Meta { key: &'a str, value: &'a str },
}

/// Writes the whole store to `out`, one JSON object a line. Commits wait
/// until it is done, so the export is one consistent state.
pub fn export(store: &SledStore, out: &mut impl Write) -> Result<ExportStats, StoreError> {
    store.with_commits_paused(|db, store_id, next_seq| {
        let dir = store.dir();
        let mut stats = BackupStats {
            store_id: store_id.to_owned(),
            next_seq,
            ..BackupStats::default()
        };
        write_line(
            out,
            &LineOut::Header {
                schema: SCHEMA_VERSION,
                store_id,
                next_seq,
            },
        )?;
        let family = |prefix: &[u8]| db.range(prefix.to_vec()..keys::family_end(prefix));
        let sled_error = |e: sled::Error| StoreError::Io(format!("{}: {e}", dir.display()));
        for item in family(AGENT) {
            let (key, value) = item.map_err(sled_error)?;
            let record: AgentRecord = decode(dir, &key, &value)?;
            write_line(out, &LineOut::Agent { record: &record })?;
            stats.agents += 1;
        }
        for item in family(OUTBOX) {
            let (key, value) = item.map_err(sled_error)?;
            let entry: OutboxEntry = decode(dir, &key, &value)?;
            write_line(out, &LineOut::Outbox { entry: &entry })?;
            stats.outbox += 1;
        }
        for item in family(CONTACT) {
            let (key, value) = item.map_err(sled_error)?;
            let record: ContactRecord = decode(dir, &key, &value)?;
            write_line(out, &LineOut::Contact { record: &record })?;
            stats.contacts += 1;
        }
        for item in family(EVENT) {
            let (key, value) = item.map_err(sled_error)?;
            let event: Event = decode(dir, &key, &value)?;
            write_line(out, &LineOut::Event { event: &event })?;
            stats.events += 1;
        }
        for item in family(META) {
            let (key, value) = item.map_err(sled_error)?;
            let name = utf8(dir, &key, &key[META.len()..])?;
            // The store's own meta is in the header.
            if keys::is_store_meta(name) {
                continue;
            }
            let value = utf8(dir, &key, &value)?;
            write_line(out, &LineOut::Meta { key: name, value })?;
            stats.meta += 1;
        }
        out.flush()?;
        Ok(stats)
    })
}

fn write_line(out: &mut impl Write, line: &LineOut<'_>) -> Result<(), StoreError> {
    serde_json::to_writer(&mut *out, line).map_err(|e| StoreError::Io(e.to_string()))?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Restores an export into `dir`, which must be empty or missing. Every line
/// is checked before anything is written; the store is then written as one
/// batch, made durable, and opened once to prove it passes its deep check.
pub fn import(dir: &Path, input: impl BufRead) -> Result<ImportStats, StoreError> {
    refuse_non_empty(dir)?;
    let (records, stats) = read_export(input)?;
    sled_store::create_with(dir, records)?;
    // The open checks every key (a new store carries no clean-shutdown
    // marker); closing it cleanly spares the daemon's first start the same.
    SledStore::open(dir)?.mark_clean_shutdown()?;
    Ok(stats)
}

fn refuse_non_empty(dir: &Path) -> Result<(), StoreError> {
    if sled_store::is_empty_or_missing(dir)? {
        Ok(())
    } else {
        Err(StoreError::NotEmpty {
            dir: dir.to_path_buf(),
        })
    }
}

/// The header's facts, which every later line is checked against.
struct Header {
    store_id: String,
    next_seq: u64,
}

/// Validates an export line by line and turns it into the store's records.
fn read_export(input: impl BufRead) -> Result<(sled::Batch, ImportStats), StoreError> {
    let mut records = sled::Batch::default();
    let mut stats = ImportStats::default();
    let mut header: Option<Header> = None;
    let mut agents = BTreeSet::new();
    let mut outbox = BTreeSet::new();
    let mut contacts = BTreeSet::new();
    let mut meta = BTreeSet::new();
    let mut last_seq = 0;
    let mut lines = 0;

    for (index, text) in input.lines().enumerate() {
        let line = index + 1;
        lines = line;
        let fail = |message: String| StoreError::Import { line, message };
        let text = text.map_err(|e| fail(format!("cannot read the line: {e}")))?;
        let parsed: Line = serde_json::from_str(&text).map_err(|e| fail(e.to_string()))?;

        let Some(known) = &header else {
            let Line::Header {
                schema,
                store_id,
                next_seq,
            } = parsed
            else {
                return Err(fail(format!(
                    "the first line must be the export header (\"kind\":\"{EXPORT_KIND}\")"
                )));
            };
            if schema > SCHEMA_VERSION {
                return Err(fail(format!(
                    "the export was written by a newer presence-sync (schema {schema}, \
                     this build knows {SCHEMA_VERSION}); import it with that version"
                )));
            }
            if schema == 0 {
                return Err(fail("schema 0 is not a schema version".to_owned()));
            }
            if !keys::is_valid_store_id(&store_id) {
                return Err(fail(format!(
                    "store_id {store_id:?} is not a store id (16 hex digits)"
                )));
            }
            if next_seq == 0 {
                return Err(fail("next_seq must be at least 1".to_owned()));
            }
            records.insert(
                keys::meta_key(keys::META_SCHEMA),
                SCHEMA_VERSION.to_string().as_bytes(),
            );
            records.insert(keys::meta_key(keys::META_STORE_ID), store_id.as_bytes());
            records.insert(
                keys::meta_key(keys::META_NEXT_SEQ),
                next_seq.to_string().as_bytes(),
            );
            stats.store_id.clone_from(&store_id);
            stats.next_seq = next_seq;
            header = Some(Header { store_id, next_seq });
            continue;
        };

        match parsed {
            Line::Header { .. } => {
                return Err(fail("a second export header".to_owned()));
            }
            Line::Agent { record } => {
                if !agents.insert(record.id.clone()) {
                    return Err(fail(format!("agent {:?} appears twice", record.id)));
                }
                records.insert(keys::agent_key(&record.id), to_json(&record, line)?);
                stats.agents += 1;
            }
            Line::Outbox { entry } => {
                if !outbox.insert(entry.agent_id.clone()) {
                    return Err(fail(format!(
                        "an outbox entry for agent {:?} appears twice",
                        entry.agent_id
                    )));
                }
                records.insert(keys::outbox_key(&entry.agent_id), to_json(&entry, line)?);
                stats.outbox += 1;
            }
            Line::Contact { record } => {
                if !contacts.insert(record.id.clone()) {
                    return Err(fail(format!("contact {:?} appears twice", record.id)));
                }
                records.insert(keys::contact_key(&record.id), to_json(&record, line)?);
                stats.contacts += 1;
            }
            Line::Event { event } => {
                if event.seq <= last_seq {
                    return Err(fail(format!(
                        "event seq {} does not follow seq {last_seq}: events must be in increasing order",
                        event.seq
                    )));
                }
                if let Some(problem) =
                    keys::event_problem(&event, event.seq, &known.store_id, known.next_seq)
                {
                    return Err(fail(problem));
                }
                last_seq = event.seq;
                records.insert(keys::event_key(event.seq), to_json(&event, line)?);
                stats.events += 1;
            }
            Line::Meta { key, value } => {
                if keys::parse_meta_name(&key).is_none() {
                    return Err(fail(format!(
                        "unknown meta key {key:?} (known: \"delta_link\", \"routing\", \"routing-queue:<name>\", \"cursor:<name>\", \"log_position\")"
                    )));
                }
                if !meta.insert(key.clone()) {
                    return Err(fail(format!("meta key {key:?} appears twice")));
                }
                records.insert(keys::meta_key(&key), value.as_bytes());
                stats.meta += 1;
            }
        }
    }
    if header.is_none() {
        return Err(StoreError::Import {
            line: lines + 1,
            message: "no export header: the input is empty".to_owned(),
        });
    }
    Ok((records, stats))
}

fn to_json<T: Serialize>(value: &T, line: usize) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Import {
        line,
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::store::testing::{any_batch, batch, snapshot};
    use crate::store::{Batch, MetaKey, Store};

    fn export_to_string(store: &SledStore) -> String {
        let mut out = Vec::new();
        export(store, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn sample_export() -> String {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        store.commit(batch("a1", 1, 2, 100)).unwrap();
        store.commit(batch("a2", 2, 1, 200)).unwrap();
        store
            .commit(Batch {
                meta: vec![(MetaKey::DeltaLink, Some("https://graph.example/d".into()))],
                ..Batch::default()
            })
            .unwrap();
        export_to_string(&store)
    }

    fn import_error(input: &str) -> (usize, String) {
        let dir = tempfile::tempdir().unwrap();
        match import(&dir.path().join("state"), input.as_bytes()) {
            Err(StoreError::Import { line, message }) => {
                assert!(!dir.path().join("state").exists(), "a failed import wrote");
                (line, message)
            }
            other => panic!("expected an import error, got {other:?}"),
        }
    }

    #[test]
    fn the_export_has_a_header_then_one_line_per_record() {
        let text = sample_export();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let kinds: Vec<&str> = lines.iter().map(|l| l["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                EXPORT_KIND,
                "agent",
                "agent",
                "outbox",
                "outbox",
                "event",
                "event",
                "event",
                "meta",
                "meta"
            ]
        );
        assert_eq!(lines[0]["schema"], 1);
        assert_eq!(lines[0]["next_seq"], 4);
        assert_eq!(lines[1]["record"]["id"], "a1");
        assert_eq!(lines[3]["entry"]["agent_id"], "a1");
        assert_eq!(lines[5]["event"]["seq"], 1);
        assert_eq!(lines[8]["key"], "cursor:webhook");
        assert_eq!(
            lines[9],
            serde_json::json!({"kind": "meta", "key": "delta_link", "value": "https://graph.example/d"})
        );
    }

    #[test]
    fn an_imported_store_keeps_its_id_and_goes_on_with_its_seqs() {
        let source = tempfile::tempdir().unwrap();
        let store = SledStore::open(source.path()).unwrap();
        store.commit(batch("a1", 1, 3, 100)).unwrap();
        store
            .prune_events(crate::store::testing::at(1000), 1)
            .unwrap();
        let mut backup = Vec::new();
        let exported = export(&store, &mut backup).unwrap();
        assert_eq!(
            (
                exported.agents,
                exported.outbox,
                exported.events,
                exported.meta
            ),
            (1, 1, 1, 1)
        );

        let target = tempfile::tempdir().unwrap();
        let dir = target.path().join("restored");
        let imported = import(&dir, backup.as_slice()).unwrap();
        assert_eq!(imported, exported);
        let restored = SledStore::open(&dir).unwrap();
        assert_eq!(restored.store_id(), store.store_id());
        assert_eq!(restored.load().unwrap(), store.load().unwrap());
        assert_eq!(restored.first_seq().unwrap(), Some(3));
        assert_eq!(
            restored.events_after(0, 10).unwrap(),
            store.events_after(0, 10).unwrap()
        );
        let next = restored.commit(batch("a1", 2, 1, 100)).unwrap();
        assert_eq!(next[0].id, format!("{}-4", store.store_id()));
    }

    /// An export (and the records in a store) as the build that kept the
    /// engine's and the router's state as JSON trees wrote it: keys in
    /// alphabetical order, every field the engine sets.
    const TREE_SHAPED_EXPORT: &str = concat!(
        r#"{"kind":"presence-sync-export","schema":1,"store_id":"00c0ffee00c0ffee","next_seq":1}"#,
        "\n",
        r#"{"kind":"agent","record":{"id":"a1","teams_user":"a1@contoso.example","teams_user_id":"oid-a1","groups":["sales"],"skills":{"english":3},"cc_status":{"status":"On call","at":"2023-11-14T22:13:20Z"},"#,
        r#""sync":{"active":["Busy/InACall",1700000000000000],"cc":{"owner":"daemon","since":1700000000000000,"status":"On call"},"cc_handled":"On call","cc_requested":{"at":1700000001000000,"kind":"rule","status":"Available"},"desired":"Busy/InACall","desired_status":"On call","echo_deadline":1700000005000000,"in_flight":"Busy/InACall","keepalive_at":1700000300000000,"last_error":["throttled",1699999999000000],"loop_changes":[1699999990000000,1699999995000000],"loop_suspended":{"flows":["cc_to_teams"],"until":1700000600000000},"outranked_since":1700000002000000,"overridden_since":1700000003000000,"previous_set":["Away/Away",1699999000000000],"restore":{"previous":"Available","rule":"meeting","set":"In a meeting"},"retry_at":1700000010000000,"teams":["Available/Available",1699999000000000],"teams_handled":"Available/Available"},"#,
        r#""queues":[{"queue":"sales","position":1}],"capacity":2,"#,
        r#""routing":{"backoff_until":0,"busy_today":120000000,"contacts_today":3,"day":19675,"idle_since":1700000000000000,"misses":1,"paused_since":1700000100000000,"wrap_until":1700000050000000},"#,
        r#""updated_at":"2023-11-14T22:13:20Z"}}"#,
        "\n",
        r#"{"kind":"outbox","entry":{"agent_id":"a1","decided_at":"2023-11-14T22:13:20Z","write":{"action":"set_session","expiry_seconds":3600,"presence":{"activity":"InACall","availability":"Busy"},"write_id":7}}}"#,
        "\n",
        r#"{"kind":"outbox","entry":{"agent_id":"a2","decided_at":"2023-11-14T22:13:20Z","write":{"action":"clear_session","expiry_seconds":null,"presence":null,"write_id":8}}}"#,
        "\n",
    );

    #[test]
    fn records_written_as_json_trees_still_load_and_export_the_same_json() {
        let dir = tempfile::tempdir().unwrap();
        import(dir.path(), TREE_SHAPED_EXPORT.as_bytes()).unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let loaded = store.load().unwrap();
        let sync = loaded.agents[0].sync.as_ref().unwrap();
        assert_eq!(sync.cc.as_ref().unwrap().owner, "daemon");
        assert_eq!(sync.loop_changes.len(), 2);
        assert_eq!(
            sync.restore.as_ref().map(|r| r.rule.as_str()),
            Some("meeting")
        );
        let routing = loaded.agents[0].routing.as_ref().unwrap();
        assert_eq!((routing.contacts_today, routing.misses), (3, 1));
        assert_eq!(
            loaded.outbox[0].write.action,
            super::super::WriteAction::SetSession
        );
        assert_eq!(loaded.outbox[1].write.presence, None);
        // Typed, they serialise to the same JSON (key order aside).
        let again = export_to_string(&store);
        let json = |text: &str| -> Vec<serde_json::Value> {
            text.lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        };
        assert_eq!(json(&again), json(TREE_SHAPED_EXPORT));
    }

    #[test]
    fn an_unreadable_sync_or_routing_state_costs_that_agent_its_state_only() {
        let text = TREE_SHAPED_EXPORT
            .replace(
                r#""sync":{"active""#,
                r#""sync":{"unknown_field":1,"active""#,
            )
            .replace(
                r#""routing":{"backoff_until":0,"#,
                r#""routing":{"backoff_until":"soon","#,
            );
        let dir = tempfile::tempdir().unwrap();
        import(dir.path(), text.as_bytes()).unwrap();
        let loaded = SledStore::open(dir.path()).unwrap().load().unwrap();
        let agent = &loaded.agents[0];
        assert_eq!((agent.sync.as_ref(), agent.routing.as_ref()), (None, None));
        assert_eq!(agent.capacity, Some(2));
    }

    #[test]
    fn import_needs_an_empty_directory() {
        let backup = sample_export();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("keep.txt"), "mine").unwrap();
        let before = snapshot(dir.path());
        assert!(matches!(
            import(dir.path(), backup.as_bytes()),
            Err(StoreError::NotEmpty { .. })
        ));
        assert_eq!(snapshot(dir.path()), before);
        // An existing, empty directory is fine.
        let empty = tempfile::tempdir().unwrap();
        import(empty.path(), backup.as_bytes()).unwrap();
        assert!(matches!(
            import(empty.path(), backup.as_bytes()),
            Err(StoreError::NotEmpty { .. })
        ));
    }

    #[test]
    fn a_malformed_line_is_named() {
        let backup = sample_export();
        let mut lines: Vec<&str> = backup.lines().collect();
        lines[3] = "{\"kind\":\"outbox\",\"entry\":{\"agent_id\":";
        let (line, message) = import_error(&lines.join("\n"));
        assert_eq!(line, 4, "{message}");
    }

    #[test]
    fn bad_exports_are_refused_with_the_line_and_the_reason() {
        let backup = sample_export();
        let lines: Vec<String> = backup.lines().map(str::to_owned).collect();
        let with = |index: usize, text: &str| {
            let mut edited = lines.clone();
            edited[index] = text.to_owned();
            edited.join("\n")
        };
        let header: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        let store_id = header["store_id"].as_str().unwrap();
        let cases = [
            (String::new(), 1, "no export header"),
            (
                lines[1..].join("\n"),
                1,
                "the first line must be the export header",
            ),
            (
                with(
                    0,
                    &format!(
                        r#"{{"kind":"presence-sync-export","schema":2,"store_id":"{store_id}","next_seq":4}}"#
                    ),
                ),
                1,
                "newer presence-sync (schema 2",
            ),
            (
                with(
                    0,
                    r#"{"kind":"presence-sync-export","schema":1,"store_id":"nope","next_seq":4}"#,
                ),
                1,
                "not a store id",
            ),
            (
                with(
                    0,
                    &format!(
                        r#"{{"kind":"presence-sync-export","schema":1,"store_id":"{store_id}","next_seq":3}}"#
                    ),
                ),
                8,
                "event seq 3 is not below the next seq 3",
            ),
            (with(2, &lines[1]), 3, "agent \"a1\" appears twice"),
            (with(6, &lines[5]), 7, "does not follow seq 1"),
            (with(4, &lines[0]), 5, "a second export header"),
            (
                with(9, r#"{"kind":"meta","key":"routing-old","value":"x"}"#),
                10,
                "unknown meta key",
            ),
            (with(9, r#"{"kind":"snapshot"}"#), 10, "unknown variant"),
            (
                with(
                    9,
                    r#"{"kind":"meta","key":"delta_link","value":"x","extra":1}"#,
                ),
                10,
                "unknown field",
            ),
            (with(8, ""), 9, "EOF"),
        ];
        for (input, expected_line, expected) in cases {
            let (line, message) = import_error(&input);
            assert_eq!(line, expected_line, "{expected}: {message}");
            assert!(
                message.contains(expected),
                "{message:?} should say {expected:?}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// export → import → export gives the same bytes, whatever the
        /// daemon committed (and pruned) before.
        #[test]
        fn export_import_export_is_identity(
            batches in prop::collection::vec(any_batch(), 0..6),
            prune_keep in proptest::option::of(0usize..4),
        ) {
            let source = tempfile::tempdir().unwrap();
            let store = SledStore::open(source.path()).unwrap();
            for batch in batches {
                store.commit(batch).unwrap();
            }
            if let Some(keep) = prune_keep {
                store.prune_events(chrono::DateTime::<chrono::Utc>::MAX_UTC, keep).unwrap();
            }
            let first = export_to_string(&store);

            let target = tempfile::tempdir().unwrap();
            import(target.path(), first.as_bytes()).unwrap();
            let restored = SledStore::open(target.path()).unwrap();
            prop_assert_eq!(restored.load().unwrap(), store.load().unwrap());
            prop_assert_eq!(export_to_string(&restored), first);
        }

        /// Damaged input never panics and never half-imports: it is either a
        /// complete store or an error naming a line of the input.
        #[test]
        fn damaged_exports_are_refused_by_line(
            cut in any::<prop::sample::Index>(),
            flip in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let backup = sample_export().into_bytes();
            let mut damaged = backup[..cut.index(backup.len() + 1)].to_vec();
            if !damaged.is_empty() {
                let at = flip.index(damaged.len());
                damaged[at] = byte;
            }
            let line_count = damaged.split(|&b| b == b'\n').count();
            let dir = tempfile::tempdir().unwrap();
            match import(&dir.path().join("state"), damaged.as_slice()) {
                Ok(_) => {
                    SledStore::open(&dir.path().join("state")).unwrap();
                }
                Err(StoreError::Import { line, .. }) => {
                    prop_assert!((1..=line_count + 1).contains(&line));
                    prop_assert!(!dir.path().join("state").exists());
                }
                Err(other) => prop_assert!(false, "unexpected error {other:?}"),
            }
        }
    }
}
