//! [`NodeRegistry`]: which nodes of a cluster are alive and how loaded they are, in Redis
//! (soft state that rebuilds itself: every node re-announces itself each second).
//!
//! Each node writes `palaver:node:<id>` = its [`NodeStatus`] as JSON with a
//! [`NODE_TTL_MS`] expiry every [`HEARTBEAT`], and adds its id to the hash `palaver:nodes`
//! (the index listing reads, so it needs no `SCAN`). A node that stops (killed, stalled,
//! partitioned from Redis) drops out of [`NodeRegistry::nodes`] when its key expires, within
//! [`NODE_TTL_MS`]; listing removes such ids from the index. After a Redis restart the keys
//! are back within one heartbeat. This is a hint for placement (scale-out.md §3.1), never a
//! verdict: a takeover will also require PostgreSQL's view (not built yet).

use crate::redis::{RedisError, connect};
use fred::prelude::*;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a node re-announces itself.
pub const HEARTBEAT: Duration = Duration::from_millis(500);
/// How long an announcement lives: four heartbeats. Its expiry is when a home's conversations
/// may be taken over (docs/cluster.md, "Takeover"), so it bounds failover time; the 1 s / 3 s
/// of the first version measured 4.5 s from a kill to decoded audio again.
pub const NODE_TTL_MS: i64 = 2000;

const NODES_INDEX: &str = "palaver:nodes";

/// After a failed registry command, reads fail at once for this long instead of each waiting
/// the 1 s command timeout: with Redis away, a join placed here would otherwise pay that wait
/// (a client with a 1 s request timeout gave up and joined again, leaving a second session in
/// its reconnect grace; found by tests/cluster/trials.py). The heartbeat keeps probing every
/// 500 ms (each failing after 1 s) and closes the breaker on its first success.
pub const UNREACHABLE_BACKOFF: Duration = Duration::from_secs(2);

fn node_key(node_id: &str) -> String {
    format!("palaver:node:{node_id}")
}

/// What a node says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub node_id: String,
    /// Live conversations hosted here: the load figure placement compares.
    pub conversations: u64,
    /// When this was written (the node's clock, ms since the Unix epoch).
    pub at_ms: i64,
    /// Where the other nodes and the clients reach it (absent from older nodes).
    #[serde(default)]
    pub addresses: NodeAddresses,
}

/// A node's addresses, announced with its status: the node mesh (relays), QUIC (redirects)
/// and HTTPS.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddresses {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https: Option<String>,
}

/// The registry, on one Redis client. Cheap to clone.
#[derive(Clone)]
pub struct NodeRegistry {
    client: Client,
    /// Until when reads fail fast (see [`UNREACHABLE_BACKOFF`]).
    unreachable_until: Arc<Mutex<Option<Instant>>>,
}

impl std::fmt::Debug for NodeRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeRegistry").finish_non_exhaustive()
    }
}

impl NodeRegistry {
    /// Connect to `redis_url` (reconnecting by itself afterwards).
    pub async fn connect(redis_url: &str) -> Result<Self, RedisError> {
        Ok(Self { client: connect(redis_url).await?, unreachable_until: Arc::new(Mutex::new(None)) })
    }

    /// The registry on a client already connected (the user bus's).
    pub(crate) fn on_client(client: Client) -> Self {
        Self { client, unreachable_until: Arc::new(Mutex::new(None)) }
    }

    /// Node `node_id`'s announcement, while it has not expired (`None`: not alive).
    pub async fn node(&self, node_id: &str) -> Result<Option<NodeStatus>, RedisError> {
        self.fail_fast()?;
        let value: Result<Option<String>, RedisError> =
            self.client.get(node_key(node_id)).await.map_err(RedisError::from);
        let value = self.note(value)?;
        Ok(value.and_then(|v| serde_json::from_str(&v).ok()))
    }

    fn note<T>(&self, result: Result<T, RedisError>) -> Result<T, RedisError> {
        if let Ok(mut until) = self.unreachable_until.lock() {
            *until = match &result {
                Ok(_) => None,
                Err(_) => Some(Instant::now() + UNREACHABLE_BACKOFF),
            };
        }
        result
    }

    fn fail_fast(&self) -> Result<(), RedisError> {
        match self.unreachable_until.lock().ok().and_then(|u| *u) {
            Some(until) if Instant::now() < until => Err(RedisError::Unreachable(UNREACHABLE_BACKOFF)),
            _ => Ok(()),
        }
    }

    /// Announce `status` for [`NODE_TTL_MS`].
    pub async fn announce(&self, status: &NodeStatus) -> Result<(), RedisError> {
        let announced = self.announce_once(status).await;
        self.note(announced)
    }

    async fn announce_once(&self, status: &NodeStatus) -> Result<(), RedisError> {
        let json = serde_json::to_string(status).map_err(|e| RedisError::Encoding(e.to_string()))?;
        let _: () =
            self.client.set(node_key(&status.node_id), json, Some(Expiration::PX(NODE_TTL_MS)), None, false).await?;
        let _: () = self.client.hset(NODES_INDEX, (status.node_id.as_str(), 1)).await?;
        Ok(())
    }

    /// The nodes whose announcement has not expired, by id (an error at once while Redis was
    /// found unreachable less than [`UNREACHABLE_BACKOFF`] ago).
    pub async fn nodes(&self) -> Result<Vec<NodeStatus>, RedisError> {
        self.fail_fast()?;
        let nodes = self.nodes_once().await;
        self.note(nodes)
    }

    async fn nodes_once(&self) -> Result<Vec<NodeStatus>, RedisError> {
        let mut ids: Vec<String> = self.client.hkeys(NODES_INDEX).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        ids.sort();
        let keys: Vec<String> = ids.iter().map(|id| node_key(id)).collect();
        let values: Vec<Option<String>> = self.client.mget(keys).await?;
        let mut live = Vec::new();
        let mut gone = Vec::new();
        for (id, value) in ids.into_iter().zip(values) {
            match value.and_then(|v| serde_json::from_str::<NodeStatus>(&v).ok()) {
                Some(status) => live.push(status),
                None => gone.push(id),
            }
        }
        if !gone.is_empty() {
            let _: () = self.client.hdel(NODES_INDEX, gone).await?;
        }
        Ok(live)
    }

    /// Leave at once (a planned stop), instead of expiring.
    pub async fn leave(&self, node_id: &str) -> Result<(), RedisError> {
        let _: () = self.client.del(node_key(node_id)).await?;
        let _: () = self.client.hdel(NODES_INDEX, node_id).await?;
        Ok(())
    }

    /// Announce this node every [`HEARTBEAT`] with the load `conversations()` reports, until
    /// the task is aborted. A failed announcement (Redis down) is logged and retried on the
    /// next beat.
    pub fn spawn_heartbeats(
        &self,
        node_id: String,
        addresses: NodeAddresses,
        conversations: Arc<dyn Fn() -> u64 + Send + Sync>,
    ) -> tokio::task::JoinHandle<()> {
        let registry = self.clone();
        tokio::spawn(async move {
            let mut beat = tokio::time::interval(HEARTBEAT);
            beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            loop {
                beat.tick().await;
                let status = NodeStatus {
                    node_id: node_id.clone(),
                    conversations: conversations(),
                    at_ms: chrono::Utc::now().timestamp_millis(),
                    addresses: addresses.clone(),
                };
                match registry.announce(&status).await {
                    Ok(()) if failing => {
                        tracing::info!(node = %node_id, "node registry: announcing again");
                        failing = false;
                    }
                    Ok(()) => {}
                    Err(e) if !failing => {
                        tracing::warn!(node = %node_id, error = %e, "node registry: announcement failed");
                        failing = true;
                    }
                    Err(_) => {}
                }
            }
        })
    }
}

#[cfg(test)]
mod tests;
