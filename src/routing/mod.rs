//! The routing core: a presence-aware agent selector (SPEC §6). Like the
//! sync engine, a deterministic core with no I/O and no clock: inputs and
//! the current time in, [`RoutingDecision`]s out.
//!
//! | concept | module |
//! |---|---|
//! | queues, their settings and overflow targets | [`queue`] |
//! | how a queue picks an agent (the seven strategies) | [`strategy`] |
//! | agents: skills, capacity, queues, presence gate, counters, why not eligible | [`agent`] |
//! | contacts and their lifecycle | [`contact`] |
//! | the router: timers, offers, RONA, wrap-up, pause, overflow, dispatch | [`router`] |

pub mod agent;
pub mod contact;
pub mod queue;
pub mod router;
pub mod strategy;

#[cfg(test)]
mod tests;

pub use agent::{AgentRouting, AgentSpec, Blocker, Gate, Membership};
pub use contact::{ContactRecord, Ending, NewContact, Phase};
pub use queue::{OverflowTarget, QueueSettings, Strategy};
pub use router::{
    AgentRoutingView, Changes, Globals, QueueFit, QueueMemory, QueueTotals, QueueView, Router,
    RoutingDecision, RoutingError,
};
