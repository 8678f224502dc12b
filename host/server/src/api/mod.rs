//! The HTTP API.
//!
//! - `GET /healthz`: liveness, no authentication;
//! - `/oauth/token`, `/.well-known/jwks.json`: agent tokens (JWT), delegation, Token Vault exchange;
//! - `/v1/tools...`: for agents, with the agent's bearer token (headers `Airlock-Grant` to spend
//!   an approval, `Airlock-Run` for a step of a run);
//! - `POST /v1/approvals`, `GET /v1/approvals/{id}/wait`, `POST /v1/calls/{id}/resume`,
//!   `/v1/runs...`: for agents too ([`runs`]);
//! - everything else under `/v1`: for the tenant admin, with the admin token;
//! - `/v1/marketplace/...`: install, upgrade and uninstall agent packages, the catalog, trusted
//!   publishers ([`marketplace`]);
//! - `GET /v1/events`: the tenant's audit events live, as Server-Sent Events (admin token);
//! - `/mcp`: the Model Context Protocol (Streamable HTTP) for agents, with the agent's bearer token;
//! - `/stores/...`: the OpenFGA API (each store a tenant), with the admin token;
//! - `/ciba/...`, `/bc-authorize`, `/oauth/token`, `/.well-known/openid-configuration`: OpenID
//!   CIBA, with client credentials (OAuth errors there); `/v1/ciba/...` its admin API.
//!
//! Errors are JSON bodies `{"code": "...", "message": "..."}` with a stable
//! `code`; internals (SQL, file paths) stay in the server log.

mod admin;
pub(crate) mod agent;
pub(crate) mod ciba;
mod error;
mod events;
mod identity_admin;
mod marketplace;
mod oauth;
mod openfga;
mod runs;

use std::sync::Arc;

use axum::http::HeaderMap;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};

pub use error::ApiError;

use crate::Airlock;

/// The router over a host.
pub fn router(host: Arc<Airlock>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(serde_json::json!({ "status": "ok" })) }))
        .route("/oauth/token", post(oauth::token))
        .route("/.well-known/jwks.json", get(oauth::jwks))
        .route("/v1/tools", get(agent::list_tools))
        .route("/v1/tools/{tool}/call", post(agent::call_tool))
        .route("/v1/components", get(admin::list_components))
        .route("/v1/components/{name}", post(admin::add_component))
        .route("/v1/tuples", get(admin::read_tuples).post(admin::write_tuples))
        .route("/v1/authorization-model", get(admin::read_model).put(admin::write_model))
        .route("/v1/agents", post(admin::create_agent))
        .route("/v1/agents/{name}", delete(admin::revoke_agent))
        .route("/v1/connections", get(admin::list_connections))
        .route("/v1/connections/{name}", put(admin::put_connection).delete(admin::delete_connection))
        .route("/v1/connections/{name}/secret", post(admin::rotate_connection_secret))
        .route("/v1/vault/rotate-tenant-key", post(admin::rotate_tenant_key))
        .route("/v1/vault/rotate-master-key", post(admin::rotate_master_key))
        .route("/v1/approvals", get(admin::list_approvals).post(runs::request_approval))
        .route("/v1/approvals/{id}", get(admin::get_approval))
        .route("/v1/approvals/{id}/wait", get(runs::wait_approval))
        .route("/v1/calls/{call_id}/resume", post(runs::resume_call))
        .route("/v1/runs", post(runs::start_run))
        .route("/v1/runs/{id}", get(runs::get_run))
        .route("/v1/runs/{id}/finish", post(runs::finish_run))
        .route("/v1/policies", get(runs::list_policies).post(runs::put_policy))
        .route("/v1/policies/{tool}", delete(runs::delete_policy))
        .route("/v1/approvals/{id}/decision", post(admin::decide_approval))
        .route("/v1/audit", get(admin::read_audit))
        .route("/v1/audit/verify", get(admin::verify_audit))
        .route("/v1/events", get(events::stream_events))
        .route(
            "/v1/identity/issuers",
            get(identity_admin::list_issuers).put(identity_admin::put_issuer).delete(identity_admin::delete_issuer),
        )
        .route("/v1/identity/subjects", put(identity_admin::map_subject))
        .route("/v1/identity/rotate-key", post(identity_admin::rotate_key))
        .route("/v1/marketplace/catalog", get(marketplace::catalog_list))
        .route("/v1/marketplace/installed", get(marketplace::installed))
        .route("/v1/marketplace/installed/{agent}", delete(marketplace::uninstall))
        .route("/v1/marketplace/install", post(marketplace::install))
        .route("/v1/marketplace/upgrade", post(marketplace::upgrade))
        .route("/v1/marketplace/publishers", get(marketplace::publishers).post(marketplace::trust_publisher))
        .route("/v1/marketplace/publishers/{publisher}/{key_id}", delete(marketplace::distrust_publisher))
        .merge(openfga::routes())
        .merge(ciba::routes())
        .merge(crate::mcp::http::routes(host.clone(), &host.mcp_allowed_hosts))
        .layer(axum::extract::DefaultBodyLimit::max(32 << 20))
        .with_state(host)
}

/// The bearer token of a request, if it has one.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
}
