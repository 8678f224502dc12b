//! `airlock login` over HTTP: the OAuth 2.0 device authorization grant (RFC 8628).
//!
//! - `POST /oauth/device_authorization` (form `client_id=airlock-cli`, `tenant`): a device
//!   code for the CLI, a user code and the URL for the person
//!   (`{device_code, user_code, verification_uri, verification_uri_complete, expires_in, interval}`);
//! - `POST /v1/device/confirm` `{user_code, confirm}` (a member's browser session): the
//!   signed-in person confirms (or refuses) the code their terminal shows;
//! - `POST /oauth/token` with `grant_type=urn:ietf:params:oauth:grant-type:device_code`:
//!   `authorization_pending`, `slow_down`, `access_denied`, `expired_token`, then once an API
//!   token carrying that person's relations, expiring in [`LOGIN_TOKEN_TTL_MS`].

use std::collections::HashMap;
use std::sync::Arc;

use airlock_store::now_millis;
use axum::extract::rejection::{FormRejection, JsonRejection};
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::auth::TenantMember;
use super::oauth::{field, oauth_error, success};
use super::ApiError;
use crate::signin::device::{Poll, INTERVAL_S, TTL_MS};
use crate::tenancy::NewToken;
use crate::Airlock;

/// RFC 8628's grant type.
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// The CLI's client id (a public client: the device code is its only secret).
pub const CLI_CLIENT: &str = "airlock-cli";
/// A login token's lifetime: a working day.
pub const LOGIN_TOKEN_TTL_MS: i64 = 12 * 60 * 60 * 1000;

/// `POST /oauth/device_authorization`.
pub(super) async fn authorize(
    State(host): State<Arc<Airlock>>,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "send a form-encoded body");
    };
    match field(&form, "client_id") {
        Ok(CLI_CLIENT) => {}
        Ok(other) => {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                format!("unknown client `{other}`: the CLI is `{CLI_CLIENT}`"),
            )
        }
        Err(resp) => return resp,
    }
    let tenant =
        form.get("tenant").map(String::as_str).filter(|t| !t.is_empty()).unwrap_or(crate::config::DEFAULT_TENANT);
    if let Err(why) = super::auth::known_tenant(&host, tenant).await {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", why);
    }
    let started = match host.people.device_logins.start(tenant).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("device login store: {e}");
            return oauth_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the login store is unavailable",
            );
        }
    };
    let uri = format!("{}/console/device", host.people.passkeys.origin());
    success(json!({
        "device_code": started.device_code, "user_code": started.user_code,
        "verification_uri": uri, "verification_uri_complete": format!("{uri}#{}", started.user_code),
        "expires_in": TTL_MS / 1000, "interval": INTERVAL_S, "tenant": tenant,
    }))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Confirm {
    user_code: String,
    #[serde(default = "yes")]
    confirm: bool,
}

fn yes() -> bool {
    true
}

/// `POST /v1/device/confirm`: the command-line login answered.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct DeviceLoginAnswered {
    /// `confirmed` or `denied`.
    login: &'static str,
    /// The person who answered (`user:NAME`), whose relations the login's token will carry.
    member: String,
    tenant: String,
}

/// `POST /v1/device/confirm`: only a person signed in in a browser confirms a login (a token
/// cannot mint itself another).
pub(super) async fn confirm(
    State(host): State<Arc<Airlock>>,
    headers: HeaderMap,
    TenantMember(m): TenantMember,
    body: Result<Json<Confirm>, JsonRejection>,
) -> Result<Json<DeviceLoginAnswered>, ApiError> {
    if crate::signin::sessions::cookie_secret(&headers).is_none() || super::auth::bearer(&headers).is_some() {
        return Err(ApiError::forbidden("confirm a command-line login from your signed-in browser, not with a token"));
    }
    if !m.subject.starts_with("user:") {
        return Err(ApiError::forbidden("only a person logs in on the command line"));
    }
    let Json(b) = body?;
    let answered = host
        .people
        .device_logins
        .answer(&b.user_code, &m.tenant, &m.subject, b.confirm)
        .await
        .map_err(|e| ApiError::internal("device login store", e))?;
    if !answered {
        return Err(ApiError::not_found(format!(
            "no login waiting with code `{}` in tenant `{}` (mistyped, answered, or expired): run `airlock login` again",
            b.user_code.chars().take(16).collect::<String>(),
            m.tenant
        )));
    }
    let outcome = if b.confirm { "confirmed" } else { "denied" };
    host.audit.record(m.event("login.device", outcome, "", json!({ "user_code": b.user_code })));
    Ok(Json(DeviceLoginAnswered { login: outcome, member: m.subject, tenant: m.tenant }))
}

/// The device-code grant of `POST /oauth/token`.
pub(super) async fn token(host: &Airlock, form: &HashMap<String, String>) -> Result<Response, Response> {
    let device_code = field(form, "device_code")?;
    let unavailable = |e: airlock_store::sqlx::Error| {
        tracing::error!("device login store: {e}");
        oauth_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "the login store is unavailable")
    };
    let polled = host.people.device_logins.poll(device_code).await.map_err(unavailable)?;
    let (tenant, member) = match polled {
        None => {
            return Err(oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "unknown or already used device code"))
        }
        Some(Poll::Pending) => {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "authorization_pending",
                "the person has not confirmed yet",
            ))
        }
        Some(Poll::SlowDown) => {
            return Err(oauth_error(StatusCode::BAD_REQUEST, "slow_down", format!("poll every {INTERVAL_S} s")))
        }
        Some(Poll::Denied) => return Err(oauth_error(StatusCode::BAD_REQUEST, "access_denied", "the person refused")),
        Some(Poll::Expired) => {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "expired_token",
                "the code expired: run `airlock login` again",
            ))
        }
        Some(Poll::Confirmed { tenant, member }) => (tenant, member),
    };
    let name = format!("login-{}", &crate::tenancy::digest(device_code)[..10]);
    let new = NewToken {
        name: name.clone(),
        member: Some(member.clone()),
        role: None,
        expires_at: Some(now_millis() + LOGIN_TOKEN_TTL_MS),
        created_by: format!("airlock login confirmed by {member}"),
    };
    let (token, _) = host.people.tokens.create(Some(&tenant), &new).await.map_err(|e| {
        tracing::error!("login token: {e}");
        oauth_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "the token store is unavailable")
    })?;
    host.audit.record(airlock_audit::AuditEvent {
        tenant: tenant.clone(),
        kind: "login.token".into(),
        outcome: "ok".into(),
        agent: member.clone(),
        tool: String::new(),
        detail: json!({ "token": name, "via": "device authorization" }),
    });
    Ok(success(json!({ "access_token": token, "token_type": "Bearer", "expires_in": LOGIN_TOKEN_TTL_MS / 1000,
                       "tenant": tenant, "member": member, "token_name": name })))
}
