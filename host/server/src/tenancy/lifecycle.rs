//! A tenant's life on a running host: the `default` tenant and its first admin's token at
//! start, and deleting a tenant with everything of it but its audit trail.

use std::path::Path;

use airlock_audit::AuditEvent;
use airlock_store::sqlx;
use serde_json::json;

use super::{NewToken, TenancyError, HOST_CHAIN};
use crate::Airlock;

/// The file, beside the operator's `admin.token`, holding the `default` tenant's first
/// admin token (mode 0600).
pub const DEFAULT_ADMIN_TOKEN_FILE: &str = "default-admin.token";

impl Airlock {
    /// Makes sure the `default` tenant exists and, when `DIR/default-admin.token` is missing
    /// (first start, or deleted to have a new one), gives it a first admin: a role token
    /// `first-admin` with the `admin` role, written there. So the quick start needs no step.
    pub(crate) async fn bootstrap_default_tenant(&self, dir: &Path) -> Result<(), TenancyError> {
        let tenant = crate::config::DEFAULT_TENANT;
        self.people.tenants.ensure(tenant).await?;
        let path = dir.join(DEFAULT_ADMIN_TOKEN_FILE);
        if path.exists() {
            return Ok(());
        }
        let new = NewToken {
            name: "first-admin".into(),
            member: None,
            role: Some("admin".into()),
            expires_at: None,
            created_by: "operator:bootstrap".into(),
        };
        let (token, info) = self.people.tokens.create(Some(tenant), &new).await?;
        airlock_vault::write_private(&path, format!("{token}\n").as_bytes())
            .map_err(|e| TenancyError::Invalid(format!("cannot write `{}`: {e}", path.display())))?;
        self.audit.record(AuditEvent {
            tenant: tenant.into(),
            kind: "token.create".into(),
            outcome: "ok".into(),
            agent: "operator:bootstrap".into(),
            tool: String::new(),
            detail: json!({ "token": info, "file": DEFAULT_ADMIN_TOKEN_FILE }),
        });
        Ok(())
    }

    /// Deletes tenant `name`: its agents, tuples, model, credentials, slots, approvals, grants,
    /// policies, runs, installations, CIBA registrations, issuers, tokens and invitations go in
    /// one transaction; its audit trail stays, sealed by a last `tenant.delete` event, and the
    /// name cannot be taken again. Its agents are refused on this host from the start, and
    /// everywhere once the transaction commits. `false` when there was no such tenant.
    pub async fn delete_tenant(&self, name: &str, by: &str) -> Result<bool, TenancyError> {
        if !self.people.tenants.exists(name).await? {
            return Ok(false);
        }
        let agents: Vec<(String,)> = sqlx::query_as("SELECT name FROM agents WHERE tenant = $1 AND revoked_at IS NULL")
            .bind(name)
            .fetch_all(self.db.pool())
            .await?;
        for (agent,) in &agents {
            self.agents.block(name, agent);
        }
        let mut tx = self.db.pool().begin().await?;
        // Every other host forgets what it holds of the tenant when this commits.
        self.db.changes().notify_in(&mut tx, "*", name).await?;
        let deleted = self.people.tenants.delete_in(&mut tx, name).await?;
        tx.commit().await?;
        self.people.tenants.forget(name);
        self.rebac.forget_tenant(name);
        self.installed.forget_tenant(name);
        self.vault.forget_tenant(name);
        self.db.changes().settle().await;
        // Calls waiting on the tenant's approvals (deleted with it) hear of it now.
        self.approvals.wake_all();
        if !deleted {
            return Ok(false);
        }
        let detail = json!({ "tenant": name, "agents": agents.iter().map(|(a,)| a).collect::<Vec<_>>() });
        for chain in [name, HOST_CHAIN] {
            self.audit.record(AuditEvent {
                tenant: chain.into(),
                kind: "tenant.delete".into(),
                outcome: "ok".into(),
                agent: by.into(),
                tool: String::new(),
                detail: detail.clone(),
            });
        }
        Ok(true)
    }
}
