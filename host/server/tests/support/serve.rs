//! A real `airlock serve` process for the tests that kill it or watch it from outside (the
//! crash suite, the soak), and what `/proc` says about it.

use std::path::Path;
use std::time::{Duration, Instant};

/// An `airlock serve` on a fixed loopback port, restartable over the same state.
pub struct Serve {
    port: u16,
    child: Option<tokio::process::Child>,
}

impl Serve {
    pub fn new(port: u16) -> Serve {
        Serve { port, child: None }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The running process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().and_then(|c| c.id()).expect("the host runs")
    }

    /// Starts the host over `dir` (and `database_url`) and waits until it answers; how long
    /// that took. Its output goes to `serve.log` in `dir`.
    pub async fn start(&mut self, dir: &Path, database_url: Option<&str>) -> Duration {
        self.start_with(dir, database_url, &[], &[]).await
    }

    /// [`Serve::start`] with more `serve` flags and environment variables.
    pub async fn start_with(
        &mut self,
        dir: &Path,
        database_url: Option<&str>,
        flags: &[&str],
        envs: &[(&str, &str)],
    ) -> Duration {
        let begun = Instant::now();
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_airlock"));
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{}", self.port), "--data-dir"]).arg(dir);
        if let Some(url) = database_url {
            cmd.args(["--database-url", url]);
        }
        cmd.args(flags).envs(envs.iter().copied());
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("serve.log")).unwrap();
        cmd.env("RUST_LOG", "error").stdout(log.try_clone().unwrap()).stderr(log).kill_on_drop(true);
        self.child = Some(cmd.spawn().unwrap());
        let http = reqwest::Client::new();
        for _ in 0..1200 {
            let up = http.get(format!("{}/healthz", self.url())).send().await;
            if up.map(|r| r.status().is_success()).unwrap_or(false) {
                return begun.elapsed();
            }
            if let Ok(Some(status)) = self.child.as_mut().unwrap().try_wait() {
                let log = std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default();
                panic!("`airlock serve` exited with {status} while starting:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("`airlock serve` did not answer /healthz within 30 s");
    }

    /// SIGKILL, and waits for the process to be gone.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.start_kill().unwrap();
            child.wait().await.unwrap();
        }
    }
}

/// Resident memory of process `pid`, in KiB (`VmRSS`).
pub fn proc_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The names of process `pid`'s threads.
pub fn proc_thread_names(pid: u32) -> Vec<String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).map(|d| d.flatten().collect()).unwrap_or(Vec::new());
    tasks.iter().filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok()).map(|n| n.trim().into()).collect()
}

/// Open file descriptors of process `pid`.
pub fn proc_fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count() as u64).unwrap_or(0)
}

/// CPU time of process `pid` (user + system), in clock ticks (100 per second on Linux).
pub fn proc_cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces) start after the last `)`.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after `) state`.
    let at = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    at(11) + at(12)
}
