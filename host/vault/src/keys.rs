//! Envelope encryption: secrets are sealed by a per-tenant data key, and data
//! keys by the master key.
//!
//! A sealed secret starts with a marker byte and the data key's version, so a
//! tenant key can be rotated (new secrets use the new version, existing ones
//! are re-sealed in the same transaction) and the master key can be rotated by
//! re-sealing only the data keys: no secret is touched and nothing stops.
//! Unsealed data keys are kept in memory (zeroized on drop) so a fetch does
//! not pay a second decryption.

use std::collections::HashMap;
use std::sync::Arc;

use airlock_store::{now_millis, sqlx};
use rand::RngCore;
use zeroize::Zeroizing;

use crate::{MasterKey, Vault, VaultError};

/// First byte of a secret sealed under a tenant data key.
const ENVELOPE: u8 = 0xA1;

fn key_aad(tenant: &str, version: i64) -> Vec<u8> {
    format!("airlock-tenant-key\0{tenant}\0{version}").into_bytes()
}

/// Unsealed data keys by (tenant, version).
#[derive(Default)]
pub(crate) struct DataKeys(parking_lot::Mutex<HashMap<(String, i64), Arc<MasterKey>>>);

impl Vault {
    /// Seals `plain` for connection `name` under the tenant's newest data key.
    pub(crate) async fn seal_secret(&self, tenant: &str, name: &str, plain: &[u8]) -> Result<Vec<u8>, VaultError> {
        let (version, key) = self.active_data_key(tenant).await?;
        let mut out = vec![ENVELOPE];
        out.extend_from_slice(&version.to_be_bytes());
        out.extend(key.seal(&crate::connection::aad(tenant, name), plain));
        Ok(out)
    }

    /// Opens a secret sealed by [`Vault::seal_secret`].
    pub(crate) async fn open_secret(
        &self,
        tenant: &str,
        name: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let unseal = || VaultError::Unseal(name.to_string());
        if sealed.len() < 9 || sealed[0] != ENVELOPE {
            return Err(unseal());
        }
        let mut v = [0u8; 8];
        v.copy_from_slice(&sealed[1..9]);
        // No such data key for this tenant (e.g. a row copied from another tenant): it does not open.
        let key = self.data_key(tenant, i64::from_be_bytes(v)).await.map_err(|e| match e {
            VaultError::Store(e) => VaultError::Store(e),
            _ => unseal(),
        })?;
        key.open(&crate::connection::aad(tenant, name), &sealed[9..]).map(Zeroizing::new).map_err(|_| unseal())
    }

    async fn data_key(&self, tenant: &str, version: i64) -> Result<Arc<MasterKey>, VaultError> {
        if let Some(k) = self.data_keys.0.lock().get(&(tenant.to_string(), version)) {
            return Ok(k.clone());
        }
        let row: Option<(Vec<u8>,)> =
            sqlx::query_as("SELECT sealed_key FROM tenant_keys WHERE tenant = $1 AND version = $2")
                .bind(tenant)
                .bind(version)
                .fetch_optional(self.db.pool())
                .await?;
        let (sealed,) =
            row.ok_or_else(|| VaultError::MasterKey(format!("data key {version} of tenant `{tenant}` is missing")))?;
        let raw = Zeroizing::new(self.master().open(&key_aad(tenant, version), &sealed).map_err(|_| {
            VaultError::MasterKey(format!("data key {version} of tenant `{tenant}` does not open with this master key"))
        })?);
        let key = Arc::new(MasterKey::from_bytes(&raw)?);
        self.data_keys.0.lock().insert((tenant.to_string(), version), key.clone());
        Ok(key)
    }

    async fn active_data_key(&self, tenant: &str) -> Result<(i64, Arc<MasterKey>), VaultError> {
        let newest: Option<(i64,)> =
            sqlx::query_as("SELECT MAX(version) FROM tenant_keys WHERE tenant = $1 HAVING COUNT(*) > 0")
                .bind(tenant)
                .fetch_optional(self.db.pool())
                .await?;
        let version = match newest {
            Some((v,)) => v,
            None => self.create_data_key(tenant, 1).await?,
        };
        Ok((version, self.data_key(tenant, version).await?))
    }

    /// Adds data key `version` for `tenant` (a concurrent creator of the same version wins harmlessly).
    async fn create_data_key(&self, tenant: &str, version: i64) -> Result<i64, VaultError> {
        // Not while the master key rotates: a key sealed by the old master would be missed.
        let _shared = self.key_lock.read().await;
        let mut raw = Zeroizing::new([0u8; 32]);
        rand::thread_rng().fill_bytes(&mut raw[..]);
        let sealed = self.master().seal(&key_aad(tenant, version), &raw[..]);
        sqlx::query(
            "INSERT INTO tenant_keys (tenant, version, sealed_key, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (tenant, version) DO NOTHING",
        )
        .bind(tenant)
        .bind(version)
        .bind(sealed)
        .bind(now_millis())
        .execute(self.db.pool())
        .await?;
        Ok(version)
    }

    /// Gives `tenant` a new data key and re-seals all its secrets with it, in one transaction.
    /// Returns the new version.
    pub async fn rotate_tenant_key(&self, tenant: &str) -> Result<i64, VaultError> {
        let (old_version, _) = self.active_data_key(tenant).await?;
        let version = self.create_data_key(tenant, old_version + 1).await?;
        let rows: Vec<(String, Vec<u8>)> =
            sqlx::query_as("SELECT name, sealed_secret FROM connections WHERE tenant = $1")
                .bind(tenant)
                .fetch_all(self.db.pool())
                .await?;
        let mut tx = self.write_tx(tenant).await?;
        for (name, sealed) in rows {
            let plain = self.open_secret(tenant, &name, &sealed).await?;
            let resealed = self.seal_secret(tenant, &name, &plain).await?;
            sqlx::query(
                "UPDATE connections SET sealed_secret = $1 WHERE tenant = $2 AND name = $3 AND sealed_secret = $4",
            )
            .bind(resealed)
            .bind(tenant)
            .bind(&name)
            .bind(&sealed)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.written(tenant, None).await;
        Ok(version)
    }

    /// Re-seals every data key under `new_master` and makes it the vault's master key.
    /// Secrets are not touched, so fetches go on throughout; restart other hosts with the new key.
    pub async fn rotate_master_key(&self, new_master: MasterKey) -> Result<usize, VaultError> {
        // Exclusive from reading the data keys to installing the new master: no key is created meanwhile,
        // and two rotations cannot interleave.
        let _exclusive = self.key_lock.write().await;
        let rows: Vec<(String, i64, Vec<u8>)> =
            sqlx::query_as("SELECT tenant, version, sealed_key FROM tenant_keys").fetch_all(self.db.pool()).await?;
        let mut tx = self.db.pool().begin().await?;
        let mut count = 0;
        for (tenant, version, sealed) in rows {
            let raw = Zeroizing::new(self.master().open(&key_aad(&tenant, version), &sealed).map_err(|_| {
                VaultError::MasterKey(format!(
                    "data key {version} of tenant `{tenant}` does not open with the current master key"
                ))
            })?);
            sqlx::query("UPDATE tenant_keys SET sealed_key = $1 WHERE tenant = $2 AND version = $3")
                .bind(new_master.seal(&key_aad(&tenant, version), &raw))
                .bind(&tenant)
                .bind(version)
                .execute(&mut *tx)
                .await?;
            count += 1;
        }
        sqlx::query("UPDATE vault_meta SET key_check = $1 WHERE id = 1")
            .bind(new_master.key_check())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        *self.master.write() = Arc::new(new_master);
        Ok(count)
    }

    fn master(&self) -> Arc<MasterKey> {
        self.master.read().clone()
    }
}
