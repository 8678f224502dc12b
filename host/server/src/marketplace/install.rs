//! Install and uninstall: one transaction each.
//!
//! Install verifies the package (nothing is written before it passes), checks it fits the
//! tenant (no agent or component of that name already, the model fragment merges), compiles
//! its components into the code cache (reporting progress), then writes the agent's identity,
//! tuples, model, connection slots, approval policies, components and the installation record
//! in ONE database transaction. A failure at any point rolls all of it back: the database is
//! as it was. Only then does this host's memory learn of it (tokens, tuples, policies, the
//! tenant's component registry). Installing the same package again (same signed digest) is
//! harmless: it changes nothing and shows no new secret.
//!
//! Uninstall first makes the agent powerless on this host (its token refused, its tuples
//! hidden from checks, its components gone from the registry), then deletes in one
//! transaction the identity, every tuple naming the agent or its tools and connections, its
//! policies, its credentials and slots and the record; then cancels its pending approvals
//! (waiting calls wake refused). A call already running finds each import refused. The audit
//! trail is kept.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use airlock_approvals::PolicySpec;
use airlock_audit::AuditEvent;
use airlock_marketplace::{verify_with, HostCaps, Manifest, TrustStore, VerifiedPackage};
use airlock_rebac::Tuple;
use airlock_runtime::LoadedComponent;
use airlock_store::{now_millis, sqlx};
use airlock_vault::{ConnectionKind, OAuthConfig, Slot};
use serde::Serialize;
use serde_json::{json, Value};

use super::installed::package_limits;
use super::{catalog, merge, trust, InstallError};
use crate::agents::AgentError;
use crate::Airlock;

/// Where a package comes from.
#[derive(Debug, Clone)]
pub enum PackageSource {
    /// An agent of the catalog compiled into this binary.
    Catalog(String),
    /// A package directory on the host's file system.
    Directory(PathBuf),
    /// A package in its `.tar` transport form (an upload).
    Archive(Vec<u8>),
}

/// The steps of the install transaction, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InstallStep {
    Identity,
    Tuples,
    Slots,
    Policies,
    Components,
    Record,
}

impl InstallStep {
    pub const ALL: [InstallStep; 6] = [
        InstallStep::Identity,
        InstallStep::Tuples,
        InstallStep::Slots,
        InstallStep::Policies,
        InstallStep::Components,
        InstallStep::Record,
    ];

    pub fn name(self) -> &'static str {
        match self {
            InstallStep::Identity => "identity",
            InstallStep::Tuples => "tuples",
            InstallStep::Slots => "slots",
            InstallStep::Policies => "policies",
            InstallStep::Components => "components",
            InstallStep::Record => "record",
        }
    }
}

/// Options of an install.
#[derive(Debug, Clone, Default)]
pub struct InstallOptions {
    /// Fault injection for tests: fail right after this step of the transaction, to show that
    /// a failure half-way leaves nothing behind. Never set by the API or the CLI.
    #[doc(hidden)]
    pub fail_after: Option<InstallStep>,
    /// Connections (by their name in the package) the admin lets reach internal addresses the
    /// package lists literally (`127.0.0.1:9000`, `10.0.0.5`); any other such host is refused.
    pub allow_private_network: Vec<String>,
}

/// Refuses a package listing an internal IP address among a connection's hosts, unless the
/// admin allowed private networks for that connection: a package must not reach cloud
/// metadata or the host's own loopback because its author wrote the address down. (Names are
/// checked when requests go out, on the addresses they resolve to.)
pub(crate) fn refuse_internal_hosts(
    manifest: &airlock_marketplace::Manifest,
    allowed: &[String],
) -> Result<(), InstallError> {
    for c in manifest.connections.iter().filter(|c| !allowed.contains(&c.name)) {
        for host in &c.allowed_hosts {
            let bare = match host.strip_prefix('[') {
                Some(rest) => rest.split(']').next().unwrap_or_default(),
                None => host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host),
            };
            if bare.parse::<std::net::IpAddr>().is_ok_and(airlock_vault::is_internal) {
                return Err(InstallError::InternalHost { connection: c.name.clone(), host: host.clone() });
            }
        }
    }
    Ok(())
}

/// What a long install reports while it works (the CLI draws a progress bar from it).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Progress {
    /// The package passed every check.
    Verified { package: String, version: String, publisher: String, digest: String },
    /// Compiling component `done + 1` of `total`.
    Compiling { component: String, done: usize, total: usize },
    /// `done` of `total` components compiled.
    Compiled { component: String, done: usize, total: usize },
    /// Writing the agent's identity, tuples, slots and policies.
    Provisioning,
}

/// A progress sink.
pub type ProgressFn<'a> = dyn Fn(Progress) + Send + Sync + 'a;

/// What an install did, for the admin who asked.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct InstallReport {
    pub tenant: String,
    pub agent: String,
    pub package: String,
    pub version: String,
    pub publisher: String,
    pub key_id: String,
    /// sha256 of the signed payload: installing the same digest again is a no-op.
    pub digest: String,
    /// The package was installed already: nothing changed and no secret is shown.
    pub already_installed: bool,
    /// The agent's OAuth2 client credentials (`client_credentials` at `/oauth/token`); the
    /// secret is also its bearer token. Shown once: only its sha256 is stored.
    pub client_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    pub tools: Vec<String>,
    pub tuples: Vec<String>,
    pub connection_slots: Vec<ConnectionSlot>,
    pub approval_policies: Vec<Value>,
    /// What the admin does next (fill the slots, grant the approver roles).
    pub next_steps: Vec<String>,
}

/// An installed agent, as the marketplace lists it ([`Airlock::installations`]).
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct InstalledAgent {
    /// The agent the package installed.
    pub agent: String,
    pub package: String,
    pub version: String,
    pub publisher: String,
    /// sha256 of the signed payload installed.
    pub digest: String,
    /// When it was installed (unix ms).
    pub installed_at: i64,
    /// When it was last installed or upgraded (unix ms).
    pub updated_at: i64,
    /// The connections the package declared, for an admin to fill.
    pub connection_slots: Vec<ConnectionSlot>,
}

/// A connection slot an installed package declared, which the tenant's admin fills.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ConnectionSlot {
    /// `AGENT/NAME`: the connection the admin fills.
    pub name: String,
    pub kind: ConnectionKind,
    /// The hosts the package declared the credential is for.
    pub allowed_hosts: Vec<String>,
    /// What the admin should put in it.
    pub description: String,
    /// Whether a credential is stored in it.
    pub filled: bool,
    /// How to fill it (the CLI command, in words).
    pub fill_with: String,
}

impl ConnectionSlot {
    pub(super) fn of(s: &Slot, filled: bool, tenant: &str) -> ConnectionSlot {
        ConnectionSlot {
            name: s.name.clone(),
            kind: s.kind,
            allowed_hosts: s.allowed_hosts.clone(),
            description: s.description.clone(),
            filled,
            fill_with: fill_command(s, tenant),
        }
    }
}

/// What an uninstall removed.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct UninstallReport {
    pub tenant: String,
    pub agent: String,
    pub tuples_deleted: usize,
    pub credentials_destroyed: u64,
    pub policies_deleted: u64,
    pub grants_cancelled: u64,
    pub requests_denied: u64,
}

/// A stored installation.
#[derive(Debug, Clone)]
pub(super) struct Installation {
    pub version: String,
    pub digest: String,
    pub manifest: Manifest,
}

impl Airlock {
    /// The limits the host allows a package to ask for.
    pub(super) fn host_caps(&self) -> HostCaps {
        let l = self.runtime.limits();
        HostCaps { deadline_ms: l.deadline.as_millis() as u64, memory_mib: (l.memory_bytes >> 20) as u64, fuel: l.fuel }
    }

    /// Reads and verifies a package from `source`: the only way a package reaches install.
    pub(super) async fn verified_package(&self, source: &PackageSource) -> Result<VerifiedPackage, InstallError> {
        let base = trust::current(&self.db).await?;
        let caps = self.host_caps();
        let source = source.clone();
        // File reads, signature and import checks: off the async workers.
        tokio::task::spawn_blocking(move || verify_source(&source, base, &caps))
            .await
            .map_err(|e| InstallError::Io(e.to_string()))?
    }

    /// The installation of `agent` in `tenant`, if any.
    pub(super) async fn installation(&self, tenant: &str, agent: &str) -> Result<Option<Installation>, InstallError> {
        let row: Option<(String, String, String)> =
            sqlx::query_as("SELECT version, digest, manifest FROM installations WHERE tenant = $1 AND agent = $2")
                .bind(tenant)
                .bind(agent)
                .fetch_optional(self.db.pool())
                .await?;
        match row {
            None => Ok(None),
            Some((version, digest, manifest)) => {
                Ok(Some(Installation { version, digest, manifest: Manifest::parse(manifest.as_bytes())? }))
            }
        }
    }

    /// The installations of `tenant`: `(agent, package, version, publisher, digest, installed_at)`.
    pub async fn installations(&self, tenant: &str) -> Result<Vec<InstalledAgent>, InstallError> {
        let rows: Vec<(String, String, String, String, String, i64, i64)> = sqlx::query_as(
            "SELECT agent, package, version, publisher, digest, installed_at, updated_at FROM installations \
             WHERE tenant = $1 ORDER BY agent",
        )
        .bind(tenant)
        .fetch_all(self.db.pool())
        .await?;
        let slots = self.vault.slots(tenant).await?;
        Ok(rows
            .into_iter()
            .map(|(agent, package, version, publisher, digest, installed_at, updated_at)| {
                let connection_slots = slots
                    .iter()
                    .filter(|(s, _)| s.agent == agent)
                    .map(|(s, filled)| ConnectionSlot::of(s, *filled, tenant))
                    .collect();
                InstalledAgent {
                    agent,
                    package,
                    version,
                    publisher,
                    digest,
                    installed_at,
                    updated_at,
                    connection_slots,
                }
            })
            .collect())
    }

    /// Installs a package into `tenant` (see the module doc). Progress goes to `progress`.
    pub async fn install(
        &self,
        tenant: &str,
        source: &PackageSource,
        options: &InstallOptions,
        progress: &ProgressFn<'_>,
    ) -> Result<InstallReport, InstallError> {
        let _one_at_a_time = self.marketplace_lock.lock().await;
        self.sync_installed(tenant).await.map_err(InstallError::Provision)?;
        let result = self.install_inner(tenant, source, options, progress).await;
        let ticket = match &result {
            Ok(report) if !report.already_installed => self.audit.record(install_event(tenant, "ok", report)),
            Ok(_) => 0,
            Err(e) => self.audit.record(AuditEvent {
                tenant: tenant.into(),
                kind: "marketplace.install".into(),
                outcome: "refused".into(),
                agent: "admin".into(),
                tool: source_label(source),
                detail: json!({ "code": e.code(), "reason": e.to_string() }),
            }),
        };
        // An install changes who may do what: the admin hears "installed" once it is on record.
        if let Err(e) = self.audit.durable(ticket).await {
            tracing::error!("install in `{tenant}` done, its audit record not committed: {e}");
        }
        result
    }

    async fn install_inner(
        &self,
        tenant: &str,
        source: &PackageSource,
        options: &InstallOptions,
        progress: &ProgressFn<'_>,
    ) -> Result<InstallReport, InstallError> {
        let package = self.verified_package(source).await?;
        let manifest = package.manifest();
        progress(Progress::Verified {
            package: manifest.name.clone(),
            version: manifest.version.clone(),
            publisher: package.publisher().to_string(),
            digest: package.digest().to_string(),
        });
        let agent = manifest.name.clone();
        if let Some(existing) = self.installation(tenant, &agent).await? {
            if existing.digest == package.digest() {
                // Harmless only if it is still what was installed: a revoked agent is not
                // brought back by installing again.
                if !self.agents.exists(tenant, &agent).await.map_err(agent_error)? {
                    return Err(InstallError::Revoked(agent));
                }
                return Ok(self.report(tenant, &package, None, true));
            }
            return Err(InstallError::UpgradeNeeded { agent, version: existing.version });
        }
        if self.agents.exists(tenant, &agent).await.map_err(agent_error)? {
            return Err(InstallError::AgentExists(agent));
        }
        self.check_components_free(tenant, &package, None)?;
        refuse_internal_hosts(manifest, &options.allow_private_network)?;
        if self.rebac.is_remote() {
            return Err(InstallError::Provision(
                "this host answers checks from an external OpenFGA server: write the package's tuples there, install on a host using the embedded engine".into(),
            ));
        }
        let provision = manifest.provisioning(&agent, tenant);
        self.check_types_owned(tenant, manifest).await?;
        let current = self.rebac.model(tenant).map(|m| m.model.to_string());
        // An early answer; the merge that counts is redone under the tenant's revision lock.
        merge::merged_model(current.as_deref(), provision.model.as_deref(), &[]).map_err(InstallError::Model)?;
        let loaded = self.compile(&package, progress).await?;
        progress(Progress::Provisioning);

        let fault = |step: InstallStep| match options.fail_after {
            Some(s) if s == step => Err(InstallError::Injected(step.name())),
            _ => Ok(()),
        };
        let tuples: Vec<Tuple> = provision
            .tuples
            .iter()
            .map(|t| Tuple::new(t.object.as_str(), t.relation.as_str(), t.user.as_str()))
            .collect();
        let mut tx = self.db.pool().begin().await?;
        let (secret, hash) = self.agents.create_in(&mut tx, tenant, &agent).await.map_err(agent_error)?;
        fault(InstallStep::Identity)?;
        let current = self.rebac.lock_model_in(&mut tx, tenant).await?;
        let model =
            merge::merged_model(current.as_deref(), provision.model.as_deref(), &[]).map_err(InstallError::Model)?;
        // Grants left naming the agent (an earlier agent of that name, revoked by hand) go, read
        // under the revision lock: the installed agent gets exactly what its package declares.
        let stale = self.rebac.tuples_touching_in(&mut tx, tenant, &provision.agent, &[]).await?;
        self.rebac.stage_in(&mut tx, tenant, model.as_deref(), &tuples, &stale).await?;
        record_package_types(&mut tx, tenant, manifest).await?;
        fault(InstallStep::Tuples)?;
        for slot in slots_of(&provision.connections, &agent) {
            self.vault.declare_slot_in(&mut tx, tenant, &slot).await?;
        }
        fault(InstallStep::Slots)?;
        for spec in policy_specs(&provision.policies) {
            self.policies.put_in(&mut tx, tenant, &spec).await?;
        }
        fault(InstallStep::Policies)?;
        store_components(&mut tx, tenant, &agent, &package).await?;
        self.db.changes().notify_in(&mut tx, super::installed::CHANGE_TOPIC, tenant).await?;
        fault(InstallStep::Components)?;
        let now = now_millis();
        sqlx::query(
            "INSERT INTO installations (tenant, agent, package, version, publisher, key_id, digest, manifest, installed_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
        )
        .bind(tenant)
        .bind(&agent)
        .bind(&manifest.name)
        .bind(&manifest.version)
        .bind(package.publisher())
        .bind(package.key_id())
        .bind(package.digest())
        .bind(String::from_utf8_lossy(package.manifest_bytes()).into_owned())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        fault(InstallStep::Record)?;
        tx.commit().await?;

        // Memory catches up (stale grants gone) before the new token answers.
        self.after_commit(tenant).await;
        self.agents.remember(tenant, &agent, hash);
        for component in loaded {
            self.installed.put(tenant, &agent, component);
        }
        Ok(self.report(tenant, &package, Some(secret), false))
    }

    /// Brings this host's memory up to a committed marketplace transaction.
    pub(super) async fn after_commit(&self, tenant: &str) {
        // Caches first: a destroyed credential or a deleted policy must not be served meanwhile.
        self.policies.invalidate(tenant);
        self.vault.forget_tenant(tenant);
        if let Err(e) = self.rebac.refresh(tenant).await {
            // The tuples are committed; this host answers from memory until it catches up.
            tracing::error!("tuples of tenant `{tenant}` committed but not reloaded: {e}");
        }
        // Every other host applied it (or stopped answering from memory) before the answer.
        self.db.changes().settle().await;
    }

    /// Refuses a package whose model fragment claims a type the tenant already uses (in its
    /// model or its tuples) unless a package brought it (`package_types`, kept after uninstall,
    /// so a reinstall or an upgrade passes): a package may not write tuples on the tenant's own
    /// objects.
    pub(super) async fn check_types_owned(&self, tenant: &str, manifest: &Manifest) -> Result<(), InstallError> {
        let Some(fragment) = manifest.model.as_deref() else { return Ok(()) };
        let wanted = airlock_marketplace::model::parse_fragment(fragment).map_err(InstallError::Model)?;
        let current = self.rebac.model(tenant).map(|m| m.model.to_string()).unwrap_or_default();
        let brought: Vec<String> =
            sqlx::query_as::<_, (String,)>("SELECT type_name FROM package_types WHERE tenant = $1")
                .bind(tenant)
                .fetch_all(self.db.pool())
                .await?
                .into_iter()
                .map(|(t,)| t)
                .collect();
        for ty in wanted.keys() {
            if brought.contains(ty) {
                continue;
            }
            let in_model = merge::defined_types(&current).iter().any(|(name, _)| name == ty);
            let in_use = self.rebac.type_in_use(tenant, ty).await?;
            if in_model || in_use {
                return Err(InstallError::Model(format!(
                    "type `{ty}` already belongs to the tenant ({}): a package brings new types, or shares one another installed package brought",
                    if in_model { "its model defines it" } else { "it has tuples on it" }
                )));
            }
        }
        Ok(())
    }

    /// Refuses a package whose components' names are taken in `tenant` (by the host's own
    /// components, or by another installed agent than `upgrading`).
    pub(super) fn check_components_free(
        &self,
        tenant: &str,
        package: &VerifiedPackage,
        upgrading: Option<&str>,
    ) -> Result<(), InstallError> {
        for c in package.components() {
            if self.runtime.component(c.name()).is_some() {
                return Err(InstallError::ComponentTaken {
                    component: c.name().to_string(),
                    by: "by the host itself (added by an admin for every tenant)".into(),
                });
            }
            if let Some(owner) = self.installed.owner(tenant, c.name()) {
                if Some(owner.as_str()) != upgrading {
                    return Err(InstallError::ComponentTaken {
                        component: c.name().to_string(),
                        by: format!("by agent `{owner}`"),
                    });
                }
            }
        }
        Ok(())
    }

    /// Compiles every component (into the code cache) before anything is written.
    pub(super) async fn compile(
        &self,
        package: &VerifiedPackage,
        progress: &ProgressFn<'_>,
    ) -> Result<Vec<Arc<LoadedComponent>>, InstallError> {
        let limits = package_limits(self.runtime.limits(), &package.manifest().limits.clone().unwrap_or_default());
        let total = package.components().len();
        let mut loaded = Vec::with_capacity(total);
        for (done, c) in package.components().iter().enumerate() {
            progress(Progress::Compiling { component: c.name().to_string(), done, total });
            let component = self
                .runtime
                .load(c.name(), c.bytes(), Some(&limits))
                .await
                .map_err(|e| InstallError::Compile { component: c.name().to_string(), reason: e.to_string() })?;
            loaded.push(component);
            progress(Progress::Compiled { component: c.name().to_string(), done: done + 1, total });
        }
        Ok(loaded)
    }

    fn report(
        &self,
        tenant: &str,
        package: &VerifiedPackage,
        secret: Option<String>,
        already_installed: bool,
    ) -> InstallReport {
        let manifest = package.manifest();
        let agent = manifest.name.clone();
        let provision = manifest.provisioning(&agent, tenant);
        let tools = tools_of(&provision.tuples);
        let slots =
            slots_of(&provision.connections, &agent).iter().map(|s| ConnectionSlot::of(s, false, tenant)).collect();
        let policies: Vec<Value> = provision
            .policies
            .iter()
            .map(|p| json!({ "tool": p.tool, "action": p.action, "role": p.role, "ttl_seconds": p.ttl_seconds, "entry": p.entry }))
            .collect();
        let mut next_steps: Vec<String> =
            slots_of(&provision.connections, &agent).iter().map(|s| fill_command(s, tenant)).collect();
        let mut roles: Vec<&str> = provision.policies.iter().map(|p| p.role.as_str()).collect();
        roles.sort_unstable();
        roles.dedup();
        for role in roles {
            next_steps.push(format!(
                "make sure an approver holds `{role}`: `airlock tuple write user:NAME {role} tenant:{tenant}{}`",
                tenant_flag(tenant)
            ));
        }
        InstallReport {
            tenant: tenant.to_string(),
            agent: agent.clone(),
            package: manifest.name.clone(),
            version: manifest.version.clone(),
            publisher: package.publisher().to_string(),
            key_id: package.key_id().to_string(),
            digest: package.digest().to_string(),
            already_installed,
            client_id: agent,
            client_secret: secret,
            tools,
            tuples: provision.tuples.iter().map(|t| format!("{}#{}@{}", t.object, t.relation, t.user)).collect(),
            connection_slots: slots,
            approval_policies: policies,
            next_steps,
        }
    }

    /// Uninstalls `agent` from `tenant` (see the module doc).
    pub async fn uninstall(&self, tenant: &str, agent: &str) -> Result<UninstallReport, InstallError> {
        let _one_at_a_time = self.marketplace_lock.lock().await;
        self.sync_installed(tenant).await.map_err(InstallError::Provision)?;
        let Some(installation) = self.installation(tenant, agent).await? else {
            return Err(InstallError::NotInstalled(agent.to_string()));
        };
        if self.rebac.is_remote() {
            return Err(InstallError::Provision(
                "this host answers checks from an external OpenFGA server: uninstall on a host using the embedded engine, and delete the agent's tuples there".into(),
            ));
        }
        let subject = format!("agent:{agent}");
        // Every tuple naming the agent, any tool of its components, any connection of its
        // namespace, read from the database (complete whatever this host has loaded).
        let mut prefixes: Vec<String> =
            installation.manifest.tools.iter().map(|t| format!("tool:{}.", t.component)).collect();
        prefixes.push(format!("connection:{agent}/"));
        let touching = self.rebac.tuples_touching(tenant, &subject, &prefixes).await?;

        // Powerless on this host from here, before the database says so.
        self.agents.block(tenant, agent);
        self.installed.remove_agent(tenant, agent);
        self.rebac.hide(tenant, &touching);

        let done = self.uninstall_tx(tenant, agent, &installation, &prefixes).await;
        let (touching, policies_deleted, credentials_destroyed, cancelled) = match done {
            Ok(done) => done,
            Err(e) => {
                // Nothing was deleted: give the agent back what this host took from it.
                self.agents.unblock(tenant, agent);
                if let Err(restore) = self.agents.restore(tenant, agent).await {
                    tracing::error!("agent `{agent}` of `{tenant}` not restored after a failed uninstall: {restore}");
                }
                if let Err(restore) = self.rebac.unhide(tenant, &touching).await {
                    tracing::error!("tuples of `{tenant}` not restored after a failed uninstall: {restore}");
                }
                if let Err(restore) = self.installed.sync_tenant(&self.db, &self.runtime, tenant).await {
                    tracing::error!("components of `{tenant}` not restored after a failed uninstall: {restore}");
                }
                return Err(e);
            }
        };
        self.agents.unblock(tenant, agent);
        // A sync that ran meanwhile may have put the components back.
        self.installed.remove_agent(tenant, agent);
        self.approvals.wake_all();
        self.after_commit(tenant).await;
        let report = UninstallReport {
            tenant: tenant.to_string(),
            agent: agent.to_string(),
            tuples_deleted: touching.len(),
            credentials_destroyed,
            policies_deleted,
            grants_cancelled: cancelled.grants,
            requests_denied: cancelled.approvals,
        };
        let ticket = self.audit.record(AuditEvent {
            tenant: tenant.into(),
            kind: "marketplace.uninstall".into(),
            outcome: "ok".into(),
            agent: "admin".into(),
            tool: subject,
            detail: serde_json::to_value(&report).unwrap_or_default(),
        });
        if let Err(e) = self.audit.durable(ticket).await {
            tracing::error!("uninstall of `{agent}` in `{tenant}` done, its audit record not committed: {e}");
        }
        Ok(report)
    }

    /// Uninstall's transaction: returns the tuples deleted, policies deleted, credentials
    /// destroyed and the approvals cancelled.
    async fn uninstall_tx(
        &self,
        tenant: &str,
        agent: &str,
        installation: &Installation,
        prefixes: &[String],
    ) -> Result<(Vec<Tuple>, u64, u64, airlock_approvals::Cancellation), InstallError> {
        let subject = format!("agent:{agent}");
        let mut tx = self.db.pool().begin().await?;
        self.db.changes().notify_in(&mut tx, super::installed::CHANGE_TOPIC, tenant).await?;
        self.agents.revoke_in(&mut tx, tenant, agent).await.map_err(agent_error)?;
        // Read again under the tenant's revision lock: a grant written since the first read
        // goes too.
        self.rebac.lock_model_in(&mut tx, tenant).await?;
        let touching = self.rebac.tuples_touching_in(&mut tx, tenant, &subject, prefixes).await?;
        self.rebac.hide(tenant, &touching);
        self.rebac.stage_in(&mut tx, tenant, None, &[], &touching).await?;
        // Policies are keyed by component (and the entry policy by the agent subject).
        let mut keyed: Vec<String> = installation.manifest.tools.iter().map(|t| t.component.clone()).collect();
        keyed.push(subject.clone());
        let policies_deleted = self.policies.delete_for_in(&mut tx, tenant, &keyed).await?;
        let credentials_destroyed = self.vault.delete_namespace_in(&mut tx, tenant, agent).await?;
        for table in ["installed_components", "installations"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE tenant = $1 AND agent = $2"))
                .bind(tenant)
                .bind(agent)
                .execute(&mut *tx)
                .await?;
        }
        // Issued grants and pending requests end with the rest: a later agent of the same name
        // inherits none of them.
        let cancelled = self.approvals.cancel_for_agent_in(&mut tx, tenant, &subject).await?;
        tx.commit().await?;
        Ok((touching, policies_deleted, credentials_destroyed, cancelled))
    }
}

fn verify_source(source: &PackageSource, base: TrustStore, caps: &HostCaps) -> Result<VerifiedPackage, InstallError> {
    let check = |_: &str, wasm: &[u8]| airlock_runtime::check_component_imports(wasm).map_err(|e| e.to_string());
    match source {
        PackageSource::Catalog(name) => {
            let entry = catalog::entry(name).ok_or_else(|| InstallError::NotInCatalog(name.clone()))?;
            let work = tempfile::tempdir().map_err(|e| InstallError::Io(e.to_string()))?;
            let dir = catalog::package(entry, work.path())?;
            let trust = catalog::trust_for_catalog(base)?;
            Ok(verify_with(&dir, &trust, caps, &check)?)
        }
        PackageSource::Directory(dir) => Ok(verify_with(dir, &base, caps, &check)?),
        PackageSource::Archive(bytes) => {
            let work = tempfile::tempdir().map_err(|e| InstallError::Io(e.to_string()))?;
            let path = work.path().join("package.tar");
            std::fs::write(&path, bytes).map_err(|e| InstallError::Io(e.to_string()))?;
            Ok(airlock_marketplace::verify_archive(&path, &base, caps, &check)?)
        }
    }
}

fn source_label(source: &PackageSource) -> String {
    match source {
        PackageSource::Catalog(name) => format!("catalog:{name}"),
        PackageSource::Directory(dir) => format!("dir:{}", dir.display()),
        PackageSource::Archive(bytes) => format!("upload:{} bytes", bytes.len()),
    }
}

fn agent_error(e: AgentError) -> InstallError {
    match e {
        AgentError::Exists(name) => InstallError::AgentExists(name),
        AgentError::Store(e) => InstallError::Store(e),
        other => InstallError::Provision(other.to_string()),
    }
}

pub(super) fn slots_of(connections: &[airlock_marketplace::ConnectionSlot], agent: &str) -> Vec<Slot> {
    connections
        .iter()
        .map(|c| Slot {
            name: c.name.clone(),
            agent: agent.to_string(),
            kind: match c.kind {
                airlock_marketplace::ConnectionKind::ApiKey => ConnectionKind::ApiKey,
                airlock_marketplace::ConnectionKind::Bearer => ConnectionKind::Bearer,
                airlock_marketplace::ConnectionKind::Oauth2Refresh => ConnectionKind::Oauth2Refresh,
                airlock_marketplace::ConnectionKind::Oauth2ClientCredentials => ConnectionKind::Oauth2ClientCredentials,
            },
            allowed_hosts: c.allowed_hosts.clone(),
            oauth: c.oauth.as_ref().map(|o| OAuthConfig {
                token_url: o.token_url.clone(),
                client_id: o.client_id.clone(),
                scope: o.scope.clone(),
                authorize_url: o.authorize_url.clone(),
            }),
            description: c.description.clone(),
        })
        .collect()
}

pub(super) fn policy_specs(policies: &[airlock_marketplace::PolicyGrant]) -> Vec<PolicySpec> {
    policies
        .iter()
        .map(|p| PolicySpec {
            tool: p.tool.clone(),
            action: p.action.clone(),
            role: p.role.clone(),
            ttl: Duration::from_secs(p.ttl_seconds),
            entry: p.entry,
        })
        .collect()
}

/// Records the types the package's model fragment defines as brought by a package.
pub(super) async fn record_package_types(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant: &str,
    manifest: &Manifest,
) -> Result<(), InstallError> {
    let Some(fragment) = manifest.model.as_deref() else { return Ok(()) };
    let types = airlock_marketplace::model::parse_fragment(fragment).map_err(InstallError::Model)?;
    for ty in types.keys() {
        sqlx::query(
            "INSERT INTO package_types (tenant, type_name) VALUES ($1, $2) ON CONFLICT (tenant, type_name) DO NOTHING",
        )
        .bind(tenant)
        .bind(ty)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Writes the package's components for `agent` (replacing the agent's previous ones).
pub(super) async fn store_components(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant: &str,
    agent: &str,
    package: &VerifiedPackage,
) -> Result<(), InstallError> {
    sqlx::query("DELETE FROM installed_components WHERE tenant = $1 AND agent = $2")
        .bind(tenant)
        .bind(agent)
        .execute(&mut **tx)
        .await?;
    let limits = serde_json::to_string(&package.manifest().limits.clone().unwrap_or_default()).unwrap_or_default();
    for c in package.components() {
        sqlx::query(
            "INSERT INTO installed_components (tenant, component, agent, sha256, wasm, limits) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(tenant)
        .bind(c.name())
        .bind(agent)
        .bind(c.sha256())
        .bind(c.bytes().to_vec())
        .bind(&limits)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

fn tools_of(tuples: &[airlock_marketplace::TupleTemplate]) -> Vec<String> {
    tuples.iter().filter_map(|t| t.object.strip_prefix("tool:").map(str::to_string)).collect()
}

fn tenant_flag(tenant: &str) -> String {
    if tenant == crate::config::DEFAULT_TENANT {
        String::new()
    } else {
        format!(" --tenant {tenant}")
    }
}

fn fill_command(s: &Slot, tenant: &str) -> String {
    let short = s.name.split_once('/').map(|(_, n)| n).unwrap_or(&s.name);
    format!(
        "fill `{}` ({}, for {}): `AIRLOCK_SECRET=... airlock connection put {short} --agent {}{}` ({})",
        s.name,
        s.kind.as_str(),
        s.allowed_hosts.join(", "),
        s.agent,
        tenant_flag(tenant),
        s.description
    )
}

fn install_event(tenant: &str, outcome: &str, r: &InstallReport) -> AuditEvent {
    AuditEvent {
        tenant: tenant.into(),
        kind: "marketplace.install".into(),
        outcome: outcome.into(),
        agent: "admin".into(),
        tool: format!("agent:{}", r.agent),
        detail: json!({ "package": r.package, "version": r.version, "publisher": r.publisher, "key_id": r.key_id,
                        "digest": r.digest, "tuples": r.tuples, "tools": r.tools,
                        "connection_slots": r.connection_slots.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
                        "approval_policies": r.approval_policies }),
    }
}
