//! Storage shared by every Airlock engine.
//!
//! One [`Db`] handle over sqlx's `Any` driver, so that the same queries run on
//! the embedded default (SQLite, one file in the data directory) and on
//! PostgreSQL (several hosts sharing the work). Queries use `$1`-style
//! placeholders, which both backends accept. Migrations live in
//! `migrations/{sqlite,postgres}` and are embedded in the binary, applied at
//! connect time.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::AnyPool;
use std::str::FromStr;

pub use sqlx;

pub mod changes;
mod signal;
pub use changes::{Change, Changes, FreshTenants};
pub use signal::Signal;

#[cfg(feature = "testing")]
#[allow(clippy::expect_used, clippy::panic)]
pub mod testing;

/// Which database a [`Db`] talks to; only migrations and a few pragmas differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Failures opening or migrating the database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database url `{0}`: use `sqlite://PATH` or `postgres://...`")]
    UnsupportedUrl(String),
    #[error("cannot open database `{url}`: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("cannot apply migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Query(#[from] sqlx::Error),
    #[error("AIRLOCK_SQLITE_SYNCHRONOUS is `{0}`: use `full` (the default) or `normal`")]
    Synchronous(String),
}

/// How SQLite makes a commit durable, from `AIRLOCK_SQLITE_SYNCHRONOUS`.
///
/// `FULL` by default: in WAL mode the log is synced to the disk at every commit, so what a
/// commit acknowledged (an audited call's outcome, a decision, a grant claim, an install)
/// survives power loss as well as a `kill -9`; group commit makes the calls of a commit share
/// one sync. `normal` syncs only at checkpoints: a `kill -9` still loses nothing (the log is
/// in the operating system's hands), but a power cut may take the last commits with it, for
/// hosts whose disk is not what the trail relies on.
pub fn sqlite_synchronous() -> Result<&'static str, StoreError> {
    match std::env::var("AIRLOCK_SQLITE_SYNCHRONOUS").unwrap_or_default().to_ascii_lowercase().as_str() {
        "" | "full" => Ok("FULL"),
        "normal" => Ok("NORMAL"),
        other => Err(StoreError::Synchronous(other.to_string())),
    }
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// A connection pool plus the backend it talks to. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    /// Where the pool connects, for the one connection that listens for signals (PostgreSQL).
    url: std::sync::Arc<str>,
    /// The change feed between hosts (PostgreSQL); shared by every clone.
    changes: Changes,
}

impl std::fmt::Debug for Db {
    /// Without the URL, which may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("backend", &self.backend).finish_non_exhaustive()
    }
}

impl Db {
    /// Opens (creating if needed) the database at `url` and applies migrations.
    pub async fn connect(url: &str) -> Result<Db, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_string()));
        };
        let connect_err = |source| StoreError::Connect { url: redact(url), source };
        let options = AnyConnectOptions::from_str(url).map_err(connect_err)?;
        let pool_options = match backend {
            // SQLite allows one writer at a time; a small pool avoids lock churn. A connection
            // to a local file does not go stale, so the pool hands it out without a ping first
            // (a round trip to the connection's worker thread on every acquire).
            Backend::Sqlite => {
                let synchronous = sqlite_synchronous()?;
                AnyPoolOptions::new().max_connections(4).test_before_acquire(false).after_connect(move |conn, _| {
                    Box::pin(async move {
                        sqlx::query("PRAGMA busy_timeout = 10000").execute(&mut *conn).await?;
                        sqlx::query(&format!("PRAGMA synchronous = {synchronous}")).execute(&mut *conn).await?;
                        Ok(())
                    })
                })
            }
            Backend::Postgres => AnyPoolOptions::new().max_connections(16),
        };
        let pool = pool_options.connect_with(options).await.map_err(connect_err)?;
        if backend == Backend::Sqlite {
            // WAL lets readers run beside the writer; the setting is stored in the file.
            sqlx::query("PRAGMA journal_mode = WAL").execute(&pool).await?;
        }
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        Ok(Db::new(pool, backend, url))
    }

    fn new(pool: AnyPool, backend: Backend, url: &str) -> Db {
        let url: std::sync::Arc<str> = url.into();
        let changes = Changes::new((backend == Backend::Postgres).then(|| (url.clone(), pool.clone())));
        Db { pool, backend, url, changes }
    }

    /// Opens a pool without touching the schema (for administrative connections).
    pub async fn connect_without_migrations(url: &str) -> Result<Db, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") { Backend::Sqlite } else { Backend::Postgres };
        let pool = AnyPoolOptions::new()
            .max_connections(2)
            .connect(url)
            .await
            .map_err(|source| StoreError::Connect { url: redact(url), source })?;
        Ok(Db::new(pool, backend, url))
    }

    /// The URL of the embedded default: `airlock.db` inside `data_dir`.
    pub fn sqlite_url(data_dir: &Path) -> String {
        format!("sqlite://{}?mode=rwc", data_dir.join("airlock.db").display())
    }

    /// The pool, for running queries.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// This host's end of the change feed between hosts (module `changes`).
    pub fn changes(&self) -> &Changes {
        &self.changes
    }
}

/// Drops the password from a database URL before it goes into an error message.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***{}", &url[..scheme_end], &url[at..])
        }
        _ => url.to_string(),
    }
}

/// Unix time in milliseconds, the unit every table uses.
pub fn now_millis() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::unwrap_used)]
    fn sqlite_commits_are_synced_to_the_disk_unless_told_otherwise() {
        let setting = std::env::var("AIRLOCK_SQLITE_SYNCHRONOUS").unwrap_or_default();
        let expected = if setting.eq_ignore_ascii_case("normal") { 1 } else { 2 }; // NORMAL, FULL
        let dir = std::env::temp_dir().join(format!("airlock-synchronous-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let db = Db::connect(&Db::sqlite_url(&dir)).await.unwrap();
            // Every connection of the pool, not only the first.
            let mut held = Vec::new();
            for _ in 0..4 {
                let mut conn = db.pool().acquire().await.unwrap();
                let (mode,): (i64,) = sqlx::query_as("PRAGMA synchronous").fetch_one(&mut *conn).await.unwrap();
                assert_eq!(mode, expected, "AIRLOCK_SQLITE_SYNCHRONOUS={setting:?}");
                held.push(conn);
            }
        });
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn redacts_passwords_from_urls() {
        assert_eq!(redact("postgres://u:secret@127.0.0.1:5432/db"), "postgres://***@127.0.0.1:5432/db");
        assert_eq!(redact("sqlite:///tmp/a.db"), "sqlite:///tmp/a.db");
    }
}
