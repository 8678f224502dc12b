//! Verification: every check a package must pass before anything of it is written anywhere.

use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::files::{PackageRoot, MANIFEST, MAX_COMPONENT_BYTES, MAX_MANIFEST_BYTES, MAX_SIGNATURE_BYTES, SIGNATURE};
use crate::manifest::Manifest;
use crate::sanity::{HostCaps, Stage};
use crate::signature::{signed_payload, verify_signature, SignatureFile, ALG};
use crate::{PackageError, TrustStore, Violation};

/// The import check the caller supplies: given a component's name and bytes, `Err` with the
/// offending imports when it asks for more than the allowed world. The server passes the
/// runtime's check; this crate knows nothing of wasm.
pub type ImportCheck<'a> = dyn Fn(&str, &[u8]) -> Result<(), String> + 'a;

/// A package that passed every check. Only [`verify`] makes one, so holding one is proof.
#[derive(Debug, Clone)]
pub struct VerifiedPackage {
    manifest: Manifest,
    manifest_bytes: Vec<u8>,
    components: Vec<VerifiedComponent>,
    publisher: String,
    key_id: String,
    digest: String,
}

/// One component of a verified package: its bytes are the ones whose digest was checked.
#[derive(Debug, Clone)]
pub struct VerifiedComponent {
    name: String,
    sha256: String,
    bytes: Vec<u8>,
}

impl VerifiedComponent {
    /// The component name (tools are `NAME.TOOL`).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Lower-case hex sha256 of [`VerifiedComponent::bytes`].
    pub fn sha256(&self) -> &str {
        &self.sha256
    }
    /// The component, ready to be compiled.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl VerifiedPackage {
    /// The parsed, policy-checked manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }
    /// The manifest exactly as signed, for an installer that stores the package.
    pub fn manifest_bytes(&self) -> &[u8] {
        &self.manifest_bytes
    }
    /// The components, in manifest order.
    pub fn components(&self) -> &[VerifiedComponent] {
        &self.components
    }
    /// The publisher whose trusted key signed the package.
    pub fn publisher(&self) -> &str {
        &self.publisher
    }
    /// The id of the key that signed it.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }
    /// Hex sha256 of the signed payload: one value per package content, so installing the
    /// same package twice can be recognised and an upgrade told apart.
    pub fn digest(&self) -> &str {
        &self.digest
    }
}

/// [`verify_with`] under the default [`HostCaps`].
pub fn verify(
    package_dir: &Path,
    trust: &TrustStore,
    check_imports: &ImportCheck<'_>,
) -> Result<VerifiedPackage, PackageError> {
    verify_with(package_dir, trust, &HostCaps::default(), check_imports)
}

/// Runs every check on the package in `package_dir`, in this order, stopping at the first
/// that fails (its error names it):
///
/// 1. `unsigned`: `signature.json` exists (`malformed signature` if it does not parse or is
///    not `Ed25519`);
/// 2. `unknown publisher`: its `key_id` is trusted for its `publisher`;
/// 3. `bad signature`: the signature verifies over [`signed_payload`] of `manifest.json`;
/// 4. `malformed manifest`: the manifest parses (known fields only);
/// 5. per component, in order: read through the package handle (`path escape`,
///    `missing file`, `too large`) and `tampered component` if its sha256 differs;
/// 6. `unlisted file`: nothing in the package but the manifest, the signature and the
///    listed components, and no symlinks;
/// 7. `invalid manifest`: policy sanity ([`Manifest::validate`]) and the manifest's
///    `publisher` is the signer;
/// 8. `forbidden imports`: `check_imports` accepts each component.
///
/// It only reads; nothing is written anywhere.
pub fn verify_with(
    package_dir: &Path,
    trust: &TrustStore,
    caps: &HostCaps,
    check_imports: &ImportCheck<'_>,
) -> Result<VerifiedPackage, PackageError> {
    let root = PackageRoot::open(package_dir)?;

    let signature = root.read_optional(SIGNATURE, MAX_SIGNATURE_BYTES)?.ok_or(PackageError::Unsigned)?;
    let signature: SignatureFile =
        serde_json::from_slice(&signature).map_err(|e| PackageError::MalformedSignature(e.to_string()))?;
    if signature.alg != ALG {
        return Err(PackageError::MalformedSignature(format!("algorithm `{}` is not `{ALG}`", signature.alg)));
    }
    let raw_signature = STANDARD
        .decode(signature.signature.trim())
        .map_err(|e| PackageError::MalformedSignature(format!("`signature` is not base64: {e}")))?;

    let key = trust.find(&signature.publisher, &signature.key_id).ok_or_else(|| PackageError::UnknownPublisher {
        publisher: signature.publisher.clone(),
        key_id: signature.key_id.clone(),
    })?;

    let manifest_bytes = root.read(MANIFEST, MAX_MANIFEST_BYTES)?;
    let payload = signed_payload(&manifest_bytes);
    if !verify_signature(&key.public_key, &payload, &raw_signature) {
        return Err(PackageError::BadSignature);
    }

    let manifest = Manifest::parse(&manifest_bytes)?;

    let mut components = Vec::with_capacity(manifest.tools.len());
    for (i, tool) in manifest.tools.iter().enumerate() {
        let bytes = root.read(&tool.file, MAX_COMPONENT_BYTES)?;
        let actual = hex::encode(Sha256::digest(&bytes));
        let Some(declared) = tool.sha256.clone() else {
            return Err(PackageError::InvalidManifest(vec![Violation {
                at: format!("tools[{i}].sha256"),
                reason: "missing: a package pins every component".into(),
            }]));
        };
        if actual != declared {
            return Err(PackageError::TamperedComponent { component: tool.component.clone(), actual, declared });
        }
        components.push(VerifiedComponent { name: tool.component.clone(), sha256: actual, bytes });
    }

    let listed: Vec<String> = manifest.tools.iter().map(|t| t.file.clone()).collect();
    root.check_listing(&listed)?;

    let mut violations = match manifest.validate(Stage::Package, caps) {
        Ok(()) => Vec::new(),
        Err(PackageError::InvalidManifest(v)) => v,
        Err(other) => return Err(other),
    };
    if manifest.publisher != key.publisher {
        violations.push(Violation {
            at: "publisher".into(),
            reason: format!("`{}` is not the signer `{}`", manifest.publisher, key.publisher),
        });
    }
    if !violations.is_empty() {
        return Err(PackageError::InvalidManifest(violations));
    }

    for c in &components {
        check_imports(&c.name, &c.bytes)
            .map_err(|reason| PackageError::ForbiddenImports { component: c.name.clone(), reason })?;
    }

    Ok(VerifiedPackage {
        manifest,
        manifest_bytes,
        components,
        publisher: key.publisher.clone(),
        key_id: key.key_id.clone(),
        digest: hex::encode(Sha256::digest(&payload)),
    })
}
