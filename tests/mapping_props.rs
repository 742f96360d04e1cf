//! Property tests for the mapping loader: it never panics on any input, and
//! the static cycle check agrees with a brute-force simulation of the model
//! written here independently from the spec (SPEC §4, mappings/README.md).

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use presence_sync::mapping::cycles::{Start, find_cycles};
use presence_sync::mapping::{Direction, Profile, StatusId, TeamsTarget, parse_profile};
use presence_sync::presence::{Presence, SET_PRESENCE_PAIRS, TEAMS_STATES};
use proptest::prelude::*;

fn shipped() -> Vec<String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("mappings");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "toml"));
    files.sort();
    files
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect()
}

#[derive(Clone, Debug)]
enum Edit {
    DeleteBytes(usize, usize),
    InsertText(usize, String),
    DeleteLine(usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    FlipByte(usize, u8),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1usize..20).prop_map(|(a, n)| Edit::DeleteBytes(a, n)),
        (
            any::<usize>(),
            prop_oneof![
                Just("\"".to_owned()),
                Just("[".to_owned()),
                Just("]]".to_owned()),
                Just("{".to_owned()),
                Just(" = ".to_owned()),
                Just("\n[[teams_to_cc]]\n".to_owned()),
                Just("*".to_owned()),
                Just("/".to_owned()),
                Just("é".to_owned()),
                ".{0,8}",
            ]
        )
            .prop_map(|(a, s)| Edit::InsertText(a, s)),
        any::<usize>().prop_map(Edit::DeleteLine),
        any::<usize>().prop_map(Edit::DuplicateLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(a, b)| Edit::FlipByte(a, b)),
    ]
}

/// Applies edits on bytes, then repairs invalid UTF-8 lossily: the loader
/// only ever sees `&str`.
fn apply(source: &str, edits: &[Edit]) -> String {
    let mut bytes = source.as_bytes().to_vec();
    for e in edits {
        let len = bytes.len().max(1);
        match e {
            Edit::DeleteBytes(at, n) => {
                let start = at % len;
                let end = (start + n).min(bytes.len());
                if start < end {
                    bytes.drain(start..end);
                }
            }
            Edit::InsertText(at, text) => {
                let at = (at % len).min(bytes.len());
                bytes.splice(at..at, text.bytes());
            }
            Edit::FlipByte(at, b) => {
                if !bytes.is_empty() {
                    let at = at % bytes.len();
                    bytes[at] = *b;
                }
            }
            line_edit => {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let mut lines: Vec<&str> = text.split('\n').collect();
                let n = lines.len();
                match line_edit {
                    Edit::DeleteLine(i) => {
                        lines.remove(i % n);
                    }
                    Edit::DuplicateLine(i) => {
                        let line = lines[i % n];
                        lines.insert(i % n, line);
                    }
                    Edit::SwapLines(i, j) => lines.swap(i % n, j % n),
                    _ => {}
                }
                bytes = lines.join("\n").into_bytes();
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn never_panics_on_arbitrary_text(text in "(?s).{0,300}") {
        let _ = parse_profile("p", Path::new("p.toml"), &text);
    }

    #[test]
    fn never_panics_on_mutated_shipped_profiles(
        which in any::<usize>(),
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        let files = shipped();
        prop_assume!(!files.is_empty());
        let mutated = apply(&files[which % files.len()], &edits);
        if let Err(diagnostics) = parse_profile("p", Path::new("p.toml"), &mutated) {
            prop_assert!(!diagnostics.is_empty());
            let lines = mutated.split('\n').count();
            for d in diagnostics {
                prop_assert!(d.line >= 1 && d.line <= lines + 1, "{d} outside the file");
                prop_assert!(!d.message.contains('\n'));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Random valid-shaped profiles and the brute-force model.

const NAMES: &[&str] = &[
    "Available",
    "On contact",
    "Lunch",
    "Break",
    "Meeting",
    "Offline",
];

/// Patterns biased towards the pairs targets write, so that rules often react
/// to our own writes: that is where cycles come from.
const PATTERNS: &[&str] = &[
    "Away/Away",
    "Available/Available",
    "Busy/InACall",
    "Busy/InAMeeting",
    "DoNotDisturb/Presenting",
    "Away",
    "Busy",
    "*/Presenting",
    "*/Available",
    "Offline/OffWork",
    "*",
];

#[derive(Clone, Debug)]
struct GenRule {
    when: Vec<usize>,
    set: usize,
    /// `None` = "*".
    replaces: Option<Vec<usize>>,
    restore: bool,
}

#[derive(Clone, Debug)]
struct GenProfile {
    direction: &'static str,
    /// Per status: `None` = no `teams` key, `Some(None)` = clear, `Some(Some(i))` = pair i.
    targets: Vec<Option<Option<usize>>>,
    default_teams: Option<usize>,
    rules: Vec<GenRule>,
}

fn gen_profile() -> impl Strategy<Value = GenProfile> {
    let direction = prop_oneof![
        6 => Just("both"),
        1 => Just("cc_to_teams"),
        1 => Just("teams_to_cc"),
        1 => Just("off"),
    ];
    let target = prop_oneof![
        Just(None),
        Just(Some(None)),
        (0..SET_PRESENCE_PAIRS.len()).prop_map(|i| Some(Some(i))),
    ];
    (2..=NAMES.len())
        .prop_flat_map(move |n| {
            let rule = (
                prop::collection::vec(0..PATTERNS.len(), 1..3),
                0..n,
                prop::option::weighted(0.8, prop::collection::vec(0..n, 1..3)),
                any::<bool>(),
            )
                .prop_map(move |(when, set, replaces, restore)| GenRule {
                    when,
                    set,
                    // A rule replacing its own status is refused anyway; keep
                    // the cases for what this test is about.
                    replaces: replaces.map(|list| {
                        let list: Vec<usize> = list.into_iter().filter(|&s| s != set).collect();
                        if list.is_empty() {
                            vec![(set + 1) % n]
                        } else {
                            list
                        }
                    }),
                    restore,
                });
            (
                direction.clone(),
                prop::collection::vec(target.clone(), n),
                prop::option::of(0..SET_PRESENCE_PAIRS.len()),
                prop::collection::vec(rule, 0..4),
            )
        })
        .prop_map(|(direction, targets, default_teams, rules)| GenProfile {
            direction,
            targets,
            default_teams,
            rules,
        })
}

fn pair(i: usize) -> String {
    let (a, b) = SET_PRESENCE_PAIRS[i % SET_PRESENCE_PAIRS.len()];
    format!("{a}/{b}")
}

fn render(g: &GenProfile, direction: &str) -> String {
    let mut out = format!("direction = \"{direction}\"\n");
    if let Some(d) = g.default_teams {
        let _ = writeln!(out, "default_teams = \"{}\"", pair(d));
    }
    out.push_str("[statuses]\n");
    for (i, t) in g.targets.iter().enumerate() {
        let teams = match t {
            None => String::new(),
            Some(None) => "teams = \"clear\"".to_owned(),
            Some(Some(p)) => format!("teams = \"{}\"", pair(*p)),
        };
        let _ = writeln!(out, "\"{}\" = {{ {teams} }}", NAMES[i]);
    }
    for r in &g.rules {
        let when: Vec<String> = r
            .when
            .iter()
            .map(|&p| format!("\"{}\"", PATTERNS[p]))
            .collect();
        let replaces = match &r.replaces {
            None => "\"*\"".to_owned(),
            Some(list) => {
                let names: Vec<String> =
                    list.iter().map(|&s| format!("\"{}\"", NAMES[s])).collect();
                format!("[{}]", names.join(", "))
            }
        };
        let _ = write!(
            out,
            "[[teams_to_cc]]\nwhen = [{}]\nset = \"{}\"\nreplaces = {replaces}\nrestore = {}\n",
            when.join(", "),
            NAMES[r.set],
            r.restore
        );
    }
    out
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Sim {
    cc: StatusId,
    ours: Option<Presence>,
    user: Option<Presence>,
    memory: Option<(usize, StatusId, StatusId)>,
}

/// One step of the model as SPEC §4 / mappings/README.md state it; `true` to
/// run CC → Teams, `false` for Teams → CC.
fn sim_step(p: &Profile, cc_to_teams: bool, s: &Sim) -> Sim {
    let mut n = s.clone();
    if cc_to_teams {
        n.ours = match p.target_for(s.cc) {
            TeamsTarget::Set(x) => Some(x.clone()),
            TeamsTarget::Clear => None,
        };
        return n;
    }
    let Some(shown) = s.ours.clone().or(s.user.clone()) else {
        return n;
    };
    let fired = p.rule_for(&shown, s.cc);
    if let Some((i, r)) = fired.filter(|(_, r)| r.set != s.cc) {
        n.cc = r.set;
        if r.restore && s.memory.is_none() {
            n.memory = Some((i, s.cc, r.set));
        }
    } else if let Some((i, prev, set)) = s.memory {
        if !p.rules[i].matches_presence(&shown) && s.cc == set {
            n.cc = prev;
            n.memory = None;
        } else if s.cc != set {
            n.memory = None;
        }
    }
    n
}

fn shown_text(s: &Sim) -> String {
    s.ours
        .clone()
        .or(s.user.clone())
        .map_or_else(|| "no presence".to_owned(), |x| x.to_string())
}

/// Runs until settled (`None`) or an exact (state, next step) repeat, giving
/// then the values visited, at least `min_len` of them.
fn brute_force(
    p: &Profile,
    start: Sim,
    teams_first: bool,
    first: String,
    min_len: usize,
) -> Option<Vec<String>> {
    let mut steps = Vec::new();
    if p.direction.cc_to_teams() {
        steps.push(true);
    }
    if p.direction.teams_to_cc() {
        steps.push(false);
    }
    if steps.is_empty() {
        return None;
    }
    let mut k = if teams_first { steps.len() - 1 } else { 0 };
    let mut state = start;
    let mut seen = HashSet::new();
    let mut values = vec![first];
    let mut unchanged = 0;
    let mut repeated = false;
    loop {
        let phase = steps[k % steps.len()];
        if !seen.insert((state.clone(), phase)) {
            repeated = true;
        }
        if repeated && values.len() >= min_len {
            return Some(values);
        }
        let next = sim_step(p, phase, &state);
        if next == state {
            unchanged += 1;
            if unchanged >= steps.len() {
                return None;
            }
        } else {
            unchanged = 0;
        }
        state = next;
        values.push(if phase {
            shown_text(&state)
        } else {
            p.status_name(state.cc).to_owned()
        });
        k += 1;
    }
}

fn universe(p: &Profile) -> Vec<Presence> {
    let mut out: Vec<Presence> = TEAMS_STATES
        .iter()
        .map(|(a, b)| Presence::from_graph(a, b))
        .collect();
    for t in &p.cc_to_teams {
        if let TeamsTarget::Set(x) = t {
            out.push(x.clone());
        }
    }
    for r in &p.rules {
        for q in &r.when {
            if let (Some(a), Some(b)) = (&q.availability, &q.activity) {
                out.push(Presence::new(a.clone(), b.clone()));
            }
        }
    }
    out
}

fn direction_of(name: &str) -> Direction {
    match name {
        "cc_to_teams" => Direction::CcToTeams,
        "teams_to_cc" => Direction::TeamsToCc,
        "off" => Direction::Off,
        _ => Direction::Both,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn the_cycle_check_agrees_with_brute_force(g in gen_profile()) {
        let path = Path::new("g.toml");
        // Direction off is never cycle-checked: that gives the profile even
        // when the real direction has cycles.
        let Ok(mut profile) = parse_profile("g", path, &render(&g, "off")) else {
            // Shadowed rules and the like: not this test's concern.
            return Ok(());
        };
        profile.direction = direction_of(g.direction);
        let result = parse_profile("g", path, &render(&g, g.direction));
        let cycles = find_cycles(&profile);
        let ids = || (0..profile.statuses.len()).map(|i| StatusId(i as u16));

        let cc_start = |s: StatusId| Sim { cc: s, ours: None, user: None, memory: None };
        let teams_start = |p: &Presence, s: StatusId| Sim { cc: s, ours: None, user: Some(p.clone()), memory: None };

        match &result {
            Ok(loaded) => {
                prop_assert_eq!(loaded, &profile);
                prop_assert!(cycles.is_empty());
                // Soundness: every start of the model settles.
                for s in ids() {
                    let name = profile.status_name(s).to_owned();
                    prop_assert_eq!(brute_force(&profile, cc_start(s), false, name, 0), None, "CC {:?}", s);
                    for p in universe(&profile) {
                        prop_assert_eq!(brute_force(&profile, teams_start(&p, s), true, p.to_string(), 0), None,
                            "Teams {} with CC {:?}", p, s);
                    }
                }
            }
            Err(diagnostics) => {
                prop_assert!(!cycles.is_empty(), "{:?}", diagnostics);
                prop_assert_eq!(diagnostics.len(), cycles.len());
                for d in diagnostics {
                    prop_assert!(d.message.starts_with("mapping cycle: "), "{}", d);
                }
                // Every reported trajectory is what the model really does,
                // and the model really never settles from that start.
                for c in &cycles {
                    let n = c.trajectory.len();
                    let values = match &c.start {
                        Start::Cc(s) => brute_force(&profile, cc_start(*s), false, profile.status_name(*s).to_owned(), n),
                        Start::Teams { presence, cc } => brute_force(&profile, teams_start(presence, *cc), true, presence.to_string(), n),
                    };
                    let Some(values) = values else {
                        return Err(TestCaseError::fail(format!("reported but settles: {}", c.message(&profile))));
                    };
                    prop_assert_eq!(&values[..n], &c.trajectory[..]);
                }
                // Completeness for CC starts: each one that does not settle is reported.
                for s in ids() {
                    let loops = brute_force(&profile, cc_start(s), false, String::new(), 0).is_some();
                    let reported = cycles.iter().any(|c| c.start == Start::Cc(s));
                    prop_assert_eq!(loops, reported, "CC {:?}", s);
                }
            }
        }
    }
}
