//! [`Drain`]: a planned stop (SIGTERM) of a cluster node that **hands its conversations over**
//! like a takeover, so billing keeps one continuous record per participant (docs/cluster.md,
//! "Drain"):
//! 1. leave the registry and mark the `cluster_nodes` row left (no join is placed here any more,
//!    and the other nodes see the home as gone at once, without waiting for an expiry) and
//!    refuse joins here;
//! 2. write the conversations' mirror now (roles, lobby standing, capture state);
//! 3. per hosted conversation: stop writing usage for it ([`Fence::hand_over`]: not even the
//!    close of every open session when the process ends), forget it in the router (its home
//!    row is **kept**, not given up), and tell its participants to reconnect through another
//!    node and `resume` (`NodeDraining`, [`ServerCommand::HandOver`]).
//!
//! The first resume (or join) reaching another node finds the home row naming a node that is
//! not in the registry and takes the conversation over by compare-and-swap, adopting the open
//! sessions and restoring the mirror: the resumed participants continue their sessions. A
//! participant who never comes back is closed at the drained node's last checkpoint by the
//! adopting node, as after a kill; a conversation nobody comes back to keeps its home row until
//! a join takes it over.
//!
//! Without placement (no mesh) the drain only leaves the registry; the gateway then ends the
//! conversations with `ServerShutdown`, as on one node.

use crate::fencing::Fence;
use crate::resume::ResumeMirror;
use crate::router::ClusterRouter;
use crate::tasks::ClusterTasks;
use palaver_signaling::domain::conversation::{Authority, ServerCommand};
use palaver_signaling::gateway::Gateway;
use std::sync::Arc;

/// What hands the conversations over; present when placement runs (mesh and Redis).
#[derive(Clone, Debug)]
pub(crate) struct HandOver {
    pub router: Arc<ClusterRouter>,
    pub mirror: Arc<ResumeMirror>,
    pub fence: Arc<Fence>,
    pub gateway: Gateway,
}

/// This node's `cluster_nodes` row: its beat task and the table (the drain marks it left).
#[derive(Clone, Debug)]
pub(crate) struct PgPresence {
    pub heartbeats: crate::heartbeat::NodeHeartbeats,
    pub beat: tokio::task::AbortHandle,
}

/// A planned stop of one node (module docs).
#[derive(Clone, Debug)]
pub struct Drain {
    pub(crate) node_id: String,
    pub(crate) heartbeats: Option<tokio::task::AbortHandle>,
    pub(crate) registry: Option<crate::registry::NodeRegistry>,
    pub(crate) hand_over: Option<HandOver>,
    pub(crate) pg: Option<PgPresence>,
}

impl Drain {
    /// Leave the registry and hand every hosted conversation over; returns how many were.
    pub async fn run(&self) -> usize {
        ClusterTasks::leave_registry(self.heartbeats.as_ref(), self.registry.as_ref(), &self.node_id).await;
        if let Some(pg) = &self.pg {
            // Gone by `cluster_nodes` too, so the handover needs no expiry even with Redis away.
            pg.beat.abort();
            if let Err(e) = pg.heartbeats.leave(&self.node_id).await {
                tracing::warn!(error = %e, "could not mark this node left in cluster_nodes; its row goes stale by itself");
            }
        }
        let Some(h) = &self.hand_over else { return 0 };
        h.router.start_draining();
        h.mirror.flush_now().await;
        let mut handed = 0;
        for (key, epoch) in h.router.held_keys() {
            let Some(handle) = h.gateway.live_handle(&key) else {
                // Nothing runs here for it any more: give the home up as an ended one would.
                h.router.forget(&key, epoch);
                let _ = h.router.release(&key, epoch).await;
                continue;
            };
            h.fence.hand_over(handle.conversation_id());
            h.router.forget(&key, epoch);
            match h.gateway.server_command(&handle, Authority::Server, ServerCommand::HandOver).await {
                Ok(_) => handed += 1,
                Err(e) => tracing::warn!(key, error = %e.message, "could not hand the conversation over"),
            }
        }
        tracing::info!(node = %self.node_id, conversations = handed,
            "draining: conversations handed over (participants told to resume elsewhere)");
        handed
    }
}
