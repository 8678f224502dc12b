//! The host's own signing keys: Ed25519, sealed at rest by the master key, shared by every
//! host on the same database.
//!
//! At most one key is active (a unique index on `active` enforces it, so two hosts starting
//! together cannot both create one). Rotation retires the active key and inserts a new one in
//! one transaction; a retired key keeps verifying (and stays in the JWKS) for [`KEY_GRACE`],
//! longer than any token it can have signed lives, and is deleted at a later rotation.

use std::collections::HashMap;
use std::time::Duration;

use airlock_store::{now_millis, sqlx, Db};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{DecodingKey, EncodingKey};
use ring::signature::KeyPair as _;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::KeySealer;

use crate::error::IdentityError;
use crate::MAX_TTL;

/// How long a retired key keeps verifying: the longest token lifetime, plus the time another
/// host may keep signing with a key it has not yet seen retired ([`RING_REFRESH`]), plus leeway.
pub const KEY_GRACE: Duration = Duration::from_secs(MAX_TTL.as_secs() + RING_REFRESH.as_secs() + 10 * 60);

/// How often a host re-reads the key table to pick up a rotation done by another host.
pub(crate) const RING_REFRESH: Duration = Duration::from_secs(60);

/// The only algorithm the host signs with.
pub(crate) const OWN_ALG: &str = "EdDSA";

/// A public key that verifies the host's tokens.
pub(crate) struct VerifyingKey {
    pub key: DecodingKey,
    pub jwk: serde_json::Value,
    /// Unix millis when it stopped signing; `None` for the active key.
    pub retired_at: Option<i64>,
}

impl VerifyingKey {
    /// Whether the key still verifies at `now` (unix millis): active, or retired within the grace period.
    pub fn verifies_at(&self, now: i64) -> bool {
        self.retired_at.is_none_or(|at| at + KEY_GRACE.as_millis() as i64 >= now)
    }
}

/// Every key that verifies right now, and the one that signs.
pub(crate) struct KeyRing {
    pub verifying: HashMap<String, VerifyingKey>,
    pub active_kid: String,
    pub signing: EncodingKey,
}

/// A freshly generated key, ready to insert.
struct NewKey {
    kid: String,
    sealed_private: Vec<u8>,
    public_jwk: String,
}

/// Generates an Ed25519 key; its kid is the RFC 7638 JWK thumbprint.
async fn generate(sealer: &dyn KeySealer) -> Result<NewKey, IdentityError> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|e| IdentityError::KeyGeneration(e.to_string()))?;
    let pkcs8 = Zeroizing::new(pkcs8.as_ref().to_vec());
    let pair =
        ring::signature::Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|e| IdentityError::KeyGeneration(e.to_string()))?;
    let x = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
    let thumbprint = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(thumbprint.as_bytes()));
    let jwk = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": OWN_ALG, "use": "sig"});
    let sealed_private = sealer.seal(&kid, &pkcs8).await.map_err(|e| IdentityError::KeyGeneration(e.to_string()))?;
    Ok(NewKey { sealed_private, public_jwk: jwk.to_string(), kid })
}

/// Inserts `key` as the active key unless another key is active (then nothing happens).
async fn insert_active<'c, E>(exec: E, key: &NewKey) -> Result<(), IdentityError>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO identity_keys (kid, alg, sealed_private, public_jwk, created_at, retired_at, active) \
         VALUES ($1, $2, $3, $4, $5, NULL, 1) ON CONFLICT DO NOTHING",
    )
    .bind(&key.kid)
    .bind(OWN_ALG)
    .bind(&key.sealed_private)
    .bind(&key.public_jwk)
    .bind(now_millis())
    .execute(exec)
    .await?;
    Ok(())
}

/// Creates the first key when none is active; a concurrent creator on another host wins or loses
/// cleanly through the unique index.
pub(crate) async fn ensure_active(db: &Db, sealer: &dyn KeySealer) -> Result<(), IdentityError> {
    let active: Option<(String,)> =
        sqlx::query_as("SELECT kid FROM identity_keys WHERE active = 1").fetch_optional(db.pool()).await?;
    if active.is_none() {
        insert_active(db.pool(), &generate(sealer).await?).await?;
    }
    Ok(())
}

/// Retires the active key and makes a new one, atomically; keys retired past the grace period
/// are deleted. Two hosts rotating at once produce one new key (the second insert yields).
pub(crate) async fn rotate(db: &Db, sealer: &dyn KeySealer) -> Result<(), IdentityError> {
    let key = generate(sealer).await?;
    let now = now_millis();
    let mut tx = db.pool().begin().await?;
    sqlx::query("UPDATE identity_keys SET active = NULL, retired_at = $1 WHERE active = 1")
        .bind(now)
        .execute(&mut *tx)
        .await?;
    insert_active(&mut *tx, &key).await?;
    sqlx::query("DELETE FROM identity_keys WHERE retired_at IS NOT NULL AND retired_at < $1")
        .bind(now - KEY_GRACE.as_millis() as i64)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// One row of the key table.
type KeyRow = (String, String, Vec<u8>, String, Option<i64>, Option<i64>);

/// Reads every key that still verifies and unseals the active one.
pub(crate) async fn load(db: &Db, sealer: &dyn KeySealer) -> Result<Option<KeyRing>, IdentityError> {
    let cutoff = now_millis() - KEY_GRACE.as_millis() as i64;
    let rows: Vec<KeyRow> = sqlx::query_as(
        "SELECT kid, alg, sealed_private, public_jwk, retired_at, active FROM identity_keys \
         WHERE retired_at IS NULL OR retired_at >= $1 ORDER BY created_at",
    )
    .bind(cutoff)
    .fetch_all(db.pool())
    .await?;
    let mut verifying = HashMap::new();
    let mut active = None;
    for (kid, alg, sealed, public_jwk, retired_at, is_active) in rows {
        let bad = |reason: String| IdentityError::BadStoredKey { kid: kid.clone(), reason };
        if alg != OWN_ALG {
            return Err(bad(format!("algorithm `{alg}` is not `{OWN_ALG}`")));
        }
        let jwk_value: serde_json::Value = serde_json::from_str(&public_jwk).map_err(|e| bad(e.to_string()))?;
        let x = jwk_value.get("x").and_then(|x| x.as_str()).ok_or_else(|| bad("public jwk has no `x`".into()))?;
        let key = DecodingKey::from_ed_components(x).map_err(|e| bad(e.to_string()))?;
        if is_active == Some(1) {
            let plain = sealer.open(&kid, &sealed).await.map_err(|_| IdentityError::Unseal(kid.clone()))?;
            active = Some((kid.clone(), EncodingKey::from_ed_der(&plain)));
        }
        verifying.insert(kid, VerifyingKey { key, jwk: jwk_value, retired_at });
    }
    Ok(active.map(|(active_kid, signing)| KeyRing { verifying, active_kid, signing }))
}
