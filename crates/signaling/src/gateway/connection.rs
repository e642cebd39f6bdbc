//! One task per signaling connection (a WebSocket, or any other frame stream such as a QUIC
//! stream, through [`serve_frames`]): reads and validates client frames (size, rate, JSON,
//! type), answers heartbeats, resolves join targets (meeting link / code + passcode, group id,
//! room), routes commands to the conversation actor or the call actor, writes queued
//! frames, and reports a dropped connection so the reconnect grace period starts.

use super::Gateway;
use super::PresenceEntry;
use super::actor::{ActorMsg, ConversationHandle};
use super::calls::{CallMedia, CallMediaRequest};
use super::limits::{FloodGuard, FrameVerdict};
use super::placement::{RelayCredential, RelayLink};
use super::user_bus::CallMediaRoute;
use crate::app::AppState;
use crate::auth::{Credential, Door};
use crate::domain::Refusal;
use crate::domain::calls::{CallEvent, Input as CallInput, Party};
use crate::domain::conversation::participant::display_name_for;
use crate::domain::conversation::{Command, ConversationSetup, Input, JoinIdentity, JoinRequest};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use base64::Engine;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use palaver_core::MediaPathId;
use palaver_core::protocol::{
    ClientFrame, ClientMessage, ConnectionClose, JoinTarget, MAX_FRAME_BYTES, PROTOCOL_VERSION, ServerMessage,
};
use palaver_core::time::now_ms;
use palaver_core::{EndReason, ErrorCode, Scope, ScopeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

mod placing;

/// Queue of frames and notices for one socket.
pub(crate) type ConnTx = mpsc::Sender<Outbound>;

pub(crate) enum Outbound {
    /// A ready JSON text frame.
    Frame(Arc<str>),
    /// The participant's session ended (`reason`), its join was refused (`None`), or
    /// another socket resumed it (`None`): stop routing to that conversation, then write
    /// `frames` (the `session.ended` or the refusal), so a client that answers them with a
    /// new `join` finds the socket free.
    Detached { participant_id: String, reason: Option<EndReason>, frames: Vec<Arc<str>> },
    /// This socket's participant of call `call_id` was moved into the conversation `join`
    /// names (Call Automation `participants:moveHere`): write `call.moved`, then join it as if
    /// the client had sent `join` (no ringing; the conversation's admission rules apply).
    MoveInto { call_id: String, join: JoinTarget },
    /// The socket fell too far behind: close it (the participant is already `reconnecting`).
    Overflowed,
    /// The user's tokens issued before this mark were revoked (or the identity deleted): end
    /// the session (if the socket's own token is older) and close.
    AccessRevoked { revoked_before_ms: i64 },
}

/// Who is on the other end, from the verified token (see [`super::authenticate`]).
#[derive(Debug, Clone)]
pub struct ConnIdentity {
    pub(crate) identity: JoinIdentity,
    pub(crate) scopes: ScopeSet,
    pub(crate) door: Door,
    /// `iatms` of the access token the connection holds (`None`: an IdP token).
    pub(crate) issued_at_ms: Option<i64>,
    /// The credential itself, for relaying the connection to a conversation's home node.
    pub(crate) credential: Option<RelayCredential>,
    /// The connection came over the node mesh from another node: never relayed again.
    pub(crate) relayed: bool,
}

impl ConnIdentity {
    /// The raw id of the authenticated user (`8:acs:...`, `8:orgid:...`).
    pub fn raw_id(&self) -> String {
        self.identity.raw_id()
    }

    /// Mark a connection relayed from another node over the mesh (docs/cluster.md): its joins
    /// are hosted here or refused, never relayed once more.
    pub fn relayed_from_peer(mut self) -> Self {
        self.relayed = true;
        self
    }
}

struct Attachment {
    handle: ConversationHandle,
    participant_id: String,
}

struct Connection {
    state: AppState,
    gateway: Gateway,
    conn_id: String,
    tx: ConnTx,
    ident: ConnIdentity,
    attached: Option<Attachment>,
    guard: FloodGuard,
    token_warned: bool,
    /// The connection's datagram path for `media.attach` (QUIC connections only).
    media_path: Option<MediaPathId>,
    /// The text of the `join` or `resume` frame being handled (forwarded as is when relayed).
    join_text: Option<String>,
    /// Set when a join's conversation lives on another node: the loop hands the socket over.
    relay: Option<RelayLink>,
}

fn frame(msg: &ServerMessage) -> String {
    msg.to_json()
}

/// Serve one authenticated WebSocket until it closes.
pub(crate) async fn run(state: AppState, ident: ConnIdentity, socket: WebSocket) {
    let (mut sink, stream) = socket.split();
    // RFC 6455 §8.1: a text frame that is not valid UTF-8 fails the connection, and §7.1.7 asks
    // for a close frame first: 1007 "invalid frame payload data" (the reader refuses the frame).
    let invalid_utf8 = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = invalid_utf8.clone();
    let stream = stream.inspect(move |read| {
        if let Err(e) = read
            && is_invalid_utf8(e)
        {
            seen.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    });
    serve_frames(state, ident, &mut sink, stream, None).await;
    if invalid_utf8.load(std::sync::atomic::Ordering::Relaxed) {
        let close = CloseFrame { code: INVALID_PAYLOAD_CLOSE_CODE, reason: "invalid UTF-8 in a text frame".into() };
        let _ = sink.send(Message::Close(Some(close))).await;
    }
}

/// WebSocket close code 1007 (RFC 6455 §7.4.1: data inconsistent with the message type).
pub const INVALID_PAYLOAD_CLOSE_CODE: u16 = 1007;

/// The WebSocket reader's "not UTF-8" error (tungstenite's `Error::Utf8`, seen through axum).
fn is_invalid_utf8(e: &axum::Error) -> bool {
    let inner = std::error::Error::source(e).map(|s| s.to_string()).unwrap_or_else(|| e.to_string());
    inner.starts_with("UTF-8 encoding error")
}

/// The WebSocket close frame of a server-initiated close.
fn close_message(close: ConnectionClose) -> Message {
    Message::Close(Some(CloseFrame { code: close.websocket_code(), reason: close.reason().into() }))
}

/// Serve one authenticated signaling connection carried by any frame transport until it closes:
/// `stream` yields the client's frames (text = one JSON frame; binary is refused with an error
/// frame; an `Err` or the end of the stream closes), `sink` takes the server's frames (`Text`,
/// heartbeat `Ping`s a transport without them may ignore, and a final `Close`). The server sends
/// `welcome` first. `media_path` is the connection's datagram path (QUIC), which enables
/// `media.attach`; `None` refuses it. Returns why the server ended the connection, if it did
/// for a reason the transport must tell the client (a QUIC shell closes with its code).
pub async fn serve_frames<Tx, Rx, E>(
    state: AppState,
    ident: ConnIdentity,
    mut sink: Tx,
    mut stream: Rx,
    media_path: Option<MediaPathId>,
) -> Option<ConnectionClose>
where
    Tx: Sink<Message> + Unpin + Send,
    Rx: Stream<Item = Result<Message, E>> + Unpin + Send,
{
    let gateway = state.gateway.clone();
    let cfg = gateway.config();
    let conn_id = uuid::Uuid::new_v4().to_string();
    let raw_id = ident.identity.raw_id();
    let (tx, mut rx) = mpsc::channel(cfg.outbound_queue.max(16));
    let native = ident.door == Door::NativeIdp;
    if !gateway.presence_add(&raw_id, PresenceEntry { conn_id: conn_id.clone(), tx: tx.clone(), native }) {
        let refusal = super::socket_cap_refusal(cfg.max_sockets_per_identity);
        gateway.record_error(refusal.code);
        tracing::info!(user = %raw_id, "signaling connection refused: too many open for this identity");
        let _ =
            sink.send(Message::Text(frame(&ServerMessage::error(refusal.code, refusal.message, None)).into())).await;
        let _ = sink.send(Message::Close(None)).await;
        return None;
    }
    let mut conn = Connection {
        state,
        gateway: gateway.clone(),
        conn_id: conn_id.clone(),
        tx,
        guard: FloodGuard::new(cfg.rate_limit, now_ms()),
        ident,
        attached: None,
        token_warned: false,
        media_path,
        join_text: None,
        relay: None,
    };
    tracing::debug!(conn = %conn_id, user = %raw_id, "signaling socket opened");

    let welcome = ServerMessage::Welcome {
        protocol_version: PROTOCOL_VERSION,
        connection_id: conn_id.clone(),
        identifier: conn.ident.identity.identifier.to_model(),
        display_name: display_name_for(&conn.ident.identity, None),
        heartbeat_interval_ms: cfg.heartbeat_interval_ms,
        idle_timeout_ms: cfg.idle_timeout_ms,
        max_frame_bytes: MAX_FRAME_BYTES,
        token_expires_at_ms: conn.ident.identity.token_expires_at_ms,
    };
    let mut open = sink.send(Message::Text(frame(&welcome).into())).await.is_ok();
    let mut heartbeat = tokio::time::interval(Duration::from_millis(cfg.heartbeat_interval_ms.max(100)));
    heartbeat.tick().await;
    let mut last_inbound = Instant::now();
    let idle = Duration::from_millis(cfg.idle_timeout_ms);
    let mut closed_by_server = None;

    while open {
        let token_wait = conn.detached_token_wait(cfg.token_refresh_lead_ms);
        let mut replies = Vec::new();
        tokio::select! {
            incoming = stream.next() => match incoming {
                None | Some(Err(_)) => break,
                Some(Ok(Message::Close(_))) => break,
                Some(Ok(msg)) => {
                    last_inbound = Instant::now();
                    // Every frame counts against the rate limit, protocol pings and pongs too:
                    // over it the frame is dropped, one error frame a second tells the client,
                    // and a client that keeps flooding is closed (1008).
                    match (conn.guard.on_frame(now_ms()), msg) {
                        (FrameVerdict::Close, _) => {
                            tracing::info!(conn = %conn_id, user = %raw_id, "client kept flooding over its rate limit: closing");
                            gateway.record_error(ErrorCode::TooManyRequests);
                            closed_by_server = Some(ConnectionClose::RateLimited);
                            break;
                        }
                        (FrameVerdict::DropWithError, _) => {
                            replies = conn.error(ErrorCode::TooManyRequests, "too many frames; slow down", None);
                        }
                        (FrameVerdict::Drop, _) => {}
                        (FrameVerdict::Accept, Message::Text(text)) => {
                            replies = conn.on_text(text.as_str()).await;
                            if conn.relay.is_some() {
                                break;
                            }
                        }
                        (FrameVerdict::Accept, Message::Binary(_)) => {
                            replies = conn.error(ErrorCode::InvalidJson, "binary frames are not supported; send JSON text", None)
                        }
                        (FrameVerdict::Accept, _) => {}
                    }
                }
            },
            out = rx.recv() => match out {
                Some(Outbound::Frame(text)) => replies.push(text.to_string()),
                Some(Outbound::Detached { participant_id, reason, frames }) => {
                    if conn.attached.as_ref().is_some_and(|a| a.participant_id == participant_id) {
                        conn.attached = None;
                    }
                    replies.extend(frames.iter().map(|text| text.to_string()));
                    if matches!(reason, Some(EndReason::TokenExpired | EndReason::TokenRevoked)) {
                        for text in replies.drain(..) {
                            let _ = sink.send(Message::Text(text.into())).await;
                        }
                        if reason == Some(EndReason::TokenExpired) {
                            let _ = sink.send(Message::Close(None)).await;
                        } else {
                            closed_by_server = Some(ConnectionClose::AccessRevoked);
                        }
                        break;
                    }
                }
                Some(Outbound::MoveInto { call_id, join }) => {
                    tracing::info!(conn = %conn_id, user = %raw_id, call = %call_id, "moved into a conversation");
                    let moved = CallEvent::Moved { call_id, join: join.clone() };
                    replies.push(serde_json::to_string(&moved).unwrap_or_default());
                    // In a cluster the conversation may live on another node: the join is
                    // relayed there as if the client had sent it.
                    conn.join_text = serde_json::to_string(&ClientMessage::Join { target: join.clone(), display_name: None }).ok();
                    replies.extend(conn.join(None, join, None, None).await);
                    if conn.relay.is_some() {
                        for text in replies.drain(..) {
                            let _ = sink.send(Message::Text(text.into())).await;
                        }
                        break;
                    }
                }
                Some(Outbound::AccessRevoked { revoked_before_ms }) => {
                    if conn.ident.issued_at_ms.is_some_and(|iat| iat >= revoked_before_ms) {
                        continue; // a token issued after the revocation
                    }
                    tracing::info!(conn = %conn_id, user = %raw_id, "access revoked: ending the connection");
                    // In a conversation, the session ends first (billing closes it as
                    // `TokenRevoked`, the client reads `session.ended`); its `Detached` closes us.
                    if let Some(a) = &conn.attached {
                        let input = Input::AccessRevoked { participant_id: a.participant_id.clone() };
                        if a.handle.tx.send(ActorMsg::Input(input)).await.is_ok() {
                            continue;
                        }
                        conn.attached = None;
                    }
                    gateway.record_error(ErrorCode::TokenRevoked);
                    let end = ServerMessage::error(ErrorCode::TokenRevoked, "the access token has been revoked", None);
                    let _ = sink.send(Message::Text(frame(&end).into())).await;
                    closed_by_server = Some(ConnectionClose::AccessRevoked);
                    break;
                }
                Some(Outbound::Overflowed) => {
                    conn.attached = None;
                    let _ = sink.send(Message::Close(None)).await;
                    break;
                }
                None => break,
            },
            _ = heartbeat.tick() => {
                if last_inbound.elapsed() > idle {
                    tracing::debug!(conn = %conn_id, "no inbound frame within the idle timeout");
                    break;
                }
                open = sink.send(Message::Ping(Vec::new().into())).await.is_ok();
            }
            _ = tokio::time::sleep(token_wait.unwrap_or(Duration::ZERO)), if token_wait.is_some() => {
                let now = now_ms();
                let exp = conn.ident.identity.token_expires_at_ms;
                if now >= exp {
                    gateway.record_error(ErrorCode::TokenExpired);
                    let end = ServerMessage::error(ErrorCode::TokenExpired, "the access token expired", None);
                    let _ = sink.send(Message::Text(frame(&end).into())).await;
                    let _ = sink.send(Message::Close(None)).await;
                    break;
                }
                conn.token_warned = true;
                replies.push(frame(&ServerMessage::TokenExpiring { expires_at_ms: exp }));
            }
        }
        for text in replies {
            if sink.send(Message::Text(text.into())).await.is_err() {
                open = false;
                break;
            }
        }
    }

    // The conversation lives on another node: from now on this socket only carries frames.
    if let Some(link) = conn.relay.take() {
        let every = Duration::from_millis(cfg.heartbeat_interval_ms.max(100));
        super::placement::relay_frames(&mut sink, &mut stream, &mut rx, link, every).await;
    }
    if let Some(close) = closed_by_server {
        let _ = sink.send(close_message(close)).await;
    }
    if let Some(a) = conn.attached.take() {
        let _ = a
            .handle
            .tx
            .send(ActorMsg::ConnectionLost { participant_id: a.participant_id, conn_id: conn_id.clone() })
            .await;
    }
    if gateway.presence_remove(&raw_id, &conn_id) {
        gateway.schedule_user_gone(raw_id.clone());
    }
    tracing::debug!(conn = %conn_id, user = %raw_id, "signaling socket closed");
    closed_by_server
}

impl Connection {
    /// An error frame for this socket, counted by code on `/metrics`.
    fn error(&self, code: ErrorCode, message: impl Into<String>, request_id: Option<String>) -> Vec<String> {
        self.gateway.record_error(code);
        vec![frame(&ServerMessage::error(code, message, request_id))]
    }

    /// While not in a conversation the socket itself watches token expiry (the conversation does otherwise).
    fn detached_token_wait(&self, lead_ms: i64) -> Option<Duration> {
        if self.attached.is_some() {
            return None;
        }
        let exp = self.ident.identity.token_expires_at_ms;
        let at = if self.token_warned { exp } else { exp - lead_ms };
        Some(Duration::from_millis((at - now_ms()).max(0) as u64))
    }

    async fn on_text(&mut self, text: &str) -> Vec<String> {
        match ClientFrame::parse(text) {
            Err(e) => self.error(e.code(), e.to_string(), e.request_id()),
            Ok(f) => {
                if matches!(f.message, ClientMessage::Join { .. } | ClientMessage::Resume { .. })
                    && self.gateway.home_router().is_some()
                {
                    self.join_text = Some(text.to_string());
                }
                self.dispatch(f).await
            }
        }
    }

    async fn dispatch(&mut self, f: ClientFrame) -> Vec<String> {
        let rid = f.request_id;
        use ClientMessage as M;
        let command = match f.message {
            M::Ping { nonce } => return vec![frame(&ServerMessage::Pong { nonce })],
            M::Join { target, display_name } => return self.join(rid, target, display_name, None).await,
            M::Resume { conversation_id, participant_id, resume_token } => {
                return self.resume(rid, conversation_id, participant_id, resume_token).await;
            }
            M::TokenRefresh { token } => return self.refresh(rid, token).await,
            M::CallPlace { targets } => return self.place_call(rid, targets).await,
            M::CallAccept { call_id } => {
                let callee = self.party();
                let endpoint = self.conn_id.clone();
                return self.call(rid, CallInput::Accept { call_id, callee, endpoint }).await;
            }
            M::CallDecline { call_id } => {
                if self.gateway.ca_decline_invitation(&call_id, &self.raw_id()) {
                    return vec![frame(&ServerMessage::Ack { request_id: rid })];
                }
                return self.call(rid, CallInput::Decline { call_id, user: self.raw_id() }).await;
            }
            M::CallCancel { call_id } => {
                return self.call(rid, CallInput::Cancel { call_id, user: self.raw_id() }).await;
            }
            M::CallHangUp { call_id } => {
                return self.call(rid, CallInput::HangUp { call_id, user: self.raw_id() }).await;
            }
            M::CallAddParticipant { call_id, target } => {
                return self.call(rid, CallInput::AddParticipant { call_id, by: self.raw_id(), target }).await;
            }
            M::CallTransfer { call_id, target } => {
                return self.call(rid, CallInput::Transfer { call_id, by: self.raw_id(), target }).await;
            }
            M::Leave => Command::Leave,
            M::LobbyAdmit { participant_id } => Command::Admit { participant_id },
            M::LobbyDeny { participant_id } => Command::Deny { participant_id },
            M::ParticipantRemove { participant_id } => Command::Remove { participant_id },
            M::ParticipantMute { participant_id } => Command::MuteOther { participant_id },
            M::ParticipantSetRole { participant_id, role } => Command::SetRole { participant_id, role },
            M::SelfMute { muted } => Command::SelfMute { muted },
            M::SelfRaiseHand { raised } => Command::RaiseHand { raised },
            M::ScreenShareStart => Command::ScreenShare { active: true },
            M::ScreenShareStop => Command::ScreenShare { active: false },
            M::RecordingStart => Command::Recording { active: true },
            M::RecordingStop => Command::Recording { active: false },
            M::TranscriptionStart => Command::Transcription { active: true },
            M::TranscriptionStop => Command::Transcription { active: false },
            M::MeetingUpdatePolicy { policy } => Command::UpdatePolicy(policy),
            M::MeetingEnd => Command::EndMeeting,
            M::DialOut { phone_number } => Command::DialOut { phone_number },
            M::MediaOffer { sdp, call_id: Some(call_id) } => {
                return self.call_media(rid, call_id, CallMedia::Offer(sdp)).await;
            }
            M::MediaIceCandidate { candidate, call_id: Some(call_id) } => {
                return self.call_media(rid, call_id, CallMedia::IceCandidate(candidate)).await;
            }
            M::MediaOffer { sdp, call_id: None } => Command::MediaOffer { sdp, request_id: rid.clone() },
            M::MediaAttach { tracks, receive, call_id: Some(call_id) } => match self.media_path {
                Some(path) => return self.call_media(rid, call_id, CallMedia::Attach { path, tracks, receive }).await,
                None => {
                    let message = "media.attach needs a QUIC connection; WebSocket clients send media.offer";
                    return self.error(ErrorCode::BadRequest, message, rid);
                }
            },
            M::MediaAttach { tracks, receive, call_id: None } => match self.media_path {
                Some(path) => Command::MediaAttach { path, tracks, receive, request_id: rid.clone() },
                None => {
                    let message = "media.attach needs a QUIC connection; WebSocket clients send media.offer";
                    return self.error(ErrorCode::BadRequest, message, rid);
                }
            },
            M::MediaIceCandidate { candidate, call_id: None } => Command::MediaIceCandidate(candidate),
            M::MediaSubscribe { slots } => Command::MediaSubscribe { slots },
        };
        self.forward_to_conversation(rid, command).await
    }

    fn raw_id(&self) -> String {
        self.ident.identity.raw_id()
    }

    fn party(&self) -> Party {
        Party::new(self.raw_id(), display_name_for(&self.ident.identity, None))
    }

    async fn forward_to_conversation(&mut self, rid: Option<String>, command: Command) -> Vec<String> {
        let Some(a) = &self.attached else {
            return self.error(ErrorCode::InvalidState, "join a conversation first", rid);
        };
        let input = Input::Command { participant_id: a.participant_id.clone(), request_id: rid.clone(), command };
        if a.handle.tx.send(ActorMsg::Input(input)).await.is_err() {
            self.attached = None;
            return self.error(ErrorCode::InvalidState, "the conversation has ended", rid);
        }
        Vec::new()
    }

    /// A join, or with `resumes` a resume on the conversation's new home after a takeover (the
    /// participant id the old home gave, which names the billing session that continues).
    async fn join(
        &mut self,
        rid: Option<String>,
        target: JoinTarget,
        display_name: Option<String>,
        resumes: Option<String>,
    ) -> Vec<String> {
        if self.attached.is_some() {
            return self.error(ErrorCode::InvalidState, "already in a conversation; send `leave` first", rid);
        }
        let (key, setup, room_role) = match self.resolve(&target).await {
            Ok(t) => t,
            Err(r) => return self.error(r.code, r.message, rid),
        };
        if let Some(router) = self.gateway.home_router().cloned() {
            match self.place(router.as_ref(), &key, rid.clone()).await {
                Ok(true) => {}
                Ok(false) => return Vec::new(),
                Err(replies) => return replies,
            }
        }
        // `voip.join` joins existing calls only: it may not be the one who starts a group call.
        if matches!(setup, ConversationSetup::GroupCall)
            && !self.ident.scopes.contains(Scope::Voip)
            && !self.gateway.is_live(&key)
        {
            return self.error(ErrorCode::InsufficientScope, "starting a group call needs the `voip` scope", rid);
        }
        let resumed = resumes.is_some();
        let participant_id = resumes.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let request = JoinRequest {
            participant_id: participant_id.clone(),
            resume_token: new_resume_token(),
            request_id: rid,
            identity: self.ident.identity.clone(),
            proposed_display_name: display_name,
            room_role,
        };
        let join_started = std::time::Instant::now();
        let handle = self.gateway.join_as(key, setup, request, resumed, self.conn_id.clone(), self.tx.clone()).await;
        self.gateway.telemetry().join_completed(join_started.elapsed());
        self.attached = Some(Attachment { handle, participant_id });
        Vec::new()
    }

    /// Which conversation a join target names; the meetings domain checks codes and passcodes.
    async fn resolve(
        &self,
        target: &JoinTarget,
    ) -> Result<(String, ConversationSetup, Option<palaver_core::RoomRole>), Refusal> {
        let meetings = self.gateway.meetings();
        match target {
            JoinTarget::MeetingLink { join_url } => {
                let id = meeting_id_from_link(join_url)
                    .ok_or_else(|| Refusal::new(ErrorCode::InvalidParameter, "joinUrl is not a meeting join link"))?;
                let record = meetings.by_id(&id).await?;
                Ok((format!("meeting:{}", record.id), ConversationSetup::Meeting(record.setup()), None))
            }
            JoinTarget::MeetingCode { meeting_code, passcode } => {
                let record = meetings.by_code(meeting_code, passcode, &self.raw_id(), now_ms()).await?;
                Ok((format!("meeting:{}", record.id), ConversationSetup::Meeting(record.setup()), None))
            }
            JoinTarget::GroupCall { group_id } => {
                let id = uuid::Uuid::parse_str(group_id.trim())
                    .map_err(|_| Refusal::new(ErrorCode::InvalidParameter, "groupId must be a UUID"))?;
                Ok((format!("groupCall:{id}"), ConversationSetup::GroupCall, None))
            }
            JoinTarget::Room { room_id } => {
                let role = self
                    .state
                    .rooms
                    .participant_role(room_id, &self.raw_id(), now_ms())
                    .await
                    .map_err(|code| Refusal::new(code, format!("cannot join room `{room_id}`")))?;
                Ok((format!("room:{room_id}"), ConversationSetup::Room, Some(role)))
            }
        }
    }

    async fn resume(
        &mut self,
        rid: Option<String>,
        conversation_id: String,
        participant_id: String,
        resume_token: String,
    ) -> Vec<String> {
        if self.attached.is_some() {
            return self.error(ErrorCode::InvalidState, "already in a conversation; send `leave` first", rid);
        }
        let Some(handle) = self.gateway.by_conversation_id(&conversation_id) else {
            // In a cluster the conversation may live on another node: relay the resume there.
            if let Some(router) = self.gateway.home_router().cloned()
                && let Some(key) = router.key_of(&conversation_id).await
            {
                match self.place(router.as_ref(), &key, rid.clone()).await {
                    Ok(false) => return Vec::new(),
                    Err(replies) => return replies,
                    // This node is the home now (it took the conversation over from a home
                    // that died): the participant joins it again with its carried standing,
                    // under its old participant id, continuing its billing session
                    // (`resume.rs`); refused when nothing is carried for it (join again).
                    Ok(true) => {
                        let Some(target) = super::resume::target_of_key(&key) else {
                            return self.error(ErrorCode::NotFound, "no such conversation (it may have ended)", rid);
                        };
                        tracing::info!(conn = %self.conn_id, key, participant = %participant_id,
                            "resume after a takeover: joining the conversation on its new home");
                        return self.join(rid, target, None, Some(participant_id)).await;
                    }
                }
            }
            return self.error(ErrorCode::NotFound, "no such conversation (it may have ended)", rid);
        };
        let (reply, answer) = oneshot::channel();
        let msg = ActorMsg::Resume {
            participant_id: participant_id.clone(),
            resume_token,
            raw_id: self.raw_id(),
            conn_id: self.conn_id.clone(),
            conn: self.tx.clone(),
            reply,
        };
        if handle.tx.send(msg).await.is_err() {
            return self.error(ErrorCode::NotFound, "the conversation has ended", rid);
        }
        match answer.await {
            Ok(Ok(())) => {
                self.attached = Some(Attachment { handle, participant_id });
                Vec::new()
            }
            Ok(Err(r)) => self.error(r.code, r.message, rid),
            Err(_) => self.error(ErrorCode::NotFound, "the conversation has ended", rid),
        }
    }

    async fn refresh(&mut self, rid: Option<String>, token: String) -> Vec<String> {
        let now = now_ms();
        let credential = match self.ident.door {
            Door::AccessToken => Credential::AccessToken(&token),
            Door::NativeIdp => Credential::IdpToken(&token),
        };
        let verified = super::routes::authenticate(&self.state, credential, now).await;
        let fresh = match verified {
            Ok(i) => i,
            Err(e) => return self.error(e.code, e.message, rid),
        };
        // The same user: raw id and, for directory users, tenant (issue #19).
        if fresh.identity.raw_id() != self.raw_id() || fresh.identity.tenant_id != self.ident.identity.tenant_id {
            return self.error(ErrorCode::Forbidden, "the new token belongs to another identity", rid);
        }
        let expires_at_ms = fresh.identity.token_expires_at_ms;
        self.ident = fresh;
        self.token_warned = false;
        if let Some(a) = &self.attached {
            let input = Input::TokenRefreshed { participant_id: a.participant_id.clone(), expires_at_ms };
            if a.handle.tx.send(ActorMsg::Input(input)).await.is_ok() {
                return Vec::new();
            }
            self.attached = None;
        }
        vec![frame(&ServerMessage::TokenRefreshed { expires_at_ms })]
    }

    async fn place_call(&mut self, rid: Option<String>, targets: Vec<String>) -> Vec<String> {
        if !self.ident.scopes.contains(Scope::Voip) {
            return self.error(ErrorCode::InsufficientScope, "placing calls needs the `voip` scope", rid);
        }
        let call_id = uuid::Uuid::new_v4().to_string();
        let input = CallInput::Place {
            call_id: call_id.clone(),
            caller: self.party(),
            endpoint: self.conn_id.clone(),
            targets,
        };
        match self.gateway.call_request(input).await {
            Ok(()) => vec![frame(&ServerMessage::CallPlaced { request_id: rid, call_id })],
            Err(e) => self.error(e.code, e.message, rid),
        }
    }

    /// Media for a call between users goes to the call actor, which checks the user is
    /// connected in that call and answers on this socket (as a conversation's actor does).
    async fn call_media(&mut self, rid: Option<String>, call_id: String, media: CallMedia) -> Vec<String> {
        if let CallMedia::Offer(sdp) = &media
            && sdp.trim().is_empty()
        {
            return self.error(ErrorCode::InvalidParameter, "empty SDP offer", rid);
        }
        let request =
            CallMediaRequest { call_id, raw_id: self.raw_id(), media, request_id: rid.clone(), conn: self.tx.clone() };
        match self.gateway.route_call_media(&request, &self.conn_id).await {
            Ok(CallMediaRoute::Here) => {
                if !matches!(request.media, CallMedia::IceCandidate(_)) {
                    // This socket carries the call's media (a move into a conversation finds it).
                    self.gateway.remember_call_media_conn(&request.call_id, &request.raw_id, &self.conn_id);
                }
            }
            Ok(CallMediaRoute::Forwarded) => return Vec::new(),
            Ok(CallMediaRoute::Redirect { node, quic, https }) => {
                tracing::debug!(conn = %self.conn_id, call = %request.call_id, node = %node, "redirecting QUIC call media to the call's node");
                return vec![frame(&ServerMessage::Redirect { request_id: rid, node, quic, https })];
            }
            Err(e) => return self.error(e.code, e.message, rid),
        }
        match self.gateway.call_media_here(request) {
            Ok(()) => Vec::new(),
            Err(e) => self.error(e.code, e.message, rid),
        }
    }

    async fn call(&mut self, rid: Option<String>, input: CallInput) -> Vec<String> {
        match self.gateway.call_request(input).await {
            Ok(()) => vec![frame(&ServerMessage::Ack { request_id: rid })],
            Err(e) => self.error(e.code, e.message, rid),
        }
    }
}

/// 32 random bytes, base64url: the secret that lets a new socket take over a participant.
fn new_resume_token() -> String {
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The meeting id in a join link `https://<host>/meetings/join/<id>` (or a bare id).
pub(crate) fn meeting_id_from_link(link: &str) -> Option<String> {
    let path = link.split(['?', '#']).next()?;
    let last = path.trim_end_matches('/').rsplit('/').next()?;
    uuid::Uuid::parse_str(last).ok().map(|u| u.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_links_yield_the_meeting_id() {
        let id = "5f0c7a8e-9d7b-4b3e-8f25-1d2c3b4a5e6f";
        assert_eq!(meeting_id_from_link(&format!("https://h:1/meetings/join/{id}")).as_deref(), Some(id));
        assert_eq!(meeting_id_from_link(&format!("https://h/meetings/join/{id}/?x=1#y")).as_deref(), Some(id));
        assert_eq!(meeting_id_from_link(id).as_deref(), Some(id));
        assert_eq!(meeting_id_from_link("https://h/meetings/join/not-a-meeting"), None);
        assert_eq!(meeting_id_from_link(""), None);
    }
}
