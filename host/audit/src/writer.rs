//! The writer task: batches events and appends them to each tenant's chain.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use airlock_store::{sqlx, Backend, Db};
use sqlx::Connection as _;
use tracing::Instrument;

use crate::chain::{event_hash, GENESIS};
use crate::{AuditEvent, Message, Queue, RING_AT, SPLIT_AFTER};

const MAX_BATCH: usize = 4096;
/// Rows per INSERT statement. More rows per statement amortize less than they cost:
/// SQLite looks up each `$N` parameter by a linear scan (benches/append.rs: 8 rows 176k events/s,
/// 1 row 102k, 100 rows 68k).
const ROWS_PER_INSERT: usize = 8;

/// Times the writer steps aside for runnable calls before a durable commit (see `gather`).
const MAX_YIELDS: usize = 8;

/// How long recorded events may wait before the writer commits them unasked.
const TICK: Duration = Duration::from_millis(5);

/// How long the writer finds nothing to write before it dozes: stops ticking and waits for
/// the next event's ring (see [`crate::Pending::dozing`]).
pub(crate) const DOZE_AFTER: Duration = Duration::from_secs(1);

/// The writer's loop over `queue`, whose `bell` it shares (it waits on it while dozing,
/// holding the queue no longer, so that the last handle's drop ends the loop).
pub(crate) async fn run(db: Db, queue: Weak<Queue>, bell: Arc<tokio::sync::Notify>) {
    let mut appender = Appender { db, conn: None, heads: Heads::new() };
    let mut empty_since: Option<Instant> = None;
    let mut rhythm = Rhythm::default();
    loop {
        let Some(q) = queue.upgrade() else { return };
        gather(&q, &mut rhythm).await;
        let (taken, watermark) = {
            let mut pending = q.pending.lock();
            pending.flushes = 0;
            (std::mem::take(&mut pending.messages), pending.issued)
        };
        if taken.is_empty() {
            if Arc::strong_count(&q) == 1 {
                return; // every handle is gone and nothing is left to write
            }
            if empty_since.get_or_insert_with(Instant::now).elapsed() < DOZE_AFTER {
                tokio::select! {
                    _ = q.bell.notified() => {}
                    _ = tokio::time::sleep(TICK) => {}
                }
                continue;
            }
            {
                let mut pending = q.pending.lock();
                if !pending.messages.is_empty() {
                    continue; // recorded since the take: write it first
                }
                pending.dozing = true;
            }
            drop(q);
            bell.notified().await;
            if let Some(q) = queue.upgrade() {
                q.pending.lock().dozing = false;
            }
            empty_since = None;
            continue;
        }
        empty_since = None;
        drop(q);
        let mut waiting = Vec::new();
        let mut batch: Vec<(AuditEvent, i64)> = Vec::with_capacity(taken.len());
        let mut tickets: Vec<u64> = Vec::with_capacity(taken.len());
        for message in taken {
            match message {
                Message::Event(e, ts, ticket) => {
                    batch.push((e, ts));
                    tickets.push(ticket);
                }
                Message::Flush(done) => waiting.push(done),
            }
        }
        for (chunk, tickets) in batch.chunks(MAX_BATCH).zip(tickets.chunks(MAX_BATCH)) {
            // A stage span: the host's metrics time every commit (see the server's telemetry).
            let span = tracing::trace_span!(target: "airlock::stage", "audit_commit", events = chunk.len());
            commit(&mut appender, chunk, tickets, &queue).instrument(span).await;
            if let Some(q) = queue.upgrade() {
                q.commits.fetch_add(1, Ordering::SeqCst);
            }
        }
        if let Some(q) = queue.upgrade() {
            q.committed.send_modify(|n| *n = (*n).max(watermark));
        }
        rhythm.released(Instant::now());
        for done in waiting {
            let _ = done.send(());
        }
    }
}

/// The pace of the calls in flight, as the writer saw it at its last commit.
///
/// With more calls in flight than a core can run during one commit, they split into groups
/// that take turns: while one group's commit syncs, the next runs and gathers, and commits the
/// moment the first is released; each commit then carries half the calls it could. So the
/// writer remembers how many calls were acting around its last commit, and holds the next one
/// for those just answered to come back and join it (their clients' next calls), for at most
/// [`crate::REJOIN`] after the release. A lone call, or the first after a pause, is never held: its
/// commit comes more than [`crate::REJOIN`] after the last, or the last saw no other call.
#[derive(Default)]
struct Rhythm {
    /// The most calls seen acting while the last group gathered and committed.
    in_flight: isize,
    /// The most calls seen acting while this group gathers.
    seen: isize,
    /// When the last commit released its callers.
    released_at: Option<Instant>,
}

impl Rhythm {
    fn saw(&mut self, acting: isize) {
        self.seen = self.seen.max(acting);
    }

    fn released(&mut self, at: Instant) {
        self.in_flight = std::mem::take(&mut self.seen);
        self.released_at = Some(at);
    }

    /// Until when a group of `waiting` calls, every acting one among them, waits for the calls
    /// the last commit answered, coming back within `window` of it: `None` when it need not.
    fn rejoin_until(&self, waiting: isize, window: Duration) -> Option<Instant> {
        let until = self.released_at? + window;
        (waiting < self.in_flight && Instant::now() < until).then_some(until)
    }
}

/// While a durable caller waits and some acting call has not joined it yet, holds the commit
/// so that they share one: until every acting call waits, or the gather time is up; and then,
/// right after a commit, for the calls it answered to come back ([`Rhythm`]). Never while a
/// flush waits or the queue is long (see "Gathering a group" in the crate docs).
async fn gather(q: &Queue, rhythm: &mut Rhythm) {
    let started = Instant::now();
    let limit = Duration::from_micros(q.gather_us.load(Ordering::SeqCst));
    rhythm.saw(q.acting.load(Ordering::SeqCst));
    if limit.is_zero() {
        return;
    }
    // Calls already runnable (their requests read, not yet admitted) are not acting yet, and on
    // a busy core they are many: step to the back of the run queue while that lets more records
    // in, so they join this commit instead of each starting the next one.
    let mut queued = q.pending.lock().messages.len();
    for _ in 0..MAX_YIELDS {
        if q.waiting.load(Ordering::SeqCst) == 0 {
            break;
        }
        tokio::task::yield_now().await;
        let now = q.pending.lock().messages.len();
        if now == queued {
            break;
        }
        queued = now;
    }
    let gathered_by = started + limit;
    loop {
        let (waiting, acting) = (q.waiting.load(Ordering::SeqCst) as isize, q.acting.load(Ordering::SeqCst));
        rhythm.saw(acting);
        if waiting == 0 {
            return;
        }
        {
            let pending = q.pending.lock();
            if pending.flushes > 0 || pending.messages.len() >= RING_AT {
                return;
            }
        }
        let until = if waiting < acting {
            gathered_by
        } else {
            match rhythm.rejoin_until(waiting, Duration::from_micros(q.rejoin_us.load(Ordering::SeqCst))) {
                Some(until) => until.min(gathered_by),
                None => return,
            }
        };
        let Some(left) = until.checked_duration_since(Instant::now()).filter(|left| !left.is_zero()) else { return };
        // Time up or a ring, look again: a call that came back meanwhile and acts is waited for
        // (within the gather time) though the time to come back is over.
        tokio::select! {
            _ = q.bell.notified() => {}
            _ = tokio::time::sleep(left) => {}
        }
    }
}

/// Commits `chunk`, retrying while the database fails. Losing audit records is not an option,
/// but neither is one event the database will never take stalling everything behind it: after
/// [`SPLIT_AFTER`] failures the events go one by one, and those refused alone are set aside.
async fn commit(appender: &mut Appender, chunk: &[(AuditEvent, i64)], tickets: &[u64], queue: &Weak<Queue>) {
    let mut delay = Duration::from_millis(50);
    let mut failures = 0;
    loop {
        let Err(e) = appender.append(chunk).await else { return };
        if let AppendError::HeadMoved(tenant) = &e {
            tracing::warn!("audit chain head of `{tenant}` changed outside this writer; re-read");
            continue;
        }
        failures += 1;
        tracing::error!("audit append of {} events failed ({failures}), retrying in {delay:?}: {e}", chunk.len());
        if failures >= SPLIT_AFTER && chunk.len() > 1 {
            let mut refused = Vec::new();
            for (i, one) in chunk.iter().enumerate() {
                if let Err(e) = appender.append(std::slice::from_ref(one)).await {
                    refused.push((i, e));
                }
            }
            if refused.len() < chunk.len() {
                // The database works: what it refused alone is unstorable, not delayed.
                for (i, e) in refused {
                    let event = &chunk[i].0;
                    tracing::error!(
                        "audit event `{}` of `{}` set aside, the database refuses it: {e}",
                        event.kind,
                        event.tenant
                    );
                    if let Some(q) = queue.upgrade() {
                        q.set_aside.lock().push(event.clone());
                        let mut refused = q.refused.lock();
                        refused.insert(tickets[i]);
                        while refused.len() > crate::MAX_REFUSED_TICKETS {
                            refused.pop_first();
                        }
                    }
                }
                return;
            }
            // Every event failed alone too: the database is away. Keep them all and wait.
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Where each tenant's chain ended after this writer's last commit, so that the next commit
/// chains on without first reading the head (SQLite only: one host appends to a SQLite file).
/// Only a hint: SQLite's triggers refuse an event that does not follow the stored head (another
/// writer on the file, an edited head), and the append is redone from the table.
pub(crate) type Heads = HashMap<String, (i64, String)>;

/// Why an append did not commit.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AppendError {
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    /// The head was not where [`Heads`] said: nothing was committed; redo from the table.
    #[error("the chain head of `{0}` moved behind the writer's back")]
    HeadMoved(String),
}

/// What the writer keeps from one commit to the next.
struct Appender {
    db: Db,
    /// A connection of its own, taken out of the pool: a pooled connection costs a round trip
    /// to the database on every release (sqlx pings it) and a task to give it back. Dropped on
    /// any failure (the next commit takes a fresh one; dropping it rolls back what it began).
    conn: Option<sqlx::AnyConnection>,
    heads: Heads,
}

/// Rows of one tenant that SQLite takes in one script (one round trip to its worker thread).
const ROWS_PER_SCRIPT: usize = 8 * ROWS_PER_INSERT;

/// The message of SQLite's trigger that refuses an event not following its tenant's head
/// (migrations/sqlite/0022_audit_chain_triggers.sql).
const HEAD_MOVED: &str = "audit chain head moved";

impl Appender {
    /// [`Appender::try_append`]; after a failure, the connection and the heads are fresh next time.
    async fn append(&mut self, batch: &[(AuditEvent, i64)]) -> Result<(), AppendError> {
        let appended = self.try_append(batch).await;
        if appended.is_err() {
            self.conn = None;
            self.heads.clear();
        }
        appended
    }

    /// Appends `batch` to each tenant's chain in one transaction.
    ///
    /// On SQLite, sqlx hands every statement to the connection's worker thread and waits for its
    /// answer, message by message: on a busy core each is a few thread switches, which cost more
    /// than the statements themselves (`scripts/profile-call`). So the database keeps the chains
    /// itself (its triggers check that each event follows its tenant's head and advance the
    /// head), and a group chains on from the heads this writer left ([`sqlite_append`]): the
    /// usual group commit is one INSERT. (Against the five statements of a transaction spelled
    /// out, `scripts/bench-scaling` showed no change in CPU per call: the triggers' work costs
    /// about what the four answers saved did.) On PostgreSQL each tenant's head is read and advanced
    /// by a locking upsert (its row lock queues concurrent hosts), then its INSERTs and its head
    /// update follow, in a transaction begun and committed apart.
    async fn try_append(&mut self, batch: &[(AuditEvent, i64)]) -> Result<(), AppendError> {
        let mut by_tenant: BTreeMap<&str, Vec<&(AuditEvent, i64)>> = BTreeMap::new();
        for item in batch {
            by_tenant.entry(item.0.tenant.as_str()).or_default().push(item);
        }
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => self.conn.insert(self.db.pool().acquire().await?.detach()),
        };
        if self.db.backend() == Backend::Sqlite {
            let mut chains = Vec::with_capacity(by_tenant.len());
            for (tenant, events) in by_tenant {
                let (seq, hash) = match self.heads.get(tenant) {
                    Some(head) => head.clone(),
                    None => sqlx::query_as("SELECT seq, hash FROM audit_heads WHERE tenant = $1")
                        .bind(tenant)
                        .fetch_optional(&mut *conn)
                        .await?
                        .unwrap_or_else(|| (0, GENESIS.to_string())),
                };
                chains.push(Chain::new(tenant, &events, seq + 1, hash));
            }
            sqlite_append(conn, &chains).await?;
            self.heads.extend(chains.iter().map(|c| (c.tenant.to_string(), c.end.clone())));
            return Ok(());
        }
        let mut tx = conn.begin().await?;
        for (tenant, events) in by_tenant {
            let count = events.len() as i64;
            // One statement creates or advances the head and locks its row until commit:
            // concurrent hosts queue here. It answers the new last seq and the hash the batch
            // chains from.
            let (last_seq, prev): (i64, String) = sqlx::query_as(
                "INSERT INTO audit_heads (tenant, seq, hash) VALUES ($1, $2, $3) \
                 ON CONFLICT (tenant) DO UPDATE SET seq = audit_heads.seq + excluded.seq RETURNING seq, hash",
            )
            .bind(tenant)
            .bind(count)
            .bind(GENESIS)
            .fetch_one(&mut *tx)
            .await?;
            let chain = Chain::new(tenant, &events, last_seq - count + 1, prev);
            for rows in chain.rows.chunks(ROWS_PER_INSERT) {
                let mut sql = String::new();
                inserts(&mut sql, rows.len(), 1, 2);
                let mut q = sqlx::query(&sql).bind(tenant);
                for row in rows {
                    q = row.bind(q);
                }
                q.execute(&mut *tx).await?;
            }
            sqlx::query("UPDATE audit_heads SET hash = $2 WHERE tenant = $1")
                .bind(tenant)
                .bind(&chain.end.1)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// One tenant's events of a batch, chained on from its head.
struct Chain<'a> {
    tenant: &'a str,
    rows: Vec<Row<'a>>,
    /// The head after this chain: its last seq and hash (the head it started from when empty).
    end: (i64, String),
}

impl<'a> Chain<'a> {
    /// `events` as rows numbered from `first_seq`, the first linked to `prev`.
    fn new(tenant: &'a str, events: &[&'a (AuditEvent, i64)], first_seq: i64, mut prev: String) -> Chain<'a> {
        let rows: Vec<Row> = events
            .iter()
            .zip(first_seq..)
            .map(|((event, ts), seq)| {
                let detail = event.detail.to_string();
                let hash = event_hash(&prev, seq, *ts, event, &detail);
                Row { seq, ts: *ts, event, detail, prev_hash: std::mem::replace(&mut prev, hash.clone()), hash }
            })
            .collect();
        let end = (first_seq + rows.len() as i64 - 1, prev);
        Chain { tenant, rows, end }
    }
}

/// SQLite: appends `chains` in one transaction. A group of at most [`ROWS_PER_INSERT`] events
/// of one tenant (the usual group commit) is one INSERT on its own, its own transaction: one
/// round trip to the worker thread, one answer back. Larger groups go as scripts, one round
/// trip each: a tenant's rows [`ROWS_PER_SCRIPT`] to a script, the first script beginning the
/// transaction and the last committing it. Each script's text depends only on its row count
/// and its place, so sqlx's statement cache holds the few shapes there are. The triggers
/// advance each head; one that moved behind the writer's back fails an INSERT (the trigger's
/// [`HEAD_MOVED`], or a seq already taken) before anything commits: the open transaction is
/// rolled back when the caller drops the connection, and [`AppendError::HeadMoved`] says redo.
async fn sqlite_append(conn: &mut sqlx::AnyConnection, chains: &[Chain<'_>]) -> Result<(), AppendError> {
    let alone = matches!(chains, [chain] if chain.rows.len() <= ROWS_PER_INSERT);
    for (c, chain) in chains.iter().enumerate() {
        let trips = chain.rows.chunks(ROWS_PER_SCRIPT).count();
        for (t, rows) in chain.rows.chunks(ROWS_PER_SCRIPT).enumerate() {
            let (begins, commits) = (c == 0 && t == 0, c + 1 == chains.len() && t + 1 == trips);
            let mut sql = String::from(if begins && !alone { "BEGIN IMMEDIATE;\n" } else { "" });
            inserts(&mut sql, rows.len(), 1, 2);
            if commits && !alone {
                sql.push_str("COMMIT;");
            }
            let mut q = sqlx::query(&sql).bind(chain.tenant);
            for row in rows {
                q = row.bind(q);
            }
            match q.execute(&mut *conn).await {
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() || e.message().contains(HEAD_MOVED) => {
                    return Err(AppendError::HeadMoved(chain.tenant.to_string()))
                }
                done => done.map(drop)?,
            }
        }
    }
    Ok(())
}

/// The columns of `audit_events` each row binds after the tenant.
const COLUMNS: usize = 9;

/// Appends to `sql` the INSERTs into `audit_events` of `rows` rows, [`ROWS_PER_INSERT`] per
/// statement, each statement ending with `;`: `$tenant` is the tenant, the rows' values are
/// numbered from `$first` (SQLite binds `$N` by number in every statement of a script).
fn inserts(sql: &mut String, rows: usize, tenant: usize, first: usize) {
    use std::fmt::Write as _;
    for start in (0..rows).step_by(ROWS_PER_INSERT) {
        sql.push_str(
            "INSERT INTO audit_events (tenant, seq, ts, kind, outcome, agent, tool, detail, prev_hash, hash) VALUES ",
        );
        for r in start..rows.min(start + ROWS_PER_INSERT) {
            if r > start {
                sql.push(',');
            }
            let _ = write!(sql, "(${tenant}");
            for c in 0..COLUMNS {
                let _ = write!(sql, ",${}", first + r * COLUMNS + c);
            }
            sql.push(')');
        }
        sql.push_str(";\n");
    }
}

/// One event as stored, chained.
struct Row<'a> {
    seq: i64,
    ts: i64,
    event: &'a AuditEvent,
    detail: String,
    prev_hash: String,
    hash: String,
}

impl Row<'_> {
    /// Binds this row's values, in `insert_sql`'s column order after the tenant.
    fn bind<'q>(
        &'q self,
        q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        q.bind(self.seq)
            .bind(self.ts)
            .bind(&self.event.kind)
            .bind(&self.event.outcome)
            .bind(&self.event.agent)
            .bind(&self.event.tool)
            .bind(&self.detail)
            .bind(&self.prev_hash)
            .bind(&self.hash)
    }
}
