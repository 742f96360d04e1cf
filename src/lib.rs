//! presence-sync keeps Microsoft Teams presence and contact-center agent
//! statuses in sync in both directions and routes contacts on the combined
//! picture.
//!
//! The crate is a pure core with adapters around it:
//! - [`sync`]: the sync engine — debounce, ownership and restore, echo
//!   suppression, loop guard. Events and a time in, decisions out; no I/O.
//! - [`mapping`]: the admin-written profiles the engine follows, their loader
//!   and validation (including the static cycle check).
//! - [`config`]: the daemon's config file, its environment overrides and
//!   where its secrets are.
//! - [`check`]: `presence-sync check`, validating a config and its mappings.
//! - [`graph`]: the Teams side: token, the throttled request path, presence
//!   reads and writes, directory and delta, the presence poller.
//! - [`http`]: outbound HTTP plumbing Graph and the webhook share: the
//!   client with its timeouts, transport errors in words, `Retry-After`.
//! - [`store`]: durable state on sled, checked at open, with JSON-lines
//!   export and import for backups.
//! - [`sim`]: an embedded Microsoft Graph simulator (a fake tenant) for
//!   tests and the demo.
//! - [`webhook`]: the outbound webhook sink: the event log POSTed in order,
//!   signed, retried until the receiver takes it.
//! - [`systemd`]: the systemd notify protocol — readiness, reload, stop,
//!   status and watchdog pings.
//! - [`metrics`]: a small Prometheus registry, its text format, and the
//!   daemon's metrics.
//! - [`api`]: the contact-center HTTP API and event stream (axum), over the
//!   [`api::Service`] trait the daemon implements.
//! - [`notifications`]: Graph change notifications, pure: payloads, the
//!   clientState and validation-token checks, rich-notification decryption,
//!   duplicates and reordering.
//! - [`receiver`]: the internet-facing listener Graph posts notifications
//!   to, its durable inbox and the worker that turns them into outcomes.
//! - [`routing`]: the routing core — queues, strategies, offers, RONA,
//!   wrap-up, overflow. Events and a time in, decisions out; no I/O.
//! - [`subscriptions`]: presence subscriptions planned as a pure core —
//!   which service account watches whom, renewals, re-creation, lifecycle
//!   events. Events and a time in, actions out; no I/O.
//! - [`daemon`]: the running service: the sync loop around the engine, the
//!   Graph poller, writer and directory reader, reloads, stop and liveness.
//! - [`stop`]: the one stop signal every long-running task listens to.
//! - [`demo`]: `presence-sync demo`: simulator, daemon and a simulated
//!   contact center together.
//! - [`presence`], [`time`], [`duration`], [`diagnostics`], [`splitmix`]:
//!   shared vocabulary.

pub mod accounts;
pub mod api;
pub mod check;
pub mod cluster;
pub mod config;
pub mod consent;
pub mod daemon;
pub mod demo;
pub mod diagnostics;
pub mod directory;
pub mod duration;
pub mod events;
pub mod graph;
pub mod http;
pub mod mapping;
pub mod metrics;
pub mod notifications;
pub mod presence;
pub mod receiver;
pub mod routing;
#[doc(hidden)]
pub mod shared_fixtures;
pub mod sim;
pub mod splitmix;
pub mod stop;
pub mod store;
pub mod subscriptions;
pub mod sync;
pub mod systemd;
pub mod time;
pub mod webhook;
