//! The audit trail: every decision Airlock makes, append-only and hash-chained.
//!
//! Each tenant has its own chain: event `n` stores the hash of event `n-1`,
//! and its own hash covers every field plus that link, so editing, removing
//! or reordering a stored event breaks [`AuditLog::verify`].
//!
//! Recording is off the hot path: [`AuditLog::record`] appends the event to an
//! in-memory queue without waking anyone (a wake-up is a futex syscall, which
//! cost more than the rest of the record). A writer task drains the queue every
//! few milliseconds, or at once when it grows long or someone flushes, and
//! commits each batch in one transaction (the chain head row locked by an
//! `UPDATE`, so several hosts sharing PostgreSQL interleave safely).
//! [`AuditLog::flush`] waits until everything recorded before it is committed;
//! the server flushes on shutdown.

mod chain;
mod search;
mod writer;

use std::sync::Arc;

use airlock_store::Db;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, Notify};

pub use chain::event_hash;
pub use search::{SearchFilter, Tally};

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

/// Events waiting for the writer, and the bell for when it should not wait.
struct Queue {
    messages: Mutex<Vec<Message>>,
    bell: Notify,
    /// Bumped after every committed batch, so live readers (the events stream) wake up.
    committed: tokio::sync::watch::Sender<u64>,
}

impl Default for Queue {
    fn default() -> Queue {
        Queue { messages: Mutex::default(), bell: Notify::new(), committed: tokio::sync::watch::Sender::new(0) }
    }
}

/// Queue length at which `record` rings the writer instead of letting it wake on its own.
const RING_AT: usize = 2048;

/// Handle to the trail. Cheap to clone; all clones feed one writer, which
/// stops once every handle is gone and the queue is drained.
#[derive(Clone)]
pub struct AuditLog {
    db: Db,
    queue: Arc<Queue>,
}

impl AuditLog {
    /// Starts the writer task on the current tokio runtime.
    pub fn start(db: Db) -> AuditLog {
        let queue = Arc::new(Queue::default());
        tokio::spawn(writer::run(db.clone(), Arc::downgrade(&queue)));
        AuditLog { db, queue }
    }

    /// Records an event; returns at once. The time is taken now, not at commit.
    ///
    /// NUL characters (PostgreSQL refuses them in text) are replaced, so that no
    /// input can make an event unstorable and stall the trail behind it.
    pub fn record(&self, mut event: AuditEvent) {
        for field in [&mut event.tenant, &mut event.kind, &mut event.outcome, &mut event.agent, &mut event.tool] {
            if field.contains('\0') {
                *field = field.replace('\0', "\u{FFFD}");
            }
        }
        let len = {
            let mut q = self.queue.messages.lock();
            q.push(Message::Event(event, airlock_store::now_millis()));
            q.len()
        };
        if len == RING_AT {
            self.queue.bell.notify_one();
        }
    }

    /// Waits until every event recorded before this call is committed.
    pub async fn flush(&self) -> Result<(), AuditError> {
        let (done, wait) = oneshot::channel();
        self.queue.messages.lock().push(Message::Flush(done));
        self.queue.bell.notify_one();
        wait.await.map_err(|_| AuditError::WriterGone)
    }

    /// A receiver that changes after each batch this host commits: a live reader waits on it
    /// and then lists from its last sequence number, so it misses nothing and sees no event
    /// before it is durable. (Other hosts' commits are not signalled: poll as well.)
    pub fn committed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.queue.committed.subscribe()
    }

    /// The newest sequence number of a tenant's chain (0 when empty).
    pub async fn head(&self, tenant: &str) -> Result<i64, AuditError> {
        chain::head(&self.db, tenant).await
    }

    /// Events of a tenant with `seq > after`, oldest first, at most `limit`.
    pub async fn list(&self, tenant: &str, after: i64, limit: i64) -> Result<Vec<StoredEvent>, AuditError> {
        chain::list(&self.db, tenant, after, limit).await
    }

    /// Events of a tenant matching `filter`, newest first (highest `seq`), at most `limit`.
    /// Page backwards by passing the last `seq` of a page as the next page's
    /// [`SearchFilter::before`]. Only committed events are seen: flush first to include
    /// everything recorded up to now.
    pub async fn search(
        &self,
        tenant: &str,
        filter: &SearchFilter,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, AuditError> {
        search::search(&self.db, tenant, filter, limit, true).await
    }

    /// [`AuditLog::search`] oldest first: page forwards by passing the last `seq` of a page as
    /// the next page's [`SearchFilter::after`] (an export of the whole trail).
    pub async fn search_oldest_first(
        &self,
        tenant: &str,
        filter: &SearchFilter,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, AuditError> {
        search::search(&self.db, tenant, filter, limit, false).await
    }

    /// Events of `kind` recorded in `[since, until)` (ms), counted per bucket of `bucket_ms`
    /// (buckets start at multiples of `bucket_ms` since the epoch), with how many of them
    /// ended in `outcome`. Only non-empty buckets, oldest first; the database does the
    /// grouping, so the answer is one row per bucket however many events there are.
    pub async fn tally(
        &self,
        tenant: &str,
        kind: &str,
        outcome: &str,
        since: i64,
        until: i64,
        bucket_ms: i64,
    ) -> Result<Vec<Tally>, AuditError> {
        search::tally(&self.db, tenant, kind, outcome, since, until, bucket_ms).await
    }

    /// Recomputes the tenant's whole chain and reports the first break.
    pub async fn verify(&self, tenant: &str) -> Result<Verification, AuditError> {
        chain::verify(&self.db, tenant).await
    }
}
