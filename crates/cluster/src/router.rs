//! [`ClusterRouter`]: the gateway's [`HomeRouter`] in a cluster. On a join it asks
//! [`Placement`] for the conversation's home (the recorded one, else one chosen by the power
//! of two choices and claimed at epoch 1 by compare-and-swap), then:
//! - the home is this node: host it, remembering the epoch it holds;
//! - the home is a live node of the registry: relay (WebSocket) or redirect (QUIC) there, with
//!   the addresses it announced;
//! - the home is no longer in the registry (killed, stalled, partitioned: its announcement
//!   expired), or, with the registry unreachable, its `cluster_nodes` heartbeat in PostgreSQL
//!   is stale or it left: **take it over** with [`Takeover::take_over`] (`epoch + 1` only if the epoch is
//!   still the one read, and the old home's open sessions closed at their last checkpoint in
//!   the same transaction), count it, and host it here. A racing taker that lost re-reads and
//!   follows the winner.
//!
//! When this node's conversation ends, its home record is given up by compare-and-delete on
//! the epoch held, once no new conversation for the key started meanwhile, so the next first
//! join places it afresh.

use crate::heartbeat::{Liveness, NodeHeartbeats};
use crate::homes::{Home, Homes};
use crate::mesh::Mesh;
use crate::metrics::ClusterMetrics;
use crate::placement::Placement;
use crate::registry::{NodeRegistry, NodeStatus};
use crate::takeover::Takeover;
use dashmap::DashMap;
use palaver_signaling::domain::Refusal;
use palaver_signaling::gateway::placement::{RouterFuture, home_unavailable};
use palaver_signaling::gateway::{Gateway, HomeDecision, HomeRouter, RelayCredential, RelayLink, RemoteHome};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Compare-and-swap rounds a join tries before giving up (each lost round means another
/// node moved the home meanwhile).
const PLACEMENT_ROUNDS: usize = 4;
/// How long an ended conversation's home record is kept before it is given up (a join
/// arriving right after the last leave keeps the same home).
const RELEASE_AFTER: Duration = Duration::from_secs(2);
/// While a relay opens, how often the registry is asked whether its home is still announced: a
/// home that died just before the open leaves the registry (its announcement expires) before the
/// mesh gives up on it, and the join should not wait for the mesh.
const RELAY_HOME_RECHECK: Duration = Duration::from_millis(250);

/// Placement, relay and takeover, as seen from one node.
pub struct ClusterRouter {
    node_id: String,
    placement: Placement,
    homes: Homes,
    registry: NodeRegistry,
    mesh: Mesh,
    metrics: ClusterMetrics,
    takeover: Arc<Takeover>,
    /// `cluster_nodes`: the death verdict when the registry (Redis) does not answer.
    heartbeats: NodeHeartbeats,
    /// Conversations this node hosts, by target key, with the epoch it holds them at.
    held: Arc<DashMap<String, i64>>,
    gateway: OnceLock<Gateway>,
    /// Set by a drain: joins reaching this node are refused (`NodeUnavailable`), so a client
    /// resumes through another node instead of being seated here again.
    draining: AtomicBool,
}

impl std::fmt::Debug for ClusterRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterRouter").field("node_id", &self.node_id).field("held", &self.held.len()).finish()
    }
}

impl ClusterRouter {
    pub fn new(
        node_id: &str,
        homes: Homes,
        registry: NodeRegistry,
        mesh: Mesh,
        metrics: ClusterMetrics,
        takeover: Arc<Takeover>,
        heartbeats: NodeHeartbeats,
    ) -> Self {
        Self {
            takeover,
            heartbeats,
            node_id: node_id.to_string(),
            placement: Placement::new(node_id, Some(registry.clone()), homes.clone()),
            homes,
            registry,
            mesh,
            metrics,
            held: Arc::new(DashMap::new()),
            gateway: OnceLock::new(),
            draining: AtomicBool::new(false),
        }
    }

    /// Plug into `gateway` (once): joins ask this router from now on.
    pub fn install(self: &Arc<Self>, gateway: &Gateway) {
        let _ = self.gateway.set(gateway.clone());
        gateway.set_home_router(self.clone());
    }

    /// The conversations this node hosts (target key → epoch), for the fence checks.
    pub fn held(&self) -> Arc<DashMap<String, i64>> {
        self.held.clone()
    }

    /// From now on refuse every join here (a drain; the node is already out of the registry).
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// The conversations this node hosts now, with the epoch held.
    pub fn held_keys(&self) -> Vec<(String, i64)> {
        self.held.iter().map(|e| (e.key().clone(), *e.value())).collect()
    }

    /// Stop hosting `key` (held at `epoch`) without giving its home record up: the mirror and
    /// the fence checks leave it alone, and its end does not release the record.
    pub fn forget(&self, key: &str, epoch: i64) {
        self.held.remove_if(key, |_, e| *e == epoch);
    }

    /// Give up the home record of `key` by compare-and-delete on `epoch`.
    pub async fn release(&self, key: &str, epoch: i64) -> Result<bool, crate::DatabaseError> {
        self.homes.release(key, &self.node_id, epoch).await
    }

    /// The epoch this node holds `key` at, if it hosts it.
    pub fn held_epoch(&self, key: &str) -> Option<i64> {
        self.held.get(key).map(|e| *e)
    }

    async fn decide(&self, key: &str) -> Result<HomeDecision, Refusal> {
        if self.draining.load(Ordering::SeqCst) {
            return Err(home_unavailable("this node is draining; reconnect through another node"));
        }
        let mut home = self.placement.home_of(key).await.map_err(home_unavailable)?;
        for _ in 0..PLACEMENT_ROUNDS {
            if home.node == self.node_id {
                self.held.insert(key.to_string(), home.epoch);
                return Ok(HomeDecision::Here);
            }
            match self.registry.nodes().await {
                Ok(nodes) => {
                    if let Some(status) = nodes.iter().find(|n| n.node_id == home.node) {
                        return Ok(HomeDecision::Elsewhere(remote(status)));
                    }
                }
                // Without the registry (Redis away) the PostgreSQL heartbeat decides: a home
                // whose `cluster_nodes` row is stale (database clock) or left is taken over; a
                // live or unknown one cannot be reached from here: refuse rather than risk a
                // needless move (the epoch would still keep it single).
                Err(e) => match self.heartbeats.liveness(&home.node).await {
                    Ok(Liveness::Gone) => {
                        tracing::info!(key, home = %home.node, "registry unreachable; the home's PostgreSQL heartbeat is stale");
                    }
                    Ok(verdict) => {
                        return Err(home_unavailable(format!(
                            "node registry unreachable ({e}) and the home's heartbeat says {verdict:?}"
                        )));
                    }
                    Err(pg) => {
                        return Err(home_unavailable(format!("node registry ({e}) and PostgreSQL ({pg}) unreachable")));
                    }
                },
            }
            match self.take_over(key, &home).await? {
                Some(taken) => {
                    self.held.insert(key.to_string(), taken.epoch);
                    return Ok(HomeDecision::Here);
                }
                // Another node moved it first: follow whoever holds it now.
                None => match self.homes.get(key).await.map_err(home_unavailable)? {
                    Some(now) => home = now,
                    None => home = self.placement.home_of(key).await.map_err(home_unavailable)?,
                },
            }
        }
        Err(home_unavailable("the home kept moving"))
    }

    async fn take_over(&self, key: &str, dead: &Home) -> Result<Option<Home>, Refusal> {
        let taken = self.takeover.take_over(key, dead).await.map_err(home_unavailable)?;
        if let Some(new) = &taken {
            self.metrics.takeovers.inc();
            tracing::info!(key, from = %dead.node, epoch = new.epoch, "took the conversation over from a node that is gone");
        }
        Ok(taken)
    }

    async fn relay(&self, home: &RemoteHome, credential: RelayCredential) -> Result<RelayLink, Refusal> {
        let nodes = self.registry.nodes().await.map_err(|e| home_unavailable(format!("node registry: {e}")))?;
        let mesh = nodes
            .iter()
            .find(|n| n.node_id == home.node)
            .and_then(|n| n.addresses.mesh.as_deref())
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| home_unavailable(format!("node {} announced no mesh address", home.node)))?;
        let home_left = async {
            loop {
                tokio::time::sleep(RELAY_HOME_RECHECK).await;
                if let Ok(nodes) = self.registry.nodes().await
                    && !nodes.iter().any(|n| n.node_id == home.node)
                {
                    return;
                }
            }
        };
        tokio::select! {
            opened = self.mesh.open_relay(mesh, credential) => opened,
            () = home_left => {
                tracing::info!(node = %home.node, "the home left the registry while a relay to it was opening");
                Err(home_unavailable(format!("node {} left the registry while the relay was opening", home.node)))
            }
        }
    }

    fn release_later(&self, key: String) {
        let Some(epoch) = self.held_epoch(&key) else { return };
        let (held, homes, node_id) = (self.held.clone(), self.homes.clone(), self.node_id.clone());
        let gateway = self.gateway.get().cloned();
        tokio::spawn(async move {
            tokio::time::sleep(RELEASE_AFTER).await;
            if gateway.is_some_and(|g| g.is_live(&key)) {
                return;
            }
            if held.remove_if(&key, |_, e| *e == epoch).is_none() {
                return;
            }
            match homes.release(&key, &node_id, epoch).await {
                Ok(true) => tracing::debug!(key, epoch, "gave up the home of an ended conversation"),
                Ok(false) => tracing::info!(key, epoch, "the ended conversation had already moved on"),
                Err(e) => tracing::warn!(key, error = %e, "could not give up a home record (kept until taken over)"),
            }
        });
    }
}

fn remote(status: &NodeStatus) -> RemoteHome {
    RemoteHome {
        node: status.node_id.clone(),
        quic: status.addresses.quic.clone(),
        https: status.addresses.https.clone(),
    }
}

impl HomeRouter for ClusterRouter {
    fn home_of<'a>(&'a self, key: &'a str) -> RouterFuture<'a, Result<HomeDecision, Refusal>> {
        Box::pin(self.decide(key))
    }

    fn open_relay<'a>(
        &'a self,
        home: &'a RemoteHome,
        credential: RelayCredential,
    ) -> RouterFuture<'a, Result<RelayLink, Refusal>> {
        Box::pin(self.relay(home, credential))
    }

    fn key_of<'a>(&'a self, conversation_id: &'a str) -> RouterFuture<'a, Option<String>> {
        Box::pin(async move {
            match self.homes.key_of_live(conversation_id).await.ok().flatten() {
                Some(key) => Some(key),
                // A conversation id of a home that died, whose new home recorded its own id.
                None => self.takeover.key_of_billed(conversation_id).await.ok().flatten(),
            }
        })
    }

    fn released(&self, key: &str) {
        self.release_later(key.to_string());
    }
}
