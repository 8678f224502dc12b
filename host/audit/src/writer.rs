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

pub(crate) async fn run(db: Db, queue: Weak<Queue>) {
    let mut appender = Appender { db, conn: None, heads: Heads::new() };
    loop {
        let Some(q) = queue.upgrade() else { return };
        gather(&q).await;
        let (taken, watermark) = {
            let mut pending = q.pending.lock();
            pending.flushes = 0;
            (std::mem::take(&mut pending.messages), pending.issued)
        };
        if taken.is_empty() {
            if Arc::strong_count(&q) == 1 {
                return; // every handle is gone and nothing is left to write
            }
            tokio::select! {
                _ = q.bell.notified() => {}
                _ = tokio::time::sleep(TICK) => {}
            }
            continue;
        }
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
        for done in waiting {
            let _ = done.send(());
        }
    }
}

/// While a durable caller waits and some acting call has not joined it yet, holds the commit
/// so that they share one: until every acting call waits, or the gather time is up. Never
/// while a flush waits or the queue is long (see "Gathering a group" in the crate docs).
async fn gather(q: &Queue) {
    let started = Instant::now();
    let limit = Duration::from_micros(q.gather_us.load(Ordering::SeqCst));
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
    loop {
        if q.waiting.load(Ordering::SeqCst) == 0 || q.gathered() {
            return;
        }
        {
            let pending = q.pending.lock();
            if pending.flushes > 0 || pending.messages.len() >= RING_AT {
                return;
            }
        }
        let Some(left) = limit.checked_sub(started.elapsed()).filter(|left| !left.is_zero()) else { return };
        tokio::select! {
            _ = q.bell.notified() => {}
            _ = tokio::time::sleep(left) => return,
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
/// Only a hint: each commit's head update names the head it expects, and a commit that finds
/// another (a head changed behind the writer's back) is rolled back and redone from the table.
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
    /// any failure (the next commit takes a fresh one).
    conn: Option<sqlx::AnyConnection>,
    heads: Heads,
}

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
    /// answer: a round trip of two thread switches, which cost more than the statements themselves
    /// (`scripts/profile-call`). So a tenant whose head is known is one script (the INSERTs and the
    /// guarded head update, one round trip); a head not known yet is read and advanced by the
    /// locking upsert first. PostgreSQL takes no script with parameters: there each tenant is the
    /// upsert (its row lock queues concurrent hosts), the INSERTs, and the head update.
    async fn try_append(&mut self, batch: &[(AuditEvent, i64)]) -> Result<(), AppendError> {
        let mut by_tenant: BTreeMap<&str, Vec<&(AuditEvent, i64)>> = BTreeMap::new();
        for item in batch {
            by_tenant.entry(item.0.tenant.as_str()).or_default().push(item);
        }
        let script = self.db.backend() == Backend::Sqlite;
        let mut advanced = Vec::with_capacity(by_tenant.len());
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => self.conn.insert(self.db.pool().acquire().await?.detach()),
        };
        let mut tx = conn.begin().await?;
        for (tenant, events) in by_tenant {
            let count = events.len() as i64;
            let known = if script { self.heads.get(tenant).cloned() } else { None };
            let (first_seq, mut prev) = match &known {
                Some((seq, hash)) => (seq + 1, hash.clone()),
                None => {
                    // One statement creates or advances the head and locks its row until commit:
                    // concurrent hosts queue here. It answers the new last seq and the hash the
                    // batch chains from.
                    let (last_seq, prev): (i64, String) = sqlx::query_as(
                        "INSERT INTO audit_heads (tenant, seq, hash) VALUES ($1, $2, $3) \
                         ON CONFLICT (tenant) DO UPDATE SET seq = audit_heads.seq + excluded.seq RETURNING seq, hash",
                    )
                    .bind(tenant)
                    .bind(count)
                    .bind(GENESIS)
                    .fetch_one(&mut *tx)
                    .await?;
                    (last_seq - count + 1, prev)
                }
            };
            let rows: Vec<Row> = events
                .iter()
                .zip(first_seq..)
                .map(|((event, ts), seq)| {
                    let detail = event.detail.to_string();
                    let hash = event_hash(&prev, seq, *ts, event, &detail);
                    Row { seq, ts: *ts, event, detail, prev_hash: std::mem::replace(&mut prev, hash.clone()), hash }
                })
                .collect();
            let last_seq = first_seq + count - 1;
            if script {
                append_script(&mut tx, tenant, &rows, known.as_ref(), (last_seq, &prev)).await?;
            } else {
                for chunk in rows.chunks(ROWS_PER_INSERT) {
                    let sql = insert_sql(chunk.len(), 2);
                    let mut q = sqlx::query(&sql).bind(tenant);
                    for row in chunk {
                        q = row.bind(q);
                    }
                    q.execute(&mut *tx).await?;
                }
                sqlx::query("UPDATE audit_heads SET hash = $2 WHERE tenant = $1")
                    .bind(tenant)
                    .bind(&prev)
                    .execute(&mut *tx)
                    .await?;
            }
            if script {
                advanced.push((tenant.to_string(), (last_seq, prev)));
            }
        }
        tx.commit().await?;
        self.heads.extend(advanced);
        Ok(())
    }
}

/// Rows per script: one round trip to SQLite's worker carries this many events of a tenant.
const ROWS_PER_SCRIPT: usize = 8 * ROWS_PER_INSERT;

/// One tenant's rows as scripts of INSERTs, the last one ending with the head update: guarded
/// by the head it expects when that is `known` (else the upsert has just locked and advanced
/// it, and only its hash is left to set). A guard that matches nothing is [`AppendError::HeadMoved`].
async fn append_script(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant: &str,
    rows: &[Row<'_>],
    known: Option<&(i64, String)>,
    (last_seq, last_hash): (i64, &str),
) -> Result<(), AppendError> {
    let scripts = rows.chunks(ROWS_PER_SCRIPT).count();
    for (i, script_rows) in rows.chunks(ROWS_PER_SCRIPT).enumerate() {
        // $1 is the tenant in every statement; the rows' values follow it, numbered across
        // the whole script (SQLite binds `$N` by number in each statement of a script).
        let mut sql = String::new();
        for (c, chunk) in script_rows.chunks(ROWS_PER_INSERT).enumerate() {
            sql.push_str(&insert_sql(chunk.len(), 2 + c * ROWS_PER_INSERT * COLUMNS));
            sql.push_str(";\n");
        }
        let mut q_rows = script_rows.len() as u64;
        let next = 2 + script_rows.len() * COLUMNS;
        let last = i + 1 == scripts;
        if last {
            q_rows += 1;
            sql.push_str(&match known {
                Some(_) => format!(
                    "UPDATE audit_heads SET seq = ${}, hash = ${} WHERE tenant = $1 AND seq = ${} AND hash = ${}",
                    next,
                    next + 1,
                    next + 2,
                    next + 3
                ),
                None => format!("UPDATE audit_heads SET hash = ${} WHERE tenant = $1", next + 1),
            });
        }
        let mut q = sqlx::query(&sql).bind(tenant);
        for row in script_rows {
            q = row.bind(q);
        }
        if last {
            q = q.bind(last_seq).bind(last_hash);
            if let Some((seq, hash)) = known {
                q = q.bind(*seq).bind(hash);
            }
        }
        let done = match q.execute(&mut **tx).await {
            // A row of that seq is there already: another writer appended since.
            Err(sqlx::Error::Database(e)) if known.is_some() && e.is_unique_violation() => {
                return Err(AppendError::HeadMoved(tenant.to_string()))
            }
            done => done?,
        };
        if done.rows_affected() != q_rows {
            return Err(AppendError::HeadMoved(tenant.to_string()));
        }
    }
    Ok(())
}

/// The columns of `audit_events` each row binds after the tenant.
const COLUMNS: usize = 9;

/// `INSERT INTO audit_events` of `rows` rows: `$1` is the tenant, the rows' values are
/// numbered from `$first`.
fn insert_sql(rows: usize, first: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO audit_events (tenant, seq, ts, kind, outcome, agent, tool, detail, prev_hash, hash) VALUES ",
    );
    for r in 0..rows {
        if r > 0 {
            sql.push(',');
        }
        sql.push_str("($1");
        for c in 0..COLUMNS {
            sql.push_str(&format!(",${}", first + r * COLUMNS + c));
        }
        sql.push(')');
    }
    sql
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
