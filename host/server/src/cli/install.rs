//! `airlock install | upgrade | uninstall | catalog | publisher`: the marketplace from the
//! command line, as a client of a running host.
//!
//! `install NAME` installs an agent of the catalog this host ships; `install PATH` a package
//! directory (packed and uploaded, so the host may be remote) or a package `.tar`. Install and
//! upgrade stream their progress (`Accept: application/x-ndjson`) and draw a progress bar on
//! stderr while components compile; the result (with the agent's client secret, shown once)
//! goes to stdout.

use std::io::{IsTerminal, Write};
use std::path::Path;

use clap::Subcommand;
use serde_json::Value;

use crate::api::requests::{PackageRequest, TrustRequest};

use super::client::{enc, print, Body, Client};
use super::Remote;

#[derive(Subcommand, Debug)]
pub enum PublisherCmd {
    /// Trust a publisher's key for packages this host installs.
    Trust {
        #[command(flatten)]
        remote: Remote,
        publisher: String,
        /// The base64 public key (as `airlock key` prints it), or `@FILE` to read a `NAME.pub`.
        public_key: String,
    },
    /// List trusted publisher keys.
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// Stop trusting an admin-added key.
    Distrust {
        #[command(flatten)]
        remote: Remote,
        publisher: String,
        key_id: String,
    },
}

/// The request body naming a package: a catalog name, or a package read from `arg`'s path.
fn package_body(arg: &str) -> Result<(Body, String), String> {
    let path = Path::new(arg);
    if path.is_dir() {
        let work = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
        let tar = work.path().join("package.tar");
        airlock_marketplace::pack(path, &tar).map_err(|e| format!("cannot pack `{arg}`: {e}"))?;
        let bytes = std::fs::read(&tar).map_err(|e| format!("reading the packed package: {e}"))?;
        return Ok((Body::Tar(bytes), format!("package directory {arg}")));
    }
    if path.is_file() {
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read `{arg}`: {e}"))?;
        return Ok((Body::Tar(bytes), format!("package archive {arg}")));
    }
    if arg.contains('/') || arg.ends_with(".tar") {
        return Err(format!("`{arg}` is neither a catalog agent nor an existing package directory or .tar"));
    }
    let request = PackageRequest { catalog: Some(arg.to_string()), consent: false, dry_run: false };
    Ok((Body::of(&request)?, format!("catalog agent {arg}")))
}

/// Draws progress lines as they come; returns the final result.
fn show_progress(line: &Value) {
    let Some(p) = line.get("progress") else { return };
    let tty = std::io::stderr().is_terminal();
    let step = p.get("step").and_then(Value::as_str).unwrap_or_default();
    let text = match step {
        "verified" => format!(
            "verified {} {} signed by {} (digest {})",
            p["package"].as_str().unwrap_or_default(),
            p["version"].as_str().unwrap_or_default(),
            p["publisher"].as_str().unwrap_or_default(),
            &p["digest"].as_str().unwrap_or_default().chars().take(12).collect::<String>()
        ),
        "compiling" | "compiled" => {
            let (done, total) = (p["done"].as_u64().unwrap_or(0), p["total"].as_u64().unwrap_or(1).max(1));
            let width = 24u64;
            let filled = (done * width / total) as usize;
            let verb = if step == "compiling" { "compiling" } else { "compiled " };
            format!(
                "[{}{}] {done}/{total} {verb} {}",
                "#".repeat(filled),
                ".".repeat(width as usize - filled),
                p["component"].as_str().unwrap_or_default()
            )
        }
        "provisioning" => "writing identity, tuples, connection slots and approval policies (one transaction)".into(),
        other => other.to_string(),
    };
    if tty && (step == "compiling" || step == "compiled") {
        eprint!("\r\x1b[2K{text}");
        if step == "compiled" && p["done"] == p["total"] {
            eprintln!();
        }
    } else {
        eprintln!("{text}");
    }
    let _ = std::io::stderr().flush();
}

async fn streamed(client: &Client, path: &str, body: Body) -> Result<Value, String> {
    let mut last = None;
    client
        .stream_ndjson(path, body, |line| {
            show_progress(&line);
            if line.get("result").is_some() || line.get("error").is_some() {
                last = Some(line);
            }
        })
        .await?;
    match last {
        Some(v) if v.get("result").is_some() => Ok(v["result"].clone()),
        Some(v) => {
            let e = &v["error"];
            let mut msg = format!(
                "{} ({}): {}",
                e["code"].as_str().unwrap_or("error"),
                e["status"],
                e["message"].as_str().unwrap_or_default()
            );
            if let Some(diff) = e.get("diff") {
                msg.push_str(&format!("\n{}", describe_diff(diff)));
            }
            Err(msg)
        }
        None => Err("the host closed the connection before answering: see its log".into()),
    }
}

fn describe_diff(diff: &Value) -> String {
    let mut out = format!(
        "changes from {} to {}:",
        diff["from_version"].as_str().unwrap_or("?"),
        diff["to_version"].as_str().unwrap_or("?")
    );
    for (key, label) in [
        ("tuples_added", "+ permission"),
        ("tuples_removed", "- permission"),
        ("connections_added", "+ connection"),
        ("connections_removed", "- connection"),
        ("hosts_added", "+ host"),
        ("hosts_removed", "- host"),
        ("policies_added", "+ approval"),
        ("policies_removed", "- approval"),
        ("policies_changed", "~ approval"),
        ("model_types_added", "+ model type"),
        ("limits_changed", "~ limit"),
        ("components_changed", "~ component"),
        ("effects_changed", "~ tool effect"),
    ] {
        for item in diff[key].as_array().into_iter().flatten() {
            out.push_str(&format!("\n  {label} {}", item.as_str().unwrap_or_default()));
        }
    }
    let widening = diff["widening"].as_array().map(Vec::len).unwrap_or(0);
    if widening > 0 {
        out.push_str(&format!("\n{widening} change(s) widen the agent's permissions: run again with --yes to consent"));
    }
    out
}

pub(super) async fn install(remote: &Remote, package: &str, allow_private_network: &[String]) -> Result<(), String> {
    let client = Client::tenant(remote)?;
    let (body, label) = package_body(package)?;
    eprintln!("installing {label} into tenant `{}`", remote.shown());
    let mut path = format!("/v1/marketplace/install?tenant={}", enc(&remote.t()));
    if !allow_private_network.is_empty() {
        path.push_str(&format!("&allow_private_network={}", enc(&allow_private_network.join(","))));
    }
    let report = streamed(&client, &path, body).await?;
    if report["already_installed"] == true {
        eprintln!("already installed (same package digest): nothing changed");
    } else {
        eprintln!(
            "installed agent `{}`: its client secret is shown once below (`client_secret`); only its hash is kept",
            report["agent"].as_str().unwrap_or_default()
        );
    }
    for step in report["next_steps"].as_array().into_iter().flatten() {
        eprintln!("next: {}", step.as_str().unwrap_or_default());
    }
    print(&report);
    Ok(())
}

pub(super) async fn upgrade(remote: &Remote, package: &str, yes: bool, dry_run: bool) -> Result<(), String> {
    let client = Client::tenant(remote)?;
    let (body, label) = package_body(package)?;
    eprintln!("upgrading to {label} in tenant `{}`", remote.shown());
    let path = format!("/v1/marketplace/upgrade?tenant={}&consent={yes}&dry_run={dry_run}", enc(&remote.t()));
    let report = streamed(&client, &path, body).await?;
    eprintln!("{}", describe_diff(&report["diff"]));
    eprintln!("{}", if report["applied"] == true { "upgrade applied" } else { "nothing applied" });
    print(&report);
    Ok(())
}

pub(super) async fn uninstall(remote: &Remote, agent: &str) -> Result<(), String> {
    let client = Client::tenant(remote)?;
    let path = format!("/v1/marketplace/installed/{}?tenant={}", enc(agent), enc(&remote.t()));
    print(&client.send(reqwest::Method::DELETE, &path, None).await?);
    Ok(())
}

pub(super) async fn catalog(remote: &Remote) -> Result<(), String> {
    let client = Client::tenant(remote)?;
    let path = format!("/v1/marketplace/catalog?tenant={}", enc(&remote.t()));
    print(&client.send(reqwest::Method::GET, &path, None).await?);
    Ok(())
}

pub(super) async fn publisher(cmd: PublisherCmd) -> Result<(), String> {
    match cmd {
        PublisherCmd::Trust { remote, publisher, public_key } => {
            let key = match public_key.strip_prefix('@') {
                Some(file) => std::fs::read_to_string(file)
                    .map_err(|e| format!("cannot read `{file}`: {e}"))?
                    .lines()
                    .map(str::trim)
                    .find(|l| !l.is_empty() && !l.starts_with('#'))
                    .ok_or_else(|| format!("`{file}` holds no key line"))?
                    .to_string(),
                None => public_key,
            };
            let client = Client::operator(&remote)?;
            let body = Body::of(&TrustRequest { publisher, public_key: key })?;
            print(&client.send(reqwest::Method::POST, "/v1/marketplace/publishers", Some(body)).await?);
        }
        PublisherCmd::List { remote } => {
            let client = Client::operator(&remote)?;
            print(&client.send(reqwest::Method::GET, "/v1/marketplace/publishers", None).await?);
        }
        PublisherCmd::Distrust { remote, publisher, key_id } => {
            let client = Client::operator(&remote)?;
            let path = format!("/v1/marketplace/publishers/{}/{}", enc(&publisher), enc(&key_id));
            print(&client.send(reqwest::Method::DELETE, &path, None).await?);
        }
    }
    Ok(())
}
