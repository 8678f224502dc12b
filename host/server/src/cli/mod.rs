//! The `airlock` command line: `serve` runs a host; every other command is a
//! client of a running host's HTTP API (admin token from `AIRLOCK_ADMIN_TOKEN`
//! or `DATA_DIR/admin.token`, agent token from `AIRLOCK_AGENT_TOKEN`).

mod audit;
mod ciba;
mod client;
mod install;
mod package;
mod people;
mod policy;
mod serve;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use client::Client;
pub use policy::PolicyCmd;

/// Airlock: run AI-agent tools in a sandbox, with authorization, human approval and a vault.
#[derive(Parser, Debug)]
#[command(name = "airlock", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Where a client command finds the host and its token.
///
/// Tenant work uses a member's token: `AIRLOCK_TOKEN`, else the `default` tenant's first
/// admin token in `DATA_DIR/default-admin.token`. Host-wide work uses the operator's:
/// `AIRLOCK_ADMIN_TOKEN`, else `DATA_DIR/admin.token`.
#[derive(Args, Debug, Clone)]
pub struct Remote {
    /// The host's base URL.
    #[arg(long, env = "AIRLOCK_URL", default_value = "http://127.0.0.1:8080", global = true)]
    pub server: String,
    /// The data directory holding `admin.token` and `default-admin.token` (when no token is
    /// given in the environment).
    #[arg(long, env = "AIRLOCK_DATA_DIR", default_value = "airlock-data", global = true)]
    pub data_dir: PathBuf,
    /// Tenant to act in (default: the token's own; a token acts in its tenant only).
    #[arg(long, env = "AIRLOCK_TENANT", global = true)]
    pub tenant: Option<String>,
}

impl Remote {
    /// The tenant named on the command line, or "" (the token's own) for a query string.
    pub fn t(&self) -> String {
        self.tenant.clone().unwrap_or_default()
    }

    /// The tenant as shown to the person.
    pub fn shown(&self) -> String {
        self.tenant.clone().unwrap_or_else(|| "of your token".into())
    }
}

/// An external OpenFGA server to answer checks instead of the embedded engine (fail closed).
#[derive(Args, Debug, Clone)]
pub struct ExternalOpenFga {
    /// Base URL of the external OpenFGA server, e.g. `http://openfga:8080`.
    #[arg(long, env = "AIRLOCK_OPENFGA_URL")]
    pub openfga_url: Option<String>,
    /// Store for the `default` tenant (other tenants need `--openfga-tenant-store`).
    #[arg(long, env = "AIRLOCK_OPENFGA_STORE")]
    pub openfga_store: Option<String>,
    /// `TENANT=STORE_ID`, repeatable.
    #[arg(long = "openfga-tenant-store")]
    pub openfga_tenant_stores: Vec<String>,
    /// Pre-shared key for the external server.
    #[arg(long, env = "AIRLOCK_OPENFGA_TOKEN")]
    pub openfga_token: Option<String>,
}

impl ExternalOpenFga {
    /// The remote configuration, if a URL was given.
    pub fn config(&self) -> Result<Option<airlock_rebac::remote::RemoteConfig>, String> {
        let Some(url) = &self.openfga_url else { return Ok(None) };
        let mut stores = std::collections::HashMap::new();
        for pair in &self.openfga_tenant_stores {
            let (tenant, store) = pair
                .split_once('=')
                .ok_or_else(|| format!("--openfga-tenant-store `{pair}` must be TENANT=STORE_ID"))?;
            stores.insert(tenant.to_string(), store.to_string());
        }
        if stores.is_empty() && self.openfga_store.is_none() {
            return Err("--openfga-url needs --openfga-store (or --openfga-tenant-store TENANT=STORE_ID)".into());
        }
        Ok(Some(airlock_rebac::remote::RemoteConfig {
            url: url.clone(),
            token: self.openfga_token.clone(),
            default_store: self.openfga_store.clone(),
            stores,
            timeout: std::time::Duration::from_secs(5),
        }))
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start the host.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "AIRLOCK_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Directory for the database, tokens, keys and compiled code.
        #[arg(long, env = "AIRLOCK_DATA_DIR", default_value = "airlock-data")]
        data_dir: PathBuf,
        /// `postgres://...` to share state between hosts (default: SQLite in the data directory).
        #[arg(long, env = "AIRLOCK_DATABASE_URL")]
        database_url: Option<String>,
        #[command(flatten)]
        openfga: ExternalOpenFga,
        /// The base URL clients reach this host at, e.g. `https://airlock.example` (the CIBA
        /// issuer in discovery); default: `http://` and each request's `Host` header.
        #[arg(long, env = "AIRLOCK_PUBLIC_URL")]
        public_url: Option<String>,
        /// An append-only file each signed audit checkpoint is appended to (a JSON line), out of
        /// the database's reach: `airlock audit verify --witness FILE` checks exports against it.
        #[arg(long, env = "AIRLOCK_AUDIT_WITNESS")]
        audit_witness: Option<PathBuf>,
        /// How long (microseconds) the audit writer may hold a commit for the calls in flight to
        /// join it (group commit); 0 commits each durable record as soon as it is asked for.
        #[arg(long, env = "AIRLOCK_AUDIT_GATHER_US", default_value_t = airlock_audit::GATHER.as_micros() as u64)]
        audit_gather_us: u64,
        #[command(flatten)]
        telemetry: crate::telemetry::TelemetryOptions,
    },
    /// Serve MCP on stdin/stdout as one agent, for local clients that spawn a process.
    Mcp {
        /// The agent to act as (it must exist: `airlock agent create NAME`).
        #[arg(long)]
        agent: String,
        #[arg(long, default_value = "default")]
        tenant: String,
        /// The data directory `airlock serve` uses.
        #[arg(long, env = "AIRLOCK_DATA_DIR", default_value = "airlock-data")]
        data_dir: PathBuf,
        #[arg(long, env = "AIRLOCK_DATABASE_URL")]
        database_url: Option<String>,
    },
    /// Make an Ed25519 publisher key for signing agent packages.
    Key {
        /// Where to write the private key (created, mode 0600).
        #[arg(long)]
        out: PathBuf,
    },
    /// Build and sign an agent package from a folder holding `manifest.json`.
    Package {
        folder: PathBuf,
        /// The publisher's private key (from `airlock key`).
        #[arg(long)]
        key: PathBuf,
        /// The package directory to create.
        #[arg(long)]
        out: PathBuf,
        /// Where to look for built components the manifest names (repeatable; default: the
        /// components this binary's build compiled from `plugins/`).
        #[arg(long)]
        search: Vec<PathBuf>,
    },
    /// Install an agent: `NAME` from this host's catalog, or a package directory or `.tar`.
    /// Shows progress while its components compile; prints the agent's client secret once.
    Install {
        #[command(flatten)]
        remote: Remote,
        package: String,
        /// A connection of the package (by its name there) allowed to list internal addresses
        /// (loopback, private networks); repeat for several. Refused otherwise.
        #[arg(long = "allow-private-network", value_name = "CONNECTION")]
        allow_private_network: Vec<String>,
    },
    /// Upgrade an installed agent to a newer package; shows what changes in its permissions
    /// and applies a widening only with `--yes`.
    Upgrade {
        #[command(flatten)]
        remote: Remote,
        package: String,
        /// Consent to changes that widen the agent's permissions.
        #[arg(long)]
        yes: bool,
        /// Only show what would change.
        #[arg(long)]
        dry_run: bool,
    },
    /// Uninstall an agent: its identity, tuples, credentials, policies and pending approvals go at once.
    Uninstall {
        #[command(flatten)]
        remote: Remote,
        agent: String,
    },
    /// List the agents this host's catalog offers, and those installed in the tenant.
    Catalog {
        #[command(flatten)]
        remote: Remote,
    },
    /// Trust, list or distrust publisher keys for packages.
    #[command(subcommand)]
    Publisher(install::PublisherCmd),
    /// Manage tool components.
    #[command(subcommand)]
    Component(ComponentCmd),
    /// Write, delete and read relationship tuples (`USER RELATION OBJECT`, as in OpenFGA).
    #[command(subcommand)]
    Tuple(TupleCmd),
    /// Set or show the tenant's authorization model (OpenFGA DSL).
    #[command(subcommand)]
    Model(ModelCmd),
    /// Create and revoke agents.
    #[command(subcommand)]
    Agent(AgentCmd),
    /// Store credentials tools may use through the vault.
    #[command(subcommand)]
    Connection(ConnectionCmd),
    /// Rotate the vault's keys without stopping.
    #[command(subcommand)]
    Vault(VaultCmd),
    /// List the tools an agent may use.
    Tools {
        #[command(flatten)]
        remote: Remote,
        /// The agent's token.
        #[arg(long, env = "AIRLOCK_AGENT_TOKEN")]
        token: String,
    },
    /// Call a tool as an agent.
    Call {
        #[command(flatten)]
        remote: Remote,
        /// The agent's token.
        #[arg(long, env = "AIRLOCK_AGENT_TOKEN")]
        token: String,
        /// `component.tool`, e.g. `billing.lookup-customer`.
        tool: String,
        /// The input, a JSON object.
        #[arg(default_value = "{}")]
        input: String,
    },
    /// List and decide approval requests (CIBA requests too: as the approver they name).
    #[command(subcommand)]
    Approvals(ApprovalCmd),
    /// Tenants (the operator's): create, list, delete, invite into one.
    #[command(subcommand)]
    Tenant(people::TenantCmd),
    /// A tenant's API tokens (its admins'), or with `--operator` the operator's.
    #[command(subcommand)]
    Token(people::TokenCmd),
    /// Invite a person into the tenant with a role (a tenant admin).
    #[command(subcommand)]
    User(people::UserCmd),
    /// Redeem an invitation: prints the token that carries your relations in the tenant.
    #[command(subcommand)]
    Invitation(people::InvitationCmd),
    /// Log in as yourself (OAuth 2.0 device authorization): shows a code and a URL; confirm it
    /// in your signed-in browser, and the CLI keeps your 12-hour token in
    /// `DATA_DIR/login-TENANT.token` (used when AIRLOCK_TOKEN is not set).
    Login {
        #[command(flatten)]
        remote: Remote,
    },
    /// Who the token is: tenant, subject, roles.
    Whoami {
        #[command(flatten)]
        remote: Remote,
    },
    /// OpenID CIBA: approvers and clients of Airlock's provider, and the tenant's external OP.
    #[command(subcommand)]
    Ciba(ciba::CibaCmd),
    /// Which tool calls (and agent runs) wait for a human's approval, in which role.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Read or verify the audit trail (`--verify` exits non-zero when the chain is broken);
    /// export it with its signed checkpoints and verify that offline (`export`, `verify`).
    Audit {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        action: Option<audit::AuditCmd>,
        /// Verify the hash chain instead of listing events.
        #[arg(long)]
        verify: bool,
        /// The host's own chain (host-wide work; the operator's token) instead of the tenant's.
        #[arg(long, global = true)]
        host: bool,
        /// Only events after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: i64,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
}

#[derive(Subcommand, Debug)]
pub enum ComponentCmd {
    /// Add (or replace) a component from a .wasm file.
    Add {
        #[command(flatten)]
        remote: Remote,
        name: String,
        file: PathBuf,
    },
    /// List components and their tools.
    List {
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Subcommand, Debug)]
pub enum TupleCmd {
    /// Write a tuple, e.g. `airlock tuple write agent:support-bot can_use tool:billing.lookup-customer`.
    Write {
        #[command(flatten)]
        remote: Remote,
        user: String,
        relation: String,
        object: String,
    },
    /// Delete a tuple; takes effect for the very next check.
    Delete {
        #[command(flatten)]
        remote: Remote,
        user: String,
        relation: String,
        object: String,
    },
    /// List tuples, optionally only those on one object.
    List {
        #[command(flatten)]
        remote: Remote,
        #[arg(long)]
        object: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ModelCmd {
    /// Make the model in FILE (OpenFGA DSL, schema 1.1) the tenant's active model.
    Write {
        #[command(flatten)]
        remote: Remote,
        file: PathBuf,
    },
    /// Print the tenant's active model.
    Show {
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Subcommand, Debug)]
pub enum AgentCmd {
    /// Create an agent and print its token (shown once).
    Create {
        #[command(flatten)]
        remote: Remote,
        name: String,
    },
    /// Revoke an agent: its token is refused from now on.
    Revoke {
        #[command(flatten)]
        remote: Remote,
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConnectionCmd {
    /// Create or replace a connection. The secret is read from the environment variable named by `--secret-env`.
    Put {
        #[command(flatten)]
        remote: Remote,
        name: String,
        /// `bearer`, `api_key`, `oauth2_refresh` or `oauth2_client_credentials` (default: the
        /// slot's kind when filling an installed package's slot, else `bearer`).
        #[arg(long)]
        kind: Option<String>,
        /// Put it in this agent's private namespace instead of the tenant's.
        #[arg(long)]
        agent: Option<String>,
        /// OAuth2 kinds: the provider's token endpoint.
        #[arg(long)]
        token_url: Option<String>,
        /// OAuth2 kinds: the client id at the provider.
        #[arg(long)]
        client_id: Option<String>,
        /// OAuth2 kinds: the scope to ask for.
        #[arg(long)]
        scope: Option<String>,
        /// `oauth2_refresh`: the provider's authorization endpoint; the secret may then be only
        /// `{"client_secret": ...}`, and an admin presses Connect on the console.
        #[arg(long)]
        authorize_url: Option<String>,
        /// OAuth2 kinds: let `vault.token` hand out short-lived access tokens.
        #[arg(long)]
        expose_token: bool,
        /// Let the connection reach loopback or private addresses (a name resolving to one, or
        /// an address written as such, e.g. a local test server).
        #[arg(long)]
        allow_private_network: bool,
        /// A host (or host:port) the credential may be sent to; repeat for several (default:
        /// the hosts an installed package's slot declared; required otherwise).
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// Base URL for relative request paths.
        #[arg(long)]
        base_url: Option<String>,
        /// Require an approval grant for every request.
        #[arg(long)]
        requires_grant: bool,
        /// Name of the environment variable holding the secret (keeps it out of shell history).
        #[arg(long, default_value = "AIRLOCK_SECRET")]
        secret_env: String,
        /// Filling an installed package's slot: allow hosts the package did not declare.
        #[arg(long)]
        allow_undeclared_host: bool,
    },
    /// List connections (metadata only).
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// Replace a connection's secret (from `--secret-env`), keeping its settings.
    Rotate {
        #[command(flatten)]
        remote: Remote,
        name: String,
        #[arg(long)]
        agent: Option<String>,
        #[arg(long, default_value = "AIRLOCK_SECRET")]
        secret_env: String,
    },
    /// Delete a connection and its secret.
    Delete {
        #[command(flatten)]
        remote: Remote,
        name: String,
        #[arg(long)]
        agent: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum VaultCmd {
    /// Give the tenant a new data key and re-seal its secrets with it.
    RotateTenantKey {
        #[command(flatten)]
        remote: Remote,
    },
    /// Re-seal every data key under a new master key (base64 of 32 bytes, read from an environment variable).
    RotateMasterKey {
        #[command(flatten)]
        remote: Remote,
        /// Name of the environment variable holding the new key.
        #[arg(long, default_value = "AIRLOCK_NEW_MASTER_KEY")]
        new_key_env: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ApprovalCmd {
    /// Verify an approval's proof offline: that the approver's passkey signed this exact
    /// action. Fetches the proof (or reads `--proof FILE`, a saved `GET /v1/approvals/{id}/proof`)
    /// and checks it here with webauthn-rs, trusting nothing the host computed. Exits non-zero
    /// when it does not verify.
    Verify {
        #[command(flatten)]
        remote: Remote,
        id: String,
        /// A saved proof (`{"approval", "proof"}`) to check instead of fetching it.
        #[arg(long)]
        proof: Option<std::path::PathBuf>,
    },
    /// List approval requests (pending by default).
    List {
        #[command(flatten)]
        remote: Remote,
        /// pending, approved, denied, expired, consumed or all.
        #[arg(long, default_value = "pending")]
        status: String,
    },
    /// Approve a request, as the member whose token this is (`AIRLOCK_TOKEN`). Approving
    /// needs that person's passkey over the exact action: the command prints the page where
    /// they sign it (a decision is always made as the token's member, never as a name given here).
    Approve {
        #[command(flatten)]
        remote: Remote,
        id: String,
    },
    /// Deny a request, as the member whose token this is (no passkey needed to deny).
    Deny {
        #[command(flatten)]
        remote: Remote,
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
}

/// Runs a parsed command line; returns the process exit code.
impl Cli {
    /// The metrics and traces `serve` was asked for (other commands have none).
    pub fn telemetry(&self) -> crate::telemetry::TelemetryOptions {
        match &self.command {
            Command::Serve { telemetry, .. } => telemetry.clone(),
            _ => crate::telemetry::TelemetryOptions::default(),
        }
    }

    /// Whether the command serves until stopped (`serve`, `mcp`), rather than doing one thing
    /// and exiting: only such a process wants threads that look after its memory.
    pub fn serves(&self) -> bool {
        matches!(self.command, Command::Serve { .. } | Command::Mcp { .. })
    }
}

pub async fn run(cli: Cli) -> i32 {
    let result = match cli.command {
        Command::Serve {
            listen, data_dir, database_url, openfga, public_url, audit_witness, audit_gather_us, ..
        } => match openfga.config() {
            Ok(remote) => {
                let audit = serve::AuditOptions {
                    witness: audit_witness,
                    gather: std::time::Duration::from_micros(audit_gather_us),
                };
                serve::run(listen, data_dir, database_url, remote, public_url, audit).await
            }
            Err(e) => Err(e),
        },
        Command::Key { out } => package::key(&out),
        Command::Package { folder, key, out, search } => package::package(&folder, &key, &out, &search),
        Command::Mcp { agent, tenant, data_dir, database_url } => {
            serve::mcp_stdio(crate::agents::Agent { tenant, name: agent, on_behalf_of: vec![] }, data_dir, database_url)
                .await
        }
        Command::Ciba(cmd) => ciba::run(cmd).await,
        Command::Policy(cmd) => policy::run(cmd).await,
        Command::Install { remote, package, allow_private_network } => {
            install::install(&remote, &package, &allow_private_network).await
        }
        Command::Upgrade { remote, package, yes, dry_run } => install::upgrade(&remote, &package, yes, dry_run).await,
        Command::Uninstall { remote, agent } => install::uninstall(&remote, &agent).await,
        Command::Catalog { remote } => install::catalog(&remote).await,
        Command::Publisher(cmd) => install::publisher(cmd).await,
        Command::Audit { remote, host, action: Some(action), .. } => audit::run(action, &remote, host).await,
        other => client::run(other).await,
    };
    match result {
        Ok(()) => 0,
        Err(message) => {
            eprintln!("error: {message}");
            1
        }
    }
}
