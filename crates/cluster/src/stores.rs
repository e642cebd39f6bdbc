//! [`ClusterStores`]: what the composition root plugs in when `[cluster] postgres_url` is set:
//! one pool, the identity store, and the opener of usage ledger handles (the recorder, the
//! export and the webhook deliverer each take their own, as with SQLite).

use crate::config::ClusterConfig;
use crate::database::{Database, DatabaseError};
use crate::identity::PgIdentityStore;
use crate::ledger::PgLedger;
use palaver_billing::ledger::{LedgerError, LedgerOptions, UsageLedger};
use palaver_billing::service::LedgerOpener;
use palaver_signaling::store::StoreError;
use palaver_signaling::store::identity_store::IdentityStore;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum ClusterStartError {
    #[error("connecting to PostgreSQL: {0}")]
    Database(#[from] DatabaseError),
    #[error("preparing the identity tables: {0}")]
    Identity(#[from] StoreError),
    #[error("preparing the usage ledger tables: {0}")]
    Ledger(#[from] LedgerError),
}

/// The PostgreSQL stores of one node.
#[derive(Clone, Debug)]
pub struct ClusterStores {
    pub database: Database,
    pub node_id: String,
    pub identity: Arc<PgIdentityStore>,
}

impl ClusterStores {
    /// `None` when cluster mode is off; else connect and apply every component's migrations.
    pub fn open(config: &ClusterConfig) -> Result<Option<Self>, ClusterStartError> {
        let Some(url) = &config.postgres_url else { return Ok(None) };
        let database = Database::connect(url)?;
        let identity = Arc::new(PgIdentityStore::open(&database)?);
        database.migrate("ledger", crate::ledger::MIGRATIONS)?;
        let node_id = config.node_id();
        tracing::info!(node = %node_id, "cluster mode: stores on PostgreSQL");
        Ok(Some(Self { database, node_id, identity }))
    }

    /// The identity store, for `AppParts::identity_store`.
    pub fn identity_store(&self) -> Arc<dyn IdentityStore> {
        self.identity.clone()
    }

    /// Opens usage ledger handles on this node's database, for `UsageService::start_with`.
    pub fn ledger_opener(&self) -> LedgerOpener {
        let (db, node) = (self.database.clone(), self.node_id.clone());
        Arc::new(move |options: LedgerOptions| {
            Ok(Box::new(PgLedger::open(&db, &node, options)?) as Box<dyn UsageLedger>)
        })
    }
}
