//! Real browser tests of the console: a host reached at `http://localhost:PORT` (a passkey's
//! relying party cannot be an IP address) and node scripts in `tests/browser/` that drive
//! Debian's Chromium with playwright-core (`tests/browser/lib.mjs`). scripts/browser.sh
//! prepares both and exports `AIRLOCK_BROWSER_DIR` and `AIRLOCK_CHROMIUM`; without them the
//! tests skip, or fail under CI=true.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;

use super::TestHost;

/// How long one browser script may run before it is killed and the test fails.
pub const SCRIPT_DEADLINE: Duration = Duration::from_secs(180);

impl TestHost {
    /// A fresh host (SQLite in a temporary directory, as [`TestHost::start`]) whose public URL,
    /// and so its passkeys' origin, is `http://localhost:PORT`, PORT being the port it listens
    /// on; `url` is the same, for the browser to visit.
    pub async fn start_on_localhost() -> TestHost {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        // Bound before the host opens: its passkeys' relying party is read from the public URL.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://localhost:{}", listener.local_addr().unwrap().port());
        let public = url.clone();
        // The host's default limits: the console installs catalog agents, whose limits must fit.
        let mut t = Self::serve_on(listener, url, dir, move |c| {
            c.public_url = Some(public);
            c.limits = super::catalog_limits();
        })
        .await;
        t._tmp = Some(tmp);
        t
    }
}

/// The folder of the browser scripts and their `lib.mjs`.
pub fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Where scripts write their screenshots (`AIRLOCK_SCREENSHOTS`): under the cargo target dir.
pub fn screenshots_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots")
}

/// What a browser script printed.
#[derive(Debug)]
pub struct ScriptOutput {
    pub stdout: String,
    pub stderr: String,
}

/// Runs `node SCRIPT` (a path relative to [`scripts_dir`], or absolute) with `env` added, and
/// `AIRLOCK_CHROMIUM`, `AIRLOCK_BROWSER_DIR`, `NODE_PATH` (its node_modules) and
/// `AIRLOCK_SCREENSHOTS` set. Node's output is printed as it comes (prefixed `[node]`); a
/// non-zero exit, or a run past [`SCRIPT_DEADLINE`], panics with all of it. `None` (and a loud
/// notice) when scripts/browser.sh has not prepared the browser: a failure under CI=true.
///
/// Async so that the host, serving on the test's own runtime, keeps answering while the
/// browser runs: call it from a `multi_thread` tokio test.
pub async fn run_browser_script(script: &Path, env: &[(&str, String)]) -> Option<ScriptOutput> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let (Some(dir), Some(chromium)) = (var("AIRLOCK_BROWSER_DIR"), var("AIRLOCK_CHROMIUM")) else {
        let on_ci = std::env::var("CI").map(|v| v == "true").unwrap_or(false);
        assert!(
            !on_ci,
            "AIRLOCK_BROWSER_DIR or AIRLOCK_CHROMIUM is not set under CI: run the tests through scripts/test"
        );
        eprintln!(
            "\n*** SKIPPED browser test {}: AIRLOCK_BROWSER_DIR / AIRLOCK_CHROMIUM not set \
             (source scripts/browser.sh) ***\n",
            script.display()
        );
        return None;
    };
    let script = scripts_dir().join(script);
    let shots = screenshots_dir();
    std::fs::create_dir_all(&shots).unwrap();
    eprintln!("browser: running {} (screenshots in {})", script.display(), shots.display());
    let mut cmd = Command::new("node");
    cmd.arg(&script)
        .current_dir(scripts_dir())
        .env("NODE_PATH", dir.join("node_modules"))
        .env("AIRLOCK_BROWSER_DIR", &dir)
        .env("AIRLOCK_CHROMIUM", &chromium)
        .env("AIRLOCK_SCREENSHOTS", &shots)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("node runs {}: {e}", script.display()));
    let out = tokio::spawn(echo(child.stdout.take().unwrap()));
    let err = tokio::spawn(echo(child.stderr.take().unwrap()));
    let status = match tokio::time::timeout(SCRIPT_DEADLINE, child.wait()).await {
        Ok(status) => Some(status.unwrap()),
        Err(_) => {
            // Chromium is node's child: killing node closes the pipe playwright holds it by.
            child.kill().await.ok();
            None
        }
    };
    let output = ScriptOutput { stdout: out.await.unwrap(), stderr: err.await.unwrap() };
    match status {
        Some(s) if s.success() => Some(output),
        Some(s) => panic!(
            "{} failed ({s}); screenshots in {}\n--- stdout\n{}--- stderr\n{}",
            script.display(),
            shots.display(),
            output.stdout,
            output.stderr
        ),
        None => panic!(
            "{} ran past {SCRIPT_DEADLINE:?} and was killed; screenshots in {}\n--- stdout\n{}--- stderr\n{}",
            script.display(),
            shots.display(),
            output.stdout,
            output.stderr
        ),
    }
}

/// Prints each line of `from` as it comes (`[node] ...`); returns them all.
async fn echo(from: impl AsyncRead + Unpin) -> String {
    let mut lines = BufReader::new(from).lines();
    let mut all = String::new();
    while let Ok(Some(line)) = lines.next_line().await {
        eprintln!("[node] {line}");
        all.push_str(&line);
        all.push('\n');
    }
    all
}
