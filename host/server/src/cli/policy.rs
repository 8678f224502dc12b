//! `airlock policy`: which tool calls the host holds for a human's approval.
//!
//! `airlock policy put offboarding.issue-refund --role cfo --ttl 15m` makes every call of that
//! tool wait until a `cfo` of the tenant approves it; `airlock policy put agent:offboarder
//! --role ops_manager` makes each run of that agent wait for an entry approval.

use std::time::Duration;

use clap::Subcommand;

use crate::api::requests::NewPolicy;

use super::client::{enc, print, Body, Client};
use super::Remote;

#[derive(Subcommand, Debug)]
pub enum PolicyCmd {
    /// Create or replace the policy of `component.tool` (`component.*` for all its tools), of
    /// every tool with a declared effect and no policy of its own (`effect:irreversible`), or
    /// the entry policy of `agent:NAME`.
    Put {
        #[command(flatten)]
        remote: Remote,
        tool: String,
        /// The relation an approver must hold on `tenant:TENANT`, e.g. `cfo`.
        #[arg(long)]
        role: String,
        /// How long a request waits and a grant lasts: `90s`, `15m`, `2h`, `1d`.
        #[arg(long, default_value = "15m", value_parser = parse_ttl)]
        ttl: Duration,
    },
    /// List the tenant's policies.
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// Delete the policy of a tool (or an agent's entry policy).
    Delete {
        #[command(flatten)]
        remote: Remote,
        tool: String,
    },
}

/// `90s`, `15m`, `2h`, `1d`, or plain seconds.
pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits.parse().map_err(|_| format!("ttl `{s}` must be a number with s, m, h or d"))?;
    let factor = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        other => return Err(format!("ttl unit `{other}` is not one of s, m, h, d")),
    };
    Ok(Duration::from_secs(n.saturating_mul(factor)))
}

pub(super) async fn run(cmd: PolicyCmd) -> Result<(), String> {
    use reqwest::Method;
    match cmd {
        PolicyCmd::Put { remote, tool, role, ttl } => {
            let body =
                Body::of(&NewPolicy { tenant: remote.tenant.clone(), tool, role, ttl_seconds: Some(ttl.as_secs()) })?;
            print(&Client::tenant(&remote)?.send(Method::POST, "/v1/policies", Some(body)).await?);
        }
        PolicyCmd::List { remote } => {
            let path = format!("/v1/policies?tenant={}", enc(&remote.t()));
            print(&Client::tenant(&remote)?.send(Method::GET, &path, None).await?);
        }
        PolicyCmd::Delete { remote, tool } => {
            let path = format!("/v1/policies/{}?tenant={}", enc(&tool), enc(&remote.t()));
            print(&Client::tenant(&remote)?.send(Method::DELETE, &path, None).await?);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_read_like_people_write_them() {
        assert_eq!(parse_ttl("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_ttl("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_ttl("15 minutes").is_err());
        assert!(parse_ttl("m").is_err());
    }
}
