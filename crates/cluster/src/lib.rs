//! Multi-node palaver (issue #17), its foundation: the PostgreSQL implementations of the
//! stores behind the same traits as SQLite, selected by `[cluster] postgres_url`
//! (docs/cluster.md).
//!
//! - [`config`]: the `[cluster]` section.
//! - [`database`]: the pool, its runtime, the async and blocking doors, versioned migrations.
//! - [`homes`]: [`homes::Homes`], the `cluster_homes` table: a conversation's home node with a
//!   fencing epoch changed only by compare-and-swap (not yet called by the gateway).
//! - [`identity`]: [`identity::PgIdentityStore`], identities, revocations, repeatable answers and
//!   the shared settings (resource id, keys).
//! - [`ledger`]: [`ledger::PgLedger`], the usage ledger and webhook outbox on PostgreSQL.
//! - [`stores`]: [`ClusterStores`], what the binary plugs in when cluster mode is on.
//! - [`testing`]: the private PostgreSQL/Redis fixture of the tests (never the system services).

pub mod config;
pub mod database;
pub mod homes;
pub mod identity;
pub mod ledger;
pub mod stores;
pub mod testing;

pub use config::ClusterConfig;
pub use database::{Database, DatabaseError};
pub use stores::{ClusterStartError, ClusterStores};
