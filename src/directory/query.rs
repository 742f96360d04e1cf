//! `GET /v1/directory`'s query, parsed from the raw query string: every
//! parameter checked, an unknown or repeated one refused, each refusal
//! naming its field. An empty value means "no filter", so a form that
//! sends every parameter (`?search=&presence=&department=&has_phone=`)
//! lists everyone.
//!
//! The cursor is opaque to clients: base64url of the last user's sort key
//! (folded display name and id), so the next page goes on after that key
//! whatever changed meanwhile.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::fold::{digits, fold};
use crate::presence::Availability;

/// Users a page holds when the query does not say.
pub const DEFAULT_LIMIT: usize = 50;
/// The most users a page holds.
pub const MAX_LIMIT: usize = 500;
/// The longest search text, in characters.
pub const MAX_SEARCH: usize = 256;
/// The cursor's version tag: a cursor of another layout is refused.
const CURSOR_TAG: &str = "d1";

/// Where a page starts: after this user in the listing's order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SortKey {
    /// The folded display name (or UPN, or id, when there is none).
    pub name: String,
    /// The lower-case object id: ties between equal names.
    pub id: String,
}

impl SortKey {
    /// The opaque cursor for this key.
    pub fn cursor(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{CURSOR_TAG}\n{}\n{}", self.name, self.id))
    }

    /// The key a cursor stands for; `None` when it is not one of ours.
    pub fn from_cursor(cursor: &str) -> Option<SortKey> {
        let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let mut parts = text.split('\n');
        let (tag, name, id) = (parts.next()?, parts.next()?, parts.next()?);
        (tag == CURSOR_TAG && parts.next().is_none() && !id.is_empty()).then(|| SortKey {
            name: name.to_string(),
            id: id.to_string(),
        })
    }
}

/// A checked directory query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryQuery {
    /// Folded search text: found in the folded name, UPN or mail.
    pub search: Option<String>,
    /// The search's digits, when the search reads as a phone number
    /// (digits and `+ - . ( )` and spaces, at least three digits).
    pub phone_digits: Option<String>,
    /// Availabilities accepted (Graph's values); `None`: any, and users
    /// not read yet too.
    pub presence: Option<Vec<Availability>>,
    /// Folded department name.
    pub department: Option<String>,
    /// Whether the user must (or must not) have a direct-dial number.
    pub has_phone: Option<bool>,
    pub limit: usize,
    /// Start after this key.
    pub after: Option<SortKey>,
}

impl Default for DirectoryQuery {
    fn default() -> Self {
        DirectoryQuery {
            search: None,
            phone_digits: None,
            presence: None,
            department: None,
            has_phone: None,
            limit: DEFAULT_LIMIT,
            after: None,
        }
    }
}

/// Why a query was refused: the parameter at fault and a message for people.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct QueryError {
    pub field: String,
    pub message: String,
}

fn refuse(field: &str, message: impl Into<String>) -> QueryError {
    QueryError {
        field: field.to_string(),
        message: message.into(),
    }
}

const PARAMETERS: &[&str] = &[
    "search",
    "presence",
    "department",
    "has_phone",
    "limit",
    "cursor",
];

impl DirectoryQuery {
    /// Parses a raw query string (without the `?`).
    pub fn parse(raw: &str) -> Result<DirectoryQuery, QueryError> {
        let mut query = DirectoryQuery::default();
        let mut seen: Vec<&'static str> = Vec::new();
        for pair in raw.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = decode(name).ok_or_else(|| {
                refuse(
                    "query",
                    "the query string is not valid percent-encoded UTF-8",
                )
            })?;
            let Some(known) = PARAMETERS.iter().copied().find(|p| *p == name) else {
                return Err(refuse(
                    &field_name(&name),
                    format!(
                        "unknown query parameter `{}`; the directory takes {}",
                        printable(&name),
                        PARAMETERS.join(", ")
                    ),
                ));
            };
            if seen.contains(&known) {
                return Err(refuse(known, format!("`{known}` is given more than once")));
            }
            seen.push(known);
            let value = decode(value).ok_or_else(|| {
                refuse(
                    known,
                    format!("`{known}` is not valid percent-encoded UTF-8"),
                )
            })?;
            if value.is_empty() {
                continue;
            }
            query.set(known, &value)?;
        }
        Ok(query)
    }

    fn set(&mut self, name: &'static str, value: &str) -> Result<(), QueryError> {
        match name {
            "search" => {
                if value.chars().count() > MAX_SEARCH {
                    return Err(refuse(
                        name,
                        format!("`search` is at most {MAX_SEARCH} characters"),
                    ));
                }
                let folded = fold(value).split_whitespace().collect::<Vec<_>>().join(" ");
                let phone_like = value
                    .chars()
                    .all(|c| c.is_ascii_digit() || " +-.()".contains(c));
                let number = digits(value);
                if phone_like && number.len() >= 3 {
                    self.phone_digits = Some(number);
                }
                self.search = (!folded.is_empty()).then_some(folded);
            }
            "presence" => {
                let mut list = Vec::new();
                for item in value.split(',').map(str::trim) {
                    let Some(availability) = Availability::parse_known(item) else {
                        return Err(refuse(
                            name,
                            format!(
                                "`presence` is a comma-separated list of Teams availabilities ({}), not `{}`",
                                Availability::KNOWN.join(", "),
                                printable(item)
                            ),
                        ));
                    };
                    if !list.contains(&availability) {
                        list.push(availability);
                    }
                }
                self.presence = Some(list);
            }
            "department" => {
                if value.chars().count() > MAX_SEARCH {
                    return Err(refuse(
                        name,
                        format!("`department` is at most {MAX_SEARCH} characters"),
                    ));
                }
                self.department = Some(fold(value.trim()));
            }
            "has_phone" => {
                self.has_phone = Some(match value {
                    "true" => true,
                    "false" => false,
                    other => {
                        return Err(refuse(
                            name,
                            format!(
                                "`has_phone` is `true` or `false`, not `{}`",
                                printable(other)
                            ),
                        ));
                    }
                })
            }
            "limit" => {
                self.limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        refuse(
                            name,
                            format!(
                                "`limit` is a whole number from 1 to {MAX_LIMIT}, not `{}`",
                                printable(value)
                            ),
                        )
                    })?;
            }
            "cursor" => {
                self.after = Some(SortKey::from_cursor(value).ok_or_else(|| {
                    refuse(
                        name,
                        "`cursor` is not a cursor this directory gave out: pass `next_cursor` \
                         from the previous page as it came, or leave it out for the first page",
                    )
                })?);
            }
            _ => {}
        }
        Ok(())
    }
}

/// A parameter name as the error's `field`: itself when it is a plain
/// name, else JSON-quoted in brackets (the API's rule for odd keys).
fn field_name(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        name.to_string()
    } else {
        format!("[{}]", serde_json::Value::String(name.to_string()))
    }
}

/// Text quoted in a message: at most 64 characters, controls escaped.
fn printable(text: &str) -> String {
    let short: String = text.chars().take(64).collect();
    let escaped: String = short.escape_debug().collect();
    if text.chars().count() > 64 {
        format!("{escaped}…")
    } else {
        escaped
    }
}

/// Percent-decoding with `+` as a space (`application/x-www-form-urlencoded`);
/// `None` for a bad escape or bytes that are not UTF-8.
fn decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn field(raw: &str) -> String {
        DirectoryQuery::parse(raw).unwrap_err().field
    }

    #[test]
    fn empty_values_are_no_filter() {
        let q = DirectoryQuery::parse("search=&presence=&department=&has_phone=&limit=&cursor=")
            .unwrap();
        assert_eq!(q, DirectoryQuery::default());
        assert_eq!(
            DirectoryQuery::parse("").unwrap(),
            DirectoryQuery::default()
        );
    }

    #[test]
    fn every_parameter_is_read() {
        let cursor = SortKey {
            name: "ann".into(),
            id: "id-1".into(),
        }
        .cursor();
        let q = DirectoryQuery::parse(&format!(
            "search=Jos%C3%A9+M&presence=available,BUSY&department=Sales&has_phone=true&limit=7&cursor={cursor}"
        ))
        .unwrap();
        assert_eq!(q.search.as_deref(), Some("jose m"));
        assert_eq!(q.phone_digits, None);
        assert_eq!(
            q.presence,
            Some(vec![Availability::Available, Availability::Busy])
        );
        assert_eq!(q.department.as_deref(), Some("sales"));
        assert_eq!(q.has_phone, Some(true));
        assert_eq!(q.limit, 7);
        assert_eq!(q.after.unwrap().id, "id-1");
    }

    #[test]
    fn a_phone_like_search_also_searches_digits() {
        let q = DirectoryQuery::parse("search=%2B1+(425)+555").unwrap();
        assert_eq!(q.phone_digits.as_deref(), Some("1425555"));
        let q = DirectoryQuery::parse("search=12").unwrap();
        assert_eq!(q.phone_digits, None, "too few digits to mean a number");
    }

    #[test]
    fn bad_parameters_name_their_field() {
        assert_eq!(field("limit=0"), "limit");
        assert_eq!(field("limit=501"), "limit");
        assert_eq!(field("limit=ten"), "limit");
        assert_eq!(field("limit=-1"), "limit");
        assert_eq!(field("cursor=abc"), "cursor");
        assert_eq!(field("cursor=%FF"), "cursor");
        assert_eq!(field("presence=Sleeping"), "presence");
        assert_eq!(field("presence=Available,,Busy"), "presence");
        assert_eq!(field("has_phone=yes"), "has_phone");
        assert_eq!(field("colour=red"), "colour");
        assert_eq!(field("a.b=1"), "[\"a.b\"]");
        assert_eq!(field("limit=1&limit=2"), "limit");
        assert_eq!(field("search=%E9"), "search");
        assert_eq!(field("%ZZ=1"), "query");
        assert_eq!(field(&format!("search={}", "a".repeat(257))), "search");
    }

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        let key = SortKey {
            name: "jose muller".into(),
            id: "8b08-x".into(),
        };
        assert_eq!(SortKey::from_cursor(&key.cursor()), Some(key));
        assert_eq!(
            SortKey::from_cursor(&URL_SAFE_NO_PAD.encode("d2\na\nb")),
            None
        );
        assert_eq!(
            SortKey::from_cursor(&URL_SAFE_NO_PAD.encode("d1\na\n")),
            None
        );
        assert_eq!(
            SortKey::from_cursor(&URL_SAFE_NO_PAD.encode("d1\na\nb\nc")),
            None
        );
    }

    proptest! {
        /// Any query string is a query or a refusal naming a field; never a panic.
        #[test]
        fn any_query_string_parses_or_names_a_field(raw in ".{0,200}") {
            match DirectoryQuery::parse(&raw) {
                Ok(q) => prop_assert!((1..=MAX_LIMIT).contains(&q.limit)),
                Err(e) => {
                    prop_assert!(!e.field.is_empty());
                    prop_assert!(!e.message.is_empty());
                }
            }
        }

        /// Strings built from the query's own vocabulary: the same promise.
        #[test]
        fn near_miss_queries_parse_or_name_a_field(
            parts in proptest::collection::vec(
                (prop_oneof![
                    Just("search"), Just("presence"), Just("department"), Just("has_phone"),
                    Just("limit"), Just("cursor"), Just("x"), Just("%41"), Just("")
                ], "[a-zA-Z0-9%,+=.-]{0,12}"),
                0..6,
            )
        ) {
            let raw = parts.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
            if let Err(e) = DirectoryQuery::parse(&raw) {
                prop_assert!(!e.field.is_empty());
            }
        }
    }
}
