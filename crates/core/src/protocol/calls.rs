//! The frames of calls between users (`call.*`, server to client): what the call machine
//! tells each participant's sockets (ringing, connected, ended, moved...). The signaling
//! server produces them; clients (`palaver-client`) read them with the same types.

use super::JoinTarget;
use crate::CallType;
use crate::session::EndReason;
use serde::{Deserialize, Serialize};

/// A user as shown to others in a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Party {
    pub raw_id: String,
    pub display_name: String,
}

impl Party {
    pub fn new(raw_id: impl Into<String>, display_name: impl Into<String>) -> Self {
        Self { raw_id: raw_id.into(), display_name: display_name.into() }
    }
}

/// Why a call, an invitation or a participation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CallEndReason {
    HungUp,
    Cancelled,
    Declined,
    NoAnswer,
    Busy,
    Transferred,
    QueueExhausted,
    ConnectionLost,
    AnsweredElsewhere,
    /// Taken out of the call by another participant.
    Removed,
    /// A participant ended the call for everyone.
    Terminated,
    /// The called phone number does not exist or cannot be routed (SIP 404, 484, 604…).
    Unreachable,
    /// The phone network could not place the call (SIP 5xx, 403, no answer from the trunk).
    Unavailable,
}

impl CallEndReason {
    /// The billing end reason for a participant leaving for this reason.
    pub fn session_end_reason(self) -> EndReason {
        match self {
            Self::ConnectionLost => EndReason::ConnectionLost,
            Self::HungUp | Self::Transferred | Self::Cancelled => EndReason::Left,
            Self::Removed => EndReason::Removed,
            _ => EndReason::ConversationEnded,
        }
    }
}

/// Events sent to users. Serialized, each is a complete WebSocket server frame:
/// `{"type":"call.incoming","callId":...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum CallEvent {
    #[serde(rename = "call.incoming", rename_all = "camelCase")]
    Incoming {
        call_id: String,
        caller: Party,
        participants: Vec<Party>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        queue: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        transferred_by: Option<Party>,
        ring_timeout_ms: u64,
        /// An invitation into a group call or a room (Call Automation `add_participant` there):
        /// the client accepts by sending `join` with this target, declines with `call.decline`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        join: Option<JoinTarget>,
        /// The `customCallingContext` of the Call Automation add or transfer that rings this
        /// user (`{"voipHeaders":{..},"sipHeaders":{..}}`, as the application sent it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        custom_context: Option<serde_json::Value>,
        /// For a phone target: the owned number to present as the caller (Call Automation's
        /// `sourceCallerIdNumber` on `createCall`, add or transfer); the trunk's caller-id
        /// policy decides when it is absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caller_id_number: Option<String>,
    },
    #[serde(rename = "call.ringing", rename_all = "camelCase")]
    Ringing {
        call_id: String,
        target: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        queue: Option<String>,
    },
    #[serde(rename = "call.connected", rename_all = "camelCase")]
    Connected { call_id: String, participants: Vec<Party>, call_type: CallType },
    #[serde(rename = "call.participantJoined", rename_all = "camelCase")]
    ParticipantJoined { call_id: String, participant: Party },
    #[serde(rename = "call.participantLeft", rename_all = "camelCase")]
    ParticipantLeft { call_id: String, participant: String, reason: CallEndReason },
    #[serde(rename = "call.inviteFailed", rename_all = "camelCase")]
    InviteFailed { call_id: String, target: String, reason: CallEndReason },
    #[serde(rename = "call.transferAccepted", rename_all = "camelCase")]
    TransferAccepted { call_id: String, target: String, accepted_by: Party },
    #[serde(rename = "call.transferFailed", rename_all = "camelCase")]
    TransferFailed { call_id: String, target: String, reason: CallEndReason },
    /// This socket's participant of call `call_id` was moved into the conversation `join`
    /// names (Call Automation `participants:moveHere` into a group call or a room): the call
    /// is over for it (`call.ended` follows) and the server joins that conversation on this
    /// socket without ringing (`joined` follows); the client attaches its media again there.
    #[serde(rename = "call.moved", rename_all = "camelCase")]
    Moved { call_id: String, join: JoinTarget },
    #[serde(rename = "call.ended", rename_all = "camelCase")]
    Ended { call_id: String, reason: CallEndReason },
    /// The call is being recorded (`recording: true`) or no longer: the recording notice of a
    /// call between users (a Call Automation recording), which has no conversation roster.
    #[serde(rename = "call.recordingChanged", rename_all = "camelCase")]
    RecordingChanged { call_id: String, recording: bool },
}

impl CallEvent {
    /// The call every event names.
    pub fn call_id(&self) -> &str {
        match self {
            CallEvent::Incoming { call_id, .. }
            | CallEvent::Ringing { call_id, .. }
            | CallEvent::Connected { call_id, .. }
            | CallEvent::ParticipantJoined { call_id, .. }
            | CallEvent::ParticipantLeft { call_id, .. }
            | CallEvent::InviteFailed { call_id, .. }
            | CallEvent::TransferAccepted { call_id, .. }
            | CallEvent::TransferFailed { call_id, .. }
            | CallEvent::Moved { call_id, .. }
            | CallEvent::Ended { call_id, .. }
            | CallEvent::RecordingChanged { call_id, .. } => call_id,
        }
    }
}
