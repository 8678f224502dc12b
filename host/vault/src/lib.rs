//! The vault: credentials the host uses on a tool's behalf, never hands over.
//!
//! A connection is a named credential of a tenant with the hosts it may be
//! sent to. [`Vault::fetch`] makes an HTTP request "as" a connection: it checks
//! the URL against the allowed hosts, attaches the secret, sends the request
//! without following redirects, caps the response size, and returns the
//! response. The secret is decrypted only for that moment and zeroized after.
//!
//! Secrets are sealed at rest with XChaCha20-Poly1305 under the master key,
//! with the tenant and connection name as associated data, so a sealed secret
//! copied to another row does not open. Whether an *agent* may use a
//! connection is the authorization engine's question, asked by the caller.

mod connection;
mod egress;
mod master_key;

use std::time::Duration;

use airlock_store::{now_millis, sqlx, Db};
use zeroize::Zeroizing;

pub use connection::{Connection, ConnectionKind, Placement};
pub use egress::{OutboundRequest, OutboundResponse};
pub use master_key::{write_private, MasterKey};

/// Limits on one outbound request.
#[derive(Debug, Clone)]
pub struct FetchLimits {
    pub timeout: Duration,
    pub max_request_bytes: usize,
    pub max_response_bytes: usize,
}

impl Default for FetchLimits {
    fn default() -> Self {
        FetchLimits { timeout: Duration::from_secs(30), max_request_bytes: 1 << 20, max_response_bytes: 4 << 20 }
    }
}

/// Failures of vault operations. Messages never contain secrets.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("no connection `{0}` in this tenant")]
    NotFound(String),
    #[error("invalid connection: {0}")]
    InvalidConnection(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("egress refused: {0}")]
    EgressRefused(String),
    #[error("connection `{0}` requires an approval grant for every request")]
    GrantRequired(String),
    #[error("request failed: {0}")]
    Transport(String),
    #[error("response larger than {0} bytes")]
    ResponseTooLarge(usize),
    #[error("{0}")]
    MasterKey(String),
    #[error("the sealed secret of `{0}` does not open with this master key")]
    Unseal(String),
    #[error("vault store unavailable: {0}")]
    Store(#[from] sqlx::Error),
}

/// The vault service.
pub struct Vault {
    db: Db,
    key: MasterKey,
    http: reqwest::Client,
    limits: FetchLimits,
}

impl Vault {
    /// Opens the vault, proving that `key` is the key this database was sealed with.
    pub async fn open(db: Db, key: MasterKey, limits: FetchLimits) -> Result<Vault, VaultError> {
        key.prove_against(&db).await?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(limits.timeout)
            .build()
            .map_err(|e| VaultError::Transport(e.to_string()))?;
        Ok(Vault { db, key, http, limits })
    }

    /// Creates or replaces a connection and seals its secret.
    pub async fn put(&self, tenant: &str, conn: &Connection, secret: Zeroizing<String>) -> Result<(), VaultError> {
        conn.validate()?;
        if secret.is_empty() {
            return Err(VaultError::InvalidConnection("the secret is empty".into()));
        }
        let sealed = self.key.seal(&connection::aad(tenant, &conn.name), secret.as_bytes());
        let now = now_millis();
        sqlx::query(
            "INSERT INTO connections (tenant, name, kind, placement, allowed_hosts, requires_grant, sealed_secret, created_at, updated_at, base_url) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9) \
             ON CONFLICT (tenant, name) DO UPDATE SET kind = $3, placement = $4, allowed_hosts = $5, \
             requires_grant = $6, sealed_secret = $7, updated_at = $8, base_url = $9",
        )
        .bind(tenant)
        .bind(&conn.name)
        .bind(conn.kind.as_str())
        .bind(conn.placement_json())
        .bind(conn.allowed_hosts_json())
        .bind(conn.requires_grant as i64)
        .bind(sealed)
        .bind(now)
        .bind(&conn.base_url)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// A connection's metadata (never its secret).
    pub async fn get(&self, tenant: &str, name: &str) -> Result<Connection, VaultError> {
        Ok(self.load(tenant, name).await?.0)
    }

    /// Metadata of all of a tenant's connections, by name.
    pub async fn list(&self, tenant: &str) -> Result<Vec<Connection>, VaultError> {
        let rows: Vec<connection::Row> =
            sqlx::query_as(&format!("SELECT {} FROM connections WHERE tenant = $1 ORDER BY name", connection::COLUMNS))
                .bind(tenant)
                .fetch_all(self.db.pool())
                .await?;
        rows.into_iter().map(|r| connection::from_row(r).map(|(c, _)| c)).collect()
    }

    /// Deletes a connection and its sealed secret; returns whether it existed.
    pub async fn delete(&self, tenant: &str, name: &str) -> Result<bool, VaultError> {
        let n = sqlx::query("DELETE FROM connections WHERE tenant = $1 AND name = $2")
            .bind(tenant)
            .bind(name)
            .execute(self.db.pool())
            .await?
            .rows_affected();
        Ok(n > 0)
    }

    /// Makes `req` as connection `name`. `granted` says whether the caller
    /// holds a consumed approval grant for this request.
    pub async fn fetch(
        &self,
        tenant: &str,
        name: &str,
        req: OutboundRequest,
        granted: bool,
    ) -> Result<OutboundResponse, VaultError> {
        let (conn, sealed) = self.load(tenant, name).await?;
        if conn.requires_grant && !granted {
            return Err(VaultError::GrantRequired(conn.name));
        }
        let url = egress::check_url(&conn, &req.url)?;
        let secret = Zeroizing::new(
            self.key.open(&connection::aad(tenant, name), &sealed).map_err(|_| VaultError::Unseal(name.to_string()))?,
        );
        let secret = std::str::from_utf8(&secret).map_err(|_| VaultError::Unseal(name.to_string()))?;
        egress::send(&self.http, &self.limits, &conn, url, req, secret).await
    }

    async fn load(&self, tenant: &str, name: &str) -> Result<(Connection, Vec<u8>), VaultError> {
        let row: Option<connection::Row> =
            sqlx::query_as(&format!("SELECT {} FROM connections WHERE tenant = $1 AND name = $2", connection::COLUMNS))
                .bind(tenant)
                .bind(name)
                .fetch_optional(self.db.pool())
                .await?;
        connection::from_row(row.ok_or_else(|| VaultError::NotFound(name.to_string()))?)
    }
}
