//! Multi-node palaver (issue #17), its foundation: the PostgreSQL implementations of the
//! stores behind the same traits as SQLite, selected by `[cluster] postgres_url`.
//!
//! - [`config`]: the `[cluster]` section.
//! - [`database`]: the pool, its runtime, the async and blocking doors, versioned migrations.
//! - [`ledger`]: [`ledger::PgLedger`], the usage ledger and webhook outbox on PostgreSQL.
//! - [`testing`]: the private PostgreSQL/Redis fixture of the tests (never the system services).

pub mod database;
pub mod testing;

pub use database::{Database, DatabaseError};
pub mod ledger;
