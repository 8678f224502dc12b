//! Throwaway databases for tests, on both backends.
//!
//! SQLite: a fresh file in a temporary directory. PostgreSQL: a fresh database
//! on the server named by `AIRLOCK_TEST_POSTGRES_URL` (scripts/test starts one).
//! Without that variable PostgreSQL is skipped with a notice, except under CI
//! (`CI=true`), where a missing server is a failure, never a silent skip.

use crate::{Backend, Db};

/// A database that lives as long as this value (the SQLite file's directory is removed on drop).
pub struct TestDb {
    pub db: Db,
    pub backend: Backend,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// The directory holding the SQLite files, for tests that read them raw.
    pub fn dir(&self) -> Option<&std::path::Path> {
        self._dir.as_ref().map(|d| d.path())
    }
}

/// The PostgreSQL server URL for tests, or `None` (after a notice) when absent outside CI.
pub fn postgres_server_url() -> Option<String> {
    match std::env::var("AIRLOCK_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let on_ci = std::env::var("CI").map(|v| v == "true").unwrap_or(false);
            assert!(
                !on_ci,
                "AIRLOCK_TEST_POSTGRES_URL is not set under CI: run the tests through scripts/test, which starts PostgreSQL"
            );
            eprintln!("notice: AIRLOCK_TEST_POSTGRES_URL not set, PostgreSQL half of this test skipped (scripts/test sets it)");
            None
        }
    }
}

/// A fresh, migrated SQLite database.
pub async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().expect("temporary directory");
    let db = Db::connect(&Db::sqlite_url(dir.path())).await.expect("open sqlite");
    TestDb { db, backend: Backend::Sqlite, _dir: Some(dir) }
}

/// A fresh, migrated PostgreSQL database, if a server is configured.
pub async fn postgres() -> Option<TestDb> {
    let server = postgres_server_url()?;
    let name = format!("airlock_test_{}", uuid::Uuid::new_v4().simple());
    let admin = Db::connect_without_migrations(&server).await.expect("connect to test postgres");
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(admin.pool()).await.expect("create test database");
    let url = with_database(&server, &name);
    let db = Db::connect(&url).await.expect("open test database");
    Some(TestDb { db, backend: Backend::Postgres, _dir: None })
}

/// Every backend available to this test run: SQLite always, PostgreSQL when configured.
pub async fn all() -> Vec<TestDb> {
    let mut dbs = vec![sqlite().await];
    dbs.extend(postgres().await);
    dbs
}

/// Replaces the database name in a PostgreSQL URL.
pub fn with_database(server: &str, name: &str) -> String {
    let (base, query) = match server.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (server, String::new()),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    format!("{base}/{name}{query}")
}
