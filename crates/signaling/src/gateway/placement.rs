//! The seam between the join path and a cluster's placement (docs/cluster.md, issue #17).
//!
//! In a cluster every conversation has one home node. On `join`, a socket asks the
//! [`HomeRouter`] (plugged in once with [`super::Gateway::set_home_router`]; none in single-node
//! mode) where the conversation named by the target key lives:
//! - [`HomeDecision::Here`]: this node hosts it, the join goes on as on a single node;
//! - [`HomeDecision::Elsewhere`]: a WebSocket's signaling is relayed to the home over the
//!   node mesh ([`HomeRouter::open_relay`], then [`relay_frames`] copies frames both ways, so
//!   the home's SDP answer carries the home's own media candidates and WebRTC media goes
//!   straight to the home's worker); a QUIC connection, whose media rides on the connection
//!   itself, is answered `redirect` with the home's QUIC address.
//!
//! Connections arriving from the mesh (already relayed once) are never relayed again: if the
//! home moved meanwhile they are refused with `NodeUnavailable` and the client reconnects.

use super::connection::Outbound;
use crate::auth::Door;
use crate::domain::Refusal;
use axum::extract::ws::Message;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use palaver_core::ErrorCode;
use palaver_core::protocol::ServerMessage;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::mpsc;

/// A boxed future, for the object-safe [`HomeRouter`].
pub type RouterFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A node hosting a conversation that is not this one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteHome {
    pub node: String,
    /// Its QUIC address (for `redirect`), when it announced one.
    pub quic: Option<String>,
    /// Its HTTPS base URL, when it announced one.
    pub https: Option<String>,
}

/// Where a conversation lives, as the router answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HomeDecision {
    Here,
    Elsewhere(RemoteHome),
}

/// What the home needs to authenticate a relayed connection: the client's own credential
/// (the home verifies it with the cluster's shared keys, exactly as a direct connection).
#[derive(Clone)]
pub struct RelayCredential {
    pub door: Door,
    pub token: String,
}

impl std::fmt::Debug for RelayCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayCredential").field("door", &self.door).finish_non_exhaustive()
    }
}

/// An open relay to the home: text frames to send there, and the home's frames (after its
/// `welcome`, which the relaying node swallows: the client already has this node's). The
/// receiver ends when the home or the mesh link is gone.
#[derive(Debug)]
pub struct RelayLink {
    pub to_home: mpsc::Sender<String>,
    pub from_home: mpsc::Receiver<String>,
}

/// A cluster's placement, as the join path sees it.
pub trait HomeRouter: Send + Sync {
    /// The home of the conversation with target key `key` (`meeting:<id>`, `groupCall:<id>`,
    /// `room:<id>`), choosing and recording one on a first join. An error refuses the join.
    fn home_of<'a>(&'a self, key: &'a str) -> RouterFuture<'a, Result<HomeDecision, Refusal>>;

    /// Open a relay of one client connection to `home` over the node mesh.
    fn open_relay<'a>(
        &'a self,
        home: &'a RemoteHome,
        credential: RelayCredential,
    ) -> RouterFuture<'a, Result<RelayLink, Refusal>>;

    /// The target key of a live conversation by its id, wherever it is hosted (a `resume`
    /// reaching a node that does not host it).
    fn key_of<'a>(&'a self, conversation_id: &'a str) -> RouterFuture<'a, Option<String>>;

    /// This node's conversation with target key `key` ended: give up its home record.
    fn released(&self, key: &str);
}

/// The refusal of a join whose conversation's home could not be reached or decided.
pub fn home_unavailable(detail: impl std::fmt::Display) -> Refusal {
    Refusal::new(ErrorCode::NodeUnavailable, format!("the conversation's home node is unavailable: {detail}"))
}

/// Copy frames between a client's connection and its relay to the home until either side
/// ends. Frames queued for this socket locally (call notifications reaching this node's
/// presence) are written to the client too. When the home goes away first, the client gets
/// a `NodeUnavailable` error frame before the close, and reconnects.
pub(crate) async fn relay_frames<Tx, Rx, E>(
    sink: &mut Tx,
    stream: &mut Rx,
    local: &mut mpsc::Receiver<Outbound>,
    mut link: RelayLink,
    heartbeat_every: Duration,
) where
    Tx: Sink<Message> + Unpin + Send,
    Rx: Stream<Item = Result<Message, E>> + Unpin + Send,
{
    let mut heartbeat = tokio::time::interval(heartbeat_every);
    heartbeat.tick().await;
    loop {
        tokio::select! {
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    if link.to_home.send(text.to_string()).await.is_err() {
                        home_gone(sink).await;
                        return;
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
            from_home = link.from_home.recv() => match from_home {
                Some(text) => {
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                None => {
                    home_gone(sink).await;
                    return;
                }
            },
            queued = local.recv() => match queued {
                Some(Outbound::Frame(text)) => {
                    if sink.send(Message::Text(text.to_string().into())).await.is_err() {
                        return;
                    }
                }
                Some(_) => {}
                None => return,
            },
            _ = heartbeat.tick() => {
                if sink.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn home_gone<Tx: Sink<Message> + Unpin>(sink: &mut Tx) {
    let text = ServerMessage::error(
        ErrorCode::NodeUnavailable,
        "the conversation's home node is gone; reconnect and join again",
        None,
    )
    .to_json();
    let _ = sink.send(Message::Text(text.into())).await;
    let _ = sink.send(Message::Close(None)).await;
}
