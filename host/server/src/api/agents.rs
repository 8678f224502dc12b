//! The tenant's agents: list them (admins and auditors), create one (its token shown once),
//! revoke one (its tokens, grants and pending approvals end at once) (admins).
//!
//! - `GET /v1/agents`: `{"agents": [{"name", "subject", "created_at", "revoked_at", "live",
//!   "package"}]}`, newest first (by the creation of the current incarnation: re-creating a
//!   revoked name makes it new), then by name; revoked agents are listed too (`live: false`,
//!   `revoked_at` set); `package` is `{"name", "version", "publisher", "digest",
//!   "installed_at", "updated_at"}` for an agent a marketplace install made, else `null`;
//! - `POST /v1/agents` `{name}`, `DELETE /v1/agents/{name}`.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::auth::{TenantAdmin, TenantReader};
use super::ApiError;
use crate::Airlock;

/// `GET /v1/agents`: the tenant's agents, newest first, revoked ones too.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct AgentList {
    agents: Vec<AgentEntry>,
}

/// One of the tenant's agents, as `GET /v1/agents` lists it.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct AgentEntry {
    name: String,
    /// `agent:NAME`: the subject the authorization engine knows it as.
    subject: String,
    /// When its current incarnation was created (unix ms).
    created_at: i64,
    /// When it was revoked (unix ms); none while live.
    revoked_at: Option<i64>,
    /// Whether its tokens are accepted now.
    live: bool,
    /// The package a marketplace install made it from; none for an agent created directly.
    package: Option<AgentPackage>,
}

/// The installed package an agent comes from.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct AgentPackage {
    name: String,
    version: String,
    publisher: String,
    /// sha256 of the signed payload installed.
    digest: String,
    /// When it was installed (unix ms).
    installed_at: i64,
    /// When it was last installed or upgraded (unix ms).
    updated_at: i64,
}

pub(super) async fn list(
    State(host): State<Arc<Airlock>>,
    TenantReader(m): TenantReader,
) -> Result<Json<AgentList>, ApiError> {
    let agents = host.agents.list(&m.tenant).await?;
    let installed = host.installations(&m.tenant).await.map_err(ApiError::from)?;
    let package_of = |name: &str| {
        installed.iter().find(|i| i.agent == name).map(|i| AgentPackage {
            name: i.package.clone(),
            version: i.version.clone(),
            publisher: i.publisher.clone(),
            digest: i.digest.clone(),
            installed_at: i.installed_at,
            updated_at: i.updated_at,
        })
    };
    let agents = agents
        .into_iter()
        .map(|a| AgentEntry {
            subject: format!("agent:{}", a.name),
            package: package_of(&a.name),
            name: a.name,
            created_at: a.created_at,
            revoked_at: a.revoked_at,
            live: a.live,
        })
        .collect();
    Ok(Json(AgentList { agents }))
}

#[derive(Deserialize, schemars::JsonSchema, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewAgent {
    pub(crate) tenant: Option<String>,
    pub(crate) name: String,
}

/// `POST /v1/agents`: the agent created, with its token (shown this once).
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct CreatedAgent {
    tenant: String,
    name: String,
    /// `agent:NAME`: the subject the authorization engine knows it as.
    subject: String,
    /// The agent's API token; it is not shown again.
    token: String,
}

pub(super) async fn create(
    State(host): State<Arc<Airlock>>,
    TenantAdmin(m): TenantAdmin,
    body: Result<Json<NewAgent>, JsonRejection>,
) -> Result<(StatusCode, Json<CreatedAgent>), ApiError> {
    let Json(body) = body?;
    let tenant = m.scope(body.tenant.as_deref())?;
    let token = host.agents.create(tenant, &body.name).await?;
    host.audit.record(m.event("agent.create", "ok", "", json!({ "agent": format!("agent:{}", body.name) })));
    Ok((
        StatusCode::CREATED,
        Json(CreatedAgent {
            tenant: tenant.to_string(),
            subject: format!("agent:{}", body.name),
            name: body.name,
            token,
        }),
    ))
}

/// `DELETE /v1/agents/{name}`: the agent revoked.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct RevokedAgent {
    /// The agent's name.
    revoked: String,
}

pub(super) async fn revoke(
    State(host): State<Arc<Airlock>>,
    TenantAdmin(m): TenantAdmin,
    Path(name): Path<String>,
) -> Result<Json<RevokedAgent>, ApiError> {
    host.agents.revoke(&m.tenant, &name).await?;
    // Its authority ends with it: issued grants and pending approvals are cancelled.
    let cancelled = host
        .approvals
        .cancel_for_agent(&m.tenant, &format!("agent:{name}"))
        .await
        .map_err(|e| ApiError::internal("approvals", e))?;
    host.audit.record(m.event(
        "agent.revoke",
        "ok",
        "",
        json!({ "agent": format!("agent:{name}"),
        "cancelled_grants": cancelled.grants, "cancelled_approvals": cancelled.approvals }),
    ));
    Ok(Json(RevokedAgent { revoked: name }))
}
