//! Human approval of single actions.
//!
//! A tool (or the host's policy) asks for approval of one action; the request
//! waits as `pending` until a human decides it or it expires. An approval is a
//! grant bound to tenant, agent, tool, action and a digest of the action's
//! details, and it can be consumed exactly once (`approved` -> `consumed` is a
//! single conditional `UPDATE`, atomic on SQLite and PostgreSQL alike).
//!
//! Waiting holds no thread: [`Approvals::wait`] is woken in-process by
//! [`Approvals::decide`], and re-reads the database every second so that a
//! decision taken by another host sharing the database is seen too.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use airlock_store::{now_millis, sqlx, Db};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

pub mod ciba;

/// Longest an approval may wait, whatever the requester asks.
pub const MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Wait when the requester names none.
pub const DEFAULT_TTL: Duration = Duration::from_secs(15 * 60);
const POLL: Duration = Duration::from_secs(1);

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
    pub summary: String,
    pub role: Option<String>,
    /// JSON text; the grant is bound to its digest.
    pub details: String,
    pub ttl: Option<Duration>,
}

/// Where an approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Approved,
    Denied,
    Expired,
    Consumed,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Denied => "denied",
            Status::Expired => "expired",
            Status::Consumed => "consumed",
        }
    }

    fn parse(s: &str) -> Status {
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    pub id: String,
    pub tenant: String,
    pub agent: String,
    pub tool: String,
    pub action: String,
    pub summary: String,
    pub role: Option<String>,
    pub details: String,
    pub args_digest: String,
    pub status: Status,
    pub approver: Option<String>,
    pub reason: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub decided_at: Option<i64>,
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
    #[error("approval store unavailable: {0}")]
    Store(#[from] sqlx::Error),
}

/// The approval service.
pub struct Approvals {
    db: Db,
    waiters: Mutex<HashMap<String, Arc<Notify>>>,
}

/// sha256 of the details an approval is bound to.
pub fn digest(details: &str) -> String {
    hex::encode(Sha256::digest(details.as_bytes()))
}

const COLUMNS: &str = "id, tenant, agent, tool, action, summary, role, details, args_digest, status, approver, reason, created_at, expires_at, decided_at";
type Row = (
    String,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    i64,
    i64,
    Option<i64>,
);

fn from_row(r: Row) -> Approval {
    Approval {
        id: r.0,
        tenant: r.1,
        agent: r.2,
        tool: r.3,
        action: r.4,
        summary: r.5,
        role: r.6,
        details: r.7,
        args_digest: r.8,
        status: Status::parse(&r.9),
        approver: r.10,
        reason: r.11,
        created_at: r.12,
        expires_at: r.13,
        decided_at: r.14,
    }
}

impl Approvals {
    /// The service over `db`.
    pub fn new(db: Db) -> Approvals {
        Approvals { db, waiters: Mutex::new(HashMap::new()) }
    }

    /// Stores a pending request and returns it.
    pub async fn create(&self, tenant: &str, req: NewApproval) -> Result<Approval, ApprovalError> {
        if req.action.trim().is_empty() {
            return Err(ApprovalError::Invalid("`action` is empty".into()));
        }
        if serde_json::from_str::<serde_json::Value>(&req.details).is_err() {
            return Err(ApprovalError::Invalid("`details` is not JSON".into()));
        }
        let ttl = req.ttl.unwrap_or(DEFAULT_TTL).min(MAX_TTL);
        let now = now_millis();
        let approval = Approval {
            id: format!("apr_{}", uuid::Uuid::new_v4().simple()),
            tenant: tenant.to_string(),
            args_digest: digest(&req.details),
            agent: req.agent,
            tool: req.tool,
            action: req.action,
            summary: req.summary,
            role: req.role,
            details: req.details,
            status: Status::Pending,
            approver: None,
            reason: None,
            created_at: now,
            expires_at: now + ttl.as_millis() as i64,
            decided_at: None,
        };
        sqlx::query(
            "INSERT INTO approvals (id, tenant, agent, tool, action, summary, role, details, args_digest, status, created_at, expires_at, call_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', $10, $11, $12)",
        )
        .bind(&approval.id)
        .bind(&approval.tenant)
        .bind(&approval.agent)
        .bind(&approval.tool)
        .bind(&approval.action)
        .bind(&approval.summary)
        .bind(&approval.role)
        .bind(&approval.details)
        .bind(&approval.args_digest)
        .bind(approval.created_at)
        .bind(approval.expires_at)
        .bind(&req.call_id)
        .execute(self.db.pool())
        .await?;
        Ok(approval)
    }

    /// One approval of a tenant.
    pub async fn get(&self, tenant: &str, id: &str) -> Result<Approval, ApprovalError> {
        let row: Option<Row> =
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM approvals WHERE tenant = $1 AND id = $2"))
                .bind(tenant)
                .bind(id)
                .fetch_optional(self.db.pool())
                .await?;
        row.map(from_row).ok_or_else(|| ApprovalError::NotFound(id.to_string()))
    }

    /// A tenant's approvals, newest first, optionally only those in `status`.
    pub async fn list(&self, tenant: &str, status: Option<Status>) -> Result<Vec<Approval>, ApprovalError> {
        self.expire_due(tenant).await?;
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM approvals WHERE tenant = $1 AND ($2 = '' OR status = $2) ORDER BY created_at DESC LIMIT 500"
        ))
        .bind(tenant)
        .bind(status.map(Status::as_str).unwrap_or(""))
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    /// Records a human's decision on a pending, unexpired request.
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
        .execute(self.db.pool())
        .await?
        .rows_affected();
        if changed == 0 {
            self.expire_due(tenant).await?;
            let current = self.get(tenant, id).await?;
            return Err(ApprovalError::AlreadyDecided { id: id.to_string(), status: current.status });
        }
        self.wake(id);
        self.get(tenant, id).await
    }

    /// Waits until the request is decided or expires, and returns it then.
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
                self.expire_due(tenant).await?;
                continue;
            }
            let nap = POLL.min(Duration::from_millis(remaining as u64));
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(nap) => {}
            }
        };
        self.waiters.lock().remove(id);
        result
    }

    /// Spends an approved grant, exactly once, for the agent, tool and call it was issued to.
    pub async fn consume(
        &self,
        tenant: &str,
        grant: &str,
        agent: &str,
        tool: &str,
        call_id: &str,
    ) -> Result<Approval, ApprovalError> {
        let changed = sqlx::query(
            "UPDATE approvals SET status = 'consumed', consumed_at = $1 \
             WHERE tenant = $2 AND id = $3 AND agent = $4 AND tool = $5 AND status = 'approved' \
             AND (call_id IS NULL OR call_id = $6)",
        )
        .bind(now_millis())
        .bind(tenant)
        .bind(grant)
        .bind(agent)
        .bind(tool)
        .bind(call_id)
        .execute(self.db.pool())
        .await?
        .rows_affected();
        if changed != 1 {
            return Err(ApprovalError::GrantUnusable(grant.to_string()));
        }
        self.get(tenant, grant).await
    }

    /// Marks the tenant's overdue pending requests as expired.
    async fn expire_due(&self, tenant: &str) -> Result<(), ApprovalError> {
        sqlx::query("UPDATE approvals SET status = 'expired', decided_at = $1 WHERE tenant = $2 AND status = 'pending' AND expires_at <= $1")
            .bind(now_millis())
            .bind(tenant)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    fn wake(&self, id: &str) {
        if let Some(n) = self.waiters.lock().get(id) {
            n.notify_waiters();
        }
    }
}
