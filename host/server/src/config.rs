//! Where the host keeps its state and how it is reached.

use std::net::SocketAddr;
use std::path::PathBuf;

use airlock_runtime::Limits;

/// Everything needed to open a host.
#[derive(Debug, Clone)]
pub struct Config {
    /// Holds `airlock.db` (SQLite default), `admin.token`, `master.key` and the compile cache.
    pub data_dir: PathBuf,
    /// `sqlite://...` or `postgres://...`; defaults to SQLite in `data_dir`.
    pub database_url: Option<String>,
    pub listen: SocketAddr,
    pub limits: Limits,
    /// Outbound requests the vault makes for tools: timeout and size caps.
    pub fetch_limits: airlock_vault::FetchLimits,
    /// Register [`crate::bundled::DEFAULT_COMPONENTS`] on start.
    pub register_bundled: bool,
    /// Answer request-path checks from an external OpenFGA server instead of the embedded engine.
    pub openfga: Option<airlock_rebac::remote::RemoteConfig>,
    /// `Host` header values `/mcp` accepts (DNS-rebinding protection); empty accepts any.
    /// Defaults to the loopback names; add the names clients use to reach a public listener.
    pub mcp_allowed_hosts: Vec<String>,
    /// Browser origins `/mcp` accepts in an `Origin` header (DNS-rebinding protection, as the MCP
    /// specification asks), besides the host's own: a request from any other origin is refused
    /// with 403; one without `Origin` (not from a browser) passes. `scheme://host[:port]`, `*`
    /// for any port. Defaults to web clients on loopback (the MCP Inspector, say).
    pub mcp_allowed_origins: Vec<String>,
    /// Another process (`airlock serve` beside `airlock mcp`) writes the same SQLite file:
    /// read through to the database instead of trusting in-memory mirrors.
    pub shared_sqlite: bool,
    /// The base URL clients reach this host at (`https://airlock.example`): the `iss` of the
    /// tokens it signs (the same on every host sharing a database; defaults to `http://LISTEN`)
    /// and the CIBA issuer in discovery (unset, derived from each request's `Host` header with
    /// scheme `http`, right only on a trusted network or behind a proxy that sets `Host`).
    pub public_url: Option<String>,
    /// An append-only file each new signed audit checkpoint is appended to (a JSON line), kept
    /// outside the database: `airlock audit verify --witness FILE` checks an export against it.
    pub audit_witness: Option<PathBuf>,
    /// How long the audit writer may hold a commit for the calls in flight to join it
    /// ([`airlock_audit::GATHER`]; zero: no gathering).
    pub audit_gather: std::time::Duration,
    /// How often every chain whose head moved is signed (a checkpoint); zero: only on demand.
    pub checkpoint_every: std::time::Duration,
    /// What one tenant or agent may hold at once (`None`: [`QuotaLimits::for_pool`] of the pool).
    pub quotas: Option<crate::quotas::QuotaLimits>,
    /// How many approvals may wait for a decision, per agent and per tenant.
    pub pending_approvals: airlock_approvals::PendingLimits,
}

impl Config {
    /// Defaults: `./airlock-data`, 127.0.0.1:8080, default limits.
    pub fn new(data_dir: PathBuf) -> Config {
        Config {
            data_dir,
            database_url: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            limits: Limits::default(),
            fetch_limits: airlock_vault::FetchLimits::default(),
            register_bundled: true,
            openfga: None,
            mcp_allowed_hosts: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            mcp_allowed_origins: vec![
                "http://localhost:*".into(),
                "http://127.0.0.1:*".into(),
                "http://[::1]:*".into(),
            ],
            shared_sqlite: false,
            public_url: None,
            audit_witness: None,
            audit_gather: airlock_audit::GATHER,
            checkpoint_every: crate::audit_checkpoints::CHECKPOINT_EVERY,
            quotas: None,
            pending_approvals: airlock_approvals::PendingLimits::default(),
        }
    }

    /// This host's issuer URL (see [`Config::public_url`]), without a trailing `/`.
    pub fn issuer(&self) -> String {
        self.public_url.clone().unwrap_or_else(|| format!("http://{}", self.listen)).trim_end_matches('/').to_string()
    }

    /// The database URL in force.
    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| airlock_store::Db::sqlite_url(&self.data_dir))
    }
}

/// The tenant used when a request names none.
pub const DEFAULT_TENANT: &str = "default";
