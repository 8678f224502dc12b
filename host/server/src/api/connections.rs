//! The tenant's credentials (admins write, auditors list metadata; secrets never leave):
//!
//! - `GET /v1/connections`, `PUT|DELETE /v1/connections/{name}` (`?agent=` for an agent's
//!   namespace), `POST /v1/connections/{name}/secret` (rotate the secret, keep the rest);
//! - `POST /v1/vault/rotate-tenant-key`: a new data key for the tenant;
//! - `POST /v1/vault/rotate-master-key` (the operator's): re-seal every tenant's data keys.

use std::sync::Arc;

use airlock_vault::{Connection, ConnectionKind, Placement};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use super::auth::{Operator, TenantAdmin, TenantReader};
use super::ApiError;
use crate::Airlock;

type Host = State<Arc<Airlock>>;

#[derive(Deserialize)]
pub(super) struct PutConnection {
    tenant: Option<String>,
    /// Default: the slot's kind when filling a slot, else `bearer`.
    #[serde(default)]
    kind: Option<ConnectionKind>,
    #[serde(default)]
    placement: Option<Placement>,
    #[serde(default)]
    base_url: Option<String>,
    /// Required, except when filling a slot: then the hosts its package declared.
    #[serde(default)]
    allowed_hosts: Option<Vec<String>>,
    #[serde(default)]
    requires_grant: bool,
    /// For the oauth2 kinds: `{"token_url", "client_id", "scope"}`.
    #[serde(default)]
    oauth: Option<airlock_vault::OAuthConfig>,
    #[serde(default)]
    allow_private_network: bool,
    /// Let `vault.token` and the token exchange hand out this OAuth2 connection's access token.
    #[serde(default)]
    expose_token: bool,
    /// Put the connection in this agent's private namespace (`AGENT/NAME`) instead of the tenant's.
    #[serde(default)]
    agent: Option<String>,
    /// For the oauth2 kinds, JSON: `{"refresh_token", "client_secret"}`.
    secret: String,
    /// Filling a slot an installed package declared: send the credential to hosts the package
    /// did not declare (a test stand-in, a regional endpoint). Refused without it.
    #[serde(default)]
    allow_undeclared_hosts: bool,
}

/// `?agent=`: a connection in the tenant's namespace or in one agent's.
#[derive(Deserialize)]
pub(super) struct ConnectionQuery {
    agent: Option<String>,
}

/// The stored name of connection `name`, in `agent`'s namespace when one is given.
fn qualified(agent: Option<&str>, name: &str) -> String {
    match agent {
        Some(agent) => Connection::in_namespace(agent, name),
        None => name.to_string(),
    }
}

pub(super) async fn put(
    State(host): Host,
    TenantAdmin(m): TenantAdmin,
    Path(name): Path<String>,
    body: Result<Json<PutConnection>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body?;
    let tenant = m.scope(body.tenant.as_deref())?;
    let secret = Zeroizing::new(body.secret);
    let name = qualified(body.agent.as_deref(), &name);
    // Filling a slot an installed package declared: what the admin leaves out comes from it.
    let slot = host.vault.slot(tenant, &name).await?;
    let required = |what: &str| {
        ApiError::bad_request(format!("`{what}` is required (only a slot an installed package declared supplies it)"))
    };
    let allowed_hosts = match (body.allowed_hosts, &slot) {
        (Some(hosts), _) => hosts,
        (None, Some(slot)) => slot.allowed_hosts.clone(),
        (None, None) => return Err(required("allowed_hosts")),
    };
    let conn = Connection {
        name: name.clone(),
        kind: body.kind.or(slot.as_ref().map(|s| s.kind)).unwrap_or(ConnectionKind::Bearer),
        placement: body.placement,
        base_url: body
            .base_url
            .or_else(|| slot.as_ref().and_then(|_| allowed_hosts.first().map(|h| format!("https://{h}")))),
        requires_grant: body.requires_grant,
        oauth: body.oauth.or_else(|| slot.as_ref().and_then(|s| s.oauth.clone())),
        allow_private_network: body.allow_private_network,
        expose_token: body.expose_token,
        allowed_hosts,
    };
    // A slot's declared hosts are what the tenant consented to at install: going elsewhere is
    // the admin's explicit choice, and audited as such.
    let mut undeclared: Vec<String> = Vec::new();
    if let Some(slot) = &slot {
        undeclared = conn.allowed_hosts.iter().filter(|h| !slot.allowed_hosts.contains(h)).cloned().collect();
        // The OAuth client's secret and refresh token go to the token endpoint: another one
        // than the package declared is a host it did not declare either.
        if let Some(asked) = &conn.oauth {
            if slot.oauth.as_ref().map(|o| &o.token_url) != Some(&asked.token_url) {
                undeclared.push(asked.token_url.clone());
            }
        }
        if !undeclared.is_empty() && !body.allow_undeclared_hosts {
            return Err(ApiError::bad_request(format!(
                "`{name}` is a slot whose package declared the hosts {}; {} not among them: send `\"allow_undeclared_hosts\": true` (CLI `--allow-undeclared-host`) to send the credential there anyway",
                slot.allowed_hosts.join(", "),
                undeclared.join(", ")
            )));
        }
    }
    host.vault.put(tenant, &conn, secret).await?;
    host.audit.record(m.event(
        "connection.put",
        "ok",
        "",
        json!({ "connection": name, "hosts": conn.allowed_hosts, "expose_token": conn.expose_token,
                "undeclared_hosts": undeclared }),
    ));
    Ok(Json(json!({ "connection": conn })))
}

#[derive(Deserialize)]
pub(super) struct RotateSecret {
    tenant: Option<String>,
    #[serde(default)]
    agent: Option<String>,
    secret: String,
}

/// `POST /v1/connections/{name}/secret`: replaces the secret, keeping everything else.
pub(super) async fn rotate_secret(
    State(host): Host,
    TenantAdmin(m): TenantAdmin,
    Path(name): Path<String>,
    body: Result<Json<RotateSecret>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body?;
    let tenant = m.scope(body.tenant.as_deref())?;
    let name = qualified(body.agent.as_deref(), &name);
    let conn = host.vault.get(tenant, &name).await?;
    host.vault.put(tenant, &conn, Zeroizing::new(body.secret)).await?;
    host.audit.record(m.event("connection.rotate", "ok", "", json!({ "connection": name })));
    Ok(Json(json!({ "rotated": name })))
}

pub(super) async fn list(State(host): Host, TenantReader(m): TenantReader) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "connections": host.vault.list(&m.tenant).await? })))
}

pub(super) async fn delete(
    State(host): Host,
    TenantAdmin(m): TenantAdmin,
    Path(name): Path<String>,
    query: Result<Query<ConnectionQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query?;
    let tenant = m.tenant.as_str();
    let name = qualified(q.agent.as_deref(), &name);
    if !host.vault.delete(tenant, &name).await? {
        return Err(ApiError::not_found(format!("no connection `{name}` in this tenant")));
    }
    host.audit.record(m.event("connection.delete", "ok", "", json!({ "connection": name })));
    Ok(Json(json!({ "deleted": name })))
}

/// `POST /v1/vault/rotate-tenant-key`: a new data key for the tenant; its secrets are re-sealed.
pub(super) async fn rotate_tenant_key(State(host): Host, TenantAdmin(m): TenantAdmin) -> Result<Json<Value>, ApiError> {
    let version = host.vault.rotate_tenant_key(&m.tenant).await?;
    host.audit.record(m.event("vault.rotate_tenant_key", "ok", "", json!({ "version": version })));
    Ok(Json(json!({ "tenant": m.tenant, "data_key_version": version })))
}

#[derive(Deserialize)]
pub(super) struct NewMasterKey {
    /// Base64 of 32 random bytes.
    new_key: String,
}

/// `POST /v1/vault/rotate-master-key`: re-seals every tenant's data keys under a new master key,
/// and writes it to `DATA_DIR/master.key` when that is where the key came from.
pub(super) async fn rotate_master_key(
    State(host): Host,
    operator: Operator,
    body: Result<Json<NewMasterKey>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(b) = body?;
    // One rotation at a time: the staged file is shared.
    static ROTATION: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one = ROTATION.lock().await;
    let new_key =
        airlock_vault::MasterKey::from_base64(&b.new_key).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let from_env = std::env::var("AIRLOCK_MASTER_KEY").is_ok();
    let path = host.data_dir.join("master.key");
    let staged = host.data_dir.join("master.key.new");
    if !from_env {
        // Stage the new key first: if the host stops half-way, the file and the database can be matched up.
        let _ = std::fs::remove_file(&staged);
        airlock_vault::write_private(&staged, b.new_key.trim().as_bytes())
            .map_err(|e| ApiError::internal("staging the new master key", e))?;
    }
    let resealed = host.vault.rotate_master_key(new_key).await?;
    if !from_env {
        std::fs::rename(&staged, &path).map_err(|e| ApiError::internal("installing the new master key", e))?;
        if let Ok(dir) = std::fs::File::open(&host.data_dir) {
            let _ = dir.sync_all();
        }
    }
    host.audit.record(operator.event("vault.rotate_master_key", "ok", "", json!({ "data_keys": resealed })));
    let next =
        if from_env { "set AIRLOCK_MASTER_KEY to the new key before the next start" } else { "written to master.key" };
    Ok(Json(json!({ "data_keys_resealed": resealed, "next": next })))
}
