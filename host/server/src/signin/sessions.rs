//! Browser sessions of people: server-side rows, a cookie that holds only a random secret.
//!
//! A session starts when a person proves who they are in the browser (a passkey sign-in, or
//! registering a passkey from an invitation). The cookie is `HttpOnly`, `SameSite=Strict`,
//! and `Secure` when the host is served over https; the row keeps the secret's hash, the
//! member, and a CSRF token that every state-changing request must send back in
//! `X-CSRF-Token` (checked by the auth door, [`crate::api::auth`]). A session ends on
//! sign-out, after [`IDLE_MS`] without use, [`ABSOLUTE_MS`] after it began, or when the
//! member is removed from the tenant.

use airlock_store::{now_millis, sqlx, Db};

use crate::tenancy::{digest, secret};

/// The cookie's name.
pub const COOKIE: &str = "airlock_session";
/// A session unused this long is over.
pub const IDLE_MS: i64 = 30 * 60 * 1000;
/// No session outlives this, however busy.
pub const ABSOLUTE_MS: i64 = 12 * 60 * 60 * 1000;

/// A live session.
#[derive(Debug, Clone)]
pub struct Session {
    pub tenant: String,
    pub member: String,
    pub csrf: String,
}

/// A new session: the cookie's secret (shown once) and the session.
pub struct Started {
    pub secret: String,
    pub session: Session,
}

/// The sessions of a host.
pub struct Sessions {
    db: Db,
    secure: bool,
}

impl Sessions {
    /// Sessions of a host reached at `public_url` (`Secure` cookies behind https).
    pub fn new(db: Db, public_url: &str) -> Sessions {
        Sessions { db, secure: public_url.starts_with("https://") }
    }

    /// Starts a session for `member` of `tenant`, who proved who they are `via` (e.g. `passkey`).
    pub async fn start(&self, tenant: &str, member: &str, via: &str) -> Result<Started, sqlx::Error> {
        let (cookie, csrf, now) = (secret("ses_"), secret(""), now_millis());
        sqlx::query("DELETE FROM sessions WHERE expires_at < $1 OR last_seen_at < $2")
            .bind(now)
            .bind(now - IDLE_MS)
            .execute(self.db.pool())
            .await?;
        sqlx::query(
            "INSERT INTO sessions (id_hash, tenant, member, csrf, via, created_at, last_seen_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6, $7)",
        )
        .bind(digest(&cookie))
        .bind(tenant)
        .bind(member)
        .bind(&csrf)
        .bind(via)
        .bind(now)
        .bind(now + ABSOLUTE_MS)
        .execute(self.db.pool())
        .await?;
        Ok(Started { secret: cookie, session: Session { tenant: tenant.into(), member: member.into(), csrf } })
    }

    /// The live session of a cookie secret, its idle clock reset; `None` when unknown, ended,
    /// idle too long or past its absolute end.
    pub async fn authenticate(&self, cookie: &str) -> Result<Option<Session>, sqlx::Error> {
        self.live(
            cookie,
            "UPDATE sessions SET last_seen_at = $2 WHERE id_hash = $1 AND expires_at > $2 AND last_seen_at > $3 \
             RETURNING tenant, member, csrf",
        )
        .await
    }

    /// The live session of a cookie secret, as [`Sessions::authenticate`] finds it but without
    /// resetting its idle clock: for a long-lived stream checking that its session still
    /// holds, which is no use by the person.
    pub async fn peek(&self, cookie: &str) -> Result<Option<Session>, sqlx::Error> {
        self.live(
            cookie,
            "SELECT tenant, member, csrf FROM sessions WHERE id_hash = $1 AND expires_at > $2 AND last_seen_at > $3",
        )
        .await
    }

    /// Runs `sql` (binding the cookie's digest, now, and the idle cut-off) for a live session.
    async fn live(&self, cookie: &str, sql: &'static str) -> Result<Option<Session>, sqlx::Error> {
        let now = now_millis();
        let row: Option<(String, String, String)> = sqlx::query_as(sql)
            .bind(digest(cookie))
            .bind(now)
            .bind(now - IDLE_MS)
            .fetch_optional(self.db.pool())
            .await?;
        Ok(row.map(|(tenant, member, csrf)| Session { tenant, member, csrf }))
    }

    /// Ends the session of a cookie secret (sign-out).
    pub async fn end(&self, cookie: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1").bind(digest(cookie)).execute(self.db.pool()).await?;
        Ok(())
    }

    /// Ends every session of a member (removed from the tenant).
    pub async fn end_all_of(&self, tenant: &str, member: &str) -> Result<u64, sqlx::Error> {
        Ok(sqlx::query("DELETE FROM sessions WHERE tenant = $1 AND member = $2")
            .bind(tenant)
            .bind(member)
            .execute(self.db.pool())
            .await?
            .rows_affected())
    }

    /// The `Set-Cookie` value that carries a session's secret.
    pub fn cookie(&self, secret: &str) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!("{COOKIE}={secret}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}", ABSOLUTE_MS / 1000)
    }

    /// The `Set-Cookie` value that removes the cookie.
    pub fn cleared(&self) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}")
    }
}

/// The session cookie's secret in a `Cookie` header, if any.
pub fn cookie_secret(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}
