//! Where a join or resume of this socket goes in a cluster: on here, relayed to the
//! conversation's home over the node mesh, redirected (QUIC), or refused; a relay whose home
//! died while it opened is placed again, which takes the conversation over (docs/cluster.md).

use super::{Connection, frame};
use crate::gateway::placement::HomeDecision;
use palaver_core::ErrorCode;
use palaver_core::protocol::ServerMessage;
use std::time::{Duration, Instant};

/// How many times a join is placed when relaying it to its home fails `NodeUnavailable` (the home
/// died while the relay opened: the mesh gave up, then the registry dropped it, then a takeover).
const RELAY_PLACEMENTS: usize = 3;
/// Placing again stops once the join has waited this long, so a live but slow home is refused
/// (the client tries again) rather than held for several relay timeouts.
const RELAY_PLACEMENT_WINDOW: Duration = Duration::from_secs(4);

impl Connection {
    /// In a cluster, where the conversation of `key` lives: `Ok(true)` when here (join on),
    /// `Ok(false)` when the socket is now relayed to its home (the loop hands it over), else
    /// the frames to answer (a `redirect` for QUIC, or a refusal).
    pub(super) async fn place(
        &mut self,
        router: &dyn crate::gateway::HomeRouter,
        key: &str,
        rid: Option<String>,
    ) -> Result<bool, Vec<String>> {
        // A relay refused `NodeUnavailable` (the home died while it opened: it left the registry,
        // or the mesh gave up) is placed once more, which takes the conversation over when its
        // home is gone, instead of sending the client away to try again.
        let started = Instant::now();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let home = match router.home_of(key).await {
                Ok(HomeDecision::Here) => return Ok(true),
                Ok(HomeDecision::Elsewhere(home)) => home,
                Err(r) => return Err(self.error(r.code, r.message, rid)),
            };
            if self.ident.relayed {
                let r = crate::gateway::placement::home_unavailable(format!("it moved to node {}", home.node));
                return Err(self.error(r.code, r.message, rid));
            }
            if self.media_path.is_some() {
                let Some(quic) = home.quic.clone() else {
                    let r = crate::gateway::placement::home_unavailable(format!(
                        "node {} announced no QUIC address",
                        home.node
                    ));
                    return Err(self.error(r.code, r.message, rid));
                };
                tracing::debug!(conn = %self.conn_id, key, node = %home.node, "redirecting a QUIC join to its home");
                return Err(vec![frame(&ServerMessage::Redirect {
                    request_id: rid,
                    node: home.node,
                    quic,
                    https: home.https,
                })]);
            }
            let (Some(credential), Some(join_text)) = (self.ident.credential.clone(), self.join_text.clone()) else {
                let r = crate::gateway::placement::home_unavailable("this connection cannot be relayed");
                return Err(self.error(r.code, r.message, rid));
            };
            let link = match router.open_relay(&home, credential).await {
                Ok(link) => link,
                Err(r)
                    if r.code == ErrorCode::NodeUnavailable
                        && attempts < RELAY_PLACEMENTS
                        && started.elapsed() < RELAY_PLACEMENT_WINDOW =>
                {
                    tracing::info!(conn = %self.conn_id, key, node = %home.node, reason = %r.message, "relay to the home failed; placing again");
                    continue;
                }
                Err(r) => {
                    self.join_text = None;
                    return Err(self.error(r.code, r.message, rid));
                }
            };
            self.join_text = None;
            if link.to_home.send(join_text).await.is_err() {
                let r = crate::gateway::placement::home_unavailable("the relay closed at once");
                return Err(self.error(r.code, r.message, rid));
            }
            tracing::debug!(conn = %self.conn_id, key, node = %home.node, "relaying the connection to its home");
            self.relay = Some(link);
            return Ok(false);
        }
    }
}
