//! Connections: what a credential is, where it goes, and where it may be sent.

use serde::{Deserialize, Serialize};

use crate::VaultError;

/// The kind of credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionKind {
    /// A static API key, placed as configured.
    ApiKey,
    /// A static bearer token: `Authorization: Bearer SECRET`.
    Bearer,
    /// OAuth2 with a refresh token: the host refreshes access tokens before they expire and
    /// keeps rotated refresh tokens. Secret: `{"refresh_token": ..., "client_secret": ...}`,
    /// or only `{"client_secret": ...}` when `oauth.authorize_url` is set: an admin then
    /// presses Connect and the refresh token comes from the authorization code flow.
    Oauth2Refresh,
    /// OAuth2 client credentials: the host obtains access tokens as the client.
    /// Secret: `{"client_secret": ...}`.
    Oauth2ClientCredentials,
}

/// Where an OAuth2 connection gets its access tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OAuthConfig {
    pub token_url: String,
    pub client_id: String,
    #[serde(default)]
    pub scope: Option<String>,
    /// The provider's authorization endpoint, for Connect (the authorization code flow that
    /// gets an `oauth2_refresh` connection its refresh token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorize_url: Option<String>,
}

/// Where an `oauth2_refresh` connection stands with its provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    /// A client secret and no refresh token yet: an admin presses Connect.
    NeedsConnect,
    /// A refresh token is stored.
    Connected,
    /// The provider refused the stored grant: an admin connects again.
    NeedsReconnect,
}

impl ConnectionState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ConnectionState::NeedsConnect => "needs_connect",
            ConnectionState::Connected => "connected",
            ConnectionState::NeedsReconnect => "needs_reconnect",
        }
    }

    fn parse(s: &str) -> Option<ConnectionState> {
        [ConnectionState::NeedsConnect, ConnectionState::Connected, ConnectionState::NeedsReconnect]
            .into_iter()
            .find(|c| c.as_str() == s)
    }
}

impl ConnectionKind {
    /// The kind as stored and as the API names it (`bearer`, `api_key`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionKind::ApiKey => "api_key",
            ConnectionKind::Bearer => "bearer",
            ConnectionKind::Oauth2Refresh => "oauth2_refresh",
            ConnectionKind::Oauth2ClientCredentials => "oauth2_client_credentials",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<ConnectionKind, VaultError> {
        match s {
            "api_key" => Ok(ConnectionKind::ApiKey),
            "bearer" => Ok(ConnectionKind::Bearer),
            "oauth2_refresh" => Ok(ConnectionKind::Oauth2Refresh),
            "oauth2_client_credentials" => Ok(ConnectionKind::Oauth2ClientCredentials),
            other => Err(VaultError::InvalidConnection(format!("unknown kind `{other}`"))),
        }
    }
}

/// Where the secret goes in the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", tag = "in")]
pub enum Placement {
    /// Header `name` with value `prefix` + secret (e.g. `Authorization`, `Bearer `).
    Header {
        name: String,
        #[serde(default)]
        prefix: String,
    },
    /// Query parameter `name`.
    Query { name: String },
}

/// A connection's metadata (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Connection {
    /// `NAME`, or `AGENT/NAME` in an agent's private namespace.
    pub name: String,
    pub kind: ConnectionKind,
    /// Defaults from the kind when absent: bearer goes in `Authorization`.
    #[serde(default)]
    pub placement: Option<Placement>,
    /// Where relative request URLs (`/contacts`) are resolved, e.g. `https://api.hubapi.com`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// `host` or `host:port` entries; a request's URL must match one exactly.
    pub allowed_hosts: Vec<String>,
    /// Whether every request needs an approval grant.
    #[serde(default)]
    pub requires_grant: bool,
    /// For OAuth2 kinds: the token endpoint and client.
    #[serde(default)]
    pub oauth: Option<OAuthConfig>,
    /// Whether an allowed host *name* may resolve to a loopback, private or link-local address.
    /// Off by default, so a DNS record cannot turn a SaaS connection into a way into the
    /// internal network. (An allowed IP address is always taken as meant.)
    #[serde(default)]
    pub allow_private_network: bool,
    /// Whether `vault.token` (and the token-exchange endpoint) may hand this connection's
    /// short-lived access token to the caller. Off by default: the host uses the credential,
    /// nobody holds it. Only OAuth2 kinds have short-lived tokens to hand out.
    #[serde(default)]
    pub expose_token: bool,
    /// For `oauth2_refresh`: where it stands with its provider (kept by the vault: what
    /// [`crate::Vault::put`] is given here is ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ConnectionState>,
}

impl Connection {
    /// The effective placement.
    pub fn placement(&self) -> Placement {
        match (&self.placement, self.kind) {
            (Some(p), _) => p.clone(),
            (
                None,
                ConnectionKind::Bearer | ConnectionKind::Oauth2Refresh | ConnectionKind::Oauth2ClientCredentials,
            ) => Placement::Header { name: "authorization".into(), prefix: "Bearer ".into() },
            (None, ConnectionKind::ApiKey) => Placement::Header { name: "x-api-key".into(), prefix: String::new() },
        }
    }

    /// The agent whose private namespace holds this connection (`AGENT/NAME`), if any.
    pub fn owner(&self) -> Option<&str> {
        self.name.split_once('/').map(|(agent, _)| agent)
    }

    /// The name of connection `name` in `agent`'s private namespace.
    pub fn in_namespace(agent: &str, name: &str) -> String {
        format!("{agent}/{name}")
    }

    pub(crate) fn validate(&self) -> Result<(), VaultError> {
        let bad = |m: String| Err(VaultError::InvalidConnection(m));
        let (owner, local) = match self.name.split_once('/') {
            Some((owner, local)) => (Some(owner), local),
            None => (None, self.name.as_str()),
        };
        if local.is_empty() || !local.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.') {
            return bad(format!("name `{}` must be letters, digits, `-`, `_` or `.`", self.name));
        }
        if let Some(owner) = owner {
            if owner.is_empty() || !owner.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
                return bad(format!(
                    "`{}`: an agent namespace must be an agent name (lower-case letters, digits, `-`) before one `/`",
                    self.name
                ));
            }
        }
        let oauth_kind = matches!(self.kind, ConnectionKind::Oauth2Refresh | ConnectionKind::Oauth2ClientCredentials);
        if self.expose_token && self.requires_grant {
            return bad("`expose_token` and `requires_grant` exclude each other: a handed-out token could be used \
                        without an approval"
                .into());
        }
        if self.expose_token && !oauth_kind {
            return bad(
                "`expose_token` needs an OAuth2 kind: a static key is not short-lived and is never handed out".into()
            );
        }
        if self.allowed_hosts.is_empty() {
            return bad("`allowed_hosts` is empty: name the hosts this credential may be sent to".into());
        }
        for h in &self.allowed_hosts {
            if h.is_empty() || h.contains('/') || h.contains('*') || h.contains('@') {
                return bad(format!("allowed host `{h}` must be `host` or `host:port`"));
            }
        }
        match (&self.oauth, oauth_kind) {
            (None, true) => return bad("an OAuth2 connection needs `oauth`: token_url and client_id".into()),
            (Some(o), true) => {
                match url::Url::parse(&o.token_url) {
                    Ok(u) if u.scheme() == "https" || u.scheme() == "http" => {}
                    _ => return bad(format!("token url `{}` must be an absolute http or https url", o.token_url)),
                }
                match (&o.authorize_url, self.kind) {
                    (None, _) => {}
                    (Some(_), ConnectionKind::Oauth2ClientCredentials) => {
                        return bad("`authorize_url` is for `oauth2_refresh` connections (Connect)".into())
                    }
                    (Some(a), _) => match url::Url::parse(a) {
                        Ok(u) if u.scheme() == "https" || u.scheme() == "http" => {}
                        _ => return bad(format!("authorize url `{a}` must be an absolute http or https url")),
                    },
                }
            }
            (Some(_), false) => return bad("`oauth` applies only to the oauth2 kinds".into()),
            (None, false) => {}
        }
        if let Some(base) = &self.base_url {
            match url::Url::parse(base) {
                Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
                _ => return bad(format!("base url `{base}` must be an absolute http or https url")),
            }
        }
        match self.placement() {
            Placement::Header { name, .. } if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() => {
                bad(format!("header name `{name}` is not valid"))
            }
            Placement::Query { name } if name.is_empty() => bad("query parameter name is empty".into()),
            _ => Ok(()),
        }
    }

    pub(crate) fn placement_json(&self) -> String {
        serde_json::to_string(&self.placement()).unwrap_or_default()
    }

    pub(crate) fn allowed_hosts_json(&self) -> String {
        serde_json::to_string(&self.allowed_hosts).unwrap_or_default()
    }
}

/// Associated data binding a sealed secret to its row.
pub(crate) fn aad(tenant: &str, name: &str) -> Vec<u8> {
    format!("airlock-connection\0{tenant}\0{name}").into_bytes()
}

pub(crate) const COLUMNS: &str =
    "name, kind, placement, base_url, allowed_hosts, requires_grant, sealed_secret, oauth, \
     allow_private, expose_token, oauth_state";
pub(crate) type Row =
    (String, String, String, Option<String>, String, i64, Vec<u8>, Option<String>, i64, i64, Option<String>);

pub(crate) fn from_row(r: Row) -> Result<(Connection, Vec<u8>), VaultError> {
    let (name, kind, placement, base_url, hosts, requires_grant, sealed, oauth, allow_private, expose, state) = r;
    let corrupt = |what: &str| VaultError::InvalidConnection(format!("stored {what} of `{name}` is unreadable"));
    let conn = Connection {
        kind: ConnectionKind::parse(&kind)?,
        placement: Some(serde_json::from_str(&placement).map_err(|_| corrupt("placement"))?),
        base_url,
        allowed_hosts: serde_json::from_str(&hosts).map_err(|_| corrupt("host list"))?,
        requires_grant: requires_grant != 0,
        allow_private_network: allow_private != 0,
        expose_token: expose != 0,
        oauth: match oauth {
            Some(o) => Some(serde_json::from_str(&o).map_err(|_| corrupt("oauth settings"))?),
            None => None,
        },
        state: state.as_deref().and_then(ConnectionState::parse),
        name: name.clone(),
    };
    Ok((conn, sealed))
}
