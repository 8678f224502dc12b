//! Host-wide components (the operator's): every tenant's agents may run them, so only the
//! operator adds or replaces one. A tenant's own components come with its installed packages.
//!
//! - `GET /v1/components`: the host-wide components and their tools;
//! - `POST /v1/components/{name}`: the `.wasm` bytes as the body; checked, compiled, stored.

use std::sync::Arc;

use airlock_runtime::LoadedComponent;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::auth::Operator;
use super::tools::ToolEffects;
use super::ApiError;
use crate::app::ComponentError;
use crate::Airlock;

/// `GET /v1/components`: the host-wide components, by name.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct ComponentList {
    components: Vec<HostComponent>,
}

/// `POST /v1/components/{name}`, and each of `GET /v1/components`: a host-wide component.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct HostComponent {
    name: String,
    /// Hex sha256 of the component's `.wasm` bytes.
    sha256: String,
    /// The tools it offers.
    tools: Vec<ComponentTool>,
}

/// One tool a component offers.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct ComponentTool {
    /// The tool's name within its component (agents call it as `component.tool`).
    name: String,
    description: String,
    /// The JSON Schema of its input.
    input_schema: Value,
    effects: ToolEffects,
    /// The JSON Schema of its result, when its component declares one.
    #[serde(skip_serializing_if = "Option::is_none")]
    output_schema: Option<Value>,
}

impl HostComponent {
    fn of(c: &LoadedComponent) -> HostComponent {
        let tools = c
            .tools
            .iter()
            .map(|t| ComponentTool {
                name: t.name.clone(),
                description: t.description.clone(),
                input_schema: t.input_schema.clone(),
                effects: ToolEffects::from(&t.effects),
                output_schema: t.output_schema.clone(),
            })
            .collect();
        HostComponent { name: c.name.clone(), sha256: c.sha256.clone(), tools }
    }
}

pub(super) async fn list(State(host): State<Arc<Airlock>>, _: Operator) -> Result<Json<ComponentList>, ApiError> {
    let components = host.runtime.components().iter().map(|c| HostComponent::of(c)).collect();
    Ok(Json(ComponentList { components }))
}

pub(super) async fn add(
    State(host): State<Arc<Airlock>>,
    operator: Operator,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<HostComponent>, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request("send the component's .wasm bytes as the request body"));
    }
    match host.add_component(&name, &body, &format!("operator:{}", operator.0)).await {
        Ok(c) => Ok(Json(HostComponent::of(&c))),
        Err(ComponentError::Add(e)) => {
            host.audit.record(operator.event("component.add", "refused", &name, json!({ "reason": e.to_string() })));
            let code = match e {
                airlock_runtime::AddError::ForbiddenImports(_) => "forbidden_imports",
                _ => "invalid_component",
            };
            Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, e.to_string()))
        }
        Err(ComponentError::Store(e)) => Err(ApiError::internal("storing the component", e)),
    }
}
