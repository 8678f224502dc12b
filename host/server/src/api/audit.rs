//! The audit trail, for admins and auditors of a tenant, and the operator's own chain of
//! host-wide work.
//!
//! - `GET /v1/audit?after=&limit=`, `GET /v1/audit/verify`: the tenant's trail;
//! - `GET /v1/host/audit`, `GET /v1/host/audit/verify`: the host's (operator).

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{Operator, TenantReader};
use super::ApiError;
use crate::tenancy::HOST_CHAIN;
use crate::Airlock;

type Host = State<Arc<Airlock>>;

#[derive(Deserialize)]
pub(super) struct AuditQuery {
    after: Option<i64>,
    limit: Option<i64>,
}

async fn read(host: &Airlock, chain: &str, q: AuditQuery) -> Result<Json<Value>, ApiError> {
    // Include everything recorded up to this request.
    host.flush().await;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let events =
        host.audit.list(chain, q.after.unwrap_or(0), limit).await.map_err(|e| ApiError::internal("audit store", e))?;
    Ok(Json(json!({ "events": events })))
}

async fn verify(host: &Airlock, chain: &str) -> Result<Json<Value>, ApiError> {
    host.flush().await;
    let v = host.audit.verify(chain).await.map_err(|e| ApiError::internal("audit store", e))?;
    Ok(Json(json!(v)))
}

pub(super) async fn read_tenant(
    State(host): Host,
    TenantReader(m): TenantReader,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    read(&host, &m.tenant, query?.0).await
}

pub(super) async fn verify_tenant(State(host): Host, TenantReader(m): TenantReader) -> Result<Json<Value>, ApiError> {
    verify(&host, &m.tenant).await
}

pub(super) async fn read_host(
    State(host): Host,
    _: Operator,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    read(&host, HOST_CHAIN, query?.0).await
}

pub(super) async fn verify_host(State(host): Host, _: Operator) -> Result<Json<Value>, ApiError> {
    verify(&host, HOST_CHAIN).await
}
