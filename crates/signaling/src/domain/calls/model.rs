//! The vocabulary of the call state machine: its inputs, outputs, the events sent to
//! users (serde-ready WebSocket frames) and its error type.

pub use palaver_core::protocol::calls::{CallEndReason, CallEvent, Party};
use palaver_core::{CallType, EndReason, ErrorCode};
use serde::{Deserialize, Serialize};

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
    /// The user's sockets are gone from the cluster node that answered call `call_id` for it
    /// (its reconnect grace ran out there) while the call runs here: its part in that call
    /// ends as for [`Input::UserGone`].
    UserGoneFrom { call_id: String, user: String },
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
    /// `target`, a user connected from a socket in answered call `call_id`, leaves it to
    /// join the conversation `join` names on that socket without ringing (Call Automation's
    /// `participants:moveHere` into a group call or a room).
    MoveToConversation { call_id: String, target: String, join: palaver_core::protocol::JoinTarget },
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
    /// `raw_id` left `call_id` to join the conversation `join` names: the socket `endpoint`
    /// (its connection id in the call) joins it (`call.moved`, then `joined`).
    MovedToConversation { call_id: String, raw_id: String, endpoint: String, join: palaver_core::protocol::JoinTarget },
    /// The call is over; drop any state kept for it.
    CallEnded { call_id: String, reason: CallEndReason },
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
            custom_context: None,
            caller_id_number: None,
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
