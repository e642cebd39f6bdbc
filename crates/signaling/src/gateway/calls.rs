//! The call actor: one task owning the sans-IO [`CallManager`] for every 1:1/group call
//! between users; it turns call outputs into frames for every socket of the notified
//! user and into billing session events. A call participant's media (SDP offer, ICE
//! candidates) goes through it too, as a conversation participant's goes through its
//! conversation actor: the actor checks the participant is connected in the call, calls the
//! media plane in its own order, and releases the media session when the participant leaves,
//! so an offer and a leave can never cross.

use super::Gateway;
use super::connection::{ConnTx, Outbound};
use super::media::MediaSession;
use super::user_bus::RemoteCallInput;
use crate::domain::calls::{CallError, CallEvent, CallManager, Input, Output};
use palaver_core::protocol::{IceCandidate, ServerMessage};
use palaver_core::time::now_ms;
use palaver_core::{CommunicationIdentifier, EndpointType, ErrorCode, ParticipantType, SessionEnded, SessionStarted};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

pub(crate) enum CallsMsg {
    Request {
        input: Input,
        /// Users concerned by `input` who are in a call on another node (busy).
        engaged_elsewhere: Vec<String>,
        reply: oneshot::Sender<Result<(), CallError>>,
    },
    /// Fire-and-forget (e.g. `UserGone`).
    Notice(Input),
    /// Media of a call participant.
    Media(CallMediaRequest),
}

/// Media of `raw_id` in `call_id`; the answer or an error frame goes to `conn`.
pub(crate) struct CallMediaRequest {
    pub call_id: String,
    pub raw_id: String,
    pub media: CallMedia,
    pub request_id: Option<String>,
    pub conn: ConnTx,
}

/// What a call participant sends about its media.
pub(crate) enum CallMedia {
    Offer(String),
    IceCandidate(IceCandidate),
    /// QUIC: plain RTP over the connection's datagram path (`media.attach` with a `callId`).
    Attach {
        path: palaver_core::MediaPathId,
        tracks: Vec<palaver_core::protocol::MediaTrack>,
        receive: palaver_core::protocol::MediaReceive,
    },
}

/// Billing (and media) session id of one participant in one call.
pub(crate) fn session_id(call_id: &str, raw_id: &str) -> String {
    format!("{call_id}/{raw_id}")
}

impl Gateway {
    fn calls_tx(&self) -> &mpsc::UnboundedSender<CallsMsg> {
        self.calls.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            let manager = CallManager::new(self.calls_config());
            tokio::spawn(run(self.clone(), manager, rx));
            tx
        })
    }

    /// Feed a call input; `Err` carries the code for the error frame. In a cluster, an input
    /// about a call running on another node goes to that node (see `user_bus.rs`).
    pub(crate) async fn call_request(&self, input: Input) -> Result<(), CallError> {
        if let Some((node, remote)) = self.remote_call(&input)
            && let Some(bus) = self.user_bus()
        {
            let answered = match &remote {
                RemoteCallInput::Accept { call_id, callee, .. } => Some((callee.raw_id.clone(), call_id.clone())),
                _ => None,
            };
            bus.forward_call(&node, remote).await?;
            if let Some((user, call_id)) = answered {
                // Calls whose `call.ended` came back are forgotten by the bus: drop them here too.
                let mut answered = self.answered_elsewhere.entry(user).or_default();
                answered.retain(|(_, call)| bus.call_home(call).is_some());
                answered.push((node, call_id));
            }
            return Ok(());
        }
        self.call_request_here(input).await
    }

    /// Feed a call input to this node's call actor. In a cluster, the users it would ring,
    /// place or connect are first looked up on the bus: one in a call on another node is busy.
    pub(crate) async fn call_request_here(&self, input: Input) -> Result<(), CallError> {
        let concerned = users_concerned(&input);
        let engaged_elsewhere = match self.user_bus() {
            Some(bus) if !concerned.is_empty() => bus.engaged_elsewhere(&concerned).await,
            _ => Vec::new(),
        };
        let (reply, rx) = oneshot::channel();
        let down = || CallError::new(ErrorCode::InternalError, "the call service is not running");
        self.calls_tx().send(CallsMsg::Request { input, engaged_elsewhere, reply }).map_err(|_| down())?;
        rx.await.map_err(|_| down())?
    }

    /// Hand a call participant's media to the call actor (it answers on `conn`).
    pub(crate) fn call_media_here(&self, request: CallMediaRequest) -> Result<(), CallError> {
        self.calls_tx()
            .send(CallsMsg::Media(request))
            .map_err(|_| CallError::new(ErrorCode::InternalError, "the call service is not running"))
    }

    /// The user's last socket is gone and stayed gone for the grace period.
    pub(crate) fn schedule_user_gone(&self, raw_id: String) {
        let gateway = self.clone();
        let grace = Duration::from_millis(self.config().reconnect_grace_ms.max(0) as u64);
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            if !gateway.presence_of(&raw_id).is_empty() {
                return;
            }
            gateway.user_gone_elsewhere(&raw_id);
            if gateway.calls.get().is_some() {
                let _ = gateway.calls_tx().send(CallsMsg::Notice(Input::UserGone { user: raw_id }));
            }
        });
    }
}

/// The users an input could make busy or find busy: the caller and targets of a placement,
/// the target of an invitation or transfer, the callee of an answer.
fn users_concerned(input: &Input) -> Vec<String> {
    match input {
        Input::Place { caller, targets, .. } => targets.iter().cloned().chain([caller.raw_id.clone()]).collect(),
        Input::AddParticipant { target, .. }
        | Input::AddParticipantRinging { target, .. }
        | Input::Transfer { target, .. } => vec![target.clone()],
        Input::Accept { callee, .. } => vec![callee.raw_id.clone()],
        _ => Vec::new(),
    }
}

/// Tell the bus who became engaged here and who was freed since `published`.
fn publish_engagement(gateway: &Gateway, manager: &CallManager, published: &mut HashSet<String>) {
    let Some(bus) = gateway.user_bus() else { return };
    let now: HashSet<String> = manager.engaged_users().map(str::to_string).collect();
    if now == *published {
        return;
    }
    let engaged: Vec<String> = now.difference(published).cloned().collect();
    let freed: Vec<String> = published.difference(&now).cloned().collect();
    bus.engagement_changed(&engaged, &freed);
    *published = now;
}

async fn run(gateway: Gateway, mut manager: CallManager, mut rx: mpsc::UnboundedReceiver<CallsMsg>) {
    // Media sessions negotiated (`<callId>/<rawId>`), released when the participant leaves.
    let mut media_sessions: HashSet<String> = HashSet::new();
    // Users published as engaged here (cluster busy).
    let mut published: HashSet<String> = HashSet::new();
    loop {
        let now = now_ms().max(0) as u64;
        let wait = manager.poll_timeout().map(|t| Duration::from_millis(t.saturating_sub(now)));
        let result = tokio::select! {
            msg = rx.recv() => match msg {
                None => break,
                Some(CallsMsg::Request { input, engaged_elsewhere, reply }) => {
                    manager.set_engaged_elsewhere(engaged_elsewhere);
                    let r = manager.handle(now_ms().max(0) as u64, input);
                    manager.set_engaged_elsewhere(Vec::new());
                    let (outputs, answer) = match r {
                        Ok(o) => (o, Ok(())),
                        Err(e) => (Vec::new(), Err(e)),
                    };
                    let _ = reply.send(answer);
                    outputs
                }
                Some(CallsMsg::Notice(input)) => manager.handle(now_ms().max(0) as u64, input).unwrap_or_default(),
                Some(CallsMsg::Media(request)) => {
                    // A participant's media: the caller counts from placing, so it can hear
                    // a phone's early media (carrier ringback, announcements) before the answer.
                    let connected = manager
                        .snapshot(&request.call_id)
                        .is_some_and(|c| c.participants.iter().any(|p| p.raw_id == request.raw_id));
                    call_media(&gateway, &mut media_sessions, connected, request);
                    Vec::new()
                }
            },
            _ = tokio::time::sleep(wait.unwrap_or(Duration::ZERO)), if wait.is_some() => {
                manager.handle(now_ms().max(0) as u64, Input::Tick).unwrap_or_default()
            }
        };
        execute(&gateway, &mut media_sessions, result);
        publish_engagement(&gateway, &manager, &mut published);
    }
}

/// Carry out a call participant's media request, in the actor's order: the media plane is
/// called here (it does its work when called) and only the wait for its answer is spawned.
fn call_media(gateway: &Gateway, media_sessions: &mut HashSet<String>, connected: bool, request: CallMediaRequest) {
    let CallMediaRequest { call_id, raw_id, media, request_id, conn } = request;
    let refuse = |code: ErrorCode, message: &str| {
        let frame = ServerMessage::error(code, message, request_id.clone());
        gateway.record_if_error(&frame);
        let _ = conn.try_send(Outbound::Frame(frame.to_json().into()));
    };
    if !connected {
        return refuse(ErrorCode::InvalidState, "media needs a connected call");
    }
    let session = MediaSession {
        conversation_id: call_id.clone(),
        participant_id: session_id(&call_id, &raw_id),
        may_send_media: true,
    };
    let gateway = gateway.clone();
    match media {
        CallMedia::Offer(sdp) => {
            media_sessions.insert(session.participant_id.clone());
            let answer = gateway.media().offer(session, sdp);
            tokio::spawn(async move {
                let reply = match answer.await {
                    Ok(sdp) => ServerMessage::MediaAnswer { sdp, call_id: Some(call_id) },
                    Err(e) => ServerMessage::error(e.code, e.message, request_id),
                };
                gateway.record_if_error(&reply);
                let _ = conn.send(Outbound::Frame(reply.to_json().into())).await;
            });
        }
        CallMedia::Attach { path, tracks, receive } => {
            if let Err(message) = palaver_core::protocol::group_sent_tracks(&tracks) {
                return refuse(ErrorCode::InvalidParameter, &message);
            }
            media_sessions.insert(session.participant_id.clone());
            let attached = gateway.media().attach(session, path, tracks, receive);
            tokio::spawn(async move {
                let reply = match attached.await {
                    Ok(media) => ServerMessage::MediaAttached { request_id, tracks: media.tracks, udp: media.udp },
                    Err(e) => ServerMessage::error(e.code, e.message, request_id),
                };
                gateway.record_if_error(&reply);
                let _ = conn.send(Outbound::Frame(reply.to_json().into())).await;
            });
        }
        CallMedia::IceCandidate(candidate) => {
            if !media_sessions.contains(&session.participant_id) {
                return refuse(ErrorCode::InvalidState, "send `media.offer` for this call first");
            }
            let done = gateway.media().ice_candidate(session, candidate);
            tokio::spawn(async move {
                if let Err(e) = done.await {
                    gateway.record_error(e.code);
                    let frame = ServerMessage::error(e.code, e.message, request_id).to_json();
                    let _ = conn.send(Outbound::Frame(frame.into())).await;
                }
            });
        }
    }
}

fn execute(gateway: &Gateway, media_sessions: &mut HashSet<String>, outputs: Vec<Output>) {
    let observer = gateway.observer();
    for output in outputs {
        match output {
            Output::Notify { to, event } => {
                // A ring from a Call Automation add or transfer carries its `customCallingContext`.
                let event = gateway.call_automation().with_machine(|m| m.with_custom_context(&to, event));
                // Call Automation: IncomingCall for ACS identities, call connections' callbacks.
                gateway.call_automation_event(&to, &event);
                // A phone participant has no socket: its events go to the SIP gateway.
                gateway.notify_phone(&to, &event);
                let text: Arc<str> = serde_json::to_string(&event).unwrap_or_default().into();
                gateway.notify_user(&to, text);
            }
            Output::ParticipantConnected { call_id, participant, endpoint, call_type } => {
                let native = gateway.presence_of(&participant.raw_id).iter().any(|e| e.conn_id == endpoint && e.native);
                let directory =
                    CommunicationIdentifier::parse(&participant.raw_id).is_ok_and(|i| i.is_directory_user());
                let participant_type = match (directory, native) {
                    (true, true) => ParticipantType::Teams,
                    (true, false) => ParticipantType::AcsAsM365User,
                    (false, _) => ParticipantType::Acs,
                };
                // A Call Automation call connection is a server endpoint (ACS logs `Server`), a
                // phone participant a PSTN one.
                let endpoint_type = if crate::domain::calls::is_server_leg(&endpoint) {
                    EndpointType::Server
                } else if super::phone::is_phone(&participant.raw_id) {
                    EndpointType::Pstn
                } else {
                    EndpointType::Voip
                };
                let session_id = session_id(&call_id, &participant.raw_id);
                let phone = gateway.phone_leg_of(&session_id);
                observer.session_started(SessionStarted {
                    session_id,
                    conversation_id: call_id,
                    call_type,
                    participant_raw_id: participant.raw_id,
                    participant_type,
                    endpoint_type,
                    thread_id: None,
                    at_ms: now_ms(),
                    phone,
                });
            }
            Output::ParticipantDisconnected { call_id, raw_id, reason } => {
                gateway.forget_call_media_conn(&call_id, &raw_id);
                let media_session = session_id(&call_id, &raw_id);
                if media_sessions.remove(&media_session) {
                    gateway.media().leave(MediaSession {
                        conversation_id: call_id.clone(),
                        participant_id: media_session,
                        may_send_media: true,
                    });
                }
                observer.session_ended(SessionEnded {
                    session_id: session_id(&call_id, &raw_id),
                    conversation_id: call_id,
                    reason,
                    at_ms: now_ms(),
                });
            }
            Output::MovedToConversation { call_id, raw_id, endpoint: _, join } if super::phone::is_phone(&raw_id) => {
                // A phone has no socket: the SIP gateway seats it in the conversation and
                // re-seats its trunk media there (`gateway/phone_moves.rs`); queued before
                // the call's own events for the phone, so the leg is not hung up.
                gateway.notify_phone(&raw_id, &CallEvent::Moved { call_id, join });
            }
            Output::MovedToConversation { call_id, raw_id, endpoint, join } => {
                // Only the socket that was in the call moves (here, or on the node it answered
                // from: `user_bus/handover.rs`); it joins on its own task.
                gateway.move_call_socket(call_id, &raw_id, &endpoint, join);
            }
            Output::CallTypeChanged { call_id, call_type } => observer.call_type_changed(&call_id, call_type),
            Output::CallEnded { call_id, reason } => {
                gateway.call_automation_call_ended(&call_id);
                gateway.forget_remote_answers(&call_id);
                tracing::info!(call = %call_id, reason = ?reason, "call ended");
            }
        }
    }
}
