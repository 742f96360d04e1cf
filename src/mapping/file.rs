//! The mapping file as written: its TOML shape, every value with the byte
//! offset it came from.
//!
//! This layer knows keys and types only. It walks the whole document instead
//! of deserialising with serde because serde stops at the first problem, and
//! admins should see every mistake in one `check` run. Values are checked for
//! meaning in `validate`.

use std::ops::Range;

use toml_edit::{Array, ArrayOfTables, ImDocument, InlineTable, Item, Table, Value};

use super::Problem;
use crate::diagnostics::did_you_mean;

/// A value and the byte offset in the source where it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sp<T> {
    pub value: T,
    pub at: usize,
}

/// The statuses a rule may replace, as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RawReplaces {
    /// `"*"`: any status.
    Any,
    List(Vec<Sp<String>>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawStatus {
    /// The key, exactly as the CC spells the status.
    pub name: Sp<String>,
    pub routable: Option<Sp<bool>>,
    pub teams: Option<Sp<String>>,
}

/// One `[[teams_to_cc]]` entry. A required key that is `None` was missing or
/// of the wrong type; that is already reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawRule {
    /// Where the entry starts (its `[[teams_to_cc]]` header).
    pub at: usize,
    pub name: Option<Sp<String>>,
    pub when: Option<Sp<Vec<Sp<String>>>>,
    pub set: Option<Sp<String>>,
    pub replaces: Option<Sp<RawReplaces>>,
    pub restore: Option<Sp<bool>>,
    pub debounce: Option<Sp<String>>,
}

/// The whole file. Optional keys that are `None` were absent or already
/// reported as the wrong type.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawProfile {
    pub description: Option<Sp<String>>,
    pub direction: Option<Sp<String>>,
    pub debounce: Option<Sp<String>>,
    pub prefer: Option<Sp<String>>,
    pub write_mode: Option<Sp<String>>,
    pub default_teams: Option<Sp<String>>,
    /// `None` when `[statuses]` is missing or not a table (reported).
    pub statuses: Option<Sp<Vec<RawStatus>>>,
    pub rules: Vec<RawRule>,
    pub blocking: Option<Sp<Vec<Sp<String>>>>,
}

pub const ROOT_KEYS: &[&str] = &[
    "description",
    "direction",
    "debounce",
    "prefer",
    "write_mode",
    "default_teams",
    "statuses",
    "teams_to_cc",
    "routing",
];
pub const STATUS_KEYS: &[&str] = &["routable", "teams"];
pub const RULE_KEYS: &[&str] = &["name", "when", "set", "replaces", "restore", "debounce"];
pub const ROUTING_KEYS: &[&str] = &["blocking"];

/// Parses the TOML and reads the profile's shape, returning what could be
/// read alongside every problem, so validation can still report on the rest.
/// `None` only for a TOML syntax error, which is then the one problem: toml
/// stops there.
pub fn read(source: &str) -> (Option<RawProfile>, Vec<Problem>) {
    match ImDocument::parse(source) {
        Ok(doc) => {
            let mut reader = Reader::default();
            let profile = reader.root(Node::of_item(doc.as_item(), 0));
            (Some(profile), reader.problems)
        }
        Err(err) => {
            let at = err.span().map_or(0, |span| span.start);
            // toml's message is several lines (what, then what was expected);
            // a diagnostic is one line.
            let message = err
                .message()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(": ");
            let at = second_definition(source, at, &message).unwrap_or(at);
            (None, vec![Problem::new(at, message)])
        }
    }
}

/// toml places a duplicate key inside an inline table at the table's opening
/// brace; the admin wants the second definition. Only looks along the same
/// line, where an inline table lives.
fn second_definition(source: &str, at: usize, message: &str) -> Option<usize> {
    let key = message.strip_prefix("duplicate key `")?.strip_suffix('`')?;
    let line = source.get(at..)?.split('\n').next()?;
    let is_key_char = |c: char| c.is_alphanumeric() || c == '_' || c == '-';
    let mut found = line.match_indices(key).filter(|&(i, _)| {
        let before = line[..i].trim_end_matches(['"', '\'']).chars().next_back();
        let after = line[i + key.len()..]
            .trim_start_matches(['"', '\''])
            .trim_start();
        before.is_none_or(|c| !is_key_char(c)) && after.starts_with('=')
    });
    found.next()?;
    let (second, _) = found.next()?;
    Some(at + second)
}

/// One TOML node, whichever syntax wrote it (`[table]`, inline `{}`, dotted
/// keys, `[[array]]` or `[...]`), with the offset to blame for it.
#[derive(Clone, Copy)]
enum Shape<'a> {
    Table(&'a Table),
    Inline(&'a InlineTable),
    Array(&'a Array),
    Tables(&'a ArrayOfTables),
    Scalar(&'a Value),
    Nothing,
}

#[derive(Clone, Copy)]
struct Node<'a> {
    shape: Shape<'a>,
    at: usize,
}

struct Entry<'a> {
    key: &'a str,
    key_at: usize,
    node: Node<'a>,
}

fn start(span: Option<Range<usize>>, fallback: usize) -> usize {
    span.map_or(fallback, |s| s.start)
}

impl<'a> Node<'a> {
    /// `fallback` is used when toml has no span for the node (implicit and
    /// dotted tables): the key that introduced it.
    fn of_item(item: &'a Item, fallback: usize) -> Self {
        match item {
            Item::Table(t) => Node {
                shape: Shape::Table(t),
                at: start(t.span(), fallback),
            },
            Item::ArrayOfTables(a) => Node {
                shape: Shape::Tables(a),
                at: start(a.span(), fallback),
            },
            Item::Value(v) => Node::of_value(v, fallback),
            Item::None => Node {
                shape: Shape::Nothing,
                at: fallback,
            },
        }
    }

    fn of_value(value: &'a Value, fallback: usize) -> Self {
        let at = start(value.span(), fallback);
        let shape = match value {
            Value::InlineTable(t) => Shape::Inline(t),
            Value::Array(a) => Shape::Array(a),
            other => Shape::Scalar(other),
        };
        Node { shape, at }
    }

    /// "a string", "an integer", ...: for "must be X, found Y".
    fn kind(&self) -> &'static str {
        match self.shape {
            Shape::Table(_) | Shape::Inline(_) => "a table",
            Shape::Array(_) => "an array",
            Shape::Tables(_) => "an array of tables",
            Shape::Nothing => "nothing",
            Shape::Scalar(v) => match v {
                Value::String(_) => "a string",
                Value::Integer(_) => "an integer",
                Value::Float(_) => "a float",
                Value::Boolean(_) => "a boolean",
                Value::Datetime(_) => "a date-time",
                Value::Array(_) => "an array",
                Value::InlineTable(_) => "a table",
            },
        }
    }

    fn entries(&self) -> Option<Vec<Entry<'a>>> {
        match self.shape {
            Shape::Table(t) => Some(
                t.iter()
                    .map(|(key, item)| {
                        let key_at = start(t.key(key).and_then(|k| k.span()), self.at);
                        Entry {
                            key,
                            key_at,
                            node: Node::of_item(item, key_at),
                        }
                    })
                    .collect(),
            ),
            Shape::Inline(t) => Some(
                t.iter()
                    .map(|(key, value)| {
                        let key_at = start(t.key(key).and_then(|k| k.span()), self.at);
                        Entry {
                            key,
                            key_at,
                            node: Node::of_value(value, key_at),
                        }
                    })
                    .collect(),
            ),
            _ => None,
        }
    }

    fn elements(&self) -> Option<Vec<Node<'a>>> {
        match self.shape {
            Shape::Array(a) => Some(a.iter().map(|v| Node::of_value(v, self.at)).collect()),
            Shape::Tables(a) => Some(
                a.iter()
                    .map(|t| Node {
                        shape: Shape::Table(t),
                        at: start(t.span(), self.at),
                    })
                    .collect(),
            ),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&'a str> {
        match self.shape {
            Shape::Scalar(v) => v.as_str(),
            _ => None,
        }
    }

    fn as_bool(&self) -> Option<bool> {
        match self.shape {
            Shape::Scalar(v) => v.as_bool(),
            _ => None,
        }
    }
}

#[derive(Default)]
struct Reader {
    problems: Vec<Problem>,
}

impl Reader {
    fn problem(&mut self, at: usize, message: impl Into<String>) {
        self.problems.push(Problem::new(at, message));
    }

    fn unknown_key(&mut self, entry: &Entry<'_>, place: &str, known: &[&str]) {
        let hint = did_you_mean(entry.key, known.iter().copied());
        let hint = if hint.is_empty() {
            format!("; known keys: {}", known.join(", "))
        } else {
            hint
        };
        self.problem(
            entry.key_at,
            format!("unknown key `{}` {place}{hint}", entry.key),
        );
    }

    fn wrong_type(&mut self, node: Node<'_>, what: &str, expected: &str) {
        self.problem(
            node.at,
            format!("{what} must be {expected}, found {}", node.kind()),
        );
    }

    fn string(&mut self, entry: &Entry<'_>, what: &str) -> Option<Sp<String>> {
        match entry.node.as_str() {
            Some(s) => Some(Sp {
                value: s.to_owned(),
                at: entry.node.at,
            }),
            None => {
                self.wrong_type(entry.node, what, "a string");
                None
            }
        }
    }

    fn boolean(&mut self, entry: &Entry<'_>, what: &str) -> Option<Sp<bool>> {
        match entry.node.as_bool() {
            Some(b) => Some(Sp {
                value: b,
                at: entry.node.at,
            }),
            None => {
                self.wrong_type(entry.node, what, "true or false");
                None
            }
        }
    }

    /// A list of strings; a lone string is taken as a list of one, since
    /// `when = "Busy/InAMeeting"` says what the admin means. `None` if any
    /// element has the wrong type (each one is reported).
    fn strings(&mut self, entry: &Entry<'_>, what: &str) -> Option<Sp<Vec<Sp<String>>>> {
        if let Some(s) = entry.node.as_str() {
            return Some(Sp {
                value: vec![Sp {
                    value: s.to_owned(),
                    at: entry.node.at,
                }],
                at: entry.node.at,
            });
        }
        let Some(elements) = (match entry.node.shape {
            Shape::Array(_) => entry.node.elements(),
            _ => None,
        }) else {
            self.wrong_type(entry.node, what, "an array of strings");
            return None;
        };
        let mut out = Vec::with_capacity(elements.len());
        let mut ok = true;
        for element in elements {
            match element.as_str() {
                Some(s) => out.push(Sp {
                    value: s.to_owned(),
                    at: element.at,
                }),
                None => {
                    ok = false;
                    self.wrong_type(element, &format!("each entry of {what}"), "a string");
                }
            }
        }
        ok.then_some(Sp {
            value: out,
            at: entry.node.at,
        })
    }

    fn root(&mut self, node: Node<'_>) -> RawProfile {
        let mut profile = RawProfile::default();
        let mut saw_statuses = false;
        for entry in node.entries().unwrap_or_default() {
            match entry.key {
                "description" => profile.description = self.string(&entry, "`description`"),
                "direction" => profile.direction = self.string(&entry, "`direction`"),
                "debounce" => profile.debounce = self.string(&entry, "`debounce`"),
                "prefer" => profile.prefer = self.string(&entry, "`prefer`"),
                "write_mode" => profile.write_mode = self.string(&entry, "`write_mode`"),
                "default_teams" => profile.default_teams = self.string(&entry, "`default_teams`"),
                "statuses" => {
                    saw_statuses = true;
                    profile.statuses = self.statuses(&entry);
                }
                "teams_to_cc" => profile.rules = self.rules(&entry),
                "routing" => profile.blocking = self.routing(&entry),
                _ => self.unknown_key(&entry, "at the top level", ROOT_KEYS),
            }
        }
        if !saw_statuses {
            self.problem(
                0,
                "missing [statuses]: list every CC status the profile knows, e.g. \
                 `Available = { routable = true, teams = \"clear\" }`",
            );
        }
        profile
    }

    fn statuses(&mut self, entry: &Entry<'_>) -> Option<Sp<Vec<RawStatus>>> {
        let Some(entries) = entry.node.entries() else {
            self.wrong_type(entry.node, "`statuses`", "a table of CC statuses");
            return None;
        };
        let mut out = Vec::with_capacity(entries.len());
        for status in entries {
            let name = Sp {
                value: status.key.to_owned(),
                at: status.key_at,
            };
            let Some(fields) = status.node.entries() else {
                self.problem(
                    status.node.at,
                    format!(
                        "status `{}` must be a table such as `{{ teams = \"clear\" }}` (or `{{}}`), found {}",
                        status.key,
                        status.node.kind()
                    ),
                );
                continue;
            };
            let mut raw = RawStatus {
                name,
                routable: None,
                teams: None,
            };
            for field in fields {
                match field.key {
                    "routable" => raw.routable = self.boolean(&field, "`routable`"),
                    "teams" => raw.teams = self.string(&field, "`teams`"),
                    _ => self.unknown_key(
                        &field,
                        &format!("in status `{}`", status.key),
                        STATUS_KEYS,
                    ),
                }
            }
            out.push(raw);
        }
        Some(Sp {
            value: out,
            at: entry.node.at,
        })
    }

    fn rules(&mut self, entry: &Entry<'_>) -> Vec<RawRule> {
        let elements = match entry.node.shape {
            Shape::Tables(_) | Shape::Array(_) => entry.node.elements(),
            _ => None,
        };
        let Some(elements) = elements else {
            self.wrong_type(
                entry.node,
                "`teams_to_cc`",
                "a list of rules (write each as [[teams_to_cc]])",
            );
            return Vec::new();
        };
        let mut rules = Vec::with_capacity(elements.len());
        for (index, element) in elements.into_iter().enumerate() {
            let Some(fields) = element.entries() else {
                self.wrong_type(element, "each [[teams_to_cc]] rule", "a table");
                continue;
            };
            let mut rule = RawRule {
                at: element.at,
                name: None,
                when: None,
                set: None,
                replaces: None,
                restore: None,
                debounce: None,
            };
            let mut seen = [false; 3];
            for field in fields {
                match field.key {
                    "name" => rule.name = self.string(&field, "`name`"),
                    "when" => {
                        seen[0] = true;
                        rule.when = self.strings(&field, "`when`");
                    }
                    "set" => {
                        seen[1] = true;
                        rule.set = self.string(&field, "`set`");
                    }
                    "replaces" => {
                        seen[2] = true;
                        rule.replaces = self.replaces(&field);
                    }
                    "restore" => rule.restore = self.boolean(&field, "`restore`"),
                    "debounce" => rule.debounce = self.string(&field, "`debounce`"),
                    _ => self.unknown_key(&field, "in a [[teams_to_cc]] rule", RULE_KEYS),
                }
            }
            let label = match &rule.name {
                Some(name) => format!("rule `{}`", name.value),
                None => format!("rule {}", index + 1),
            };
            for (present, key, why) in [
                (seen[0], "when", "the Teams presences it reacts to"),
                (seen[1], "set", "the CC status it requests"),
                (
                    seen[2],
                    "replaces",
                    "the CC statuses it may replace, or \"*\" for any; \
                     required so that no rule interrupts a contact by accident",
                ),
            ] {
                if !present {
                    self.problem(rule.at, format!("{label} has no `{key}`: {why}"));
                }
            }
            rules.push(rule);
        }
        rules
    }

    fn replaces(&mut self, entry: &Entry<'_>) -> Option<Sp<RawReplaces>> {
        let list = self.strings(entry, "`replaces`")?;
        let any = list.value.iter().any(|s| s.value == "*");
        // The other names would go unchecked, hiding a typo or a status the
        // admin meant to protect.
        if any && list.value.len() > 1 {
            self.problem(
                list.at,
                "`replaces` mixes \"*\" (any status) with status names: write \"*\" alone, or list the statuses",
            );
            return None;
        }
        Some(Sp {
            value: if any {
                RawReplaces::Any
            } else {
                RawReplaces::List(list.value)
            },
            at: list.at,
        })
    }

    fn routing(&mut self, entry: &Entry<'_>) -> Option<Sp<Vec<Sp<String>>>> {
        let Some(fields) = entry.node.entries() else {
            self.wrong_type(entry.node, "`routing`", "a table");
            return None;
        };
        let mut blocking = None;
        for field in fields {
            match field.key {
                "blocking" => blocking = self.strings(&field, "`blocking`"),
                _ => self.unknown_key(&field, "in [routing]", ROUTING_KEYS),
            }
        }
        blocking
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(source: &str) -> Vec<String> {
        let (_, problems) = read(source);
        problems.into_iter().map(|p| p.message).collect()
    }

    #[test]
    fn reads_every_syntax_for_tables() {
        let source = r#"
direction = "both"
statuses.Offline = {}
statuses."On contact".teams = "Busy/InACall"

[statuses.Available]
routable = true

[[teams_to_cc]]
when = "Busy/InAMeeting"
set = "Offline"
replaces = ["*"]

[routing]
blocking = ["DoNotDisturb/*"]
"#;
        let (profile, problems) = read(source);
        assert!(problems.is_empty());
        let profile = profile.unwrap_or_default();
        let statuses = profile.statuses.map(|s| s.value).unwrap_or_default();
        let names: Vec<_> = statuses.iter().map(|s| s.name.value.as_str()).collect();
        assert_eq!(names, ["Offline", "On contact", "Available"]);
        assert_eq!(
            statuses[1].teams.as_ref().map(|t| t.value.as_str()),
            Some("Busy/InACall")
        );
        assert_eq!(statuses[2].routable.as_ref().map(|r| r.value), Some(true));
        assert_eq!(profile.rules.len(), 1);
        assert_eq!(
            profile.rules[0].replaces.as_ref().map(|r| &r.value),
            Some(&RawReplaces::Any)
        );
        assert_eq!(profile.blocking.map(|b| b.value.len()), Some(1));
    }

    #[test]
    fn reports_unknown_keys_with_the_nearest_one() {
        let found = problems(
            "direction = \"both\"\ndebouce = \"5s\"\n[statuses]\nA = { teems = \"clear\" }\n",
        );
        assert_eq!(
            found,
            [
                "unknown key `debouce` at the top level (did you mean `debounce`?)",
                "unknown key `teems` in status `A` (did you mean `teams`?)",
            ]
        );
    }

    #[test]
    fn reports_wrong_types_and_missing_keys() {
        let found = problems(
            "debounce = 15\n[statuses]\nA = { routable = \"yes\" }\nB = \"clear\"\n[[teams_to_cc]]\nwhen = [\"Busy\", 3]\n",
        );
        assert_eq!(
            found,
            [
                "`debounce` must be a string, found an integer",
                "`routable` must be true or false, found a string",
                "status `B` must be a table such as `{ teams = \"clear\" }` (or `{}`), found a string",
                "each entry of `when` must be a string, found an integer",
                "rule 1 has no `set`: the CC status it requests",
                "rule 1 has no `replaces`: the CC statuses it may replace, or \"*\" for any; required so that no rule interrupts a contact by accident",
            ]
        );
    }

    #[test]
    fn the_wildcard_stands_alone_in_replaces() {
        let found = problems(
            "[statuses]\nA = {}\n[[teams_to_cc]]\nwhen = \"Busy\"\nset = \"A\"\nreplaces = [\"*\", \"B\"]\n",
        );
        assert_eq!(found.len(), 1);
        assert!(found[0].starts_with("`replaces` mixes"));
    }

    #[test]
    fn a_missing_statuses_table_is_reported() {
        assert_eq!(problems("direction = \"off\"\n").len(), 1);
    }

    #[test]
    fn a_duplicate_inline_key_points_at_its_second_definition() {
        let source = "[statuses]\nA = { teams = \"clear\", \"teams\" = \"Away/Away\" }\n";
        let (_, found) = read(source);
        assert_eq!(found.len(), 1);
        assert_eq!(&source[found[0].at..found[0].at + 5], "teams");
        assert!(found[0].at > source.find("teams").unwrap_or(0));
    }

    #[test]
    fn syntax_errors_are_one_line_and_located() {
        let (profile, found) = read("a = 1\na = 2\n");
        assert!(profile.is_none());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].at, 6);
        assert!(!found[0].message.contains('\n'));
    }
}
