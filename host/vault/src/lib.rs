//! The vault: credentials the host uses on a tool's behalf, never hands over.
//!
//! A connection is a named credential of a tenant with the hosts it may be
//! sent to. [`Vault::fetch`] makes an HTTP request "as" a connection: it checks
//! the URL against the allowed hosts, attaches the secret, sends the request
//! without following redirects, caps the response size, and returns the
//! response. The secret is decrypted only for that moment and zeroized after.
//!
//! Secrets are sealed at rest with XChaCha20-Poly1305 under a per-tenant data
//! key, itself sealed by the master key ([`keys`]); the tenant and connection
//! name are associated data, so a sealed secret copied to another row does not
//! open. Either key can be rotated without stopping. Whether an *agent* may use a
//! connection is the authorization engine's question, asked by the caller.

mod connection;
mod egress;
mod keys;
mod master_key;
mod oauth;
mod slots;

use std::time::Duration;

use airlock_store::{now_millis, sqlx, Db};
use zeroize::Zeroizing;

pub use connection::{Connection, ConnectionKind, ConnectionState, OAuthConfig, Placement};
pub use egress::{is_internal, OutboundRequest, OutboundResponse};
pub use master_key::{write_private, MasterKey};
pub use slots::Slot;

/// Limits on one outbound request.
#[derive(Debug, Clone)]
pub struct FetchLimits {
    pub timeout: Duration,
    pub max_request_bytes: usize,
    pub max_response_bytes: usize,
    /// OAuth2 access tokens are refreshed this long before they expire.
    pub refresh_margin: Duration,
}

impl Default for FetchLimits {
    fn default() -> Self {
        FetchLimits {
            timeout: Duration::from_secs(30),
            max_request_bytes: 1 << 20,
            max_response_bytes: 4 << 20,
            refresh_margin: Duration::from_secs(60),
        }
    }
}

/// Failures of vault operations. Messages never contain secrets.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("no connection `{0}` in this tenant")]
    NotFound(String),
    #[error("connection `{name}` is declared by agent `{agent}`'s package but not filled yet: a tenant admin fills it (`airlock connection put {short} --agent {agent} ...`, or `PUT /v1/connections/{short}` with `\"agent\": \"{agent}\"`)")]
    SlotEmpty { name: String, agent: String, short: String },
    #[error("invalid connection: {0}")]
    InvalidConnection(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("egress refused: {0}")]
    EgressRefused(String),
    #[error("connection `{0}` does not allow its token to be handed out: the host uses it, nobody holds it (set `expose_token` on an OAuth2 connection to allow it)")]
    NotExposable(String),
    #[error("connection `{0}` requires an approval grant for every request")]
    GrantRequired(String),
    #[error("request failed: {0}")]
    Transport(String),
    /// The external API did not answer: the name did not resolve, nothing accepted the
    /// connection, TLS failed, or it timed out. Not a refusal: nothing here said no.
    #[error("`{host}` could not be reached: {reason}")]
    Unreachable { host: String, reason: String, timed_out: bool },
    #[error("response larger than {0} bytes")]
    ResponseTooLarge(usize),
    #[error("{0}")]
    MasterKey(String),
    #[error("connection `{connection}` needs to be reconnected: the provider refused its stored grant ({reason})")]
    ReconnectNeeded { connection: String, reason: String },
    #[error("connection `{0}` is not connected yet: a tenant admin presses Connect (`POST /v1/connections/NAME/connect`, or the console's Connections page) and signs in at the provider")]
    NotConnected(String),
    #[error("the sealed secret of `{0}` does not open with this master key")]
    Unseal(String),
    #[error("vault store unavailable: {0}")]
    Store(#[from] sqlx::Error),
}

/// The vault service.
pub struct Vault {
    db: Db,
    master: parking_lot::RwLock<std::sync::Arc<MasterKey>>,
    data_keys: keys::DataKeys,
    /// For connections to the public internet: its resolver refuses internal addresses.
    http: reqwest::Client,
    /// For connections with `allow_private_network`.
    http_private: reqwest::Client,
    limits: FetchLimits,
    refresh_locks: oauth::RefreshLocks,
    /// Connections as stored (secrets still sealed), so that a vault call reads no database.
    cache: std::sync::Arc<ConnectionCache>,
    /// Held shared while a data key is created, exclusively while the master key rotates.
    key_lock: tokio::sync::RwLock<()>,
    /// Another process writes this SQLite file too: never cache connections.
    shared_file: std::sync::atomic::AtomicBool,
}

impl Vault {
    /// Opens the vault, proving that `key` is the key this database was sealed with.
    pub async fn open(db: Db, key: MasterKey, limits: FetchLimits) -> Result<Vault, VaultError> {
        key.prove_against(&db).await?;
        let client = |public_only: bool| {
            let mut builder =
                reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).timeout(limits.timeout);
            if public_only {
                builder = builder.dns_resolver(std::sync::Arc::new(egress::PublicOnlyResolver));
            }
            builder.build().map_err(|e| VaultError::Transport(e.to_string()))
        };
        let (http, http_private) = (client(true)?, client(false)?);
        Ok(Vault {
            db: db.clone(),
            master: parking_lot::RwLock::new(std::sync::Arc::new(key)),
            data_keys: keys::DataKeys::default(),
            http,
            http_private,
            limits,
            refresh_locks: oauth::RefreshLocks::default(),
            cache: ConnectionCache::following(&db),
            key_lock: tokio::sync::RwLock::new(()),
            shared_file: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Declares that another process writes this SQLite database too: connections are then
    /// read from the database at each use (processes sharing a SQLite file have no change feed).
    pub fn share_sqlite_file(&self) {
        self.shared_file.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Seals a secret of the host itself (e.g. the identity service's signing keys) under a data
    /// key of `owner`, so master-key rotation re-seals it with everything else.
    pub async fn seal_host_secret(&self, owner: &str, name: &str, plain: &[u8]) -> Result<Vec<u8>, VaultError> {
        self.seal_secret(owner, name, plain).await
    }

    /// Opens what [`Vault::seal_host_secret`] sealed for the same `owner` and `name`.
    pub async fn open_host_secret(
        &self,
        owner: &str,
        name: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        self.open_secret(owner, name, sealed).await
    }

    /// Creates or replaces a connection and seals its secret.
    pub async fn put(&self, tenant: &str, conn: &Connection, secret: Zeroizing<String>) -> Result<(), VaultError> {
        conn.validate()?;
        self.check_against_slot(tenant, conn).await?;
        if secret.is_empty() {
            return Err(VaultError::InvalidConnection("the secret is empty".into()));
        }
        let state = match conn.kind {
            ConnectionKind::Oauth2Refresh | ConnectionKind::Oauth2ClientCredentials => {
                oauth::validate_initial(conn, &secret)?
            }
            _ => None,
        };
        let sealed = self.seal_secret(tenant, &conn.name, secret.as_bytes()).await?;
        let now = now_millis();
        let mut tx = self.write_tx(tenant).await?;
        sqlx::query(
            "INSERT INTO connections (tenant, name, kind, placement, allowed_hosts, requires_grant, sealed_secret, created_at, updated_at, base_url, oauth, allow_private, expose_token, oauth_state) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9, $10, $11, $12, $13) \
             ON CONFLICT (tenant, name) DO UPDATE SET kind = $3, placement = $4, allowed_hosts = $5, \
             requires_grant = $6, sealed_secret = $7, updated_at = $8, base_url = $9, oauth = $10, allow_private = $11, \
             expose_token = $12, oauth_state = $13",
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
        .bind(conn.oauth.as_ref().map(|o| serde_json::to_string(o).unwrap_or_default()))
        .bind(conn.allow_private_network as i64)
        .bind(conn.expose_token as i64)
        .bind(state.map(|s| s.as_str().to_string()))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.written(tenant, Some(&conn.name)).await;
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

    /// The connection a tool of `agent` means by `requested`: the agent's own namespace
    /// (`AGENT/NAME`) first, then the tenant's. A tool names connections unqualified, so it
    /// can never reach into another agent's namespace.
    pub async fn resolve(&self, tenant: &str, agent: &str, requested: &str) -> Result<Connection, VaultError> {
        if requested.contains('/') {
            return Err(VaultError::InvalidRequest(format!(
                "connection `{requested}`: name connections without a namespace; the host looks in the agent's own first"
            )));
        }
        let own = Connection::in_namespace(agent, requested);
        match self.get(tenant, &own).await {
            Err(VaultError::NotFound(_)) => match self.get(tenant, requested).await {
                Err(VaultError::NotFound(n)) => match self.slot(tenant, &own).await? {
                    Some(_) => Err(VaultError::SlotEmpty {
                        name: own,
                        agent: agent.trim_start_matches("agent:").to_string(),
                        short: requested.to_string(),
                    }),
                    None => Err(VaultError::NotFound(n)),
                },
                found => found,
            },
            found => found,
        }
    }

    /// A short-lived access token of connection `name`, for a caller the policy lets hold it
    /// (`expose_token`, OAuth2 kinds only). Returns the token and its unix millisecond expiry.
    pub async fn token(&self, tenant: &str, name: &str) -> Result<(Zeroizing<String>, i64), VaultError> {
        let conn = self.get(tenant, name).await?;
        if !conn.expose_token {
            return Err(VaultError::NotExposable(conn.name));
        }
        if conn.requires_grant {
            return Err(VaultError::GrantRequired(conn.name));
        }
        self.access_token_until(tenant, name).await
    }

    /// Deletes every connection and slot in `agent`'s private namespace; returns how many
    /// credentials went. (Uninstall uses [`Vault::delete_namespace_in`] inside its transaction.)
    pub async fn delete_namespace(&self, tenant: &str, agent: &str) -> Result<u64, VaultError> {
        let mut tx = self.db.pool().begin().await?;
        let n = self.delete_namespace_in(&mut tx, tenant, agent).await?;
        tx.commit().await?;
        self.written(tenant, None).await;
        Ok(n)
    }

    /// Deletes a connection and its sealed secret; returns whether it existed.
    pub async fn delete(&self, tenant: &str, name: &str) -> Result<bool, VaultError> {
        let mut tx = self.write_tx(tenant).await?;
        let n = sqlx::query("DELETE FROM connections WHERE tenant = $1 AND name = $2")
            .bind(tenant)
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        self.written(tenant, Some(name)).await;
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
        let secret: Zeroizing<String> = match conn.kind {
            ConnectionKind::Oauth2Refresh | ConnectionKind::Oauth2ClientCredentials => {
                self.access_token(tenant, name).await?
            }
            ConnectionKind::ApiKey | ConnectionKind::Bearer => {
                let plain = self.open_secret(tenant, name, &sealed).await?;
                Zeroizing::new(
                    std::str::from_utf8(&plain).map_err(|_| VaultError::Unseal(name.to_string()))?.to_string(),
                )
            }
        };
        let http = if conn.allow_private_network { &self.http_private } else { &self.http };
        egress::send(http, &self.limits, &conn, url, req, &secret).await
    }

    async fn load(&self, tenant: &str, name: &str) -> Result<(Connection, Vec<u8>), VaultError> {
        if self.shared_file.load(std::sync::atomic::Ordering::Relaxed) {
            return self.load_fresh(tenant, name).await;
        }
        let key = (tenant.to_string(), name.to_string());
        // SQLite: this host is the only writer and forgets what it writes. PostgreSQL: only
        // while the change feed vouches that every other host's write has been heard.
        let trusted = self.db.backend() == airlock_store::Backend::Sqlite || self.db.changes().fresh();
        if trusted {
            if let Some(hit) = self.cache.entries.lock().get(&key) {
                return Ok(hit.clone());
            }
        }
        let generation = self.cache.generation.load(std::sync::atomic::Ordering::SeqCst);
        let loaded = self.load_fresh(tenant, name).await?;
        let mut entries = self.cache.entries.lock();
        if self.cache.generation.load(std::sync::atomic::Ordering::SeqCst) == generation {
            entries.insert(key, loaded.clone());
        }
        Ok(loaded)
    }

    /// The connection as the database has it now, bypassing the cache.
    async fn load_fresh(&self, tenant: &str, name: &str) -> Result<(Connection, Vec<u8>), VaultError> {
        let row: Option<connection::Row> =
            sqlx::query_as(&format!("SELECT {} FROM connections WHERE tenant = $1 AND name = $2", connection::COLUMNS))
                .bind(tenant)
                .bind(name)
                .fetch_optional(self.db.pool())
                .await?;
        connection::from_row(row.ok_or_else(|| VaultError::NotFound(name.to_string()))?)
    }

    /// Drops cached connections of `tenant` (all of them when `name` is `None`).
    pub(crate) fn forget(&self, tenant: &str, name: Option<&str>) {
        self.cache.forget(Some(tenant), name);
    }

    /// Begins a transaction that writes `tenant`'s connections and tells every host sharing the
    /// database once it commits (the change feed; nothing on SQLite). Commit it, then
    /// [`Vault::written`].
    pub(crate) async fn write_tx(&self, tenant: &str) -> Result<sqlx::Transaction<'static, sqlx::Any>, VaultError> {
        let mut tx = self.db.pool().begin().await?;
        self.db.changes().notify_in(&mut tx, CHANGE_TOPIC, tenant).await?;
        Ok(tx)
    }

    /// After a [`Vault::write_tx`] committed: forgets what it changed here, and returns once
    /// every other host answering from memory has forgotten it too.
    pub(crate) async fn written(&self, tenant: &str, name: Option<&str>) {
        self.forget(tenant, name);
        self.db.changes().settle().await;
    }
}

/// The change-feed topic of connection writes (`airlock_store::Changes`).
pub const CHANGE_TOPIC: &str = "connections";

/// Connections as stored, by (tenant, name): on SQLite kept by this host's own writes; on
/// PostgreSQL also emptied of a tenant whenever another host's change of it is heard, and
/// trusted only while the change feed is fresh.
#[derive(Default)]
struct ConnectionCache {
    entries: parking_lot::Mutex<std::collections::HashMap<(String, String), (Connection, Vec<u8>)>>,
    /// Bumped by every forget: a read that began before a write never stores what it read.
    generation: std::sync::atomic::AtomicU64,
}

impl ConnectionCache {
    /// A cache that follows `db`'s change feed (PostgreSQL; on SQLite nobody else writes).
    fn following(db: &Db) -> std::sync::Arc<ConnectionCache> {
        let cache = std::sync::Arc::new(ConnectionCache::default());
        if db.backend() == airlock_store::Backend::Postgres {
            let held = std::sync::Arc::downgrade(&cache);
            db.changes().subscribe(CHANGE_TOPIC, move |change| {
                let Some(cache) = held.upgrade() else { return };
                match change {
                    airlock_store::Change::Tenant(t) | airlock_store::Change::TenantGone(t) => {
                        cache.forget(Some(t), None)
                    }
                    airlock_store::Change::Everything => cache.forget(None, None),
                }
            });
        }
        cache
    }

    /// Drops the entries of `tenant` (every tenant's when `None`), only `name` when given.
    fn forget(&self, tenant: Option<&str>, name: Option<&str>) {
        let mut entries = self.entries.lock();
        self.generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        entries.retain(|(t, n), _| !(tenant.is_none_or(|x| x == t) && name.is_none_or(|x| x == n)));
    }
}
