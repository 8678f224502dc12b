//! How many audit events per second the writer commits (SQLite in a temp dir).
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
    });
}
