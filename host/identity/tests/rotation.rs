//! Key rotation, the grace period, and hosts sharing one database, on both backends.

// Test helpers outside #[test] functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use airlock_identity::{Identity, TokenError, KEY_GRACE};
use airlock_store::testing::{self, TestDb};
use airlock_store::{now_millis, sqlx, Backend, Db};
use common::*;

fn kids(jwks: &serde_json::Value) -> HashSet<String> {
    jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_string()).collect()
}

async fn active_rows(db: &Db) -> i64 {
    let (n,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM identity_keys WHERE active = 1").fetch_one(db.pool()).await.unwrap();
    n
}

/// A second, independent pool on the same database, as another host would have.
async fn second_pool(t: &TestDb) -> Db {
    match t.backend {
        Backend::Sqlite => Db::connect(&Db::sqlite_url(t.dir().unwrap())).await.unwrap(),
        Backend::Postgres => {
            let (name,): (String,) =
                sqlx::query_as("SELECT current_database()::text").fetch_one(t.db.pool()).await.unwrap();
            let server = testing::postgres_server_url().unwrap();
            Db::connect(&testing::with_database(&server, &name)).await.unwrap()
        }
    }
}

#[tokio::test]
async fn jwks_publishes_the_active_key() {
    for t in testing::all().await {
        let id = open(&t.db).await;
        let jwks = id.jwks().await.unwrap();
        let keys = jwks["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 1);
        let k = &keys[0];
        assert_eq!(k["kty"], "OKP");
        assert_eq!(k["crv"], "Ed25519");
        assert_eq!(k["alg"], "EdDSA");
        assert_eq!(k["use"], "sig");
        assert_eq!(k["kid"], id.active_kid());
        assert!(k.get("d").is_none(), "the private half must never be published: {k}");
        // Reopening finds the same key, it does not make another.
        let again = open(&t.db).await;
        assert_eq!(again.active_kid(), id.active_kid());
        assert_eq!(active_rows(&t.db).await, 1);
    }
}

#[tokio::test]
async fn private_key_is_sealed_under_its_kid() {
    for t in testing::all().await {
        let id = open(&t.db).await;
        let kid = id.active_kid();
        let (sealed,): (Vec<u8>,) = sqlx::query_as("SELECT sealed_private FROM identity_keys WHERE kid = $1")
            .bind(&kid)
            .fetch_one(t.db.pool())
            .await
            .unwrap();
        let m = master();
        assert!(m.open(format!("airlock-identity signing key {kid}").as_bytes(), &sealed).is_ok());
        assert!(m.open(b"airlock-identity signing key other", &sealed).is_err());
        // Another master key cannot open the store.
        let other = std::sync::Arc::new(
            airlock_vault::MasterKey::from_base64("ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=").unwrap(),
        );
        let err = Identity::open(t.db.clone(), other, ISSUER.into()).await.err().unwrap();
        assert!(err.to_string().contains(&format!("`{kid}`")), "{err}");
    }
}

#[tokio::test]
async fn old_tokens_verify_after_rotation() {
    for t in testing::all().await {
        let id = open(&t.db).await;
        let old_kid = id.active_kid();
        let old = id.issue_agent_token("acme", "a", AUD, None).await.unwrap().access_token;
        let new_kid = id.rotate_key().await.unwrap();
        assert_ne!(new_kid, old_kid);
        assert_eq!(id.active_kid(), new_kid);
        assert_eq!(active_rows(&t.db).await, 1);

        let new = id.issue_agent_token("acme", "a", AUD, None).await.unwrap().access_token;
        assert_eq!(header(&new)["kid"], new_kid);
        assert_eq!(id.verify(&old, AUD).await.unwrap().agent.as_deref(), Some("a"));
        assert!(id.verify(&new, AUD).await.is_ok());
        assert_eq!(kids(&id.jwks().await.unwrap()), HashSet::from([old_kid.clone(), new_kid.clone()]));

        // Another host opened before the rotation learns the new key when it meets it.
        let other = open(&second_pool(&t).await).await;
        assert!(other.verify(&new, AUD).await.is_ok());
        assert!(other.verify(&old, AUD).await.is_ok());
    }
}

#[tokio::test]
async fn a_host_that_missed_a_rotation_reloads_on_unknown_kid() {
    for t in testing::all().await {
        let a = open(&t.db).await;
        let b = open(&second_pool(&t).await).await;
        a.rotate_key().await.unwrap();
        let token = a.issue_agent_token("acme", "a", AUD, None).await.unwrap().access_token;
        // b's ring was read at open: reloads are at most once a second.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert!(b.verify(&token, AUD).await.is_ok());
        assert_eq!(b.active_kid(), a.active_kid());
    }
}

#[tokio::test]
async fn keys_retired_past_the_grace_period_stop_verifying() {
    for t in testing::all().await {
        let id = open(&t.db).await;
        let old_kid = id.active_kid();
        let old = id.issue_agent_token("acme", "a", AUD, Some(Duration::from_secs(3600))).await.unwrap().access_token;
        let new_kid = id.rotate_key().await.unwrap();
        // Pretend the rotation happened longer ago than the grace period.
        let long_ago = now_millis() - KEY_GRACE.as_millis() as i64 - 60_000;
        sqlx::query("UPDATE identity_keys SET retired_at = $1 WHERE kid = $2")
            .bind(long_ago)
            .bind(&old_kid)
            .execute(t.db.pool())
            .await
            .unwrap();
        let later = open(&t.db).await;
        let err = later.verify(&old, AUD).await.unwrap_err();
        assert!(matches!(err, TokenError::UnknownKid(ref k) if *k == old_kid), "{err}");
        assert_eq!(kids(&later.jwks().await.unwrap()), HashSet::from([new_kid.clone()]));

        // The next rotation deletes it from the table.
        later.rotate_key().await.unwrap();
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM identity_keys WHERE kid = $1")
            .bind(&old_kid)
            .fetch_one(t.db.pool())
            .await
            .unwrap();
        assert_eq!(n, 0);
        assert_eq!(kids(&later.jwks().await.unwrap()).len(), 2);
    }
}

#[tokio::test]
async fn hosts_opening_together_make_one_active_key() {
    for t in testing::all().await {
        let mut pools = Vec::new();
        for _ in 0..4 {
            pools.push(second_pool(&t).await);
        }
        let opens = pools.iter().map(|db| Identity::open(db.clone(), master(), ISSUER.into()));
        let ids: Vec<std::sync::Arc<Identity>> =
            futures_join_all(opens).await.into_iter().map(std::sync::Arc::new).collect();
        assert_eq!(active_rows(&t.db).await, 1, "{:?}", t.backend);
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM identity_keys").fetch_one(t.db.pool()).await.unwrap();
        assert_eq!(n, 1, "{:?}: no orphan keys either", t.backend);
        let active: HashSet<String> = ids.iter().map(|i| i.active_kid()).collect();
        assert_eq!(active.len(), 1);

        // Concurrent rotations still leave exactly one active key, which every host then agrees on.
        let rotations = ids.iter().cloned().map(|i| async move { i.rotate_key().await });
        let results = futures_join_all_results(rotations).await;
        assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
        assert_eq!(active_rows(&t.db).await, 1, "{:?}", t.backend);
    }
}

/// Runs futures concurrently on this task (no extra crate needed for a join_all).
async fn futures_join_all<F, T, E>(futs: impl Iterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: std::fmt::Debug + Send + 'static,
{
    futures_join_all_results(futs).await.into_iter().map(|r| r.unwrap()).collect()
}

async fn futures_join_all_results<F, T>(futs: impl Iterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}
