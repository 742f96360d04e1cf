//! A contact (a call, a chat) the router places: where it waits, who it is
//! offered to, and how it ended. The record is what is persisted.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// A contact as `POST /v1/contacts` gives it.
#[derive(Clone, Debug, PartialEq)]
pub struct NewContact {
    /// `None`: the router makes one up (`ct-<serial>`).
    pub id: Option<String>,
    pub queue: String,
    /// Skills the contact needs on top of the queue's, with minimum levels.
    pub skills: BTreeMap<String, u8>,
    /// `None`: the queue's priority.
    pub priority: Option<u8>,
    /// Opaque to the router; returned in views and events.
    pub data: serde_json::Value,
}

/// How a contact ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    Completed,
    Abandoned,
    /// Overflowed to Teams users outside the router.
    Overflowed,
}

/// Where a contact is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum Phase {
    Waiting,
    Offered {
        agent: String,
        at: Timestamp,
        expires: Timestamp,
    },
    Accepted {
        agent: String,
        at: Timestamp,
    },
    Ended {
        how: Ending,
        at: Timestamp,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent: Option<String>,
    },
}

impl Phase {
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Waiting => "waiting",
            Phase::Offered { .. } => "offered",
            Phase::Accepted { .. } => "accepted",
            Phase::Ended {
                how: Ending::Completed,
                ..
            } => "completed",
            Phase::Ended {
                how: Ending::Abandoned,
                ..
            } => "abandoned",
            Phase::Ended {
                how: Ending::Overflowed,
                ..
            } => "overflowed",
        }
    }
}

/// Everything the router keeps about a contact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactRecord {
    pub id: String,
    /// Arrival order across the router; orders contacts of equal priority.
    pub serial: u64,
    /// The queue it is in now (after overflows, the last one).
    pub queue: String,
    pub skills: BTreeMap<String, u8>,
    pub priority: u8,
    #[serde(default)]
    pub data: serde_json::Value,
    pub arrived: Timestamp,
    /// When it entered `queue` (its maximum wait counts from then).
    pub queued_at: Timestamp,
    /// Queues it overflowed out of, oldest first; never overflows into one again.
    #[serde(default)]
    pub overflowed_from: Vec<String>,
    /// Offers made so far.
    pub offers: u32,
    pub phase: Phase,
}

impl ContactRecord {
    pub fn agent(&self) -> Option<&str> {
        match &self.phase {
            Phase::Offered { agent, .. } | Phase::Accepted { agent, .. } => Some(agent),
            Phase::Ended { agent, .. } => agent.as_deref(),
            Phase::Waiting => None,
        }
    }
}
