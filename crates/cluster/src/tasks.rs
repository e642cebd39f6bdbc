//! [`ClusterTasks`]: the background work of a cluster node once its control plane runs:
//! heartbeats into the node registry (with the node's live conversations as its load), the
//! revocation subscriber, the periodic revocation resync from PostgreSQL, and the user bus
//! (rings and presence across nodes, [`crate::bus`]).

use crate::invalidations::{self, Revoked};
use crate::redis::RedisError;
use crate::registry::{NodeAddresses, NodeRegistry};
use palaver_signaling::app::AppState;
use palaver_signaling::store::identity_store::IdentityStore;
use std::sync::Arc;

/// The running tasks; stopped (and the node's registry entry removed) by [`ClusterTasks::stop`].
#[derive(Debug)]
pub struct ClusterTasks {
    node_id: String,
    registry: Option<NodeRegistry>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    heartbeats: Option<tokio::task::AbortHandle>,
}

impl ClusterTasks {
    /// Start the tasks for `state`: resync always; with a registry and `redis_url`, the
    /// heartbeats and the revocation subscriber too.
    pub async fn start(
        state: &AppState,
        node_id: &str,
        identity: Arc<dyn IdentityStore>,
        redis: Option<(&str, &NodeRegistry)>,
        addresses: NodeAddresses,
    ) -> Result<Self, RedisError> {
        let revocations = state.clone();
        let apply: Arc<dyn Fn(Revoked) + Send + Sync> =
            Arc::new(move |r: Revoked| revocations.auth.revocations.apply(&r.raw_id, r.mark));
        let mut tasks = vec![invalidations::spawn_resync(identity, apply.clone())];
        let registry = match redis {
            Some((url, registry)) => {
                tasks.push(invalidations::subscribe(url, apply).await?);
                let (_bus, bus_task) = crate::bus::RedisUserBus::start(url, node_id, state.gateway.clone()).await?;
                tasks.push(bus_task);
                let gateway = state.clone();
                let load = Arc::new(move || gateway.gateway.live_conversations() as u64);
                tasks.push(registry.spawn_heartbeats(node_id.to_string(), addresses, load));
                Some(registry.clone())
            }
            None => None,
        };
        let heartbeats = registry.as_ref().and_then(|_| tasks.last().map(|t| t.abort_handle()));
        Ok(Self { node_id: node_id.to_string(), registry, tasks, heartbeats })
    }

    /// Stop announcing this node and leave the registry at once (the start of a drain).
    pub async fn leave_registry(
        heartbeats: Option<&tokio::task::AbortHandle>,
        registry: Option<&NodeRegistry>,
        node_id: &str,
    ) {
        if let Some(h) = heartbeats {
            h.abort();
        }
        if let Some(registry) = registry
            && let Err(e) = registry.leave(node_id).await
        {
            tracing::warn!(error = %e, "could not leave the node registry; the entry expires by itself");
        }
    }

    /// What a drain needs to stop the announcements: the heartbeat task and the registry.
    pub fn announcements(&self) -> (Option<tokio::task::AbortHandle>, Option<NodeRegistry>) {
        (self.heartbeats.clone(), self.registry.clone())
    }

    /// Stop the tasks and leave the registry at once (a planned stop).
    pub async fn stop(self) {
        for task in &self.tasks {
            task.abort();
        }
        if let Some(registry) = &self.registry
            && let Err(e) = registry.leave(&self.node_id).await
        {
            tracing::warn!(error = %e, "could not leave the node registry; the entry expires by itself");
        }
    }
}
