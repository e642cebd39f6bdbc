//! [`Mesh`]: the node-to-node QUIC mesh (quinn, ALPN [`ALPN`], mutual TLS from the cluster
//! CA, [`tls`]). One endpoint per node, both server and client; one connection per node pair,
//! reused; **one bidirectional stream per relayed client connection**, carrying the same
//! length-prefixed JSON frames as the QUIC signaling transport (`docs/quic.md`), after an
//! opening [`RelayEnvelope`] with the client's own credential.
//!
//! The home node authenticates the credential exactly as for a direct connection and serves
//! the stream with the gateway's one connection loop (`serve_frames`), marked relayed so it is
//! never relayed again. The relaying node swallows the home's `welcome` (its client already
//! has one) and times that first round trip into `palaver_cluster_relay_latency_seconds`.
//!
//! Connections keep alive every [`KEEP_ALIVE`] and die after [`IDLE_TIMEOUT`] of silence, so
//! a killed or stalled home ends its relays within about 3 s and their clients reconnect.

pub mod tls;

use crate::metrics::ClusterMetrics;
use axum::extract::ws::Message;
use dashmap::DashMap;
use futures_util::SinkExt;
use palaver_core::ErrorCode;
use palaver_core::protocol::ServerMessage;
use palaver_core::stream_frame::frame_bytes;
use palaver_signaling::app::AppState;
use palaver_signaling::auth::{Credential, Door};
use palaver_signaling::domain::Refusal;
use palaver_signaling::gateway::{RelayCredential, RelayLink, authenticate, serve_frames};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// ALPN of the node mesh.
pub const ALPN: &[u8] = b"palaver-cluster/1";
/// The TLS name every node's mesh certificate carries (nodes are told apart by their CN).
pub const SERVER_NAME: &str = "palaver-mesh";
/// Keep-alive on mesh connections.
pub const KEEP_ALIVE: Duration = Duration::from_millis(500);
/// A mesh connection silent this long is dead (its relays end).
pub const IDLE_TIMEOUT: Duration = Duration::from_millis(2500);
/// Largest frame on a relay stream (the QUIC transport's skippable limit).
const MAX_RELAY_FRAME: usize = palaver_core::stream_frame::MAX_SKIPPABLE_FRAME_BYTES;
/// How long opening a relay may take (connect, envelope, the home's `welcome`).
const OPEN_TIMEOUT: Duration = Duration::from_secs(3);
/// Frames buffered each way per relay.
const RELAY_QUEUE: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    #[error("mesh TLS: {0}")]
    Tls(String),
    #[error("binding the mesh endpoint: {0}")]
    Bind(#[from] std::io::Error),
}

/// The first frame of a relay stream.
#[derive(Debug, Serialize, Deserialize)]
pub struct RelayEnvelope {
    /// The relaying node.
    pub from_node: String,
    /// `access` (an access token) or `idp` (a native client's IdP token).
    pub door: String,
    pub token: String,
}

/// A node's mesh endpoint.
#[derive(Clone)]
pub struct Mesh {
    endpoint: quinn::Endpoint,
    node_id: String,
    connections: Arc<DashMap<SocketAddr, quinn::Connection>>,
    metrics: ClusterMetrics,
}

impl std::fmt::Debug for Mesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mesh").field("node_id", &self.node_id).finish_non_exhaustive()
    }
}

impl Mesh {
    /// Bind the mesh endpoint on `listen` with this node's certificate (`tls`), and serve
    /// relayed connections into `state` until the endpoint closes.
    pub fn start(
        listen: SocketAddr,
        tls: tls::MeshTls,
        node_id: &str,
        state: AppState,
        metrics: ClusterMetrics,
    ) -> Result<Self, MeshError> {
        let mut endpoint = quinn::Endpoint::server(tls.server, listen)?;
        endpoint.set_default_client_config(tls.client);
        let mesh = Self { endpoint, node_id: node_id.to_string(), connections: Arc::new(DashMap::new()), metrics };
        let accepting = mesh.endpoint.clone();
        tokio::spawn(accept_loop(accepting, state));
        Ok(mesh)
    }

    /// The bound mesh address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Close the endpoint (every relay through it ends).
    pub fn close(&self) {
        self.endpoint.close(0u32.into(), b"node stopping");
    }

    async fn connection_to(&self, addr: SocketAddr) -> Result<quinn::Connection, String> {
        if let Some(c) = self.connections.get(&addr)
            && c.close_reason().is_none()
        {
            return Ok(c.clone());
        }
        let connecting = self.endpoint.connect(addr, SERVER_NAME).map_err(|e| e.to_string())?;
        let connection = connecting.await.map_err(|e| e.to_string())?;
        self.connections.insert(addr, connection.clone());
        Ok(connection)
    }

    /// Open a relay of one client connection to the node whose mesh address is `addr`.
    pub async fn open_relay(&self, addr: SocketAddr, credential: RelayCredential) -> Result<RelayLink, Refusal> {
        let started = Instant::now();
        let opened = tokio::time::timeout(OPEN_TIMEOUT, self.open_stream(addr, credential)).await;
        let (mut send, mut recv) = match opened {
            Ok(Ok(streams)) => streams,
            Ok(Err(refusal)) => return Err(refusal),
            Err(_) => return Err(unavailable(format!("no answer from {addr} within {OPEN_TIMEOUT:?}"))),
        };
        self.metrics.relay_latency.observe(started.elapsed().as_secs_f64());
        let (to_home, mut outgoing) = mpsc::channel::<String>(RELAY_QUEUE);
        let (incoming, from_home) = mpsc::channel::<String>(RELAY_QUEUE);
        tokio::spawn(async move {
            while let Some(text) = outgoing.recv().await {
                if send.write_all(&frame_bytes(text.as_bytes())).await.is_err() {
                    return;
                }
            }
            let _ = send.finish();
        });
        tokio::spawn(async move {
            while let Ok(Some(bytes)) = read_frame(&mut recv).await {
                let Ok(text) = String::from_utf8(bytes) else { continue };
                if incoming.send(text).await.is_err() {
                    return;
                }
            }
        });
        Ok(RelayLink { to_home, from_home })
    }

    async fn open_stream(
        &self,
        addr: SocketAddr,
        credential: RelayCredential,
    ) -> Result<(quinn::SendStream, quinn::RecvStream), Refusal> {
        let connection = self.connection_to(addr).await.map_err(unavailable)?;
        let (mut send, mut recv) = connection.open_bi().await.map_err(|e| unavailable(e.to_string()))?;
        let envelope = RelayEnvelope {
            from_node: self.node_id.clone(),
            door: match credential.door {
                Door::AccessToken => "access".into(),
                Door::NativeIdp => "idp".into(),
            },
            token: credential.token,
        };
        let json = serde_json::to_vec(&envelope).map_err(|e| unavailable(e.to_string()))?;
        send.write_all(&frame_bytes(&json)).await.map_err(|e| unavailable(e.to_string()))?;
        // The home's first frame: its `welcome` (swallowed), or the refusal of the credential.
        let first = read_frame(&mut recv).await.map_err(unavailable)?.ok_or_else(|| unavailable("stream closed"))?;
        match serde_json::from_slice::<ServerMessage>(&first) {
            Ok(ServerMessage::Welcome { .. }) => Ok((send, recv)),
            Ok(ServerMessage::Error { code, message, .. }) => {
                let code =
                    ErrorCode::ALL.iter().copied().find(|c| c.as_str() == code).unwrap_or(ErrorCode::NodeUnavailable);
                Err(Refusal::new(code, message))
            }
            _ => Err(unavailable("the home answered no welcome")),
        }
    }
}

fn unavailable(detail: impl std::fmt::Display) -> Refusal {
    palaver_signaling::gateway::placement::home_unavailable(detail)
}

/// Read one length-prefixed frame; `None` at a clean end of the stream.
async fn read_frame(recv: &mut quinn::RecvStream) -> Result<Option<Vec<u8>>, String> {
    let mut len = [0u8; 4];
    match recv.read_exact(&mut len).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_RELAY_FRAME {
        return Err(format!("relay frame of {len} bytes"));
    }
    let mut buf = vec![0u8; len];
    recv.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
    Ok(Some(buf))
}

async fn accept_loop(endpoint: quinn::Endpoint, state: AppState) {
    while let Some(incoming) = endpoint.accept().await {
        let state = state.clone();
        tokio::spawn(async move {
            let connection = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "mesh: a peer's connection failed (not in the cluster CA?)");
                    return;
                }
            };
            while let Ok((send, recv)) = connection.accept_bi().await {
                tokio::spawn(serve_relayed(state.clone(), send, recv));
            }
        });
    }
}

/// The home's side of one relay stream: authenticate the envelope's credential, then serve
/// the stream as a signaling connection of its own.
async fn serve_relayed(state: AppState, mut send: quinn::SendStream, mut recv: quinn::RecvStream) {
    let Ok(Some(first)) = read_frame(&mut recv).await else { return };
    let Ok(envelope) = serde_json::from_slice::<RelayEnvelope>(&first) else {
        let _ = send.write_all(&frame_bytes(error_json(ErrorCode::BadRequest, "bad relay envelope").as_bytes())).await;
        return;
    };
    let credential = match envelope.door.as_str() {
        "idp" => Credential::IdpToken(&envelope.token),
        _ => Credential::AccessToken(&envelope.token),
    };
    let ident = match authenticate(&state, credential, palaver_core::time::now_ms()).await {
        Ok(ident) => ident.relayed_from_peer(),
        Err(refusal) => {
            let _ = send.write_all(&frame_bytes(error_json(refusal.code, &refusal.message).as_bytes())).await;
            let _ = send.finish();
            return;
        }
    };
    tracing::debug!(from = %envelope.from_node, user = %ident.raw_id(), "mesh: serving a relayed connection");
    let mut sink = Box::pin(futures_util::sink::unfold(send, |mut send, message: Message| async move {
        match message {
            Message::Text(text) => send.write_all(&frame_bytes(text.as_bytes())).await.map_err(|e| e.to_string())?,
            Message::Close(_) => {
                let _ = send.finish();
            }
            _ => {}
        }
        Ok::<_, String>(send)
    }));
    let stream = Box::pin(futures_util::stream::unfold(recv, |mut recv| async move {
        match read_frame(&mut recv).await {
            Ok(Some(bytes)) => {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                Some((Ok::<_, String>(Message::Text(text.into())), recv))
            }
            _ => None,
        }
    }));
    serve_frames(state, ident, &mut sink, stream, None).await;
    let _ = sink.close().await;
}

fn error_json(code: ErrorCode, message: &str) -> String {
    ServerMessage::error(code, message.to_string(), None).to_json()
}
