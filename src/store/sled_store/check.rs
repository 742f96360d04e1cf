//! The deep check: the meta (schema, store id, next seq), then every key
//! and record against the rules of its family. A problem refuses the store
//! as damaged, naming it. It runs at open after an unclean shutdown and on
//! demand (`presence-sync check --store`); [`store_meta`] alone is the
//! cheap check every open makes.

use std::path::Path;

use super::{decode, event_seq, sled_error, utf8};
use crate::events::Event;
use crate::routing::ContactRecord;
use crate::store::keys::{self, AGENT, CONTACT, EVENT, META, OUTBOX};
use crate::store::{AgentRecord, OutboxEntry, SCHEMA_VERSION, StoreError};

/// What a store that passed the deep check holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreSummary {
    pub store_id: String,
    pub next_seq: u64,
    pub agents: usize,
    pub outbox: usize,
    pub contacts: usize,
    /// Events kept (after retention), and the oldest one's seq.
    pub events: usize,
    pub first_seq: Option<u64>,
    pub meta: usize,
    /// Whether the last process to use it stopped cleanly (the marker).
    pub closed_cleanly: bool,
}

/// Reads the store's meta and checks every key against it.
pub(super) fn check(db: &sled::Db, dir: &Path) -> Result<StoreSummary, StoreError> {
    let (store_id, next_seq) = store_meta(db, dir)?;
    let mut summary = StoreSummary::default();
    for item in db.iter() {
        let (key, value) = item.map_err(|e| sled_error(dir, e))?;
        check_record(dir, &key, &value, &store_id, next_seq)?;
        if key.starts_with(AGENT) {
            summary.agents += 1;
        } else if key.starts_with(OUTBOX) {
            summary.outbox += 1;
        } else if key.starts_with(CONTACT) {
            summary.contacts += 1;
        } else if key.starts_with(EVENT) {
            summary.events += 1;
            summary.first_seq = summary.first_seq.or_else(|| event_seq(&key));
        } else {
            summary.meta += 1;
        }
    }
    summary.store_id = store_id;
    summary.next_seq = next_seq;
    Ok(summary)
}

/// The schema (refused when newer), the store id and the next seq.
pub(super) fn store_meta(db: &sled::Db, dir: &Path) -> Result<(String, u64), StoreError> {
    let damaged = |problem: String| StoreError::Damaged {
        dir: dir.to_path_buf(),
        problem,
    };
    if db.is_empty() {
        return Err(damaged(
            "it holds no records: its first start was interrupted before the store was set up, \
             or it is not a presence-sync store (a new store needs an empty directory)"
                .to_owned(),
        ));
    }
    let read_meta = |name: &str| -> Result<String, StoreError> {
        let key = keys::meta_key(name);
        match db.get(&key).map_err(|e| sled_error(dir, e))? {
            Some(value) => Ok(utf8(dir, &key, &value)?.to_owned()),
            None => Err(damaged(format!("the meta record `{name}` is missing"))),
        }
    };
    let garbled = |name: &str, value: &str, want: &str| {
        damaged(format!(
            "the meta record `{name}` is garbled: {value:?} is not {want}"
        ))
    };

    let schema_text = read_meta(keys::META_SCHEMA)?;
    let schema: u32 = schema_text
        .parse()
        .map_err(|_| garbled(keys::META_SCHEMA, &schema_text, "a schema version"))?;
    if schema > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            dir: dir.to_path_buf(),
            found: schema,
            known: SCHEMA_VERSION,
        });
    }
    if schema == 0 {
        return Err(garbled(keys::META_SCHEMA, &schema_text, "a schema version"));
    }
    let store_id = read_meta(keys::META_STORE_ID)?;
    if !keys::is_valid_store_id(&store_id) {
        return Err(garbled(
            keys::META_STORE_ID,
            &store_id,
            "a store id (16 hex digits)",
        ));
    }
    let next_text = read_meta(keys::META_NEXT_SEQ)?;
    let next_seq = next_text
        .parse::<u64>()
        .ok()
        .filter(|&n| n >= 1)
        .ok_or_else(|| garbled(keys::META_NEXT_SEQ, &next_text, "a sequence number"))?;
    Ok((store_id, next_seq))
}

pub(super) fn check_record(
    dir: &Path,
    key: &[u8],
    value: &[u8],
    store_id: &str,
    next_seq: u64,
) -> Result<(), StoreError> {
    let damaged = |problem: String| StoreError::Damaged {
        dir: dir.to_path_buf(),
        problem,
    };
    fn text_key<'k>(dir: &Path, key: &[u8], rest: &'k [u8]) -> Result<&'k str, StoreError> {
        std::str::from_utf8(rest).map_err(|_| StoreError::Damaged {
            dir: dir.to_path_buf(),
            problem: format!("the key {} is not text", keys::describe_key(key)),
        })
    }
    let problem = if let Some(rest) = key.strip_prefix(AGENT) {
        let id = text_key(dir, key, rest)?;
        keys::agent_problem(&decode::<AgentRecord>(dir, key, value)?, id)
    } else if let Some(rest) = key.strip_prefix(OUTBOX) {
        let id = text_key(dir, key, rest)?;
        keys::outbox_problem(&decode::<OutboxEntry>(dir, key, value)?, id)
    } else if let Some(rest) = key.strip_prefix(CONTACT) {
        let id = text_key(dir, key, rest)?;
        keys::contact_problem(&decode::<ContactRecord>(dir, key, value)?, id)
    } else if key.starts_with(EVENT) {
        let seq = event_seq(key).ok_or_else(|| {
            damaged(format!(
                "the event key {} is not a sequence number",
                keys::describe_key(key)
            ))
        })?;
        keys::event_problem(&decode::<Event>(dir, key, value)?, seq, store_id, next_seq)
    } else if let Some(rest) = key.strip_prefix(META) {
        let name = text_key(dir, key, rest)?;
        utf8(dir, key, value)?;
        (!keys::is_store_meta(name) && keys::parse_meta_name(name).is_none())
            .then(|| format!("unknown meta record {}", keys::describe_key(key)))
    } else {
        Some(format!(
            "the key {} belongs to no record family this build knows",
            keys::describe_key(key)
        ))
    };
    match problem {
        Some(problem) => Err(damaged(problem)),
        None => Ok(()),
    }
}
