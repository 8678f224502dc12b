//! Upgrade: what a new version of an installed package changes, and applying it.
//!
//! The diff compares the installed manifest with the new one, as provisioned for the agent:
//! tuples, connection slots and their hosts, approval policies, the entry approval, model
//! types, limits and components. Anything that gives the agent more than it had (a tuple, a
//! connection, a host, a model type, a higher limit) or asks a human less (a policy removed, a
//! longer approval lifetime, another approver role, no entry approval) is *widening*: the
//! upgrade is refused until the admin consents. Narrowing changes apply without asking.
//! Applying is one transaction like install; the agent keeps its identity and its filled
//! credentials (a slot removed or changed in kind loses its credential).

use std::collections::BTreeSet;

use airlock_audit::AuditEvent;
use airlock_marketplace::{Manifest, Provisioning, VerifiedPackage};
use airlock_rebac::Tuple;
use airlock_store::{now_millis, sqlx};
use serde::Serialize;
use serde_json::json;

use super::install::{
    policy_specs, record_package_types, slots_of, store_components, Installation, PackageSource, ProgressFn,
};
use super::{merge, InstallError, Progress};
use crate::Airlock;

/// What an upgrade changes in the agent's permissions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct PermissionDiff {
    pub agent: String,
    pub from_version: String,
    pub to_version: String,
    pub tuples_added: Vec<String>,
    pub tuples_removed: Vec<String>,
    pub connections_added: Vec<String>,
    pub connections_removed: Vec<String>,
    /// `CONNECTION: HOST` for each host a kept connection may now reach.
    pub hosts_added: Vec<String>,
    pub hosts_removed: Vec<String>,
    pub policies_added: Vec<String>,
    pub policies_removed: Vec<String>,
    pub policies_changed: Vec<String>,
    pub model_types_added: Vec<String>,
    pub limits_changed: Vec<String>,
    pub components_changed: Vec<String>,
    /// `COMPONENT.TOOL: change` for each tool whose declared effects change (`airlock:tool/effects`).
    pub effects_changed: Vec<String>,
    /// Each widening change in words: non-empty means consent is required.
    pub widening: Vec<String>,
}

/// What an upgrade did (or, on a dry run, would do).
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct UpgradeReport {
    pub tenant: String,
    pub applied: bool,
    pub digest: String,
    pub diff: PermissionDiff,
}

fn tuple_key(t: &airlock_marketplace::TupleTemplate) -> String {
    format!("{}#{}@{}", t.object, t.relation, t.user)
}

/// How a policy is named in the diff (`COMPONENT TOOL`).
fn policy_label(p: &airlock_marketplace::PolicyGrant) -> String {
    format!("{} {}", p.tool, p.action)
}

/// The permission changes from `old` to `new`, both provisioned for the same agent.
pub fn diff(old: &Manifest, new: &Manifest, agent: &str, tenant: &str) -> PermissionDiff {
    let (a, b): (Provisioning, Provisioning) = (old.provisioning(agent, tenant), new.provisioning(agent, tenant));
    let mut d = PermissionDiff {
        agent: agent.to_string(),
        from_version: old.version.clone(),
        to_version: new.version.clone(),
        ..Default::default()
    };
    if !is_newer(&new.version, &old.version) {
        d.widening.push(format!(
            "version {} is not newer than the installed {} (a downgrade or a re-release)",
            new.version, old.version
        ));
    }
    let ta: BTreeSet<String> = a.tuples.iter().map(tuple_key).collect();
    let tb: BTreeSet<String> = b.tuples.iter().map(tuple_key).collect();
    d.tuples_added = tb.difference(&ta).cloned().collect();
    d.tuples_removed = ta.difference(&tb).cloned().collect();
    for t in &d.tuples_added {
        d.widening.push(format!("new permission {t}"));
    }

    for c in &b.connections {
        match a.connections.iter().find(|o| o.name == c.name) {
            None => {
                d.connections_added.push(c.name.clone());
                d.widening.push(format!("new connection {} to {}", c.name, c.allowed_hosts.join(", ")));
            }
            Some(o) if o.kind != c.kind => {
                d.connections_removed.push(format!("{} ({:?}: its credential is destroyed)", o.name, o.kind));
                d.connections_added.push(format!("{} ({:?})", c.name, c.kind));
                d.widening.push(format!("connection {} changes kind from {:?} to {:?}", c.name, o.kind, c.kind));
            }
            Some(o) => {
                for h in c.allowed_hosts.iter().filter(|h| !o.allowed_hosts.contains(h)) {
                    d.hosts_added.push(format!("{}: {h}", c.name));
                    d.widening.push(format!("connection {} may now reach {h}", c.name));
                }
                for h in o.allowed_hosts.iter().filter(|h| !c.allowed_hosts.contains(h)) {
                    d.hosts_removed.push(format!("{}: {h}", c.name));
                }
            }
        }
    }
    for o in a.connections.iter().filter(|o| !b.connections.iter().any(|c| c.name == o.name)) {
        d.connections_removed.push(format!("{} (its credential is destroyed)", o.name));
    }

    for p in &b.policies {
        let what = if p.entry { format!("entry approval of {}", p.tool) } else { policy_label(p) };
        match a.policies.iter().find(|o| o.tool == p.tool && o.action == p.action) {
            None => d.policies_added.push(format!("{what} needs {}", p.role)),
            Some(o) if o.role != p.role || o.ttl_seconds != p.ttl_seconds => {
                d.policies_changed
                    .push(format!("{what}: {} for {}s -> {} for {}s", o.role, o.ttl_seconds, p.role, p.ttl_seconds));
                if o.role != p.role {
                    d.widening.push(format!("{what} is decided by {} instead of {}", p.role, o.role));
                }
                if p.ttl_seconds > o.ttl_seconds {
                    d.widening.push(format!("{what}: approvals last {}s instead of {}s", p.ttl_seconds, o.ttl_seconds));
                }
            }
            Some(_) => {}
        }
    }
    for o in a.policies.iter().filter(|o| !b.policies.iter().any(|p| p.tool == o.tool && p.action == o.action)) {
        let what = if o.entry { format!("entry approval of {}", o.tool) } else { policy_label(o) };
        d.policies_removed.push(format!("{what} (was {})", o.role));
        d.widening.push(format!("{what} no longer needs {}'s approval", o.role));
    }

    let types = |m: &Option<String>| {
        m.as_deref().and_then(|f| airlock_marketplace::model::parse_fragment(f).ok()).unwrap_or_default()
    };
    let (ma, mb) = (types(&a.model), types(&b.model));
    for (t, relations) in &mb {
        match ma.get(t) {
            None => {
                d.model_types_added.push(t.clone());
                d.widening.push(format!("new model type {t}"));
            }
            Some(had) => {
                for r in relations.iter().filter(|r| !had.contains(r)) {
                    d.model_types_added.push(format!("{t}#{r}"));
                    d.widening.push(format!("model type {t} gains relation {r}"));
                }
            }
        }
    }

    let la = &a.limits;
    let lb = &b.limits;
    for (name, x, y) in [
        ("deadline_ms", la.deadline_ms, lb.deadline_ms),
        ("memory_mib", la.memory_mib, lb.memory_mib),
        ("fuel", la.fuel, lb.fuel),
    ] {
        if x != y {
            let show = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_else(|| "host default".into());
            d.limits_changed.push(format!("{name}: {} -> {}", show(x), show(y)));
            // Unset means the host's cap, the most a package may have.
            if y.unwrap_or(u64::MAX) > x.unwrap_or(u64::MAX) {
                d.widening.push(format!("limit {name} raised to {}", show(y)));
            }
        }
    }

    for t in &new.tools {
        match old.tools.iter().find(|o| o.component == t.component) {
            Some(o) if o.sha256 == t.sha256 => {}
            Some(_) => d.components_changed.push(format!("{} (new code)", t.component)),
            None => d.components_changed.push(format!("{} (added)", t.component)),
        }
    }
    for o in old.tools.iter().filter(|o| !new.tools.iter().any(|t| t.component == o.component)) {
        d.components_changed.push(format!("{} (removed)", o.component));
    }
    d
}

/// `irreversible, idempotent, reaches outside systems` (or `undeclared: ...`).
pub fn describe_effects(e: &airlock_runtime::Effects) -> String {
    let mut words = vec![e.effect.as_str().to_string()];
    if e.idempotent && e.effect != airlock_runtime::Effect::ReadOnly {
        words.push("idempotent".into());
    }
    words.push(if e.open_world { "reaches outside systems".into() } else { "stays inside Airlock".into() });
    let words = words.join(", ");
    if e.declared {
        words
    } else {
        format!("undeclared (counted as {words})")
    }
}

/// Whether semver `a` is newer than `b` (SemVer 2.0 precedence; build metadata ignored).
fn is_newer(a: &str, b: &str) -> bool {
    use std::cmp::Ordering;
    fn parts(v: &str) -> (Vec<u64>, Option<Vec<String>>) {
        let v = v.split('+').next().unwrap_or(v);
        let (core, pre) = match v.split_once('-') {
            Some((c, p)) => (c, Some(p.split('.').map(str::to_string).collect())),
            None => (v, None),
        };
        (core.split('.').map(|n| n.parse().unwrap_or(0)).collect(), pre)
    }
    fn identifier(x: &str, y: &str) -> Ordering {
        match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(a), Ok(b)) => a.cmp(&b),
            (Ok(_), Err(_)) => Ordering::Less,
            (Err(_), Ok(_)) => Ordering::Greater,
            (Err(_), Err(_)) => x.cmp(y),
        }
    }
    let ((ca, pa), (cb, pb)) = (parts(a), parts(b));
    let order = ca.cmp(&cb).then_with(|| match (&pa, &pb) {
        (None, None) => Ordering::Equal,
        // A release is newer than its pre-releases.
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => x
            .iter()
            .zip(y)
            .map(|(p, q)| identifier(p, q))
            .find(|o| *o != Ordering::Equal)
            .unwrap_or(x.len().cmp(&y.len())),
    });
    order == Ordering::Greater
}

#[cfg(test)]
mod tests {
    use super::is_newer;

    #[test]
    fn versions_order_as_semver_says() {
        assert!(is_newer("1.1.0", "1.0.9"));
        assert!(is_newer("1.0.0", "1.0.0-rc.10"));
        assert!(is_newer("1.0.0-rc.10", "1.0.0-rc.9"));
        assert!(is_newer("1.0.0-beta", "1.0.0-alpha.1"));
        assert!(!is_newer("1.0.0-rc.9", "1.0.0-rc.10"));
        assert!(!is_newer("1.0.0+build.2", "1.0.0+build.1"));
        assert!(!is_newer("0.9.0", "1.0.0"));
    }
}

impl Airlock {
    /// Adds to `d` how the tools of `loaded` (the new version's components) change what they
    /// declare they do, against the components installed now: a tool that becomes riskier
    /// (irreversible, reaching outside systems, no longer idempotent) is widening.
    fn effects_diff(
        &self,
        tenant: &str,
        loaded: &[std::sync::Arc<airlock_runtime::LoadedComponent>],
        d: &mut PermissionDiff,
    ) {
        for component in loaded {
            let before = self.installed.get(tenant, &component.name);
            for tool in &component.tools {
                let id = format!("{}.{}", component.name, tool.name);
                let was = before.as_ref().and_then(|c| c.tools.iter().find(|t| t.name == tool.name)).map(|t| t.effects);
                let Some(was) = was else {
                    d.effects_changed.push(format!("{id}: new tool, {}", describe_effects(&tool.effects)));
                    continue;
                };
                if was == tool.effects {
                    continue;
                }
                d.effects_changed.push(format!(
                    "{id}: {} -> {}",
                    describe_effects(&was),
                    describe_effects(&tool.effects)
                ));
                for change in tool.effects.widening_from(&was) {
                    d.widening.push(format!("tool {id} {change}"));
                }
            }
        }
    }

    /// Upgrades installed agent to the package from `source`. Without `consent`, an upgrade
    /// that widens anything is refused with the diff ([`InstallError::ConsentRequired`]);
    /// `dry_run` only reports the diff.
    pub async fn upgrade(
        &self,
        tenant: &str,
        source: &PackageSource,
        consent: bool,
        dry_run: bool,
        progress: &ProgressFn<'_>,
    ) -> Result<UpgradeReport, InstallError> {
        let _one_at_a_time = self.marketplace_lock.lock().await;
        self.sync_installed(tenant).await.map_err(InstallError::Provision)?;
        let package = self.verified_package(source).await?;
        let manifest = package.manifest();
        progress(Progress::Verified {
            package: manifest.name.clone(),
            version: manifest.version.clone(),
            publisher: package.publisher().to_string(),
            digest: package.digest().to_string(),
        });
        let agent = manifest.name.clone();
        let Some(installed) = self.installation(tenant, &agent).await? else {
            return Err(InstallError::NotInstalled(agent));
        };
        if installed.manifest.publisher != manifest.publisher {
            return Err(InstallError::Provision(format!(
                "`{agent}` was installed from publisher `{}`; this package is `{}`'s: an upgrade never changes publisher (uninstall, then install)",
                installed.manifest.publisher, manifest.publisher
            )));
        }
        if self.rebac.is_remote() {
            return Err(InstallError::Provision(
                "this host answers checks from an external OpenFGA server: upgrade on a host using the embedded engine"
                    .into(),
            ));
        }
        let mut d = diff(&installed.manifest, manifest, &agent, tenant);
        if installed.digest == package.digest() {
            return Ok(UpgradeReport { tenant: tenant.to_string(), applied: false, digest: installed.digest, diff: d });
        }
        // What the new code's tools declare they do is only known once it is compiled (a
        // component already in the cache loads at once): a riskier tool is widening too.
        let loaded = self.compile(&package, progress).await?;
        self.effects_diff(tenant, &loaded, &mut d);
        let report = |applied| UpgradeReport {
            tenant: tenant.to_string(),
            applied,
            digest: package.digest().to_string(),
            diff: d.clone(),
        };
        if dry_run {
            return Ok(report(false));
        }
        if !d.widening.is_empty() && !consent {
            self.audit.record(AuditEvent {
                tenant: tenant.into(),
                kind: "marketplace.upgrade".into(),
                outcome: "consent_required".into(),
                agent: "admin".into(),
                tool: format!("agent:{agent}"),
                detail: serde_json::to_value(&d).unwrap_or_default(),
            });
            return Err(InstallError::ConsentRequired(Box::new(d)));
        }
        self.check_components_free(tenant, &package, Some(&agent))?;
        self.check_types_owned(tenant, manifest).await?;
        let (old, new) = (installed.manifest.provisioning(&agent, tenant), manifest.provisioning(&agent, tenant));
        progress(Progress::Provisioning);

        let as_tuple = |t: &airlock_marketplace::TupleTemplate| {
            Tuple::new(t.object.as_str(), t.relation.as_str(), t.user.as_str())
        };
        let writes: Vec<Tuple> = new.tuples.iter().filter(|t| !old.tuples.contains(t)).map(as_tuple).collect();
        let deletes: Vec<Tuple> = old.tuples.iter().filter(|t| !new.tuples.contains(t)).map(as_tuple).collect();
        // Narrowing takes effect before the transaction, like any revocation.
        self.rebac.hide(tenant, &deletes);
        let applied = self.apply_upgrade(tenant, &agent, &package, &installed, &old, &new, &writes, &deletes).await;
        if let Err(e) = applied {
            // The narrowing hidden above did not happen: put this host's memory back.
            if let Err(reload) = self.rebac.unhide(tenant, &deletes).await {
                tracing::error!("tuples of `{tenant}` not reloaded after a failed upgrade: {reload}");
            }
            return Err(e);
        }
        self.after_commit(tenant).await;
        self.installed.remove_agent(tenant, &agent);
        for component in loaded {
            self.installed.put(tenant, &agent, component);
        }
        let ticket = self.audit.record(AuditEvent {
            tenant: tenant.into(),
            kind: "marketplace.upgrade".into(),
            outcome: "ok".into(),
            agent: "admin".into(),
            tool: format!("agent:{agent}"),
            detail: json!({ "digest": package.digest(), "consented": consent, "diff": d }),
        });
        if let Err(e) = self.audit.durable(ticket).await {
            tracing::error!("upgrade of `{agent}` in `{tenant}` done, its audit record not committed: {e}");
        }
        Ok(report(true))
    }

    /// The upgrade's transaction (see [`Airlock::upgrade`]).
    #[allow(clippy::too_many_arguments)]
    async fn apply_upgrade(
        &self,
        tenant: &str,
        agent: &str,
        package: &VerifiedPackage,
        installed: &Installation,
        old: &Provisioning,
        new: &Provisioning,
        writes: &[Tuple],
        deletes: &[Tuple],
    ) -> Result<(), InstallError> {
        let manifest = package.manifest();
        let mut tx = self.db.pool().begin().await?;
        let current = self.rebac.lock_model_in(&mut tx, tenant).await?;
        let own: Vec<String> = old
            .model
            .as_deref()
            .and_then(|f| airlock_marketplace::model::parse_fragment(f).ok())
            .map(|d| d.into_keys().collect())
            .unwrap_or_default();
        let model = merge::merged_model(current.as_deref(), new.model.as_deref(), &own).map_err(InstallError::Model)?;
        self.rebac.stage_in(&mut tx, tenant, model.as_deref(), writes, deletes).await?;
        let new_slots = slots_of(&new.connections, agent);
        for slot in slots_of(&old.connections, agent) {
            let kept = new_slots.iter().any(|s| s.name == slot.name && s.kind == slot.kind);
            if !kept {
                self.vault.drop_slot_in(&mut tx, tenant, &slot.name).await?;
            }
        }
        for slot in &new_slots {
            self.vault.declare_slot_in(&mut tx, tenant, slot).await?;
        }
        for gone in
            old.policies.iter().filter(|o| !new.policies.iter().any(|p| p.tool == o.tool && p.action == o.action))
        {
            sqlx::query("DELETE FROM approval_policies WHERE tenant = $1 AND tool = $2 AND action = $3")
                .bind(tenant)
                .bind(&gone.tool)
                .bind(&gone.action)
                .execute(&mut *tx)
                .await?;
        }
        // Only what the package changed: a policy an admin tightened since install stays as set.
        let changed: Vec<_> = new.policies.iter().filter(|p| !old.policies.contains(p)).cloned().collect();
        for spec in policy_specs(&changed) {
            self.policies.put_in(&mut tx, tenant, &spec).await?;
        }
        record_package_types(&mut tx, tenant, manifest).await?;
        store_components(&mut tx, tenant, agent, package).await?;
        self.db.changes().notify_in(&mut tx, super::installed::CHANGE_TOPIC, tenant).await?;
        let updated = sqlx::query(
            "UPDATE installations SET version = $3, publisher = $4, key_id = $5, digest = $6, manifest = $7, updated_at = $8 \
             WHERE tenant = $1 AND agent = $2 AND digest = $9",
        )
        .bind(tenant)
        .bind(agent)
        .bind(&manifest.version)
        .bind(package.publisher())
        .bind(package.key_id())
        .bind(package.digest())
        .bind(String::from_utf8_lossy(package.manifest_bytes()).into_owned())
        .bind(now_millis())
        .bind(&installed.digest)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated != 1 {
            // Another host changed the installation since the diff was made: nothing applies.
            return Err(InstallError::Provision(
                "the installation changed while this upgrade was prepared (another host?): run the upgrade again to see the new diff".into(),
            ));
        }
        tx.commit().await?;
        Ok(())
    }
}
