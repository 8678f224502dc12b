//! The agent's side of host-enforced authority, with the agent's bearer token:
//!
//! - `POST /v1/approvals`: ask ahead of a call for approval of `tool` with `input`; the id
//!   returned is the grant to present later in the header `Airlock-Grant`;
//! - `GET /v1/approvals/{id}/wait?timeout_seconds=N`: long-poll one of the agent's approvals
//!   until it is decided (or `N` seconds pass, default 60, at most 600), also after a restart;
//! - `POST /v1/calls/{call_id}/resume`: re-attach to a call held by an approval policy (e.g.
//!   when the host restarted while it waited); it runs once when approved;
//! - `POST /v1/runs`, `GET /v1/runs/{id}`, `POST /v1/runs/{id}/finish`: runs of the calling
//!   agent, awaiting an entry approval when the agent has an entry policy; tool calls carry
//!   the run in the header `Airlock-Run`.
//!
//! The admin's side is `GET|POST /v1/policies` and `DELETE /v1/policies/{tool}`.

use std::sync::Arc;
use std::time::Duration;

use airlock_approvals::{Approval, ApprovalError, PolicySpec, Run, ENTRY_ACTION};
use airlock_audit::AuditEvent;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{agent as authenticate, TenantAdmin, TenantReader};
use super::tools::{report_answer, ToolCallResult};
use super::ApiError;
use crate::policy_gate::{policy_key, policy_name};
use crate::Airlock;

type Host = State<Arc<Airlock>>;

fn event(tenant: &str, kind: &str, outcome: &str, agent: &str, tool: &str, detail: Value) -> AuditEvent {
    AuditEvent {
        tenant: tenant.into(),
        kind: kind.into(),
        outcome: outcome.into(),
        agent: agent.into(),
        tool: tool.into(),
        detail,
    }
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct AheadRequest {
    /// `component.tool`.
    tool: String,
    /// The arguments the later call will send, exactly (their digest binds the grant).
    #[serde(default)]
    input: Option<Value>,
    /// The agent's own words for the approver (`summary` is the older name): kept as the
    /// request's labelled `note`; what the approver reads is the host's summary of `input`.
    #[serde(alias = "summary")]
    note: Option<String>,
    /// Only when the tool has no policy (a policy's role always wins).
    role: Option<String>,
    ttl_seconds: Option<u64>,
}

/// `POST /v1/approvals` (agent token): an approval asked for ahead of a call.
pub(super) async fn request_approval(
    State(host): Host,
    headers: HeaderMap,
    body: Result<Json<AheadRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<Approval>), ApiError> {
    // The agent first: a request without an agent's token is 401 whatever its body.
    let tool = body.as_ref().map(|Json(b)| b.tool.clone()).unwrap_or_default();
    let agent = authenticate(&host, &headers, &tool).await?;
    let Json(b) = body?;
    if !b.tool.contains('.') {
        return Err(ApiError::bad_request(format!("tool `{}` must be `component.tool`", b.tool)));
    }
    let may = host.may_use(&agent, &b.tool).await.unwrap_or(false);
    if !may {
        return Err(ApiError::forbidden(format!(
            "`{}` may not use `{}`: no `can_use` relation grants it, so it cannot ask to",
            agent.subject(),
            b.tool
        )));
    }
    let input = b.input.unwrap_or_else(|| json!({}));
    if !input.is_object() {
        return Err(ApiError::bad_request("`input` must be a JSON object: the tool's input"));
    }
    let ttl = b.ttl_seconds.map(Duration::from_secs);
    let a = host.request_approval(&agent, &b.tool, &input, b.note, b.role, ttl).await.map_err(ApiError::from)?;
    Ok((StatusCode::CREATED, Json(a)))
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(super) struct WaitQuery {
    timeout_seconds: Option<u64>,
}

/// `GET /v1/approvals/{id}/wait` (agent token): the approval once decided, or as it stands
/// after the timeout. Only the agent that asked may wait on it.
pub(super) async fn wait_approval(
    State(host): Host,
    Path(id): Path<String>,
    headers: HeaderMap,
    query: Result<Query<WaitQuery>, QueryRejection>,
) -> Result<Json<Approval>, ApiError> {
    let agent = authenticate(&host, &headers, "").await?;
    let Query(q) = query?;
    let not_found = || ApiError::not_found(format!("no approval `{id}` of this agent"));
    let current = match host.approvals.get(&agent.tenant, &id).await {
        Ok(a) => a,
        Err(ApprovalError::NotFound(_)) => return Err(not_found()),
        Err(e) => return Err(ApiError::internal("approval store", e)),
    };
    if current.agent != agent.subject() {
        return Err(not_found());
    }
    let timeout = Duration::from_secs(q.timeout_seconds.unwrap_or(60).min(600));
    let decided = match tokio::time::timeout(timeout, host.approvals.wait(&agent.tenant, &id)).await {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => return Err(ApiError::internal("approval store", e)),
        Err(_) => host.approvals.get(&agent.tenant, &id).await.map_err(|e| ApiError::internal("approval store", e))?,
    };
    Ok(Json(decided))
}

/// `POST /v1/calls/{call_id}/resume` (agent token): re-attaches to a held call and answers
/// like the call itself would have.
pub(super) async fn resume_call(
    State(host): Host,
    Path(call_id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<ToolCallResult>, ApiError> {
    let agent = authenticate(&host, &headers, "").await?;
    report_answer(host.resume_call(&agent, &call_id).await)
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewRun {
    #[serde(default)]
    summary: String,
}

/// `POST /v1/runs` (agent token): starts a run of the calling agent.
pub(super) async fn start_run(
    State(host): Host,
    headers: HeaderMap,
    body: Result<Option<Json<NewRun>>, JsonRejection>,
) -> Result<(StatusCode, Json<Run>), ApiError> {
    // The agent first: a request without an agent's token is 401 whatever its body.
    let agent = authenticate(&host, &headers, "").await?;
    let summary = body?.map(|Json(b)| b.summary).unwrap_or_default();
    let summary = if summary.is_empty() { format!("a run of {}", agent.subject()) } else { summary };
    let run = host.runs.start(&agent.tenant, &agent.subject(), &summary).await.map_err(ApiError::from)?;
    host.audit.record(event(
        &agent.tenant,
        "run.start",
        "ok",
        &agent.subject(),
        "",
        json!({ "run_id": run.id, "state": run.state, "approval_id": run.approval_id, "role": run.role,
                "summary": run.summary }),
    ));
    Ok((StatusCode::CREATED, Json(run)))
}

/// `GET /v1/runs/{id}` (agent token): one of the agent's runs as it stands now.
pub(super) async fn get_run(
    State(host): Host,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Run>, ApiError> {
    let agent = authenticate(&host, &headers, "").await?;
    let run = host.runs.get(&agent.tenant, &id).await.map_err(ApiError::from)?;
    if run.agent != agent.subject() {
        return Err(ApiError::not_found(format!("no run `{id}` of this agent")));
    }
    Ok(Json(run))
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
#[schemars(rename = "FinishRun")]
pub(super) struct Finish {
    #[serde(default)]
    outcome: String,
}

/// `POST /v1/runs/{id}/finish` (agent token): ends the run; its entry grant is spent.
pub(super) async fn finish_run(
    State(host): Host,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Option<Json<Finish>>, JsonRejection>,
) -> Result<Json<Run>, ApiError> {
    let agent = authenticate(&host, &headers, "").await?;
    let body = body?;
    let run = host.runs.get(&agent.tenant, &id).await.map_err(ApiError::from)?;
    if run.agent != agent.subject() {
        return Err(ApiError::not_found(format!("no run `{id}` of this agent")));
    }
    let outcome = body.map(|Json(b)| b.outcome).filter(|o| !o.is_empty()).unwrap_or_else(|| "finished".into());
    let run = host.runs.finish(&agent.tenant, &id, &outcome).await.map_err(ApiError::from)?;
    host.audit.record(event(
        &agent.tenant,
        "run.finish",
        "ok",
        &agent.subject(),
        "",
        json!({ "run_id": run.id, "state": run.state, "outcome": outcome }),
    ));
    Ok(Json(run))
}

// ---- policies (admin) ----------------------------------------------------------------

#[derive(Deserialize, schemars::JsonSchema, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewPolicy {
    pub(crate) tenant: Option<String>,
    /// `component.tool`, `component.*`, or `agent:NAME` for an entry policy.
    pub(crate) tool: String,
    pub(crate) role: String,
    /// How long a request waits and a grant lasts; 15 minutes when absent.
    pub(crate) ttl_seconds: Option<u64>,
}

/// `GET /v1/policies`: the tenant's approval policies.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct PolicyList {
    policies: Vec<TenantPolicy>,
}

/// `POST /v1/policies`, and each of `GET /v1/policies`: an approval policy.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct TenantPolicy {
    /// `component.tool`, `component.*`, `effect:EFFECT`, or `agent:NAME` for an entry policy.
    tool: String,
    /// The relation an approver must hold on `tenant:TENANT`.
    role: String,
    /// How long a request waits for a decision, and how long the grant lasts once approved.
    ttl_seconds: u64,
    /// Whether it gates a run of the agent (its entry) rather than one action.
    entry: bool,
    /// When it was last set (unix ms).
    updated_at: i64,
}

impl TenantPolicy {
    fn of(p: &airlock_approvals::Policy) -> TenantPolicy {
        TenantPolicy {
            tool: policy_name(p),
            role: p.role.clone(),
            ttl_seconds: p.ttl.as_secs(),
            entry: p.entry,
            updated_at: p.updated_at,
        }
    }
}

/// `GET /v1/policies` (admin): the tenant's approval policies.
pub(super) async fn list_policies(
    State(host): Host,
    TenantReader(m): TenantReader,
) -> Result<Json<PolicyList>, ApiError> {
    let list = host.policies.list(&m.tenant).await.map_err(|e| ApiError::internal("policy store", e))?;
    Ok(Json(PolicyList { policies: list.iter().map(TenantPolicy::of).collect() }))
}

/// `POST /v1/policies` (admin): creates or replaces the policy of a tool (or an agent's entry).
pub(super) async fn put_policy(
    State(host): Host,
    TenantAdmin(m): TenantAdmin,
    body: Result<Json<NewPolicy>, JsonRejection>,
) -> Result<Json<TenantPolicy>, ApiError> {
    let Json(b) = body?;
    let tenant = m.scope(b.tenant.as_deref())?;
    let (tool, action) = policy_key(&b.tool);
    let entry = action == ENTRY_ACTION && tool.starts_with("agent:");
    let ttl = Duration::from_secs(b.ttl_seconds.unwrap_or(15 * 60));
    let spec = PolicySpec { tool, action, role: b.role, ttl, entry };
    let p = host.policies.put(tenant, spec).await.map_err(|e| match e {
        airlock_approvals::PolicyError::Invalid(_) => ApiError::bad_request(e.to_string()),
        other => ApiError::internal("policy store", other),
    })?;
    let view = TenantPolicy::of(&p);
    host.audit.record(m.event("policy.put", "ok", &b.tool, json!(view)));
    Ok(Json(view))
}

/// `DELETE /v1/policies/{tool}`: the policy deleted.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct PolicyDeleted {
    /// The policy's name, as the path gave it.
    deleted: String,
}

/// `DELETE /v1/policies/{tool}` (admin).
pub(super) async fn delete_policy(
    State(host): Host,
    TenantAdmin(m): TenantAdmin,
    Path(name): Path<String>,
) -> Result<Json<PolicyDeleted>, ApiError> {
    let (tool, action) = policy_key(&name);
    let gone =
        host.policies.delete(&m.tenant, &tool, &action).await.map_err(|e| ApiError::internal("policy store", e))?;
    if !gone {
        return Err(ApiError::not_found(format!("no policy for `{name}` in this tenant")));
    }
    host.audit.record(m.event("policy.delete", "ok", &name, json!({ "tool": name })));
    Ok(Json(PolicyDeleted { deleted: name }))
}
