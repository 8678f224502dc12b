//! Signed audit checkpoints through the API and the CLI: the host signs the chain's head on
//! demand and on a schedule, the trail is exported with its checkpoints, and `airlock audit
//! verify` checks the export offline (no server, no database) against the public key. Then an
//! attacker with write access to the database rewrites the trail and recomputes the hashes:
//! the host's own verify is fooled, the offline verify and the host's signer are not.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::time::Duration;

use airlock::audit_checkpoints::{sealed_name, OWNER};
use airlock_audit::{event_hash, AuditEvent, CheckpointKey};
use airlock_store::sqlx;
use reqwest::Method;
use serde_json::{json, Value};
use support::TestHost;

/// Runs the `airlock` CLI against `t` (the default tenant's admin token from its data
/// directory); success, stdout, stderr.
fn cli(t: &TestHost, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(args)
        .args(["--server", &t.url, "--data-dir"])
        .arg(&t.dir)
        .env_remove("AIRLOCK_ADMIN_TOKEN")
        .env_remove("AIRLOCK_TOKEN")
        .env_remove("AIRLOCK_TENANT")
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// `airlock audit export --out FILE`.
fn export(t: &TestHost, file: &Path) {
    let (ok, _, err) = cli(t, &["audit", "export", "--out", file.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(err.contains("signed checkpoint(s) to"), "{err}");
}

/// `airlock audit verify --export FILE --key KEY [--witness FILE]`, offline.
fn verify(t: &TestHost, file: &Path, key: &str, witness: Option<&Path>) -> (bool, String, String) {
    let mut args = vec!["audit", "verify", "--export", file.to_str().unwrap(), "--key", key];
    if let Some(w) = witness {
        args.extend(["--witness", w.to_str().unwrap()]);
    }
    // No server is needed: point the CLI at none.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(&args)
        .args(["--server", "http://127.0.0.1:9", "--data-dir", "/nonexistent"])
        .env_remove("AIRLOCK_ADMIN_TOKEN")
        .env_remove("AIRLOCK_TOKEN")
        .output()
        .unwrap();
    let _ = t;
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// What an attacker with write access to the database does: change event `seq` of `tenant`
/// (its outcome), then recompute every hash and link after it, and the head.
async fn rewrite(t: &TestHost, tenant: &str, seq: i64) {
    let pool = t.host.db.pool();
    let mut tx = pool.begin().await.unwrap();
    type Row = (i64, i64, String, String, String, String, String);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT seq, ts, kind, outcome, agent, tool, detail FROM audit_events WHERE tenant = $1 ORDER BY seq",
    )
    .bind(tenant)
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    let mut prev = "0".repeat(64);
    for (s, ts, kind, outcome, agent, tool, detail) in rows {
        let outcome = if s == seq { format!("{outcome}-rewritten") } else { outcome };
        let e = AuditEvent { tenant: tenant.into(), kind, outcome, agent, tool, detail: Value::Null };
        let hash = event_hash(&prev, s, ts, &e, &detail);
        sqlx::query("UPDATE audit_events SET outcome = $3, prev_hash = $4, hash = $5 WHERE tenant = $1 AND seq = $2")
            .bind(tenant)
            .bind(s)
            .bind(&e.outcome)
            .bind(&prev)
            .bind(&hash)
            .execute(&mut *tx)
            .await
            .unwrap();
        prev = hash;
    }
    sqlx::query("UPDATE audit_heads SET hash = $2 WHERE tenant = $1")
        .bind(tenant)
        .bind(&prev)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_export_verifies_offline_until_the_database_is_rewritten() {
    let tmp = tempfile::tempdir().unwrap();
    let witness = tmp.path().join("witness.jsonl");
    let w = witness.clone();
    let t = TestHost::start_configured(tmp.path().join("data"), move |c| {
        c.audit_witness = Some(w);
        c.checkpoint_every = Duration::ZERO;
    })
    .await;
    for i in 0..5 {
        t.agent(&format!("bot{i}")).await;
    }

    // Signed on demand: the head as it stands, by the published key.
    let (status, checkpoint) = t.admin_post("/v1/audit/checkpoints", json!({})).await;
    assert_eq!(status, 200, "{checkpoint}");
    let head = t.host.audit.head("default").await.unwrap();
    assert_eq!((checkpoint["tenant"].as_str(), checkpoint["seq"].as_i64()), (Some("default"), Some(head)));
    let (status, key) = t.admin_get("/v1/audit/checkpoint-key").await;
    assert_eq!(status, 200, "{key}");
    assert_eq!((key["algorithm"].as_str(), &key["kid"]), (Some("Ed25519"), &checkpoint["kid"]), "{key}");
    let pubkey = key["public_key"].as_str().unwrap().to_string();
    let (_, listed) = t.admin_get("/v1/audit/checkpoints").await;
    assert_eq!(listed["checkpoints"], json!([checkpoint]));
    // Again without a move: the same checkpoint, nothing new signed.
    let (_, again) = t.admin_post("/v1/audit/checkpoints", json!({})).await;
    assert_eq!(again, checkpoint);
    // The operator signs every chain: the host's own too.
    let (status, all) = t.request(Method::POST, "/v1/host/audit/checkpoints", &t.operator, None).await;
    assert_eq!(status, 200, "{all}");
    assert!(all["checkpoints"].as_array().unwrap().iter().any(|c| c["tenant"] == "_host"), "{all}");
    assert_eq!(all["refused"], json!([]));
    let (status, host_key) = t.request(Method::GET, "/v1/host/audit/checkpoint-key", &t.operator, None).await;
    assert_eq!((status, &host_key), (200, &key));

    // Each new checkpoint went to the witness file too, and only the new ones.
    let witnessed = std::fs::read_to_string(&witness).unwrap();
    let witnessed: Vec<Value> = witnessed.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(witnessed.iter().filter(|c| c["tenant"] == "default").collect::<Vec<_>>(), [&checkpoint]);
    assert!(witnessed.iter().any(|c| c["tenant"] == "_host"));

    // Exported through the CLI and verified offline.
    let before = tmp.path().join("before.jsonl");
    export(&t, &before);
    let (ok, out, err) = verify(&t, &before, &pubkey, None);
    assert!(ok, "{err}");
    assert!(out.contains(&format!("VERIFIED: {head} events of `default`")), "{out}");
    // The key may also be given as the file `airlock audit key` prints.
    let (ok, key_json, err) = cli(&t, &["audit", "key"]);
    assert!(ok, "{err}");
    let key_file = tmp.path().join("key.json");
    std::fs::write(&key_file, key_json).unwrap();
    assert!(verify(&t, &before, key_file.to_str().unwrap(), None).0);
    // The plain export is not a signed one; the signed one starts with its header.
    let first: Value = serde_json::from_str(std::fs::read_to_string(&before).unwrap().lines().next().unwrap()).unwrap();
    assert_eq!((first["export"]["tenant"].as_str(), first["export"]["head"].as_i64()), (Some("default"), Some(head)));

    // The attacker rewrites event 2 and every hash after it, and the head.
    t.host.flush().await;
    rewrite(&t, "default", 2).await;
    let (_, online) = t.admin_get("/v1/audit/verify").await;
    assert_eq!(online["broken_at"], Value::Null, "the online verify is fooled: {online}");

    let after = tmp.path().join("after.jsonl");
    export(&t, &after);
    let (ok, _, err) = verify(&t, &after, &pubkey, None);
    assert!(!ok);
    assert!(err.contains("NOT VERIFIED") && err.contains("rewritten at or before event"), "{err}");
    // The host signs no rewritten trail.
    let (status, body) = t.admin_post("/v1/audit/checkpoints", json!({})).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("audit_tampered")), "{body}");

    // Covering their tracks, they delete the checkpoints: the export then proves nothing, and
    // the witness, out of their reach, still catches the rewrite.
    sqlx::query("DELETE FROM audit_checkpoints").execute(t.host.db.pool()).await.unwrap();
    let (_, listed) = t.admin_get("/v1/audit/checkpoints").await;
    assert_eq!(listed["checkpoints"], json!([]));
    let covered = tmp.path().join("covered.jsonl");
    export(&t, &covered);
    let (ok, _, err) = verify(&t, &covered, &pubkey, None);
    assert!(!ok && err.contains("no signed checkpoint"), "{err}");
    let (ok, _, err) = verify(&t, &covered, &pubkey, Some(&witness));
    assert!(!ok && err.contains("rewritten at or before event"), "{err}");
    // And this host remembers what it signed: it still refuses.
    let (status, body) = t.admin_post("/v1/audit/checkpoints", json!({})).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("audit_tampered")), "{body}");

    // The export made before still verifies: a copy kept is evidence.
    assert!(verify(&t, &before, &pubkey, Some(&witness)).0);
    // Another key verifies nothing.
    let (other, _) = CheckpointKey::generate().unwrap();
    let (ok, _, err) = verify(&t, &before, &other.public_key().to_hex(), None);
    assert!(!ok && err.contains("not by the given key"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chains_are_signed_on_a_schedule_and_witnessed() {
    let tmp = tempfile::tempdir().unwrap();
    let witness = tmp.path().join("witness.jsonl");
    let w = witness.clone();
    let t = TestHost::start_configured(tmp.path().join("data"), move |c| {
        c.audit_witness = Some(w);
        c.checkpoint_every = Duration::from_millis(200);
    })
    .await;
    t.agent("scheduled").await;
    t.host.flush().await;
    let head = t.host.audit.head("default").await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, listed) = t.admin_get("/v1/audit/checkpoints").await;
        if listed["checkpoints"].as_array().unwrap().iter().any(|c| c["seq"].as_i64() >= Some(head)) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no checkpoint of event {head} came: {listed}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let witnessed = std::fs::read_to_string(&witness).unwrap();
    assert!(witnessed.lines().any(|l| l.contains("\"tenant\":\"default\"")), "{witnessed}");
    // The signed export verifies offline with the published key.
    let (_, key) = t.admin_get("/v1/audit/checkpoint-key").await;
    let resp = reqwest::Client::new()
        .get(format!("{}/v1/audit/export/signed", t.url))
        .bearer_auth(&t.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
    assert_eq!(resp.headers()["content-disposition"], "attachment; filename=\"audit-default.signed.jsonl\"");
    let text = resp.text().await.unwrap();
    let key = airlock_audit::checkpoint::PublicKey::from_hex(key["public_key"].as_str().unwrap()).unwrap();
    let report = airlock_audit::checkpoint::verify_export(text.as_bytes(), &key, &[]).unwrap();
    assert!(report.newest.seq >= head, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkpoint_key_is_stored_sealed_never_in_plain() {
    let t = TestHost::start().await;
    let rows: Vec<(String, String, Vec<u8>)> =
        sqlx::query_as("SELECT kid, public_key, sealed_private FROM audit_checkpoint_keys")
            .fetch_all(t.host.db.pool())
            .await
            .unwrap();
    assert_eq!(rows.len(), 1);
    let (kid, public_key, sealed) = rows.into_iter().next().unwrap();
    let (_, published) = t.admin_get("/v1/audit/checkpoint-key").await;
    assert_eq!((published["kid"].as_str(), published["public_key"].as_str()), (Some(&*kid), Some(&*public_key)));

    // The sealed bytes are the key: the vault (the master key) opens them, bound to the
    // key's purpose and kid, into the private key of the published public key...
    let pkcs8 = t.host.vault.open_host_secret(OWNER, &sealed_name(&kid), &sealed).await.unwrap();
    assert_eq!(CheckpointKey::from_pkcs8(&pkcs8).unwrap().public_key().to_hex(), public_key);
    assert!(t.host.vault.open_host_secret(OWNER, &sealed_name("another-kid"), &sealed).await.is_err());
    assert!(t.host.vault.open_host_secret("default", &sealed_name(&kid), &sealed).await.is_err());
    // ... and nothing of the private key is anywhere in the database's files, in any encoding.
    // PKCS#8 of Ed25519 (RFC 8410): SEQUENCE (its length), version 1, the Ed25519 OID, then
    // the 32-byte seed as an OCTET STRING inside an OCTET STRING.
    const ED25519_PKCS8_AFTER_LENGTH: [u8; 14] = [2, 1, 1, 0x30, 5, 6, 3, 0x2b, 0x65, 0x70, 4, 0x22, 4, 0x20];
    assert_eq!((pkcs8[0], &pkcs8[2..16]), (0x30, &ED25519_PKCS8_AFTER_LENGTH[..]));
    let seed = pkcs8[16..48].to_vec();
    use base64::Engine as _;
    let needles: Vec<Vec<u8>> = vec![
        seed.clone(),
        pkcs8.to_vec(),
        hex::encode(&seed).into_bytes(),
        base64::engine::general_purpose::STANDARD.encode(&seed).into_bytes(),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&seed).into_bytes(),
        base64::engine::general_purpose::STANDARD.encode(&*pkcs8).into_bytes(),
    ];
    t.host.flush().await;
    let mut searched = 0;
    for entry in std::fs::read_dir(&t.dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.starts_with("airlock.db") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        searched += bytes.len();
        for needle in &needles {
            assert!(!bytes.windows(needle.len()).any(|w| w == &needle[..]), "the private key is in plain in {name}");
        }
    }
    assert!(searched > 0, "the database files were searched");
    assert!(!sealed.windows(seed.len()).any(|w| w == &seed[..]));

    // Another host opening the same database uses the same key.
    let mut config = airlock::Config::new(t.dir.clone());
    config.shared_sqlite = true;
    config.register_bundled = false;
    let second = airlock::Airlock::open(&config).await.unwrap();
    assert_eq!(second.checkpoints.public_key().to_hex(), public_key);
}
