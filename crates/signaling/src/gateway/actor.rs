//! One tokio task per live conversation: it owns the sans-IO [`Conversation`], the
//! participant → socket map, and a single timer at the machine's next deadline, and
//! carries out the machine's outputs (frames, billing events, media calls).

use super::Gateway;
use super::connection::{ConnTx, Outbound};
use super::media::MediaSession;
use crate::domain::conversation::{
    Authority, Conversation, ConversationSetup, Input, JoinRequest, Output, Refusal, ServerCommand,
};
use palaver_core::ErrorCode;
use palaver_core::protocol::{
    CaptureState, ConversationKind, MeetingPolicy, ParticipantState, RosterChange, ServerMessage,
};
use palaver_core::time::now_ms;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Messages to a conversation actor.
pub(crate) enum ActorMsg {
    Join {
        key: String,
        setup: ConversationSetup,
        request: JoinRequest,
        /// A `resume` on the conversation's new home after a takeover ([`Input::Resumed`]).
        resumed: bool,
        conn_id: String,
        conn: ConnTx,
        /// The handle of the actor that took the join: a join that raced a conversation's end
        /// is passed on to a fresh conversation, and the socket must follow it there.
        accepted_by: oneshot::Sender<ConversationHandle>,
    },
    Resume {
        participant_id: String,
        resume_token: String,
        raw_id: String,
        conn_id: String,
        conn: ConnTx,
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    /// A socket went away (ignored when the participant has since moved to another socket).
    ConnectionLost {
        participant_id: String,
        conn_id: String,
    },
    Input(Input),
    Server {
        authority: Authority,
        command: ServerCommand,
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    Status {
        reply: oneshot::Sender<LiveStatus>,
    },
    /// A participant's session start is durable in billing (`durable`), or the wait for it
    /// ended without (timed out, billing gone): release the frames held for them.
    SessionDurable {
        participant_id: String,
        durable: bool,
    },
    /// A frame for one participant from outside the conversation (e.g. a server ICE candidate).
    ToParticipant {
        participant_id: String,
        message: ServerMessage,
        reply: oneshot::Sender<bool>,
    },
}

/// A live conversation as seen from REST.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveStatus {
    pub conversation_id: String,
    pub kind: ConversationKind,
    pub capture: CaptureState,
    pub policy: MeetingPolicy,
    pub participants: usize,
    pub in_lobby: usize,
}

/// Sender side of a conversation actor.
#[derive(Clone)]
pub struct ConversationHandle {
    pub(crate) conversation_id: String,
    pub(crate) generation: u64,
    pub(crate) tx: mpsc::Sender<ActorMsg>,
}

impl ConversationHandle {
    pub fn conversation_id(&self) -> &str {
        &self.conversation_id
    }
}

pub(crate) fn spawn(
    gateway: Gateway,
    key: String,
    generation: u64,
    conversation: Conversation,
    setup: ConversationSetup,
) -> ConversationHandle {
    let (tx, rx) = mpsc::channel(4096);
    let handle = ConversationHandle { conversation_id: conversation.id().to_string(), generation, tx };
    let actor = Actor {
        gateway,
        key,
        handle: handle.clone(),
        conversation,
        setup,
        conns: HashMap::new(),
        lobby_reported: 0,
        chat: Default::default(),
        policy_changed: false,
        staged: Vec::new(),
        flush_at: None,
        held: HashMap::new(),
        mirrored: Default::default(),
    };
    tokio::spawn(actor.run(rx));
    handle
}

struct Actor {
    gateway: Gateway,
    key: String,
    handle: ConversationHandle,
    conversation: Conversation,
    setup: ConversationSetup,
    /// participant id → (connection id, socket queue)
    conns: HashMap<String, (String, ConnTx)>,
    /// Lobby size last added to the gateway-wide total.
    lobby_reported: i64,
    /// Who is in the meeting's chat thread.
    chat: super::chat::MeetingChatTracker,
    /// A policy change waits to be stored.
    policy_changed: bool,
    /// Frames held while a roster coalescing window is open, in order, with the coalescing key
    /// of latest-state roster deltas ([`coalesce_key`]).
    staged: Vec<(Option<String>, Vec<String>, Arc<str>)>,
    /// When the open coalescing window ends.
    flush_at: Option<tokio::time::Instant>,
    /// Frames to a participant whose session start is not durable in billing yet (their
    /// `joined` first): sent when it is ([`ActorMsg::SessionDurable`]), so a crash right
    /// after a client reads `joined` cannot lose its billing record. Other participants'
    /// frames and the media path never wait for it.
    held: HashMap<String, Vec<Arc<str>>>,
    /// What was last handed to the cluster's mirror (`resume.rs`).
    mirrored: super::resume::MirrorCursor,
}

/// How long a join waits for billing to make its session start durable before `joined` is
/// sent anyway (with an error in the log): a ledger that cannot write (full disk) must not
/// stop people from joining; the start stays queued in the recorder and is retried.
pub const DURABLE_JOIN_TIMEOUT: Duration = Duration::from_secs(5);

/// A roster delta that only states a participant's latest state (hand raised, muted, screen
/// sharing, active speakers) opens a window this long; frames of the window are sent together at its end, and
/// a later delta of the same kind for the same participant replaces an earlier one, so a burst
/// of toggles reaches each socket as its latest state (issue #19: 10 members toggling a raised
/// hand produced ~577,000 outbound frames in 13 s).
pub const ROSTER_COALESCE_MS: u64 = 50;

/// The coalescing key of a latest-state roster delta.
fn coalesce_key(message: &ServerMessage) -> Option<String> {
    let ServerMessage::RosterDelta { delta, .. } = message else { return None };
    match delta {
        RosterChange::HandRaised { participant_id, .. } => Some(format!("hand:{participant_id}")),
        RosterChange::Muted { participant_id, .. } => Some(format!("muted:{participant_id}")),
        RosterChange::ScreenShare { participant_id, .. } => Some(format!("screen:{participant_id}")),
        RosterChange::ActiveSpeakers { .. } => Some("speakers".to_string()),
        _ => None,
    }
}

impl Actor {
    async fn run(mut self, mut rx: mpsc::Receiver<ActorMsg>) {
        // A conversation taken over from a dead home: restore what it carried before the
        // first join (queued joins wait in the channel meanwhile).
        if let Some(mirror) = self.gateway.conversation_mirror().cloned()
            && let Some(carried) = mirror.restore(&self.key).await
        {
            tracing::info!(key = %self.key, participants = carried.participants.len(),
                capture_active = carried.capture_active(), "restoring the state carried from the previous home");
            self.conversation.restore_at(now_ms(), carried);
        }
        loop {
            let wait = self.conversation.next_deadline().map(|d| Duration::from_millis((d - now_ms()).max(0) as u64));
            let flush_at = self.flush_at;
            let outputs = tokio::select! {
                msg = rx.recv() => match msg {
                    Some(msg) => self.on_message(msg),
                    None => break,
                },
                _ = tokio::time::sleep(wait.unwrap_or(Duration::ZERO)), if wait.is_some() => {
                    self.conversation.handle(now_ms(), Input::Tick)
                }
                _ = tokio::time::sleep_until(flush_at.unwrap_or_else(tokio::time::Instant::now)), if flush_at.is_some() => {
                    Vec::new()
                }
            };
            let chat_changes = self.chat.changes(&self.key, &self.setup, self.conversation.participants());
            super::chat::apply_meeting_changes(&self.gateway, chat_changes).await;
            self.execute(outputs);
            if std::mem::take(&mut self.policy_changed) {
                self.persist_policy().await;
            }
            self.report_lobby();
            if let Some(mirror) = self.gateway.conversation_mirror().cloned()
                && !self.conversation.is_ended()
            {
                let state = self.conversation.carried();
                self.mirrored.offer(mirror.as_ref(), &self.key, &self.handle.conversation_id, state);
            }
            if self.conversation.is_ended() {
                break;
            }
        }
        self.flush_at = Some(tokio::time::Instant::now());
        self.execute(Vec::new());
        self.gateway.lobby_changed(-self.lobby_reported);
        self.gateway.forget(&self.key, &self.handle);
        tracing::info!(key = %self.key, conversation = %self.handle.conversation_id, "conversation ended");
        // Messages that raced the end: joins go to a fresh conversation, the rest are refused.
        rx.close();
        while let Ok(msg) = rx.try_recv() {
            match msg {
                ActorMsg::Join { key, setup, request, resumed, conn_id, conn, accepted_by } => {
                    let gateway = self.gateway.clone();
                    tokio::spawn(async move {
                        let handle = gateway.join_as(key, setup, request, resumed, conn_id, conn).await;
                        let _ = accepted_by.send(handle);
                    });
                }
                ActorMsg::Resume { reply, .. } => {
                    let _ = reply.send(Err(Refusal::new(ErrorCode::NotFound, "the conversation has ended")));
                }
                ActorMsg::Server { reply, .. } => {
                    let _ = reply.send(Err(Refusal::new(ErrorCode::InvalidState, "the conversation has ended")));
                }
                ActorMsg::ConnectionLost { .. }
                | ActorMsg::Input(_)
                | ActorMsg::Status { .. }
                | ActorMsg::SessionDurable { .. }
                | ActorMsg::ToParticipant { .. } => {}
            }
        }
    }

    fn on_message(&mut self, msg: ActorMsg) -> Vec<Output> {
        let now = now_ms();
        match msg {
            ActorMsg::Join { request, resumed, conn_id, conn, accepted_by, .. } => {
                let _ = accepted_by.send(self.handle.clone());
                self.conns.insert(request.participant_id.clone(), (conn_id, conn));
                let input = if resumed { Input::Resumed(request) } else { Input::Join(request) };
                self.conversation.handle(now, input)
            }
            ActorMsg::Resume { participant_id, resume_token, raw_id, conn_id, conn, reply } => {
                if let Err(r) = self.conversation.check_resume(&participant_id, &resume_token, &raw_id) {
                    let _ = reply.send(Err(r));
                    return Vec::new();
                }
                if let Some((_, old)) = self.conns.insert(participant_id.clone(), (conn_id, conn)) {
                    // The old socket (if still open) stops routing to this participant.
                    let _ = old.try_send(Outbound::Detached {
                        participant_id: participant_id.clone(),
                        reason: None,
                        frames: Vec::new(),
                    });
                }
                let _ = reply.send(Ok(()));
                self.conversation.handle(now, Input::Resume { participant_id })
            }
            ActorMsg::ConnectionLost { participant_id, conn_id } => {
                let current = self.conns.get(&participant_id).map(|(c, _)| c.as_str());
                if current == Some(conn_id.as_str()) {
                    self.conns.remove(&participant_id);
                    self.conversation.handle(now, Input::ConnectionLost { participant_id })
                } else {
                    Vec::new()
                }
            }
            ActorMsg::Input(input) => self.conversation.handle(now, input),
            ActorMsg::SessionDurable { participant_id, durable } => self.release_held(participant_id, durable),
            ActorMsg::Server { authority, command, reply } => {
                match self.conversation.server_command(now, &authority, command) {
                    Ok(outputs) => {
                        let _ = reply.send(Ok(()));
                        outputs
                    }
                    Err(r) => {
                        let _ = reply.send(Err(r));
                        Vec::new()
                    }
                }
            }
            ActorMsg::ToParticipant { participant_id, message, reply } => {
                let delivered = self
                    .conns
                    .get(&participant_id)
                    .is_some_and(|(_, tx)| tx.try_send(Outbound::Frame(message.to_json().into())).is_ok());
                let _ = reply.send(delivered);
                Vec::new()
            }
            ActorMsg::Status { reply } => {
                let c = &self.conversation;
                let in_lobby = c.participants().filter(|p| p.state() == ParticipantState::Lobby).count();
                let _ = reply.send(LiveStatus {
                    conversation_id: c.id().to_string(),
                    kind: c.kind(),
                    capture: c.capture(),
                    policy: c.policy(),
                    participants: c.participants().count(),
                    in_lobby,
                });
                Vec::new()
            }
        }
    }

    /// Keep the gateway's lobby total (the `palaver_lobby_participants` gauge) in step.
    fn report_lobby(&mut self) {
        let now = self.conversation.participants().filter(|p| p.state() == ParticipantState::Lobby).count() as i64;
        self.gateway.lobby_changed(now - self.lobby_reported);
        self.lobby_reported = now;
    }

    /// Keep the stored meeting definition in step with policy changes made live.
    async fn persist_policy(&self) {
        let ConversationSetup::Meeting(_) = &self.setup else { return };
        let Some(meeting_id) = self.key.strip_prefix("meeting:") else { return };
        if let Err(e) = self.gateway.meetings().store_policy(meeting_id, &self.conversation.policy()).await {
            tracing::error!(meeting = meeting_id, error = %e, "storing the meeting policy failed");
        }
    }

    fn execute(&mut self, outputs: Vec<Output>) {
        let mut policy_changed = false;
        let mut overflowed: Vec<String> = Vec::new();
        if self.flush_at.is_some_and(|at| at <= tokio::time::Instant::now()) {
            self.flush_staged(&mut overflowed);
        }
        let mut outputs = outputs.into_iter().peekable();
        // A frame whose recipient is detached right after it (their `session.ended`, a refused
        // join's error) travels inside the detach notice: the socket is free of the
        // conversation before the client reads it, so a `join` sent on reading it is not
        // refused as "already in a conversation" (issue #19).
        let mut last_frame: Option<(String, Arc<str>)> = None;
        while let Some(output) = outputs.next() {
            if let Output::Send { to, message } = &output
                && let [recipient] = to.as_slice()
                && matches!(outputs.peek(), Some(Output::Detach { participant_id, .. } | Output::JoinRefused { participant_id })
                    if participant_id == recipient)
            {
                self.gateway.record_if_error(message);
                last_frame = Some((recipient.clone(), message.to_json().into()));
                continue;
            }
            if !matches!(output, Output::Send { .. }) {
                // Frames before a detach or a media step go first, in order.
                self.flush_staged(&mut overflowed);
            }
            match output {
                Output::Send { to, message } => {
                    policy_changed |= matches!(message, ServerMessage::PolicyChanged { .. });
                    if let ServerMessage::RosterDelta {
                        delta: RosterChange::ScreenShare { participant_id, active },
                        ..
                    } = &message
                    {
                        self.gateway.media().screen_share(self.media_session(participant_id, true), *active);
                    }
                    self.gateway.record_if_error(&message);
                    let key = coalesce_key(&message);
                    let text: Arc<str> = message.to_json().into();
                    if key.is_some() || self.flush_at.is_some() {
                        if let Some(key) = &key {
                            self.staged.retain(|(staged, _, _)| staged.as_ref() != Some(key));
                        }
                        self.staged.push((key, to, text));
                        self.flush_at.get_or_insert_with(|| {
                            tokio::time::Instant::now() + Duration::from_millis(ROSTER_COALESCE_MS)
                        });
                    } else {
                        self.deliver(&to, &text, &mut overflowed);
                    }
                }
                Output::SessionStarted(mut e) => {
                    // A Call Automation connection seated here is a server endpoint (as ACS logs it).
                    if self.conns.get(&e.session_id).is_some_and(|(conn, _)| crate::domain::calls::is_server_leg(conn))
                    {
                        e.endpoint_type = palaver_core::EndpointType::Server;
                    }
                    // A phone's minutes are metered per number, trunk and direction.
                    e.phone = self.gateway.phone_leg_of(&e.session_id);
                    self.start_session_durably(e)
                }
                Output::SessionEnded(e) => self.gateway.observer().session_ended(e),
                Output::Detach { participant_id, reason } => {
                    let last = last_frame.take().filter(|(to, _)| *to == participant_id).map(|(_, text)| text);
                    self.detach(participant_id, Some(reason), last);
                }
                Output::JoinRefused { participant_id } => {
                    let last = last_frame.take().filter(|(to, _)| *to == participant_id).map(|(_, text)| text);
                    self.detach(participant_id, None, last);
                }
                Output::MediaOffer { participant_id, sdp, may_send_media, request_id } => {
                    let session = self.media_session(&participant_id, may_send_media);
                    let tx = self.conns.get(&participant_id).map(|(_, tx)| tx.clone());
                    let gateway = self.gateway.clone();
                    // Called here, in the actor's order with the participant's leave; only
                    // the wait for the answer is spawned.
                    let answer = gateway.media().offer(session, sdp);
                    tokio::spawn(async move {
                        let reply = match answer.await {
                            Ok(answer) => ServerMessage::MediaAnswer { sdp: answer, call_id: None },
                            Err(e) => ServerMessage::error(e.code, e.message, request_id),
                        };
                        gateway.record_if_error(&reply);
                        if let Some(tx) = tx {
                            let _ = tx.send(Outbound::Frame(reply.to_json().into())).await;
                        }
                    });
                }
                Output::MediaIceCandidate { participant_id, candidate } => {
                    let session = self.media_session(&participant_id, true);
                    let tx = self.conns.get(&participant_id).map(|(_, tx)| tx.clone());
                    let gateway = self.gateway.clone();
                    let done = gateway.media().ice_candidate(session, candidate);
                    tokio::spawn(async move {
                        if let Err(e) = done.await
                            && let Some(tx) = tx
                        {
                            gateway.record_error(e.code);
                            let frame = ServerMessage::error(e.code, e.message, None).to_json();
                            let _ = tx.send(Outbound::Frame(frame.into())).await;
                        }
                    });
                }
                Output::MediaAttach { participant_id, path, tracks, receive, may_send_media, request_id } => {
                    let session = self.media_session(&participant_id, may_send_media);
                    let tx = self.conns.get(&participant_id).map(|(_, tx)| tx.clone());
                    let gateway = self.gateway.clone();
                    let attached = gateway.media().attach(session, path, tracks, receive);
                    tokio::spawn(async move {
                        let reply = match attached.await {
                            Ok(media) => {
                                ServerMessage::MediaAttached { request_id, tracks: media.tracks, udp: media.udp }
                            }
                            Err(e) => ServerMessage::error(e.code, e.message, request_id),
                        };
                        gateway.record_if_error(&reply);
                        if let Some(tx) = tx {
                            let _ = tx.send(Outbound::Frame(reply.to_json().into())).await;
                        }
                    });
                }
                Output::MediaSubscribe { participant_id, slots } => {
                    self.gateway.media().subscribe(self.media_session(&participant_id, true), slots);
                }
                Output::MediaLeave { participant_id } => {
                    self.gateway.media().leave(self.media_session(&participant_id, true));
                }
                Output::DialOut { participant_id, phone_number } => {
                    // To the SIP gateway (gateway/phone.rs); none configured: refused.
                    let conversation_id = self.handle.conversation_id.clone();
                    if !self.gateway.meeting_dial_out(&self.key, &conversation_id, &phone_number, &participant_id) {
                        let refusal = ServerMessage::error(
                            palaver_core::ErrorCode::PstnUnavailable,
                            "no phone network gateway is configured on this server",
                            None,
                        );
                        self.gateway.record_if_error(&refusal);
                        let text: Arc<str> = refusal.to_json().into();
                        self.deliver(&[participant_id], &text, &mut overflowed);
                    }
                }
                Output::ConversationEnded => {}
            }
        }
        // Stored by the run loop, in order, through the store's async door.
        self.policy_changed |= policy_changed;
        overflowed.dedup();
        for participant_id in overflowed {
            let outputs = self.drop_overflowed(participant_id);
            self.execute(outputs);
        }
    }

    /// Hand a session start to billing and hold the participant's frames (their `joined`
    /// first) until billing says it is durable; a task waits for that, the actor does not.
    fn start_session_durably(&mut self, event: palaver_core::SessionStarted) {
        let participant_id = event.session_id.clone();
        self.held.insert(participant_id.clone(), Vec::new());
        let (durable_tx, durable_rx) = oneshot::channel();
        let ack = palaver_core::DurableAck::new(move || {
            let _ = durable_tx.send(());
        });
        self.gateway.observer().session_started_durably(event, ack);
        let actor = self.handle.tx.clone();
        tokio::spawn(async move {
            let durable = matches!(tokio::time::timeout(DURABLE_JOIN_TIMEOUT, durable_rx).await, Ok(Ok(())));
            let _ = actor.send(ActorMsg::SessionDurable { participant_id, durable }).await;
        });
    }

    /// Send the frames held for a participant whose session start is now durable.
    fn release_held(&mut self, participant_id: String, durable: bool) -> Vec<Output> {
        let Some(frames) = self.held.remove(&participant_id) else { return Vec::new() };
        if !durable {
            tracing::error!(participant = %participant_id, conversation = %self.handle.conversation_id,
                "billing did not confirm the session start in time; acknowledging the join anyway");
        }
        let Some((_, tx)) = self.conns.get(&participant_id) else { return Vec::new() };
        if frames.into_iter().all(|text| tx.try_send(Outbound::Frame(text)).is_ok()) {
            return Vec::new();
        }
        tracing::warn!(participant = %participant_id, "outbound queue full; dropping the socket");
        self.drop_overflowed(participant_id)
    }

    /// A socket too far behind: tell it to close; the participant is `reconnecting`.
    fn drop_overflowed(&mut self, participant_id: String) -> Vec<Output> {
        let Some((_, tx)) = self.conns.remove(&participant_id) else { return Vec::new() };
        self.held.remove(&participant_id);
        tokio::spawn(async move {
            let _ = tx.send(Outbound::Overflowed).await;
        });
        self.conversation.handle(now_ms(), Input::ConnectionLost { participant_id })
    }

    /// Queue one frame on each recipient's socket (or hold it while their session start is not
    /// durable); a socket too far behind is noted in `overflowed`.
    fn deliver(&mut self, to: &[String], text: &Arc<str>, overflowed: &mut Vec<String>) {
        let queue_limit = self.gateway.config().outbound_queue.max(16);
        for pid in to {
            if let Some(held) = self.held.get_mut(pid) {
                if held.len() < queue_limit {
                    held.push(text.clone());
                } else {
                    overflowed.push(pid.clone());
                }
                continue;
            }
            if let Some((conn_id, tx)) = self.conns.get(pid)
                && tx.try_send(Outbound::Frame(text.clone())).is_err()
            {
                // A socket this far behind has a stale roster: drop it; the client resumes
                // within the grace period and gets a fresh snapshot.
                tracing::warn!(participant = %pid, conn = %conn_id, "outbound queue full; dropping the socket");
                overflowed.push(pid.clone());
            }
        }
    }

    /// Send the frames of the coalescing window, in order, and close it.
    fn flush_staged(&mut self, overflowed: &mut Vec<String>) {
        self.flush_at = None;
        for (_, to, text) in std::mem::take(&mut self.staged) {
            self.deliver(&to, &text, overflowed);
        }
    }

    /// Detach a participant's socket; `last_frame` (their `session.ended`, a join refusal) goes
    /// inside the notice, after any frames still held for them.
    fn detach(
        &mut self,
        participant_id: String,
        reason: Option<palaver_core::EndReason>,
        last_frame: Option<Arc<str>>,
    ) {
        let mut frames = self.held.remove(&participant_id).unwrap_or_default();
        frames.extend(last_frame);
        if let Some((_, tx)) = self.conns.remove(&participant_id) {
            // Sent after any frame already queued, and never dropped for a full queue.
            tokio::spawn(async move {
                let _ = tx.send(Outbound::Detached { participant_id, reason, frames }).await;
            });
        }
    }

    fn media_session(&self, participant_id: &str, may_send_media: bool) -> MediaSession {
        MediaSession {
            conversation_id: self.handle.conversation_id.clone(),
            participant_id: participant_id.to_string(),
            may_send_media,
        }
    }
}
