//! The writer task: batches events and appends them to each tenant's chain.

use std::collections::BTreeMap;
use std::time::Duration;

use airlock_store::{sqlx, Db};
use tokio::sync::mpsc;

use crate::chain::{event_hash, GENESIS};
use crate::{AuditEvent, Message};

const MAX_BATCH: usize = 1024;

pub(crate) async fn run(db: Db, mut rx: mpsc::UnboundedReceiver<Message>) {
    let mut batch: Vec<(AuditEvent, i64)> = Vec::new();
    let mut waiting = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        // Take whatever else is already queued: one transaction for all of it.
        while let Some(message) = next {
            match message {
                Message::Event(e, ts) => batch.push((e, ts)),
                Message::Flush(done) => waiting.push(done),
            }
            next = if batch.len() < MAX_BATCH { rx.try_recv().ok() } else { None };
        }
        let mut delay = Duration::from_millis(50);
        while let Err(e) = append(&db, &batch).await {
            // Keep the events and retry: losing audit records is not an option.
            tracing::error!("audit append failed, retrying in {delay:?}: {e}");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        batch.clear();
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
}

async fn append(db: &Db, batch: &[(AuditEvent, i64)]) -> Result<(), sqlx::Error> {
    let mut by_tenant: BTreeMap<&str, Vec<&(AuditEvent, i64)>> = BTreeMap::new();
    for item in batch {
        by_tenant.entry(item.0.tenant.as_str()).or_default().push(item);
    }
    let mut tx = db.pool().begin().await?;
    for (tenant, events) in by_tenant {
        sqlx::query("INSERT INTO audit_heads (tenant, seq, hash) VALUES ($1, 0, $2) ON CONFLICT (tenant) DO NOTHING")
            .bind(tenant)
            .bind(GENESIS)
            .execute(&mut *tx)
            .await?;
        // The UPDATE locks the head row until commit: concurrent hosts queue here.
        let (last_seq, mut prev): (i64, String) =
            sqlx::query_as("UPDATE audit_heads SET seq = seq + $2 WHERE tenant = $1 RETURNING seq, hash")
                .bind(tenant)
                .bind(events.len() as i64)
                .fetch_one(&mut *tx)
                .await?;
        let mut seq = last_seq - events.len() as i64;
        for (event, ts) in events {
            seq += 1;
            let hash = event_hash(&prev, seq, *ts, event);
            sqlx::query(
                "INSERT INTO audit_events (tenant, seq, ts, kind, outcome, agent, tool, detail, prev_hash, hash) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(tenant)
            .bind(seq)
            .bind(*ts)
            .bind(&event.kind)
            .bind(&event.outcome)
            .bind(&event.agent)
            .bind(&event.tool)
            .bind(event.detail.to_string())
            .bind(&prev)
            .bind(&hash)
            .execute(&mut *tx)
            .await?;
            prev = hash;
        }
        sqlx::query("UPDATE audit_heads SET hash = $2 WHERE tenant = $1")
            .bind(tenant)
            .bind(&prev)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}
