//! Signed checkpoints against an attacker who can write the database: they edit, delete,
//! reorder and truncate audit rows and recompute every hash after the change and the head,
//! as anyone with write access can. The online `verify` (the chain and its head, both in the
//! database) is fooled every time; the offline verifier, holding an export against the
//! host's public key and a checkpoint signed before the tampering, catches every case. The
//! host also refuses to sign the rewritten head.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use airlock_audit::checkpoint::{verify_export, Checkpoint, CheckpointError, CheckpointKey, Signed};
use airlock_audit::{event_hash, AuditEvent, AuditLog};
use airlock_store::{sqlx, testing, Db};
use serde_json::json;

const TENANT: &str = "acme";
/// Events before the checkpoint, and after it.
const SIGNED: i64 = 30;
const TAIL: i64 = 5;

fn event(tenant: &str, n: i64) -> AuditEvent {
    AuditEvent {
        tenant: tenant.into(),
        kind: "tool.call".into(),
        outcome: if n % 2 == 0 { "allowed".into() } else { "denied".into() },
        agent: format!("agent:a{n}"),
        tool: "billing.refund".into(),
        detail: json!({ "n": n, "amount": n as f64 / 3.0, "note": "ünïcode \u{0} \"quoted\"" }),
    }
}

/// A trail of `SIGNED` events in `acme` (and some in `globex`), a checkpoint of it signed by a
/// fresh key, then `TAIL` more events.
async fn setup(db: &Db) -> (AuditLog, CheckpointKey, Checkpoint) {
    let log = AuditLog::start(db.clone());
    for n in 1..=SIGNED {
        log.record(event(TENANT, n));
        log.record(event("globex", n));
    }
    log.flush().await.unwrap();
    let (key, _) = CheckpointKey::generate().unwrap();
    let Signed::New(checkpoint) = log.sign_head(&key, TENANT, None).await.unwrap() else {
        panic!("a first checkpoint is new")
    };
    assert_eq!(checkpoint.seq, SIGNED);
    // Signing again without a move signs nothing new.
    assert_eq!(log.sign_head(&key, TENANT, Some(&checkpoint)).await.unwrap(), Signed::Unchanged(checkpoint.clone()));
    for n in SIGNED + 1..=SIGNED + TAIL {
        log.record(event(TENANT, n));
    }
    log.flush().await.unwrap();
    (log, key, checkpoint)
}

/// `(seq, ts, kind, outcome, agent, tool, detail, prev_hash, hash)`, as stored.
type Row = (i64, i64, String, String, String, String, String, String, String);

async fn rows(db: &Db, tenant: &str) -> Vec<Row> {
    sqlx::query_as(
        "SELECT seq, ts, kind, outcome, agent, tool, detail, prev_hash, hash FROM audit_events \
         WHERE tenant = $1 ORDER BY seq",
    )
    .bind(tenant)
    .fetch_all(db.pool())
    .await
    .unwrap()
}

/// What an attacker with write access does after changing `rows`: number them 1.. again,
/// recompute every link and hash from genesis, replace the tenant's rows and set the head.
/// Returns the new hashes.
async fn rewrite(db: &Db, tenant: &str, rows: Vec<Row>) -> Vec<String> {
    let mut tx = db.pool().begin().await.unwrap();
    // The head goes too: on SQLite the database's triggers take the rows only from genesis.
    for sql in ["DELETE FROM audit_events WHERE tenant = $1", "DELETE FROM audit_heads WHERE tenant = $1"] {
        sqlx::query(sql).bind(tenant).execute(&mut *tx).await.unwrap();
    }
    let mut prev = "0".repeat(64);
    let mut hashes = Vec::new();
    for (i, (_, ts, kind, outcome, agent, tool, detail, _, _)) in rows.into_iter().enumerate() {
        let seq = i as i64 + 1;
        let e = AuditEvent { tenant: tenant.into(), kind, outcome, agent, tool, detail: serde_json::Value::Null };
        let hash = event_hash(&prev, seq, ts, &e, &detail);
        sqlx::query(
            "INSERT INTO audit_events (tenant, seq, ts, kind, outcome, agent, tool, detail, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(tenant)
        .bind(seq)
        .bind(ts)
        .bind(&e.kind)
        .bind(&e.outcome)
        .bind(&e.agent)
        .bind(&e.tool)
        .bind(&detail)
        .bind(&prev)
        .bind(&hash)
        .execute(&mut *tx)
        .await
        .unwrap();
        prev = hash.clone();
        hashes.push(hash);
    }
    sqlx::query(
        "INSERT INTO audit_heads (tenant, seq, hash) VALUES ($1, $2, $3) \
         ON CONFLICT (tenant) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
    )
    .bind(tenant)
    .bind(hashes.len() as i64)
    .bind(&prev)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    hashes
}

#[derive(Debug, Clone, Copy)]
enum Attack {
    /// A denial turned into an allow.
    Edit,
    /// An event in the middle removed.
    Delete,
    /// Two events swapped.
    Reorder,
    /// The newest events removed, down to below the checkpoint.
    Truncate,
    /// Truncated, and the checkpoint rows deleted too: only a copy kept elsewhere catches it.
    TruncateAndDeleteCheckpoints,
    /// The tenant's every row and head removed, and its checkpoints.
    Wipe,
    /// Edited, and the stored checkpoint's hash set to the new one.
    EditAndForgeCheckpoint,
}

#[tokio::test]
async fn offline_verify_catches_every_rewrite_that_fools_the_online_verify() {
    use Attack::*;
    for attack in [Edit, Delete, Reorder, Truncate, TruncateAndDeleteCheckpoints, Wipe, EditAndForgeCheckpoint] {
        let mut dbs = vec![testing::sqlite().await];
        dbs.extend(testing::postgres().await);
        for t in dbs {
            let db = &t.db;
            let (log, key, checkpoint) = setup(db).await;
            let what = format!("{attack:?} on {:?}", t.backend);
            // The witness: the checkpoint kept outside the database (an earlier export, the
            // host's witness file).
            let witness = vec![checkpoint.clone()];

            // Before: the honest export verifies, and says what the signature covers.
            let honest = log.export(TENANT).await.unwrap();
            let report = verify_export(&honest[..], key.public_key(), &[]).unwrap();
            assert_eq!((report.events, report.newest.seq, report.unsigned), (SIGNED + TAIL, SIGNED, TAIL), "{what}");
            assert!(report.to_string().starts_with("VERIFIED: 35 events of `acme`"), "{report}");

            let mut stored = rows(db, TENANT).await;
            assert_eq!(stored.len() as i64, SIGNED + TAIL);
            match attack {
                Edit | EditAndForgeCheckpoint => {
                    assert_eq!(stored[5].3, "allowed");
                    stored[6].3 = "allowed".into(); // event 7 was denied
                }
                Delete => {
                    stored.remove(9);
                }
                Reorder => stored.swap(3, 4),
                Truncate | TruncateAndDeleteCheckpoints => stored.truncate(20),
                Wipe => stored.clear(),
            }
            let hashes = rewrite(db, TENANT, stored).await;
            match attack {
                TruncateAndDeleteCheckpoints => {
                    sqlx::query("DELETE FROM audit_checkpoints WHERE tenant = $1")
                        .bind(TENANT)
                        .execute(db.pool())
                        .await
                        .unwrap();
                }
                Wipe => {
                    for sql in
                        ["DELETE FROM audit_heads WHERE tenant = $1", "DELETE FROM audit_checkpoints WHERE tenant = $1"]
                    {
                        sqlx::query(sql).bind(TENANT).execute(db.pool()).await.unwrap();
                    }
                }
                EditAndForgeCheckpoint => {
                    sqlx::query("UPDATE audit_checkpoints SET hash = $2 WHERE tenant = $1 AND seq = $3")
                        .bind(TENANT)
                        .bind(&hashes[(SIGNED - 1) as usize])
                        .bind(SIGNED)
                        .execute(db.pool())
                        .await
                        .unwrap();
                }
                _ => {}
            }

            // The online verify is fooled: chain and head agree.
            let online = log.verify(TENANT).await.unwrap();
            assert_eq!(online.broken_at, None, "{what}: {online:?}");

            // The offline verify is not.
            let export = log.export(TENANT).await.unwrap();
            let found = verify_export(&export[..], key.public_key(), &[]);
            let with_witness = verify_export(&export[..], key.public_key(), &witness);
            let expect = |result: &Result<_, airlock_audit::checkpoint::Broken>, words: &str| {
                let broken = result.as_ref().expect_err(&what);
                assert!(broken.reason.contains(words), "{what}: expected `{words}` in: {}", broken.reason);
            };
            match attack {
                Edit | Delete | Reorder => {
                    expect(&found, "rewritten at or before event 30");
                    expect(&with_witness, "rewritten at or before event 30");
                }
                Truncate => {
                    expect(&found, "events 21..30 were removed (truncated)");
                    expect(&with_witness, "events 21..30 were removed (truncated)");
                }
                TruncateAndDeleteCheckpoints => {
                    expect(&found, "no signed checkpoint");
                    expect(&with_witness, "events 21..30 were removed (truncated)");
                }
                Wipe => {
                    expect(&found, "no signed checkpoint");
                    expect(&with_witness, "the trail ends at event 0");
                }
                EditAndForgeCheckpoint => {
                    expect(&found, "altered or forged");
                    expect(&with_witness, "altered or forged");
                }
            }

            // And the host refuses to sign the rewritten head, whether its database still
            // holds the checkpoint or the host remembers the one it signed.
            let known = [None, Some(&checkpoint)];
            let known = match attack {
                TruncateAndDeleteCheckpoints | Wipe => &known[1..],
                _ => &known[..],
            };
            for k in known {
                let signed = log.sign_head(&key, TENANT, *k).await;
                assert!(matches!(signed, Err(CheckpointError::Tampered { .. })), "{what} (known {k:?}): {signed:?}");
            }
            // The other tenant's trail is untouched and signs.
            assert!(matches!(log.sign_head(&key, "globex", None).await, Ok(Signed::New(_))), "{what}");
        }
    }
}

#[tokio::test]
async fn the_offline_verifier_holds_an_export_to_its_own_lines() {
    let t = testing::sqlite().await;
    let (log, key, checkpoint) = setup(&t.db).await;
    let export = String::from_utf8(log.export(TENANT).await.unwrap()).unwrap();
    let lines: Vec<&str> = export.lines().collect();
    // header, 35 events, 1 checkpoint
    assert_eq!(lines.len() as i64, 1 + SIGNED + TAIL + 1);
    let check = |text: String, words: &str| {
        let broken = verify_export(text.as_bytes(), key.public_key(), &[]).unwrap_err();
        assert!(broken.reason.contains(words), "expected `{words}` in: {}", broken.reason);
    };
    let join = |lines: &[&str]| lines.join("\n");

    // An event edited in the file (hash left alone).
    check(export.replacen("\"outcome\":\"denied\"", "\"outcome\":\"allowed\"", 1), "does not match its hash");
    // A line removed, or two swapped.
    let mut v = lines.clone();
    v.remove(10);
    check(join(&v), "event 10 is missing or out of place");
    let mut v = lines.clone();
    v.swap(4, 5);
    check(join(&v), "event 4 is missing or out of place: after event 3 comes event 5");
    // Events cut from the end of the file (header kept).
    let mut v = lines.clone();
    v.drain(20..=(SIGNED + TAIL) as usize);
    check(join(&v), "the file is incomplete");
    // ... and without the header too: the checkpoint is not reached.
    let v: Vec<&str> = lines[1..20].iter().chain(lines.last()).copied().collect();
    check(join(&v), "were removed (truncated)");
    // Another key.
    let (other, _) = CheckpointKey::generate().unwrap();
    let broken = verify_export(export.as_bytes(), other.public_key(), &[]).unwrap_err();
    assert!(broken.reason.contains("not by the given key"), "{}", broken.reason);
    // No checkpoint at all proves nothing.
    check(join(&lines[..lines.len() - 1]), "no signed checkpoint");
    // Another tenant's checkpoint in the file.
    let globex = key.sign("globex", 1, &checkpoint.hash, checkpoint.ts);
    let mut v: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    v.push(serde_json::to_string(&json!({ "checkpoint": globex })).unwrap());
    check(v.join("\n"), "not one trail");
    // Not an export at all (the plain export's lines).
    check("{\"seq\":1}".into(), "not a line of a signed audit export");
}
