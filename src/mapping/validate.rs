//! From the file as written to the [`Profile`] the engine runs: names resolve,
//! Teams pairs are writable in the profile's write mode, rules can fire.
//!
//! Every problem is collected; a field that is wrong falls back to its default
//! so that the rest of the file is still checked against something sensible.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::Problem;
use super::file::{RawProfile, RawReplaces, RawRule, RawStatus, Sp};
use super::profile::{CcStatus, Direction, Profile, Rule, Side, StatusId, TeamsTarget, WriteMode};
use crate::diagnostics::{did_you_mean, line_column, nearest};
use crate::duration::{format_duration, parse_duration};
use crate::presence::{
    Activity, Availability, PREFERRED_PRESENCE_PAIRS, PairError, Presence, PresencePattern,
    SET_PRESENCE_PAIRS,
};

pub const DEFAULT_DEBOUNCE: Duration = Duration::from_secs(15);

/// The shortest debounce a profile or rule may have. Below a second the
/// window stops doing its jobs: the conflict rule (both sides changing inside
/// one window, the `prefer` side first) has no window to work in, so the two
/// directions race; one Teams read (polled every few seconds) or one CC
/// report is enough to propagate, so every flicker becomes a change the
/// loop guard counts and a write the echo window must then recognise.
pub const MIN_DEBOUNCE: Duration = Duration::from_secs(1);

const DIRECTIONS: &[(&str, Direction)] = &[
    ("both", Direction::Both),
    ("cc_to_teams", Direction::CcToTeams),
    ("teams_to_cc", Direction::TeamsToCc),
    ("off", Direction::Off),
];
const SIDES: &[(&str, Side)] = &[("cc", Side::Cc), ("teams", Side::Teams)];
const WRITE_MODES: &[(&str, WriteMode)] = &[
    ("session", WriteMode::Session),
    ("preferred", WriteMode::Preferred),
];

/// Where each validated piece came from, for problems found later (cycles).
#[derive(Clone, Debug, Default)]
pub struct Origins {
    /// Offset of each status's key, indexed by `StatusId`.
    pub statuses: Vec<usize>,
    /// Offset of each rule's header, indexed like `Profile::rules`.
    pub rules: Vec<usize>,
    /// Offset of the `[statuses]` table.
    pub statuses_table: usize,
}

/// Validates everything but cycles. The profile is complete only when no
/// problem is returned; otherwise it holds what was valid.
pub fn validate(name: &str, source: &str, raw: &RawProfile) -> (Profile, Origins, Vec<Problem>) {
    let mut v = Validator {
        source,
        problems: Vec::new(),
    };
    let direction = v
        .choice(&raw.direction, "direction", DIRECTIONS)
        .unwrap_or(Direction::Both);
    let prefer = v.choice(&raw.prefer, "prefer", SIDES).unwrap_or(Side::Cc);
    // An invalid write mode leaves it unknown which pairs are writable, so
    // pairs are then only checked for being real Teams values.
    let write_mode = match &raw.write_mode {
        None => Some(WriteMode::Session),
        some => v.choice(some, "write_mode", WRITE_MODES),
    };
    let debounce = raw
        .debounce
        .as_ref()
        .and_then(|d| v.debounce(d))
        .unwrap_or(DEFAULT_DEBOUNCE);
    let default_target = raw
        .default_teams
        .as_ref()
        .and_then(|t| v.target(t, write_mode))
        .unwrap_or(TeamsTarget::Clear);

    let mut origins = Origins {
        statuses_table: raw.statuses.as_ref().map_or(0, |s| s.at),
        ..Origins::default()
    };
    let (statuses, cc_to_teams) = v.statuses(raw, write_mode, &default_target, &mut origins);
    let mut profile = Profile {
        name: name.to_owned(),
        direction,
        debounce,
        prefer,
        write_mode: write_mode.unwrap_or(WriteMode::Session),
        statuses,
        cc_to_teams,
        default_teams: default_target.clone(),
        rules: Vec::new(),
        blocking: Vec::new(),
    };
    // Unknown-status errors would only repeat that [statuses] is missing or empty.
    let resolve = !profile.statuses.is_empty();
    let mut built: Vec<(usize, Rule)> = Vec::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    for (index, raw_rule) in raw.rules.iter().enumerate() {
        let name = raw_rule
            .name
            .as_ref()
            .map_or_else(|| format!("rule {}", index + 1), |n| n.value.clone());
        if let Some(&earlier) = names.get(&name) {
            let at = raw_rule.name.as_ref().map_or(raw_rule.at, |n| n.at);
            v.problem(
                at,
                format!(
                    "duplicate rule name `{name}`: the rule at line {} has it too",
                    v.line(earlier)
                ),
            );
        } else {
            names.insert(name.clone(), raw_rule.at);
        }
        if let Some(rule) = v.rule(raw_rule, name, &profile, resolve) {
            built.push((raw_rule.at, rule));
        }
    }
    v.shadowed(&built, &profile);
    for (at, rule) in built {
        origins.rules.push(at);
        profile.rules.push(rule);
    }
    if let Some(blocking) = &raw.blocking {
        profile.blocking = blocking.value.iter().filter_map(|p| v.pattern(p)).collect();
    }
    (profile, origins, v.problems)
}

struct Validator<'a> {
    source: &'a str,
    problems: Vec<Problem>,
}

impl Validator<'_> {
    fn problem(&mut self, at: usize, message: impl Into<String>) {
        self.problems.push(Problem::new(at, message));
    }

    fn line(&self, at: usize) -> usize {
        line_column(self.source, at).0
    }

    fn choice<T: Copy>(
        &mut self,
        field: &Option<Sp<String>>,
        key: &str,
        options: &[(&str, T)],
    ) -> Option<T> {
        let field = field.as_ref()?;
        if let Some((_, value)) = options.iter().find(|(name, _)| *name == field.value) {
            return Some(*value);
        }
        let names: Vec<&str> = options.iter().map(|(name, _)| *name).collect();
        let hint = did_you_mean(&field.value, names.iter().copied());
        self.problem(
            field.at,
            format!(
                "unknown {key} `{}`{hint}; expected one of: {}",
                field.value,
                names.join(", ")
            ),
        );
        None
    }

    fn duration(&mut self, field: &Sp<String>, key: &str) -> Option<Duration> {
        match parse_duration(&field.value) {
            Ok(d) => Some(d),
            Err(why) => {
                self.problem(field.at, format!("bad `{key}`: {why}"));
                None
            }
        }
    }

    /// A debounce window: a duration of at least [`MIN_DEBOUNCE`].
    fn debounce(&mut self, field: &Sp<String>) -> Option<Duration> {
        let d = self.duration(field, "debounce")?;
        if d < MIN_DEBOUNCE {
            self.problem(
                field.at,
                format!(
                    "`debounce` = \"{}\" is too short: use at least {}; a shorter window lets every flicker through and leaves no time to settle a change on both sides (`prefer`)",
                    field.value,
                    format_duration(MIN_DEBOUNCE)
                ),
            );
            return None;
        }
        Some(d)
    }

    /// `"clear"` or a pair writable in `mode` (any known pair when the mode is
    /// itself invalid).
    fn target(&mut self, field: &Sp<String>, mode: Option<WriteMode>) -> Option<TeamsTarget> {
        let text = field.value.trim();
        if text.eq_ignore_ascii_case("clear") {
            return Some(TeamsTarget::Clear);
        }
        let (api, allowed) = match mode {
            Some(WriteMode::Preferred) => (
                "setUserPreferredPresence (write_mode = \"preferred\")",
                PREFERRED_PRESENCE_PAIRS,
            ),
            _ => ("setPresence (write_mode = \"session\")", SET_PRESENCE_PAIRS),
        };
        let allowed: Vec<String> = allowed.iter().map(|(a, b)| format!("{a}/{b}")).collect();
        let presence = match Presence::parse_pair(text) {
            Ok(p) => p,
            Err(PairError::NotAPair) => {
                let hint = match Availability::parse_known(text) {
                    Some(availability) => {
                        let with: Vec<&str> = allowed
                            .iter()
                            .filter(|p| p.split('/').next() == Some(availability.as_str()))
                            .map(String::as_str)
                            .collect();
                        if with.is_empty() {
                            format!("; {api} accepts: {}", allowed.join(", "))
                        } else {
                            format!("; with {availability}, {api} accepts: {}", with.join(", "))
                        }
                    }
                    None => {
                        let candidates = allowed.iter().map(String::as_str).chain(["clear"]);
                        did_you_mean(text, candidates)
                    }
                };
                self.problem(
                    field.at,
                    format!(
                        "Teams target `{text}` is neither \"clear\" nor an Availability/Activity pair{hint}"
                    ),
                );
                return None;
            }
            Err(err) => {
                self.pair_error(field.at, text, err);
                return None;
            }
        };
        let Some(mode) = mode else {
            return Some(TeamsTarget::Set(presence));
        };
        let settable = match mode {
            WriteMode::Session => presence.is_settable_session(),
            WriteMode::Preferred => presence.is_settable_preferred(),
        };
        if settable {
            return Some(TeamsTarget::Set(presence));
        }
        let written = presence.to_string();
        // Edit distance over the whole pair misses the obvious neighbour
        // (Busy/Busy → Busy/InACall): a pair sharing a side is the better guess.
        let sharing = |side: usize, value: &str| {
            allowed
                .iter()
                .find(|p| p.split('/').nth(side) == Some(value))
                .cloned()
        };
        let best = sharing(0, presence.availability.as_str())
            .or_else(|| sharing(1, presence.activity.as_str()))
            .or_else(|| nearest(&written, allowed.iter().map(String::as_str)).map(str::to_owned));
        let mut listed: Vec<&str> = Vec::with_capacity(allowed.len());
        if let Some(best) = &best {
            listed.push(best);
        }
        listed.extend(
            allowed
                .iter()
                .map(String::as_str)
                .filter(|p| Some(*p) != best.as_deref()),
        );
        let hint = best
            .as_ref()
            .map(|b| format!(" (did you mean `{b}`?)"))
            .unwrap_or_default();
        self.problem(
            field.at,
            format!(
                "`{written}` cannot be set by an app{hint}; {api} accepts: {}",
                listed.join(", ")
            ),
        );
        None
    }

    /// Names the side of `text` that is not a known Teams value.
    fn pair_error(&mut self, at: usize, text: &str, err: PairError) {
        let (a, b) = text.split_once('/').unwrap_or((text, "*"));
        let (side, value, known) = match err {
            PairError::UnknownActivity => ("activity", b.trim(), Activity::KNOWN),
            _ => ("availability", a.trim(), Availability::KNOWN),
        };
        let hint = did_you_mean(value, known.iter().copied());
        let context = if value == text {
            String::new()
        } else {
            format!(" in `{text}`")
        };
        self.problem(at, format!("unknown Teams {side} `{value}`{context}{hint}"));
    }

    fn pattern(&mut self, field: &Sp<String>) -> Option<PresencePattern> {
        if field.value.trim().is_empty() {
            self.problem(
                field.at,
                "empty presence pattern: write `Availability/Activity`, `Availability` or use `*`",
            );
            return None;
        }
        match PresencePattern::parse(&field.value) {
            Ok(p) => Some(p),
            Err(err) => {
                self.pair_error(field.at, field.value.trim(), err);
                None
            }
        }
    }

    fn statuses(
        &mut self,
        raw: &RawProfile,
        mode: Option<WriteMode>,
        default_target: &TeamsTarget,
        origins: &mut Origins,
    ) -> (Vec<CcStatus>, Vec<TeamsTarget>) {
        let Some(table) = &raw.statuses else {
            return (Vec::new(), Vec::new());
        };
        if table.value.is_empty() {
            self.problem(
                table.at,
                "[statuses] is empty: list every CC status the profile knows",
            );
            return (Vec::new(), Vec::new());
        }
        if table.value.len() > usize::from(u16::MAX) {
            self.problem(
                table.at,
                format!("too many statuses: at most {} are supported", u16::MAX),
            );
            return (Vec::new(), Vec::new());
        }
        let mut statuses = Vec::with_capacity(table.value.len());
        let mut targets = Vec::with_capacity(table.value.len());
        // Folded names seen so far: statuses are matched exactly, so two
        // names that differ only in case are one status typed twice.
        let mut folded: BTreeMap<String, (&str, usize)> = BTreeMap::new();
        for RawStatus {
            name,
            routable,
            teams,
        } in &table.value
        {
            if name.value.trim().is_empty() {
                self.problem(name.at, "a CC status name cannot be empty");
            } else if name.value == "*" {
                self.problem(
                    name.at,
                    "`*` cannot be a status name: in `replaces` it means any status",
                );
            } else if let Some((first, at)) = folded.get(&name.value.to_lowercase()) {
                let line = self.line(*at);
                self.problem(
                    name.at,
                    format!(
                        "CC status `{}` differs from `{first}` (line {line}) only in case: did you mean `{first}`? \
                         Statuses are matched exactly, so keep one spelling, the one the CC sends",
                        name.value
                    ),
                );
            } else {
                folded.insert(name.value.to_lowercase(), (name.value.as_str(), name.at));
            }
            let target = teams
                .as_ref()
                .and_then(|t| self.target(t, mode))
                .unwrap_or_else(|| default_target.clone());
            statuses.push(CcStatus {
                name: name.value.clone(),
                routable: routable.as_ref().is_some_and(|r| r.value),
            });
            targets.push(target);
            origins.statuses.push(name.at);
        }
        (statuses, targets)
    }

    fn status(&mut self, field: &Sp<String>, profile: &Profile) -> Option<StatusId> {
        if let Some(id) = profile.status_id(&field.value) {
            return Some(id);
        }
        let hint = did_you_mean(
            &field.value,
            profile.statuses.iter().map(|s| s.name.as_str()),
        );
        self.problem(
            field.at,
            format!(
                "unknown CC status `{}`{hint}; statuses are the keys of [statuses], exact case",
                field.value
            ),
        );
        None
    }

    fn rule(
        &mut self,
        raw: &RawRule,
        name: String,
        profile: &Profile,
        resolve: bool,
    ) -> Option<Rule> {
        let mut ok = true;
        let mut when = Vec::new();
        match &raw.when {
            Some(list) if list.value.is_empty() => {
                ok = false;
                self.problem(
                    list.at,
                    "`when` is empty: a rule needs at least one Teams presence pattern",
                );
            }
            Some(list) => {
                for p in &list.value {
                    match self.pattern(p) {
                        Some(p) => when.push(p),
                        None => ok = false,
                    }
                }
            }
            None => ok = false,
        }
        let set = match &raw.set {
            Some(set) if resolve => self.status(set, profile),
            _ => None,
        };
        ok &= set.is_some();
        let replaces = match &raw.replaces {
            None => {
                ok = false;
                None
            }
            Some(Sp {
                value: RawReplaces::Any,
                ..
            }) => None,
            Some(Sp {
                value: RawReplaces::List(list),
                at,
            }) => {
                if list.is_empty() {
                    ok = false;
                    self.problem(
                        *at,
                        "`replaces` is empty: the rule could never fire; list the CC statuses it may replace, or \"*\" for any",
                    );
                }
                let mut ids = Vec::with_capacity(list.len());
                for status in list {
                    if !resolve {
                        ok = false;
                        continue;
                    }
                    match self.status(status, profile) {
                        Some(id) if Some(id) == set => {
                            ok = false;
                            self.problem(
                                status.at,
                                format!(
                                    "`{}` is this rule's own `set` status: replacing it could never change anything",
                                    status.value
                                ),
                            );
                        }
                        Some(id) => {
                            if !ids.contains(&id) {
                                ids.push(id);
                            }
                        }
                        None => ok = false,
                    }
                }
                Some(ids)
            }
        };
        let debounce = match &raw.debounce {
            Some(d) => {
                let parsed = self.debounce(d);
                ok &= parsed.is_some();
                parsed
            }
            None => None,
        };
        let set = set?;
        ok.then_some(Rule {
            name,
            when,
            set,
            replaces,
            restore: raw.restore.as_ref().is_some_and(|r| r.value),
            debounce,
        })
    }

    /// A rule is shadowed when, for each of its patterns and each status it
    /// may replace, some earlier rule matches that whole pattern and may
    /// replace that status: `rule_for` then always stops earlier.
    fn shadowed(&mut self, rules: &[(usize, Rule)], profile: &Profile) {
        let all: Vec<StatusId> = (0..profile.statuses.len())
            .filter_map(|i| u16::try_from(i).ok().map(StatusId))
            .collect();
        for (j, (at, rule)) in rules.iter().enumerate() {
            let replaced = rule.replaces.as_deref().unwrap_or(&all);
            if replaced.is_empty() {
                continue;
            }
            let mut first: Vec<usize> = Vec::new();
            let covered = rule.when.iter().all(|q| {
                replaced.iter().all(|&s| {
                    let earlier = rules[..j]
                        .iter()
                        .position(|(_, i)| i.may_replace(s) && i.when.iter().any(|p| p.covers(q)));
                    if let Some(i) = earlier
                        && !first.contains(&i)
                    {
                        first.push(i);
                    }
                    earlier.is_some()
                })
            });
            if !covered {
                continue;
            }
            first.sort_unstable();
            let earlier: Vec<String> = first
                .iter()
                .map(|&i| format!("`{}` (line {})", rules[i].1.name, self.line(rules[i].0)))
                .collect();
            let which = match earlier.as_slice() {
                [one] => format!("rule {one} matches first"),
                many => format!("rules {} match first", many.join(", ")),
            };
            self.problem(
                *at,
                format!(
                    "rule `{}` (line {}) can never fire: {which}",
                    rule.name,
                    self.line(*at)
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::mapping::parse_profile;

    fn load(source: &str) -> Result<Profile, Vec<String>> {
        parse_profile("test", Path::new("t.toml"), source)
            .map_err(|ds| ds.into_iter().map(|d| d.message).collect())
    }

    fn errors(source: &str) -> Vec<String> {
        load(source).err().unwrap_or_default()
    }

    fn pair(a: &str, b: &str) -> TeamsTarget {
        TeamsTarget::Set(Presence::from_graph(a, b))
    }

    const MEETING: &str = "[statuses]\nAvailable = { routable = true }\nMeeting = {}\nLunch = { teams = \"Away/Away\" }\n";

    #[test]
    fn defaults_fill_what_the_file_leaves_out() {
        let Ok(p) = load(&format!(
            "{MEETING}[[teams_to_cc]]\nwhen = [\"Busy/InAMeeting\"]\nset = \"Meeting\"\nreplaces = \"*\"\n"
        )) else {
            panic!("should load");
        };
        assert_eq!(p.name, "test");
        assert_eq!(p.direction, Direction::Both);
        assert_eq!(p.debounce, Duration::from_secs(15));
        assert_eq!(p.prefer, Side::Cc);
        assert_eq!(p.write_mode, WriteMode::Session);
        assert_eq!(
            p.cc_to_teams,
            [TeamsTarget::Clear, TeamsTarget::Clear, pair("Away", "Away")]
        );
        assert!(p.statuses[0].routable && !p.statuses[1].routable);
        assert_eq!(p.rules[0].name, "rule 1");
        assert_eq!(p.rules[0].replaces, None);
        assert!(!p.rules[0].restore);
        assert_eq!(p.rules[0].debounce, None);
        assert!(p.blocking.is_empty());
    }

    #[test]
    fn every_key_is_read() {
        let Ok(p) = load(&format!(
            "direction = \"teams_to_cc\"\ndebounce = \"1m\"\nprefer = \"teams\"\ndefault_teams = \"busy/inacall\"\n\
             {MEETING}Offline = {{ teams = \"CLEAR\" }}\n\
             [[teams_to_cc]]\nname = \"m\"\nwhen = [\"Busy/InAMeeting\"]\nset = \"Meeting\"\nreplaces = [\"Available\"]\nrestore = true\ndebounce = \"PT30S\"\n\
             [routing]\nblocking = [\"DoNotDisturb/*\"]\n"
        )) else {
            panic!("should load");
        };
        assert_eq!(p.direction, Direction::TeamsToCc);
        assert_eq!(p.debounce, Duration::from_secs(60));
        assert_eq!(p.prefer, Side::Teams);
        // Teams values are normalised to Graph's spelling.
        assert_eq!(p.cc_to_teams[0], pair("Busy", "InACall"));
        assert_eq!(p.cc_to_teams[3], TeamsTarget::Clear);
        let rule = &p.rules[0];
        assert_eq!(rule.name, "m");
        assert_eq!(rule.replaces, Some(vec![StatusId(0)]));
        assert!(rule.restore);
        assert_eq!(rule.debounce, Some(Duration::from_secs(30)));
        assert!(p.is_blocking(&Presence::from_graph("DoNotDisturb", "Presenting")));
    }

    #[test]
    fn bad_choices_name_the_nearest_value() {
        assert_eq!(
            errors(&format!("direction = \"Both\"\n{MEETING}")),
            [
                "unknown direction `Both` (did you mean `both`?); expected one of: both, cc_to_teams, teams_to_cc, off"
            ]
        );
        assert_eq!(
            errors(&format!("prefer = \"agent\"\n{MEETING}")),
            ["unknown prefer `agent`; expected one of: cc, teams"]
        );
    }

    #[test]
    fn bad_durations_are_reported() {
        let found = errors(&format!("debounce = \"fast\"\n{MEETING}"));
        assert_eq!(found.len(), 1);
        assert!(found[0].starts_with("bad `debounce`: `fast` is not a duration"));
    }

    #[test]
    fn debounces_below_a_second_are_refused_where_they_are_written() {
        for short in ["0s", "1ms", "999ms", "PT0S"] {
            let found = parse_profile(
                "test",
                Path::new("t.toml"),
                &format!(
                    "debounce = \"{short}\"\n{MEETING}[[teams_to_cc]]\nwhen = \"Busy\"\nset = \"Meeting\"\nreplaces = [\"Available\"]\ndebounce = \"{short}\"\n"
                ),
            )
            .err()
            .unwrap_or_default();
            let expected = format!(
                "`debounce` = \"{short}\" is too short: use at least 1s; a shorter window lets every flicker through and leaves no time to settle a change on both sides (`prefer`)"
            );
            let at: Vec<(usize, usize, &str)> = found
                .iter()
                .map(|d| (d.line, d.column, d.message.as_str()))
                .collect();
            assert_eq!(
                at,
                [(1, 12, expected.as_str()), (10, 12, expected.as_str())],
                "{short}"
            );
        }
        // The floor itself is fine, for the profile and for a rule.
        let Ok(p) = load(&format!(
            "debounce = \"1s\"\n{MEETING}[[teams_to_cc]]\nwhen = \"Busy\"\nset = \"Meeting\"\nreplaces = [\"Available\"]\ndebounce = \"1000ms\"\n"
        )) else {
            panic!("a 1 s debounce should load");
        };
        assert_eq!(p.debounce, MIN_DEBOUNCE);
        assert_eq!(p.rules[0].debounce, Some(MIN_DEBOUNCE));
    }

    #[test]
    fn statuses_must_not_be_empty() {
        assert_eq!(
            errors("statuses = {}\n"),
            ["[statuses] is empty: list every CC status the profile knows"]
        );
    }

    #[test]
    fn the_wildcard_is_not_a_status_name() {
        assert_eq!(
            errors("[statuses]\n\"*\" = {}\n"),
            ["`*` cannot be a status name: in `replaces` it means any status"]
        );
    }

    #[test]
    fn targets_must_be_writable_in_the_write_mode() {
        let session = errors("[statuses]\nA = { teams = \"Busy/Busy\" }\n");
        assert_eq!(session.len(), 1);
        assert!(session[0].starts_with(
            "`Busy/Busy` cannot be set by an app (did you mean `Busy/InACall`?); setPresence"
        ));
        assert!(
            load("write_mode = \"preferred\"\n[statuses]\nA = { teams = \"Busy/Busy\" }\n").is_ok()
        );
        // With the mode itself wrong, only the pair's values are checked.
        assert_eq!(
            errors("write_mode = \"x\"\n[statuses]\nA = { teams = \"Busy/Busy\" }\nB = { teams = \"Busy/Bsy\" }\n").len(),
            2
        );
    }

    #[test]
    fn unknown_teams_values_name_the_nearest() {
        assert_eq!(
            errors("[statuses]\nA = { teams = \"Away/Awya\" }\n"),
            ["unknown Teams activity `Awya` in `Away/Awya` (did you mean `Away`?)"]
        );
        assert_eq!(
            errors(&format!(
                "{MEETING}[routing]\nblocking = [\"Presenting\"]\n"
            )),
            ["unknown Teams availability `Presenting`"]
        );
    }

    fn rule(body: &str) -> String {
        format!("{MEETING}[[teams_to_cc]]\n{body}\n")
    }

    #[test]
    fn rules_need_patterns_and_known_statuses() {
        assert_eq!(
            errors(&rule("when = []\nset = \"Meeting\"\nreplaces = \"*\"")),
            ["`when` is empty: a rule needs at least one Teams presence pattern"]
        );
        assert_eq!(
            errors(&rule(
                "when = \"Busy\"\nset = \"Meting\"\nreplaces = [\"available\"]"
            )),
            [
                "unknown CC status `Meting` (did you mean `Meeting`?); statuses are the keys of [statuses], exact case",
                "unknown CC status `available` (did you mean `Available`?); statuses are the keys of [statuses], exact case",
            ]
        );
        assert_eq!(
            errors(&rule(
                "when = \"Busy\"\nset = \"Meeting\"\nreplaces = [\"Meeting\"]"
            )),
            ["`Meeting` is this rule's own `set` status: replacing it could never change anything"]
        );
        assert_eq!(
            errors(&rule("when = \"Busy\"\nset = \"Meeting\"\nreplaces = []")).len(),
            1
        );
    }

    #[test]
    fn statuses_differing_only_in_case_are_refused_where_the_second_is() {
        let source = "[statuses]\nAvailable = { routable = true }\nLunch = {}\navailable = {}\n";
        let problems = parse_profile("test", Path::new("t.toml"), source).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].line, 4, "{problems:?}");
        assert_eq!(
            problems[0].message,
            "CC status `available` differs from `Available` (line 2) only in case: did you mean `Available`? \
             Statuses are matched exactly, so keep one spelling, the one the CC sends"
        );
        assert!(load("[statuses]\nAvailable = {}\nAvailable2 = {}\n").is_ok());
    }

    #[test]
    fn duplicate_rule_names_are_reported() {
        let body = "name = \"x\"\nwhen = \"Busy\"\nset = \"Meeting\"\nreplaces = [\"Available\"]";
        let other = "name = \"x\"\nwhen = \"Away\"\nset = \"Lunch\"\nreplaces = [\"Available\"]";
        assert_eq!(
            errors(&format!("{}[[teams_to_cc]]\n{other}\n", rule(body))),
            ["duplicate rule name `x`: the rule at line 5 has it too"]
        );
    }

    #[test]
    fn a_rule_behind_a_broader_one_is_shadowed() {
        let first = "name = \"busy\"\nwhen = \"Busy\"\nset = \"Meeting\"\nreplaces = \"*\"";
        let second = "name = \"meeting\"\nwhen = \"Busy/InAMeeting\"\nset = \"Lunch\"\nreplaces = [\"Available\"]";
        assert_eq!(
            errors(&format!("{}[[teams_to_cc]]\n{second}\n", rule(first))),
            ["rule `meeting` (line 10) can never fire: rule `busy` (line 5) matches first"]
        );
    }

    #[test]
    fn a_rule_for_other_statuses_is_not_shadowed() {
        let first = "when = \"Busy\"\nset = \"Meeting\"\nreplaces = [\"Available\"]";
        let second = "when = \"Busy/InAMeeting\"\nset = \"Meeting\"\nreplaces = [\"Lunch\"]";
        let third =
            "when = [\"Busy/InAMeeting\", \"Away\"]\nset = \"Meeting\"\nreplaces = [\"Available\"]";
        assert_eq!(
            errors(&format!(
                "{}[[teams_to_cc]]\n{second}\n[[teams_to_cc]]\n{third}\n",
                rule(first)
            )),
            Vec::<String>::new()
        );
    }
}
