//! What happens to one agent when anything about it changes or one of its
//! wake-ups comes: the rules of SPEC §5, applied in a fixed order.

use std::sync::Arc;

use crate::mapping::{Profile, Side, TeamsTarget, WriteMode};
use crate::time::Timestamp;

use super::agent::{AgentState, Request, RequestKind};
use super::explain::{Reason, Why};
use super::loop_guard::{Suspended, Trip};
use super::restore::{self, TeamsToCc};
use super::{
    AgentKey, Decision, Flow, Settings, Stats, SyncEvent, WriteId, WriteOutcome, conflict,
    debounce, echo, keepalive, write_for,
};

/// What one agent's evaluation reads and feeds besides the agent itself.
pub(crate) struct Ctx<'a> {
    pub settings: &'a Settings,
    pub profile: &'a Profile,
    pub key: AgentKey,
    pub now: Timestamp,
    pub out: &'a mut Vec<Decision>,
    pub stats: &'a mut Stats,
    pub next_write: &'a mut u64,
    /// The earliest future time this agent needs looking at again.
    pub wake: Option<Timestamp>,
    /// No write may go out (the app lacks the permission): the desired
    /// target, retries and keep-alives wait until writes are released.
    pub writes_held: bool,
}

impl Ctx<'_> {
    /// Asks to be woken at `at`. Times not after now are dropped: whatever
    /// was due now has just been handled, and asking for the past again
    /// would make the engine spin.
    fn wake_at(&mut self, at: Timestamp) {
        if at > self.now && self.wake.is_none_or(|w| at < w) {
            self.wake = Some(at);
        }
    }

    fn event(&mut self, event: SyncEvent) {
        self.out.push(Decision::Event {
            agent: self.key,
            event,
        });
    }

    /// The direction the loop guard gives up first: the one `prefer` does not name.
    fn lower_flow(&self) -> Flow {
        match self.profile.prefer {
            Side::Cc => Flow::TeamsToCc,
            Side::Teams => Flow::CcToTeams,
        }
    }
}

pub(crate) fn evaluate_agent(ctx: &mut Ctx<'_>, state: &mut AgentState) {
    let now = ctx.now;
    if state.guard.resume_if_due(now) {
        ctx.event(SyncEvent::LoopResumed);
    }
    if let Some(at) = state.guard.resume_at() {
        ctx.wake_at(at);
    }
    give_up_unanswered_write(ctx, state);
    // Before anything is written: a write that should have shown by now and
    // did not is an override, and must not be mistaken for a fresh change.
    check_override(ctx, state);

    // A side whose direction is off has nothing to propagate, so it can
    // neither wait for its debounce nor hold the other side in a conflict.
    if !ctx.profile.direction.cc_to_teams() {
        state.cc.handled = state.cc.status();
    }
    if !ctx.profile.direction.teams_to_cc() {
        state.teams.handled = state.teams.presence().cloned();
    }
    let cc_due = debounce::cc_due(&state.cc, ctx.profile.debounce);
    // Only a Teams change that would make the CC change can win a conflict:
    // our own echo, or a presence no rule acts on, must not hold the CC back.
    let teams_due = debounce::teams_due_now(state, ctx.profile)
        .map(|(t, _)| t)
        .filter(|_| teams_would_act(ctx, state));
    let plan = conflict::plan(cc_due, teams_due, ctx.profile.prefer, now);
    for side in plan.now.into_iter().flatten() {
        match side {
            Side::Cc => propagate_cc(ctx, state),
            Side::Teams => propagate_teams(ctx, state),
        }
    }
    if let Some(at) = plan.deferred_until {
        ctx.wake_at(at);
    }
    // A Teams change nothing acts on is still settled when it is due.
    if let Some((at, _)) = debounce::teams_due_now(state, ctx.profile)
        && at <= now
        && teams_due.is_none()
    {
        propagate_teams(ctx, state);
    }
    // What is still pending (or became pending) waits for its debounce.
    if let Some(at) = debounce::cc_due(&state.cc, ctx.profile.debounce) {
        ctx.wake_at(at);
    }
    if let Some((at, _)) = debounce::teams_due_now(state, ctx.profile) {
        ctx.wake_at(at);
    }
    // A target that changed while a write was in flight goes out now, once
    // (a failed write waits for its retry instead).
    if state.writes.retry_at.is_none() {
        send_change(ctx, state);
    }
    keep_alive(ctx, state);
    retry(ctx, state);
    let in_flight_deadline = state
        .writes
        .in_flight
        .as_deref()
        .map(|(_, _, sent)| *sent + ctx.settings.write_answer_timeout);
    for at in [
        state.writes.echo_deadline.get(),
        state.writes.keepalive_at.get(),
        state.writes.retry_at.get(),
        in_flight_deadline,
    ]
    .into_iter()
    .flatten()
    {
        ctx.wake_at(at);
    }
}

/// Records the adapter's answer to the write in flight. Returns the failure
/// message when it failed.
pub(crate) fn finish_write(
    state: &mut AgentState,
    key: AgentKey,
    mode: WriteMode,
    settings: &Settings,
    now: Timestamp,
    outcome: WriteOutcome,
) -> Option<String> {
    let (_, target, _) = *state.writes.in_flight.take()?;
    let renews_active = state.writes.active.as_ref().map(|(t, _)| t) == Some(&target);
    match outcome {
        WriteOutcome::Done => {
            state.writes.last_error = None;
            state.writes.retry_at.set(None);
            if !renews_active && let Some((TeamsTarget::Set(old), _)) = state.writes.active.take() {
                state.writes.previous_set = Some(Box::new((old, now)));
            }
            match &target {
                TeamsTarget::Set(presence) => {
                    state.writes.keepalive_at.set(
                        (mode == WriteMode::Session)
                            .then(|| keepalive::refresh_at(now, presence, key, settings)),
                    );
                    // Only a new target must show within the echo window; a
                    // keep-alive must not push an override deadline forward.
                    if !renews_active {
                        state.writes.echo_deadline.set(
                            (state.teams.presence() != Some(presence)
                                && state.writes.overridden_since.is_none())
                            .then(|| now + settings.echo_window),
                        );
                    }
                    state.writes.active = Some((target, now));
                }
                TeamsTarget::Clear => {
                    state.writes.active = None;
                    state.writes.keepalive_at.set(None);
                    state.writes.echo_deadline.set(None);
                    state.writes.overridden_since.set(None);
                    state.writes.outranked_since.set(None);
                }
            }
            None
        }
        WriteOutcome::Failed { message } => {
            state.writes.last_error = Some(Box::new((message.clone(), now)));
            if renews_active {
                // A keep-alive failed: the session still stands until it
                // lapses, so the keep-alive itself is tried again.
                state
                    .writes
                    .keepalive_at
                    .set(Some(now + settings.retry_after_failure));
            } else {
                state
                    .writes
                    .retry_at
                    .set(Some(now + settings.retry_after_failure));
            }
            Some(message)
        }
    }
}

/// A write the adapter never answered is given up as failed, so it cannot
/// block the agent's writes for good.
fn give_up_unanswered_write(ctx: &mut Ctx<'_>, state: &mut AgentState) {
    let Some(&(_, _, sent)) = state.writes.in_flight.as_deref() else {
        return;
    };
    if ctx.now < sent + ctx.settings.write_answer_timeout {
        return;
    }
    let message = "no answer from the Graph writer".to_string();
    let failed = finish_write(
        state,
        ctx.key,
        ctx.profile.write_mode,
        ctx.settings,
        ctx.now,
        WriteOutcome::Failed { message },
    );
    if let Some(message) = failed {
        ctx.stats.write_failures += 1;
        ctx.event(SyncEvent::WriteFailed { message });
    }
}

/// A confirmed write that Teams still does not show after the echo window is
/// hidden by the user's own choice (reported once, never re-written) or
/// outranked by a session of the user's own (reported once, kept).
fn check_override(ctx: &mut Ctx<'_>, state: &mut AgentState) {
    let Some(deadline) = state.writes.echo_deadline.get() else {
        return;
    };
    if ctx.now < deadline {
        return;
    }
    state.writes.echo_deadline.set(None);
    let shown = state.teams.presence();
    match echo::hidden(&state.writes, shown, ctx.profile.write_mode) {
        None => {}
        Some((expected, echo::Hidden::Override)) => {
            let event = SyncEvent::TeamsOverrideDetected {
                expected: expected.clone(),
                shown: shown.cloned(),
            };
            state.writes.overridden_since.set(Some(ctx.now));
            ctx.stats.overrides_detected += 1;
            ctx.event(event);
        }
        Some((expected, echo::Hidden::Outranked)) => {
            let event = SyncEvent::TeamsOutranked {
                expected: expected.clone(),
                shown: shown.cloned(),
            };
            state.writes.outranked_since.set(Some(ctx.now));
            ctx.stats.outranked_detected += 1;
            ctx.event(event);
        }
    }
}

fn propagate_cc(ctx: &mut Ctx<'_>, state: &mut AgentState) {
    let Some((status, _, since)) = state.cc.current else {
        return;
    };
    if state.guard.blocks(Flow::CcToTeams, ctx.now) {
        return;
    }
    // The other side won a conflict and asked the CC for a status after this
    // one was reported: wait for it (or for the request to lapse) instead of
    // pushing a value about to be replaced. A status reported after our
    // request is the agent's answer to it and goes at once.
    if let Some(request) = state.cc.requested
        && request.status != status
        && request.at >= since
    {
        let lapses = request.at + ctx.settings.echo_window;
        if ctx.now < lapses {
            ctx.wake_at(lapses);
            return;
        }
        state.cc.requested = None;
    }
    state.cc.handled = Some(status);
    let why = Why {
        flow: Flow::CcToTeams,
        reason: Reason::CcStatusHeld {
            status,
            since,
            debounce: ctx.profile.debounce,
        },
        at: ctx.now,
    };
    state.writes.desired = Some(ctx.profile.target_for(status).clone());
    state.writes.desired_status = Some(status);
    state.writes.desired_why = Some(Arc::new(why));
    send_change(ctx, state);
}

/// Sends the desired target as a change (counted by the loop guard), unless
/// a write is in flight (it goes when that one is answered: coalescing) or
/// the target is already what Teams has from us.
fn send_change(ctx: &mut Ctx<'_>, state: &mut AgentState) {
    let Some(why) = state.writes.desired_why.clone() else {
        return;
    };
    if send_if_different(ctx, state, Why::clone(&why)) {
        state.last_why = Some(why);
        record_change(ctx, state, Flow::CcToTeams);
    }
}

/// Tries again a write the adapter gave up on, once its pause is over. Not a
/// new change: the loop guard counted it when it was first sent.
fn retry(ctx: &mut Ctx<'_>, state: &mut AgentState) {
    let Some(at) = state.writes.retry_at.get() else {
        return;
    };
    if ctx.now < at || state.writes.in_flight.is_some() || ctx.writes_held {
        return;
    }
    state.writes.retry_at.set(None);
    let why = Why {
        flow: Flow::CcToTeams,
        reason: Reason::Retry,
        at: ctx.now,
    };
    send_if_different(ctx, state, why);
}

/// Writes the desired target when it differs from what Teams has from us.
/// True when a write went out.
fn send_if_different(ctx: &mut Ctx<'_>, state: &mut AgentState, why: Why) -> bool {
    if state.writes.in_flight.is_some() || ctx.writes_held {
        return false;
    }
    let Some(desired) = state.writes.desired.clone() else {
        return false;
    };
    let active = state.writes.active.as_ref().map(|(t, _)| t);
    if active.unwrap_or(&TeamsTarget::Clear) == &desired {
        return false;
    }
    if desired == TeamsTarget::Clear
        && ctx.profile.write_mode == WriteMode::Preferred
        && state.writes.overridden_since.is_some()
    {
        // The user replaced our preferred presence with their own; clearing
        // now would wipe their choice, so ours is simply forgotten.
        state.writes.active = None;
        state.writes.overridden_since.set(None);
        return false;
    }
    emit_write(ctx, state, desired, why);
    state.writes.overridden_since.set(None);
    state.writes.outranked_since.set(None);
    state.writes.echo_deadline.set(None);
    true
}

fn emit_write(ctx: &mut Ctx<'_>, state: &mut AgentState, target: TeamsTarget, why: Why) {
    *ctx.next_write += 1;
    let id = WriteId(*ctx.next_write);
    let write = write_for(&target, ctx.profile.write_mode, ctx.settings.session_expiry);
    ctx.stats.teams_writes += 1;
    ctx.out.push(Decision::WriteTeams {
        agent: ctx.key,
        id,
        write,
        why,
    });
    state.writes.in_flight = Some(Box::new((id, target, ctx.now)));
}

/// What the Teams → CC direction would do now for the pending presence.
fn teams_would_act(ctx: &Ctx<'_>, state: &AgentState) -> bool {
    let (Some((presence, _)), Some((current, owner, _))) = (&state.teams.current, state.cc.current)
    else {
        return false;
    };
    let is_echo = echo::is_teams_echo(&state.writes, presence, ctx.now, ctx.settings.echo_window);
    restore::decide(
        ctx.profile,
        presence,
        current,
        owner,
        state.restore.as_ref(),
        is_echo,
    ) != TeamsToCc::Nothing
}

fn propagate_teams(ctx: &mut Ctx<'_>, state: &mut AgentState) {
    let Some((presence, since)) = state.teams.current.clone() else {
        return;
    };
    if state.guard.blocks(Flow::TeamsToCc, ctx.now) {
        return;
    }
    let window = debounce::teams_window(
        ctx.profile,
        &presence,
        state.cc.status(),
        state.restore.as_ref(),
    );
    state.teams.handled = Some(presence.clone());
    let Some((current, owner, _)) = state.cc.current else {
        return;
    };
    let is_echo = echo::is_teams_echo(&state.writes, &presence, ctx.now, ctx.settings.echo_window);
    let decision = restore::decide(
        ctx.profile,
        &presence,
        current,
        owner,
        state.restore.as_ref(),
        is_echo,
    );
    let (status, kind, reason) = match decision {
        TeamsToCc::Nothing => return,
        TeamsToCc::Fire { rule, set } => {
            state.restore = restore::after_fire(ctx.profile, state.restore, rule, current, set);
            (
                set,
                RequestKind::Rule,
                Reason::RuleFired {
                    rule,
                    presence,
                    since,
                    debounce: window,
                    replaced: current,
                },
            )
        }
        TeamsToCc::Restore { rule, previous } => {
            state.restore = None;
            (
                previous,
                RequestKind::Restore,
                Reason::Restored {
                    rule,
                    presence: Some(presence),
                    since,
                    debounce: window,
                },
            )
        }
    };
    let why = Why {
        flow: Flow::TeamsToCc,
        reason,
        at: ctx.now,
    };
    ctx.stats.cc_requests += 1;
    ctx.out.push(Decision::RequestCc {
        agent: ctx.key,
        status,
        why: why.clone(),
    });
    state.cc.requested = Some(Request {
        status,
        at: ctx.now,
        kind,
    });
    state.last_why = Some(Arc::new(why));
    record_change(ctx, state, Flow::TeamsToCc);
}

fn record_change(ctx: &mut Ctx<'_>, state: &mut AgentState, flow: Flow) {
    let lower = ctx.lower_flow();
    if let Trip::Suspended {
        what,
        until,
        changes,
    } = state
        .guard
        .record(flow, lower, ctx.now, &ctx.settings.loop_limits)
    {
        ctx.stats.loop_suspensions += 1;
        let flows = match what {
            Suspended::One(f) => vec![f],
            Suspended::Both => vec![Flow::CcToTeams, Flow::TeamsToCc],
        };
        ctx.event(SyncEvent::LoopSuspended {
            flows,
            until,
            changes,
        });
        ctx.wake_at(until);
    }
}

/// Re-asserts our session before Graph fades or expires it.
fn keep_alive(ctx: &mut Ctx<'_>, state: &mut AgentState) {
    let Some(at) = state.writes.keepalive_at.get() else {
        return;
    };
    if ctx.now < at || state.writes.in_flight.is_some() || ctx.writes_held {
        return;
    }
    state.writes.keepalive_at.set(None);
    if ctx.profile.write_mode != WriteMode::Session {
        return;
    }
    let Some((TeamsTarget::Set(presence), _)) = state.writes.active.clone() else {
        return;
    };
    if state.writes.desired != Some(TeamsTarget::Set(presence.clone())) {
        return;
    }
    ctx.stats.keepalives += 1;
    let why = Why {
        flow: Flow::CcToTeams,
        reason: Reason::KeepAlive,
        at: ctx.now,
    };
    emit_write(ctx, state, TeamsTarget::Set(presence), why);
}
