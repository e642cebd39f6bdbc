//! `palaver-client`: an async participant client for palaver, for bots, contact-center
//! back ends, the load tester and the tests.
//!
//! [`QuicClient`] speaks the native QUIC transport (`docs/quic.md`): ALPN `palaver/1`, one
//! bidirectional stream with length-prefixed JSON signaling frames (the same messages as the
//! WebSocket `/signaling/v1`), and media as QUIC datagrams each carrying one plain RTP/RTCP
//! packet.
//!
//! ```no_run
//! # async fn demo(addr: std::net::SocketAddr, ca_pem: &str, token: &str, link: String) -> Result<(), palaver_client::ClientError> {
//! use palaver_client::{ConnectOptions, QuicClient, MediaTrack, JoinTarget, quic};
//! let mut client = QuicClient::connect(&ConnectOptions::new(addr, "localhost", ca_pem), token).await?;
//! let joined = client.join(JoinTarget::MeetingLink { join_url: link }, Some("bot".into())).await?;
//! let ssrc = 0x1234_5678;
//! let server_tracks = client.attach_media(vec![MediaTrack::opus(ssrc)]).await?;
//! let mut audio = client.rtp_sender(ssrc, quic::DEFAULT_OPUS_PT);
//! audio.send(&[0xf8, 0xff, 0xfe], 960, Some(40))?; // one 20 ms Opus frame
//! if let Some(packet) = client.recv_rtp().await { /* the room's mix */ }
//! client.leave().await?;
//! client.close().await;
//! # let _ = (joined, server_tracks); Ok(()) }
//! ```
//!
//! In a cluster, [`Reconnector`] and [`FailureDetector`] (module [`reconnect`]) notice the
//! loss of a node fast and resume the participant through another node.
//!
//! Events (roster, capture state, session end, unsolicited errors), `call.*` frames (calls
//! between users, invitations into group calls and rooms, moves: [`QuicClient::next_call_event`],
//! answered with [`QuicClient::accept_call`] / [`QuicClient::decline_call`]) and received RTP go
//! through bounded queues; when a queue is full the newest item is dropped and counted in
//! [`QuicClient::stats`], so a slow consumer never stalls the connection.

pub mod chat;
mod connection;
mod error;
pub mod reconnect;
mod requests;
pub mod rtcp;
pub mod rtp;
mod tls;
mod udp_media;
pub mod webrtc;

pub use chat::{ChatEvent, ChatMessageInfo, ChatRest};
pub use connection::{ClientStats, KEYFRAME_REQUEST_QUEUE, QuicClient, RtpSender};
pub use error::ClientError;
/// The `call.*` frames ([`QuicClient::next_call_event`]).
pub use palaver_core::protocol::calls::{CallEndReason, CallEvent, Party};
/// The transport's fixed numbers: ALPN, close codes, default payload types, extension id, mids.
pub use palaver_core::protocol::quic;
pub use palaver_core::protocol::{
    ClientMessage, ConversationSnapshot, JoinTarget, MediaCarrier, MediaKind, MediaReceive, MediaTrack, ServerMessage,
};
pub use reconnect::{FailureDetector, Reconnector, Rejoin};
pub use requests::{Joined, Welcome};
pub use rtcp::{KeyframeKind, KeyframeRequest};
pub use rtp::{ReceivedRtp, RtpPacketizer};

use std::net::SocketAddr;
use std::time::Duration;

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The server's QUIC address (`PALAVER_QUIC` line, or `GET /quic`).
    pub server: SocketAddr,
    /// TLS server name the certificate must match (`localhost` for the self-signed default).
    pub server_name: String,
    /// PEM of the CA (or certificates) to trust.
    pub ca_pem: String,
    /// Share one UDP socket among many clients (load testing); `None` binds a new one.
    pub endpoint: Option<quinn::Endpoint>,
    /// Received events held before new ones are dropped.
    pub event_queue: usize,
    /// Received RTP packets held before new ones are dropped.
    pub rtp_queue: usize,
    /// How long connecting (handshake + `welcome`) and each request may take.
    pub timeout: Duration,
    /// How media travels after `media.attach`: QUIC datagrams (default) or SRTP over UDP to
    /// the media worker, keyed from this connection's TLS session (`docs/quic.md`).
    pub media: MediaCarrier,
}

impl ConnectOptions {
    pub fn new(server: SocketAddr, server_name: impl Into<String>, ca_pem: impl Into<String>) -> Self {
        Self {
            server,
            server_name: server_name.into(),
            ca_pem: ca_pem.into(),
            endpoint: None,
            event_queue: 1024,
            rtp_queue: 4096,
            timeout: Duration::from_secs(10),
            media: MediaCarrier::Datagram,
        }
    }
}

/// A client-side QUIC endpoint bound to `bind` (e.g. `0.0.0.0:0`), to share through
/// [`ConnectOptions::endpoint`].
pub fn client_endpoint(bind: SocketAddr) -> Result<quinn::Endpoint, ClientError> {
    quinn::Endpoint::client(bind).map_err(ClientError::Bind)
}
