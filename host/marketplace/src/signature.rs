//! Publisher keys, the signed payload, and `signature.json`.
//!
//! The signed payload is UTF-8 text, one item per line, each line ending in `\n`:
//!
//! ```text
//! airlock-package-v1
//! manifest.json sha256:HEX-OF-THE-MANIFEST-FILE-BYTES
//! components/NAME.wasm sha256:HEX-AS-DECLARED-IN-THE-MANIFEST   (one line per `tools[]` entry, in order)
//! ```
//!
//! The first line separates this signature from any other use of the key. The second binds
//! every byte of `manifest.json`, and through it each component's declared digest, the tuples,
//! connections and policies. The component lines repeat what the manifest declares, so the
//! payload alone says which files the publisher vouched for; a component whose bytes differ
//! from its declared digest fails the digest check (naming the component) rather than the
//! signature, and a file the manifest does not list is refused by the listing check.

use std::io::Write;
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::files::{PackageRoot, MANIFEST, MAX_MANIFEST_BYTES, SIGNATURE};
use crate::PackageError;

/// The only signature algorithm.
pub const ALG: &str = "Ed25519";
/// The payload's first line: the format and its version.
pub const PAYLOAD_DOMAIN: &str = "airlock-package-v1";

/// `signature.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureFile {
    /// Who claims to have signed; the trust store must hold `key_id` under this publisher.
    pub publisher: String,
    /// [`key_id`] of the signing key, so a publisher can rotate keys.
    pub key_id: String,
    /// Always [`ALG`].
    pub alg: String,
    /// Standard base64 of the 64-byte Ed25519 signature over [`signed_payload`].
    pub signature: String,
}

/// The exact bytes a package signature covers (see the module docs).
///
/// Takes the manifest as bytes, not parsed, because it runs before the manifest is trusted:
/// the component lines are read leniently (entries without string `file` and `sha256`, or with
/// control characters, are left out), and a manifest that is not JSON at all still yields a
/// payload (one that no publisher signed, since [`crate::build`] only signs valid manifests).
pub fn signed_payload(manifest: &[u8]) -> Vec<u8> {
    let mut out = format!("{PAYLOAD_DOMAIN}\n{MANIFEST} sha256:{}\n", hex::encode(Sha256::digest(manifest)));
    let parsed: serde_json::Value = serde_json::from_slice(manifest).unwrap_or_default();
    let tools = parsed.get("tools").and_then(serde_json::Value::as_array).cloned().unwrap_or_default();
    for tool in tools {
        let field = |k: &str| tool.get(k).and_then(serde_json::Value::as_str).map(str::to_string);
        if let (Some(file), Some(digest)) = (field("file"), field("sha256")) {
            if !file.contains(char::is_control) && !digest.contains(char::is_control) {
                out.push_str(&format!("{file} sha256:{digest}\n"));
            }
        }
    }
    out.into_bytes()
}

/// The id of a public key: `ed25519:` and the first 16 hex digits of its sha256.
pub fn key_id(public_key: &[u8]) -> String {
    let digest = hex::encode(Sha256::digest(public_key));
    format!("ed25519:{}", &digest[..16])
}

/// A publisher's private key. Debug output never shows it.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    pkcs8: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("key_id", &self.key_id()).finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh key from the system's random source.
    pub fn generate() -> Result<SigningKey, PackageError> {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| PackageError::InvalidKey("the system random source failed".into()))?;
        SigningKey::from_pkcs8(doc.as_ref())
    }

    /// From a PKCS#8 v2 document (what [`SigningKey::to_base64`] encodes).
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<SigningKey, PackageError> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8)
            .map_err(|e| PackageError::InvalidKey(format!("not an Ed25519 PKCS#8 key: {e}")))?;
        Ok(SigningKey { pair, pkcs8: Zeroizing::new(pkcs8.to_vec()) })
    }

    /// From base64 PKCS#8, the content of a private key file (surrounding whitespace ignored).
    pub fn from_base64(text: &str) -> Result<SigningKey, PackageError> {
        let bytes = Zeroizing::new(
            STANDARD.decode(text.trim()).map_err(|e| PackageError::InvalidKey(format!("not base64: {e}")))?,
        );
        SigningKey::from_pkcs8(&bytes)
    }

    /// Base64 PKCS#8: what a private key file holds.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(self.pkcs8.as_slice()))
    }

    /// Reads a private key file written by [`SigningKey::save`].
    pub fn load(path: &Path) -> Result<SigningKey, PackageError> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| PackageError::io(path.display(), e))?);
        SigningKey::from_base64(&text)
    }

    /// Writes the private key to a new file readable by its owner only (0600 on Unix);
    /// refuses to overwrite an existing file, which may be another key.
    pub fn save(&self, path: &Path) -> Result<(), PackageError> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(|e| PackageError::io(path.display(), e))?;
        let text = self.to_base64();
        file.write_all(text.as_bytes())
            .and_then(|()| file.write_all(b"\n"))
            .and_then(|()| file.sync_all())
            .map_err(|e| PackageError::io(path.display(), e))
    }

    /// The public key, standard base64: the content of `marketplace/publishers/NAME.pub`.
    pub fn public_key_base64(&self) -> String {
        STANDARD.encode(self.pair.public_key().as_ref())
    }

    /// [`key_id`] of this key's public half.
    pub fn key_id(&self) -> String {
        key_id(self.pair.public_key().as_ref())
    }

    fn sign_bytes(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }
}

/// A new publisher key and its public half in base64 (save the key with [`SigningKey::save`]).
pub fn generate_key() -> Result<(SigningKey, String), PackageError> {
    let key = SigningKey::generate()?;
    let public = key.public_key_base64();
    Ok((key, public))
}

/// Signs the package in `package_dir` as the manifest's `publisher`, writing `signature.json`.
///
/// Signs what the manifest declares; it does not read or check the components. Use
/// [`crate::build`] to make a package from an author's folder: it computes the digests and
/// validates the manifest before signing.
pub fn sign(package_dir: &Path, key: &SigningKey) -> Result<SignatureFile, PackageError> {
    let root = PackageRoot::open(package_dir)?;
    let manifest = root.read(MANIFEST, MAX_MANIFEST_BYTES)?;
    let publisher = serde_json::from_slice::<serde_json::Value>(&manifest)
        .ok()
        .and_then(|v| v.get("publisher").and_then(serde_json::Value::as_str).map(str::to_string))
        .ok_or_else(|| PackageError::Build("the manifest has no string `publisher` to sign as".into()))?;
    let signature = SignatureFile {
        publisher,
        key_id: key.key_id(),
        alg: ALG.to_string(),
        signature: STANDARD.encode(key.sign_bytes(&signed_payload(&manifest))),
    };
    let mut json = serde_json::to_vec_pretty(&signature).map_err(|e| PackageError::Build(e.to_string()))?;
    json.push(b'\n');
    root.write(SIGNATURE, &json)?;
    Ok(signature)
}

/// Whether `signature` (raw bytes) is `public_key`'s signature over `payload`.
pub(crate) fn verify_signature(public_key: &[u8], payload: &[u8], signature: &[u8]) -> bool {
    UnparsedPublicKey::new(&ED25519, public_key).verify(payload, signature).is_ok()
}
