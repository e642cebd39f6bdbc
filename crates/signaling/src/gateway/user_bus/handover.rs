//! A callee who answered a call on another node than the call's (docs/cluster-rings.md "A
//! callee who answered on another node"): how the call's node reaches that callee's socket to
//! move it into a conversation, and when it ends the callee's part because its sockets are gone.
//!
//! - **Move** (Call Automation `participants:moveHere` into a group call or a room): the call
//!   machine names the socket that answered ([`Output::MovedToConversation`]'s endpoint). The
//!   call's node moves it when it is here; else the socket here carrying the callee's media for
//!   the call (a QUIC callee whose media followed the call here); else it sends a
//!   [`RemoteMove`] to the node the answer came from ([`UserBus::move_socket`](super::UserBus::move_socket), queued before the
//!   `call.ended` that follows, so the socket reads `call.moved` first), whose socket joins the
//!   conversation through its own placement (locally, or relayed to the conversation's home).
//! - **Gone**: the answering node says the callee's sockets there are gone (reconnect grace
//!   over). The call's node ends the callee's part only when the callee has no socket left in
//!   the cluster: not here, and no other node in its presence set. A socket on another node can
//!   carry the call as on one node (its `call.hangUp`, WebRTC `media.offer` and QUIC
//!   `media.attach` reach the call's node through the bus), so the call goes on; each of those
//!   nodes is asked to watch ([`UserBus::watch_call`](super::UserBus::watch_call)): it learns the call's node and tells it
//!   when the user's last socket there is gone, and the call's node decides again.
//!
//! [`Output::MovedToConversation`]: crate::domain::calls::Output::MovedToConversation

use super::Gateway;
use crate::domain::calls::{CallError, Input};
use crate::gateway::PresenceEntry;
use crate::gateway::calls::session_id;
use crate::gateway::connection::Outbound;
use palaver_core::protocol::JoinTarget;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A move into a conversation for a socket on another node, which answered a call running on
/// the sending node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteMove {
    pub raw_id: String,
    /// The socket that answered the call, on the receiving node.
    pub conn_id: String,
    pub call_id: String,
    pub join: JoinTarget,
}

impl Gateway {
    /// The answer to call `call_id` (running here) came from socket `endpoint` on `node`.
    pub(super) fn remember_remote_answer(&self, call_id: &str, endpoint: &str, node: &str) {
        self.remote_answers.entry(call_id.to_string()).or_default().push((endpoint.to_string(), node.to_string()));
    }

    /// Socket `conn_id` here carries `raw_id`'s media in call `call_id` (running here).
    pub(crate) fn remember_call_media_conn(&self, call_id: &str, raw_id: &str, conn_id: &str) {
        self.call_media_conns.insert(session_id(call_id, raw_id), conn_id.to_string());
    }

    /// `raw_id` left call `call_id`: its media socket is no longer the call's.
    pub(crate) fn forget_call_media_conn(&self, call_id: &str, raw_id: &str) {
        self.call_media_conns.remove(&session_id(call_id, raw_id));
    }

    /// Call `call_id` ended here: who answered it from elsewhere is forgotten.
    pub(crate) fn forget_remote_answers(&self, call_id: &str) {
        self.remote_answers.remove(call_id);
    }

    /// The call machine moves `raw_id`, connected in `call_id` from socket `endpoint`, into the
    /// conversation `join`: that socket here, else the socket here carrying its media for the
    /// call, else the answering socket on the node the answer came from.
    pub(crate) fn move_call_socket(&self, call_id: String, raw_id: &str, endpoint: &str, join: JoinTarget) {
        let here = self.presence_of(raw_id);
        let media_conn = self.call_media_conns.get(&session_id(&call_id, raw_id)).map(|c| c.value().clone());
        let socket = here
            .iter()
            .find(|e| e.conn_id == endpoint)
            .or_else(|| media_conn.and_then(|conn| here.iter().find(|e| e.conn_id == conn)));
        if let Some(entry) = socket {
            return send_move(entry.clone(), call_id, join);
        }
        let node = self
            .remote_answers
            .get(&call_id)
            .and_then(|answers| answers.iter().find(|(conn, _)| conn == endpoint).map(|(_, node)| node.clone()));
        match (node, self.user_bus()) {
            (Some(node), Some(bus)) => {
                tracing::info!(user = %raw_id, conn = %endpoint, call = %call_id, %node, "moving a socket on another node into a conversation");
                let moved = RemoteMove { raw_id: raw_id.to_string(), conn_id: endpoint.to_string(), call_id, join };
                bus.move_socket(&node, moved);
            }
            _ => tracing::warn!(user = %raw_id, conn = %endpoint, "moved participant has no socket any more"),
        }
    }

    /// A move for a socket here, sent by the node running the call it answered; `false` when
    /// the socket is gone.
    pub fn run_remote_move(&self, moved: RemoteMove) -> bool {
        let Some(entry) = self.presence_of(&moved.raw_id).into_iter().find(|e| e.conn_id == moved.conn_id) else {
            tracing::warn!(user = %moved.raw_id, conn = %moved.conn_id, "moved participant has no socket here any more");
            return false;
        };
        tracing::info!(user = %moved.raw_id, conn = %moved.conn_id, call = %moved.call_id, "moving a socket into a conversation for another node's call");
        send_move(entry, moved.call_id, moved.join);
        true
    }

    /// The answering node of `user` in call `call_id` (running here) says its sockets there
    /// are gone. The part ends only when the user has no socket left here or on another node;
    /// otherwise the nodes holding them are asked to watch.
    pub(super) async fn remote_user_gone(&self, call_id: String, user: String) -> Result<(), CallError> {
        // Connected here (e.g. a QUIC callee whose media followed the call here): not gone.
        if !self.presence_of(&user).is_empty() {
            return Ok(());
        }
        if let Some(bus) = self.user_bus() {
            let others = bus.user_nodes_elsewhere(&user).await;
            if !others.is_empty() {
                tracing::info!(%user, call = %call_id, nodes = ?others, "answering socket gone, the user is connected on other nodes: the call goes on");
                for node in &others {
                    bus.watch_call(node, &call_id, &user);
                }
                return Ok(());
            }
        }
        self.call_request_here(Input::UserGoneFrom { call_id, user }).await
    }

    /// Node `from` runs call `call_id`, in which `user` is connected, and wants to hear when
    /// the user's sockets here are gone. The bus has remembered `from` as the call's node, so
    /// the user's sockets here reach the call there.
    pub fn watch_remote_call(&self, from: &str, call_id: &str, user: &str) {
        {
            let mut calls = self.answered_elsewhere.entry(user.to_string()).or_default();
            if !calls.iter().any(|(_, call)| call == call_id) {
                calls.push((from.to_string(), call_id.to_string()));
            }
        }
        if self.presence_of(user).is_empty() {
            // Gone from here meanwhile: tell once a grace is over, unless the user is back.
            let (gateway, user) = (self.clone(), user.to_string());
            let grace = Duration::from_millis(self.config().reconnect_grace_ms.max(0) as u64);
            tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                if gateway.presence_of(&user).is_empty() {
                    gateway.user_gone_elsewhere(&user);
                }
            });
        }
    }
}

/// Queue a move on a socket (before the `call.ended` that follows, so it reads `call.moved`
/// first); a full queue waits on its own task.
fn send_move(entry: PresenceEntry, call_id: String, join: JoinTarget) {
    if let Err(tokio::sync::mpsc::error::TrySendError::Full(message)) =
        entry.tx.try_send(Outbound::MoveInto { call_id, join })
    {
        tokio::spawn(async move {
            let _ = entry.tx.send(message).await;
        });
    }
}

#[cfg(test)]
mod tests;
