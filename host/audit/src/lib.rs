//! The audit trail: every decision Airlock makes, append-only and hash-chained.
//!
//! Each tenant has its own chain: event `n` stores the hash of event `n-1`,
//! and its own hash covers every field plus that link, so editing, removing
//! or reordering a stored event breaks [`AuditLog::verify`].
//!
//! Recording is off the hot path: [`AuditLog::record`] appends the event to an
//! in-memory queue without waking anyone (a wake-up is a futex syscall, which
//! cost more than the rest of the record). A writer task drains the queue every
//! few milliseconds, or at once when it grows long or someone flushes (after a second
//! with nothing to write it dozes until the next event rings it: an idle host spends no
//! CPU on its trail), and commits each batch in one transaction (the chain head row
//! locked by an `UPDATE`, so several hosts sharing PostgreSQL interleave safely).
//! [`AuditLog::flush`] waits until everything recorded before it is committed;
//! the server flushes on shutdown.
//!
//! ## What must be durable before anyone is told
//!
//! Most events (checks, reads, denials inside a call) may wait in the queue: if the host dies
//! before they commit, nothing happened in the world that the trail misses. An event that
//! stands for an action is different: a call's outcome, a request released to an external
//! API, a decision, an install. Those are recorded with [`AuditLog::record_durable`], which
//! waits until the event (and so everything recorded before it) is committed. It rings the
//! writer at once, and every caller waiting at the same time shares the writer's next
//! commit: group commit, one transaction (and on SQLite with `synchronous = FULL`, one fsync)
//! for however many calls finished meanwhile. It says so when it cannot: an event the database
//! refused on its own ([`AuditError::SetAside`]), or one still queued after the wait limit
//! because the database is away ([`AuditError::NotYetDurable`]; it stays queued and is written
//! when the database is back). Either way the caller must not report the action as recorded.
//!
//! ## Gathering a group
//!
//! A commit for one call while seven others are a few microseconds from their own record
//! costs eight commits where one would do. So the writer knows who is about to ask: a call
//! holds an [`Acting`] guard ([`AuditLog::acting`]) from admission to its answer, and steps
//! aside with an [`Idle`] guard ([`AuditLog::idle`]) while it waits on a person or an
//! external API. When a durable caller rings, the writer holds the commit until every acting
//! call waits for it too, for at most [`GATHER`]; never while a flush waits or the queue is
//! long. With one call in flight nobody is held: it is the whole group.
//!
//! On a busy core that is not enough: while one group's commit syncs, the calls the core runs
//! meanwhile form the next group, which commits the moment the first is answered, and the
//! calls in flight take turns in two half groups. So right after a commit the writer also holds
//! the next one for the calls it answered to come back (their clients' next calls, as many as
//! were acting around the last commit), for at most [`REJOIN`] after it. A lone call, or the
//! first after a pause, is not held.
//!
//! ## Bounds
//!
//! The queue holds at most [`MAX_BACKLOG`] events before [`AuditLog::overloaded`] says so;
//! the gate then refuses new calls (503 with `Retry-After`) rather than let memory grow while
//! the database is slow or away. A batch the database refuses [`SPLIT_AFTER`] times in a row
//! is retried event by event: events the database refuses on their own are set aside
//! ([`AuditLog::set_aside`], logged as errors) so one unstorable event cannot stall the trail;
//! if every event fails alone too, the database is down and the writer keeps retrying.

mod chain;
pub mod checkpoint;
mod search;
mod writer;

use std::sync::atomic::{AtomicIsize, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use airlock_store::Db;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, Notify};

pub use chain::event_hash;
pub use checkpoint::{Checkpoint, CheckpointKey};
pub use search::{SearchFilter, Tally};

/// One decision or action, as the host records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StoredEvent {
    /// Its place in the tenant's chain, from 1.
    pub seq: i64,
    /// When it was recorded (ms since the epoch).
    pub ts: i64,
    #[serde(flatten)]
    pub event: AuditEvent,
    /// The `hash` of the event before it.
    pub prev_hash: String,
    /// The hash over every field and `prev_hash`.
    pub hash: String,
}

/// What verifying a tenant's chain found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Verification {
    pub tenant: String,
    /// The events found intact, from the first (all of them when the chain is intact).
    pub events: i64,
    /// `None` when intact; otherwise the first broken sequence number.
    pub broken_at: Option<i64>,
    /// What is wrong at `broken_at`; `None` when intact.
    pub reason: Option<String>,
}

/// Failures reading the trail.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit store unavailable: {0}")]
    Store(#[from] airlock_store::sqlx::Error),
    #[error("audit writer has stopped")]
    WriterGone,
    #[error("the database refused this audit record on its own: it is set aside (see the host's log)")]
    SetAside,
    #[error("the audit record is not committed after {0:?}: the database is not answering; the record stays queued and is written when it is back")]
    NotYetDurable(std::time::Duration),
}

enum Message {
    /// An event, the time it was recorded, its ticket.
    Event(AuditEvent, i64, u64),
    Flush(oneshot::Sender<()>),
}

/// The messages waiting for the writer, with the ticket of the newest event among them.
#[derive(Default)]
struct Pending {
    messages: Vec<Message>,
    /// Events recorded since the start: the ticket of the newest one.
    issued: u64,
    /// Flushes among `messages`: the writer gathers no group while one waits.
    flushes: usize,
    /// The writer has found nothing to write for a while and waits for the bell alone
    /// (an idle host spends nothing on the audit trail): the next event rings it.
    dozing: bool,
}

/// Events waiting for the writer, and the bell for when it should not wait.
struct Queue {
    pending: Mutex<Pending>,
    /// Shared with the writer, which waits on it without holding the queue while it dozes:
    /// the queue rings it when the last handle drops, so that the writer ends.
    bell: Arc<Notify>,
    /// The ticket of the newest committed event: live readers (the events stream) wake up
    /// when it moves, and [`AuditLog::record_durable`] waits until it reaches its own.
    committed: tokio::sync::watch::Sender<u64>,
    /// Events the database refused on their own, kept for an operator (newest last).
    set_aside: Mutex<Vec<AuditEvent>>,
    /// Tickets of the set-aside events (the newest [`MAX_REFUSED_TICKETS`]), so that
    /// [`AuditLog::durable`] does not call them committed.
    refused: Mutex<std::collections::BTreeSet<u64>>,
    /// Calls holding an [`Acting`] guard, less those stepped aside with [`Idle`].
    acting: AtomicIsize,
    /// Callers of [`AuditLog::durable`] waiting for their commit.
    waiting: AtomicUsize,
    /// How long the writer may hold a commit to gather a group, in microseconds.
    gather_us: AtomicU64,
    /// How soon after a commit the calls it answered may come back to join the next, in microseconds.
    rejoin_us: AtomicU64,
    /// Transactions committed by this host's writer (tests check that a group shares one).
    commits: AtomicU64,
}

impl Queue {
    /// Whether every acting call already waits for a commit: nobody else is about to join.
    pub(crate) fn gathered(&self) -> bool {
        self.waiting.load(Ordering::SeqCst) as isize >= self.acting.load(Ordering::SeqCst)
    }

    /// Rings the writer when the last acting call has joined the waiters.
    fn ring_if_gathered(&self) {
        if self.waiting.load(Ordering::SeqCst) > 0 && self.gathered() {
            self.bell.notify_one();
        }
    }
}

/// Set-aside tickets remembered for [`AuditLog::durable`]'s answer.
const MAX_REFUSED_TICKETS: usize = 10_000;

/// How long [`AuditLog::durable`] waits before saying the record is not yet durable.
pub const DURABLE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl Drop for Queue {
    fn drop(&mut self) {
        self.bell.notify_one(); // a dozing writer finds the queue gone and ends
    }
}

impl Default for Queue {
    fn default() -> Queue {
        Queue {
            pending: Mutex::default(),
            bell: Arc::new(Notify::new()),
            committed: tokio::sync::watch::Sender::new(0),
            set_aside: Mutex::default(),
            refused: Mutex::default(),
            acting: AtomicIsize::new(0),
            waiting: AtomicUsize::new(0),
            gather_us: AtomicU64::new(GATHER.as_micros() as u64),
            rejoin_us: AtomicU64::new(REJOIN.as_micros() as u64),
            commits: AtomicU64::new(0),
        }
    }
}

/// Queued events past which [`AuditLog::overloaded`] is true.
pub const MAX_BACKLOG: usize = 100_000;

/// Failed commits of one batch after which it is retried event by event.
pub const SPLIT_AFTER: u32 = 5;

/// Queue length at which `record` rings the writer instead of letting it wake on its own.
pub(crate) const RING_AT: usize = 2048;

/// The longest the writer holds a durable caller's commit for acting calls to join it.
pub const GATHER: std::time::Duration = std::time::Duration::from_millis(2);

/// How soon after a commit the calls it answered are expected back (their clients' next calls)
/// for the next commit to wait for them; within [`GATHER`] from the time a commit is asked.
pub const REJOIN: std::time::Duration = std::time::Duration::from_millis(1);

/// A call in progress: its durable record will want a commit soon (see "Gathering a group").
#[must_use = "the call counts as acting only while the guard lives"]
pub struct Acting {
    queue: Arc<Queue>,
}

impl Drop for Acting {
    fn drop(&mut self) {
        self.queue.acting.fetch_sub(1, Ordering::SeqCst);
        self.queue.ring_if_gathered();
    }
}

/// An acting call stepped aside while it waits on something slow (a person, an external API):
/// the writer does not hold a commit for it meanwhile.
#[must_use = "the call steps aside only while the guard lives"]
pub struct Idle {
    queue: Arc<Queue>,
}

impl Drop for Idle {
    fn drop(&mut self) {
        self.queue.acting.fetch_add(1, Ordering::SeqCst);
    }
}

/// Counts a durable caller among the waiters for as long as it waits.
struct Waiting<'q>(&'q Queue);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Handle to the trail. Cheap to clone; all clones feed one writer, which
/// stops once every handle is gone and the queue is drained.
#[derive(Clone)]
pub struct AuditLog {
    db: Db,
    queue: Arc<Queue>,
    durable_wait: std::time::Duration,
}

impl AuditLog {
    /// Starts the writer task on the current tokio runtime.
    pub fn start(db: Db) -> AuditLog {
        let queue = Arc::new(Queue::default());
        tokio::spawn(writer::run(db.clone(), Arc::downgrade(&queue), queue.bell.clone()));
        AuditLog { db, queue, durable_wait: DURABLE_WAIT }
    }

    /// Records an event; returns at once, with the event's ticket (see
    /// [`AuditLog::durable`]). The time is taken now, not at commit.
    ///
    /// NUL characters (PostgreSQL refuses them in text) are replaced, so that no
    /// input can make an event unstorable and stall the trail behind it.
    pub fn record(&self, mut event: AuditEvent) -> u64 {
        for field in [&mut event.tenant, &mut event.kind, &mut event.outcome, &mut event.agent, &mut event.tool] {
            if field.contains('\0') {
                *field = field.replace('\0', "\u{FFFD}");
            }
        }
        let (len, ticket, wake) = {
            let mut q = self.queue.pending.lock();
            q.issued += 1;
            let ticket = q.issued;
            q.messages.push(Message::Event(event, airlock_store::now_millis(), ticket));
            (q.messages.len(), ticket, std::mem::take(&mut q.dozing))
        };
        if len == RING_AT || wake {
            self.queue.bell.notify_one();
        }
        ticket
    }

    /// Records an event that stands for an action, and returns once it is committed (with
    /// everything recorded before it). Callers waiting at the same time share one commit.
    pub async fn record_durable(&self, event: AuditEvent) -> Result<(), AuditError> {
        let ticket = self.record(event);
        self.durable(ticket).await
    }

    /// Waits until the event with `ticket` (and every one before it) is committed; an error
    /// if it was set aside instead, or is still queued after the wait limit ([`DURABLE_WAIT`]).
    pub async fn durable(&self, ticket: u64) -> Result<(), AuditError> {
        let mut committed = self.queue.committed.subscribe();
        if *committed.borrow() < ticket {
            self.queue.waiting.fetch_add(1, Ordering::SeqCst);
            let _waiting = Waiting(&self.queue);
            self.queue.bell.notify_one();
            let done = committed.wait_for(|&done| done >= ticket);
            match tokio::time::timeout(self.durable_wait, done).await {
                Ok(Ok(_)) => {}
                Ok(Err(_)) => return Err(AuditError::WriterGone),
                Err(_) => return Err(AuditError::NotYetDurable(self.durable_wait)),
            }
        }
        if self.queue.refused.lock().remove(&ticket) {
            return Err(AuditError::SetAside);
        }
        Ok(())
    }

    /// This handle with another limit for [`AuditLog::durable`] (tests of an absent database).
    pub fn with_durable_wait(mut self, wait: std::time::Duration) -> AuditLog {
        self.durable_wait = wait;
        self
    }

    /// Sets how long the writer may hold a commit to gather a group ([`GATHER`] unless set),
    /// for every handle of this log: tests make it long to see who releases a group.
    pub fn set_gather(&self, gather: std::time::Duration) {
        self.queue.gather_us.store(gather.as_micros() as u64, Ordering::SeqCst);
    }

    /// Sets how soon after a commit the calls it answered may come back to join the next one
    /// ([`REJOIN`] unless set): tests make it long to see what holds a group.
    pub fn set_rejoin(&self, rejoin: std::time::Duration) {
        self.queue.rejoin_us.store(rejoin.as_micros() as u64, Ordering::SeqCst);
    }

    /// Marks a call in progress until the guard drops: a durable commit waits for it (at most
    /// [`GATHER`]) so that the calls in flight share one. Take it once the call is admitted.
    pub fn acting(&self) -> Acting {
        self.queue.acting.fetch_add(1, Ordering::SeqCst);
        Acting { queue: self.queue.clone() }
    }

    /// Steps an acting call aside until the guard drops, while it waits on a person or an
    /// external API, so that nobody's commit waits for it.
    pub fn idle(&self) -> Idle {
        self.queue.acting.fetch_sub(1, Ordering::SeqCst);
        self.queue.ring_if_gathered();
        Idle { queue: self.queue.clone() }
    }

    /// Whether the writer dozes: it found nothing to write for a second and waits for the
    /// next event's ring instead of ticking (an idle host's trail costs no CPU).
    pub fn dozing(&self) -> bool {
        self.queue.pending.lock().dozing
    }

    /// Transactions this host's writer has committed.
    pub fn commits(&self) -> u64 {
        self.queue.commits.load(Ordering::SeqCst)
    }

    /// Waits until every event recorded before this call is committed.
    pub async fn flush(&self) -> Result<(), AuditError> {
        let (done, wait) = oneshot::channel();
        {
            let mut pending = self.queue.pending.lock();
            pending.messages.push(Message::Flush(done));
            pending.flushes += 1;
        }
        self.queue.bell.notify_one();
        wait.await.map_err(|_| AuditError::WriterGone)
    }

    /// Events queued and not yet committed.
    pub fn backlog(&self) -> usize {
        let q = self.queue.pending.lock();
        (q.issued - *self.queue.committed.borrow()) as usize
    }

    /// Whether the queue is past [`MAX_BACKLOG`]: new work should be refused until it drains.
    pub fn overloaded(&self) -> bool {
        self.backlog() > MAX_BACKLOG
    }

    /// Events the database refused on their own (see the module docs), oldest first.
    pub fn set_aside(&self) -> Vec<AuditEvent> {
        self.queue.set_aside.lock().clone()
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
