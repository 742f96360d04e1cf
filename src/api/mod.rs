//! The contact-center HTTP API (SPEC §3): agents, statuses, the event stream
//! over WebSocket, health, readiness and metrics, and its OpenAPI description.
//!
//! The routes depend only on [`Service`], which the daemon implements.
//! - [`routes`]: the route table (method, path, auth, handler and
//!   documentation of every route), the router built from it, the error
//!   shape for everything axum answers itself;
//! - [`handlers`]: the handler behind each route;
//! - [`extract`]: path, query and body extractors that fail with [`ApiError`];
//! - [`validate`]: the id, name and text rules input is held to;
//! - [`auth`]: the bearer token check;
//! - [`events_stream`]: `GET /v1/events`, resumable without gaps;
//! - [`shutdown`]: the stop signal shared by the server and event streams;
//! - [`openapi`]: the OpenAPI 3.1 document, its operations rendered from the
//!   route table;
//! - [`board`]: the status board at `/` (its files, the security headers of
//!   every answer) and its live stream;
//! - [`model`], [`error`], [`service`]: the contracts with the daemon.

pub mod auth;
pub mod board;
pub mod error;
pub mod events_stream;
pub mod extract;
pub mod handlers;
pub mod model;
pub mod openapi;
pub mod routes;
pub mod server;
pub mod service;
pub mod shutdown;
pub mod validate;

#[cfg(test)]
pub(crate) mod tests;

pub use error::ApiError;
pub use routes::{ApiSettings, ROUTES, router};
pub use server::serve;
pub use service::Service;
pub use shutdown::Shutdown;
