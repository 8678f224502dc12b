//! Issuing the host's own tokens: agent tokens, user tokens (for tests, the CLI and the console)
//! and, through [`crate::exchange`], delegated tokens. Every token is signed by the active key.

use std::time::Duration;

use jsonwebtoken::{Algorithm, Header};
use serde_json::{json, Map, Value};

use crate::error::IdentityError;
use crate::{Identity, IssuedToken, DEFAULT_TTL, MAX_TTL};

/// The `typ` of every token the host signs (RFC 9068 JWT access tokens).
const TYP: &str = "at+jwt";

/// The lifetime to grant: the default when none is asked, never more than [`MAX_TTL`].
pub(crate) fn lifetime(requested: Option<Duration>) -> Result<Duration, IdentityError> {
    match requested {
        None => Ok(DEFAULT_TTL),
        Some(d) if d.as_secs() == 0 => Err(IdentityError::ZeroLifetime),
        Some(d) => Ok(d.min(MAX_TTL)),
    }
}

/// Unix seconds now.
pub(crate) fn now_secs() -> i64 {
    airlock_store::now_millis() / 1000
}

/// Refuses an empty required input, naming the field.
fn non_empty(field: &'static str, value: &str) -> Result<(), IdentityError> {
    if value.is_empty() {
        return Err(IdentityError::Empty { field });
    }
    Ok(())
}

impl Identity {
    /// Issues a token an agent presents as its bearer credential (after authenticating with its
    /// client secret): `sub` is `agent:NAME`, with `tenant` and `agent` claims. `ttl` defaults
    /// to [`DEFAULT_TTL`] and is capped at [`MAX_TTL`].
    pub async fn issue_agent_token(
        &self,
        tenant: &str,
        agent: &str,
        audience: &str,
        ttl: Option<Duration>,
    ) -> Result<IssuedToken, IdentityError> {
        non_empty("tenant", tenant)?;
        non_empty("agent", agent)?;
        let mut extra = Map::new();
        extra.insert("agent".into(), Value::String(agent.to_string()));
        self.issue(tenant, &format!("agent:{agent}"), audience, lifetime(ttl)?, extra).await
    }

    /// Issues a token standing for a user, the subject token of a delegation: for tests, the CLI
    /// and the console (users of external identity providers bring their provider's token instead).
    pub async fn issue_user_token(
        &self,
        tenant: &str,
        user: &str,
        audience: &str,
        ttl: Option<Duration>,
    ) -> Result<IssuedToken, IdentityError> {
        non_empty("tenant", tenant)?;
        non_empty("user", user)?;
        let mut extra = Map::new();
        extra.insert("user".into(), Value::String(user.to_string()));
        self.issue(tenant, &format!("user:{user}"), audience, lifetime(ttl)?, extra).await
    }

    /// Signs the standard claims plus `extra`, valid from now for `ttl`.
    pub(crate) async fn issue(
        &self,
        tenant: &str,
        subject: &str,
        audience: &str,
        ttl: Duration,
        extra: Map<String, Value>,
    ) -> Result<IssuedToken, IdentityError> {
        non_empty("audience", audience)?;
        let now_ms = airlock_store::now_millis();
        let now = now_ms / 1000;
        let mut claims = json!({
            "iss": self.issuer,
            "sub": subject,
            "aud": audience,
            "iat": now,
            // `iat` has second precision: an agent revoked and re-created within the same
            // second would otherwise look older than its old tokens (see `Verified::iat_ms`).
            "iat_ms": now_ms,
            "nbf": now,
            "exp": now + ttl.as_secs() as i64,
            "jti": uuid::Uuid::new_v4().to_string(),
            "tenant": tenant,
        });
        if let Some(map) = claims.as_object_mut() {
            map.extend(extra);
        }
        let access_token = self.sign(&claims).await?;
        Ok(IssuedToken {
            access_token,
            token_type: "Bearer".into(),
            expires_in: ttl.as_secs(),
            issued_token_type: None,
        })
    }

    /// Signs `claims` as they are with the active key.
    async fn sign(&self, claims: &Value) -> Result<String, IdentityError> {
        self.refresh_if_stale().await?;
        let ring = self.ring.read().clone();
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(ring.active_kid.clone());
        header.typ = Some(TYP.into());
        jsonwebtoken::encode(&header, claims, &ring.signing).map_err(|e| IdentityError::Signing(e.to_string()))
    }

    /// Signs arbitrary claims with the active key, so tests can make expired, not-yet-valid or
    /// otherwise odd tokens that only this key could have signed.
    #[cfg(feature = "testing")]
    pub async fn sign_claims_for_tests(&self, claims: &Value) -> Result<String, IdentityError> {
        self.sign(claims).await
    }
}
