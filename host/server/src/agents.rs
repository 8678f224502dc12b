//! Agent identities at first depth: a name in a tenant and a bearer token.
//!
//! The token is shown once at creation and stored only as its sha256. Lookups
//! are answered from memory, loaded at start and updated by create and revoke.
//! On PostgreSQL other hosts create and revoke too: a token this host does not
//! know is looked up in the database, and a known one is answered from memory
//! only while the change feed vouches for it (`airlock_store::Changes`); a
//! revoke returns once every host dropped the agent, so it takes effect
//! everywhere at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use airlock_store::{now_millis, sqlx, Change, Db};
use parking_lot::RwLock;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// The change-feed topic of agent revocations (see `airlock_store::Changes`).
pub const CHANGE_TOPIC: &str = "agents";

/// An authenticated agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub tenant: String,
    pub name: String,
    /// Who the agent acts for, outermost first (`user:alice`, then any agent that delegated
    /// further), from a delegated token (RFC 8693 `act`); empty when it acts on its own.
    pub on_behalf_of: Vec<String>,
}

impl Agent {
    /// The subject the authorization engine knows the agent as.
    pub fn subject(&self) -> String {
        format!("agent:{}", self.name)
    }
}

/// An agent as [`Agents::list`] shows it: never its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentInfo {
    pub name: String,
    /// When its current incarnation was created (unix ms).
    pub created_at: i64,
    /// When it was revoked (unix ms); `None` while live.
    pub revoked_at: Option<i64>,
    /// Whether its tokens are accepted now.
    pub live: bool,
}

/// Failures managing agents.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("agent name `{0}` must be lower-case letters, digits and `-`")]
    BadName(String),
    #[error("agent `{0}` already exists in this tenant")]
    Exists(String),
    #[error("no agent `{0}` in this tenant")]
    NotFound(String),
    #[error("agent store unavailable: {0}")]
    Store(#[from] sqlx::Error),
}

/// The registry of agents of every tenant.
pub struct Agents {
    db: Db,
    /// Live agents by the SHA-256 of their token (the database keeps it in hex, `token_hash`).
    by_token_hash: Arc<RwLock<HashMap<TokenDigest, Agent>>>,
    /// Bumped (under the map's lock) whenever another host's change drops entries, so that a
    /// database read that began before it does not put a revoked agent back.
    dropped: Arc<AtomicU64>,
    /// `(tenant, name)` of agents being revoked on this host: refused (JWTs too) from the
    /// moment [`Agents::block`] is called, before the revoking transaction commits.
    blocked: RwLock<std::collections::HashSet<(String, String)>>,
}

/// The SHA-256 of a token: what the host keeps of it in memory.
type TokenDigest = [u8; 32];

fn token_digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

/// What the database keeps of a token: its digest in hex.
fn token_hash(token: &str) -> String {
    hex::encode(token_digest(token))
}

/// The digest a stored `token_hash` spells; `None` for a value that is no SHA-256 in hex (no
/// token hashes to it, so nothing is lost by leaving it out of the map).
fn digest_of_hash(hash: &str) -> Option<TokenDigest> {
    let mut digest = [0u8; 32];
    hex::decode_to_slice(hash, &mut digest).ok()?;
    Some(digest)
}

impl Agents {
    /// Loads every live agent.
    pub async fn open(db: Db) -> Result<Agents, AgentError> {
        let rows: Vec<(String, String, String)> =
            sqlx::query_as("SELECT tenant, name, token_hash FROM agents WHERE revoked_at IS NULL")
                .fetch_all(db.pool())
                .await?;
        let map: HashMap<TokenDigest, Agent> = rows
            .into_iter()
            .filter_map(|(tenant, name, hash)| {
                Some((digest_of_hash(&hash)?, Agent { tenant, name, on_behalf_of: vec![] }))
            })
            .collect();
        let by_token_hash = Arc::new(RwLock::new(map));
        let dropped = Arc::new(AtomicU64::new(0));
        let (map, bumped) = (Arc::downgrade(&by_token_hash), dropped.clone());
        db.changes().subscribe(CHANGE_TOPIC, move |change| {
            let Some(map) = map.upgrade() else { return };
            let mut map = map.write();
            bumped.fetch_add(1, Ordering::SeqCst);
            match change {
                Change::Tenant(t) | Change::TenantGone(t) => map.retain(|_, a| a.tenant != t),
                Change::Everything => map.clear(),
            }
        });
        Ok(Agents { db, by_token_hash, dropped, blocked: RwLock::default() })
    }

    /// Creates an agent (or re-creates a revoked one); returns its token, which is not stored and cannot be shown again.
    pub async fn create(&self, tenant: &str, name: &str) -> Result<String, AgentError> {
        let mut tx = self.db.pool().begin().await?;
        let (token, hash) = self.create_in(&mut tx, tenant, name).await?;
        tx.commit().await?;
        self.remember(tenant, name, hash);
        Ok(token)
    }

    /// [`Agents::create`] inside the caller's transaction (install writes the agent with its
    /// tuples and policies, all or nothing). Returns the token and its hash; call
    /// [`Agents::remember`] with the hash once the transaction commits.
    pub async fn create_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        tenant: &str,
        name: &str,
    ) -> Result<(String, String), AgentError> {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
            return Err(AgentError::BadName(name.to_string()));
        }
        let mut raw = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut raw);
        let token = format!("alk_{}", hex::encode(raw));
        let hash = token_hash(&token);
        let inserted = sqlx::query(
            "INSERT INTO agents (tenant, name, token_hash, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (tenant, name) DO UPDATE SET token_hash = $3, created_at = $4, revoked_at = NULL \
             WHERE agents.revoked_at IS NOT NULL",
        )
        .bind(tenant)
        .bind(name)
        .bind(&hash)
        .bind(now_millis())
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Err(AgentError::Exists(name.to_string()));
        }
        Ok((token, hash))
    }

    /// Makes a committed [`Agents::create_in`] answer on this host.
    pub fn remember(&self, tenant: &str, name: &str, hash: String) {
        self.blocked.write().remove(&(tenant.to_string(), name.to_string()));
        let Some(digest) = digest_of_hash(&hash) else { return };
        self.by_token_hash
            .write()
            .insert(digest, Agent { tenant: tenant.to_string(), name: name.to_string(), on_behalf_of: vec![] });
    }

    /// Refuses the agent's opaque token on this host from this moment, before the
    /// transaction that revokes it ([`Agents::revoke_in`]) commits.
    pub fn block(&self, tenant: &str, name: &str) {
        self.blocked.write().insert((tenant.to_string(), name.to_string()));
        let mut map = self.by_token_hash.write();
        // A database read begun before this (PostgreSQL) must not put the agent back.
        self.dropped.fetch_add(1, Ordering::SeqCst);
        map.retain(|_, a| !(a.tenant == tenant && a.name == name));
    }

    /// Ends a [`Agents::block`] once the revoking transaction committed: the database refuses
    /// the agent from then on, and a later agent of that name (installed through any host)
    /// must not stay blocked here.
    pub fn unblock(&self, tenant: &str, name: &str) {
        self.blocked.write().remove(&(tenant.to_string(), name.to_string()));
    }

    /// After a revoking transaction failed: answers the agent's token on this host again if
    /// the database says it is live.
    pub async fn restore(&self, tenant: &str, name: &str) -> Result<(), AgentError> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT token_hash FROM agents WHERE tenant = $1 AND name = $2 AND revoked_at IS NULL")
                .bind(tenant)
                .bind(name)
                .fetch_optional(self.db.pool())
                .await?;
        if let Some((hash,)) = row {
            self.remember(tenant, name, hash);
        }
        Ok(())
    }

    /// Revokes the agent inside the caller's transaction (blocking it on this host at once);
    /// `false` if it was not live. Call [`Agents::unblock`] after the commit.
    pub async fn revoke_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        tenant: &str,
        name: &str,
    ) -> Result<bool, AgentError> {
        self.block(tenant, name);
        self.db.changes().notify_in(tx, CHANGE_TOPIC, tenant).await?;
        let n = sqlx::query("UPDATE agents SET revoked_at = $1 WHERE tenant = $2 AND name = $3 AND revoked_at IS NULL")
            .bind(now_millis())
            .bind(tenant)
            .bind(name)
            .execute(&mut **tx)
            .await?
            .rows_affected();
        Ok(n > 0)
    }

    /// Revokes an agent: its token is refused from this moment.
    pub async fn revoke(&self, tenant: &str, name: &str) -> Result<(), AgentError> {
        let attempt = async {
            let mut tx = self.db.pool().begin().await?;
            let revoked = self.revoke_in(&mut tx, tenant, name).await?;
            tx.commit().await?;
            Ok::<bool, AgentError>(revoked)
        };
        let revoked = match attempt.await {
            Ok(revoked) => revoked,
            Err(e) => {
                self.unblock(tenant, name);
                self.restore(tenant, name).await?;
                return Err(e);
            }
        };
        self.unblock(tenant, name);
        if !revoked {
            return Err(AgentError::NotFound(name.to_string()));
        }
        self.db.changes().settle().await;
        Ok(())
    }

    /// Whether agent `name` exists in `tenant` and is not revoked (asks the database).
    pub async fn exists(&self, tenant: &str, name: &str) -> Result<bool, AgentError> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT name FROM agents WHERE tenant = $1 AND name = $2 AND revoked_at IS NULL")
                .bind(tenant)
                .bind(name)
                .fetch_optional(self.db.pool())
                .await?;
        Ok(row.is_some())
    }

    /// Every agent of `tenant` the database knows, revoked ones included, newest first (by
    /// the creation of its current incarnation: re-creating a revoked name makes it new),
    /// then by name.
    pub async fn list(&self, tenant: &str) -> Result<Vec<AgentInfo>, AgentError> {
        let rows: Vec<(String, i64, Option<i64>)> = sqlx::query_as(
            "SELECT name, created_at, revoked_at FROM agents WHERE tenant = $1 ORDER BY created_at DESC, name",
        )
        .bind(tenant)
        .fetch_all(self.db.pool())
        .await?;
        let blocked = self.blocked.read();
        Ok(rows
            .into_iter()
            .map(|(name, created_at, revoked_at)| {
                // Being revoked on this host right now counts as revoked.
                let live = revoked_at.is_none() && !blocked.contains(&(tenant.to_string(), name.clone()));
                AgentInfo { name, created_at, revoked_at, live }
            })
            .collect())
    }

    /// When agent `name`'s live incarnation was created (unix ms), or `None` if it is revoked or
    /// unknown. A token issued before it belongs to an earlier, revoked incarnation.
    pub async fn live_since(&self, tenant: &str, name: &str) -> Result<Option<i64>, AgentError> {
        if self.blocked.read().contains(&(tenant.to_string(), name.to_string())) {
            return Ok(None);
        }
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT created_at FROM agents WHERE tenant = $1 AND name = $2 AND revoked_at IS NULL")
                .bind(tenant)
                .bind(name)
                .fetch_optional(self.db.pool())
                .await?;
        Ok(row.map(|(at,)| at))
    }

    /// The agent a bearer token belongs to, if it is live.
    ///
    /// On SQLite the in-memory map answers. On PostgreSQL, where another host may have
    /// created or revoked the agent, the map answers while the change feed is live, and the
    /// database (one indexed read) otherwise or when the token is not in the map.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Agent>, AgentError> {
        let digest = token_digest(token);
        if self.db.backend() != airlock_store::Backend::Postgres {
            return Ok(self.by_token_hash.read().get(&digest).cloned());
        }
        if self.db.changes().fresh() {
            if let Some(hit) = self.by_token_hash.read().get(&digest) {
                return Ok(Some(hit.clone()));
            }
        }
        let hash = hex::encode(digest);
        let dropped = self.dropped.load(Ordering::SeqCst);
        let row: Option<(String, String)> =
            sqlx::query_as("SELECT tenant, name FROM agents WHERE token_hash = $1 AND revoked_at IS NULL")
                .bind(&hash)
                .fetch_optional(self.db.pool())
                .await?;
        let blocked = self.blocked.read();
        let agent = row
            .filter(|(tenant, name)| !blocked.contains(&(tenant.clone(), name.clone())))
            .map(|(tenant, name)| Agent { tenant, name, on_behalf_of: vec![] });
        if let Some(agent) = &agent {
            let mut map = self.by_token_hash.write();
            if self.dropped.load(Ordering::SeqCst) == dropped {
                map.insert(digest, agent.clone());
            }
        }
        Ok(agent)
    }
}
