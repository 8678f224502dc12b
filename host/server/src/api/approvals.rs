//! Approvals as people see them: an approver's queue and decisions.
//!
//! - `GET /v1/approvals?status=`: admins and auditors see every request of the tenant; an
//!   approver sees those asking for a role they hold (and CIBA requests naming them);
//! - `GET /v1/approvals/{id}`: one of those (404 for any other);
//! - `GET /v1/approvals/events`: those same approvals as they change, as Server-Sent Events
//!   ([`stream`]);
//! - `POST /v1/approvals/{id}/decision` `{approve, reason?}`: the decision is the
//!   authenticated member's own, never a name from the body: the member must hold the role
//!   the request asks for (a request with no role: a tenant admin); a CIBA request only by the
//!   person it names.
//!
//! Agents ask for approvals through `POST /v1/approvals` ([`super::runs`]).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use airlock_approvals::{Approval, Status};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{Member, TenantMember};
use super::ApiError;
use crate::Airlock;

type Host = State<Arc<Airlock>>;

#[derive(Deserialize, schemars::JsonSchema)]
pub(super) struct ApprovalsQuery {
    status: Option<Status>,
    /// An approval id: list only older ones (the `next` of the previous page).
    before: Option<String>,
    /// At most this many (default and most: 500).
    limit: Option<i64>,
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

/// Approval `id`, when `m` may see it; 404 (the same as for no such approval) otherwise.
async fn one_of_yours(host: &Airlock, m: &Member, id: &str) -> Result<Approval, ApiError> {
    let a = host.approvals.get(&m.tenant, id).await?;
    if !visible(host, m, &a, m.reads_all(host).await, &mut Held::new()).await? {
        return Err(ApiError::not_found(format!("no approval `{id}` among yours")));
    }
    Ok(a)
}

/// `GET /v1/approvals`: a page of the approvals this member may see, newest first.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct ApprovalList {
    approvals: Vec<Approval>,
    /// When the page is full: the id to pass as `before` for the next one.
    next: Option<String>,
}

pub(super) async fn list(
    State(host): Host,
    TenantMember(m): TenantMember,
    query: Result<Query<ApprovalsQuery>, QueryRejection>,
) -> Result<Json<ApprovalList>, ApiError> {
    let Query(q) = query?;
    let limit = q.limit.unwrap_or(500);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request(format!("`limit` must be between 1 and 500, not {limit}")));
    }
    let page = host.approvals.list_page(&m.tenant, q.status, q.before.as_deref(), limit).await?;
    // A full page may have more behind it: its last id is where the next one starts.
    let next = (page.len() as i64 == limit).then(|| page.last().map(|a| a.id.clone())).flatten();
    let reads_all = m.reads_all(&host).await;
    let (mut shown, mut held) = (Vec::with_capacity(page.len()), Held::new());
    for a in page {
        if visible(&host, &m, &a, reads_all, &mut held).await? {
            shown.push(a);
        }
    }
    Ok(Json(ApprovalList { approvals: shown, next }))
}

pub(super) async fn get(
    State(host): Host,
    TenantMember(m): TenantMember,
    Path(id): Path<String>,
) -> Result<Json<Approval>, ApiError> {
    let a = one_of_yours(&host, &m, &id).await?;
    Ok(Json(a))
}

#[derive(Deserialize, schemars::JsonSchema, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Decision {
    pub(crate) tenant: Option<String>,
    /// Optional, and then it must be the caller itself: a decision is made as oneself.
    pub(crate) approver: Option<String>,
    pub(crate) approve: bool,
    pub(crate) reason: Option<String>,
    /// Approving only: the passkey assertion of `POST /v1/approvals/{id}/step-up`.
    pub(crate) step_up: Option<StepUp>,
}

#[derive(Deserialize, schemars::JsonSchema, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StepUp {
    pub(crate) ceremony: String,
    /// The passkey assertion (WebAuthn `PublicKeyCredential` as JSON) answering the step-up challenge.
    #[schemars(with = "serde_json::Map<String, serde_json::Value>")]
    pub(crate) credential: webauthn_rs::prelude::PublicKeyCredential,
}

/// Whether `m` may decide `a`: only while it is pending; a CIBA request only by the person it
/// names; any other by a holder of its role (no role: a tenant admin). A refusal is audited.
pub(super) async fn may_decide(host: &Airlock, m: &Member, a: &Approval) -> Result<(), ApiError> {
    if a.status != Status::Pending {
        return Err(airlock_approvals::ApprovalError::AlreadyDecided { id: a.id.clone(), status: a.status }.into());
    }
    let refuse = |reason: String| {
        host.audit.record(m.event(
            "approval.decision",
            "refused",
            &a.tool,
            json!({ "approval_id": a.id, "approver": m.subject, "reason": reason }),
        ));
    };
    let named = host.ciba.approver_for(&m.tenant, &a.id).await.map_err(|e| ApiError::internal("CIBA store", e))?;
    if let Some(named) = named {
        if m.subject.strip_prefix("user:") != Some(named.as_str()) {
            refuse(format!("the CIBA request names `user:{named}`"));
            return Err(ApiError::forbidden(format!("only `user:{named}`, whom this CIBA request names, decides it")));
        }
        return Ok(());
    }
    let needs = a.role.clone().unwrap_or_else(|| "admin".into());
    if !m.holds(host, &needs).await {
        refuse(format!("approver lacks role `{needs}`"));
        return Err(ApiError::forbidden(format!(
            "`{}` is not `{needs}` on `tenant:{}`: only a {needs} may decide this request",
            m.subject, m.tenant
        )));
    }
    Ok(())
}

/// Records the caller's decision on a pending request. Approving needs the step-up: a passkey
/// assertion over this exact action, whose proof is kept; denying needs the member only.
pub(super) async fn decide(
    State(host): Host,
    TenantMember(m): TenantMember,
    Path(id): Path<String>,
    body: Result<Json<Decision>, JsonRejection>,
) -> Result<Json<Approval>, ApiError> {
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
    may_decide(&host, &m, &pending).await?;
    let proof = if d.approve { Some(step_up(&host, &m, &pending, d.step_up).await?) } else { None };
    if let Some(p) = &proof {
        host.people.passkeys.keep_proof(&tenant, &id, p).await?;
    }
    let ciba_approver = host.ciba.approver_for(&tenant, &id).await.map_err(|e| ApiError::internal("CIBA store", e))?;
    // The CIBA path audits its own decision; the signature is then its own event.
    let kind = if ciba_approver.is_some() { "approval.signed" } else { "approval.decision" };
    let decided = match ciba_approver {
        Some(named) => super::ciba::decide(&host, &tenant, &id, &named, &m.subject, d.approve, d.reason.as_deref())
            .await
            .and_then(|v| serde_json::from_value::<Approval>(v).map_err(|e| ApiError::internal("approval", e))),
        None => host
            .approvals
            .decide(&tenant, &id, &m.subject, d.approve, d.reason.as_deref())
            .await
            .map_err(ApiError::from),
    };
    let decided = match decided {
        Ok(v) => v,
        Err(e) => {
            if proof.is_some() {
                host.people.passkeys.drop_proof(&tenant, &id).await?;
            }
            return Err(e);
        }
    };
    if kind == "approval.signed" && proof.is_none() {
        return Ok(Json(decided));
    }
    // The approver is told "decided" only once the trail durably says so.
    host.audit
        .record_durable(m.event(
            kind,
            if d.approve { "approved" } else { "denied" },
            &pending.tool,
            json!({ "approval_id": id, "approver": m.subject, "agent": pending.agent, "reason": d.reason,
                    "signed_digest": proof.as_ref().map(|p| &p.digest),
                    "passkey": proof.as_ref().map(|p| hex::encode(p.assertion.raw_id.as_slice())) }),
        ))
        .await
        .map_err(|e| ApiError::internal("audit", e))?;
    Ok(Json(decided))
}

/// The step-up an approval needs: the member's passkey over this action, verified.
async fn step_up(
    host: &Airlock,
    m: &Member,
    pending: &Approval,
    step_up: Option<StepUp>,
) -> Result<crate::signin::Proof, ApiError> {
    let Some(s) = step_up else {
        host.audit.record(m.event(
            "approval.decision",
            "refused",
            &pending.tool,
            json!({ "approval_id": pending.id, "approver": m.subject, "reason": "approved without step-up" }),
        ));
        return Err(ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "step_up_required",
            format!(
                "approving needs your passkey on this exact action: sign in at {}/console and press Approve on `{}` \
                 (over the API: `POST /v1/approvals/{}/step-up`, sign its options, send the assertion as `step_up`)",
                host.people.passkeys.origin(),
                pending.id,
                pending.id
            ),
        ));
    };
    let now = crate::signin::ActionBinding::of(pending);
    let proof =
        host.people.passkeys.finish_step_up(&s.ceremony, &m.tenant, &m.subject, &pending.id, &now, &s.credential).await;
    if let Err(e) = &proof {
        host.audit.record(m.event(
            "approval.decision",
            "refused",
            &pending.tool,
            json!({ "approval_id": pending.id, "approver": m.subject, "reason": e.to_string() }),
        ));
    }
    Ok(proof?)
}

/// `GET /v1/approvals/{id}/proof`: an approval with the proof of its decision.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct ApprovalProof {
    approval: Approval,
    /// The decision's proof, verifiable offline: the action bound, its digest, the passkey
    /// and its registration, and the assertion as the browser sent it.
    proof: Value,
}

/// `GET /v1/approvals/{id}/proof`: the kept proof of an approved request, to verify offline.
pub(super) async fn proof(
    State(host): Host,
    TenantMember(m): TenantMember,
    Path(id): Path<String>,
) -> Result<Json<ApprovalProof>, ApiError> {
    let a = one_of_yours(&host, &m, &id).await?;
    let text = host.people.passkeys.proof_text(&m.tenant, &id).await?;
    let Some(text) = text else {
        return Err(ApiError::not_found(format!("approval `{id}` has no proof: it was not approved with a passkey")));
    };
    let proof: Value = serde_json::from_str(&text).map_err(|e| ApiError::internal("stored proof", e))?;
    Ok(Json(ApprovalProof { approval: a, proof }))
}

/// `POST /v1/approvals/{id}/verify`: whether the approval's kept proof holds.
#[derive(serde::Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub(crate) enum ProofVerdict {
    /// The proof holds: the approver's passkey signed this approval's action as stored.
    Valid {
        #[schemars(extend("const" = true))]
        valid: bool,
        approval_id: String,
        /// Who decided the approval.
        approver: Option<String>,
        /// Hex sha256 of the action that was signed.
        digest: String,
        /// The member whose passkey signed.
        passkey_of: String,
        /// How that passkey was registered (`invitation created by user:NAME`, ...).
        registered_via: String,
    },
    /// The proof does not hold.
    Invalid {
        #[schemars(extend("const" = false))]
        valid: bool,
        approval_id: String,
        /// Why it does not hold.
        reason: String,
    },
}

/// `POST /v1/approvals/{id}/verify`: checks the kept proof against the approval as stored.
pub(super) async fn verify(
    State(host): Host,
    TenantMember(m): TenantMember,
    Path(id): Path<String>,
) -> Result<Json<ProofVerdict>, ApiError> {
    let Json(ApprovalProof { approval, proof: found }) =
        proof(State(host.clone()), TenantMember(m), Path(id.clone())).await?;
    let verdict = serde_json::from_value::<crate::signin::Proof>(found)
        .map_err(|e| format!("the proof is malformed: {e}"))
        .and_then(|p| p.verify(Some(&approval)).map(|()| p));
    Ok(Json(match verdict {
        Ok(p) => ProofVerdict::Valid {
            valid: true,
            approval_id: id,
            approver: approval.approver,
            digest: p.digest,
            passkey_of: p.registration.member,
            registered_via: p.registration.via,
        },
        Err(reason) => ProofVerdict::Invalid { valid: false, approval_id: id, reason },
    }))
}

// ---- the live queue -------------------------------------------------------------------------

/// Audit events read per page by the approvals stream.
const STREAM_PAGE: i64 = 200;
/// How often the stream looks for commits of other hosts sharing a PostgreSQL database.
const STREAM_POLL: Duration = Duration::from_secs(1);

struct Watcher {
    host: Arc<Airlock>,
    member: Member,
    /// The request's credentials, to end the stream once they no longer hold.
    headers: HeaderMap,
    after: i64,
    committed: tokio::sync::watch::Receiver<u64>,
    pending: std::collections::VecDeque<Event>,
}

impl Watcher {
    /// Whether the credentials the stream was opened with still name its member (not revoked,
    /// expired, signed out, idle too long, or removed). A browser session is looked at without
    /// resetting its idle clock: an open tab is not a person using it.
    async fn still_signed_in(&self) -> bool {
        if super::auth::bearer(&self.headers).is_none() {
            if let Some(cookie) = crate::signin::sessions::cookie_secret(&self.headers) {
                return match self.host.people.sessions.peek(cookie).await {
                    Ok(Some(s)) => s.tenant == self.member.tenant && s.member == self.member.subject,
                    Ok(None) => false,
                    Err(e) => {
                        tracing::warn!("approvals stream: session store: {e}");
                        false
                    }
                };
            }
        }
        match super::auth::principal(&self.host, &Method::GET, &self.headers).await {
            Ok(super::auth::Principal::Member(now)) => {
                now.tenant == self.member.tenant && now.subject == self.member.subject
            }
            _ => false,
        }
    }

    /// The events of one page of the trail: an `approval` event for each `approval.*` audit
    /// event whose approval the member may see now. `Err` ends the stream.
    async fn read(&mut self, page: Vec<airlock_audit::StoredEvent>) -> Result<(), ApiError> {
        let named: Vec<(i64, String)> = page
            .iter()
            .filter(|e| e.event.kind.starts_with("approval."))
            .filter_map(|e| Some((e.seq, e.event.detail.get("approval_id")?.as_str()?.to_string())))
            .collect();
        self.after = page.last().map_or(self.after, |e| e.seq);
        if named.is_empty() {
            return Ok(());
        }
        if !self.still_signed_in().await {
            return Err(ApiError::unauthenticated("the stream's credentials no longer hold"));
        }
        // The member's roles as they are now, asked once per page.
        let (reads_all, mut held) = (self.member.reads_all(&self.host).await, Held::new());
        for (seq, id) in named {
            let approval = match self.host.approvals.get(&self.member.tenant, &id).await {
                Ok(a) => a,
                Err(airlock_approvals::ApprovalError::NotFound(_)) => continue,
                Err(e) => return Err(e.into()),
            };
            if visible(&self.host, &self.member, &approval, reads_all, &mut held).await? {
                let data = serde_json::to_string(&approval).unwrap_or_default();
                self.pending.push_back(Event::default().id(seq.to_string()).event("approval").data(data));
            }
        }
        Ok(())
    }
}

/// `GET /v1/approvals/events`: the approvals this member may see (as `GET /v1/approvals`
/// shows them: all for admins and auditors, an approver those of roles it holds and CIBA
/// requests naming it), as Server-Sent Events, whenever one changes.
///
/// The stream follows the audit trail, as `GET /v1/events` does: each committed audit event
/// of kind `approval.*` names its approval in `detail.approval_id`; when the member may see
/// that approval (asked again for every event, so a role taken away stops the stream's
/// news at once), the stream sends `event: approval`, `data:` the approval as
/// `GET /v1/approvals/{id}` answers now, and `id:` the audit event's sequence number. It
/// starts with what happens next, or right after `Last-Event-ID` when a client reconnects;
/// it wakes when this host commits audit events and polls every second for other hosts'.
/// It ends when the credentials it was opened with are revoked or signed out.
pub(super) async fn stream(
    State(host): Host,
    TenantMember(m): TenantMember,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let resume = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let after = match resume {
        Some(id) => id
            .trim()
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request(format!("`Last-Event-ID` `{id}` is not an event sequence number")))?,
        None => host.audit.head(&m.tenant).await.map_err(|e| ApiError::internal("audit", e))?,
    };
    let committed = host.audit.committed();
    let watcher = Watcher { host, member: m, headers, after, committed, pending: Default::default() };
    let events = stream::unfold(watcher, |mut w| async move {
        loop {
            if let Some(event) = w.pending.pop_front() {
                return Some((Ok(event), w));
            }
            match w.host.audit.list(&w.member.tenant, w.after, STREAM_PAGE).await {
                Ok(page) if !page.is_empty() => {
                    if let Err(e) = w.read(page).await {
                        // The client reconnects with its Last-Event-ID (and its credentials).
                        tracing::info!("approvals stream of `{}` ends: {}", w.member.subject, e.message);
                        return None;
                    }
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!("approvals stream: {e}");
                    return None;
                }
            }
            if let Ok(Err(_)) = tokio::time::timeout(STREAM_POLL, w.committed.changed()).await {
                // The writer is gone (shutting down): keep polling slowly rather than spin.
                tokio::time::sleep(STREAM_POLL).await;
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
