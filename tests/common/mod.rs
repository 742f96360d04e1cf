//! Helpers shared by integration tests. Each test binary uses a subset, so
//! unused items here are expected.
#![allow(dead_code)]

pub mod certificate;
pub mod cluster_kit;
pub mod connect_proxy;
pub mod daemon_kit;
pub mod graph_kit;
pub mod nats;
pub mod proc_kit;
pub mod process_kit;
pub mod shared;
pub mod sim_kit;
pub mod webdriver;
