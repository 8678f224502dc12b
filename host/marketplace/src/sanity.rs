//! Policy sanity: the rules a manifest must meet beyond its JSON shape.
//!
//! The point is that a package declares what *its own* agent may do and nothing else. The
//! rules, checked in this order and all reported at once (each with its JSON path):
//!
//! - `name` is an agent name, `version` is semver, `publisher` a simple name, `description`
//!   non-empty.
//! - `tools`: at least one; component names unique; in a package `file` is exactly
//!   `components/COMPONENT.wasm` and `sha256` is lower-case hex.
//! - `model`: only `type` / `relations` / `define` lines, never a host type
//!   ([`crate::model::RESERVED_TYPES`]).
//! - `tuples`: `user` is exactly `agent:$AGENT` (a package grants nothing to other agents,
//!   users or usersets); placeholders are only `$AGENT` and `$TENANT`, only in ids; `object`
//!   is one of: `tool:COMPONENT.TOOL` with a component of this package (relation `can_use`),
//!   `connection:$AGENT/NAME` with a connection of this package (relation `can_use`), or an
//!   object of a type the model fragment defines, with a relation that type defines.
//!   No duplicates.
//! - `connections`: names unique; `allowed_hosts` non-empty, each `host` or `host:port`,
//!   lower-case, no wildcard, scheme, path or user info; `oauth` present exactly for the
//!   OAuth2 kinds, its `token_url` https (http only on loopback).
//! - `approval_policies`: `tool` is `COMPONENT.TOOL` of this package, `action` a name or `*`,
//!   `role` a relation name, `ttl_seconds` in 1 ..= 604800 (the approvals engine's bounds);
//!   one policy per (tool, action). `entry_approval` the same for role and ttl.
//! - `limits`: each at least 1 and at most the host's [`HostCaps`].

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::manifest::{ConnectionKind, Manifest, TupleTemplate, AGENT_PLACEHOLDER, TENANT_PLACEHOLDER};
use crate::model::{parse_fragment, Defined};
use crate::names::{is_agent_name, is_object_id, is_relation, is_sha256_hex, is_simple_name};
use crate::{PackageError, Violation};

/// The longest ttl an approval policy may have: the approvals engine's `MAX_TTL`, 7 days.
pub const MAX_TTL_SECONDS: u64 = 7 * 24 * 3600;

/// The most a package may ask for, per call. The server passes its configured limits; the
/// default is the runtime's default limits, so a package can only ask for less unless the
/// host is configured to allow more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostCaps {
    pub deadline_ms: u64,
    pub memory_mib: u64,
    pub fuel: u64,
}

impl Default for HostCaps {
    fn default() -> Self {
        HostCaps { deadline_ms: 10_000, memory_mib: 64, fuel: 2_000_000_000 }
    }
}

/// Which form of the manifest is checked: they differ only in `tools[].file` / `sha256`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// An author's folder, before [`crate::build`]: `file` is any relative path, `sha256`
    /// optional (when given, the built file must match it).
    Source,
    /// A package: `file` is `components/COMPONENT.wasm`, `sha256` required.
    Package,
}

impl Manifest {
    /// Checks every policy-sanity rule (see the module docs), reporting all violations.
    pub fn validate(&self, stage: Stage, caps: &HostCaps) -> Result<(), PackageError> {
        let mut v = Check::default();
        v.identity(self);
        v.tools(self, stage);
        let defined = match &self.model {
            Some(text) => parse_fragment(text).unwrap_or_else(|e| {
                v.fail("model".into(), e);
                Defined::new()
            }),
            None => Defined::new(),
        };
        v.tuples(self, &defined);
        v.connections(self);
        v.policies(self);
        v.limits(self, caps);
        if v.0.is_empty() {
            Ok(())
        } else {
            Err(PackageError::InvalidManifest(v.0))
        }
    }
}

#[derive(Default)]
struct Check(Vec<Violation>);

impl Check {
    fn fail(&mut self, at: String, reason: String) {
        self.0.push(Violation { at, reason });
    }

    fn identity(&mut self, m: &Manifest) {
        if !is_agent_name(&m.name) {
            self.fail(
                "name".into(),
                format!(
                    "`{}` is not an agent name (lower-case letters, digits and `-`, starting with a letter)",
                    m.name
                ),
            );
        }
        if let Err(e) = semver::Version::parse(&m.version) {
            self.fail("version".into(), format!("`{}` is not a semantic version: {e}", m.version));
        }
        if !is_simple_name(&m.publisher) {
            self.fail("publisher".into(), format!("`{}` is not a publisher id", m.publisher));
        }
        if m.description.trim().is_empty() || m.description.len() > 4096 {
            self.fail("description".into(), "must be non-empty and at most 4096 bytes".into());
        }
    }

    fn tools(&mut self, m: &Manifest, stage: Stage) {
        if m.tools.is_empty() {
            self.fail("tools".into(), "a package needs at least one component".into());
        }
        let mut seen = HashSet::new();
        for (i, t) in m.tools.iter().enumerate() {
            if !is_simple_name(&t.component) {
                self.fail(format!("tools[{i}].component"), format!("`{}` is not a component name", t.component));
            } else if !seen.insert(t.component.as_str()) {
                self.fail(format!("tools[{i}].component"), format!("`{}` is listed twice", t.component));
            }
            match stage {
                Stage::Package => {
                    let expected = format!("components/{}.wasm", t.component);
                    if t.file != expected {
                        self.fail(format!("tools[{i}].file"), format!("`{}` must be `{expected}`", t.file));
                    }
                    if t.sha256.is_none() {
                        self.fail(format!("tools[{i}].sha256"), "missing: a package pins every component".into());
                    }
                }
                Stage::Source => {
                    if t.file.is_empty() || t.file.starts_with('/') || std::path::Path::new(&t.file).is_absolute() {
                        self.fail(format!("tools[{i}].file"), format!("`{}` must be a relative path", t.file));
                    }
                }
            }
            if let Some(d) = t.sha256.as_deref().filter(|d| !is_sha256_hex(d)) {
                self.fail(format!("tools[{i}].sha256"), format!("`{d}` is not lower-case hex sha256"));
            }
        }
    }

    fn tuples(&mut self, m: &Manifest, defined: &Defined) {
        let mut seen: HashSet<&TupleTemplate> = HashSet::new();
        for (i, t) in m.tuples.iter().enumerate() {
            let at = |field: &str| format!("tuples[{i}].{field}");
            for (field, value) in [("user", &t.user), ("relation", &t.relation), ("object", &t.object)] {
                if let Some(bad) = unknown_placeholder(value) {
                    self.fail(
                        at(field),
                        format!("unknown placeholder `{bad}` in `{value}` (only `$AGENT`, `$TENANT`)"),
                    );
                }
            }
            let user = format!("agent:{AGENT_PLACEHOLDER}");
            if t.user != user {
                self.fail(
                    at("user"),
                    format!("`{}` is not `{user}`: a package grants permissions only to its own agent", t.user),
                );
            }
            if !is_relation(&t.relation) {
                self.fail(at("relation"), format!("`{}` is not a relation name", t.relation));
            }
            if let Err(reason) = object_allowed(m, defined, &t.relation, &t.object) {
                self.fail(at("object"), reason);
            }
            if !seen.insert(t) {
                self.fail(format!("tuples[{i}]"), "duplicate tuple".into());
            }
        }
    }

    fn connections(&mut self, m: &Manifest) {
        let mut seen = HashSet::new();
        for (i, c) in m.connections.iter().enumerate() {
            let at = |field: &str| format!("connections[{i}].{field}");
            if !is_simple_name(&c.name) {
                self.fail(at("name"), format!("`{}` is not a connection name", c.name));
            } else if !seen.insert(c.name.as_str()) {
                self.fail(at("name"), format!("`{}` is declared twice", c.name));
            }
            if c.allowed_hosts.is_empty() {
                self.fail(at("allowed_hosts"), "at least one host: the credential goes nowhere else".into());
            }
            for (j, h) in c.allowed_hosts.iter().enumerate() {
                if let Err(reason) = check_host(h) {
                    self.fail(format!("connections[{i}].allowed_hosts[{j}]"), reason);
                }
            }
            if c.description.trim().is_empty() {
                self.fail(at("description"), "must say what the admin should put in the slot".into());
            }
            match (&c.oauth, c.kind.is_oauth2()) {
                (None, true) => self.fail(at("oauth"), "required for the OAuth2 kinds".into()),
                (Some(_), false) => self.fail(at("oauth"), "only the OAuth2 kinds have a token endpoint".into()),
                (Some(o), true) => {
                    if let Err(reason) = check_token_url(&o.token_url) {
                        self.fail(format!("connections[{i}].oauth.token_url"), reason);
                    }
                    if o.client_id.trim().is_empty() {
                        self.fail(format!("connections[{i}].oauth.client_id"), "must not be empty".into());
                    }
                    match (&o.authorize_url, c.kind) {
                        (None, _) => {}
                        (Some(_), ConnectionKind::Oauth2ClientCredentials) => self.fail(
                            format!("connections[{i}].oauth.authorize_url"),
                            "only `oauth2_refresh` connects through the provider".into(),
                        ),
                        (Some(u), _) => {
                            if let Err(reason) = check_token_url(u) {
                                self.fail(format!("connections[{i}].oauth.authorize_url"), reason);
                            }
                        }
                    }
                }
                (None, false) => {}
            }
        }
    }

    fn policies(&mut self, m: &Manifest) {
        let mut seen = HashSet::new();
        for (i, p) in m.approval_policies.iter().enumerate() {
            let at = |field: &str| format!("approval_policies[{i}].{field}");
            if let Err(reason) = own_tool(m, &p.tool, &p.tool) {
                self.fail(at("tool"), reason);
            }
            if p.action != "*" {
                self.fail(
                    at("action"),
                    format!(
                        "`{}`: only `*` is enforced (the host holds every call of the tool for the approver); a component that wants a decision per action asks through its `approval` import",
                        p.action
                    ),
                );
            }
            self.role_and_ttl(&at("role"), &p.role, &at("ttl_seconds"), p.ttl_seconds);
            if !seen.insert((p.tool.as_str(), p.action.as_str())) {
                self.fail(
                    format!("approval_policies[{i}]"),
                    format!("a second policy for `{}` `{}`", p.tool, p.action),
                );
            }
        }
        if let Some(e) = &m.entry_approval {
            self.role_and_ttl("entry_approval.role", &e.role, "entry_approval.ttl_seconds", e.ttl_seconds);
        }
    }

    fn role_and_ttl(&mut self, role_at: &str, role: &str, ttl_at: &str, ttl: u64) {
        if !is_relation(role) {
            self.fail(role_at.into(), format!("`{role}` is not a role (a relation name on the tenant)"));
        }
        if !(1..=MAX_TTL_SECONDS).contains(&ttl) {
            self.fail(ttl_at.into(), format!("{ttl} is outside 1 ..= {MAX_TTL_SECONDS} seconds"));
        }
    }

    fn limits(&mut self, m: &Manifest, caps: &HostCaps) {
        let Some(l) = &m.limits else { return };
        for (field, value, cap) in [
            ("deadline_ms", l.deadline_ms, caps.deadline_ms),
            ("memory_mib", l.memory_mib, caps.memory_mib),
            ("fuel", l.fuel, caps.fuel),
        ] {
            if let Some(value) = value {
                if value == 0 || value > cap {
                    self.fail(format!("limits.{field}"), format!("{value} is outside the host's 1 ..= {cap}"));
                }
            }
        }
    }
}

/// The first `$...` that is not one of the two placeholders.
fn unknown_placeholder(s: &str) -> Option<String> {
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        let tail = &rest[pos..];
        if let Some(known) = [AGENT_PLACEHOLDER, TENANT_PLACEHOLDER].into_iter().find(|p| tail.starts_with(p)) {
            rest = &tail[known.len()..];
        } else {
            let end = tail[1..].find(|c: char| !c.is_ascii_alphanumeric() && c != '_').map_or(tail.len(), |e| e + 1);
            return Some(tail[..end].to_string());
        }
    }
    None
}

/// `COMPONENT.TOOL` with a component of this package.
/// `shown` is how the value appears in the manifest, for the message.
fn own_tool(m: &Manifest, tool: &str, shown: &str) -> Result<(), String> {
    let Some((component, name)) = tool.split_once('.') else {
        return Err(format!("`{shown}` is not `COMPONENT.TOOL`"));
    };
    if !is_simple_name(name) {
        return Err(format!("`{shown}`: `{name}` is not a tool name"));
    }
    if !m.tools.iter().any(|t| t.component == component) {
        return Err(format!("`{shown}`: component `{component}` is not in this package"));
    }
    Ok(())
}

fn object_allowed(m: &Manifest, defined: &Defined, relation: &str, object: &str) -> Result<(), String> {
    let Some((ty, id)) = object.split_once(':') else {
        return Err(format!("`{object}` is not `type:id`"));
    };
    let sample = id.replace(AGENT_PLACEHOLDER, "agent").replace(TENANT_PLACEHOLDER, "tenant");
    if !is_relation(ty) || !is_object_id(&sample) {
        return Err(format!("`{object}` is not `type:id`"));
    }
    let can_use_only = |what: &str| {
        if relation == "can_use" {
            Ok(())
        } else {
            Err(format!("`{object}`: the only relation a package may write on its own {what} is `can_use`"))
        }
    };
    match ty {
        "tool" => {
            own_tool(m, id, object)?;
            can_use_only("tools")
        }
        "connection" => {
            let prefix = format!("{AGENT_PLACEHOLDER}/");
            let Some(name) = id.strip_prefix(&prefix) else {
                return Err(format!("`{object}` is not `connection:$AGENT/NAME`: only the agent's own connections"));
            };
            if !m.connections.iter().any(|c| c.name == name) {
                return Err(format!("`{object}`: connection `{name}` is not declared in `connections`"));
            }
            can_use_only("connections")
        }
        _ => match defined.get(ty) {
            Some(relations) if relations.iter().any(|r| r == relation) => Ok(()),
            Some(_) => Err(format!("`{object}`: the model fragment does not define `{relation}` on `{ty}`")),
            None => Err(format!(
                "`{object}`: type `{ty}` is not this package's (only `tool:COMPONENT.TOOL`, \
                 `connection:$AGENT/NAME` or types the model fragment defines)"
            )),
        },
    }
}

/// `host` or `host:port`: a lower-case DNS name, an IPv4 address or a bracketed IPv6 address.
pub fn check_host(entry: &str) -> Result<(), String> {
    if entry.contains('*') {
        return Err(format!("`{entry}`: wildcards are not allowed, list each host"));
    }
    if entry.contains("://") || entry.contains(['/', '@', '?', '#']) || entry.contains(char::is_whitespace) {
        return Err(format!("`{entry}` is not `host` or `host:port` (no scheme, path or user info)"));
    }
    let (host, port) = match entry.strip_prefix('[') {
        Some(rest) => {
            let Some((inside, after)) = rest.split_once(']') else {
                return Err(format!("`{entry}`: unclosed `[`"));
            };
            if inside.parse::<Ipv6Addr>().is_err() {
                return Err(format!("`{entry}`: `{inside}` is not an IPv6 address"));
            }
            match after {
                "" => return Ok(()),
                p => (None, Some(p.strip_prefix(':').ok_or_else(|| format!("`{entry}` is not `[ipv6]:port`"))?)),
            }
        }
        None => match entry.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(entry), None),
        },
    };
    if let Some(host) = host {
        if host.parse::<Ipv4Addr>().is_err() && !is_dns_name(host) {
            return Err(format!("`{entry}`: `{host}` is not a lower-case host name or IPv4 address"));
        }
    }
    match port.map(str::parse::<u16>) {
        None | Some(Ok(1..)) => Ok(()),
        Some(_) => Err(format!("`{entry}`: `{}` is not a port (1 ..= 65535)", port.unwrap_or_default())),
    }
}

fn is_dns_name(host: &str) -> bool {
    host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
}

fn check_token_url(raw: &str) -> Result<(), String> {
    let url = url::Url::parse(raw).map_err(|e| format!("`{raw}` is not a URL: {e}"))?;
    if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
        return Err(format!("`{raw}`: no user info or fragment"));
    }
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(a)) => IpAddr::V4(a).is_loopback(),
        Some(url::Host::Ipv6(a)) => IpAddr::V6(a).is_loopback(),
        None => return Err(format!("`{raw}` has no host")),
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        other => Err(format!("`{raw}`: scheme `{other}` is not https (http only on loopback)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        for ok in ["api.example.com", "api.example.com:8443", "127.0.0.1:9000", "[::1]", "[::1]:8080", "localhost"] {
            assert_eq!(check_host(ok), Ok(()), "{ok}");
        }
        for bad in [
            "*.example.com",
            "https://api.example.com",
            "api.example.com/x",
            "API.example.com",
            "a:0",
            "a:99999",
            "a:",
            "[::1",
            "[zz]",
            "u@h",
            "",
            "a..b",
        ] {
            assert!(check_host(bad).is_err(), "{bad}");
        }
        assert!(check_host("*.example.com").unwrap_err().contains("wildcards"));
    }

    #[test]
    fn placeholders() {
        assert_eq!(unknown_placeholder("agent:$AGENT"), None);
        assert_eq!(unknown_placeholder("x:$TENANT-$AGENT"), None);
        assert_eq!(unknown_placeholder("x:$USER/1"), Some("$USER".into()));
        assert_eq!(unknown_placeholder("x:$"), Some("$".into()));
    }
}
