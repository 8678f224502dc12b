//! Marketplace packages: the format, signing, and verification before install.
//!
//! A package is a directory (or a tar of one, for transport) holding `manifest.json`,
//! `components/NAME.wasm` and `signature.json`. The manifest says what the agent is and
//! exactly what it needs: its components (pinned by sha256), the tuples, connection slots,
//! approval policies and limits install provisions. The publisher signs it with Ed25519; the
//! host trusts a list of publisher keys ([`TrustStore`]).
//!
//! [`verify`] is the one way to get a [`VerifiedPackage`]: it only reads, through a `cap-std`
//! handle on the package root, and refuses with an error naming the failed check. An
//! installer takes the verified package and provisions [`Manifest::provisioning`]. Checking
//! component imports needs a wasm engine, which this domain crate does not have: the caller
//! passes the check in ([`ImportCheck`]).
//!
//! See `marketplace/README.md` for the format, the signed payload and the checks in order.

mod archive;
mod error;
mod files;
mod manifest;
pub mod model;
pub mod names;
mod publish;
mod sanity;
mod signature;
mod trust;
mod verify;

pub use archive::{pack, unpack, verify_archive, UnpackedPackage, MAX_ARCHIVE_BYTES, MAX_ARCHIVE_ENTRIES};
pub use error::{PackageError, Violation};
pub use files::{COMPONENTS, MANIFEST, MAX_COMPONENT_BYTES, MAX_MANIFEST_BYTES, MAX_SIGNATURE_BYTES, SIGNATURE};
pub use manifest::{
    ApprovalPolicy, ConnectionKind, ConnectionSlot, EntryApproval, Limits, Manifest, OAuthSlot, PolicyGrant,
    Provisioning, ToolComponent, TupleTemplate, AGENT_PLACEHOLDER, ENTRY_ACTION, TENANT_PLACEHOLDER,
};
pub use publish::build;
pub use sanity::{check_host, HostCaps, Stage, MAX_TTL_SECONDS};
pub use signature::{generate_key, key_id, sign, signed_payload, SignatureFile, SigningKey, ALG, PAYLOAD_DOMAIN};
pub use trust::{TrustStore, TrustedKey};
pub use verify::{verify, verify_with, ImportCheck, VerifiedComponent, VerifiedPackage};
