//! `airlock tenant|token|user|invitation|whoami`: tenants (the operator's), members' tokens
//! and invitations (a tenant admin's), redeeming an invitation (anyone holding the code).

use clap::Subcommand;
use reqwest::Method;
use serde_json::Value;

use crate::api::requests::{Accept, CreateOperatorToken, CreateToken, NewInvitation, NewTenant, PutSso};
use crate::signin::sso::SsoConfig;

use super::client::{enc, print, subject_of, Body, Client};
use super::{Command, Remote};

#[derive(Subcommand, Debug)]
pub enum TenantCmd {
    /// Create a tenant; with `--admin user:NAME`, prints a one-time invitation for its first admin.
    Create {
        #[command(flatten)]
        remote: Remote,
        name: String,
        #[arg(long)]
        admin: Option<String>,
    },
    /// List every tenant.
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// Delete a tenant: everything of it goes in one transaction but its audit trail (kept, sealed).
    Delete {
        #[command(flatten)]
        remote: Remote,
        name: String,
    },
    /// Invite someone (yourself too) into a tenant with a role; audited in that tenant.
    Invite {
        #[command(flatten)]
        remote: Remote,
        name: String,
        /// `user:NAME` (or just `NAME`).
        member: String,
        #[arg(long)]
        role: String,
    },
    /// Single sign-on: the tenant's OpenID Connect provider (a tenant admin's).
    #[command(subcommand)]
    Sso(SsoCmd),
}

#[derive(Subcommand, Debug)]
pub enum SsoCmd {
    /// Set the provider: its issuer and this host's client there; the client secret is read
    /// from the environment variable `--secret-env` (default AIRLOCK_SECRET). Register the
    /// printed `redirect_uri` at the provider.
    Set {
        #[command(flatten)]
        remote: Remote,
        #[arg(long)]
        issuer: String,
        #[arg(long)]
        client_id: String,
        /// `sub` (default) or `email` (a verified email) names the member `user:VALUE`.
        #[arg(long, default_value = "sub")]
        subject_claim: String,
        #[arg(long, default_value = "AIRLOCK_SECRET")]
        secret_env: String,
    },
    /// Show the provider (never the secret) and the redirect URI.
    Show {
        #[command(flatten)]
        remote: Remote,
    },
    /// Remove the provider.
    Delete {
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Create a named token, printed once: with a fixed `--role`, or carrying a member's
    /// relations (`--as-member user:alice`); `--operator` for an operator token.
    Create {
        #[command(flatten)]
        remote: Remote,
        name: String,
        #[arg(long, conflicts_with_all = ["as_member", "operator"])]
        role: Option<String>,
        #[arg(long, conflicts_with = "operator")]
        as_member: Option<String>,
        /// `90d`, `12h`, `30m`, `3600s`, or `never` (default 90d).
        #[arg(long, default_value = "90d")]
        expires: String,
        #[arg(long)]
        operator: bool,
    },
    /// List tokens (never their secrets), with their last use.
    List {
        #[command(flatten)]
        remote: Remote,
        #[arg(long)]
        operator: bool,
    },
    /// Revoke every live token of that name: refused from the very next request.
    Revoke {
        #[command(flatten)]
        remote: Remote,
        name: String,
        #[arg(long)]
        operator: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Invite a person to hold a role on the tenant (`admin`, `auditor`, `cfo`, ...), and to
    /// register a passkey; without `--role`, an existing member only registers a passkey.
    Invite {
        #[command(flatten)]
        remote: Remote,
        /// `carol` or `user:carol`.
        name: String,
        #[arg(long)]
        role: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum InvitationCmd {
    /// Redeem an invitation code; prints your token (export it as AIRLOCK_TOKEN).
    Accept {
        #[command(flatten)]
        remote: Remote,
        code: String,
    },
}

/// `90d`, `12h`, `30m`, `45s` or `never` (0) as seconds.
fn seconds(expires: &str) -> Result<i64, String> {
    if expires == "never" {
        return Ok(0);
    }
    let (n, unit) = expires.split_at(expires.len().saturating_sub(1));
    let n: i64 = n.parse().map_err(|_| format!("`--expires {expires}`: use e.g. 90d, 12h, 30m, 3600s or never"))?;
    let factor = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" => 1,
        _ => return Err(format!("`--expires {expires}`: the unit is d, h, m or s")),
    };
    Ok(n.saturating_mul(factor))
}

fn show_secret(v: &Value, field: &str, next: &str) {
    print(v);
    if v.get(field).is_some() {
        eprintln!("keep it now: it is stored only as a hash and cannot be shown again. {next}");
    }
}

pub(super) async fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Tenant(TenantCmd::Create { remote, name, admin }) => {
            let body = Body::of(&NewTenant { name, admin: admin.map(|a| subject_of(&a)) })?;
            let v = Client::operator(&remote)?.send(Method::POST, "/v1/tenants", Some(body)).await?;
            print(&v);
            if let Some(code) = v.pointer("/invitation/code").and_then(Value::as_str) {
                eprintln!("give the invitation to its admin; they run `airlock invitation accept {code}`");
            }
        }
        Command::Tenant(TenantCmd::Sso(SsoCmd::Set { remote, issuer, client_id, subject_claim, secret_env })) => {
            let secret = std::env::var(&secret_env)
                .map_err(|_| format!("set {secret_env} to the client secret the provider gave this host"))?;
            let config = SsoConfig { issuer, client_id, subject_claim };
            let body = Body::of(&PutSso { tenant: remote.tenant.clone(), config, client_secret: secret })?;
            print(&Client::tenant(&remote)?.send(Method::PUT, "/v1/sso", Some(body)).await?);
        }
        Command::Tenant(TenantCmd::Sso(SsoCmd::Show { remote })) => {
            print(&Client::tenant(&remote)?.send(Method::GET, "/v1/sso", None).await?)
        }
        Command::Tenant(TenantCmd::Sso(SsoCmd::Delete { remote })) => {
            print(&Client::tenant(&remote)?.send(Method::DELETE, "/v1/sso", None).await?)
        }
        Command::Tenant(TenantCmd::List { remote }) => {
            print(&Client::operator(&remote)?.send(Method::GET, "/v1/tenants", None).await?)
        }
        Command::Tenant(TenantCmd::Delete { remote, name }) => {
            let path = format!("/v1/tenants/{}", enc(&name));
            print(&Client::operator(&remote)?.send(Method::DELETE, &path, None).await?)
        }
        Command::Tenant(TenantCmd::Invite { remote, name, member, role }) => {
            let body =
                Body::of(&NewInvitation { member: subject_of(&member), role, tenant: None, expires_in_seconds: None })?;
            let path = format!("/v1/tenants/{}/invitations", enc(&name));
            print(&Client::operator(&remote)?.send(Method::POST, &path, Some(body)).await?)
        }
        Command::Token(TokenCmd::Create { remote, name, role, as_member, expires, operator }) => {
            let expires_in_seconds = seconds(&expires)?;
            let v = if operator {
                let body = Body::of(&CreateOperatorToken { name, expires_in_seconds: Some(expires_in_seconds) })?;
                Client::operator(&remote)?.send(Method::POST, "/v1/operator/tokens", Some(body)).await?
            } else {
                let body = Body::of(&CreateToken {
                    name,
                    role,
                    as_member: as_member.map(|m| subject_of(&m)),
                    tenant: remote.tenant.clone(),
                    expires_in_seconds: Some(expires_in_seconds),
                })?;
                Client::tenant(&remote)?.send(Method::POST, "/v1/tokens", Some(body)).await?
            };
            show_secret(&v, "token", "Use it as AIRLOCK_TOKEN (or AIRLOCK_ADMIN_TOKEN for an operator token).");
        }
        Command::Token(TokenCmd::List { remote, operator }) => {
            let v = if operator {
                Client::operator(&remote)?.send(Method::GET, "/v1/operator/tokens", None).await?
            } else {
                let path = format!("/v1/tokens?tenant={}", enc(&remote.t()));
                Client::tenant(&remote)?.send(Method::GET, &path, None).await?
            };
            print(&v);
        }
        Command::Token(TokenCmd::Revoke { remote, name, operator }) => {
            let v = if operator {
                let path = format!("/v1/operator/tokens/{}", enc(&name));
                Client::operator(&remote)?.send(Method::DELETE, &path, None).await?
            } else {
                let path = format!("/v1/tokens/{}?tenant={}", enc(&name), enc(&remote.t()));
                Client::tenant(&remote)?.send(Method::DELETE, &path, None).await?
            };
            print(&v);
        }
        Command::User(UserCmd::Invite { remote, name, role }) => {
            let body = Body::of(&NewInvitation {
                member: subject_of(&name),
                role: role.unwrap_or_default(),
                tenant: remote.tenant.clone(),
                expires_in_seconds: None,
            })?;
            let v = Client::tenant(&remote)?.send(Method::POST, "/v1/invitations", Some(body)).await?;
            print(&v);
            if let Some(link) = v.pointer("/invitation/register_passkey").and_then(Value::as_str) {
                eprintln!(
                    "send {} this link, for their browser: {link}\n(they register a passkey there and are signed in; \
                     approving needs it. One use; it expires.)",
                    subject_of(&name)
                );
            }
        }
        Command::Invitation(InvitationCmd::Accept { remote, code }) => {
            let body = Body::of(&Accept { code })?;
            let v = Client::new(&remote.server, "").send(Method::POST, "/v1/invitations/accept", Some(body)).await?;
            show_secret(&v, "token", "Use it as AIRLOCK_TOKEN.");
        }
        Command::Login { remote } => login(&remote).await?,
        Command::Whoami { remote } => print(&Client::tenant(&remote)?.send(Method::GET, "/v1/me", None).await?),
        _ => return Err("not a people command".into()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::seconds;

    #[test]
    fn expiry_units() {
        assert_eq!(seconds("90d"), Ok(90 * 86_400));
        assert_eq!(seconds("12h"), Ok(12 * 3_600));
        assert_eq!(seconds("never"), Ok(0));
        assert!(seconds("soon").is_err());
        assert!(seconds("5w").is_err());
    }
}

/// Where `airlock login` keeps the token of `tenant`.
pub(super) fn login_token_file(remote: &Remote) -> std::path::PathBuf {
    let tenant = remote.tenant.as_deref().unwrap_or(crate::config::DEFAULT_TENANT);
    remote.data_dir.join(format!("login-{tenant}.token"))
}

/// `airlock login`: RFC 8628 from the device's side.
async fn login(remote: &Remote) -> Result<(), String> {
    let http = reqwest::Client::new();
    let base = remote.server.trim_end_matches('/');
    let unreachable = |e: reqwest::Error| format!("cannot reach airlock at {base}: {e}. Is `airlock serve` running?");
    let tenant = remote.tenant.as_deref().unwrap_or(crate::config::DEFAULT_TENANT);
    let form = [("client_id", "airlock-cli"), ("tenant", tenant)];
    let resp = http.post(format!("{base}/oauth/device_authorization")).form(&form).send().await.map_err(unreachable)?;
    let started: Value = resp.json().await.map_err(|e| format!("the host's answer is not JSON: {e}"))?;
    let (Some(device_code), Some(user_code)) = (started["device_code"].as_str(), started["user_code"].as_str()) else {
        return Err(format!("login refused: {}", started["error_description"].as_str().unwrap_or("no device code")));
    };
    eprintln!(
        "to log in as yourself, open {} in the browser where you are signed in to Airlock,\nand confirm the code {user_code}\nwaiting...",
        started["verification_uri_complete"].as_str().unwrap_or_default()
    );
    let mut interval = started["interval"].as_u64().unwrap_or(5);
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(interval)).await;
        let form = [
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", device_code),
            ("client_id", "airlock-cli"),
        ];
        let resp = http.post(format!("{base}/oauth/token")).form(&form).send().await.map_err(unreachable)?;
        let answer: Value = resp.json().await.map_err(|e| format!("the host's answer is not JSON: {e}"))?;
        match answer["error"].as_str() {
            Some("authorization_pending") => continue,
            Some("slow_down") => interval += 1,
            Some(error) => {
                return Err(format!(
                    "login failed: {error}: {}",
                    answer["error_description"].as_str().unwrap_or_default()
                ))
            }
            None => {
                let token = answer["access_token"].as_str().ok_or("the host sent no token")?;
                let file = login_token_file(remote);
                write_private(&file, token)?;
                eprintln!(
                    "logged in as {} of tenant `{}`; the token is in {}",
                    answer["member"].as_str().unwrap_or("?"),
                    answer["tenant"].as_str().unwrap_or("?"),
                    file.display()
                );
                print(&answer);
                return Ok(());
            }
        }
    }
}

/// Writes a secret readable by its owner only.
fn write_private(file: &std::path::Path, secret: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(file)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    f.write_all(secret.as_bytes()).map_err(|e| format!("{}: {e}", file.display()))
}
