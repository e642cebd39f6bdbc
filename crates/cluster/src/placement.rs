//! [`Placement`]: which node hosts a new conversation. The first join asks for the
//! conversation's home: the one recorded in `cluster_homes` if there is one; otherwise a node
//! chosen by the **power of two choices** over the registry's load (two live nodes drawn at
//! random, the one with fewer live conversations wins), recorded with [`Homes::claim`] at
//! epoch 1. Two nodes placing one conversation at once both claim; the first claim wins and
//! the other reads it (compare-and-swap on the row), so a conversation never gets two homes.
//!
//! Two choices rather than "least loaded": every node placing at once from the same (up to
//! one heartbeat old) registry would all pick the same least-loaded node; two random draws
//! spread such bursts while keeping the load within a small bound of even (Mitzenmacher). The
//! registry is a hint: when it is empty or Redis is away, this node hosts the conversation
//! itself. The gateway does not call this yet (relay to a remote home is not built).

use crate::database::DatabaseError;
use crate::homes::{Home, Homes};
use crate::redis::RedisError;
use crate::registry::{NodeRegistry, NodeStatus};
use rand::Rng;

#[derive(Debug, thiserror::Error)]
pub enum PlacementError {
    #[error("recording the home: {0}")]
    Database(#[from] DatabaseError),
}

/// The power of two choices: of two distinct nodes drawn at random, the one with fewer live
/// conversations (the first drawn on a tie). `None` when there is no node.
pub fn two_choices<'a>(nodes: &'a [NodeStatus], rng: &mut impl Rng) -> Option<&'a NodeStatus> {
    match nodes.len() {
        0 => None,
        1 => Some(&nodes[0]),
        n => {
            let first = rng.gen_range(0..n);
            let mut second = rng.gen_range(0..n - 1);
            if second >= first {
                second += 1;
            }
            let (a, b) = (&nodes[first], &nodes[second]);
            Some(if b.conversations < a.conversations { b } else { a })
        }
    }
}

/// Placement as seen from one node.
#[derive(Debug, Clone)]
pub struct Placement {
    node_id: String,
    registry: Option<NodeRegistry>,
    homes: Homes,
}

impl Placement {
    /// Placement from node `node_id`; without a registry (no Redis) every conversation this
    /// node starts is its own.
    pub fn new(node_id: &str, registry: Option<NodeRegistry>, homes: Homes) -> Self {
        Self { node_id: node_id.to_string(), registry, homes }
    }

    /// The home of `conversation`: the recorded one, else a new one by two choices.
    pub async fn home_of(&self, conversation: &str) -> Result<Home, PlacementError> {
        if let Some(home) = self.homes.get(conversation).await? {
            return Ok(home);
        }
        let chosen = match &self.registry {
            Some(registry) => match registry.nodes().await {
                Ok(nodes) => two_choices(&nodes, &mut rand::thread_rng()).map(|n| n.node_id.clone()),
                Err(e) => {
                    log_registry_failure(&e);
                    None
                }
            },
            None => None,
        };
        let node = chosen.unwrap_or_else(|| self.node_id.clone());
        Ok(self.homes.claim(conversation, &node).await?)
    }
}

fn log_registry_failure(e: &RedisError) {
    tracing::warn!(error = %e, "node registry unreachable; placing the conversation here");
}

#[cfg(test)]
mod tests;
