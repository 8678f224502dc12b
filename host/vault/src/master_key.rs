//! The master key that seals every stored secret.

use std::path::Path;

use airlock_store::{sqlx, Db};
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use zeroize::Zeroizing;

use crate::VaultError;

const KEY_CHECK: &[u8] = b"airlock master key check v1";
const NONCE_LEN: usize = 24;

/// A 256-bit key for XChaCha20-Poly1305.
pub struct MasterKey {
    cipher: XChaCha20Poly1305,
}

impl MasterKey {
    /// From base64 text (32 bytes).
    pub fn from_base64(text: &str) -> Result<MasterKey, VaultError> {
        let bytes = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|_| VaultError::MasterKey("master key is not valid base64".into()))?,
        );
        if bytes.len() != 32 {
            return Err(VaultError::MasterKey(format!("master key must be 32 bytes, got {}", bytes.len())));
        }
        let cipher = XChaCha20Poly1305::new_from_slice(&bytes).map_err(|e| VaultError::MasterKey(e.to_string()))?;
        Ok(MasterKey { cipher })
    }

    /// A key from 32 raw bytes (tenant data keys use the same cipher).
    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<MasterKey, VaultError> {
        let cipher = XChaCha20Poly1305::new_from_slice(bytes).map_err(|e| VaultError::MasterKey(e.to_string()))?;
        Ok(MasterKey { cipher })
    }

    /// `AIRLOCK_MASTER_KEY` if set, else `DIR/master.key`, created (mode 0600) on first start.
    pub fn load_or_create(data_dir: &Path) -> Result<MasterKey, VaultError> {
        if let Ok(text) = std::env::var("AIRLOCK_MASTER_KEY") {
            return Self::from_base64(&text);
        }
        let path = data_dir.join("master.key");
        let io =
            |e: std::io::Error| VaultError::MasterKey(format!("cannot use master key file `{}`: {e}", path.display()));
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::from_base64(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = Zeroizing::new([0u8; 32]);
                rand::thread_rng().fill_bytes(&mut key[..]);
                let text = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&key[..]));
                write_private(&path, text.as_bytes()).map_err(io)?;
                Self::from_base64(&text)
            }
            Err(e) => Err(io(e)),
        }
    }

    /// A 32-byte key for another purpose, derived from this one and `label` (at most 16
    /// bytes; the compile cache's MAC key): the XChaCha20 keystream under the nonce
    /// `"derive:" || label`, zero-padded, a pseudo-random function of the key no seal can
    /// reuse (seals draw random nonces). Deterministic, so it survives restarts; another
    /// label gives an unrelated key; a master-key rotation changes it.
    pub fn derive_key(&self, label: &str) -> [u8; 32] {
        let mut nonce = [0u8; NONCE_LEN];
        let tagged = format!("derive:{label}");
        let take = tagged.len().min(NONCE_LEN);
        nonce[..take].copy_from_slice(&tagged.as_bytes()[..take]);
        let nonce = XNonce::from_slice(&nonce);
        let mut out = [0u8; 32];
        // Encryption with a valid key and in-memory buffers cannot fail.
        if let Ok(stream) = self.cipher.encrypt(nonce, Payload { msg: &[0u8; 32], aad: b"" }) {
            out.copy_from_slice(&stream[..32]);
        }
        out
    }

    /// Seals `plaintext` bound to `aad` (a sealed value opens only with the same `aad`):
    /// nonce || ciphertext+tag. Other crates use it for their own secrets at rest
    /// (the identity crate's signing keys).
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let mut out = nonce.to_vec();
        // Encryption with a valid key and in-memory buffers cannot fail.
        if let Ok(ct) = self.cipher.encrypt(XNonce::from_slice(&nonce), Payload { msg: plaintext, aad }) {
            out.extend(ct);
        }
        out
    }

    /// Opens what [`MasterKey::seal`] sealed with the same `aad`; `Err` when the key, the
    /// `aad` or the bytes differ.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, ()> {
        if sealed.len() < NONCE_LEN + 16 {
            return Err(());
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        self.cipher.decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad }).map_err(|_| ())
    }

    /// The check value this key writes, proving it is the database's key.
    pub(crate) fn key_check(&self) -> Vec<u8> {
        self.seal(b"key-check", KEY_CHECK)
    }

    /// Stores a check value on first use; afterwards refuses a key that does not open it.
    pub(crate) async fn prove_against(&self, db: &Db) -> Result<(), VaultError> {
        let stored: Option<(Vec<u8>,)> =
            sqlx::query_as("SELECT key_check FROM vault_meta WHERE id = 1").fetch_optional(db.pool()).await?;
        match stored {
            Some((check,)) => match self.open(b"key-check", &check) {
                Ok(plain) if plain == KEY_CHECK => Ok(()),
                _ => Err(VaultError::MasterKey(
                    "the master key does not match the one this database was sealed with: \
                     restore the original `master.key` or `AIRLOCK_MASTER_KEY`"
                        .into(),
                )),
            },
            None => {
                sqlx::query("INSERT INTO vault_meta (id, key_check) VALUES (1, $1) ON CONFLICT (id) DO NOTHING")
                    .bind(self.seal(b"key-check", KEY_CHECK))
                    .execute(db.pool())
                    .await?;
                Ok(())
            }
        }
    }
}

/// Writes a file readable by its owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    // On disk before anyone relies on it (a rotated master key exists nowhere else).
    file.sync_all()?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
