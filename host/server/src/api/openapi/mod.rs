//! `GET /v1/openapi.json`: an OpenAPI 3.1 description of every `/v1` route, generated from
//! the route table itself ([`super::RouteInfo`]), so it cannot list a route the router does
//! not serve or miss one it does.
//!
//! From each route it takes the method and path (path parameters from the template), who may
//! call it (the security scheme of its [`super::Scope`]), the line [`super::Routes::doc`] gave
//! it, and what its handler reads, from the Rust types of the handler's extractors: a JSON
//! body or a query is expanded field by field from the type's JSON Schema ([`shapes`]), raw
//! bodies (uploads, the model's DSL, a tool's input) are described by handler. What a route
//! answers on success is the type its handler returns, declared in the route table
//! ([`super::Routes::returns`]) and checked against every answer the tests get ([`validate`]).
//! Every error is the API's `{code, message}`.

mod shapes;
pub mod validate;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use schemars::SchemaGenerator;
use serde_json::{json, Map, Value};

use shapes::{raw_body, request_shapes, Shape};

use super::{Answer, RouteInfo, Scope};
use crate::Airlock;

/// `GET /v1/openapi.json`.
pub(super) async fn serve(State(host): State<Arc<Airlock>>, headers: HeaderMap) -> Response {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    let mut doc = DOCUMENT.get_or_init(|| document(&super::route_table(host.clone()))).clone();
    if let Ok(base) = super::ciba::public_base(&host, &headers) {
        doc["servers"] = json!([{ "url": base }]);
    }
    Json(doc).into_response()
}

/// The OpenAPI 3.1 document of the `/v1` routes of `table`.
pub fn document(table: &[RouteInfo]) -> Value {
    let mut paths: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
    let mut tags = std::collections::BTreeSet::new();
    let shapes = request_shapes();
    let (mut named, mut inline) = (shapes::generator(false), shapes::generator(true));
    let mut answers = shapes::answer_generator();
    for route in table.iter().filter(|r| r.path.starts_with("/v1/")) {
        let op = operation(route, &shapes, &mut named, &mut inline, &mut answers);
        if let Some(tag) = op["tags"][0].as_str() {
            tags.insert(tag.to_string());
        }
        paths.entry(route.path).or_default().insert(route.method.as_str().to_lowercase(), op);
    }
    let mut schemas = named.take_definitions(true);
    merge_answers(&mut schemas, answers.take_definitions(true), &mut paths);
    schemas.insert(
        "Error".into(),
        json!({
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": { "type": "string", "description": "Stable, machine-readable (`forbidden`, `not_found`, ...)." },
                "message": { "type": "string", "description": "What was wrong and what to do next." },
            },
        }),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Airlock API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Run AI-agent tools safely: agents call tools (sandboxed WebAssembly components) under \
                relationship checks, human approvals and vaulted credentials, every decision audited. Tenant routes \
                take a member's API token or a browser session (whose state-changing requests carry `X-CSRF-Token`); \
                host-wide routes the operator's token; agent routes an agent's token or JWT. MCP is served at `/mcp`, \
                OpenFGA's API at `/stores`, OAuth at `/oauth/*`.",
            "license": { "name": "Apache-2.0", "identifier": "Apache-2.0" },
        },
        "tags": tags.into_iter().map(|t| json!({ "name": t })).collect::<Vec<_>>(),
        "paths": paths,
        "components": {
            "securitySchemes": {
                "member": { "type": "http", "scheme": "bearer", "description": "A tenant member's API token (`airlock token create`)." },
                "session": { "type": "apiKey", "in": "cookie", "name": "airlock_session",
                             "description": "A signed-in person's browser session; state-changing requests also send `X-CSRF-Token`." },
                "operator": { "type": "http", "scheme": "bearer", "description": "The operator's token (DATA_DIR/admin.token) or an operator API token." },
                "agent": { "type": "http", "scheme": "bearer", "bearerFormat": "agent token or JWT",
                           "description": "An agent's token (`airlock agent create`), or a JWT from `/oauth/token`." },
            },
            "schemas": schemas,
        },
    })
}

/// The operation object of one route.
fn operation(
    route: &RouteInfo,
    shapes: &[Shape],
    named: &mut SchemaGenerator,
    inline: &mut SchemaGenerator,
    answers: &mut SchemaGenerator,
) -> Value {
    // `airlock::api::agents::create` -> tag `agents`, id `agents.create`.
    let handler = route.handler.strip_prefix("airlock::api::").unwrap_or(route.handler);
    let mut segments: Vec<&str> = handler.split("::").collect();
    let name = segments.pop().unwrap_or("handler");
    let tag = segments.first().copied().unwrap_or("host");
    let mut parameters: Vec<Value> = route
        .path
        .split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|p| json!({ "name": p, "in": "path", "required": true, "schema": { "type": "string" } }))
        .collect();
    if route.scope == Scope::Tenant {
        parameters.push(json!({ "name": "tenant", "in": "query", "required": false, "schema": { "type": "string" },
            "description": "Your own tenant (optional): another tenant's name is 404, as if it did not exist." }));
    }
    if let Some(query) = extractor(route.inputs, "Query<") {
        match shapes.iter().find(|s| s.rust == query) {
            Some(shape) => parameters.extend(query_parameters(&shape.schema(inline), &parameters)),
            None => parameters.push(json!({ "name": "query", "in": "query", "required": false, "style": "form",
                "explode": true, "schema": { "type": "object", "additionalProperties": { "type": "string" } },
                "description": "Any query parameters (name=value)." })),
        }
    }
    let mut op = json!({
        "operationId": format!("{tag}.{name}").replace("::", "."),
        "tags": [tag],
        "summary": route.summary,
        "parameters": parameters,
        "security": security(route.scope),
        "responses": {
            "2XX": success(route, answers),
            "4XX": { "description": "Refused: the body says why and what to do", "content": error_content() },
            "5XX": { "description": "Unavailable: retry later", "content": error_content() },
        },
    });
    if let Some(body) = request_body(route, shapes, named) {
        op["requestBody"] = body;
    }
    op
}

fn error_content() -> Value {
    json!({ "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } })
}

/// Adds the schemas of the answers to those of the requests. A type both read and written
/// whose two schemas differ (a field with a default is optional to send, always there in an
/// answer) keeps both: the answer's is renamed `NAMEAnswer`, and the references to it in the
/// answers' schemas and in the operations' responses follow.
fn merge_answers(
    schemas: &mut Map<String, Value>,
    answers: Map<String, Value>,
    paths: &mut BTreeMap<&str, Map<String, Value>>,
) {
    let renamed: Vec<(String, String)> = answers
        .iter()
        .filter(|(name, schema)| schemas.get(name.as_str()).is_some_and(|read| read != *schema))
        .map(|(name, _)| (format!("#/components/schemas/{name}"), format!("#/components/schemas/{name}Answer")))
        .collect();
    let follow = |value: &mut Value| rename_refs(value, &renamed);
    for (name, mut schema) in answers {
        follow(&mut schema);
        let name = if renamed.iter().any(|(from, _)| from.ends_with(&format!("/{name}"))) {
            format!("{name}Answer")
        } else {
            name
        };
        schemas.insert(name, schema);
    }
    for op in paths.values_mut().flat_map(|ops| ops.values_mut()) {
        follow(&mut op["responses"]);
    }
}

fn rename_refs(value: &mut Value, renamed: &[(String, String)]) {
    match value {
        Value::Object(fields) => {
            for (key, v) in fields.iter_mut() {
                if key != "$ref" {
                    rename_refs(v, renamed);
                    continue;
                }
                let to = v.as_str().and_then(|target| renamed.iter().find(|(from, _)| from == target));
                if let Some((_, to)) = to {
                    *v = Value::String(to.clone());
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rename_refs(v, renamed)),
        _ => {}
    }
}

/// The success response: the route's [`Answer`], or a bare "done" when it declared none.
fn success(route: &RouteInfo, answers: &mut SchemaGenerator) -> Value {
    match route.answer {
        Some(Answer::Json(schema)) => {
            json!({ "description": "Done", "content": { "application/json": { "schema": schema(answers).to_value() } } })
        }
        Some(Answer::Other { media_type, description }) => json!({ "description": description,
            "content": { media_type: { "schema": { "type": "string", "description": description } } } }),
        None => json!({ "description": "Done", "content": { "application/json": { "schema": { "type": "object" } } } }),
    }
}

fn security(scope: Scope) -> Value {
    match scope {
        Scope::Public => json!([]),
        Scope::Operator => json!([{ "operator": [] }]),
        Scope::Tenant => json!([{ "member": [] }, { "session": [] }]),
        Scope::Agent => json!([{ "agent": [] }]),
    }
}

/// One query parameter per field of a query type's (inline) schema, less those already
/// listed (the path's, `tenant`).
fn query_parameters(schema: &Value, listed: &[Value]) -> Vec<Value> {
    let required: Vec<&str> =
        schema["required"].as_array().map(|r| r.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    let Some(properties) = schema["properties"].as_object() else { return Vec::new() };
    properties
        .iter()
        .filter(|(name, _)| !listed.iter().any(|p| p["name"] == name.as_str()))
        .map(|(name, field)| {
            let mut field = field.clone();
            let description = field.as_object_mut().and_then(|f| f.remove("description"));
            not_null(&mut field);
            let mut p =
                json!({ "name": name, "in": "query", "required": required.contains(&name.as_str()), "schema": field });
            if let Some(d) = description {
                p["description"] = d;
            }
            p
        })
        .collect()
}

/// A query parameter is absent or a string, never JSON `null`: an `Option` field's schema
/// loses its `null` (type, enum, default).
fn not_null(schema: &mut Value) {
    let Some(s) = schema.as_object_mut() else { return };
    if s.get("default") == Some(&Value::Null) {
        s.remove("default");
    }
    if let Some(Value::Array(types)) = s.get_mut("type") {
        types.retain(|t| t != "null");
        if types.len() == 1 {
            let only = types[0].clone();
            s.insert("type".into(), only);
        }
    }
    if let Some(Value::Array(values)) = s.get_mut("enum") {
        values.retain(|v| !v.is_null());
    }
}

/// The request body a handler reads, from its extractors' types.
fn request_body(route: &RouteInfo, shapes: &[Shape], named: &mut SchemaGenerator) -> Option<Value> {
    let described = |ty: &str, g: &mut SchemaGenerator| shapes.iter().find(|s| s.rust == ty).map(|s| s.schema(g));
    if let Some(ty) = extractor(route.inputs, "Json<") {
        let schema = described(&ty, named).unwrap_or_else(
            || json!({ "type": "object", "description": "Any JSON object; the route's summary says what." }),
        );
        return Some(json!({ "required": true, "content": { "application/json": { "schema": schema } } }));
    }
    if let Some(ty) = extractor(route.inputs, "Form<") {
        let schema = described(&ty, named)
            .unwrap_or_else(|| json!({ "type": "object", "additionalProperties": { "type": "string" } }));
        return Some(
            json!({ "required": true, "content": { "application/x-www-form-urlencoded": { "schema": schema } } }),
        );
    }
    if route.inputs.contains("bytes::Bytes") {
        return raw_body(route.handler, named)
            .or_else(|| Some(json!({ "required": true, "content": { "application/octet-stream": { "schema": { "type": "string" } } } })));
    }
    None
}

/// What the document cannot describe field by field among the `/v1` routes of `table`:
/// `METHOD PATH: TYPE` for each body or query type missing from [`request_shapes`], each raw
/// body without a description, and each route that declared no response. Empty when every
/// route is described (the OpenAPI test).
pub fn undescribed(table: &[RouteInfo]) -> Vec<String> {
    let shapes = request_shapes();
    let mut g = shapes::generator(false);
    let mut missing = Vec::new();
    for route in table.iter().filter(|r| r.path.starts_with("/v1/")) {
        for wrapper in ["Json<", "Query<", "Form<"] {
            let Some(ty) = extractor(route.inputs, wrapper) else { continue };
            let free = ty == "serde_json::value::Value" || ty.starts_with("std::collections::hash::map::HashMap<");
            if !free && !shapes.iter().any(|s| s.rust == ty) {
                missing.push(format!("{} {}: {wrapper}{ty}>", route.method, route.path));
            }
        }
        if route.inputs.contains("bytes::Bytes") && raw_body(route.handler, &mut g).is_none() {
            missing.push(format!("{} {}: raw bytes ({})", route.method, route.path, route.handler));
        }
        if route.answer.is_none() {
            missing.push(format!(
                "{} {}: no response type (`.returns::<T>()` in the route table)",
                route.method, route.path
            ));
        }
    }
    missing
}

/// The type inside the first `wrapper` (`Json<`, `Form<`, `Query<`) among a handler's
/// extractor types, as Rust names it: `Json<airlock::api::agents::NewAgent>` ->
/// `airlock::api::agents::NewAgent`.
fn extractor(inputs: &str, wrapper: &str) -> Option<String> {
    let start = inputs.find(&format!("::{wrapper}"))? + wrapper.len() + 2;
    let mut depth = 1;
    for (i, c) in inputs[start..].char_indices() {
        match c {
            '<' => depth += 1,
            '>' => {
                depth -= 1;
                if depth == 0 {
                    return Some(inputs[start..start + i].to_string());
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handlers_extractors_name_its_body_and_query() {
        let inputs = "(axum::extract::state::State<alloc::sync::Arc<airlock::app::Airlock>>, airlock::api::auth::TenantAdmin, \
                      core::result::Result<axum::extract::json::Json<airlock::api::agents::NewAgent>, axum_core::extract::rejection::JsonRejection>)";
        assert_eq!(extractor(inputs, "Json<").as_deref(), Some("airlock::api::agents::NewAgent"));
        assert_eq!(extractor(inputs, "Query<"), None);
        let q = "(axum::extract::query::Query<std::collections::hash::map::HashMap<alloc::string::String, alloc::string::String>>,)";
        assert_eq!(
            extractor(q, "Query<").as_deref(),
            Some("std::collections::hash::map::HashMap<alloc::string::String, alloc::string::String>")
        );
    }

    #[test]
    fn a_query_type_becomes_one_parameter_per_field() {
        let shapes = request_shapes();
        let search = shapes.iter().find(|s| s.rust.ends_with("::audit::SearchQuery")).expect("SearchQuery is a shape");
        let schema = search.schema(&mut shapes::generator(true));
        let listed = [json!({ "name": "tenant", "in": "query" })];
        let params = query_parameters(&schema, &listed);
        let names: Vec<&str> = params.iter().filter_map(|p| p["name"].as_str()).collect();
        assert!(names.contains(&"agent") && names.contains(&"limit") && names.contains(&"before"), "{names:?}");
        assert!(!names.contains(&"tenant"), "tenant is listed once: {names:?}");
        let limit = params.iter().find(|p| p["name"] == "limit").unwrap();
        assert_eq!(limit["required"], false);
        assert!(limit["description"].as_str().unwrap().contains("1 to 500"), "{limit}");
        assert_eq!(limit["schema"]["type"], "integer", "a query parameter is never null: {limit}");
    }
}
