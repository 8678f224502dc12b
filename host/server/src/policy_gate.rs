//! Authority the host enforces on the gate, before a component runs: approval policies,
//! grants presented by callers, and entry-approved runs.
//!
//! The choices, so that an integrator knows what to expect:
//!
//! - **Policy key.** A policy names a tool as `component.tool`. It is stored with the
//!   component as the policy's `tool` and the tool's name as its `action`
//!   (`offboarding.issue-refund` -> `("offboarding", "issue-refund")`), so that `component`
//!   alone (`action` = `*`) covers every tool of a component without a policy of its own.
//!   Entry policies are keyed by the agent (`agent:NAME`, action `run`).
//! - **Grant binding.** A host-made approval (and the grant a human's decision issues) is
//!   bound to tenant, agent, the full tool id (`offboarding.issue-refund`) as `tool`, the
//!   tool's name as `action`, the [`args_digest`] of the exact input, and the call id; one
//!   asked for ahead of time (`POST /v1/approvals`) binds no call, so a later call presents it.
//! - **Order.** `can_use` first (in the gate), then the run (`Airlock-Run`), then a presented
//!   grant (`Airlock-Grant`) or the tool's policy. The grant is *claimed* before the component
//!   runs (the ledger's conditional update: of any number of concurrent presenters, across
//!   hosts sharing the database, one wins) and *consumed* with the outcome after it ran.
//!   Nothing runs on a refusal, and every refusal is audited with the ledger's reason.
//! - **Waiting.** A call under a policy holds the caller's request open while a human
//!   decides. The call is remembered in `policy_calls` (its input is the approval's
//!   `details`: the canonical JSON arguments, stored as is, like the approval the approver
//!   reads; it may hold personal data and is protected like the rest of the database), so that
//!   after a restart the caller re-attaches with `POST /v1/calls/{call_id}/resume`; the grant
//!   is bound to the original call id, so the call runs at most once however often it is resumed.
//! - **Runs.** A step of a run is allowed only while [`airlock_approvals::Runs::step_allowed`]
//!   says so (read from the ledger at that moment); the human who approved the run's entry
//!   heads the step's delegation chain in the audit. High-risk steps still need their own
//!   policy's approval.

use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

use airlock_approvals::{
    args_digest, canonical_json, Approval, Approvals, LedgerError, NewApproval, Policy, Presented, Status, ANY_ACTION,
};
use airlock_runtime::CallContext;
use airlock_store::{now_millis, sqlx, Db};
use serde_json::{json, Value};

use crate::agents::Agent;
use crate::Airlock;

/// What a caller brings to a call besides its input.
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    /// A grant (an approval's id) to spend on this call: header `Airlock-Grant`.
    pub grant: Option<String>,
    /// The run this call is a step of: header `Airlock-Run`.
    pub run: Option<String>,
    /// Re-attach to this pending host-made approval instead of asking again (resume).
    pub(crate) resume_approval: Option<String>,
}

/// Why the host's authority checks refused a call. Nothing ran.
#[derive(Debug, thiserror::Error)]
pub enum AuthorityError {
    #[error("run `{run}` does not allow this step: {reason}")]
    Run { run: String, reason: String, ledger_reason: String },
    #[error("grant `{grant}` refused: {reason}")]
    Grant { grant: String, reason: String, ledger_reason: String },
    #[error("approval `{approval}` of `{tool}` is {status}: nothing was run{}", why(.reason))]
    NotApproved { approval: String, tool: String, status: &'static str, reason: Option<String> },
    #[error("no call `{0}` of this agent is held by an approval")]
    UnknownCall(String),
    #[error("the input is not a JSON object")]
    BadInput,
    #[error("{0}")]
    TooManyPending(String),
    #[error("approvals unavailable: {0}")]
    Unavailable(String),
}

fn why(reason: &Option<String>) -> String {
    reason.as_deref().map(|r| format!(" (reason: {r})")).unwrap_or_default()
}

impl AuthorityError {
    /// A stable code for API answers.
    pub fn code(&self) -> &'static str {
        match self {
            AuthorityError::Run { .. } => "run_refused",
            AuthorityError::Grant { .. } => "grant_refused",
            AuthorityError::NotApproved { status: "expired", .. } => "approval_expired",
            AuthorityError::NotApproved { .. } => "approval_denied",
            AuthorityError::UnknownCall(_) => "not_found",
            AuthorityError::BadInput => "invalid_request",
            AuthorityError::TooManyPending(_) => "too_many_requests",
            AuthorityError::Unavailable(_) => "unavailable",
        }
    }

    /// The ledger's short reason (`replayed`, `wrong_binding:action`...), when the ledger refused.
    pub fn ledger_reason(&self) -> Option<&str> {
        match self {
            AuthorityError::Run { ledger_reason, .. } | AuthorityError::Grant { ledger_reason, .. } => {
                Some(ledger_reason)
            }
            _ => None,
        }
    }

    fn audit_detail(&self) -> Value {
        json!({ "reason": self.to_string(), "code": self.code(), "ledger_reason": self.ledger_reason() })
    }
}

/// The ledger's short reason for a refusal, as stored with its `claim_refused` event.
fn ledger_reason(e: &LedgerError) -> String {
    match e {
        LedgerError::WrongBinding { field, .. } => format!("wrong_binding:{field}"),
        LedgerError::Invalid(_) => "invalid".into(),
        LedgerError::NotFound(_) => "not_found".into(),
        LedgerError::Replayed(_) => "replayed".into(),
        LedgerError::Expired(_) => "expired".into(),
        LedgerError::Denied(_) => "denied".into(),
        LedgerError::Cancelled(_) => "cancelled".into(),
        LedgerError::NotClaimed(_) => "not_claimed".into(),
        LedgerError::AwaitingApproval(_) => "awaiting_approval".into(),
        LedgerError::Store(_) => "store".into(),
    }
}

pub(crate) fn unavailable(e: impl std::fmt::Display) -> AuthorityError {
    AuthorityError::Unavailable(e.to_string())
}

/// An approval that could not be asked for: too many pending is the caller's to wait out.
fn not_asked(e: airlock_approvals::ApprovalError) -> AuthorityError {
    match e {
        e @ airlock_approvals::ApprovalError::TooManyPending { .. } => AuthorityError::TooManyPending(e.to_string()),
        airlock_approvals::ApprovalError::Invalid(m) => AuthorityError::Unavailable(m),
        other => unavailable(other),
    }
}

/// What the checks let through: the grant to consume after the run, and who heads the chain.
#[derive(Debug, Default)]
pub(crate) struct Admission {
    pub grant: Option<String>,
    pub run: Option<String>,
    pub on_behalf_of: Option<String>,
    /// Who approved the grant the call spends.
    pub approver: Option<String>,
}

impl Admission {
    /// Run and grant ids for the call's audit event.
    pub(crate) fn audit_fields(&self) -> Value {
        json!({ "run_id": self.run, "grant_id": self.grant })
    }
}

/// Splits a policy's tool name into its stored key: `component.tool` -> (component, tool),
/// `component` or `component.*` -> (component, `*`), `agent:NAME` -> itself (an entry policy).
pub fn policy_key(tool: &str) -> (String, String) {
    if tool.starts_with("agent:") {
        return (tool.to_string(), airlock_approvals::ENTRY_ACTION.to_string());
    }
    match tool.split_once('.') {
        Some((component, name)) if !name.is_empty() => (component.to_string(), name.to_string()),
        Some((component, _)) => (component.to_string(), ANY_ACTION.to_string()),
        None => (tool.to_string(), ANY_ACTION.to_string()),
    }
}

/// The name a stored policy is shown under (the inverse of [`policy_key`]).
pub fn policy_name(p: &Policy) -> String {
    if p.entry || p.tool.starts_with(airlock_approvals::EFFECT_PREFIX) {
        p.tool.clone()
    } else if p.action == ANY_ACTION {
        format!("{}.*", p.tool)
    } else {
        format!("{}.{}", p.tool, p.action)
    }
}

impl Airlock {
    /// The approval policy a call of `component.name` falls under: the tool's own, else its
    /// component's `*`, else the tenant's policy for what the tool declares it does
    /// (`effect:irreversible`; an undeclared tool counts as irreversible).
    pub(crate) async fn policy_for(
        &self,
        tenant: &str,
        component: &str,
        name: &str,
    ) -> Result<Option<Policy>, AuthorityError> {
        // A tool that does not exist has no effect to match (the runtime refuses the call).
        let effect = self
            .component_for(tenant, component)
            .and_then(|c| c.tools.iter().find(|t| t.name == name).map(|t| t.effects.effect.as_str()))
            .unwrap_or("");
        self.policies.for_call(tenant, component, name, effect).await.map_err(unavailable)
    }

    /// The checks between `can_use` and running the component. Records its own events
    /// (approval requests and decisions); the gate records the refusal itself.
    pub(crate) async fn admit(
        &self,
        agent: &Agent,
        tool: &str,
        input: &str,
        ctx: &CallContext,
        opts: &CallOptions,
    ) -> Result<Admission, AuthorityError> {
        let tenant = agent.tenant.as_str();
        let subject = agent.subject();
        let (component, name) = tool.split_once('.').unwrap_or((tool, ""));
        let mut admission = Admission { run: opts.run.clone(), ..Admission::default() };
        if let Some(run) = &opts.run {
            if let Err(e) = self.runs.step_allowed(tenant, run, &subject).await {
                if let LedgerError::Store(e) = e {
                    return Err(unavailable(e));
                }
                return Err(AuthorityError::Run {
                    run: run.clone(),
                    reason: e.to_string(),
                    ledger_reason: ledger_reason(&e),
                });
            }
            admission.on_behalf_of = self.run_approver(tenant, run).await;
        } else if self.policies.entry_for(tenant, &subject).await.map_err(unavailable)?.is_some() {
            // An agent under an entry policy acts only inside an approved run: a call without
            // `Airlock-Run` (or over a door that carries none) would skip the entry approval.
            return Err(AuthorityError::Run {
                run: String::new(),
                reason: format!(
                    "`{subject}` needs an entry-approved run: start one with `POST /v1/runs` and send its id \
                     as `Airlock-Run`"
                ),
                ledger_reason: "run_required".into(),
            });
        }
        let value: Value = serde_json::from_str(input).map_err(|_| AuthorityError::BadInput)?;
        let presented = Presented {
            agent: subject.clone(),
            tool: tool.to_string(),
            action: name.to_string(),
            args_digest: args_digest(&value),
            call_id: Some(ctx.call_id.clone()),
            run_id: opts.run.clone(),
        };
        let policy = self.policy_for(tenant, component, name).await?;
        if let Some(grant) = &opts.grant {
            if let Some(p) = &policy {
                self.grant_role_fits(tenant, grant, tool, p, &subject).await?;
            }
            self.claim(tenant, grant, presented).await?;
            admission.approver = self.approvals.get(tenant, grant).await.ok().and_then(|a| a.approver);
            admission.grant = Some(grant.clone());
            return Ok(admission);
        }
        let approval_id = match (&opts.resume_approval, &policy) {
            (Some(id), _) => id.clone(),
            (None, Some(p)) => self.ask(tenant, &subject, tool, name, &value, p, ctx, opts).await?,
            (None, None) => return Ok(admission),
        };
        let decided = {
            let _idle = self.audit.idle(); // no commit waits for a person
            let span = crate::stage!("approval_wait", approval_id = %approval_id, enforced_by = "policy");
            self.approvals.wait(tenant, &approval_id).instrument(span).await.map_err(unavailable)?
        };
        let detail = json!({ "approval_id": decided.id, "approver": decided.approver, "reason": decided.reason,
                             "run_id": opts.run, "enforced_by": "policy" });
        match decided.status {
            Status::Approved => {
                self.audit.record(ctx.event("approval.decision", "approved", detail, &[]));
            }
            status => {
                let label = match status {
                    Status::Expired => "expired",
                    Status::Consumed => "consumed",
                    _ => "denied",
                };
                self.audit.record(ctx.event("approval.decision", label, detail, &[]));
                self.forget_call(tenant, &ctx.call_id).await;
                return Err(AuthorityError::NotApproved {
                    approval: decided.id,
                    tool: tool.to_string(),
                    status: label,
                    reason: decided.reason,
                });
            }
        }
        self.claim(tenant, &approval_id, presented).await?;
        admission.approver = decided.approver;
        admission.grant = Some(approval_id);
        Ok(admission)
    }

    /// Consumes the grant the call claimed, with how the call went. The call ran: a failure
    /// here is logged, never turned into a second run.
    /// `failure` is the kind of the call's failure, if it failed.
    pub(crate) async fn settle(&self, tenant: &str, call_id: &str, admission: &Admission, failure: Option<&str>) {
        let Some(grant) = &admission.grant else { return };
        let how = match failure {
            None => format!("call `{call_id}` ok"),
            Some(kind) => format!("call `{call_id}` failed: {kind}"),
        };
        if let Err(e) = self.approvals.ledger().consume(tenant, grant, &how).await {
            tracing::error!("consuming grant `{grant}` after call `{call_id}`: {e}");
        }
        // The approval row follows its grant, so lists show it spent.
        let marked = sqlx::query(
            "UPDATE approvals SET status = 'consumed', consumed_at = $1 WHERE tenant = $2 AND id = $3 AND status = 'approved'",
        )
        .bind(now_millis())
        .bind(tenant)
        .bind(grant)
        .execute(self.db.pool())
        .await;
        if let Err(e) = marked {
            tracing::error!("marking approval `{grant}` consumed: {e}");
        }
        self.forget_call(tenant, call_id).await;
    }

    /// Audits a refusal of the host's checks, with the run and grant the caller named.
    pub(crate) fn audit_refusal(&self, ctx: &CallContext, e: &AuthorityError, opts: &CallOptions) {
        let mut detail = e.audit_detail();
        if let Some(map) = detail.as_object_mut() {
            map.insert("run_id".into(), json!(opts.run));
            map.insert("grant_id".into(), json!(opts.grant));
        }
        self.audit.record(ctx.event("tool.call", "denied", detail, &[]));
    }

    /// The human who approved run `run`'s entry, to head the delegation chain of its steps.
    async fn run_approver(&self, tenant: &str, run: &str) -> Option<String> {
        let run = self.runs.get(tenant, run).await.ok()?;
        let approval = self.approvals.get(tenant, run.approval_id.as_deref()?).await.ok()?;
        approval.approver
    }

    /// A grant presented for a tool under a policy must have been approved in that policy's role
    /// (it may predate the policy). A grant of another tool is left to the ledger's claim, which
    /// refuses it with the binding it got wrong and records the attempt.
    async fn grant_role_fits(
        &self,
        tenant: &str,
        grant: &str,
        tool: &str,
        p: &Policy,
        subject: &str,
    ) -> Result<(), AuthorityError> {
        let g = match self.approvals.ledger().get(tenant, grant).await {
            Ok(g) => g,
            // Let the claim say why (and record the attempt in the ledger).
            Err(LedgerError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(unavailable(e)),
        };
        if g.tool != tool || g.role.as_deref() == Some(p.role.as_str()) {
            return Ok(());
        }
        tracing::info!("{subject} presented grant `{grant}` approved as {:?} where `{}` is needed", g.role, p.role);
        Err(AuthorityError::Grant {
            grant: grant.to_string(),
            reason: format!(
                "it was approved in role `{}`, and this tool's policy needs a `{}`",
                g.role.unwrap_or_else(|| "none".into()),
                p.role
            ),
            ledger_reason: "wrong_binding:role".into(),
        })
    }

    async fn claim(&self, tenant: &str, grant: &str, presented: Presented) -> Result<(), AuthorityError> {
        match self.approvals.ledger().claim(tenant, grant, presented).await {
            Ok(_) => Ok(()),
            Err(LedgerError::Store(e)) => Err(unavailable(e)),
            Err(e) => Err(AuthorityError::Grant {
                grant: grant.to_string(),
                reason: e.to_string(),
                ledger_reason: ledger_reason(&e),
            }),
        }
    }

    /// Asks for the approval `p` requires and remembers the call, for a resume after a restart.
    #[allow(clippy::too_many_arguments)]
    async fn ask(
        &self,
        tenant: &str,
        subject: &str,
        tool: &str,
        name: &str,
        input: &Value,
        p: &Policy,
        ctx: &CallContext,
        opts: &CallOptions,
    ) -> Result<String, AuthorityError> {
        let details = canonical_json(input);
        let req = NewApproval {
            agent: subject.to_string(),
            tool: tool.to_string(),
            call_id: Some(ctx.call_id.clone()),
            action: name.to_string(),
            note: String::new(),
            role: Some(p.role.clone()),
            details,
            ttl: Some(p.ttl),
        };
        // The request and the held call it resumes commit together: an approver never sees a
        // request whose call cannot be resumed after a crash.
        let mut tx = self.db.pool().begin().await.map_err(unavailable)?;
        let pending = self.approvals.create_in(&mut tx, tenant, req).await.map_err(not_asked)?;
        sqlx::query(
            "INSERT INTO policy_calls (tenant, call_id, approval_id, agent, tool, run_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(tenant)
        .bind(&ctx.call_id)
        .bind(&pending.id)
        .bind(subject)
        .bind(tool)
        .bind(&opts.run)
        .bind(now_millis())
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        self.approvals.announce(&pending);
        let detail = json!({ "approval_id": pending.id, "action": pending.action, "role": pending.role,
                             "summary": pending.summary, "args_digest": pending.args_digest,
                             "run_id": opts.run, "enforced_by": "policy" });
        self.audit.record(ctx.event("approval.request", "pending", detail, &[]));
        Ok(pending.id)
    }

    /// At start: says which calls a previous run of the host left waiting for a human. Their
    /// HTTP requests are gone with that process; each caller re-attaches with
    /// `POST /v1/calls/{call_id}/resume` (or waits on the approval with
    /// `GET /v1/approvals/{id}/wait`), and the grant's call binding makes it run once.
    pub(crate) async fn report_held_calls(&self) {
        let pending = match self.approvals.pending_for_resume(None).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("cannot list approvals pending from before the start: {e}");
                return;
            }
        };
        for a in pending.iter().filter(|a| a.call_id.is_some()) {
            tracing::info!(
                "call `{}` of `{}` on `{}` waits for approval `{}` (role {:?}); its caller resumes it by id",
                a.call_id.as_deref().unwrap_or_default(),
                a.agent,
                a.tool,
                a.id,
                a.role
            );
        }
    }

    /// Drops a call's resume record once it ran or was refused.
    async fn forget_call(&self, tenant: &str, call_id: &str) {
        let gone = sqlx::query("DELETE FROM policy_calls WHERE tenant = $1 AND call_id = $2")
            .bind(tenant)
            .bind(call_id)
            .execute(self.db.pool())
            .await;
        if let Err(e) = gone {
            tracing::warn!("forgetting held call `{call_id}`: {e}");
        }
    }

    /// An approval asked for ahead of a call (`POST /v1/approvals`): bound to no call, so
    /// the agent presents it later with `Airlock-Grant`. The role and ttl come from the
    /// tool's policy when it has one (a caller cannot pick a weaker approver).
    pub async fn request_approval(
        &self,
        agent: &Agent,
        tool: &str,
        input: &Value,
        note: Option<String>,
        role: Option<String>,
        ttl: Option<Duration>,
    ) -> Result<Approval, AuthorityError> {
        let (component, name) = tool.split_once('.').unwrap_or((tool, ""));
        self.sync_installed(&agent.tenant).await.map_err(AuthorityError::Unavailable)?;
        let policy = self.policy_for(&agent.tenant, component, name).await?;
        let details = canonical_json(input);
        let subject = agent.subject();
        let (role, ttl) = match policy {
            Some(p) => (Some(p.role), Some(p.ttl)),
            None => (role, ttl),
        };
        let req = NewApproval {
            agent: subject.clone(),
            tool: tool.to_string(),
            call_id: None,
            action: name.to_string(),
            note: note.unwrap_or_default(),
            role,
            details,
            ttl,
        };
        let a = self.approvals.create(&agent.tenant, req).await.map_err(not_asked)?;
        self.audit.record(airlock_audit::AuditEvent {
            tenant: agent.tenant.clone(),
            kind: "approval.request".into(),
            outcome: "pending".into(),
            agent: subject,
            tool: tool.to_string(),
            detail: json!({ "approval_id": a.id, "role": a.role, "args_digest": a.args_digest, "ahead_of_call": true }),
        });
        Ok(a)
    }
}

/// Moves overdue grants to `expired` every few seconds, so the ledger says so without waiting
/// for someone to present them; every [`PURGE_EVERY`], forgets what is over and older than
/// [`RETENTION`] (ended grants, refused claims of unknown ids, expired CIBA requests), so
/// the tables stay bounded. Stops when dropped (with the host).
pub struct Sweeper {
    task: tokio::task::JoinHandle<()>,
}

/// How often the sweeper runs.
pub const SWEEP_EVERY: Duration = Duration::from_secs(3);
/// How often the purge runs.
pub const PURGE_EVERY: Duration = Duration::from_secs(600);
/// How long ended grants and expired requests are kept (the audit trail keeps them for good).
pub const RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// How long an expired CIBA request is kept, so a late poll still hears `expired_token`.
pub const CIBA_GRACE: Duration = Duration::from_secs(3600);

impl Sweeper {
    /// Starts the sweep on the current tokio runtime.
    pub fn start(approvals: Arc<Approvals>, db: Db, every: Duration) -> Sweeper {
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_purge: Option<std::time::Instant> = None;
            loop {
                tick.tick().await;
                match approvals.ledger().expire_due(now_millis()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!("expired {n} grant(s) past their deadline"),
                    Err(e) => tracing::warn!("grant expiry sweep failed: {e}"),
                }
                if last_purge.is_none_or(|at| at.elapsed() >= PURGE_EVERY) {
                    last_purge = Some(std::time::Instant::now());
                    purge(&approvals, &db, now_millis()).await;
                }
            }
        });
        Sweeper { task }
    }
}

/// One purge pass as of `now` (ms); see [`Sweeper`].
pub async fn purge(approvals: &Approvals, db: &Db, now: i64) {
    match approvals.ledger().purge(now - RETENTION.as_millis() as i64).await {
        Ok((0, 0)) => {}
        Ok((grants, events)) => tracing::info!("purged {grants} ended grant(s) and {events} ledger row(s)"),
        Err(e) => tracing::warn!("ledger purge failed: {e}"),
    }
    match airlock_approvals::ciba::purge_expired(db, now - CIBA_GRACE.as_millis() as i64).await {
        Ok(0) => {}
        Ok(n) => tracing::info!("purged {n} expired CIBA request(s)"),
        Err(e) => tracing::warn!("CIBA request purge failed: {e}"),
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for Sweeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sweeper")
    }
}
