//! `airlock audit export | checkpoint | key | verify`: the trail with its signed checkpoints,
//! and its verification offline (no server, no database: the export and the public key).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use airlock_audit::checkpoint::{self, PublicKey};
use clap::Subcommand;
use reqwest::Method;
use serde_json::Value;

use super::client::{enc, print, Client};
use super::Remote;

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Download the whole trail with its signed checkpoints (JSON Lines), for `airlock audit
    /// verify`. Checkpoints cover the trail up to when they were signed: `airlock audit
    /// checkpoint` first to cover everything up to now.
    Export {
        /// Where to write it (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Have the host sign the chain's head now; prints the checkpoint (an admin's token, or the
    /// operator's with `--host`: then every chain whose head moved is signed).
    Checkpoint,
    /// Print the public key that verifies the checkpoints (`{"algorithm", "kid", "public_key"}`).
    /// Keep it apart from the host: a verification is only as good as the key it trusts.
    Key,
    /// Verify an export offline against the checkpoint key: recompute every hash from the
    /// first event, check each checkpoint's signature, that the events hold exactly the
    /// signed hashes and that none signed is missing. Exits non-zero, saying why, on any break.
    Verify {
        /// The file `airlock audit export` wrote.
        #[arg(long)]
        export: PathBuf,
        /// The public key: hex (64 digits), or a file holding it (or `airlock audit key`'s JSON).
        #[arg(long)]
        key: String,
        /// Checkpoints kept out of the database (the host's `--audit-witness` file, one JSON
        /// line each), checked too: rows an administrator deleted are still missed.
        #[arg(long)]
        witness: Option<PathBuf>,
    },
}

pub(super) async fn run(cmd: AuditCmd, remote: &Remote, on_host: bool) -> Result<(), String> {
    let client = || if on_host { Client::operator(remote) } else { Client::tenant(remote) };
    let tenant = enc(&remote.t());
    match cmd {
        AuditCmd::Export { out } => {
            let path = if on_host {
                "/v1/host/audit/export/signed".to_string()
            } else {
                format!("/v1/audit/export/signed?tenant={tenant}")
            };
            let client = client()?;
            match out {
                Some(file) => {
                    let mut f = std::fs::File::create(&file).map_err(|e| format!("{}: {e}", file.display()))?;
                    client.download(&path, &mut f).await?;
                    f.sync_all().map_err(|e| format!("{}: {e}", file.display()))?;
                    eprintln!("{}", summary(&file));
                }
                None => {
                    let mut stdout = std::io::stdout().lock();
                    client.download(&path, &mut stdout).await?;
                    stdout.flush().map_err(|e| e.to_string())?;
                }
            }
        }
        AuditCmd::Checkpoint => {
            let path = if on_host {
                "/v1/host/audit/checkpoints".to_string()
            } else {
                format!("/v1/audit/checkpoints?tenant={tenant}")
            };
            print(&client()?.send(Method::POST, &path, None).await?);
        }
        AuditCmd::Key => {
            let path = if on_host {
                "/v1/host/audit/checkpoint-key".to_string()
            } else {
                format!("/v1/audit/checkpoint-key?tenant={tenant}")
            };
            print(&client()?.send(Method::GET, &path, None).await?);
        }
        AuditCmd::Verify { export, key, witness } => return verify(&export, &key, witness.as_deref()),
    }
    Ok(())
}

/// What an export file holds, in one line.
fn summary(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let (mut events, mut checkpoints) = (0, 0);
    for line in text.lines() {
        if line.starts_with("{\"event\"") {
            events += 1;
        } else if line.starts_with("{\"checkpoint\"") {
            checkpoints += 1;
        }
    }
    format!("wrote {events} events and {checkpoints} signed checkpoint(s) to {}", file.display())
}

/// `--key`: hex, or a file holding hex or the host's key JSON.
fn public_key(arg: &str) -> Result<PublicKey, String> {
    let text = match std::fs::read_to_string(arg) {
        Ok(text) => text,
        Err(_) if !Path::new(arg).exists() => arg.to_string(),
        Err(e) => return Err(format!("--key {arg}: {e}")),
    };
    let text = match serde_json::from_str::<Value>(&text) {
        Ok(v) => v.get("public_key").and_then(Value::as_str).map(str::to_string).unwrap_or_default(),
        Err(_) => text,
    };
    PublicKey::from_hex(&text).map_err(|e| format!("--key: {e}"))
}

fn verify(export: &Path, key: &str, witness: Option<&Path>) -> Result<(), String> {
    let key = public_key(key)?;
    let witnessed = match witness {
        Some(path) => {
            let file = std::fs::File::open(path).map_err(|e| format!("--witness {}: {e}", path.display()))?;
            checkpoint::read_checkpoints(std::io::BufReader::new(file))
                .map_err(|e| format!("--witness {}: {e}", path.display()))?
        }
        None => Vec::new(),
    };
    let file = std::fs::File::open(export).map_err(|e| format!("--export {}: {e}", export.display()))?;
    match checkpoint::verify_export(std::io::BufReader::new(file), &key, &witnessed) {
        Ok(report) => {
            println!("{report}");
            Ok(())
        }
        Err(broken) => Err(format!("NOT VERIFIED: {}: {broken}", export.display())),
    }
}
