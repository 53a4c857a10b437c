//! Storage plumbing: one `sqlx::Any` pool over SQLite or PostgreSQL, embedded migrations for each,
//! portable time encoding, and write transactions.
//!
//! SQL is written once with `$n` placeholders (both backends accept them). Where the backends must
//! differ (locking, `SKIP LOCKED`, advisory locks) callers branch on [`Db::backend`].
//!
//! Times are stored as fixed-width RFC 3339 UTC text (`2026-01-02T03:04:05.000000Z`), which sorts and
//! compares correctly as text on both backends.

use std::{str::FromStr, sync::Arc, time::Duration};

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use sqlx::{
    Any, AnyConnection, AnyPool, Executor, Transaction,
    any::{AnyConnectOptions, AnyPoolOptions},
    migrate::{Migration, MigrationType, Migrator},
};
use tokio::sync::{Mutex, OwnedMutexGuard};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    /// SQLite allows one writer; queueing writers here (fairly, without polling) keeps
    /// `SQLITE_BUSY` out of the request path. `None` on PostgreSQL, which locks rows instead.
    write_lock: Option<Arc<Mutex<()>>>,
}

/// A write transaction. On SQLite it also holds the process-wide writer slot until dropped.
pub struct Tx {
    tx: Transaction<'static, Any>,
    _writer: Option<OwnedMutexGuard<()>>,
}

impl Tx {
    pub fn conn(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("unsupported database URL (expected sqlite:// or postgres://): {0}")]
    UnsupportedUrl(String),
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl Db {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, DbError> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if url.starts_with("sqlite:") {
            (Backend::Sqlite, sqlite_url(url))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            (Backend::Postgres, url.to_string())
        } else {
            return Err(DbError::UnsupportedUrl(url.split(':').next().unwrap_or("").into()));
        };
        let options = AnyConnectOptions::from_str(&url)?;
        let mut pool = AnyPoolOptions::new().max_connections(max_connections).acquire_timeout(Duration::from_secs(10));
        if backend == Backend::Sqlite {
            pool = pool.after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;")
                        .await?;
                    Ok(())
                })
            });
        }
        let pool = pool.connect_with(options).await?;
        Ok(Self { pool, backend, write_lock: (backend == Backend::Sqlite).then(|| Arc::new(Mutex::new(()))) })
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Runs the embedded migrations of this backend.
    pub async fn migrate(&self) -> Result<(), DbError> {
        migrator(self.backend).run(&self.pool).await?;
        Ok(())
    }

    /// Begins a write transaction. SQLite: waits for the writer slot, then `BEGIN IMMEDIATE` so the
    /// write lock is taken up front (another process writing makes it wait, not fail mid-transaction).
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        match &self.write_lock {
            Some(lock) => {
                let guard = lock.clone().lock_owned().await;
                let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
                Ok(Tx { tx, _writer: Some(guard) })
            }
            None => Ok(Tx { tx: self.pool.begin().await?, _writer: None }),
        }
    }

    /// The row-lock suffix for a `SELECT` inside a write transaction: ` FOR UPDATE` on PostgreSQL,
    /// nothing on SQLite (whose writer slot already serialises write transactions).
    pub fn for_update(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        }
    }

    /// [`Db::for_update`] for code that holds only a connection (inside a transaction it was given).
    pub fn lock_clause(conn: &AnyConnection) -> &'static str {
        if conn.backend_name() == "PostgreSQL" { " FOR UPDATE" } else { "" }
    }

    /// `SELECT 1`, for readiness.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(|_| ())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Pool gauges: (open connections, idle connections, max).
    pub fn pool_stats(&self) -> (u32, u32, u32) {
        (self.pool.size(), self.pool.num_idle() as u32, self.pool.options().get_max_connections())
    }
}

/// `sqlite://file.db` → create the file when missing. `sqlite::memory:` is passed through.
fn sqlite_url(url: &str) -> String {
    if url.contains("mode=") || url.contains(":memory:") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

macro_rules! migrations {
    ($dir:literal: $($version:literal $name:literal),* $(,)?) => {
        vec![$(Migration::new(
            $version,
            $name.into(),
            MigrationType::Simple,
            sqlx::SqlSafeStr::into_sql_str(include_str!(concat!("../migrations/", $dir, "/", $version, "_", $name, ".sql"))),
            false,
        )),*]
    };
}

fn migrator(backend: Backend) -> Migrator {
    let migrations = match backend {
        Backend::Sqlite => migrations!("sqlite":
            1 "init", 2 "classes", 3 "consent", 4 "gamification", 5 "chat", 6 "jobs", 7 "bookings", 8 "money", 9 "media",
            10 "mail"),
        Backend::Postgres => migrations!("postgres":
            1 "init", 2 "classes", 3 "consent", 4 "gamification", 5 "chat", 6 "jobs", 7 "bookings", 8 "money", 9 "media",
            10 "mail"),
    };
    Migrator::with_migrations(migrations)
}

/// Encodes a time for storage (see the module doc).
pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub fn parse_ts(s: &str) -> Result<DateTime<Utc>, sqlx::Error> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| sqlx::Error::Decode(format!("bad timestamp {s:?}: {e}").into()))
}

pub fn parse_date(s: &str) -> Result<NaiveDate, sqlx::Error> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|e| sqlx::Error::Decode(format!("bad date {s:?}: {e}").into()))
}

/// True when the error is a unique-constraint violation (both backends).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => d.is_unique_violation(),
        _ => false,
    }
}

/// `as_str` and `from_column` for a unit enum stored as text.
macro_rules! text_enum {
    ($ty:ty { $($variant:ident = $text:literal),* $(,)? }) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),* }
            }
            pub fn from_column(s: &str) -> Result<Self, sqlx::Error> {
                match s {
                    $($text => Ok(Self::$variant),)*
                    _ => Err(sqlx::Error::Decode(format!("bad {} {s:?}", stringify!($ty)).into())),
                }
            }
        }
    };
}
pub(crate) use text_enum;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_sort_as_text() {
        let a = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z").unwrap().with_timezone(&Utc);
        let b = a + chrono::Duration::microseconds(1);
        assert!(ts(a) < ts(b));
        assert_eq!(ts(a), "2026-01-02T03:04:05.000000Z");
        assert_eq!(parse_ts(&ts(b)).unwrap(), b);
    }
}
