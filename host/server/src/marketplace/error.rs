//! Why an install, upgrade or uninstall did not happen. Each message says what to do next.

use airlock_marketplace::PackageError;

use super::upgrade::PermissionDiff;

/// Failures of marketplace operations. Nothing was written when one is returned (install and
/// upgrade roll their transaction back; uninstall's is one transaction too).
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// Verification refused the package: the message names the failed check.
    #[error("package refused: {0}")]
    Package(#[from] PackageError),
    #[error("no agent `{0}` in the catalog: `airlock catalog` lists the agents this host ships")]
    NotInCatalog(String),
    #[error("agent `{agent}` is already installed at version {version}: to move to this package, run `airlock upgrade` (it shows what changes first)")]
    UpgradeNeeded { agent: String, version: String },
    #[error("agent `{0}` is installed but an admin revoked it since: uninstall it (`airlock uninstall {0}`), then install again")]
    Revoked(String),
    #[error("agent `{0}` is not installed in this tenant (from the marketplace): nothing to do")]
    NotInstalled(String),
    #[error("an agent `{0}` already exists in this tenant and was not installed from the marketplace: revoke it first (`airlock agent revoke {0}`) or install into another tenant")]
    AgentExists(String),
    #[error("component `{component}` is already provided {by}: a tenant runs one component of a name")]
    ComponentTaken { component: String, by: String },
    #[error("the package's model fragment does not fit the tenant's model: {0}")]
    Model(String),
    #[error("component `{component}` cannot be compiled: {reason}")]
    Compile { component: String, reason: String },
    #[error("the upgrade widens the agent's permissions; review the changes and consent (`airlock upgrade --yes`, or `\"consent\": true`)")]
    ConsentRequired(Box<PermissionDiff>),
    #[error("the package cannot be provisioned: {0}")]
    Provision(String),
    #[error("connection `{connection}` of the package may send its credential to `{host}`, an internal address (loopback, a private network, cloud metadata): install with `allow_private_network={connection}` only if the admin means this agent to reach it")]
    InternalHost { connection: String, host: String },
    /// A fault injected by a test ([`super::InstallOptions::fail_after`]).
    #[error("install stopped after step `{0}` (injected fault)")]
    Injected(&'static str),
    #[error("database error (nothing was written): {0}")]
    Store(#[from] airlock_store::sqlx::Error),
    #[error("cannot read the package: {0}")]
    Io(String),
}

impl InstallError {
    /// A stable code for API errors.
    pub fn code(&self) -> &'static str {
        match self {
            InstallError::Package(e) => e.check(),
            InstallError::NotInCatalog(_) => "not_in_catalog",
            InstallError::UpgradeNeeded { .. } => "upgrade_needed",
            InstallError::NotInstalled(_) => "not_installed",
            InstallError::Revoked(_) => "agent_revoked",
            InstallError::AgentExists(_) => "agent_exists",
            InstallError::ComponentTaken { .. } => "component_taken",
            InstallError::Model(_) => "model_conflict",
            InstallError::Compile { .. } => "invalid_component",
            InstallError::ConsentRequired(_) => "consent_required",
            InstallError::Provision(_) => "invalid_package",
            InstallError::InternalHost { .. } => "internal_host",
            InstallError::Injected(_) => "injected_fault",
            InstallError::Store(_) => "store_unavailable",
            InstallError::Io(_) => "bad_package",
        }
    }
}

/// An engine's failure during a marketplace operation: its database failing is
/// [`InstallError::Store`] (a 503, "retry"), anything else is the package not fitting.
macro_rules! from_engine {
    ($($error:ty),*) => {$(
        impl From<$error> for InstallError {
            fn from(e: $error) -> InstallError {
                type Engine = $error;
                match e {
                    Engine::Store(db) => InstallError::Store(db),
                    other => InstallError::Provision(other.to_string()),
                }
            }
        }
    )*};
}

from_engine!(
    airlock_rebac::RebacError,
    airlock_vault::VaultError,
    airlock_approvals::PolicyError,
    airlock_approvals::ApprovalError,
    super::trust::TrustError
);
