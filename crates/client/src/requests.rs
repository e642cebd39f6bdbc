//! Request plumbing shared by both signaling transports of the client (the QUIC stream of
//! [`crate::QuicClient`] and the WebSocket of [`crate::webrtc::WebRtcClient`]): `requestId`
//! generation, the pending-request map, waiting for an answer with a timeout, the reader loop
//! that routes each server frame to its waiting caller or to the bounded event queue, the
//! heartbeat, and reading the `welcome` / `joined` answers. A transport only supplies how one
//! JSON frame is written ([`FrameWriter`]) and read ([`FrameReader`]).

use crate::ClientError;
use palaver_core::IdentifierModel;
use palaver_core::protocol::calls::CallEvent;
use palaver_core::protocol::{ClientFrame, ClientMessage, ConversationSnapshot, ServerMessage};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Waits for what answers a `resume` sent with `answer`'s request id: `joined` (the new home
/// seated the participant after a takeover), a `snapshot` event for the same participant (the
/// home kept the seat), a `redirect`, or a refusal. Events before the answer are dropped (the
/// snapshot supersedes them), but the answer wins when both are ready: the new home sends
/// `capture.changed` right after `joined`, and that legal notice must stay queued for the caller.
pub(crate) async fn resume_answer(
    mut answer: oneshot::Receiver<ServerMessage>,
    events: &mut mpsc::Receiver<ServerMessage>,
    previous: &Joined,
    timeout: Duration,
) -> Result<Joined, ClientError> {
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            biased;
            reply = &mut answer => return match reply.map_err(|_| ClientError::Closed)? {
                ServerMessage::Joined { resume_token, snapshot, .. } => Ok(Joined::seated(resume_token, snapshot)),
                ServerMessage::Redirect { node, quic, .. } => Err(ClientError::Redirected { node, quic }),
                ServerMessage::Error { code, message, .. } => Err(ClientError::Refused { code, message }),
                other => Err(ClientError::Protocol(format!("expected joined, got {other:?}"))),
            },
            event = events.recv() => match event {
                Some(ServerMessage::Snapshot { snapshot }) if snapshot.participant_id == previous.participant_id => {
                    return Ok(Joined::seated(previous.resume_token.clone(), snapshot));
                }
                Some(_) => {}
                None => return Err(ClientError::Closed),
            },
            _ = &mut deadline => return Err(ClientError::Timeout(timeout)),
        }
    }
}

/// The server's `welcome` frame (read from the frame's JSON, `type` aside).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
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

impl Joined {
    /// The seat a `joined` (or a resumed `snapshot`) describes.
    pub(crate) fn seated(resume_token: String, snapshot: ConversationSnapshot) -> Self {
        Self {
            participant_id: snapshot.participant_id.clone(),
            conversation_id: snapshot.conversation_id.clone(),
            resume_token,
            snapshot,
        }
    }
}

/// Writes one signaling frame on a transport.
pub(crate) trait FrameWriter: Send + Sync + 'static {
    /// Sends `json` (one serialized [`ClientFrame`]) as one frame.
    fn write_json(&self, json: String) -> impl Future<Output = Result<(), ClientError>> + Send;
}

/// Reads signaling frames from a transport.
pub(crate) trait FrameReader: Send + 'static {
    /// The payload of the next frame; `Ok(None)` once the server ended the signaling.
    fn next_frame(&mut self) -> impl Future<Output = Result<Option<Vec<u8>>, ClientError>> + Send;
}

/// Signaling counters (monotonic).
#[derive(Default)]
pub(crate) struct SignalingCounters {
    /// Events dropped because the event queue was full.
    pub events_dropped: AtomicU64,
    /// Server frames that could not be read (skipped).
    pub invalid_frames: AtomicU64,
}

type Waiter = oneshot::Sender<ServerMessage>;

/// The writing half of a signaling connection plus the requests waiting for their answer.
pub(crate) struct Requests<W> {
    writer: W,
    pending: Mutex<HashMap<String, Waiter>>,
    next_request: AtomicU64,
    /// Prefix of the generated `requestId`s (`c1`, `c2`... on QUIC, `w1`... on the WebSocket).
    id_prefix: &'static str,
    pub counters: SignalingCounters,
}

impl<W: FrameWriter> Requests<W> {
    pub fn new(writer: W, id_prefix: &'static str) -> Self {
        Self {
            writer,
            pending: Mutex::new(HashMap::new()),
            next_request: AtomicU64::new(1),
            id_prefix,
            counters: SignalingCounters::default(),
        }
    }

    /// The transport's writer (e.g. to close it).
    pub fn writer(&self) -> &W {
        &self.writer
    }

    async fn write(&self, frame: &ClientFrame) -> Result<(), ClientError> {
        let json = serde_json::to_string(frame).map_err(|e| ClientError::InvalidArgument(e.to_string()))?;
        self.writer.write_json(json).await
    }

    /// Sends `message` without a `requestId`.
    pub async fn send(&self, message: ClientMessage) -> Result<(), ClientError> {
        self.write(&ClientFrame { request_id: None, message }).await
    }

    /// Registers a fresh `requestId` and sends `message` with it; the receiver gets the frame
    /// answering it (`ack`, `joined`, `error`...). Nothing stays registered if sending fails.
    pub async fn send_tracked(
        &self,
        message: ClientMessage,
    ) -> Result<(String, oneshot::Receiver<ServerMessage>), ClientError> {
        let id = format!("{}{}", self.id_prefix, self.next_request.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        self.pending.lock().map_err(|_| ClientError::Closed)?.insert(id.clone(), tx);
        if let Err(e) = self.write(&ClientFrame { request_id: Some(id.clone()), message }).await {
            self.forget(&id);
            return Err(e);
        }
        Ok((id, rx))
    }

    /// Sends `message` with a fresh `requestId` and waits up to `timeout` for the frame
    /// answering it; an `error` answer is [`ClientError::Refused`].
    pub async fn request(&self, message: ClientMessage, timeout: Duration) -> Result<ServerMessage, ClientError> {
        let (id, rx) = self.send_tracked(message).await?;
        match tokio::time::timeout(timeout, rx).await {
            Err(_) => {
                self.forget(&id);
                Err(ClientError::Timeout(timeout))
            }
            Ok(Err(_)) => Err(ClientError::Closed),
            Ok(Ok(ServerMessage::Error { code, message, .. })) => Err(ClientError::Refused { code, message }),
            Ok(Ok(answer)) => Ok(answer),
        }
    }

    /// Joins a conversation: `join` as a request, its `joined` answer as [`Joined`].
    pub async fn join(
        &self,
        target: palaver_core::protocol::JoinTarget,
        display_name: Option<String>,
        timeout: Duration,
    ) -> Result<Joined, ClientError> {
        match self.request(ClientMessage::Join { target, display_name }, timeout).await? {
            ServerMessage::Joined { resume_token, snapshot, .. } => Ok(Joined::seated(resume_token, snapshot)),
            ServerMessage::Redirect { node, quic, .. } => Err(ClientError::Redirected { node, quic }),
            other => Err(ClientError::Protocol(format!("expected joined, got {other:?}"))),
        }
    }

    /// Answers a `call.incoming`: an invitation into a conversation (`join` set) is accepted
    /// by joining it (the [`Joined`] answer), a call between users with `call.accept` (then
    /// `None`; `call.connected` follows as a call event).
    pub async fn accept_call(&self, incoming: &CallEvent, timeout: Duration) -> Result<Option<Joined>, ClientError> {
        let CallEvent::Incoming { call_id, join, .. } = incoming else {
            return Err(ClientError::InvalidArgument("only a call.incoming can be accepted".into()));
        };
        match join {
            Some(target) => self.join(target.clone(), None, timeout).await.map(Some),
            None => {
                self.request(ClientMessage::CallAccept { call_id: call_id.clone() }, timeout).await?;
                Ok(None)
            }
        }
    }

    /// Declines a ringing call or invitation (`call.decline`).
    pub async fn decline_call(&self, call_id: &str, timeout: Duration) -> Result<(), ClientError> {
        self.request(ClientMessage::CallDecline { call_id: call_id.to_owned() }, timeout).await.map(|_| ())
    }

    fn forget(&self, id: &str) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.remove(id);
        }
    }

    /// Hands `message` to the request it answers; gives it back when it answers none that waits.
    fn answer(&self, message: ServerMessage) -> Option<ServerMessage> {
        let Some(id) = answered_request(&message) else {
            return Some(message);
        };
        match self.pending.lock().ok().and_then(|mut p| p.remove(id)) {
            Some(waiter) => {
                let _ = waiter.send(message);
                None
            }
            None => Some(message),
        }
    }

    /// Drops every waiting request (their callers see [`ClientError::Closed`]).
    fn fail_pending(&self) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.clear();
        }
    }
}

fn parse_server(payload: &[u8]) -> Result<ServerMessage, ClientError> {
    serde_json::from_slice(payload).map_err(|e| ClientError::Protocol(format!("unreadable server frame: {e}")))
}

/// A `call.*` frame, if `payload` is one this client knows.
fn parse_call(payload: &[u8]) -> Option<CallEvent> {
    serde_json::from_slice(payload).ok()
}

/// The `requestId` a server frame answers, if any.
fn answered_request(message: &ServerMessage) -> Option<&str> {
    match message {
        ServerMessage::Ack { request_id }
        | ServerMessage::Error { request_id, .. }
        | ServerMessage::Joined { request_id, .. }
        | ServerMessage::Redirect { request_id, .. }
        | ServerMessage::CallPlaced { request_id, .. }
        | ServerMessage::MediaAttached { request_id, .. } => request_id.as_deref(),
        _ => None,
    }
}

/// Reads the first server frame, which must be `welcome` (an `error` frame is
/// [`ClientError::Refused`]).
pub(crate) async fn read_welcome(reader: &mut impl FrameReader) -> Result<Welcome, ClientError> {
    let first = reader.next_frame().await?.ok_or(ClientError::Closed)?;
    match parse_server(&first)? {
        // A valid `welcome` frame has exactly the fields of [`Welcome`].
        ServerMessage::Welcome { .. } => {
            serde_json::from_slice(&first).map_err(|e| ClientError::Protocol(format!("unreadable welcome frame: {e}")))
        }
        ServerMessage::Error { code, message, .. } => Err(ClientError::Refused { code, message }),
        other => Err(ClientError::Protocol(format!("expected welcome, got {other:?}"))),
    }
}

/// The reader task: until the signaling ends, each server frame goes to the request it
/// answers, else (`pong` aside) through `divert` (which may take it, e.g. `media.answer`) to
/// `events`; when `events` is full the frame is dropped and counted. Unreadable frames are
/// skipped and counted. When the signaling ends, every waiting request fails.
pub(crate) async fn read_frames<W: FrameWriter>(
    mut reader: impl FrameReader,
    requests: Arc<Requests<W>>,
    events: mpsc::Sender<ServerMessage>,
    calls: Option<mpsc::Sender<CallEvent>>,
    mut divert: impl FnMut(ServerMessage) -> Option<ServerMessage> + Send,
) {
    let counters = &requests.counters;
    loop {
        let payload = match reader.next_frame().await {
            Ok(Some(payload)) => payload,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "signaling ended");
                break;
            }
        };
        let message = match parse_server(&payload) {
            Ok(m) => m,
            Err(e) => {
                // A `call.*` frame (a call between users, an invitation, a move) goes to the
                // call-event queue when there is one.
                if let Some((calls, event)) = calls.as_ref().zip(parse_call(&payload)) {
                    if calls.try_send(event).is_err() {
                        counters.events_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    continue;
                }
                tracing::debug!(error = %e, "skipping a server frame");
                counters.invalid_frames.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        let Some(message) = requests.answer(message) else { continue };
        if matches!(message, ServerMessage::Pong { .. }) {
            continue;
        }
        if let Some(event) = divert(message)
            && events.try_send(event).is_err()
        {
            counters.events_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
    requests.fail_pending();
}

/// The heartbeat task: `ping` every `period` (from `heartbeatIntervalMs`) until a write fails.
pub(crate) async fn heartbeat<W: FrameWriter>(requests: Arc<Requests<W>>, period: Duration) {
    let mut tick = tokio::time::interval(period);
    tick.tick().await;
    loop {
        tick.tick().await;
        if requests.send(ClientMessage::Ping { nonce: None }).await.is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests;
