//! The contact-center HTTP API (SPEC §3): agents, statuses, the event stream
//! over WebSocket, health, readiness and metrics, and its OpenAPI description.

pub mod auth;
pub mod error;
pub mod extract;
pub mod model;
pub mod service;

pub use error::ApiError;
pub use service::Service;
