//! Shared fixtures: hand-written components, an import checker, a signed package.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use airlock_marketplace::{build, sign, SigningKey, TrustStore};
use sha2::{Digest, Sha256};

/// The catalog's offboarding manifest (the source form `build` reads).
pub const CATALOG_MANIFEST: &str = include_str!("../../../../marketplace/offboarding/manifest.json");

/// What the runtime allows (host/runtime/src/imports.rs), by prefix.
const ALLOWED: &[&str] = &[
    "airlock:tool/types@0.1.0",
    "airlock:tool/authz@0.1.0",
    "airlock:tool/approval@0.1.0",
    "airlock:tool/vault@0.1.0",
    "wasi:cli/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:filesystem/",
];

/// A real (tiny) component importing two allowed interfaces.
pub fn good_component() -> Vec<u8> {
    wat::parse_str(
        r#"(component
            (import "airlock:tool/authz@0.1.0" (instance))
            (import "wasi:clocks/monotonic-clock@0.2.0" (instance)))"#,
    )
    .unwrap()
}

/// A component that asks for outbound HTTP, which the sandbox never links.
pub fn http_component() -> Vec<u8> {
    wat::parse_str(
        r#"(component
            (import "airlock:tool/vault@0.1.0" (instance))
            (import "wasi:http/outgoing-handler@0.2.0" (instance)))"#,
    )
    .unwrap()
}

/// The tests' import check: parses the component with wasmparser and refuses any top-level
/// import outside the allow-list, naming each (like the runtime's check, without wasmtime).
pub fn check_imports(_component: &str, bytes: &[u8]) -> Result<(), String> {
    let mut depth = 0usize;
    let mut forbidden = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        match payload.map_err(|e| format!("not a component: {e}"))? {
            wasmparser::Payload::Version { encoding, .. } => {
                if depth == 0 && encoding != wasmparser::Encoding::Component {
                    return Err("a core module, not a component".into());
                }
                depth += 1;
            }
            wasmparser::Payload::End(_) => depth -= 1,
            wasmparser::Payload::ComponentImportSection(reader) if depth == 1 => {
                for import in reader {
                    let name = import.map_err(|e| e.to_string())?.name.name;
                    if !ALLOWED.iter().any(|a| name.starts_with(a)) {
                        forbidden.push(format!("`{name}`"));
                    }
                }
            }
            _ => {}
        }
    }
    if forbidden.is_empty() {
        Ok(())
    } else {
        Err(forbidden.join(", "))
    }
}

pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A temp dir with a trusted publisher key (`airlock`) and helpers to make packages.
pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub key: SigningKey,
    pub trust: TrustStore,
}

impl Fixture {
    pub fn new() -> Fixture {
        let (key, public) = airlock_marketplace::generate_key().unwrap();
        let mut trust = TrustStore::new();
        trust.add("airlock", &public).unwrap();
        Fixture { tmp: tempfile::tempdir().unwrap(), key, trust }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    /// The catalog manifest, built with `component` as its only component, signed by the
    /// trusted key, into `NAME/`.
    pub fn package_with(&self, name: &str, manifest: &str, component: &[u8]) -> PathBuf {
        let folder = self.path(&format!("{name}-src"));
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("manifest.json"), manifest).unwrap();
        let wasm_dir = self.path(&format!("{name}-wasm"));
        std::fs::create_dir_all(&wasm_dir).unwrap();
        std::fs::write(wasm_dir.join("offboarding.wasm"), component).unwrap();
        build(&folder, &self.path(name), &self.key, &[&wasm_dir]).unwrap()
    }

    /// The good package: the catalog manifest and a component with allowed imports.
    pub fn good_package(&self, name: &str) -> PathBuf {
        self.package_with(name, CATALOG_MANIFEST, &good_component())
    }

    /// A package directory with `manifest` written as is and signed (no checks: for crafting
    /// packages `build` would refuse).
    pub fn crafted(&self, name: &str, manifest: &serde_json::Value, key: &SigningKey) -> PathBuf {
        let dir = self.path(name);
        std::fs::create_dir_all(dir.join("components")).unwrap();
        std::fs::write(dir.join("manifest.json"), serde_json::to_vec_pretty(manifest).unwrap()).unwrap();
        sign(&dir, key).unwrap();
        dir
    }
}

/// The built package's manifest as JSON, to derive crafted variants from.
pub fn manifest_json(package: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(package.join("manifest.json")).unwrap()).unwrap()
}

/// `verify` with the tests' import check, returning the error message.
pub fn refusal(package: &Path, trust: &TrustStore) -> String {
    match airlock_marketplace::verify(package, trust, &check_imports) {
        Ok(_) => panic!("`{}` verified", package.display()),
        Err(e) => e.to_string(),
    }
}
