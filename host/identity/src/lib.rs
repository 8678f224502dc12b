//! Agent identity: short-lived signed JWTs that agents present, delegation from users to agents
//! (RFC 8693 token exchange with an `act` chain), and tokens from external OIDC issuers.
//!
//! The domain half only: `host/server` exposes it over HTTP. Handlers stay thin because every
//! operation here takes plain strings and returns either a serializable [`IssuedToken`], a
//! [`Verified`] identity, or an error enum whose variants map one-to-one to OAuth errors.
//!
//! Keys and external-issuer configuration live in the shared database (migration 0007), so
//! several hosts on one PostgreSQL database issue and verify each other's tokens.

mod error;
mod exchange;
mod external;
mod issue;
mod jwt;
mod keys;
mod oidc;
mod sealer;
mod secret;
mod verify;

use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock_store::Db;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

pub use error::{ExchangeError, IdentityError, TokenError};
pub use exchange::Delegation;
pub use external::{jwks_signing_keys, ExternalIssuer, SubjectMapping};
pub use jwt::LEEWAY_SECS;
pub use keys::KEY_GRACE;
pub use oidc::IdToken;
pub use sealer::KeySealer;
pub use secret::client_secret_matches;

/// Lifetime of a token when the caller asks for none: short, so a leaked token is soon worthless.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10 * 60);
/// The longest lifetime any token gets, whatever is asked; the key grace period is derived from it.
pub const MAX_TTL: Duration = Duration::from_secs(60 * 60);
/// The deepest delegation chain accepted or produced (actors in `act`), against runaway re-delegation.
pub const MAX_CHAIN: usize = 8;

/// RFC 8693 `grant_type` for token exchange, for the HTTP handler to match on.
pub const GRANT_TYPE_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 8693 token type of an OAuth access token (what this crate issues and accepts).
pub const TOKEN_TYPE_ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
/// RFC 8693 token type of a JWT (also accepted for subject and actor tokens: ours are JWTs).
pub const TOKEN_TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

/// A token as the token endpoint returns it (RFC 6749 section 5.1; RFC 8693 section 2.2.1 adds
/// `issued_token_type`): serialize it as the response body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedToken {
    /// The signed JWT.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until it expires.
    pub expires_in: u64,
    /// Set on token-exchange responses, where RFC 8693 requires it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_token_type: Option<String>,
}

/// Who a verified token stands for: what the server needs to authorize a call and to audit it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verified {
    /// The tenant the token belongs to (from the `tenant` claim, or the external issuer's tenant).
    pub tenant: String,
    /// The `sub`: `agent:NAME` or `user:NAME`.
    pub subject: String,
    /// The agent presenting the token: the subject itself for an agent token, the outermost actor
    /// for a delegated token; the server checks this agent still exists (revocation).
    pub agent: Option<String>,
    /// The user on whose behalf the call runs: set for user tokens and delegated tokens.
    pub user: Option<String>,
    /// The delegation chain (`act`), outermost (current) actor first, e.g. `["agent:b", "agent:a"]`.
    pub act: Vec<String>,
    /// The token id, for audit and replay tracking (external tokens may have none).
    pub jti: Option<String>,
    /// Expiry, unix seconds.
    pub exp: i64,
    /// Issued-at, unix seconds (so the server can refuse tokens older than an agent's current
    /// incarnation: revoke and re-create must not revive old tokens).
    pub iat: Option<i64>,
    /// Issued-at in unix milliseconds, in the tokens this host signs: compared with an agent's
    /// creation time, which has milliseconds too (`iat` alone cannot tell apart a token of the
    /// agent revoked a moment ago from one of the agent re-created in the same second).
    pub iat_ms: Option<i64>,
    /// Who issued it: this host's issuer, or the external issuer's.
    pub issuer: String,
    /// The OAuth grant (a person's consent to an MCP client) the token was issued under, in
    /// the tokens this host signs for one: the server refuses the token once the grant is
    /// revoked, so revoking an application ends its access at once, not when the token expires.
    pub grant: Option<String>,
}

/// The identity service of one host: its signing keys, issuing, verifying and exchanging.
pub struct Identity {
    db: Db,
    sealer: Arc<dyn KeySealer>,
    issuer: String,
    ring: RwLock<Arc<keys::KeyRing>>,
    /// When the ring was last read from the database.
    ring_loaded: Mutex<Instant>,
    external: external::JwksCache,
}

impl Identity {
    /// Opens the identity service, creating the first signing key if the database has none.
    /// `issuer` is this host's `iss` (its public base URL), the same on every host sharing the database.
    /// `sealer` keeps the private keys sealed at rest (the host passes its vault).
    pub async fn open(db: Db, sealer: Arc<dyn KeySealer>, issuer: String) -> Result<Identity, IdentityError> {
        if issuer.is_empty() {
            return Err(IdentityError::Empty { field: "issuer" });
        }
        keys::ensure_active(&db, sealer.as_ref()).await?;
        let ring = keys::load(&db, sealer.as_ref()).await?.ok_or(IdentityError::NoActiveKey)?;
        Ok(Identity {
            db,
            sealer,
            issuer,
            ring: RwLock::new(Arc::new(ring)),
            ring_loaded: Mutex::new(Instant::now()),
            external: external::JwksCache::new()?,
        })
    }

    /// This host's issuer (`iss` of every token it signs).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The kid of the key that signs new tokens.
    pub fn active_kid(&self) -> String {
        self.ring.read().active_kid.clone()
    }

    /// Makes a new active signing key; the previous one keeps verifying for [`KEY_GRACE`].
    /// Returns the new active kid (if another host rotated at the same moment, its key).
    pub async fn rotate_key(&self) -> Result<String, IdentityError> {
        keys::rotate(&self.db, self.sealer.as_ref()).await?;
        self.reload().await?;
        Ok(self.active_kid())
    }

    /// The JSON Web Key Set of every key that verifies right now (serve it at `/.well-known/jwks.json`).
    pub async fn jwks(&self) -> Result<serde_json::Value, IdentityError> {
        self.refresh_if_stale().await?;
        let now = airlock_store::now_millis();
        let ring = self.ring.read().clone();
        let mut keys: Vec<(&String, &keys::VerifyingKey)> =
            ring.verifying.iter().filter(|(_, k)| k.verifies_at(now)).collect();
        keys.sort_by(|a, b| a.0.cmp(b.0));
        Ok(serde_json::json!({ "keys": keys.into_iter().map(|(_, k)| k.jwk.clone()).collect::<Vec<_>>() }))
    }

    /// Re-reads the key table (another host may have rotated).
    async fn reload(&self) -> Result<(), IdentityError> {
        let ring = keys::load(&self.db, self.sealer.as_ref()).await?.ok_or(IdentityError::NoActiveKey)?;
        *self.ring.write() = Arc::new(ring);
        *self.ring_loaded.lock() = Instant::now();
        Ok(())
    }

    /// Re-reads the key table when the copy in memory is older than the refresh interval.
    async fn refresh_if_stale(&self) -> Result<(), IdentityError> {
        if self.ring_loaded.lock().elapsed() >= keys::RING_REFRESH {
            self.reload().await?;
        }
        Ok(())
    }

    /// Re-reads the key table for an unknown kid, at most once a second (a flood of made-up kids
    /// costs one query a second, not one per request).
    async fn reload_for_unknown_kid(&self) -> Result<bool, IdentityError> {
        if self.ring_loaded.lock().elapsed() < Duration::from_secs(1) {
            return Ok(false);
        }
        self.reload().await?;
        Ok(true)
    }
}
