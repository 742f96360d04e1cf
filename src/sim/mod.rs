//! An embedded Microsoft Graph simulator: a fake tenant for tests and the
//! demo (SPEC §9).
//!
//! The pure core:
//! - [`tenant`] (with [`directory`] and [`sessions`]): users, presence
//!   sessions, aggregation, the delta log — no I/O, time passed in;
//! - [`auth`]: the app registration and issued tokens; [`throttle`]: the
//!   request budget; [`script`]: scripted drift through Teams states;
//!   [`rng`]: the seeded PRNG behind every generated value; [`clock`]: the
//!   clock the adapter reads (real, or manual for tests).

pub mod auth;
pub mod clock;
pub mod directory;
pub mod rng;
pub mod script;
pub mod sessions;
pub mod tenant;
pub mod throttle;

pub use clock::SimClock;
