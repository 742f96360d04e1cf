//! Arbitrary input to the PUT routes: never a 5xx, always the error shape.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Map, Number, Value};

use super::super::model::{AgentOut, ErrorBody};
use super::{Fake, TOKEN, start};

const LIMIT: usize = 2048;

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "teams_user", "auto_link", "display_name", "groups", "skills", "phone",
            "profile", "status", "at", "queues", "capacity", "queue", "position",
            "contact_id", "priority", "data", "agent_id",
        ])
        .prop_map(str::to_string),
        1 => "[a-z_]{0,8}",
        1 => any::<String>(),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        (0u64..300).prop_map(|n| Value::Number(n.into())),
        any::<f64>().prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop::sample::select(vec![
            "Available",
            "Busy",
            "Dancing",
            "",
            "a@contoso.example",
            "2024-01-02T03:04:05Z",
            "yesterday",
        ])
        .prop_map(|s| Value::String(s.to_string())),
        any::<String>().prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Bodies: mostly JSON objects close to the real ones, some any JSON, some
/// not JSON at all.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => prop::collection::vec((key(), json_value()), 0..8).prop_map(|pairs| {
            Value::Object(pairs.into_iter().collect::<Map<_, _>>()).to_string().into_bytes()
        }),
        2 => json_value().prop_map(|v| v.to_string().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..64),
        1 => (0usize..LIMIT * 2).prop_map(|n| format!(r#"{{"teams_user":"{}"}}"#, "u".repeat(n)).into_bytes()),
    ]
}

fn agent_id() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[A-Za-z0-9._:@-]{1,12}",
        1 => any::<String>(),
        1 => "[a-z]{120,140}",
    ]
}

/// Percent-encodes everything but unreserved characters, so any string is a
/// valid path segment.
fn encode(segment: &str) -> String {
    let mut out = String::new();
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[test]
fn put_routes_never_answer_5xx_and_always_shape_errors() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let api = runtime.block_on(start(Fake::new(64), LIMIT));
    let content_types = prop::sample::select(vec![
        Some("application/json"),
        Some("application/json; charset=utf-8"),
        Some("text/plain"),
        None,
    ]);
    let mut runner = TestRunner::new(Config {
        cases: 256,
        // Persisting needs the source file, which a hand-built runner lacks.
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(
        &(agent_id(), any::<bool>(), body(), content_types),
        |(id, status_route, body, content_type)| {
            let path = if status_route {
                format!("/v1/agents/{}/status", encode(&id))
            } else {
                format!("/v1/agents/{}", encode(&id))
            };
            let mut request = api
                .client
                .put(api.url(&path))
                .bearer_auth(TOKEN)
                .body(body.clone());
            if let Some(content_type) = content_type {
                request = request.header("content-type", content_type);
            }
            let (status, headers, text) = runtime
                .block_on(async {
                    let response = request.send().await.map_err(|e| e.to_string())?;
                    let status = response.status().as_u16();
                    let headers = response.headers().clone();
                    let text = response.text().await.map_err(|e| e.to_string())?;
                    Ok::<_, String>((status, headers, text))
                })
                .map_err(TestCaseError::fail)?;
            let shown = String::from_utf8_lossy(&body);
            prop_assert!(status < 500, "{path} {shown}: {status} {text}");
            let json = headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/json"));
            prop_assert!(json, "{path} {shown}: {status} not JSON");
            if status >= 400 {
                let error: Result<ErrorBody, _> = serde_json::from_str(&text);
                prop_assert!(error.is_ok(), "{path} {shown}: {status} {text}");
            } else {
                let agent: Result<AgentOut, _> = serde_json::from_str(&text);
                prop_assert!(agent.is_ok(), "{path} {shown}: {status} {text}");
            }
            Ok(())
        },
    );
    if let Err(failure) = result {
        panic!("{failure}");
    }
}

/// Words that only Rust's or serde's insides use: a message written for
/// people never has them (outside the quoted input it echoes).
const INTERNAL_WORDS: &[&str] = &[
    "u8",
    "u16",
    "u32",
    "u64",
    "usize",
    "i8",
    "i16",
    "i32",
    "i64",
    "isize",
    "f32",
    "f64",
    "struct",
    "Option",
    "String",
    "Vec",
    "BTreeMap",
    "serde",
    "deserialize",
];
const INTERNAL_PHRASES: &[&str] = &[
    "expected struct",
    "with 2 elements",
    "with 1 element",
    "invalid type:",
    "invalid value:",
    "invalid type: map",
    "Failed to",
];

/// `message` with the input it quotes (between backticks) taken out.
fn unquoted(message: &str) -> String {
    message.split('`').step_by(2).collect::<Vec<_>>().join(" ")
}

/// A field path less its quoted key steps (`["a.0"]`): what they hold is
/// a key, whatever characters it has.
fn without_quoted_keys(field: &str) -> String {
    let mut out = String::new();
    let mut rest = field;
    while let Some(at) = rest.find("[\"") {
        out.push_str(&rest[..at]);
        let quoted = &rest[at + 1..];
        // The JSON string ends at the first `"` not escaped.
        let mut end = None;
        let mut escaped = false;
        for (i, c) in quoted.char_indices().skip(1) {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        match end.and_then(|e| quoted[e + 1..].strip_prefix(']')) {
            Some(after) => {
                out.push_str("[key]");
                rest = after;
            }
            None => return field.to_string(),
        }
    }
    out.push_str(rest);
    out
}

/// What is wrong with an error body, if anything: not the shape, a field
/// path in another syntax, or words from the code's insides.
pub(crate) fn error_problem(text: &str) -> Option<String> {
    let body: ErrorBody = match serde_json::from_str(text) {
        Ok(body) => body,
        Err(e) => return Some(format!("not the error shape ({e})")),
    };
    if body.error.code.is_empty() || body.error.message.trim().is_empty() {
        return Some("an empty code or message".into());
    }
    let plain = unquoted(&body.error.message);
    if let Some(phrase) = INTERNAL_PHRASES.iter().find(|p| plain.contains(*p)) {
        return Some(format!("the message leaks {phrase:?}"));
    }
    if let Some(word) = plain
        .split(|c: char| !c.is_ascii_alphanumeric())
        .find(|w| INTERNAL_WORDS.contains(w))
    {
        return Some(format!("the message leaks {word:?}"));
    }
    if let Some(field) = &body.error.field
        && without_quoted_keys(field)
            .split('.')
            .skip(1)
            .any(|part| part.bytes().next().is_some_and(|b| b.is_ascii_digit()))
    {
        return Some(format!("field {field:?}: array indexes go in brackets"));
    }
    None
}

/// Path segments: ids and names as clients send them, hostile ones, and
/// now and then a very long one (longer than hyper reads is a raw-socket
/// test of its own: HTTP clients refuse to send it).
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[A-Za-z0-9._:@-]{1,12}".prop_map(|s| encode(&s)),
        2 => any::<String>().prop_map(|s| encode(&s)),
        2 => prop::sample::select(vec![".", "..", "%2F", "a%2Fb", "%3F", "%23", "%FF", "%00", "%E2%80%AE"])
            .prop_map(str::to_string),
        1 => Just("a".repeat(60_000)),
    ]
}

#[test]
fn every_route_answers_errors_in_the_shape_for_people() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let api = runtime.block_on(start(Fake::new(64), LIMIT));
    runtime.block_on(api.create_agent("agent-1"));
    // The board's stream lasts until the client leaves: its answers are
    // checked in `board.rs`.
    let routes: Vec<(&str, &str)> = super::super::ROUTES
        .iter()
        .filter(|route| route.path != "/v1/board/stream")
        .map(|route| (route.verb.as_str(), route.path))
        .collect();
    let methods = prop::sample::select(vec!["GET", "PUT", "POST", "DELETE", "PATCH"]);
    let content_types =
        prop::sample::select(vec![Some("application/json"), Some("text/plain"), None]);
    let mut runner = TestRunner::new(Config {
        cases: 384,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(
        &(
            prop::sample::select(routes),
            prop::option::weighted(0.2, methods),
            segment(),
            body(),
            content_types,
            "[a-z=&0-9%]{0,24}",
        ),
        |((method, template), other_method, segment, body, content_type, query)| {
            let path = template
                .replace("{agent_id}", &segment)
                .replace("{contact_id}", &segment)
                .replace("{queue}", &segment);
            let method = other_method.unwrap_or(method);
            let url = format!("{}?{query}", api.url(&path));
            let mut request = api
                .client
                .request(method.parse().unwrap(), url)
                .bearer_auth(TOKEN)
                .body(body.clone());
            if let Some(content_type) = content_type {
                request = request.header("content-type", content_type);
            }
            let (status, headers, text) = runtime
                .block_on(async {
                    let response = request.send().await.map_err(|e| e.to_string())?;
                    let status = response.status().as_u16();
                    let headers = response.headers().clone();
                    let text = response.text().await.map_err(|e| e.to_string())?;
                    Ok::<_, String>((status, headers, text))
                })
                .map_err(|e| TestCaseError::fail(e.chars().take(300).collect::<String>()))?;
            let shown: String = format!(
                "{method} {} {}",
                path.chars().take(120).collect::<String>(),
                String::from_utf8_lossy(&body)
                    .chars()
                    .take(200)
                    .collect::<String>()
            );
            prop_assert!(status < 500, "{shown}: {status} {text}");
            if status >= 400 {
                let json = headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.starts_with("application/json"));
                prop_assert!(json, "{shown}: {status} not JSON: {text}");
                if let Some(problem) = error_problem(&text) {
                    return Err(TestCaseError::fail(format!(
                        "{shown}: {status} {text}: {problem}"
                    )));
                }
            }
            Ok(())
        },
    );
    if let Err(failure) = result {
        panic!("{failure}");
    }
}

#[test]
fn error_problems_are_seen() {
    for (text, seen) in [
        (
            r#"{"error":{"code":"x","message":"invalid value: integer `300`, expected u8"}}"#,
            true,
        ),
        (
            r#"{"error":{"code":"x","message":"expected struct StatusReport with 2 elements"}}"#,
            true,
        ),
        (
            r#"{"error":{"code":"x","message":"must be a string","field":"queues.0.queue"}}"#,
            true,
        ),
        (
            r#"{"error":{"code":"x","message":"no route `/u8`"}}"#,
            false,
        ),
        (
            r#"{"error":{"code":"x","message":"must be a whole number","field":"queues[0].position"}}"#,
            false,
        ),
        ("", true),
    ] {
        assert_eq!(error_problem(text).is_some(), seen, "{text}");
    }
}
