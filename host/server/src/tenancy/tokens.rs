//! API tokens for people and machines: named, stored as their sha256, listed with their last
//! use, revoked at once. Every use is answered by the database (one indexed read), so a token
//! revoked through any host sharing it is refused on its very next request.

use airlock_store::{now_millis, sqlx, Db};
use serde::Serialize;

use super::{digest, secret, TenancyError};

/// Whose a token is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenOwner {
    /// Host-wide work only.
    Operator,
    /// A tenant member: `member` is `user:NAME` (its relations on `tenant:T` are checked live)
    /// or `token:NAME` with the fixed `role`.
    Member { tenant: String, member: String, role: Option<String> },
}

/// What to create.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub name: String,
    /// `user:NAME` for a token carrying a member's relations; `None` for a role token
    /// (`token:NAME`, with `role`) or an operator token.
    pub member: Option<String>,
    pub role: Option<String>,
    /// Unix milliseconds; `None`: does not expire.
    pub expires_at: Option<i64>,
    /// Who asked for it (audited, listed).
    pub created_by: String,
}

/// A token as listed: never its secret or hash.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct TokenInfo {
    pub id: String,
    /// The token's tenant; absent for an operator token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    pub name: String,
    /// The subject the token acts as: `user:NAME`, `token:NAME`, or `operator`.
    pub member: String,
    /// The fixed role of a `token:NAME` token; null for one carrying a member's relations.
    pub role: Option<String>,
    /// Who asked for it.
    pub created_by: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds; null: it does not expire.
    pub expires_at: Option<i64>,
    /// Unix milliseconds; null while it is live.
    pub revoked_at: Option<i64>,
    /// Unix milliseconds (recorded at most once a minute); null: never used.
    pub last_used_at: Option<i64>,
}

impl TokenInfo {
    /// Whose this token is.
    pub fn owner(&self) -> TokenOwner {
        match &self.tenant {
            None => TokenOwner::Operator,
            Some(tenant) => {
                TokenOwner::Member { tenant: tenant.clone(), member: self.member.clone(), role: self.role.clone() }
            }
        }
    }
}

type Row = (String, Option<String>, String, String, Option<String>, String, i64, Option<i64>, Option<i64>, Option<i64>);

const COLUMNS: &str = "id, tenant, name, member, role, created_by, created_at, expires_at, revoked_at, last_used_at";

fn info(r: Row) -> TokenInfo {
    let (id, tenant, name, member, role, created_by, created_at, expires_at, revoked_at, last_used_at) = r;
    TokenInfo { id, tenant, name, member, role, created_by, created_at, expires_at, revoked_at, last_used_at }
}

/// 1 to 64 lower-case letters, digits, `-` or `_`: token names and relation names alike.
fn is_short_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// A token name: what `airlock token create NAME` accepts.
fn validate_name(name: &str) -> Result<(), TenancyError> {
    if is_short_name(name) {
        return Ok(());
    }
    Err(TenancyError::Invalid(format!(
        "token name `{}` must be 1 to 64 lower-case letters, digits, `-` or `_`",
        name.escape_default()
    )))
}

/// `user:NAME`, the only kind of member a token may carry.
pub fn validate_member(member: &str) -> Result<(), TenancyError> {
    match member.strip_prefix("user:") {
        Some(name)
            if !name.is_empty() && name.len() <= 128 && !name.contains(|c: char| c.is_whitespace() || c == '#') =>
        {
            Ok(())
        }
        _ => Err(TenancyError::Invalid(format!("member `{}` must be a person, `user:NAME`", member.escape_default()))),
    }
}

/// A relation name on `tenant:T` (`admin`, `auditor`, `cfo`, ...).
pub fn validate_relation(relation: &str) -> Result<(), TenancyError> {
    if is_short_name(relation) {
        return Ok(());
    }
    Err(TenancyError::Invalid(format!(
        "role `{}` must be a relation name such as `admin`, `auditor` or `cfo`",
        relation.escape_default()
    )))
}

/// The store of API tokens.
pub struct ApiTokens {
    db: Db,
}

impl ApiTokens {
    pub fn new(db: Db) -> ApiTokens {
        ApiTokens { db }
    }

    /// Creates a token in `tenant` (`None`: an operator token); returns its secret (shown
    /// once) and its listing. Exactly one of `member` and `role` for a tenant token.
    pub async fn create(&self, tenant: Option<&str>, new: &NewToken) -> Result<(String, TokenInfo), TenancyError> {
        let mut tx = self.db.pool().begin().await?;
        let created = self.create_in(&mut tx, tenant, new).await?;
        tx.commit().await?;
        Ok(created)
    }

    /// [`ApiTokens::create`] inside the caller's transaction (an invitation is spent, the
    /// member's relation written and its token made together, or none of them).
    pub async fn create_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        tenant: Option<&str>,
        new: &NewToken,
    ) -> Result<(String, TokenInfo), TenancyError> {
        validate_name(&new.name)?;
        let member = match (tenant, &new.member, &new.role) {
            (None, None, None) => "operator".to_string(),
            (None, _, _) => {
                return Err(TenancyError::Invalid("an operator token carries no member or role".into()));
            }
            (Some(_), Some(m), None) => {
                validate_member(m)?;
                m.clone()
            }
            (Some(_), None, Some(role)) => {
                validate_relation(role)?;
                format!("token:{}", new.name)
            }
            (Some(_), Some(_), Some(_)) | (Some(_), None, None) => {
                return Err(TenancyError::Invalid(
                    "give a token either a role (`--role admin`) or a member whose relations it carries (`--as-member user:alice`), not both".into(),
                ));
            }
        };
        if new.expires_at.is_some_and(|at| at <= now_millis()) {
            return Err(TenancyError::Invalid("the expiry is in the past".into()));
        }
        let token = secret("atk_");
        let id = secret("tok_")[..20].to_string();
        let now = now_millis();
        sqlx::query(
            "INSERT INTO api_tokens (id, tenant, name, token_hash, member, role, created_by, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&id)
        .bind(tenant)
        .bind(&new.name)
        .bind(digest(&token))
        .bind(&member)
        .bind(&new.role)
        .bind(&new.created_by)
        .bind(now)
        .bind(new.expires_at)
        .execute(&mut **tx)
        .await?;
        let info = TokenInfo {
            id,
            tenant: tenant.map(str::to_string),
            name: new.name.clone(),
            member,
            role: new.role.clone(),
            created_by: new.created_by.clone(),
            created_at: now,
            expires_at: new.expires_at,
            revoked_at: None,
            last_used_at: None,
        };
        Ok((token, info))
    }

    /// The live token behind `secret`, if any (not revoked, not expired). Records its use,
    /// at most once a minute per token so reads stay reads.
    pub async fn authenticate(&self, secret: &str) -> Result<Option<TokenInfo>, TenancyError> {
        let now = now_millis();
        let row: Option<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL \
             AND (expires_at IS NULL OR expires_at > $2)"
        ))
        .bind(digest(secret))
        .bind(now)
        .fetch_optional(self.db.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let mut token = info(row);
        if token.last_used_at.is_none_or(|at| at < now - 60_000) {
            sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
                .bind(now)
                .bind(&token.id)
                .execute(self.db.pool())
                .await?;
            token.last_used_at = Some(now);
        }
        Ok(Some(token))
    }

    /// The tokens of `tenant` (`None`: the operator's), revoked ones included, newest first.
    pub async fn list(&self, tenant: Option<&str>) -> Result<Vec<TokenInfo>, TenancyError> {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM api_tokens WHERE COALESCE(tenant, '') = $1 ORDER BY created_at DESC, name"
        ))
        .bind(tenant.unwrap_or(""))
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows.into_iter().map(info).collect())
    }

    /// Revokes every live token named `name` in `tenant` (`None`: the operator's); how many.
    pub async fn revoke(&self, tenant: Option<&str>, name: &str) -> Result<u64, TenancyError> {
        let n = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE COALESCE(tenant, '') = $2 AND name = $3 AND revoked_at IS NULL",
        )
        .bind(now_millis())
        .bind(tenant.unwrap_or(""))
        .bind(name)
        .execute(self.db.pool())
        .await?
        .rows_affected();
        if n == 0 {
            return Err(TenancyError::NotFound(format!("no live token `{name}` here")));
        }
        Ok(n)
    }

    /// Revokes every live token carrying `member`'s relations in `tenant`.
    pub async fn revoke_member(&self, tenant: &str, member: &str) -> Result<u64, TenancyError> {
        Ok(sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE tenant = $2 AND member = $3 AND revoked_at IS NULL",
        )
        .bind(now_millis())
        .bind(tenant)
        .bind(member)
        .execute(self.db.pool())
        .await?
        .rows_affected())
    }
}
