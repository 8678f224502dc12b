//! The audit trail: every decision Airlock makes, append-only and hash-chained.
//!
//! Each tenant has its own chain: event `n` stores the hash of event `n-1`,
//! and its own hash covers every field plus that link, so editing, removing
//! or reordering a stored event breaks [`AuditLog::verify`].
//!
//! Recording is off the hot path: [`AuditLog::record`] hands the event to a
//! writer task that commits batches (one transaction per batch, the chain head
//! row locked by an `UPDATE`, so several hosts sharing PostgreSQL interleave
//! safely). [`AuditLog::flush`] waits until everything recorded before it is
//! committed; the server flushes on shutdown.

mod chain;
mod writer;

use airlock_store::Db;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

pub use chain::event_hash;

/// One decision or action, as the host records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub tenant: String,
    /// What happened: `tool.call`, `authz.check`, `approval.request`, `approval.decision`, `vault.fetch`, ...
    pub kind: String,
    /// How it ended: `allowed`, `denied`, `approved`, `expired`, `ok`, `error`, ...
    pub outcome: String,
    /// The acting agent (`agent:NAME`) or admin principal.
    pub agent: String,
    /// The tool involved (`component.tool`), or empty.
    pub tool: String,
    /// Everything else worth keeping (delegation chain, object, external host, reason...). Never secrets.
    pub detail: serde_json::Value,
}

/// An event as stored: with its place in the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub seq: i64,
    pub ts: i64,
    #[serde(flatten)]
    pub event: AuditEvent,
    pub prev_hash: String,
    pub hash: String,
}

/// What verifying a tenant's chain found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    pub tenant: String,
    pub events: i64,
    /// `None` when intact; otherwise the first broken sequence number.
    pub broken_at: Option<i64>,
    pub reason: Option<String>,
}

/// Failures reading the trail.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit store unavailable: {0}")]
    Store(#[from] airlock_store::sqlx::Error),
    #[error("audit writer has stopped")]
    WriterGone,
}

enum Message {
    Event(AuditEvent, i64),
    Flush(oneshot::Sender<()>),
}

/// Handle to the trail. Cheap to clone; all clones feed one writer.
#[derive(Clone)]
pub struct AuditLog {
    db: Db,
    tx: mpsc::UnboundedSender<Message>,
}

impl AuditLog {
    /// Starts the writer task on the current tokio runtime.
    pub fn start(db: Db) -> AuditLog {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(writer::run(db.clone(), rx));
        AuditLog { db, tx }
    }

    /// Records an event; returns at once. The time is taken now, not at commit.
    pub fn record(&self, event: AuditEvent) {
        if self.tx.send(Message::Event(event, airlock_store::now_millis())).is_err() {
            tracing::error!("audit writer has stopped; event dropped");
        }
    }

    /// Waits until every event recorded before this call is committed.
    pub async fn flush(&self) -> Result<(), AuditError> {
        let (done, wait) = oneshot::channel();
        self.tx.send(Message::Flush(done)).map_err(|_| AuditError::WriterGone)?;
        wait.await.map_err(|_| AuditError::WriterGone)
    }

    /// Events of a tenant with `seq > after`, oldest first, at most `limit`.
    pub async fn list(&self, tenant: &str, after: i64, limit: i64) -> Result<Vec<StoredEvent>, AuditError> {
        chain::list(&self.db, tenant, after, limit).await
    }

    /// Recomputes the tenant's whole chain and reports the first break.
    pub async fn verify(&self, tenant: &str) -> Result<Verification, AuditError> {
        chain::verify(&self.db, tenant).await
    }
}
