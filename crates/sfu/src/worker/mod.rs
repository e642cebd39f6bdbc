//! Media workers: N threads (default: one per core), each owning its rooms, its UDP socket
//! (its own port) and all their state. A worker loops: drain control commands from a
//! lock-free queue, batch-receive datagrams (`recvmmsg`), run each through the sans-IO
//! [`WorkerCore`] (demux → SRTP unprotect → route → rewrite → SRTP protect), run timers, and
//! batch-send (`sendmmsg`). Counters are per-worker atomics summed at scrape time.
//! Queue-attached transports (QUIC) exchange plain RTP/RTCP with a worker through lock-free
//! queues instead of its socket (see [`DatagramLink`]).

mod core;
mod counters;
mod mix_reports;
mod mixing;
mod pool;
mod queue;
mod send;
mod socket;
pub mod stun;

pub use core::{MAX_DATAGRAM, Transmit, WorkerCore};
pub use counters::{
    CountersSnapshot, DropReason, EWMA_WEIGHT, LATENCY_BOUNDS_NS, LatencyHistogram, LatencySnapshot,
    MIXER_TICK_BOUNDS_NS, ReceptionCounters, ReceptionSnapshot, WorkerCounters,
};
pub use mixing::{MIX_PERIOD, MIX_RTP_HEADER};
pub use pool::{WorkerConfig, WorkerHandle, WorkerPool};
pub use queue::{DEFAULT_EGRESS_CAPACITY, DEFAULT_INGRESS_CAPACITY, DatagramLink};
pub use send::{SEND_CAPACITY, SendBatch};
pub use socket::RecvBatch;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::router::{ConsumerId, ConsumerSpec, Numbering, ProducerId, ProducerSpec, RouterError, TransportId};
use crate::srtp::{Profile, SrtpError};

/// The one audio stream a transport receives from its room's mixer: the server-chosen SSRC and
/// the Opus payload type the receiver negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MixOutputSpec {
    pub ssrc: u32,
    pub payload_type: u8,
}

/// A room as the media plane knows it (the control plane maps meeting ids to these).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomId(pub u64);

/// SRTP master keys of a transport: `local` protects what the server sends, `remote`
/// unprotects what the peer sends (from DTLS-SRTP key export, or signalled for QUIC/tests).
#[derive(Clone, PartialEq, Eq)]
pub struct SrtpKeys {
    pub profile: Profile,
    pub local_master_key: Vec<u8>,
    pub local_master_salt: Vec<u8>,
    pub remote_master_key: Vec<u8>,
    pub remote_master_salt: Vec<u8>,
}

impl std::fmt::Debug for SrtpKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpKeys").field("profile", &self.profile).finish_non_exhaustive()
    }
}

/// A participant's network path into a room on this worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportSpec {
    pub id: TransportId,
    pub room: RoomId,
    /// The server's ICE ufrag/password for this transport (from the SDP answer).
    pub ice_ufrag: String,
    pub ice_pwd: String,
    /// Known remote address (e.g. a QUIC or test peer); WebRTC peers are learned from STUN.
    pub remote: Option<SocketAddr>,
    pub srtp: SrtpKeys,
}

/// A WebRTC participant's transport: keys come from a DTLS handshake with the peer whose
/// certificate matches `remote_fingerprint` (from its SDP offer).
#[derive(Debug, Clone)]
pub struct WebRtcTransportSpec {
    pub id: TransportId,
    pub room: RoomId,
    pub ice_ufrag: String,
    pub ice_pwd: String,
    pub dtls: crate::webrtc::dtls::DtlsIdentity,
    pub remote_fingerprint: String,
}

/// Control-plane commands, delivered through the worker's lock-free queue.
#[derive(Debug, Clone)]
pub enum Command {
    CreateRoom {
        room: RoomId,
    },
    CloseRoom {
        room: RoomId,
    },
    AddTransport(Box<TransportSpec>),
    /// A browser transport: ICE-lite credentials, then DTLS-SRTP yields the keys.
    AddWebRtcTransport(Box<WebRtcTransportSpec>),
    /// A transport whose plain RTP/RTCP arrives through [`WorkerHandle::push_ingress`] and
    /// leaves through `link`'s egress queue (no ICE, no SRTP: the carrier encrypts).
    AddQueueTransport {
        id: TransportId,
        room: RoomId,
        link: Arc<DatagramLink>,
    },
    RemoveTransport {
        transport: TransportId,
    },
    /// Starts (or changes, or with `None` stops) the room mix `transport` receives. Audio
    /// producers feed the mixer automatically; audio is not forwarded per publisher.
    SetMixOutput {
        room: RoomId,
        transport: TransportId,
        output: Option<MixOutputSpec>,
    },
    AddProducer {
        room: RoomId,
        spec: ProducerSpec,
    },
    RemoveProducer {
        room: RoomId,
        producer: ProducerId,
    },
    AddConsumer {
        room: RoomId,
        spec: ConsumerSpec,
    },
    RemoveConsumer {
        room: RoomId,
        consumer: ConsumerId,
    },
    SetConsumerPaused {
        room: RoomId,
        consumer: ConsumerId,
        paused: bool,
    },
    SetConsumerMaxHeight {
        room: RoomId,
        consumer: ConsumerId,
        max_height: u16,
    },
    RepointConsumer {
        room: RoomId,
        consumer: ConsumerId,
        producer: ProducerId,
    },
    /// How the subscriber numbered payload types and header extensions in the consumer's
    /// m-section (forwarded packets are translated where the publisher's numbers differ).
    SetConsumerNumbering {
        room: RoomId,
        consumer: ConsumerId,
        numbering: Numbering,
    },
    /// Stop the worker thread after this batch.
    Shutdown,
}

impl Command {
    /// Short name for logs and error events.
    pub fn name(&self) -> &'static str {
        match self {
            Command::CreateRoom { .. } => "create_room",
            Command::CloseRoom { .. } => "close_room",
            Command::AddTransport(_) => "add_transport",
            Command::AddWebRtcTransport(_) => "add_webrtc_transport",
            Command::AddQueueTransport { .. } => "add_queue_transport",
            Command::RemoveTransport { .. } => "remove_transport",
            Command::SetMixOutput { .. } => "set_mix_output",
            Command::AddProducer { .. } => "add_producer",
            Command::RemoveProducer { .. } => "remove_producer",
            Command::AddConsumer { .. } => "add_consumer",
            Command::RemoveConsumer { .. } => "remove_consumer",
            Command::SetConsumerPaused { .. } => "set_consumer_paused",
            Command::SetConsumerMaxHeight { .. } => "set_consumer_max_height",
            Command::RepointConsumer { .. } => "repoint_consumer",
            Command::SetConsumerNumbering { .. } => "set_consumer_numbering",
            Command::Shutdown => "shutdown",
        }
    }
}

/// Why a command was refused (the worker state is unchanged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("unknown room")]
    UnknownRoom,
    #[error("room already exists")]
    RoomExists,
    #[error("unknown transport (or not in this room)")]
    UnknownTransport,
    #[error("transport id or ICE ufrag already in use")]
    TransportExists,
    #[error("remote address already bound to another transport")]
    AddressInUse,
    #[error("bad SRTP keys: {0}")]
    Srtp(SrtpError),
    #[error(transparent)]
    Router(RouterError),
    /// The room mixer refused (codec set-up failed, or the mixer is full).
    #[error("room mixer: {0}")]
    Mixer(&'static str),
}

/// What a worker reports back to the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerEvent {
    /// Loudest talkers of a room, at most every 300 ms and only on change.
    ActiveSpeakers { room: RoomId, speakers: [Option<TransportId>; 3] },
    /// A transport's peer proved its ICE credentials from this address.
    TransportConnected { transport: TransportId, remote: SocketAddr },
    /// A command was refused.
    CommandFailed { command: &'static str, error: CommandError },
}

#[cfg(test)]
mod mix_tests;
#[cfg(test)]
pub(crate) mod tests;
