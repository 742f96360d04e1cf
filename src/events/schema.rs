//! The JSON schema of each event type's `data`, derived from the payload
//! types in [`super::data`]: a payload struct's schema lists its fields with
//! their types' schemas, so the OpenAPI document cannot say other than what
//! the daemon emits.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::wire::{PresenceOut, SetBy, TargetOut};

/// A type that is part of an event's `data`, with the JSON schema of what it
/// serializes to.
pub trait DataSchema {
    fn schema() -> Value;
}

/// An object with every field present (an absent value is `null`) and no
/// other: `(name, schema, description)`.
pub(super) fn object(fields: &[(&str, Value, &str)]) -> Value {
    let mut properties = Map::new();
    for (name, schema, description) in fields {
        properties.insert((*name).to_string(), described(schema.clone(), description));
    }
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": fields.iter().map(|(name, _, _)| *name).collect::<Vec<_>>(),
        "properties": properties,
    })
}

/// `schema` with a `description` from doc-comment lines, when they say
/// something.
pub(super) fn described(mut schema: Value, doc: &str) -> Value {
    let text = doc
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if !text.is_empty()
        && let Some(object) = schema.as_object_mut()
    {
        object.insert("description".into(), text.into());
    }
    schema
}

/// A string that is one of `values`.
pub(super) fn one_of_strings(values: &[&str]) -> Value {
    json!({"type": "string", "enum": values})
}

impl DataSchema for String {
    fn schema() -> Value {
        json!({"type": "string"})
    }
}

impl DataSchema for bool {
    fn schema() -> Value {
        json!({"type": "boolean"})
    }
}

impl DataSchema for u8 {
    fn schema() -> Value {
        json!({"type": "integer", "minimum": 0, "maximum": u8::MAX})
    }
}

impl DataSchema for u32 {
    fn schema() -> Value {
        json!({"type": "integer", "minimum": 0})
    }
}

impl DataSchema for f64 {
    fn schema() -> Value {
        json!({"type": "number"})
    }
}

impl DataSchema for DateTime<Utc> {
    fn schema() -> Value {
        json!({"type": "string", "format": "date-time"})
    }
}

/// Anything: data a client attached to a contact, returned as given.
impl DataSchema for Value {
    fn schema() -> Value {
        json!({})
    }
}

impl<T: DataSchema> DataSchema for Option<T> {
    fn schema() -> Value {
        json!({"anyOf": [T::schema(), {"type": "null"}]})
    }
}

impl<T: DataSchema> DataSchema for Vec<T> {
    fn schema() -> Value {
        json!({"type": "array", "items": T::schema()})
    }
}

impl DataSchema for PresenceOut {
    fn schema() -> Value {
        object(&[
            ("availability", String::schema(), "Teams availability."),
            ("activity", String::schema(), "Teams activity."),
        ])
    }
}

impl DataSchema for TargetOut {
    fn schema() -> Value {
        object(&[
            ("action", one_of_strings(&["set", "clear"]), ""),
            (
                "presence",
                Option::<PresenceOut>::schema(),
                "What Teams shows for `set`; null for `clear`.",
            ),
        ])
    }
}

impl DataSchema for SetBy {
    fn schema() -> Value {
        // Every value, held to the enum by this exhaustive match.
        let all = |by: SetBy| match by {
            SetBy::Agent | SetBy::Daemon | SetBy::Routing => by,
        };
        let values: Vec<Value> = [SetBy::Agent, SetBy::Daemon, SetBy::Routing]
            .into_iter()
            .map(all)
            .filter_map(|by| serde_json::to_value(by).ok())
            .collect();
        json!({"type": "string", "enum": values})
    }
}
