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

/// `POST /v1/passkeys/register`: a started passkey registration, and who it is for.
#[derive(serde::Serialize, schemars::JsonSchema)]
#[schemars(rename = "PasskeyRegisterStarted")]
pub(crate) struct RegisterStarted {
    /// The ceremony's id, sent back with the new passkey to `/v1/passkeys/register/finish`.
    ceremony: String,
    /// WebAuthn PublicKeyCredentialCreationOptions (`{publicKey: ...}`), as
    /// `navigator.credentials.create` takes them.
    #[schemars(with = "serde_json::Map<String, serde_json::Value>")]
    options: Value,
    /// The origin the browser signs for.
    origin: String,
    tenant: String,
    /// `user:NAME`.
    member: String,
    /// The relation the invitation wrote on `tenant:T`; empty for one that only registers a passkey.
    role: String,
}

pub(super) async fn register(
    State(host): Host,
    body: Result<Json<Register>, JsonRejection>,
) -> Result<Json<RegisterStarted>, ApiError> {
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
    Ok(Json(RegisterStarted {
        ceremony: started.ceremony,
        options: started.options,
        origin: host.people.passkeys.origin().to_string(),
        tenant: inv.tenant,
        member: inv.member,
        role: inv.relation,
    }))
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
    signed_in(&host, &tenant, &member, "passkey registration", Some(true)).await
}

/// `POST /v1/passkeys/register/finish`, `POST /v1/signin/passkey/finish`: the session started
/// (its cookie set alongside).
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct SessionStarted {
    tenant: String,
    /// `user:NAME`.
    member: String,
    /// The session's CSRF token, sent as `X-CSRF-Token` with every request that changes something.
    csrf: String,
    /// `true` once a passkey was registered; absent after a sign-in.
    #[serde(skip_serializing_if = "Option::is_none")]
    registered: Option<bool>,
}

/// Starts a session for a person who just proved who they are: the cookie, and the CSRF
/// token in the body (with `registered`, when given).
async fn signed_in(
    host: &Airlock,
    tenant: &str,
    member: &str,
    via: &str,
    registered: Option<bool>,
) -> Result<Response, ApiError> {
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
    let body = SessionStarted {
        tenant: tenant.to_string(),
        member: member.to_string(),
        csrf: started.session.csrf,
        registered,
    };
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

/// `POST /v1/signin/passkey`: a started passkey sign-in.
#[derive(serde::Serialize, schemars::JsonSchema)]
#[schemars(rename = "PasskeySignInStarted")]
pub(crate) struct SignInStarted {
    /// The ceremony's id, sent back with the assertion to `/v1/signin/passkey/finish`.
    ceremony: String,
    /// WebAuthn PublicKeyCredentialRequestOptions (`{publicKey: ...}`), as
    /// `navigator.credentials.get` takes them.
    #[schemars(with = "serde_json::Map<String, serde_json::Value>")]
    options: Value,
    /// The origin the browser signs for.
    origin: String,
}

/// `POST /v1/signin/passkey`: the options for `navigator.credentials.get`.
pub(super) async fn sign_in(
    State(host): Host,
    body: Result<Json<SignIn>, JsonRejection>,
) -> Result<Json<SignInStarted>, ApiError> {
    let Json(b) = body?;
    if b.tenant.len() > 64 || b.member.len() > 128 {
        return Err(ApiError::bad_request("`tenant` is at most 64 characters, `member` at most 128"));
    }
    let member = if b.member.starts_with("user:") { b.member } else { format!("user:{}", b.member) };
    let started = host.people.passkeys.start_sign_in(&b.tenant, &member).await?;
    Ok(Json(SignInStarted {
        ceremony: started.ceremony,
        options: started.options,
        origin: host.people.passkeys.origin().to_string(),
    }))
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
    signed_in(&host, &tenant, &member, "passkey", None).await
}

/// `GET /v1/session`: the browser session: member, tenant, CSRF token.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct SessionInfo {
    tenant: String,
    /// `user:NAME`.
    member: String,
    /// The session's CSRF token, sent as `X-CSRF-Token` with every request that changes something.
    csrf: String,
}

/// `GET /v1/session`: the session's member and CSRF token (a page that reloads asks again).
pub(super) async fn session(
    State(host): Host,
    headers: HeaderMap,
    TenantMember(m): TenantMember,
) -> Result<Json<SessionInfo>, ApiError> {
    let Some(cookie) = crate::signin::sessions::cookie_secret(&headers) else {
        return Err(ApiError::bad_request("this request has no session (it used a token): nothing to show"));
    };
    let found = host.people.sessions.authenticate(cookie).await.map_err(|e| ApiError::internal("session store", e))?;
    let s = found.ok_or_else(|| ApiError::unauthenticated("your session ended: sign in again"))?;
    Ok(Json(SessionInfo { tenant: m.tenant, member: m.subject, csrf: s.csrf }))
}

/// `POST /v1/signout`: the session ended (its cookie cleared alongside).
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct SignedOut {
    /// Always `true`.
    signed_out: bool,
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
    Ok(([(header::SET_COOKIE, host.people.sessions.cleared())], Json(SignedOut { signed_out: true })).into_response())
}

/// `DELETE /v1/members/{name}`: the member removed, and what went with them.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct MemberRemoved {
    /// `user:NAME`.
    member: String,
    /// The relations on `tenant:T` they held, now deleted.
    relations: Vec<String>,
    /// How many of their API tokens were revoked.
    tokens: u64,
    /// How many of their browser sessions were ended.
    sessions: u64,
    /// How many of their passkeys were forgotten.
    passkeys: u64,
}

/// `DELETE /v1/members/{name}`: a person leaves the tenant. Their relations on `tenant:T` go,
/// and with them every token, session and passkey they had here, in one step.
pub(super) async fn remove_member(
    State(host): Host,
    TenantAdmin(m): TenantAdmin,
    Path(name): Path<String>,
) -> Result<Json<MemberRemoved>, ApiError> {
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
    let relations: Vec<String> = held.iter().map(|t| t.relation.clone()).collect();
    let removed = MemberRemoved { member, relations, tokens, sessions, passkeys };
    host.audit.record(m.event("member.remove", "ok", "", json!(removed)));
    Ok(Json(removed))
}

/// `POST /v1/approvals/{id}/step-up`: a started step-up, and the action its challenge commits to.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct StepUpStarted {
    /// The ceremony's id, sent back with the assertion and the decision.
    ceremony: String,
    /// WebAuthn PublicKeyCredentialRequestOptions (`{publicKey: ...}`), as
    /// `navigator.credentials.get` takes them; the challenge commits to `action`.
    #[schemars(with = "serde_json::Map<String, serde_json::Value>")]
    options: Value,
    /// The origin the browser signs for.
    origin: String,
    /// Hex sha256 of `action` as canonical JSON.
    digest: String,
    /// The exact action approved (tenant, approval, agent, tool, action, args_digest, role,
    /// call, run, expires_at).
    #[schemars(with = "serde_json::Map<String, serde_json::Value>")]
    action: Value,
    /// The approval's summary, for the person to read.
    text: String,
}

/// `POST /v1/approvals/{id}/step-up`: the member must be one who may decide it.
pub(super) async fn step_up(
    State(host): Host,
    TenantMember(m): TenantMember,
    Path(id): Path<String>,
) -> Result<Json<StepUpStarted>, ApiError> {
    let pending = host.approvals.get(&m.tenant, &id).await?;
    super::approvals::may_decide(&host, &m, &pending).await?;
    let binding = ActionBinding::of(&pending);
    let started = host.people.passkeys.start_step_up(&m.tenant, &m.subject, &id, &binding).await?;
    Ok(Json(StepUpStarted {
        ceremony: started.ceremony,
        options: started.options,
        origin: host.people.passkeys.origin().to_string(),
        digest: binding.digest(),
        action: binding.0,
        text: pending.summary,
    }))
}
