//! The host's signed audit checkpoints ([`airlock_audit::checkpoint`]): the signing key, the
//! schedule, and the witness file.
//!
//! - The key (Ed25519) is made on first start and kept in `audit_checkpoint_keys`: the public
//!   half in plain, the private half sealed by the vault under a data key of the reserved owner
//!   [`OWNER`] (itself sealed by the master key, so a master-key rotation re-seals it with
//!   everything else), bound to its purpose and kid. Hosts sharing a database share the key.
//! - Every [`Config::checkpoint_every`](crate::Config) (60 s), each chain whose head moved is
//!   signed; `POST /v1/audit/checkpoints` signs one on demand.
//! - With a witness file ([`Config::audit_witness`](crate::Config), `--audit-witness`), every
//!   new checkpoint is appended to it as a JSON line, outside the database: a copy a database
//!   administrator cannot delete along with the rows (`airlock audit verify --witness FILE`).
//!
//! A host remembers the newest checkpoint of each chain it signed or saw, and refuses to sign
//! a head that does not extend it (the database's rows deleted, the chain rewritten): that
//! refusal is logged as an error at each round until someone looks.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use airlock_audit::checkpoint::{self, CheckpointError, PublicKey, Signed, StoredKey};
use airlock_audit::{AuditLog, Checkpoint, CheckpointKey};
use airlock_store::Db;
use airlock_vault::Vault;
use parking_lot::Mutex;
use zeroize::Zeroizing;

/// The vault owner under whose data key the checkpoint key is sealed (no tenant name has a `:`).
pub const OWNER: &str = "airlock:audit";

/// The vault name (associated data) of the sealed key `kid`: its purpose and id.
pub fn sealed_name(kid: &str) -> String {
    format!("checkpoint-key:{kid}")
}

/// How often chains are signed, by default.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(60);

/// The checkpoint key, the chains' newest checkpoints this host knows, and the schedule.
pub struct Checkpoints {
    inner: Arc<Inner>,
    task: Option<tokio::task::JoinHandle<()>>,
}

struct Inner {
    key: CheckpointKey,
    audit: AuditLog,
    witness: Option<PathBuf>,
    /// The newest checkpoint of each chain this host signed or found.
    known: Mutex<HashMap<String, Checkpoint>>,
    /// One append to the witness at a time.
    witness_lock: tokio::sync::Mutex<()>,
}

impl Drop for Checkpoints {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl Checkpoints {
    /// Opens (creating on first start) the key and starts signing every `every` (never when zero).
    pub async fn open(
        db: &Db,
        vault: &Vault,
        audit: AuditLog,
        witness: Option<PathBuf>,
        every: Duration,
    ) -> Result<Checkpoints, String> {
        let key = open_key(db, vault).await?;
        let inner =
            Arc::new(Inner { key, audit, witness, known: Mutex::default(), witness_lock: tokio::sync::Mutex::new(()) });
        let task = (!every.is_zero()).then(|| {
            let inner = inner.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    inner.sign_all().await;
                }
            })
        });
        Ok(Checkpoints { inner, task })
    }

    /// The public key that verifies the checkpoints.
    pub fn public_key(&self) -> &PublicKey {
        self.inner.key.public_key()
    }

    /// Signs `chain`'s head now (unless its newest checkpoint covers it already).
    pub async fn sign(&self, chain: &str) -> Result<Signed, CheckpointError> {
        self.inner.sign(chain).await
    }

    /// Signs every chain whose head moved: each chain's result.
    pub async fn sign_all(&self) -> Vec<(String, Result<Signed, CheckpointError>)> {
        self.inner.sign_all().await
    }
}

impl Inner {
    async fn sign(&self, chain: &str) -> Result<Signed, CheckpointError> {
        let known = self.known.lock().get(chain).cloned();
        let signed = self.audit.sign_head(&self.key, chain, known.as_ref()).await;
        match &signed {
            Ok(s) => {
                if let Some(c) = s.checkpoint() {
                    let mut known = self.known.lock();
                    if known.get(chain).is_none_or(|k| k.seq < c.seq) {
                        known.insert(chain.to_string(), c.clone());
                    }
                }
                if let Signed::New(c) = s {
                    self.witness(c).await;
                }
            }
            Err(e @ CheckpointError::Tampered { .. }) => tracing::error!("audit checkpoint refused: {e}"),
            Err(e) => tracing::warn!("audit checkpoint of `{chain}` failed: {e}"),
        }
        signed
    }

    async fn sign_all(&self) -> Vec<(String, Result<Signed, CheckpointError>)> {
        let chains = match self.audit.unsigned_chains().await {
            Ok(chains) => chains,
            Err(e) => {
                tracing::warn!("audit checkpoints: cannot list the chains: {e}");
                return Vec::new();
            }
        };
        let mut out = Vec::with_capacity(chains.len());
        for chain in chains {
            let signed = self.sign(&chain).await;
            out.push((chain, signed));
        }
        out
    }

    /// Appends a new checkpoint to the witness file, if one is configured.
    async fn witness(&self, checkpoint: &Checkpoint) {
        let Some(path) = self.witness.clone() else { return };
        let Ok(mut line) = serde_json::to_vec(checkpoint) else { return };
        line.push(b'\n');
        let _one_at_a_time = self.witness_lock.lock().await;
        let shown = path.display().to_string();
        let appended = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
            file.write_all(&line)?;
            file.sync_data()
        })
        .await;
        match appended {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("cannot append the audit checkpoint to the witness `{shown}`: {e}"),
            Err(e) => tracing::error!("cannot append the audit checkpoint to the witness `{shown}`: {e}"),
        }
    }
}

/// The stored key, opened; made, sealed and stored first when there is none.
async fn open_key(db: &Db, vault: &Vault) -> Result<CheckpointKey, String> {
    if checkpoint::stored_key(db).await.map_err(|e| e.to_string())?.is_none() {
        let (key, pkcs8) = CheckpointKey::generate()?;
        let pkcs8 = Zeroizing::new(pkcs8);
        let kid = key.kid();
        let sealed_private =
            vault.seal_host_secret(OWNER, &sealed_name(&kid), &pkcs8).await.map_err(|e| e.to_string())?;
        let stored = StoredKey { kid, public_key: key.public_key().to_hex(), sealed_private };
        // Another host may have stored its own first: then that one is read back below.
        checkpoint::insert_key(db, &stored).await.map_err(|e| e.to_string())?;
    }
    let stored = checkpoint::stored_key(db)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the checkpoint key was stored and is not there")?;
    let pkcs8 = vault
        .open_host_secret(OWNER, &sealed_name(&stored.kid), &stored.sealed_private)
        .await
        .map_err(|e| format!("the sealed key `{}` does not open with this master key: {e}", stored.kid))?;
    let key = CheckpointKey::from_pkcs8(&pkcs8)?;
    if key.public_key().to_hex() != stored.public_key || key.kid() != stored.kid {
        return Err(format!("the stored public key of `{}` is not the sealed key's", stored.kid));
    }
    Ok(key)
}
