//! Passkeys for people: registration from an invitation, and the step-up of an approval.
//!
//! - `POST /v1/passkeys/register` `{code}` (public: the invitation code is the credential):
//!   spends the invitation (writing its relation, when it names one) and starts a WebAuthn
//!   registration: `{ceremony, options, origin}` for `navigator.credentials.create`;
//! - `POST /v1/passkeys/register/finish` `{ceremony, credential}`: stores the passkey;
//! - `POST /v1/approvals/{id}/step-up` (member): the options for `navigator.credentials.get`
//!   whose challenge commits to approval `id`'s exact action ([`crate::signin::proof`]); the
//!   assertion then goes with the decision.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use webauthn_rs::prelude::RegisterPublicKeyCredential;

use super::auth::TenantMember;
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Finish {
    ceremony: String,
    credential: RegisterPublicKeyCredential,
}

pub(super) async fn register_finish(
    State(host): Host,
    body: Result<Json<Finish>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
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
    Ok(Json(json!({ "tenant": tenant, "member": member, "registered": true })))
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
