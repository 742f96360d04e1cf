//! Durable state (SPEC §7), behind one boundary so the storage engine can be
//! swapped if the crash tests ever demand it.
//!
//! The daemon commits everything one step of its sync loop changed as one
//! [`Batch`]: agent records (with the engine's per-agent snapshot), the
//! pending-write outbox, new events and metadata. A batch is atomic and
//! durable when [`Store::commit`] returns, which is what lets the API
//! acknowledge a write only after it is on disk.
//!
//! What is stored, by key family:
//! - agents: one [`AgentRecord`] per agent id (link, profile, skills, the
//!   engine snapshot with ownership);
//! - outbox: the Teams write still owed for an agent, coalesced per person;
//! - events: the event log by sequence number, pruned by retention;
//! - contacts: the routing core's contacts, waiting, offered, accepted or
//!   recently ended;
//! - meta: schema version, store id, next sequence number, the directory
//!   delta link, consumer cursors (the webhook sink's), the routing core's
//!   router-wide state;
//! - the directory, apart ([`Store::directory`]): a compact record of each
//!   Teams user (id, UPN, mail, phones, whether Teams and Teams Phone are
//!   enabled) and the delta link they are current to, written together as
//!   one atomic unit, so a restart links agents, dials overflows and is
//!   ready before Graph answers. It is derived from Graph, so it lives in
//!   its own tree: the deep check and backups leave it out, and a record
//!   that no longer reads is skipped (the next full read brings it back).
//! - the notification inbox, apart ([`Store::append_inbox`]): Graph change
//!   and lifecycle notification batches exactly as the receiver took them,
//!   kept from the moment it answers 202 until the receiver's worker has
//!   processed them. Its own tree too: backups leave it out (a restored
//!   daemon reconciles by polling), and it is never part of a [`Batch`].
//!
//! [`SledStore`] is the engine the daemon runs on (`sled_store/`: `open.rs`
//! opening, locks and the scratch copy, `marker.rs` the clean-shutdown
//! marker, `check.rs` the deep check after an unclean shutdown and for
//! `check --store`, `write.rs` the durable writes, `inbox.rs` the notification inbox); [`MemoryStore`] keeps the same promises
//! in memory, for tests of what runs over a store. One
//! conformance suite (`conformance.rs`) holds both to the trait. [`export`]
//! and [`import`] move a whole store to and from JSON lines for backups.

mod keys;
pub mod memory;
mod sled_store;

#[cfg(test)]
mod conformance;
pub mod export;
#[cfg(test)]
pub(crate) mod testing;

pub use export::{ExportStats, ImportStats, export, import};
pub use memory::MemoryStore;
pub(crate) use sled_store::DirectoryParts;
pub use sled_store::{OpenCheck, SledStore, StoreSummary};

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::events::{Event, NewEvent};
use crate::routing::{AgentRouting, ContactRecord, Membership};
use crate::sync::AgentSnapshot;

/// The schema this build writes. A store with a higher version is refused.
pub const SCHEMA_VERSION: u32 = 1;

/// One agent as the CC configured it, and what the daemon knows of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub id: String,
    /// As the CC gave it: a Teams object id or a UPN / e-mail.
    pub teams_user: String,
    /// The Teams object id, once known (given, or found in the directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teams_user_id: Option<String>,
    /// The UPN the directory has for the linked user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// Skill name → proficiency level.
    #[serde(default)]
    pub skills: BTreeMap<String, u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// The profile asked for; `None` lets the groups (or the default) decide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// The latest CC status report, kept here for an agent not linked yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cc_status: Option<CcReport>,
    /// The sync engine's state for this agent (ownership, restore point,
    /// writes owed). One that no longer reads is dropped with a warning and
    /// the agent starts afresh, as before it was typed.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::sync"
    )]
    pub sync: Option<Box<AgentSnapshot>>,
    /// Queues the agent serves, in its order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queues: Vec<Membership>,
    /// Contacts it can be on at once; `None` is 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u8>,
    /// The routing core's state for this agent (idle time, today's
    /// counters, misses, pause, wrap-up). One that no longer reads is
    /// dropped and the counters start afresh.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::routing"
    )]
    pub routing: Option<Box<AgentRouting>>,
    pub updated_at: DateTime<Utc>,
}

impl AgentRecord {
    /// An agent with only its id and Teams user set, as registering one
    /// starts it.
    pub fn new(id: String, teams_user: String, updated_at: DateTime<Utc>) -> AgentRecord {
        AgentRecord {
            id,
            teams_user,
            teams_user_id: None,
            upn: None,
            display_name: None,
            groups: Vec::new(),
            skills: BTreeMap::new(),
            phone: None,
            profile: None,
            cc_status: None,
            sync: None,
            queues: Vec::new(),
            capacity: None,
            routing: None,
            updated_at,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CcReport {
    pub status: String,
    pub at: DateTime<Utc>,
}

/// A Teams write owed for one agent: only the latest is kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub agent_id: String,
    /// The write, as the daemon describes it.
    pub write: OutboxWrite,
    pub decided_at: DateTime<Utc>,
}

/// A Teams write as the outbox keeps it:
/// `{"write_id":…,"action":…,"presence":{…}|null,"expiry_seconds":…|null}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxWrite {
    pub write_id: u64,
    pub action: WriteAction,
    /// The presence set; `null` for a clear.
    #[serde(default)]
    pub presence: Option<OutboxPresence>,
    /// A session's expiry; `null` but for `set_session`.
    #[serde(default)]
    pub expiry_seconds: Option<u64>,
}

/// What a Teams write does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteAction {
    SetSession,
    ClearSession,
    SetPreferred,
    ClearPreferred,
}

/// A presence in an outbox write, as Graph names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxPresence {
    pub availability: String,
    pub activity: String,
}

/// Decoding the engine's and the router's per-agent state so that one
/// that no longer reads (written by another build, edited by hand) costs
/// that agent its state, not the whole store.
mod lenient {
    use serde::de::DeserializeOwned;
    use serde::{Deserialize, Deserializer};

    use crate::routing::AgentRouting;
    use crate::sync::AgentSnapshot;

    fn decode<'de, D, T>(d: D, what: &str) -> Result<Option<Box<T>>, D::Error>
    where
        D: Deserializer<'de>,
        T: DeserializeOwned,
    {
        // The tree lives only while this one field is decoded.
        let Some(value) = Option::<serde_json::Value>::deserialize(d)? else {
            return Ok(None);
        };
        match T::deserialize(value) {
            Ok(state) => Ok(Some(Box::new(state))),
            Err(e) => {
                tracing::warn!(error = %e, "a stored agent's {what} state is unreadable; that agent's starts afresh");
                Ok(None)
            }
        }
    }

    pub(super) fn sync<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Box<AgentSnapshot>>, D::Error> {
        decode(d, "sync")
    }

    pub(super) fn routing<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Box<AgentRouting>>, D::Error> {
        decode(d, "routing")
    }
}

/// Metadata keys the daemon owns.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum MetaKey {
    /// The directory's `@odata.deltaLink`.
    DeltaLink,
    /// The last sequence number a named consumer has taken (e.g. `webhook`).
    Cursor(String),
    /// The routing core's router-wide state (JSON).
    Routing,
    /// One routing queue's memory: round-robin position and totals (JSON).
    RoutingQueue(String),
    /// In a cluster: the commit log position of the last record this store
    /// holds (decimal). Only the store sets it, in the same atomic write as
    /// the record's changes ([`SledStore::commit_at`]); a [`Batch`] naming
    /// it is refused.
    LogPosition,
}

/// A Teams user as the store keeps it: what linking by UPN or mail and
/// direct dial need, nothing else (names, department and title come back
/// with the next full read; presence is never stored).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredUser {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub business_phones: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mobile_phone: Option<String>,
    /// Teams enabled; `None`: not known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teams: Option<bool>,
    /// Teams Phone (MCOEV) enabled; `None`: not known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teams_phone: Option<bool>,
}

/// The directory as stored: complete as of `delta_link`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredDirectory {
    pub users: Vec<StoredUser>,
    /// Where the directory's changes continue from; `None` when the users
    /// came from a plain list and no delta round was stored.
    pub delta_link: Option<String>,
}

/// A change to the stored directory, applied durably and all at once: a
/// reader sees the directory before it or after it. (A replace too large
/// for one write is written in parts by the sled engine; a crash between
/// them leaves no stored directory rather than part of one.)
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirectoryBatch {
    /// The users are every user there is: any other stored user goes.
    pub replace: bool,
    pub upserts: Vec<StoredUser>,
    /// Ids of users gone (any case).
    pub removes: Vec<String>,
    /// The link the directory is current to after this batch (`None`
    /// keeps the stored one).
    pub delta_link: Option<String>,
}

impl DirectoryBatch {
    /// A batch that would change nothing.
    pub fn is_empty(&self) -> bool {
        !self.replace
            && self.upserts.is_empty()
            && self.removes.is_empty()
            && self.delta_link.is_none()
    }
}

/// Which receiver path a stored notification batch came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InboxKind {
    /// Change notifications (`notificationUrl`).
    Changes,
    /// Lifecycle notifications (`lifecycleNotificationUrl`).
    Lifecycle,
}

/// A notification batch as the receiver took it: the body byte for byte,
/// before decryption and the validation tokens are checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboxItem {
    /// Its place in the inbox: from 1, strictly increasing, never reused.
    pub seq: u64,
    pub kind: InboxKind,
    /// When the receiver answered for it.
    pub received_at: DateTime<Utc>,
    pub body: Vec<u8>,
}

/// Everything one step changed, committed atomically and durably.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    /// Upserts (`Some`) and deletes (`None`) by agent id. Deleting an agent
    /// also deletes its outbox entry.
    pub agents: Vec<(String, Option<AgentRecord>)>,
    /// Upserts and deletes by agent id.
    pub outbox: Vec<(String, Option<OutboxEntry>)>,
    /// Appended in order; the store gives them their sequence numbers.
    pub events: Vec<NewEvent>,
    pub meta: Vec<(MetaKey, Option<String>)>,
    /// Upserts and deletes by contact id.
    pub contacts: Vec<(String, Option<ContactRecord>)>,
}

impl Batch {
    /// Why the store would refuse this batch before writing anything
    /// (a record listed under another id, a meta key only the store sets);
    /// `None` when it would not.
    pub fn problem(&self) -> Option<String> {
        self.outbox
            .iter()
            .find_map(|(id, entry)| entry.as_ref().and_then(|e| keys::outbox_problem(e, id)))
            .or_else(|| {
                self.agents.iter().find_map(|(id, record)| {
                    record.as_ref().and_then(|r| keys::agent_problem(r, id))
                })
            })
            .or_else(|| {
                self.contacts.iter().find_map(|(id, record)| {
                    record.as_ref().and_then(|r| keys::contact_problem(r, id))
                })
            })
            .or_else(|| {
                self.meta
                    .iter()
                    .any(|(key, _)| *key == MetaKey::LogPosition)
                    .then(|| {
                        "the commit log position is the store's to set, not a batch's".to_owned()
                    })
            })
    }

    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
            && self.outbox.is_empty()
            && self.events.is_empty()
            && self.meta.is_empty()
            && self.contacts.is_empty()
    }
}

/// What the store loaded at open, for the daemon to rebuild from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Loaded {
    pub agents: Vec<AgentRecord>,
    pub outbox: Vec<OutboxEntry>,
    pub contacts: Vec<ContactRecord>,
    /// Routing queue memories by queue name (JSON), from the meta records.
    pub routing_queues: Vec<(String, String)>,
    /// The sequence number of the last event ever committed (0: none).
    pub last_seq: u64,
}

#[derive(Debug, Error)]
pub enum StoreError {
    #[error(
        "the store in {dir} was written by a newer presence-sync (schema {found}, this build knows {known}); \
         refusing to open it. Run the newer version, or restore a backup made with `presence-sync export`"
    )]
    NewerSchema {
        dir: PathBuf,
        found: u32,
        known: u32,
    },
    #[error(
        "the store in {dir} failed its check: {problem}. Nothing was changed; \
         move the directory aside and `presence-sync import` a backup, or inspect it with `presence-sync export`"
    )]
    Damaged { dir: PathBuf, problem: String },
    #[error("the store in {dir} is in use by another process")]
    Locked { dir: PathBuf },
    #[error("storage error: {0}")]
    Io(String),
    #[error("import: line {line}: {message}")]
    Import { line: usize, message: String },
    #[error("import needs an empty state directory; {dir} already holds a store")]
    NotEmpty { dir: PathBuf },
    /// A batch the store refused before writing anything (e.g. an agent
    /// record listed under another agent's id), which would otherwise make
    /// the store fail its check at the next start.
    #[error("refused to commit: {0}")]
    InvalidBatch(String),
    /// In a cluster: another node has appended to the commit log since this
    /// one last did, so nothing was committed and this node steps down.
    #[error("not committed: {0}")]
    Fenced(String),
    /// In a cluster: the commit log did not take the batch (NATS refused or
    /// did not answer in time); nothing was committed here.
    #[error("not committed: {0}")]
    Replication(String),
}

impl From<io::Error> for StoreError {
    fn from(e: io::Error) -> Self {
        StoreError::Io(e.to_string())
    }
}

/// The storage engine the daemon uses. Calls block (the daemon runs them
/// off its async threads); every method is safe to call from several threads.
pub trait Store: Send + Sync + 'static {
    /// The id that prefixes event ids, fixed when the store was created.
    fn store_id(&self) -> &str;

    /// Everything needed to rebuild the daemon's state.
    fn load(&self) -> Result<Loaded, StoreError>;

    /// Applies a batch atomically and makes it durable before returning.
    /// Returns the committed events, with their sequence numbers.
    fn commit(&self, batch: Batch) -> Result<Vec<Event>, StoreError>;

    /// Events with `seq > after`, oldest first, at most `limit`.
    fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError>;

    /// The oldest event still kept (after retention), if any.
    fn first_seq(&self) -> Result<Option<u64>, StoreError>;

    /// The sequence number of the newest event ever committed (0: none),
    /// kept or pruned: numbers are never reused, so a consumer's cursor
    /// beyond it comes from another store (or one that was wiped).
    fn last_seq(&self) -> Result<u64, StoreError>;

    fn meta(&self, key: &MetaKey) -> Result<Option<String>, StoreError>;

    /// Drops events older than `before`, always keeping the newest `keep_at_least`.
    /// Returns how many were dropped.
    fn prune_events(
        &self,
        before: DateTime<Utc>,
        keep_at_least: usize,
    ) -> Result<usize, StoreError>;

    /// The stored directory; `None` until a complete one was committed
    /// (a batch with `replace`).
    fn directory(&self) -> Result<Option<StoredDirectory>, StoreError>;

    /// Applies a directory batch atomically and makes it durable.
    fn commit_directory(&self, batch: DirectoryBatch) -> Result<(), StoreError>;

    /// Records that the process stops cleanly with everything durable, so
    /// the next open may skip the deep check. A later commit (or pruning)
    /// withdraws it first. Called once, last, on a clean stop.
    fn mark_clean_shutdown(&self) -> Result<(), StoreError>;

    /// Appends a received notification batch to the inbox and makes it
    /// durable before returning its seq (from 1, never reused, even after
    /// [`Store::ack_inbox`] emptied the inbox).
    ///
    /// Both engines keep an inbox; the default is for stand-ins in tests
    /// that never receive notifications, and refuses.
    fn append_inbox(
        &self,
        kind: InboxKind,
        received_at: DateTime<Utc>,
        body: &[u8],
    ) -> Result<u64, StoreError> {
        let _ = (kind, received_at, body);
        Err(no_inbox())
    }

    /// Inbox items with `seq > after`, oldest first, at most `limit`.
    fn inbox(&self, after: u64, limit: usize) -> Result<Vec<InboxItem>, StoreError> {
        let _ = (after, limit);
        Err(no_inbox())
    }

    /// Drops the inbox items with `seq <= upto` (processed), durably.
    /// Returns how many were dropped.
    fn ack_inbox(&self, upto: u64) -> Result<usize, StoreError> {
        let _ = upto;
        Err(no_inbox())
    }
}

fn no_inbox() -> StoreError {
    StoreError::Io("this store keeps no notification inbox".into())
}
