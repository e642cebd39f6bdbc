//! [`RedisUserBus`]: rings and presence across nodes over Redis (docs/cluster-rings.md, issue
//! #17), the cluster's side of signaling's `UserBus` seam.
//!
//! - **Presence**: a set per user, `palaver:presence:<raw id>`, of the nodes holding at least
//!   one of its sockets (added on the first socket, removed with the last), and per node the
//!   set `palaver:presence-node:<node>` of its users, which a node clears at start (what a
//!   killed node left behind).
//! - **One channel per node**, `palaver:bus:<node>`, carrying [`BusMessage`]s as JSON:
//!   `notify` (a frame for a user's sockets on that node), `callInput` and `callReply` (a
//!   socket's answer to a call running there, and its verdict), `callMedia` and `connFrame` (a
//!   callee's WebRTC media request, and the answer frames back to its socket), `move` (a
//!   socket that answered a call there moves into a conversation) and `watch` (tell the call's
//!   node when a user's sockets here are gone).
//! - A frame for a user goes to the nodes in its presence set (other than this one); a node
//!   that delivers a frame carrying a `callId` from another node remembers that node as the
//!   call's home, so the user's `call.accept`/`decline`/`cancel`/`hangUp` and WebRTC media for
//!   that call are forwarded there, and a QUIC `media.attach` for it is redirected to the QUIC
//!   address that node announces in the registry.
//!
//! - **Busy**: the users connected in a call on each node are published ([`engaged`]), so a
//!   user in a call on one node is busy for rings, placements and answers on every node.
//!
//! - **Delivery**: a node announces presence only while Redis has its subscriber on its
//!   channel ([`presence`]: after a Redis restart, not before the subscriber subscribed
//!   again), and a message `PUBLISH` finds no subscriber for is published again, in order per
//!   node, for up to [`DELIVERY_WINDOW`] ([`delivery`]).
//!
//! Every command gives up after 1 s (`redis.rs`): with Redis away, rings and notifications
//! reach only the sockets on the call's own node, and a forwarded answer is refused
//! `NodeUnavailable` after [`FORWARD_TIMEOUT`]. Nothing here is needed for billing, media or
//! running conversations.

mod delivery;
mod engaged;
mod presence;

pub use delivery::DELIVERY_WINDOW;

use delivery::Deliveries;
pub use engaged::ENGAGED_TTL_MS;

use presence::presence_key;

use crate::redis::{RedisError, connect, connect_subscriber};
use crate::registry::NodeRegistry;
use dashmap::DashMap;
use fred::clients::SubscriberClient;
use fred::prelude::*;
use palaver_core::ErrorCode;
use palaver_signaling::domain::calls::CallError;
use palaver_signaling::gateway::placement::RouterFuture;
use palaver_signaling::gateway::{Gateway, RemoteCallInput, RemoteCallMedia, RemoteHome, RemoteMove, UserBus};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How long a forwarded call input waits for the call's node to answer.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(3);
/// Every node re-announces its users this often, so presence comes back after Redis lost it
/// (a restart without persistence) and a missed add or remove heals.
pub const PRESENCE_REFRESH: Duration = Duration::from_secs(5);
/// Calls remembered as running elsewhere are forgotten after this long.
const CALL_MEMORY: Duration = Duration::from_secs(3600);

/// The channel of node `node`.
pub fn channel(node: &str) -> String {
    format!("palaver:bus:{node}")
}

/// One message on a node's channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum BusMessage {
    #[serde(rename_all = "camelCase")]
    Notify { from: String, to: String, text: String },
    #[serde(rename_all = "camelCase")]
    CallInput { from: String, corr: u64, input: RemoteCallInput },
    #[serde(rename_all = "camelCase")]
    CallReply { corr: u64, error: Option<(String, String)> },
    #[serde(rename_all = "camelCase")]
    CallMedia { from: String, media: RemoteCallMedia },
    #[serde(rename_all = "camelCase")]
    ConnFrame { raw_id: String, conn_id: String, text: String },
    /// Move a socket that answered a call running on the sending node into a conversation.
    #[serde(rename_all = "camelCase")]
    Move { moved: RemoteMove },
    /// Tell node `from`, running call `call_id`, when `user`'s sockets here are gone.
    #[serde(rename_all = "camelCase")]
    Watch { from: String, call_id: String, user: String },
}

/// The user bus of one node. Cheap to share (`Arc`).
pub struct RedisUserBus {
    node_id: String,
    client: Client,
    /// Calls whose events came from another node: call id → (node, when last seen).
    remote_calls: DashMap<String, (String, Instant)>,
    pending: DashMap<u64, oneshot::Sender<Result<(), CallError>>>,
    next_corr: AtomicU64,
    /// Users connected in a call on this node (`engaged.rs`).
    engaged_here: DashMap<String, ()>,
    /// Messages to other nodes' channels (`delivery.rs`).
    deliveries: Arc<Deliveries>,
    /// Asks for a presence refresh now (the subscriber subscribed again).
    refresh_now: Arc<tokio::sync::Notify>,
    /// The node registry, on the same client: a call's node's QUIC address.
    registry: NodeRegistry,
}

impl std::fmt::Debug for RedisUserBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisUserBus").field("node_id", &self.node_id).finish_non_exhaustive()
    }
}

impl RedisUserBus {
    fn new(client: Client, node_id: &str) -> Self {
        Self {
            node_id: node_id.to_string(),
            deliveries: Arc::new(Deliveries::new(Arc::new(client.clone()))),
            registry: NodeRegistry::on_client(client.clone()),
            client,
            remote_calls: DashMap::new(),
            pending: DashMap::new(),
            next_corr: AtomicU64::new(1),
            engaged_here: DashMap::new(),
            refresh_now: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Connect, clear what an earlier run of this node left in the presence sets, subscribe
    /// to this node's channel and plug the bus into `gateway`. The task runs until aborted.
    pub async fn start(
        redis_url: &str,
        node_id: &str,
        gateway: Gateway,
    ) -> Result<(Arc<Self>, tokio::task::JoinHandle<()>), RedisError> {
        let bus = Arc::new(Self::new(connect(redis_url).await?, node_id));
        bus.clear_own_presence().await?;
        let subscriber: SubscriberClient = connect_subscriber(redis_url).await?;
        let mut messages = subscriber.message_rx();
        subscriber.subscribe(channel(node_id)).await?;
        let renew = presence::keep_subscribed(subscriber.clone(), node_id.to_string(), bus.refresh_now.clone());
        gateway.set_user_bus(bus.clone());
        let me = bus.clone();
        let refresh = AbortOnDrop(tokio::spawn(bus.clone().refresh_presence(gateway.clone())));
        let task = tokio::spawn(async move {
            let _subscriber = subscriber;
            let _renew = AbortOnDrop(renew);
            let _refresh = refresh;
            loop {
                match messages.recv().await {
                    Ok(message) => {
                        match message.value.as_string().and_then(|s| serde_json::from_str::<BusMessage>(&s).ok()) {
                            Some(m) => me.handle(&gateway, m),
                            None => tracing::warn!(channel = %message.channel, "unreadable user bus message"),
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "user bus messages dropped (at most once, as Redis pub/sub)");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok((bus, task))
    }

    /// The nodes holding sockets of `raw_id`, as Redis knows them.
    pub async fn nodes_of(&self, raw_id: &str) -> Result<Vec<String>, RedisError> {
        Ok(self.client.smembers(presence_key(raw_id)).await?)
    }

    fn handle(self: &Arc<Self>, gateway: &Gateway, message: BusMessage) {
        match message {
            BusMessage::Notify { from, to, text } => {
                self.remember_call(&from, &text);
                gateway.deliver_to_local_sockets(&to, text.into());
            }
            BusMessage::CallInput { from, corr, input } => {
                let (gateway, bus) = (gateway.clone(), self.clone());
                tokio::spawn(async move {
                    let verdict = gateway.run_remote_call_input(&from, input).await;
                    let error = verdict.err().map(|e| (e.code.as_str().to_string(), e.message));
                    bus.publish(&from, &BusMessage::CallReply { corr, error });
                });
            }
            BusMessage::CallReply { corr, error } => {
                if let Some((_, reply)) = self.pending.remove(&corr) {
                    let verdict = match error {
                        None => Ok(()),
                        Some((code, message)) => Err(CallError::new(error_code(&code), message)),
                    };
                    let _ = reply.send(verdict);
                }
            }
            BusMessage::CallMedia { from, media } => {
                let (raw_id, conn_id) = (media.raw_id.clone(), media.conn_id.clone());
                let bus = self.clone();
                let reply: Arc<dyn Fn(Arc<str>) + Send + Sync> = Arc::new(move |text: Arc<str>| {
                    let message = BusMessage::ConnFrame {
                        raw_id: raw_id.clone(),
                        conn_id: conn_id.clone(),
                        text: text.to_string(),
                    };
                    bus.publish(&from, &message);
                });
                gateway.run_remote_call_media(media, reply);
            }
            BusMessage::ConnFrame { raw_id, conn_id, text } => {
                if !gateway.deliver_to_connection(&raw_id, &conn_id, text.into()) {
                    tracing::debug!(user = %raw_id, conn = %conn_id, "forwarded answer for a socket that is gone");
                }
            }
            BusMessage::Move { moved } => {
                gateway.run_remote_move(moved);
            }
            BusMessage::Watch { from, call_id, user } => {
                // The user's sockets here reach the call there (answers, media, hang-up).
                self.remote_calls.insert(call_id.clone(), (from.clone(), Instant::now()));
                gateway.watch_remote_call(&from, &call_id, &user);
            }
        }
    }

    /// A frame from node `from` carrying a `callId`: that call runs there (until it ends).
    fn remember_call(&self, from: &str, text: &str) {
        let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else { return };
        let Some(call_id) = value.get("callId").and_then(|v| v.as_str()) else { return };
        if value.get("type").and_then(|v| v.as_str()) == Some("call.ended") {
            self.remote_calls.remove(call_id);
            return;
        }
        if self.remote_calls.len() > 10_000 {
            self.remote_calls.retain(|_, (_, seen)| seen.elapsed() < CALL_MEMORY);
        }
        self.remote_calls.insert(call_id.to_string(), (from.to_string(), Instant::now()));
    }

    /// Queue `message` for `node`'s channel (`delivery.rs`).
    fn publish(&self, node: &str, message: &BusMessage) {
        if let Ok(json) = serde_json::to_string(message) {
            self.deliveries.send(node, json);
        }
    }
}

fn error_code(code: &str) -> ErrorCode {
    ErrorCode::ALL.iter().copied().find(|c| c.as_str() == code).unwrap_or(ErrorCode::InternalError)
}

impl UserBus for RedisUserBus {
    fn user_online(&self, raw_id: &str) {
        self.spawn_presence_change(raw_id, true);
    }

    fn user_offline(&self, raw_id: &str) {
        self.spawn_presence_change(raw_id, false);
    }

    fn notify_elsewhere(&self, raw_id: &str, text: Arc<str>) {
        let (client, node, raw_id) = (self.client.clone(), self.node_id.clone(), raw_id.to_string());
        let deliveries = self.deliveries.clone();
        tokio::spawn(async move {
            let nodes: Vec<String> = match client.smembers(presence_key(&raw_id)).await {
                Ok(nodes) => nodes,
                Err(e) => {
                    tracing::debug!(user = %raw_id, error = %e, "presence unknown (Redis away?): notified on this node only");
                    return;
                }
            };
            let message = BusMessage::Notify { from: node.clone(), to: raw_id.clone(), text: text.to_string() };
            let Ok(json) = serde_json::to_string(&message) else { return };
            for other in nodes.iter().filter(|n| **n != node) {
                deliveries.send(other, json.clone());
            }
        });
    }

    fn call_home(&self, call_id: &str) -> Option<String> {
        self.remote_calls.get(call_id).map(|entry| entry.value().0.clone())
    }

    fn forward_call<'a>(&'a self, node: &'a str, input: RemoteCallInput) -> RouterFuture<'a, Result<(), CallError>> {
        Box::pin(async move {
            let corr = self.next_corr.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = oneshot::channel();
            self.pending.insert(corr, tx);
            self.publish(node, &BusMessage::CallInput { from: self.node_id.clone(), corr, input });
            let verdict = tokio::time::timeout(FORWARD_TIMEOUT, rx).await;
            self.pending.remove(&corr);
            match verdict {
                Ok(Ok(verdict)) => verdict,
                _ => Err(CallError::new(
                    ErrorCode::NodeUnavailable,
                    format!("the call runs on node {node}, which did not answer"),
                )),
            }
        })
    }

    fn engagement_changed(&self, engaged: &[String], freed: &[String]) {
        self.spawn_engagement_change(engaged, freed);
    }

    fn engaged_elsewhere<'a>(&'a self, raw_ids: &'a [String]) -> RouterFuture<'a, Vec<String>> {
        Box::pin(self.engaged_on_other_nodes(raw_ids))
    }

    fn forward_media(&self, node: &str, media: RemoteCallMedia) {
        self.publish(node, &BusMessage::CallMedia { from: self.node_id.clone(), media });
    }

    fn move_socket(&self, node: &str, moved: RemoteMove) {
        // Queued now, before the `call.ended` notified next (which first reads the presence
        // set): one queue per node keeps the order.
        self.publish(node, &BusMessage::Move { moved });
    }

    fn user_nodes_elsewhere<'a>(&'a self, raw_id: &'a str) -> RouterFuture<'a, Vec<String>> {
        Box::pin(async move {
            match self.nodes_of(raw_id).await {
                Ok(nodes) => nodes.into_iter().filter(|n| *n != self.node_id).collect(),
                Err(e) => {
                    tracing::debug!(user = %raw_id, error = %e, "presence unknown (Redis away?): no sockets elsewhere");
                    Vec::new()
                }
            }
        })
    }

    fn watch_call(&self, node: &str, call_id: &str, user: &str) {
        let watch =
            BusMessage::Watch { from: self.node_id.clone(), call_id: call_id.to_string(), user: user.to_string() };
        self.publish(node, &watch);
    }

    fn node_addresses<'a>(&'a self, node: &'a str) -> RouterFuture<'a, Option<RemoteHome>> {
        Box::pin(async move {
            match self.registry.node(node).await {
                Ok(Some(status)) => Some(RemoteHome {
                    node: node.to_string(),
                    quic: status.addresses.quic,
                    https: status.addresses.https,
                }),
                Ok(None) => None,
                Err(e) => {
                    tracing::debug!(node, error = %e, "node addresses unknown (Redis away?)");
                    None
                }
            }
        })
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palaver_signaling::domain::calls::Party;

    #[test]
    fn bus_messages_read_back_as_written() {
        let messages = [
            BusMessage::Notify { from: "a".into(), to: "8:acs:b".into(), text: "{\"type\":\"call.incoming\"}".into() },
            BusMessage::CallInput {
                from: "b".into(),
                corr: 7,
                input: RemoteCallInput::Accept {
                    call_id: "c".into(),
                    callee: Party::new("8:acs:b", "Bob"),
                    endpoint: "conn".into(),
                },
            },
            BusMessage::CallReply { corr: 7, error: Some(("InvalidState".into(), "no".into())) },
            BusMessage::ConnFrame { raw_id: "8:acs:b".into(), conn_id: "conn".into(), text: "{}".into() },
            BusMessage::Move {
                moved: RemoteMove {
                    raw_id: "8:acs:b".into(),
                    conn_id: "conn".into(),
                    call_id: "c".into(),
                    join: palaver_core::protocol::JoinTarget::GroupCall { group_id: "g".into() },
                },
            },
            BusMessage::Watch { from: "a".into(), call_id: "c".into(), user: "8:acs:b".into() },
        ];
        for m in messages {
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(serde_json::from_str::<BusMessage>(&json).unwrap(), m);
        }
        assert_eq!(error_code("InvalidState"), ErrorCode::InvalidState);
        assert_eq!(error_code("nonsense"), ErrorCode::InternalError);
    }
}
