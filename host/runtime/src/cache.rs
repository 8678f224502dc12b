//! Compiled machine code cached on disk, so a restart does not recompile.
//!
//! Entries are keyed by the component's sha256 and the engine's compatibility
//! hash (wasmtime version and every setting that changes code generation), so
//! a stale entry is never loaded; it is simply not found.

use std::hash::{Hash, Hasher};
use std::path::Path;

use wasmtime::component::Component;
use wasmtime::Engine;

use crate::AddError;

/// Where a component's machine code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Compiled,
    Cache,
}

pub(crate) fn load_or_compile(
    engine: &Engine,
    dir: Option<&Path>,
    sha256: &str,
    wasm: &[u8],
) -> Result<(Component, Source), AddError> {
    let Some(dir) = dir else {
        return Component::new(engine, wasm)
            .map(|c| (c, Source::Compiled))
            .map_err(|e| AddError::Invalid(format!("{e:#}")));
    };
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    let path = dir.join(format!("{sha256}-{:016x}.cwasm", h.finish()));
    if path.exists() {
        // SAFETY: the file was written by `precompile_component` of an engine with the
        // same compatibility hash, into the host's own data directory, and is only
        // loaded when its name matches the sha256 of the component being added.
        #[allow(unsafe_code)]
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(c) => return Ok((c, Source::Cache)),
            Err(e) => tracing::warn!("ignoring unreadable cache entry {}: {e:#}", path.display()),
        }
    }
    let compiled = engine.precompile_component(wasm).map_err(|e| AddError::Invalid(format!("{e:#}")))?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    if std::fs::write(&tmp, &compiled).and_then(|_| std::fs::rename(&tmp, &path)).is_err() {
        tracing::warn!("could not write compile cache entry {}", path.display());
    }
    // SAFETY: `compiled` was produced just now by this engine.
    #[allow(unsafe_code)]
    unsafe { Component::deserialize(engine, &compiled) }
        .map(|c| (c, Source::Compiled))
        .map_err(|e| AddError::Invalid(format!("{e:#}")))
}
