//! Echo suppression and Teams manual-override detection.
//!
//! A value that equals what the daemon itself just put on that side is its
//! own echo, not a change to carry back. Teams may take minutes to reflect a
//! write, and the CC answers a request by reporting the status again.

use std::time::Duration;

use crate::mapping::{StatusId, TeamsTarget, WriteMode};
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
    let in_flight =
        matches!(writes.in_flight.as_deref(), Some((_, TeamsTarget::Set(p), _)) if p == presence);
    let previous = writes
        .previous_set
        .as_deref()
        .is_some_and(|(p, replaced)| p == presence && now.since(*replaced) <= window);
    active || in_flight || previous
}

/// Why Teams does not show our confirmed write after the echo window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hidden {
    /// The user's own choice (a preferred presence) hides it: a manual
    /// override, reported and never fought.
    Override,
    /// A session of the user's own ranks at or above ours in Graph's
    /// aggregation (DoNotDisturb > Busy > Available > Away; of equal rank
    /// Teams may show either): nothing to report as an override; ours shows
    /// once theirs drops below it.
    Outranked,
}

/// After a confirmed set, Teams must show it within the echo window; if it
/// still shows something else then, something of the user's hides our
/// write. Returns the presence we expected and why it is hidden.
pub fn hidden<'a>(
    writes: &'a WriteSide,
    shown: Option<&Presence>,
    mode: WriteMode,
) -> Option<(&'a Presence, Hidden)> {
    let Some((TeamsTarget::Set(expected), _)) = &writes.active else {
        return None;
    };
    if shown == Some(expected) {
        return None;
    }
    let outranked = mode == WriteMode::Session
        && shown.is_some_and(|shown| {
            shown.availability.session_rank() >= expected.availability.session_rank()
                && !only_picked_by_hand(shown)
        });
    Some((
        expected,
        if outranked {
            Hidden::Outranked
        } else {
            Hidden::Override
        },
    ))
}

/// Presences Teams shows only when the user picked them by hand (their
/// preferred presence): no session of theirs produces these, so one of them
/// over our write is an override whatever its rank.
fn only_picked_by_hand(presence: &Presence) -> bool {
    use crate::presence::{Activity, Availability};
    matches!(
        (&presence.availability, &presence.activity),
        (Availability::Busy, Activity::Busy)
            | (Availability::DoNotDisturb, Activity::DoNotDisturb)
            | (Availability::BeRightBack, Activity::BeRightBack)
            | (Availability::Offline, Activity::OffWork)
    )
}
