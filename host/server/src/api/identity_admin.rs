//! The tenant admin's side of identity: external issuers whose tokens agents may present,
//! which external subject is which agent; and the operator's signing-key rotation.
//!
//! - `PUT /v1/identity/issuers` `{issuer, audience, jwks_url, subject_claim?}`: accept
//!   tokens from an external OIDC issuer (Auth0 M2M, any issuer with a JWKS) for this tenant;
//! - `GET /v1/identity/issuers`, `DELETE /v1/identity/issuers?issuer=`;
//! - `PUT /v1/identity/subjects` `{issuer, subject, agent}`: that issuer's subject acts
//!   as that installed agent (an unmapped subject is refused);
//! - `POST /v1/identity/rotate-key`: a new signing key; tokens signed by the old one keep
//!   verifying until they expire.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{Operator, TenantAdmin, TenantReader};
use super::ApiError;
use crate::Airlock;

#[derive(Deserialize, schemars::JsonSchema)]
pub(super) struct PutIssuer {
    tenant: Option<String>,
    issuer: String,
    audience: String,
    jwks_url: String,
    subject_claim: Option<String>,
}

pub(super) async fn put_issuer(
    State(host): State<Arc<Airlock>>,
    TenantAdmin(m): TenantAdmin,
    body: Result<Json<PutIssuer>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body?;
    let tenant = m.scope(body.tenant.as_deref())?;
    let mut cfg = airlock_identity::ExternalIssuer::new(tenant, &body.issuer, &body.audience, &body.jwks_url);
    if let Some(claim) = body.subject_claim {
        cfg.subject_claim = claim;
    }
    host.identity.put_external_issuer(&cfg).await?;
    host.audit.record(m.event(
        "identity.issuer.put",
        "ok",
        "",
        json!({ "issuer": cfg.issuer, "audience": cfg.audience, "jwks_url": cfg.jwks_url }),
    ));
    Ok(Json(json!({ "issuer": cfg })))
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(super) struct IssuerQuery {
    issuer: Option<String>,
}

pub(super) async fn list_issuers(
    State(host): State<Arc<Airlock>>,
    TenantReader(m): TenantReader,
) -> Result<Json<Value>, ApiError> {
    let issuers = host.identity.list_external_issuers(&m.tenant).await?;
    Ok(Json(json!({ "issuers": issuers })))
}

pub(super) async fn delete_issuer(
    State(host): State<Arc<Airlock>>,
    TenantAdmin(m): TenantAdmin,
    query: Result<Query<IssuerQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query?;
    let issuer = q.issuer.ok_or_else(|| ApiError::bad_request("`issuer` is required"))?;
    if !host.identity.delete_external_issuer(&m.tenant, &issuer).await? {
        return Err(ApiError::not_found(format!("no external issuer `{issuer}` in this tenant")));
    }
    host.audit.record(m.event("identity.issuer.delete", "ok", "", json!({ "issuer": issuer })));
    Ok(Json(json!({ "deleted": issuer })))
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(super) struct MapSubject {
    tenant: Option<String>,
    issuer: String,
    subject: String,
    agent: String,
}

pub(super) async fn map_subject(
    State(host): State<Arc<Airlock>>,
    TenantAdmin(m): TenantAdmin,
    body: Result<Json<MapSubject>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body?;
    let tenant = m.scope(body.tenant.as_deref())?;
    if !host.agents.exists(tenant, &body.agent).await? {
        return Err(ApiError::not_found(format!("no live agent `{}` in this tenant", body.agent)));
    }
    host.identity.map_external_subject(tenant, &body.issuer, &body.subject, &body.agent).await?;
    host.audit.record(m.event(
        "identity.subject.map",
        "ok",
        "",
        json!({ "issuer": body.issuer, "subject": body.subject, "agent": format!("agent:{}", body.agent) }),
    ));
    Ok(Json(json!({ "mapped": body.subject, "agent": body.agent })))
}

/// `POST /v1/identity/rotate-key` (operator): the signing key is the host's, for every tenant.
pub(super) async fn rotate_key(State(host): State<Arc<Airlock>>, operator: Operator) -> Result<Json<Value>, ApiError> {
    let kid = host.identity.rotate_key().await?;
    host.audit.record(operator.event("identity.rotate_key", "ok", "", json!({ "kid": kid })));
    Ok(Json(json!({ "active_kid": kid })))
}
