//! Two independent pools over one database, standing for two host processes.

// Test helpers outside `#[test]` functions may fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(dead_code)]

use airlock_store::testing::{self, TestDb};
use airlock_store::{sqlx, Backend, Db};

/// One database per backend, opened twice: `(backend, first pool, second pool, keep-alive)`.
pub async fn twins() -> Vec<(Backend, Db, Db, Option<TestDb>)> {
    let mut out = Vec::new();
    let sqlite = testing::sqlite().await;
    let dir = sqlite.dir().expect("sqlite test db has a directory").to_path_buf();
    let second = Db::connect(&Db::sqlite_url(&dir)).await.expect("second sqlite pool");
    out.push((Backend::Sqlite, sqlite.db.clone(), second, Some(sqlite)));
    if let Some(server) = testing::postgres_server_url() {
        let name = format!("airlock_test_{}", uuid::Uuid::new_v4().simple());
        let admin = Db::connect_without_migrations(&server).await.expect("connect to test postgres");
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(admin.pool()).await.expect("create database");
        let url = testing::with_database(&server, &name);
        let first = Db::connect(&url).await.expect("first postgres pool");
        let second = Db::connect(&url).await.expect("second postgres pool");
        out.push((Backend::Postgres, first, second, None));
    }
    out
}
