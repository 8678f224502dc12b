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
        detail: json!({ "n": n, "written_for": tenant }),
    }
}

#[tokio::test]
async fn chains_verify_per_tenant_and_tampering_is_found() {
    for t in testing::all().await {
        let log = AuditLog::start(t.db.clone());
        for n in 0..25 {
            for tenant in ["acme", "globex", "initech", "umbrella"] {
                log.record(event(tenant, n));
            }
        }
        // A NUL (which PostgreSQL refuses in text) must not make the trail unstorable.
        let mut hostile = event("hostile", 0);
        hostile.tool = "x\0y".into();
        log.record(hostile);
        log.flush().await.unwrap();
        assert_eq!(log.list("hostile", 0, 10).await.unwrap()[0].event.tool, "x\u{FFFD}y", "{:?}", t.backend);

        let acme = log.list("acme", 0, 100).await.unwrap();
        assert_eq!(acme.len(), 25, "{:?}", t.backend);
        // What the writer put in each event (the reader stamps `tenant` itself): acme's own 25.
        let written: Vec<(String, u64)> = acme
            .iter()
            .map(|e| {
                (e.event.detail["written_for"].as_str().unwrap().to_string(), e.event.detail["n"].as_u64().unwrap())
            })
            .collect();
        assert_eq!(written, (0..25).map(|n| ("acme".to_string(), n)).collect::<Vec<_>>(), "{:?}", t.backend);
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

        // A row deleted from the middle: the gap is found where it is.
        assert_eq!(log.verify("initech").await.unwrap().broken_at, None);
        sqlx::query("DELETE FROM audit_events WHERE tenant = 'initech' AND seq = 12")
            .execute(t.db.pool())
            .await
            .unwrap();
        let v = log.verify("initech").await.unwrap();
        assert_eq!((v.broken_at, v.events), (Some(12), 11), "{v:?}");

        // The head rewritten to another hash (the rows untouched): caught at the end.
        assert_eq!(log.verify("umbrella").await.unwrap().broken_at, None);
        sqlx::query("UPDATE audit_heads SET hash = $1 WHERE tenant = 'umbrella'")
            .bind("f".repeat(64))
            .execute(t.db.pool())
            .await
            .unwrap();
        let v = log.verify("umbrella").await.unwrap();
        assert_eq!(v.broken_at, Some(26), "{v:?}");
        assert!(v.reason.as_deref().unwrap().contains("head's hash"), "{v:?}");
    }
}

/// Two writers on one database (two hosts on PostgreSQL, or a second process on the same SQLite
/// file) take turns on one tenant's chain: each writer remembers where the chain ended after its
/// own commit, and must notice that the other one moved it. The chain stays whole: every event
/// once, numbered without gaps, each linked to the one before.
#[tokio::test]
async fn two_writers_taking_turns_on_one_chain_keep_it_whole() {
    for t in testing::all().await {
        let first = AuditLog::start(t.db.clone());
        let second = AuditLog::start(t.db.clone());
        // Who writes each round: after a turn of the other writer, a writer's remembered head
        // is behind the table's; rounds 3 and 4 are the same writer, with the head rewritten
        // in between (same seq, another hash): remembered seq right, hash wrong.
        let turns = [&first, &second, &first, &second, &second, &first];
        for (round, writer) in (0..).zip(turns) {
            for n in 0..5 {
                writer.record(event("shared", round * 10 + n));
            }
            // A writer that missed a moved head would fork the chain, and the other one's
            // commits would then collide with it for good: a flush that never ends.
            let flushed = tokio::time::timeout(std::time::Duration::from_secs(30), writer.flush()).await;
            flushed.unwrap_or_else(|_| panic!("{:?}: round {round} never committed", t.backend)).unwrap();
            if round == 3 {
                sqlx::query("UPDATE audit_heads SET hash = $1 WHERE tenant = 'shared'")
                    .bind("e".repeat(64))
                    .execute(t.db.pool())
                    .await
                    .unwrap();
            }
        }
        let events = first.list("shared", 0, 100).await.unwrap();
        assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), (1..=30).collect::<Vec<_>>(), "{:?}", t.backend);
        let written: Vec<u64> = events.iter().map(|e| e.event.detail["n"].as_u64().unwrap()).collect();
        let expected: Vec<u64> = (0..6).flat_map(|r| (0..5).map(move |n| r * 10 + n)).collect();
        assert_eq!(written, expected, "{:?}", t.backend);
        for pair in events.windows(2) {
            let linked = pair[1].prev_hash == pair[0].hash;
            // The one break is the rewritten head: event 21 chains from what the table said.
            assert_eq!(linked, pair[1].seq != 21, "{:?} at {}", t.backend, pair[1].seq);
        }
        assert_eq!(events[20].prev_hash, "e".repeat(64), "{:?}", t.backend);
        let v = first.verify("shared").await.unwrap();
        assert_eq!(v.broken_at, Some(21), "{:?}: {v:?}", t.backend);
    }
}

/// On SQLite the database keeps the chain whole by itself: an event that does not follow its
/// tenant's head (a fork, a gap, a second genesis) is refused as a whole, and the head is
/// where the writer left it.
#[tokio::test]
async fn sqlite_refuses_an_event_that_does_not_follow_the_head() {
    let t = testing::sqlite().await;
    let log = AuditLog::start(t.db.clone());
    for n in 0..3 {
        log.record(event("acme", n));
    }
    log.flush().await.unwrap();
    let head = log.list("acme", 0, 10).await.unwrap().pop().unwrap();
    let genesis = "0".repeat(64);
    let forged = [
        ("a fork from the second event", 3, log.list("acme", 1, 1).await.unwrap()[0].hash.clone()),
        ("a gap after the head", 5, head.hash.clone()),
        ("the head's seq again", 3, head.hash.clone()),
        ("a second genesis", 1, genesis.clone()),
    ];
    for (what, seq, prev) in forged {
        let refused = sqlx::query(
            "INSERT INTO audit_events (tenant, seq, ts, kind, outcome, agent, tool, detail, prev_hash, hash) \
             VALUES ('acme', $1, 0, 'tool.call', 'allowed', 'agent:x', 't.t', '{}', $2, $3)",
        )
        .bind(seq)
        .bind(&prev)
        .bind("f".repeat(64))
        .execute(t.db.pool())
        .await;
        let message = refused.map(|_| String::new()).unwrap_or_else(|e| e.to_string());
        assert!(message.contains("audit chain head moved"), "{what}: {message:?}");
    }
    // What follows the head is taken, and the head moves with it.
    sqlx::query(
        "INSERT INTO audit_events (tenant, seq, ts, kind, outcome, agent, tool, detail, prev_hash, hash) \
         VALUES ('acme', 4, 0, 'tool.call', 'allowed', 'agent:x', 't.t', '{}', $1, $2)",
    )
    .bind(&head.hash)
    .bind("f".repeat(64))
    .execute(t.db.pool())
    .await
    .unwrap();
    let (seq, hash): (i64, String) =
        sqlx::query_as("SELECT seq, hash FROM audit_heads WHERE tenant = 'acme'").fetch_one(t.db.pool()).await.unwrap();
    assert_eq!((seq, hash), (4, "f".repeat(64)));
    // A new tenant starts from genesis.
    sqlx::query(
        "INSERT INTO audit_events (tenant, seq, ts, kind, outcome, agent, tool, detail, prev_hash, hash) \
         VALUES ('globex', 1, 0, 'tool.call', 'allowed', 'agent:x', 't.t', '{}', $1, $2)",
    )
    .bind(&genesis)
    .bind("a".repeat(64))
    .execute(t.db.pool())
    .await
    .unwrap();
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

/// `record_durable` never calls a record committed that is not: an event the database refuses
/// on its own is set aside and its caller told so (its neighbours commit), and while the
/// database refuses everything the caller hears "not yet durable" after the wait limit; the
/// record stays queued and lands once the database takes writes again.
// One thread: both events are queued before the writer runs, so they share a batch.
#[tokio::test]
async fn durable_says_when_a_record_is_set_aside_or_not_yet_committed() {
    let t = testing::sqlite().await;
    // What the database refuses: one kind of event, then (later) everything.
    sqlx::query(
        "CREATE TRIGGER poison BEFORE INSERT ON audit_events WHEN NEW.kind = 'poison' \
         BEGIN SELECT RAISE(ABORT, 'refused'); END",
    )
    .execute(t.db.pool())
    .await
    .unwrap();
    let log = AuditLog::start(t.db.clone()).with_durable_wait(std::time::Duration::from_secs(30));
    let mut poison = event("acme", 1);
    poison.kind = "poison".into();
    let (fine, refused) = (log.record(event("acme", 0)), log.record(poison));
    let (fine, refused) = tokio::join!(log.durable(fine), log.durable(refused));
    assert!(fine.is_ok(), "{fine:?}");
    assert!(matches!(refused, Err(airlock_audit::AuditError::SetAside)), "{refused:?}");
    assert_eq!(log.set_aside().iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(), ["poison"]);
    let v = log.verify("acme").await.unwrap();
    assert_eq!((v.events, v.broken_at), (1, None), "{v:?}");

    // The database takes nothing: the caller is told after the wait, the record is kept.
    sqlx::query("CREATE TRIGGER away BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'away'); END")
        .execute(t.db.pool())
        .await
        .unwrap();
    let log = log.with_durable_wait(std::time::Duration::from_millis(300));
    let waited = log.record_durable(event("acme", 2)).await;
    assert!(matches!(waited, Err(airlock_audit::AuditError::NotYetDurable(_))), "{waited:?}");
    sqlx::query("DROP TRIGGER away").execute(t.db.pool()).await.unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(30), log.flush()).await.unwrap().unwrap();
    let listed = log.list("acme", 0, 10).await.unwrap();
    assert_eq!(listed.iter().map(|e| e.event.detail["n"].as_u64().unwrap()).collect::<Vec<_>>(), [0, 2]);
}
