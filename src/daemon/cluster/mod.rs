//! The daemon as one node of an active/standby pair (`[cluster]`,
//! docs/cluster.md). Without `[cluster]` none of this runs.
//!
//! | concept | module |
//! |---|---|
//! | what a node knows of itself and the cluster (`/readyz`, metrics) | [`status`] |
//! | the API of a node that is not active: redirects to the active one | [`standby_api`] |
//! | a term as the active node: what the daemon is given, the NATS side as traits | [`term`] |
//! | committed events published to NATS for many consumers | [`events`] |
//! | the store's periodic snapshot | [`snapshots`] |
//! | the node: standby, taking the lease, a term as active, stepping down | [`node`] |
//! | a standby applying the commit log to its store, from a snapshot when it must | [`follower`] |

pub mod events;
pub mod follower;
pub mod node;
pub mod snapshots;
pub mod standby_api;
pub mod status;
pub mod term;
