//! Hashing, reading and verifying the chain.

use airlock_store::{sqlx, Db};
use sha2::{Digest, Sha256};

use crate::{AuditError, AuditEvent, StoredEvent, Verification};

/// The hash before a tenant's first event.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// sha256 over the link to the previous event and every field, each length-prefixed
/// so that no two different events can serialize to the same bytes. `detail` is
/// the JSON text exactly as stored.
pub fn event_hash(prev_hash: &str, seq: i64, ts: i64, event: &AuditEvent, detail: &str) -> String {
    let mut h = Sha256::new();
    for part in [
        prev_hash,
        &seq.to_string(),
        &ts.to_string(),
        &event.tenant,
        &event.kind,
        &event.outcome,
        &event.agent,
        &event.tool,
        detail,
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

pub(crate) type Row = (i64, i64, String, String, String, String, String, String, String);

pub(crate) fn from_row(tenant: &str, row: Row) -> StoredEvent {
    let (seq, ts, kind, outcome, agent, tool, detail, prev_hash, hash) = row;
    StoredEvent {
        seq,
        ts,
        event: AuditEvent {
            tenant: tenant.to_string(),
            kind,
            outcome,
            agent,
            tool,
            // A detail that is not JSON any more (tampering) is shown as the raw text.
            detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::String(detail)),
        },
        prev_hash,
        hash,
    }
}

pub(crate) async fn list(db: &Db, tenant: &str, after: i64, limit: i64) -> Result<Vec<StoredEvent>, AuditError> {
    Ok(raw_page(db, tenant, after, limit).await?.into_iter().map(|r| from_row(tenant, r)).collect())
}

pub(crate) async fn head(db: &Db, tenant: &str) -> Result<i64, AuditError> {
    let row: Option<(i64,)> =
        sqlx::query_as("SELECT seq FROM audit_heads WHERE tenant = $1").bind(tenant).fetch_optional(db.pool()).await?;
    Ok(row.map(|(seq,)| seq).unwrap_or(0))
}

pub(crate) async fn raw_page(db: &Db, tenant: &str, after: i64, limit: i64) -> Result<Vec<Row>, AuditError> {
    Ok(sqlx::query_as(
        "SELECT seq, ts, kind, outcome, agent, tool, detail, prev_hash, hash FROM audit_events \
         WHERE tenant = $1 AND seq > $2 ORDER BY seq LIMIT $3",
    )
    .bind(tenant)
    .bind(after)
    .bind(limit)
    .fetch_all(db.pool())
    .await?)
}

/// Verifies the chain up to the head as it stands when verification starts. The head is read
/// first: an append commits its events and the head together, so every event up to that head
/// is there, and events appended while this runs (by this host or another) are past it and
/// are left for the next verification instead of reading as a broken chain.
pub(crate) async fn verify(db: &Db, tenant: &str) -> Result<Verification, AuditError> {
    const PAGE: i64 = 5000;
    let head: Option<(i64, String)> = sqlx::query_as("SELECT seq, hash FROM audit_heads WHERE tenant = $1")
        .bind(tenant)
        .fetch_optional(db.pool())
        .await?;
    let last = head.as_ref().map(|(seq, _)| *seq).unwrap_or(i64::MAX);
    let mut prev = GENESIS.to_string();
    let mut expected_seq = 1;
    let mut after = 0;
    let broken = |seq: i64, reason: String, events: i64| Verification {
        tenant: tenant.to_string(),
        events,
        broken_at: Some(seq),
        reason: Some(reason),
    };
    loop {
        let page = raw_page(db, tenant, after, PAGE).await?;
        let full = page.len() as i64 == PAGE;
        for (seq, ts, kind, outcome, agent, tool, detail, prev_hash, hash) in page {
            if seq > last {
                break;
            }
            let n = expected_seq - 1;
            if seq != expected_seq {
                return Ok(broken(expected_seq, format!("event {expected_seq} is missing"), n));
            }
            if prev_hash != prev {
                return Ok(broken(seq, "link to the previous event does not match".into(), n));
            }
            let event =
                AuditEvent { tenant: tenant.to_string(), kind, outcome, agent, tool, detail: serde_json::Value::Null };
            if event_hash(&prev, seq, ts, &event, &detail) != hash {
                return Ok(broken(seq, "event content does not match its hash".into(), n));
            }
            prev = hash;
            after = seq;
            expected_seq += 1;
        }
        if !full || after >= last {
            break;
        }
    }
    let events = expected_seq - 1;
    if let Some((seq, hash)) = head {
        if seq != events {
            return Ok(broken(
                events + 1,
                format!("chain ends at {events} but its head says {seq}: events were removed"),
                events,
            ));
        }
        if hash != prev {
            return Ok(broken(
                events + 1,
                format!(
                    "the head's hash is not the hash of event {events}: the head or the newest events were rewritten"
                ),
                events,
            ));
        }
    }
    Ok(Verification { tenant: tenant.to_string(), events, broken_at: None, reason: None })
}
