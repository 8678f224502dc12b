//! `airlock ciba ...`: the CIBA provider's approvers and clients, and a tenant's external OP.

use clap::Subcommand;
use serde_json::Value;

use crate::api::requests::{PutApprover, PutExternalOp, RegisterClient};

use super::client::{secret_from_env, Body, Client};
use super::Remote;

#[derive(Subcommand, Debug)]
pub enum CibaCmd {
    /// Approvers CIBA clients may ask for consent (Airlock as the OpenID Provider).
    #[command(subcommand)]
    Approver(ApproverCmd),
    /// Clients that may send backchannel authentication requests.
    #[command(subcommand)]
    Client(ClientCmd),
    /// The external OpenID Provider the tenant's approvals are sent to (Airlock as a CIBA client).
    #[command(subcommand, name = "external-op")]
    ExternalOp(ExternalOpCmd),
}

#[derive(Subcommand, Debug)]
pub enum ApproverCmd {
    /// Add or replace an approver. Clients ask for them with `login_hint=NAME` (or Auth0's
    /// iss_sub hint when `--iss` and `--sub` are given); they decide as `user:NAME`.
    Put {
        #[command(flatten)]
        remote: Remote,
        name: String,
        /// Issuer of the approver's external identity (with `--sub`).
        #[arg(long, requires = "sub")]
        iss: Option<String>,
        /// Subject at `--iss`.
        #[arg(long, requires = "iss")]
        sub: Option<String>,
        /// URL told of each request waiting for this approver (https, or http on loopback).
        #[arg(long)]
        webhook: Option<String>,
    },
    /// List approvers.
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// Remove an approver (requests already made stay decidable).
    Delete {
        #[command(flatten)]
        remote: Remote,
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ClientCmd {
    /// Register a client and print its secret (shown once). Poll mode unless `--ping` is given.
    Register {
        #[command(flatten)]
        remote: Remote,
        client_id: String,
        /// Ping mode: the client's notification endpoint (https, or http on loopback).
        #[arg(long)]
        ping: Option<String>,
    },
    /// List clients.
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// Remove a client; its pending requests can no longer be redeemed.
    Delete {
        #[command(flatten)]
        remote: Remote,
        client_id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ExternalOpCmd {
    /// Send the tenant's approvals to an external OP. The client secret is read from the
    /// environment variable named by `--secret-env` and sealed at rest.
    Set {
        #[command(flatten)]
        remote: Remote,
        /// `https://op.example/.well-known/openid-configuration`.
        #[arg(long)]
        discovery_url: String,
        /// Airlock's client id at the OP.
        #[arg(long)]
        client_id: String,
        /// `poll`, or `ping` (register `SERVER/ciba/callback/TENANT` at the OP as the notification endpoint).
        #[arg(long, default_value = "poll")]
        mode: String,
        #[arg(long, default_value = "openid")]
        scope: String,
        /// `ROLE=LOGIN_HINT`: who at the OP decides that role's requests; `*=...` for any role. Repeatable.
        #[arg(long = "login-hint", required = true)]
        login_hints: Vec<String>,
        /// Seconds the OP gives the approver (default: the approval's remaining lifetime).
        #[arg(long)]
        requested_expiry: Option<u64>,
        #[arg(long, default_value = "AIRLOCK_SECRET")]
        secret_env: String,
    },
    /// Show the tenant's external OP (without its secret).
    Show {
        #[command(flatten)]
        remote: Remote,
    },
    /// Stop sending the tenant's approvals to an external OP.
    Delete {
        #[command(flatten)]
        remote: Remote,
    },
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn print(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

pub(super) async fn run(cmd: CibaCmd) -> Result<(), String> {
    use reqwest::Method;
    match cmd {
        CibaCmd::Approver(ApproverCmd::Put { remote, name, iss, sub, webhook }) => {
            let body = Body::of(&PutApprover { tenant: remote.tenant.clone(), iss, sub, device_webhook: webhook })?;
            let path = format!("/v1/ciba/approvers/{}", enc(&name));
            print(&Client::tenant(&remote)?.send(Method::PUT, &path, Some(body)).await?);
        }
        CibaCmd::Approver(ApproverCmd::List { remote }) => {
            let path = format!("/v1/ciba/approvers?tenant={}", enc(&remote.t()));
            print(&Client::tenant(&remote)?.send(Method::GET, &path, None).await?);
        }
        CibaCmd::Approver(ApproverCmd::Delete { remote, name }) => {
            let path = format!("/v1/ciba/approvers/{}?tenant={}", enc(&name), enc(&remote.t()));
            print(&Client::tenant(&remote)?.send(Method::DELETE, &path, None).await?);
        }
        CibaCmd::Client(ClientCmd::Register { remote, client_id, ping }) => {
            let mode = if ping.is_some() { "ping" } else { "poll" };
            let body = Body::of(&RegisterClient {
                tenant: remote.tenant.clone(),
                client_id,
                delivery_mode: Some(mode.to_string()),
                notification_endpoint: ping,
            })?;
            print(&Client::tenant(&remote)?.send(Method::POST, "/v1/ciba/clients", Some(body)).await?);
            eprintln!("keep the client secret now: it is stored only as a hash and cannot be shown again");
        }
        CibaCmd::Client(ClientCmd::List { remote }) => {
            let path = format!("/v1/ciba/clients?tenant={}", enc(&remote.t()));
            print(&Client::tenant(&remote)?.send(Method::GET, &path, None).await?);
        }
        CibaCmd::Client(ClientCmd::Delete { remote, client_id }) => {
            let path = format!("/v1/ciba/clients/{}?tenant={}", enc(&client_id), enc(&remote.t()));
            print(&Client::tenant(&remote)?.send(Method::DELETE, &path, None).await?);
        }
        CibaCmd::ExternalOp(ExternalOpCmd::Set {
            remote,
            discovery_url,
            client_id,
            mode,
            scope,
            login_hints,
            requested_expiry,
            secret_env,
        }) => {
            let secret = secret_from_env(&secret_env)?;
            let mut hints = std::collections::BTreeMap::new();
            for pair in &login_hints {
                let (role, hint) =
                    pair.split_once('=').ok_or_else(|| format!("--login-hint `{pair}` must be ROLE=LOGIN_HINT"))?;
                hints.insert(role.to_string(), hint.to_string());
            }
            let body = Body::of(&PutExternalOp {
                tenant: remote.tenant.clone(),
                discovery_url,
                client_id,
                client_secret: secret.to_string(),
                delivery_mode: Some(mode),
                scope: Some(scope),
                login_hints: hints,
                requested_expiry,
            })?;
            print(&Client::tenant(&remote)?.send(Method::PUT, "/v1/ciba/external-op", Some(body)).await?);
        }
        CibaCmd::ExternalOp(ExternalOpCmd::Show { remote }) => {
            let path = format!("/v1/ciba/external-op?tenant={}", enc(&remote.t()));
            print(&Client::tenant(&remote)?.send(Method::GET, &path, None).await?);
        }
        CibaCmd::ExternalOp(ExternalOpCmd::Delete { remote }) => {
            let path = format!("/v1/ciba/external-op?tenant={}", enc(&remote.t()));
            print(&Client::tenant(&remote)?.send(Method::DELETE, &path, None).await?);
        }
    }
    Ok(())
}
