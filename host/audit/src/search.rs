//! Finding events in a tenant's trail by their fields, and counting them per time bucket.
//!
//! The SQL is the same on SQLite and PostgreSQL: each condition is added only for a field the
//! filter gives, every value is bound (never spliced into the text), and the tenant's primary
//! key `(tenant, seq)` orders the result, so a page walks that index from its end and stops
//! once it has enough.

use airlock_store::{sqlx, Db};

use crate::chain::{from_row, Row};
use crate::{AuditError, StoredEvent};

/// Which events [`crate::AuditLog::search`] returns: every field that is given must match; an
/// empty filter matches the whole trail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchFilter {
    /// The acting subject, exactly as recorded (`agent:NAME`, `user:NAME`, `token:NAME`, ...).
    pub agent: Option<String>,
    /// The tool, exactly (`component.tool`).
    pub tool: Option<String>,
    /// How it ended, exactly (`allowed`, `denied`, `failed`, `approved`, `ok`, ...).
    pub outcome: Option<String>,
    /// What happened, exactly (`tool.call`, `approval.request`, ...).
    pub kind: Option<String>,
    /// Recorded at or after this time (ms since the epoch; inclusive).
    pub since: Option<i64>,
    /// Recorded before this time (ms since the epoch; exclusive).
    pub until: Option<i64>,
    /// Only sequence numbers below this one (exclusive): the last seq of the previous page,
    /// to page backwards from the newest.
    pub before: Option<i64>,
    /// Only sequence numbers above this one (exclusive): to page forwards from the oldest.
    pub after: Option<i64>,
}

/// A value bound into the search SQL.
enum Param<'a> {
    Text(&'a str),
    Int(i64),
}

/// The `WHERE` clause of `f` for `tenant` (`$1`), with the values to bind after it.
fn conditions(f: &SearchFilter) -> (String, Vec<Param<'_>>) {
    let mut sql = String::from("tenant = $1");
    let mut params = Vec::new();
    let texts = [("agent", &f.agent), ("tool", &f.tool), ("outcome", &f.outcome), ("kind", &f.kind)];
    for (column, value) in texts {
        if let Some(v) = value {
            params.push(Param::Text(v));
            sql.push_str(&format!(" AND {column} = ${}", params.len() + 1));
        }
    }
    let ints = [("ts >=", f.since), ("ts <", f.until), ("seq <", f.before), ("seq >", f.after)];
    for (test, value) in ints {
        if let Some(v) = value {
            params.push(Param::Int(v));
            sql.push_str(&format!(" AND {test} ${}", params.len() + 1));
        }
    }
    (sql, params)
}

/// Events of `tenant` matching `f`, at most `limit`, newest first or oldest first.
pub(crate) async fn search(
    db: &Db,
    tenant: &str,
    f: &SearchFilter,
    limit: i64,
    newest_first: bool,
) -> Result<Vec<StoredEvent>, AuditError> {
    let (conditions, params) = conditions(f);
    let sql = format!(
        "SELECT seq, ts, kind, outcome, agent, tool, detail, prev_hash, hash FROM audit_events \
         WHERE {conditions} ORDER BY seq {} LIMIT ${}",
        if newest_first { "DESC" } else { "ASC" },
        params.len() + 2
    );
    let mut query = sqlx::query_as::<_, Row>(&sql).bind(tenant);
    for p in params {
        query = match p {
            Param::Text(v) => query.bind(v),
            Param::Int(v) => query.bind(v),
        };
    }
    let rows = query.bind(limit.max(0)).fetch_all(db.pool()).await?;
    Ok(rows.into_iter().map(|r| from_row(tenant, r)).collect())
}

/// How many events of one kind fell in one time bucket, and how many of them had one outcome
/// ([`crate::AuditLog::tally`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// The bucket's first millisecond (a multiple of the bucket width since the epoch).
    pub start: i64,
    /// Events of the kind in the bucket.
    pub events: i64,
    /// Of those, the ones with the outcome asked about.
    pub with_outcome: i64,
}

/// See [`crate::AuditLog::tally`].
pub(crate) async fn tally(
    db: &Db,
    tenant: &str,
    kind: &str,
    outcome: &str,
    since: i64,
    until: i64,
    bucket_ms: i64,
) -> Result<Vec<Tally>, AuditError> {
    let bucket_ms = bucket_ms.max(1);
    // Grouped by the database: one row per non-empty bucket, whatever the number of events.
    let rows: Vec<(i64, i64, i64)> = sqlx::query_as(
        "SELECT ts / $2 AS bucket, COUNT(*), SUM(CASE WHEN outcome = $3 THEN 1 ELSE 0 END) FROM audit_events \
         WHERE tenant = $1 AND kind = $4 AND ts >= $5 AND ts < $6 GROUP BY 1 ORDER BY 1",
    )
    .bind(tenant)
    .bind(bucket_ms)
    .bind(outcome)
    .bind(kind)
    .bind(since)
    .bind(until)
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|(bucket, events, with_outcome)| Tally { start: bucket * bucket_ms, events, with_outcome })
        .collect())
}
