//! The agent's side: list the tools it may use (`GET /v1/tools`), call one
//! (`POST /v1/tools/{component.tool}/call`), with the agent's bearer token.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};

use super::auth::agent as authenticate;
use super::ApiError;
use crate::gate::{error_kind, new_call_id, upstream_next_step, CallReport, GateError};
use crate::policy_gate::CallOptions;
use crate::Airlock;
use airlock_runtime::{CallError, LimitExceeded};

/// `GET /v1/tools`: the tools this agent may use right now.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct ToolList {
    tools: Vec<AgentTool>,
}

/// A tool as an agent sees it (`GET /v1/tools`).
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct AgentTool {
    /// `component.tool`: the name to call it by.
    name: String,
    description: String,
    /// The JSON Schema of its input.
    input_schema: Value,
    /// The JSON Schema of its result, when its component declares one.
    output_schema: Option<Value>,
    effects: ToolEffects,
}

/// What a tool does to the world, as its component declares it (the riskiest kind when it
/// declares nothing).
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct ToolEffects {
    effect: ToolEffect,
    /// A second call with the same input changes nothing more than the first.
    idempotent: bool,
    /// It reaches systems outside Airlock.
    open_world: bool,
    /// Whether its author declared this.
    declared: bool,
}

/// What a call changes, least to most.
#[derive(serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum ToolEffect {
    ReadOnly,
    Reversible,
    Irreversible,
}

impl From<&airlock_runtime::Effects> for ToolEffects {
    fn from(e: &airlock_runtime::Effects) -> ToolEffects {
        let effect = match e.effect {
            airlock_runtime::Effect::ReadOnly => ToolEffect::ReadOnly,
            airlock_runtime::Effect::Reversible => ToolEffect::Reversible,
            airlock_runtime::Effect::Irreversible => ToolEffect::Irreversible,
        };
        ToolEffects { effect, idempotent: e.idempotent, open_world: e.open_world, declared: e.declared }
    }
}

/// `GET /v1/tools`: the tools this agent may use right now, with their input schemas.
pub(super) async fn list_tools(
    State(host): State<Arc<Airlock>>,
    headers: HeaderMap,
) -> Result<Json<ToolList>, ApiError> {
    let agent = authenticate(&host, &headers, "").await?;
    let tools = host
        .visible_tools(&agent)
        .await
        .into_iter()
        .map(|t| AgentTool {
            effects: ToolEffects::from(&t.effects),
            name: t.id,
            description: t.description,
            input_schema: t.input_schema,
            output_schema: t.output_schema,
        })
        .collect();
    Ok(Json(ToolList { tools }))
}

/// `POST /v1/tools/{component.tool}/call` with the JSON input as body.
pub(super) async fn call_tool(
    State(host): State<Arc<Airlock>>,
    Path(tool): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ToolCallResult>, ApiError> {
    let agent = authenticate(&host, &headers, &tool).await?;
    // Size first: an input no component may take is refused before it is parsed.
    let max = host.runtime.limits().input_bytes;
    if body.len() > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "input_too_large",
            format!(
                "the tool input is {} bytes, more than the {max} bytes a tool call may carry: send a smaller input",
                body.len()
            ),
        ));
    }
    let input = std::str::from_utf8(&body).map_err(|_| ApiError::bad_request("body is not UTF-8 JSON"))?;
    let input = if input.trim().is_empty() { "{}" } else { input };
    if !serde_json::from_str::<Value>(input).map(|v| v.is_object()).unwrap_or(false) {
        return Err(ApiError::bad_request("body must be a JSON object: the tool's input"));
    }
    let opts =
        CallOptions { grant: header(&headers, GRANT_HEADER), run: header(&headers, RUN_HEADER), ..Default::default() };
    report_answer(host.call_tool_with(&agent, &tool, input, new_call_id(), &opts).await)
}

/// The header a caller presents a grant (an approval id) in, to spend it on this call.
pub const GRANT_HEADER: &str = "airlock-grant";
/// The header naming the run a call is a step of.
pub const RUN_HEADER: &str = "airlock-run";

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty()).map(str::to_string)
}

/// `POST /v1/tools/{tool}/call` and `POST /v1/calls/{call_id}/resume`: the tool's result.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct ToolCallResult {
    /// The id the host gave this call.
    call_id: String,
    /// What the tool returned, as JSON.
    result: Value,
    /// The tool's stdout then stderr, each truncated.
    log: String,
}

/// The gate's answer as the API returns it (a call, or a resumed call).
pub(crate) fn report_answer(report: Result<CallReport, GateError>) -> Result<Json<ToolCallResult>, ApiError> {
    let report = report.map_err(|e| match e {
        GateError::BadToolId(_) => ApiError::bad_request(e.to_string()),
        GateError::Forbidden { .. } => ApiError::forbidden(e.to_string()),
        GateError::AuthzUnavailable(_) => ApiError::new(StatusCode::FORBIDDEN, "authz_unavailable", e.to_string()),
        GateError::Quota(q) => ApiError::too_many(q.to_string(), q.retry_after),
        GateError::Overloaded(_) => ApiError::busy(e.to_string(), 1),
        GateError::Unaudited { .. } => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unaudited", e.to_string()),
        GateError::Authority(e) => ApiError::from(e),
    })?;
    match report.outcome.result {
        Ok(result) => Ok(Json(ToolCallResult { call_id: report.call_id, result, log: report.outcome.log })),
        Err(e) => {
            let status = match &e {
                CallError::UnknownComponent(_) | CallError::UnknownTool { .. } => StatusCode::NOT_FOUND,
                CallError::InvalidInput(_) => StatusCode::BAD_REQUEST,
                CallError::Refused(_) => StatusCode::FORBIDDEN,
                CallError::Failed(_) => StatusCode::BAD_GATEWAY,
                CallError::Limit(LimitExceeded::Input(_)) => StatusCode::PAYLOAD_TOO_LARGE,
                CallError::Limit(_) => StatusCode::UNPROCESSABLE_ENTITY,
                CallError::Trap(_) => StatusCode::INTERNAL_SERVER_ERROR,
                CallError::Upstream(f) if f.timed_out => StatusCode::GATEWAY_TIMEOUT,
                CallError::Upstream(_) => StatusCode::BAD_GATEWAY,
            };
            let mut err = ApiError::new(status, error_kind(&e), e.to_string());
            err.extra = Some(json!({ "call_id": report.call_id, "log": report.outcome.log }));
            if let (CallError::Upstream(f), Some(extra)) = (&e, err.extra.as_mut()) {
                extra["next_step"] = upstream_next_step(f).into();
            }
            Err(err)
        }
    }
}
