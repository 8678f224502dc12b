//! Marketplace install and uninstall, end to end in one process, per catalog agent.
//!
//! - cold install: a fresh data directory, so the component is compiled (Cranelift) before
//!   the transaction; this is what the CLI's progress bar covers;
//! - warm install: the compiled code is in the data directory's cache (the same package was
//!   installed before, here or in another tenant), so install is verification + one
//!   transaction + loading the cached code;
//! - uninstall: one transaction, revoking identity, tuples, credentials, policies, approvals.
//!
//! Each figure is the median of `AIRLOCK_BENCH_ROUNDS` (default 5) rounds; warm installs and
//! uninstalls alternate in one tenant per round, so every install starts from nothing.
//!
//! Run: `cargo bench -p airlock --bench install`.

use std::time::{Duration, Instant};

use airlock::marketplace::{InstallOptions, PackageSource};
use airlock::{Airlock, Config};

const AGENTS: &[&str] = &["contentbot", "crm", "code-review", "incident", "offboarding"];

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

async fn install(host: &Airlock, tenant: &str, agent: &str) -> Duration {
    let started = Instant::now();
    let report = host
        .install(tenant, &PackageSource::Catalog(agent.into()), &InstallOptions::default(), &|_| {})
        .await
        .expect("install");
    assert!(report.client_secret.is_some());
    started.elapsed()
}

async fn uninstall(host: &Airlock, tenant: &str, agent: &str) -> Duration {
    let started = Instant::now();
    host.uninstall(tenant, agent).await.expect("uninstall");
    started.elapsed()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds: usize = std::env::var("AIRLOCK_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    println!("marketplace install/uninstall, median of {rounds} rounds (SQLite, one process)");
    println!("{:<12} {:>8} {:>14} {:>14} {:>12}", "agent", "wasm", "cold install", "warm install", "uninstall");
    for agent in AGENTS {
        let (mut cold, mut warm, mut gone) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            // A fresh directory: nothing compiled yet.
            let dir = tempfile::tempdir().expect("tmp");
            let mut config = Config::new(dir.path().to_path_buf());
            config.register_bundled = false;
            let host = Airlock::open(&config).await.expect("open");
            cold.push(install(&host, "cold", agent).await);
            warm.push(install(&host, &format!("warm-{round}"), agent).await);
            gone.push(uninstall(&host, &format!("warm-{round}"), agent).await);
            host.flush().await;
        }
        let size = airlock::marketplace::catalog::entry(agent)
            .map(|e| e.components.iter().map(|(_, w)| w.len()).sum::<usize>())
            .unwrap_or(0);
        println!(
            "{:<12} {:>5} KiB {:>14} {:>14} {:>12}",
            agent,
            size / 1024,
            ms(median(cold)),
            ms(median(warm)),
            ms(median(gone))
        );
    }
}
