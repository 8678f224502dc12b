//! One-time invitations: how a person becomes a tenant member. The operator invites a new
//! tenant's first admin (`airlock tenant create acme --admin user:alice`); a tenant admin
//! invites others. Redeeming the code writes the member's relation on `tenant:T` and returns
//! a token carrying that member's relations; an unredeemed invitation grants nothing.

use airlock_store::{now_millis, sqlx, Db};
use serde::Serialize;

use super::tokens::{validate_member, validate_relation};
use super::{digest, secret, TenancyError};

/// A redeemed invitation: who becomes what, where.
#[derive(Debug, Clone, Serialize)]
pub struct Invitation {
    pub tenant: String,
    pub member: String,
    pub relation: String,
    pub created_by: String,
    pub expires_at: i64,
}

/// The store of invitations.
pub struct Invitations {
    db: Db,
}

impl Invitations {
    pub fn new(db: Db) -> Invitations {
        Invitations { db }
    }

    /// Creates an invitation for `member` to hold `relation` on `tenant:TENANT`, valid for
    /// `ttl_ms`; returns its code (shown once).
    pub async fn create(
        &self,
        tenant: &str,
        member: &str,
        relation: &str,
        created_by: &str,
        ttl_ms: i64,
    ) -> Result<(String, Invitation), TenancyError> {
        validate_member(member)?;
        // No relation: an existing member's invitation to register a passkey.
        if !relation.is_empty() {
            validate_relation(relation)?;
        }
        let code = secret("inv_");
        let now = now_millis();
        let invitation = Invitation {
            tenant: tenant.into(),
            member: member.into(),
            relation: relation.into(),
            created_by: created_by.into(),
            expires_at: now + ttl_ms,
        };
        sqlx::query(
            "INSERT INTO invitations (code_hash, tenant, member, relation, created_by, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(digest(&code))
        .bind(tenant)
        .bind(member)
        .bind(relation)
        .bind(created_by)
        .bind(now)
        .bind(invitation.expires_at)
        .execute(self.db.pool())
        .await?;
        Ok((code, invitation))
    }

    /// Spends an invitation inside the caller's transaction: the first redeemer wins, an
    /// expired, spent or unknown code is refused with one message (no oracle of codes).
    pub async fn redeem_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        code: &str,
    ) -> Result<Invitation, TenancyError> {
        let now = now_millis();
        let refused =
            || TenancyError::NotFound("this invitation is unknown, used or expired: ask for a new one".into());
        // One statement that writes first: on SQLite a transaction that read before writing
        // fails when another connection committed in between (WAL snapshot upgrade).
        let row: Option<(String, String, String, String, i64)> = sqlx::query_as(
            "UPDATE invitations SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL AND expires_at > $1 \
             RETURNING tenant, member, relation, created_by, expires_at",
        )
        .bind(now)
        .bind(digest(code))
        .fetch_optional(&mut **tx)
        .await?;
        let Some((tenant, member, relation, created_by, expires_at)) = row else { return Err(refused()) };
        Ok(Invitation { tenant, member, relation, created_by, expires_at })
    }
}
