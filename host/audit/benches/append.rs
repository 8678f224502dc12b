//! How many audit events per second the writer commits (SQLite in a temp dir), and what a
//! durable commit of a small group (the calls in flight, each waiting for its record) costs
//! the process in CPU.
//!
//! Run: `cargo bench -p airlock-audit --bench append`

use std::time::Instant;

use airlock_audit::{AuditEvent, AuditLog};
use airlock_store::Db;
use serde_json::json;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::connect(&Db::sqlite_url(dir.path())).await.expect("db");
        let log = AuditLog::start(db);
        let n = 200_000;
        let event = AuditEvent {
            tenant: "default".into(),
            kind: "tool.call".into(),
            outcome: "allowed".into(),
            agent: "agent:bench".into(),
            tool: "probe.echo".into(),
            detail: json!({ "result": "ok", "fuel": 12345, "call_id": "call_0123456789ab00000001",
                            "chain": ["agent:bench", "tool:probe.echo"] }),
        };
        let start = Instant::now();
        for _ in 0..n {
            log.record(event.clone());
        }
        let queued = start.elapsed();
        log.flush().await.expect("flush");
        let total = start.elapsed();
        println!(
            "audit append: {n} events queued in {queued:?}, committed in {total:?}: {:.0} events/s",
            n as f64 / total.as_secs_f64()
        );
        let v = log.verify("default").await.expect("verify");
        let verify_time = start.elapsed() - total;
        println!("verify: {} events in {verify_time:?}, intact: {}", v.events, v.broken_at.is_none());

        // Groups of 8 durable records at once, as 8 calls in flight each wait for theirs.
        let (group, rounds) = (8, 3_000);
        let log = std::sync::Arc::new(log);
        let (cpu, start) = (process_cpu(), Instant::now());
        let commits = log.commits();
        for _ in 0..rounds {
            let waits: Vec<_> = (0..group)
                .map(|_| {
                    let (log, event) = (log.clone(), event.clone());
                    tokio::spawn(async move { log.record_durable(event).await })
                })
                .collect();
            for wait in waits {
                wait.await.expect("task").expect("durable");
            }
        }
        let (cpu, wall) = (process_cpu() - cpu, start.elapsed());
        let commits = log.commits() - commits;
        println!(
            "durable groups of {group}: {rounds} rounds in {wall:?}, {commits} commits: {:.1} us of process CPU per \
             commit, {:.1} per record",
            cpu * 1e6 / commits as f64,
            cpu * 1e6 / (rounds * group) as f64
        );
    });
}

/// CPU seconds the process has used (user + system, every thread), from /proc/self/stat.
fn process_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // The fields after the command name (in parentheses): utime and stime are the 12th and 13th.
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    ticks / 100.0
}
