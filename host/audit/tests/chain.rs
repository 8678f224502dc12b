//! The trail against real databases: chaining, tenant separation, tamper detection.

use airlock_audit::{AuditEvent, AuditLog};
use airlock_store::{sqlx, testing};
use serde_json::json;

fn event(tenant: &str, n: u32) -> AuditEvent {
    AuditEvent {
        tenant: tenant.into(),
        kind: "tool.call".into(),
        outcome: if n % 2 == 0 { "allowed".into() } else { "denied".into() },
        agent: format!("agent:a{n}"),
        tool: "billing.refund".into(),
        detail: json!({ "n": n }),
    }
}

#[tokio::test]
async fn chains_verify_per_tenant_and_tampering_is_found() {
    for t in testing::all().await {
        let log = AuditLog::start(t.db.clone());
        for n in 0..25 {
            log.record(event("acme", n));
            log.record(event("globex", n));
        }
        // A NUL (which PostgreSQL refuses in text) must not make the trail unstorable.
        let mut hostile = event("hostile", 0);
        hostile.tool = "x\0y".into();
        log.record(hostile);
        log.flush().await.unwrap();
        assert_eq!(log.list("hostile", 0, 10).await.unwrap()[0].event.tool, "x\u{FFFD}y", "{:?}", t.backend);

        let acme = log.list("acme", 0, 100).await.unwrap();
        assert_eq!(acme.len(), 25, "{:?}", t.backend);
        assert!(acme.iter().all(|e| e.event.tenant == "acme"));
        assert_eq!(acme.iter().map(|e| e.seq).collect::<Vec<_>>(), (1..=25).collect::<Vec<_>>());
        assert_eq!(acme[3].prev_hash, acme[2].hash);
        assert_eq!(log.verify("acme").await.unwrap().broken_at, None);

        // Rewrite history: an admin with database access flips a denial into an allow.
        sqlx::query("UPDATE audit_events SET outcome = 'allowed' WHERE tenant = 'acme' AND seq = 6")
            .execute(t.db.pool())
            .await
            .unwrap();
        let v = log.verify("acme").await.unwrap();
        assert_eq!(v.broken_at, Some(6), "{v:?}");
        // The other tenant's chain is untouched.
        assert_eq!(log.verify("globex").await.unwrap().broken_at, None);

        // Dropping the newest events is caught through the head.
        sqlx::query("DELETE FROM audit_events WHERE tenant = 'globex' AND seq > 20")
            .execute(t.db.pool())
            .await
            .unwrap();
        let v = log.verify("globex").await.unwrap();
        assert_eq!(v.broken_at, Some(21), "{v:?}");
    }
}

/// A verification while events keep arriving (this host's writer, or another host's on the
/// same database) checks the chain up to the head it started from: a trail that is only
/// growing never reads as broken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_growing_trail_verifies_intact() {
    for t in testing::all().await {
        let log = std::sync::Arc::new(AuditLog::start(t.db.clone()));
        let writer = {
            let log = log.clone();
            tokio::spawn(async move {
                for n in 0..400 {
                    log.record(event("busy", n));
                    if n % 4 == 0 {
                        log.flush().await.unwrap();
                    }
                }
                log.flush().await.unwrap();
            })
        };
        let mut checked = 0;
        while !writer.is_finished() {
            let v = log.verify("busy").await.unwrap();
            assert_eq!(v.broken_at, None, "{:?}: {v:?}", t.backend);
            checked += 1;
        }
        writer.await.unwrap();
        let v = log.verify("busy").await.unwrap();
        assert_eq!((v.events, v.broken_at), (400, None), "{:?}", t.backend);
        assert!(checked > 1, "verified while the trail grew");
    }
}
