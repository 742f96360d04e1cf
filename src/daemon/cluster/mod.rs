//! The daemon as one node of an active/standby pair (`[cluster]`,
//! docs/cluster.md). Without `[cluster]` none of this runs.
//!
//! | concept | module |
//! |---|---|
//! | what a node knows of itself and the cluster (`/readyz`, metrics) | [`status`] |

pub mod status;
