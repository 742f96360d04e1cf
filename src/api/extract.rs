//! Request extractors whose rejections are [`ApiError`]s: the agent id in the
//! path, JSON bodies and the events query. axum's own extractors answer in
//! plain text; these answer in the error shape and name the field at fault.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::model::AgentQuery;
use super::validate::{self, Validate};

/// An agent id from the path (see [`validate::id`]): safe in URLs, store
/// keys and log lines without escaping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentId(pub String);

/// Checks an agent id given anywhere (the path, or a body's `agent_id`).
pub fn validate_agent_id(id: &str) -> Result<(), ApiError> {
    validate::id("agent_id", "an agent id", id)
}

/// One path segment as text; a segment that is not UTF-8 once decoded is
/// refused naming `field`.
async fn segment<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
    field: &str,
    what: &str,
) -> Result<String, ApiError> {
    Path::<String>::from_request_parts(parts, state)
        .await
        .map(|Path(text)| text)
        .map_err(|_| {
            ApiError::bad_request(
                &format!("invalid_{field}"),
                format!("{what} in the path must be UTF-8 text (percent-encoded as UTF-8)"),
            )
            .with_field(field)
        })
}

impl<S: Send + Sync> FromRequestParts<S> for AgentId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let id = segment(parts, state, "agent_id", "the agent id").await?;
        validate_agent_id(&id)?;
        Ok(AgentId(id))
    }
}

/// A contact id from the path: the same alphabet as agent ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContactId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ContactId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let id = segment(parts, state, "contact_id", "the contact id").await?;
        validate::id("contact_id", "a contact id", &id)?;
        Ok(ContactId(id))
    }
}

/// A queue name from the path: a name (see [`validate::name`]); queues
/// themselves are named in the config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueName(pub String);

impl<S: Send + Sync> FromRequestParts<S> for QueueName {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let name = segment(parts, state, "queue", "the queue name").await?;
        validate::name("queue", "a queue name", &name)?;
        Ok(QueueName(name))
    }
}

/// A Teams user's object id in the path (`/v1/directory/{user_id}`): 1–128
/// letters, digits and `-`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryUserId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for DirectoryUserId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let id = segment(parts, state, "user_id", "the user id").await?;
        let plain = !id.is_empty()
            && id.len() <= 128
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !plain {
            return Err(ApiError::bad_request(
                "invalid_user_id",
                "`user_id` must be a Teams user's object id: 1 to 128 letters, digits and `-`",
            )
            .with_field("user_id"));
        }
        Ok(DirectoryUserId(id))
    }
}

/// The query of `GET /v1/directory`, checked: a bad parameter is a 400
/// naming it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryParams(pub crate::directory::DirectoryQuery);

impl<S: Send + Sync> FromRequestParts<S> for DirectoryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let raw = parts.uri.query().unwrap_or("");
        crate::directory::DirectoryQuery::parse(raw)
            .map(DirectoryParams)
            .map_err(|e| ApiError::bad_request("invalid_query", e.message).with_field(&e.field))
    }
}

/// An optional JSON body: empty means `T::default()`.
#[derive(Clone, Debug, PartialEq)]
pub struct OptionalJson<T>(pub T);

impl<S, T> FromRequest<S> for OptionalJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Default + Validate,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let json = is_json(req.headers());
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(body_unreadable)?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        if !json {
            return Err(ApiError::new(
                415,
                "unsupported_media_type",
                "send the body as JSON with `Content-Type: application/json`",
            ));
        }
        let body: T = parse_json(&bytes)?;
        body.validate()?;
        Ok(OptionalJson(body))
    }
}

/// A JSON request body of type `T`.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Validate,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(ApiError::new(
                415,
                "unsupported_media_type",
                "send the body as JSON with `Content-Type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(body_unreadable)?;
        let body: T = parse_json(&bytes)?;
        body.validate()?;
        Ok(ApiJson(body))
    }
}

/// `application/json` or a `+json` type, parameters (charset) aside.
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn body_unreadable(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            413,
            "payload_too_large",
            "the request body is larger than the API accepts",
        )
    } else {
        ApiError::bad_request("unreadable_body", rejection.body_text())
    }
}

/// Parses a JSON body. Errors name the field at fault where serde knows it:
/// the unknown or missing field, or the path to a value of the wrong type.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Every body is an object; serde would also take a struct as an array
    // of its fields in order, which no client means.
    if let Some(first) = bytes.iter().find(|b| !b.is_ascii_whitespace())
        && *first != b'{'
        && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
    {
        let found = match first {
            b'[' => "an array",
            b'"' => "a string",
            b't' | b'f' => "`true` or `false`",
            b'n' => "null",
            _ => "a number",
        };
        let name = std::any::type_name::<T>()
            .rsplit("::")
            .next()
            .unwrap_or_default();
        return Err(ApiError::bad_request(
            "invalid_type",
            format!(
                "the body must be {}, not {found}",
                expectation(&format!("struct {name}"), None)
            ),
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let error = match serde_path_to_error::deserialize::<_, T>(&mut deserializer) {
        Ok(value) if deserializer.end().is_ok() => return Ok(value),
        Ok(_) => None,
        Err(error) if error.inner().is_data() => Some(error),
        Err(_) => None,
    };
    Err(match error {
        Some(error) => data_error(field_path(error.path()), &error.inner().to_string()),
        None => ApiError::bad_request(
            "invalid_json",
            serde_json::from_slice::<serde_json::Value>(bytes)
                .err()
                .map_or_else(|| "the body is not valid JSON".to_string(), syntax_message),
        ),
    })
}

/// A key as one step of a field path: `.name` for a plain name, `["…"]`
/// (JSON-quoted) for any other key, so a key holding dots, brackets or a
/// leading digit cannot read as a path of its own or as an array index.
fn key_step(key: &str) -> String {
    let plain = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        format!(".{key}")
    } else {
        format!("[{}]", serde_json::Value::String(key.to_string()))
    }
}

/// Where in the body serde stopped, in the one syntax the API documents:
/// `queues[0].queue`; `None` at the top level.
fn field_path(path: &serde_path_to_error::Path) -> Option<String> {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => out.push_str(&key_step(key)),
            Segment::Enum { variant } => out.push_str(&key_step(variant)),
            Segment::Unknown => out.push_str("[?]"),
        }
    }
    let out = out.strip_prefix('.').map(str::to_string).unwrap_or(out);
    (!out.is_empty()).then_some(out)
}

/// A field path one key further down.
fn child(parent: Option<&str>, key: &str) -> String {
    let step = key_step(key);
    match parent {
        Some(parent) => format!("{parent}{step}"),
        None => step.strip_prefix('.').map_or(step.clone(), str::to_string),
    }
}

/// Where the JSON breaks, in words: the parser's own text names its
/// internals ("EOF while parsing an object").
fn syntax_message(error: serde_json::Error) -> String {
    let (line, column) = (error.line(), error.column());
    match error.classify() {
        serde_json::error::Category::Eof if line <= 1 && column == 0 => {
            "the body is empty: send a JSON object".to_string()
        }
        serde_json::error::Category::Eof => format!(
            "the body is not valid JSON: it ends before the JSON is complete (line {line}, column {column})"
        ),
        _ => format!("the body is not valid JSON: unexpected text at line {line}, column {column}"),
    }
}

fn data_error(path: Option<String>, serde_text: &str) -> ApiError {
    let message = without_position(serde_text);
    let unknown = quoted_after(message, "unknown field `");
    let missing = quoted_after(message, "missing field `");
    // serde's path ends at the object holding an unknown or missing field,
    // or already names the unknown key itself.
    let field = match (path, unknown.or(missing)) {
        (Some(path), Some(name))
            if path == child(None, name) || path.ends_with(&key_step(name)) =>
        {
            Some(path)
        }
        (path, Some(name)) => Some(child(path.as_deref(), name)),
        (path, None) => path,
    };
    let subject = match &field {
        Some(field) => format!("`{field}`"),
        None => "the body".to_string(),
    };
    let (code, text) = if let Some(name) = unknown {
        let known: Vec<&str> = message
            .split_once(", expected")
            .map(|(_, rest)| rest.split('`').skip(1).step_by(2).collect())
            .unwrap_or_default();
        let listed = if known.is_empty() {
            "this object takes no fields".to_string()
        } else {
            format!(
                "the fields here are {}",
                known
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        (
            "unknown_field",
            format!(
                "unknown field `{name}`{}; {listed}",
                crate::diagnostics::did_you_mean(name, known.iter().copied())
            ),
        )
    } else if let Some(name) = missing {
        ("missing_field", format!("`{name}` is required"))
    } else if let Some(rest) = message.strip_prefix("invalid type: ") {
        let (found, expected) = rest.split_once(", expected ").unwrap_or((rest, ""));
        (
            "invalid_type",
            format!(
                "{subject} must be {}, not {}",
                expectation(expected, field.as_deref()),
                found_value(found)
            ),
        )
    } else if let Some(rest) = message.strip_prefix("invalid value: ") {
        let (found, expected) = rest.split_once(", expected ").unwrap_or((rest, ""));
        (
            "invalid_value",
            format!(
                "{subject} must be {}, not {}",
                expectation(expected, field.as_deref()),
                found_value(found)
            ),
        )
    } else if let Some(rest) = message.strip_prefix("invalid length ") {
        let expected = rest.split_once(", expected ").map_or("", |(_, e)| e);
        (
            "invalid_value",
            format!(
                "{subject} must be {}",
                expectation(expected, field.as_deref())
            ),
        )
    } else if let Some(name) = quoted_after(message, "duplicate field `") {
        ("invalid_value", format!("`{name}` is given twice"))
    } else if field.as_deref().is_some_and(is_time_field) || message.contains("number out of range")
    {
        (
            "invalid_value",
            format!("{subject} must be {}", expectation("", field.as_deref())),
        )
    } else {
        (
            "invalid_value",
            format!("{subject} has a value it cannot take"),
        )
    };
    let error = ApiError::bad_request(code, text);
    match field {
        Some(field) => error.with_field(&field),
        None => error,
    }
}

/// serde_json's message without its ` at line L column C`.
fn without_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(at)
            if message[at + 9..]
                .split_once(" column ")
                .is_some_and(|(l, c)| {
                    l.bytes().all(|b| b.is_ascii_digit()) && c.bytes().all(|b| b.is_ascii_digit())
                }) =>
        {
            &message[..at]
        }
        _ => message,
    }
}

fn is_time_field(field: &str) -> bool {
    field == "at"
}

/// The value a field takes, in words, from serde's `expected …` and the
/// field itself (which knows its own range better than its Rust type).
fn expectation(expected: &str, field: Option<&str>) -> String {
    let last = field.map(|f| f.rsplit(['.', '[']).next().unwrap_or(f));
    let in_skills = field.is_some_and(|f| f.starts_with("skills."));
    match (field, last) {
        (Some(f), _) if is_time_field(f) => {
            return "a date-time in RFC 3339 form, like `2024-01-02T03:04:05Z`".to_string();
        }
        _ if in_skills && !expected.starts_with("a map") => {
            return "a skill level: a whole number from 0 to 100".to_string();
        }
        (_, Some("capacity")) => return "a whole number from 1 to 20".to_string(),
        (_, Some("priority")) => return "a whole number from 0 to 255".to_string(),
        (_, Some("position")) => {
            return format!("a whole number from 0 to {}", u32::MAX);
        }
        _ => {}
    }
    let expected = expected.trim();
    if let Some(name) = expected.strip_prefix("struct ") {
        let name = name.split_whitespace().next().unwrap_or_default();
        let required: &[&str] = match name {
            "StatusReport" => &["status"],
            "AgentUpsert" => &["teams_user"],
            "ContactIn" | "Membership" => &["queue"],
            _ => &[],
        };
        return if required.is_empty() {
            "a JSON object".to_string()
        } else {
            format!(
                "a JSON object with {}",
                required
                    .iter()
                    .map(|f| format!("`{f}`"))
                    .collect::<Vec<_>>()
                    .join(" and ")
            )
        };
    }
    match expected {
        "u8" => "a whole number from 0 to 255".to_string(),
        "u16" => "a whole number from 0 to 65535".to_string(),
        "u32" => format!("a whole number from 0 to {}", u32::MAX),
        "u64" | "usize" => "a whole number, 0 or more".to_string(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".to_string(),
        "f32" | "f64" => "a number".to_string(),
        "a boolean" => "`true` or `false`".to_string(),
        "a string" | "a borrowed string" => "a string".to_string(),
        "a sequence" => "a JSON array".to_string(),
        "a map" => "a JSON object".to_string(),
        "any valid JSON value" => "a JSON value".to_string(),
        _ => "another value".to_string(),
    }
}

/// What was sent, from serde's description of it.
fn found_value(found: &str) -> String {
    let quoted = || found.split('`').nth(1).unwrap_or_default().to_string();
    if found.starts_with("integer `") || found.starts_with("floating point `") {
        quoted()
    } else if found.starts_with("boolean `") {
        format!("`{}`", quoted())
    } else if found.starts_with("string ") {
        "a string".to_string()
    } else if found == "null" || found == "unit value" {
        "null".to_string()
    } else if found == "map" {
        "an object".to_string()
    } else if found == "sequence" {
        "an array".to_string()
    } else {
        "that".to_string()
    }
}

/// The text between `start` and the next backtick.
fn quoted_after<'a>(message: &'a str, start: &str) -> Option<&'a str> {
    let rest = message.strip_prefix(start)?;
    rest.split('`').next()
}

/// The query of `GET /v1/events`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct EventsQuery {
    /// Resume after this sequence number; absent: only events from now on.
    pub since: Option<u64>,
}

impl<S: Send + Sync> FromRequestParts<S> for EventsQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(query) = Query::<EventsQuery>::from_request_parts(parts, state)
            .await
            .map_err(|_| {
                ApiError::bad_request(
                    "invalid_query",
                    "`since` is a sequence number: a whole number, 0 or more",
                )
                .with_field("since")
            })?;
        Ok(query)
    }
}

/// The page size of `GET /v1/agents` when `limit` is not given.
pub const DEFAULT_PAGE: usize = 100;
/// The largest page `GET /v1/agents` gives.
pub const MAX_PAGE: usize = 1000;
/// The longest `cursor` or `search` taken.
pub const QUERY_TEXT_MAX_CHARS: usize = 256;

/// The query of `GET /v1/agents`: `None` without parameters (every agent,
/// as before paging existed), else a page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentsQuery(pub Option<AgentQuery>);

impl<S: Send + Sync> FromRequestParts<S> for AgentsQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(pairs) = Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|_| {
                ApiError::bad_request(
                    "invalid_query",
                    "the query is not well-formed: `limit`, `cursor` and `search`, URL-encoded",
                )
            })?;
        parse_agents_query(&pairs).map(AgentsQuery)
    }
}

/// `limit`, `cursor` and `search`, each at most once; anything else is a
/// 400 naming it.
pub fn parse_agents_query(pairs: &[(String, String)]) -> Result<Option<AgentQuery>, ApiError> {
    if pairs.is_empty() {
        return Ok(None);
    }
    let mut query = AgentQuery {
        limit: DEFAULT_PAGE,
        ..AgentQuery::default()
    };
    let mut seen: Vec<&str> = Vec::new();
    for (name, value) in pairs {
        if seen.contains(&name.as_str()) {
            return Err(ApiError::bad_request(
                "repeated_parameter",
                format!("`{name}` is given twice"),
            )
            .with_field(name));
        }
        let text = |value: &str| -> Result<Option<String>, ApiError> {
            if value.chars().count() > QUERY_TEXT_MAX_CHARS {
                return Err(ApiError::bad_request(
                    "too_long",
                    format!("`{name}` is at most {QUERY_TEXT_MAX_CHARS} characters"),
                )
                .with_field(name));
            }
            if value.chars().any(char::is_control) {
                return Err(ApiError::bad_request(
                    "invalid_text",
                    format!("`{name}` holds control characters"),
                )
                .with_field(name));
            }
            Ok(Some(value.to_string()).filter(|v| !v.trim().is_empty()))
        };
        match name.as_str() {
            "limit" => {
                query.limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "invalid_limit",
                            format!("`limit` is a whole number from 1 to {MAX_PAGE}"),
                        )
                        .with_field("limit")
                    })?;
            }
            "cursor" => query.cursor = text(value)?,
            "search" => query.search = text(value)?.map(|s| s.trim().to_lowercase()),
            other => {
                return Err(ApiError::bad_request(
                    "unknown_parameter",
                    format!("`{other}` is not a parameter here: `limit`, `cursor` or `search`"),
                )
                .with_field(other));
            }
        }
        seen.push(name);
    }
    Ok(Some(query))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::model::{AgentUpsert, StatusReport};

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn agents_query_pages_only_when_asked() {
        assert_eq!(parse_agents_query(&[]).unwrap(), None);
        let page = parse_agents_query(&pairs(&[("search", " Ann "), ("cursor", "a7")]))
            .unwrap()
            .unwrap();
        assert_eq!(
            page,
            AgentQuery {
                cursor: Some("a7".into()),
                limit: DEFAULT_PAGE,
                search: Some("ann".into()),
            }
        );
        let field = |list: &[(&str, &str)]| parse_agents_query(&pairs(list)).unwrap_err().field;
        assert_eq!(field(&[("limit", "0")]), Some("limit".into()));
        assert_eq!(field(&[("limit", "1001")]), Some("limit".into()));
        assert_eq!(field(&[("limit", "x")]), Some("limit".into()));
        assert_eq!(field(&[("colour", "red")]), Some("colour".into()));
        assert_eq!(
            field(&[("limit", "5"), ("limit", "6")]),
            Some("limit".into())
        );
        assert_eq!(field(&[("search", "a\u{0}")]), Some("search".into()));
        let long = "x".repeat(QUERY_TEXT_MAX_CHARS + 1);
        assert_eq!(field(&[("cursor", long.as_str())]), Some("cursor".into()));
    }

    fn field_of<T: DeserializeOwned + std::fmt::Debug>(body: &str) -> (String, Option<String>) {
        let error = parse_json::<T>(body.as_bytes()).unwrap_err();
        assert_eq!(error.status, 400, "{error}");
        (error.code, error.field)
    }

    #[test]
    fn agent_ids() {
        for ok in ["a", "agent-7", "x.y_z:1@cc", &"a".repeat(128)] {
            assert!(validate_agent_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a/b", "é", "a\n", &"a".repeat(129), "a?b", "%41"] {
            let error = validate_agent_id(bad).unwrap_err();
            assert_eq!(
                (error.status, error.field.as_deref()),
                (400, Some("agent_id"))
            );
        }
    }

    #[test]
    fn json_errors_name_the_field() {
        assert_eq!(
            field_of::<AgentUpsert>(r#"{"teams_user":"u","colour":1}"#),
            ("unknown_field".into(), Some("colour".into()))
        );
        assert_eq!(
            field_of::<AgentUpsert>(r#"{"groups":["a"]}"#),
            ("missing_field".into(), Some("teams_user".into()))
        );
        assert_eq!(
            field_of::<AgentUpsert>(r#"{"teams_user":5}"#),
            ("invalid_type".into(), Some("teams_user".into()))
        );
        assert_eq!(
            field_of::<AgentUpsert>(r#"{"teams_user":"u","skills":{"fr":"high"}}"#),
            ("invalid_type".into(), Some("skills.fr".into()))
        );
        assert_eq!(
            field_of::<AgentUpsert>(r#"{"teams_user":"u","skills":{"fr":300}}"#),
            ("invalid_value".into(), Some("skills.fr".into()))
        );
        assert_eq!(
            field_of::<AgentUpsert>(r#"{"teams_user":"u","groups":["a",7]}"#),
            ("invalid_type".into(), Some("groups[1]".into()))
        );
        assert_eq!(
            field_of::<StatusReport>(r#"{"status":"Available","at":"yesterday"}"#),
            ("invalid_value".into(), Some("at".into()))
        );
        assert_eq!(
            field_of::<StatusReport>(r#""Available""#),
            ("invalid_type".into(), None)
        );
    }

    #[test]
    fn keys_that_are_not_plain_names_are_quoted_in_the_field_path() {
        assert_eq!(
            field_of::<AgentUpsert>(r#"{"teams_user":"u",".0":1}"#),
            ("unknown_field".into(), Some(r#"[".0"]"#.into()))
        );
        assert_eq!(
            field_of::<AgentUpsert>(r#"{"teams_user":"u","skills":{"a.b":"x"}}"#),
            ("invalid_type".into(), Some(r#"skills["a.b"]"#.into()))
        );
        assert_eq!(
            field_of::<AgentUpsert>(r#"{"teams_user":"u","skills":{"sales":"x"}}"#),
            ("invalid_type".into(), Some("skills.sales".into()))
        );
        assert_eq!(
            field_of::<AgentUpsert>(r#"{"teams_user":"u"} x"#).0,
            "invalid_json"
        );
    }

    #[test]
    fn syntax_errors_say_where() {
        let error = parse_json::<StatusReport>(br#"{"status": "#).unwrap_err();
        assert_eq!((error.status, error.code.as_str()), (400, "invalid_json"));
        assert!(error.message.contains("line 1"), "{}", error.message);
        assert_eq!(error.field, None);
        // In words, not the parser's: no "EOF while parsing an object".
        for body in [&b"{"[..], b"\xff\xfe", b"[1,", b"", b"{\"status\" 1}"] {
            let message = parse_json::<StatusReport>(body).unwrap_err().message;
            assert!(
                !message.contains("EOF") && !message.contains("while parsing"),
                "{message}"
            );
        }
        assert_eq!(
            parse_json::<StatusReport>(b"").unwrap_err().message,
            "the body is empty: send a JSON object"
        );
    }

    #[test]
    fn json_content_types() {
        let headers = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, value.parse().unwrap());
            headers
        };
        assert!(is_json(&headers("application/json")));
        assert!(is_json(&headers("Application/JSON; charset=utf-8")));
        assert!(is_json(&headers("application/merge-patch+json")));
        assert!(!is_json(&headers("text/plain")));
        assert!(!is_json(&HeaderMap::new()));
    }
}
