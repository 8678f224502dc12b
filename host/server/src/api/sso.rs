//! Single sign-on over HTTP ([`crate::signin::sso`]):
//!
//! - `PUT /v1/sso` (admin) `{issuer, client_id, client_secret, subject_claim?}`: set the
//!   tenant's OpenID Connect provider (discovery must answer for that issuer);
//!   `GET /v1/sso` (reader): it, without the secret, and the redirect URI to register there;
//!   `DELETE /v1/sso` (admin);
//! - `GET /signin/sso?tenant=T[&next=/oauth/authorize?...]`: sends the browser to the provider;
//! - `GET /signin/sso/callback?code&state`: back from it: a verified ID token starts a session
//!   and the browser lands on the console (or back on the MCP consent page it came from).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use zeroize::Zeroizing;

use super::auth::{TenantAdmin, TenantReader};
use super::ciba::public_base;
use super::ApiError;
use crate::signin::sso::{redirect_uri, Provider, SsoConfig, SsoError};
use crate::Airlock;

type Host = State<Arc<Airlock>>;

impl From<SsoError> for ApiError {
    fn from(e: SsoError) -> ApiError {
        match e {
            SsoError::Invalid(m) => ApiError::bad_request(m),
            SsoError::NotConfigured(m) => ApiError::not_found(m),
            SsoError::Refused(m) => ApiError::unauthenticated(m),
            SsoError::Provider(m) => ApiError::new(StatusCode::BAD_GATEWAY, "provider_error", m),
            SsoError::Store(e) => ApiError::internal("sso store", e),
        }
    }
}

#[derive(Deserialize, schemars::JsonSchema, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PutSso {
    pub(crate) tenant: Option<String>,
    #[serde(flatten)]
    pub(crate) config: SsoConfig,
    pub(crate) client_secret: String,
}

/// `PUT /v1/sso`: the provider as stored (never its secret), and the redirect URI to register there.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct SsoSaved {
    /// The provider, its endpoints found by discovery.
    sso: Provider,
    /// The redirect URI to register with the provider.
    redirect_uri: String,
}

pub(super) async fn put(
    State(host): Host,
    headers: HeaderMap,
    TenantAdmin(m): TenantAdmin,
    body: Result<Json<PutSso>, JsonRejection>,
) -> Result<Json<SsoSaved>, ApiError> {
    let Json(b) = body?;
    let tenant = m.scope(b.tenant.as_deref())?.to_string();
    let provider = host.sso.put(&tenant, &b.config, Zeroizing::new(b.client_secret)).await?;
    host.audit.record(m.event(
        "sso.put",
        "ok",
        "",
        json!({ "issuer": provider.config.issuer, "client_id": provider.config.client_id }),
    ));
    Ok(Json(SsoSaved { sso: provider, redirect_uri: redirect_uri(&public_base(&host, &headers)?) }))
}

/// `GET /v1/sso`: the tenant's single sign-on provider (never its secret), and the redirect URI
/// to register there.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct SsoSettings {
    /// The provider; null when the tenant has none.
    sso: Option<Provider>,
    /// The redirect URI to register with the provider.
    redirect_uri: String,
}

pub(super) async fn get(
    State(host): Host,
    headers: HeaderMap,
    TenantReader(m): TenantReader,
) -> Result<Json<SsoSettings>, ApiError> {
    let provider = host.sso.get(&m.tenant).await?;
    Ok(Json(SsoSettings { sso: provider, redirect_uri: redirect_uri(&public_base(&host, &headers)?) }))
}

/// `DELETE /v1/sso`: the provider removed.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct SsoDeleted {
    /// Always `true`.
    deleted: bool,
}

pub(super) async fn delete(State(host): Host, TenantAdmin(m): TenantAdmin) -> Result<Json<SsoDeleted>, ApiError> {
    if !host.sso.delete(&m.tenant).await? {
        return Err(ApiError::not_found(format!("tenant `{}` has no single sign-on provider", m.tenant)));
    }
    host.audit.record(m.event("sso.delete", "ok", "", json!({})));
    Ok(Json(SsoDeleted { deleted: true }))
}

/// `GET /signin/sso?tenant=T`.
pub(super) async fn start(
    State(host): Host,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let tenant = q.get("tenant").map(String::as_str).unwrap_or(crate::config::DEFAULT_TENANT);
    super::auth::known_tenant(&host, tenant).await.map_err(ApiError::bad_request)?;
    let to = host.sso.start(tenant, &public_base(&host, &headers)?, q.get("next").map(String::as_str)).await?;
    Ok((StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response())
}

/// `GET /signin/sso/callback`.
pub(super) async fn callback(
    State(host): Host,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    if let Some(error) = q.get("error") {
        let said: String = q.get("error_description").map(String::as_str).unwrap_or("").chars().take(200).collect();
        return Err(ApiError::unauthenticated(format!("the provider did not sign you in: {error} {said}")));
    }
    let (Some(code), Some(state)) = (q.get("code"), q.get("state")) else {
        return Err(ApiError::bad_request("the provider's answer has no `code` and `state`"));
    };
    let person = host.sso.finish(&host.identity, state, code).await?;
    let started = host
        .people
        .sessions
        .start(&person.tenant, &person.member, &format!("sso {}", person.issuer))
        .await
        .map_err(|e| ApiError::internal("session store", e))?;
    host.audit.record(airlock_audit::AuditEvent {
        tenant: person.tenant.clone(),
        kind: "session.start".into(),
        outcome: "ok".into(),
        agent: person.member.clone(),
        tool: String::new(),
        detail: json!({ "via": "sso", "issuer": person.issuer }),
    });
    let cookie = host.people.sessions.cookie(&started.secret);
    if person.next != "/console" {
        return Ok(crate::oauth_server::consent::continue_to(&person.next, &cookie));
    }
    Ok((StatusCode::SEE_OTHER, [(header::SET_COOKIE, cookie), (header::LOCATION, person.next)]).into_response())
}
