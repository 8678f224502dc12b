//! Tenants, their members' tokens and invitations.
//!
//! The operator's (host-wide):
//! - `GET /v1/tenants`, `POST /v1/tenants` `{name, admin?}` (with `admin: "user:alice"`, a
//!   one-time invitation for alice to be its admin), `DELETE /v1/tenants/{tenant}`;
//! - `POST /v1/tenants/{tenant}/invitations` `{member, role}`: invites someone (the operator
//!   too) into a tenant, audited in that tenant's trail;
//! - `GET|POST /v1/operator/tokens`, `DELETE /v1/operator/tokens/{name}`: operator API tokens.
//!
//! A tenant admin's:
//! - `GET|POST /v1/tokens`, `DELETE /v1/tokens/{name}`: named API tokens, with a fixed `role`
//!   or carrying a member's relations (`as_member`), expiring (`expires_in_seconds`, default
//!   90 days); stored hashed, listed with their last use, revoked at once;
//! - `POST /v1/invitations` `{member, role}`.
//!
//! Anyone's: `POST /v1/invitations/accept` `{code}` redeems an invitation once: the member's
//! relation is written and a token carrying it returned. `GET /v1/me`: who a member token is.

use std::sync::Arc;

use airlock_rebac::Tuple;
use airlock_store::now_millis;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::auth::{Operator, TenantAdmin, TenantMember};
use super::ApiError;
use crate::tenancy::{NewToken, TenancyError, TenantInfo, TokenInfo};
use crate::Airlock;

type Host = State<Arc<Airlock>>;

/// How long an invitation may be redeemed, unless asked otherwise.
const INVITATION_TTL_MS: i64 = 7 * 24 * 3600 * 1000;
/// How long an API token lives, unless asked otherwise.
const TOKEN_TTL_SECONDS: i64 = 90 * 24 * 3600;

#[derive(Deserialize, schemars::JsonSchema, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewTenant {
    pub(crate) name: String,
    /// `user:NAME`: invited to be the tenant's first admin.
    pub(crate) admin: Option<String>,
}

/// `GET /v1/tenants`: every tenant.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct TenantList {
    tenants: Vec<TenantInfo>,
}

pub(super) async fn list(State(host): Host, _: Operator) -> Result<Json<TenantList>, ApiError> {
    let listed = host.people.tenants.list().await?;
    Ok(Json(TenantList { tenants: listed }))
}

/// `POST /v1/tenants`: the new tenant, and its first admin's invitation when one was asked.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct TenantCreated {
    tenant: TenantInfo,
    /// The first admin's invitation; absent without `admin`.
    #[serde(skip_serializing_if = "Option::is_none")]
    invitation: Option<IssuedInvitation>,
}

pub(super) async fn create(
    State(host): Host,
    operator: Operator,
    body: Result<Json<NewTenant>, JsonRejection>,
) -> Result<(StatusCode, Json<TenantCreated>), ApiError> {
    let Json(b) = body?;
    if let Some(admin) = &b.admin {
        // Checked before the tenant exists, so a bad name leaves nothing behind.
        crate::tenancy::validate_member(admin)?;
    }
    let tenant = host.people.tenants.create(&b.name).await?;
    host.audit.record(operator.event("tenant.create", "ok", "", json!({ "tenant": tenant.name })));
    let invitation = match &b.admin {
        Some(admin) => Some(
            invite_for(&host, &tenant.name, admin, "admin", &format!("operator:{}", operator.0), INVITATION_TTL_MS)
                .await?,
        ),
        None => None,
    };
    Ok((StatusCode::CREATED, Json(TenantCreated { tenant, invitation })))
}

/// `DELETE /v1/tenants/{tenant}`: the tenant deleted; its audit chain is kept.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct TenantDeleted {
    /// The tenant's name.
    deleted: String,
    /// What became of its audit chain.
    audit: &'static str,
}

pub(super) async fn delete(
    State(host): Host,
    operator: Operator,
    Path(tenant): Path<String>,
) -> Result<Json<TenantDeleted>, ApiError> {
    if !host.delete_tenant(&tenant, &format!("operator:{}", operator.0)).await? {
        return Err(ApiError::not_found(format!("no tenant `{}`", tenant.chars().take(64).collect::<String>())));
    }
    Ok(Json(TenantDeleted { deleted: tenant, audit: "kept, sealed by its last event `tenant.delete`" }))
}

#[derive(Deserialize, schemars::JsonSchema, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewInvitation {
    pub(crate) member: String,
    /// The relation the member gets on `tenant:T`; absent for an existing member who only
    /// registers a passkey (signs in) with it.
    #[serde(default)]
    pub(crate) role: String,
    pub(crate) tenant: Option<String>,
    /// How long it may be redeemed; 7 days when absent.
    pub(crate) expires_in_seconds: Option<i64>,
}

/// An invitation just made: its code (shown once) and how to redeem it.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct IssuedInvitation {
    /// The one-time code (shown once).
    code: String,
    /// `user:NAME`.
    member: String,
    /// The relation the member gets on `tenant:T`; empty for an existing member who only
    /// registers a passkey with it.
    role: String,
    tenant: String,
    /// Unix milliseconds; it may be redeemed until then.
    expires_at: i64,
    /// How to redeem it for an API token.
    accept: &'static str,
    /// The page where the invited person registers a passkey with it.
    register_passkey: String,
}

/// `POST /v1/tenants/{tenant}/invitations`, `POST /v1/invitations`: the invitation made.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct InvitationCreated {
    invitation: IssuedInvitation,
}

/// Makes an invitation and what shows it (its code, once). Audited in the tenant.
async fn invite_for(
    host: &Airlock,
    tenant: &str,
    member: &str,
    role: &str,
    by: &str,
    ttl_ms: i64,
) -> Result<IssuedInvitation, ApiError> {
    let (code, inv) = host.people.invitations.create(tenant, member, role, by, ttl_ms).await?;
    host.audit.record(airlock_audit::AuditEvent {
        tenant: tenant.into(),
        kind: "invitation.create".into(),
        outcome: "ok".into(),
        agent: by.into(),
        tool: String::new(),
        detail: json!({ "member": member, "role": role, "expires_at": inv.expires_at }),
    });
    let register_passkey = format!("{}/signin/register#{code}", host.people.passkeys.origin());
    Ok(IssuedInvitation {
        code,
        member: member.to_string(),
        role: role.to_string(),
        tenant: tenant.to_string(),
        expires_at: inv.expires_at,
        accept: "POST /v1/invitations/accept {\"code\": ...} (CLI: `airlock invitation accept CODE`)",
        register_passkey,
    })
}

fn ttl_ms(seconds: Option<i64>) -> Result<i64, ApiError> {
    match seconds {
        None => Ok(INVITATION_TTL_MS),
        Some(s) if (60..=30 * 24 * 3600).contains(&s) => Ok(s * 1000),
        Some(_) => Err(ApiError::bad_request("`expires_in_seconds` of an invitation is 60 to 2592000 (30 days)")),
    }
}

/// `POST /v1/tenants/{tenant}/invitations` (operator): how an operator brings a person (or
/// themself) into a tenant; the tenant's trail shows it.
pub(super) async fn operator_invite(
    State(host): Host,
    operator: Operator,
    Path(tenant): Path<String>,
    body: Result<Json<NewInvitation>, JsonRejection>,
) -> Result<(StatusCode, Json<InvitationCreated>), ApiError> {
    let Json(b) = body?;
    if !host.people.tenants.exists(&tenant).await? {
        return Err(ApiError::not_found(format!("no tenant `{}`", tenant.chars().take(64).collect::<String>())));
    }
    let ttl = ttl_ms(b.expires_in_seconds)?;
    let inv = invite_for(&host, &tenant, &b.member, &b.role, &format!("operator:{}", operator.0), ttl).await?;
    Ok((StatusCode::CREATED, Json(InvitationCreated { invitation: inv })))
}

/// `POST /v1/invitations` (tenant admin).
pub(super) async fn admin_invite(
    State(host): Host,
    TenantAdmin(m): TenantAdmin,
    body: Result<Json<NewInvitation>, JsonRejection>,
) -> Result<(StatusCode, Json<InvitationCreated>), ApiError> {
    let Json(b) = body?;
    let tenant = m.scope(b.tenant.as_deref())?;
    let ttl = ttl_ms(b.expires_in_seconds)?;
    let inv = invite_for(&host, tenant, &b.member, &b.role, &m.subject, ttl).await?;
    Ok((StatusCode::CREATED, Json(InvitationCreated { invitation: inv })))
}

/// Spends invitation `code` inside `tx` and writes the member's relation on `tenant:T` (none
/// for an invitation that only lets an existing member register a passkey).
pub(super) async fn redeem_in(
    host: &Airlock,
    tx: &mut airlock_store::sqlx::Transaction<'_, airlock_store::sqlx::Any>,
    code: &str,
) -> Result<crate::tenancy::Invitation, ApiError> {
    if code.len() > 128 {
        return Err(ApiError::bad_request("an invitation code is at most 128 characters"));
    }
    let inv = host.people.invitations.redeem_in(tx, code).await?;
    if inv.relation.is_empty() {
        return Ok(inv);
    }
    let tuple = Tuple::new(format!("tenant:{}", inv.tenant), &inv.relation, &inv.member);
    host.rebac.stage_in(tx, &inv.tenant, None, std::slice::from_ref(&tuple), &[]).await.map_err(|e| {
        ApiError::bad_request(format!(
            "the tenant's authorization model does not allow `{} {} tenant:{}`: {e}. A tenant admin adds `type tenant` \
             with that relation to the model",
            inv.member, inv.relation, inv.tenant
        ))
    })?;
    Ok(inv)
}

#[derive(Deserialize, schemars::JsonSchema, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Accept {
    pub(crate) code: String,
}

/// `POST /v1/invitations/accept`: the invitation redeemed, and the member's new API token.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct InvitationAccepted {
    tenant: String,
    /// `user:NAME`.
    member: String,
    /// The relation written on `tenant:T`; empty for an invitation that only registers a passkey.
    role: String,
    /// The API token's secret (shown once).
    token: String,
    /// The token's name, as `GET /v1/tokens` lists it.
    token_name: String,
    /// Unix milliseconds; null: it does not expire.
    expires_at: Option<i64>,
}

/// `POST /v1/invitations/accept`: the code is the credential. One transaction spends the
/// invitation, writes `member relation tenant:T` and makes the member's token.
pub(super) async fn accept(
    State(host): Host,
    body: Result<Json<Accept>, JsonRejection>,
) -> Result<Json<InvitationAccepted>, ApiError> {
    let Json(b) = body?;
    let mut tx = host.db.pool().begin().await.map_err(TenancyError::from)?;
    let inv = redeem_in(&host, &mut tx, &b.code).await?;
    let name = format!("{}-{}", inv.member.trim_start_matches("user:"), &crate::tenancy::digest(&b.code)[..6])
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c.to_ascii_lowercase() } else { '-' })
        .take(64)
        .collect::<String>();
    let new = NewToken {
        name,
        member: Some(inv.member.clone()),
        role: None,
        expires_at: Some(now_millis() + TOKEN_TTL_SECONDS * 1000),
        created_by: format!("invitation of {}", inv.created_by),
    };
    let (token, info) = host.people.tokens.create_in(&mut tx, Some(&inv.tenant), &new).await?;
    tx.commit().await.map_err(TenancyError::from)?;
    host.rebac.refresh(&inv.tenant).await?;
    host.audit.record(airlock_audit::AuditEvent {
        tenant: inv.tenant.clone(),
        kind: "invitation.accept".into(),
        outcome: "ok".into(),
        agent: inv.member.clone(),
        tool: String::new(),
        detail: json!({ "relation": inv.relation, "invited_by": inv.created_by, "token": info.name }),
    });
    Ok(Json(InvitationAccepted {
        tenant: inv.tenant,
        member: inv.member,
        role: inv.relation,
        token,
        token_name: info.name,
        expires_at: info.expires_at,
    }))
}

#[derive(Deserialize, schemars::JsonSchema, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateToken {
    pub(crate) name: String,
    pub(crate) role: Option<String>,
    pub(crate) as_member: Option<String>,
    pub(crate) tenant: Option<String>,
    /// Seconds from now; 90 days when absent; `0` for a token that does not expire.
    pub(crate) expires_in_seconds: Option<i64>,
}

fn expiry(seconds: Option<i64>) -> Result<Option<i64>, ApiError> {
    match seconds.unwrap_or(TOKEN_TTL_SECONDS) {
        0 => Ok(None),
        s if s > 0 => Ok(Some(now_millis().saturating_add(s.saturating_mul(1000)))),
        _ => Err(ApiError::bad_request("`expires_in_seconds` must be positive (0: never expires)")),
    }
}

/// `POST /v1/tokens`, `POST /v1/operator/tokens`: the new API token, its secret shown once.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct TokenCreated {
    /// The token's secret (shown once; only its hash is kept).
    token: String,
    /// The token as listed.
    info: TokenInfo,
}

/// `GET /v1/tokens`, `GET /v1/operator/tokens`: the API tokens, revoked ones included, newest first.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct TokenList {
    tokens: Vec<TokenInfo>,
}

/// `DELETE /v1/tokens/{name}`, `DELETE /v1/operator/tokens/{name}`: the token revoked.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct TokenRevoked {
    /// The token's name.
    revoked: String,
    /// How many live tokens of that name were revoked.
    tokens: u64,
}

/// `POST /v1/tokens` (tenant admin).
pub(super) async fn create_token(
    State(host): Host,
    TenantAdmin(m): TenantAdmin,
    body: Result<Json<CreateToken>, JsonRejection>,
) -> Result<(StatusCode, Json<TokenCreated>), ApiError> {
    let Json(b) = body?;
    let tenant = m.scope(b.tenant.as_deref())?;
    let new = NewToken {
        name: b.name,
        member: b.as_member,
        role: b.role,
        expires_at: expiry(b.expires_in_seconds)?,
        created_by: m.subject.clone(),
    };
    let (token, info) = host.people.tokens.create(Some(tenant), &new).await?;
    host.audit.record(m.event("token.create", "ok", "", json!({ "token": info })));
    Ok((StatusCode::CREATED, Json(TokenCreated { token, info })))
}

pub(super) async fn list_tokens(State(host): Host, TenantAdmin(m): TenantAdmin) -> Result<Json<TokenList>, ApiError> {
    Ok(Json(TokenList { tokens: host.people.tokens.list(Some(&m.tenant)).await? }))
}

pub(super) async fn revoke_token(
    State(host): Host,
    TenantAdmin(m): TenantAdmin,
    Path(name): Path<String>,
) -> Result<Json<TokenRevoked>, ApiError> {
    let n = host.people.tokens.revoke(Some(&m.tenant), &name).await?;
    host.audit.record(m.event("token.revoke", "ok", "", json!({ "token": name, "revoked": n })));
    Ok(Json(TokenRevoked { revoked: name, tokens: n }))
}

#[derive(Deserialize, schemars::JsonSchema, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateOperatorToken {
    pub(crate) name: String,
    pub(crate) expires_in_seconds: Option<i64>,
}

/// `POST /v1/operator/tokens`.
pub(super) async fn create_operator_token(
    State(host): Host,
    operator: Operator,
    body: Result<Json<CreateOperatorToken>, JsonRejection>,
) -> Result<(StatusCode, Json<TokenCreated>), ApiError> {
    let Json(b) = body?;
    let new = NewToken {
        name: b.name,
        member: None,
        role: None,
        expires_at: expiry(b.expires_in_seconds)?,
        created_by: format!("operator:{}", operator.0),
    };
    let (token, info) = host.people.tokens.create(None, &new).await?;
    host.audit.record(operator.event("token.create", "ok", "", json!({ "token": info })));
    Ok((StatusCode::CREATED, Json(TokenCreated { token, info })))
}

pub(super) async fn list_operator_tokens(State(host): Host, _: Operator) -> Result<Json<TokenList>, ApiError> {
    Ok(Json(TokenList { tokens: host.people.tokens.list(None).await? }))
}

pub(super) async fn revoke_operator_token(
    State(host): Host,
    operator: Operator,
    Path(name): Path<String>,
) -> Result<Json<TokenRevoked>, ApiError> {
    let n = host.people.tokens.revoke(None, &name).await?;
    host.audit.record(operator.event("token.revoke", "ok", "", json!({ "token": name, "revoked": n })));
    Ok(Json(TokenRevoked { revoked: name, tokens: n }))
}

/// `GET /v1/me`: who this token or session is, and its roles.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct Me {
    tenant: String,
    /// `user:NAME`, `token:NAME`, ...
    subject: String,
    /// Which of the well-known roles (`admin`, `auditor`, `cfo`, `dpo`, `ops_manager`,
    /// `marketing_lead`) it holds.
    roles: Vec<&'static str>,
}

/// `GET /v1/me`: the member a token is, and which of the well-known roles it holds.
pub(super) async fn me(State(host): Host, TenantMember(m): TenantMember) -> Result<Json<Me>, ApiError> {
    let mut roles = Vec::new();
    for role in ["admin", "auditor", "cfo", "dpo", "ops_manager", "marketing_lead"] {
        if m.holds(&host, role).await {
            roles.push(role);
        }
    }
    Ok(Json(Me { tenant: m.tenant, subject: m.subject, roles }))
}
