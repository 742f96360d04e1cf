//! The commit log's record format: one JSON object a record, versioned,
//! every record naming the store id the cluster shares (event ids are
//! `<store id>-<seq>` on every node, so a record from another cluster's log
//! must never be applied).
//!
//! ```text
//! {"v":1,"type":"genesis","store_id":"5f0c…"}
//! {"v":1,"type":"step","store_id":"5f0c…","batch":{"agents":[["a1",{…AgentRecord…}]],"outbox":[["a1",null]],
//!   "events":[{…NewEvent…}],"meta":[[{"cursor":"webhook"},"790"],["delta_link",null]],"contacts":[]}}
//! {"v":1,"type":"directory","store_id":"5f0c…","directory":{"replace":true,"upserts":[{…StoredUser…}],
//!   "removes":[],"delta_link":"https://…"}}
//! {"v":1,"type":"directory_stage","store_id":"5f0c…","first":true,"users":[{…StoredUser…}]}
//! {"v":1,"type":"staged_directory","store_id":"5f0c…","directory":{"replace":true,…}}
//! {"v":1,"type":"step_part","store_id":"5f0c…","first":true,"last":false,"data":"{\"v\":1,\"type\":\"step\",…"}
//! ```
//!
//! A directory change too large for one record (the log takes a bounded
//! size: NATS's `max_payload`) comes in several: a delta round as several
//! `directory` records (the removes first, the delta link with the last),
//! a full read (a replace) as `directory_stage` records that stage its
//! users, then one `staged_directory` that swaps them in at once, so no
//! node ever shows half a directory as complete. A step too large for one
//! record (512 inputs at 50,000 agents, or a reload that touches every
//! agent) comes as `step_part` records, each a run of the `step` record's
//! encoded text: every node stages them and commits the step whole, with
//! the last part's position, once the last part is in.
//!
//! The records are the store's own types as the store writes them to disk
//! (agents, outbox entries, contacts, events before numbering, directory
//! users); meta keys are named on the wire explicitly (`"delta_link"`,
//! `"routing"`, `{"cursor":…}`, `{"routing_queue":…}`), and the log position
//! is never one of them: it is the log's to give. A record of a newer
//! format version is refused with what to do, never half-read.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::events::NewEvent;
use crate::routing::ContactRecord;
use crate::store::{AgentRecord, Batch, DirectoryBatch, MetaKey, OutboxEntry, StoredUser};

/// The record format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// One record of the commit log.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    /// The log's first record, appended by the first active on an empty log:
    /// it names the store id every node of the cluster shares.
    Genesis { store_id: String },
    /// Everything one commit changed (a sync-loop step, a consumer cursor).
    Step { store_id: String, batch: Batch },
    /// A change to the stored directory.
    Directory {
        store_id: String,
        batch: DirectoryBatch,
    },
    /// Users staged for a directory replace too large for one record
    /// (a tenant's full read); `first` empties what an unfinished one left
    /// staged. They are not part of the directory until the
    /// [`Record::StagedDirectory`] that ends the replace.
    DirectoryStage {
        store_id: String,
        first: bool,
        users: Vec<StoredUser>,
    },
    /// The last record of a replace that came in several: `batch` (a
    /// replace) with the staged users among its upserts.
    StagedDirectory {
        store_id: String,
        batch: DirectoryBatch,
    },
    /// A run of the encoded text of a [`Record::Step`] too large for one
    /// record. `first` empties what an unfinished step left staged; the
    /// step is committed whole, with the position of its `last` part.
    StepPart {
        store_id: String,
        first: bool,
        last: bool,
        data: String,
    },
}

impl Record {
    /// The store id the record names.
    pub fn store_id(&self) -> &str {
        match self {
            Record::Genesis { store_id }
            | Record::Step { store_id, .. }
            | Record::Directory { store_id, .. }
            | Record::DirectoryStage { store_id, .. }
            | Record::StagedDirectory { store_id, .. }
            | Record::StepPart { store_id, .. } => store_id,
        }
    }

    /// The record's type as the wire names it.
    pub fn kind(&self) -> &'static str {
        match self {
            Record::Genesis { .. } => "genesis",
            Record::Step { .. } => "step",
            Record::Directory { .. } => "directory",
            Record::DirectoryStage { .. } => "directory_stage",
            Record::StagedDirectory { .. } => "staged_directory",
            Record::StepPart { .. } => "step_part",
        }
    }
}

#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum RecordError {
    /// The record cannot be written (a batch naming the log position, or a
    /// value JSON cannot hold).
    #[error("the record cannot be encoded: {0}")]
    Encode(String),
    /// The bytes are not a record of this format.
    #[error("the record does not decode: {0}")]
    Decode(String),
    /// A newer presence-sync wrote it.
    #[error(
        "the record is of format version {found} and this build reads version {known}: \
         run the same presence-sync version on every node"
    )]
    NewerVersion { found: u32, known: u32 },
}

/// Writes a record as the log keeps it.
pub fn encode(record: &Record) -> Result<Vec<u8>, RecordError> {
    let mut out = RecordOut {
        v: FORMAT_VERSION,
        kind: record.kind(),
        store_id: record.store_id(),
        batch: None,
        directory: None,
        first: None,
        users: None,
        last: None,
        data: None,
    };
    match record {
        Record::Genesis { .. } => {}
        Record::Step { batch, .. } => out.batch = Some(BatchOut::of(batch)?),
        Record::Directory { batch, .. } | Record::StagedDirectory { batch, .. } => {
            out.directory = Some(DirectoryOut::of(batch));
        }
        Record::DirectoryStage { first, users, .. } => {
            out.first = Some(*first);
            out.users = Some(users);
        }
        Record::StepPart {
            first, last, data, ..
        } => {
            out.first = Some(*first);
            out.last = Some(*last);
            out.data = Some(data);
        }
    }
    serde_json::to_vec(&out).map_err(|e| RecordError::Encode(e.to_string()))
}

/// Reads a record. Any bytes are answered with a record or an error, never
/// a panic.
pub fn decode(bytes: &[u8]) -> Result<Record, RecordError> {
    let parsed: RecordIn = match serde_json::from_slice(bytes) {
        Ok(parsed) => parsed,
        Err(e) => {
            // A newer format may not parse as this one: say so rather than
            // what serde stumbled on.
            if let Ok(Versioned { v }) = serde_json::from_slice::<Versioned>(bytes)
                && v > FORMAT_VERSION
            {
                return Err(RecordError::NewerVersion {
                    found: v,
                    known: FORMAT_VERSION,
                });
            }
            return Err(RecordError::Decode(e.to_string()));
        }
    };
    if parsed.v > FORMAT_VERSION {
        return Err(RecordError::NewerVersion {
            found: parsed.v,
            known: FORMAT_VERSION,
        });
    }
    if parsed.v == 0 {
        return Err(RecordError::Decode(
            "format version 0 is not a version".to_owned(),
        ));
    }
    let RecordIn {
        v: _,
        kind,
        store_id,
        batch,
        directory,
        first,
        users,
        last,
        data,
    } = parsed;
    let fields = [
        ("batch", batch.is_some()),
        ("directory", directory.is_some()),
        ("first", first.is_some()),
        ("users", users.is_some()),
        ("last", last.is_some()),
        ("data", data.is_some()),
    ];
    let needed: &[&str] = match kind {
        Kind::Genesis => &[],
        Kind::Step => &["batch"],
        Kind::Directory | Kind::StagedDirectory => &["directory"],
        Kind::DirectoryStage => &["first", "users"],
        Kind::StepPart => &["first", "last", "data"],
    };
    for (field, present) in fields {
        if present != needed.contains(&field) {
            return Err(RecordError::Decode(format!(
                "a {} record {} the field `{field}`",
                kind.name(),
                if present { "with" } else { "without" }
            )));
        }
    }
    let missing = || RecordError::Decode(format!("a {} record is incomplete", kind.name()));
    Ok(match kind {
        Kind::Genesis => Record::Genesis { store_id },
        Kind::Step => Record::Step {
            store_id,
            batch: batch.ok_or_else(missing)?.into_batch(),
        },
        Kind::Directory => Record::Directory {
            store_id,
            batch: directory.ok_or_else(missing)?.into_batch(),
        },
        Kind::StagedDirectory => {
            let batch = directory.ok_or_else(missing)?.into_batch();
            if !batch.replace {
                return Err(RecordError::Decode(
                    "a staged_directory record that is not a replace".to_owned(),
                ));
            }
            Record::StagedDirectory { store_id, batch }
        }
        Kind::DirectoryStage => Record::DirectoryStage {
            store_id,
            first: first.ok_or_else(missing)?,
            users: users.ok_or_else(missing)?,
        },
        Kind::StepPart => Record::StepPart {
            store_id,
            first: first.ok_or_else(missing)?,
            last: last.ok_or_else(missing)?,
            data: data.ok_or_else(missing)?,
        },
    })
}

/// The most parts a step may come in: a step of about a gigabyte.
pub const MAX_STEP_PARTS: usize = 1024;

/// The encoded `step` record `step` as [`Record::StepPart`]s of at most
/// `max_record_bytes` each once encoded, in order: runs of its text cut at
/// character boundaries, sized by what JSON's escaping makes of them.
pub fn step_parts(
    store_id: &str,
    step: &[u8],
    max_record_bytes: usize,
) -> Result<Vec<Record>, RecordError> {
    let text = std::str::from_utf8(step).map_err(|e| RecordError::Encode(e.to_string()))?;
    let envelope = encode(&Record::StepPart {
        store_id: store_id.to_owned(),
        first: false,
        last: false,
        data: String::new(),
    })?
    .len();
    let room = max_record_bytes.saturating_sub(envelope);
    // The widest character escapes to 6 bytes (`\u001f`) or takes 4.
    if room < 6 {
        return Err(RecordError::Encode(format!(
            "a commit log record of {max_record_bytes} bytes has no room for a step's parts"
        )));
    }
    let mut runs = Vec::new();
    let mut start = 0;
    let mut used = 0;
    for (at, c) in text.char_indices() {
        let cost = match c {
            '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
            c if (c as u32) < 0x20 => 6,
            c => c.len_utf8(),
        };
        if used + cost > room {
            runs.push(&text[start..at]);
            start = at;
            used = 0;
        }
        used += cost;
    }
    if start < text.len() || runs.is_empty() {
        runs.push(&text[start..]);
    }
    if runs.len() > MAX_STEP_PARTS {
        return Err(RecordError::Encode(format!(
            "the step is {} bytes, more than {MAX_STEP_PARTS} commit log records of {max_record_bytes} bytes hold",
            step.len()
        )));
    }
    let count = runs.len();
    Ok(runs
        .into_iter()
        .enumerate()
        .map(|(i, run)| Record::StepPart {
            store_id: store_id.to_owned(),
            first: i == 0,
            last: i + 1 == count,
            data: run.to_owned(),
        })
        .collect())
}

/// A meta key as the wire names it. The log position has no name here: a
/// record can never set it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum MetaName {
    DeltaLink,
    Cursor(String),
    Routing,
    RoutingQueue(String),
}

impl MetaName {
    fn of(key: &MetaKey) -> Result<MetaName, RecordError> {
        Ok(match key {
            MetaKey::DeltaLink => MetaName::DeltaLink,
            MetaKey::Cursor(name) => MetaName::Cursor(name.clone()),
            MetaKey::Routing => MetaName::Routing,
            MetaKey::RoutingQueue(name) => MetaName::RoutingQueue(name.clone()),
            MetaKey::LogPosition => {
                return Err(RecordError::Encode(
                    "a batch may not set the commit log position".to_owned(),
                ));
            }
        })
    }

    fn into_key(self) -> MetaKey {
        match self {
            MetaName::DeltaLink => MetaKey::DeltaLink,
            MetaName::Cursor(name) => MetaKey::Cursor(name),
            MetaName::Routing => MetaKey::Routing,
            MetaName::RoutingQueue(name) => MetaKey::RoutingQueue(name),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Genesis,
    Step,
    Directory,
    DirectoryStage,
    StagedDirectory,
    StepPart,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Genesis => "genesis",
            Kind::Step => "step",
            Kind::Directory => "directory",
            Kind::DirectoryStage => "directory_stage",
            Kind::StagedDirectory => "staged_directory",
            Kind::StepPart => "step_part",
        }
    }
}

/// A record as written (borrowing, so a batch is not copied).
#[derive(Serialize)]
struct RecordOut<'a> {
    v: u32,
    #[serde(rename = "type")]
    kind: &'static str,
    store_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    batch: Option<BatchOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    directory: Option<DirectoryOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    first: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    users: Option<&'a [StoredUser]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a str>,
}

#[derive(Serialize)]
struct BatchOut<'a> {
    agents: &'a [(String, Option<AgentRecord>)],
    outbox: &'a [(String, Option<OutboxEntry>)],
    events: &'a [NewEvent],
    meta: Vec<(MetaName, &'a Option<String>)>,
    contacts: &'a [(String, Option<ContactRecord>)],
}

impl<'a> BatchOut<'a> {
    fn of(batch: &'a Batch) -> Result<BatchOut<'a>, RecordError> {
        Ok(BatchOut {
            agents: &batch.agents,
            outbox: &batch.outbox,
            events: &batch.events,
            meta: batch
                .meta
                .iter()
                .map(|(key, value)| Ok((MetaName::of(key)?, value)))
                .collect::<Result<_, RecordError>>()?,
            contacts: &batch.contacts,
        })
    }
}

#[derive(Serialize)]
struct DirectoryOut<'a> {
    replace: bool,
    upserts: &'a [StoredUser],
    removes: &'a [String],
    delta_link: &'a Option<String>,
}

impl<'a> DirectoryOut<'a> {
    fn of(batch: &'a DirectoryBatch) -> DirectoryOut<'a> {
        DirectoryOut {
            replace: batch.replace,
            upserts: &batch.upserts,
            removes: &batch.removes,
            delta_link: &batch.delta_link,
        }
    }
}

/// Only the version, to name a newer format that does not parse.
#[derive(Deserialize)]
struct Versioned {
    v: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordIn {
    v: u32,
    #[serde(rename = "type")]
    kind: Kind,
    store_id: String,
    #[serde(default)]
    batch: Option<BatchIn>,
    #[serde(default)]
    directory: Option<DirectoryIn>,
    #[serde(default)]
    first: Option<bool>,
    #[serde(default)]
    users: Option<Vec<StoredUser>>,
    #[serde(default)]
    last: Option<bool>,
    #[serde(default)]
    data: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchIn {
    agents: Vec<(String, Option<AgentRecord>)>,
    outbox: Vec<(String, Option<OutboxEntry>)>,
    events: Vec<NewEvent>,
    meta: Vec<(MetaName, Option<String>)>,
    contacts: Vec<(String, Option<ContactRecord>)>,
}

impl BatchIn {
    fn into_batch(self) -> Batch {
        Batch {
            agents: self.agents,
            outbox: self.outbox,
            events: self.events,
            meta: self
                .meta
                .into_iter()
                .map(|(name, value)| (name.into_key(), value))
                .collect(),
            contacts: self.contacts,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DirectoryIn {
    replace: bool,
    upserts: Vec<StoredUser>,
    removes: Vec<String>,
    delta_link: Option<String>,
}

impl DirectoryIn {
    fn into_batch(self) -> DirectoryBatch {
        DirectoryBatch {
            replace: self.replace,
            upserts: self.upserts,
            removes: self.removes,
            delta_link: self.delta_link,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::store::testing::{any_batch, any_directory_batch, batch};

    const STORE: &str = "00c0ffee00c0ffee";

    #[test]
    fn the_three_kinds_read_back() {
        let records = [
            Record::Genesis {
                store_id: STORE.into(),
            },
            Record::Step {
                store_id: STORE.into(),
                batch: batch("a1", 3, 2, 100),
            },
            Record::Directory {
                store_id: STORE.into(),
                batch: DirectoryBatch {
                    replace: true,
                    upserts: vec![StoredUser {
                        id: "u1".into(),
                        upn: Some("u1@contoso.example".into()),
                        mail: None,
                        business_phones: vec![],
                        mobile_phone: None,
                        teams: Some(true),
                        teams_phone: None,
                    }],
                    removes: vec!["u2".into()],
                    delta_link: Some("https://graph.example/d".into()),
                },
            },
            Record::DirectoryStage {
                store_id: STORE.into(),
                first: true,
                users: vec![StoredUser {
                    id: "u3".into(),
                    upn: None,
                    mail: Some("u3@contoso.example".into()),
                    business_phones: vec!["+1 425 555 0100".into()],
                    mobile_phone: None,
                    teams: None,
                    teams_phone: Some(false),
                }],
            },
            Record::StagedDirectory {
                store_id: STORE.into(),
                batch: DirectoryBatch {
                    replace: true,
                    delta_link: Some("https://graph.example/d2".into()),
                    ..DirectoryBatch::default()
                },
            },
            Record::StepPart {
                store_id: STORE.into(),
                first: true,
                last: false,
                data: r#"{"v":1,"type":"step","store_id":"#.into(),
            },
        ];
        for record in records {
            let bytes = encode(&record).unwrap();
            assert!(bytes.starts_with(b"{\"v\":1,\"type\":"), "{bytes:?}");
            assert_eq!(decode(&bytes).unwrap(), record);
        }
    }

    #[test]
    fn meta_keys_are_named_on_the_wire() {
        let record = Record::Step {
            store_id: STORE.into(),
            batch: Batch {
                meta: vec![
                    (MetaKey::DeltaLink, Some("d".into())),
                    (MetaKey::Cursor("webhook".into()), None),
                    (MetaKey::Routing, Some("{}".into())),
                    (MetaKey::RoutingQueue("sales".into()), Some("{}".into())),
                ],
                ..Batch::default()
            },
        };
        let bytes = encode(&record).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            json["batch"]["meta"],
            serde_json::json!([
                ["delta_link", "d"],
                [{"cursor": "webhook"}, null],
                ["routing", "{}"],
                [{"routing_queue": "sales"}, "{}"],
            ])
        );
        assert_eq!(decode(&bytes).unwrap(), record);
    }

    #[test]
    fn a_batch_setting_the_log_position_is_not_encoded() {
        let record = Record::Step {
            store_id: STORE.into(),
            batch: Batch {
                meta: vec![(MetaKey::LogPosition, Some("7".into()))],
                ..Batch::default()
            },
        };
        assert!(matches!(encode(&record), Err(RecordError::Encode(_))));
        let forged = format!(
            r#"{{"v":1,"type":"step","store_id":"{STORE}","batch":{{"agents":[],"outbox":[],"events":[],"meta":[["log_position","7"]],"contacts":[]}}}}"#
        );
        assert!(matches!(
            decode(forged.as_bytes()),
            Err(RecordError::Decode(_))
        ));
    }

    #[test]
    fn records_that_are_not_of_this_format_are_refused_with_a_reason() {
        let cases: [(&str, &str); 10] = [
            (
                r#"{"v":1,"type":"directory_stage","store_id":"x","users":[]}"#,
                "without the field `first`",
            ),
            (
                r#"{"v":1,"type":"step","store_id":"x","users":[],"batch":{"agents":[],"outbox":[],"events":[],"meta":[],"contacts":[]}}"#,
                "a step record with the field `users`",
            ),
            (
                r#"{"v":1,"type":"staged_directory","store_id":"x","directory":{"replace":false,"upserts":[],"removes":[],"delta_link":null}}"#,
                "not a replace",
            ),
            ("", "EOF"),
            ("null", "invalid type"),
            (
                r#"{"v":1,"type":"genesis","store_id":"x","batch":{"agents":[],"outbox":[],"events":[],"meta":[],"contacts":[]}}"#,
                "a genesis record with the field `batch`",
            ),
            (
                r#"{"v":1,"type":"step","store_id":"x"}"#,
                "without the field `batch`",
            ),
            (
                r#"{"v":1,"type":"snapshot","store_id":"x"}"#,
                "unknown variant",
            ),
            (
                r#"{"v":1,"type":"genesis","store_id":"x","extra":1}"#,
                "unknown field",
            ),
            (r#"{"v":0,"type":"genesis","store_id":"x"}"#, "version 0"),
        ];
        for (input, expected) in cases {
            match decode(input.as_bytes()) {
                Err(RecordError::Decode(reason)) => {
                    assert!(reason.contains(expected), "{input}: {reason}")
                }
                other => panic!("{input}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_step_too_large_even_for_its_parts_is_refused() {
        let step = encode(&Record::Step {
            store_id: STORE.into(),
            batch: batch("a1", 3, 2, 100),
        })
        .unwrap();
        assert!(matches!(
            step_parts(STORE, &step, 20),
            Err(RecordError::Encode(reason)) if reason.contains("no room")
        ));
        let huge = vec![b'a'; 200 * (MAX_STEP_PARTS + 1)];
        assert!(matches!(
            step_parts(STORE, &huge, 256),
            Err(RecordError::Encode(reason)) if reason.contains("1024 commit log records")
        ));
    }

    #[test]
    fn a_newer_format_is_named_as_such() {
        for input in [
            r#"{"v":2,"type":"genesis","store_id":"x"}"#,
            r#"{"v":2,"type":"merge","shards":[1,2]}"#,
        ] {
            assert_eq!(
                decode(input.as_bytes()),
                Err(RecordError::NewerVersion {
                    found: 2,
                    known: FORMAT_VERSION
                })
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn what_is_encoded_decodes_to_the_same_and_encodes_to_the_same_bytes(
            batch in any_batch(),
            directory in any_directory_batch(),
        ) {
            for record in [
                Record::Step { store_id: STORE.into(), batch: batch.clone() },
                Record::Directory { store_id: STORE.into(), batch: directory.clone() },
            ] {
                let bytes = encode(&record).unwrap();
                let back = decode(&bytes).unwrap();
                prop_assert_eq!(&back, &record);
                prop_assert_eq!(encode(&back).unwrap(), bytes);
            }
        }

        /// A step cut into parts of any size that holds a character: each
        /// part fits, and their runs put together are the step's text.
        #[test]
        fn a_step_in_parts_is_the_step_put_together(
            batch in any_batch(),
            max in 120usize..2_000,
        ) {
            let step = encode(&Record::Step { store_id: STORE.into(), batch }).unwrap();
            let parts = step_parts(STORE, &step, max).unwrap();
            let mut whole = String::new();
            for (i, part) in parts.iter().enumerate() {
                let bytes = encode(part).unwrap();
                prop_assert!(bytes.len() <= max, "{} > {max}", bytes.len());
                let Record::StepPart { first, last, data, .. } = decode(&bytes).unwrap() else {
                    panic!("not a part");
                };
                prop_assert_eq!(first, i == 0);
                prop_assert_eq!(last, i + 1 == parts.len());
                whole.push_str(&data);
            }
            prop_assert_eq!(whole.as_bytes(), &step[..]);
        }

        #[test]
        fn any_bytes_decode_or_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn damaged_records_decode_or_are_refused(
            batch in any_batch(),
            cut in any::<prop::sample::Index>(),
            flip in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let bytes = encode(&Record::Step { store_id: STORE.into(), batch }).unwrap();
            let mut damaged = bytes[..cut.index(bytes.len() + 1)].to_vec();
            if !damaged.is_empty() {
                let at = flip.index(damaged.len());
                damaged[at] = byte;
            }
            if let Ok(record) = decode(&damaged) {
                // What does decode is a record that encodes again.
                encode(&record).unwrap();
            }
        }
    }
}
