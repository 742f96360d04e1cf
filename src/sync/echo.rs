//! Echo suppression and Teams manual-override detection.
//!
//! A value that equals what the daemon itself just put on that side is its
//! own echo, not a change to carry back. Teams may take minutes to reflect a
//! write, and the CC answers a request by reporting the status again.

use std::time::Duration;

use crate::mapping::{StatusId, TeamsTarget};
use crate::presence::Presence;
use crate::time::Timestamp;

use super::agent::{CcSide, WriteSide};

/// The CC reported the status we asked it for, inside the echo window.
pub fn is_cc_echo(cc: &CcSide, status: StatusId, now: Timestamp, window: Duration) -> bool {
    cc.requested
        .is_some_and(|(requested, at)| requested == status && now.since(at) <= window)
}

/// Teams shows the presence our confirmed or in-flight write sets.
pub fn is_teams_echo(writes: &WriteSide, presence: &Presence) -> bool {
    let active = matches!(&writes.active, Some((TeamsTarget::Set(p), _)) if p == presence);
    let in_flight = matches!(&writes.in_flight, Some((_, TeamsTarget::Set(p))) if p == presence);
    active || in_flight
}

/// After a confirmed set, Teams must show it within the echo window; if it
/// still shows something else then, the user's own choice hides our write.
/// Returns the presence we expected when an override is detected.
pub fn overridden<'a>(writes: &'a WriteSide, shown: Option<&Presence>) -> Option<&'a Presence> {
    let Some((TeamsTarget::Set(expected), _)) = &writes.active else {
        return None;
    };
    (shown != Some(expected)).then_some(expected)
}
