//! Tenants as objects: created by the operator, listed, deleted in one transaction.

use std::collections::HashSet;

use airlock_store::{now_millis, sqlx, Db};
use parking_lot::RwLock;
use serde::Serialize;

use super::{validate_tenant_name, TenancyError};

/// Every table holding a tenant's rows in a `tenant` column, but its audit trail
/// (`audit_events`, `audit_heads`), which outlives the tenant. `stores` (keyed by `id`) and
/// `tenants` itself are deleted apart. A new table with a `tenant` column must be added here:
/// the tenant-deletion test walks the schema and finds any that is missed.
const TENANT_TABLES: &[&str] = &[
    "tuples",
    "passkeys",
    "webauthn_ceremonies",
    "approval_proofs",
    "sessions",
    "device_logins",
    "sso_providers",
    "authorization_flows",
    "tuple_changes",
    "tuple_revisions",
    "authorization_models",
    "agents",
    "approvals",
    "grants",
    "ledger_events",
    "approval_policies",
    "runs",
    "policy_calls",
    "connections",
    "connection_slots",
    "tenant_keys",
    "identity_external_issuers",
    "identity_external_subjects",
    "ciba_approvers",
    "ciba_clients",
    "ciba_requests",
    "ciba_external_ops",
    "installations",
    "installed_components",
    "package_types",
    "api_tokens",
    "invitations",
];

/// A tenant as the operator sees it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct TenantInfo {
    pub name: String,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// The registry of tenants. Live names are remembered once seen (a positive answer never
/// goes stale except through [`Tenants::delete`], which forgets it on this host; another host
/// sharing the database then still finds no agent, token or tuple of the deleted tenant).
pub struct Tenants {
    db: Db,
    live: RwLock<HashSet<String>>,
}

impl Tenants {
    pub fn new(db: Db) -> Tenants {
        Tenants { db, live: RwLock::default() }
    }

    /// Creates tenant `name`. Refused: a malformed name, a live tenant of that name, or the
    /// name of a deleted tenant whose audit trail is kept (its chain must not be continued).
    pub async fn create(&self, name: &str) -> Result<TenantInfo, TenancyError> {
        validate_tenant_name(name).map_err(TenancyError::Invalid)?;
        let used: Option<(String,)> = sqlx::query_as("SELECT tenant FROM audit_heads WHERE tenant = $1")
            .bind(name)
            .fetch_optional(self.db.pool())
            .await?;
        let live = self.exists(name).await?;
        if live {
            return Err(TenancyError::Conflict(format!("tenant `{name}` already exists")));
        }
        if used.is_some() {
            return Err(TenancyError::Conflict(format!(
                "`{name}` was a tenant that was deleted; its audit trail is kept under that name: choose another name"
            )));
        }
        let now = now_millis();
        let inserted = sqlx::query("INSERT INTO tenants (name, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(name)
            .bind(now)
            .execute(self.db.pool())
            .await?
            .rows_affected();
        if inserted == 0 {
            return Err(TenancyError::Conflict(format!("tenant `{name}` already exists")));
        }
        self.live.write().insert(name.to_string());
        Ok(TenantInfo { name: name.to_string(), created_at: now })
    }

    /// Creates `name` unless it exists (the `default` tenant at start, an OpenFGA store).
    pub async fn ensure(&self, name: &str) -> Result<bool, TenancyError> {
        validate_tenant_name(name).map_err(TenancyError::Invalid)?;
        let n = sqlx::query("INSERT INTO tenants (name, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(name)
            .bind(now_millis())
            .execute(self.db.pool())
            .await?
            .rows_affected();
        self.live.write().insert(name.to_string());
        Ok(n > 0)
    }

    /// Whether tenant `name` exists. A malformed name is simply not a tenant.
    pub async fn exists(&self, name: &str) -> Result<bool, TenancyError> {
        if validate_tenant_name(name).is_err() {
            return Ok(false);
        }
        if self.live.read().contains(name) {
            return Ok(true);
        }
        let row: Option<(String,)> = sqlx::query_as("SELECT name FROM tenants WHERE name = $1")
            .bind(name)
            .fetch_optional(self.db.pool())
            .await?;
        if row.is_some() {
            self.live.write().insert(name.to_string());
        }
        Ok(row.is_some())
    }

    /// `Ok(())` for a well-formed, existing tenant; otherwise the message an unauthenticated
    /// caller gets (400): malformed, or unknown.
    pub async fn check(&self, name: &str) -> Result<Result<(), String>, TenancyError> {
        if let Err(e) = validate_tenant_name(name) {
            return Ok(Err(e));
        }
        if !self.exists(name).await? {
            return Ok(Err(format!("there is no tenant `{name}`")));
        }
        Ok(Ok(()))
    }

    /// Every tenant, by name.
    pub async fn list(&self) -> Result<Vec<TenantInfo>, TenancyError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT name, created_at FROM tenants ORDER BY name").fetch_all(self.db.pool()).await?;
        Ok(rows.into_iter().map(|(name, created_at)| TenantInfo { name, created_at }).collect())
    }

    /// Deletes every row of tenant `name` but its audit trail, in the caller's transaction.
    /// `false` when there was no such tenant (nothing is touched then).
    pub async fn delete_in(&self, tx: &mut sqlx::Transaction<'_, sqlx::Any>, name: &str) -> Result<bool, TenancyError> {
        let n = sqlx::query("DELETE FROM tenants WHERE name = $1").bind(name).execute(&mut **tx).await?.rows_affected();
        if n == 0 {
            return Ok(false);
        }
        for table in TENANT_TABLES {
            sqlx::query(&format!("DELETE FROM {table} WHERE tenant = $1")).bind(name).execute(&mut **tx).await?;
        }
        sqlx::query("DELETE FROM stores WHERE id = $1").bind(name).execute(&mut **tx).await?;
        Ok(true)
    }

    /// Forgets a deleted tenant on this host (after the deleting transaction committed).
    pub fn forget(&self, name: &str) {
        self.live.write().remove(name);
    }
}
