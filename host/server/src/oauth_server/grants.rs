//! Authorization codes and the grants they start: what a person consented to, kept so the
//! client can come back for fresh tokens without asking them again.
//!
//! A code is single use and lives [`CODE_TTL_MS`]; redeeming it twice revokes the grant the
//! first redemption made (RFC 6749 4.1.2: the code was stolen). A grant's refresh token
//! rotates on each use and lives [`GRANT_TTL_MS`] from consent; presenting the one it
//! replaced revokes the grant (OAuth 2.1 4.3.1, refresh token reuse). Only sha256 digests of
//! codes and refresh tokens are stored.

use airlock_store::{now_millis, sqlx, Db};
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::tenancy::{digest, secret};

/// How long an authorization code may wait for its redemption.
pub const CODE_TTL_MS: i64 = 60 * 1000;
/// How long a consent lasts before the person is asked again.
pub const GRANT_TTL_MS: i64 = 30 * 24 * 60 * 60 * 1000;

/// What a person consented to at the authorization endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    pub client_id: String,
    pub tenant: String,
    /// `user:NAME`.
    pub member: String,
    /// The agent's name (no `agent:` prefix).
    pub agent: String,
    pub redirect_uri: String,
    /// `BASE64URL(SHA256(code_verifier))`.
    pub challenge: String,
    pub resource: String,
    pub scope: String,
}

/// A grant as its person and their admins see it.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
#[schemars(rename = "OAuthGrant")]
pub struct Grant {
    pub id: String,
    pub client_id: String,
    pub client_name: String,
    pub member: String,
    pub agent: String,
    pub resource: String,
    pub scope: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// Why a code or refresh token was refused.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error("the authorization code is unknown or expired: authorize again")]
    UnknownCode,
    #[error("the authorization code was already used: the grant it made is revoked, authorize again")]
    ReplayedCode,
    #[error("the refresh token is unknown, expired or revoked: authorize again")]
    UnknownRefresh,
    #[error("the refresh token was already used (a copy is being replayed): the grant is revoked, authorize again")]
    ReplayedRefresh,
    #[error("grant store unavailable: {0}")]
    Store(#[from] sqlx::Error),
}

/// Whether `verifier` is the PKCE verifier of `challenge` (S256); `Err` says what is wrong.
pub fn pkce_matches(verifier: &str, challenge: &str) -> Result<(), String> {
    if !(43..=128).contains(&verifier.len())
        || !verifier.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
    {
        return Err("`code_verifier` must be 43 to 128 characters of [A-Za-z0-9-._~] (RFC 7636)".into());
    }
    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    use subtle::ConstantTimeEq;
    if bool::from(computed.as_bytes().ct_eq(challenge.as_bytes())) {
        Ok(())
    } else {
        Err("the `code_verifier` does not match the code challenge (PKCE)".into())
    }
}

/// Issues a code for `consent`; returns it (shown to the client once, through the browser).
pub async fn issue_code(db: &Db, consent: &Consent) -> Result<String, sqlx::Error> {
    let code = secret("mcpc_");
    let now = now_millis();
    sqlx::query("DELETE FROM oauth_codes WHERE expires_at < $1").bind(now - GRANT_TTL_MS).execute(db.pool()).await?;
    sqlx::query(
        "INSERT INTO oauth_codes (code_hash, client_id, tenant, member, agent, redirect_uri, challenge, resource, \
         scope, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(digest(&code))
    .bind(&consent.client_id)
    .bind(&consent.tenant)
    .bind(&consent.member)
    .bind(&consent.agent)
    .bind(&consent.redirect_uri)
    .bind(&consent.challenge)
    .bind(&consent.resource)
    .bind(&consent.scope)
    .bind(now + CODE_TTL_MS)
    .execute(db.pool())
    .await?;
    Ok(code)
}

type ConsentRow = (String, String, String, String, String, String, String, String);

fn consent_of(row: ConsentRow) -> Consent {
    let (client_id, tenant, member, agent, redirect_uri, challenge, resource, scope) = row;
    Consent { client_id, tenant, member, agent, redirect_uri, challenge, resource, scope }
}

/// Takes the code (once, before it expires) and returns what it was issued for; the caller
/// checks client, redirect URI and PKCE against it. A code already taken revokes the grant
/// its first redemption made.
pub async fn redeem_code(db: &Db, code: &str) -> Result<Consent, GrantError> {
    let now = now_millis();
    let hash = digest(code);
    let row: Option<ConsentRow> = sqlx::query_as(
        "UPDATE oauth_codes SET used_at = $2 WHERE code_hash = $1 AND used_at IS NULL AND expires_at > $2 \
         RETURNING client_id, tenant, member, agent, redirect_uri, challenge, resource, scope",
    )
    .bind(&hash)
    .bind(now)
    .fetch_optional(db.pool())
    .await?;
    if let Some(row) = row {
        return Ok(consent_of(row));
    }
    let used: Option<(Option<String>,)> =
        sqlx::query_as("SELECT grant_id FROM oauth_codes WHERE code_hash = $1 AND used_at IS NOT NULL")
            .bind(&hash)
            .fetch_optional(db.pool())
            .await?;
    match used {
        Some((grant,)) => {
            if let Some(grant) = grant {
                revoke_grant(db, &grant).await?;
            }
            Err(GrantError::ReplayedCode)
        }
        None => Err(GrantError::UnknownCode),
    }
}

/// Starts the grant of a redeemed code; returns its id and first refresh token.
pub async fn start_grant(db: &Db, code: &str, consent: &Consent) -> Result<(String, String), sqlx::Error> {
    let (id, refresh) = (uuid::Uuid::new_v4().to_string(), secret("mcpr_"));
    let now = now_millis();
    let mut tx = db.pool().begin().await?;
    sqlx::query(
        "INSERT INTO oauth_grants (id, client_id, tenant, member, agent, resource, scope, refresh_hash, created_at, \
         expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&id)
    .bind(&consent.client_id)
    .bind(&consent.tenant)
    .bind(&consent.member)
    .bind(&consent.agent)
    .bind(&consent.resource)
    .bind(&consent.scope)
    .bind(digest(&refresh))
    .bind(now)
    .bind(now + GRANT_TTL_MS)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE oauth_codes SET grant_id = $2 WHERE code_hash = $1")
        .bind(digest(code))
        .bind(&id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((id, refresh))
}

/// A grant refreshed: what it was for, and the refresh token that replaces the one presented.
pub struct Refreshed {
    pub id: String,
    pub consent: Consent,
    pub refresh_token: String,
}

/// Rotates `refresh_token` of `client_id`'s grant. The token before the current one, shown
/// again, revokes the grant.
pub async fn refresh(db: &Db, client_id: &str, refresh_token: &str) -> Result<Refreshed, GrantError> {
    let now = now_millis();
    let (hash, next) = (digest(refresh_token), secret("mcpr_"));
    let row: Option<(String, String, String, String, String, String)> = sqlx::query_as(
        "UPDATE oauth_grants SET previous_hash = refresh_hash, refresh_hash = $3 \
         WHERE refresh_hash = $1 AND client_id = $2 AND revoked_at IS NULL AND expires_at > $4 \
         RETURNING id, tenant, member, agent, resource, scope",
    )
    .bind(&hash)
    .bind(client_id)
    .bind(digest(&next))
    .bind(now)
    .fetch_optional(db.pool())
    .await?;
    if let Some((id, tenant, member, agent, resource, scope)) = row {
        let consent = Consent {
            client_id: client_id.to_string(),
            tenant,
            member,
            agent,
            redirect_uri: String::new(),
            challenge: String::new(),
            resource,
            scope,
        };
        return Ok(Refreshed { id, consent, refresh_token: next });
    }
    let replayed: Option<(String,)> =
        sqlx::query_as("SELECT id FROM oauth_grants WHERE previous_hash = $1 AND client_id = $2")
            .bind(&hash)
            .bind(client_id)
            .fetch_optional(db.pool())
            .await?;
    match replayed {
        Some((id,)) => {
            revoke_grant(db, &id).await?;
            Err(GrantError::ReplayedRefresh)
        }
        None => Err(GrantError::UnknownRefresh),
    }
}

/// Revokes grant `id`: its refresh token is refused from now on. Whether it was live.
pub async fn revoke_grant(db: &Db, id: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE oauth_grants SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
        .bind(id)
        .bind(now_millis())
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Whether `tenant`'s grant `id` is live (neither revoked nor expired): a token issued under
/// it is refused otherwise.
pub async fn is_live(db: &Db, tenant: &str, id: &str) -> Result<bool, sqlx::Error> {
    let row: Option<(i64,)> = sqlx::query_as(
        "SELECT 1 FROM oauth_grants WHERE id = $1 AND tenant = $2 AND revoked_at IS NULL AND expires_at > $3",
    )
    .bind(id)
    .bind(tenant)
    .bind(now_millis())
    .fetch_optional(db.pool())
    .await?;
    Ok(row.is_some())
}

/// Revokes `tenant`'s grant `id`, when `member` is given only if it is theirs.
pub async fn revoke_in(db: &Db, tenant: &str, id: &str, member: Option<&str>) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE oauth_grants SET revoked_at = $3 WHERE id = $1 AND tenant = $2 AND revoked_at IS NULL \
         AND ($4 = '' OR member = $4)",
    )
    .bind(id)
    .bind(tenant)
    .bind(now_millis())
    .bind(member.unwrap_or(""))
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() > 0)
}

/// The live grants of `tenant` (of `member` only, when given), newest first.
pub async fn list(db: &Db, tenant: &str, member: Option<&str>) -> Result<Vec<Grant>, sqlx::Error> {
    let rows: Vec<(String, String, String, String, String, String, String, i64, i64)> = sqlx::query_as(
        "SELECT g.id, g.client_id, COALESCE(c.client_name, ''), g.member, g.agent, g.resource, g.scope, \
         g.created_at, g.expires_at FROM oauth_grants g LEFT JOIN oauth_clients c ON c.client_id = g.client_id \
         WHERE g.tenant = $1 AND g.revoked_at IS NULL AND g.expires_at > $2 AND ($3 = '' OR g.member = $3) \
         ORDER BY g.created_at DESC LIMIT 500",
    )
    .bind(tenant)
    .bind(now_millis())
    .bind(member.unwrap_or(""))
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, client_id, client_name, member, agent, resource, scope, created_at, expires_at)| Grant {
            id,
            client_id,
            client_name,
            member,
            agent,
            resource,
            scope,
            created_at,
            expires_at,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_checks_the_verifier_against_the_s256_challenge() {
        // RFC 7636 appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(pkce_matches(verifier, challenge).is_ok());
        assert!(pkce_matches(&verifier.replace('d', "e"), challenge).unwrap_err().contains("does not match"));
        assert!(pkce_matches("short", challenge).unwrap_err().contains("43 to 128"));
        assert!(pkce_matches(challenge, challenge).is_err(), "the challenge is not its own verifier");
    }
}
