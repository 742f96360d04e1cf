//! Presence subscriptions in the running daemon: the worker that runs the
//! [planner](crate::subscriptions) against Graph with each service
//! account's token, and the coverage that decides which poller reads whom.
//!
//! - [`coverage`]: covered users are read by the reconciliation poller,
//!   everyone else by their tier's poller at the normal freshness.
//! - [`calls`]: Graph's subscription calls as a trait, for the worker.
//! - [`worker`]: the loop: plan, call, apply, move users between pollers.

pub mod calls;
pub mod coverage;
pub mod graph_calls;
pub mod inflow;
pub mod metrics;
pub mod setup;
pub mod worker;

pub use calls::{CallFailure, CallFuture, Listed, SubscriptionCalls};
pub use coverage::{Coverage, Routed, Tier};
pub use inflow::{Inflow, ReadNow, ReadNowStats};
pub use worker::{PollerLists, SubscriptionWorker, SubscriptionsStatus};
