//! The SQLite store: one database file (WAL) shared by every control-plane component.
//!
//! Each component owns its own tables and declares them with [`Store::migrate`], a list of
//! SQL steps applied once, in order, and recorded per component in `schema_migrations`.
//! Access goes through one connection behind a mutex. Async code reaches it through one
//! door, [`Store::call`], which runs the work on tokio's blocking pool ([`run_blocking`], the
//! crate's only way off the async workers, also used for the usage ledger and CPU-bound
//! request checks); [`Store::with_conn`] is for synchronous callers (start-up, tests).
//! Identity's own tables and queries live in [`identities`], its port (SQLite or PostgreSQL) in
//! [`identity_store`]. The other components' ports: rooms in [`room_store`] (queries in
//! [`rooms`]), chat in [`chat_store`] (queries in [`chat`]), meetings in [`meetings`]; their
//! PostgreSQL implementations are in `palaver-cluster`. Small named secrets and generated
//! settings (keys, resource id) in [`settings`].

pub mod chat;
pub mod chat_store;
pub mod identities;
pub mod identity_store;
pub mod meetings;
pub mod room_store;
pub mod rooms;
pub mod settings;

use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A storage failure. Surfaces to HTTP clients as `StorageUnavailable` (503).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot create data directory {path}: {source}")]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("database worker failed: {0}")]
    Worker(String),
    /// A failure of another backend (PostgreSQL in cluster mode, `palaver-cluster`).
    #[error("database error: {0}")]
    Backend(String),
}

/// Handle to the database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    path: Option<PathBuf>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

/// Page cache of the store's connection, KiB. A heap profile of the soak (docs/soak.md,
/// session 8) showed a 1 MiB cache still filling at ~0.03–0.05 MiB a minute after 9 minutes,
/// as chat grew the file: 91 % of the heap growth after warm-up. 256 KiB (64 pages) holds the
/// B-tree interior pages and recent rows; colder pages come from the OS page cache.
///
/// This is not a per-connection bound: the bundled SQLite (libsqlite3-sys builds it with
/// `SQLITE_ENABLE_MEMORY_MANAGEMENT`) keeps one page-cache pool for the process, as large as
/// the sum of every connection's `cache_size`, and this busy connection takes what the idle
/// ones leave. Session 9's profile found it at 760 KiB after 11 minutes and still growing
/// into the budget of the events store (SQLite's default 2 MiB) and of the three ledger
/// connections; those are bounded too now (`palaver_events::store::CACHE_KIB`,
/// `palaver_billing::ledger::CACHE_KIB`), so the whole pool is ~0.8 MiB.
pub const CACHE_KIB: i64 = 256;

impl Store {
    /// Open (or create) the database file, in WAL mode, and apply identity's migrations.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir { path: dir.to_path_buf(), source })?;
        }
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL, as the usage ledger: revocations, deleted identities and keys must survive an
        // OS crash (NORMAL in WAL mode may lose the last commits, reviving a revoked token).
        conn.pragma_update(None, "synchronous", "FULL")?;
        Self::init(conn, Some(path.to_path_buf()))
    }

    /// A private in-memory database (unit tests).
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory()?, None)
    }

    fn init(conn: Connection, path: Option<PathBuf>) -> Result<Self, StoreError> {
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // A bounded page cache and no memory-mapped I/O: SQLite's default cache (~2 MiB) grew
        // with the file during a soak and read as a leak (docs/soak.md).
        conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
        conn.pragma_update(None, "mmap_size", 0)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                component TEXT NOT NULL,
                version INTEGER NOT NULL,
                PRIMARY KEY (component, version)
            );",
        )?;
        let store = Self { conn: Arc::new(Mutex::new(conn)), path };
        store.migrate("settings", settings::MIGRATIONS)?;
        store.migrate("identity", identities::MIGRATIONS)?;
        Ok(store)
    }

    /// The database file, if on disk.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Apply the not-yet-applied steps of `component`'s migration list (index = version),
    /// each in its own transaction. Append new steps; never edit applied ones.
    pub fn migrate(&self, component: &str, steps: &[&str]) -> Result<(), StoreError> {
        self.with_conn(|conn| {
            let applied: i64 =
                conn.query_row("SELECT COUNT(*) FROM schema_migrations WHERE component = ?1", [component], |r| {
                    r.get(0)
                })?;
            for (version, sql) in steps.iter().enumerate().skip(applied as usize) {
                let tx = conn.transaction()?;
                tx.execute_batch(sql)?;
                tx.execute(
                    "INSERT INTO schema_migrations (component, version) VALUES (?1, ?2)",
                    rusqlite::params![component, version as i64],
                )?;
                tx.commit()?;
                tracing::debug!(component, version, "applied migration");
            }
            Ok(())
        })
    }

    /// Run short synchronous work on the connection (blocks the caller while it waits for
    /// the lock; keep it to a few statements).
    pub fn with_conn<R>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<R>) -> Result<R, StoreError> {
        // A panic while holding the lock cannot leave SQLite inconsistent (transactions roll
        // back on drop), so a poisoned lock is still safe to use.
        let mut guard = self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok(f(&mut guard)?)
    }

    /// Run `f` on the connection from async code: on the blocking pool, so a slow query or a
    /// wait for the lock never stalls an async worker. The one async door to the database.
    pub async fn call<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        let store = self.clone();
        run_blocking(move || store.with_conn(f)).await?
    }
}

/// Run blocking or CPU-bound work `f` on tokio's blocking pool and await its result: the
/// control plane's one way off the async workers ([`Store::call`] for the main database; the
/// usage ledger, which lives in the billing crate behind its own lock; request checks that
/// may cost milliseconds). `Worker` if the task panicked or the runtime is shutting down.
pub async fn run_blocking<R, F>(f: F) -> Result<R, StoreError>
where
    R: Send + 'static,
    F: FnOnce() -> R + Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(|e| StoreError::Worker(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_and_append() {
        let store = Store::open_in_memory().unwrap();
        store.migrate("demo", &["CREATE TABLE demo (x INTEGER);"]).unwrap();
        store.migrate("demo", &["CREATE TABLE demo (x INTEGER);"]).unwrap();
        store.migrate("demo", &["CREATE TABLE demo (x INTEGER);", "ALTER TABLE demo ADD COLUMN y TEXT;"]).unwrap();
        store.with_conn(|c| c.execute("INSERT INTO demo (x, y) VALUES (1, 'a')", [])).unwrap();
        let n: i64 = store.with_conn(|c| c.query_row("SELECT COUNT(*) FROM demo", [], |r| r.get(0))).unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn file_database_survives_reopen() {
        let dir = std::env::temp_dir().join(format!("palaver-store-{}", uuid::Uuid::new_v4()));
        let path = dir.join("palaver.db");
        {
            let store = Store::open(&path).unwrap();
            settings::put(&store, "k", "v").unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(settings::get(&store, "k").unwrap().as_deref(), Some("v"));
        // Security-relevant writes (revocations, deletions, keys) are as durable as billing:
        // WAL with synchronous = FULL (2), so an OS crash cannot revive a revoked token.
        let sync: i64 = store.with_conn(|c| c.query_row("PRAGMA synchronous", [], |r| r.get(0))).unwrap();
        assert_eq!(sync, 2);
        // A bounded page cache (docs/soak.md: the default one grew with the file).
        let cache: i64 = store.with_conn(|c| c.query_row("PRAGMA cache_size", [], |r| r.get(0))).unwrap();
        assert_eq!(cache, -CACHE_KIB);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
