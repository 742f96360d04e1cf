//! The event stream contact-center software follows (SPEC §3.2).
//!
//! Every event gets a durable sequence number when the store commits it;
//! consumers resume with `since=SEQ` and de-duplicate by `id`. The shapes here
//! are the wire shapes of the WebSocket, the webhook sink and the store.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The event types, as they appear in `type`.
pub mod kind {
    /// The daemon asks the CC to set an agent's status (Teams → CC).
    pub const CC_STATUS_REQUESTED: &str = "cc.status_requested";
    /// The CC reported a status for an agent.
    pub const CC_STATUS_REPORTED: &str = "cc.status_reported";
    pub const TEAMS_PRESENCE_CHANGED: &str = "teams.presence_changed";
    pub const TEAMS_WRITTEN: &str = "teams.presence_written";
    pub const AGENT_ROUTABLE_CHANGED: &str = "agent.routable_changed";
    pub const AGENT_UPDATED: &str = "agent.updated";
    pub const AGENT_LINKED: &str = "agent.linked";
    /// An agent's Teams user is linked to another agent: it stays unlinked.
    pub const AGENT_LINK_CONFLICT: &str = "agent.link_conflict";
    pub const AGENT_DELETED: &str = "agent.deleted";
    pub const SYNC_LOOP_SUSPENDED: &str = "sync.loop_suspended";
    pub const SYNC_LOOP_RESUMED: &str = "sync.loop_resumed";
    pub const SYNC_TEAMS_OVERRIDE_DETECTED: &str = "sync.teams_override_detected";
    pub const SYNC_TEAMS_OVERRIDE_CLEARED: &str = "sync.teams_override_cleared";
    pub const SYNC_TEAMS_OUTRANKED: &str = "sync.teams_outranked";
    pub const SYNC_WRITE_FAILED: &str = "sync.write_failed";
    pub const MAPPINGS_RELOADED: &str = "mappings.reloaded";
    /// An agent holds a CC status its profile does not know (a reload
    /// removed it, or the agent moved to a profile without it): kept, not
    /// routable, Teams shows the profile's `default_teams`.
    pub const CC_STATUS_NOT_IN_PROFILE: &str = "cc.status_not_in_profile";
    /// That status is in the agent's profile again: mapped as usual.
    pub const CC_STATUS_BACK_IN_PROFILE: &str = "cc.status_back_in_profile";
    pub const ROUTING_QUEUED: &str = "routing.queued";
    pub const ROUTING_OFFERED: &str = "routing.offered";
    pub const ROUTING_ACCEPTED: &str = "routing.accepted";
    pub const ROUTING_DECLINED: &str = "routing.declined";
    pub const ROUTING_RONA: &str = "routing.rona";
    pub const ROUTING_OFFER_WITHDRAWN: &str = "routing.offer_withdrawn";
    pub const ROUTING_COMPLETED: &str = "routing.completed";
    pub const ROUTING_ABANDONED: &str = "routing.abandoned";
    pub const ROUTING_OVERFLOW: &str = "routing.overflow";
    pub const ROUTING_AGENT_PAUSED: &str = "routing.agent_paused";
    pub const ROUTING_AGENT_RESUMED: &str = "routing.agent_resumed";

    /// Every type the daemon emits, for the OpenAPI description and tests
    /// (which hold it to the README's table and to the daemon's call sites).
    pub const ALL: &[&str] = &[
        CC_STATUS_REQUESTED,
        CC_STATUS_REPORTED,
        TEAMS_PRESENCE_CHANGED,
        TEAMS_WRITTEN,
        AGENT_ROUTABLE_CHANGED,
        AGENT_UPDATED,
        AGENT_LINKED,
        AGENT_LINK_CONFLICT,
        AGENT_DELETED,
        SYNC_LOOP_SUSPENDED,
        SYNC_LOOP_RESUMED,
        SYNC_TEAMS_OVERRIDE_DETECTED,
        SYNC_TEAMS_OVERRIDE_CLEARED,
        SYNC_TEAMS_OUTRANKED,
        SYNC_WRITE_FAILED,
        MAPPINGS_RELOADED,
        CC_STATUS_NOT_IN_PROFILE,
        CC_STATUS_BACK_IN_PROFILE,
        ROUTING_QUEUED,
        ROUTING_OFFERED,
        ROUTING_ACCEPTED,
        ROUTING_DECLINED,
        ROUTING_RONA,
        ROUTING_OFFER_WITHDRAWN,
        ROUTING_COMPLETED,
        ROUTING_ABANDONED,
        ROUTING_OVERFLOW,
        ROUTING_AGENT_PAUSED,
        ROUTING_AGENT_RESUMED,
    ];
}

/// An event before the store has given it a sequence number.
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

    /// The `kind` constants declared in this file, by name and value.
    fn declared() -> Vec<(String, String)> {
        let source = include_str!("events.rs");
        source
            .lines()
            .map(str::trim)
            .filter_map(|line| line.strip_prefix("pub const "))
            .filter_map(|rest| {
                let (name, value) = rest.split_once(": &str = ")?;
                let value = value.strip_suffix(';')?.trim_matches('"');
                Some((name.to_string(), value.to_string()))
            })
            .collect()
    }

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
    fn every_declared_type_is_listed_once() {
        let declared = declared();
        assert_eq!(declared.len(), kind::ALL.len(), "{declared:?}");
        let values: Vec<&str> = declared.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(values, kind::ALL, "ALL lists the constants, in their order");
    }

    /// A documented type nobody emits is a promise to consumers the daemon
    /// does not keep: every constant has a call site in the daemon.
    #[test]
    fn every_listed_type_has_an_emitting_call_site_in_the_daemon() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/daemon");
        let mut files = Vec::new();
        rust_files(&root, &mut files);
        let sources: Vec<String> = files
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap())
            .collect();
        let silent: Vec<String> = declared()
            .into_iter()
            .filter(|(name, _)| {
                let site = format!("kind::{name},");
                !sources.iter().any(|s| s.contains(&site))
            })
            .map(|(_, value)| value)
            .collect();
        assert!(silent.is_empty(), "listed but never emitted: {silent:?}");
    }

    /// The README's table of event types is the list, no more, no less.
    #[test]
    fn the_readme_documents_every_type_and_only_those() {
        let readme = include_str!("../README.md");
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
