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
//! | the router and the state it keeps | [`router`] (`router/mod.rs`) |
//! | what the router answers: decisions, withdraw reasons, errors | `router/decision.rs` |
//! | the queues it indexes: members, waiting contacts, strategy keys | `router/index.rs` |
//! | agents: added, removed, presence gate, resume, whether free | `router/agents.rs` |
//! | contacts: queued, accepted, declined, completed, abandoned, RONA, pause | `router/contacts.rs` |
//! | timers: offer timeouts, maximum waits, wrap-up and back-off ends | `router/timers.rs` |
//! | who takes which contact after each input, overflow | `router/dispatch.rs` |
//! | what the router shows (eligibility and why not, queues) | `router/views.rs` |
//! | what it persists and how it is restored | `router/persist.rs` |

// Purity enforced: no clock, no I/O, no runtime here (clippy.toml).
#![deny(clippy::disallowed_methods, clippy::disallowed_types)]

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
    RoutingDecision, RoutingError, WithdrawReason,
};
