//! The HTTP side of [`crate::oauth_server`]: how an MCP client discovers, registers,
//! sends its person to consent, and gets a delegated token.
//!
//! - `GET /.well-known/oauth-protected-resource[/mcp]` (RFC 9728): the resource `/mcp` and
//!   its authorization server (this host);
//! - `GET /.well-known/oauth-authorization-server` (RFC 8414);
//! - `POST /oauth/register` (RFC 7591);
//! - `GET /oauth/authorize`: the consent page (or "sign in first"); `POST /oauth/authorize`:
//!   the person's answer, with their session's CSRF token in the form; back to the client's
//!   redirect URI with `code`, `state` and `iss` (RFC 9207), or `error`;
//! - `/oauth/token` grant types `authorization_code` and `refresh_token` ([`authorization_code`],
//!   [`refresh_token`], dispatched by [`super::oauth::token`]);
//! - `GET /v1/oauth/grants`, `DELETE /v1/oauth/grants/{id}`: a member's own consents (an admin
//!   sees and revokes everyone's).
//!
//! Errors before the client and its redirect URI are known are shown to the person, never
//! redirected; after, they go back to the client as RFC 6749 4.1.2.1 says.

use std::collections::HashMap;
use std::sync::Arc;

use airlock_audit::AuditEvent;
use axum::body::Bytes;
use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::auth::{Member, TenantMember};
use super::ciba::public_base;
use super::oauth::{basic_credentials, oauth_error, success};
use super::ApiError;
use crate::oauth_server::clients::{self, Client, RegisterError};
use crate::oauth_server::consent::{self, AgentChoice, AuthorizeRequest, ConsentPage};
use crate::oauth_server::grants::{self, Consent, GrantError};
use crate::oauth_server::{granted_scope, mcp_resource, SCOPES};
use crate::Airlock;

type Host = State<Arc<Airlock>>;

// ---- discovery -----------------------------------------------------------------------

/// `GET /.well-known/oauth-protected-resource` and `.../mcp`.
pub(super) async fn protected_resource(State(host): Host, headers: HeaderMap) -> Response {
    match public_base(&host, &headers) {
        Ok(base) => Json(json!({
            "resource": mcp_resource(&base),
            "authorization_servers": [base],
            "scopes_supported": SCOPES,
            "bearer_methods_supported": ["header"],
            "resource_name": "Airlock MCP",
            "resource_documentation": format!("{base}/console"),
        }))
        .into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /.well-known/oauth-authorization-server`.
pub(super) async fn server_metadata(State(host): Host, headers: HeaderMap) -> Response {
    match public_base(&host, &headers) {
        Ok(base) => Json(json!({
            "issuer": base,
            "authorization_endpoint": format!("{base}/oauth/authorize"),
            "token_endpoint": format!("{base}/oauth/token"),
            "registration_endpoint": format!("{base}/oauth/register"),
            "jwks_uri": format!("{base}/.well-known/jwks.json"),
            "scopes_supported": SCOPES,
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": [
                "authorization_code", "refresh_token", "client_credentials", super::oauth::TOKEN_EXCHANGE,
                airlock_approvals::ciba::GRANT_TYPE, super::device::GRANT_TYPE,
            ],
            "token_endpoint_auth_methods_supported": clients::AUTH_METHODS,
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": true,
            "client_id_metadata_document_supported": false,
        }))
        .into_response(),
        Err(e) => e.into_response(),
    }
}

// ---- registration --------------------------------------------------------------------

/// `POST /oauth/register`.
pub(super) async fn register(State(host): Host, body: Bytes) -> Response {
    let metadata: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_client_metadata",
                format!("the body is not JSON client metadata: {e}"),
            )
        }
    };
    match clients::register(&host.db, &metadata).await {
        Ok(info) => {
            host.audit.record(AuditEvent {
                tenant: crate::tenancy::HOST_CHAIN.into(),
                kind: "oauth.register".into(),
                outcome: "ok".into(),
                agent: format!("client:{}", info["client_id"].as_str().unwrap_or_default()),
                tool: String::new(),
                detail: json!({ "client_name": info["client_name"], "redirect_uris": info["redirect_uris"] }),
            });
            let mut resp = success(info);
            *resp.status_mut() = StatusCode::CREATED;
            resp
        }
        Err(RegisterError::Store(e)) => ApiError::internal("client store", e).into_response(),
        Err(e) => {
            let status =
                if matches!(e, RegisterError::Busy) { StatusCode::TOO_MANY_REQUESTS } else { StatusCode::BAD_REQUEST };
            oauth_error(status, e.code(), e.to_string())
        }
    }
}

// ---- authorization -------------------------------------------------------------------

/// An authorization request that passed its checks.
struct Checked {
    client: Client,
    /// This host's issuer identifier (`iss` of the response).
    issuer: String,
    resource: String,
    scope: String,
}

/// The client's redirect URI with `params` (and `state`, `iss`) added: where every answer
/// goes once the client and redirect URI are known.
fn back_to_client(redirect_uri: &str, state: Option<&str>, issuer: &str, params: &[(&str, &str)]) -> Response {
    let Ok(mut url) = url::Url::parse(redirect_uri) else {
        return consent::error_page(StatusCode::BAD_REQUEST, "the redirect URI is not a URI");
    };
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
        if let Some(state) = state {
            q.append_pair("state", state);
        }
        q.append_pair("iss", issuer);
    }
    let mut resp = (StatusCode::SEE_OTHER, [(header::LOCATION, url.to_string())]).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    resp
}

/// Checks an authorization request. `Err` is the response: an error page while the client or
/// its redirect URI is unknown, else the error sent back to the client.
async fn check(host: &Airlock, headers: &HeaderMap, req: &AuthorizeRequest) -> Result<Checked, Response> {
    let issuer = public_base(host, headers).map_err(IntoResponse::into_response)?;
    if req.client_id.is_empty() {
        return Err(consent::error_page(StatusCode::BAD_REQUEST, "the request names no `client_id`"));
    }
    let client = clients::find(&host.db, &req.client_id)
        .await
        .map_err(|e| ApiError::internal("client store", e).into_response())?
        .ok_or_else(|| {
            consent::error_page(
                StatusCode::BAD_REQUEST,
                "this application is not registered here (or its registration was purged unused): it registers again on its own when you reconnect",
            )
        })?;
    if req.redirect_uri.is_empty() || !client.redirects_to(&req.redirect_uri) {
        return Err(consent::error_page(
            StatusCode::BAD_REQUEST,
            "the redirect URI is not one this application registered: the answer cannot be sent there",
        ));
    }
    let refuse = |error: &str, description: String| {
        back_to_client(
            &req.redirect_uri,
            req.state.as_deref(),
            &issuer,
            &[("error", error), ("error_description", &description)],
        )
    };
    if req.response_type != "code" {
        return Err(refuse("unsupported_response_type", "only `response_type=code` is supported".into()));
    }
    if req.code_challenge.is_empty() {
        return Err(refuse("invalid_request", "PKCE is required: send `code_challenge` (S256)".into()));
    }
    if req.code_challenge_method.as_deref() != Some("S256") {
        return Err(refuse(
            "invalid_request",
            "`code_challenge_method` must be `S256` (`plain` is not accepted)".into(),
        ));
    }
    let challenge_ok = req.code_challenge.len() == 43
        && req.code_challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !challenge_ok {
        return Err(refuse(
            "invalid_request",
            "`code_challenge` must be BASE64URL(SHA256(verifier)), 43 characters".into(),
        ));
    }
    let ours = mcp_resource(&issuer);
    let resource = match req.resource.as_deref().filter(|r| !r.is_empty()) {
        None => ours,
        Some(r) if r.trim_end_matches('/') == ours => ours,
        Some(r) => {
            let shown: String = r.chars().take(120).collect();
            return Err(refuse(
                "invalid_target",
                format!("this server issues tokens for `{ours}` only, not `{shown}`"),
            ));
        }
    };
    let scope = granted_scope(req.scope.as_deref()).map_err(|why| refuse("invalid_scope", why))?;
    Ok(Checked { client, issuer, resource, scope })
}

/// The signed-in person of the request's session cookie.
async fn session_of(host: &Airlock, headers: &HeaderMap) -> Result<Option<crate::signin::sessions::Session>, Response> {
    let Some(cookie) = crate::signin::sessions::cookie_secret(headers) else {
        return Ok(None);
    };
    host.people.sessions.authenticate(cookie).await.map_err(|e| ApiError::internal("session store", e).into_response())
}

/// `GET /oauth/authorize`.
pub(super) async fn authorize(
    State(host): Host,
    headers: HeaderMap,
    uri: Uri,
    query: Result<Query<AuthorizeRequest>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(req)) = query else {
        return consent::error_page(StatusCode::BAD_REQUEST, "the authorization request's parameters do not parse");
    };
    let checked = match check(&host, &headers, &req).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let session = match session_of(&host, &headers).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            let here = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/oauth/authorize");
            return consent::sign_in_page(&checked.client.client_name, here);
        }
        Err(resp) => return resp,
    };
    let member = Member::person(&session.tenant, &session.member);
    let agents = if member.holds(&host, "admin").await {
        match host.agents.list(&session.tenant).await {
            Ok(list) => {
                list.into_iter().filter(|a| a.live).map(|a| AgentChoice { name: a.name, note: String::new() }).collect()
            }
            Err(e) => return ApiError::from(e).into_response(),
        }
    } else {
        Vec::new()
    };
    consent::consent_page(&ConsentPage {
        request: &req,
        client_name: &checked.client.client_name,
        member: &session.member,
        tenant: &session.tenant,
        csrf: &session.csrf,
        resource: &checked.resource,
        scope: &checked.scope,
        agents: &agents,
        new_agent: &format!("{}-…", new_agent_prefix(&checked.client.client_name)),
    })
}

/// The name of a new agent made for a client: `mcp-` and its name, made safe.
fn new_agent_prefix(client_name: &str) -> String {
    let mut slug = String::new();
    for c in client_name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
        if slug.len() >= 24 {
            break;
        }
    }
    let slug = slug.trim_matches('-');
    format!("mcp-{}", if slug.is_empty() { "client" } else { slug })
}

/// `POST /oauth/authorize`: the person's answer.
pub(super) async fn authorize_post(
    State(host): Host,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return consent::error_page(StatusCode::BAD_REQUEST, "the consent form did not parse");
    };
    let get = |k: &str| form.get(k).cloned().unwrap_or_default();
    let opt = |k: &str| form.get(k).filter(|v| !v.is_empty()).cloned();
    let req = AuthorizeRequest {
        response_type: get("response_type"),
        client_id: get("client_id"),
        redirect_uri: get("redirect_uri"),
        state: opt("state"),
        code_challenge: get("code_challenge"),
        code_challenge_method: opt("code_challenge_method"),
        resource: opt("resource"),
        scope: opt("scope"),
    };
    let checked = match check(&host, &headers, &req).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let session = match session_of(&host, &headers).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return consent::error_page(
                StatusCode::UNAUTHORIZED,
                "your session ended before you answered: sign in and connect the application again",
            )
        }
        Err(resp) => return resp,
    };
    use subtle::ConstantTimeEq;
    if !bool::from(get("csrf").as_bytes().ct_eq(session.csrf.as_bytes())) {
        return consent::error_page(
            StatusCode::FORBIDDEN,
            "this answer did not come from the consent page of your session: nothing was granted",
        );
    }
    let member = Member::person(&session.tenant, &session.member);
    let state = req.state.as_deref();
    let client_detail = json!({ "client_id": checked.client.client_id, "client_name": checked.client.client_name,
                                "redirect_uri": req.redirect_uri, "resource": checked.resource, "scope": checked.scope });
    if get("decision") != "allow" {
        host.audit.record(member.event("oauth.consent", "denied", "", client_detail));
        return back_to_client(
            &req.redirect_uri,
            state,
            &checked.issuer,
            &[("error", "access_denied"), ("error_description", "the person did not allow it")],
        );
    }
    let agent = match chosen_agent(&host, &member, &get("agent"), &checked.client).await {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    let consent = Consent {
        client_id: checked.client.client_id.clone(),
        tenant: session.tenant.clone(),
        member: session.member.clone(),
        agent: agent.clone(),
        redirect_uri: req.redirect_uri.clone(),
        challenge: req.code_challenge.clone(),
        resource: checked.resource.clone(),
        scope: checked.scope.clone(),
    };
    let code = match grants::issue_code(&host.db, &consent).await {
        Ok(c) => c,
        Err(e) => return ApiError::internal("grant store", e).into_response(),
    };
    if let Err(e) = clients::touch(&host.db, &checked.client.client_id).await {
        tracing::warn!("marking client used: {e}");
    }
    let mut detail = client_detail;
    detail["agent"] = json!(format!("agent:{agent}"));
    host.audit.record(member.event("oauth.consent", "ok", "", detail));
    back_to_client(&req.redirect_uri, state, &checked.issuer, &[("code", &code)])
}

/// The agent the person picked: a new one for the client (any member), or an existing live
/// agent (admins only: acting as an agent is an admin's to hand out).
async fn chosen_agent(host: &Airlock, member: &Member, choice: &str, client: &Client) -> Result<String, Response> {
    if choice.is_empty() || choice == "new" {
        let prefix = new_agent_prefix(&client.client_name);
        for _ in 0..4 {
            let name = format!("{prefix}-{}", &crate::tenancy::secret("")[..6]);
            match host.agents.create(&member.tenant, &name).await {
                Ok(_token) => {
                    host.audit.record(member.event(
                        "agent.create",
                        "ok",
                        "",
                        json!({ "agent": format!("agent:{name}"), "for_client": client.client_id }),
                    ));
                    return Ok(name);
                }
                Err(crate::agents::AgentError::Exists(_)) => continue,
                Err(e) => return Err(ApiError::from(e).into_response()),
            }
        }
        return Err(ApiError::internal("agent store", "no free agent name").into_response());
    }
    if !member.holds(host, "admin").await {
        host.audit.record(member.event("oauth.consent", "denied", "", json!({ "agent": choice, "needs": "admin" })));
        return Err(consent::error_page(
            StatusCode::FORBIDDEN,
            "only a tenant admin lets an application act as an existing agent: choose a new agent for it",
        ));
    }
    match host.agents.live_since(&member.tenant, choice).await {
        Ok(Some(_)) => Ok(choice.to_string()),
        Ok(None) => Err(consent::error_page(StatusCode::BAD_REQUEST, "that agent is revoked or does not exist")),
        Err(e) => Err(ApiError::from(e).into_response()),
    }
}

// ---- tokens --------------------------------------------------------------------------

/// The client a token request comes from, authenticated as it registered.
async fn token_client(host: &Airlock, headers: &HeaderMap, form: &HashMap<String, String>) -> Result<Client, Response> {
    let invalid_client = |why: String| oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", why);
    let basic = basic_credentials(headers);
    let client_id = match (&basic, form.get("client_id")) {
        (Some((id, _)), Some(f)) if id != f => {
            return Err(invalid_client("the header and the form name different clients".into()))
        }
        (Some((id, _)), _) => id.clone(),
        (None, Some(f)) if !f.is_empty() => f.clone(),
        _ => return Err(invalid_client("send `client_id` (and the secret, for a confidential client)".into())),
    };
    let client = clients::find(&host.db, &client_id)
        .await
        .map_err(|e| ApiError::internal("client store", e).into_response())?
        .ok_or_else(|| invalid_client("unknown client: register again".into()))?;
    client
        .authenticate(basic.as_ref().map(|(_, s)| s.as_str()), form.get("client_secret").map(String::as_str))
        .map_err(invalid_client)?;
    Ok(client)
}

fn invalid_grant(why: impl Into<String>) -> Response {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", why)
}

/// `grant_type=authorization_code`.
pub(super) async fn authorization_code(
    host: &Airlock,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Response {
    let client = match token_client(host, headers, form).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let (Some(code), Some(verifier)) = (form.get("code"), form.get("code_verifier")) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "send `code` and `code_verifier` (PKCE)");
    };
    let consent = match grants::redeem_code(&host.db, code).await {
        Ok(c) => c,
        Err(GrantError::Store(e)) => return ApiError::internal("grant store", e).into_response(),
        Err(e) => {
            if matches!(e, GrantError::ReplayedCode) {
                tracing::warn!(
                    client = client.client_id,
                    "an authorization code was redeemed twice; its grant is revoked"
                );
            }
            return invalid_grant(e.to_string());
        }
    };
    if consent.client_id != client.client_id {
        return invalid_grant("the code was issued to another client");
    }
    if form.get("redirect_uri").map(String::as_str) != Some(consent.redirect_uri.as_str()) {
        return invalid_grant("`redirect_uri` must be the one the authorization request named");
    }
    if let Err(why) = grants::pkce_matches(verifier, &consent.challenge) {
        return invalid_grant(why);
    }
    if let Some(r) = form.get("resource").filter(|r| !r.is_empty()) {
        if r.trim_end_matches('/') != consent.resource {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_target",
                "`resource` differs from the one consented to",
            );
        }
    }
    let (grant, refresh) = match grants::start_grant(&host.db, code, &consent).await {
        Ok(g) => g,
        Err(e) => return ApiError::internal("grant store", e).into_response(),
    };
    delegated_token(host, &grant, &consent, &refresh, "authorization_code").await
}

/// `grant_type=refresh_token`.
pub(super) async fn refresh_token(host: &Airlock, headers: &HeaderMap, form: &HashMap<String, String>) -> Response {
    let client = match token_client(host, headers, form).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let Some(token) = form.get("refresh_token").filter(|t| !t.is_empty()) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "send `refresh_token`");
    };
    let refreshed = match grants::refresh(&host.db, &client.client_id, token).await {
        Ok(r) => r,
        Err(GrantError::Store(e)) => return ApiError::internal("grant store", e).into_response(),
        Err(e) => return invalid_grant(e.to_string()),
    };
    if let Some(r) = form.get("resource").filter(|r| !r.is_empty()) {
        if r.trim_end_matches('/') != refreshed.consent.resource {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_target",
                "`resource` differs from the one consented to",
            );
        }
    }
    delegated_token(host, &refreshed.id, &refreshed.consent, &refreshed.refresh_token, "refresh_token").await
}

/// Issues the delegated access token of a grant, if its agent is still live, audited.
async fn delegated_token(host: &Airlock, grant: &str, consent: &Consent, refresh: &str, via: &str) -> Response {
    let member = Member::person(&consent.tenant, &consent.member);
    let detail = json!({ "client_id": consent.client_id, "agent": format!("agent:{}", consent.agent),
                         "grant": grant, "via": via, "resource": consent.resource });
    match host.agents.live_since(&consent.tenant, &consent.agent).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            let _ = grants::revoke_grant(&host.db, grant).await;
            host.audit.record(member.event("oauth.token", "denied", "", detail));
            return invalid_grant(format!("agent `{}` was revoked: authorize again", consent.agent));
        }
        Err(e) => return ApiError::from(e).into_response(),
    }
    let user = consent.member.strip_prefix("user:").unwrap_or(&consent.member);
    let delegation = airlock_identity::Delegation {
        tenant: &consent.tenant,
        user,
        agent: &consent.agent,
        audience: &consent.resource,
        scope: &consent.scope,
        grant,
    };
    let issued = match host.identity.issue_delegated(&delegation, None).await {
        Ok(t) => t,
        Err(e) => return ApiError::internal("token signing", e).into_response(),
    };
    host.audit.record(member.event("oauth.token", "ok", "", detail));
    success(json!({
        "access_token": issued.access_token,
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
        "refresh_token": refresh,
        "scope": consent.scope,
    }))
}

// ---- a member's grants ---------------------------------------------------------------

/// `GET /v1/oauth/grants`: the live grants of MCP clients, newest first.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct OAuthGrantList {
    grants: Vec<grants::Grant>,
}

/// `GET /v1/oauth/grants`: the member's own (an admin's: everyone's in the tenant).
pub(super) async fn list_grants(
    State(host): Host,
    TenantMember(m): TenantMember,
) -> Result<Json<OAuthGrantList>, ApiError> {
    let admin = m.holds(&host, "admin").await;
    let only = (!admin).then_some(m.subject.as_str());
    let list = grants::list(&host.db, &m.tenant, only).await.map_err(|e| ApiError::internal("grant store", e))?;
    Ok(Json(OAuthGrantList { grants: list }))
}

/// `DELETE /v1/oauth/grants/{id}`: the grant revoked.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct OAuthGrantRevoked {
    /// The grant's id.
    revoked: String,
}

/// `DELETE /v1/oauth/grants/{id}`: the application's refresh token and its access tokens
/// (they carry the grant, [`airlock_identity::Verified::grant`]) stop working at once.
pub(super) async fn revoke_grant(
    State(host): Host,
    TenantMember(m): TenantMember,
    Path(id): Path<String>,
) -> Result<Json<OAuthGrantRevoked>, ApiError> {
    let admin = m.holds(&host, "admin").await;
    let only = (!admin).then_some(m.subject.as_str());
    if !grants::revoke_in(&host.db, &m.tenant, &id, only).await.map_err(|e| ApiError::internal("grant store", e))? {
        return Err(ApiError::not_found(format!(
            "no live grant `{}` of yours",
            id.chars().take(64).collect::<String>()
        )));
    }
    host.audit.record(m.event("oauth.revoke", "ok", "", json!({ "grant": id })));
    Ok(Json(OAuthGrantRevoked { revoked: id }))
}
