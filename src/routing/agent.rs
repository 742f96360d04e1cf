//! An agent as the router sees it: what the CC configured (skills, capacity,
//! queues), what the sync side says about its presence (the gate), and the
//! routing state it builds up (idle time, today's counters, misses, pause,
//! wrap-up). Also why an agent cannot take a contact, in words.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// One queue an agent serves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Membership {
    pub queue: String,
    /// The agent's place in the queue's agent order (top-down, round-robin
    /// and ties): lower first; agents without one come after, by id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<u32>,
}

/// What the CC configured for an agent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentSpec {
    /// Skill → level (0–100).
    pub skills: BTreeMap<String, u8>,
    /// Contacts the agent can be on at once (at least 1).
    pub capacity: u8,
    /// Queues in the agent's order: when it frees up, earlier queues go
    /// first among contacts of equal priority.
    pub queues: Vec<Membership>,
    /// Agent groups; queues listing one of them are served too, after `queues`.
    pub groups: Vec<String>,
}

/// What the sync side knows: may this person be routed at all?
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gate {
    pub linked: bool,
    /// The CC status is routable in the agent's profile.
    pub cc_routable: bool,
    /// Teams shows a presence the profile blocks routing for.
    pub teams_blocking: bool,
}

impl Gate {
    pub const OPEN: Gate = Gate {
        linked: true,
        cc_routable: true,
        teams_blocking: false,
    };

    pub fn is_open(self) -> bool {
        self.linked && self.cc_routable && !self.teams_blocking
    }
}

/// The routing state of one agent that survives a restart.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRouting {
    /// Since when the agent is idle: it last became routable or finished
    /// wrap-up.
    pub idle_since: Timestamp,
    /// The UTC day (days since the epoch) the two counters below are for.
    pub day: u64,
    pub contacts_today: u32,
    /// Microseconds on contacts today, talk and wrap-up.
    pub busy_today: u64,
    /// Offers missed in a row (declines and no-answers).
    pub misses: u32,
    /// Paused after too many misses, since then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_since: Option<Timestamp>,
    /// No offer before this (after a miss).
    pub backoff_until: Timestamp,
    /// In wrap-up until this.
    pub wrap_until: Timestamp,
}

pub(crate) const DAY_MICROS: u64 = 86_400 * 1_000_000;

pub(crate) fn day_of(t: Timestamp) -> u64 {
    t.as_micros() / DAY_MICROS
}

impl AgentRouting {
    pub fn contacts_on(&self, day: u64) -> u32 {
        if self.day == day {
            self.contacts_today
        } else {
            0
        }
    }

    pub fn busy_on(&self, day: u64) -> u64 {
        if self.day == day { self.busy_today } else { 0 }
    }

    /// Moves the counters to `day`, starting it from zero when it is new.
    pub(crate) fn roll_to(&mut self, day: u64) {
        if self.day != day {
            self.day = day;
            self.contacts_today = 0;
            self.busy_today = 0;
        }
    }

    pub(crate) fn add_busy(&mut self, day: u64, d: Duration) {
        self.roll_to(day);
        self.busy_today = self
            .busy_today
            .saturating_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }
}

/// Why an agent cannot take a contact now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Blocker {
    NotLinked,
    CcNotRoutable,
    TeamsBlocking,
    Paused { misses: u32, since: Timestamp },
    Offered { contact: String },
    AtCapacity { active: usize, capacity: u8 },
    WrapUp { until: Timestamp },
    BackingOff { until: Timestamp },
    NoQueues,
}

impl Blocker {
    /// The presence side's reasons; the agent view words those itself.
    pub fn is_presence(&self) -> bool {
        matches!(
            self,
            Blocker::NotLinked | Blocker::CcNotRoutable | Blocker::TeamsBlocking
        )
    }
}

impl fmt::Display for Blocker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Blocker::NotLinked => f.write_str("not linked to a Teams user"),
            Blocker::CcNotRoutable => f.write_str("CC status is not routable"),
            Blocker::TeamsBlocking => f.write_str("Teams presence blocks routing"),
            Blocker::Paused { misses, since } => write!(
                f,
                "paused by routing after {misses} missed offers in a row (since {}); resume it with POST /v1/agents/{{id}}/resume or a new CC status",
                since.to_utc().to_rfc3339()
            ),
            Blocker::Offered { contact } => {
                write!(f, "reserved: contact `{contact}` is offered to it")
            }
            Blocker::AtCapacity { active, capacity } => {
                write!(f, "on {active} contact(s), its capacity is {capacity}")
            }
            Blocker::WrapUp { until } => {
                write!(f, "in wrap-up until {}", until.to_utc().to_rfc3339())
            }
            Blocker::BackingOff { until } => write!(
                f,
                "backing off after a missed offer until {}",
                until.to_utc().to_rfc3339()
            ),
            Blocker::NoQueues => f.write_str("serves no queue"),
        }
    }
}
