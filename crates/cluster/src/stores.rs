//! [`ClusterStores`]: what the composition root plugs in when `[cluster] postgres_url` is set:
//! one pool, the identity, rooms, meetings and chat stores, the events store, and the opener of usage ledger handles
//! (the recorder, the export and the webhook deliverer each take their own, as with SQLite).

use crate::chat::PgChatBackend;
use crate::config::ClusterConfig;
use crate::database::{Database, DatabaseError};
use crate::events::PgEventStore;
use crate::identity::PgIdentityStore;
use crate::invalidations::{Invalidations, RevocationPublishingStore};
use crate::ledger::PgLedger;
use crate::meetings::PgMeetingStore;
use crate::registry::NodeRegistry;
use crate::rooms::PgRoomStore;
use crate::tasks::ClusterTasks;
use palaver_billing::ledger::{LedgerError, LedgerOptions, UsageLedger};
use palaver_billing::service::LedgerOpener;
use palaver_signaling::app::{AppParts, AppState};
use palaver_signaling::store::StoreError;
use palaver_signaling::store::identity_store::IdentityStore;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum ClusterStartError {
    #[error("connecting to PostgreSQL: {0}")]
    Database(#[from] DatabaseError),
    #[error("preparing the identity tables: {0}")]
    Identity(#[from] StoreError),
    #[error("connecting to Redis: {0}")]
    Redis(#[from] crate::redis::RedisError),
    #[error("[cluster] redis_url needs postgres_url")]
    RedisWithoutPostgres,
    #[error("preparing the events tables: {0}")]
    Events(#[from] palaver_events::store::StoreError),
    #[error("preparing the usage ledger tables: {0}")]
    Ledger(#[from] LedgerError),
}

/// The PostgreSQL stores of one node.
#[derive(Clone, Debug)]
pub struct ClusterStores {
    pub database: Database,
    pub node_id: String,
    pub identity: Arc<PgIdentityStore>,
    pub rooms: Arc<PgRoomStore>,
    pub meetings: Arc<PgMeetingStore>,
    pub chat: Arc<PgChatBackend>,
    pub events: PgEventStore,
    /// The Redis parts, once [`ClusterStores::connect_redis`] ran with `redis_url` set.
    pub redis: Option<RedisParts>,
}

/// A node's Redis clients.
#[derive(Clone, Debug)]
pub struct RedisParts {
    pub url: String,
    pub registry: NodeRegistry,
    pub invalidations: Invalidations,
}

impl ClusterStores {
    /// `None` when cluster mode is off; else connect and apply every component's migrations.
    pub fn open(config: &ClusterConfig) -> Result<Option<Self>, ClusterStartError> {
        let Some(url) = &config.postgres_url else {
            return if config.redis_url.is_some() { Err(ClusterStartError::RedisWithoutPostgres) } else { Ok(None) };
        };
        let database = Database::connect(url)?;
        let identity = Arc::new(PgIdentityStore::open(&database)?);
        let rooms = Arc::new(PgRoomStore::open(&database)?);
        let meetings = Arc::new(PgMeetingStore::open(&database)?);
        let chat = Arc::new(PgChatBackend::open(&database)?);
        database.migrate("ledger", crate::ledger::MIGRATIONS)?;
        let node_id = config.node_id();
        let events = PgEventStore::open(&database, &node_id)?;
        tracing::info!(node = %node_id, "cluster mode: stores on PostgreSQL");
        Ok(Some(Self { database, node_id, identity, rooms, meetings, chat, events, redis: None }))
    }

    /// Connect the Redis clients when `redis_url` is set (before [`ClusterStores::plug_into`]).
    pub async fn connect_redis(&mut self, config: &ClusterConfig) -> Result<(), ClusterStartError> {
        let Some(url) = &config.redis_url else { return Ok(()) };
        let registry = NodeRegistry::connect(url).await?;
        let invalidations = Invalidations::connect(url, &self.node_id).await?;
        tracing::info!(node = %self.node_id, "cluster mode: node registry and invalidations on Redis");
        self.redis = Some(RedisParts { url: url.clone(), registry, invalidations });
        Ok(())
    }

    /// Start the node's background tasks ([`ClusterTasks`]) for the running control plane.
    pub async fn start_tasks(&self, state: &AppState) -> Result<ClusterTasks, ClusterStartError> {
        let redis = self.redis.as_ref().map(|r| (r.url.as_str(), &r.registry));
        Ok(ClusterTasks::start(state, &self.node_id, self.identity.clone(), redis).await?)
    }

    /// Put this node's PostgreSQL stores into the control plane's parts.
    pub fn plug_into(&self, parts: &mut AppParts) {
        parts.identity_store = Some(match &self.redis {
            Some(redis) => Arc::new(RevocationPublishingStore {
                inner: self.identity_store(),
                invalidations: redis.invalidations.clone(),
            }),
            None => self.identity_store(),
        });
        parts.room_store = Some(self.rooms.clone());
        parts.meeting_store = Some(self.meetings.clone());
        parts.chat_backend = Some(self.chat.clone());
    }

    /// The identity store, for `AppParts::identity_store`.
    pub fn identity_store(&self) -> Arc<dyn IdentityStore> {
        self.identity.clone()
    }

    /// The events service's store (subscriptions, outbox with leases), for
    /// `Events::open_with_store`.
    pub fn event_store(&self) -> Box<dyn palaver_events::store::EventStorage> {
        Box::new(self.events.clone())
    }

    /// Opens usage ledger handles on this node's database, for `UsageService::start_with`.
    pub fn ledger_opener(&self) -> LedgerOpener {
        let (db, node) = (self.database.clone(), self.node_id.clone());
        Arc::new(move |options: LedgerOptions| {
            Ok(Box::new(PgLedger::open(&db, &node, options)?) as Box<dyn UsageLedger>)
        })
    }
}
