//! The engine: agents, their profiles and the order in which the rules apply.

use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use crate::mapping::{Profile, Side, StatusId, TeamsTarget, WriteMode};
use crate::presence::Presence;
use crate::time::Timestamp;

use super::agent::{AgentState, Owner};
use super::explain::{Reason, Why};
use super::loop_guard::{Suspended, Trip};
use super::restore::{self, TeamsToCc};
use super::timers::Timers;
use super::{
    AgentKey, AgentView, Decision, Flow, Input, ProfileId, Settings, SyncEvent, TeamsWrite,
    WriteId, WriteOutcome, conflict, debounce, echo, keepalive, write_for,
};

/// Input the engine cannot act on. Nothing here is a bug in the engine: each
/// is a caller mistake the API turns into a 4xx.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum EngineError {
    #[error("unknown agent")]
    UnknownAgent,
    #[error("unknown profile")]
    UnknownProfile,
    #[error("status `{status}` is not in profile `{profile}`{hint}")]
    UnknownStatus {
        status: String,
        profile: String,
        hint: String,
    },
    #[error("no profiles loaded")]
    NoProfiles,
    #[error("too many agents")]
    Full,
}

/// Counters for metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub teams_observations: u64,
    pub cc_reports: u64,
    pub teams_writes: u64,
    pub keepalives: u64,
    pub cc_requests: u64,
    /// Changes that ended before their debounce and so never propagated.
    pub debounced: u64,
    pub echoes_suppressed: u64,
    pub loop_suspensions: u64,
    pub overrides_detected: u64,
    pub write_failures: u64,
}

/// The sync engine. See the module documentation of [`crate::sync`].
#[derive(Debug)]
pub struct Engine {
    settings: Settings,
    profiles: Vec<Arc<Profile>>,
    agents: Vec<Option<AgentState>>,
    free: Vec<u32>,
    timers: Timers,
    next_write: u64,
    stats: Stats,
}

/// The parts of the engine one agent's evaluation reads or feeds, borrowed
/// apart from the agent itself.
struct Ctx<'a> {
    settings: &'a Settings,
    profile: &'a Profile,
    key: AgentKey,
    now: Timestamp,
    out: &'a mut Vec<Decision>,
    stats: &'a mut Stats,
    next_write: &'a mut u64,
    /// The earliest future time this agent needs looking at again.
    wake: Option<Timestamp>,
}

impl Ctx<'_> {
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

    fn lower_flow(&self) -> Flow {
        match self.profile.prefer {
            Side::Cc => Flow::TeamsToCc,
            Side::Teams => Flow::CcToTeams,
        }
    }
}

impl Engine {
    /// `profiles[0]` is the default profile.
    pub fn new(settings: Settings, profiles: Vec<Arc<Profile>>) -> Result<Self, EngineError> {
        if profiles.is_empty() || profiles.len() > usize::from(u16::MAX) {
            return Err(EngineError::NoProfiles);
        }
        Ok(Engine {
            settings,
            profiles,
            agents: Vec::new(),
            free: Vec::new(),
            timers: Timers::default(),
            next_write: 0,
            stats: Stats::default(),
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn profiles(&self) -> &[Arc<Profile>] {
        &self.profiles
    }

    pub fn profile_id(&self, name: &str) -> Option<ProfileId> {
        self.profiles
            .iter()
            .position(|p| p.name == name)
            .and_then(|i| u16::try_from(i).ok())
            .map(ProfileId)
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn agent_count(&self) -> usize {
        self.agents.len() - self.free.len()
    }

    pub fn add_agent(&mut self, profile: ProfileId) -> Result<AgentKey, EngineError> {
        self.profile(profile)?;
        let state = AgentState::new(profile);
        if let Some(slot) = self.free.pop() {
            self.agents[slot as usize] = Some(state);
            return Ok(AgentKey(slot));
        }
        let slot = u32::try_from(self.agents.len()).map_err(|_| EngineError::Full)?;
        self.agents.push(Some(state));
        Ok(AgentKey(slot))
    }

    /// Forgets an agent. Presence the daemon set in Teams is handed back.
    pub fn remove_agent(
        &mut self,
        now: Timestamp,
        key: AgentKey,
        out: &mut Vec<Decision>,
    ) -> Result<(), EngineError> {
        let state = self
            .agents
            .get_mut(key.0 as usize)
            .and_then(Option::take)
            .ok_or(EngineError::UnknownAgent)?;
        self.free.push(key.0);
        let mode = self.profile(state.profile)?.write_mode;
        let hand_back = match (&state.writes.active, mode) {
            (Some((TeamsTarget::Set(_), _)), WriteMode::Session) => Some(TeamsWrite::ClearSession),
            // The user set their own preference over ours: it is theirs now.
            (Some((TeamsTarget::Set(_), _)), WriteMode::Preferred)
                if state.writes.overridden_since.is_none() =>
            {
                Some(TeamsWrite::ClearPreferred)
            }
            _ => None,
        };
        if let Some(write) = hand_back {
            self.next_write += 1;
            self.stats.teams_writes += 1;
            out.push(Decision::WriteTeams {
                agent: key,
                id: WriteId(self.next_write),
                write,
                why: Why {
                    flow: Flow::CcToTeams,
                    reason: Reason::Retry,
                    at: now,
                },
            });
        }
        Ok(())
    }

    /// Moves an agent to another profile and re-derives what it should show.
    pub fn set_agent_profile(
        &mut self,
        now: Timestamp,
        key: AgentKey,
        profile: ProfileId,
        out: &mut Vec<Decision>,
    ) -> Result<(), EngineError> {
        let old = self.agent(key)?.profile;
        if old == profile {
            return Ok(());
        }
        let old_profile = Arc::clone(self.profile(old)?);
        let new_profile = Arc::clone(self.profile(profile)?);
        let state = self.agent_mut(key)?;
        state.profile = profile;
        remap_statuses(state, &old_profile, &new_profile);
        self.rederive(now, key, out)
    }

    /// Swaps in a new set of profiles (a mapping reload). Agents keep their
    /// profile by name (or fall back to the default, `profiles[0]`) and their
    /// statuses by name; then only what changed is written.
    pub fn replace_profiles(
        &mut self,
        now: Timestamp,
        profiles: Vec<Arc<Profile>>,
        out: &mut Vec<Decision>,
    ) -> Result<(), EngineError> {
        if profiles.is_empty() || profiles.len() > usize::from(u16::MAX) {
            return Err(EngineError::NoProfiles);
        }
        let old = std::mem::replace(&mut self.profiles, profiles);
        for slot in 0..self.agents.len() {
            let Some(state) = self.agents[slot].as_mut() else {
                continue;
            };
            let Some(old_profile) = old.get(usize::from(state.profile.0)) else {
                continue;
            };
            let new_index = self
                .profiles
                .iter()
                .position(|p| p.name == old_profile.name)
                .unwrap_or(0);
            state.profile = ProfileId(u16::try_from(new_index).unwrap_or(0));
            let new_profile = &self.profiles[new_index];
            remap_statuses(state, old_profile, new_profile);
            self.rederive(now, AgentKey(slot as u32), out)?;
        }
        Ok(())
    }

    /// The CC reports an agent's status by name.
    pub fn report_cc_named(
        &mut self,
        now: Timestamp,
        key: AgentKey,
        status: &str,
        out: &mut Vec<Decision>,
    ) -> Result<StatusId, EngineError> {
        let profile = self.profile(self.agent(key)?.profile)?;
        let id = profile
            .status_id(status)
            .ok_or_else(|| EngineError::UnknownStatus {
                status: status.to_string(),
                profile: profile.name.clone(),
                hint: crate::diagnostics::did_you_mean(
                    status,
                    profile.statuses.iter().map(|s| s.name.as_str()),
                ),
            })?;
        self.report_cc(now, key, id, out)?;
        Ok(id)
    }

    /// The CC reports an agent's status.
    pub fn report_cc(
        &mut self,
        now: Timestamp,
        key: AgentKey,
        status: StatusId,
        out: &mut Vec<Decision>,
    ) -> Result<(), EngineError> {
        let window = self.settings.echo_window;
        let profile = Arc::clone(self.profile(self.agent(key)?.profile)?);
        if profile.status(status).is_none() {
            return Err(EngineError::UnknownStatus {
                status: format!("#{}", status.0),
                profile: profile.name.clone(),
                hint: String::new(),
            });
        }
        self.stats.cc_reports += 1;
        let state = self.agent_mut(key)?;
        if state.cc.status() == Some(status) {
            return Ok(());
        }
        let echo = echo::is_cc_echo(&state.cc, status, now, window);
        let was_pending = debounce::cc_due(&state.cc, Duration::ZERO).is_some();
        if echo {
            // Our own request coming back: shown as the daemon's, never
            // carried back to Teams (that would latch Teams after a meeting).
            state.cc.current = Some((status, Owner::Daemon, now));
            state.cc.handled = Some(status);
            state.cc.requested = None;
        } else {
            state.cc.current = Some((status, Owner::Person, now));
            if state.restore.is_some_and(|r| r.set != status) {
                // The agent moved on by hand: whatever the daemon would have
                // restored is no longer its to restore.
                state.restore = None;
            }
        }
        if was_pending {
            self.stats.debounced += 1;
        }
        if echo {
            self.stats.echoes_suppressed += 1;
        }
        self.evaluate(now, key, out)
    }

    /// The Graph adapter read a presence.
    pub fn observe_teams(
        &mut self,
        now: Timestamp,
        key: AgentKey,
        presence: Presence,
        out: &mut Vec<Decision>,
    ) -> Result<(), EngineError> {
        self.stats.teams_observations += 1;
        let state = self.agent_mut(key)?;
        if state.teams.presence() == Some(&presence) {
            return Ok(());
        }
        let was_pending = state
            .teams
            .current
            .as_ref()
            .is_some_and(|(p, _)| state.teams.handled.as_ref() != Some(p));
        let is_echo = echo::is_teams_echo(&state.writes, &presence);
        let cleared_override = is_echo && state.writes.overridden_since.take().is_some();
        if is_echo {
            state.writes.echo_deadline = None;
        }
        state.teams.current = Some((presence.clone(), now));
        if was_pending {
            self.stats.debounced += 1;
        }
        if is_echo {
            self.stats.echoes_suppressed += 1;
        }
        out.push(Decision::Event {
            agent: key,
            event: SyncEvent::TeamsPresenceChanged { presence },
        });
        if cleared_override {
            out.push(Decision::Event {
                agent: key,
                event: SyncEvent::TeamsOverrideCleared,
            });
        }
        self.evaluate(now, key, out)
    }

    /// The Graph adapter finished a write.
    pub fn write_done(
        &mut self,
        now: Timestamp,
        key: AgentKey,
        id: WriteId,
        outcome: WriteOutcome,
        out: &mut Vec<Decision>,
    ) -> Result<(), EngineError> {
        let settings = self.settings.clone();
        let profile = Arc::clone(self.profile(self.agent(key)?.profile)?);
        let state = self.agent_mut(key)?;
        let Some((in_flight, target)) = state.writes.in_flight.clone() else {
            return Ok(());
        };
        if in_flight != id {
            return Ok(());
        }
        state.writes.in_flight = None;
        match outcome {
            WriteOutcome::Done => {
                state.writes.last_error = None;
                state.writes.retry_at = None;
                match &target {
                    TeamsTarget::Set(presence) => {
                        state.writes.active = Some((target.clone(), now));
                        state.writes.keepalive_at = (profile.write_mode == WriteMode::Session)
                            .then(|| keepalive::refresh_at(now, presence, key, &settings));
                        state.writes.echo_deadline = (state.teams.presence() != Some(presence)
                            && state.writes.overridden_since.is_none())
                        .then(|| now + settings.echo_window);
                    }
                    TeamsTarget::Clear => {
                        state.writes.active = None;
                        state.writes.keepalive_at = None;
                        state.writes.echo_deadline = None;
                        state.writes.overridden_since = None;
                    }
                }
            }
            WriteOutcome::Failed { message } => {
                self.stats.write_failures += 1;
                let state = self.agent_mut(key)?;
                state.writes.last_error = Some((message.clone(), now));
                state.writes.retry_at = Some(now + settings.retry_after_failure);
                out.push(Decision::Event {
                    agent: key,
                    event: SyncEvent::WriteFailed { message },
                });
            }
        }
        self.evaluate(now, key, out)
    }

    /// Runs every wake-up due at `now`.
    pub fn tick(&mut self, now: Timestamp, out: &mut Vec<Decision>) {
        loop {
            let agents = &mut self.agents;
            let due = self.timers.pop_due(now, |slot, at| {
                agents
                    .get(slot as usize)
                    .and_then(Option::as_ref)
                    .is_some_and(|a| a.wake_at == Some(at))
            });
            let Some(slot) = due else {
                break;
            };
            if let Some(state) = self.agents.get_mut(slot as usize).and_then(Option::as_mut) {
                state.wake_at = None;
            }
            // The slot was live a moment ago, so this cannot fail.
            let _ = self.evaluate(now, AgentKey(slot), out);
        }
    }

    /// When [`Engine::tick`] next has something to do.
    pub fn next_wakeup(&mut self) -> Option<Timestamp> {
        let agents = &self.agents;
        self.timers.next(|slot, at| {
            agents
                .get(slot as usize)
                .and_then(Option::as_ref)
                .is_some_and(|a| a.wake_at == Some(at))
        })
    }

    /// Applies one input; the same as calling the matching method.
    pub fn handle(
        &mut self,
        now: Timestamp,
        input: Input,
        out: &mut Vec<Decision>,
    ) -> Result<(), EngineError> {
        match input {
            Input::TeamsObserved { agent, presence } => {
                self.observe_teams(now, agent, presence, out)
            }
            Input::CcReported { agent, status } => self.report_cc(now, agent, status, out),
            Input::WriteDone { agent, id, outcome } => {
                self.write_done(now, agent, id, outcome, out)
            }
            Input::Tick => {
                self.tick(now, out);
                Ok(())
            }
        }
    }

    /// The combined view of one agent, for the API.
    pub fn view(&self, key: AgentKey, now: Timestamp) -> Result<AgentView, EngineError> {
        let state = self.agent(key)?;
        let profile = self.profile(state.profile)?;
        Ok(AgentView::build(state, profile, now))
    }

    /// Bytes of engine state per agent, inline and on the heap (for the benchmark).
    pub fn state_bytes(&self) -> usize {
        self.agents.capacity() * std::mem::size_of::<Option<AgentState>>()
            + self
                .agents
                .iter()
                .flatten()
                .map(AgentState::heap_bytes)
                .sum::<usize>()
            + self.timers.len() * std::mem::size_of::<(Timestamp, u32)>()
            + self.free.capacity() * 4
    }

    fn agent(&self, key: AgentKey) -> Result<&AgentState, EngineError> {
        self.agents
            .get(key.0 as usize)
            .and_then(Option::as_ref)
            .ok_or(EngineError::UnknownAgent)
    }

    fn agent_mut(&mut self, key: AgentKey) -> Result<&mut AgentState, EngineError> {
        self.agents
            .get_mut(key.0 as usize)
            .and_then(Option::as_mut)
            .ok_or(EngineError::UnknownAgent)
    }

    fn profile(&self, id: ProfileId) -> Result<&Arc<Profile>, EngineError> {
        self.profiles
            .get(usize::from(id.0))
            .ok_or(EngineError::UnknownProfile)
    }

    /// After a profile change: the handled CC status may map to a new target.
    fn rederive(
        &mut self,
        now: Timestamp,
        key: AgentKey,
        out: &mut Vec<Decision>,
    ) -> Result<(), EngineError> {
        let state = self.agent_mut(key)?;
        state.last_why = None;
        // Forgetting `handled` makes the current status pending again, so it
        // goes through the same path as any change; it held long ago, so it is
        // due at once.
        state.cc.handled = None;
        state.teams.handled = None;
        self.evaluate(now, key, out)
    }

    /// Applies every rule that is due for one agent and schedules its next wake-up.
    fn evaluate(
        &mut self,
        now: Timestamp,
        key: AgentKey,
        out: &mut Vec<Decision>,
    ) -> Result<(), EngineError> {
        let slot = key.0 as usize;
        let state = self
            .agents
            .get_mut(slot)
            .and_then(Option::as_mut)
            .ok_or(EngineError::UnknownAgent)?;
        let profile = self
            .profiles
            .get(usize::from(state.profile.0))
            .ok_or(EngineError::UnknownProfile)?;
        let mut ctx = Ctx {
            settings: &self.settings,
            profile,
            key,
            now,
            out,
            stats: &mut self.stats,
            next_write: &mut self.next_write,
            wake: None,
        };
        evaluate_agent(&mut ctx, state);
        if let Some(at) = ctx.wake {
            self.timers.schedule(key.0, at, &mut state.wake_at);
        }
        Ok(())
    }
}

/// Carries statuses across a profile change by name.
fn remap_statuses(state: &mut AgentState, old: &Profile, new: &Profile) {
    let map = |id: StatusId| new.status_id(old.status_name(id));
    state.cc.current = state
        .cc
        .current
        .and_then(|(s, owner, since)| map(s).map(|n| (n, owner, since)));
    state.cc.requested = state
        .cc
        .requested
        .and_then(|(s, at)| map(s).map(|n| (n, at)));
    state.cc.handled = state.cc.handled.and_then(map);
    state.restore = state.restore.and_then(|point| {
        let rule_name = &old.rules.get(usize::from(point.rule))?.name;
        let rule = new.rules.iter().position(|r| &r.name == rule_name)?;
        Some(restore::RestorePoint {
            rule: u16::try_from(rule).ok()?,
            previous: map(point.previous)?,
            set: map(point.set)?,
        })
    });
}

fn evaluate_agent(ctx: &mut Ctx<'_>, state: &mut AgentState) {
    let now = ctx.now;
    if state.guard.resume_if_due(now) {
        ctx.event(SyncEvent::LoopResumed);
    }
    if let Some(at) = state.guard.resume_at() {
        ctx.wake_at(at);
    }
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
    let teams_due = debounce::teams_due(&state.teams, ctx.profile, state.restore.as_ref());
    let plan = conflict::plan(cc_due, teams_due.map(|(t, _)| t), ctx.profile.prefer, now);
    for side in plan.now.into_iter().flatten() {
        match side {
            Side::Cc => propagate_cc(ctx, state),
            Side::Teams => propagate_teams(ctx, state),
        }
    }
    if let Some(at) = plan.deferred_until {
        ctx.wake_at(at);
    }
    // What is still pending (or became pending) waits for its debounce.
    if let Some(at) = debounce::cc_due(&state.cc, ctx.profile.debounce) {
        ctx.wake_at(at);
    }
    if let Some((at, _)) = debounce::teams_due(&state.teams, ctx.profile, state.restore.as_ref()) {
        ctx.wake_at(at);
    }
    // A target that changed while a write was in flight goes out now, once
    // (a failed write waits for its retry instead).
    if state.writes.retry_at.is_none() {
        send_desired(ctx, state, true);
    }
    keep_alive(ctx, state);
    retry(ctx, state);
    for at in [
        state.writes.echo_deadline,
        state.writes.keepalive_at,
        state.writes.retry_at,
    ]
    .into_iter()
    .flatten()
    {
        ctx.wake_at(at);
    }
}

/// A confirmed write that Teams still does not show after the echo window is
/// hidden by the user's own choice: report it once and stop re-writing.
fn check_override(ctx: &mut Ctx<'_>, state: &mut AgentState) {
    let Some(deadline) = state.writes.echo_deadline else {
        return;
    };
    if ctx.now < deadline {
        return;
    }
    state.writes.echo_deadline = None;
    if let Some(expected) = echo::overridden(&state.writes, state.teams.presence()) {
        let expected = expected.clone();
        state.writes.overridden_since = Some(ctx.now);
        ctx.stats.overrides_detected += 1;
        ctx.event(SyncEvent::TeamsOverrideDetected {
            expected,
            shown: state.teams.presence().cloned(),
        });
    }
}

fn propagate_cc(ctx: &mut Ctx<'_>, state: &mut AgentState) {
    let Some((status, _, since)) = state.cc.current else {
        return;
    };
    if state.guard.blocks(Flow::CcToTeams, ctx.now) {
        return;
    }
    // The other side won a conflict and asked the CC for a status: wait for
    // it (or for the request to lapse) instead of pushing a value about to change.
    if let Some((requested, at)) = state.cc.requested
        && requested != status
    {
        let lapses = at + ctx.settings.echo_window;
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
    let target = ctx.profile.target_for(status).clone();
    state.writes.desired = Some(target);
    state.writes.desired_why = Some(Arc::new(why));
    send_desired(ctx, state, true);
}

/// Sends the desired Teams target unless it is already what we last wrote.
/// Only one write per agent is in flight; a newer target waits for it and
/// replaces any older one (coalescing).
fn send_desired(ctx: &mut Ctx<'_>, state: &mut AgentState, counts_as_change: bool) {
    if state.writes.in_flight.is_some() {
        return;
    }
    let Some(desired) = state.writes.desired.clone() else {
        return;
    };
    let active_target = state.writes.active.as_ref().map(|(t, _)| t);
    if active_target.unwrap_or(&TeamsTarget::Clear) == &desired {
        return;
    }
    if desired == TeamsTarget::Clear
        && ctx.profile.write_mode == WriteMode::Preferred
        && state.writes.overridden_since.is_some()
    {
        // The user replaced our preferred presence with their own; clearing
        // now would wipe their choice, so ours is simply forgotten.
        state.writes.active = None;
        state.writes.overridden_since = None;
        return;
    }
    let why = state.writes.desired_why.clone().unwrap_or_else(|| {
        Arc::new(Why {
            flow: Flow::CcToTeams,
            reason: Reason::Retry,
            at: ctx.now,
        })
    });
    emit_write(ctx, state, desired, Why::clone(&why));
    state.writes.overridden_since = None;
    state.writes.echo_deadline = None;
    if counts_as_change {
        record_change(ctx, state, Flow::CcToTeams);
    }
    state.last_why = Some(why);
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
    state.writes.in_flight = Some((id, target));
}

fn propagate_teams(ctx: &mut Ctx<'_>, state: &mut AgentState) {
    let Some((presence, since)) = state.teams.current.clone() else {
        return;
    };
    if state.guard.blocks(Flow::TeamsToCc, ctx.now) {
        return;
    }
    let window = debounce::teams_window(ctx.profile, &presence, state.restore.as_ref());
    state.teams.handled = Some(presence.clone());
    let Some((current, owner, _)) = state.cc.current else {
        return;
    };
    let is_echo = echo::is_teams_echo(&state.writes, &presence);
    let decision = restore::decide(
        ctx.profile,
        &presence,
        current,
        owner,
        state.restore.as_ref(),
        is_echo,
    );
    let (status, reason) = match decision {
        TeamsToCc::Nothing => return,
        TeamsToCc::Fire { rule, set } => {
            state.restore = restore::after_fire(ctx.profile, state.restore, rule, current, set);
            (
                set,
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
    state.cc.requested = Some((status, ctx.now));
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
    let Some(at) = state.writes.keepalive_at else {
        return;
    };
    if ctx.now < at || state.writes.in_flight.is_some() {
        return;
    }
    state.writes.keepalive_at = None;
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

/// Tries again a write the adapter gave up on, once its pause is over.
fn retry(ctx: &mut Ctx<'_>, state: &mut AgentState) {
    let Some(at) = state.writes.retry_at else {
        return;
    };
    if ctx.now < at || state.writes.in_flight.is_some() {
        return;
    }
    state.writes.retry_at = None;
    if let Some(why) = state.writes.desired_why.as_mut() {
        let why = Arc::make_mut(why);
        why.reason = Reason::Retry;
        why.at = ctx.now;
    }
    send_desired(ctx, state, false);
}
