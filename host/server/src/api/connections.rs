//! The tenant's credentials (admins write, auditors list metadata; secrets never leave):
//!
//! - `GET /v1/connections`, `PUT|DELETE /v1/connections/{name}` (`?agent=` for an agent's
//!   namespace), `POST /v1/connections/{name}/secret` (rotate the secret, keep the rest);
//! - `POST /v1/connections/{name}/connect[?agent=]`: Connect an `oauth2_refresh` connection
//!   ([`crate::connect`]): the provider's authorization URL to send the browser to;
//!   `GET /oauth/connect/callback` (public: the state is the authority): back from it, the
//!   refresh token kept, audited (`connection.connected`), the browser sent to the console;
//! - `POST /v1/vault/rotate-tenant-key`: a new data key for the tenant;
//! - `POST /v1/vault/rotate-master-key` (the operator's): re-seal every tenant's data keys.

use std::collections::HashMap;
use std::sync::Arc;

use airlock_audit::AuditEvent;
use airlock_vault::{Connection, ConnectionKind, Placement};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use super::auth::{Operator, TenantAdmin, TenantReader};
use super::ApiError;
use crate::Airlock;

type Host = State<Arc<Airlock>>;

#[derive(Deserialize, schemars::JsonSchema, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PutConnection {
    pub(crate) tenant: Option<String>,
    /// Default: the slot's kind when filling a slot, else `bearer`.
    #[serde(default)]
    pub(crate) kind: Option<ConnectionKind>,
    #[serde(default)]
    pub(crate) placement: Option<Placement>,
    #[serde(default)]
    pub(crate) base_url: Option<String>,
    /// Required, except when filling a slot: then the hosts its package declared.
    #[serde(default)]
    pub(crate) allowed_hosts: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) requires_grant: bool,
    /// For the oauth2 kinds: `{"token_url", "client_id", "scope"}`.
    #[serde(default)]
    pub(crate) oauth: Option<airlock_vault::OAuthConfig>,
    #[serde(default)]
    pub(crate) allow_private_network: bool,
    /// Let `vault.token` and the token exchange hand out this OAuth2 connection's access token.
    #[serde(default)]
    pub(crate) expose_token: bool,
    /// Put the connection in this agent's private namespace (`AGENT/NAME`) instead of the tenant's.
    #[serde(default)]
    pub(crate) agent: Option<String>,
    /// For the oauth2 kinds, JSON: `{"refresh_token", "client_secret"}`.
    pub(crate) secret: String,
    /// Filling a slot an installed package declared: send the credential to hosts the package
    /// did not declare (a test stand-in, a regional endpoint). Refused without it.
    #[serde(default)]
    pub(crate) allow_undeclared_hosts: bool,
}

/// `?agent=`: a connection in the tenant's namespace or in one agent's.
#[derive(Deserialize, schemars::JsonSchema)]
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

/// `PUT /v1/connections/{name}`: the connection as stored (never its secret).
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct ConnectionSaved {
    connection: Connection,
}

pub(super) async fn put(
    State(host): Host,
    TenantAdmin(m): TenantAdmin,
    Path(name): Path<String>,
    query: Result<Query<ConnectionQuery>, QueryRejection>,
    body: Result<Json<PutConnection>, JsonRejection>,
) -> Result<Json<ConnectionSaved>, ApiError> {
    let Query(q) = query?;
    let Json(body) = body?;
    let tenant = m.scope(body.tenant.as_deref())?;
    let secret = Zeroizing::new(body.secret);
    // The agent's namespace, named in the body or (as the console does) in `?agent=`.
    let name = qualified(body.agent.as_deref().or(q.agent.as_deref()), &name);
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
        state: None,
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
    Ok(Json(ConnectionSaved { connection: conn }))
}

#[derive(Deserialize, schemars::JsonSchema, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RotateSecret {
    pub(crate) tenant: Option<String>,
    #[serde(default)]
    pub(crate) agent: Option<String>,
    pub(crate) secret: String,
}

/// `POST /v1/connections/{name}/secret`: the connection whose secret was replaced.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct SecretRotated {
    /// The connection's stored name (`AGENT/NAME` in an agent's namespace).
    rotated: String,
}

/// `POST /v1/connections/{name}/secret`: replaces the secret, keeping everything else.
pub(super) async fn rotate_secret(
    State(host): Host,
    TenantAdmin(m): TenantAdmin,
    Path(name): Path<String>,
    query: Result<Query<ConnectionQuery>, QueryRejection>,
    body: Result<Json<RotateSecret>, JsonRejection>,
) -> Result<Json<SecretRotated>, ApiError> {
    let Query(q) = query?;
    let Json(body) = body?;
    let tenant = m.scope(body.tenant.as_deref())?;
    let name = qualified(body.agent.as_deref().or(q.agent.as_deref()), &name);
    let conn = host.vault.get(tenant, &name).await?;
    host.vault.put(tenant, &conn, Zeroizing::new(body.secret)).await?;
    host.audit.record(m.event("connection.rotate", "ok", "", json!({ "connection": name })));
    Ok(Json(SecretRotated { rotated: name }))
}

/// `POST /v1/connections/{name}/connect`: where to send the browser to Connect the connection.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct ConnectStarted {
    /// The provider's authorization URL, with this Connect's state: send the browser there.
    authorize_url: String,
    /// Where the provider sends the browser back (`BASE/oauth/connect/callback`): register it
    /// with the provider.
    redirect_uri: String,
}

/// `POST /v1/connections/{name}/connect[?agent=]`: starts Connect for an `oauth2_refresh`
/// connection with an `oauth.authorize_url`; answers where to send the browser.
pub(super) async fn connect(
    State(host): Host,
    headers: HeaderMap,
    TenantAdmin(m): TenantAdmin,
    Path(name): Path<String>,
    query: Result<Query<ConnectionQuery>, QueryRejection>,
) -> Result<Json<ConnectStarted>, ApiError> {
    let Query(q) = query?;
    let name = qualified(q.agent.as_deref(), &name);
    let base = super::ciba::public_base(&host, &headers)?;
    let authorize_url = crate::connect::start(&host, &m.tenant, &name, &m.subject, &base).await?;
    host.audit.record(m.event("connection.connect", "started", "", json!({ "connection": name })));
    Ok(Json(ConnectStarted { authorize_url, redirect_uri: crate::connect::redirect_uri(&base) }))
}

/// Where the browser lands after Connect: the Connections page, told what happened in the
/// fragment (`#connected=NAME`, `#refused=NAME&error=CODE`).
fn to_console(fragment: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, format!("/console/connections#{fragment}"))]).into_response()
}

fn encoded(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// `GET /oauth/connect/callback?code=&state=` (or `?error=&state=`): the provider's answer.
/// The state says which tenant, connection and member this is; it is spent either way.
pub(super) async fn connect_callback(
    State(host): Host,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let state = q.get("state").map(String::as_str).unwrap_or_default();
    let event = |b: &crate::signin::flow::Binding, kind: &str, outcome: &str, detail: Value| AuditEvent {
        tenant: b.tenant.clone(),
        kind: kind.into(),
        outcome: outcome.into(),
        agent: b.member.clone(),
        tool: String::new(),
        detail,
    };
    if let Some(error) = q.get("error") {
        let error: String = error.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(64).collect();
        let said: String = q.get("error_description").map(String::as_str).unwrap_or("").chars().take(200).collect();
        let flow = crate::connect::take(&host, state).await.map_err(|e| match e {
            crate::connect::ConnectError::UnknownState(m) => {
                ApiError::bad_request(format!("the provider did not connect ({error} {said}); {m}"))
            }
            other => other.into(),
        })?;
        let b = &flow.binding;
        host.audit.record(event(b, "connection.connect", "refused", json!({ "connection": b.target, "error": error })));
        return Ok(to_console(&format!("refused={}&error={error}", encoded(&b.target))));
    }
    let Some(code) = q.get("code") else {
        return Err(ApiError::bad_request("the provider's answer has no `code` (nor an `error`)"));
    };
    let flow = crate::connect::take(&host, state).await?;
    let b = &flow.binding;
    // The person who pressed Connect must still be an admin now that the provider answers.
    if b.member.starts_with("user:") && !super::auth::Member::person(&b.tenant, &b.member).holds(&host, "admin").await {
        let e = ApiError::forbidden(format!(
            "`{}` started this Connect but is no longer an admin of tenant `{}`: nothing was stored",
            b.member, b.tenant
        ));
        host.audit.record(event(
            b,
            "connection.connect",
            "denied",
            json!({ "connection": b.target, "error": e.message }),
        ));
        return Err(e);
    }
    if let Err(e) = crate::connect::redeem(&host, &flow, code).await {
        let e = ApiError::from(e);
        host.audit.record(event(
            b,
            "connection.connect",
            "failed",
            json!({ "connection": b.target, "error": e.message }),
        ));
        return Err(e);
    }
    host.audit.record(event(b, "connection.connected", "ok", json!({ "connection": b.target })));
    Ok(to_console(&format!("connected={}", encoded(&b.target))))
}

/// `GET /v1/connections`: the tenant's vault connections, never their secrets.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct ConnectionList {
    connections: Vec<Connection>,
}

pub(super) async fn list(State(host): Host, TenantReader(m): TenantReader) -> Result<Json<ConnectionList>, ApiError> {
    Ok(Json(ConnectionList { connections: host.vault.list(&m.tenant).await? }))
}

/// `DELETE /v1/connections/{name}`: the connection deleted.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct ConnectionDeleted {
    /// The connection's stored name (`AGENT/NAME` in an agent's namespace).
    deleted: String,
}

pub(super) async fn delete(
    State(host): Host,
    TenantAdmin(m): TenantAdmin,
    Path(name): Path<String>,
    query: Result<Query<ConnectionQuery>, QueryRejection>,
) -> Result<Json<ConnectionDeleted>, ApiError> {
    let Query(q) = query?;
    let tenant = m.tenant.as_str();
    let name = qualified(q.agent.as_deref(), &name);
    if !host.vault.delete(tenant, &name).await? {
        return Err(ApiError::not_found(format!("no connection `{name}` in this tenant")));
    }
    host.audit.record(m.event("connection.delete", "ok", "", json!({ "connection": name })));
    Ok(Json(ConnectionDeleted { deleted: name }))
}

/// `POST /v1/vault/rotate-tenant-key`: the tenant's new data key.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct TenantKeyRotated {
    tenant: String,
    /// The version of the tenant's data key now in use.
    data_key_version: i64,
}

/// `POST /v1/vault/rotate-tenant-key`: a new data key for the tenant; its secrets are re-sealed.
pub(super) async fn rotate_tenant_key(
    State(host): Host,
    TenantAdmin(m): TenantAdmin,
) -> Result<Json<TenantKeyRotated>, ApiError> {
    let version = host.vault.rotate_tenant_key(&m.tenant).await?;
    host.audit.record(m.event("vault.rotate_tenant_key", "ok", "", json!({ "version": version })));
    Ok(Json(TenantKeyRotated { tenant: m.tenant, data_key_version: version }))
}

#[derive(Deserialize, schemars::JsonSchema, serde::Serialize)]
pub(crate) struct NewMasterKey {
    /// Base64 of 32 random bytes.
    pub(crate) new_key: String,
}

/// `POST /v1/vault/rotate-master-key`: the data keys re-sealed under the new master key.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct MasterKeyRotated {
    /// How many tenant data keys were re-sealed.
    data_keys_resealed: usize,
    /// What the operator does next: `written to master.key`, or set `AIRLOCK_MASTER_KEY` to
    /// the new key before the next start.
    next: &'static str,
}

/// `POST /v1/vault/rotate-master-key`: re-seals every tenant's data keys under a new master key,
/// and writes it to `DATA_DIR/master.key` when that is where the key came from.
pub(super) async fn rotate_master_key(
    State(host): Host,
    operator: Operator,
    body: Result<Json<NewMasterKey>, JsonRejection>,
) -> Result<Json<MasterKeyRotated>, ApiError> {
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
    Ok(Json(MasterKeyRotated { data_keys_resealed: resealed, next }))
}
