//! The test fixture of cluster mode: a private PostgreSQL and a private Redis, each started by
//! the test on a free loopback port in a temporary directory and stopped when the test binary
//! ends. The system services are never used (nor stopped).
//!
//! - [`PostgresServer`]: `initdb` into a temp dir, then `postgres` on `127.0.0.1:<free port>`.
//!   PostgreSQL refuses to run as root, so when the tests run as root the server runs as the
//!   `postgres` system user (the Debian package creates it), set with `setuid` in the child.
//!   [`PostgresServer::shared`] starts one per test binary; [`PostgresServer::fresh_database`]
//!   gives each test its own empty database, so tests stay independent and run in parallel.
//! - [`RedisServer`]: `redis-server` without persistence on a free loopback port.
//!
//! Both children get `PR_SET_PDEATHSIG = SIGKILL` from a thread that lives as long as the
//! process, so a test binary that dies (even by `kill -9`) takes its servers with it; left-over
//! directories of dead test processes are removed by the next start.

mod postgres;
mod process;
mod redis;

pub use postgres::{PostgresServer, postgres_available};
pub use redis::{RedisServer, redis_available};

/// Why a fixture server could not start.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    #[error("{0} is not installed (make prereqs installs it)")]
    NotInstalled(&'static str),
    #[error("{what} failed: {detail}")]
    Command { what: String, detail: String },
    #[error("{what} did not become ready within {secs} s; log:\n{log}")]
    NotReady { what: &'static str, secs: u64, log: String },
    #[error("fixture i/o: {0}")]
    Io(#[from] std::io::Error),
}
