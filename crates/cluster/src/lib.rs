//! Multi-node palaver (issue #17), its foundation: the PostgreSQL implementations of the
//! stores behind the same traits as SQLite, selected by `[cluster] postgres_url`, and the
//! Redis node registry and invalidations, with `[cluster] redis_url` (docs/cluster.md).
//!
//! - [`bus`]: [`bus::RedisUserBus`], rings and presence across nodes (Redis pub/sub, one
//!   channel per node, presence sets per user).
//! - [`chat`]: [`chat::PgChatBackend`], chat's threads, messages, receipts and repeatable creates.
//! - [`config`]: the `[cluster]` section.
//! - [`database`]: the pool, its runtime, the async and blocking doors, versioned migrations.
//! - [`events`]: [`events::PgEventStore`], Event Grid subscriptions and the events/callback outbox,
//!   whose deliveries are leased to one node at a time.
//! - [`fencing`]: [`fencing::Fence`], a node that lost a conversation to a newer epoch writes
//!   nothing more for it (billing's observer refuses) and stops hosting it.
//! - [`homes`]: [`homes::Homes`], the `cluster_homes` table: a conversation's home node with a
//!   fencing epoch changed only by compare-and-swap.
//! - [`identity`]: [`identity::PgIdentityStore`], identities, revocations, repeatable answers and
//!   the shared settings (resource id, keys).
//! - [`invalidations`]: revocations told to every node through Redis pub/sub, with a resync
//!   from PostgreSQL.
//! - [`ledger`]: [`ledger::PgLedger`], the usage ledger and webhook outbox on PostgreSQL.
//! - [`meetings`]: [`meetings::PgMeetingStore`], meeting definitions.
//! - [`mesh`]: [`mesh::Mesh`], the node-to-node QUIC mesh with mutual TLS that relays a
//!   client's signaling to its conversation's home.
//! - [`metrics`]: [`metrics::ClusterMetrics`], the `palaver_cluster_*` figures.
//! - [`placement`]: [`placement::Placement`], a new conversation's home by the power of two
//!   choices over the registry, recorded in `cluster_homes`.
//! - [`redis`]: the Redis connection (fred).
//! - [`registry`]: [`registry::NodeRegistry`], live nodes and their load in Redis.
//! - [`resume`]: [`resume::ResumeMirror`], what a conversation carries across a takeover
//!   (capture state, roles, lobby standing, raised hands), mirrored in PostgreSQL by its home.
//! - [`drain`]: [`drain::Drain`], a planned stop that hands its conversations over (participants
//!   resume elsewhere, their sessions adopted).
//! - [`heartbeat`]: [`heartbeat::NodeHeartbeats`], the `cluster_nodes` heartbeat (database
//!   clock): the death verdict when Redis is away.
//! - [`rooms`]: [`rooms::PgRoomStore`], rooms, their participants and repeatable creates.
//! - [`router`]: [`router::ClusterRouter`], the gateway's placement: host, relay, redirect or
//!   take over.
//! - [`takeover`]: [`takeover::Takeover`], a takeover and the close of the old home's open
//!   sessions at their last checkpoint, in one transaction.
//! - [`stores`]: [`ClusterStores`], what the binary plugs in when cluster mode is on.
//! - [`tenants`]: [`tenants::PgTenantBindings`], directory users' tenant bindings shared by
//!   every node.
//! - [`tasks`]: [`tasks::ClusterTasks`], a node's heartbeats, revocation subscriber and resync.
//! - [`testing`]: the private PostgreSQL/Redis fixture of the tests (never the system services).

pub mod bus;
pub mod chat;
pub mod config;
pub mod database;
pub mod drain;
pub mod events;
pub mod fencing;
pub mod heartbeat;
pub mod homes;
pub mod identity;
pub mod invalidations;
pub mod ledger;
pub mod meetings;
pub mod mesh;
pub mod metrics;
pub mod placement;
pub mod redis;
pub mod registry;
pub mod resume;
pub mod rooms;
pub mod router;
pub mod stores;
pub mod takeover;
pub mod tasks;
pub mod tenants;
pub mod testing;

pub use config::ClusterConfig;
pub use database::{Database, DatabaseError};
pub use stores::{ClusterNode, ClusterStartError, ClusterStores};
