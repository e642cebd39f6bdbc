//! The vocabulary of the call state machine: its inputs, outputs, the events sent to
//! users (serde-ready WebSocket frames) and its error type.

use palaver_core::{CallType, EndReason, ErrorCode};
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

/// What the gateway feeds into [`CallManager::handle`](super::CallManager::handle).
/// Acting users' ids come from their access token, never from the client message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Ring one target (1:1) or several at once (group). A target may be a call queue.
    Place { call_id: String, caller: Party, endpoint: String, targets: Vec<String> },
    /// An invited user (or the queue member currently rung) answers.
    Accept { call_id: String, callee: Party, endpoint: String },
    /// An invited user refuses; a queue moves on to its next member.
    Decline { call_id: String, user: String },
    /// An invited party could not be reached, for `reason` (a phone number dialled through
    /// a SIP trunk answered busy, no answer, unreachable, unavailable…): like a decline, but
    /// the call ends with that reason.
    Fail { call_id: String, user: String, reason: CallEndReason },
    /// Before the call is answered the caller withdraws it; afterwards a participant
    /// withdraws the invitations and transfer it started.
    Cancel { call_id: String, user: String },
    /// A connected participant leaves.
    HangUp { call_id: String, user: String },
    /// A connected participant rings one more user, queue or phone number.
    AddParticipant { call_id: String, by: String, target: String },
    /// A connected participant hands its place to a user or a queue.
    Transfer { call_id: String, by: String, target: String },
    /// The user's last session is gone (reconnect grace ran out).
    UserGone { user: String },
    /// As `AddParticipant`, ringing a user (not a queue) for `ring_timeout_secs` instead of
    /// the configured time (Call Automation's `invitationTimeoutInSeconds`, 1..=180).
    AddParticipantRinging { call_id: String, by: String, target: String, ring_timeout_secs: u64 },
    /// A connected participant takes another connected participant out of the call (Call
    /// Automation's `participants:remove`).
    RemoveParticipant { call_id: String, by: String, target: String },
    /// A connected participant withdraws its one invitation of `target` (Call Automation's
    /// `participants:cancelAddParticipant`).
    CancelInvite { call_id: String, by: String, target: String },
    /// A connected participant ends the call for everyone (Call Automation's `:terminate`).
    Terminate { call_id: String, by: String },
    /// A server-side participant (an endpoint starting with [`SERVER_LEG_ENDPOINT_PREFIX`])
    /// joins an answered call without ringing (Call Automation's `:connect` to a server call).
    JoinServerLeg { call_id: String, party: Party, endpoint: String },
    /// A connected participant of `to_call` (`by`) moves `target`, connected in `from_call`,
    /// into `to_call` without ringing (Call Automation's `participants:moveHere`).
    MoveParticipant { from_call: String, to_call: String, by: String, target: String },
    /// Process ring timers that are due.
    Tick,
}

/// Endpoints of server-side participants (Call Automation call connections) start with this.
/// Such a participant may be in any number of calls at once: it is never busy.
pub const SERVER_LEG_ENDPOINT_PREFIX: &str = "ca:";

/// Is `endpoint` a server-side participant's (a Call Automation call connection)?
pub fn is_server_leg(endpoint: &str) -> bool {
    endpoint.starts_with(SERVER_LEG_ENDPOINT_PREFIX)
}

/// What the gateway must do after an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send `event` to every session of user `to` (a raw id).
    Notify { to: String, event: CallEvent },
    /// A participant is now connected: start its billing session.
    ParticipantConnected { call_id: String, participant: Party, endpoint: String, call_type: CallType },
    /// A connected participant is gone: end its billing session (exactly once).
    ParticipantDisconnected { call_id: String, raw_id: String, reason: EndReason },
    /// The call became a group call (a third participant connected).
    CallTypeChanged { call_id: String, call_type: CallType },
    /// The call is over; drop any state kept for it.
    CallEnded { call_id: String, reason: CallEndReason },
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
        join: Option<palaver_core::protocol::JoinTarget>,
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
            | CallEvent::Ended { call_id, .. }
            | CallEvent::RecordingChanged { call_id, .. } => call_id,
        }
    }
}

/// A refused input. Nothing changed in the machine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct CallError {
    pub code: ErrorCode,
    pub message: String,
}

impl CallError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

/// Where a call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CallState {
    /// Placed, nobody answered yet.
    Ringing,
    /// At least one target answered.
    Connected,
}

/// A read-only view of one call (for reconnects and tests).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallSnapshot {
    pub call_id: String,
    pub state: CallState,
    pub call_type: CallType,
    pub caller: Party,
    /// Connected participants (the caller counts from the moment of placing).
    pub participants: Vec<Party>,
    /// Raw ids currently ringing (for a queue: the member being rung).
    pub ringing: Vec<String>,
    /// A transfer in progress: its target.
    pub transfer_target: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialize_as_ws_frames() {
        let ev = CallEvent::Incoming {
            call_id: "c1".into(),
            caller: Party::new("8:orgid:a", "Ada"),
            participants: vec![],
            queue: None,
            transferred_by: None,
            ring_timeout_ms: 30_000,
            join: None,
        };
        assert_eq!(
            serde_json::to_value(&ev).unwrap(),
            serde_json::json!({"type":"call.incoming","callId":"c1",
                "caller":{"rawId":"8:orgid:a","displayName":"Ada"},"participants":[],"ringTimeoutMs":30000})
        );
        let ended = CallEvent::Ended { call_id: "c1".into(), reason: CallEndReason::NoAnswer };
        let json = serde_json::to_value(&ended).unwrap();
        assert_eq!(json, serde_json::json!({"type":"call.ended","callId":"c1","reason":"noAnswer"}));
        assert_eq!(serde_json::from_value::<CallEvent>(json).unwrap(), ended);
        let connected = CallEvent::Connected { call_id: "c".into(), participants: vec![], call_type: CallType::P2P };
        assert_eq!(serde_json::to_value(&connected).unwrap()["callType"], "P2P");
    }
}
