//! The writer task: batches events and appends them to each tenant's chain.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use airlock_store::{sqlx, Db};
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
            commit(&db, chunk, tickets, &queue).instrument(span).await;
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
async fn commit(db: &Db, chunk: &[(AuditEvent, i64)], tickets: &[u64], queue: &Weak<Queue>) {
    let mut delay = Duration::from_millis(50);
    let mut failures = 0;
    loop {
        let Err(e) = append(db, chunk).await else { return };
        failures += 1;
        tracing::error!("audit append of {} events failed ({failures}), retrying in {delay:?}: {e}", chunk.len());
        if failures >= SPLIT_AFTER && chunk.len() > 1 {
            let mut refused = Vec::new();
            for (i, one) in chunk.iter().enumerate() {
                if let Err(e) = append(db, std::slice::from_ref(one)).await {
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

async fn append(db: &Db, batch: &[(AuditEvent, i64)]) -> Result<(), sqlx::Error> {
    let mut by_tenant: BTreeMap<&str, Vec<&(AuditEvent, i64)>> = BTreeMap::new();
    for item in batch {
        by_tenant.entry(item.0.tenant.as_str()).or_default().push(item);
    }
    let mut tx = db.pool().begin().await?;
    for (tenant, events) in by_tenant {
        // One statement creates or advances the head and locks its row until commit: concurrent
        // hosts queue here. It answers the new last seq and the hash the batch chains from.
        let (last_seq, mut prev): (i64, String) = sqlx::query_as(
            "INSERT INTO audit_heads (tenant, seq, hash) VALUES ($1, $2, $3) \
             ON CONFLICT (tenant) DO UPDATE SET seq = audit_heads.seq + excluded.seq RETURNING seq, hash",
        )
        .bind(tenant)
        .bind(events.len() as i64)
        .bind(GENESIS)
        .fetch_one(&mut *tx)
        .await?;
        let mut seq = last_seq - events.len() as i64;
        let mut rows = Vec::with_capacity(events.len());
        for (event, ts) in events {
            seq += 1;
            let detail = event.detail.to_string();
            let hash = event_hash(&prev, seq, *ts, event, &detail);
            rows.push((seq, *ts, event, detail, std::mem::replace(&mut prev, hash.clone()), hash));
        }
        // Multi-row INSERTs: per-statement overhead, not hashing, bounds the writer.
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let placeholders: Vec<String> = (0..chunk.len())
                .map(|r| {
                    let b = r * 10;
                    format!(
                        "(${},${},${},${},${},${},${},${},${},${})",
                        b + 1,
                        b + 2,
                        b + 3,
                        b + 4,
                        b + 5,
                        b + 6,
                        b + 7,
                        b + 8,
                        b + 9,
                        b + 10
                    )
                })
                .collect();
            let sql = format!(
                "INSERT INTO audit_events (tenant, seq, ts, kind, outcome, agent, tool, detail, prev_hash, hash) VALUES {}",
                placeholders.join(",")
            );
            let mut q = sqlx::query(&sql);
            for (seq, ts, event, detail, prev_hash, hash) in chunk {
                q = q
                    .bind(tenant)
                    .bind(*seq)
                    .bind(*ts)
                    .bind(&event.kind)
                    .bind(&event.outcome)
                    .bind(&event.agent)
                    .bind(&event.tool)
                    .bind(detail)
                    .bind(prev_hash)
                    .bind(hash);
            }
            q.execute(&mut *tx).await?;
        }
        sqlx::query("UPDATE audit_heads SET hash = $2 WHERE tenant = $1")
            .bind(tenant)
            .bind(&prev)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}
