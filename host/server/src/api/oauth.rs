//! The OAuth 2.0 token endpoint and the keys to check what it signs.
//!
//! `POST /oauth/token` (form-encoded) dispatches on `grant_type`:
//! - `client_credentials`: an agent proves itself with its client id (its name; `tenant` for a
//!   tenant other than the default) and secret (the token `airlock agent create` showed once) and
//!   gets a short-lived EdDSA JWT with `tenant` and `agent` claims;
//! - `urn:ietf:params:oauth:grant-type:token-exchange` (RFC 8693): a user's token (subject) plus an
//!   agent's token (actor) give a delegated token whose `act` names the agent; a delegated token
//!   as subject nests the chain;
//! - `urn:openid:params:grant-type:ciba`: a CIBA client redeems an approved `auth_req_id`
//!   (see [`super::ciba`]);
//! - Auth0 Token Vault's `...:federated-connection-access-token`: an agent's (or delegated) token
//!   plus a connection name give that connection's short-lived access token, when the
//!   connection's policy lets it leave the host (`expose_token`) and the agent is `can_use` on
//!   it. Audited like `vault.token`.
//! - `urn:ietf:params:oauth:grant-type:device_code` (RFC 8628): `airlock login`'s poll
//!   (see [`super::device`]);
//! - `authorization_code` and `refresh_token`: an MCP client's delegated token after a person
//!   consented (see [`super::mcp_oauth`]);
//! `GET /.well-known/jwks.json` serves the verifying keys. Errors are OAuth's `{error,
//! error_description}`; every response is `Cache-Control: no-store`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::Airlock;

/// RFC 8693's grant type.
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// Auth0 Token Vault's grant type for a federated connection's access token.
pub const FEDERATED_CONNECTION: &str =
    "urn:auth0:params:oauth:grant-type:token-exchange:federated-connection-access-token";
/// The token type Auth0 gives the connection's access token.
pub const FEDERATED_TOKEN_TYPE: &str = "http://auth0.com/oauth/token-type/federated-connection-access-token";

/// An OAuth error response.
pub(super) fn oauth_error(status: StatusCode, error: &str, description: impl Into<String>) -> Response {
    let mut resp = (status, Json(json!({ "error": error, "error_description": description.into() }))).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Basic realm=\"airlock\""));
    }
    resp
}

pub(super) fn success(body: Value) -> Response {
    let mut resp = Json(body).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    resp
}

pub(super) fn field<'a>(form: &'a HashMap<String, String>, name: &str) -> Result<&'a str, Response> {
    form.get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| oauth_error(StatusCode::BAD_REQUEST, "invalid_request", format!("`{name}` is required")))
}

/// `POST /oauth/token`.
pub(super) async fn token(
    State(host): State<Arc<Airlock>>,
    headers: HeaderMap,
    query: Query<HashMap<String, String>>,
    form: Result<Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(mut form)) = form else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "send a form-encoded body");
    };
    // A grant reads its tenant from the form; a `?tenant=` is carried there.
    if let Some(t) = query.0.get("tenant") {
        if form.get("tenant").is_some_and(|f| f != t) {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the query and the body name different tenants",
            );
        }
        form.insert("tenant".into(), t.clone());
    }
    // A malformed or unknown tenant is refused before anything is written or audited.
    if let Some(t) = form.get("tenant") {
        if let Err(why) = super::auth::known_tenant(&host, t).await {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", why);
        }
    }
    let grant_type = match field(&form, "grant_type") {
        Ok(g) => g,
        Err(resp) => return resp,
    };
    let result = match grant_type {
        "client_credentials" => client_credentials(&host, &headers, &form).await,
        TOKEN_EXCHANGE => exchange(&host, &form).await,
        FEDERATED_CONNECTION => federated_connection(&host, &form).await,
        airlock_approvals::ciba::GRANT_TYPE => Ok(super::ciba::ciba_token_grant(&host, &headers, &form).await),
        super::device::GRANT_TYPE => super::device::token(&host, &form).await,
        "authorization_code" => Ok(super::mcp_oauth::authorization_code(&host, &headers, &form).await),
        "refresh_token" => Ok(super::mcp_oauth::refresh_token(&host, &headers, &form).await),
        other => Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            format!("grant type `{other}` is not supported here"),
        )),
    };
    result.unwrap_or_else(|resp| resp)
}

/// The client's id and secret, from HTTP Basic (form-decoded, as RFC 6749 2.3.1 says) or the form.
fn client_auth(headers: &HeaderMap, form: &HashMap<String, String>) -> Option<(String, String)> {
    if headers.get(header::AUTHORIZATION).is_some_and(|v| v.as_bytes().starts_with(b"Basic ")) {
        return basic_credentials(headers);
    }
    Some((form.get("client_id")?.clone(), form.get("client_secret")?.clone()))
}

/// The client id and secret of an HTTP Basic `Authorization` header (each form-decoded).
pub(super) fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine as _;
    let pair = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
        .and_then(|raw| String::from_utf8(raw).ok())?;
    let (id, secret) = pair.split_once(':')?;
    let decode = |s: &str| url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned());
    Some((decode(id)?, decode(secret)?))
}

async fn client_credentials(
    host: &Airlock,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<Response, Response> {
    let invalid_client = |why: &str| oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", why.to_string());
    let (client_id, secret) =
        client_auth(headers, form).ok_or_else(|| invalid_client("client authentication required"))?;
    let tenant = form.get("tenant").map(String::as_str).unwrap_or(crate::config::DEFAULT_TENANT);
    let agent = host
        .agents
        .authenticate(&secret)
        .await
        .map_err(|e| oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", e.to_string()))?
        .filter(|a| a.name == client_id && a.tenant == tenant);
    let Some(agent) = agent else {
        host.audit.record(auth_event(
            tenant,
            &format!("agent:{client_id}"),
            "denied",
            json!({
            "grant_type": "client_credentials", "reason": "unknown client or wrong secret" }),
        ));
        return Err(invalid_client("unknown client, wrong secret, or a revoked agent"));
    };
    let issued = host
        .identity
        .issue_agent_token(&agent.tenant, &agent.name, host.identity.issuer(), None)
        .await
        .map_err(|e| oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", e.to_string()))?;
    host.audit.record(auth_event(
        &agent.tenant,
        &agent.subject(),
        "issued",
        json!({
        "grant_type": "client_credentials", "expires_in": issued.expires_in }),
    ));
    Ok(success(json!(issued)))
}

async fn exchange(host: &Airlock, form: &HashMap<String, String>) -> Result<Response, Response> {
    let subject = field(form, "subject_token")?;
    let actor = field(form, "actor_token")?;
    for (name, ty) in
        [("subject_token_type", form.get("subject_token_type")), ("actor_token_type", form.get("actor_token_type"))]
    {
        match ty.map(String::as_str) {
            Some(airlock_identity::TOKEN_TYPE_ACCESS_TOKEN | airlock_identity::TOKEN_TYPE_JWT) => {}
            other => {
                return Err(oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    format!("`{name}` must be an access token or JWT token type, not `{}`", other.unwrap_or("")),
                ))
            }
        }
    }
    let audience = form.get("audience").map(String::as_str).unwrap_or(host.identity.issuer());
    // The identity crate checks the tokens; whether their agents are still live (and were when
    // the tokens were issued) only the host knows.
    let mut tenant = None;
    for token in [subject, actor] {
        if let Ok(v) = host.identity.verify(token, host.identity.issuer()).await {
            tenant = Some(v.tenant.clone());
            let live = super::auth::agents_live(host, &v)
                .await
                .map_err(|_| oauth_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "agent store"))?;
            if let Err(reason) = live {
                host.audit.record(auth_event(
                    &v.tenant,
                    "unknown",
                    "denied",
                    json!({ "grant_type": TOKEN_EXCHANGE, "reason": reason }),
                ));
                return Err(oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", reason));
            }
        }
    }
    match host.identity.exchange(subject, actor, audience, None).await {
        Ok(issued) => {
            if let Ok(v) = host.identity.verify(&issued.access_token, audience).await {
                let mut chain = vec![v.subject.clone()];
                chain.extend(v.act.iter().rev().cloned());
                host.audit.record(auth_event(
                    &v.tenant,
                    v.act.first().map(String::as_str).unwrap_or(""),
                    "delegated",
                    json!({ "grant_type": TOKEN_EXCHANGE, "chain": chain, "expires_in": issued.expires_in }),
                ));
            }
            Ok(success(json!(issued)))
        }
        Err(e) => {
            // Recorded in the tenant a token proved it belongs to; a refusal no token vouches
            // for belongs to no tenant's trail (it would leak into another tenant's).
            if let Some(tenant) = tenant {
                host.audit.record(auth_event(
                    &tenant,
                    "unknown",
                    "denied",
                    json!({ "grant_type": TOKEN_EXCHANGE, "reason": e.to_string() }),
                ));
            }
            Err(oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", e.to_string()))
        }
    }
}

async fn federated_connection(host: &Airlock, form: &HashMap<String, String>) -> Result<Response, Response> {
    let subject = field(form, "subject_token")?;
    let connection = field(form, "connection")?;
    if let Some(requested) = form.get("requested_token_type") {
        if requested != FEDERATED_TOKEN_TYPE {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("`requested_token_type` must be `{FEDERATED_TOKEN_TYPE}`"),
            ));
        }
    }
    let verified =
        host.identity.verify(subject, host.identity.issuer()).await.map_err(|e| {
            oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", format!("subject token refused: {e}"))
        })?;
    let Some(agent) = verified.agent.clone() else {
        return Err(oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "the subject token names no agent"));
    };
    let tenant = verified.tenant.clone();
    let mut chain: Vec<String> = Vec::new();
    if verified.user.is_some() {
        chain.push(verified.subject.clone());
        chain.extend(verified.act.iter().skip(1).rev().cloned());
    }
    chain.push(format!("agent:{agent}"));
    let outcome = async {
        super::auth::agents_live(host, &verified).await.map_err(|_| "agent store unavailable".to_string())??;
        let conn = host.vault.resolve(&tenant, &agent, connection).await.map_err(|e| e.to_string())?;
        let object = format!("connection:{}", conn.name);
        for who in &chain {
            match host.rebac.check_now(&tenant, who, "can_use", &object).await {
                Ok(true) => {}
                Ok(false) => return Err(format!("`{who}` is not `can_use` on `{object}`")),
                Err(e) => return Err(format!("authorization failed closed: {e}")),
            }
        }
        let (token, expires_at) = host.vault.token(&tenant, &conn.name).await.map_err(|e| e.to_string())?;
        Ok((conn.name, token, expires_at))
    }
    .await;
    match outcome {
        Ok((name, token, expires_at)) => {
            let expires_in = ((expires_at - airlock_store::now_millis()).max(0) / 1000) as u64;
            let mut full = chain.clone();
            full.push(format!("connection:{name}"));
            host.audit.record(airlock_audit::AuditEvent {
                tenant: tenant.clone(),
                kind: "vault.token".into(),
                outcome: "allowed".into(),
                agent: format!("agent:{agent}"),
                tool: String::new(),
                detail: json!({ "connection": name, "exposed": true, "expires_in": expires_in,
                                "grant_type": FEDERATED_CONNECTION, "chain": full }),
            });
            Ok(success(json!({ "access_token": token.as_str(), "issued_token_type": FEDERATED_TOKEN_TYPE,
                                "token_type": "Bearer", "expires_in": expires_in })))
        }
        Err(reason) => {
            host.audit.record(airlock_audit::AuditEvent {
                tenant,
                kind: "vault.token".into(),
                outcome: "denied".into(),
                agent: format!("agent:{agent}"),
                tool: String::new(),
                detail: json!({ "connection": connection, "grant_type": FEDERATED_CONNECTION, "reason": reason,
                                "chain": chain }),
            });
            Err(oauth_error(StatusCode::FORBIDDEN, "access_denied", reason))
        }
    }
}

fn auth_event(tenant: &str, who: &str, outcome: &str, detail: Value) -> airlock_audit::AuditEvent {
    airlock_audit::AuditEvent {
        tenant: tenant.into(),
        kind: "auth.token".into(),
        outcome: outcome.into(),
        agent: who.into(),
        tool: String::new(),
        detail,
    }
}

/// `GET /.well-known/jwks.json`.
pub(super) async fn jwks(State(host): State<Arc<Airlock>>) -> Response {
    match host.identity.jwks().await {
        Ok(keys) => Json(keys).into_response(),
        Err(e) => oauth_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", e.to_string()),
    }
}
