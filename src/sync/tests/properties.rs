//! Properties over random profiles and random event sequences, with a
//! simulated contact center and a simulated Teams closing the loop: the CC
//! applies our requests and Teams shows our writes, each after random delays
//! (longer than the echo window too, which defeats echo suppression).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use crate::mapping::{CcStatus, Direction, Profile, Rule, Side, StatusId, TeamsTarget, WriteMode};
use crate::presence::{Presence, PresencePattern, SET_PRESENCE_PAIRS};
use crate::sync::{
    AgentKey, Decision, Engine, ProfileId, Reason, Settings, TeamsWrite, WriteId, WriteOutcome,
};
use crate::time::Timestamp;

use super::harness::{pattern, presence};

/// Presences users show in these tests.
const USER_PRESENCES: &[&str] = &[
    "Available/Available",
    "Busy/InAMeeting",
    "Busy/InACall",
    "DoNotDisturb/Presenting",
    "DoNotDisturb/DoNotDisturb",
    "Away/Away",
    "BeRightBack/BeRightBack",
    "Offline/OffWork",
];

const RULE_PATTERNS: &[&str] = &[
    "Busy/InAMeeting",
    "DoNotDisturb/*",
    "Away/*",
    "*/InACall",
    "Available/Available",
    "BeRightBack",
    "Offline/*",
    "*/*",
];

prop_compose! {
    fn arb_rule(statuses: usize)(
        when in proptest::collection::vec(0..RULE_PATTERNS.len(), 1..3),
        set in 0..statuses,
        replaces in proptest::option::of(proptest::collection::vec(0..statuses, 1..3)),
        restore in any::<bool>(),
        debounce in proptest::option::of(0u64..40),
    ) -> Rule {
        Rule {
            name: String::new(),
            when: when.into_iter().map(|i| pattern(RULE_PATTERNS[i])).collect(),
            set: StatusId(set as u16),
            replaces: replaces.map(|r| r.into_iter().map(|i| StatusId(i as u16)).collect()),
            restore,
            debounce: debounce.map(Duration::from_secs),
        }
    }
}

fn arb_profile() -> impl Strategy<Value = Profile> {
    (2usize..6)
        .prop_flat_map(|n| {
            (
                proptest::collection::vec((any::<bool>(), 0..=SET_PRESENCE_PAIRS.len()), n),
                proptest::collection::vec(arb_rule(n), 0..4),
                1u64..30,
                any::<bool>(),
                prop_oneof![
                    6 => Just(Direction::Both),
                    1 => Just(Direction::CcToTeams),
                    1 => Just(Direction::TeamsToCc),
                ],
            )
        })
        .prop_map(
            |(statuses, rules, debounce, prefer_cc, direction)| Profile {
                name: "random".into(),
                direction,
                debounce: Duration::from_secs(debounce),
                prefer: if prefer_cc { Side::Cc } else { Side::Teams },
                write_mode: WriteMode::Session,
                statuses: statuses
                    .iter()
                    .enumerate()
                    .map(|(i, (routable, _))| CcStatus {
                        name: format!("S{i}"),
                        routable: *routable,
                    })
                    .collect(),
                cc_to_teams: statuses
                    .iter()
                    .map(|(_, t)| match SET_PRESENCE_PAIRS.get(*t) {
                        Some((a, b)) => TeamsTarget::Set(Presence::from_graph(a, b)),
                        None => TeamsTarget::Clear,
                    })
                    .collect(),
                default_teams: TeamsTarget::Clear,
                rules: rules
                    .into_iter()
                    .enumerate()
                    .map(|(i, mut r)| {
                        r.name = format!("rule {}", i + 1);
                        r
                    })
                    .collect(),
                blocking: vec![],
            },
        )
}

/// Something the outside world does, `gap` after the previous step.
#[derive(Clone, Debug)]
enum Step {
    AgentPicks(usize),
    UserShows(usize),
}

fn arb_steps() -> impl Strategy<Value = Vec<(u64, Step)>> {
    proptest::collection::vec(
        (
            prop_oneof![0u64..5_000, 5_000u64..40_000, 40_000u64..400_000],
            prop_oneof![
                (0usize..8).prop_map(Step::AgentPicks),
                (0..USER_PRESENCES.len()).prop_map(Step::UserShows),
            ],
        ),
        1..40,
    )
}

/// Who caused a CC report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    Agent,
    /// The CC applied a status the daemon requested.
    Request,
}

#[derive(Clone, Debug)]
enum EnvEvent {
    Outside(Step),
    CcApplies(StatusId),
    TeamsShows(Presence),
    WriteAnswered(WriteId, bool),
}

/// The closed loop: engine, CC, Teams, each answering after its own delays.
struct World {
    engine: Engine,
    agent: AgentKey,
    profile: Arc<Profile>,
    now: Timestamp,
    queue: BinaryHeap<Reverse<(Timestamp, u64)>>,
    events: Vec<EnvEvent>,
    delays: Vec<u64>,
    next_delay: usize,
    fail_every: usize,
    writes_sent: usize,
    user_presence: Presence,
    cc_log: Vec<(Timestamp, StatusId, Origin)>,
    teams_log: Vec<(Timestamp, Presence)>,
    decisions: Vec<(Timestamp, Decision)>,
    max_in_flight: usize,
    in_flight: usize,
    /// Writes Graph accepted, in the order it answered them.
    confirmed: Vec<TeamsWrite>,
    /// Writes in flight, by id.
    sent: Vec<(WriteId, TeamsWrite)>,
    /// A second application that answers each of our writes and requests
    /// with a change of its own (SPEC's two-writers scenario).
    adversary: bool,
    adversary_turn: usize,
}

impl World {
    fn new(profile: Profile, settings: Settings, delays: Vec<u64>, fail_every: usize) -> Self {
        let profile = Arc::new(profile);
        let mut engine = Engine::new(settings, vec![Arc::clone(&profile)]).unwrap();
        let agent = engine.add_agent(ProfileId(0)).unwrap();
        World {
            engine,
            agent,
            profile,
            now: Timestamp::from_secs(1_000_000),
            queue: BinaryHeap::new(),
            events: Vec::new(),
            delays: if delays.is_empty() {
                vec![1000]
            } else {
                delays
            },
            next_delay: 0,
            fail_every,
            writes_sent: 0,
            user_presence: presence("Available/Available"),
            cc_log: Vec::new(),
            teams_log: Vec::new(),
            decisions: Vec::new(),
            max_in_flight: 0,
            in_flight: 0,
            confirmed: Vec::new(),
            sent: Vec::new(),
            adversary: false,
            adversary_turn: 0,
        }
    }

    fn schedule(&mut self, at: Timestamp, event: EnvEvent) {
        self.queue.push(Reverse((at, self.events.len() as u64)));
        self.events.push(event);
    }

    fn delay(&mut self) -> Duration {
        let d = self.delays[self.next_delay % self.delays.len()];
        self.next_delay += 1;
        Duration::from_millis(d)
    }

    /// Runs until `end`, applying outside steps, answers and wake-ups in time order.
    fn run(&mut self, steps: &[(u64, Step)], end_after: Duration) {
        let mut at = self.now;
        for (gap, step) in steps {
            at = at + Duration::from_millis(*gap);
            self.schedule(at, EnvEvent::Outside(step.clone()));
        }
        let end = at + end_after;
        loop {
            let env_next = self.queue.peek().map(|Reverse((t, _))| *t);
            let engine_next = self.engine.next_wakeup();
            let next = match (env_next, engine_next) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) => a,
                (None, Some(b)) => b,
                (None, None) => break,
            };
            if next > end {
                break;
            }
            self.now = self.now.max(next);
            let mut out = Vec::new();
            if env_next == Some(next) {
                let Some(Reverse((_, index))) = self.queue.pop() else {
                    break;
                };
                let event = self.events[index as usize].clone();
                self.apply(event, &mut out);
            } else {
                self.engine.tick(self.now, &mut out);
            }
            self.absorb(out);
        }
        self.now = end;
    }

    fn apply(&mut self, event: EnvEvent, out: &mut Vec<Decision>) {
        let now = self.now;
        match event {
            EnvEvent::Outside(Step::AgentPicks(i)) => {
                let status = StatusId((i % self.profile.statuses.len()) as u16);
                self.report(status, Origin::Agent, out);
            }
            EnvEvent::Outside(Step::UserShows(i)) => {
                let p = presence(USER_PRESENCES[i]);
                self.user_presence = p.clone();
                self.show(p, out);
            }
            EnvEvent::CcApplies(status) => self.report(status, Origin::Request, out),
            EnvEvent::TeamsShows(p) => self.show(p, out),
            EnvEvent::WriteAnswered(id, ok) => {
                self.in_flight = self.in_flight.saturating_sub(1);
                if let Some(i) = self.sent.iter().position(|(w, _)| *w == id) {
                    let (_, write) = self.sent.remove(i);
                    if ok {
                        self.confirmed.push(write);
                    }
                }
                let outcome = if ok {
                    WriteOutcome::Done
                } else {
                    WriteOutcome::Failed {
                        message: "Graph 503".into(),
                    }
                };
                self.engine
                    .write_done(now, self.agent, id, outcome, out)
                    .unwrap();
            }
        }
    }

    fn report(&mut self, status: StatusId, origin: Origin, out: &mut Vec<Decision>) {
        if self.cc_log.last().map(|(_, s, _)| *s) != Some(status) {
            self.cc_log.push((self.now, status, origin));
        }
        self.engine
            .report_cc(self.now, self.agent, status, out)
            .unwrap();
    }

    fn show(&mut self, p: Presence, out: &mut Vec<Decision>) {
        if self.teams_log.last().map(|(_, q)| q) != Some(&p) {
            self.teams_log.push((self.now, p.clone()));
        }
        self.engine
            .observe_teams(self.now, self.agent, p, out)
            .unwrap();
    }

    fn absorb(&mut self, out: Vec<Decision>) {
        for d in out {
            match &d {
                Decision::WriteTeams { id, write, .. } => {
                    self.in_flight += 1;
                    self.max_in_flight = self.max_in_flight.max(self.in_flight);
                    self.writes_sent += 1;
                    self.sent.push((*id, write.clone()));
                    let ok =
                        self.fail_every == 0 || !self.writes_sent.is_multiple_of(self.fail_every);
                    let answer = self.now + self.delay();
                    self.schedule(answer, EnvEvent::WriteAnswered(*id, ok));
                    if ok {
                        let shown = match write {
                            TeamsWrite::SetSession { presence, .. }
                            | TeamsWrite::SetPreferred { presence } => presence.clone(),
                            TeamsWrite::ClearSession | TeamsWrite::ClearPreferred => {
                                self.user_presence.clone()
                            }
                        };
                        let visible = answer + self.delay() + self.delay();
                        self.schedule(visible, EnvEvent::TeamsShows(shown));
                        if self.adversary {
                            self.adversary_turn += 1;
                            let turn = self.adversary_turn % USER_PRESENCES.len();
                            let answer = visible + self.delay();
                            self.schedule(answer, EnvEvent::Outside(Step::UserShows(turn)));
                        }
                    }
                }
                Decision::RequestCc { .. } if self.adversary => {
                    // The other application overrides our request with a status of its own.
                    self.adversary_turn += 1;
                    let answer = self.now + self.delay();
                    self.schedule(
                        answer,
                        EnvEvent::Outside(Step::AgentPicks(self.adversary_turn)),
                    );
                }
                Decision::RequestCc { status, .. } => {
                    let applied = self.now + self.delay();
                    self.schedule(applied, EnvEvent::CcApplies(*status));
                }
                Decision::Event { .. } => {}
            }
            self.decisions.push((self.now, d));
        }
    }

    /// True when `value` was shown continuously over [since, since + held] in `log`.
    fn held<T: PartialEq>(
        log: &[(Timestamp, T)],
        value: &T,
        since: Timestamp,
        held: Duration,
    ) -> bool {
        let until = since + held;
        let at_since = log.iter().rev().find(|(t, _)| *t <= since).map(|(_, v)| v);
        at_since == Some(value)
            && !log
                .iter()
                .any(|(t, v)| *t > since && *t < until && v != value)
    }
}

fn settings_with(echo_secs: u64) -> Settings {
    Settings {
        echo_window: Duration::from_secs(echo_secs),
        ..Settings::default()
    }
}

/// `cases` by default; `PROPTEST_CASES` for a longer run.
// The test runner's setting, read by the test, not by the core.
#[allow(clippy::disallowed_methods)]
fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        // The bounded-writes property skips cyclic profiles, about one in ten.
        max_global_rejects: cases.max(1024),
        ..ProptestConfig::with_cases(cases)
    }
}

proptest! {
    #![proptest_config(cases(192))]

    /// Nothing held shorter than its debounce is ever propagated, in either direction.
    #[test]
    fn nothing_shorter_than_its_debounce_propagates(
        profile in arb_profile(),
        steps in arb_steps(),
        delays in proptest::collection::vec(0u64..400_000, 1..8),
        echo in 10u64..600,
        fail_every in 0usize..5,
    ) {
        let mut world = World::new(profile.clone(), settings_with(echo), delays, fail_every);
        world.run(&steps, Duration::from_secs(3 * 3600));
        let cc_log: Vec<(Timestamp, StatusId)> = world.cc_log.iter().map(|(t, s, _)| (*t, *s)).collect();
        for (at, decision) in &world.decisions {
            let (reason, flow_ok) = match decision {
                Decision::WriteTeams { why, .. } => (&why.reason, true),
                Decision::RequestCc { why, .. } => (&why.reason, true),
                Decision::Event { .. } => continue,
            };
            prop_assert!(flow_ok);
            match reason {
                Reason::CcStatusHeld { status, since, debounce } => {
                    prop_assert_eq!(*debounce, profile.debounce);
                    prop_assert!(*since + *debounce <= *at);
                    prop_assert!(World::held(&cc_log, status, *since, *debounce),
                        "CC status {:?} propagated at {} without holding {:?} from {}", status, at, debounce, since);
                }
                Reason::RuleFired { presence, since, debounce, .. }
                | Reason::Restored { presence: Some(presence), since, debounce, .. } => {
                    prop_assert!(*since + *debounce <= *at);
                    prop_assert!(World::held(&world.teams_log, presence, *since, *debounce),
                        "Teams {} acted on at {} without holding {:?} from {}", presence, at, debounce, since);
                }
                _ => {}
            }
        }
    }

    /// Restore never overwrites a status the agent set after the daemon's.
    #[test]
    fn restore_never_overwrites_the_agents_own_choice(
        profile in arb_profile(),
        steps in arb_steps(),
        delays in proptest::collection::vec(0u64..60_000, 1..8),
        echo in 60u64..600,
    ) {
        let echo_window = Duration::from_secs(echo);
        let mut world = World::new(profile, settings_with(echo), delays, 0);
        world.run(&steps, Duration::from_secs(3600));
        let requests: Vec<(Timestamp, StatusId)> = world.decisions.iter().filter_map(|(t, d)| match d {
            Decision::RequestCc { status, .. } => Some((*t, *status)),
            _ => None,
        }).collect();
        for (at, decision) in &world.decisions {
            let Decision::RequestCc { why, .. } = decision else { continue };
            let Reason::Restored { .. } = why.reason else { continue };
            let (reported_at, status, origin) = *world.cc_log.iter().rev().find(|(t, _, _)| t <= at).unwrap();
            // An agent picking exactly the status we just asked for cannot be told apart from our echo.
            let indistinguishable = origin == Origin::Agent && requests.iter().any(|(t, s)|
                *s == status && *t <= reported_at && reported_at.since(*t) <= echo_window);
            prop_assert!(origin == Origin::Request || indistinguishable,
                "restore at {} overwrote a status the agent chose at {}", at, reported_at);
        }
    }

    /// Coalescing never sends a stale value: every write carries the newest
    /// CC status that held for the debounce, one write at a time, and the last
    /// write matches the final status.
    #[test]
    fn coalescing_never_sends_a_stale_value(
        mut profile in arb_profile(),
        steps in arb_steps(),
        delays in proptest::collection::vec(0u64..120_000, 1..8),
        fail_every in 0usize..4,
    ) {
        profile.direction = Direction::CcToTeams;
        let settings = Settings {
            loop_limits: crate::sync::loop_guard::LoopLimits { max_changes: u32::MAX, ..Default::default() },
            ..Settings::default()
        };
        let mut world = World::new(profile.clone(), settings, delays, fail_every);
        world.run(&steps, Duration::from_secs(2 * 3600));
        prop_assert!(world.max_in_flight <= 1);
        let newest_matured = |at: Timestamp| -> Option<StatusId> {
            let log = &world.cc_log;
            (0..log.len()).rev().find(|&i| {
                let (t, _, _) = log[i];
                let next = log.get(i + 1).map_or(at, |(n, _, _)| (*n).min(at));
                t + profile.debounce <= next
            }).map(|i| log[i].1)
        };
        for (at, decision) in &world.decisions {
            let Decision::WriteTeams { write, why, .. } = decision else { continue };
            if matches!(why.reason, Reason::KeepAlive) { continue; }
            let Some(status) = newest_matured(*at) else {
                return Err(TestCaseError::fail(format!("write at {at} before any status matured")));
            };
            let expected = crate::sync::write_for(profile.target_for(status), profile.write_mode, Settings::default().session_expiry);
            prop_assert_eq!(write, &expected, "write at {} is stale; cc: {:?}; decisions: {:?}", at, world.cc_log, world.decisions);
        }
        // Once the retries have gone through, Teams holds the final status's target.
        if fail_every != 1
            && let Some(final_status) = newest_matured(world.now)
        {
            let shown = match world.confirmed.last() {
                Some(TeamsWrite::SetSession { presence, .. }) => TeamsTarget::Set(presence.clone()),
                _ => TeamsTarget::Clear,
            };
            prop_assert_eq!(&shown, profile.target_for(final_status), "cc: {:?}; decisions: {:?}", world.cc_log, world.decisions);
        }
    }
}

#[test]
fn patterns_used_by_the_generators_parse() {
    for p in RULE_PATTERNS {
        assert!(PresencePattern::parse(p).is_ok(), "{p}");
    }
}

fn propagations(world: &World, from: Timestamp) -> usize {
    world
        .decisions
        .iter()
        .filter(|(t, d)| {
            *t >= from
                && match d {
                    Decision::WriteTeams { why, .. } => {
                        !matches!(why.reason, Reason::KeepAlive | Reason::Retry)
                    }
                    Decision::RequestCc { .. } => true,
                    Decision::Event { .. } => false,
                }
        })
        .count()
}

proptest! {
    #![proptest_config(cases(256))]

    /// For every mapping that passes `check`, a finite input makes a bounded
    /// number of writes and the system falls quiet (no ping-pong), with the
    /// loop guard switched off: the static check and echo suppression alone
    /// settle it. The assumption is the one the echo window is configured
    /// for: each side shows our write or request within the window. (A Teams
    /// lagging beyond it can keep a slow loop going; the loop guard's rate
    /// bound below is what holds then.)
    #[test]
    fn writes_are_bounded_for_every_mapping_that_passes_check(
        profile in arb_profile(),
        steps in arb_steps(),
        delays in proptest::collection::vec(0u64..20_000, 1..8),
        echo in 60u64..600,
    ) {
        prop_assume!(crate::mapping::cycles::find_cycles(&profile).is_empty());
        let settings = Settings {
            echo_window: Duration::from_secs(echo),
            loop_limits: crate::sync::loop_guard::LoopLimits { max_changes: u32::MAX, ..Default::default() },
            ..Settings::default()
        };
        let mut world = World::new(profile.clone(), settings, delays, 0);
        world.run(&steps, Duration::from_secs(6 * 3600));
        let last_hour = Timestamp::from_micros(world.now.as_micros() - 3_600_000_000);
        prop_assert_eq!(propagations(&world, last_hour), 0, "still changing after hours of quiet: {:?}", world.decisions.iter().rev().take(8).collect::<Vec<_>>());
        let bound = (steps.len() + 1) * 2 * (profile.statuses.len() + profile.rules.len() + 2);
        prop_assert!(propagations(&world, Timestamp::ZERO) <= bound);
    }

    /// With the loop guard on, whatever the mapping and however stale or
    /// out of order the outside world answers, no agent sees more than two
    /// rounds of the breaker's limit inside one window.
    #[test]
    fn the_loop_guard_bounds_the_rate_of_changes_whatever_the_outside_does(
        profile in arb_profile(),
        steps in arb_steps(),
        delays in proptest::collection::vec(0u64..60_000, 1..8),
        echo in 10u64..600,
        adversary in any::<bool>(),
    ) {
        let settings = settings_with(echo);
        let limits = settings.loop_limits;
        let mut world = World::new(profile, settings, delays, 0);
        world.adversary = adversary;
        world.run(&steps, Duration::from_secs(6 * 3600));
        let times: Vec<Timestamp> = world.decisions.iter().filter_map(|(t, d)| match d {
            Decision::WriteTeams { why, .. } if !matches!(why.reason, Reason::KeepAlive | Reason::Retry) => Some(*t),
            Decision::RequestCc { .. } => Some(*t),
            _ => None,
        }).collect();
        let cap = 2 * limits.max_changes as usize;
        for (i, start) in times.iter().enumerate() {
            let in_window = times[i..].iter().take_while(|t| t.since(*start) < limits.window).count();
            prop_assert!(in_window <= cap, "{} changes within {:?} from {}", in_window, limits.window, start);
        }
    }
}
