//! The PostgreSQL handle every cluster store shares: a connection pool (deadpool-postgres over
//! tokio-postgres) driven by its own small tokio runtime, versioned per-component migrations,
//! and two doors, one async ([`Database::run`]) and one blocking ([`Database::block_on`]).
//!
//! Why its own runtime: the stores' traits are the SQLite ones, and some are synchronous (the
//! usage ledger is written from the recorder's thread, read from the blocking pool, and
//! polled from a tokio task by the webhook deliverer). A blocking call here spawns the work on
//! this runtime and waits on a plain channel, which is legal from any thread, inside a tokio
//! task too (it blocks that worker for the query, exactly as the SQLite call it replaces did),
//! whereas `Runtime::block_on` would panic there. Connections live on this runtime, so they
//! keep working whatever runtime (or none) the caller has.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::NoTls;

/// A PostgreSQL failure, as the stores see it.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error("invalid postgres_url: {0}")]
    Url(String),
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("postgres pool: {0}")]
    Pool(String),
    #[error("postgres runtime: {0}")]
    Runtime(String),
    /// No answer within [`QUERY_TIMEOUT`]: the database (or the network to it) hangs.
    #[error("postgres did not answer within {0:?}")]
    Timeout(Duration),
}

impl From<deadpool_postgres::PoolError> for DatabaseError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => DatabaseError::Postgres(e),
            other => DatabaseError::Pool(other.to_string()),
        }
    }
}

/// How long a pooled connection may take to come (also bounds a wait during an outage).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest one unit of work (a query, a transaction) may take through either door. An
/// unresponsive PostgreSQL (frozen, or a network that drops without a reset) keeps connections
/// open and never answers; without this bound a blocking caller (the recorder's thread, a tokio
/// worker publishing an event) would wait forever, starving the control plane. Past it the
/// caller gets [`DatabaseError::Timeout`] (the usage ledger then spools) and the work is dropped.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections per pool (one pool per process).
pub const POOL_SIZE: usize = 16;

/// The runtime the pool's connections live on; shut down without waiting when the last
/// handle goes, from whatever context that happens in.
struct OwnedRuntime(Option<tokio::runtime::Runtime>);

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// A pool of connections to one database. Cheap to clone.
#[derive(Clone)]
pub struct Database {
    pool: Pool,
    handle: tokio::runtime::Handle,
    _runtime: Arc<OwnedRuntime>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database").field("pool", &self.pool.status()).finish()
    }
}

impl Database {
    /// Build the pool for `url` (`postgres://user@host:port/db`, or a libpq key=value string)
    /// and check that the server answers.
    pub fn connect(url: &str) -> Result<Self, DatabaseError> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| DatabaseError::Url(e.to_string().replace(url, "<postgres_url>")))?;
        let mut config = config;
        config.connect_timeout(CONNECT_TIMEOUT);
        if config.get_application_name().is_none() {
            config.application_name("palaver");
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("palaver-postgres")
            .enable_all()
            .build()
            .map_err(|e| DatabaseError::Runtime(e.to_string()))?;
        let handle = runtime.handle().clone();
        // Verify: a recycled connection that broke (server restart) is replaced, not handed out.
        let manager =
            Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Verified });
        let pool = {
            let _enter = handle.enter();
            Pool::builder(manager)
                .max_size(POOL_SIZE)
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .wait_timeout(Some(CONNECT_TIMEOUT))
                .create_timeout(Some(CONNECT_TIMEOUT))
                .build()
                .map_err(|e| DatabaseError::Pool(e.to_string()))?
        };
        let db = Self { pool, handle, _runtime: Arc::new(OwnedRuntime(Some(runtime))) };
        db.block_on(|pool| async move {
            pool.get().await?.simple_query("SELECT 1").await?;
            Ok::<_, DatabaseError>(())
        })??;
        Ok(db)
    }

    /// The pool (for work already running on this database's runtime).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Run `work` on this database's runtime and wait for it (at most [`QUERY_TIMEOUT`]),
    /// blocking the calling thread. Legal anywhere, inside a tokio task too (see the module doc).
    pub fn block_on<R, F, Fut>(&self, work: F) -> Result<R, DatabaseError>
    where
        R: Send + 'static,
        F: FnOnce(Pool) -> Fut,
        Fut: Future<Output = R> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let fut = work(self.pool.clone());
        self.handle.spawn(async move {
            let _ = tx.send(tokio::time::timeout(QUERY_TIMEOUT, fut).await);
        });
        match rx.recv() {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(_)) => Err(DatabaseError::Timeout(QUERY_TIMEOUT)),
            Err(_) => Err(DatabaseError::Runtime("the postgres runtime stopped".into())),
        }
    }

    /// Run `work` on this database's runtime and await it (the async door; at most
    /// [`QUERY_TIMEOUT`]).
    pub async fn run<R, F, Fut>(&self, work: F) -> Result<R, DatabaseError>
    where
        R: Send + 'static,
        F: FnOnce(Pool) -> Fut,
        Fut: Future<Output = R> + Send + 'static,
    {
        match self.handle.spawn(tokio::time::timeout(QUERY_TIMEOUT, work(self.pool.clone()))).await {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(_)) => Err(DatabaseError::Timeout(QUERY_TIMEOUT)),
            Err(e) => Err(DatabaseError::Runtime(e.to_string())),
        }
    }

    /// Apply the not-yet-applied steps of `component`'s migration list (index = version), each
    /// in its own transaction, under a transaction-scoped advisory lock so nodes starting
    /// together apply each step once. Append new steps; never edit applied ones.
    pub fn migrate(&self, component: &'static str, steps: &'static [&'static str]) -> Result<(), DatabaseError> {
        self.block_on(move |pool| async move {
            let mut client = pool.get().await?;
            // Created under the same advisory lock as the steps: nodes starting together
            // otherwise race `CREATE TABLE IF NOT EXISTS`, whose loser gets a unique
            // violation, `42P07` or `42710` depending on where in the catalog they meet.
            let tx = client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock(hashtext('palaver schema_migrations'))", &[]).await?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                    component TEXT NOT NULL,
                    version INTEGER NOT NULL,
                    applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                    PRIMARY KEY (component, version))",
            )
            .await?;
            tx.commit().await?;
            for (version, sql) in steps.iter().enumerate() {
                let tx = client.transaction().await?;
                tx.execute("SELECT pg_advisory_xact_lock(hashtext('palaver schema_migrations'))", &[]).await?;
                let applied = tx
                    .query_opt(
                        "SELECT 1 FROM schema_migrations WHERE component = $1 AND version = $2",
                        &[&component, &(version as i32)],
                    )
                    .await?
                    .is_some();
                if !applied {
                    tx.batch_execute(sql).await?;
                    tx.execute(
                        "INSERT INTO schema_migrations (component, version) VALUES ($1, $2)",
                        &[&component, &(version as i32)],
                    )
                    .await?;
                    tracing::debug!(component, version, "applied postgres migration");
                }
                tx.commit().await?;
            }
            Ok::<_, DatabaseError>(())
        })?
    }
}

#[cfg(test)]
mod tests;
