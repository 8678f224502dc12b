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
use serde_json::{json, Value};

use super::auth::{TenantAdmin, TenantReader};
use super::ApiError;
use crate::Airlock;

pub(super) async fn list(
    State(host): State<Arc<Airlock>>,
    TenantReader(m): TenantReader,
) -> Result<Json<Value>, ApiError> {
    let agents = host.agents.list(&m.tenant).await?;
    let installed = host.installations(&m.tenant).await.map_err(ApiError::from)?;
    let package_of = |name: &str| {
        installed.iter().find(|i| i["agent"] == name).map(|i| {
            json!({ "name": i["package"], "version": i["version"], "publisher": i["publisher"],
                    "digest": i["digest"], "installed_at": i["installed_at"], "updated_at": i["updated_at"] })
        })
    };
    let agents: Vec<Value> = agents
        .into_iter()
        .map(|a| {
            json!({ "name": a.name, "subject": format!("agent:{}", a.name), "created_at": a.created_at,
                    "revoked_at": a.revoked_at, "live": a.live, "package": package_of(&a.name) })
        })
        .collect();
    Ok(Json(json!({ "agents": agents })))
}

#[derive(Deserialize, schemars::JsonSchema, serde::Serialize)]
pub(crate) struct NewAgent {
    pub(crate) tenant: Option<String>,
    pub(crate) name: String,
}

pub(super) async fn create(
    State(host): State<Arc<Airlock>>,
    TenantAdmin(m): TenantAdmin,
    body: Result<Json<NewAgent>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(body) = body?;
    let tenant = m.scope(body.tenant.as_deref())?;
    let token = host.agents.create(tenant, &body.name).await?;
    host.audit.record(m.event("agent.create", "ok", "", json!({ "agent": format!("agent:{}", body.name) })));
    Ok((
        StatusCode::CREATED,
        Json(json!({ "tenant": tenant, "name": body.name, "subject": format!("agent:{}", body.name), "token": token })),
    ))
}

pub(super) async fn revoke(
    State(host): State<Arc<Airlock>>,
    TenantAdmin(m): TenantAdmin,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
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
    Ok(Json(json!({ "revoked": name })))
}
