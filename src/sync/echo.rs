//! Echo suppression and Teams manual-override detection.
//!
//! A value that equals what the daemon itself just put on that side is its
//! own echo, not a change to carry back. Teams may take minutes to reflect a
//! write, and the CC answers a request by reporting the status again.

use std::time::Duration;

use crate::mapping::{StatusId, TeamsTarget};
use crate::presence::Presence;
use crate::time::Timestamp;

use super::agent::{CcSide, Request, WriteSide};

/// The request whose echo this report is: the status we asked for, reported
/// inside the echo window.
pub fn cc_echo_of(
    cc: &CcSide,
    status: StatusId,
    now: Timestamp,
    window: Duration,
) -> Option<Request> {
    cc.requested
        .filter(|r| r.status == status && now.since(r.at) <= window)
}

/// Teams shows the presence our confirmed or in-flight write sets, or the one
/// our previous write set, shortly after it was replaced (Teams lags).
pub fn is_teams_echo(
    writes: &WriteSide,
    presence: &Presence,
    now: Timestamp,
    window: Duration,
) -> bool {
    let active = matches!(&writes.active, Some((TeamsTarget::Set(p), _)) if p == presence);
    let in_flight = matches!(&writes.in_flight, Some((_, TeamsTarget::Set(p), _)) if p == presence);
    let previous = writes
        .previous_set
        .as_ref()
        .is_some_and(|(p, replaced)| p == presence && now.since(*replaced) <= window);
    active || in_flight || previous
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
