//! Tenants and the people who run them: tenants as objects, API tokens for people and
//! machines, one-time invitations.
//!
//! Who may do what inside a tenant is not stored here: a member's relations on `tenant:T`
//! (`admin`, `auditor`, approver roles such as `cfo`) are tuples in that tenant's own
//! authorization engine, so the host authorizes its own API with the engine it offers. This
//! module only proves who a bearer is ([`ApiTokens`]) and which tenants exist ([`Tenants`]);
//! `api::auth` puts the two together on every request.

mod invitations;
mod lifecycle;
mod names;
mod tenants;
mod tokens;

pub use invitations::{Invitation, Invitations};
pub use lifecycle::DEFAULT_ADMIN_TOKEN_FILE;
pub use names::{validate_tenant_name, HOST_CHAIN, MAX_TENANT_NAME};
pub use tenants::{TenantInfo, Tenants};
pub use tokens::{validate_member, validate_relation, ApiTokens, NewToken, TokenInfo, TokenOwner};

/// Failures of this module's stores; each message says what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum TenancyError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("tenant store unavailable: {0}")]
    Store(#[from] airlock_store::sqlx::Error),
}

/// A random secret with a prefix that says what it is (`atk_` token, `inv_` invitation).
pub(crate) fn secret(prefix: &str) -> String {
    use rand::RngCore;
    let mut raw = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut raw);
    format!("{prefix}{}", hex::encode(raw))
}

/// The sha256 a secret is stored as.
pub(crate) fn digest(secret: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}

/// The people side of a host: its tenants, the API tokens of members and operators,
/// invitations, and members' passkeys.
pub struct People {
    pub tenants: Tenants,
    pub tokens: ApiTokens,
    pub invitations: Invitations,
    pub passkeys: crate::signin::Passkeys,
    pub sessions: crate::signin::Sessions,
    pub device_logins: crate::signin::device::DeviceLogins,
}

impl People {
    /// The people of a host reached at `public_url` (its passkeys' relying party).
    pub fn new(db: &airlock_store::Db, public_url: &str) -> Result<People, String> {
        Ok(People {
            tenants: Tenants::new(db.clone()),
            tokens: ApiTokens::new(db.clone()),
            invitations: Invitations::new(db.clone()),
            passkeys: crate::signin::Passkeys::new(db.clone(), public_url)?,
            sessions: crate::signin::Sessions::new(db.clone(), public_url),
            device_logins: crate::signin::device::DeviceLogins::new(db.clone()),
        })
    }
}
