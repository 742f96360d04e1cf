//! The engine: the agents, their profiles, their wake-ups, and the inputs
//! adapters feed. What happens to one agent lives in [`super::evaluate`].

use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use crate::mapping::{Profile, StatusId, TeamsTarget, WriteMode};
use crate::presence::Presence;
use crate::time::Timestamp;

use std::collections::HashMap;

use super::agent::{AgentState, Owner, RequestKind, UnknownStatus};
use super::evaluate::{self, Ctx};
use super::explain::{Reason, Why};
use super::restore;
use super::snapshot::{self, AgentSnapshot};
use super::timers::Timers;
use super::{
    AgentKey, AgentView, Decision, Flow, Input, ProfileId, Settings, SyncEvent, TeamsWrite,
    WriteId, WriteOutcome, debounce, echo,
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
    #[error("more than {} profiles", u16::MAX)]
    TooManyProfiles,
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
    /// Confirmed writes found hidden by a session of the user's own that
    /// ranks above them (not overrides).
    pub outranked_detected: u64,
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
    /// Why no write may go out now (the app lacks the permission to write
    /// presence); `None` while writes flow.
    writes_held: Option<String>,
}

fn check_profiles(profiles: &[Arc<Profile>]) -> Result<(), EngineError> {
    match profiles.len() {
        0 => Err(EngineError::NoProfiles),
        n if n > usize::from(u16::MAX) => Err(EngineError::TooManyProfiles),
        _ => Ok(()),
    }
}

impl Engine {
    /// `profiles[0]` is the default profile.
    pub fn new(settings: Settings, profiles: Vec<Arc<Profile>>) -> Result<Self, EngineError> {
        check_profiles(&profiles)?;
        Ok(Engine {
            settings,
            profiles,
            agents: Vec::new(),
            free: Vec::new(),
            timers: Timers::default(),
            next_write: 0,
            stats: Stats::default(),
            writes_held: None,
        })
    }

    /// Holds every Teams write (`Some(why)`) or releases them (`None`).
    /// Held, each agent keeps its newest desired target and nothing is
    /// sent, retried or kept alive; released, every agent is looked at
    /// again at once, so the newest target goes out (one write an agent)
    /// without waiting for a retry pause.
    pub fn set_writes_held(
        &mut self,
        now: Timestamp,
        why: Option<String>,
        out: &mut Vec<Decision>,
    ) {
        let released = self.writes_held.is_some() && why.is_none();
        self.writes_held = why;
        if !released {
            return;
        }
        for slot in 0..self.agents.len() {
            let Some(state) = self.agents.get_mut(slot).and_then(Option::as_mut) else {
                continue;
            };
            // A pause after a refused write was the refusal of a write the
            // app may now make.
            state
                .writes
                .retry_at
                .set(state.writes.retry_at.get().map(|at| at.min(now)));
            if let Ok(slot) = u32::try_from(slot) {
                let _ = self.evaluate(now, AgentKey(slot), out);
            }
        }
    }

    /// Why writes are held, if they are.
    pub fn writes_held(&self) -> Option<&str> {
        self.writes_held.as_deref()
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
        grow_by_an_eighth(&mut self.agents);
        self.agents.push(Some(state));
        Ok(AgentKey(slot))
    }

    /// Makes room for `more` agents at once (a restore knows how many),
    /// so the agents' storage is not grown by doubling past what it needs.
    pub fn reserve(&mut self, more: usize) {
        self.agents
            .reserve_exact(more.saturating_sub(self.free.len()));
    }

    /// An agent's state as plain data, for the store.
    pub fn snapshot(&self, key: AgentKey) -> Result<AgentSnapshot, EngineError> {
        let state = self.agent(key)?;
        Ok(snapshot::take(state, self.profile(state.profile)?))
    }

    /// Adds an agent with the state a snapshot recorded (after a restart).
    /// A write owed when the snapshot was taken goes out now; the rest
    /// (debounces under way, restore points, suspensions) carries on from
    /// where it was.
    pub fn restore_agent(
        &mut self,
        now: Timestamp,
        profile: ProfileId,
        snapshot: &AgentSnapshot,
        out: &mut Vec<Decision>,
    ) -> Result<AgentKey, EngineError> {
        let key = self.add_agent(profile)?;
        let profile = Arc::clone(self.profile(profile)?);
        let echo_window = self.settings.echo_window;
        let state = self.agent_mut(key)?;
        let fresh = std::mem::replace(state, AgentState::new(state.profile));
        *state = snapshot::rebuild(snapshot, fresh, &profile, now);
        // What Teams showed before the restart is old news: a write must
        // get a fresh echo window to show before it counts as overridden.
        if let Some(deadline) = state.writes.echo_deadline.get()
            && deadline <= now
        {
            state.writes.echo_deadline.set(Some(now + echo_window));
        }
        if state.writes.desired.is_some() {
            state.writes.desired_why = Some(Arc::new(Why {
                flow: Flow::CcToTeams,
                reason: Reason::Resumed,
                at: now,
            }));
        }
        // The mapping was edited while the daemon was down.
        if let Some(unknown) = &state.cc.unknown {
            out.push(Decision::Event {
                agent: key,
                event: SyncEvent::StatusNotInProfile {
                    status: unknown.name.clone(),
                    teams: profile.default_teams.clone(),
                },
            });
        }
        self.evaluate(now, key, out)?;
        Ok(key)
    }

    /// A status the CC reported before the agent was in the engine (kept
    /// while it was not linked), by name and as of `since`. One its profile
    /// does not know is held as such, as after a mapping change.
    pub fn restore_cc_named(
        &mut self,
        now: Timestamp,
        key: AgentKey,
        status: &str,
        since: Timestamp,
        out: &mut Vec<Decision>,
    ) -> Result<(), EngineError> {
        let profile = Arc::clone(self.profile(self.agent(key)?.profile)?);
        if let Some(id) = profile.status_id(status) {
            return self.report_cc_since(now, key, id, since, out);
        }
        let state = self.agent_mut(key)?;
        state.cc.current = None;
        state.cc.handled = None;
        state.cc.unknown = Some(Box::new(UnknownStatus {
            name: status.to_string(),
            owner: Owner::Person,
            since: since.min(now),
        }));
        state.writes.desired_status = None;
        state.writes.desired = Some(profile.default_teams.clone());
        state.writes.desired_why = Some(Arc::new(Why {
            flow: Flow::CcToTeams,
            reason: Reason::StatusNotInProfile,
            at: now,
        }));
        out.push(Decision::Event {
            agent: key,
            event: SyncEvent::StatusNotInProfile {
                status: status.to_string(),
                teams: profile.default_teams.clone(),
            },
        });
        self.evaluate(now, key, out)
    }

    /// Forgets an agent. Presence the daemon set in Teams (or is setting) is
    /// handed back; the answer to that write will find no agent, which the
    /// adapter may ignore.
    pub fn remove_agent(
        &mut self,
        now: Timestamp,
        key: AgentKey,
        out: &mut Vec<Decision>,
    ) -> Result<(), EngineError> {
        let mode = self.profile(self.agent(key)?.profile)?.write_mode;
        let state = self
            .agents
            .get_mut(key.0 as usize)
            .and_then(Option::take)
            .ok_or(EngineError::UnknownAgent)?;
        self.free.push(key.0);
        let ours = matches!(state.writes.active, Some((TeamsTarget::Set(_), _)))
            || matches!(
                state.writes.in_flight.as_deref(),
                Some((_, TeamsTarget::Set(_), _))
            );
        let hand_back = match mode {
            _ if !ours => None,
            WriteMode::Session => Some(TeamsWrite::ClearSession),
            // The user set their own preference over ours: it is theirs now.
            WriteMode::Preferred if state.writes.overridden_since.is_some() => None,
            WriteMode::Preferred => Some(TeamsWrite::ClearPreferred),
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
                    reason: Reason::AgentRemoved,
                    at: now,
                },
            });
        }
        Ok(())
    }

    /// Moves an agent to another profile; what it shows is derived again.
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
        let held = remap_statuses(state, &old_profile, &new_profile, now);
        report_held(key, held, out);
        self.rederive(now, key, out)
    }

    /// Swaps in a new set of profiles (a mapping reload). Agents keep their
    /// profile by name (or fall back to the default, `profiles[0]`) and their
    /// statuses by name; what has been handled stays handled, and only
    /// targets the new mapping changes are written.
    pub fn replace_profiles(
        &mut self,
        now: Timestamp,
        profiles: Vec<Arc<Profile>>,
        out: &mut Vec<Decision>,
    ) -> Result<(), EngineError> {
        self.replace_profiles_assigning(now, profiles, &HashMap::new(), out)
    }

    /// [`Engine::replace_profiles`], with the profile some agents have in
    /// the new set (their groups may point elsewhere now): each agent goes
    /// from its old profile to its new one in one step. A status the new
    /// profile does not know is kept (see [`SyncEvent::StatusNotInProfile`]).
    pub fn replace_profiles_assigning(
        &mut self,
        now: Timestamp,
        profiles: Vec<Arc<Profile>>,
        assign: &HashMap<AgentKey, ProfileId>,
        out: &mut Vec<Decision>,
    ) -> Result<(), EngineError> {
        check_profiles(&profiles)?;
        let old = std::mem::replace(&mut self.profiles, profiles);
        for slot in 0..self.agents.len() {
            let Some(state) = self.agents[slot].as_mut() else {
                continue;
            };
            let Some(old_profile) = old.get(usize::from(state.profile.0)) else {
                continue;
            };
            let key = AgentKey(slot as u32);
            let new_index = assign
                .get(&key)
                .map(|p| usize::from(p.0))
                .filter(|i| *i < self.profiles.len())
                .or_else(|| {
                    self.profiles
                        .iter()
                        .position(|p| p.name == old_profile.name)
                })
                .unwrap_or(0);
            state.profile = ProfileId(u16::try_from(new_index).unwrap_or(0));
            let held = remap_statuses(state, old_profile, &self.profiles[new_index], now);
            report_held(key, held, out);
            self.rederive(now, key, out)?;
        }
        Ok(())
    }

    /// The CC reports an agent's status by name, as of now.
    pub fn report_cc_named(
        &mut self,
        now: Timestamp,
        key: AgentKey,
        status: &str,
        out: &mut Vec<Decision>,
    ) -> Result<StatusId, EngineError> {
        let id = self.status_id(key, status)?;
        self.report_cc_since(now, key, id, now, out)?;
        Ok(id)
    }

    /// Resolves a status name in the agent's profile, with the nearest name
    /// in the error.
    pub fn status_id(&self, key: AgentKey, status: &str) -> Result<StatusId, EngineError> {
        let profile = self.profile(self.agent(key)?.profile)?;
        profile
            .status_id(status)
            .ok_or_else(|| EngineError::UnknownStatus {
                status: status.to_string(),
                profile: profile.name.clone(),
                hint: crate::diagnostics::did_you_mean(
                    status,
                    profile.statuses.iter().map(|s| s.name.as_str()),
                ),
            })
    }

    /// The CC reports an agent's status, as of now.
    pub fn report_cc(
        &mut self,
        now: Timestamp,
        key: AgentKey,
        status: StatusId,
        out: &mut Vec<Decision>,
    ) -> Result<(), EngineError> {
        self.report_cc_since(now, key, status, now, out)
    }

    /// The CC reports an agent's status and when it changed (`at` in the
    /// API); the debounce counts from then. A time in the future counts as now.
    pub fn report_cc_since(
        &mut self,
        now: Timestamp,
        key: AgentKey,
        status: StatusId,
        since: Timestamp,
        out: &mut Vec<Decision>,
    ) -> Result<(), EngineError> {
        self.report_cc_by(now, key, status, since, Owner::Person, out)
    }

    /// Routing puts the agent in a status for a contact, as of now. The
    /// sync rules treat it as the agent's own; the view says `routing`.
    pub fn report_cc_routed(
        &mut self,
        now: Timestamp,
        key: AgentKey,
        status: StatusId,
        out: &mut Vec<Decision>,
    ) -> Result<(), EngineError> {
        self.report_cc_by(now, key, status, now, Owner::Routing, out)
    }

    /// A CC status from `by` (a person or routing); the CC's echo of a
    /// status the daemon asked for is the daemon's whoever reports it.
    fn report_cc_by(
        &mut self,
        now: Timestamp,
        key: AgentKey,
        status: StatusId,
        since: Timestamp,
        by: Owner,
        out: &mut Vec<Decision>,
    ) -> Result<(), EngineError> {
        let since = since.min(now);
        let window = self.settings.echo_window;
        let profile = self.profile(self.agent(key)?.profile)?;
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
        // A status the profile knows replaces one it did not.
        state.cc.unknown = None;
        let was_pending = debounce::cc_due(&state.cc, Duration::ZERO).is_some();
        let echo = echo::cc_echo_of(&state.cc, status, now, window);
        match echo {
            Some(request) => {
                state.cc.current = Some((status, Owner::Daemon, since));
                state.cc.requested = None;
                if request.kind == RequestKind::Rule {
                    // A status a rule set is never carried back to Teams:
                    // that would hold Teams busy after the meeting ends.
                    state.cc.handled = Some(status);
                }
                // A restored status is the agent's own again and shows in
                // Teams as mapped, after its debounce like any change.
            }
            None => {
                state.cc.current = Some((status, by, since));
                if state.restore.is_some_and(|r| r.set != status) {
                    // The agent moved on by hand: whatever the daemon would
                    // have restored is no longer its to restore.
                    state.restore = None;
                }
            }
        }
        if echo.is_some() {
            self.stats.echoes_suppressed += 1;
        } else if was_pending {
            self.stats.debounced += 1;
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
        let window = self.settings.echo_window;
        let state = self.agent_mut(key)?;
        if state.teams.presence() == Some(&presence) {
            self.stats.teams_observations += 1;
            return Ok(());
        }
        let was_pending = state
            .teams
            .current
            .as_ref()
            .is_some_and(|(p, _)| state.teams.handled.as_ref() != Some(p));
        let is_echo = echo::is_teams_echo(&state.writes, &presence, now, window);
        let shows_active =
            matches!(&state.writes.active, Some((TeamsTarget::Set(p), _)) if *p == presence);
        let cleared_override = shows_active && state.writes.overridden_since.take().is_some();
        if shows_active {
            state.writes.echo_deadline.set(None);
            state.writes.outranked_since.set(None);
        }
        state.teams.current = Some((presence.clone(), now));
        self.stats.teams_observations += 1;
        if is_echo {
            self.stats.echoes_suppressed += 1;
        } else if was_pending {
            self.stats.debounced += 1;
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

    /// The Graph adapter finished a write. `Ok(false)` when the answer was
    /// for a write given up on or superseded, and so ignored.
    pub fn write_done(
        &mut self,
        now: Timestamp,
        key: AgentKey,
        id: WriteId,
        outcome: WriteOutcome,
        out: &mut Vec<Decision>,
    ) -> Result<bool, EngineError> {
        let settings = self.settings.clone();
        let mode = self.profile(self.agent(key)?.profile)?.write_mode;
        let state = self.agent_mut(key)?;
        if !matches!(state.writes.in_flight.as_deref(), Some(&(in_flight, _, _)) if in_flight == id)
        {
            // An answer to a write that was given up on or superseded.
            return Ok(false);
        }
        let failed = evaluate::finish_write(state, key, mode, &settings, now, outcome);
        if let Some(message) = failed {
            self.stats.write_failures += 1;
            out.push(Decision::Event {
                agent: key,
                event: SyncEvent::WriteFailed { message },
            });
        }
        self.evaluate(now, key, out)?;
        Ok(true)
    }

    /// Runs every wake-up due at `now`.
    pub fn tick(&mut self, now: Timestamp, out: &mut Vec<Decision>) {
        loop {
            let agents = &mut self.agents;
            let due = self.timers.pop_due(now, |slot, at| {
                agents
                    .get(slot as usize)
                    .and_then(Option::as_ref)
                    .is_some_and(|a| a.wake_at.get() == Some(at))
            });
            let Some(slot) = due else {
                break;
            };
            if let Some(state) = self.agents.get_mut(slot as usize).and_then(Option::as_mut) {
                state.wake_at.set(None);
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
                .is_some_and(|a| a.wake_at.get() == Some(at))
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
                self.write_done(now, agent, id, outcome, out).map(drop)
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
        let mut view = AgentView::build(state, profile, &self.settings, now);
        if profile.direction.cc_to_teams() {
            view.writes_held = self.writes_held.clone();
        }
        Ok(view)
    }

    /// Bytes of engine state for all agents, inline and on the heap (for the benchmark).
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

    /// After a profile change: the status Teams was last derived from may
    /// now map to another target. Only that is re-derived; what either side
    /// already handled stays handled, so no rule fires again on an old
    /// presence and no daemon-set status is pushed to Teams.
    fn rederive(
        &mut self,
        now: Timestamp,
        key: AgentKey,
        out: &mut Vec<Decision>,
    ) -> Result<(), EngineError> {
        let profile = Arc::clone(self.profile(self.agent(key)?.profile)?);
        let state = self.agent_mut(key)?;
        if let Some(status) = state.writes.desired_status {
            let target = profile.target_for(status).clone();
            if state.writes.desired.as_ref() != Some(&target) {
                state.writes.desired = Some(target);
                state.writes.desired_why = Some(Arc::new(Why {
                    flow: Flow::CcToTeams,
                    reason: Reason::MappingChanged { status },
                    at: now,
                }));
            }
        }
        self.evaluate(now, key, out)
    }

    /// Applies every rule that is due for one agent and schedules its next wake-up.
    fn evaluate(
        &mut self,
        now: Timestamp,
        key: AgentKey,
        out: &mut Vec<Decision>,
    ) -> Result<(), EngineError> {
        let state = self
            .agents
            .get_mut(key.0 as usize)
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
            writes_held: self.writes_held.is_some(),
        };
        evaluate::evaluate_agent(&mut ctx, state);
        if let Some(at) = ctx.wake {
            self.timers.schedule(key.0, at, &mut state.wake_at);
        }
        Ok(())
    }
}

/// Makes room for one more element in a vector of per-agent slots, by an
/// eighth of its length rather than by doubling: with hundreds of bytes a
/// slot, doubling leaves up to half the memory of every agent unused (tens
/// of MB at 50,000 agents). Still amortised O(1) a push.
fn grow_by_an_eighth<T>(slots: &mut Vec<T>) {
    if slots.len() == slots.capacity() {
        slots.reserve_exact((slots.len() / 8).max(64));
    }
}

/// What a profile change did to the CC status an agent holds.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Held {
    /// Known before and after, or nothing held.
    Same,
    /// The new profile does not know it (nor did the old one, if `again`).
    Unknown {
        status: String,
        teams: TeamsTarget,
        again: bool,
    },
    /// The old profile did not know it; the new one does.
    BackInProfile { status: String },
}

fn report_held(key: AgentKey, held: Held, out: &mut Vec<Decision>) {
    let event = match held {
        Held::Same | Held::Unknown { again: true, .. } => return,
        Held::Unknown { status, teams, .. } => SyncEvent::StatusNotInProfile { status, teams },
        Held::BackInProfile { status } => SyncEvent::StatusBackInProfile { status },
    };
    out.push(Decision::Event { agent: key, event });
}

/// Carries statuses across a profile change by name. The status the agent
/// holds is never dropped: one the new profile does not know is kept by
/// name, and Teams gets the new profile's `default_teams` for it.
fn remap_statuses(state: &mut AgentState, old: &Profile, new: &Profile, now: Timestamp) -> Held {
    let map = |id: StatusId| new.status_id(old.status_name(id));
    let was_unknown = state.cc.unknown.is_some();
    let held = match (state.cc.current.take(), state.cc.unknown.take()) {
        (Some((status, owner, since)), _) => Some(UnknownStatus {
            name: old.status_name(status).to_string(),
            owner,
            since,
        }),
        (None, unknown) => unknown.map(|u| *u),
    };
    state.cc.requested = state.cc.requested.and_then(|mut request| {
        request.status = map(request.status)?;
        Some(request)
    });
    state.cc.handled = state.cc.handled.and_then(map);
    state.writes.desired_status = state.writes.desired_status.and_then(map);
    state.restore = state.restore.and_then(|point| {
        let rule_name = &old.rules.get(usize::from(point.rule))?.name;
        let rule = new.rules.iter().position(|r| &r.name == rule_name)?;
        Some(restore::RestorePoint {
            rule: u16::try_from(rule).ok()?,
            previous: map(point.previous)?,
            set: map(point.set)?,
        })
    });
    // Reasons name statuses and rules by position in the old profile.
    state.last_why = None;
    state.writes.desired_why = None;
    let Some(held) = held else {
        return Held::Same;
    };
    match new.status_id(&held.name) {
        Some(id) => {
            state.cc.current = Some((id, held.owner, held.since));
            if !was_unknown {
                return Held::Same;
            }
            // It was settled when it became unknown; now Teams shows it as
            // this profile maps it (re-derived by the caller). A status a
            // rule set is never pushed to Teams, so that one stays as is.
            state.cc.handled = Some(id);
            if held.owner == Owner::Person {
                state.writes.desired_status = Some(id);
            }
            Held::BackInProfile { status: held.name }
        }
        None => {
            let teams = new.default_teams.clone();
            state.cc.handled = None;
            state.writes.desired_status = None;
            state.writes.desired = Some(teams.clone());
            state.writes.desired_why = Some(Arc::new(Why {
                flow: Flow::CcToTeams,
                reason: Reason::StatusNotInProfile,
                at: now,
            }));
            let status = held.name.clone();
            state.cc.unknown = Some(Box::new(held));
            Held::Unknown {
                status,
                teams,
                again: was_unknown,
            }
        }
    }
}
