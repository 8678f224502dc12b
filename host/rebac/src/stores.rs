//! OpenFGA stores. Each store is a tenant: its id names the tenant whose
//! tuples, models and changes it holds.

use airlock_store::{now_millis, sqlx};
use serde::Serialize;

use crate::{Rebac, RebacError};

/// The change-log operation that records a store's deletion.
pub(crate) const STORE_DELETED: &str = "store_deleted";

/// A store as OpenFGA describes it (times in unix milliseconds).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Store {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Rebac {
    /// Creates a store with a new ULID id.
    pub async fn create_store(&self, name: &str) -> Result<Store, RebacError> {
        let now = now_millis();
        let store = Store { id: crate::ulid::new(), name: name.to_string(), created_at: now, updated_at: now };
        sqlx::query("INSERT INTO stores (id, name, created_at, updated_at) VALUES ($1, $2, $3, $3)")
            .bind(&store.id)
            .bind(&store.name)
            .bind(now)
            .execute(self.db.pool())
            .await?;
        self.stores.write().insert(store.id.clone());
        Ok(store)
    }

    /// Whether a store is live: from memory, else from the database (it may have been
    /// created through another host sharing it).
    pub async fn store_live(&self, id: &str) -> Result<bool, RebacError> {
        if self.stores.read().contains(id) {
            return Ok(true);
        }
        let live = self.store(id).await?.is_some();
        if live {
            self.stores.write().insert(id.to_string());
        }
        Ok(live)
    }

    /// A live store.
    pub async fn store(&self, id: &str) -> Result<Option<Store>, RebacError> {
        let row: Option<(String, String, i64, i64)> =
            sqlx::query_as("SELECT id, name, created_at, updated_at FROM stores WHERE id = $1 AND deleted_at IS NULL")
                .bind(id)
                .fetch_optional(self.db.pool())
                .await?;
        Ok(row.map(|(id, name, created_at, updated_at)| Store { id, name, created_at, updated_at }))
    }

    /// Live stores, oldest first, `limit` from `offset`.
    pub async fn stores(&self, offset: i64, limit: i64) -> Result<Vec<Store>, RebacError> {
        let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
            "SELECT id, name, created_at, updated_at FROM stores WHERE deleted_at IS NULL ORDER BY id LIMIT $1 OFFSET $2",
        )
        .bind(limit)
        .bind(offset)
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, name, created_at, updated_at)| Store { id, name, created_at, updated_at })
            .collect())
    }

    /// Marks a store deleted and drops its tuples, in one transaction that other hosts
    /// see through the tenant's revision (its model history and change log are kept).
    pub async fn delete_store(&self, id: &str) -> Result<bool, RebacError> {
        let now = now_millis();
        let mut tx = self.db.pool().begin().await?;
        let n = sqlx::query("UPDATE stores SET deleted_at = $1 WHERE id = $2 AND deleted_at IS NULL")
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM tuples WHERE tenant = $1").bind(id).execute(&mut *tx).await?;
        let rev = crate::writes::bump_revision(&mut tx, self.db.changes(), id).await?;
        crate::writes::log_change(&mut tx, id, rev, &crate::Tuple::new("", "", ""), None, STORE_DELETED, now).await?;
        tx.commit().await?;
        self.forget_tenant(id);
        self.db.changes().settle().await;
        Ok(true)
    }

    /// Drops a deleted store's (or tenant's) tuples, model and liveness from memory.
    pub fn forget_tenant(&self, id: &str) {
        self.stores.write().remove(id);
        self.tenants.write().remove(id);
        self.models.write().remove(id);
    }
}
