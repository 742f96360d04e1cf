//! What the router answers with: its decisions (the daemon turns them into
//! events), why an offer was taken back, and how an input can be refused.

use thiserror::Error;

use super::*;

/// What the router decided; the daemon turns these into events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoutingDecision {
    Queued {
        contact: String,
        queue: String,
        priority: u8,
    },
    Offered {
        contact: String,
        queue: String,
        agent: String,
        expires: Timestamp,
    },
    Accepted {
        contact: String,
        queue: String,
        agent: String,
    },
    Declined {
        contact: String,
        queue: String,
        agent: String,
    },
    /// The agent it was offered to stopped being eligible before it
    /// answered (deleted, unlinked, a status or presence that keeps it out
    /// of routing): the contact is back in its place in the queue, no miss
    /// is counted, and the CC should stop ringing that agent.
    Withdrawn {
        contact: String,
        queue: String,
        agent: String,
        reason: WithdrawReason,
    },
    /// Ring-on-no-answer: the offer timed out.
    Rona {
        contact: String,
        queue: String,
        agent: String,
    },
    Completed {
        contact: String,
        queue: String,
        agent: String,
        wrap_up_until: Timestamp,
    },
    Abandoned {
        contact: String,
        queue: String,
        /// The agent it was offered to, if any.
        agent: Option<String>,
        /// `caller` (the API) or `queue_removed` (a reload dropped its queue).
        reason: &'static str,
    },
    Overflowed {
        contact: String,
        from: String,
        to: OverflowTarget,
        waited: Duration,
    },
    AgentPaused {
        agent: String,
        misses: u32,
    },
    AgentResumed {
        agent: String,
    },
}

/// Why an offer was taken back before the agent answered it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WithdrawReason {
    /// The agent was deleted.
    AgentRemoved,
    /// The agent lost its link to a Teams user.
    Unlinked,
    /// The agent's CC status is not routable in its profile (Lunch, ...).
    CcStatusNotRoutable,
    /// Teams shows a presence the agent's profile blocks routing for.
    TeamsPresenceBlocking,
}

impl WithdrawReason {
    pub fn as_str(self) -> &'static str {
        match self {
            WithdrawReason::AgentRemoved => "agent_removed",
            WithdrawReason::Unlinked => "unlinked",
            WithdrawReason::CcStatusNotRoutable => "cc_status_not_routable",
            WithdrawReason::TeamsPresenceBlocking => "teams_presence_blocking",
        }
    }

    /// What a closed gate says first; `None` for an open one.
    pub(super) fn of_gate(gate: Gate) -> Option<Self> {
        if !gate.linked {
            Some(WithdrawReason::Unlinked)
        } else if !gate.cc_routable {
            Some(WithdrawReason::CcStatusNotRoutable)
        } else if gate.teams_blocking {
            Some(WithdrawReason::TeamsPresenceBlocking)
        } else {
            None
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RoutingError {
    #[error("no queue `{0}`")]
    UnknownQueue(String),
    #[error("no contact `{0}`")]
    UnknownContact(String),
    #[error("no agent `{0}` in routing")]
    UnknownAgent(String),
    #[error("contact `{0}` already exists")]
    ContactExists(String),
    #[error("contact `{contact}` is {state}: it cannot be {action}")]
    WrongState {
        contact: String,
        state: &'static str,
        action: &'static str,
    },
    #[error("contact `{contact}` is offered to agent `{offered_to}`, not `{agent}`")]
    WrongAgent {
        contact: String,
        offered_to: String,
        agent: String,
    },
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

pub(super) fn invalid(field: &'static str, message: impl Into<String>) -> RoutingError {
    RoutingError::Invalid {
        field,
        message: message.into(),
    }
}
