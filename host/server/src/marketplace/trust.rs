//! Which publishers' packages this host installs.
//!
//! Keys come from two places: `marketplace/publishers/NAME.pub` in the source tree (compiled
//! into the binary by the build script, so a host trusts them without any file at run time)
//! and keys an admin adds (`airlock publisher trust`, stored in `trusted_publishers`). The
//! store is read from the database at each install, so a key added or removed through any
//! host counts everywhere at once.

use airlock_marketplace::{key_id, PackageError, TrustStore};
use airlock_store::{now_millis, sqlx, Db};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Serialize;

/// `(publisher, file contents)` of `marketplace/publishers/*.pub`, from the build script.
const SHIPPED: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/shipped_publishers.rs"));

/// A trusted key as listed to an admin.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct PublisherKey {
    pub publisher: String,
    pub key_id: String,
    /// `shipped` (in the binary) or `admin` (added at run time; removable).
    pub source: &'static str,
}

/// Why a key was not trusted or removed.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("{0}")]
    Key(#[from] PackageError),
    #[error("key `{0}` of this publisher is shipped with the binary; it cannot be removed at run time")]
    Shipped(String),
    #[error("database error: {0}")]
    Store(#[from] sqlx::Error),
}

/// The shipped keys.
fn shipped() -> Result<TrustStore, PackageError> {
    let mut store = TrustStore::new();
    for (publisher, text) in SHIPPED {
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            store.add(publisher, line)?;
        }
    }
    Ok(store)
}

/// The trust store now: shipped keys and the admin's.
pub async fn current(db: &Db) -> Result<TrustStore, TrustError> {
    let mut store = shipped()?;
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT publisher, public_key FROM trusted_publishers ORDER BY publisher, key_id")
            .fetch_all(db.pool())
            .await?;
    for (publisher, key) in rows {
        store.add(&publisher, &key)?;
    }
    Ok(store)
}

/// Every trusted key, shipped first.
pub async fn list(db: &Db) -> Result<Vec<PublisherKey>, TrustError> {
    let mut out: Vec<PublisherKey> = shipped()?
        .keys()
        .iter()
        .map(|k| PublisherKey { publisher: k.publisher.clone(), key_id: k.key_id.clone(), source: "shipped" })
        .collect();
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT publisher, key_id FROM trusted_publishers ORDER BY publisher, key_id")
            .fetch_all(db.pool())
            .await?;
    out.extend(rows.into_iter().map(|(publisher, key_id)| PublisherKey { publisher, key_id, source: "admin" }));
    Ok(out)
}

/// Trusts `public_base64` (a 32-byte Ed25519 public key) for `publisher`; returns its key id.
/// Trusting the same key again is harmless.
pub async fn add(db: &Db, publisher: &str, public_base64: &str) -> Result<String, TrustError> {
    if publisher == super::catalog::CATALOG_PUBLISHER {
        return Err(TrustError::Key(PackageError::InvalidKey(format!(
            "publisher `{publisher}` is the name of this host's own catalog: trust the key under another publisher name"
        ))));
    }
    // The trust store's own parser checks the publisher name and the key.
    let mut probe = TrustStore::new();
    let id = probe.add(publisher, public_base64.trim())?;
    let raw = STANDARD.decode(public_base64.trim()).unwrap_or_default();
    debug_assert_eq!(key_id(&raw), id);
    sqlx::query(
        "INSERT INTO trusted_publishers (publisher, key_id, public_key, added_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (publisher, key_id) DO NOTHING",
    )
    .bind(publisher)
    .bind(&id)
    .bind(public_base64.trim())
    .bind(now_millis())
    .execute(db.pool())
    .await?;
    Ok(id)
}

/// Stops trusting an admin-added key; `false` if there was none. Installed agents stay
/// installed (their package was verified when installed); new installs and upgrades signed
/// by the key are refused.
pub async fn remove(db: &Db, publisher: &str, key_id: &str) -> Result<bool, TrustError> {
    if shipped()?.find(publisher, key_id).is_some() {
        return Err(TrustError::Shipped(key_id.to_string()));
    }
    let n = sqlx::query("DELETE FROM trusted_publishers WHERE publisher = $1 AND key_id = $2")
        .bind(publisher)
        .bind(key_id)
        .execute(db.pool())
        .await?
        .rows_affected();
    Ok(n > 0)
}
