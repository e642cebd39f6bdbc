//! Phone participants (SIP trunk legs) in the call machinery. A phone caller or callee is a
//! [`Party`] with a `4:+E.164` raw id; it has no socket, so the call actor hands the call
//! events addressed to it to the SIP gateway through [`Gateway::take_phone_events`], and the
//! SIP gateway feeds the phone's side (place, answer, decline, hang up, transfer) back
//! through the methods here. Its media joins the call's conference through
//! [`MediaPlane::attach_trunk`](super::MediaPlane::attach_trunk); the SIP gateway releases it when the leg ends.
//!
//! A phone caller routed to a meeting (`meeting:<id>`) is not a call party but a participant
//! of the meeting's conversation: [`Gateway::phone_join_meeting`] joins it (through the lobby
//! as the meeting's policy says) and reports where it stands as [`MeetingNotice`]s.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::mpsc;

use super::Gateway;
use super::actor::{ActorMsg, ConversationHandle};
use super::calls::session_id;
use super::connection::Outbound;
use super::media::{MediaFuture, MediaSession, TrunkAnswer};
use crate::domain::Refusal;
use crate::domain::calls::{CallEndReason, CallError, CallEvent, Input, Party};
use crate::domain::conversation::{Command, ConversationSetup, Input as ConversationInput, JoinIdentity, JoinRequest};
use palaver_core::protocol::{ParticipantState, ServerMessage};
use palaver_core::{CommunicationIdentifier, PhoneLeg};

/// A call event addressed to a phone participant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneNotice {
    /// The phone's raw id (`4:+14255550100`).
    pub phone: String,
    pub event: CallEvent,
}

/// A meeting participant asked to dial a phone number into the meeting (`meeting.dialOut`,
/// already allowed by the meeting's policy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeetingDialOut {
    /// The meeting's id.
    pub meeting_id: String,
    /// Its live conversation (the media plane's conversation id).
    pub conversation_id: String,
    /// `+E.164`.
    pub phone_number: String,
    /// The participant who asked (told when the dial-out fails).
    pub requested_by: String,
}

/// The channels from the call actor and the conversations to the SIP gateway (taken once).
pub(crate) struct PhoneHook {
    /// The trunk leg of each phone participant session (by session id), named by the SIP
    /// gateway before the phone joins, so billing meters it per number, trunk and direction.
    legs: Mutex<HashMap<String, PhoneLeg>>,
    tx: mpsc::UnboundedSender<PhoneNotice>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<PhoneNotice>>>,
    dial_out_tx: mpsc::UnboundedSender<MeetingDialOut>,
    dial_out_rx: Mutex<Option<mpsc::UnboundedReceiver<MeetingDialOut>>>,
    /// The phone numbers the server owns (`[[phone_numbers]]`), told by the SIP gateway at
    /// start: what an application may present as its caller id.
    owned_numbers: std::sync::OnceLock<std::collections::HashSet<String>>,
}

impl Default for PhoneHook {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let (dial_out_tx, dial_out_rx) = mpsc::unbounded_channel();
        Self {
            legs: Mutex::new(HashMap::new()),
            tx,
            rx: Mutex::new(Some(rx)),
            dial_out_tx,
            dial_out_rx: Mutex::new(Some(dial_out_rx)),
            owned_numbers: std::sync::OnceLock::new(),
        }
    }
}

/// Why a call to a phone number ended, from the trunk's final SIP status (RFC 3261 §21;
/// the cases carriers and SBCs use): busy, not answered, declined, unreachable, or the phone
/// network unavailable (5xx, a refusal of the trunk itself, or no final response).
pub fn phone_failure_reason(status: Option<u16>) -> CallEndReason {
    match status {
        Some(486 | 600) => CallEndReason::Busy,
        Some(408 | 480 | 487) => CallEndReason::NoAnswer,
        Some(603 | 607) => CallEndReason::Declined,
        Some(404 | 410 | 484 | 485 | 604) => CallEndReason::Unreachable,
        _ => CallEndReason::Unavailable,
    }
}

/// The standard reason phrase of a SIP status (RFC 3261 §21), for messages.
fn sip_reason_phrase(status: u16) -> &'static str {
    match status {
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        410 => "Gone",
        480 => "Temporarily Unavailable",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        500 => "Server Internal Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        607 => "Unwanted",
        _ => "Call Failed",
    }
}

/// True for a phone participant's raw id.
pub fn is_phone(raw_id: &str) -> bool {
    matches!(CommunicationIdentifier::parse(raw_id), Ok(CommunicationIdentifier::PhoneNumber { .. }))
}

impl Gateway {
    /// The SIP gateway's owned numbers (E.164), once at start: Call Automation accepts one of
    /// them as `sourceCallerIdNumber`.
    pub fn set_owned_phone_numbers(&self, numbers: impl IntoIterator<Item = String>) {
        let _ = self.phone.owned_numbers.set(numbers.into_iter().collect());
    }

    /// `number` is one of the server's phone numbers (never true without a SIP gateway).
    pub fn owns_phone_number(&self, number: &str) -> bool {
        self.phone.owned_numbers.get().is_some_and(|numbers| numbers.contains(number))
    }

    /// A SIP gateway takes the call events for phone participants (it dials numbers).
    pub(crate) fn phone_gateway_listening(&self) -> bool {
        self.phone.rx.lock().map(|rx| rx.is_none()).unwrap_or(false)
    }

    /// The call events for phone participants, for the SIP gateway; `None` after the first call.
    pub fn take_phone_events(&self) -> Option<mpsc::UnboundedReceiver<PhoneNotice>> {
        self.phone.rx.lock().ok()?.take()
    }

    /// Names the trunk leg of the phone participant session `session_id` (before it
    /// joins): its usage records then carry the number, trunk and direction. The SIP gateway
    /// forgets it with [`Gateway::forget_phone_leg`] when the leg ends.
    pub fn name_phone_leg(&self, session_id: &str, leg: PhoneLeg) {
        if let Ok(mut legs) = self.phone.legs.lock() {
            legs.insert(session_id.to_owned(), leg);
        }
    }

    /// The leg is over.
    pub fn forget_phone_leg(&self, session_id: &str) {
        if let Ok(mut legs) = self.phone.legs.lock() {
            legs.remove(session_id);
        }
    }

    /// The trunk leg named for `session_id`, if it is a phone's.
    pub(crate) fn phone_leg_of(&self, session_id: &str) -> Option<PhoneLeg> {
        self.phone.legs.lock().ok()?.get(session_id).cloned()
    }

    /// The session id of phone `phone` in call `call_id` (what [`Gateway::name_phone_leg`] takes).
    pub fn phone_call_session_id(call_id: &str, phone: &str) -> String {
        session_id(call_id, phone)
    }

    /// Meeting dial-outs, for the SIP gateway; `None` after the first call.
    pub fn take_meeting_dial_outs(&self) -> Option<mpsc::UnboundedReceiver<MeetingDialOut>> {
        self.phone.dial_out_rx.lock().ok()?.take()
    }

    /// A conversation asks for a dial-out (`key` is its target key, `meeting:<id>`): false
    /// when no SIP gateway takes dial-outs (the requester is told `PstnUnavailable`).
    pub(crate) fn meeting_dial_out(
        &self,
        key: &str,
        conversation_id: &str,
        phone_number: &str,
        requested_by: &str,
    ) -> bool {
        let listening = self.phone.dial_out_rx.lock().map(|rx| rx.is_none()).unwrap_or(false);
        let Some(meeting_id) = key.strip_prefix("meeting:") else { return false };
        listening
            && self
                .phone
                .dial_out_tx
                .send(MeetingDialOut {
                    meeting_id: meeting_id.to_owned(),
                    conversation_id: conversation_id.to_owned(),
                    phone_number: phone_number.to_owned(),
                    requested_by: requested_by.to_owned(),
                })
                .is_ok()
    }

    /// Tells the participant who asked for a meeting dial-out that it failed: an `error`
    /// frame with `code` (the SIP outcome mapped by the SIP gateway) and `message`. False
    /// when the participant has no live socket in that conversation any more.
    pub async fn phone_dial_out_failed(
        &self,
        conversation_id: &str,
        participant_id: &str,
        code: palaver_core::ErrorCode,
        message: String,
    ) -> bool {
        let Some(handle) = self.by_conversation_id(conversation_id) else { return false };
        let message = ServerMessage::error(code, message, None);
        self.record_if_error(&message);
        let (reply, rx) = tokio::sync::oneshot::channel();
        let msg = ActorMsg::ToParticipant { participant_id: participant_id.to_owned(), message, reply };
        handle.tx.send(msg).await.is_ok() && rx.await.unwrap_or(false)
    }

    /// Called by the call actor for every notification: phone parties go to the SIP gateway.
    pub(crate) fn notify_phone(&self, to: &str, event: &CallEvent) {
        if is_phone(to) {
            let _ = self.phone.tx.send(PhoneNotice { phone: to.to_owned(), event: event.clone() });
        }
    }

    /// A phone caller rings `target` (a directory user or a call queue); `endpoint` names
    /// the SIP leg (its Call-ID).
    pub async fn phone_place(
        &self,
        call_id: &str,
        caller: Party,
        endpoint: &str,
        target: &str,
    ) -> Result<(), CallError> {
        let input = Input::Place {
            call_id: call_id.to_owned(),
            caller,
            endpoint: endpoint.to_owned(),
            targets: vec![target.to_owned()],
        };
        self.call_request(input).await
    }

    /// A phone caller rings the owned number it called, for Call Automation (the trunk's
    /// `call-automation` route): `IncomingCall` is raised for `number`.
    pub async fn phone_ring_call_automation(
        &self,
        call_id: &str,
        caller: Party,
        endpoint: &str,
        number: &str,
    ) -> Result<(), CallError> {
        self.call_request(crate::domain::call_automation::incoming_from_phone(call_id, caller, endpoint, number)).await
    }

    /// The phone dialled out to answered. For a Call Automation invitation into a group call
    /// or a room (`call_id` is the invitation id), the leg is then told where to go: a
    /// [`CallEvent::Moved`] into the conversation (`gateway/conversation_invites.rs`).
    pub async fn phone_accept(&self, call_id: &str, callee: Party, endpoint: &str) -> Result<(), CallError> {
        if let Some(answered) = self.ca_phone_invitation_answered(call_id, &callee.raw_id) {
            return answered;
        }
        self.call_request(Input::Accept { call_id: call_id.to_owned(), callee, endpoint: endpoint.to_owned() }).await
    }

    /// The phone dialled out to refused, was busy or could not be reached.
    pub async fn phone_decline(&self, call_id: &str, phone: &str) -> Result<(), CallError> {
        self.call_request(Input::Decline { call_id: call_id.to_owned(), user: phone.to_owned() }).await
    }

    /// The phone dialled out to could not be reached: the trunk's final SIP `status` (`None`
    /// when the trunk gave none) ends the invitation with the matching reason
    /// ([`phone_failure_reason`]), and Call Automation reports the SIP status itself.
    pub async fn phone_fail(&self, call_id: &str, phone: &str, status: Option<u16>) -> Result<(), CallError> {
        // The leg never got media: what the media plane kept for its offer (SDES keys, the
        // ring's placement) is dropped.
        self.phone_detach(call_id, phone);
        let phrase = status.map(sip_reason_phrase).unwrap_or_default();
        if self.ca_phone_invitation_failed(call_id, phone, status, phrase) {
            return Ok(());
        }
        if let Some(status) = status {
            self.call_automation().with_machine(|m| m.record_phone_failure(call_id, phone, status, phrase));
        }
        let reason = phone_failure_reason(status);
        self.call_request(Input::Fail { call_id: call_id.to_owned(), user: phone.to_owned(), reason }).await
    }

    /// The phone caller withdrew its call before an answer (SIP CANCEL).
    pub async fn phone_cancel(&self, call_id: &str, phone: &str) -> Result<(), CallError> {
        self.call_request(Input::Cancel { call_id: call_id.to_owned(), user: phone.to_owned() }).await
    }

    /// The connected phone hung up (SIP BYE).
    pub async fn phone_hang_up(&self, call_id: &str, phone: &str) -> Result<(), CallError> {
        self.call_request(Input::HangUp { call_id: call_id.to_owned(), user: phone.to_owned() }).await
    }

    /// The connected phone's side hands its place to `target` (SIP REFER from the trunk).
    pub async fn phone_transfer(&self, call_id: &str, phone: &str, target: &str) -> Result<(), CallError> {
        let input = Input::Transfer { call_id: call_id.to_owned(), by: phone.to_owned(), target: target.to_owned() };
        self.call_request(input).await
    }

    /// The phone leg's media session in the call (its conference is the call's).
    pub fn phone_media_session(call_id: &str, phone: &str) -> MediaSession {
        MediaSession {
            conversation_id: call_id.to_owned(),
            participant_id: session_id(call_id, phone),
            may_send_media: true,
        }
    }

    /// Joins the phone leg's plain RTP to the call's conference with the trunk's SDP.
    pub fn phone_attach(
        &self,
        call_id: &str,
        phone: &str,
        peer_sdp: String,
        codecs: Vec<String>,
    ) -> MediaFuture<TrunkAnswer> {
        self.media().attach_trunk(Self::phone_media_session(call_id, phone), peer_sdp, codecs)
    }

    /// The server's SDP offer for dialling the phone out through a trunk.
    pub fn phone_offer(&self, call_id: &str, phone: &str, codecs: Vec<String>) -> MediaFuture<String> {
        self.media().trunk_offer(Self::phone_media_session(call_id, phone), codecs)
    }

    /// Releases the phone leg's media.
    pub fn phone_detach(&self, call_id: &str, phone: &str) {
        self.media().leave(Self::phone_media_session(call_id, phone));
    }
}

/// Where a phone participant of a meeting stands, as its conversation tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeetingNotice {
    /// Waiting in the meeting's lobby.
    Lobby,
    /// In the meeting (let in directly, or admitted from the lobby): its media may join.
    Admitted,
    /// Its session is over: it left, was removed or denied, the meeting ended, or the join
    /// was refused (`reason` says which, for the log).
    Ended { reason: String },
}

/// A phone caller seated in a meeting's conversation.
pub struct PhoneMeetingLeg {
    /// The media session of the phone in the meeting's conference.
    pub session: MediaSession,
    pub notices: mpsc::UnboundedReceiver<MeetingNotice>,
    handle: ConversationHandle,
}

impl std::fmt::Debug for PhoneMeetingLeg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PhoneMeetingLeg").field("session", &self.session).finish_non_exhaustive()
    }
}

impl Gateway {
    /// The phone `caller` (`4:+E.164`, shown as `display_name`) joins meeting `meeting_id`,
    /// through its lobby unless the meeting's lobby policy lets everyone in. Its media joins
    /// (with [`Gateway::phone_attach_session`]) once it is [`MeetingNotice::Admitted`].
    pub async fn phone_join_meeting(
        &self,
        meeting_id: &str,
        caller: &str,
        display_name: &str,
        participant_id: Option<String>,
    ) -> Result<PhoneMeetingLeg, Refusal> {
        let record = self.meetings().by_id(meeting_id).await?;
        let key = format!("meeting:{}", record.id);
        let setup = ConversationSetup::Meeting(record.setup());
        self.phone_join_conversation(key, setup, None, caller, display_name, participant_id).await
    }

    /// The phone `caller` joins the conversation `key` (a meeting, or — moved there by Call
    /// Automation — a group call or a room, with `room_role`) as participant
    /// `participant_id`; see [`Gateway::phone_join_meeting`].
    pub(crate) async fn phone_join_conversation(
        &self,
        key: String,
        setup: ConversationSetup,
        room_role: Option<palaver_core::RoomRole>,
        caller: &str,
        display_name: &str,
        participant_id: Option<String>,
    ) -> Result<PhoneMeetingLeg, Refusal> {
        let identifier = CommunicationIdentifier::parse(caller)
            .map_err(|e| Refusal::new(palaver_core::ErrorCode::InvalidIdentifier, format!("caller: {e}")))?;
        let participant_id = participant_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let request = JoinRequest {
            participant_id: participant_id.clone(),
            resume_token: uuid::Uuid::new_v4().simple().to_string(),
            request_id: None,
            identity: JoinIdentity {
                identifier,
                directory_name: None,
                tenant_id: None,
                native_client: false,
                // A trunk leg has no access token to refresh.
                token_expires_at_ms: i64::MAX / 2,
            },
            proposed_display_name: Some(display_name.to_owned()),
            room_role,
        };
        let (tx, rx) = mpsc::channel(256);
        let endpoint = format!("sip:{participant_id}");
        let handle = self.join(key, setup, request, endpoint, tx).await;
        let (notices_tx, notices) = mpsc::unbounded_channel();
        tokio::spawn(follow_meeting(rx, notices_tx));
        let session =
            MediaSession { conversation_id: handle.conversation_id.clone(), participant_id, may_send_media: true };
        Ok(PhoneMeetingLeg { session, notices, handle })
    }

    /// The phone leaves the meeting (BYE or CANCEL from the trunk, or the call failed).
    pub async fn phone_leave_meeting(&self, leg: &PhoneMeetingLeg) {
        let leave = ConversationInput::Command {
            participant_id: leg.session.participant_id.clone(),
            request_id: None,
            command: Command::Leave,
        };
        let _ = leg.handle.tx.send(ActorMsg::Input(leave)).await;
        self.media().leave(leg.session.clone());
    }

    /// Joins a phone leg's plain RTP to `session`'s conference with the trunk's SDP.
    pub fn phone_attach_session(
        &self,
        session: MediaSession,
        peer_sdp: String,
        codecs: Vec<String>,
    ) -> MediaFuture<TrunkAnswer> {
        self.media().attach_trunk(session, peer_sdp, codecs)
    }

    /// Releases a phone leg's media in `session`.
    pub fn phone_leave_session(&self, session: MediaSession) {
        self.media().leave(session);
    }

    /// The server's SDP offer for a phone leg in `session` (an INVITE without an offer, or a
    /// call out through a trunk).
    pub fn phone_offer_session(&self, session: MediaSession, codecs: Vec<String>) -> MediaFuture<String> {
        self.media().trunk_offer(session, codecs)
    }
}

/// Turns what the conversation sends the phone's participant into [`MeetingNotice`]s.
async fn follow_meeting(mut rx: mpsc::Receiver<Outbound>, notices: mpsc::UnboundedSender<MeetingNotice>) {
    let mut admitted = false;
    let ended = loop {
        let Some(outbound) = rx.recv().await else { break "conversation gone".to_owned() };
        let frame = match outbound {
            Outbound::Frame(text) => text,
            Outbound::Detached { reason, .. } => break format!("detached ({reason:?})"),
            Outbound::Overflowed | Outbound::AccessRevoked { .. } | Outbound::MoveInto { .. } => {
                break "dropped".to_owned();
            }
        };
        let Ok(message) = serde_json::from_str::<ServerMessage>(&frame) else { continue };
        match message {
            ServerMessage::Joined { snapshot, .. } | ServerMessage::Snapshot { snapshot } => {
                let notice = match snapshot.state {
                    ParticipantState::Lobby => MeetingNotice::Lobby,
                    _ if admitted => continue,
                    _ => {
                        admitted = true;
                        MeetingNotice::Admitted
                    }
                };
                if notices.send(notice).is_err() {
                    return;
                }
            }
            ServerMessage::SessionEnded { reason, .. } => break format!("{reason:?}"),
            ServerMessage::Error { code, message, .. } => break format!("{code}: {message}"),
            _ => {}
        }
    };
    let _ = notices.send(MeetingNotice::Ended { reason: ended });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trunks_sip_status_says_why_a_call_to_a_phone_ended() {
        let reason = |s| phone_failure_reason(Some(s));
        assert_eq!(reason(486), CallEndReason::Busy);
        assert_eq!(reason(600), CallEndReason::Busy);
        assert_eq!(reason(480), CallEndReason::NoAnswer);
        assert_eq!(reason(408), CallEndReason::NoAnswer);
        assert_eq!(reason(603), CallEndReason::Declined);
        assert_eq!(reason(404), CallEndReason::Unreachable);
        assert_eq!(reason(484), CallEndReason::Unreachable);
        assert_eq!(reason(503), CallEndReason::Unavailable);
        assert_eq!(reason(500), CallEndReason::Unavailable);
        assert_eq!(reason(403), CallEndReason::Unavailable, "the trunk refusing us is not the phone declining");
        assert_eq!(phone_failure_reason(None), CallEndReason::Unavailable);
        assert_eq!(sip_reason_phrase(484), "Address Incomplete");
        let frame = serde_json::to_value(CallEvent::Ended { call_id: "c".into(), reason: reason(404) }).unwrap();
        assert_eq!(frame["reason"], "unreachable");
    }
}
