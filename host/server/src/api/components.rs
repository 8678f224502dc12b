//! Host-wide components (the operator's): every tenant's agents may run them, so only the
//! operator adds or replaces one. A tenant's own components come with its installed packages.
//!
//! - `GET /v1/components`: the host-wide components and their tools;
//! - `POST /v1/components/{name}`: the `.wasm` bytes as the body; checked, compiled, stored.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::auth::Operator;
use super::ApiError;
use crate::app::ComponentError;
use crate::Airlock;

pub(super) async fn list(State(host): State<Arc<Airlock>>, _: Operator) -> Result<Json<Value>, ApiError> {
    let list: Vec<Value> = host
        .runtime
        .components()
        .iter()
        .map(|c| json!({ "name": c.name, "sha256": c.sha256, "tools": c.tools }))
        .collect();
    Ok(Json(json!({ "components": list })))
}

pub(super) async fn add(
    State(host): State<Arc<Airlock>>,
    operator: Operator,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request("send the component's .wasm bytes as the request body"));
    }
    match host.add_component(&name, &body, &format!("operator:{}", operator.0)).await {
        Ok(c) => Ok(Json(json!({ "name": c.name, "sha256": c.sha256, "tools": c.tools }))),
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
