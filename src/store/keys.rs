//! The store's key layout in its one sled tree, shared by the engine and by
//! export/import so both read and write exactly the same records.
//!
//! Everything lives in the default tree so one `apply_batch` covers every
//! family: a commit that touched agents, the outbox, events and meta is one
//! atomic unit on disk.
//!
//! | key | value |
//! |---|---|
//! | `a/<agent id>` | [`AgentRecord`] as JSON |
//! | `o/<agent id>` | [`OutboxEntry`] as JSON |
//! | `c/<contact id>` | [`ContactRecord`] as JSON |
//! | `e/<seq, 8 bytes big-endian>` | [`Event`] as JSON (big-endian so key order is seq order) |
//! | `m/<name>` | UTF-8 text |

use crate::events::Event;

use super::{AgentRecord, MetaKey, OutboxEntry};
use crate::routing::ContactRecord;

pub(crate) const AGENT: &[u8] = b"a/";
pub(crate) const OUTBOX: &[u8] = b"o/";
pub(crate) const CONTACT: &[u8] = b"c/";
pub(crate) const EVENT: &[u8] = b"e/";
pub(crate) const META: &[u8] = b"m/";

/// Meta names the store itself owns; the daemon's keys are [`MetaKey`].
pub(crate) const META_SCHEMA: &str = "schema";
pub(crate) const META_STORE_ID: &str = "store_id";
pub(crate) const META_NEXT_SEQ: &str = "next_seq";
const META_DELTA_LINK: &str = "delta_link";
const META_CURSOR_PREFIX: &str = "cursor:";
const META_ROUTING: &str = "routing";
pub(crate) const META_ROUTING_QUEUE_PREFIX: &str = "routing-queue:";
const META_LOG_POSITION: &str = "log_position";

/// Bytes of randomness in a store id (printed as twice as many hex digits).
pub(crate) const STORE_ID_BYTES: usize = 8;

pub(crate) fn agent_key(id: &str) -> Vec<u8> {
    prefixed(AGENT, id.as_bytes())
}

pub(crate) fn outbox_key(agent_id: &str) -> Vec<u8> {
    prefixed(OUTBOX, agent_id.as_bytes())
}

pub(crate) fn contact_key(id: &str) -> Vec<u8> {
    prefixed(CONTACT, id.as_bytes())
}

pub(crate) fn contact_problem(record: &ContactRecord, key_id: &str) -> Option<String> {
    (record.id != key_id).then(|| format!("contact stored under {key_id:?} has id {:?}", record.id))
}

pub(crate) fn event_key(seq: u64) -> Vec<u8> {
    prefixed(EVENT, &seq.to_be_bytes())
}

pub(crate) fn meta_key(name: &str) -> Vec<u8> {
    prefixed(META, name.as_bytes())
}

/// The first key after every key starting with `prefix` (`a/` → `a0`), for
/// ranges that cover one family.
pub(crate) fn family_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
}

fn prefixed(prefix: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + rest.len());
    key.extend_from_slice(prefix);
    key.extend_from_slice(rest);
    key
}

/// The meta name a daemon key is stored under.
pub(crate) fn meta_name(key: &MetaKey) -> String {
    match key {
        MetaKey::DeltaLink => META_DELTA_LINK.to_owned(),
        MetaKey::Cursor(consumer) => format!("{META_CURSOR_PREFIX}{consumer}"),
        MetaKey::Routing => META_ROUTING.to_owned(),
        MetaKey::RoutingQueue(queue) => format!("{META_ROUTING_QUEUE_PREFIX}{queue}"),
        MetaKey::LogPosition => META_LOG_POSITION.to_owned(),
    }
}

/// The daemon key a meta name stands for; `None` for the store's own names
/// and for names no version of this schema writes.
pub(crate) fn parse_meta_name(name: &str) -> Option<MetaKey> {
    if name == META_DELTA_LINK {
        Some(MetaKey::DeltaLink)
    } else if name == META_ROUTING {
        Some(MetaKey::Routing)
    } else if name == META_LOG_POSITION {
        Some(MetaKey::LogPosition)
    } else if let Some(queue) = name.strip_prefix(META_ROUTING_QUEUE_PREFIX) {
        Some(MetaKey::RoutingQueue(queue.to_owned()))
    } else {
        name.strip_prefix(META_CURSOR_PREFIX)
            .map(|consumer| MetaKey::Cursor(consumer.to_owned()))
    }
}

pub(crate) fn is_store_meta(name: &str) -> bool {
    matches!(name, META_SCHEMA | META_STORE_ID | META_NEXT_SEQ)
}

pub(crate) fn is_valid_store_id(id: &str) -> bool {
    id.len() == 2 * STORE_ID_BYTES
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

pub(crate) fn event_id(store_id: &str, seq: u64) -> String {
    format!("{store_id}-{seq}")
}

/// Why a stored event does not belong where it is.
pub(crate) fn event_problem(
    event: &Event,
    key_seq: u64,
    store_id: &str,
    next_seq: u64,
) -> Option<String> {
    if event.seq != key_seq {
        Some(format!(
            "event stored under seq {key_seq} says seq {}",
            event.seq
        ))
    } else if key_seq == 0 || key_seq >= next_seq {
        Some(format!(
            "event seq {key_seq} is not below the next seq {next_seq}"
        ))
    } else if event.id != event_id(store_id, key_seq) {
        Some(format!(
            "event seq {key_seq} has id {:?}, expected {:?}",
            event.id,
            event_id(store_id, key_seq)
        ))
    } else {
        None
    }
}

pub(crate) fn agent_problem(record: &AgentRecord, key_id: &str) -> Option<String> {
    (record.id != key_id).then(|| format!("agent stored under {key_id:?} has id {:?}", record.id))
}

pub(crate) fn outbox_problem(entry: &OutboxEntry, key_id: &str) -> Option<String> {
    (entry.agent_id != key_id).then(|| {
        format!(
            "outbox entry stored under {key_id:?} is for agent {:?}",
            entry.agent_id
        )
    })
}

/// A key as it can be shown in an error: text where it is text, the
/// sequence number for events.
pub(crate) fn describe_key(key: &[u8]) -> String {
    if let Some(rest) = key.strip_prefix(EVENT)
        && let Ok(seq) = <[u8; 8]>::try_from(rest)
    {
        return format!("e/{}", u64::from_be_bytes(seq));
    }
    match std::str::from_utf8(key) {
        Ok(text) => format!("{text:?}"),
        Err(_) => format!("0x{}", hex(key)),
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
