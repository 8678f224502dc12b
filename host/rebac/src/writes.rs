//! Writing, deleting and reading tuples, and the change log.
//!
//! A write is one transaction: every tuple is validated against the tenant's
//! model first, then inserted or deleted, and each change is appended to
//! `tuple_changes` (read back by OpenFGA's `ReadChanges`). Deletions leave the
//! in-memory mirror before the transaction starts, so no check can see a
//! tuple being revoked; if the transaction fails they are put back.

use airlock_store::{now_millis, sqlx};
use serde::Serialize;

use crate::engine::{self, TupleCondition};
use crate::index::TenantIndex;
use crate::{Rebac, RebacError, Tuple};

/// What to do with a tuple that is already there, or one that is not.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteOptions {
    /// Writing an existing tuple is a no-op instead of an error (`on_duplicate: ignore`).
    pub ignore_duplicates: bool,
    /// Deleting a missing tuple is a no-op instead of an error (`on_missing: ignore`).
    pub ignore_missing: bool,
}

/// A stored tuple with its condition and when it was written.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredTuple {
    pub tuple: Tuple,
    pub condition: Option<TupleCondition>,
    pub written_at: i64,
}

/// One entry of the change log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub seq: i64,
    pub tuple: Tuple,
    pub condition_name: Option<String>,
    /// `write` or `delete`.
    pub operation: String,
    pub at: i64,
}

/// Filters for [`Rebac::read_tuples`], as in OpenFGA's `Read`: `object` may be a bare `type:`.
#[derive(Debug, Clone, Default)]
pub struct ReadFilter {
    pub object: Option<String>,
    pub relation: Option<String>,
    pub user: Option<String>,
}

pub(crate) fn condition_from_columns(name: Option<String>, context: Option<String>) -> Option<TupleCondition> {
    name.map(|name| TupleCondition {
        name,
        context: context.and_then(|c| serde_json::from_str(&c).ok()).unwrap_or_default(),
    })
}

impl Rebac {
    /// Applies `deletes` then `writes` in one transaction, validated against the tenant's model.
    /// Returns how many tuples were deleted.
    pub async fn write_tuples(
        &self,
        tenant: &str,
        writes: &[(Tuple, Option<TupleCondition>)],
        deletes: &[Tuple],
        options: WriteOptions,
    ) -> Result<u64, RebacError> {
        let model = self.model(tenant);
        for (t, c) in writes {
            t.validate()?;
            if let Some(active) = &model {
                engine::validate_tuple(&active.model, t, c.as_ref().map(|c| c.name.as_str()))?;
            }
        }
        for t in deletes {
            t.validate()?;
        }
        {
            let tenants = self.tenants.read();
            let index = tenants.get(tenant);
            let present = |t: &Tuple| index.map(|i| i.contains(&t.object, &t.relation, &t.subject)).unwrap_or(false);
            if !options.ignore_duplicates {
                if let Some((t, _)) = writes.iter().find(|(t, _)| present(t)) {
                    return Err(RebacError::Duplicate(format!("{}#{}@{}", t.object, t.relation, t.subject)));
                }
            }
            if !options.ignore_missing {
                if let Some(t) = deletes.iter().find(|t| !present(t)) {
                    return Err(RebacError::Missing(format!("{}#{}@{}", t.object, t.relation, t.subject)));
                }
            }
        }
        // Revocations take effect now, before the database has them.
        let mut removed = Vec::new();
        {
            let mut tenants = self.tenants.write();
            if let Some(index) = tenants.get_mut(tenant) {
                for t in deletes {
                    if let Some(c) = index.remove(&t.object, &t.relation, &t.subject) {
                        removed.push((t.clone(), c));
                    }
                }
            }
        }
        match self.persist(tenant, writes, deletes).await {
            Ok((deleted, inserted)) => {
                // Answered once every host that answers from memory applied it.
                self.db.changes().settle().await;
                // Only what the database took: an ignored duplicate keeps its stored condition.
                let mut tenants = self.tenants.write();
                let index = tenants.entry(tenant.to_string()).or_default();
                for ((t, c), took) in writes.iter().zip(inserted) {
                    if took {
                        index.insert(&t.object, &t.relation, &t.subject, c.clone());
                    }
                }
                Ok(deleted)
            }
            Err(e) => {
                let mut tenants = self.tenants.write();
                let index: &mut TenantIndex = tenants.entry(tenant.to_string()).or_default();
                for (t, c) in removed {
                    index.insert(&t.object, &t.relation, &t.subject, c);
                }
                Err(e.into())
            }
        }
    }

    /// Writes `model` (when given: the tenant's next active model, in DSL), then deletes and
    /// writes tuples, inside the caller's transaction: for an installer whose tuples must land
    /// or vanish together with other engines' rows. Writes are validated against `model`, else
    /// the active model; existing writes and missing deletes are no-ops. The in-memory mirror
    /// learns of it only through [`Rebac::refresh`] after the caller commits (and, for deletes,
    /// [`Rebac::hide`] before it begins, so a revocation takes effect first).
    pub async fn stage_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        tenant: &str,
        model: Option<&str>,
        writes: &[Tuple],
        deletes: &[Tuple],
    ) -> Result<(), RebacError> {
        let parsed = match model {
            Some(dsl) => Some(std::sync::Arc::new(crate::model::dsl::parse(dsl)?)),
            None => self.model(tenant).map(|m| m.model),
        };
        for t in writes {
            t.validate()?;
            if let Some(model) = &parsed {
                engine::validate_tuple(model, t, None)?;
            }
        }
        for t in deletes {
            t.validate()?;
        }
        let now = now_millis();
        let rev = bump_revision(tx, self.db.changes(), tenant).await?;
        if let Some(dsl) = model {
            insert_model(tx, tenant, rev, dsl, now).await?;
        }
        delete_logged(tx, tenant, rev, deletes, now).await?;
        for t in writes {
            let n = sqlx::query(
                "INSERT INTO tuples (tenant, object, relation, subject, created_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (tenant, object, relation, subject) DO NOTHING",
            )
            .bind(tenant)
            .bind(&t.object)
            .bind(&t.relation)
            .bind(&t.subject)
            .bind(now)
            .execute(&mut **tx)
            .await?
            .rows_affected();
            if n > 0 {
                log_change(tx, tenant, rev, t, None, "write", now).await?;
            }
        }
        Ok(())
    }

    /// Takes `tuples` out of the in-memory mirror now, before the transaction that deletes
    /// them commits: from this moment no check sees them. If that transaction fails they stay
    /// hidden on this host until it restarts (failing closed).
    pub fn hide(&self, tenant: &str, tuples: &[Tuple]) {
        let mut tenants = self.tenants.write();
        if let Some(index) = tenants.get_mut(tenant) {
            for t in tuples {
                index.remove(&t.object, &t.relation, &t.subject);
            }
        }
    }

    /// Tuples whose subject (or object) is `subject`, or whose object starts with one of
    /// `object_prefixes` (`tool:crm.`, `connection:crm/`), for an uninstall that revokes
    /// everything an agent was granted, whoever granted it. Read from the database, so it is
    /// complete whatever this host has in memory.
    pub async fn tuples_touching(
        &self,
        tenant: &str,
        subject: &str,
        object_prefixes: &[String],
    ) -> Result<Vec<Tuple>, RebacError> {
        let mut conn = self.db.pool().acquire().await?;
        Ok(touching(&mut conn, tenant, subject, object_prefixes).await?)
    }

    /// [`Rebac::tuples_touching`] read inside the caller's transaction (after
    /// [`Rebac::lock_model_in`] took the tenant's revision lock, nothing can be granted to the
    /// agent between this read and the commit).
    pub async fn tuples_touching_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        tenant: &str,
        subject: &str,
        object_prefixes: &[String],
    ) -> Result<Vec<Tuple>, RebacError> {
        Ok(touching(tx, tenant, subject, object_prefixes).await?)
    }

    /// Inside the caller's transaction, takes the tenant's revision lock (held until the
    /// transaction ends, also against other hosts) and returns the latest model's DSL: an
    /// installer merges its fragment onto this, so two concurrent merges cannot lose one.
    pub async fn lock_model_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        tenant: &str,
    ) -> Result<Option<String>, RebacError> {
        bump_revision(tx, self.db.changes(), tenant).await?;
        let latest: Option<(String,)> = sqlx::query_as(
            "SELECT dsl FROM authorization_models WHERE tenant = $1 ORDER BY created_at DESC, id DESC LIMIT 1",
        )
        .bind(tenant)
        .fetch_optional(&mut **tx)
        .await?;
        Ok(latest.map(|(dsl,)| dsl))
    }

    /// Whether any tuple of `tenant` has an object of type `object_type`.
    pub async fn type_in_use(&self, tenant: &str, object_type: &str) -> Result<bool, RebacError> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT object FROM tuples WHERE tenant = $1 AND substr(object, 1, length($2)) = $2 LIMIT 1",
        )
        .bind(tenant)
        .bind(format!("{object_type}:"))
        .fetch_optional(self.db.pool())
        .await?;
        Ok(row.is_some())
    }

    async fn persist(
        &self,
        tenant: &str,
        writes: &[(Tuple, Option<TupleCondition>)],
        deletes: &[Tuple],
    ) -> Result<(u64, Vec<bool>), sqlx::Error> {
        let now = now_millis();
        let mut tx = self.db.pool().begin().await?;
        let rev = bump_revision(&mut tx, self.db.changes(), tenant).await?;
        let deleted = delete_logged(&mut tx, tenant, rev, deletes, now).await?;
        let mut took = Vec::with_capacity(writes.len());
        for (t, c) in writes {
            let context = c.as_ref().map(|c| serde_json::Value::Object(c.context.clone()).to_string());
            let inserted = sqlx::query(
                "INSERT INTO tuples (tenant, object, relation, subject, created_at, condition_name, condition_context) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (tenant, object, relation, subject) DO NOTHING",
            )
            .bind(tenant)
            .bind(&t.object)
            .bind(&t.relation)
            .bind(&t.subject)
            .bind(now)
            .bind(c.as_ref().map(|c| c.name.clone()))
            .bind(context)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted > 0 {
                log_change(&mut tx, tenant, rev, t, c.as_ref().map(|c| c.name.as_str()), "write", now).await?;
            }
            took.push(inserted > 0);
        }
        tx.commit().await?;
        Ok((deleted, took))
    }

    /// Stored tuples matching `filter`, in a stable order, `limit` from `offset`.
    pub async fn read_tuples(
        &self,
        tenant: &str,
        filter: &ReadFilter,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<StoredTuple>, RebacError> {
        let (object_exact, object_type) = match filter.object.as_deref() {
            Some(o) if o.ends_with(':') => (String::new(), o.to_string()),
            Some(o) => (o.to_string(), String::new()),
            None => (String::new(), String::new()),
        };
        let rows: Vec<(String, String, String, Option<String>, Option<String>, i64)> = sqlx::query_as(
            "SELECT object, relation, subject, condition_name, condition_context, created_at FROM tuples \
             WHERE tenant = $1 AND ($2 = '' OR object = $2) AND ($3 = '' OR substr(object, 1, length($3)) = $3) \
             AND ($4 = '' OR relation = $4) AND ($5 = '' OR subject = $5) \
             ORDER BY object, relation, subject LIMIT $6 OFFSET $7",
        )
        .bind(tenant)
        .bind(&object_exact)
        .bind(&object_type)
        .bind(filter.relation.as_deref().unwrap_or(""))
        .bind(filter.user.as_deref().unwrap_or(""))
        .bind(limit)
        .bind(offset)
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(object, relation, subject, cname, cctx, at)| StoredTuple {
                tuple: Tuple { object, relation, subject },
                condition: condition_from_columns(cname, cctx),
                written_at: at,
            })
            .collect())
    }

    /// Changes after `after` (a sequence number), oldest first, optionally only on objects of `object_type`.
    pub async fn read_changes(
        &self,
        tenant: &str,
        object_type: Option<&str>,
        after: i64,
        limit: i64,
    ) -> Result<Vec<Change>, RebacError> {
        let prefix = object_type.map(|t| format!("{t}:")).unwrap_or_default();
        let rows: Vec<(i64, String, String, String, Option<String>, String, i64)> = sqlx::query_as(
            "SELECT seq, object, relation, subject, condition_name, operation, ts FROM tuple_changes \
             WHERE tenant = $1 AND seq > $2 AND operation IN ('write', 'delete') \
             AND ($3 = '' OR substr(object, 1, length($3)) = $3) ORDER BY seq LIMIT $4",
        )
        .bind(tenant)
        .bind(after)
        .bind(&prefix)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(seq, object, relation, subject, condition_name, operation, at)| Change {
                seq,
                tuple: Tuple { object, relation, subject },
                condition_name,
                operation,
                at,
            })
            .collect())
    }
}

/// The tuples of `tenant` naming `subject` (as subject, in a userset of it, or as object) or
/// whose object starts with one of `object_prefixes` (exact prefixes: no `LIKE` wildcards).
async fn touching(
    conn: &mut sqlx::AnyConnection,
    tenant: &str,
    subject: &str,
    object_prefixes: &[String],
) -> Result<Vec<Tuple>, sqlx::Error> {
    let mut sql = String::from(
        "SELECT object, relation, subject FROM tuples WHERE tenant = $1 AND (subject = $2 OR object = $2 \
         OR substr(subject, 1, length($3)) = $3",
    );
    for n in 4..4 + object_prefixes.len() {
        sql.push_str(&format!(" OR substr(object, 1, length(${n})) = ${n}"));
    }
    sql.push_str(") ORDER BY object, relation, subject");
    let mut query = sqlx::query_as(&sql).bind(tenant).bind(subject).bind(format!("{subject}#"));
    for p in object_prefixes {
        query = query.bind(p);
    }
    let rows: Vec<(String, String, String)> = query.fetch_all(conn).await?;
    Ok(rows.into_iter().map(|(object, relation, subject)| Tuple { object, relation, subject }).collect())
}

/// Deletes `deletes` (those present), logging each under `rev`; returns how many went.
async fn delete_logged(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant: &str,
    rev: i64,
    deletes: &[Tuple],
    now: i64,
) -> Result<u64, sqlx::Error> {
    let mut deleted = 0;
    for t in deletes {
        let n = sqlx::query("DELETE FROM tuples WHERE tenant = $1 AND object = $2 AND relation = $3 AND subject = $4")
            .bind(tenant)
            .bind(&t.object)
            .bind(&t.relation)
            .bind(&t.subject)
            .execute(&mut **tx)
            .await?
            .rows_affected();
        if n > 0 {
            log_change(tx, tenant, rev, t, None, "delete", now).await?;
        }
        deleted += n;
    }
    Ok(deleted)
}

/// Stores `dsl` as the tenant's newest model, logged under `rev`; returns its id.
pub(crate) async fn insert_model(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant: &str,
    rev: i64,
    dsl: &str,
    now: i64,
) -> Result<String, sqlx::Error> {
    let id = crate::ulid::new();
    sqlx::query("INSERT INTO authorization_models (tenant, id, dsl, created_at) VALUES ($1, $2, $3, $4)")
        .bind(tenant)
        .bind(&id)
        .bind(dsl)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    log_change(tx, tenant, rev, &Tuple::new("", "", id.as_str()), None, "model", now).await?;
    Ok(id)
}

/// Takes the tenant's next revision; the row lock orders concurrent writers (also across hosts).
///
/// It also tells the other hosts, once the transaction commits, that the tenant's tuples changed
/// (`crate::CHANGE_TOPIC`): they answer checks from memory until then.
pub(crate) async fn bump_revision(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    changes: &airlock_store::Changes,
    tenant: &str,
) -> Result<i64, sqlx::Error> {
    changes.notify_in(tx, crate::CHANGE_TOPIC, tenant).await?;
    sqlx::query("INSERT INTO tuple_revisions (tenant, rev) VALUES ($1, 0) ON CONFLICT (tenant) DO NOTHING")
        .bind(tenant)
        .execute(&mut **tx)
        .await?;
    let (rev,): (i64,) = sqlx::query_as("UPDATE tuple_revisions SET rev = rev + 1 WHERE tenant = $1 RETURNING rev")
        .bind(tenant)
        .fetch_one(&mut **tx)
        .await?;
    Ok(rev)
}

pub(crate) async fn log_change(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant: &str,
    rev: i64,
    t: &Tuple,
    condition: Option<&str>,
    operation: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO tuple_changes (tenant, rev, object, relation, subject, condition_name, operation, ts) \
         VALUES ($1, $8, $2, $3, $4, $5, $6, $7)",
    )
    .bind(tenant)
    .bind(&t.object)
    .bind(&t.relation)
    .bind(&t.subject)
    .bind(condition)
    .bind(operation)
    .bind(now)
    .bind(rev)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
