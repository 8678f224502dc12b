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
use serde_json::json;

use super::auth::{Operator, TenantAdmin, TenantReader};
use super::ApiError;
use crate::Airlock;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PutIssuer {
    tenant: Option<String>,
    issuer: String,
    audience: String,
    jwks_url: String,
    subject_claim: Option<String>,
}

/// `PUT /v1/identity/issuers`: the external issuer now trusted.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct IssuerSaved {
    issuer: airlock_identity::ExternalIssuer,
}

pub(super) async fn put_issuer(
    State(host): State<Arc<Airlock>>,
    TenantAdmin(m): TenantAdmin,
    body: Result<Json<PutIssuer>, JsonRejection>,
) -> Result<Json<IssuerSaved>, ApiError> {
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
    Ok(Json(IssuerSaved { issuer: cfg }))
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(super) struct IssuerQuery {
    issuer: Option<String>,
}

/// `GET /v1/identity/issuers`: the tenant's external token issuers.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct IssuerList {
    issuers: Vec<airlock_identity::ExternalIssuer>,
}

pub(super) async fn list_issuers(
    State(host): State<Arc<Airlock>>,
    TenantReader(m): TenantReader,
) -> Result<Json<IssuerList>, ApiError> {
    let issuers = host.identity.list_external_issuers(&m.tenant).await?;
    Ok(Json(IssuerList { issuers }))
}

/// `DELETE /v1/identity/issuers`: the external issuer no longer trusted.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct IssuerDeleted {
    /// The issuer (`iss`).
    deleted: String,
}

pub(super) async fn delete_issuer(
    State(host): State<Arc<Airlock>>,
    TenantAdmin(m): TenantAdmin,
    query: Result<Query<IssuerQuery>, QueryRejection>,
) -> Result<Json<IssuerDeleted>, ApiError> {
    let Query(q) = query?;
    let issuer = q.issuer.ok_or_else(|| ApiError::bad_request("`issuer` is required"))?;
    if !host.identity.delete_external_issuer(&m.tenant, &issuer).await? {
        return Err(ApiError::not_found(format!("no external issuer `{issuer}` in this tenant")));
    }
    host.audit.record(m.event("identity.issuer.delete", "ok", "", json!({ "issuer": issuer })));
    Ok(Json(IssuerDeleted { deleted: issuer }))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct MapSubject {
    tenant: Option<String>,
    issuer: String,
    subject: String,
    agent: String,
}

/// `PUT /v1/identity/subjects`: the external subject mapped to an agent.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct SubjectMapped {
    /// The external subject.
    mapped: String,
    /// The agent's name it now acts as.
    agent: String,
}

pub(super) async fn map_subject(
    State(host): State<Arc<Airlock>>,
    TenantAdmin(m): TenantAdmin,
    body: Result<Json<MapSubject>, JsonRejection>,
) -> Result<Json<SubjectMapped>, ApiError> {
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
    Ok(Json(SubjectMapped { mapped: body.subject, agent: body.agent }))
}

/// `POST /v1/identity/rotate-key`: the host's new token signing key.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct KeyRotated {
    /// The new signing key's id (`kid`); tokens signed by the old one keep verifying until they expire.
    active_kid: String,
}

/// `POST /v1/identity/rotate-key` (operator): the signing key is the host's, for every tenant.
pub(super) async fn rotate_key(
    State(host): State<Arc<Airlock>>,
    operator: Operator,
) -> Result<Json<KeyRotated>, ApiError> {
    let kid = host.identity.rotate_key().await?;
    host.audit.record(operator.event("identity.rotate_key", "ok", "", json!({ "kid": kid })));
    Ok(Json(KeyRotated { active_kid: kid }))
}
