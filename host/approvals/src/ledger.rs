//! The authority ledger: every authorization, from issue to its single use.
//!
//! Authorization is not stored as a standing permission: a grant is created when an action
//! needs to run (a human approved it) and spent when it runs. Each grant is bound to tenant,
//! agent, tool, action, the digest of the arguments ([`crate::canonical::args_digest`]), and
//! optionally a run and a call. Its state only moves forward:
//!
//! ```text
//! issued --claim--> claimed --consume--> consumed
//!   |  \--expire--> expired
//!   \----cancel---> cancelled        (denied: recorded as such, never usable)
//! ```
//!
//! The ledger is append-only: every transition is a row in `ledger_events`, written in the
//! same transaction as the state change on the `grants` row, and so is every refused claim
//! (with its reason), so the audit shows attempts as well as uses. Nothing is deleted.
//!
//! Claiming is one conditional `UPDATE ... WHERE state = 'issued' AND <binding matches>`:
//! on PostgreSQL concurrent claimers queue on the row lock and re-check the condition, on
//! SQLite writers are serialized, so of any number of concurrent claims exactly one wins,
//! across processes and hosts sharing the database. When the update matches no row the
//! grant is read back to say why (wrong binding first, then its state).
//!
//! A claimed grant whose action crashed stays `claimed`: it is never returned to `issued`
//! and never expires, because the ledger cannot know whether the action took effect, and a
//! grant spent twice is worse than a grant lost. The human approves again if needed.

use std::fmt;

use airlock_store::sqlx::any::AnyRow;
use airlock_store::sqlx::{AnyConnection, Row};
use airlock_store::{now_millis, sqlx, Db};
use serde::{Deserialize, Serialize};

/// Who records host-driven transitions (expiry, consumption) in `ledger_events.actor`.
pub const HOST_ACTOR: &str = "host";

/// Where a grant stands. Only the moves drawn in the module docs happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GrantState {
    Issued,
    Claimed,
    Consumed,
    Denied,
    Expired,
    Cancelled,
}

impl GrantState {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantState::Issued => "issued",
            GrantState::Claimed => "claimed",
            GrantState::Consumed => "consumed",
            GrantState::Denied => "denied",
            GrantState::Expired => "expired",
            GrantState::Cancelled => "cancelled",
        }
    }

    /// Reads a stored spelling; anything unknown is `Denied`, so it fails closed.
    pub fn parse(s: &str) -> GrantState {
        match s {
            "issued" => GrantState::Issued,
            "claimed" => GrantState::Claimed,
            "consumed" => GrantState::Consumed,
            "expired" => GrantState::Expired,
            "cancelled" => GrantState::Cancelled,
            _ => GrantState::Denied,
        }
    }
}

/// What a new grant is bound to, and until when it may be claimed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantSpec {
    /// The agent subject that may spend it, e.g. `agent:offboarder`.
    pub agent: String,
    pub tool: String,
    pub action: String,
    /// Hex sha256 of the canonical JSON arguments ([`crate::canonical::args_digest`]).
    pub args_digest: String,
    /// Only steps of this run may spend it; `None` binds to no run.
    pub run_id: Option<String>,
    /// Only this call may spend it; `None` binds to no call.
    pub call_id: Option<String>,
    /// The human who approved, e.g. `user:carol`.
    pub approver: String,
    /// The role the approver decided in, e.g. `cfo`.
    pub role: Option<String>,
    /// Unix millis after which it can no longer be claimed.
    pub expires_at: i64,
}

/// A grant as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub id: String,
    pub tenant: String,
    pub agent: String,
    pub tool: String,
    pub action: String,
    pub args_digest: String,
    pub run_id: Option<String>,
    pub call_id: Option<String>,
    /// Who decided; empty when no human did (a pending request cancelled by uninstall).
    pub approver: String,
    pub role: Option<String>,
    pub state: GrantState,
    pub issued_at: i64,
    pub expires_at: i64,
    pub claimed_at: Option<i64>,
    pub consumed_at: Option<i64>,
    pub outcome: Option<String>,
}

/// What a caller presents when it wants to spend a grant; compared field by field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presented {
    pub agent: String,
    pub tool: String,
    pub action: String,
    pub args_digest: String,
    pub call_id: Option<String>,
    pub run_id: Option<String>,
}

/// A won claim: the grant, now `claimed` by the presenter, to be consumed when the action ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub grant: Grant,
}

/// Which part of a grant's binding a presenter got wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BindingField {
    Agent,
    Tool,
    Action,
    ArgsDigest,
    Call,
    Run,
}

impl fmt::Display for BindingField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BindingField::Agent => "agent",
            BindingField::Tool => "tool",
            BindingField::Action => "action",
            BindingField::ArgsDigest => "args_digest",
            BindingField::Call => "call",
            BindingField::Run => "run",
        })
    }
}

/// One row of a grant's history: a transition, or a refused attempt (same state before and after).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEvent {
    pub seq: i64,
    pub grant_id: String,
    /// `issue`, `deny`, `claim`, `consume`, `expire`, `cancel`, `claim_refused`, `consume_refused`, `step_refused`.
    pub event: String,
    pub from: Option<GrantState>,
    pub to: Option<GrantState>,
    pub at: i64,
    /// Who caused it: the approver, the presenting agent, or [`HOST_ACTOR`].
    pub by: String,
    pub reason: Option<String>,
}

/// How many authorizations an uninstall ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Cancellation {
    /// Issued grants now `cancelled`.
    pub grants: u64,
    /// Pending approval requests now denied (and recorded as `cancelled` grants).
    pub approvals: u64,
}

/// Why the ledger refused; every refusal of a claim is also a ledger event.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("invalid grant: {0}")]
    Invalid(String),
    #[error("no grant `{0}` in this tenant")]
    NotFound(String),
    #[error("grant `{0}` was already used")]
    Replayed(String),
    #[error("grant `{grant}` is bound to another {field}")]
    WrongBinding { grant: String, field: BindingField },
    #[error("grant `{0}` has expired")]
    Expired(String),
    #[error("grant `{0}` was denied")]
    Denied(String),
    #[error("grant `{0}` was cancelled")]
    Cancelled(String),
    #[error("grant `{0}` is not claimed, so it cannot be consumed")]
    NotClaimed(String),
    #[error("run `{0}` is waiting for its entry approval")]
    AwaitingApproval(String),
    #[error("ledger unavailable: {0}")]
    Store(#[from] sqlx::Error),
}

impl LedgerError {
    /// The short reason stored with a refusal event.
    fn reason(&self) -> String {
        match self {
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
}

/// The ledger over one database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Ledger {
    db: Db,
}

const GRANT_COLUMNS: &str = "id, tenant, agent, tool, action, args_digest, run_id, call_id, approver, role, state, \
                             issued_at, expires_at, claimed_at, consumed_at, outcome";

impl Ledger {
    /// The ledger stored in `db`.
    pub fn new(db: Db) -> Ledger {
        Ledger { db }
    }

    /// Records a new `issued` grant (a human approved `spec`) and returns it.
    pub async fn issue(&self, tenant: &str, spec: GrantSpec) -> Result<Grant, LedgerError> {
        validate(&spec)?;
        let id = format!("grt_{}", uuid::Uuid::new_v4().simple());
        let mut tx = self.db.pool().begin().await?;
        insert_grant(&mut tx, tenant, &id, &spec, GrantState::Issued, now_millis(), None).await?;
        let grant = fetch(&mut tx, tenant, &id).await?.ok_or_else(|| LedgerError::NotFound(id.clone()))?;
        tx.commit().await?;
        Ok(grant)
    }

    /// One grant of a tenant.
    pub async fn get(&self, tenant: &str, grant_id: &str) -> Result<Grant, LedgerError> {
        let mut conn = self.db.pool().acquire().await?;
        fetch(&mut conn, tenant, grant_id).await?.ok_or_else(|| LedgerError::NotFound(grant_id.to_string()))
    }

    /// Claims an issued, unexpired grant whose binding matches `presented`: exactly once.
    ///
    /// A refusal says why (binding before state) and is recorded as a `claim_refused` event.
    pub async fn claim(&self, tenant: &str, grant_id: &str, presented: Presented) -> Result<Claim, LedgerError> {
        let mut tx = self.db.pool().begin().await?;
        let outcome = claim_in(&mut tx, tenant, grant_id, &presented, now_millis()).await?;
        tx.commit().await?;
        outcome.map(|grant| Claim { grant })
    }

    /// Marks a claimed grant `consumed` once its action ran; `outcome` says how it went.
    pub async fn consume(&self, tenant: &str, grant_id: &str, outcome: &str) -> Result<Grant, LedgerError> {
        let mut tx = self.db.pool().begin().await?;
        let result = consume_in(&mut tx, tenant, grant_id, outcome, now_millis()).await?;
        tx.commit().await?;
        result
    }

    /// Moves every tenant's issued grants past their deadline to `expired`; returns how many.
    /// Claimed grants never expire (see the module docs).
    pub async fn expire_due(&self, now: i64) -> Result<u64, LedgerError> {
        let mut tx = self.db.pool().begin().await?;
        let rows = sqlx::query(
            "UPDATE grants SET state = 'expired' WHERE state = 'issued' AND expires_at <= $1 RETURNING tenant, id",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        for row in &rows {
            let (tenant, id): (String, String) = (row.try_get(0)?, row.try_get(1)?);
            let ev = Ev::transition("expire", GrantState::Issued, GrantState::Expired, now, HOST_ACTOR);
            insert_event(&mut tx, &tenant, &id, ev).await?;
        }
        tx.commit().await?;
        Ok(rows.len() as u64)
    }

    /// Forgets what is over and old: grants that ended (consumed, denied, expired, cancelled)
    /// and were issued before `before`, with their history, and refused claims older than
    /// `before` of grants that do not exist (anyone may present any id: without this, each
    /// guess would be a row forever). The audit trail keeps its own record of all of it; an
    /// id purged here is refused as unknown if presented again. Returns (grants, events).
    pub async fn purge(&self, before: i64) -> Result<(u64, u64), LedgerError> {
        let mut tx = self.db.pool().begin().await?;
        let ended = "state IN ('consumed', 'denied', 'expired', 'cancelled') AND issued_at < $1";
        let events = sqlx::query(&format!(
            "DELETE FROM ledger_events WHERE grant_id IN (SELECT id FROM grants WHERE {ended}) \
             OR (at < $1 AND grant_id NOT IN (SELECT id FROM grants))"
        ))
        .bind(before)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let grants = sqlx::query(&format!("DELETE FROM grants WHERE {ended}"))
            .bind(before)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok((grants, events))
    }

    /// Ends an agent's outstanding authority (uninstall): its issued grants become `cancelled`
    /// and its pending approval requests are denied, recorded as `cancelled` grants.
    pub async fn cancel_for_agent(&self, tenant: &str, agent: &str) -> Result<Cancellation, LedgerError> {
        let mut tx = self.db.pool().begin().await?;
        let done = self.cancel_for_agent_in(&mut tx, tenant, agent).await?;
        tx.commit().await?;
        Ok(done)
    }

    /// [`Ledger::cancel_for_agent`] inside the caller's transaction (uninstall cancels with
    /// everything else it deletes, so a reinstalled agent of the same name inherits nothing).
    pub async fn cancel_for_agent_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        tenant: &str,
        agent: &str,
    ) -> Result<Cancellation, LedgerError> {
        let now = now_millis();
        let reason = format!("agent `{agent}` uninstalled");
        let issued = sqlx::query(
            "UPDATE grants SET state = 'cancelled' WHERE tenant = $1 AND agent = $2 AND state = 'issued' RETURNING id",
        )
        .bind(tenant)
        .bind(agent)
        .fetch_all(&mut **tx)
        .await?;
        for row in &issued {
            let id: String = row.try_get(0)?;
            let ev =
                Ev::transition("cancel", GrantState::Issued, GrantState::Cancelled, now, HOST_ACTOR).because(&reason);
            insert_event(tx, tenant, &id, ev).await?;
        }
        let pending = sqlx::query(
            "UPDATE approvals SET status = 'denied', reason = $1, decided_at = $2 \
             WHERE tenant = $3 AND agent = $4 AND status = 'pending' \
             RETURNING id, agent, tool, action, args_digest, run_id, call_id, role, expires_at",
        )
        .bind(format!("cancelled: {reason}"))
        .bind(now)
        .bind(tenant)
        .bind(agent)
        .fetch_all(&mut **tx)
        .await?;
        for row in &pending {
            let id: String = row.try_get(0)?;
            let spec = GrantSpec {
                agent: row.try_get(1)?,
                tool: row.try_get(2)?,
                action: row.try_get(3)?,
                args_digest: row.try_get(4)?,
                run_id: row.try_get(5)?,
                call_id: row.try_get(6)?,
                approver: String::new(),
                role: row.try_get(7)?,
                expires_at: row.try_get(8)?,
            };
            insert_grant(tx, tenant, &id, &spec, GrantState::Cancelled, now, Some(&reason)).await?;
        }
        Ok(Cancellation { grants: issued.len() as u64, approvals: pending.len() as u64 })
    }

    /// A grant's events, oldest first, refused attempts included.
    pub async fn history(&self, tenant: &str, grant_id: &str) -> Result<Vec<LedgerEvent>, LedgerError> {
        let rows = sqlx::query(
            "SELECT seq, grant_id, event, from_state, to_state, at, actor, reason FROM ledger_events \
             WHERE tenant = $1 AND grant_id = $2 ORDER BY seq",
        )
        .bind(tenant)
        .bind(grant_id)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(event_from_row).collect::<Result<_, sqlx::Error>>().map_err(LedgerError::from)
    }
}

fn validate(spec: &GrantSpec) -> Result<(), LedgerError> {
    for (name, value) in [("agent", &spec.agent), ("tool", &spec.tool), ("action", &spec.action)] {
        if value.trim().is_empty() {
            return Err(LedgerError::Invalid(format!("`{name}` is empty")));
        }
    }
    if spec.args_digest.len() != 64 || !spec.args_digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(LedgerError::Invalid(format!("`{}` is not a hex sha256 digest", spec.args_digest)));
    }
    Ok(())
}

/// An event about to be written.
pub(crate) struct Ev<'a> {
    event: &'a str,
    from: Option<GrantState>,
    to: Option<GrantState>,
    at: i64,
    by: &'a str,
    reason: Option<String>,
}

impl<'a> Ev<'a> {
    pub(crate) fn transition(event: &'a str, from: GrantState, to: GrantState, at: i64, by: &'a str) -> Ev<'a> {
        Ev { event, from: Some(from), to: Some(to), at, by, reason: None }
    }

    /// A refused attempt: the state is unchanged (`None` when there is no such grant).
    pub(crate) fn refusal(
        event: &'a str,
        state: Option<GrantState>,
        at: i64,
        by: &'a str,
        why: &LedgerError,
    ) -> Ev<'a> {
        Ev { event, from: state, to: state, at, by, reason: Some(why.reason()) }
    }

    pub(crate) fn because(mut self, reason: &str) -> Ev<'a> {
        self.reason = Some(reason.to_string());
        self
    }
}

pub(crate) async fn insert_event(
    conn: &mut AnyConnection,
    tenant: &str,
    grant_id: &str,
    ev: Ev<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO ledger_events (tenant, grant_id, event, from_state, to_state, at, actor, reason) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(tenant)
    .bind(grant_id)
    .bind(ev.event)
    .bind(ev.from.map(GrantState::as_str))
    .bind(ev.to.map(GrantState::as_str))
    .bind(ev.at)
    .bind(ev.by)
    .bind(ev.reason)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Inserts a grant born in `state` (`issued`, `denied` or `cancelled`) and its first event.
pub(crate) async fn insert_grant(
    conn: &mut AnyConnection,
    tenant: &str,
    id: &str,
    spec: &GrantSpec,
    state: GrantState,
    now: i64,
    reason: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO grants (id, tenant, agent, tool, action, args_digest, run_id, call_id, approver, role, state, \
         issued_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(id)
    .bind(tenant)
    .bind(&spec.agent)
    .bind(&spec.tool)
    .bind(&spec.action)
    .bind(&spec.args_digest)
    .bind(&spec.run_id)
    .bind(&spec.call_id)
    .bind(&spec.approver)
    .bind(&spec.role)
    .bind(state.as_str())
    .bind(now)
    .bind(spec.expires_at)
    .execute(&mut *conn)
    .await?;
    let event = match state {
        GrantState::Denied => "deny",
        GrantState::Cancelled => "cancel",
        _ => "issue",
    };
    let by = if spec.approver.is_empty() { HOST_ACTOR } else { spec.approver.as_str() };
    let ev = Ev { event, from: None, to: Some(state), at: now, by, reason: reason.map(str::to_string) };
    insert_event(conn, tenant, id, ev).await
}

pub(crate) async fn fetch(conn: &mut AnyConnection, tenant: &str, id: &str) -> Result<Option<Grant>, sqlx::Error> {
    let row = sqlx::query(&format!("SELECT {GRANT_COLUMNS} FROM grants WHERE tenant = $1 AND id = $2"))
        .bind(tenant)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(grant_from_row).transpose()
}

/// The claim inside a caller's transaction. The outer error aborts it; the inner one is a
/// refusal, already recorded, and the transaction must still be committed to keep that record.
pub(crate) async fn claim_in(
    conn: &mut AnyConnection,
    tenant: &str,
    grant_id: &str,
    p: &Presented,
    now: i64,
) -> Result<Result<Grant, LedgerError>, sqlx::Error> {
    let won = sqlx::query(
        "UPDATE grants SET state = 'claimed', claimed_at = $1 \
         WHERE tenant = $2 AND id = $3 AND state = 'issued' AND expires_at > $1 \
         AND agent = $4 AND tool = $5 AND action = $6 AND args_digest = $7 \
         AND (call_id IS NULL OR call_id = $8) AND (run_id IS NULL OR run_id = $9)",
    )
    .bind(now)
    .bind(tenant)
    .bind(grant_id)
    .bind(&p.agent)
    .bind(&p.tool)
    .bind(&p.action)
    .bind(&p.args_digest)
    .bind(&p.call_id)
    .bind(&p.run_id)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if won {
        let ev = Ev::transition("claim", GrantState::Issued, GrantState::Claimed, now, &p.agent);
        insert_event(conn, tenant, grant_id, ev).await?;
        return Ok(fetch(conn, tenant, grant_id).await?.ok_or_else(|| LedgerError::NotFound(grant_id.to_string())));
    }
    let current = fetch(conn, tenant, grant_id).await?;
    let refusal = match &current {
        None => LedgerError::NotFound(grant_id.to_string()),
        Some(g) => why_not(g, p, now),
    };
    let mut state = current.as_ref().map(|g| g.state);
    if let (Some(GrantState::Issued), LedgerError::Expired(_)) = (state, &refusal) {
        expire_one(conn, tenant, grant_id, now).await?;
        state = Some(GrantState::Expired);
    }
    insert_event(conn, tenant, grant_id, Ev::refusal("claim_refused", state, now, &p.agent, &refusal)).await?;
    Ok(Err(refusal))
}

/// Why `g` cannot be claimed by `p` now: binding first, then state.
fn why_not(g: &Grant, p: &Presented, now: i64) -> LedgerError {
    let bound = |grant: &Option<String>, presented: &Option<String>| grant.is_none() || grant == presented;
    let field = if g.agent != p.agent {
        Some(BindingField::Agent)
    } else if g.tool != p.tool {
        Some(BindingField::Tool)
    } else if g.action != p.action {
        Some(BindingField::Action)
    } else if g.args_digest != p.args_digest {
        Some(BindingField::ArgsDigest)
    } else if !bound(&g.call_id, &p.call_id) {
        Some(BindingField::Call)
    } else if !bound(&g.run_id, &p.run_id) {
        Some(BindingField::Run)
    } else {
        None
    };
    if let Some(field) = field {
        return LedgerError::WrongBinding { grant: g.id.clone(), field };
    }
    state_refusal(g, now)
}

/// The refusal for a grant that is not usable because of its state or deadline.
pub(crate) fn state_refusal(g: &Grant, now: i64) -> LedgerError {
    let id = g.id.clone();
    match g.state {
        GrantState::Claimed | GrantState::Consumed => LedgerError::Replayed(id),
        GrantState::Denied => LedgerError::Denied(id),
        GrantState::Cancelled => LedgerError::Cancelled(id),
        GrantState::Expired => LedgerError::Expired(id),
        GrantState::Issued if g.expires_at <= now => LedgerError::Expired(id),
        // Issued, unexpired and matching: only a concurrent change explains the miss; refuse.
        GrantState::Issued => LedgerError::Replayed(id),
    }
}

pub(crate) async fn expire_one(conn: &mut AnyConnection, tenant: &str, id: &str, now: i64) -> Result<(), sqlx::Error> {
    let changed = sqlx::query("UPDATE grants SET state = 'expired' WHERE tenant = $1 AND id = $2 AND state = 'issued'")
        .bind(tenant)
        .bind(id)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    if changed == 1 {
        let ev = Ev::transition("expire", GrantState::Issued, GrantState::Expired, now, HOST_ACTOR);
        insert_event(conn, tenant, id, ev).await?;
    }
    Ok(())
}

/// Claimed -> consumed inside a caller's transaction; errors as in [`claim_in`].
pub(crate) async fn consume_in(
    conn: &mut AnyConnection,
    tenant: &str,
    grant_id: &str,
    outcome: &str,
    now: i64,
) -> Result<Result<Grant, LedgerError>, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE grants SET state = 'consumed', consumed_at = $1, outcome = $2 \
         WHERE tenant = $3 AND id = $4 AND state = 'claimed'",
    )
    .bind(now)
    .bind(outcome)
    .bind(tenant)
    .bind(grant_id)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    let current = fetch(conn, tenant, grant_id).await?;
    if done {
        let ev = Ev::transition("consume", GrantState::Claimed, GrantState::Consumed, now, HOST_ACTOR).because(outcome);
        insert_event(conn, tenant, grant_id, ev).await?;
        return Ok(current.ok_or_else(|| LedgerError::NotFound(grant_id.to_string())));
    }
    let refusal = match &current {
        None => LedgerError::NotFound(grant_id.to_string()),
        Some(g) if g.state == GrantState::Issued => LedgerError::NotClaimed(g.id.clone()),
        Some(g) => state_refusal(g, now),
    };
    let state = current.as_ref().map(|g| g.state);
    insert_event(conn, tenant, grant_id, Ev::refusal("consume_refused", state, now, HOST_ACTOR, &refusal)).await?;
    Ok(Err(refusal))
}

fn grant_from_row(r: &AnyRow) -> Result<Grant, sqlx::Error> {
    Ok(Grant {
        id: r.try_get(0)?,
        tenant: r.try_get(1)?,
        agent: r.try_get(2)?,
        tool: r.try_get(3)?,
        action: r.try_get(4)?,
        args_digest: r.try_get(5)?,
        run_id: r.try_get(6)?,
        call_id: r.try_get(7)?,
        approver: r.try_get(8)?,
        role: r.try_get(9)?,
        state: GrantState::parse(&r.try_get::<String, _>(10)?),
        issued_at: r.try_get(11)?,
        expires_at: r.try_get(12)?,
        claimed_at: r.try_get(13)?,
        consumed_at: r.try_get(14)?,
        outcome: r.try_get(15)?,
    })
}

fn event_from_row(r: &AnyRow) -> Result<LedgerEvent, sqlx::Error> {
    let state = |s: Option<String>| s.as_deref().map(GrantState::parse);
    Ok(LedgerEvent {
        seq: r.try_get(0)?,
        grant_id: r.try_get(1)?,
        event: r.try_get(2)?,
        from: state(r.try_get(3)?),
        to: state(r.try_get(4)?),
        at: r.try_get(5)?,
        by: r.try_get(6)?,
        reason: r.try_get(7)?,
    })
}
