//! `GET /v1/openapi.json`: an OpenAPI 3.1 description of every `/v1` route, generated from
//! the route table itself ([`super::RouteInfo`]), so it cannot list a route the router does
//! not serve or miss one it does.
//!
//! From each route it takes the method and path (path parameters from the template), who may
//! call it (the security scheme of its [`super::Scope`]), the line [`super::Routes::doc`] gave
//! it, and what its handler reads, from the Rust types of the handler's extractors: a JSON
//! body (named by its type), a form, raw bytes (uploads), a query. Every error is the API's
//! `{code, message}`. What it does not yet give: the fields of each body and response (the
//! request types are named, not expanded into JSON Schema).

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::{RouteInfo, Scope};
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
    for route in table.iter().filter(|r| r.path.starts_with("/v1/")) {
        let op = operation(route);
        if let Some(tag) = op["tags"][0].as_str() {
            tags.insert(tag.to_string());
        }
        paths.entry(route.path).or_default().insert(route.method.as_str().to_lowercase(), op);
    }
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
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": { "type": "string", "description": "Stable, machine-readable (`forbidden`, `not_found`, ...)." },
                        "message": { "type": "string", "description": "What was wrong and what to do next." },
                    },
                },
            },
        },
    })
}

/// The operation object of one route.
fn operation(route: &RouteInfo) -> Value {
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
        parameters.push(json!({ "name": "query", "in": "query", "required": false, "style": "form", "explode": true,
            "schema": { "type": "object", "title": query, "additionalProperties": { "type": "string" } },
            "description": format!("The query parameters `{query}` reads.") }));
    }
    let mut op = json!({
        "operationId": format!("{tag}.{name}").replace("::", "."),
        "tags": [tag],
        "summary": route.summary,
        "parameters": parameters,
        "security": security(route.scope),
        "responses": {
            "2XX": success(route.path),
            "4XX": { "description": "Refused: the body says why and what to do", "content": error_content() },
            "5XX": { "description": "Unavailable: retry later", "content": error_content() },
        },
    });
    if let Some(body) = request_body(route.inputs) {
        op["requestBody"] = body;
    }
    op
}

fn error_content() -> Value {
    json!({ "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } })
}

fn success(path: &str) -> Value {
    if path.ends_with("/events") {
        return json!({ "description": "A stream of Server-Sent Events", "content": { "text/event-stream": { "schema": { "type": "string" } } } });
    }
    json!({ "description": "Done", "content": { "application/json": { "schema": { "type": "object" } } } })
}

fn security(scope: Scope) -> Value {
    match scope {
        Scope::Public => json!([]),
        Scope::Operator => json!([{ "operator": [] }]),
        Scope::Tenant => json!([{ "member": [] }, { "session": [] }]),
        Scope::Agent => json!([{ "agent": [] }]),
    }
}

/// The request body a handler reads, from its extractors' type names.
fn request_body(inputs: &str) -> Option<Value> {
    if let Some(ty) = extractor(inputs, "Json<") {
        let schema = if ty == "Value" { json!({ "type": "object" }) } else { json!({ "type": "object", "title": ty }) };
        return Some(json!({ "required": true, "content": { "application/json": { "schema": schema } } }));
    }
    if let Some(ty) = extractor(inputs, "Form<") {
        return Some(json!({ "required": true, "content": { "application/x-www-form-urlencoded": {
            "schema": { "type": "object", "title": ty, "additionalProperties": { "type": "string" } } } } }));
    }
    if inputs.contains("bytes::Bytes") {
        return Some(json!({ "required": true, "content": {
            "application/octet-stream": { "schema": { "type": "string", "contentMediaType": "application/octet-stream" } },
            "application/json": { "schema": { "type": "object" } } } }));
    }
    None
}

/// The last path segment of the type inside the first `wrapper` (`Json<`, `Form<`, `Query<`)
/// among a handler's extractor types: `Json<airlock::api::agents::NewAgent>` -> `NewAgent`.
fn extractor(inputs: &str, wrapper: &str) -> Option<String> {
    let start = inputs.find(&format!("::{wrapper}"))? + wrapper.len() + 2;
    let mut depth = 1;
    let mut end = start;
    for (i, c) in inputs[start..].char_indices() {
        match c {
            '<' => depth += 1,
            '>' => {
                depth -= 1;
                if depth == 0 {
                    end = start + i;
                    break;
                }
            }
            _ => {}
        }
    }
    let inner = &inputs[start..end];
    let outer = inner.split('<').next().unwrap_or(inner);
    Some(outer.rsplit("::").next().unwrap_or(outer).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handlers_extractors_name_its_body_and_query() {
        let inputs = "(axum::extract::state::State<alloc::sync::Arc<airlock::app::Airlock>>, airlock::api::auth::TenantAdmin, \
                      core::result::Result<axum::extract::json::Json<airlock::api::agents::NewAgent>, axum_core::extract::rejection::JsonRejection>)";
        assert_eq!(extractor(inputs, "Json<").as_deref(), Some("NewAgent"));
        assert_eq!(extractor(inputs, "Query<"), None);
        let q = "(axum::extract::query::Query<std::collections::hash::map::HashMap<alloc::string::String, alloc::string::String>>,)";
        assert_eq!(extractor(q, "Query<").as_deref(), Some("HashMap"));
        assert!(request_body("(axum::extract::form::Form<X>,)").unwrap()["content"]
            ["application/x-www-form-urlencoded"]
            .is_object());
    }
}
