//! Approval policies: which tool actions need a human, in which role, for how long.
//!
//! A policy is keyed by `(tenant, tool, action)`. `action` may be `*`, which covers every
//! action of the tool that has no policy of its own. The role is a relation in the
//! authorization engine held on `tenant:TENANT` (e.g. `cfo`); this crate only stores its
//! name and checks its syntax, and whoever decides an approval checks the relation.
//!
//! An *entry* policy gates a whole run of an agent instead of one action: it is keyed by the
//! agent subject in the `tool` column (`agent:offboarder`) and the action [`ENTRY_ACTION`],
//! and [`crate::runs::Runs::start`] asks for it before any step of the run may go ahead.

use std::time::Duration;

use airlock_store::sqlx::any::AnyRow;
use airlock_store::sqlx::Row;
use airlock_store::{now_millis, sqlx, Db};
use serde::{Deserialize, Serialize};

use crate::MAX_TTL;

/// The action an entry policy is stored under.
pub const ENTRY_ACTION: &str = "run";
/// The action that covers every action of a tool without a policy of its own.
pub const ANY_ACTION: &str = "*";
/// The prefix of a policy keyed by a declared effect (`effect:irreversible`): it covers every
/// tool with that effect that has no policy of its own.
pub const EFFECT_PREFIX: &str = "effect:";
/// The effects a policy may be keyed by (the `airlock:tool/effects` enum).
pub const EFFECTS: [&str; 3] = ["read-only", "reversible", "irreversible"];

/// A policy as the caller states it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySpec {
    /// A tool name, or for an entry policy the agent subject (`agent:NAME`).
    pub tool: String,
    /// An action of the tool, `*`, or [`ENTRY_ACTION`] for an entry policy.
    pub action: String,
    /// The relation an approver must hold on `tenant:TENANT`.
    pub role: String,
    /// How long a request waits for a decision, and how long the grant lasts once approved.
    pub ttl: Duration,
    /// Whether this gates a run of the agent rather than one action.
    pub entry: bool,
}

/// A stored policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub tenant: String,
    pub tool: String,
    pub action: String,
    pub role: String,
    pub ttl: Duration,
    pub entry: bool,
    pub updated_at: i64,
}

/// Failures of policy operations.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("invalid approval policy: {0}")]
    Invalid(String),
    #[error("policy store unavailable: {0}")]
    Store(#[from] sqlx::Error),
}

/// The policy table of one database. Cheap to clone (clones share the cache).
#[derive(Clone, Debug)]
pub struct Policies {
    db: Db,
    /// Every tool call asks for its policies: on a host that is its database's only writer they
    /// are answered from memory (refreshed by this instance's own writes), not by 2-3 queries.
    cache: Option<std::sync::Arc<PolicyCache>>,
}

#[derive(Debug, Default)]
struct PolicyCache {
    tenants: parking_lot::Mutex<std::collections::HashMap<String, std::sync::Arc<Vec<Policy>>>>,
    /// Bumped by every write, so a load that began before a write never stores stale rows.
    generation: std::sync::atomic::AtomicU64,
    /// On a database other hosts write too: the tenants whose entry holds their writes as well
    /// (the change feed, `airlock_store::Changes`); the others are read again.
    fresh: Option<airlock_store::FreshTenants>,
}

/// The change-feed topic of policy writes.
pub const CHANGE_TOPIC: &str = "policies";

const COLUMNS: &str = "tenant, tool, action, role, ttl_ms, entry, updated_at";

impl Policies {
    /// The policies stored in `db`.
    pub fn new(db: Db) -> Policies {
        Policies { db, cache: None }
    }

    /// Policies answered from memory, for a host that is the only writer of its (SQLite)
    /// database: only this instance's `put`/`delete` change them. Never use it where another
    /// process writes policies: a policy it missed would let a call run unapproved.
    pub fn cached(db: Db) -> Policies {
        Policies { db, cache: Some(Default::default()) }
    }

    /// Policies answered from memory on a database other hosts write too (PostgreSQL): a
    /// tenant's entry is used only while the change feed vouches that no other host changed its
    /// policies since it was read, and every write tells the other hosts before it returns.
    pub fn shared(db: Db) -> Policies {
        let fresh = Some(airlock_store::FreshTenants::new(db.changes(), CHANGE_TOPIC));
        Policies { db, cache: Some(std::sync::Arc::new(PolicyCache { fresh, ..Default::default() })) }
    }

    fn forget(&self, tenant: &str) {
        if let Some(cache) = &self.cache {
            let mut tenants = cache.tenants.lock();
            cache.generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tenants.remove(tenant);
        }
    }

    /// Creates or replaces the policy for `(spec.tool, spec.action)`.
    pub async fn put(&self, tenant: &str, spec: PolicySpec) -> Result<Policy, PolicyError> {
        let mut tx = self.db.pool().begin().await?;
        self.put_in(&mut tx, tenant, &spec).await?;
        tx.commit().await?;
        self.forget(tenant);
        self.db.changes().settle().await;
        let stored = self.exact(tenant, &spec.tool, &spec.action).await?;
        stored.ok_or_else(|| PolicyError::Invalid("the policy vanished right after it was written".into()))
    }

    /// [`Policies::put`] inside the caller's transaction (install registers an agent's
    /// policies with the rest of it); call [`Policies::invalidate`] once it commits.
    pub async fn put_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        tenant: &str,
        spec: &PolicySpec,
    ) -> Result<(), PolicyError> {
        validate(spec)?;
        self.db.changes().notify_in(tx, CHANGE_TOPIC, tenant).await?;
        sqlx::query(
            "INSERT INTO approval_policies (tenant, tool, action, role, ttl_ms, entry, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (tenant, tool, action) DO UPDATE SET role = excluded.role, ttl_ms = excluded.ttl_ms, \
             entry = excluded.entry, updated_at = excluded.updated_at",
        )
        .bind(tenant)
        .bind(&spec.tool)
        .bind(&spec.action)
        .bind(&spec.role)
        .bind(spec.ttl.as_millis() as i64)
        .bind(spec.entry as i64)
        .bind(now_millis())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Deletes the policies of `tools` (and the entry policy keyed by each of them, e.g.
    /// `agent:NAME`) inside the caller's transaction; call [`Policies::invalidate`] after.
    pub async fn delete_for_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        tenant: &str,
        tools: &[String],
    ) -> Result<u64, PolicyError> {
        self.db.changes().notify_in(tx, CHANGE_TOPIC, tenant).await?;
        let mut gone = 0;
        for tool in tools {
            gone += sqlx::query("DELETE FROM approval_policies WHERE tenant = $1 AND tool = $2")
                .bind(tenant)
                .bind(tool)
                .execute(&mut **tx)
                .await?
                .rows_affected();
        }
        Ok(gone)
    }

    /// Drops what this instance remembers of `tenant`'s policies (after a transaction wrote them).
    pub fn invalidate(&self, tenant: &str) {
        self.forget(tenant);
    }

    /// Removes a policy; `false` when there was none.
    pub async fn delete(&self, tenant: &str, tool: &str, action: &str) -> Result<bool, PolicyError> {
        let mut tx = self.db.pool().begin().await?;
        self.db.changes().notify_in(&mut tx, CHANGE_TOPIC, tenant).await?;
        let gone = sqlx::query("DELETE FROM approval_policies WHERE tenant = $1 AND tool = $2 AND action = $3")
            .bind(tenant)
            .bind(tool)
            .bind(action)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        self.forget(tenant);
        self.db.changes().settle().await;
        Ok(gone > 0)
    }

    /// The policy a call of `tool`'s `action` falls under: its own, else the tool's `*` one.
    /// `None` means no approval is needed.
    pub async fn for_action(&self, tenant: &str, tool: &str, action: &str) -> Result<Option<Policy>, PolicyError> {
        if let Some(p) = self.exact(tenant, tool, action).await? {
            return Ok(Some(p));
        }
        self.exact(tenant, tool, ANY_ACTION).await
    }

    /// The policy a call falls under, in one lookup: `tool`'s own policy for `action`, else the
    /// tool's `*` one, else the tenant's policy for the tool's declared `effect` (the key
    /// `effect:EFFECT`, see [`EFFECT_PREFIX`]). `None` means no approval is needed.
    pub async fn for_call(
        &self,
        tenant: &str,
        tool: &str,
        action: &str,
        effect: &str,
    ) -> Result<Option<Policy>, PolicyError> {
        let by_effect = format!("{EFFECT_PREFIX}{effect}");
        let candidates: Vec<Policy> = match self.cached_list(tenant).await? {
            Some(all) => all
                .iter()
                .filter(|p| (p.tool == tool || p.tool == by_effect) && (p.action == action || p.action == ANY_ACTION))
                .cloned()
                .collect(),
            None => {
                let rows = sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM approval_policies WHERE tenant = $1 \
                     AND (tool = $2 OR tool = $3) AND (action = $4 OR action = '*')"
                ))
                .bind(tenant)
                .bind(tool)
                .bind(&by_effect)
                .bind(action)
                .fetch_all(self.db.pool())
                .await?;
                rows.iter().map(from_row).collect::<Result<_, _>>()?
            }
        };
        let rank = |p: &Policy| match (p.tool == tool, p.action == action) {
            (true, true) => 0,
            (true, false) => 1,
            (false, _) => 2,
        };
        // A policy keyed by the effect covers every action of such a tool: only its `*` counts.
        let fits = |p: &Policy| p.tool == tool || p.action == ANY_ACTION;
        Ok(candidates.into_iter().filter(|p| fits(p) && !p.entry).min_by_key(rank))
    }

    /// The entry policy of `agent` (a subject such as `agent:offboarder`), if its runs are gated.
    pub async fn entry_for(&self, tenant: &str, agent: &str) -> Result<Option<Policy>, PolicyError> {
        Ok(self.exact(tenant, agent, ENTRY_ACTION).await?.filter(|p| p.entry))
    }

    /// A tenant's policies, ordered by tool and action.
    pub async fn list(&self, tenant: &str) -> Result<Vec<Policy>, PolicyError> {
        let rows =
            sqlx::query(&format!("SELECT {COLUMNS} FROM approval_policies WHERE tenant = $1 ORDER BY tool, action"))
                .bind(tenant)
                .fetch_all(self.db.pool())
                .await?;
        rows.iter().map(from_row).collect::<Result<_, _>>().map_err(PolicyError::from)
    }

    /// The tenant's policies from memory, when this instance caches them (`None`: ask the database).
    async fn cached_list(&self, tenant: &str) -> Result<Option<std::sync::Arc<Vec<Policy>>>, PolicyError> {
        let Some(cache) = &self.cache else { return Ok(None) };
        if cache.fresh.as_ref().is_none_or(|f| f.is_fresh(tenant)) {
            let hit = cache.tenants.lock().get(tenant).cloned();
            if let Some(all) = hit {
                return Ok(Some(all));
            }
        }
        if let Some(fresh) = &cache.fresh {
            fresh.reading(tenant);
        }
        let generation = cache.generation.load(std::sync::atomic::Ordering::SeqCst);
        let all = match self.list(tenant).await {
            Ok(all) => std::sync::Arc::new(all),
            Err(e) => {
                if let Some(fresh) = &cache.fresh {
                    fresh.forget(tenant);
                }
                return Err(e);
            }
        };
        let mut tenants = cache.tenants.lock();
        if cache.generation.load(std::sync::atomic::Ordering::SeqCst) == generation {
            tenants.insert(tenant.to_string(), all.clone());
        }
        Ok(Some(all))
    }

    async fn exact(&self, tenant: &str, tool: &str, action: &str) -> Result<Option<Policy>, PolicyError> {
        if let Some(all) = self.cached_list(tenant).await? {
            return Ok(all.iter().find(|p| p.tool == tool && p.action == action).cloned());
        }
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM approval_policies WHERE tenant = $1 AND tool = $2 AND action = $3"
        ))
        .bind(tenant)
        .bind(tool)
        .bind(action)
        .fetch_optional(self.db.pool())
        .await?;
        Ok(row.as_ref().map(from_row).transpose()?)
    }
}

/// Letters, digits, `_` or `-`, starting with a letter: the relation names of the authz engine.
pub fn is_role_name(role: &str) -> bool {
    let mut chars = role.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn validate(spec: &PolicySpec) -> Result<(), PolicyError> {
    let invalid = |m: String| Err(PolicyError::Invalid(m));
    if !is_role_name(&spec.role) {
        return invalid(format!(
            "role `{}` is not a relation name (letters, digits, `_` or `-`, starting with a letter)",
            spec.role
        ));
    }
    for (name, value) in [("tool", &spec.tool), ("action", &spec.action)] {
        if value.is_empty() || value.chars().any(char::is_whitespace) {
            return invalid(format!("{name} `{value}` is empty or contains whitespace"));
        }
    }
    if spec.ttl < Duration::from_secs(1) || spec.ttl > MAX_TTL {
        return invalid(format!("ttl of {} ms is outside 1 s ..= 7 days", spec.ttl.as_millis()));
    }
    let agent_key = spec.tool.starts_with("agent:");
    if spec.entry && (!agent_key || spec.action != ENTRY_ACTION) {
        return invalid(format!(
            "an entry policy is keyed by an agent and the action `{ENTRY_ACTION}`, not `{}` / `{}`",
            spec.tool, spec.action
        ));
    }
    if let Some(effect) = spec.tool.strip_prefix(EFFECT_PREFIX) {
        if !EFFECTS.contains(&effect) || spec.action != ANY_ACTION || spec.entry {
            return invalid(format!(
                "`{}` must name a declared effect ({}) and cover every action (`*`)",
                spec.tool,
                EFFECTS.map(|e| format!("{EFFECT_PREFIX}{e}")).join(", ")
            ));
        }
    }
    if !spec.entry && agent_key {
        return invalid(format!("tool `{}` names an agent: only entry policies are keyed by agents", spec.tool));
    }
    Ok(())
}

fn from_row(r: &AnyRow) -> Result<Policy, sqlx::Error> {
    let ttl_ms: i64 = r.try_get(4)?;
    let entry: i64 = r.try_get(5)?;
    Ok(Policy {
        tenant: r.try_get(0)?,
        tool: r.try_get(1)?,
        action: r.try_get(2)?,
        role: r.try_get(3)?,
        ttl: Duration::from_millis(ttl_ms.max(0) as u64),
        entry: entry != 0,
        updated_at: r.try_get(6)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_follow_the_relation_syntax() {
        for ok in ["cfo", "ops_manager", "dpo-eu", "a1"] {
            assert!(is_role_name(ok), "{ok}");
        }
        for bad in ["", "1cfo", "_cfo", "cfo#member", "tenant:acme", "c fo", "cfö"] {
            assert!(!is_role_name(bad), "{bad}");
        }
    }
}
