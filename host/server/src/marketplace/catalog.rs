//! The catalog this binary ships: the agents in `marketplace/`, with their components built
//! from `plugins/` and compiled in ([`crate::bundled`]).
//!
//! `airlock install NAME` installs one of these. An entry is packaged and signed when it is
//! installed, then verified like any third-party package (digests, listing, policy sanity,
//! imports). It is signed by a key made once per process whose private half never leaves
//! memory and which is trusted for publisher `airlock` *for catalog installs only*: the
//! catalog's authenticity is the binary's own, and a package arriving from elsewhere that
//! claims to be `airlock`'s still needs a trusted `airlock` key.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use airlock_marketplace::{build, Manifest, PackageError, SigningKey, TrustStore};
use serde::Serialize;

use crate::bundled;

/// One agent of the catalog.
pub struct CatalogEntry {
    pub name: &'static str,
    /// `marketplace/NAME/manifest.json`, in source form.
    pub manifest: &'static str,
    /// `(component, wasm)` for each of the manifest's `tools`.
    pub components: &'static [(&'static str, &'static [u8])],
}

/// The agents this binary ships.
pub const CATALOG: &[CatalogEntry] = &[
    CatalogEntry {
        name: "code-review",
        manifest: include_str!("../../../../marketplace/code-review/manifest.json"),
        components: &[("code-review", bundled::CODE_REVIEW)],
    },
    CatalogEntry {
        name: "contentbot",
        manifest: include_str!("../../../../marketplace/contentbot/manifest.json"),
        components: &[("contentbot", bundled::CONTENTBOT)],
    },
    CatalogEntry {
        name: "crm",
        manifest: include_str!("../../../../marketplace/crm/manifest.json"),
        components: &[("crm", bundled::CRM)],
    },
    CatalogEntry {
        name: "incident",
        manifest: include_str!("../../../../marketplace/incident/manifest.json"),
        components: &[("incident", bundled::INCIDENT)],
    },
    CatalogEntry {
        name: "offboarding",
        manifest: include_str!("../../../../marketplace/offboarding/manifest.json"),
        components: &[("offboarding", bundled::OFFBOARDING)],
    },
];

/// The publisher the catalog's entries name.
pub const CATALOG_PUBLISHER: &str = "airlock";

/// A catalog entry as listed.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Listing {
    pub name: String,
    pub version: String,
    pub publisher: String,
    pub description: String,
    pub components: Vec<String>,
    /// The tuples an install writes (`OBJECT#RELATION@USER`, `$AGENT` standing for the agent).
    pub tuples: Vec<String>,
    /// Per-call limits the package asks for (the host's defaults when absent).
    pub limits: Option<serde_json::Value>,
    pub connections: Vec<serde_json::Value>,
    pub approval_policies: Vec<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry_approval: Option<serde_json::Value>,
    /// Each tool, with what it declares it does to the world ([`described`]).
    pub tools: Vec<ListedTool>,
}

/// A tool of a catalog entry, for the admin's review before install.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ListedTool {
    /// `component.tool`.
    pub id: String,
    pub description: String,
    /// `effect`, `idempotent`, `open_world`, `declared` (see `wit/tool.wit`'s `effects`).
    pub effects: serde_json::Value,
}

/// The catalog's tools, by entry name. Only the components know what their tools declare, so
/// they are loaded once per process: compiled on first use (a few seconds; `serve` starts it
/// in the background), then from the compile cache. A component that fails to load lists no
/// tools and is logged; its install would fail with the reason.
pub async fn described(host: &crate::Airlock) -> &'static std::collections::HashMap<&'static str, Vec<ListedTool>> {
    static TOOLS: tokio::sync::OnceCell<std::collections::HashMap<&'static str, Vec<ListedTool>>> =
        tokio::sync::OnceCell::const_new();
    TOOLS
        .get_or_init(|| async {
            let mut by_entry = std::collections::HashMap::new();
            for entry in CATALOG {
                let mut tools = Vec::new();
                for (component, wasm) in entry.components {
                    match host.runtime.load(component, wasm, None).await {
                        Ok(loaded) => tools.extend(loaded.tools.iter().map(|t| ListedTool {
                            id: format!("{component}.{}", t.name),
                            description: t.description.clone(),
                            effects: crate::gate::effects_json(&t.effects),
                        })),
                        Err(e) => {
                            tracing::error!("catalog component `{component}` of `{}` does not load: {e}", entry.name)
                        }
                    }
                }
                by_entry.insert(entry.name, tools);
            }
            by_entry
        })
        .await
}

/// The entry named `name`.
pub fn entry(name: &str) -> Option<&'static CatalogEntry> {
    CATALOG.iter().find(|e| e.name == name)
}

/// Every entry, as listed (an entry whose manifest does not parse is a build defect; it is
/// listed with its error as description rather than hidden), without its tools
/// ([`described`] adds them).
pub fn listings() -> Vec<Listing> {
    CATALOG
        .iter()
        .map(|e| match Manifest::parse(e.manifest.as_bytes()) {
            Ok(m) => Listing {
                name: m.name,
                version: m.version,
                publisher: m.publisher,
                description: m.description,
                components: m.tools.iter().map(|t| t.component.clone()).collect(),
                tuples: m.tuples.iter().map(|t| format!("{}#{}@{}", t.object, t.relation, t.user)).collect(),
                limits: m.limits.as_ref().and_then(|l| serde_json::to_value(l).ok()),
                connections: m
                    .connections
                    .iter()
                    .map(|c| serde_json::json!({ "name": c.name, "kind": c.kind, "allowed_hosts": c.allowed_hosts, "description": c.description }))
                    .collect(),
                approval_policies: m
                    .approval_policies
                    .iter()
                    .map(|p| serde_json::json!({ "tool": p.tool, "action": p.action, "role": p.role, "ttl_seconds": p.ttl_seconds }))
                    .collect(),
                entry_approval: m
                    .entry_approval
                    .as_ref()
                    .map(|e| serde_json::json!({ "role": e.role, "ttl_seconds": e.ttl_seconds })),
                tools: vec![],
            },
            Err(err) => Listing {
                name: e.name.to_string(),
                version: String::new(),
                publisher: String::new(),
                description: err.to_string(),
                components: vec![],
                tuples: vec![],
                limits: None,
                connections: vec![],
                approval_policies: vec![],
                entry_approval: None,
                tools: vec![],
            },
        })
        .collect()
}

fn catalog_key() -> Result<&'static SigningKey, PackageError> {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    if let Some(k) = KEY.get() {
        return Ok(k);
    }
    let made = SigningKey::generate()?;
    Ok(KEY.get_or_init(|| made))
}

/// `base` plus the catalog's key for [`CATALOG_PUBLISHER`]: the trust a catalog install uses.
pub fn trust_for_catalog(mut base: TrustStore) -> Result<TrustStore, PackageError> {
    base.add(CATALOG_PUBLISHER, &catalog_key()?.public_key_base64())?;
    Ok(base)
}

/// Writes `entry` as a signed package under `work` and returns the package directory.
pub fn package(entry: &CatalogEntry, work: &Path) -> Result<PathBuf, PackageError> {
    let source = work.join("source");
    let components = source.join("components");
    std::fs::create_dir_all(&components).map_err(|e| PackageError::Build(format!("catalog work dir: {e}")))?;
    std::fs::write(source.join("manifest.json"), entry.manifest)
        .map_err(|e| PackageError::Build(format!("catalog manifest: {e}")))?;
    for (name, wasm) in entry.components {
        std::fs::write(components.join(format!("{name}.wasm")), wasm)
            .map_err(|e| PackageError::Build(format!("catalog component `{name}`: {e}")))?;
    }
    build(&source, &work.join("package"), catalog_key()?, &[])
}
