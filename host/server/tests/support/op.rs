//! The shared CIBA/OpenID test peer (`../shared/ciba-op`, the certified oidc-provider), run
//! as a child process for one test.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A running `node op.mjs`, killed on drop.
pub struct Op {
    _child: Child,
    pub base: String,
    pub admin: String,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts the real OP with `clients`, through the loopback ping shim of the approvals crate's
/// tests (the OP pings only https on public addresses); `None` when scripts/ciba-op.sh has
/// not prepared it (a failure under CI). With `login`, it is also a browser sign-in OP
/// (`LOGIN=1`: authorization code flow and its development login form).
pub async fn start_op(clients: Value, login: bool) -> Option<Op> {
    let Some(dir) = std::env::var_os("AIRLOCK_CIBA_OP_DIR").filter(|d| !d.is_empty()) else {
        let on_ci = std::env::var("CI").map(|v| v == "true").unwrap_or(false);
        assert!(!on_ci, "AIRLOCK_CIBA_OP_DIR is not set under CI: run the tests through scripts/test");
        eprintln!("notice: AIRLOCK_CIBA_OP_DIR not set, external OP test skipped (source scripts/ciba-op.sh)");
        return None;
    };
    let (port, admin) = (free_port(), free_port());
    let shim = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../approvals/tests/ciba-op-loopback-ping.mjs");
    let shim = url::Url::from_file_path(shim.canonicalize().unwrap()).unwrap();
    let mut child = Command::new("node")
        .arg("--import")
        .arg(shim.as_str())
        .arg("op.mjs")
        .current_dir(dir)
        .env("PORT", port.to_string())
        .env("ADMIN_PORT", admin.to_string())
        .env("CLIENTS", clients.to_string())
        .env("LOGIN", if login { "1" } else { "0" })
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs op.mjs");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with("READY") {
                return;
            }
        }
        panic!("op.mjs exited before READY");
    });
    ready.await.expect("op.mjs READY within 30 s");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let op = Op { _child: child, base: format!("http://127.0.0.1:{port}"), admin: format!("http://127.0.0.1:{admin}") };
    for url in [format!("{}/.well-known/openid-configuration", op.base), format!("{}/pending", op.admin)] {
        let t0 = Instant::now();
        while reqwest::get(&url).await.is_err() {
            assert!(t0.elapsed() < Duration::from_secs(20), "{url} does not answer");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Some(op)
}

impl Op {
    /// Waits until the OP shows a request for `sub`; returns it.
    pub async fn pending_for(&self, sub: &str) -> Value {
        let t0 = Instant::now();
        loop {
            let list: Vec<Value> = reqwest::get(format!("{}/pending", self.admin)).await.unwrap().json().await.unwrap();
            if let Some(p) = list.into_iter().find(|p| p["sub"] == sub) {
                return p;
            }
            assert!(t0.elapsed() < Duration::from_secs(20), "no request for `{sub}` reached the OP");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The approver's phone: `approve` or `deny`.
    pub async fn answer(&self, verb: &str, id: &str) {
        let resp = reqwest::get(format!("{}/{verb}?id={id}", self.admin)).await.unwrap();
        assert!(resp.status().is_success(), "{verb}: {}", resp.text().await.unwrap());
    }
}
