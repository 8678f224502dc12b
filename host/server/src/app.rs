//! The host: storage, engines and sandbox, opened together from a [`Config`].

use std::path::Path;
use std::sync::Arc;

use airlock_approvals::ciba::CibaProvider;
use airlock_approvals::{Approvals, Policies, Runs};
use airlock_audit::{AuditEvent, AuditLog};
use airlock_rebac::Rebac;
use airlock_runtime::{AddError, LoadedComponent, Runtime, Services};
use airlock_store::{now_millis, sqlx, Db};
use airlock_vault::{MasterKey, Vault};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::agents::Agents;
use crate::Config;

/// How often an approval's waiter re-reads it when several processes share one SQLite file
/// (no signal reaches them from the others).
const APPROVAL_POLL_SHARED_FILE: std::time::Duration = std::time::Duration::from_secs(1);

/// Everything a running host holds. Shared by the API, the CLI and benchmarks.
pub struct Airlock {
    pub db: Db,
    pub rebac: Arc<Rebac>,
    pub approvals: Arc<Approvals>,
    /// Which tool actions need which approver ([`crate::policy_gate`]).
    pub policies: Policies,
    /// Runs of agents gated by an entry approval.
    pub runs: Runs,
    pub vault: Arc<Vault>,
    pub audit: AuditLog,
    /// Signs the audit chains' heads: the key, the schedule, the witness ([`crate::audit_checkpoints`]).
    pub checkpoints: crate::audit_checkpoints::Checkpoints,
    pub runtime: Runtime,
    /// Components installed from the marketplace, one registry per tenant ([`crate::marketplace`]).
    pub installed: crate::marketplace::Installed,
    pub agents: Agents,
    /// Tenants, members' and operators' API tokens, invitations ([`crate::tenancy`]).
    pub people: crate::tenancy::People,
    /// The operator's bootstrap token (`DATA_DIR/admin.token` or `AIRLOCK_ADMIN_TOKEN`):
    /// host-wide work only.
    pub admin_token: String,
    /// Where the state lives (the master key file, when not from the environment).
    pub data_dir: std::path::PathBuf,
    /// `Host` header values `/mcp` accepts (see [`Config::mcp_allowed_hosts`]).
    pub mcp_allowed_hosts: Vec<String>,
    /// `Origin` values `/mcp` accepts besides the host's own (see [`Config::mcp_allowed_origins`]).
    pub mcp_allowed_origins: Vec<String>,
    /// Agent and user tokens: signing keys, JWTs, token exchange, external issuers.
    pub identity: airlock_identity::Identity,
    /// Airlock as the OpenID Provider (CIBA) of its approvers.
    pub ciba: CibaProvider,
    /// Tenants' external OpenID Providers, asked for their approvals ([`crate::ciba`]).
    pub external_ops: Arc<crate::ciba::ExternalOps>,
    /// Tenants' single sign-on providers ([`crate::signin::sso`]).
    pub sso: crate::signin::sso::Sso,
    /// One marketplace write (install, upgrade, uninstall) at a time on this host.
    pub(crate) marketplace_lock: tokio::sync::Mutex<()>,
    /// Another process writes the same database (PostgreSQL, or a shared SQLite file): state
    /// kept in memory must be checked against it on request paths.
    pub shares_database: bool,
    /// The base URL clients reach this host at (see [`Config::public_url`]).
    pub public_url: Option<String>,
    /// How much of the sandbox pool one tenant or agent may hold ([`crate::quotas`]).
    pub quotas: crate::quotas::Quotas,
    /// Expires overdue grants in the background; stops with the host.
    _sweeper: crate::policy_gate::Sweeper,
}

/// Why the host could not start. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot use data directory `{0}`: {1}")]
    DataDir(String, std::io::Error),
    #[error(transparent)]
    Store(#[from] airlock_store::StoreError),
    #[error("cannot load tuples: {0}")]
    Rebac(#[from] airlock_rebac::RebacError),
    #[error("cannot open the identity service (token signing keys): {0}")]
    Identity(#[from] airlock_identity::IdentityError),
    #[error("cannot open the vault: {0}")]
    Vault(#[from] airlock_vault::VaultError),
    #[error("cannot load agents: {0}")]
    Agents(#[from] crate::agents::AgentError),
    #[error("cannot start the wasm runtime: {0}")]
    Runtime(String),
    #[error("stored component `{0}` cannot be loaded: {1}")]
    Component(String, AddError),
    #[error("database error: {0}")]
    Query(#[from] sqlx::Error),
    #[error("cannot start the CIBA provider: {0}")]
    Ciba(#[from] airlock_approvals::ciba::CibaError),
    #[error("cannot set up the default tenant: {0}")]
    Tenancy(#[from] crate::tenancy::TenancyError),
    #[error("cannot set up passkeys (the WebAuthn relying party comes from --public-url): {0}")]
    Passkeys(String),
    #[error("cannot open the audit checkpoint key: {0}")]
    Checkpoints(String),
}

/// Failures adding a component through the host.
#[derive(Debug, thiserror::Error)]
pub enum ComponentError {
    #[error(transparent)]
    Add(#[from] AddError),
    #[error("component store unavailable: {0}")]
    Store(#[from] sqlx::Error),
}

impl Airlock {
    /// Opens (creating on first start) the data directory, the database and every engine,
    /// and loads the stored components.
    pub async fn open(config: &Config) -> Result<Airlock, OpenError> {
        let dir = &config.data_dir;
        std::fs::create_dir_all(dir).map_err(|e| OpenError::DataDir(dir.display().to_string(), e))?;
        // Keys, tokens, the database and native code live here: the owner's only.
        restrict(dir, 0o700).map_err(|e| OpenError::DataDir(dir.display().to_string(), e))?;
        let db = Db::connect(&config.database_url()).await?;
        for file in ["airlock.db", "airlock.db-wal", "airlock.db-shm", "admin.token", "master.key"] {
            let path = dir.join(file);
            if path.exists() {
                restrict(&path, 0o600).map_err(|e| OpenError::DataDir(path.display().to_string(), e))?;
            }
        }
        let mut rebac = Rebac::open(db.clone()).await?;
        if let Some(remote) = &config.openfga {
            rebac = rebac.with_remote(remote.clone())?;
        }
        if config.shared_sqlite {
            rebac.share_sqlite_file();
        }
        let rebac = Arc::new(rebac);
        // Several processes on one SQLite file have no signals between them: they poll.
        let poll = match (db.backend(), config.shared_sqlite) {
            (_, true) => APPROVAL_POLL_SHARED_FILE,
            (airlock_store::Backend::Sqlite, false) => airlock_approvals::POLL_SOLE_HOST,
            (airlock_store::Backend::Postgres, false) => airlock_approvals::POLL_WITH_SIGNALS,
        };
        let approvals = Arc::new(Approvals::new(db.clone()).with_limits(config.pending_approvals).with_poll(poll));
        let key = MasterKey::load_or_create(dir)?;
        let vault = match Vault::open(db.clone(), key, config.fetch_limits.clone()).await {
            Ok(v) => v,
            // A master-key rotation that stopped between the database commit and installing the
            // staged key file: the staged key is the database's key, so install it now.
            Err(airlock_vault::VaultError::MasterKey(m)) if dir.join("master.key.new").exists() => {
                let staged = std::fs::read_to_string(dir.join("master.key.new")).unwrap_or_default();
                let key =
                    MasterKey::from_base64(&staged).map_err(|_| airlock_vault::VaultError::MasterKey(m.clone()))?;
                let v = Vault::open(db.clone(), key, config.fetch_limits.clone())
                    .await
                    .map_err(|_| airlock_vault::VaultError::MasterKey(m))?;
                std::fs::rename(dir.join("master.key.new"), dir.join("master.key"))
                    .map_err(|e| OpenError::DataDir(dir.display().to_string(), e))?;
                tracing::warn!("installed master.key.new left by an interrupted key rotation");
                v
            }
            Err(e) => return Err(e.into()),
        };
        if config.shared_sqlite {
            vault.share_sqlite_file();
        }
        let vault = Arc::new(vault);
        let identity = airlock_identity::Identity::open(db.clone(), vault.clone(), config.issuer()).await?;
        // The vault owns its key; CIBA seals its few secrets (ping tokens, external OP client
        // secrets) with the same key, loaded again now that any staged rotation is installed.
        let sealer = Arc::new(MasterKey::load_or_create(dir)?);
        let ciba = CibaProvider::new(db.clone(), approvals.clone(), sealer.clone())?;
        let external_ops = Arc::new(crate::ciba::ExternalOps::new(db.clone(), sealer.clone()));
        let audit = AuditLog::start(db.clone());
        audit.set_gather(config.audit_gather);
        let checkpoints = crate::audit_checkpoints::Checkpoints::open(
            &db,
            &vault,
            audit.clone(),
            config.audit_witness.clone(),
            config.checkpoint_every,
        )
        .await
        .map_err(OpenError::Checkpoints)?;
        crate::ciba::spawn_router(&approvals, &external_ops, audit.clone());
        let services = Arc::new(Services {
            rebac: rebac.clone(),
            approvals: approvals.clone(),
            vault: vault.clone(),
            audit: audit.clone(),
        });
        let cache =
            airlock_runtime::CompileCache { dir: dir.join("cache"), key: sealer.derive_key("compile cache v1") };
        let runtime = Runtime::new(services, config.limits.clone(), Some(cache))
            .map_err(|e| OpenError::Runtime(format!("{e:#}")))?;
        let agents = Agents::open(db.clone()).await?;
        let installed = crate::marketplace::Installed::load(&db, &runtime)
            .await
            .map_err(|(what, e)| OpenError::Runtime(format!("installed component `{what}` cannot be loaded: {e}")))?;
        let admin_token = admin_token(dir).map_err(|e| OpenError::DataDir(dir.display().to_string(), e))?;
        let sweeper =
            crate::policy_gate::Sweeper::start(approvals.clone(), db.clone(), crate::policy_gate::SWEEP_EVERY);
        let db_for_people = db.clone();
        let host = Airlock {
            // SQLite with no other writer: answered from memory (see `Policies::cached`); on
            // PostgreSQL from memory kept by the change feed; processes sharing a SQLite file
            // have no feed between them and read.
            policies: match (db.backend(), config.shared_sqlite) {
                (airlock_store::Backend::Sqlite, false) => Policies::cached(db.clone()),
                (airlock_store::Backend::Postgres, _) => Policies::shared(db.clone()),
                (airlock_store::Backend::Sqlite, true) => Policies::new(db.clone()),
            },
            runs: Runs::new(db.clone()),
            _sweeper: sweeper,
            db,
            rebac,
            approvals,
            vault,
            audit,
            checkpoints,
            runtime,
            installed,
            agents,
            people: crate::tenancy::People::new(&db_for_people, &config.issuer()).map_err(OpenError::Passkeys)?,
            sso: crate::signin::sso::Sso::new(db_for_people.clone(), sealer).map_err(OpenError::Passkeys)?,
            admin_token,
            data_dir: dir.clone(),
            mcp_allowed_hosts: config.mcp_allowed_hosts.clone(),
            mcp_allowed_origins: config.mcp_allowed_origins.clone(),
            identity,
            ciba,
            external_ops,
            marketplace_lock: tokio::sync::Mutex::new(()),
            shares_database: config.shared_sqlite || config.database_url().starts_with("postgres"),
            public_url: config.public_url.clone(),
            quotas: crate::quotas::Quotas::new(
                config.quotas.clone().unwrap_or_else(|| crate::quotas::QuotaLimits::for_pool(config.limits.pool_slots)),
            ),
        };

        let stored: Vec<(String, Vec<u8>)> =
            sqlx::query_as("SELECT name, wasm FROM components").fetch_all(host.db.pool()).await?;
        for (name, wasm) in stored {
            host.runtime.add(&name, &wasm).await.map_err(|e| OpenError::Component(name.clone(), e))?;
        }
        if config.register_bundled {
            for (name, wasm) in crate::bundled::DEFAULT_COMPONENTS {
                if host.runtime.component(name).is_none() {
                    host.add_component(name, wasm, "host").await.map_err(|e| match e {
                        ComponentError::Add(e) => OpenError::Component(name.to_string(), e),
                        ComponentError::Store(e) => OpenError::Query(e),
                    })?;
                }
            }
        }
        host.bootstrap_default_tenant(dir).await?;
        host.report_held_calls().await;
        Ok(host)
    }

    /// Checks, compiles, stores and registers a component (replacing one of the same name).
    pub async fn add_component(
        &self,
        name: &str,
        wasm: &[u8],
        by: &str,
    ) -> Result<Arc<LoadedComponent>, ComponentError> {
        let previous = self.runtime.component(name);
        let loaded = self.runtime.add(name, wasm).await?;
        let saved = sqlx::query(
            "INSERT INTO components (name, sha256, wasm, added_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO UPDATE SET sha256 = $2, wasm = $3, added_at = $4",
        )
        .bind(name)
        .bind(&loaded.sha256)
        .bind(wasm)
        .bind(now_millis())
        .execute(self.db.pool())
        .await;
        if let Err(e) = saved {
            // Not stored means not added: put back what the database still holds.
            match previous {
                Some(old) => self.runtime.restore(old),
                None => {
                    self.runtime.remove(name);
                }
            }
            return Err(e.into());
        }
        self.audit.record(AuditEvent {
            tenant: crate::tenancy::HOST_CHAIN.into(),
            kind: "component.add".into(),
            outcome: "ok".into(),
            agent: by.into(),
            tool: name.into(),
            detail: serde_json::json!({ "sha256": loaded.sha256, "tools": loaded.tools.iter().map(|t| &t.name).collect::<Vec<_>>() }),
        });
        Ok(loaded)
    }

    /// Whether `token` is the operator's bootstrap token (constant-time comparison of
    /// digests). Never for an empty token.
    pub fn is_operator_bootstrap(&self, token: &str) -> bool {
        if token.is_empty() || self.admin_token.is_empty() {
            return false;
        }
        let a = Sha256::digest(token.as_bytes());
        let b = Sha256::digest(self.admin_token.as_bytes());
        a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    /// Waits until every audit event recorded so far is stored.
    pub async fn flush(&self) {
        if let Err(e) = self.audit.flush().await {
            tracing::error!("audit flush failed: {e}");
        }
    }
}

/// `AIRLOCK_ADMIN_TOKEN`, or `DIR/admin.token`, generated (mode 0600) on first start.
fn admin_token(dir: &Path) -> std::io::Result<String> {
    if let Ok(token) = std::env::var("AIRLOCK_ADMIN_TOKEN") {
        if !token.is_empty() {
            return Ok(token);
        }
    }
    let path = dir.join("admin.token");
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_string()),
        Ok(_) => Err(std::io::Error::other(format!(
            "`{}` is empty: delete it to have a new admin token generated, or set AIRLOCK_ADMIN_TOKEN",
            path.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut raw = [0u8; 32];
            rand::thread_rng().fill_bytes(&mut raw);
            let token = format!("adm_{}", hex::encode(raw));
            airlock_vault::write_private(&path, format!("{token}\n").as_bytes())?;
            Ok(token)
        }
        Err(e) => Err(e),
    }
}

/// Sets `path`'s permission bits to `mode` (Unix; elsewhere nothing to do).
fn restrict(path: &std::path::Path, mode: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}
