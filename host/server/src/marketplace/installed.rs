//! Components installed with packages: one registry per tenant, beside the runtime's host-wide
//! one. The gate looks a tenant's tools up here first, so another tenant's agents can never
//! reach them, and two tenants may run different versions of the same package.

use std::collections::HashMap;
use std::sync::Arc;

use airlock_runtime::{Limits, LoadedComponent, Runtime};
use airlock_store::{sqlx, Db};
use parking_lot::RwLock;

/// The installed components of every tenant.
#[derive(Default)]
pub struct Installed {
    by_tenant: RwLock<HashMap<String, HashMap<String, Entry>>>,
    /// `(tenant, component, sha256)` that failed to load: not retried on every call.
    failed: parking_lot::Mutex<std::collections::HashSet<(String, String, String)>>,
    /// On a shared database, the tenants whose registry holds every other host's installs
    /// (`airlock_store::Changes`): their calls need no query. `None` in a bare registry.
    fresh: Option<airlock_store::FreshTenants>,
}

/// The change-feed topic of installs, upgrades and uninstalls.
pub const CHANGE_TOPIC: &str = "installed";

#[derive(Clone)]
struct Entry {
    agent: String,
    component: Arc<LoadedComponent>,
}

fn same_limits(a: &Limits, b: &Limits) -> bool {
    a.deadline == b.deadline && a.fuel == b.fuel && a.memory_bytes == b.memory_bytes
}

/// The runtime limits a package's `limits` ask for: the host's, with the package's tighter
/// values ([`Runtime::load`] never lets them exceed the host's).
pub(crate) fn package_limits(host: &Limits, asked: &airlock_marketplace::Limits) -> Limits {
    let mut limits = host.clone();
    if let Some(ms) = asked.deadline_ms {
        limits.deadline = std::time::Duration::from_millis(ms);
    }
    if let Some(mib) = asked.memory_mib {
        limits.memory_bytes = usize::try_from(mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
    }
    if let Some(fuel) = asked.fuel {
        limits.fuel = fuel;
    }
    limits
}

impl Installed {
    /// Loads (from the compiled-code cache, usually) every installed component.
    pub(crate) async fn load(db: &Db, runtime: &Runtime) -> Result<Installed, (String, String)> {
        let tenants: Vec<(String,)> = sqlx::query_as("SELECT DISTINCT tenant FROM installed_components")
            .fetch_all(db.pool())
            .await
            .map_err(|e| ("installed components".to_string(), e.to_string()))?;
        let installed = Installed {
            fresh: Some(airlock_store::FreshTenants::new(db.changes(), CHANGE_TOPIC)),
            ..Installed::default()
        };
        // One tenant's component that no longer loads (e.g. after a host upgrade narrowed the
        // allowed imports) must not keep every tenant's host down: it is left out, and calls
        // of it fail closed ("no component"), with the reason in the log.
        for (tenant,) in tenants {
            installed.sync_tenant(db, runtime, &tenant).await.map_err(|e| (tenant.clone(), e))?;
        }
        Ok(installed)
    }

    /// Brings `tenant`'s registry up to the database, for hosts that share it (PostgreSQL, or
    /// `airlock mcp` beside `airlock serve`): another host may have installed, upgraded or
    /// uninstalled since. One indexed query; a component is loaded (from the code cache) only
    /// when its digest changed.
    /// [`Installed::sync_tenant`] unless the change feed vouches that no other host changed the
    /// tenant's installs since the last one.
    pub(crate) async fn catch_up(&self, db: &Db, runtime: &Runtime, tenant: &str) -> Result<(), String> {
        if let Some(fresh) = &self.fresh {
            if fresh.is_fresh(tenant) {
                return Ok(());
            }
            fresh.reading(tenant);
        }
        let synced = self.sync_tenant(db, runtime, tenant).await;
        if let (Err(_), Some(fresh)) = (&synced, &self.fresh) {
            fresh.forget(tenant);
        }
        synced
    }

    pub(crate) async fn sync_tenant(&self, db: &Db, runtime: &Runtime, tenant: &str) -> Result<(), String> {
        let rows: Vec<(String, String, String, String)> =
            sqlx::query_as("SELECT component, agent, sha256, limits FROM installed_components WHERE tenant = $1")
                .bind(tenant)
                .fetch_all(db.pool())
                .await
                .map_err(|e| e.to_string())?;
        let wanted = |limits: &str| {
            let asked: airlock_marketplace::Limits = serde_json::from_str(limits).unwrap_or_default();
            package_limits(runtime.limits(), &asked)
        };
        let stale: Vec<(String, String, String)> = {
            let by_tenant = self.by_tenant.read();
            let have = by_tenant.get(tenant);
            let failed = self.failed.lock();
            rows.iter()
                .filter(|(c, _, sha, limits)| match have.and_then(|m| m.get(c)) {
                    Some(e) => &e.component.sha256 != sha || !same_limits(&e.component.limits, &wanted(limits)),
                    None => !failed.contains(&(tenant.to_string(), c.clone(), sha.clone())),
                })
                .map(|(c, a, sha, _)| (c.clone(), a.clone(), sha.clone()))
                .collect()
        };
        if let Some(m) = self.by_tenant.write().get_mut(tenant) {
            m.retain(|name, _| rows.iter().any(|(c, _, _, _)| c == name));
        }
        for (component, agent, sha) in stale {
            let row: Option<(Vec<u8>, String)> =
                sqlx::query_as("SELECT wasm, limits FROM installed_components WHERE tenant = $1 AND component = $2")
                    .bind(tenant)
                    .bind(&component)
                    .fetch_optional(db.pool())
                    .await
                    .map_err(|e| e.to_string())?;
            let Some((wasm, limits)) = row else { continue };
            match runtime.load(&component, &wasm, Some(&wanted(&limits))).await {
                Ok(loaded) => self.put(tenant, &agent, loaded),
                // Left out (its calls fail closed with "no component"), not retried on every call,
                // and no reason to refuse the tenant's other components.
                Err(e) => {
                    tracing::error!("installed component `{component}` of tenant `{tenant}` not loaded: {e}");
                    self.failed.lock().insert((tenant.to_string(), component, sha));
                }
            }
        }
        Ok(())
    }

    /// `tenant`'s installed component `name`.
    pub fn get(&self, tenant: &str, name: &str) -> Option<Arc<LoadedComponent>> {
        self.by_tenant.read().get(tenant)?.get(name).map(|e| e.component.clone())
    }

    /// Every component installed in `tenant`, by name.
    pub fn of_tenant(&self, tenant: &str) -> Vec<Arc<LoadedComponent>> {
        let by_tenant = self.by_tenant.read();
        let mut all: Vec<_> =
            by_tenant.get(tenant).map(|m| m.values().map(|e| e.component.clone()).collect()).unwrap_or_default();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// The agent whose package installed `tenant`'s component `name`.
    pub fn owner(&self, tenant: &str, name: &str) -> Option<String> {
        self.by_tenant.read().get(tenant)?.get(name).map(|e| e.agent.clone())
    }

    pub(super) fn put(&self, tenant: &str, agent: &str, component: Arc<LoadedComponent>) {
        self.by_tenant
            .write()
            .entry(tenant.to_string())
            .or_default()
            .insert(component.name.clone(), Entry { agent: agent.to_string(), component });
    }

    /// Forgets every component of a deleted tenant.
    pub(crate) fn forget_tenant(&self, tenant: &str) {
        self.by_tenant.write().remove(tenant);
    }

    /// Forgets `agent`'s components in `tenant`: calls already running finish, new ones find nothing.
    pub(super) fn remove_agent(&self, tenant: &str, agent: &str) {
        if let Some(m) = self.by_tenant.write().get_mut(tenant) {
            m.retain(|_, e| e.agent != agent);
        }
    }
}
