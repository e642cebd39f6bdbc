//! [`QuicClient`]: one participant connection. Connecting authenticates on the signaling
//! stream and waits for `welcome`; three tasks then run until the connection ends: the frame
//! reader (answers to requests go to their waiting caller by `requestId`, everything else to
//! the bounded event queue), the datagram reader (RTP to the bounded RTP queue, RTCP counted),
//! and the heartbeat (`ping` every `heartbeatIntervalMs`).

use crate::rtp::{ReceivedRtp, RtpPacketizer, is_rtcp};
use crate::{ClientError, ConnectOptions, client_endpoint, tls};
use bytes::Bytes;
use palaver_core::IdentifierModel;
use palaver_core::protocol::{
    AuthFrame, ClientFrame, ClientMessage, ConversationSnapshot, JoinTarget, MediaTrack, ServerMessage,
};
use palaver_core::stream_frame::{Decoded, FrameDecoder, frame_bytes};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// The server's `welcome` frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    pub protocol_version: u32,
    pub connection_id: String,
    pub identifier: IdentifierModel,
    pub display_name: String,
    pub heartbeat_interval_ms: u64,
    pub idle_timeout_ms: u64,
    pub max_frame_bytes: usize,
    pub token_expires_at_ms: i64,
}

/// The answer to `join`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub participant_id: String,
    pub conversation_id: String,
    /// The secret to `resume` this participant from another connection.
    pub resume_token: String,
    /// The conversation as seen on joining (`snapshot.state` is `lobby` while waiting).
    pub snapshot: ConversationSnapshot,
}

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
}

#[derive(Default)]
struct Counters {
    datagrams_sent: AtomicU64,
    datagrams_received: AtomicU64,
    rtcp_received: AtomicU64,
    invalid_datagrams: AtomicU64,
    rtp_dropped: AtomicU64,
    events_dropped: AtomicU64,
    invalid_frames: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

type Pending = Mutex<HashMap<String, oneshot::Sender<ServerMessage>>>;

struct Shared {
    send: tokio::sync::Mutex<quinn::SendStream>,
    pending: Pending,
    next_request: AtomicU64,
    counters: Counters,
}

impl Shared {
    async fn write(&self, frame: &ClientFrame) -> Result<(), ClientError> {
        let json = serde_json::to_vec(frame).map_err(|e| ClientError::InvalidArgument(e.to_string()))?;
        self.send.lock().await.write_all(&frame_bytes(&json)).await?;
        Ok(())
    }

    fn forget(&self, id: &str) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.remove(id);
        }
    }
}

/// A participant connected over QUIC. Dropping it closes the connection.
pub struct QuicClient {
    connection: quinn::Connection,
    shared: Arc<Shared>,
    welcome: Welcome,
    events: mpsc::Receiver<ServerMessage>,
    rtp: Option<mpsc::Receiver<ReceivedRtp>>,
    tasks: Vec<JoinHandle<()>>,
    timeout: Duration,
    /// The endpoint this client bound itself (closed with it); `None` when shared.
    own_endpoint: Option<quinn::Endpoint>,
}

impl std::fmt::Debug for QuicClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuicClient")
            .field("connection_id", &self.welcome.connection_id)
            .field("remote", &self.connection.remote_address())
            .finish_non_exhaustive()
    }
}

/// Reads the next complete frame; `Ok(None)` when the server finished the stream.
async fn read_frame(recv: &mut quinn::RecvStream, decoder: &mut FrameDecoder) -> Result<Option<Vec<u8>>, ClientError> {
    loop {
        match decoder.next_frame().map_err(|e| ClientError::Protocol(e.to_string()))? {
            Some(Decoded::Frame(payload)) => return Ok(Some(payload)),
            Some(Decoded::Oversized(len)) => {
                return Err(ClientError::Protocol(format!("the server sent a {len}-byte frame")));
            }
            None => {}
        }
        match recv.read_chunk(64 * 1024, true).await {
            Ok(Some(chunk)) => decoder.push(&chunk.bytes),
            Ok(None) => return Ok(None),
            Err(e) => return Err(ClientError::Read(e.to_string())),
        }
    }
}

fn parse_server(payload: &[u8]) -> Result<ServerMessage, ClientError> {
    serde_json::from_slice(payload).map_err(|e| ClientError::Protocol(format!("unreadable server frame: {e}")))
}

/// The `requestId` a server frame answers, if any.
fn answered_request(message: &ServerMessage) -> Option<&str> {
    match message {
        ServerMessage::Ack { request_id }
        | ServerMessage::Error { request_id, .. }
        | ServerMessage::Joined { request_id, .. }
        | ServerMessage::CallPlaced { request_id, .. }
        | ServerMessage::MediaAttached { request_id, .. } => request_id.as_deref(),
        _ => None,
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
            let (mut send, mut recv) = connection.open_bi().await?;
            let auth = serde_json::to_vec(&AuthFrame { token: token.to_string() })
                .map_err(|e| ClientError::InvalidArgument(e.to_string()))?;
            send.write_all(&frame_bytes(&auth)).await?;
            let mut decoder = FrameDecoder::new();
            let first = read_frame(&mut recv, &mut decoder).await?.ok_or(ClientError::Closed)?;
            let welcome = match parse_server(&first)? {
                ServerMessage::Welcome {
                    protocol_version,
                    connection_id,
                    identifier,
                    display_name,
                    heartbeat_interval_ms,
                    idle_timeout_ms,
                    max_frame_bytes,
                    token_expires_at_ms,
                } => Welcome {
                    protocol_version,
                    connection_id,
                    identifier,
                    display_name,
                    heartbeat_interval_ms,
                    idle_timeout_ms,
                    max_frame_bytes,
                    token_expires_at_ms,
                },
                ServerMessage::Error { code, message, .. } => return Err(ClientError::Refused { code, message }),
                other => return Err(ClientError::Protocol(format!("expected welcome, got {other:?}"))),
            };
            Ok::<_, ClientError>((connection, send, recv, decoder, welcome))
        };
        let (connection, send, recv, decoder, welcome) = tokio::time::timeout(options.timeout, handshake)
            .await
            .map_err(|_| ClientError::Timeout(options.timeout))??;
        let shared = Arc::new(Shared {
            send: tokio::sync::Mutex::new(send),
            pending: Mutex::new(HashMap::new()),
            next_request: AtomicU64::new(1),
            counters: Counters::default(),
        });
        let (events_tx, events) = mpsc::channel(options.event_queue.max(1));
        let (rtp_tx, rtp) = mpsc::channel(options.rtp_queue.max(1));
        let tasks = vec![
            tokio::spawn(read_frames(connection.clone(), recv, decoder, shared.clone(), events_tx)),
            tokio::spawn(read_datagrams(connection.clone(), shared.clone(), rtp_tx)),
            tokio::spawn(heartbeat(shared.clone(), Duration::from_millis(welcome.heartbeat_interval_ms.max(100)))),
        ];
        Ok(Self { connection, shared, welcome, events, rtp: Some(rtp), tasks, timeout: options.timeout, own_endpoint })
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
        let id = format!("c{}", self.shared.next_request.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        self.shared.pending.lock().map_err(|_| ClientError::Closed)?.insert(id.clone(), tx);
        if let Err(e) = self.shared.write(&ClientFrame { request_id: Some(id.clone()), message }).await {
            self.shared.forget(&id);
            return Err(e);
        }
        match tokio::time::timeout(self.timeout, rx).await {
            Err(_) => {
                self.shared.forget(&id);
                Err(ClientError::Timeout(self.timeout))
            }
            Ok(Err(_)) => Err(ClientError::Closed),
            Ok(Ok(ServerMessage::Error { code, message, .. })) => Err(ClientError::Refused { code, message }),
            Ok(Ok(answer)) => Ok(answer),
        }
    }

    /// Sends `message` without waiting for anything (its answers, if any, arrive as events).
    pub async fn send(&self, message: ClientMessage) -> Result<(), ClientError> {
        self.shared.write(&ClientFrame { request_id: None, message }).await
    }

    /// Joins a conversation (meeting link, meeting code + passcode, group call, room).
    pub async fn join(&self, target: JoinTarget, display_name: Option<String>) -> Result<Joined, ClientError> {
        match self.request(ClientMessage::Join { target, display_name }).await? {
            ServerMessage::Joined { resume_token, snapshot, .. } => Ok(Joined {
                participant_id: snapshot.participant_id.clone(),
                conversation_id: snapshot.conversation_id.clone(),
                resume_token,
                snapshot,
            }),
            other => Err(ClientError::Protocol(format!("expected joined, got {other:?}"))),
        }
    }

    /// Starts (or replaces) this participant's datagram media: `tracks` are the streams this
    /// client sends (empty for a listener); returns the streams the server sends it.
    pub async fn attach_media(&self, tracks: Vec<MediaTrack>) -> Result<Vec<MediaTrack>, ClientError> {
        match self.request(ClientMessage::MediaAttach { tracks }).await? {
            ServerMessage::MediaAttached { tracks, .. } => Ok(tracks),
            other => Err(ClientError::Protocol(format!("expected media.attached, got {other:?}"))),
        }
    }

    /// Leaves the conversation (the connection stays open); `session.ended` follows as an event.
    pub async fn leave(&self) -> Result<(), ClientError> {
        self.send(ClientMessage::Leave).await
    }

    /// A sender for one outgoing RTP stream (declare its SSRC in [`Self::attach_media`] first).
    pub fn rtp_sender(&self, ssrc: u32, payload_type: u8) -> RtpSender {
        RtpSender {
            connection: self.connection.clone(),
            shared: self.shared.clone(),
            packetizer: RtpPacketizer::new(ssrc, payload_type),
        }
    }

    /// Sends one raw datagram (an RTP or RTCP packet built by the caller).
    pub fn send_datagram(&self, packet: Bytes) -> Result<(), ClientError> {
        self.connection.send_datagram(packet)?;
        bump(&self.shared.counters.datagrams_sent);
        Ok(())
    }

    /// The next event: any server frame that does not answer a request (`roster.delta`,
    /// `snapshot`, `capture.changed`, `session.ended`, `token.expiring`, unsolicited `error`...).
    /// `None` once the connection is closed and the queue is drained.
    pub async fn next_event(&mut self) -> Option<ServerMessage> {
        self.events.recv().await
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
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ClientStats {
            datagrams_sent: get(&c.datagrams_sent),
            datagrams_received: get(&c.datagrams_received),
            rtcp_received: get(&c.rtcp_received),
            invalid_datagrams: get(&c.invalid_datagrams),
            rtp_dropped: get(&c.rtp_dropped),
            events_dropped: get(&c.events_dropped),
            invalid_frames: get(&c.invalid_frames),
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
        self.connection.close(0u32.into(), b"bye");
    }
}

impl Drop for QuicClient {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Sends one RTP stream as datagrams; cheap to move to its own task.
#[derive(Clone)]
pub struct RtpSender {
    connection: quinn::Connection,
    shared: Arc<Shared>,
    packetizer: RtpPacketizer,
}

impl RtpSender {
    /// Sends one packet carrying `payload` (an Opus frame: `samples` = 960 for 20 ms), with
    /// the RFC 6464 audio level (`-dBov`, 0..=127) if given.
    pub fn send(&mut self, payload: &[u8], samples: u32, level_dbov: Option<u8>) -> Result<(), ClientError> {
        let packet = self.packetizer.packetize(payload, samples, level_dbov);
        self.connection.send_datagram(packet)?;
        bump(&self.shared.counters.datagrams_sent);
        Ok(())
    }

    /// The packetizer (sequence/timestamp state, DTX pauses via `skip`).
    pub fn packetizer(&mut self) -> &mut RtpPacketizer {
        &mut self.packetizer
    }
}

async fn read_frames(
    connection: quinn::Connection,
    mut recv: quinn::RecvStream,
    mut decoder: FrameDecoder,
    shared: Arc<Shared>,
    events: mpsc::Sender<ServerMessage>,
) {
    loop {
        let payload = match read_frame(&mut recv, &mut decoder).await {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "signaling stream ended");
                break;
            }
        };
        let message = match parse_server(&payload) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(error = %e, "skipping a server frame");
                bump(&shared.counters.invalid_frames);
                continue;
            }
        };
        if let Some(id) = answered_request(&message) {
            let waiter = shared.pending.lock().ok().and_then(|mut p| p.remove(id));
            if let Some(waiter) = waiter {
                let _ = waiter.send(message);
                continue;
            }
        }
        if matches!(message, ServerMessage::Pong { .. }) {
            continue;
        }
        if events.try_send(message).is_err() {
            bump(&shared.counters.events_dropped);
        }
    }
    if let Ok(mut pending) = shared.pending.lock() {
        pending.clear();
    }
    // The server finished (or broke) the signaling stream: the session is over.
    connection.close(0u32.into(), b"signaling ended");
}

async fn read_datagrams(connection: quinn::Connection, shared: Arc<Shared>, rtp: mpsc::Sender<ReceivedRtp>) {
    while let Ok(datagram) = connection.read_datagram().await {
        let arrival = Instant::now();
        let c = &shared.counters;
        bump(&c.datagrams_received);
        if is_rtcp(&datagram) {
            bump(&c.rtcp_received);
            continue;
        }
        match ReceivedRtp::parse(datagram, arrival) {
            Ok(packet) => {
                if rtp.try_send(packet).is_err() {
                    bump(&c.rtp_dropped);
                }
            }
            Err(_) => bump(&c.invalid_datagrams),
        }
    }
}

async fn heartbeat(shared: Arc<Shared>, period: Duration) {
    let mut tick = tokio::time::interval(period);
    tick.tick().await;
    loop {
        tick.tick().await;
        let ping = ClientFrame { request_id: None, message: ClientMessage::Ping { nonce: None } };
        if shared.write(&ping).await.is_err() {
            break;
        }
    }
}
