//! The marketplace on a host: the catalog it ships, the publishers it trusts, and install,
//! upgrade and uninstall of agent packages into a tenant.
//!
//! The package format, signatures and verification are the `airlock-marketplace` crate's;
//! this module provisions what a verified package declares, through the engines' own
//! transaction-taking functions, so that everything of an agent lands in one database
//! transaction (all or nothing) and leaves in one:
//!
//! | what | engine |
//! |---|---|
//! | identity (client credentials: the agent's name and a secret stored as its sha256) | [`crate::agents`] |
//! | tuples, and the model fragment merged into the tenant's model | `airlock-rebac` |
//! | connection slots `AGENT/NAME`, the credentials filled into them | `airlock-vault` |
//! | approval policies, the entry policy | `airlock-approvals` |
//! | components, compiled before the transaction, one registry per tenant | [`Installed`] |
//!
//! - [`catalog`]: the agents compiled into this binary (`marketplace/*/manifest.json` and the
//!   components built from `plugins/`), packaged and signed at first use;
//! - [`trust`]: publisher keys (shipped in `marketplace/publishers/`, added by an admin);
//! - [`install`]: install and uninstall;
//! - [`upgrade`]: what an upgrade changes, and applying it once widening is consented to;
//! - [`installed`]: the per-tenant registry of installed components the gate runs.

pub mod catalog;
mod error;
pub mod install;
mod installed;
mod merge;
pub mod trust;
pub mod upgrade;

pub use error::InstallError;
pub use install::{
    ConnectionSlot, InstallOptions, InstallReport, InstallStep, InstalledAgent, PackageSource, Progress,
    UninstallReport,
};
pub use installed::Installed;
pub use upgrade::{PermissionDiff, UpgradeReport};
