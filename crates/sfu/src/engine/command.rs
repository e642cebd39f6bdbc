//! Control-plane commands to an [`Engine`](super::Engine) and what they carry: router ids,
//! transport specs (UDP with signalled keys, WebRTC with DTLS, direct), producers, consumers and
//! mix outputs, plus why a command is refused.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::net::DirectLink;
use crate::router::{ConsumerId, ConsumerSpec, Numbering, ProducerId, ProducerSpec, RouterError, TransportId};
use crate::srtp::{SrtpError, SrtpKeys};

/// The one audio stream a transport receives from its router's mixer: the server-chosen SSRC and
/// the Opus payload type the receiver negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MixOutputSpec {
    pub ssrc: u32,
    pub payload_type: u8,
}

/// A per-participant change of a router's mix (Call Automation's mute, hold, `playTo` and
/// unmixed recording).
#[derive(Debug, Clone)]
pub enum MixAudio {
    /// The transport's audio is left out of everyone's mix (mute), or not.
    Muted { transport: TransportId, muted: bool },
    /// Hold: the transport's audio is left out of the mix and it hears only audio addressed
    /// to it (music on hold); `false` restores both.
    Held { transport: TransportId, held: bool },
    /// The transport's RTP under `ssrc` (same payload type as its audio producer) is heard
    /// only by `listeners`, never by the rest of the conversation; `None` ends that stream.
    Audience { transport: TransportId, ssrc: u32, listeners: Option<Vec<TransportId>> },
    /// Every unmuted participant's decoded audio goes into `tap` each tick (`None`: off).
    SourceTap { tap: Option<Arc<super::SourceTap>> },
    /// The transport's mix output carries the RFC 4733 tones other participants send, under
    /// this telephone-event payload type (a phone leg; `None`: no longer), their durations
    /// counted in `clock_rate` units (the negotiated `telephone-event/<clock>`: 8000, or
    /// 48000 on an Opus leg that agreed it) while their timestamps follow the mix output's
    /// clock. See `tone_relay`.
    TelephoneEventsOut { transport: TransportId, payload_type: Option<u8>, clock_rate: u32 },
    /// Early media (see `early_media`): `tone` loops into an input heard by `transport`
    /// alone (a phone leg waiting for its callee, held meanwhile); `None` stops it.
    EarlyMedia { transport: TransportId, tone: Option<Arc<super::early_media::ToneLoop>> },
}

/// A router as the media plane knows it: one conversation's routing and mixing on one worker
/// (the control plane maps conversations to these).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouterId(pub u64);

/// A participant's network path into a router on this worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportSpec {
    pub id: TransportId,
    pub router: RouterId,
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
    pub router: RouterId,
    pub ice_ufrag: String,
    pub ice_pwd: String,
    pub dtls: crate::webrtc::dtls::DtlsIdentity,
    pub remote_fingerprint: String,
}

/// A SIP trunk leg protected by DTLS-SRTP (RFC 5764) without ICE: the peer's address comes
/// from its SDP, the handshake runs on the worker's socket with that address (the server is
/// the DTLS `client` when the trunk's SDP said `a=setup:passive`), and the exported keys key
/// the transport's SRTP contexts as for a browser.
#[derive(Debug, Clone)]
pub struct DtlsRtpTransportSpec {
    pub id: TransportId,
    pub router: RouterId,
    pub remote: SocketAddr,
    pub dtls: crate::webrtc::dtls::DtlsIdentity,
    /// The trunk's `a=fingerprint:sha-256`, upper-case `AA:BB:…`.
    pub remote_fingerprint: String,
    /// The server starts the handshake (DTLS client) instead of waiting for it.
    pub client: bool,
}

/// Control-plane commands, delivered through the worker's lock-free queue.
#[derive(Debug, Clone)]
pub enum Command {
    CreateRouter {
        router: RouterId,
    },
    CloseRouter {
        router: RouterId,
    },
    AddTransport(Box<TransportSpec>),
    /// A browser transport: ICE-lite credentials, then DTLS-SRTP yields the keys.
    AddWebRtcTransport(Box<WebRtcTransportSpec>),
    /// A SIP trunk leg with DTLS-SRTP (see [`DtlsRtpTransportSpec`]).
    AddDtlsRtpTransport(Box<DtlsRtpTransportSpec>),
    /// A direct transport: its plain RTP/RTCP arrives through
    /// [`WorkerHandle::push_ingress`](crate::net::WorkerHandle::push_ingress) and leaves through
    /// `link`'s egress queue (no ICE, no SRTP: the carrier, e.g. QUIC, encrypts).
    AddDirectTransport {
        id: TransportId,
        router: RouterId,
        link: Arc<DirectLink>,
    },
    /// A plain RTP/AVP peer over the worker's UDP socket (a SIP trunk leg without SRTP): no
    /// ICE, no crypto. Packets are accepted from `remote` (RTP) and the port above it (RTCP,
    /// when the peer does not multiplex) and sent to `remote`.
    AddRtpTransport {
        id: TransportId,
        router: RouterId,
        remote: SocketAddr,
    },
    RemoveTransport {
        transport: TransportId,
    },
    /// Re-seats a transport in another router of this worker (a phone leg moved into another
    /// conversation, `control::sip::reseat`): its producers, consumers and mix output leave
    /// the old router, and its network path — socket address, SRTP contexts, DTLS session,
    /// telephone-event and trunk measurements — stays as it is, so the peer notices nothing.
    /// The new router's producers and mix output follow as ordinary commands.
    MoveTransport {
        transport: TransportId,
        router: RouterId,
    },
    /// Starts (or changes, or with `None` stops) the router's mix `transport` receives. Audio
    /// producers feed the mixer automatically; audio is not forwarded per publisher.
    SetMixOutput {
        router: RouterId,
        transport: TransportId,
        output: Option<MixOutputSpec>,
    },
    AddProducer {
        router: RouterId,
        spec: ProducerSpec,
    },
    RemoveProducer {
        router: RouterId,
        producer: ProducerId,
    },
    AddConsumer {
        router: RouterId,
        spec: ConsumerSpec,
    },
    RemoveConsumer {
        router: RouterId,
        consumer: ConsumerId,
    },
    SetConsumerPaused {
        router: RouterId,
        consumer: ConsumerId,
        paused: bool,
    },
    SetConsumerMaxHeight {
        router: RouterId,
        consumer: ConsumerId,
        max_height: u16,
    },
    RepointConsumer {
        router: RouterId,
        consumer: ConsumerId,
        producer: ProducerId,
    },
    /// How the subscriber numbered payload types and header extensions in the consumer's
    /// m-section (forwarded packets are translated where the publisher's numbers differ).
    SetConsumerNumbering {
        router: RouterId,
        consumer: ConsumerId,
        numbering: Numbering,
    },
    /// A per-participant change of the router's mix (see [`MixAudio`]).
    SetMixAudio {
        router: RouterId,
        audio: MixAudio,
    },
    /// RTP of `transport` with this payload type is RFC 4733 telephone-event: each tone is
    /// reported as [`EngineEvent::Dtmf`](super::EngineEvent::Dtmf) and the packets go no
    /// further (`None`: no longer).
    SetTelephoneEvent {
        transport: TransportId,
        payload_type: Option<u8>,
    },
    /// Measures the RTP a SIP trunk leg receives (loss, jitter) into trunk slot `slot` of the
    /// worker's counters; `clock_rate` is its codec's RTP clock.
    SetTrunkStats {
        transport: TransportId,
        slot: u8,
        clock_rate: u32,
    },
    /// A SIP trunk leg (plain RTP, SDES or DTLS-SRTP) latches its send address to the source
    /// of the packets it is sent (`latch` set), within the rules of `engine::latching`; `None`
    /// turns latching off. Refused for a transport that is not on the worker's socket.
    SetRtpLatching {
        transport: TransportId,
        latch: Option<super::RtpLatch>,
    },
    /// Stop the worker thread after this batch.
    Shutdown,
}

impl Command {
    /// Short name for logs and error events.
    pub fn name(&self) -> &'static str {
        match self {
            Command::CreateRouter { .. } => "create_router",
            Command::CloseRouter { .. } => "close_router",
            Command::AddTransport(_) => "add_transport",
            Command::AddWebRtcTransport(_) => "add_webrtc_transport",
            Command::AddDtlsRtpTransport(_) => "add_dtls_rtp_transport",
            Command::AddDirectTransport { .. } => "add_direct_transport",
            Command::AddRtpTransport { .. } => "add_rtp_transport",
            Command::RemoveTransport { .. } => "remove_transport",
            Command::MoveTransport { .. } => "move_transport",
            Command::SetMixOutput { .. } => "set_mix_output",
            Command::AddProducer { .. } => "add_producer",
            Command::RemoveProducer { .. } => "remove_producer",
            Command::AddConsumer { .. } => "add_consumer",
            Command::RemoveConsumer { .. } => "remove_consumer",
            Command::SetConsumerPaused { .. } => "set_consumer_paused",
            Command::SetConsumerMaxHeight { .. } => "set_consumer_max_height",
            Command::RepointConsumer { .. } => "repoint_consumer",
            Command::SetConsumerNumbering { .. } => "set_consumer_numbering",
            Command::SetMixAudio { .. } => "set_mix_audio",
            Command::SetTelephoneEvent { .. } => "set_telephone_event",
            Command::SetTrunkStats { .. } => "set_trunk_stats",
            Command::SetRtpLatching { .. } => "set_rtp_latching",
            Command::Shutdown => "shutdown",
        }
    }
}

/// Why a command was refused (the engine state is unchanged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("unknown router")]
    UnknownRouter,
    #[error("router already exists")]
    RouterExists,
    #[error("unknown transport (or not in this router)")]
    UnknownTransport,
    #[error("transport id or ICE ufrag already in use")]
    TransportExists,
    #[error("remote address already bound to another transport")]
    AddressInUse,
    #[error("bad SRTP keys: {0}")]
    Srtp(SrtpError),
    #[error(transparent)]
    Router(RouterError),
    /// The router's mixer refused (codec set-up failed, or the mixer is full).
    #[error("router mixer: {0}")]
    Mixer(&'static str),
    /// The DTLS client could not start its handshake.
    #[error("DTLS set-up failed")]
    DtlsSetup,
}
