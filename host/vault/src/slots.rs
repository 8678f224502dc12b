//! Connection slots: credentials an installed package declared it needs, waiting for the
//! tenant admin to fill them.
//!
//! Install declares a slot (`AGENT/NAME`, its kind, the hosts it is meant for, what to put in
//! it); the admin fills it with [`Vault::put`] under the same name. Until then a tool that
//! uses it gets [`VaultError::SlotEmpty`], which says who must do what. A slot's kind is the
//! package's contract with its component, so filling it with another kind is refused.

use airlock_store::sqlx;

use crate::connection::{Connection, ConnectionKind, OAuthConfig};
use crate::{Vault, VaultError};

/// A declared connection slot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Slot {
    /// `AGENT/NAME`: the connection the admin fills.
    pub name: String,
    /// The agent whose package declared it.
    pub agent: String,
    pub kind: ConnectionKind,
    /// The hosts the package declared the credential is for.
    pub allowed_hosts: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oauth: Option<OAuthConfig>,
    /// What the admin should put in it.
    pub description: String,
}

type SlotRow = (String, String, String, String, Option<String>, String);

fn from_row((name, agent, kind, hosts, oauth, description): SlotRow) -> Result<Slot, VaultError> {
    Ok(Slot {
        name,
        agent,
        kind: ConnectionKind::parse(&kind)?,
        allowed_hosts: serde_json::from_str(&hosts)
            .map_err(|e| VaultError::InvalidConnection(format!("stored slot hosts: {e}")))?,
        oauth: oauth
            .map(|o| serde_json::from_str(&o))
            .transpose()
            .map_err(|e| VaultError::InvalidConnection(format!("stored slot oauth: {e}")))?,
        description,
    })
}

const SLOT_COLUMNS: &str = "name, agent, kind, allowed_hosts, oauth, description";

impl Vault {
    /// Declares (or re-declares, on upgrade) a slot inside the caller's transaction.
    pub async fn declare_slot_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        tenant: &str,
        slot: &Slot,
    ) -> Result<(), VaultError> {
        let expected = Connection::in_namespace(&slot.agent, "");
        if !slot.name.starts_with(&expected) || slot.name.len() == expected.len() {
            return Err(VaultError::InvalidConnection(format!(
                "slot `{}` is not in agent `{}`'s namespace",
                slot.name, slot.agent
            )));
        }
        let hosts = serde_json::to_string(&slot.allowed_hosts).unwrap_or_default();
        let oauth = slot.oauth.as_ref().map(|o| serde_json::to_string(o).unwrap_or_default());
        sqlx::query(
            "INSERT INTO connection_slots (tenant, name, agent, kind, allowed_hosts, oauth, description) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (tenant, name) DO UPDATE SET agent = $3, kind = $4, \
             allowed_hosts = $5, oauth = $6, description = $7",
        )
        .bind(tenant)
        .bind(&slot.name)
        .bind(&slot.agent)
        .bind(slot.kind.as_str())
        .bind(hosts)
        .bind(oauth)
        .bind(&slot.description)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Removes slot `name` inside the caller's transaction (an upgrade that no longer
    /// declares it), with the credential filled into it.
    pub async fn drop_slot_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        tenant: &str,
        name: &str,
    ) -> Result<(), VaultError> {
        self.db.changes().notify_in(tx, crate::CHANGE_TOPIC, tenant).await?;
        for table in ["connection_slots", "connections"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE tenant = $1 AND name = $2"))
                .bind(tenant)
                .bind(name)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// A tenant's slots, each with whether a credential fills it yet.
    pub async fn slots(&self, tenant: &str) -> Result<Vec<(Slot, bool)>, VaultError> {
        let rows: Vec<SlotRow> =
            sqlx::query_as(&format!("SELECT {SLOT_COLUMNS} FROM connection_slots WHERE tenant = $1 ORDER BY name"))
                .bind(tenant)
                .fetch_all(self.db.pool())
                .await?;
        let filled: Vec<(String,)> = sqlx::query_as("SELECT name FROM connections WHERE tenant = $1")
            .bind(tenant)
            .fetch_all(self.db.pool())
            .await?;
        rows.into_iter()
            .map(|r| {
                let slot = from_row(r)?;
                let is_filled = filled.iter().any(|(n,)| *n == slot.name);
                Ok((slot, is_filled))
            })
            .collect()
    }

    /// The slot named `name`, if a package declared one.
    pub async fn slot(&self, tenant: &str, name: &str) -> Result<Option<Slot>, VaultError> {
        let row: Option<SlotRow> =
            sqlx::query_as(&format!("SELECT {SLOT_COLUMNS} FROM connection_slots WHERE tenant = $1 AND name = $2"))
                .bind(tenant)
                .bind(name)
                .fetch_optional(self.db.pool())
                .await?;
        row.map(from_row).transpose()
    }

    /// Deletes every connection and slot in `agent`'s namespace inside the caller's
    /// transaction (uninstall); returns how many credentials were destroyed. Call
    /// [`Vault::forget_tenant`] once it commits.
    pub async fn delete_namespace_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        tenant: &str,
        agent: &str,
    ) -> Result<u64, VaultError> {
        self.db.changes().notify_in(tx, crate::CHANGE_TOPIC, tenant).await?;
        let prefix = Connection::in_namespace(agent, "");
        let mut destroyed = 0;
        for table in ["connections", "connection_slots"] {
            let n = sqlx::query(&format!("DELETE FROM {table} WHERE tenant = $1 AND substr(name, 1, length($2)) = $2"))
                .bind(tenant)
                .bind(&prefix)
                .execute(&mut **tx)
                .await?
                .rows_affected();
            if table == "connections" {
                destroyed = n;
            }
        }
        Ok(destroyed)
    }

    /// Drops every connection of `tenant` this host remembers (after a transaction changed them).
    pub fn forget_tenant(&self, tenant: &str) {
        self.forget(tenant, None);
    }

    /// Refuses to fill a slot with a kind other than the one its package declared.
    pub(crate) async fn check_against_slot(&self, tenant: &str, conn: &Connection) -> Result<(), VaultError> {
        match self.slot(tenant, &conn.name).await? {
            Some(slot) if slot.kind != conn.kind => Err(VaultError::InvalidConnection(format!(
                "`{}` is a slot its package declared as `{}`: fill it with that kind (its component expects it)",
                conn.name,
                slot.kind.as_str()
            ))),
            _ => Ok(()),
        }
    }
}
