//! [`ClusterStores`]: what the composition root plugs in when `[cluster] postgres_url` is set:
//! one pool, the identity, rooms, meetings and chat stores, the events store, and the opener of usage ledger handles
//! (the recorder, the export and the webhook deliverer each take their own, as with SQLite).

use crate::chat::PgChatBackend;
use crate::config::ClusterConfig;
use crate::database::{Database, DatabaseError};
pub use crate::drain::Drain;
use crate::events::PgEventStore;
use crate::fencing::Fence;
use crate::homes::Homes;
use crate::identity::PgIdentityStore;
use crate::invalidations::{Invalidations, RevocationPublishingStore};
use crate::ledger::PgLedger;
use crate::meetings::PgMeetingStore;
use crate::mesh::Mesh;
use crate::metrics::ClusterMetrics;
use crate::registry::NodeAddresses;
use crate::registry::NodeRegistry;
use crate::rooms::PgRoomStore;
use crate::router::ClusterRouter;
use crate::takeover::Takeover;
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
    #[error("registering the cluster metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("the node mesh: {0}")]
    Mesh(#[from] crate::mesh::MeshError),
    #[error("[cluster] mesh_listen needs redis_url (the registry says where the homes are)")]
    MeshWithoutRedis,
    #[error("[cluster] mesh_listen needs mesh_ca_cert and mesh_ca_key")]
    MeshWithoutCa,
    #[error("reading the cluster CA: {0}")]
    MeshCa(std::io::Error),
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
    /// Directory users' tenant bindings, shared by every node.
    pub tenants: Arc<crate::tenants::PgTenantBindings>,
    pub events: PgEventStore,
    /// Conversation homes with their fencing epochs (`cluster_homes`).
    pub homes: Homes,
    /// What this node holds and lost; wrap billing's observer with [`Fence::wrap`].
    pub fence: Arc<Fence>,
    /// Takeovers with the old home's sessions closed in the same transaction.
    pub takeover: Arc<Takeover>,
    /// This node's `cluster_nodes` heartbeat and the death verdict when Redis is away.
    pub heartbeats: crate::heartbeat::NodeHeartbeats,
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
        let tenants = Arc::new(crate::tenants::PgTenantBindings::open(&database)?);
        database.migrate("ledger", crate::ledger::MIGRATIONS)?;
        let node_id = config.node_id();
        let events = PgEventStore::open(&database, &node_id)?;
        let homes = Homes::open(&database)?;
        let fence = Fence::new(&node_id, homes.clone(), database.clone());
        database.migrate("ledger_fencing", crate::ledger::FENCING_MIGRATIONS)?;
        // The takeover transaction adopts sessions (offline subcommands open no ledger).
        database.migrate("ledger_adoption", crate::ledger::ADOPTION_MIGRATIONS)?;
        let takeover = Arc::new(Takeover::new(&database, &node_id));
        let heartbeats = crate::heartbeat::NodeHeartbeats::open(&database)?;
        tracing::info!(node = %node_id, "cluster mode: stores on PostgreSQL");
        Ok(Some(Self {
            database,
            node_id,
            identity,
            rooms,
            meetings,
            chat,
            events,
            homes,
            fence,
            takeover,
            heartbeats,
            tenants,
            redis: None,
        }))
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

    /// Start the node for the running control plane: the cluster metrics (registered in
    /// `metrics`) and their monitor; with `mesh_listen` (and Redis), the node mesh and
    /// placement ([`ClusterRouter`] plugged into the gateway); then the background tasks
    /// ([`ClusterTasks`]), announcing the mesh, `quic` and `https` addresses.
    pub async fn start_node(
        &self,
        config: &ClusterConfig,
        state: &AppState,
        metrics: &prometheus::Registry,
        quic: Option<std::net::SocketAddr>,
        https: &str,
    ) -> Result<ClusterNode, ClusterStartError> {
        let cluster_metrics = ClusterMetrics::register(metrics)?;
        self.fence.set_metrics(cluster_metrics.clone());
        let mut fence_checks = None;
        let mut mirror_writer = None;
        let mut hand_over = None;
        let registry = self.redis.as_ref().map(|r| r.registry.clone());
        let monitor = cluster_metrics.spawn_monitor(self.node_id.clone(), registry.clone(), self.homes.clone());
        let mut addresses =
            NodeAddresses { mesh: None, quic: quic.map(|q| q.to_string()), https: Some(https.to_string()) };
        let mesh = match config.mesh_listen {
            None => None,
            Some(listen) => {
                let registry = registry.clone().ok_or(ClusterStartError::MeshWithoutRedis)?;
                let (Some(ca_cert), Some(ca_key)) = (&config.mesh_ca_cert, &config.mesh_ca_key) else {
                    return Err(ClusterStartError::MeshWithoutCa);
                };
                crate::mesh::tls::ensure_dev_ca(ca_cert, ca_key)?;
                let cert_pem = std::fs::read_to_string(ca_cert).map_err(ClusterStartError::MeshCa)?;
                let key_pem = std::fs::read_to_string(ca_key).map_err(ClusterStartError::MeshCa)?;
                let tls = crate::mesh::tls::MeshTls::issue(&cert_pem, &key_pem, &self.node_id)?;
                let mesh = Mesh::start(listen, tls, &self.node_id, state.clone(), cluster_metrics.clone())?;
                let bound = mesh.local_addr().map_err(crate::mesh::MeshError::Bind)?;
                addresses.mesh = Some(config.mesh_advertise.clone().unwrap_or_else(|| bound.to_string()));
                let router = Arc::new(ClusterRouter::new(
                    &self.node_id,
                    self.homes.clone(),
                    registry,
                    mesh.clone(),
                    cluster_metrics.clone(),
                    self.takeover.clone(),
                    self.heartbeats.clone(),
                ));
                router.install(&state.gateway);
                fence_checks = Some(self.fence.spawn_checks(state.gateway.clone(), router.held()));
                // What conversations carry across a takeover (roles, lobby standing, capture).
                let mirror = crate::resume::ResumeMirror::open(
                    &self.database,
                    &self.node_id,
                    self.takeover.clone(),
                    router.held(),
                )?;
                state.gateway.set_conversation_mirror(mirror.clone());
                mirror_writer = Some(mirror.spawn_writer());
                hand_over = Some(crate::drain::HandOver {
                    router: router.clone(),
                    mirror,
                    fence: self.fence.clone(),
                    gateway: state.gateway.clone(),
                });
                tracing::info!(node = %self.node_id, mesh = %bound, "cluster mode: placement on, node mesh listening");
                Some(mesh)
            }
        };
        let heartbeat =
            self.heartbeats.spawn(self.node_id.clone(), addresses.clone(), cluster_metrics.pg_nodes.clone());
        let redis = self.redis.as_ref().map(|r| (r.url.as_str(), &r.registry));
        let tasks = ClusterTasks::start(state, &self.node_id, self.identity.clone(), redis, addresses).await?;
        let (heartbeats, registry) = tasks.announcements();
        let pg = crate::drain::PgPresence { heartbeats: self.heartbeats.clone(), beat: heartbeat.abort_handle() };
        let drain = Drain { node_id: self.node_id.clone(), heartbeats, registry, hand_over, pg: Some(pg) };
        Ok(ClusterNode {
            tasks,
            mesh,
            monitor,
            fence_checks,
            mirror_writer,
            heartbeat,
            metrics: cluster_metrics,
            drain,
        })
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
        parts.tenant_bindings = Some(self.tenants.clone());
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

    /// Opens usage ledger handles on this node's database, for `UsageService::start_with`;
    /// sessions adopted at a takeover await their participants for `reconnect_grace_ms` (the
    /// gateway's) before they are closed at their last checkpoint.
    pub fn ledger_opener(&self, reconnect_grace_ms: i64) -> LedgerOpener {
        let (db, node) = (self.database.clone(), self.node_id.clone());
        let (fence, takeover) = (self.fence.clone(), self.takeover.clone());
        Arc::new(move |options: LedgerOptions| {
            // Takeovers end calls priced and announced as this ledger's.
            takeover.set_ledger_options(&options);
            let ledger =
                PgLedger::open(&db, &node, options)?.with_fence(fence.clone()).with_reconnect_grace(reconnect_grace_ms);
            Ok(Box::new(ledger) as Box<dyn UsageLedger>)
        })
    }
}

/// A running cluster node: its background tasks, its mesh endpoint and its metrics.
#[derive(Debug)]
pub struct ClusterNode {
    tasks: ClusterTasks,
    mesh: Option<Mesh>,
    monitor: tokio::task::JoinHandle<()>,
    fence_checks: Option<tokio::task::JoinHandle<()>>,
    mirror_writer: Option<tokio::task::JoinHandle<()>>,
    /// The `cluster_nodes` heartbeat.
    heartbeat: tokio::task::JoinHandle<()>,
    drain: Drain,
    pub metrics: ClusterMetrics,
}

impl ClusterNode {
    /// What a planned stop calls before ending its conversations ([`Drain::run`]).
    pub fn drain(&self) -> Drain {
        self.drain.clone()
    }

    /// The bound mesh address, when the mesh runs.
    pub fn mesh_addr(&self) -> Option<std::net::SocketAddr> {
        self.mesh.as_ref().and_then(|m| m.local_addr().ok())
    }

    /// Stop: leave the registry, close the mesh.
    pub async fn stop(self) {
        self.monitor.abort();
        self.heartbeat.abort();
        if let Some(checks) = self.fence_checks {
            checks.abort();
        }
        if let Some(writer) = self.mirror_writer {
            writer.abort();
        }
        self.tasks.stop().await;
        if let Some(mesh) = self.mesh {
            mesh.close();
        }
    }
}
