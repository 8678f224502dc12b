//! Compiled machine code cached on disk, so a restart does not recompile.
//!
//! Entries are keyed by the component's sha256 and the engine's compatibility
//! hash (wasmtime version and every setting that changes code generation), so
//! a stale entry is never loaded; it is simply not found.
//!
//! An entry is native code the host will run: whoever can write the cache directory could
//! otherwise have it run anything. Each entry carries an HMAC-SHA256 (in `NAME.mac`) under a
//! key derived from the master key; an entry whose MAC is missing or wrong is not loaded, it
//! is compiled again from the component's bytes (which the database holds) and rewritten.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use wasmtime::component::Component;
use wasmtime::Engine;

use crate::AddError;

/// Where a component's machine code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Compiled,
    Cache,
}

/// Where compiled code is cached, and the key its entries are authenticated with.
#[derive(Clone)]
pub struct CompileCache {
    pub dir: PathBuf,
    pub key: [u8; 32],
}

impl std::fmt::Debug for CompileCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompileCache").field("dir", &self.dir).finish_non_exhaustive()
    }
}

/// HMAC-SHA256 (RFC 2104) of `data` under `key`.
fn mac(key: &[u8; 32], data: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(key);
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(data).finalize();
    Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize().into()
}

/// The entry at `path` if its MAC verifies; `None` (with a warning) when it does not.
fn authentic(cache: &CompileCache, path: &Path) -> Option<Vec<u8>> {
    let bytes = std::fs::read(path).ok()?;
    let stored = std::fs::read_to_string(path.with_extension("mac")).unwrap_or_default();
    let expected = hex::encode(mac(&cache.key, &bytes));
    // Constant time is not needed against a local file, but costs nothing.
    let same = stored.trim().len() == expected.len()
        && stored.trim().bytes().zip(expected.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
    if !same {
        tracing::warn!(
            "compile cache entry {} fails its MAC (tampered, or not written by this host): recompiling",
            path.display()
        );
        return None;
    }
    Some(bytes)
}

pub(crate) fn load_or_compile(
    engine: &Engine,
    cache: Option<&CompileCache>,
    sha256: &str,
    wasm: &[u8],
) -> Result<(Component, Source), AddError> {
    let Some(cache) = cache else {
        return Component::new(engine, wasm)
            .map(|c| (c, Source::Compiled))
            .map_err(|e| AddError::Invalid(format!("{e:#}")));
    };
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    let path = cache.dir.join(format!("{sha256}-{:016x}.cwasm", h.finish()));
    if let Some(bytes) = path.exists().then(|| authentic(cache, &path)).flatten() {
        // SAFETY: the bytes carry this host's MAC: `precompile_component` of an engine with
        // the same compatibility hash wrote them, for the component with this sha256.
        #[allow(unsafe_code)]
        match unsafe { Component::deserialize(engine, &bytes) } {
            Ok(c) => return Ok((c, Source::Cache)),
            Err(e) => tracing::warn!("ignoring unreadable cache entry {}: {e:#}", path.display()),
        }
    }
    let compiled = engine.precompile_component(wasm).map_err(|e| AddError::Invalid(format!("{e:#}")))?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let written = write_private(&tmp, &compiled)
        .and_then(|_| write_private(&path.with_extension("mac"), hex::encode(mac(&cache.key, &compiled)).as_bytes()))
        .and_then(|_| std::fs::rename(&tmp, &path));
    if written.is_err() {
        tracing::warn!("could not write compile cache entry {}", path.display());
    }
    // SAFETY: `compiled` was produced just now by this engine.
    #[allow(unsafe_code)]
    unsafe { Component::deserialize(engine, &compiled) }
        .map(|c| (c, Source::Compiled))
        .map_err(|e| AddError::Invalid(format!("{e:#}")))
}

/// Writes `bytes` to `path`, readable by the owner only.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn hmac_sha256_matches_rfc_4231_case_2_shape() {
        // RFC 4231 test case 2 uses a 4-byte key; padded with zeros to 32 bytes it is the same
        // HMAC (keys shorter than the block are zero-padded).
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        assert_eq!(
            hex::encode(super::mac(&key, b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
