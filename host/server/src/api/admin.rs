//! The tenant admin's side: components, tuples, agents, connections, approvals, audit.
//!
//! Every handler first checks the admin token. A request names its tenant in
//! `tenant` (query or body); absent, it is [`DEFAULT_TENANT`].

use std::sync::Arc;

use airlock_approvals::{ApprovalError, Status};
use airlock_audit::AuditEvent;
use airlock_rebac::{RebacError, Tuple};
use airlock_vault::{Connection, ConnectionKind, Placement, VaultError};
use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use super::{bearer, ApiError};
use crate::agents::AgentError;
use crate::app::ComponentError;
use crate::config::DEFAULT_TENANT;
use crate::Airlock;

type Host = State<Arc<Airlock>>;

pub(super) fn require_admin(host: &Airlock, headers: &HeaderMap) -> Result<(), ApiError> {
    match bearer(headers) {
        Some(token) if host.is_admin(token) => Ok(()),
        Some(_) => Err(ApiError::unauthenticated("the bearer token is not the admin token")),
        None => Err(ApiError::unauthenticated(
            "admin token required: send `Authorization: Bearer <token>` (see DATA_DIR/admin.token)",
        )),
    }
}

pub(super) fn admin_event(tenant: &str, kind: &str, outcome: &str, tool: &str, detail: Value) -> AuditEvent {
    AuditEvent {
        tenant: tenant.into(),
        kind: kind.into(),
        outcome: outcome.into(),
        agent: "admin".into(),
        tool: tool.into(),
        detail,
    }
}

/// An admin request's tenant (`?tenant=`, else the default), extracted once the admin token
/// is checked: the prologue every tenant-scoped admin handler needs.
pub(super) struct AdminTenant(pub String);

impl axum::extract::FromRequestParts<Arc<Airlock>> for AdminTenant {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        host: &Arc<Airlock>,
    ) -> Result<AdminTenant, ApiError> {
        require_admin(host, &parts.headers)?;
        let Query(q) = Query::<TenantQuery>::from_request_parts(parts, host).await?;
        Ok(AdminTenant(q.tenant().to_string()))
    }
}

/// The admin check and the raw `?tenant=` (`None` when absent), for handlers whose body may
/// name the tenant too ([`body_or_query_tenant`]).
pub(super) struct AdminQueryTenant(pub Option<String>);

impl axum::extract::FromRequestParts<Arc<Airlock>> for AdminQueryTenant {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        host: &Arc<Airlock>,
    ) -> Result<AdminQueryTenant, ApiError> {
        require_admin(host, &parts.headers)?;
        let Query(q) = Query::<TenantQuery>::from_request_parts(parts, host).await?;
        Ok(AdminQueryTenant(q.tenant))
    }
}

/// The tenant a request with a body names: the body's `tenant` or `?tenant=`, else the
/// default; both given and different is refused rather than one silently winning.
pub(super) fn body_or_query_tenant<'a>(body: Option<&'a str>, query: Option<&'a str>) -> Result<&'a str, ApiError> {
    match (body, query) {
        (Some(b), Some(q)) if b != q => {
            Err(ApiError::bad_request(format!("the body names tenant `{b}` and the query `{q}`: name it once")))
        }
        (Some(t), _) | (None, Some(t)) => Ok(t),
        (None, None) => Ok(DEFAULT_TENANT),
    }
}

#[derive(Deserialize)]
pub(super) struct TenantQuery {
    tenant: Option<String>,
}

impl TenantQuery {
    fn tenant(&self) -> &str {
        self.tenant.as_deref().unwrap_or(DEFAULT_TENANT)
    }
}

// ---- components ----------------------------------------------------------------

pub(super) async fn list_components(State(host): Host, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    require_admin(&host, &headers)?;
    let list: Vec<Value> = host
        .runtime
        .components()
        .iter()
        .map(|c| json!({ "name": c.name, "sha256": c.sha256, "tools": c.tools }))
        .collect();
    Ok(Json(json!({ "components": list })))
}

pub(super) async fn add_component(
    State(host): Host,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    require_admin(&host, &headers)?;
    if body.is_empty() {
        return Err(ApiError::bad_request("send the component's .wasm bytes as the request body"));
    }
    match host.add_component(&name, &body, "admin").await {
        Ok(c) => Ok(Json(json!({ "name": c.name, "sha256": c.sha256, "tools": c.tools }))),
        Err(ComponentError::Add(e)) => {
            host.audit.record(admin_event(
                DEFAULT_TENANT,
                "component.add",
                "refused",
                &name,
                json!({ "reason": e.to_string() }),
            ));
            let code = match e {
                airlock_runtime::AddError::ForbiddenImports(_) => "forbidden_imports",
                _ => "invalid_component",
            };
            Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, e.to_string()))
        }
        Err(ComponentError::Store(e)) => Err(ApiError::internal("storing the component", e)),
    }
}

// ---- tuples ----------------------------------------------------------------------

#[derive(Deserialize)]
pub(super) struct TupleBody {
    tenant: Option<String>,
    #[serde(default)]
    writes: Vec<TupleJson>,
    #[serde(default)]
    deletes: Vec<TupleJson>,
}

/// A tuple in OpenFGA's field names.
#[derive(Deserialize)]
pub(super) struct TupleJson {
    user: String,
    relation: String,
    object: String,
}

/// With an external OpenFGA server, local tuples and models would be written but never read.
fn refuse_when_remote(host: &Airlock) -> Result<(), ApiError> {
    if host.rebac.is_remote() {
        return Err(ApiError::conflict(
            "checks go to the external OpenFGA server: write tuples and models there, not here",
        ));
    }
    Ok(())
}

fn rebac_error(e: RebacError) -> ApiError {
    match e {
        RebacError::InvalidTuple(e) => ApiError::bad_request(e.to_string()),
        RebacError::Engine(e) => ApiError::bad_request(e.to_string()),
        RebacError::InvalidModel(e) => ApiError::new(StatusCode::BAD_REQUEST, "invalid_model", e.to_string()),
        other => ApiError::internal("authorization store", other),
    }
}

// ---- authorization model ---------------------------------------------------------

/// `PUT /v1/authorization-model`: the body is a model in the OpenFGA DSL; it becomes the tenant's active model.
pub(super) async fn write_model(
    State(host): Host,
    headers: HeaderMap,
    query: Result<Query<TenantQuery>, QueryRejection>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    require_admin(&host, &headers)?;
    let Query(q) = query?;
    refuse_when_remote(&host)?;
    let dsl = std::str::from_utf8(&body).map_err(|_| ApiError::bad_request("the model must be UTF-8 DSL text"))?;
    let active = host.rebac.write_model(q.tenant(), dsl).await.map_err(rebac_error)?;
    host.audit.record(admin_event(q.tenant(), "model.write", "ok", "", json!({ "model_id": active.id })));
    Ok(Json(json!({ "authorization_model_id": active.id })))
}

/// `GET /v1/authorization-model`: the tenant's active model, in canonical DSL.
pub(super) async fn read_model(
    State(host): Host,
    headers: HeaderMap,
    query: Result<Query<TenantQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    require_admin(&host, &headers)?;
    let Query(q) = query?;
    let active = host.rebac.model(q.tenant()).ok_or_else(|| {
        ApiError::not_found(
            "this tenant has no authorization model: tuples are checked as written (PUT one to use OpenFGA semantics)",
        )
    })?;
    Ok(Json(json!({ "authorization_model_id": active.id, "dsl": active.model.to_string() })))
}

pub(super) async fn write_tuples(
    State(host): Host,
    AdminQueryTenant(query_tenant): AdminQueryTenant,
    body: Result<Json<TupleBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body?;
    refuse_when_remote(&host)?;
    let tenant = body_or_query_tenant(body.tenant.as_deref(), query_tenant.as_deref())?;
    let convert = |ts: &[TupleJson]| ts.iter().map(|t| Tuple::new(&t.object, &t.relation, &t.user)).collect::<Vec<_>>();
    let (writes, deletes) = (convert(&body.writes), convert(&body.deletes));
    if writes.is_empty() && deletes.is_empty() {
        return Err(ApiError::bad_request("nothing to do: give `writes` and/or `deletes`"));
    }
    for t in writes.iter().chain(&deletes) {
        t.validate().map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    // One transaction: a refused write leaves the deletes undone too.
    let with_conditions: Vec<_> = writes.iter().map(|t| (t.clone(), None)).collect();
    let options = airlock_rebac::writes::WriteOptions { ignore_duplicates: true, ignore_missing: true };
    host.rebac.write_tuples(tenant, &with_conditions, &deletes, options).await.map_err(rebac_error)?;
    host.audit.record(admin_event(tenant, "tuples.write", "ok", "", json!({ "writes": writes, "deletes": deletes })));
    Ok(Json(json!({ "written": writes.len(), "deleted": deletes.len() })))
}

#[derive(Deserialize)]
pub(super) struct ReadTuplesQuery {
    tenant: Option<String>,
    object: Option<String>,
}

pub(super) async fn read_tuples(
    State(host): Host,
    headers: HeaderMap,
    query: Result<Query<ReadTuplesQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    require_admin(&host, &headers)?;
    let Query(q) = query?;
    let tuples = host
        .rebac
        .read(q.tenant.as_deref().unwrap_or(DEFAULT_TENANT), q.object.as_deref())
        .await
        .map_err(rebac_error)?;
    let tuples: Vec<Value> =
        tuples.iter().map(|t| json!({ "user": t.subject, "relation": t.relation, "object": t.object })).collect();
    Ok(Json(json!({ "tuples": tuples })))
}

// ---- agents ----------------------------------------------------------------------

#[derive(Deserialize)]
pub(super) struct NewAgent {
    tenant: Option<String>,
    name: String,
}

fn agent_error(e: AgentError) -> ApiError {
    match e {
        AgentError::BadName(_) => ApiError::bad_request(e.to_string()),
        AgentError::Exists(_) => ApiError::conflict(e.to_string()),
        AgentError::NotFound(_) => ApiError::not_found(e.to_string()),
        AgentError::Store(e) => ApiError::internal("agent store", e),
    }
}

pub(super) async fn create_agent(
    State(host): Host,
    AdminQueryTenant(query_tenant): AdminQueryTenant,
    body: Result<Json<NewAgent>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(body) = body?;
    let tenant = body_or_query_tenant(body.tenant.as_deref(), query_tenant.as_deref())?;
    let token = host.agents.create(tenant, &body.name).await.map_err(agent_error)?;
    host.audit.record(admin_event(
        tenant,
        "agent.create",
        "ok",
        "",
        json!({ "agent": format!("agent:{}", body.name) }),
    ));
    Ok((
        StatusCode::CREATED,
        Json(json!({ "tenant": tenant, "name": body.name, "subject": format!("agent:{}", body.name), "token": token })),
    ))
}

pub(super) async fn revoke_agent(
    State(host): Host,
    Path(name): Path<String>,
    headers: HeaderMap,
    query: Result<Query<TenantQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    require_admin(&host, &headers)?;
    let Query(q) = query?;
    host.agents.revoke(q.tenant(), &name).await.map_err(agent_error)?;
    // Its authority ends with it: issued grants and pending approvals are cancelled.
    let cancelled = host
        .approvals
        .cancel_for_agent(q.tenant(), &format!("agent:{name}"))
        .await
        .map_err(|e| ApiError::internal("approvals", e))?;
    host.audit.record(admin_event(
        q.tenant(),
        "agent.revoke",
        "ok",
        "",
        json!({ "agent": format!("agent:{name}"),
        "cancelled_grants": cancelled.grants, "cancelled_approvals": cancelled.approvals }),
    ));
    Ok(Json(json!({ "revoked": name })))
}

// ---- connections -----------------------------------------------------------------

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

/// `?tenant=&agent=`: a connection in the tenant's namespace or in one agent's.
#[derive(Deserialize)]
pub(super) struct ConnectionQuery {
    tenant: Option<String>,
    agent: Option<String>,
}

/// The stored name of connection `name`, in `agent`'s namespace when one is given.
fn qualified(agent: Option<&str>, name: &str) -> String {
    match agent {
        Some(agent) => Connection::in_namespace(agent, name),
        None => name.to_string(),
    }
}

fn vault_error(e: VaultError) -> ApiError {
    match e {
        VaultError::NotFound(_) => ApiError::not_found(e.to_string()),
        VaultError::InvalidConnection(_) | VaultError::InvalidRequest(_) => ApiError::bad_request(e.to_string()),
        VaultError::ReconnectNeeded { .. } => ApiError::conflict(e.to_string()),
        other => ApiError::internal("vault", other),
    }
}

pub(super) async fn put_connection(
    State(host): Host,
    Path(name): Path<String>,
    AdminQueryTenant(query_tenant): AdminQueryTenant,
    body: Result<Json<PutConnection>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body?;
    let tenant = body_or_query_tenant(body.tenant.as_deref(), query_tenant.as_deref())?;
    let secret = Zeroizing::new(body.secret);
    let name = qualified(body.agent.as_deref(), &name);
    // Filling a slot an installed package declared: what the admin leaves out comes from it.
    let slot = host.vault.slot(tenant, &name).await.map_err(vault_error)?;
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
    host.vault.put(tenant, &conn, secret).await.map_err(vault_error)?;
    host.audit.record(admin_event(
        tenant,
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
pub(super) async fn rotate_connection_secret(
    State(host): Host,
    Path(name): Path<String>,
    AdminQueryTenant(query_tenant): AdminQueryTenant,
    body: Result<Json<RotateSecret>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body?;
    let tenant = body_or_query_tenant(body.tenant.as_deref(), query_tenant.as_deref())?;
    let name = qualified(body.agent.as_deref(), &name);
    let conn = host.vault.get(tenant, &name).await.map_err(vault_error)?;
    host.vault.put(tenant, &conn, Zeroizing::new(body.secret)).await.map_err(vault_error)?;
    host.audit.record(admin_event(tenant, "connection.rotate", "ok", "", json!({ "connection": name })));
    Ok(Json(json!({ "rotated": name })))
}

pub(super) async fn list_connections(
    State(host): Host,
    headers: HeaderMap,
    query: Result<Query<TenantQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    require_admin(&host, &headers)?;
    let Query(q) = query?;
    Ok(Json(json!({ "connections": host.vault.list(q.tenant()).await.map_err(vault_error)? })))
}

pub(super) async fn delete_connection(
    State(host): Host,
    Path(name): Path<String>,
    headers: HeaderMap,
    query: Result<Query<ConnectionQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    require_admin(&host, &headers)?;
    let Query(q) = query?;
    let tenant = q.tenant.as_deref().unwrap_or(DEFAULT_TENANT);
    let name = qualified(q.agent.as_deref(), &name);
    if !host.vault.delete(tenant, &name).await.map_err(vault_error)? {
        return Err(ApiError::not_found(format!("no connection `{name}` in this tenant")));
    }
    host.audit.record(admin_event(tenant, "connection.delete", "ok", "", json!({ "connection": name })));
    Ok(Json(json!({ "deleted": name })))
}

/// `POST /v1/vault/rotate-tenant-key`: a new data key for the tenant; its secrets are re-sealed.
pub(super) async fn rotate_tenant_key(
    State(host): Host,
    headers: HeaderMap,
    query: Result<Query<TenantQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    require_admin(&host, &headers)?;
    let Query(q) = query?;
    let version = host.vault.rotate_tenant_key(q.tenant()).await.map_err(vault_error)?;
    host.audit.record(admin_event(q.tenant(), "vault.rotate_tenant_key", "ok", "", json!({ "version": version })));
    Ok(Json(json!({ "tenant": q.tenant(), "data_key_version": version })))
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
    headers: HeaderMap,
    body: Result<Json<NewMasterKey>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    require_admin(&host, &headers)?;
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
    let resealed = host.vault.rotate_master_key(new_key).await.map_err(vault_error)?;
    if !from_env {
        std::fs::rename(&staged, &path).map_err(|e| ApiError::internal("installing the new master key", e))?;
        if let Ok(dir) = std::fs::File::open(&host.data_dir) {
            let _ = dir.sync_all();
        }
    }
    host.audit.record(admin_event(
        DEFAULT_TENANT,
        "vault.rotate_master_key",
        "ok",
        "",
        json!({ "data_keys": resealed }),
    ));
    let next =
        if from_env { "set AIRLOCK_MASTER_KEY to the new key before the next start" } else { "written to master.key" };
    Ok(Json(json!({ "data_keys_resealed": resealed, "next": next })))
}

// ---- approvals -------------------------------------------------------------------

#[derive(Deserialize)]
pub(super) struct ApprovalsQuery {
    tenant: Option<String>,
    status: Option<Status>,
}

fn approval_error(e: ApprovalError) -> ApiError {
    match e {
        ApprovalError::NotFound(_) => ApiError::not_found(e.to_string()),
        ApprovalError::AlreadyDecided { .. } => ApiError::conflict(e.to_string()),
        ApprovalError::Invalid(_) => ApiError::bad_request(e.to_string()),
        ApprovalError::GrantUnusable(_) => ApiError::forbidden(e.to_string()),
        ApprovalError::Store(e) => ApiError::internal("approval store", e),
    }
}

pub(super) async fn list_approvals(
    State(host): Host,
    headers: HeaderMap,
    query: Result<Query<ApprovalsQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    require_admin(&host, &headers)?;
    let Query(q) = query?;
    let list =
        host.approvals.list(q.tenant.as_deref().unwrap_or(DEFAULT_TENANT), q.status).await.map_err(approval_error)?;
    Ok(Json(json!({ "approvals": list })))
}

pub(super) async fn get_approval(
    State(host): Host,
    Path(id): Path<String>,
    headers: HeaderMap,
    query: Result<Query<TenantQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    require_admin(&host, &headers)?;
    let Query(q) = query?;
    Ok(Json(json!(host.approvals.get(q.tenant(), &id).await.map_err(approval_error)?)))
}

#[derive(Deserialize)]
pub(super) struct Decision {
    tenant: Option<String>,
    /// Who decides, as a subject: `user:carol`.
    approver: String,
    approve: bool,
    reason: Option<String>,
}

/// Records a human's decision. When the request names a role, the approver
/// must hold it on `tenant:TENANT` in the authorization engine; a CIBA request
/// may be decided only by the approver it names (`user:NAME`).
pub(super) async fn decide_approval(
    State(host): Host,
    Path(id): Path<String>,
    AdminQueryTenant(query_tenant): AdminQueryTenant,
    body: Result<Json<Decision>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(d) = body?;
    let tenant = body_or_query_tenant(d.tenant.as_deref(), query_tenant.as_deref())?;
    Tuple::validate_subject(&d.approver).map_err(|_| {
        ApiError::bad_request(format!("approver `{}` must be a subject such as `user:carol`", d.approver))
    })?;
    let pending = host.approvals.get(tenant, &id).await.map_err(approval_error)?;
    // A CIBA request is reserved for the approver it names, whatever roles others hold.
    let ciba_approver = host.ciba.approver_for(tenant, &id).await.map_err(|e| ApiError::internal("CIBA store", e))?;
    if let Some(named) = ciba_approver {
        let decided =
            super::ciba::decide(&host, tenant, &id, &named, &d.approver, d.approve, d.reason.as_deref()).await?;
        return Ok(Json(decided));
    }
    if let Some(role) = &pending.role {
        let holds = host.rebac.check_now(tenant, &d.approver, role, &format!("tenant:{tenant}")).await.unwrap_or(false);
        if !holds {
            host.audit.record(admin_event(
                tenant,
                "approval.decision",
                "refused",
                &pending.tool,
                json!({ "approval_id": id, "approver": d.approver, "reason": format!("approver lacks role `{role}`") }),
            ));
            return Err(ApiError::forbidden(format!(
                "`{}` is not `{role}` on `tenant:{tenant}`: only a {role} may decide this request",
                d.approver
            )));
        }
    }
    let decided = host
        .approvals
        .decide(tenant, &id, &d.approver, d.approve, d.reason.as_deref())
        .await
        .map_err(approval_error)?;
    host.audit.record(admin_event(
        tenant,
        "approval.decision",
        if d.approve { "approved" } else { "denied" },
        &decided.tool,
        json!({ "approval_id": id, "approver": d.approver, "agent": decided.agent, "reason": d.reason }),
    ));
    Ok(Json(json!(decided)))
}

// ---- audit -----------------------------------------------------------------------

#[derive(Deserialize)]
pub(super) struct AuditQuery {
    tenant: Option<String>,
    after: Option<i64>,
    limit: Option<i64>,
}

pub(super) async fn read_audit(
    State(host): Host,
    headers: HeaderMap,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    require_admin(&host, &headers)?;
    let Query(q) = query?;
    // Include everything recorded up to this request.
    host.flush().await;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let events = host
        .audit
        .list(q.tenant.as_deref().unwrap_or(DEFAULT_TENANT), q.after.unwrap_or(0), limit)
        .await
        .map_err(|e| ApiError::internal("audit store", e))?;
    Ok(Json(json!({ "events": events })))
}

pub(super) async fn verify_audit(
    State(host): Host,
    headers: HeaderMap,
    query: Result<Query<TenantQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    require_admin(&host, &headers)?;
    let Query(q) = query?;
    host.flush().await;
    let v = host.audit.verify(q.tenant()).await.map_err(|e| ApiError::internal("audit store", e))?;
    Ok(Json(json!(v)))
}
