//! The publishers this host trusts: their Ed25519 public keys.

use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use cap_std::ambient_authority;
use cap_std::fs::Dir;

use crate::names::is_simple_name;
use crate::signature::key_id;
use crate::PackageError;

/// One trusted key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey {
    /// The publisher id the key speaks for (the manifest's `publisher`).
    pub publisher: String,
    /// [`crate::key_id`] of the key, as `signature.json` names it.
    pub key_id: String,
    /// The raw 32-byte public key.
    pub public_key: Vec<u8>,
}

/// The trusted publisher keys: the catalog's `publishers/NAME.pub` files plus any the admin
/// adds at run time. A publisher may have several keys (rotation); a key speaks for one
/// publisher only, so one publisher's key cannot sign as another.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    keys: Vec<TrustedKey>,
}

impl TrustStore {
    /// An empty store: trusts nobody.
    pub fn new() -> TrustStore {
        TrustStore::default()
    }

    /// Reads every `NAME.pub` in `dir` (other files are ignored): `NAME` is the publisher,
    /// each non-empty line not starting with `#` a base64 public key.
    pub fn load_dir(dir: &Path) -> Result<TrustStore, PackageError> {
        let handle = Dir::open_ambient_dir(dir, ambient_authority()).map_err(|e| PackageError::io(dir.display(), e))?;
        let mut names = Vec::new();
        for entry in handle.entries().map_err(|e| PackageError::io(dir.display(), e))? {
            let entry = entry.map_err(|e| PackageError::io(dir.display(), e))?;
            if let Some(name) = entry.file_name().to_str().and_then(|n| n.strip_suffix(".pub")) {
                names.push(name.to_string());
            }
        }
        names.sort();
        let mut store = TrustStore::new();
        for publisher in names {
            let file = format!("{publisher}.pub");
            let text = handle.read_to_string(&file).map_err(|e| PackageError::io(&file, e))?;
            for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
                store.add(&publisher, line).map_err(|e| PackageError::InvalidKey(format!("`{file}`: {e}")))?;
            }
        }
        Ok(store)
    }

    /// Trusts `public_base64` for `publisher`; returns its key id. Adding a key twice is
    /// harmless; a key already trusted for another publisher is refused.
    pub fn add(&mut self, publisher: &str, public_base64: &str) -> Result<String, PackageError> {
        if !is_simple_name(publisher) {
            return Err(PackageError::InvalidKey(format!("`{publisher}` is not a publisher id")));
        }
        let public_key = STANDARD
            .decode(public_base64.trim())
            .map_err(|e| PackageError::InvalidKey(format!("public key is not base64: {e}")))?;
        if public_key.len() != 32 {
            return Err(PackageError::InvalidKey(format!(
                "an Ed25519 public key is 32 bytes, this one {}",
                public_key.len()
            )));
        }
        let id = key_id(&public_key);
        match self.keys.iter().find(|k| k.key_id == id) {
            Some(k) if k.publisher == publisher => {}
            Some(k) => {
                return Err(PackageError::InvalidKey(format!("key `{id}` is already trusted for `{}`", k.publisher)))
            }
            None => self.keys.push(TrustedKey { publisher: publisher.to_string(), key_id: id.clone(), public_key }),
        }
        Ok(id)
    }

    /// Stops trusting one key; returns whether it was there.
    pub fn remove(&mut self, publisher: &str, key_id: &str) -> bool {
        let before = self.keys.len();
        self.keys.retain(|k| !(k.publisher == publisher && k.key_id == key_id));
        self.keys.len() != before
    }

    /// Every trusted key.
    pub fn keys(&self) -> &[TrustedKey] {
        &self.keys
    }

    /// The key `key_id` if it is trusted for `publisher`.
    pub fn find(&self, publisher: &str, key_id: &str) -> Option<&TrustedKey> {
        self.keys.iter().find(|k| k.publisher == publisher && k.key_id == key_id)
    }
}
