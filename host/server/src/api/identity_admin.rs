//! The tenant admin's side of identity: external issuers whose tokens agents may present,
//! which external subject is which agent, and signing-key rotation.
//!
//! - `PUT /v1/identity/issuers` `{tenant?, issuer, audience, jwks_url, subject_claim?}`: accept
//!   tokens from an external OIDC issuer (Auth0 M2M, any issuer with a JWKS) for this tenant;
//! - `GET /v1/identity/issuers?tenant=`, `DELETE /v1/identity/issuers?tenant=&issuer=`;
//! - `PUT /v1/identity/subjects` `{tenant?, issuer, subject, agent}`: that issuer's subject acts
//!   as that installed agent (an unmapped subject is refused);
//! - `POST /v1/identity/rotate-key`: a new signing key; tokens signed by the old one keep
//!   verifying until they expire.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::admin::AdminQueryTenant;
use super::admin::{admin_event, require_admin};
use super::ApiError;
use crate::config::DEFAULT_TENANT;
use crate::Airlock;

fn identity_error(e: airlock_identity::IdentityError) -> ApiError {
    use airlock_identity::IdentityError as E;
    match e {
        E::BadExternalIssuer(_) | E::IssuerTaken { .. } | E::Empty { .. } | E::IssuerNotConfigured { .. } => {
            ApiError::bad_request(e.to_string())
        }
        other => ApiError::internal("identity", other),
    }
}

#[derive(Deserialize)]
pub(super) struct PutIssuer {
    tenant: Option<String>,
    issuer: String,
    audience: String,
    jwks_url: String,
    subject_claim: Option<String>,
}

pub(super) async fn put_issuer(
    State(host): State<Arc<Airlock>>,
    AdminQueryTenant(query_tenant): AdminQueryTenant,
    body: Result<Json<PutIssuer>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body?;
    let tenant = super::admin::body_or_query_tenant(body.tenant.as_deref(), query_tenant.as_deref())?;
    let mut cfg = airlock_identity::ExternalIssuer::new(tenant, &body.issuer, &body.audience, &body.jwks_url);
    if let Some(claim) = body.subject_claim {
        cfg.subject_claim = claim;
    }
    host.identity.put_external_issuer(&cfg).await.map_err(identity_error)?;
    host.audit.record(admin_event(
        tenant,
        "identity.issuer.put",
        "ok",
        "",
        json!({ "issuer": cfg.issuer,
        "audience": cfg.audience, "jwks_url": cfg.jwks_url }),
    ));
    Ok(Json(json!({ "issuer": cfg })))
}

#[derive(Deserialize)]
pub(super) struct IssuerQuery {
    tenant: Option<String>,
    issuer: Option<String>,
}

pub(super) async fn list_issuers(
    State(host): State<Arc<Airlock>>,
    headers: HeaderMap,
    query: Result<Query<IssuerQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    require_admin(&host, &headers)?;
    let Query(q) = query?;
    let tenant = q.tenant.as_deref().unwrap_or(DEFAULT_TENANT);
    let issuers = host.identity.list_external_issuers(tenant).await.map_err(identity_error)?;
    Ok(Json(json!({ "issuers": issuers })))
}

pub(super) async fn delete_issuer(
    State(host): State<Arc<Airlock>>,
    headers: HeaderMap,
    query: Result<Query<IssuerQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    require_admin(&host, &headers)?;
    let Query(q) = query?;
    let tenant = q.tenant.as_deref().unwrap_or(DEFAULT_TENANT);
    let issuer = q.issuer.ok_or_else(|| ApiError::bad_request("`issuer` is required"))?;
    if !host.identity.delete_external_issuer(tenant, &issuer).await.map_err(identity_error)? {
        return Err(ApiError::not_found(format!("no external issuer `{issuer}` in this tenant")));
    }
    host.audit.record(admin_event(tenant, "identity.issuer.delete", "ok", "", json!({ "issuer": issuer })));
    Ok(Json(json!({ "deleted": issuer })))
}

#[derive(Deserialize)]
pub(super) struct MapSubject {
    tenant: Option<String>,
    issuer: String,
    subject: String,
    agent: String,
}

pub(super) async fn map_subject(
    State(host): State<Arc<Airlock>>,
    AdminQueryTenant(query_tenant): AdminQueryTenant,
    body: Result<Json<MapSubject>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body?;
    let tenant = super::admin::body_or_query_tenant(body.tenant.as_deref(), query_tenant.as_deref())?;
    if !host.agents.exists(tenant, &body.agent).await.map_err(|e| ApiError::internal("agent store", e))? {
        return Err(ApiError::not_found(format!("no live agent `{}` in this tenant", body.agent)));
    }
    host.identity
        .map_external_subject(tenant, &body.issuer, &body.subject, &body.agent)
        .await
        .map_err(identity_error)?;
    host.audit.record(admin_event(
        tenant,
        "identity.subject.map",
        "ok",
        "",
        json!({ "issuer": body.issuer,
        "subject": body.subject, "agent": format!("agent:{}", body.agent) }),
    ));
    Ok(Json(json!({ "mapped": body.subject, "agent": body.agent })))
}

pub(super) async fn rotate_key(State(host): State<Arc<Airlock>>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    require_admin(&host, &headers)?;
    let kid = host.identity.rotate_key().await.map_err(identity_error)?;
    host.audit.record(admin_event(DEFAULT_TENANT, "identity.rotate_key", "ok", "", json!({ "kid": kid })));
    Ok(Json(json!({ "active_kid": kid })))
}
