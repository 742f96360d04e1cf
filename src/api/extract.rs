//! Request extractors whose rejections are [`ApiError`]s: the agent id in the
//! path, JSON bodies and the events query. axum's own extractors answer in
//! plain text; these answer in the error shape and name the field at fault.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// The longest agent id accepted.
pub const AGENT_ID_MAX_CHARS: usize = 128;

/// An agent id from the path: 1–128 characters of `[A-Za-z0-9._:@-]`, so it
/// is safe in URLs, store keys and log lines without escaping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentId(pub String);

pub fn validate_agent_id(id: &str) -> Result<(), ApiError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '@' | '-');
    if id.is_empty() || id.len() > AGENT_ID_MAX_CHARS || !id.chars().all(allowed) {
        return Err(ApiError::bad_request(
            "invalid_agent_id",
            format!("an agent id is 1 to {AGENT_ID_MAX_CHARS} characters of A-Z a-z 0-9 . _ : @ -"),
        )
        .with_field("agent_id"));
    }
    Ok(())
}

impl<S: Send + Sync> FromRequestParts<S> for AgentId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| {
                ApiError::bad_request("invalid_agent_id", rejection.body_text())
                    .with_field("agent_id")
            })?;
        validate_agent_id(&id)?;
        Ok(AgentId(id))
    }
}

/// A contact id or queue name from the path: 1–200 characters with no
/// control characters (contact ids are the CC's own).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathText(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathText {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(text) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::bad_request("invalid_path", rejection.body_text()))?;
        if text.is_empty() || text.len() > 200 || text.chars().any(char::is_control) {
            return Err(ApiError::bad_request(
                "invalid_path",
                "a contact id or queue name is 1 to 200 characters, no control characters",
            ));
        }
        Ok(PathText(text))
    }
}

/// An optional JSON body: empty means `T::default()`.
#[derive(Clone, Debug, PartialEq)]
pub struct OptionalJson<T>(pub T);

impl<S, T> FromRequest<S> for OptionalJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Default,
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
        parse_json(&bytes).map(OptionalJson)
    }
}

/// A JSON request body of type `T`.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
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
        parse_json(&bytes).map(ApiJson)
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
    match axum::Json::<T>::from_bytes(bytes) {
        Ok(axum::Json(value)) => Ok(value),
        Err(JsonRejection::JsonDataError(error)) => {
            // axum reports `<prefix>: <path>: <serde message>`; serde alone
            // gives the message without the path, which separates the two.
            let original = serde_json::from_slice::<T>(bytes)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            Err(data_error(&error.body_text(), &original))
        }
        Err(JsonRejection::JsonSyntaxError(_)) => {
            let detail = serde_json::from_slice::<serde_json::Value>(bytes)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_else(|| "not JSON".to_string());
            Err(ApiError::bad_request(
                "invalid_json",
                format!("the body is not valid JSON: {detail}"),
            ))
        }
        Err(other) => Err(ApiError::bad_request("invalid_body", other.body_text())),
    }
}

const DATA_ERROR_PREFIX: &str = "Failed to deserialize the JSON body into the target type: ";

fn data_error(axum_text: &str, serde_text: &str) -> ApiError {
    let located = axum_text
        .strip_prefix(DATA_ERROR_PREFIX)
        .unwrap_or(axum_text);
    let path = if serde_text.is_empty() {
        None
    } else {
        located
            .strip_suffix(serde_text)
            .and_then(|rest| rest.strip_suffix(": "))
            .filter(|path| !path.is_empty())
    };
    let message = if serde_text.is_empty() {
        located
    } else {
        serde_text
    };
    let (code, named) = if let Some(name) = quoted_after(message, "unknown field `") {
        ("unknown_field", Some(name))
    } else if let Some(name) = quoted_after(message, "missing field `") {
        ("missing_field", Some(name))
    } else if message.starts_with("invalid type") {
        ("invalid_type", None)
    } else {
        ("invalid_value", None)
    };
    // serde's path ends at the object holding an unknown or missing field,
    // or already names the unknown key itself.
    let field = match (path, named) {
        (Some(path), Some(name)) if path == name || path.ends_with(&format!(".{name}")) => {
            Some(path.to_string())
        }
        (Some(path), Some(name)) => Some(format!("{path}.{name}")),
        (None, Some(name)) => Some(name.to_string()),
        (Some(path), None) => Some(path.to_string()),
        (None, None) => None,
    };
    let error = ApiError::bad_request(code, message.to_string());
    match field {
        Some(field) => error.with_field(&field),
        None => error,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::model::{AgentUpsert, StatusReport};

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
    fn syntax_errors_say_where() {
        let error = parse_json::<StatusReport>(br#"{"status": "#).unwrap_err();
        assert_eq!((error.status, error.code.as_str()), (400, "invalid_json"));
        assert!(error.message.contains("line 1"), "{}", error.message);
        assert_eq!(error.field, None);
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
