//! The event stream contact-center software follows (SPEC §3.2).
//!
//! Every event gets a durable sequence number when the store commits it;
//! consumers resume with `since=SEQ` and de-duplicate by `id`. The shapes here
//! are the wire shapes of the WebSocket, the webhook sink and the store.
//!
//! `data.rs` has one [`EventData`] variant a type, with its payload; the
//! type names ([`kind`]) and `schema.rs`'s schemas of each `data` come from
//! the same list. Committed events keep `data` as JSON, so events an older
//! version stored still load.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

mod data;
pub mod schema;
pub mod wire;

#[cfg(test)]
mod golden;

pub use data::*;

/// An event before the store has given it a sequence number. The daemon
/// builds it from an [`EventData`] with [`NewEvent::new`]; the fields stay
/// the store's record of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    #[serde(rename = "type")]
    pub kind: String,
    pub time: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    #[serde(default)]
    pub data: serde_json::Value,
}

impl NewEvent {
    pub fn new(time: DateTime<Utc>, agent_id: Option<String>, data: EventData) -> Self {
        NewEvent {
            kind: data.kind().to_string(),
            time,
            agent_id,
            data: data.to_data(),
        }
    }
}

/// A committed event: what consumers receive.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Strictly increasing, never reused, durable across restarts.
    pub seq: u64,
    /// Unique across stores (`<store id>-<seq>`), for de-duplication.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub time: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    #[serde(default)]
    pub data: serde_json::Value,
}

impl Event {
    pub fn committed(store_id: &str, seq: u64, new: NewEvent) -> Self {
        Event {
            seq,
            id: format!("{store_id}-{seq}"),
            kind: new.kind,
            time: new.time,
            agent_id: new.agent_id,
            data: new.data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                // Test code consumes events; it does not emit them.
                if path.file_name().is_some_and(|n| n != "tests") {
                    rust_files(&path, out);
                }
            } else if path.extension().is_some_and(|e| e == "rs")
                && path
                    .file_name()
                    .is_some_and(|n| n != "tests.rs" && n != "testing.rs")
            {
                out.push(path);
            }
        }
    }

    #[test]
    fn every_type_is_listed_once_in_the_order_of_the_variants() {
        let mut unique = kind::ALL.to_vec();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), kind::ALL.len(), "{:?}", kind::ALL);
        let variants: Vec<&str> = EventData::VARIANTS.iter().map(|(_, k)| *k).collect();
        assert_eq!(variants, kind::ALL);
        let schemas: Vec<&str> = EventData::schemas().iter().map(|(k, _)| *k).collect();
        assert_eq!(schemas, kind::ALL);
    }

    /// A documented type nobody emits is a promise to consumers the daemon
    /// does not keep: every variant has a call site in the daemon.
    #[test]
    fn every_variant_has_an_emitting_call_site_in_the_daemon() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/daemon");
        let mut files = Vec::new();
        rust_files(&root, &mut files);
        let sources: Vec<String> = files
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap())
            .collect();
        let silent: Vec<&str> = EventData::VARIANTS
            .iter()
            .filter(|(variant, _)| {
                let site = format!("EventData::{variant}(");
                !sources.iter().any(|s| s.contains(&site))
            })
            .map(|(_, kind)| *kind)
            .collect();
        assert!(silent.is_empty(), "listed but never emitted: {silent:?}");
    }

    /// The README's table of event types is the list, no more, no less.
    #[test]
    fn the_readme_documents_every_type_and_only_those() {
        let readme = include_str!("../../README.md");
        let section = readme
            .split("### Event types")
            .nth(1)
            .and_then(|s| s.split("\n#").next())
            .expect("README has an `### Event types` section");
        let documented: Vec<&str> = section
            .lines()
            .filter_map(|line| line.strip_prefix("| `"))
            .filter_map(|rest| rest.split_once('`').map(|(t, _)| t))
            .collect();
        let mut want: Vec<&str> = kind::ALL.to_vec();
        let mut got = documented.clone();
        want.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, want, "README table: {documented:?}");
    }

    #[test]
    fn wire_shape_has_the_documented_fields() {
        let e = Event::committed(
            "ab12",
            7,
            NewEvent {
                kind: kind::CC_STATUS_REQUESTED.into(),
                time: DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default(),
                agent_id: Some("a1".into()),
                data: serde_json::json!({"status": "Meeting"}),
            },
        );
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "seq": 7, "id": "ab12-7", "type": "cc.status_requested",
                "time": "2023-11-14T22:13:20Z", "agent_id": "a1",
                "data": {"status": "Meeting"}
            })
        );
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }
}
