//! One checker of values against the subset of JSON Schema the OpenAPI
//! document and the event schemas use, for every test that holds a sample
//! to its schema.

use serde_json::Value;

/// The schema a local `$ref` (`#/components/...`) points at.
pub(crate) fn resolve<'a>(document: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    document.pointer(pointer)
}

/// Checks `value` against `schema` for the subset of JSON Schema the document
/// uses. Returns the problems found.
pub(crate) fn check(
    document: &Value,
    schema: &Value,
    value: &Value,
    at: &str,
    problems: &mut Vec<String>,
) {
    if let Some(Value::String(reference)) = schema.get("$ref") {
        match resolve(document, reference) {
            Some(target) => check(document, target, value, at, problems),
            None => problems.push(format!("{at}: dangling {reference}")),
        }
        return;
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(options)) = schema.get(key) {
            let fitting = options
                .iter()
                .filter(|option| {
                    let mut inner = Vec::new();
                    check(document, option, value, at, &mut inner);
                    inner.is_empty()
                })
                .count();
            if fitting == 0 || (key == "oneOf" && fitting > 1) {
                problems.push(format!("{at}: {value} fits {fitting} of {key}"));
            }
            return;
        }
    }
    if let Some(kind) = schema.get("type").and_then(Value::as_str) {
        let fits = match kind {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_u64() || value.is_i64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "null" => value.is_null(),
            _ => false,
        };
        if !fits {
            problems.push(format!("{at}: {value} is not {kind}"));
            return;
        }
    }
    if let Some(Value::Array(allowed)) = schema.get("enum")
        && !allowed.contains(value)
    {
        problems.push(format!("{at}: {value} not in {allowed:?}"));
    }
    if let (Some(items), Some(item_schema)) = (value.as_array(), schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            check(document, item_schema, item, &format!("{at}[{i}]"), problems);
        }
    }
    if let Some(object) = value.as_object() {
        let properties = schema.get("properties").and_then(Value::as_object);
        for required in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !object.contains_key(required.as_str().unwrap_or_default()) {
                problems.push(format!("{at}: required {required} missing"));
            }
        }
        for (key, item) in object {
            let item_at = format!("{at}.{key}");
            match (
                properties.and_then(|p| p.get(key)),
                schema.get("additionalProperties"),
            ) {
                (Some(property), _) => check(document, property, item, &item_at, problems),
                (None, Some(Value::Bool(false))) | (None, None) if properties.is_some() => {
                    problems.push(format!("{item_at}: not in the schema"));
                }
                (None, Some(additional)) if additional.is_object() => {
                    check(document, additional, item, &item_at, problems);
                }
                _ => {}
            }
        }
    }
}
