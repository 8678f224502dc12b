//! OpenID CIBA over HTTP: Airlock as the OpenID Provider of its approvers, and the admin API
//! of its registries and of a tenant's external OP.
//!
//! - `POST /ciba/backchannel` (and Auth0's `POST /bc-authorize`): backchannel authentication;
//! - `POST /oauth/token` with `grant_type=urn:openid:params:grant-type:ciba`: redeem an `auth_req_id`;
//! - `GET /.well-known/openid-configuration`: discovery;
//! - `POST /ciba/callback/{tenant}`: the ping of a tenant's external OP;
//! - `/v1/ciba/...`: approvers, clients and the external OP (a tenant admin; auditors read).
//!
//! The OAuth endpoints answer `{error, error_description}` (RFC 6749 5.2), not the API's
//! `{code, message}`: CIBA clients are OAuth libraries. The provider decides every code and
//! status; the handlers only carry requests to it. A request names its tenant in `?tenant=` or
//! a `tenant` form field (default `default`): clients are registered per tenant.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use airlock_approvals::ciba::{
    Approver, AuthRequest, CibaClientError, CibaError, CibaProvider, ClientReg, DeliveryMode, NewClient,
};
use airlock_audit::AuditEvent;
use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use super::auth::{bearer, known_tenant, Member, TenantAdmin, TenantReader};
use super::ApiError;
use crate::ciba::ExternalOpConfig;
use crate::config::DEFAULT_TENANT;
use crate::Airlock;

type Host = State<Arc<Airlock>>;

/// Auth0's path of the backchannel authentication endpoint, served too so that clients written
/// for Auth0 work with a changed base URL only.
pub const AUTH0_BACKCHANNEL_PATH: &str = "/bc-authorize";

/// The CIBA routes: the OAuth endpoints and the external OP's ping (public), the admin API
/// of the tenant's approvers, clients and external OP.
pub(super) fn routes(r: super::Routes) -> super::Routes {
    use super::Scope::{Public, Tenant};
    use axum::http::Method as M;
    r.at(Public, M::POST, airlock_approvals::ciba::BACKCHANNEL_PATH, backchannel)
        .at(Public, M::POST, AUTH0_BACKCHANNEL_PATH, backchannel)
        .at(Public, M::GET, "/.well-known/openid-configuration", discovery)
        .at(Public, M::POST, "/ciba/callback/{tenant}", callback)
        .at(Tenant, M::GET, "/v1/ciba/approvers", list_approvers)
        .doc("List the tenant's CIBA approvers (login hints of the people who approve)")
        .returns::<CibaApproverList>()
        .at(Tenant, M::PUT, "/v1/ciba/approvers/{name}", put_approver)
        .doc("Set a CIBA approver's login hint and role")
        .returns::<CibaApproverSet>()
        .at(Tenant, M::DELETE, "/v1/ciba/approvers/{name}", delete_approver)
        .doc("Remove a CIBA approver")
        .returns::<CibaApproverDeleted>()
        .at(Tenant, M::GET, "/v1/ciba/clients", list_clients)
        .doc("List the tenant's CIBA clients")
        .returns::<CibaClientList>()
        .at(Tenant, M::POST, "/v1/ciba/clients", register_client)
        .doc("Register a CIBA client (its secret is shown once)")
        .returns::<CibaClientRegistered>()
        .at(Tenant, M::DELETE, "/v1/ciba/clients/{client_id}", delete_client)
        .doc("Remove a CIBA client")
        .returns::<CibaClientDeleted>()
        .at(Tenant, M::GET, "/v1/ciba/external-op", get_external_op)
        .doc("Read the tenant's external OpenID provider for approvals")
        .returns::<CibaExternalOp>()
        .at(Tenant, M::PUT, "/v1/ciba/external-op", put_external_op)
        .doc("Set the tenant's external OpenID provider for approvals")
        .returns::<CibaExternalOpSet>()
        .at(Tenant, M::DELETE, "/v1/ciba/external-op", delete_external_op)
        .doc("Remove the tenant's external OpenID provider")
        .returns::<CibaExternalOpDeleted>()
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(super) struct TenantQuery {
    tenant: Option<String>,
}

// ---- OAuth plumbing ----------------------------------------------------------------

/// An OAuth error response; `invalid_client` carries `WWW-Authenticate` (RFC 6749 5.2).
fn oauth_error(e: &CibaError) -> Response {
    if e.status() >= 500 {
        tracing::error!(error = %e, "CIBA request failed");
    }
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut resp = (status, Json(e.to_json())).into_response();
    if e.wants_authenticate_header() {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"airlock\""));
    }
    resp
}

/// Token endpoint answers must not be cached (RFC 6749 5.1), errors included.
fn no_store(mut resp: Response) -> Response {
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

/// A form body, refusing repeated parameters (CIBA Core 7.1 and RFC 6749 3.1 forbid them).
fn parse_form(body: &[u8]) -> Result<HashMap<String, String>, CibaError> {
    let mut form = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(body) {
        if form.insert(k.to_string(), v.into_owned()).is_some() {
            return Err(CibaError::InvalidRequest(format!("parameter `{k}` is repeated")));
        }
    }
    Ok(form)
}

/// The form's `tenant`, else the query's, else the default; both and different is an error.
fn tenant_of(query: Option<&str>, form: &HashMap<String, String>) -> Result<String, CibaError> {
    match (query, form.get("tenant").map(String::as_str)) {
        (Some(q), Some(f)) if q != f => {
            Err(CibaError::InvalidRequest(format!("tenant `{q}` in the query and `{f}` in the body differ")))
        }
        (Some(t), _) | (None, Some(t)) => Ok(t.to_string()),
        (None, None) => Ok(DEFAULT_TENANT.to_string()),
    }
}

/// `client_secret_basic` or `client_secret_post`, exactly one of them (RFC 6749 2.3).
fn client_credentials(headers: &HeaderMap, form: &HashMap<String, String>) -> Result<(String, String), CibaError> {
    let basic = match headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        Some(v) if v.len() > 6 && v[..6].eq_ignore_ascii_case("basic ") => {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(v[6..].trim())
                .map_err(|_| CibaError::InvalidClient)?;
            let pair = String::from_utf8(raw).map_err(|_| CibaError::InvalidClient)?;
            let (id, secret) = pair.split_once(':').ok_or(CibaError::InvalidClient)?;
            // RFC 6749 2.3.1: both parts are form-encoded before base64.
            let dec =
                |s: &str| url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned());
            Some((dec(id).unwrap_or_default(), dec(secret).unwrap_or_default()))
        }
        _ => None,
    };
    let post = match (form.get("client_id"), form.get("client_secret")) {
        (Some(id), Some(secret)) => Some((id.clone(), secret.clone())),
        _ => None,
    };
    match (basic, post) {
        (Some(_), Some(_)) => Err(CibaError::InvalidRequest("use one client authentication method, not two".into())),
        (Some(c), None) | (None, Some(c)) => Ok(c),
        (None, None) => Err(CibaError::InvalidClient),
    }
}

fn ciba_event(tenant: &str, kind: &str, outcome: &str, client_id: Option<&str>, detail: Value) -> AuditEvent {
    AuditEvent {
        tenant: tenant.into(),
        kind: kind.into(),
        outcome: outcome.into(),
        agent: client_id.map(|c| format!("ciba-client:{c}")).unwrap_or_else(|| "ciba-client:unknown".into()),
        tool: "ciba".into(),
        detail,
    }
}

// ---- backchannel -------------------------------------------------------------------

/// `POST /ciba/backchannel` and `POST /bc-authorize`: a client asks an approver's consent.
/// Every request is audited, refused or not.
pub(super) async fn backchannel(
    State(host): Host,
    headers: HeaderMap,
    query: Result<Query<TenantQuery>, QueryRejection>,
    body: Bytes,
) -> Response {
    let query_tenant = query.ok().and_then(|Query(q)| q.tenant);
    let form = match parse_form(&body) {
        Ok(f) => f,
        Err(e) => return oauth_error(&e),
    };
    let tenant = match tenant_of(query_tenant.as_deref(), &form) {
        Ok(t) => t,
        Err(e) => return oauth_error(&e),
    };
    if let Err(why) = known_tenant(&host, &tenant).await {
        return oauth_error(&CibaError::InvalidRequest(why));
    }
    let creds = client_credentials(&headers, &form);
    let client_id = creds.as_ref().ok().map(|(id, _)| id.clone());
    let req = AuthRequest {
        scope: form.get("scope").cloned(),
        login_hint: form.get("login_hint").cloned(),
        login_hint_token: form.get("login_hint_token").cloned(),
        id_token_hint: form.get("id_token_hint").cloned(),
        binding_message: form.get("binding_message").cloned(),
        requested_expiry: form.get("requested_expiry").cloned(),
        user_code: form.get("user_code").cloned(),
        client_notification_token: form.get("client_notification_token").cloned(),
    };
    let detail = json!({ "login_hint": req.login_hint, "scope": req.scope, "binding_message": req.binding_message });
    let result = async {
        let (id, secret) = creds?;
        let client = host.ciba.authenticate_client(&tenant, &id, &secret).await?;
        host.ciba.backchannel_authorize(&tenant, &client, req).await
    }
    .await;
    match result {
        Ok(answer) => {
            let mut detail = detail;
            detail["approval_id"] = json!(answer.approval_id);
            host.audit.record(ciba_event(&tenant, "ciba.backchannel", "pending", client_id.as_deref(), detail));
            (StatusCode::OK, Json(json!(answer))).into_response()
        }
        Err(e) => {
            let mut detail = detail;
            detail["error"] = json!(e.code());
            detail["error_description"] = json!(e.description());
            host.audit.record(ciba_event(&tenant, "ciba.backchannel", "refused", client_id.as_deref(), detail));
            oauth_error(&e)
        }
    }
}

// ---- token -------------------------------------------------------------------------

/// The token endpoint's CIBA grant (`form` is the token request, `tenant` in it or the
/// default): the approver's tokens once approved, else the OAuth error the client acts on.
/// Issuance and refusals are audited; `authorization_pending` and `slow_down` are not, as a
/// polling client sends them every few seconds.
pub(crate) async fn ciba_token_grant(host: &Airlock, headers: &HeaderMap, form: &HashMap<String, String>) -> Response {
    let tenant = match tenant_of(None, form) {
        Ok(t) => t,
        Err(e) => return no_store(oauth_error(&e)),
    };
    if let Err(why) = known_tenant(host, &tenant).await {
        return no_store(oauth_error(&CibaError::InvalidRequest(why)));
    }
    let creds = client_credentials(headers, form);
    let client_id = creds.as_ref().ok().map(|(id, _)| id.clone());
    let result = async {
        let (id, secret) = creds?;
        let client = host.ciba.authenticate_client(&tenant, &id, &secret).await?;
        CibaProvider::check_grant_type(form.get("grant_type").map(String::as_str).unwrap_or_default())?;
        let auth_req_id = form
            .get("auth_req_id")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| CibaError::InvalidRequest("`auth_req_id` is required".into()))?;
        host.ciba.poll(&tenant, &client, auth_req_id).await
    }
    .await;
    match result {
        Ok(tokens) => {
            let detail = json!({ "scope": tokens.scope, "expires_in": tokens.expires_in });
            host.audit.record(ciba_event(&tenant, "ciba.token", "issued", client_id.as_deref(), detail));
            no_store((StatusCode::OK, Json(json!(tokens))).into_response())
        }
        Err(e) => {
            if !matches!(e, CibaError::AuthorizationPending | CibaError::SlowDown { .. }) {
                let detail = json!({ "error": e.code(), "error_description": e.description() });
                host.audit.record(ciba_event(&tenant, "ciba.token", "refused", client_id.as_deref(), detail));
            }
            no_store(oauth_error(&e))
        }
    }
}

// ---- discovery ---------------------------------------------------------------------

/// `GET /.well-known/openid-configuration`: the issuer is the configured public URL, else
/// `http://` and the request's `Host`.
pub(super) async fn discovery(State(host): Host, headers: HeaderMap) -> Response {
    match public_base(&host, &headers) {
        Ok(base) => Json(CibaProvider::discovery(&base)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The base URL clients reach this host at: the configured public URL, else `http://` and
/// the request's `Host`.
pub(crate) fn public_base(host: &Airlock, headers: &HeaderMap) -> Result<String, ApiError> {
    match &host.public_url {
        Some(url) => Ok(url.trim_end_matches('/').to_string()),
        None => match headers.get(header::HOST).and_then(|v| v.to_str().ok()).filter(|h| valid_host(h)) {
            Some(h) => Ok(format!("http://{h}")),
            None => Err(ApiError::bad_request("no usable `Host` header: set the host's public URL (--public-url)")),
        },
    }
}

/// A `Host` value that cannot smuggle a path or scheme into the issuer.
fn valid_host(h: &str) -> bool {
    !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']' | '_'))
}

// ---- the external OP's ping ----------------------------------------------------------

#[derive(Deserialize, schemars::JsonSchema)]
pub(super) struct Ping {
    auth_req_id: String,
}

/// `POST /ciba/callback/{tenant}`: the tenant's external OP says a request was decided.
pub(super) async fn callback(
    State(host): Host,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Result<Json<Ping>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Json(ping) = body?;
    known_tenant(&host, &tenant).await.map_err(ApiError::bad_request)?;
    let token = bearer(&headers).ok_or_else(|| ApiError::unauthenticated("a ping carries `Authorization: Bearer`"))?;
    match host.external_ops.ping(&tenant, &ping.auth_req_id, token) {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        // An unknown id and a wrong token get the same answer, so a ping cannot probe which
        // requests are in flight.
        Err(CibaClientError::BadNotificationToken(_) | CibaClientError::UnknownRequest(_)) => {
            Err(ApiError::unauthenticated("no request in flight with this id and notification token"))
        }
        Err(e) => Err(ApiError::internal("ciba client", e)),
    }
}

// ---- deciding a CIBA approval ----------------------------------------------------------

/// The decide path for an approval that is a CIBA request reserved for approver `named`:
/// only `user:NAME` (or the bare name) may decide it, and the decision pings a ping-mode client.
pub(super) async fn decide(
    host: &Airlock,
    tenant: &str,
    id: &str,
    named: &str,
    approver: &str,
    approve: bool,
    reason: Option<&str>,
) -> Result<Value, ApiError> {
    let who = approver.strip_prefix("user:").unwrap_or(approver);
    let event = |outcome: &str, detail: Value| AuditEvent {
        tenant: tenant.into(),
        kind: "approval.decision".into(),
        outcome: outcome.into(),
        agent: approver.into(),
        tool: "ciba".into(),
        detail,
    };
    if who != named {
        host.audit.record(event(
            "refused",
            json!({ "approval_id": id, "approver": approver, "reason": format!("the CIBA request is for `{named}`") }),
        ));
        return Err(ApiError::forbidden(format!(
            "`{approver}` may not decide this CIBA request: only `user:{named}`, whose consent it asks, may"
        )));
    }
    let decided = host.ciba.decide(tenant, id, named, approve, reason).await.map_err(ApiError::from)?;
    host.audit.record(event(
        if approve { "approved" } else { "denied" },
        json!({ "approval_id": id, "approver": approver, "agent": decided.agent, "reason": reason }),
    ));
    Ok(json!(decided))
}

// ---- admin API -----------------------------------------------------------------------

fn admin_event(m: &Member, kind: &str, detail: Value) -> AuditEvent {
    m.event(kind, "ok", "ciba", detail)
}

#[derive(Deserialize, schemars::JsonSchema, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PutApprover {
    pub(crate) tenant: Option<String>,
    #[serde(default)]
    pub(crate) iss: Option<String>,
    #[serde(default)]
    pub(crate) sub: Option<String>,
    #[serde(default)]
    pub(crate) device_webhook: Option<String>,
}

/// `PUT /v1/ciba/approvers/{name}`: the approver as set.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct CibaApproverSet {
    approver: Approver,
}

/// `PUT /v1/ciba/approvers/{name}`: adds or replaces an approver clients may ask for by name.
pub(super) async fn put_approver(
    State(host): Host,
    Path(name): Path<String>,
    TenantAdmin(m): TenantAdmin,
    body: Result<Json<PutApprover>, JsonRejection>,
) -> Result<Json<CibaApproverSet>, ApiError> {
    let Json(b) = body?;
    let tenant = m.scope(b.tenant.as_deref())?;
    let approver = Approver { name, iss: b.iss, sub: b.sub, device_webhook: b.device_webhook };
    host.ciba.put_approver(tenant, &approver).await.map_err(ApiError::from)?;
    host.audit.record(admin_event(&m, "ciba.approver.put", json!({ "approver": approver })));
    Ok(Json(CibaApproverSet { approver }))
}

/// `GET /v1/ciba/approvers`: the tenant's CIBA approvers.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct CibaApproverList {
    approvers: Vec<Approver>,
}

pub(super) async fn list_approvers(
    State(host): Host,
    TenantReader(m): TenantReader,
) -> Result<Json<CibaApproverList>, ApiError> {
    let tenant = m.tenant.as_str();
    Ok(Json(CibaApproverList { approvers: host.ciba.approvers(tenant).await.map_err(ApiError::from)? }))
}

/// `DELETE /v1/ciba/approvers/{name}`: the approver removed.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct CibaApproverDeleted {
    /// The approver's name.
    deleted: String,
}

pub(super) async fn delete_approver(
    State(host): Host,
    Path(name): Path<String>,
    TenantAdmin(m): TenantAdmin,
) -> Result<Json<CibaApproverDeleted>, ApiError> {
    let tenant = m.tenant.as_str();
    if !host.ciba.delete_approver(tenant, &name).await.map_err(ApiError::from)? {
        return Err(ApiError::not_found(format!("no approver `{name}` in this tenant")));
    }
    host.audit.record(admin_event(&m, "ciba.approver.delete", json!({ "approver": name })));
    Ok(Json(CibaApproverDeleted { deleted: name }))
}

#[derive(Deserialize, schemars::JsonSchema, serde::Serialize)]
pub(crate) struct RegisterClient {
    pub(crate) tenant: Option<String>,
    pub(crate) client_id: String,
    /// `poll` (default) or `ping`; `ping` needs `notification_endpoint`.
    #[serde(default)]
    pub(crate) delivery_mode: Option<String>,
    #[serde(default)]
    pub(crate) notification_endpoint: Option<String>,
}

/// `POST /v1/ciba/clients`: the client registered, and its secret (shown once).
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct CibaClientRegistered {
    client: ClientReg,
    /// The client's secret, in this answer only (stored hashed).
    client_secret: String,
}

/// `POST /v1/ciba/clients`: registers a client; its secret is in this answer only.
pub(super) async fn register_client(
    State(host): Host,
    TenantAdmin(m): TenantAdmin,
    body: Result<Json<RegisterClient>, JsonRejection>,
) -> Result<(StatusCode, Json<CibaClientRegistered>), ApiError> {
    let Json(b) = body?;
    let tenant = m.scope(b.tenant.as_deref())?;
    let mode = match b.delivery_mode.as_deref() {
        None if b.notification_endpoint.is_some() => DeliveryMode::Ping,
        None => DeliveryMode::Poll,
        Some(m) => DeliveryMode::parse(m)
            .ok_or_else(|| ApiError::bad_request(format!("`delivery_mode` `{m}` must be `poll` or `ping`")))?,
    };
    let new = NewClient { client_id: b.client_id, delivery_mode: mode, notification_endpoint: b.notification_endpoint };
    let (client, secret) = host.ciba.register_client(tenant, &new).await.map_err(|e| match e {
        CibaError::InvalidRegistration(m) if m.contains("already exists") => ApiError::conflict(m),
        other => ApiError::from(other),
    })?;
    host.audit.record(admin_event(&m, "ciba.client.register", json!({ "client": client })));
    Ok((StatusCode::CREATED, Json(CibaClientRegistered { client, client_secret: secret })))
}

/// `GET /v1/ciba/clients`: the tenant's CIBA clients (never their secrets).
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct CibaClientList {
    clients: Vec<ClientReg>,
}

pub(super) async fn list_clients(
    State(host): Host,
    TenantReader(m): TenantReader,
) -> Result<Json<CibaClientList>, ApiError> {
    let tenant = m.tenant.as_str();
    Ok(Json(CibaClientList { clients: host.ciba.clients(tenant).await.map_err(ApiError::from)? }))
}

/// `DELETE /v1/ciba/clients/{client_id}`: the client removed.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct CibaClientDeleted {
    /// The client's id.
    deleted: String,
}

pub(super) async fn delete_client(
    State(host): Host,
    Path(client_id): Path<String>,
    TenantAdmin(m): TenantAdmin,
) -> Result<Json<CibaClientDeleted>, ApiError> {
    let tenant = m.tenant.as_str();
    if !host.ciba.delete_client(tenant, &client_id).await.map_err(ApiError::from)? {
        return Err(ApiError::not_found(format!("no client `{client_id}` in this tenant")));
    }
    host.audit.record(admin_event(&m, "ciba.client.delete", json!({ "client_id": client_id })));
    Ok(Json(CibaClientDeleted { deleted: client_id }))
}

#[derive(Deserialize, schemars::JsonSchema, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PutExternalOp {
    pub(crate) tenant: Option<String>,
    pub(crate) discovery_url: String,
    pub(crate) client_id: String,
    pub(crate) client_secret: String,
    #[serde(default)]
    pub(crate) delivery_mode: Option<String>,
    #[serde(default)]
    pub(crate) scope: Option<String>,
    pub(crate) login_hints: BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) requested_expiry: Option<u64>,
}

/// `PUT /v1/ciba/external-op`: the external OP as set, and where it pings.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct CibaExternalOpSet {
    external_op: ExternalOpConfig,
    /// `/ciba/callback/TENANT`: the path (on this host's public URL) of the OP's pings, its
    /// client notification endpoint in ping mode.
    callback_path: String,
}

/// `PUT /v1/ciba/external-op`: the tenant's approvals go to this OP from now on.
pub(super) async fn put_external_op(
    State(host): Host,
    TenantAdmin(m): TenantAdmin,
    body: Result<Json<PutExternalOp>, JsonRejection>,
) -> Result<Json<CibaExternalOpSet>, ApiError> {
    let Json(b) = body?;
    let tenant = m.scope(b.tenant.as_deref())?;
    let secret = Zeroizing::new(b.client_secret);
    let mode = match b.delivery_mode.as_deref() {
        None => DeliveryMode::Poll,
        Some(m) => DeliveryMode::parse(m)
            .ok_or_else(|| ApiError::bad_request(format!("`delivery_mode` `{m}` must be `poll` or `ping`")))?,
    };
    let config = ExternalOpConfig {
        discovery_url: b.discovery_url,
        client_id: b.client_id,
        delivery_mode: mode,
        scope: b.scope.unwrap_or_else(|| "openid".into()),
        login_hints: b.login_hints,
        requested_expiry: b.requested_expiry,
    };
    host.external_ops.put(tenant, &config, secret).await.map_err(ApiError::from)?;
    host.audit.record(admin_event(&m, "ciba.external_op.put", json!({ "external_op": config })));
    Ok(Json(CibaExternalOpSet { external_op: config, callback_path: format!("/ciba/callback/{tenant}") }))
}

/// `GET /v1/ciba/external-op`: the tenant's external OpenID Provider (never its client secret).
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct CibaExternalOp {
    external_op: ExternalOpConfig,
}

pub(super) async fn get_external_op(
    State(host): Host,
    TenantReader(m): TenantReader,
) -> Result<Json<CibaExternalOp>, ApiError> {
    let tenant = m.tenant.as_str();
    match host.external_ops.get(tenant).await.map_err(ApiError::from)? {
        Some(config) => Ok(Json(CibaExternalOp { external_op: config })),
        None => Err(ApiError::not_found(format!("tenant `{tenant}` has no external OpenID Provider"))),
    }
}

/// `DELETE /v1/ciba/external-op`: the tenant whose external OP was removed.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct CibaExternalOpDeleted {
    /// The tenant.
    deleted: String,
}

pub(super) async fn delete_external_op(
    State(host): Host,
    TenantAdmin(m): TenantAdmin,
) -> Result<Json<CibaExternalOpDeleted>, ApiError> {
    let tenant = m.tenant.as_str();
    if !host.external_ops.delete(tenant).await.map_err(ApiError::from)? {
        return Err(ApiError::not_found(format!("tenant `{tenant}` has no external OpenID Provider")));
    }
    host.audit.record(admin_event(&m, "ciba.external_op.delete", json!({})));
    Ok(Json(CibaExternalOpDeleted { deleted: tenant.to_string() }))
}
