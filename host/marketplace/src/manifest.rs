//! The manifest: what an agent package declares it is and needs.
//!
//! Parsing is strict (`deny_unknown_fields`): a field this host does not know could be a
//! permission it would silently ignore, so it is refused rather than skipped. Semantic checks
//! ("policy sanity") are in [`crate::sanity`]; this module only knows the shape.

use serde::{Deserialize, Serialize};

use crate::PackageError;

/// Placeholder for the installed agent's name in tuples.
pub const AGENT_PLACEHOLDER: &str = "$AGENT";
/// Placeholder for the installing tenant's id in tuples.
pub const TENANT_PLACEHOLDER: &str = "$TENANT";

/// A package manifest (`manifest.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The agent's name (lower-case letters, digits, `-`); `$AGENT` in tuples becomes it.
    pub name: String,
    /// Semantic version of the package, so an upgrade can be told from a reinstall.
    pub version: String,
    /// The publisher id: the name its key is trusted under.
    pub publisher: String,
    /// What the agent does, for the person deciding to install it.
    pub description: String,
    /// The components the agent's tools live in.
    pub tools: Vec<ToolComponent>,
    /// An OpenFGA DSL fragment: only `type` blocks with their `relations` and `define`s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The relationship tuples install writes, with `$AGENT` / `$TENANT` placeholders.
    #[serde(default)]
    pub tuples: Vec<TupleTemplate>,
    /// Credential slots the tenant admin fills (or connects) after install.
    #[serde(default)]
    pub connections: Vec<ConnectionSlot>,
    /// Which tool actions need which approver role.
    #[serde(default)]
    pub approval_policies: Vec<ApprovalPolicy>,
    /// An approval every run of the agent needs before any step goes ahead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_approval: Option<EntryApproval>,
    /// Per-call resource limits, each at most the host's cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
}

/// One component file and its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolComponent {
    /// The component name; its tools are `COMPONENT.TOOL`.
    pub component: String,
    /// In a package, always `components/COMPONENT.wasm`; in an author's folder, where the
    /// built `.wasm` is (relative to the folder) before [`crate::build`] copies it.
    pub file: String,
    /// Lower-case hex sha256 of the file. Required in a package; [`crate::build`] fills it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// A tuple with placeholders, in OpenFGA's `{user, relation, object}` order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TupleTemplate {
    pub user: String,
    pub relation: String,
    pub object: String,
}

/// The credential kinds the vault knows (same names as `airlock_vault::ConnectionKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionKind {
    ApiKey,
    Bearer,
    Oauth2Refresh,
    Oauth2ClientCredentials,
}

impl ConnectionKind {
    /// Whether the kind gets its tokens from an OAuth2 token endpoint (and so needs `oauth`).
    pub fn is_oauth2(self) -> bool {
        matches!(self, ConnectionKind::Oauth2Refresh | ConnectionKind::Oauth2ClientCredentials)
    }
}

/// A connection the agent needs; install creates it empty in the agent's namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionSlot {
    /// Name inside the agent's namespace: the vault stores it as `AGENT/NAME`.
    pub name: String,
    pub kind: ConnectionKind,
    /// `host` or `host:port`, exact; the vault refuses to send the credential anywhere else.
    pub allowed_hosts: Vec<String>,
    /// What the admin should put in the slot.
    pub description: String,
    /// For the OAuth2 kinds: where tokens come from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth: Option<OAuthSlot>,
}

/// The OAuth2 client an OAuth2 connection slot uses (its secret is the admin's to supply).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthSlot {
    pub token_url: String,
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// `oauth2_refresh` only: the provider's authorization endpoint, so the tenant admin
    /// connects (Connect) instead of pasting a refresh token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorize_url: Option<String>,
}

/// `tool`'s `action` needs an approver holding `role` on the tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalPolicy {
    /// `COMPONENT.TOOL`, a tool of this package.
    pub tool: String,
    /// `*`: every call of the tool waits for the approver (the only form the host enforces).
    pub action: String,
    /// The relation an approver must hold on `tenant:TENANT` (e.g. `cfo`).
    pub role: String,
    /// How long a request waits, and how long a grant lasts once approved.
    pub ttl_seconds: u64,
}

/// Entry approval: a human approves a run before any of its steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryApproval {
    pub role: String,
    pub ttl_seconds: u64,
}

/// Per-call limits the agent asks for; absent ones take the host's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
}

impl Manifest {
    /// Parses `manifest.json` bytes: shape only (see [`Manifest::validate`] for the rules).
    pub fn parse(bytes: &[u8]) -> Result<Manifest, PackageError> {
        serde_json::from_slice(bytes).map_err(|e| PackageError::MalformedManifest(e.to_string()))
    }

    /// Pretty JSON with a trailing newline, as [`crate::build`] writes it.
    pub fn to_json(&self) -> Result<Vec<u8>, PackageError> {
        let mut out = serde_json::to_vec_pretty(self).map_err(|e| PackageError::Build(e.to_string()))?;
        out.push(b'\n');
        Ok(out)
    }

    /// The concrete things an installer provisions for `agent` in `tenant`: placeholders
    /// substituted, connection names namespaced, policies keyed as the approvals crate keys
    /// them. Call it on a verified manifest; it does not re-check anything.
    pub fn provisioning(&self, agent: &str, tenant: &str) -> Provisioning {
        let fill = |s: &str| s.replace(AGENT_PLACEHOLDER, agent).replace(TENANT_PLACEHOLDER, tenant);
        Provisioning {
            agent: format!("agent:{agent}"),
            tuples: self
                .tuples
                .iter()
                .map(|t| TupleTemplate { user: fill(&t.user), relation: t.relation.clone(), object: fill(&t.object) })
                .collect(),
            connections: self
                .connections
                .iter()
                .map(|c| ConnectionSlot { name: format!("{agent}/{}", c.name), ..c.clone() })
                .collect(),
            policies: self
                .approval_policies
                .iter()
                .map(|p| {
                    // The host's gate keys a tool's policy as (component, tool).
                    let (component, tool) = p.tool.split_once('.').unwrap_or((p.tool.as_str(), "*"));
                    (component.to_string(), tool.to_string(), p)
                })
                .map(|(component, tool, p)| PolicyGrant {
                    tool: component,
                    action: tool,
                    role: p.role.clone(),
                    ttl_seconds: p.ttl_seconds,
                    entry: false,
                })
                .chain(self.entry_approval.iter().map(|e| PolicyGrant {
                    tool: format!("agent:{agent}"),
                    action: ENTRY_ACTION.to_string(),
                    role: e.role.clone(),
                    ttl_seconds: e.ttl_seconds,
                    entry: true,
                }))
                .collect(),
            model: self.model.clone(),
            limits: self.limits.clone().unwrap_or_default(),
        }
    }
}

/// The action an entry policy is stored under (`airlock_approvals::ENTRY_ACTION`).
pub const ENTRY_ACTION: &str = "run";

/// What install writes, for one agent in one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provisioning {
    /// The agent subject, `agent:NAME`.
    pub agent: String,
    pub tuples: Vec<TupleTemplate>,
    /// Slots with names already in the agent's namespace (`AGENT/NAME`).
    pub connections: Vec<ConnectionSlot>,
    /// Action policies, then the entry policy (keyed `agent:NAME` / [`ENTRY_ACTION`]) if any.
    pub policies: Vec<PolicyGrant>,
    /// The model fragment to merge into the tenant's model.
    pub model: Option<String>,
    pub limits: Limits,
}

/// An approval policy in the shape of `airlock_approvals::PolicySpec`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyGrant {
    pub tool: String,
    pub action: String,
    pub role: String,
    pub ttl_seconds: u64,
    pub entry: bool,
}
