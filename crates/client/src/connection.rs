//! [`QuicClient`]: one participant connection. Connecting authenticates on the signaling
//! stream and waits for `welcome`; three tasks then run until the connection ends: the frame
//! reader (answers to requests go to their waiting caller by `requestId`, everything else to
//! the bounded event queue; see [`crate::requests`]), the datagram reader (RTP to the bounded
//! RTP queue; RTCP counted, and the keyframe requests in it to their own bounded queue), and
//! the heartbeat (`ping` every `heartbeatIntervalMs`).

use crate::requests::{self, FrameReader, FrameWriter, Joined, Requests, Welcome};
use crate::rtcp::{KeyframeKind, KeyframeRequest, keyframe_requests};
use crate::rtp::{ReceivedRtp, RtpPacketizer, is_rtcp};
use crate::udp_media::{self, UdpCarrier};
use crate::{ClientError, ConnectOptions, client_endpoint, tls};
use bytes::Bytes;
use palaver_core::protocol::calls::CallEvent;
use palaver_core::protocol::quic::{CLOSE_NORMAL, SRTP_EXPORTER_LABEL, SRTP_KEYING_BYTES, SrtpKeying};
use palaver_core::protocol::{
    AuthFrame, ClientMessage, JoinTarget, MediaCarrier, MediaReceive, MediaTrack, ServerMessage,
};
use palaver_core::stream_frame::{Decoded, FrameDecoder, MAX_SKIPPABLE_FRAME_BYTES, frame_bytes};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Counters of one client (monotonic).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    pub datagrams_sent: u64,
    pub datagrams_received: u64,
    pub rtcp_received: u64,
    /// Datagrams that were neither RTCP nor parseable RTP.
    pub invalid_datagrams: u64,
    /// RTP packets dropped because the RTP queue was full.
    pub rtp_dropped: u64,
    /// Events dropped because the event queue was full.
    pub events_dropped: u64,
    /// Signaling frames from the server that could not be read (skipped).
    pub invalid_frames: u64,
    /// PLIs and FIRs the server sent about this client's streams.
    pub plis_received: u64,
    pub firs_received: u64,
    /// Keyframe requests dropped because their queue was full.
    pub keyframe_requests_dropped: u64,
}

/// Keyframe requests held before new ones are dropped (see [`QuicClient::next_keyframe_request`]).
pub const KEYFRAME_REQUEST_QUEUE: usize = 256;

/// Datagram counters (the signaling ones live in [`Requests`]).
#[derive(Default)]
struct Counters {
    datagrams_sent: AtomicU64,
    datagrams_received: AtomicU64,
    rtcp_received: AtomicU64,
    invalid_datagrams: AtomicU64,
    rtp_dropped: AtomicU64,
    plis_received: AtomicU64,
    firs_received: AtomicU64,
    keyframe_requests_dropped: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// The signaling stream's sending half: each frame length-prefixed.
struct StreamWriter(tokio::sync::Mutex<quinn::SendStream>);

impl FrameWriter for StreamWriter {
    async fn write_json(&self, json: String) -> Result<(), ClientError> {
        self.0.lock().await.write_all(&frame_bytes(json.as_bytes())).await?;
        Ok(())
    }
}

/// The signaling stream's receiving half and its frame decoder.
struct StreamReader {
    recv: quinn::RecvStream,
    decoder: FrameDecoder,
}

impl FrameReader for StreamReader {
    async fn next_frame(&mut self) -> Result<Option<Vec<u8>>, ClientError> {
        loop {
            match self.decoder.next_frame().map_err(|e| ClientError::Protocol(e.to_string()))? {
                Some(Decoded::Frame(payload)) => return Ok(Some(payload)),
                Some(Decoded::Oversized(len)) => {
                    return Err(ClientError::Protocol(format!("the server sent a {len}-byte frame")));
                }
                None => {}
            }
            match self.recv.read_chunk(64 * 1024, true).await {
                Ok(Some(chunk)) => self.decoder.push(&chunk.bytes),
                Ok(None) => return Ok(None),
                Err(e) => return Err(ClientError::Read(e.to_string())),
            }
        }
    }
}

type Signaling = Requests<StreamWriter>;

/// A participant connected over QUIC. Dropping it closes the connection.
/// Redirects [`QuicClient::connect_and_join`] follows before giving up (a home that moved
/// again while the client was on its way).
pub const MAX_REDIRECTS: u32 = 2;

pub struct QuicClient {
    connection: quinn::Connection,
    signaling: Arc<Signaling>,
    counters: Arc<Counters>,
    welcome: Welcome,
    events: mpsc::Receiver<ServerMessage>,
    /// `call.*` frames: calls between users, invitations into conversations, moves.
    calls: mpsc::Receiver<CallEvent>,
    rtp: Option<mpsc::Receiver<ReceivedRtp>>,
    keyframe_requests: Option<mpsc::Receiver<KeyframeRequest>>,
    tasks: Vec<JoinHandle<()>>,
    timeout: Duration,
    /// The endpoint this client bound itself (closed with it); `None` when shared.
    own_endpoint: Option<quinn::Endpoint>,
    /// The SRTP-over-UDP media carrier, when [`ConnectOptions::media`] chose it.
    udp: Option<Arc<UdpCarrier>>,
}

impl std::fmt::Debug for QuicClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuicClient")
            .field("connection_id", &self.welcome.connection_id)
            .field("remote", &self.connection.remote_address())
            .finish_non_exhaustive()
    }
}

impl QuicClient {
    /// Connects, authenticates with the access `token` and waits for `welcome`.
    pub async fn connect(options: &ConnectOptions, token: &str) -> Result<Self, ClientError> {
        let config = tls::client_config(&options.ca_pem)?;
        let (endpoint, own_endpoint) = match &options.endpoint {
            Some(shared) => (shared.clone(), None),
            None => {
                let bind = if options.server.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" };
                let endpoint = client_endpoint(bind.parse().expect("literal socket address"))?;
                (endpoint.clone(), Some(endpoint))
            }
        };
        let handshake = async {
            let connection = endpoint.connect_with(config, options.server, &options.server_name)?.await?;
            let (mut send, recv) = connection.open_bi().await?;
            let auth = serde_json::to_vec(&AuthFrame { token: token.to_string(), media: options.media })
                .map_err(|e| ClientError::InvalidArgument(e.to_string()))?;
            send.write_all(&frame_bytes(&auth)).await?;
            // Server frames (e.g. a large meeting's `joined` snapshot) may exceed the 64 KiB client-frame limit.
            let mut reader = StreamReader { recv, decoder: FrameDecoder::with_limit(MAX_SKIPPABLE_FRAME_BYTES) };
            let welcome = requests::read_welcome(&mut reader).await?;
            Ok::<_, ClientError>((connection, send, reader, welcome))
        };
        let (connection, send, reader, welcome) = tokio::time::timeout(options.timeout, handshake)
            .await
            .map_err(|_| ClientError::Timeout(options.timeout))??;
        let signaling = Arc::new(Requests::new(StreamWriter(tokio::sync::Mutex::new(send)), "c"));
        let counters = Arc::new(Counters::default());
        let (events_tx, events) = mpsc::channel(options.event_queue.max(1));
        let (calls_tx, calls) = mpsc::channel(options.event_queue.max(1));
        let (rtp_tx, rtp) = mpsc::channel(options.rtp_queue.max(1));
        let (keyframe_tx, keyframe_requests) = mpsc::channel(KEYFRAME_REQUEST_QUEUE);
        let heartbeat_period = Duration::from_millis(welcome.heartbeat_interval_ms.max(100));
        let inbox = Inbox { counters: counters.clone(), rtp: rtp_tx, keyframes: keyframe_tx };
        let mut tasks = vec![
            tokio::spawn(read_signaling(connection.clone(), reader, signaling.clone(), events_tx, calls_tx)),
            tokio::spawn(requests::heartbeat(signaling.clone(), heartbeat_period)),
        ];
        let udp = match options.media {
            MediaCarrier::Datagram => {
                tasks.push(tokio::spawn(read_datagrams(connection.clone(), inbox)));
                None
            }
            MediaCarrier::Srtp => {
                let mut material = [0u8; SRTP_KEYING_BYTES];
                connection
                    .export_keying_material(&mut material, SRTP_EXPORTER_LABEL, b"")
                    .map_err(|_| ClientError::Tls("the TLS session exports no keying material".into()))?;
                let keying = SrtpKeying::from_exported(&material);
                let (carrier, socket) = UdpCarrier::bind(options.server, &keying)?;
                let unprotect = udp_media::unprotect_context(&keying)?;
                let invalid = counters.clone();
                tasks.push(tokio::spawn(udp_media::receive(
                    socket,
                    carrier.clone(),
                    unprotect,
                    move |packet, arrival| inbox.deliver(packet, arrival),
                    move || bump(&invalid.invalid_datagrams),
                )));
                Some(carrier)
            }
        };
        let timeout = options.timeout;
        Ok(Self {
            connection,
            signaling,
            counters,
            welcome,
            events,
            calls,
            rtp: Some(rtp),
            keyframe_requests: Some(keyframe_requests),
            tasks,
            timeout,
            own_endpoint,
            udp,
        })
    }

    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    /// The underlying QUIC connection (RTT, statistics).
    pub fn connection(&self) -> &quinn::Connection {
        &self.connection
    }

    /// Sends `message` with a fresh `requestId` and waits for the frame answering it (`ack`,
    /// `joined`, `media.attached`, `call.placed`); an `error` answer is [`ClientError::Refused`].
    pub async fn request(&self, message: ClientMessage) -> Result<ServerMessage, ClientError> {
        self.signaling.request(message, self.timeout).await
    }

    /// Sends `message` without waiting for anything (its answers, if any, arrive as events).
    pub async fn send(&self, message: ClientMessage) -> Result<(), ClientError> {
        self.signaling.send(message).await
    }

    /// Connects and joins, following a cluster's `redirect` (docs/cluster.md): when the node
    /// reached does not host the conversation, it names the home's QUIC address, and the join is
    /// sent again there over a new connection (at most [`MAX_REDIRECTS`] hops; the same TLS name
    /// and trust). A single server never redirects, so this is [`Self::connect`] + [`Self::join`].
    pub async fn connect_and_join(
        options: &ConnectOptions,
        token: &str,
        target: JoinTarget,
        display_name: Option<String>,
    ) -> Result<(Self, Joined), ClientError> {
        let mut options = options.clone();
        let mut hops = 0;
        loop {
            let client = Self::connect(&options, token).await?;
            match client.join(target.clone(), display_name.clone()).await {
                Ok(joined) => return Ok((client, joined)),
                Err(ClientError::Redirected { node, quic }) if hops < MAX_REDIRECTS => {
                    client.close().await;
                    hops += 1;
                    options.server = quic
                        .parse()
                        .map_err(|_| ClientError::Protocol(format!("redirect to node {node}: bad address {quic}")))?;
                    tracing::debug!(node, quic, "following a redirect to the conversation's home");
                }
                Err(e) => {
                    client.close().await;
                    return Err(e);
                }
            }
        }
    }

    /// Resumes the participant `previous` on this (new) connection (docs/cluster.md, "Resume
    /// across a takeover"). Two answers count as success: `joined` (the conversation moved to a
    /// new home after its home died; the participant joined it again with its carried role and
    /// lobby standing, under a new participant id and resume token) and a `snapshot` for the participant (its
    /// home is alive and took the new socket over; the returned [`Joined`] keeps the old
    /// resume token). Events queued before that snapshot are dropped (the snapshot supersedes
    /// them). A `redirect` is [`ClientError::Redirected`]; a resume the server cannot honour
    /// (the conversation ended) is [`ClientError::Refused`]: join afresh.
    pub async fn resume(&mut self, previous: &Joined) -> Result<Joined, ClientError> {
        let message = ClientMessage::Resume {
            conversation_id: previous.conversation_id.clone(),
            participant_id: previous.participant_id.clone(),
            resume_token: previous.resume_token.clone(),
        };
        let (_, answer) = self.signaling.send_tracked(message).await?;
        requests::resume_answer(answer, &mut self.events, previous, self.timeout).await
    }

    /// Joins a conversation (meeting link, meeting code + passcode, group call, room).
    pub async fn join(&self, target: JoinTarget, display_name: Option<String>) -> Result<Joined, ClientError> {
        self.signaling.join(target, display_name, self.timeout).await
    }

    /// Starts (or replaces) this participant's datagram media: `tracks` are the streams this
    /// client sends (empty for a listener); returns the streams the server sends it (the
    /// room's audio mix). Same as [`Self::attach_media_receiving`] with no video slots.
    pub async fn attach_media(&self, tracks: Vec<MediaTrack>) -> Result<Vec<MediaTrack>, ClientError> {
        self.attach_media_receiving(tracks, MediaReceive::default()).await
    }

    /// [`Self::attach_media`] that also asks for video receive slots: the answer lists the
    /// audio mix, then one VP8 track per slot with its `mid` (`quic-video-0`, ..., `quic-screen`)
    /// and SSRC. Which participant each slot shows arrives as `media.slots` events; size or
    /// pause slots with `ClientMessage::MediaSubscribe`; [`Self::send_pli`] asks for a keyframe.
    /// Rid tracks of one kind (`MediaTrack::vp8_layer`) are sent as one simulcast camera.
    pub async fn attach_media_receiving(
        &self,
        tracks: Vec<MediaTrack>,
        receive: MediaReceive,
    ) -> Result<Vec<MediaTrack>, ClientError> {
        let answer = self.request(ClientMessage::MediaAttach { tracks, receive, call_id: None }).await?;
        self.attached(answer).await
    }

    /// Reads a `media.attached` answer; on the SRTP carrier, binds to the worker it names.
    async fn attached(&self, answer: ServerMessage) -> Result<Vec<MediaTrack>, ClientError> {
        let ServerMessage::MediaAttached { tracks, udp, .. } = answer else {
            return Err(ClientError::Protocol(format!("expected media.attached, got {answer:?}")));
        };
        match (&self.udp, udp) {
            (None, None) => {}
            (Some(carrier), Some(udp)) => carrier.connect(&udp, self.timeout).await?,
            (None, Some(_)) => return Err(ClientError::Protocol("media.attached names a UDP address".into())),
            (Some(_), None) => {
                return Err(ClientError::Protocol("media.attached without the SRTP carrier's `udp`".into()));
            }
        }
        Ok(tracks)
    }

    /// The media carrier this client uses.
    pub fn media_carrier(&self) -> MediaCarrier {
        if self.udp.is_some() { MediaCarrier::Srtp } else { MediaCarrier::Datagram }
    }

    /// Datagram media in a call between users (`call.*`, e.g. one answered with
    /// `call.accept`, including a phone call from a SIP trunk): `tracks` are what this client
    /// sends; returns what the server sends (the call's audio mix).
    pub async fn attach_call_media(
        &self,
        call_id: &str,
        tracks: Vec<MediaTrack>,
    ) -> Result<Vec<MediaTrack>, ClientError> {
        let message =
            ClientMessage::MediaAttach { tracks, receive: MediaReceive::default(), call_id: Some(call_id.to_owned()) };
        match self.request(message).await? {
            ServerMessage::Redirect { node, quic, .. } => Err(ClientError::Redirected { node, quic }),
            answer => self.attached(answer).await,
        }
    }

    /// [`Self::attach_call_media`] in a cluster (docs/cluster-rings.md): a call runs on the
    /// node where it was placed, and when that is not the node of this connection (the ring
    /// crossed nodes), the server answers `redirect` with the call's node's QUIC address. This
    /// then connects there (`options` with that address, the same `token`), attaches the
    /// call's media on the new connection and closes this one: from then on `self` is the new
    /// connection, which carries the call (its `call.*` events, `call.hangUp`). Take the RTP
    /// and keyframe receivers after this call. Without a redirect it is
    /// [`Self::attach_call_media`].
    pub async fn attach_call_media_following(
        &mut self,
        options: &ConnectOptions,
        token: &str,
        call_id: &str,
        tracks: Vec<MediaTrack>,
    ) -> Result<Vec<MediaTrack>, ClientError> {
        let (node, quic) = match self.attach_call_media(call_id, tracks.clone()).await {
            Err(ClientError::Redirected { node, quic }) => (node, quic),
            other => return other,
        };
        let mut options = options.clone();
        options.server =
            quic.parse().map_err(|_| ClientError::Protocol(format!("redirect to node {node}: bad address {quic}")))?;
        tracing::debug!(node, quic, call_id, "following a redirect to the call's node");
        let moved = Self::connect(&options, token).await?;
        let sent = match moved.attach_call_media(call_id, tracks).await {
            Ok(sent) => sent,
            Err(e) => {
                moved.close().await;
                return Err(e);
            }
        };
        let old = std::mem::replace(self, moved);
        tokio::spawn(old.close());
        Ok(sent)
    }

    /// Asks the server for a keyframe on the received stream `media_ssrc` (a video slot's SSRC):
    /// one RTCP PLI datagram, which the server relays to the publisher the slot shows.
    pub fn send_pli(&self, media_ssrc: u32) -> Result<(), ClientError> {
        self.send_datagram(crate::rtcp::pli(0, media_ssrc))
    }

    /// The next keyframe request (PLI/FIR) the server sent about one of this client's streams
    /// (answer it with a keyframe on that SSRC); `None` once the connection is closed (or after
    /// [`Self::take_keyframe_requests`]). Requests are queued (bounded, newest dropped when full).
    pub async fn next_keyframe_request(&mut self) -> Option<KeyframeRequest> {
        self.keyframe_requests.as_mut()?.recv().await
    }

    /// Moves the keyframe-request queue out (to read it on another task).
    pub fn take_keyframe_requests(&mut self) -> Option<mpsc::Receiver<KeyframeRequest>> {
        self.keyframe_requests.take()
    }

    /// Leaves the conversation (the connection stays open); `session.ended` follows as an event.
    pub async fn leave(&self) -> Result<(), ClientError> {
        self.send(ClientMessage::Leave).await
    }

    /// A sender for one outgoing RTP stream (declare its SSRC in [`Self::attach_media`] first).
    pub fn rtp_sender(&self, ssrc: u32, payload_type: u8) -> RtpSender {
        RtpSender {
            out: MediaOut {
                connection: self.connection.clone(),
                udp: self.udp.clone(),
                counters: self.counters.clone(),
            },
            packetizer: RtpPacketizer::new(ssrc, payload_type),
        }
    }

    /// Sends one raw RTP or RTCP packet built by the caller: a datagram, or on the SRTP carrier
    /// one SRTP/SRTCP packet to the worker.
    pub fn send_datagram(&self, packet: Bytes) -> Result<(), ClientError> {
        MediaOut { connection: self.connection.clone(), udp: self.udp.clone(), counters: self.counters.clone() }
            .send(packet)
    }

    /// The next event: any server frame that does not answer a request (`roster.delta`,
    /// `snapshot`, `capture.changed`, `session.ended`, `token.expiring`, unsolicited `error`...).
    /// `None` once the connection is closed and the queue is drained.
    pub async fn next_event(&mut self) -> Option<ServerMessage> {
        self.events.recv().await
    }

    /// The next `call.*` frame: a call between users rings (`call.incoming`; with `join`, an
    /// invitation into a group call or a room, e.g. a Call Automation `add_participant`),
    /// connects, ends; or this connection was moved into a conversation (`call.moved`, then
    /// `joined` arrives as an event). Queued like [`Self::next_event`]; `None` once the
    /// connection is closed and the queue is drained.
    pub async fn next_call_event(&mut self) -> Option<CallEvent> {
        self.calls.recv().await
    }

    /// Answers a `call.incoming`: an invitation into a conversation (`join` set) is accepted
    /// by joining it (the [`Joined`] answer), a call between users with `call.accept` (then
    /// `None`; `call.connected` follows as a call event).
    pub async fn accept_call(&self, incoming: &CallEvent) -> Result<Option<Joined>, ClientError> {
        self.signaling.accept_call(incoming, self.timeout).await
    }

    /// Declines a ringing call or invitation (`call.decline`).
    pub async fn decline_call(&self, call_id: &str) -> Result<(), ClientError> {
        self.signaling.decline_call(call_id, self.timeout).await
    }

    /// The next received RTP packet; `None` once the connection is closed (or after
    /// [`Self::take_rtp_receiver`]).
    pub async fn recv_rtp(&mut self) -> Option<ReceivedRtp> {
        self.rtp.as_mut()?.recv().await
    }

    /// Moves the RTP queue out (to read media on another task).
    pub fn take_rtp_receiver(&mut self) -> Option<mpsc::Receiver<ReceivedRtp>> {
        self.rtp.take()
    }

    pub fn stats(&self) -> ClientStats {
        let c = &self.counters;
        let signaling = &self.signaling.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ClientStats {
            datagrams_sent: get(&c.datagrams_sent),
            datagrams_received: get(&c.datagrams_received),
            rtcp_received: get(&c.rtcp_received),
            invalid_datagrams: get(&c.invalid_datagrams),
            rtp_dropped: get(&c.rtp_dropped),
            events_dropped: get(&signaling.events_dropped),
            invalid_frames: get(&signaling.invalid_frames),
            plis_received: get(&c.plis_received),
            firs_received: get(&c.firs_received),
            keyframe_requests_dropped: get(&c.keyframe_requests_dropped),
        }
    }

    /// True once the connection has ended (either side).
    pub fn is_closed(&self) -> bool {
        self.connection.close_reason().is_some()
    }

    /// Closes the connection (code 0) and, for a client with its own endpoint, waits up to
    /// one second for the close to reach the server.
    pub async fn close(mut self) {
        self.shutdown();
        if let Some(endpoint) = self.own_endpoint.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
        }
    }

    fn shutdown(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
        self.connection.close(CLOSE_NORMAL.into(), b"bye");
    }
}

impl Drop for QuicClient {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Where a client's packets leave: the connection's datagrams, or the SRTP carrier.
#[derive(Clone)]
struct MediaOut {
    connection: quinn::Connection,
    udp: Option<Arc<UdpCarrier>>,
    counters: Arc<Counters>,
}

impl MediaOut {
    fn send(&self, packet: Bytes) -> Result<(), ClientError> {
        match &self.udp {
            None => self.connection.send_datagram(packet)?,
            Some(carrier) => {
                if !carrier.send(&packet)? {
                    return Ok(()); // before media.attached: nowhere to send yet
                }
            }
        }
        bump(&self.counters.datagrams_sent);
        Ok(())
    }
}

/// Sends one RTP stream (as datagrams, or SRTP on the SRTP carrier); cheap to move to its own task.
#[derive(Clone)]
pub struct RtpSender {
    out: MediaOut,
    packetizer: RtpPacketizer,
}

impl RtpSender {
    /// Sends one packet carrying `payload` (an Opus frame: `samples` = 960 for 20 ms), with
    /// the RFC 6464 audio level (`-dBov`, 0..=127) if given.
    pub fn send(&mut self, payload: &[u8], samples: u32, level_dbov: Option<u8>) -> Result<(), ClientError> {
        let packet = self.packetizer.packetize(payload, samples, level_dbov);
        self.out.send(packet)
    }

    /// [`Self::send`] with the RFC 6464 voice flag explicit: `level` = `(-dBov, voice)`.
    pub fn send_level(&mut self, payload: &[u8], samples: u32, level: Option<(u8, bool)>) -> Result<(), ClientError> {
        let packet = self.packetizer.packetize_level(payload, samples, level);
        self.out.send(packet)
    }

    /// Sends one video frame: one packet per payload (each an RFC 7741 descriptor + VP8 data,
    /// within the datagram size), all with the frame's timestamp and the marker bit on the last;
    /// the timestamp then advances by `samples` (90 kHz: 3,000 for 30 fps).
    pub fn send_frame(&mut self, payloads: &[&[u8]], samples: u32) -> Result<(), ClientError> {
        let last = payloads.len().saturating_sub(1);
        for (i, payload) in payloads.iter().enumerate() {
            let packet = self.packetizer.packetize_video(payload, i == last, if i == last { samples } else { 0 });
            self.out.send(packet)?;
        }
        Ok(())
    }

    /// Sends one DTMF tone (RFC 4733 on this audio stream's SSRC, payload type
    /// `quic::TELEPHONE_EVENT_PT`; `event` 0–9, 10 `*`, 11 `#`, 12–15 A–D) lasting 100 ms.
    pub fn send_dtmf(&mut self, event: u8) -> Result<(), ClientError> {
        let pt = palaver_core::protocol::quic::TELEPHONE_EVENT_PT;
        for packet in self.packetizer.telephone_event(pt, event, 800) {
            self.out.send(packet)?;
        }
        Ok(())
    }

    /// The SSRC this sender's packets carry.
    pub fn ssrc(&self) -> u32 {
        self.packetizer.ssrc()
    }

    /// The packetizer (sequence/timestamp state, DTX pauses via `skip`).
    pub fn packetizer(&mut self) -> &mut RtpPacketizer {
        &mut self.packetizer
    }
}

/// The frame reader task; when the server finishes (or breaks) the signaling stream the
/// session is over, so the connection is closed too.
async fn read_signaling(
    connection: quinn::Connection,
    reader: StreamReader,
    signaling: Arc<Signaling>,
    events: mpsc::Sender<ServerMessage>,
    calls: mpsc::Sender<CallEvent>,
) {
    requests::read_frames(reader, signaling, events, Some(calls), Some).await;
    // Keep the server's reason (e.g. access revoked) when it closed the connection itself:
    // a local close would overwrite what `closed()` reports.
    if connection.close_reason().is_none() {
        connection.close(CLOSE_NORMAL.into(), b"signaling ended");
    }
}

/// Where received media goes: RTP to the bounded RTP queue, RTCP counted and its keyframe
/// requests to their own queue (both carriers).
struct Inbox {
    counters: Arc<Counters>,
    rtp: mpsc::Sender<ReceivedRtp>,
    keyframes: mpsc::Sender<KeyframeRequest>,
}

impl Inbox {
    fn deliver(&self, datagram: Bytes, arrival: Instant) {
        let c = &self.counters;
        bump(&c.datagrams_received);
        if is_rtcp(&datagram) {
            bump(&c.rtcp_received);
            for request in keyframe_requests(&datagram, arrival) {
                bump(if request.kind == KeyframeKind::Pli { &c.plis_received } else { &c.firs_received });
                if self.keyframes.try_send(request).is_err() {
                    bump(&c.keyframe_requests_dropped);
                }
            }
            return;
        }
        match ReceivedRtp::parse(datagram, arrival) {
            Ok(packet) => {
                if self.rtp.try_send(packet).is_err() {
                    bump(&c.rtp_dropped);
                }
            }
            Err(_) => bump(&c.invalid_datagrams),
        }
    }
}

async fn read_datagrams(connection: quinn::Connection, inbox: Inbox) {
    while let Ok(datagram) = connection.read_datagram().await {
        inbox.deliver(datagram, Instant::now());
    }
}
