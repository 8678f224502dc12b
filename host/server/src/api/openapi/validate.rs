//! Checks JSON against the document's schemas. The tests check every answer the host gives
//! them against the response type its route declares (`tests/support`: `TestHost::request`),
//! so a declared response cannot drift from what the handler sends; the console's browser
//! tests do the same in JavaScript (`tests/browser/shapes.mjs`).
//!
//! It covers what `schemars` writes for the API's types: `$ref`, `type` (one or a list),
//! `properties`, `required`, `additionalProperties`, `items`, `enum`, `const`, `anyOf`,
//! `oneOf`, `allOf`.

use serde_json::Value;

/// The JSON schema of the success answer of `method path` (a concrete path, query allowed), if
/// the route answers JSON of a declared type. A literal segment beats a template parameter
/// (`/v1/approvals/events` before `/v1/approvals/{id}`).
pub fn response_schema<'a>(doc: &'a Value, method: &str, path: &str) -> Option<&'a Value> {
    let path = path.split('?').next().unwrap_or(path);
    let segments: Vec<&str> = path.split('/').collect();
    let (_, op) = doc["paths"]
        .as_object()?
        .iter()
        .filter_map(|(template, ops)| {
            let parts: Vec<&str> = template.split('/').collect();
            let fits =
                parts.len() == segments.len() && parts.iter().zip(&segments).all(|(t, s)| t.starts_with('{') || t == s);
            let op = ops.get(method.to_lowercase())?;
            fits.then(|| (parts.iter().filter(|t| t.starts_with('{')).count(), op))
        })
        .min_by_key(|(parameters, _)| *parameters)?;
    let schema = &op["responses"]["2XX"]["content"]["application/json"]["schema"];
    // A route without a declared type says only `{"type": "object"}`: nothing to check.
    (schema.get("$ref").is_some() || schema.get("properties").is_some()).then_some(schema)
}

/// What is wrong with `value` under `schema` (whose `$ref`s point into `doc`), one line each;
/// empty when it fits.
pub fn violations(doc: &Value, schema: &Value, value: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    check(doc, schema, value, "$", &mut errors);
    errors
}

fn resolve<'a>(doc: &'a Value, mut schema: &'a Value) -> &'a Value {
    for _ in 0..32 {
        let Some(reference) = schema.get("$ref").and_then(Value::as_str) else { break };
        let name = reference.trim_start_matches("#/components/schemas/");
        schema = &doc["components"]["schemas"][name];
    }
    schema
}

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn fits_type(ty: &str, v: &Value) -> bool {
    let actual = type_of(v);
    actual == ty || (ty == "number" && actual == "integer")
}

fn short(v: &Value) -> String {
    let text = v.to_string();
    if text.len() > 80 {
        format!("{}...", text.chars().take(80).collect::<String>())
    } else {
        text
    }
}

fn check(doc: &Value, schema: &Value, v: &Value, at: &str, errors: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    match schema {
        Value::Bool(true) => return,
        Value::Bool(false) => return errors.push(format!("{at}: no value is allowed here")),
        Value::Null => return errors.push(format!("{at}: unresolved schema reference")),
        _ => {}
    }
    if let Some(ty) = schema.get("type") {
        let types: Vec<&str> = match ty {
            Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
            other => other.as_str().into_iter().collect(),
        };
        if !types.iter().any(|t| fits_type(t, v)) {
            return errors.push(format!("{at}: {} is not {}", short(v), types.join(" or ")));
        }
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        if !values.contains(v) {
            errors.push(format!("{at}: {} is not one of {}", short(v), Value::Array(values.clone())));
        }
    }
    if let Some(constant) = schema.get("const") {
        if constant != v {
            errors.push(format!("{at}: {} is not {constant}", short(v)));
        }
    }
    for sub in schema.get("allOf").and_then(Value::as_array).into_iter().flatten() {
        check(doc, sub, v, at, errors);
    }
    for (key, exactly_one) in [("anyOf", false), ("oneOf", true)] {
        let Some(alternatives) = schema.get(key).and_then(Value::as_array) else { continue };
        let fitting = alternatives.iter().filter(|sub| violations(doc, sub, v).is_empty()).count();
        if fitting == 0 || (exactly_one && fitting > 1) {
            errors.push(format!("{at}: {} fits {fitting} of the {key} alternatives", short(v)));
        }
    }
    if let Value::Object(fields) = v {
        let properties = schema.get("properties").and_then(Value::as_object);
        for name in schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
            if !fields.contains_key(name) {
                errors.push(format!("{at}: the required field `{name}` is missing"));
            }
        }
        for (name, value) in fields {
            let here = format!("{at}.{name}");
            match (properties.and_then(|p| p.get(name)), schema.get("additionalProperties")) {
                (Some(property), _) => check(doc, property, value, &here, errors),
                (None, Some(Value::Bool(false))) => errors.push(format!("{at}: unknown field `{name}`")),
                (None, Some(extra @ Value::Object(_))) => check(doc, extra, value, &here, errors),
                (None, _) => {}
            }
        }
    }
    if let (Value::Array(items), Some(item)) = (v, schema.get("items")) {
        for (i, value) in items.iter().enumerate() {
            check(doc, item, value, &format!("{at}[{i}]"), errors);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({
            "paths": {
                "/v1/approvals/{id}": { "get": { "responses": { "2XX": { "content": { "application/json": {
                    "schema": { "$ref": "#/components/schemas/Approval" } } } } } } },
                "/v1/approvals/events": { "get": { "responses": { "2XX": { "content": { "text/event-stream": {} } } } } },
            },
            "components": { "schemas": {
                "Approval": { "type": "object", "required": ["id", "status"], "additionalProperties": false,
                    "properties": { "id": { "type": "string" }, "reason": { "type": ["string", "null"] },
                                    "status": { "$ref": "#/components/schemas/Status" },
                                    "tags": { "type": "array", "items": { "type": "string" } } } },
                "Status": { "type": "string", "enum": ["pending", "approved"] },
            } },
        })
    }

    #[test]
    fn a_route_is_found_by_its_concrete_path_literal_segments_first() {
        let d = doc();
        assert!(response_schema(&d, "GET", "/v1/approvals/a-1?tenant=x").is_some());
        assert!(response_schema(&d, "GET", "/v1/approvals/events").is_none(), "a stream is not JSON");
        assert!(response_schema(&d, "POST", "/v1/approvals/a-1").is_none());
        assert!(response_schema(&d, "GET", "/v1/approvals/a/b").is_none());
    }

    #[test]
    fn what_does_not_fit_is_said_field_by_field() {
        let d = doc();
        let schema = response_schema(&d, "GET", "/v1/approvals/a-1").unwrap();
        assert_eq!(
            violations(&d, schema, &json!({ "id": "a", "status": "pending", "reason": null, "tags": ["x"] })),
            Vec::<String>::new()
        );
        let wrong = violations(&d, schema, &json!({ "status": "maybe", "reason": 3, "tags": [1], "extra": true }));
        for expected in [
            "`id` is missing",
            "$.status: \"maybe\" is not one of",
            "$.reason: 3 is not string or null",
            "$.tags[0]: 1 is not string",
            "unknown field `extra`",
        ] {
            assert!(wrong.iter().any(|w| w.contains(expected)), "{expected} in {wrong:?}");
        }
    }
}
