//! People in a browser: passkey registration from an invitation, passkey sign-in, sessions,
//! and the step-up of an approval.
//!
//! - `POST /v1/passkeys/register` `{code}` (public: the invitation code is the credential):
//!   spends the invitation (writing its relation, when it names one) and starts a WebAuthn
//!   registration: `{ceremony, options, origin}` for `navigator.credentials.create`;
//! - `POST /v1/passkeys/register/finish` `{ceremony, credential}`: stores the passkey and
//!   signs the person in (a session cookie, and `csrf` for `X-CSRF-Token`);
//! - `POST /v1/signin/passkey` `{tenant, member}` then `/finish` `{ceremony, credential}`:
//!   a passkey sign-in, ending in a session;
//! - `GET /v1/session` (member): who the session is, and its CSRF token (for a page reload);
//! - `POST /v1/signout` (member): ends the session;
//! - `DELETE /v1/members/{name}` (admin): removes a person from the tenant: their relations on
//!   `tenant:T`, tokens, sessions and passkeys, at once;
//! - `POST /v1/approvals/{id}/step-up` (member): the options for `navigator.credentials.get`
//!   whose challenge commits to approval `id`'s exact action ([`crate::signin::proof`]); the
//!   assertion then goes with the decision.

use std::sync::Arc;

use airlock_rebac::Tuple;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use webauthn_rs::prelude::{PublicKeyCredential, RegisterPublicKeyCredential};

use super::auth::{TenantAdmin, TenantMember};
use super::ApiError;
use crate::signin::{ActionBinding, SigninError};
use crate::tenancy::TenancyError;
use crate::Airlock;

type Host = State<Arc<Airlock>>;

impl From<SigninError> for ApiError {
    fn from(e: SigninError) -> ApiError {
        match e {
            SigninError::Invalid(m) => ApiError::bad_request(m),
            SigninError::Refused(m) => ApiError::forbidden(m),
            SigninError::NoPasskey(m) => ApiError::new(axum::http::StatusCode::CONFLICT, "no_passkey", m),
            SigninError::AlreadyProved(m) => ApiError::conflict(m),
            SigninError::Store(e) => ApiError::internal("passkey store", e),
        }
    }
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "PasskeyRegister")]
pub(super) struct Register {
    code: String,
}

pub(super) async fn register(
    State(host): Host,
    body: Result<Json<Register>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(b) = body?;
    let mut tx = host.db.pool().begin().await.map_err(TenancyError::from)?;
    let inv = super::tenants::redeem_in(&host, &mut tx, &b.code).await?;
    tx.commit().await.map_err(TenancyError::from)?;
    host.rebac.refresh(&inv.tenant).await?;
    let via = format!("invitation {} by {}", &crate::tenancy::digest(&b.code)[..12], inv.created_by);
    let started = host.people.passkeys.start_registration(&inv.tenant, &inv.member, &via).await?;
    host.audit.record(airlock_audit::AuditEvent {
        tenant: inv.tenant.clone(),
        kind: "invitation.accept".into(),
        outcome: "ok".into(),
        agent: inv.member.clone(),
        tool: String::new(),
        detail: json!({ "relation": inv.relation, "invited_by": inv.created_by, "passkey": "registering" }),
    });
    Ok(Json(json!({ "ceremony": started.ceremony, "options": started.options, "origin": host.people.passkeys.origin(),
                    "tenant": inv.tenant, "member": inv.member, "role": inv.relation })))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "PasskeyRegisterFinish")]
pub(super) struct Finish {
    ceremony: String,
    /// The new passkey (WebAuthn `PublicKeyCredential` from `navigator.credentials.create`, as JSON).
    #[schemars(with = "serde_json::Map<String, serde_json::Value>")]
    credential: RegisterPublicKeyCredential,
}

pub(super) async fn register_finish(
    State(host): Host,
    body: Result<Json<Finish>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(b) = body?;
    let (tenant, member) = host.people.passkeys.finish_registration(&b.ceremony, &b.credential).await?;
    host.audit.record(airlock_audit::AuditEvent {
        tenant: tenant.clone(),
        kind: "passkey.register".into(),
        outcome: "ok".into(),
        agent: member.clone(),
        tool: String::new(),
        detail: json!({ "credential": hex::encode(b.credential.raw_id.as_slice()) }),
    });
    signed_in(&host, &tenant, &member, "passkey registration", json!({ "registered": true })).await
}

/// Starts a session for a person who just proved who they are: the cookie, and the CSRF
/// token in the body (with `extra`).
async fn signed_in(host: &Airlock, tenant: &str, member: &str, via: &str, extra: Value) -> Result<Response, ApiError> {
    let started =
        host.people.sessions.start(tenant, member, via).await.map_err(|e| ApiError::internal("session store", e))?;
    host.audit.record(airlock_audit::AuditEvent {
        tenant: tenant.into(),
        kind: "session.start".into(),
        outcome: "ok".into(),
        agent: member.into(),
        tool: String::new(),
        detail: json!({ "via": via }),
    });
    let mut body = json!({ "tenant": tenant, "member": member, "csrf": started.session.csrf });
    if let (Some(b), Value::Object(more)) = (body.as_object_mut(), extra) {
        b.extend(more);
    }
    let cookie = host.people.sessions.cookie(&started.secret);
    Ok(([(header::SET_COOKIE, cookie)], Json(body)).into_response())
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "PasskeySignIn")]
pub(super) struct SignIn {
    tenant: String,
    /// `carol` or `user:carol`.
    member: String,
}

/// `POST /v1/signin/passkey`: the options for `navigator.credentials.get`.
pub(super) async fn sign_in(
    State(host): Host,
    body: Result<Json<SignIn>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(b) = body?;
    if b.tenant.len() > 64 || b.member.len() > 128 {
        return Err(ApiError::bad_request("`tenant` is at most 64 characters, `member` at most 128"));
    }
    let member = if b.member.starts_with("user:") { b.member } else { format!("user:{}", b.member) };
    let started = host.people.passkeys.start_sign_in(&b.tenant, &member).await?;
    Ok(Json(
        json!({ "ceremony": started.ceremony, "options": started.options, "origin": host.people.passkeys.origin() }),
    ))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "PasskeySignInFinish")]
pub(super) struct SignInFinish {
    ceremony: String,
    /// The passkey assertion (WebAuthn `PublicKeyCredential` from `navigator.credentials.get`, as JSON).
    #[schemars(with = "serde_json::Map<String, serde_json::Value>")]
    credential: PublicKeyCredential,
}

/// `POST /v1/signin/passkey/finish`: a verified assertion starts a session.
pub(super) async fn sign_in_finish(
    State(host): Host,
    body: Result<Json<SignInFinish>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(b) = body?;
    let (tenant, member) = host.people.passkeys.finish_sign_in(&b.ceremony, &b.credential).await?;
    signed_in(&host, &tenant, &member, "passkey", json!({})).await
}

/// `GET /v1/session`: the session's member and CSRF token (a page that reloads asks again).
pub(super) async fn session(
    State(host): Host,
    headers: HeaderMap,
    TenantMember(m): TenantMember,
) -> Result<Json<Value>, ApiError> {
    let Some(cookie) = crate::signin::sessions::cookie_secret(&headers) else {
        return Err(ApiError::bad_request("this request has no session (it used a token): nothing to show"));
    };
    let found = host.people.sessions.authenticate(cookie).await.map_err(|e| ApiError::internal("session store", e))?;
    let s = found.ok_or_else(|| ApiError::unauthenticated("your session ended: sign in again"))?;
    Ok(Json(json!({ "tenant": m.tenant, "member": m.subject, "csrf": s.csrf })))
}

/// `POST /v1/signout`: ends this browser's session.
pub(super) async fn sign_out(
    State(host): Host,
    headers: HeaderMap,
    TenantMember(m): TenantMember,
) -> Result<Response, ApiError> {
    let Some(cookie) = crate::signin::sessions::cookie_secret(&headers) else {
        return Err(ApiError::bad_request(
            "this request has no session to end (it used a token): revoke a token with `airlock token revoke NAME`",
        ));
    };
    host.people.sessions.end(cookie).await.map_err(|e| ApiError::internal("session store", e))?;
    host.audit.record(m.event("session.end", "ok", "", json!({ "via": "sign-out" })));
    Ok(([(header::SET_COOKIE, host.people.sessions.cleared())], Json(json!({ "signed_out": true }))).into_response())
}

/// `DELETE /v1/members/{name}`: a person leaves the tenant. Their relations on `tenant:T` go,
/// and with them every token, session and passkey they had here, in one step.
pub(super) async fn remove_member(
    State(host): Host,
    TenantAdmin(m): TenantAdmin,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let member = if name.starts_with("user:") { name } else { format!("user:{name}") };
    crate::tenancy::validate_member(&member)?;
    let object = format!("tenant:{}", m.tenant);
    let held: Vec<Tuple> =
        host.rebac.read(&m.tenant, Some(&object)).await?.into_iter().filter(|t| t.subject == member).collect();
    let options = airlock_rebac::writes::WriteOptions { ignore_duplicates: true, ignore_missing: true };
    if !held.is_empty() {
        host.rebac.write_tuples(&m.tenant, &[], &held, options).await?;
    }
    let tokens = host.people.tokens.revoke_member(&m.tenant, &member).await?;
    let sessions = host
        .people
        .sessions
        .end_all_of(&m.tenant, &member)
        .await
        .map_err(|e| ApiError::internal("session store", e))?;
    let passkeys = host.people.passkeys.forget_member(&m.tenant, &member).await?;
    if held.is_empty() && tokens == 0 && sessions == 0 && passkeys == 0 {
        return Err(ApiError::not_found(format!("`{member}` is not a member of tenant `{}`", m.tenant)));
    }
    let relations: Vec<&str> = held.iter().map(|t| t.relation.as_str()).collect();
    let detail = json!({ "member": member, "relations": relations, "tokens": tokens, "sessions": sessions, "passkeys": passkeys });
    host.audit.record(m.event("member.remove", "ok", "", detail.clone()));
    Ok(Json(detail))
}

/// `POST /v1/approvals/{id}/step-up`: the member must be one who may decide it.
pub(super) async fn step_up(
    State(host): Host,
    TenantMember(m): TenantMember,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let pending = host.approvals.get(&m.tenant, &id).await?;
    super::approvals::may_decide(&host, &m, &pending).await?;
    let binding = ActionBinding::of(&pending);
    let started = host.people.passkeys.start_step_up(&m.tenant, &m.subject, &id, &binding).await?;
    Ok(Json(json!({ "ceremony": started.ceremony, "options": started.options, "origin": host.people.passkeys.origin(),
                    "digest": binding.digest(), "action": binding.0, "text": pending.summary })))
}
