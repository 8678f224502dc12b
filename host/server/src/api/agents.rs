//! The tenant's agents (admins): create one (its token shown once), revoke one (its tokens,
//! grants and pending approvals end at once).

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::TenantAdmin;
use super::ApiError;
use crate::Airlock;

#[derive(Deserialize)]
pub(super) struct NewAgent {
    tenant: Option<String>,
    name: String,
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
