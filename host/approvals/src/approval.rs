//! Human approval of single actions, and the grants those decisions put in the ledger.
//!
//! A tool (or the host's policy) asks for approval of one action; the request waits as
//! `pending` until a human decides it or it expires. Approving issues a grant in the
//! [`Ledger`] in the same transaction, bound to the request's tenant, agent, tool, action,
//! argument digest, call and run (denying records a `denied` grant); the grant's id is the
//! approval's id. The grant lives as long as the request was allowed to wait, counted from
//! the decision. Spending it ([`Approvals::consume`]) is a claim and a consumption in the
//! ledger, so it happens once.
//!
//! Waiting holds no thread: [`Approvals::wait`] is woken in-process by
//! [`Approvals::decide`], and re-reads the database every second so that a decision taken
//! by another process sharing the database (or before a restart) is seen too. After a
//! restart, [`Approvals::pending_for_resume`] lists the requests still waiting.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use airlock_store::sqlx::any::AnyRow;
use airlock_store::sqlx::{AnyConnection, Row};
use airlock_store::{now_millis, sqlx, Backend, Db, Signal};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use crate::canonical::args_digest_of_text;
use crate::ledger::{self, Cancellation, GrantSpec, GrantState, Ledger, LedgerError, Presented};

/// Longest an approval may wait, whatever the requester asks.
pub const MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Wait when the requester names none.
pub const DEFAULT_TTL: Duration = Duration::from_secs(15 * 60);
const POLL: Duration = Duration::from_secs(1);

/// The poll for a host whose waiters hear every decision as it is taken: decisions made by this
/// process ring in memory, those of other hosts on PostgreSQL arrive as signals (a dropped
/// listening connection wakes everyone). The poll is then only a last resort, and 10,000
/// waiters reading the database every second would cost a core.
pub const POLL_WITH_SIGNALS: Duration = Duration::from_secs(30);
/// The poll for the only process writing its (SQLite) database: every decision, cancellation
/// and deletion goes through it and rings its waiters in memory, and a waiter wakes at its own
/// expiry. The poll only guards against a missed ring; at 30 s, 10,000 waiters cost 333 reads a
/// second (3-4% of a core), at 10 minutes 17.
pub const POLL_SOLE_HOST: Duration = Duration::from_secs(600);
/// Created requests a slow subscriber may lag behind before it misses some.
const CREATED_BACKLOG: usize = 256;

/// What someone asks a human to approve.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewApproval {
    pub agent: String,
    pub tool: String,
    /// The call that asks; its grant can be spent by that call only. `None` binds to no call
    /// (a grant for a later call, e.g. a workflow's entry approval).
    #[serde(default)]
    pub call_id: Option<String>,
    pub action: String,
    /// The asker's own words (a tool's or an agent's), shown labelled as theirs; what the
    /// approver decides on is the host's [`Approval::summary`].
    pub note: String,
    pub role: Option<String>,
    /// JSON text; the grant is bound to its digest.
    pub details: String,
    pub ttl: Option<Duration>,
}

/// Where an approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Approved,
    Denied,
    Expired,
    Consumed,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Denied => "denied",
            Status::Expired => "expired",
            Status::Consumed => "consumed",
        }
    }

    pub(crate) fn parse(s: &str) -> Status {
        match s {
            "pending" => Status::Pending,
            "approved" => Status::Approved,
            "consumed" => Status::Consumed,
            "expired" => Status::Expired,
            // Anything unknown is treated as a refusal: fail closed.
            _ => Status::Denied,
        }
    }
}

/// A stored approval request and its decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Approval {
    /// Also the id of the grant a decision issues.
    pub id: String,
    pub tenant: String,
    /// Who asked: `agent:NAME`, or `ciba-client:ID` for a CIBA request.
    pub agent: String,
    pub tool: String,
    pub action: String,
    /// Written by the host from the bound action ([`crate::text::summary`]), never by the asker.
    pub summary: String,
    /// The asker's own words, labelled as theirs wherever shown; never the summary, never a
    /// CIBA binding message.
    pub note: String,
    /// The relation an approver must hold on `tenant:TENANT`; none: a tenant admin (a CIBA
    /// request is decided by the person it names).
    pub role: Option<String>,
    /// The action's arguments, as JSON text; the grant is bound to their digest.
    pub details: String,
    /// Hex sha256 of the canonical JSON of `details` ([`crate::canonical::args_digest`]).
    pub args_digest: String,
    pub status: Status,
    /// Who decided; none while undecided.
    pub approver: Option<String>,
    /// The approver's reason, when they gave one.
    pub reason: Option<String>,
    /// When it was asked (unix ms).
    pub created_at: i64,
    /// When it expires if no one decides it (unix ms).
    pub expires_at: i64,
    /// When it was decided (unix ms).
    pub decided_at: Option<i64>,
    /// The call that asked, which alone may spend the grant; a resumed host finds it here.
    #[serde(default)]
    pub call_id: Option<String>,
    /// The run whose entry this approves ([`crate::runs`]).
    #[serde(default)]
    pub run_id: Option<String>,
}

/// Failures of approval operations.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error("invalid approval request: {0}")]
    Invalid(String),
    #[error("no approval `{0}` in this tenant")]
    NotFound(String),
    #[error("approval `{id}` is already {status:?}, it cannot be decided again")]
    AlreadyDecided { id: String, status: Status },
    #[error("grant `{0}` is not usable: it does not exist, was not approved, was already used, or belongs to another agent, tool or action")]
    GrantUnusable(String),
    #[error("`{who}` already has {limit} approvals waiting for a decision, the most it may have at once; wait for some to be decided or expire, then ask again")]
    TooManyPending { who: String, limit: u32 },
    #[error("approval store unavailable: {0}")]
    Store(#[from] sqlx::Error),
}

/// How many requests may wait for a decision at once: each is a push to an approver, so an
/// agent (or a tenant's agents together) asking in a loop is refused, not passed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingLimits {
    pub per_agent: u32,
    pub per_tenant: u32,
}

impl Default for PendingLimits {
    fn default() -> PendingLimits {
        PendingLimits { per_agent: 256, per_tenant: 1024 }
    }
}

impl From<LedgerError> for ApprovalError {
    /// Only storage failures cross over; callers map refusals themselves.
    fn from(e: LedgerError) -> ApprovalError {
        match e {
            LedgerError::Store(e) => ApprovalError::Store(e),
            LedgerError::NotFound(id) => ApprovalError::NotFound(id),
            LedgerError::Invalid(m) => ApprovalError::Invalid(m),
            other => ApprovalError::GrantUnusable(other.to_string()),
        }
    }
}

/// Each waiter's bell, by approval id: a decision rings it here, or through a signal from
/// the host that took it (PostgreSQL, see [`SIGNAL_CHANNEL`]).
type Waiters = Mutex<HashMap<String, Arc<Notify>>>;

/// The channel on which a host tells the others that an approval was decided (its id as the
/// payload) or that every waiter should re-read (`*`).
pub const SIGNAL_CHANNEL: &str = "airlock_approvals";

/// The approval service.
pub struct Approvals {
    db: Db,
    ledger: Ledger,
    waiters: Arc<Waiters>,
    /// How long a waiter sleeps between reads when no bell rings: the last resort, should a
    /// signal be lost.
    poll: Duration,
    /// Wakes this host's waiters on other hosts' decisions (PostgreSQL); stops with the service.
    _listener: Option<Listener>,
    /// Every request [`Approvals::create`] stores, for whoever routes requests elsewhere
    /// (the server asks a tenant's external OpenID Provider). Lossy by design: a lagging
    /// subscriber misses requests, which then wait for a human in the console as before.
    created: tokio::sync::broadcast::Sender<Approval>,
    limits: PendingLimits,
}

/// sha256 of the raw text of `details`. Approvals bind to the canonical digest instead
/// ([`crate::canonical::args_digest`]), which does not depend on key order or whitespace.
pub fn digest(details: &str) -> String {
    hex::encode(Sha256::digest(details.as_bytes()))
}

const COLUMNS: &str = "id, tenant, agent, tool, action, summary, role, details, args_digest, status, approver, \
                       reason, created_at, expires_at, decided_at, call_id, run_id";

fn from_row(r: &AnyRow) -> Result<Approval, sqlx::Error> {
    let mut a = Approval {
        id: r.try_get(0)?,
        tenant: r.try_get(1)?,
        agent: r.try_get(2)?,
        tool: r.try_get(3)?,
        action: r.try_get(4)?,
        summary: String::new(),
        note: r.try_get(5)?,
        role: r.try_get(6)?,
        details: r.try_get(7)?,
        args_digest: r.try_get(8)?,
        status: Status::parse(&r.try_get::<String, _>(9)?),
        approver: r.try_get(10)?,
        reason: r.try_get(11)?,
        created_at: r.try_get(12)?,
        expires_at: r.try_get(13)?,
        decided_at: r.try_get(14)?,
        call_id: r.try_get(15)?,
        run_id: r.try_get(16)?,
    };
    a.summary = crate::text::summary(&a.agent, &a.tool, &a.action, &a.details);
    Ok(a)
}

/// Validates and stores a pending request inside the caller's transaction (runs use this).
pub(crate) async fn insert(
    conn: &mut AnyConnection,
    tenant: &str,
    req: NewApproval,
    run_id: Option<String>,
) -> Result<Approval, ApprovalError> {
    if req.action.trim().is_empty() {
        return Err(ApprovalError::Invalid("`action` is empty".into()));
    }
    let args_digest =
        args_digest_of_text(&req.details).ok_or_else(|| ApprovalError::Invalid("`details` is not JSON".into()))?;
    let ttl = req.ttl.unwrap_or(DEFAULT_TTL).min(MAX_TTL);
    let now = now_millis();
    let summary = crate::text::summary(&req.agent, &req.tool, &req.action, &req.details);
    let approval = Approval {
        id: format!("apr_{}", uuid::Uuid::new_v4().simple()),
        tenant: tenant.to_string(),
        args_digest,
        agent: req.agent,
        tool: req.tool,
        summary,
        action: req.action,
        note: req.note,
        role: req.role,
        details: req.details,
        status: Status::Pending,
        approver: None,
        reason: None,
        created_at: now,
        expires_at: now + ttl.as_millis() as i64,
        decided_at: None,
        call_id: req.call_id,
        run_id,
    };
    sqlx::query(
        "INSERT INTO approvals (id, tenant, agent, tool, action, summary, role, details, args_digest, status, \
         created_at, expires_at, call_id, run_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', $10, $11, $12, $13)",
    )
    .bind(&approval.id)
    .bind(&approval.tenant)
    .bind(&approval.agent)
    .bind(&approval.tool)
    .bind(&approval.action)
    .bind(&approval.note)
    .bind(&approval.role)
    .bind(&approval.details)
    .bind(&approval.args_digest)
    .bind(approval.created_at)
    .bind(approval.expires_at)
    .bind(&approval.call_id)
    .bind(&approval.run_id)
    .execute(&mut *conn)
    .await?;
    Ok(approval)
}

async fn fetch(conn: &mut AnyConnection, tenant: &str, id: &str) -> Result<Option<Approval>, sqlx::Error> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM approvals WHERE tenant = $1 AND id = $2"))
        .bind(tenant)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(from_row).transpose()
}

impl Approvals {
    /// The service over `db`, with its ledger in the same database.
    pub fn new(db: Db) -> Approvals {
        let (created, _) = tokio::sync::broadcast::channel(CREATED_BACKLOG);
        let waiters: Arc<Waiters> = Arc::default();
        let heard = Arc::downgrade(&waiters);
        let listener = db.listen(SIGNAL_CHANNEL, move |signal| {
            let Some(waiters) = heard.upgrade() else { return false };
            match signal {
                Signal::Sent(id) if id != "*" => ring(&waiters, id),
                // Everyone re-reads: a `*`, or signals lost while the connection was down.
                _ => ring_all(&waiters),
            }
            true
        });
        Approvals {
            ledger: Ledger::new(db.clone()),
            db,
            waiters,
            poll: POLL,
            _listener: listener.map(Listener),
            created,
            limits: PendingLimits::default(),
        }
    }

    /// The service with another poll interval for waiters (tests show that signals alone wake them).
    pub fn with_poll(mut self, poll: Duration) -> Approvals {
        self.poll = poll;
        self
    }

    /// The service with other limits on pending requests.
    pub fn with_limits(mut self, limits: PendingLimits) -> Approvals {
        self.limits = limits;
        self
    }

    /// The limits on pending requests in force.
    pub fn limits(&self) -> PendingLimits {
        self.limits
    }

    /// Refuses a new request of `agent` when, counting it (just inserted in the same
    /// transaction), it or its tenant would have more waiting than allowed. Inserting first
    /// takes SQLite's write lock before any read, so requests are counted one at a time there;
    /// hosts sharing PostgreSQL may each let one more through in a race (a soft bound).
    async fn check_room(&self, conn: &mut AnyConnection, tenant: &str, agent: &str) -> Result<(), ApprovalError> {
        let now = now_millis();
        let (mine, all): (i64, i64) = sqlx::query_as(
            "SELECT COALESCE(SUM(CASE WHEN agent = $2 THEN 1 ELSE 0 END), 0), COUNT(*) FROM approvals \
             WHERE tenant = $1 AND status = 'pending' AND expires_at > $3",
        )
        .bind(tenant)
        .bind(agent)
        .bind(now)
        .fetch_one(&mut *conn)
        .await?;
        if mine > i64::from(self.limits.per_agent) {
            return Err(ApprovalError::TooManyPending { who: agent.to_string(), limit: self.limits.per_agent });
        }
        if all > i64::from(self.limits.per_tenant) {
            return Err(ApprovalError::TooManyPending {
                who: format!("tenant `{tenant}`"),
                limit: self.limits.per_tenant,
            });
        }
        Ok(())
    }

    /// Requests created from now on by [`Approvals::create`] in this process (not those of runs,
    /// nor of other processes sharing the database).
    pub fn subscribe_created(&self) -> tokio::sync::broadcast::Receiver<Approval> {
        self.created.subscribe()
    }

    /// The ledger the decisions are recorded in, for claims with a full binding and for history.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Stores a pending request and returns it.
    pub async fn create(&self, tenant: &str, req: NewApproval) -> Result<Approval, ApprovalError> {
        let mut tx = self.db.pool().begin().await?;
        let approval = self.create_in(&mut tx, tenant, req).await?;
        tx.commit().await?;
        self.announce(&approval);
        Ok(approval)
    }

    /// Stores a pending request on `conn`, inside the caller's transaction, so that what the
    /// caller records beside it (the held call a policy waits on) commits with it or not at
    /// all. Once committed, the caller hands it to [`Approvals::announce`].
    pub async fn create_in(
        &self,
        conn: &mut AnyConnection,
        tenant: &str,
        req: NewApproval,
    ) -> Result<Approval, ApprovalError> {
        let agent = req.agent.clone();
        let approval = insert(conn, tenant, req, None).await?;
        self.check_room(conn, tenant, &agent).await?;
        Ok(approval)
    }

    /// Tells this process's subscribers (the console's live queue) of a committed request.
    pub fn announce(&self, approval: &Approval) {
        // No subscriber is the usual case, not an error.
        let _ = self.created.send(approval.clone());
    }

    /// One approval of a tenant.
    pub async fn get(&self, tenant: &str, id: &str) -> Result<Approval, ApprovalError> {
        let mut conn = self.db.pool().acquire().await?;
        fetch(&mut conn, tenant, id).await?.ok_or_else(|| ApprovalError::NotFound(id.to_string()))
    }

    /// A tenant's newest 500 approvals, newest first, optionally only those in `status`.
    pub async fn list(&self, tenant: &str, status: Option<Status>) -> Result<Vec<Approval>, ApprovalError> {
        self.list_page(tenant, status, None, 500).await
    }

    /// One page of [`Approvals::list`]: at most `limit`, and with `before` (an approval id)
    /// only those older than that approval; page on with the last id of a page.
    pub async fn list_page(
        &self,
        tenant: &str,
        status: Option<Status>,
        before: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Approval>, ApprovalError> {
        self.expire_due(Some(tenant)).await?;
        let cursor = match before {
            None => (i64::MAX, String::new()),
            Some(id) => {
                let a = self.get(tenant, id).await?;
                (a.created_at, a.id)
            }
        };
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM approvals WHERE tenant = $1 AND ($2 = '' OR status = $2) \
             AND (created_at < $3 OR (created_at = $3 AND id < $4)) ORDER BY created_at DESC, id DESC LIMIT $5"
        ))
        .bind(tenant)
        .bind(status.map(Status::as_str).unwrap_or(""))
        .bind(cursor.0)
        .bind(&cursor.1)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    /// The requests of `tenant` still waiting for a decision that call `call_id` made or is
    /// held by, oldest first: what a waiting call's progress names. One indexed lookup (no
    /// expiry sweep), so thousands of waiting calls may ask.
    pub async fn pending_for_call(&self, tenant: &str, call_id: &str) -> Result<Vec<Approval>, ApprovalError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM approvals WHERE tenant = $1 AND call_id = $2 AND status = 'pending' \
             AND expires_at > $3 ORDER BY created_at, id"
        ))
        .bind(tenant)
        .bind(call_id)
        .bind(now_millis())
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    /// How many requests wait for a decision now, by tenant (the host's metrics).
    pub async fn pending_by_tenant(&self) -> Result<Vec<(String, i64)>, ApprovalError> {
        let rows = sqlx::query_as(
            "SELECT tenant, COUNT(*) FROM approvals WHERE status = 'pending' AND expires_at > $1 GROUP BY tenant",
        )
        .bind(now_millis())
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows)
    }

    /// The requests still waiting for a decision, oldest first, in one tenant or all: what a
    /// host that restarted must resume waiting on (each names its call and run).
    pub async fn pending_for_resume(&self, tenant: Option<&str>) -> Result<Vec<Approval>, ApprovalError> {
        self.expire_due(tenant).await?;
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM approvals WHERE ($1 = '' OR tenant = $1) AND status = 'pending' ORDER BY created_at, id"
        ))
        .bind(tenant.unwrap_or(""))
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    /// Records a human's decision on a pending, unexpired request, and in the same transaction
    /// the grant it makes: `issued` when approved, `denied` when not.
    ///
    /// Whether `approver` holds the request's role is the caller's check (it
    /// lives in the authorization engine); this records who decided.
    pub async fn decide(
        &self,
        tenant: &str,
        id: &str,
        approver: &str,
        approve: bool,
        reason: Option<&str>,
    ) -> Result<Approval, ApprovalError> {
        let now = now_millis();
        let status = if approve { Status::Approved } else { Status::Denied };
        let mut tx = self.db.pool().begin().await?;
        // The write comes first, so that SQLite takes its write lock before any read.
        let changed = sqlx::query(
            "UPDATE approvals SET status = $1, approver = $2, reason = $3, decided_at = $4 \
             WHERE tenant = $5 AND id = $6 AND status = 'pending' AND expires_at > $4",
        )
        .bind(status.as_str())
        .bind(approver)
        .bind(reason)
        .bind(now)
        .bind(tenant)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            tx.rollback().await?;
            self.expire_due(Some(tenant)).await?;
            let current = self.get(tenant, id).await?;
            return Err(ApprovalError::AlreadyDecided { id: id.to_string(), status: current.status });
        }
        let decided = fetch(&mut tx, tenant, id).await?.ok_or_else(|| ApprovalError::NotFound(id.to_string()))?;
        let spec = GrantSpec {
            agent: decided.agent.clone(),
            tool: decided.tool.clone(),
            action: decided.action.clone(),
            args_digest: decided.args_digest.clone(),
            run_id: decided.run_id.clone(),
            call_id: decided.call_id.clone(),
            approver: approver.to_string(),
            role: decided.role.clone(),
            expires_at: now + (decided.expires_at - decided.created_at),
        };
        let state = if approve { GrantState::Issued } else { GrantState::Denied };
        ledger::insert_grant(&mut tx, tenant, id, &spec, state, now, reason).await?;
        tx.commit().await?;
        self.wake(id);
        self.tell_other_hosts(id).await;
        Ok(decided)
    }

    /// Waits until the request is decided or expires, and returns it then. Works on a request
    /// made by another process or before a restart: the state is read from the database.
    pub async fn wait(&self, tenant: &str, id: &str) -> Result<Approval, ApprovalError> {
        let notify = self.waiters.lock().entry(id.to_string()).or_default().clone();
        let result = loop {
            // Register interest before reading, so a decision in between is not missed.
            let notified = notify.notified();
            let approval = match self.get(tenant, id).await {
                Ok(a) => a,
                Err(e) => break Err(e),
            };
            if approval.status != Status::Pending {
                break Ok(approval);
            }
            let remaining = approval.expires_at - now_millis();
            if remaining <= 0 {
                if let Err(e) = self.expire_due(Some(tenant)).await {
                    break Err(e);
                }
                continue;
            }
            let nap = self.poll.min(Duration::from_millis(remaining as u64));
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(nap) => {}
            }
        };
        self.waiters.lock().remove(id);
        result
    }

    /// Spends an approved grant, exactly once, for the agent, tool and call it was issued to.
    ///
    /// In the ledger this is a claim and a consumption in one transaction, made before the
    /// action runs (the caller cannot report an outcome here); the action and argument digest
    /// presented are the grant's own, since this caller does not know them. Callers that do
    /// should use [`Ledger::claim`] and [`Ledger::consume`] around the action instead. Any
    /// refusal is recorded in the ledger and reported as [`ApprovalError::GrantUnusable`].
    pub async fn consume(
        &self,
        tenant: &str,
        grant: &str,
        agent: &str,
        tool: &str,
        call_id: &str,
    ) -> Result<Approval, ApprovalError> {
        let known = match self.get(tenant, grant).await {
            Ok(a) => Some(a),
            Err(ApprovalError::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        let presented = Presented {
            agent: agent.to_string(),
            tool: tool.to_string(),
            action: known.as_ref().map(|a| a.action.clone()).unwrap_or_default(),
            args_digest: known.as_ref().map(|a| a.args_digest.clone()).unwrap_or_default(),
            call_id: Some(call_id.to_string()),
            // A run's entry grant is not spent by a single call.
            run_id: None,
        };
        let now = now_millis();
        let mut tx = self.db.pool().begin().await?;
        let spent = match ledger::claim_in(&mut tx, tenant, grant, &presented, now).await? {
            Ok(_) => ledger::consume_in(&mut tx, tenant, grant, &format!("spent by call `{call_id}`"), now).await?,
            Err(refused) => Err(refused),
        };
        if spent.is_ok() {
            sqlx::query("UPDATE approvals SET status = 'consumed', consumed_at = $1 WHERE tenant = $2 AND id = $3")
                .bind(now)
                .bind(tenant)
                .bind(grant)
                .execute(&mut *tx)
                .await?;
        }
        // Committed either way: a refusal is recorded in the ledger.
        tx.commit().await?;
        match spent {
            Ok(_) => self.get(tenant, grant).await,
            Err(LedgerError::Store(e)) => Err(ApprovalError::Store(e)),
            Err(_) => Err(ApprovalError::GrantUnusable(grant.to_string())),
        }
    }

    /// Ends an uninstalled agent's authority: issued grants are cancelled, pending requests
    /// denied (their waiters wake with `denied`).
    pub async fn cancel_for_agent(&self, tenant: &str, agent: &str) -> Result<Cancellation, ApprovalError> {
        let done = self.ledger.cancel_for_agent(tenant, agent).await?;
        self.wake_all();
        Ok(done)
    }

    /// [`Approvals::cancel_for_agent`] inside the caller's transaction; call
    /// [`Approvals::wake_all`] once it commits.
    pub async fn cancel_for_agent_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        tenant: &str,
        agent: &str,
    ) -> Result<Cancellation, ApprovalError> {
        Ok(self.ledger.cancel_for_agent_in(tx, tenant, agent).await?)
    }

    /// Wakes every waiter, on this host and the others, to re-read its request (after a
    /// transaction decided some).
    pub fn wake_all(&self) {
        ring_all(&self.waiters);
        if self.db.backend() != Backend::Postgres {
            return;
        }
        let approvals = self.db.clone();
        tokio::spawn(async move {
            if let Err(e) = approvals.signal(SIGNAL_CHANNEL, "*").await {
                tracing::warn!("other hosts' approval waiters are not told at once (they poll): {e}");
            }
        });
    }

    /// Tells the other hosts (PostgreSQL) that approval `id` was decided; they poll should it fail.
    async fn tell_other_hosts(&self, id: &str) {
        if let Err(e) = self.db.signal(SIGNAL_CHANNEL, id).await {
            tracing::warn!("other hosts' waiters on `{id}` are not told at once (they poll): {e}");
        }
    }

    /// Marks overdue pending requests as expired, in one tenant or all.
    async fn expire_due(&self, tenant: Option<&str>) -> Result<(), ApprovalError> {
        sqlx::query(
            "UPDATE approvals SET status = 'expired', decided_at = $1 \
             WHERE ($2 = '' OR tenant = $2) AND status = 'pending' AND expires_at <= $1",
        )
        .bind(now_millis())
        .bind(tenant.unwrap_or(""))
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    fn wake(&self, id: &str) {
        ring(&self.waiters, id);
    }
}

fn ring(waiters: &Waiters, id: &str) {
    if let Some(n) = waiters.lock().get(id) {
        n.notify_waiters();
    }
}

fn ring_all(waiters: &Waiters) {
    let waiting: Vec<Arc<Notify>> = waiters.lock().values().cloned().collect();
    for n in waiting {
        n.notify_waiters();
    }
}

/// The task listening for other hosts' signals, stopped when the service is dropped.
struct Listener(tokio::task::JoinHandle<()>);

impl Drop for Listener {
    fn drop(&mut self) {
        self.0.abort();
    }
}
