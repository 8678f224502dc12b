//! Runs of an agent gated by an entry approval.
//!
//! When an agent has an entry policy ([`crate::policy::Policies::entry_for`]), a run of it must
//! be approved before any of its steps run; after that its low-risk steps run on their own
//! (high-risk steps still need their own approvals). The choices, so the integrator knows:
//!
//! - [`Runs::start`] records the run and, in the same transaction, an approval request for the
//!   agent's entry (`tool` = the agent, `action` = [`ENTRY_ACTION`], role and ttl from the
//!   policy, no call binding, bound to the run). With no entry policy the run is approved at
//!   once and has no grant: nothing asked for one.
//! - Approving that request (the ordinary [`crate::Approvals::decide`]) issues the entry grant
//!   in the ledger, bound to the run; its lifetime is the policy's ttl from the decision.
//! - The entry grant stays `issued` while the run is live: steps do not claim it, each one is
//!   checked with [`Runs::step_allowed`], which reads the ledger at that moment, so a denial,
//!   cancellation (uninstall) or expiry stops the next step. Refused steps are ledger events.
//! - [`Runs::finish`] moves the grant issued -> claimed -> consumed (both events, one
//!   transaction), so it cannot be used again. A run that outlives its grant is not consumed:
//!   the grant becomes `expired` (the ledger says what happened rather than pretending the
//!   run finished), and the run's state reads `expired`.
//! - The run's state is derived from the run row, its approval and its grant on every read,
//!   so there is one source of truth per fact and nothing to keep in step.

use airlock_store::sqlx::any::AnyRow;
use airlock_store::sqlx::Row;
use airlock_store::{now_millis, sqlx, Db};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::approval::{self, ApprovalError, NewApproval, Status};
use crate::ledger::{self, BindingField, Ev, GrantState, LedgerError, HOST_ACTOR};
use crate::policy::{Policies, PolicyError, ENTRY_ACTION};

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Its entry approval is pending: no step may run.
    AwaitingEntry,
    /// Steps may run.
    Approved,
    Denied,
    Expired,
    /// The agent was uninstalled while the run was live.
    Cancelled,
    Finished,
}

/// A run as read now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Run {
    pub id: String,
    pub tenant: String,
    /// The agent whose run it is (`agent:NAME`).
    pub agent: String,
    pub summary: String,
    pub state: RunState,
    /// The entry approval (also the entry grant's id); wait on it with [`crate::Approvals::wait`].
    pub approval_id: Option<String>,
    pub role: Option<String>,
    /// When it started (unix ms).
    pub created_at: i64,
    /// Until when the entry may be decided (while awaiting) or steps may run (once approved).
    pub expires_at: Option<i64>,
    /// When it was finished (unix ms).
    pub finished_at: Option<i64>,
    /// The outcome it was finished with.
    pub outcome: Option<String>,
}

/// The runs of one database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Runs {
    db: Db,
    policies: Policies,
}

impl From<ApprovalError> for LedgerError {
    fn from(e: ApprovalError) -> LedgerError {
        match e {
            ApprovalError::Store(e) => LedgerError::Store(e),
            other => LedgerError::Invalid(other.to_string()),
        }
    }
}

impl From<PolicyError> for LedgerError {
    fn from(e: PolicyError) -> LedgerError {
        match e {
            PolicyError::Store(e) => LedgerError::Store(e),
            PolicyError::Invalid(m) => LedgerError::Invalid(m),
        }
    }
}

/// Everything a run's state is derived from.
struct Facts {
    run: Run,
    approval_status: Option<Status>,
    approval_expires_at: Option<i64>,
    grant_state: Option<GrantState>,
    grant_expires_at: Option<i64>,
}

impl Runs {
    /// The runs stored in `db` (policies are read from the same database).
    pub fn new(db: Db) -> Runs {
        Runs { policies: Policies::new(db.clone()), db }
    }

    /// Starts a run of `agent` (a subject such as `agent:offboarder`): awaiting its entry
    /// approval when the agent has an entry policy, approved at once otherwise.
    pub async fn start(&self, tenant: &str, agent: &str, summary: &str) -> Result<Run, LedgerError> {
        if agent.trim().is_empty() {
            return Err(LedgerError::Invalid("`agent` is empty".into()));
        }
        let policy = self.policies.entry_for(tenant, agent).await?;
        let id = format!("run_{}", uuid::Uuid::new_v4().simple());
        let mut tx = self.db.pool().begin().await?;
        let approval_id = match policy {
            None => None,
            Some(p) => {
                let req = NewApproval {
                    agent: agent.to_string(),
                    tool: agent.to_string(),
                    call_id: None,
                    action: ENTRY_ACTION.to_string(),
                    note: summary.to_string(),
                    role: Some(p.role),
                    details: json!({ "run_id": id, "summary": summary }).to_string(),
                    ttl: Some(p.ttl),
                };
                Some(approval::insert(&mut tx, tenant, req, Some(id.clone())).await?.id)
            }
        };
        sqlx::query(
            "INSERT INTO runs (id, tenant, agent, summary, approval_id, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(tenant)
        .bind(agent)
        .bind(summary)
        .bind(&approval_id)
        .bind(now_millis())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.get(tenant, &id).await
    }

    /// A run of a tenant, its state derived from its approval and grant now.
    pub async fn get(&self, tenant: &str, run_id: &str) -> Result<Run, LedgerError> {
        Ok(self.facts(tenant, run_id).await?.run)
    }

    /// Whether a step of `agent` may run now as part of `run_id`. A refusal is recorded in the
    /// ledger (`step_refused`, against the entry grant, or the run id when it has none).
    pub async fn step_allowed(&self, tenant: &str, run_id: &str, agent: &str) -> Result<(), LedgerError> {
        let facts = match self.facts(tenant, run_id).await {
            Ok(f) => f,
            Err(LedgerError::NotFound(_)) => {
                let refusal = LedgerError::NotFound(run_id.to_string());
                let ev = Ev::refusal("step_refused", None, now_millis(), agent, &refusal);
                let mut conn = self.db.pool().acquire().await?;
                ledger::insert_event(&mut conn, tenant, run_id, ev).await?;
                return Err(refusal);
            }
            Err(e) => return Err(e),
        };
        let run = &facts.run;
        let gid = run.approval_id.clone().unwrap_or_else(|| run.id.clone());
        let refusal = if run.agent != agent {
            LedgerError::WrongBinding { grant: gid.clone(), field: BindingField::Agent }
        } else {
            match run.state {
                RunState::Approved => return Ok(()),
                RunState::AwaitingEntry => LedgerError::AwaitingApproval(run.id.clone()),
                RunState::Denied => LedgerError::Denied(gid.clone()),
                RunState::Expired => LedgerError::Expired(gid.clone()),
                RunState::Cancelled => LedgerError::Cancelled(gid.clone()),
                RunState::Finished => LedgerError::Replayed(gid.clone()),
            }
        };
        let now = now_millis();
        let mut tx = self.db.pool().begin().await?;
        let mut state = facts.grant_state;
        if state == Some(GrantState::Issued) && run.state == RunState::Expired {
            ledger::expire_one(&mut tx, tenant, &gid, now).await?;
            state = Some(GrantState::Expired);
        }
        ledger::insert_event(&mut tx, tenant, &gid, Ev::refusal("step_refused", state, now, agent, &refusal)).await?;
        tx.commit().await?;
        Err(refusal)
    }

    /// Ends a run: its entry grant is consumed (issued -> claimed -> consumed) so it can never
    /// be used again. Finishing twice is refused as [`LedgerError::Replayed`].
    pub async fn finish(&self, tenant: &str, run_id: &str, outcome: &str) -> Result<Run, LedgerError> {
        let now = now_millis();
        let mut tx = self.db.pool().begin().await?;
        let ended = sqlx::query(
            "UPDATE runs SET finished_at = $1, outcome = $2 WHERE tenant = $3 AND id = $4 AND finished_at IS NULL",
        )
        .bind(now)
        .bind(outcome)
        .bind(tenant)
        .bind(run_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if ended == 0 {
            tx.rollback().await?;
            self.get(tenant, run_id).await?;
            return Err(LedgerError::Replayed(run_id.to_string()));
        }
        let approval_id: Option<String> =
            sqlx::query_scalar("SELECT approval_id FROM runs WHERE tenant = $1 AND id = $2")
                .bind(tenant)
                .bind(run_id)
                .fetch_one(&mut *tx)
                .await?;
        if let Some(gid) = approval_id {
            let spent = sqlx::query(
                "UPDATE grants SET state = 'consumed', claimed_at = $1, consumed_at = $1, outcome = $2 \
                 WHERE tenant = $3 AND id = $4 AND state = 'issued' AND expires_at > $1",
            )
            .bind(now)
            .bind(outcome)
            .bind(tenant)
            .bind(&gid)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if spent == 1 {
                let claim = Ev::transition("claim", GrantState::Issued, GrantState::Claimed, now, HOST_ACTOR)
                    .because("run finished");
                ledger::insert_event(&mut tx, tenant, &gid, claim).await?;
                let consume = Ev::transition("consume", GrantState::Claimed, GrantState::Consumed, now, HOST_ACTOR)
                    .because(outcome);
                ledger::insert_event(&mut tx, tenant, &gid, consume).await?;
            } else {
                // Past its deadline but not yet swept: say so rather than consume it.
                ledger::expire_one(&mut tx, tenant, &gid, now).await?;
            }
        }
        tx.commit().await?;
        self.get(tenant, run_id).await
    }

    async fn facts(&self, tenant: &str, run_id: &str) -> Result<Facts, LedgerError> {
        let row = sqlx::query(
            "SELECT r.id, r.tenant, r.agent, r.summary, r.approval_id, r.created_at, r.finished_at, r.outcome, \
             a.status, a.expires_at, a.role, g.state, g.expires_at \
             FROM runs r LEFT JOIN approvals a ON a.id = r.approval_id AND a.tenant = r.tenant \
             LEFT JOIN grants g ON g.id = r.approval_id AND g.tenant = r.tenant \
             WHERE r.tenant = $1 AND r.id = $2",
        )
        .bind(tenant)
        .bind(run_id)
        .fetch_optional(self.db.pool())
        .await?
        .ok_or_else(|| LedgerError::NotFound(run_id.to_string()))?;
        let mut facts = facts_from_row(&row)?;
        facts.run.state = derive(&facts, now_millis());
        facts.run.expires_at = facts.grant_expires_at.or(facts.approval_expires_at);
        Ok(facts)
    }
}

fn facts_from_row(r: &AnyRow) -> Result<Facts, sqlx::Error> {
    Ok(Facts {
        run: Run {
            id: r.try_get(0)?,
            tenant: r.try_get(1)?,
            agent: r.try_get(2)?,
            summary: r.try_get(3)?,
            state: RunState::Denied,
            approval_id: r.try_get(4)?,
            created_at: r.try_get(5)?,
            finished_at: r.try_get(6)?,
            outcome: r.try_get(7)?,
            role: r.try_get(10)?,
            expires_at: None,
        },
        approval_status: r.try_get::<Option<String>, _>(8)?.as_deref().map(Status::parse),
        approval_expires_at: r.try_get(9)?,
        grant_state: r.try_get::<Option<String>, _>(11)?.as_deref().map(GrantState::parse),
        grant_expires_at: r.try_get(12)?,
    })
}

/// The run's state from its facts; anything unexpected is `Denied` (fail closed).
fn derive(f: &Facts, now: i64) -> RunState {
    if f.run.finished_at.is_some() {
        return RunState::Finished;
    }
    if f.run.approval_id.is_none() {
        return RunState::Approved;
    }
    match (f.grant_state, f.approval_status) {
        (Some(GrantState::Issued), _) if f.grant_expires_at.is_some_and(|t| t > now) => RunState::Approved,
        (Some(GrantState::Issued | GrantState::Expired), _) => RunState::Expired,
        (Some(GrantState::Cancelled), _) => RunState::Cancelled,
        (Some(GrantState::Claimed | GrantState::Consumed), _) => RunState::Finished,
        (Some(GrantState::Denied), _) => RunState::Denied,
        (None, Some(Status::Pending)) if f.approval_expires_at.is_some_and(|t| t > now) => RunState::AwaitingEntry,
        (None, Some(Status::Pending | Status::Expired)) => RunState::Expired,
        (None, _) => RunState::Denied,
    }
}
