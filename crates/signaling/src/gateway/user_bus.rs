//! The seam between the gateway and a cluster's user bus: rings and presence across nodes
//! (docs/cluster.md "Rings and presence across nodes", issue #17).
//!
//! On one node, a user's sockets are the gateway's presence and every call event for the user
//! goes to them. In a cluster the caller's node runs the call (its call actor, billing and the
//! call's media) while the callee's sockets may be on other nodes. A [`UserBus`] (plugged in
//! once with [`Gateway::set_user_bus`]; none on a single node) carries:
//! - **presence**: the gateway tells the bus when a user's first socket opens on this node and
//!   when its last one closes, so the cluster knows which nodes hold the user's sockets;
//! - **notifications**: every frame for a user (`call.incoming`, `call.ended`, invitations...)
//!   goes to the user's sockets here and, through the bus, to its sockets on the other nodes;
//! - **answers**: a call whose ring came from another node runs there, so `call.accept`,
//!   `call.decline`, `call.cancel` and `call.hangUp` for it are forwarded to that node's call
//!   actor ([`RemoteCallInput`]), and the callee's WebRTC media requests (`media.offer`,
//!   `media.iceCandidate`) too ([`RemoteCallMedia`]): the call's media is on the caller's node,
//!   whose answer names its own worker, and the answer frames come back to the callee's socket.
//!   A QUIC callee's media rides on its connection, so its `media.attach` is answered
//!   `redirect` with the call's node's QUIC address ([`UserBus::node_addresses`]): the client
//!   connects there and attaches again (`QuicClient::attach_call_media_following`);
//! - **busy**: each node publishes the users connected in a call on it
//!   ([`UserBus::engagement_changed`]), and a node about to ring, place or accept asks which of
//!   the users concerned are in a call on another node ([`UserBus::engaged_elsewhere`]); the
//!   call manager treats them as busy, exactly as a user in a call on this node.
//!
//! Without the bus (Redis away) everything stays on the node: rings reach only sockets here.

use super::Gateway;
use super::calls::{CallMedia, CallMediaRequest};
use super::connection::Outbound;
use super::placement::{RemoteHome, RouterFuture};
use crate::domain::calls::{CallError, Input, Party};
use palaver_core::protocol::IceCandidate;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

mod handover;

pub use handover::RemoteMove;

/// A cluster's user bus, as the gateway sees it.
pub trait UserBus: Send + Sync {
    /// The user's first socket on this node opened.
    fn user_online(&self, raw_id: &str);
    /// The user's last socket on this node closed.
    fn user_offline(&self, raw_id: &str);
    /// Deliver a prepared frame to the user's sockets on the other nodes (fire and forget).
    fn notify_elsewhere(&self, raw_id: &str, text: Arc<str>);
    /// The node running call `call_id`, when its events came from another node.
    fn call_home(&self, call_id: &str) -> Option<String>;
    /// Run `input` on `node`'s call actor and return its verdict.
    fn forward_call<'a>(&'a self, node: &'a str, input: RemoteCallInput) -> RouterFuture<'a, Result<(), CallError>>;
    /// Hand a call participant's media request to `node`; its answer frames come back to
    /// this node's socket [`RemoteCallMedia::conn_id`] (see [`Gateway::deliver_to_connection`]).
    fn forward_media(&self, node: &str, media: RemoteCallMedia);
    /// The addresses `node` announces, while it is alive (a QUIC call participant's media is
    /// redirected to its QUIC address); `None` when unknown.
    fn node_addresses<'a>(&'a self, node: &'a str) -> RouterFuture<'a, Option<RemoteHome>> {
        let _ = node;
        Box::pin(async { None })
    }
    /// Users became connected in a call on this node (`engaged`) or left it (`freed`). Must not
    /// block (published behind).
    fn engagement_changed(&self, engaged: &[String], freed: &[String]) {
        let _ = (engaged, freed);
    }
    /// Which of `raw_ids` are connected in a call on another node (none when unknown).
    fn engaged_elsewhere<'a>(&'a self, raw_ids: &'a [String]) -> RouterFuture<'a, Vec<String>> {
        let _ = raw_ids;
        Box::pin(async { Vec::new() })
    }
    /// Hand a socket on `node` a move into a conversation (the socket answered a call running
    /// here from there). Must not block, and must keep the order with the frames notified
    /// after it (the socket reads `call.moved` before `call.ended`).
    fn move_socket(&self, node: &str, moved: RemoteMove) {
        let _ = (node, moved);
    }
    /// The other nodes holding sockets of `raw_id` (cluster presence); none when unknown.
    fn user_nodes_elsewhere<'a>(&'a self, raw_id: &'a str) -> RouterFuture<'a, Vec<String>> {
        let _ = raw_id;
        Box::pin(async { Vec::new() })
    }
    /// Ask `node`, which holds sockets of `user`, to tell this node when they are gone: `user`
    /// is connected in call `call_id` running here and its answering socket is gone.
    fn watch_call(&self, node: &str, call_id: &str, user: &str) {
        let _ = (node, call_id, user);
    }
}

/// A call input a socket on another node sent for a call running here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum RemoteCallInput {
    Accept {
        call_id: String,
        callee: Party,
        endpoint: String,
    },
    Decline {
        call_id: String,
        user: String,
    },
    Cancel {
        call_id: String,
        user: String,
    },
    HangUp {
        call_id: String,
        user: String,
    },
    /// The user's sockets on the sending node, one of which answered the call, are gone.
    UserGone {
        call_id: String,
        user: String,
    },
}

impl RemoteCallInput {
    /// The wire form of `input`, for the inputs a user's socket sends about a call.
    pub fn from_input(input: &Input) -> Option<Self> {
        Some(match input {
            Input::Accept { call_id, callee, endpoint } => {
                Self::Accept { call_id: call_id.clone(), callee: callee.clone(), endpoint: endpoint.clone() }
            }
            Input::Decline { call_id, user } => Self::Decline { call_id: call_id.clone(), user: user.clone() },
            Input::Cancel { call_id, user } => Self::Cancel { call_id: call_id.clone(), user: user.clone() },
            Input::HangUp { call_id, user } => Self::HangUp { call_id: call_id.clone(), user: user.clone() },
            _ => return None,
        })
    }

    pub fn call_id(&self) -> &str {
        match self {
            Self::Accept { call_id, .. }
            | Self::Decline { call_id, .. }
            | Self::Cancel { call_id, .. }
            | Self::HangUp { call_id, .. }
            | Self::UserGone { call_id, .. } => call_id,
        }
    }

    fn into_input(self) -> Input {
        match self {
            Self::Accept { call_id, callee, endpoint } => Input::Accept { call_id, callee, endpoint },
            Self::Decline { call_id, user } => Input::Decline { call_id, user },
            Self::Cancel { call_id, user } => Input::Cancel { call_id, user },
            Self::HangUp { call_id, user } => Input::HangUp { call_id, user },
            Self::UserGone { call_id, user } => Input::UserGoneFrom { call_id, user },
        }
    }
}

/// A WebRTC media request of a call participant whose socket is on another node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteCallMedia {
    pub call_id: String,
    pub raw_id: String,
    /// The socket on the asking node the answers go to.
    pub conn_id: String,
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<IceCandidate>,
}

impl Gateway {
    /// Plug in the cluster's user bus (once; later calls are ignored).
    pub fn set_user_bus(&self, bus: Arc<dyn UserBus>) {
        let _ = self.user_bus.set(bus);
    }

    pub(crate) fn user_bus(&self) -> Option<&Arc<dyn UserBus>> {
        self.user_bus.get()
    }

    /// The users with at least one socket on this node (the bus re-announces them).
    pub fn local_users(&self) -> Vec<String> {
        self.presence.iter().map(|e| e.key().clone()).collect()
    }

    /// A frame for `raw_id` that came over the bus: to the user's sockets on this node.
    pub fn deliver_to_local_sockets(&self, raw_id: &str, text: Arc<str>) {
        self.notify_local(raw_id, text);
    }

    /// A frame for one socket of `raw_id` on this node (a forwarded media request's answer).
    pub fn deliver_to_connection(&self, raw_id: &str, conn_id: &str, text: Arc<str>) -> bool {
        let Some(entry) = self.presence_of(raw_id).into_iter().find(|e| e.conn_id == conn_id) else {
            return false;
        };
        entry.tx.try_send(Outbound::Frame(text)).is_ok()
    }

    /// Run a call input forwarded by node `from` on this node's call actor.
    pub async fn run_remote_call_input(&self, from: &str, input: RemoteCallInput) -> Result<(), CallError> {
        match input {
            RemoteCallInput::UserGone { call_id, user } => self.remote_user_gone(call_id, user).await,
            RemoteCallInput::Accept { call_id, callee, endpoint } => {
                let accept = Input::Accept { call_id: call_id.clone(), callee, endpoint: endpoint.clone() };
                self.call_request_here(accept).await?;
                self.remember_remote_answer(&call_id, &endpoint, from);
                Ok(())
            }
            input => self.call_request_here(input.into_input()).await,
        }
    }

    /// Run a media request forwarded by another node; every answer frame goes to `reply`.
    pub fn run_remote_call_media(&self, media: RemoteCallMedia, reply: Arc<dyn Fn(Arc<str>) + Send + Sync>) {
        let request = match (media.offer, media.candidate) {
            (Some(sdp), _) => CallMedia::Offer(sdp),
            (None, Some(candidate)) => CallMedia::IceCandidate(candidate),
            (None, None) => return,
        };
        let (conn, mut answers) = tokio::sync::mpsc::channel(8);
        tokio::spawn(async move {
            while let Some(out) = answers.recv().await {
                if let Outbound::Frame(text) = out {
                    reply(text);
                }
            }
        });
        let request = CallMediaRequest {
            call_id: media.call_id,
            raw_id: media.raw_id,
            media: request,
            request_id: media.request_id,
            conn,
        };
        if let Err(e) = self.call_media_here(request) {
            tracing::warn!(error = %e.message, "forwarded call media refused");
        }
    }

    /// The user's last socket here is gone (reconnect grace over): every call on another node
    /// it answered from here hears it, and ends its part as for a socket lost on that node.
    pub(crate) fn user_gone_elsewhere(&self, raw_id: &str) {
        let Some((_, calls)) = self.answered_elsewhere.remove(raw_id) else { return };
        let Some(bus) = self.user_bus().cloned() else { return };
        // A call whose `call.ended` reached this node is over: nothing to tell.
        for (node, call_id) in calls.into_iter().filter(|(_, call)| bus.call_home(call).is_some()) {
            let (bus, user) = (bus.clone(), raw_id.to_string());
            tokio::spawn(async move {
                let input = RemoteCallInput::UserGone { call_id: call_id.clone(), user: user.clone() };
                match bus.forward_call(&node, input).await {
                    Ok(()) => {
                        tracing::info!(%user, call = %call_id, %node, "call's node told the user's sockets are gone")
                    }
                    Err(e) => {
                        tracing::debug!(%user, call = %call_id, %node, error = %e.message, "user gone not delivered")
                    }
                }
            });
        }
    }

    /// A call input for a call that runs on another node, when it is one.
    pub(crate) fn remote_call(&self, input: &Input) -> Option<(String, RemoteCallInput)> {
        let bus = self.user_bus()?;
        let remote = RemoteCallInput::from_input(input)?;
        let node = bus.call_home(remote.call_id())?;
        Some((node, remote))
    }

    /// Where a call participant's media request goes: the call runs here (or this node has
    /// no bus), it was forwarded to the call's node (WebRTC: the answers come back to
    /// `conn_id`), or the client must attach on the call's node (QUIC: its media rides on its
    /// own connection, which cannot follow the call).
    pub(crate) async fn route_call_media(
        &self,
        request: &CallMediaRequest,
        conn_id: &str,
    ) -> Result<CallMediaRoute, CallError> {
        let Some(bus) = self.user_bus() else { return Ok(CallMediaRoute::Here) };
        let Some(node) = bus.call_home(&request.call_id) else { return Ok(CallMediaRoute::Here) };
        let (offer, candidate) = match &request.media {
            CallMedia::Offer(sdp) => (Some(sdp.clone()), None),
            CallMedia::IceCandidate(c) => (None, Some(c.clone())),
            CallMedia::Attach { .. } => {
                return match bus.node_addresses(&node).await {
                    Some(RemoteHome { node, quic: Some(quic), https }) => {
                        Ok(CallMediaRoute::Redirect { node, quic, https })
                    }
                    _ => Err(CallError::new(
                        palaver_core::ErrorCode::NodeUnavailable,
                        format!("this call runs on node {node}, whose QUIC address is unknown (is it alive?)"),
                    )),
                };
            }
        };
        bus.forward_media(
            &node,
            RemoteCallMedia {
                call_id: request.call_id.clone(),
                raw_id: request.raw_id.clone(),
                conn_id: conn_id.to_string(),
                request_id: request.request_id.clone(),
                offer,
                candidate,
            },
        );
        Ok(CallMediaRoute::Forwarded)
    }
}

/// Where a call participant's media request goes ([`Gateway::route_call_media`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CallMediaRoute {
    /// The call runs on this node: its call actor answers.
    Here,
    /// Forwarded to the call's node over the bus.
    Forwarded,
    /// Answer `redirect`: attach on the call's node, at its QUIC address.
    Redirect { node: String, quic: String, https: Option<String> },
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A bus on which call `c` runs on node `node-0`, which announces `quic` (or nothing).
    struct CallElsewhere {
        quic: Option<String>,
        forwarded: Mutex<Vec<(String, RemoteCallMedia)>>,
        inputs: Mutex<Vec<(String, RemoteCallInput)>>,
    }

    impl UserBus for CallElsewhere {
        fn user_online(&self, _: &str) {}
        fn user_offline(&self, _: &str) {}
        fn notify_elsewhere(&self, _: &str, _: Arc<str>) {}
        fn call_home(&self, call_id: &str) -> Option<String> {
            (call_id == "c").then(|| "node-0".to_string())
        }
        fn forward_call<'a>(
            &'a self,
            node: &'a str,
            input: RemoteCallInput,
        ) -> RouterFuture<'a, Result<(), CallError>> {
            self.inputs.lock().unwrap().push((node.to_string(), input));
            Box::pin(async { Ok(()) })
        }
        fn forward_media(&self, node: &str, media: RemoteCallMedia) {
            self.forwarded.lock().unwrap().push((node.to_string(), media));
        }
        fn node_addresses<'a>(&'a self, node: &'a str) -> RouterFuture<'a, Option<RemoteHome>> {
            let home = self.quic.clone().map(|quic| RemoteHome {
                node: node.to_string(),
                quic: Some(quic),
                https: Some("https://127.0.0.1:8443".into()),
            });
            Box::pin(async move { home })
        }
    }

    fn gateway_with(bus: Arc<CallElsewhere>) -> Gateway {
        let config = toml::from_str("[gateway]\nreconnect_grace_ms = 0\n").unwrap();
        let state = crate::app::AppState::open(
            config,
            crate::store::Store::open_in_memory().unwrap(),
            crate::app::AppParts::default(),
        )
        .unwrap();
        state.gateway.set_user_bus(bus);
        state.gateway.clone()
    }

    fn request(call_id: &str, media: CallMedia) -> CallMediaRequest {
        let (conn, _) = tokio::sync::mpsc::channel(1);
        CallMediaRequest {
            call_id: call_id.into(),
            raw_id: "8:acs:b".into(),
            media,
            request_id: Some("r".into()),
            conn,
        }
    }

    fn attach() -> CallMedia {
        CallMedia::Attach {
            path: palaver_core::MediaPathId(7),
            tracks: Vec::new(),
            receive: palaver_core::protocol::MediaReceive::default(),
        }
    }

    #[tokio::test]
    async fn quic_media_of_a_call_on_another_node_is_redirected_there() {
        let bus = Arc::new(CallElsewhere {
            quic: Some("127.0.0.1:9444".into()),
            forwarded: Mutex::default(),
            inputs: Mutex::default(),
        });
        let gateway = gateway_with(bus.clone());
        let route = gateway.route_call_media(&request("c", attach()), "conn-1").await.unwrap();
        assert_eq!(
            route,
            CallMediaRoute::Redirect {
                node: "node-0".into(),
                quic: "127.0.0.1:9444".into(),
                https: Some("https://127.0.0.1:8443".into()),
            }
        );
        // A call running here is attached here; WebRTC media of the remote call is forwarded.
        assert_eq!(gateway.route_call_media(&request("mine", attach()), "conn-1").await.unwrap(), CallMediaRoute::Here);
        let offer = request("c", CallMedia::Offer("v=0".into()));
        assert_eq!(gateway.route_call_media(&offer, "conn-1").await.unwrap(), CallMediaRoute::Forwarded);
        let forwarded = bus.forwarded.lock().unwrap();
        assert_eq!(forwarded.len(), 1);
        assert_eq!((forwarded[0].0.as_str(), forwarded[0].1.conn_id.as_str()), ("node-0", "conn-1"));
        assert_eq!(forwarded[0].1.offer.as_deref(), Some("v=0"));
    }

    #[tokio::test]
    async fn quic_media_of_a_call_on_a_node_without_an_address_is_node_unavailable() {
        let gateway =
            gateway_with(Arc::new(CallElsewhere { quic: None, forwarded: Mutex::default(), inputs: Mutex::default() }));
        let refused = gateway.route_call_media(&request("c", attach()), "conn-1").await.unwrap_err();
        assert_eq!(refused.code, palaver_core::ErrorCode::NodeUnavailable);
    }

    #[tokio::test]
    async fn a_callee_whose_sockets_here_are_gone_is_gone_from_the_call_on_another_node() {
        let bus = Arc::new(CallElsewhere { quic: None, forwarded: Mutex::default(), inputs: Mutex::default() });
        let gateway = gateway_with(bus.clone());
        let accept =
            Input::Accept { call_id: "c".into(), callee: Party::new("8:acs:b", "Bob"), endpoint: "conn-1".into() };
        gateway.call_request(accept).await.unwrap();
        // Bob's last socket here closes; once the grace (0 here) is over node-0 hears it.
        gateway.schedule_user_gone("8:acs:b".into());
        let gone = RemoteCallInput::UserGone { call_id: "c".into(), user: "8:acs:b".into() };
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
        while !bus.inputs.lock().unwrap().iter().any(|(node, input)| node == "node-0" && *input == gone) {
            assert!(tokio::time::Instant::now() < deadline, "node-0 never heard that Bob is gone");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        // Told once: a later loss of another socket of Bob's does not repeat it.
        gateway.schedule_user_gone("8:acs:b".into());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(bus.inputs.lock().unwrap().iter().filter(|(_, input)| *input == gone).count(), 1);
        // On the call's node the message is the call machine's loss of that user in that call.
        assert_eq!(
            format!("{:?}", gone.into_input()),
            format!("{:?}", Input::UserGoneFrom { call_id: "c".into(), user: "8:acs:b".into() })
        );
    }

    #[test]
    fn call_inputs_of_a_socket_travel_and_come_back_the_same() {
        let inputs = [
            Input::Accept { call_id: "c".into(), callee: Party::new("8:acs:b", "Bob"), endpoint: "conn-1".into() },
            Input::Decline { call_id: "c".into(), user: "8:acs:b".into() },
            Input::Cancel { call_id: "c".into(), user: "8:acs:a".into() },
            Input::HangUp { call_id: "c".into(), user: "8:acs:a".into() },
        ];
        for input in inputs {
            let wire = RemoteCallInput::from_input(&input).expect("a socket's call input");
            let json = serde_json::to_string(&wire).unwrap();
            let back: RemoteCallInput = serde_json::from_str(&json).unwrap();
            assert_eq!(back.call_id(), "c");
            assert_eq!(format!("{:?}", back.into_input()), format!("{input:?}"));
        }
        assert!(RemoteCallInput::from_input(&Input::Tick).is_none());
    }
}
