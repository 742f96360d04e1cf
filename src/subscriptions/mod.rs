//! Presence subscriptions planned as a pure core: which service account
//! watches which users, when each subscription is created, renewed,
//! reauthorized or re-created, and who is covered by one at any moment.
//! Events and a time in, actions out; the daemon's subscription worker
//! (`daemon/subscriptions.rs`) makes the Graph calls and reports back.
//!
//! Microsoft's rules shape it (FACTS.md, "Change notifications"): presence
//! subscriptions need a signed-in account, one per account per app, at most
//! 650 users each and 60 minutes of life; changing a subscription's users is
//! not documented, so a change of members is a delete and a create.
//!
//! - [`assign`]: the users each account should watch: agents first, kept
//!   where they are, newcomers to the least loaded account.
//! - [`renewal`]: when a subscription renews, spread so that accounts
//!   created together do not all renew in the same second.
//! - [`planner`]: the state of every account's subscription and the actions
//!   due at a time.
//!
//! A user counts as *covered* only while its account is healthy and its
//! subscription is active and unexpired; everyone else is polled at the
//! normal freshness, and covered users are still read at the slower
//! reconciliation rate.

#![deny(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod assign;
pub mod planner;
pub mod renewal;

use std::sync::Arc;

pub use assign::{Assignment, Wanted, assign};
pub use planner::{
    Action, Failure, Outcome, Planner, PlannerSettings, SlotReport, SlotState, SubscriptionsReport,
};
pub use renewal::renew_at;

/// An Entra user object id.
pub type UserId = Arc<str>;

/// A service account, by its UPN as configured (compared without case).
pub type AccountId = Arc<str>;

/// Microsoft's limit of users a presence subscription may watch.
pub const MAX_USERS_PER_SUBSCRIPTION: usize = 650;
