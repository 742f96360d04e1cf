//! The static cycle check: compose CC → Teams and Teams → CC and find the
//! starts that never reach a fixed point.
//!
//! The model is deliberately pessimistic: it assumes no echo suppression.
//! Echo suppression is a runtime safety net that a slow Teams or a CC that
//! re-reports its own status can defeat, so a profile must be stable without
//! it. The model (also described for admins in `mappings/README.md`):
//!
//! - state: the CC status, the presence we wrote (`ours`), the user's own
//!   presence (`user`), and the restore memory of a rule; Teams shows `ours`,
//!   else `user`.
//! - CC → Teams: `ours` becomes the status's target (`None` for `clear`).
//! - Teams → CC, when Teams shows something: the first rule that fires
//!   requests its status (remembering the replaced one if it restores);
//!   otherwise a remembered status comes back once its rule no longer
//!   matches; otherwise memory is dropped when the agent moved on.
//! - The two steps alternate until a full round changes nothing (settled) or a
//!   state comes back (cycle).

use std::collections::{HashMap, HashSet};

use super::profile::{Profile, StatusId, TeamsTarget};
use crate::presence::{Presence, TEAMS_STATES};

/// Where a non-settling run started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Start {
    /// The CC reported this status; CC → Teams goes first.
    Cc(StatusId),
    /// The user shows `presence` while the CC shows `cc`; Teams → CC goes first.
    Teams { presence: Presence, cc: StatusId },
}

/// A start that does not settle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cycle {
    pub start: Start,
    /// The values in the order visited: the start's value, then after each
    /// step the value of the side that step wrote. The last value leads back
    /// into a state already visited.
    pub trajectory: Vec<String>,
    /// The first rule that fired, to place the report on.
    pub first_rule: Option<usize>,
}

impl Cycle {
    pub fn message(&self, profile: &Profile) -> String {
        let path = format!("{} → ...", self.trajectory.join(" → "));
        match &self.start {
            Start::Cc(id) => format!(
                "mapping cycle: CC status `{}` does not settle: {path}",
                profile.status_name(*id)
            ),
            Start::Teams { presence, cc } => format!(
                "mapping cycle: Teams {presence} with CC `{}` does not settle: {path}",
                profile.status_name(*cc)
            ),
        }
    }
}

/// One state of the model.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct State {
    pub cc: StatusId,
    pub ours: Option<Presence>,
    pub user: Option<Presence>,
    /// (rule index, replaced status, status the rule set).
    pub memory: Option<(usize, StatusId, StatusId)>,
}

impl State {
    pub fn shown(&self) -> Option<&Presence> {
        self.ours.as_ref().or(self.user.as_ref())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    CcToTeams,
    TeamsToCc,
}

/// The CC → Teams step; `None` when it changes nothing.
pub fn cc_to_teams(profile: &Profile, state: &State) -> Option<State> {
    let ours = match profile.target_for(state.cc) {
        TeamsTarget::Set(p) => Some(p.clone()),
        TeamsTarget::Clear => None,
    };
    (ours != state.ours).then(|| State {
        ours,
        ..state.clone()
    })
}

/// The Teams → CC step; `None` when it changes nothing. Also returns the rule
/// that fired, if one did.
pub fn teams_to_cc(profile: &Profile, state: &State) -> (Option<State>, Option<usize>) {
    let Some(shown) = state.shown() else {
        return (None, None);
    };
    if let Some((index, rule)) = profile.rule_for(shown, state.cc)
        && rule.set != state.cc
    {
        let memory = match state.memory {
            None if rule.restore => Some((index, state.cc, rule.set)),
            memory => memory,
        };
        let next = State {
            cc: rule.set,
            memory,
            ..state.clone()
        };
        return (Some(next), Some(index));
    }
    match state.memory {
        Some((index, previous, set))
            if state.cc == set
                && profile
                    .rules
                    .get(index)
                    .is_none_or(|r| !r.matches_presence(shown)) =>
        {
            let next = State {
                cc: previous,
                memory: None,
                ..state.clone()
            };
            (Some(next), None)
        }
        Some((_, _, set)) if state.cc != set => (
            Some(State {
                memory: None,
                ..state.clone()
            }),
            None,
        ),
        _ => (None, None),
    }
}

fn step(profile: &Profile, phase: Phase, state: &State) -> (Option<State>, Option<usize>) {
    match phase {
        Phase::CcToTeams => (cc_to_teams(profile, state), None),
        Phase::TeamsToCc => teams_to_cc(profile, state),
    }
}

/// Every start that does not settle: each CC status once (CC → Teams first),
/// then each Teams presence with each CC status (Teams → CC first) unless its
/// cycle was already reported.
pub fn find_cycles(profile: &Profile) -> Vec<Cycle> {
    let mut phases = Vec::with_capacity(2);
    if profile.direction.cc_to_teams() {
        phases.push(Phase::CcToTeams);
    }
    if profile.direction.teams_to_cc() {
        phases.push(Phase::TeamsToCc);
    }
    if phases.is_empty() {
        return Vec::new();
    }
    let statuses: Vec<StatusId> = (0..profile.statuses.len())
        .filter_map(|i| u16::try_from(i).ok().map(StatusId))
        .collect();
    let mut reported: HashSet<CycleId> = HashSet::new();
    let mut cycles = Vec::new();

    for &cc in &statuses {
        let state = State {
            cc,
            ours: None,
            user: None,
            memory: None,
        };
        let first = profile.status_name(cc).to_owned();
        if let Some((trajectory, first_rule, id)) = run(profile, &phases, 0, state, first) {
            reported.insert(id);
            cycles.push(Cycle {
                start: Start::Cc(cc),
                trajectory,
                first_rule,
            });
        }
    }

    let teams_first = phases.len() - 1;
    for presence in universe(profile) {
        for &cc in &statuses {
            let state = State {
                cc,
                ours: None,
                user: Some(presence.clone()),
                memory: None,
            };
            let first = presence.to_string();
            if let Some((trajectory, first_rule, id)) =
                run(profile, &phases, teams_first, state, first)
                && reported.insert(id)
            {
                cycles.push(Cycle {
                    start: Start::Teams {
                        presence: presence.clone(),
                        cc,
                    },
                    trajectory,
                    first_rule,
                });
            }
        }
    }
    cycles
}

/// The presences a user can show: Teams' documented states and every concrete
/// pair the profile names (targets, and patterns with both sides given).
pub fn universe(profile: &Profile) -> Vec<Presence> {
    let mut out: Vec<Presence> = TEAMS_STATES
        .iter()
        .map(|(a, b)| Presence::from_graph(a, b))
        .collect();
    let targets = profile.cc_to_teams.iter().filter_map(|t| match t {
        TeamsTarget::Set(p) => Some(p.clone()),
        TeamsTarget::Clear => None,
    });
    let patterns = profile
        .rules
        .iter()
        .flat_map(|r| r.when.iter())
        .filter_map(|p| match (&p.availability, &p.activity) {
            (Some(a), Some(b)) => Some(Presence::new(a.clone(), b.clone())),
            _ => None,
        });
    for p in targets.chain(patterns) {
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// What an admin sees of a state: the user's own presence matters only while
/// it shows, so cycles that differ only in a hidden user presence are one.
type CycleId = (
    StatusId,
    Option<Presence>,
    Option<(usize, StatusId, StatusId)>,
    Phase,
);

fn visible((state, phase): &(State, Phase)) -> CycleId {
    (state.cc, state.shown().cloned(), state.memory, *phase)
}

/// A safety net only: runs are bounded by the (finite) state space, which
/// for real profiles is tiny; a reload must never hang on a pathological file.
const MAX_STEPS: usize = 100_000;

/// Runs one start. `Some((trajectory, first rule, cycle id))` when it does not
/// settle; the id is the smallest visible state on the cycle, the same
/// whichever start led into it.
fn run(
    profile: &Profile,
    phases: &[Phase],
    mut phase: usize,
    mut state: State,
    first_value: String,
) -> Option<(Vec<String>, Option<usize>, CycleId)> {
    let mut trajectory = vec![first_value];
    let mut seen: HashMap<(State, Phase), usize> = HashMap::new();
    let mut order: Vec<(State, Phase)> = Vec::new();
    let mut unchanged = 0;
    let mut changed_last = true;
    let mut first_rule = None;
    for _ in 0..MAX_STEPS {
        let current = phases[phase % phases.len()];
        // A state about to take a step that changes nothing behaves exactly
        // like the same state before the other step, so both are recorded
        // under one key; otherwise a cycle through a no-op step would only be
        // noticed one lap later. After a no-op step the state is the one just
        // recorded, so it is not recorded again.
        if changed_last {
            let key_phase = if phases.len() == 2 && step(profile, current, &state).0.is_none() {
                phases[(phase + 1) % 2]
            } else {
                current
            };
            let key = (state.clone(), key_phase);
            if let Some(&from) = seen.get(&key) {
                let id = order[from..]
                    .iter()
                    .map(visible)
                    .min()
                    .unwrap_or_else(|| visible(&key));
                return Some((trajectory, first_rule, id));
            }
            seen.insert(key.clone(), order.len());
            order.push(key);
        }
        let (next, fired) = step(profile, current, &state);
        if first_rule.is_none() {
            first_rule = fired;
        }
        changed_last = next.is_some();
        if let Some(next) = next {
            state = next;
            unchanged = 0;
        } else {
            unchanged += 1;
            if unchanged >= phases.len() {
                return None;
            }
        }
        trajectory.push(match current {
            Phase::CcToTeams => state
                .shown()
                .map_or_else(|| "no presence".to_owned(), Presence::to_string),
            Phase::TeamsToCc => profile.status_name(state.cc).to_owned(),
        });
        phase = (phase + 1) % phases.len();
    }
    let id = order
        .iter()
        .map(visible)
        .min()
        .unwrap_or_else(|| visible(&(state, phases[phase % phases.len()])));
    Some((trajectory, first_rule, id))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::mapping::parse_profile;
    use crate::mapping::profile::Direction;

    /// Loads with direction off (never cycle-checked), then sets `direction`.
    fn profile(source: &str, direction: Direction) -> Profile {
        let text = format!("direction = \"off\"\n{source}");
        match parse_profile("t", Path::new("t.toml"), &text) {
            Ok(mut p) => {
                p.direction = direction;
                p
            }
            Err(e) => panic!("{e:?}"),
        }
    }

    fn messages(p: &Profile) -> Vec<String> {
        find_cycles(p).iter().map(|c| c.message(p)).collect()
    }

    const FLIP: &str = r#"
[statuses]
Lunch = { teams = "Away/Away" }
Break = { teams = "Away/Away" }
[[teams_to_cc]]
when = "Away/Away"
set = "Break"
replaces = ["Lunch"]
[[teams_to_cc]]
when = "Away/Away"
set = "Lunch"
replaces = ["Break"]
"#;

    #[test]
    fn spells_out_a_cycle_through_both_directions() {
        let p = profile(FLIP, Direction::Both);
        assert_eq!(
            messages(&p),
            [
                "mapping cycle: CC status `Lunch` does not settle: Lunch → Away/Away → Break → Away/Away → Lunch → ...",
                "mapping cycle: CC status `Break` does not settle: Break → Away/Away → Lunch → Away/Away → Break → ...",
            ]
        );
    }

    #[test]
    fn one_direction_alone_cannot_cycle_through_our_writes() {
        assert!(find_cycles(&profile(FLIP, Direction::CcToTeams)).is_empty());
        assert!(find_cycles(&profile(FLIP, Direction::Off)).is_empty());
    }

    #[test]
    fn rules_alone_can_cycle_on_the_users_presence() {
        // Teams → CC only: the user's own Away keeps flipping the CC.
        let p = profile(FLIP, Direction::TeamsToCc);
        let found = messages(&p);
        assert_eq!(
            found,
            [
                "mapping cycle: Teams Away/Away with CC `Lunch` does not settle: Away/Away → Break → Lunch → ..."
            ]
        );
    }

    #[test]
    fn a_restore_that_hides_its_own_trigger_cycles() {
        let source = r#"
[statuses]
Available = { teams = "clear" }
Break = { teams = "Available/Available" }
[[teams_to_cc]]
when = "Away"
set = "Break"
replaces = ["Available"]
restore = true
"#;
        let p = profile(source, Direction::Both);
        let cycles = find_cycles(&p);
        assert_eq!(cycles.len(), 1, "{:?}", messages(&p));
        assert_eq!(cycles[0].first_rule, Some(0));
        assert_eq!(
            cycles[0].message(&p),
            "mapping cycle: Teams Away/Away with CC `Available` does not settle: Away/Away → Break → Available/Available → Available → Away/Away → ..."
        );
    }

    #[test]
    fn the_meeting_latch_settles() {
        let source = r#"
[statuses]
Available = { teams = "clear" }
"On contact" = { teams = "Busy/InACall" }
Meeting = { teams = "clear" }
[[teams_to_cc]]
when = ["Busy/InAMeeting", "DoNotDisturb/Presenting"]
set = "Meeting"
replaces = ["Available"]
restore = true
"#;
        assert!(find_cycles(&profile(source, Direction::Both)).is_empty());
    }

    #[test]
    fn the_restore_brings_back_what_was_replaced() {
        let source = r#"
[statuses]
Available = { teams = "clear" }
Meeting = { teams = "clear" }
[[teams_to_cc]]
when = "Busy/InAMeeting"
set = "Meeting"
replaces = ["Available"]
restore = true
"#;
        let p = profile(source, Direction::Both);
        let in_meeting = State {
            cc: StatusId(0),
            ours: None,
            user: Some(Presence::from_graph("Busy", "InAMeeting")),
            memory: None,
        };
        let (latched, rule) = teams_to_cc(&p, &in_meeting);
        assert_eq!(rule, Some(0));
        let Some(latched) = latched else {
            panic!("the rule should fire")
        };
        assert_eq!(latched.cc, StatusId(1));
        assert_eq!(latched.memory, Some((0, StatusId(0), StatusId(1))));
        let ended = State {
            user: Some(Presence::from_graph("Available", "Available")),
            ..latched.clone()
        };
        let (restored, _) = teams_to_cc(&p, &ended);
        assert_eq!(
            restored.map(|s| (s.cc, s.memory)),
            Some((StatusId(0), None))
        );
        // The agent moved on by hand: memory is dropped, nothing restored.
        let moved = State {
            cc: StatusId(0),
            ..ended
        };
        let (forgot, _) = teams_to_cc(&p, &moved);
        assert_eq!(forgot.map(|s| (s.cc, s.memory)), Some((StatusId(0), None)));
    }

    #[test]
    fn the_universe_adds_the_profiles_own_pairs() {
        let p = profile(FLIP, Direction::Both);
        let u = universe(&p);
        assert_eq!(u.len(), TEAMS_STATES.len());
        let source = "[statuses]\nA = { teams = \"Busy/InAConferenceCall\" }\n[[teams_to_cc]]\nwhen = \"Available/Away\"\nset = \"A\"\nreplaces = \"*\"\n";
        let u = universe(&profile(source, Direction::Both));
        assert!(u.contains(&Presence::from_graph("Available", "Away")));
    }
}
