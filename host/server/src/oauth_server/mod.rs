//! Airlock as the OAuth 2.1 authorization server of its own MCP endpoint, as the MCP
//! authorization specification asks, so that an MCP client nobody here wrote (Claude, VS Code,
//! the MCP Inspector, the official SDKs) connects by itself:
//!
//! 1. `/mcp` answers a request without a token 401 with `WWW-Authenticate: Bearer
//!    resource_metadata=".../.well-known/oauth-protected-resource/mcp"` (RFC 9728);
//! 2. that document names this host as the authorization server, whose metadata (RFC 8414,
//!    `/.well-known/oauth-authorization-server`) gives the endpoints below;
//! 3. the client registers itself ([`clients`], RFC 7591 dynamic registration: no token
//!    needed, so registrations are capped per hour and purged when never used);
//! 4. it sends the person's browser to `/oauth/authorize` (authorization code with PKCE S256
//!    only, the resource indicator of RFC 8707 checked to be this host's `/mcp`): the person
//!    signs in (passkey or single sign-on), picks the agent identity the client acts as (or a
//!    new agent for it, with no rights), and consents ([`consent`] renders the page);
//! 5. the code is redeemed at `/oauth/token` for a **delegated** token: `sub` the person,
//!    `act` the agent, `aud` the MCP resource, ten minutes, and a refresh token that rotates
//!    on every use ([`grants`]); a replayed code or refresh token revokes the grant.
//!
//! A delegated token is accepted only at `/mcp` (its audience), and a call through it needs
//! both the person and the agent to be allowed (`Airlock::may_use`); the audit records the
//! chain `user -> agent -> tool`.

pub mod clients;
pub mod consent;
pub mod grants;

/// The scopes a client may ask for: `mcp` (call the tools the person and agent may use), and
/// `offline_access` (accepted for clients that always ask it: every grant has a refresh token).
pub const SCOPES: [&str; 2] = ["mcp", "offline_access"];

/// The path of the protected resource, appended to the host's public base URL.
pub const MCP_PATH: &str = "/mcp";

/// The resource identifier of this host's MCP endpoint (RFC 8707), from its public base URL.
pub fn mcp_resource(base: &str) -> String {
    format!("{}{MCP_PATH}", base.trim_end_matches('/'))
}

/// Whether `scope` (space-separated) asks only for what [`SCOPES`] offers; the scope to grant.
pub fn granted_scope(scope: Option<&str>) -> Result<String, String> {
    let asked: Vec<&str> = scope.unwrap_or("mcp").split_whitespace().collect();
    if let Some(unknown) = asked.iter().find(|s| !SCOPES.contains(s)) {
        let shown: String = unknown.chars().take(64).collect();
        return Err(format!("unknown scope `{shown}`: this server grants {}", SCOPES.join(", ")));
    }
    let mut granted: Vec<&str> = SCOPES.iter().copied().filter(|s| asked.contains(s)).collect();
    if granted.is_empty() {
        granted.push("mcp");
    }
    Ok(granted.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_checked_and_normalised() {
        assert_eq!(granted_scope(None).unwrap(), "mcp");
        assert_eq!(granted_scope(Some("offline_access mcp")).unwrap(), "mcp offline_access");
        assert_eq!(granted_scope(Some("")).unwrap(), "mcp");
        assert!(granted_scope(Some("mcp admin")).unwrap_err().contains("`admin`"));
        assert_eq!(mcp_resource("http://h:1/"), "http://h:1/mcp");
    }
}
