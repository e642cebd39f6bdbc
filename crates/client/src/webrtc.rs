//! [`WebRtcClient`]: a palaver participant that speaks WebRTC like a browser, for the load
//! tester (`--transport webrtc`) and the tests. Signaling is the WebSocket `/signaling/v1`
//! (`docs/signaling.md`); media is a webrtc-rs (`webrtc` 0.21) peer connection negotiated
//! with `media.offer` / `media.answer` against the server's ICE-lite, DTLS-SRTP endpoint.
//!
//! The shape follows [`crate::QuicClient`]: `connect` → `join` → [`WebRtcClient::start_media`]
//! (one Opus track sent and the room's mix received on the same m-section, optionally a
//! three-layer rid simulcast VP8 camera), [`WebRtcAudioSender::send`] for Opus frames,
//! [`WebRtcClient::recv_rtp`] for received packets (the same [`ReceivedRtp`] with arrival
//! times), [`WebRtcClient::next_event`] for roster/capture/session frames. Received RTP and
//! events go through bounded queues; when full the newest item is dropped and counted.
//!
//! ```no_run
//! # async fn demo(base_url: &str, ca_pem: &str, token: &str, link: String) -> Result<(), palaver_client::ClientError> {
//! use palaver_client::JoinTarget;
//! use palaver_client::webrtc::{MediaOptions, WebRtcClient, WebRtcOptions};
//! let mut client = WebRtcClient::connect(&WebRtcOptions::new(base_url, ca_pem), token).await?;
//! client.join(JoinTarget::MeetingLink { join_url: link }, Some("bot".into())).await?;
//! client.start_media(MediaOptions::default()).await?; // offer/answer, ICE + DTLS connected
//! let mut audio = client.audio_sender()?;
//! audio.send(&[0xf8, 0xff, 0xfe], 960, Some(40)).await?; // one 20 ms Opus frame
//! if let Some(packet) = client.recv_rtp().await { /* the room's mix */ }
//! client.close().await;
//! # Ok(()) }
//! ```

pub(crate) mod signaling;

use crate::rtp::ReceivedRtp;
use crate::{ClientError, Joined, Welcome};
use bytes::Bytes;
use palaver_core::protocol::calls::CallEvent;
use palaver_core::protocol::{ClientMessage, JoinTarget, ServerMessage};
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use signaling::Signaling;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use webrtc::media_stream::MediaStreamTrack;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCPeerConnectionState, RTCSessionDescription, Registry, configure_simulcast_extension_headers,
    register_default_interceptors,
};

/// RFC 6464 audio level header extension.
pub const EXT_AUDIO_LEVEL: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";
/// Media identification header extension (RFC 8843).
pub const EXT_MID: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
/// RTP stream id header extension (RFC 8852), names a simulcast layer.
pub const EXT_RID: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";
/// The simulcast layers a WebRTC participant sends, lowest first (as browsers offer them).
pub const SIMULCAST_RIDS: [&str; 3] = ["q", "h", "f"];

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct WebRtcOptions {
    /// The server's HTTPS base URL, `https://host:port` (the `PALAVER_READY` line).
    pub base_url: String,
    /// PEM of the CA (or certificates) to trust for the WebSocket's TLS.
    pub ca_pem: String,
    /// Local address the peer connection's UDP socket binds (port chosen by the system).
    pub bind_ip: IpAddr,
    /// Received events held before new ones are dropped.
    pub event_queue: usize,
    /// Received RTP packets held before new ones are dropped.
    pub rtp_queue: usize,
    /// How long connecting, each request, and media negotiation (answer + ICE + DTLS) may take.
    pub timeout: Duration,
}

impl WebRtcOptions {
    pub fn new(base_url: impl Into<String>, ca_pem: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            ca_pem: ca_pem.into(),
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            event_queue: 1024,
            rtp_queue: 4096,
            timeout: Duration::from_secs(10),
        }
    }
}

/// What the media session sends besides one Opus track.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediaOptions {
    /// Also send a camera as three rid simulcast layers of VP8 (q/h/f), and receive one
    /// remote camera on the same m-section.
    pub simulcast_video: bool,
}

/// The negotiated media session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSession {
    /// SSRC and payload type of the Opus track this client sends.
    pub audio_ssrc: u32,
    pub audio_payload_type: u8,
    /// SSRCs of the simulcast layers (q, h, f), when video is sent.
    pub video_ssrcs: Option<[u32; 3]>,
    /// The server's answer SDP.
    pub answer_sdp: String,
}

/// Counters of one WebRTC client (monotonic).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebRtcStats {
    pub rtp_sent: u64,
    pub rtp_received: u64,
    /// RTP packets dropped because the RTP queue was full.
    pub rtp_dropped: u64,
    /// Events dropped because the event queue was full.
    pub events_dropped: u64,
    /// Signaling frames from the server that could not be read (skipped).
    pub invalid_frames: u64,
}

#[derive(Default)]
struct MediaCounters {
    rtp_sent: AtomicU64,
    rtp_received: AtomicU64,
    rtp_dropped: AtomicU64,
}

fn webrtc_error(context: &str) -> impl FnOnce(webrtc::error::Error) -> ClientError + '_ {
    move |e| ClientError::WebRtc(format!("{context}: {e}"))
}

/// Peer-connection events: connection state for `start_media`, remote tracks to readers.
struct PeerEvents {
    state: watch::Sender<RTCPeerConnectionState>,
    rtp: mpsc::Sender<ReceivedRtp>,
    counters: Arc<MediaCounters>,
    /// Negotiated id of the audio level extension (0 = none), to report received levels.
    audio_level_id: Arc<AtomicU8>,
    readers: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for PeerEvents {
    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.state.send(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let reader =
            tokio::spawn(read_track(track, self.rtp.clone(), self.counters.clone(), self.audio_level_id.clone()));
        if let Ok(mut readers) = self.readers.lock() {
            readers.retain(|r| !r.is_finished());
            readers.push(reader);
        }
    }
}

async fn read_track(
    track: Arc<dyn TrackRemote>,
    rtp: mpsc::Sender<ReceivedRtp>,
    counters: Arc<MediaCounters>,
    audio_level_id: Arc<AtomicU8>,
) {
    while let Some(event) = track.poll().await {
        let TrackRemoteEvent::OnRtpPacket(packet) = event else { continue };
        let arrival = Instant::now();
        counters.rtp_received.fetch_add(1, Ordering::Relaxed);
        let level_id = audio_level_id.load(Ordering::Relaxed);
        let audio_level = (level_id != 0)
            .then(|| packet.header.get_extension(level_id))
            .flatten()
            .and_then(|v| v.first().map(|b| b & 0x7f));
        let received = ReceivedRtp {
            arrival,
            ssrc: packet.header.ssrc,
            sequence: packet.header.sequence_number,
            timestamp: packet.header.timestamp,
            payload_type: packet.header.payload_type,
            marker: packet.header.marker,
            audio_level,
            payload: packet.payload,
        };
        if rtp.try_send(received).is_err() {
            counters.rtp_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A participant connected over WebSocket signaling with WebRTC media. Dropping it stops its
/// tasks; [`WebRtcClient::close`] also closes the peer connection and the socket cleanly.
pub struct WebRtcClient {
    signaling: Signaling,
    options: WebRtcOptions,
    pc: Option<Arc<dyn PeerConnection>>,
    rtp_tx: mpsc::Sender<ReceivedRtp>,
    rtp: Option<mpsc::Receiver<ReceivedRtp>>,
    counters: Arc<MediaCounters>,
    readers: Arc<Mutex<Vec<JoinHandle<()>>>>,
    audio: Option<AudioTrack>,
    video: Option<VideoTrack>,
    /// The call between users whose media this client negotiates (`media.offer`'s `callId`).
    call_id: Option<String>,
}

impl std::fmt::Debug for WebRtcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebRtcClient")
            .field("connection_id", &self.signaling.welcome.connection_id)
            .field("media", &self.pc.is_some())
            .finish_non_exhaustive()
    }
}

/// The negotiated Opus track.
#[derive(Clone)]
struct AudioTrack {
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    payload_type: u8,
    level_id: u8,
}

/// The negotiated simulcast camera.
#[derive(Clone)]
struct VideoTrack {
    track: Arc<TrackLocalStaticRTP>,
    ssrcs: [u32; 3],
    payload_type: u8,
    mid: Bytes,
    mid_id: u8,
    rid_id: u8,
}

impl WebRtcClient {
    /// Opens the signaling socket with the access `token` and waits for `welcome`.
    pub async fn connect(options: &WebRtcOptions, token: &str) -> Result<Self, ClientError> {
        let signaling =
            Signaling::connect(&options.base_url, &options.ca_pem, token, options.event_queue, options.timeout).await?;
        let (rtp_tx, rtp) = mpsc::channel(options.rtp_queue.max(1));
        Ok(Self {
            signaling,
            options: options.clone(),
            pc: None,
            rtp_tx,
            rtp: Some(rtp),
            counters: Arc::new(MediaCounters::default()),
            readers: Arc::new(Mutex::new(Vec::new())),
            audio: None,
            video: None,
            call_id: None,
        })
    }

    pub fn welcome(&self) -> &Welcome {
        &self.signaling.welcome
    }

    /// Sends `message` with a fresh `requestId` and waits for the frame answering it; an
    /// `error` answer is [`ClientError::Refused`].
    pub async fn request(&self, message: ClientMessage) -> Result<ServerMessage, ClientError> {
        self.signaling.request(message).await
    }

    /// Sends `message` without waiting for anything.
    pub async fn send(&self, message: ClientMessage) -> Result<(), ClientError> {
        self.signaling.send(message).await
    }

    /// Joins a conversation (meeting link, meeting code + passcode, group call, room).
    pub async fn join(&self, target: JoinTarget, display_name: Option<String>) -> Result<Joined, ClientError> {
        self.signaling.join(target, display_name).await
    }

    /// Negotiates the media session (after `join`, once admitted): builds the peer connection,
    /// sends `media.offer`, applies the `media.answer` and waits until ICE and DTLS are up.
    pub async fn start_media(&mut self, media: MediaOptions) -> Result<MediaSession, ClientError> {
        self.start_media_receiving(media, 0).await
    }

    /// [`Self::start_media`] in a call between users (`call.*`: placed, or answered with
    /// `call.accept`): the offer names `call_id`. In a cluster a socket on another node than
    /// the call's has its offer forwarded to the call's node, whose answer names its own worker
    /// (docs/cluster-rings.md).
    pub async fn start_call_media(&mut self, call_id: &str, media: MediaOptions) -> Result<MediaSession, ClientError> {
        self.call_id = Some(call_id.to_owned());
        let started = self.start_media(media).await;
        if started.is_err() {
            self.call_id = None;
        }
        started
    }

    /// [`Self::start_media`] with `receive_video` extra receive-only video sections after the
    /// others (as the web client offers them): more camera slots, or — when `media` sends no
    /// camera — the first one is the camera slot and a second the screen slot (`docs/media.md`).
    /// Their video arrives on the SSRCs of the answer's `a=ssrc` lines (see `media.slots`).
    pub async fn start_media_receiving(
        &mut self,
        media: MediaOptions,
        receive_video: u8,
    ) -> Result<MediaSession, ClientError> {
        if self.pc.is_some() {
            return Err(ClientError::InvalidArgument("media is already started".into()));
        }
        let audio_level_id = Arc::new(AtomicU8::new(0));
        let (state_tx, mut state) = watch::channel(RTCPeerConnectionState::New);
        let events = PeerEvents {
            state: state_tx,
            rtp: self.rtp_tx.clone(),
            counters: self.counters.clone(),
            audio_level_id: audio_level_id.clone(),
            readers: self.readers.clone(),
        };
        let pc = build_peer_connection(events, SocketAddr::new(self.options.bind_ip, 0)).await?;
        match self.negotiate(&pc, media, receive_video, &audio_level_id, &mut state).await {
            Ok(session) => {
                self.pc = Some(pc);
                Ok(session)
            }
            Err(e) => {
                // A refused or failed negotiation leaves no media behind; start_media may be retried.
                self.audio = None;
                self.video = None;
                let _ = tokio::time::timeout(Duration::from_secs(2), pc.close()).await;
                Err(e)
            }
        }
    }

    async fn negotiate(
        &mut self,
        pc: &Arc<dyn PeerConnection>,
        media: MediaOptions,
        receive_video: u8,
        audio_level_id: &AtomicU8,
        state: &mut watch::Receiver<RTCPeerConnectionState>,
    ) -> Result<MediaSession, ClientError> {
        let audio_ssrc = rand::random::<u32>() | 1;
        let audio_track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
            "palaver-client".to_owned(),
            "audio".to_owned(),
            "microphone".to_owned(),
            RtpCodecKind::Audio,
            vec![encoding(opus_codec(), audio_ssrc, None)],
        )));
        let audio_sender = add_track(pc, audio_track.clone()).await?;
        let video = if media.simulcast_video {
            let ssrcs: [u32; 3] = [rand::random(), rand::random(), rand::random()];
            let encodings =
                SIMULCAST_RIDS.iter().zip(ssrcs).map(|(rid, s)| encoding(vp8_codec(), s, Some(rid))).collect();
            let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
                "palaver-client".to_owned(),
                "camera".to_owned(),
                "camera".to_owned(),
                RtpCodecKind::Video,
                encodings,
            )));
            Some((add_track(pc, track.clone()).await?, track, ssrcs))
        } else {
            None
        };

        for _ in 0..receive_video {
            let init = RTCRtpTransceiverInit { direction: RTCRtpTransceiverDirection::Recvonly, ..Default::default() };
            pc.add_transceiver_from_kind(RtpCodecKind::Video, Some(init))
                .await
                .map_err(webrtc_error("add receive-only video"))?;
        }
        let offer = pc.create_offer(None).await.map_err(webrtc_error("create offer"))?;
        pc.set_local_description(offer).await.map_err(webrtc_error("set local offer"))?;
        let sdp = pc.local_description().await.ok_or_else(|| ClientError::WebRtc("no local description".into()))?.sdp;
        let answer_sdp = self.exchange_offer(sdp).await?;
        let answer = RTCSessionDescription::answer(answer_sdp.clone()).map_err(webrtc_error("parse answer"))?;
        pc.set_remote_description(answer).await.map_err(webrtc_error("set remote answer"))?;

        let params = audio_sender.get_parameters().await.map_err(webrtc_error("audio parameters"))?;
        let payload_type = negotiated_payload_type(&params.rtp_parameters, "audio/opus")?;
        let level_id = extension_id(&params.rtp_parameters, EXT_AUDIO_LEVEL).unwrap_or(0);
        audio_level_id.store(level_id, Ordering::Relaxed);
        self.audio = Some(AudioTrack { track: audio_track, ssrc: audio_ssrc, payload_type, level_id });
        let mut video_ssrcs = None;
        if let Some((sender, track, ssrcs)) = video {
            let params = sender.get_parameters().await.map_err(webrtc_error("video parameters"))?;
            let rtp = &params.rtp_parameters;
            let mid = transceiver_mid(pc, &sender).await?;
            self.video = Some(VideoTrack {
                track,
                ssrcs,
                payload_type: negotiated_payload_type(rtp, "video/vp8")?,
                mid: Bytes::from(mid.into_bytes()),
                mid_id: extension_id(rtp, EXT_MID).ok_or_else(|| missing("the mid extension"))?,
                rid_id: extension_id(rtp, EXT_RID).ok_or_else(|| missing("the rid extension"))?,
            });
            video_ssrcs = Some(ssrcs);
        }
        self.wait_connected(state).await?;
        Ok(MediaSession { audio_ssrc, audio_payload_type: payload_type, video_ssrcs, answer_sdp })
    }

    /// Sends `media.offer` and waits for `media.answer` (or the `error` refusing the offer).
    async fn exchange_offer(&mut self, sdp: String) -> Result<String, ClientError> {
        let offer = ClientMessage::MediaOffer { sdp, call_id: self.call_id.clone() };
        let (_, refusal) = self.signaling.send_tracked(offer).await?;
        let timeout = self.options.timeout;
        let answers = &mut self.signaling.answers;
        tokio::select! {
            answer = answers.recv() => answer.ok_or(ClientError::Closed),
            refused = refusal => match refused {
                Ok(ServerMessage::Error { code, message, .. }) => Err(ClientError::Refused { code, message }),
                Ok(other) => Err(ClientError::Protocol(format!("expected media.answer, got {other:?}"))),
                Err(_) => Err(ClientError::Closed),
            },
            _ = tokio::time::sleep(timeout) => Err(ClientError::Timeout(timeout)),
        }
    }

    async fn wait_connected(&self, state: &mut watch::Receiver<RTCPeerConnectionState>) -> Result<(), ClientError> {
        let timeout = self.options.timeout;
        let wait = async {
            loop {
                match *state.borrow_and_update() {
                    RTCPeerConnectionState::Connected => return Ok(()),
                    s @ (RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed) => {
                        return Err(ClientError::WebRtc(format!("peer connection {s}")));
                    }
                    _ => {}
                }
                state.changed().await.map_err(|_| ClientError::Closed)?;
            }
        };
        tokio::time::timeout(timeout, wait).await.map_err(|_| ClientError::Timeout(timeout))?
    }

    /// A sender for the Opus track (after [`Self::start_media`]); random initial sequence
    /// number and timestamp.
    pub fn audio_sender(&self) -> Result<WebRtcAudioSender, ClientError> {
        let audio = self.audio.clone().ok_or_else(|| ClientError::InvalidArgument("media is not started".into()))?;
        Ok(WebRtcAudioSender {
            audio,
            counters: self.counters.clone(),
            sequence: rand::random(),
            timestamp: rand::random(),
            marker_next: true,
        })
    }

    /// A sender for the simulcast camera (after [`Self::start_media`] with `simulcast_video`).
    pub fn video_sender(&self) -> Result<SimulcastVideoSender, ClientError> {
        let video = self.video.clone().ok_or_else(|| ClientError::InvalidArgument("no simulcast video".into()))?;
        Ok(SimulcastVideoSender {
            video,
            counters: self.counters.clone(),
            sequence: [rand::random(), rand::random(), rand::random()],
            timestamp: [rand::random(), rand::random(), rand::random()],
        })
    }

    /// The next event: any server frame that does not answer a request (`roster.delta`,
    /// `snapshot`, `media.slots`, `capture.changed`, `session.ended`, unsolicited `error`...).
    pub async fn next_event(&mut self) -> Option<ServerMessage> {
        self.signaling.events.recv().await
    }

    /// The next `call.*` frame, as [`QuicClient::next_call_event`](crate::QuicClient::next_call_event):
    /// a call or an invitation rings (`call.incoming`), connects, ends; or this socket was
    /// moved into a conversation (`call.moved`; `joined` follows as an event, and
    /// [`Self::start_media`] then negotiates media there). `None` once the socket is closed
    /// and the queue is drained.
    pub async fn next_call_event(&mut self) -> Option<CallEvent> {
        self.signaling.calls.recv().await
    }

    /// Answers a `call.incoming`: an invitation into a conversation by joining it (the
    /// [`Joined`] answer), a call between users with `call.accept` (`None`).
    pub async fn accept_call(&self, incoming: &CallEvent) -> Result<Option<Joined>, ClientError> {
        self.signaling.requests.accept_call(incoming, self.options.timeout).await
    }

    /// Declines a ringing call or invitation (`call.decline`).
    pub async fn decline_call(&self, call_id: &str) -> Result<(), ClientError> {
        self.signaling.requests.decline_call(call_id, self.options.timeout).await
    }

    /// The next received RTP packet (the room's audio mix, remote video); `None` after
    /// [`Self::take_rtp_receiver`].
    pub async fn recv_rtp(&mut self) -> Option<ReceivedRtp> {
        self.rtp.as_mut()?.recv().await
    }

    /// Moves the RTP queue out (to read media on another task).
    pub fn take_rtp_receiver(&mut self) -> Option<mpsc::Receiver<ReceivedRtp>> {
        self.rtp.take()
    }

    /// Leaves the conversation (the socket stays open); `session.ended` follows as an event.
    pub async fn leave(&self) -> Result<(), ClientError> {
        self.send(ClientMessage::Leave).await
    }

    pub fn stats(&self) -> WebRtcStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let signaling = &self.signaling.requests.counters;
        WebRtcStats {
            rtp_sent: get(&self.counters.rtp_sent),
            rtp_received: get(&self.counters.rtp_received),
            rtp_dropped: get(&self.counters.rtp_dropped),
            events_dropped: get(&signaling.events_dropped),
            invalid_frames: get(&signaling.invalid_frames),
        }
    }

    /// Closes the peer connection and the signaling socket.
    pub async fn close(mut self) {
        if let Some(pc) = self.pc.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), pc.close()).await;
        }
        self.stop_readers();
        self.signaling.close().await;
    }

    fn stop_readers(&self) {
        if let Ok(mut readers) = self.readers.lock() {
            for reader in readers.drain(..) {
                reader.abort();
            }
        }
    }
}

impl Drop for WebRtcClient {
    fn drop(&mut self) {
        self.stop_readers();
    }
}

async fn build_peer_connection(events: PeerEvents, bind: SocketAddr) -> Result<Arc<dyn PeerConnection>, ClientError> {
    let mut media = MediaEngine::default();
    media.register_default_codecs().map_err(webrtc_error("register codecs"))?;
    media
        .register_header_extension(
            RTCRtpHeaderExtensionCapability { uri: EXT_AUDIO_LEVEL.to_owned() },
            RtpCodecKind::Audio,
            None,
        )
        .map_err(webrtc_error("register audio level"))?;
    configure_simulcast_extension_headers(&mut media).map_err(webrtc_error("register simulcast extensions"))?;
    let registry = register_default_interceptors(Registry::new(), &mut media).map_err(webrtc_error("interceptors"))?;
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .with_handler(Arc::new(events))
        .with_udp_addrs(vec![bind])
        .build()
        .await
        .map_err(webrtc_error("build peer connection"))?;
    Ok(Arc::new(pc))
}

/// Adds `track` on a sendrecv transceiver (send it, receive the server's track there).
async fn add_track(
    pc: &Arc<dyn PeerConnection>,
    track: Arc<TrackLocalStaticRTP>,
) -> Result<Arc<dyn webrtc::rtp_transceiver::RtpSender>, ClientError> {
    let init = RTCRtpTransceiverInit { direction: RTCRtpTransceiverDirection::Sendrecv, ..Default::default() };
    let transceiver = pc
        .add_transceiver_from_track(track as Arc<dyn TrackLocal>, Some(init))
        .await
        .map_err(webrtc_error("add transceiver"))?;
    transceiver.sender().await.map_err(webrtc_error("transceiver sender"))?.ok_or_else(|| missing("a sender"))
}

async fn transceiver_mid(
    pc: &Arc<dyn PeerConnection>,
    sender: &Arc<dyn webrtc::rtp_transceiver::RtpSender>,
) -> Result<String, ClientError> {
    for transceiver in pc.get_transceivers().await {
        let Ok(Some(candidate)) = transceiver.sender().await else { continue };
        if candidate.id() == sender.id() {
            return transceiver.mid().await.map_err(webrtc_error("mid"))?.ok_or_else(|| missing("a mid"));
        }
    }
    Err(missing("the video transceiver"))
}

fn missing(what: &str) -> ClientError {
    ClientError::WebRtc(format!("negotiation gave no {what}"))
}

fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: "audio/opus".to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

fn vp8_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: "video/VP8".to_owned(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![],
    }
}

fn encoding(codec: RTCRtpCodec, ssrc: u32, rid: Option<&str>) -> RTCRtpEncodingParameters {
    RTCRtpEncodingParameters {
        rtp_coding_parameters: RTCRtpCodingParameters {
            rid: rid.unwrap_or_default().into(),
            ssrc: Some(ssrc),
            ..Default::default()
        },
        active: true,
        codec,
        ..Default::default()
    }
}

fn negotiated_payload_type(
    params: &rtc::rtp_transceiver::rtp_sender::RTCRtpParameters,
    mime: &str,
) -> Result<u8, ClientError> {
    params
        .codecs
        .iter()
        .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(mime))
        .map(|c| c.payload_type)
        .ok_or_else(|| ClientError::WebRtc(format!("the answer accepted no {mime}")))
}

fn extension_id(params: &rtc::rtp_transceiver::rtp_sender::RTCRtpParameters, uri: &str) -> Option<u8> {
    params.header_extensions.iter().find(|e| e.uri == uri).and_then(|e| u8::try_from(e.id).ok())
}

/// The RFC 6464 byte: voice-activity flag (set unless the level is silence) and `-dBov`.
fn audio_level_byte(level_dbov: u8, voice: bool) -> u8 {
    let level = level_dbov.min(127);
    if voice && level < 127 { 0x80 | level } else { level }
}

/// A header with the one-byte extension profile, ready for `set_extension`.
fn header(payload_type: u8, sequence: u16, timestamp: u32, ssrc: u32, marker: bool) -> rtp::header::Header {
    rtp::header::Header {
        version: 2,
        marker,
        payload_type,
        sequence_number: sequence,
        timestamp,
        ssrc,
        extension: true,
        extension_profile: rtp::header::EXTENSION_PROFILE_ONE_BYTE,
        ..Default::default()
    }
}

/// Sends the Opus track: sequence number, timestamp, marker (first packet of a talk spurt)
/// and the RFC 6464 audio level are handled here. Cheap to move to its own task.
#[derive(Clone)]
pub struct WebRtcAudioSender {
    audio: AudioTrack,
    counters: Arc<MediaCounters>,
    sequence: u16,
    timestamp: u32,
    marker_next: bool,
}

impl WebRtcAudioSender {
    /// Sends one packet carrying `payload` (an Opus frame; `samples` = 960 for 20 ms), with
    /// the audio level (`-dBov`, 0..=127) if given and negotiated. As browsers do, the RFC 6464
    /// voice-activity flag is set on every level above silence (127): the server's mixer only
    /// considers packets flagged as voice when it picks the talkers.
    pub async fn send(&mut self, payload: &[u8], samples: u32, level_dbov: Option<u8>) -> Result<(), ClientError> {
        self.send_level(payload, samples, level_dbov.map(|level| (level, level < 127))).await
    }

    /// [`Self::send`] with the RFC 6464 voice flag explicit: `level` = `(-dBov, voice)` (a
    /// browser without DTX sends its background noise with `voice` false).
    pub async fn send_level(
        &mut self,
        payload: &[u8],
        samples: u32,
        level: Option<(u8, bool)>,
    ) -> Result<(), ClientError> {
        let a = &self.audio;
        let mut header = header(a.payload_type, self.sequence, self.timestamp, a.ssrc, self.marker_next);
        match level {
            Some((level, voice)) if a.level_id != 0 => header
                .set_extension(a.level_id, Bytes::copy_from_slice(&[audio_level_byte(level, voice)]))
                .map_err(|e| ClientError::WebRtc(format!("audio level extension: {e}")))?,
            _ => header.extension = false,
        }
        let packet = rtp::Packet { header, payload: Bytes::copy_from_slice(payload) };
        a.track.write_rtp(packet).await.map_err(webrtc_error("write audio"))?;
        self.counters.rtp_sent.fetch_add(1, Ordering::Relaxed);
        self.sequence = self.sequence.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(samples);
        self.marker_next = false;
        Ok(())
    }

    /// Skips `samples` of timestamp without sending (a DTX pause); marks the next packet.
    pub fn skip(&mut self, samples: u32) {
        self.timestamp = self.timestamp.wrapping_add(samples);
        self.marker_next = true;
    }

    pub fn ssrc(&self) -> u32 {
        self.audio.ssrc
    }
}

/// Sends the three simulcast layers of the camera (VP8, one rid each). Each packet carries the
/// mid and rid header extensions, as a browser's do, so the server binds layers by rid.
#[derive(Clone)]
pub struct SimulcastVideoSender {
    video: VideoTrack,
    counters: Arc<MediaCounters>,
    sequence: [u16; 3],
    timestamp: [u32; 3],
}

impl SimulcastVideoSender {
    /// Sends one frame of `layer` (0 = q, 1 = h, 2 = f) as the given VP8 RTP payloads (marker
    /// on the last), then advances that layer's timestamp by `ticks` (90 kHz; 3000 = 30 fps).
    pub async fn send_frame(&mut self, layer: usize, packets: &[&[u8]], ticks: u32) -> Result<(), ClientError> {
        let v = &self.video;
        let (Some(&ssrc), Some(rid)) = (v.ssrcs.get(layer), SIMULCAST_RIDS.get(layer)) else {
            return Err(ClientError::InvalidArgument(format!("no simulcast layer {layer}")));
        };
        for (i, payload) in packets.iter().enumerate() {
            let marker = i + 1 == packets.len();
            let mut header = header(v.payload_type, self.sequence[layer], self.timestamp[layer], ssrc, marker);
            header
                .set_extension(v.mid_id, v.mid.clone())
                .and_then(|_| header.set_extension(v.rid_id, Bytes::from_static(rid.as_bytes())))
                .map_err(|e| ClientError::WebRtc(format!("mid/rid extension: {e}")))?;
            let packet = rtp::Packet { header, payload: Bytes::copy_from_slice(payload) };
            v.track.write_rtp(packet).await.map_err(webrtc_error("write video"))?;
            self.counters.rtp_sent.fetch_add(1, Ordering::Relaxed);
            self.sequence[layer] = self.sequence[layer].wrapping_add(1);
        }
        self.timestamp[layer] = self.timestamp[layer].wrapping_add(ticks);
        Ok(())
    }

    pub fn ssrcs(&self) -> [u32; 3] {
        self.video.ssrcs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_levels_carry_the_voice_flag_except_for_silence() {
        assert_eq!(audio_level_byte(20, true), 0x80 | 20);
        assert_eq!(audio_level_byte(0, true), 0x80);
        assert_eq!(audio_level_byte(127, true), 127);
        assert_eq!(audio_level_byte(200, true), 127);
        assert_eq!(audio_level_byte(70, false), 70, "noise without the voice flag");
    }

    #[test]
    fn options_default_to_loopback_media_and_bounded_queues() {
        let o = WebRtcOptions::new("https://127.0.0.1:8443", "pem");
        assert_eq!(o.bind_ip, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert!(o.event_queue > 0 && o.rtp_queue > 0);
        assert_eq!(MediaOptions::default(), MediaOptions { simulcast_video: false });
    }
}
