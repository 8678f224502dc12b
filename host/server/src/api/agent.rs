//! The agent's side: list the tools it may use, call one.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};

use super::{bearer, ApiError};
use crate::agents::Agent;
use crate::gate::{error_kind, new_call_id, CallReport, GateError};
use crate::policy_gate::CallOptions;
use crate::Airlock;
use airlock_runtime::CallError;

/// The agent behind the bearer token; refusals are audited with their reason.
///
/// Two kinds of token are accepted: an agent's opaque token (`airlock agent create`) and a
/// signed JWT (from `/oauth/token`, a token exchange, or a tenant's external issuer). A JWT
/// names an agent that must still be live: revoking it refuses its tokens at once.
pub(crate) async fn authenticate(host: &Airlock, headers: &HeaderMap, tool: &str) -> Result<Agent, ApiError> {
    let refuse = |tenant: &str, who: &str, reason: String| {
        host.audit.record(airlock_audit::AuditEvent {
            tenant: tenant.into(),
            kind: "auth".into(),
            outcome: "denied".into(),
            agent: who.into(),
            tool: tool.into(),
            detail: json!({ "reason": reason }),
        });
        ApiError::unauthenticated(format!("{reason}: send `Authorization: Bearer <agent token>`"))
    };
    let default = crate::config::DEFAULT_TENANT;
    let Some(token) = bearer(headers) else {
        return Err(refuse(default, "unknown", "missing bearer token".into()));
    };
    if !looks_like_jwt(token) {
        return match host.agents.authenticate(token).await.map_err(|e| ApiError::internal("agent store", e))? {
            Some(agent) => Ok(agent),
            None => Err(refuse(default, "unknown", "unknown or revoked agent token".into())),
        };
    }
    let verified = match host.identity.verify(token, host.identity.issuer()).await {
        Ok(v) => v,
        Err(e) => return Err(refuse(default, "unknown", format!("token refused: {e}"))),
    };
    let Some(name) = verified.agent.clone() else {
        let reason = format!("token of `{}` names no agent: tools are called by agents", verified.subject);
        return Err(refuse(&verified.tenant, &verified.subject, reason));
    };
    if let Err(reason) = agents_live(host, &verified).await? {
        return Err(refuse(&verified.tenant, &format!("agent:{name}"), reason));
    }
    // Outermost first: the user, then each agent that delegated further, up to the acting one.
    let mut on_behalf_of = Vec::new();
    if verified.user.is_some() {
        on_behalf_of.push(verified.subject.clone());
        on_behalf_of.extend(verified.act.iter().skip(1).rev().cloned());
    }
    Ok(Agent { tenant: verified.tenant, name, on_behalf_of })
}

/// Whether every agent a verified token names (the acting one and each earlier actor) is live,
/// and was so when the token was issued: revoking an agent ends all its tokens, and re-creating
/// the name does not revive them. `Err(reason)` inside `Ok` is a refusal.
pub(crate) async fn agents_live(
    host: &Airlock,
    verified: &airlock_identity::Verified,
) -> Result<Result<(), String>, ApiError> {
    let mut names: Vec<&str> = verified.act.iter().filter_map(|a| a.strip_prefix("agent:")).collect();
    if let Some(own) = verified.subject.strip_prefix("agent:") {
        names.push(own);
    }
    for name in names {
        let since =
            host.agents.live_since(&verified.tenant, name).await.map_err(|e| ApiError::internal("agent store", e))?;
        match since {
            None => return Ok(Err(format!("agent `{name}` is revoked or unknown in tenant `{}`", verified.tenant))),
            // `iat` has second precision; creation has milliseconds.
            Some(created) if verified.iat.is_some_and(|iat| iat < created / 1000) => {
                return Ok(Err(format!("the token predates agent `{name}`'s current identity (it was revoked)")))
            }
            Some(_) => {}
        }
    }
    Ok(Ok(()))
}

/// A compact JWS has three base64url parts; agent tokens are hex.
fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}

/// `GET /v1/tools`: the tools this agent may use right now, with their input schemas.
pub(super) async fn list_tools(State(host): State<Arc<Airlock>>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let agent = authenticate(&host, &headers, "").await?;
    let tools: Vec<Value> = host
        .visible_tools(&agent)
        .await
        .into_iter()
        .map(|t| json!({ "name": t.id, "description": t.description, "input_schema": t.input_schema }))
        .collect();
    Ok(Json(json!({ "tools": tools })))
}

/// `POST /v1/tools/{component.tool}/call` with the JSON input as body.
pub(super) async fn call_tool(
    State(host): State<Arc<Airlock>>,
    Path(tool): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let agent = authenticate(&host, &headers, &tool).await?;
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

/// The gate's answer as the API returns it (a call, or a resumed call).
pub(crate) fn report_answer(report: Result<CallReport, GateError>) -> Result<Json<Value>, ApiError> {
    let report = report.map_err(|e| match e {
        GateError::BadToolId(_) => ApiError::bad_request(e.to_string()),
        GateError::Forbidden { .. } => ApiError::forbidden(e.to_string()),
        GateError::AuthzUnavailable(_) => ApiError::new(StatusCode::FORBIDDEN, "authz_unavailable", e.to_string()),
        GateError::Authority(e) => super::runs::authority_error(e),
    })?;
    match report.outcome.result {
        Ok(result) => Ok(Json(json!({ "call_id": report.call_id, "result": result, "log": report.outcome.log }))),
        Err(e) => {
            let status = match &e {
                CallError::UnknownComponent(_) | CallError::UnknownTool { .. } => StatusCode::NOT_FOUND,
                CallError::InvalidInput(_) => StatusCode::BAD_REQUEST,
                CallError::Refused(_) => StatusCode::FORBIDDEN,
                CallError::Failed(_) => StatusCode::BAD_GATEWAY,
                CallError::Limit(_) => StatusCode::UNPROCESSABLE_ENTITY,
                CallError::Trap(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            let mut err = ApiError::new(status, error_kind(&e), e.to_string());
            err.extra = Some(json!({ "call_id": report.call_id, "log": report.outcome.log }));
            Err(err)
        }
    }
}
