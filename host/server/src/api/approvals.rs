//! Approvals as people see them: an approver's queue and decisions.
//!
//! - `GET /v1/approvals?status=`: admins and auditors see every request of the tenant; an
//!   approver sees those asking for a role they hold (and CIBA requests naming them);
//! - `GET /v1/approvals/{id}`: one of those (404 for any other);
//! - `POST /v1/approvals/{id}/decision` `{approve, reason?}`: the decision is the
//!   authenticated member's own, never a name from the body: the member must hold the role
//!   the request asks for (a request with no role: a tenant admin); a CIBA request only by the
//!   person it names.
//!
//! Agents ask for approvals through `POST /v1/approvals` ([`super::runs`]).

use std::sync::Arc;

use airlock_approvals::{Approval, Status};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{Member, TenantMember};
use super::ApiError;
use crate::Airlock;

type Host = State<Arc<Airlock>>;

#[derive(Deserialize)]
pub(super) struct ApprovalsQuery {
    status: Option<Status>,
}

/// The roles a member was found to hold (or not) while one request lists approvals: each
/// role is asked of the authorization engine once, however many requests name it.
type Held = std::collections::HashMap<String, bool>;

/// Whether `m` may see (and so may be asked to decide) approval `a`.
async fn visible(host: &Airlock, m: &Member, a: &Approval, reads_all: bool, held: &mut Held) -> Result<bool, ApiError> {
    if reads_all {
        return Ok(true);
    }
    if let Some(role) = &a.role {
        let holds = match held.get(role) {
            Some(known) => *known,
            None => {
                let answer = m.holds(host, role).await;
                held.insert(role.clone(), answer);
                answer
            }
        };
        if holds {
            return Ok(true);
        }
    }
    let named = host.ciba.approver_for(&m.tenant, &a.id).await.map_err(|e| ApiError::internal("CIBA store", e))?;
    Ok(named.is_some_and(|n| m.subject.strip_prefix("user:") == Some(n.as_str())))
}

pub(super) async fn list(
    State(host): Host,
    TenantMember(m): TenantMember,
    query: Result<Query<ApprovalsQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query?;
    let all = host.approvals.list(&m.tenant, q.status).await?;
    let reads_all = m.reads_all(&host).await;
    let (mut shown, mut held) = (Vec::with_capacity(all.len()), Held::new());
    for a in all {
        if visible(&host, &m, &a, reads_all, &mut held).await? {
            shown.push(a);
        }
    }
    Ok(Json(json!({ "approvals": shown })))
}

pub(super) async fn get(
    State(host): Host,
    TenantMember(m): TenantMember,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let a = host.approvals.get(&m.tenant, &id).await?;
    if !visible(&host, &m, &a, m.reads_all(&host).await, &mut Held::new()).await? {
        return Err(ApiError::not_found(format!("no approval `{id}` among yours")));
    }
    Ok(Json(json!(a)))
}

#[derive(Deserialize)]
pub(super) struct Decision {
    tenant: Option<String>,
    /// Optional, and then it must be the caller itself: a decision is made as oneself.
    approver: Option<String>,
    approve: bool,
    reason: Option<String>,
}

/// Records the caller's decision on a pending request.
pub(super) async fn decide(
    State(host): Host,
    TenantMember(m): TenantMember,
    Path(id): Path<String>,
    body: Result<Json<Decision>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(d) = body?;
    let tenant = m.scope(d.tenant.as_deref())?.to_string();
    let pending = host.approvals.get(&tenant, &id).await?;
    if let Some(named) = d.approver.as_deref().filter(|a| *a != m.subject) {
        host.audit.record(m.event(
            "approval.decision",
            "refused",
            &pending.tool,
            json!({ "approval_id": id, "approver": m.subject, "reason": format!("tried to decide as `{named}`") }),
        ));
        return Err(ApiError::forbidden(format!(
            "you are `{}`: a decision is made as oneself, not as `{named}` (that person decides with their own token)",
            m.subject
        )));
    }
    // A CIBA request is reserved for the approver it names, whatever roles others hold.
    let ciba_approver = host.ciba.approver_for(&tenant, &id).await.map_err(|e| ApiError::internal("CIBA store", e))?;
    if let Some(named) = ciba_approver {
        let decided =
            super::ciba::decide(&host, &tenant, &id, &named, &m.subject, d.approve, d.reason.as_deref()).await?;
        return Ok(Json(decided));
    }
    let needs = pending.role.clone().unwrap_or_else(|| "admin".into());
    if !m.holds(&host, &needs).await {
        host.audit.record(m.event(
            "approval.decision",
            "refused",
            &pending.tool,
            json!({ "approval_id": id, "approver": m.subject, "reason": format!("approver lacks role `{needs}`") }),
        ));
        return Err(ApiError::forbidden(format!(
            "`{}` is not `{needs}` on `tenant:{tenant}`: only a {needs} may decide this request",
            m.subject
        )));
    }
    let decided = host.approvals.decide(&tenant, &id, &m.subject, d.approve, d.reason.as_deref()).await?;
    host.audit.record(m.event(
        "approval.decision",
        if d.approve { "approved" } else { "denied" },
        &decided.tool,
        json!({ "approval_id": id, "approver": m.subject, "agent": decided.agent, "reason": d.reason }),
    ));
    Ok(Json(json!(decided)))
}
