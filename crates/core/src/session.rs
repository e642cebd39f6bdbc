//! Participant-session events: the contract between the control plane (which knows
//! when someone joins and leaves a conversation) and the billing meter (which turns
//! those spans into participant-minutes); and [`SignalingTelemetry`] and [`ChatTelemetry`], the
//! counts the control plane reports to operators (Prometheus in the binary). The control plane depends on these
//! traits only, never on the billing or telemetry crates.
//!
//! Signaling emits one `started` and exactly one `ended` per participant session,
//! through a [`SessionObserver`]. A session begins when the participant connects to a
//! conversation (lobby included: lobby time is billed) and ends when they leave, are
//! removed, or their reconnect grace period runs out.

use crate::error::ErrorCode;
use crate::participant::{EndpointType, ParticipantType};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `CallType` of an `ACSCallSummary`: two parties, or more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CallType {
    P2P,
    Group,
}

/// Why a participant session ended (`ParticipantEndReason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EndReason {
    /// The participant hung up / left.
    Left,
    /// Removed by someone with the right role, or denied from the lobby.
    Removed,
    /// The conversation ended for everyone.
    ConversationEnded,
    /// The connection dropped and the reconnect grace period ran out.
    ConnectionLost,
    /// The access token expired and was not refreshed.
    TokenExpired,
    /// The identity's access tokens were revoked, or the identity was deleted.
    TokenRevoked,
    /// Closed during recovery after a server crash, at the last checkpoint.
    ServerFailure,
    /// The server shut down cleanly.
    ServerShutdown,
}

impl EndReason {
    /// Every reason, in declaration order.
    pub const ALL: [EndReason; 8] = [
        Self::Left,
        Self::Removed,
        Self::ConversationEnded,
        Self::ConnectionLost,
        Self::TokenExpired,
        Self::TokenRevoked,
        Self::ServerFailure,
        Self::ServerShutdown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Left => "Left",
            Self::Removed => "Removed",
            Self::ConversationEnded => "ConversationEnded",
            Self::ConnectionLost => "ConnectionLost",
            Self::TokenExpired => "TokenExpired",
            Self::TokenRevoked => "TokenRevoked",
            Self::ServerFailure => "ServerFailure",
            Self::ServerShutdown => "ServerShutdown",
        }
    }
}

/// A participant connected to a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStarted {
    /// Unique per participant session (a rejoin is a new session).
    pub session_id: String,
    /// The conversation (meeting, call, room) id: the `CorrelationId`.
    pub conversation_id: String,
    pub call_type: CallType,
    /// Raw id of the participant (`8:acs:...`, `8:orgid:...`).
    pub participant_raw_id: String,
    pub participant_type: ParticipantType,
    pub endpoint_type: EndpointType,
    /// Meeting chat thread id, if any (`TeamsThreadId`).
    pub thread_id: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// A phone participant's SIP trunk leg (number, trunk, direction), so its minutes are
    /// metered per number, trunk and direction; `None` for everyone else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<PhoneLeg>,
}

/// Which way a phone call crossed the SIP trunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PhoneDirection {
    /// A phone called one of palaver's numbers.
    Inbound,
    /// palaver called a phone number (a user's call, a meeting dial-out, Call Automation).
    Outbound,
}

impl PhoneDirection {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "inbound" => Some(Self::Inbound),
            "outbound" => Some(Self::Outbound),
            _ => None,
        }
    }
}

/// The SIP trunk leg of a phone participant, as billing meters it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PhoneLeg {
    /// palaver's own number on the call (`+E.164`): the number called (inbound) or the
    /// number presented to the called phone (outbound).
    pub number: String,
    /// The `[[sip.trunks]]` name the call crossed.
    pub trunk: String,
    pub direction: PhoneDirection,
}

/// A participant session ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEnded {
    pub session_id: String,
    pub conversation_id: String,
    pub reason: EndReason,
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
}

/// Told once a session start is durable (written and synced where billing keeps it), so the
/// control plane can acknowledge a join only then: a crash right after `joined` must not lose
/// the participant's billing record. Runtime-agnostic: a callback the observer calls from any
/// thread. Dropping it without [`DurableAck::acknowledge`] means "will never be durable"
/// (the observer is gone); the callback is then not called, which a waiter sees as a closed
/// channel.
pub struct DurableAck(Option<Box<dyn FnOnce() + Send + 'static>>);

impl DurableAck {
    pub fn new(on_durable: impl FnOnce() + Send + 'static) -> Self {
        Self(Some(Box::new(on_durable)))
    }

    /// Nobody waits.
    pub fn none() -> Self {
        Self(None)
    }

    /// The event is durable: tell the waiter.
    pub fn acknowledge(mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

impl std::fmt::Debug for DurableAck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "DurableAck(waiting)" } else { "DurableAck(none)" })
    }
}

/// Receives participant-session events from the control plane. Implementations must
/// not block (hand the event to a queue or a task).
pub trait SessionObserver: Send + Sync + 'static {
    fn session_started(&self, event: SessionStarted);
    /// Like [`Self::session_started`], and `durable` is acknowledged once the start is durable.
    /// The default (observers that keep nothing) acknowledges at once; billing overrides it to
    /// acknowledge after the ledger's synced commit.
    fn session_started_durably(&self, event: SessionStarted, durable: DurableAck) {
        self.session_started(event);
        durable.acknowledge();
    }
    fn session_ended(&self, event: SessionEnded);
    /// The conversation's call type changed (e.g. a 1:1 call became a group call).
    fn call_type_changed(&self, _conversation_id: &str, _call_type: CallType) {}
    /// A server-side media feature of a call (a recording, a media stream) ended; ACS meters
    /// it by the minute besides participant time. Default: not metered.
    fn media_used(&self, _usage: MediaUsed) {}
}

/// What [`MediaUsed`] meters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaUsageKind {
    /// Call recording minutes (mixed audio).
    Recording,
    /// Call Automation media streaming minutes (audio over WebSocket to the application).
    Streaming,
}

/// One finished recording or media stream of a call, as billing meters it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaUsed {
    pub kind: MediaUsageKind,
    /// Unique per recording / stream (the recording id; `<call connection id>/<n>` for a stream).
    pub id: String,
    /// The call (server call id): `CorrelationId` of the usage record.
    pub correlation_id: String,
    /// Who used it: the application's identity (raw id), `UserIdA`.
    pub user_raw_id: String,
    /// When it ended (milliseconds since the Unix epoch).
    pub end_ms: i64,
    /// Metered time (a recording's paused time is not in it).
    pub metered_ms: i64,
}

/// One chat message a user sent through the Chat API: ACS meters chat per message sent, so
/// each becomes one usage record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessageSent {
    pub thread_id: String,
    pub message_id: String,
    pub sender_raw_id: String,
    /// Who sent it, as calling usage classifies participants (decides billable or not).
    pub participant_type: ParticipantType,
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
}

/// Receives chat usage from the chat service (billing implements it). Must not block.
pub trait ChatUsageObserver: Send + Sync + 'static {
    fn chat_message_sent(&self, event: ChatMessageSent);
}

/// What the control plane counts for operators. Implementations must not block.
pub trait SignalingTelemetry: Send + Sync + 'static {
    /// A participant joined; `latency` from join request to joined.
    fn join_completed(&self, latency: Duration);
    /// An error was answered to a client (REST or socket), by code.
    fn error_answered(&self, code: ErrorCode);
    /// Live meetings (meetings and rooms; calls are counted by billing).
    fn active_meetings(&self, count: usize);
    /// Participants waiting in a lobby, over all conversations.
    fn lobby_size(&self, count: usize);
}

/// What the chat service counts for operators. Label values must come from closed sets: an
/// implementation counts unknown `kind`s as `text` and ignores unknown event names. Must not
/// block.
pub trait ChatTelemetry: Send + Sync + 'static {
    /// A user message of `kind` (`text`/`html`) was sent.
    fn message_sent(&self, kind: &str);
    /// A chat thread was created.
    fn thread_created(&self);
    /// `count` copies of real-time event `name` were handed to client connections.
    fn events_delivered(&self, name: &str, count: u64);
}

/// Counts nothing (tools and tests without a telemetry registry).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoTelemetry;

impl SignalingTelemetry for NoTelemetry {
    fn join_completed(&self, _latency: Duration) {}
    fn error_answered(&self, _code: ErrorCode) {}
    fn active_meetings(&self, _count: usize) {}
    fn lobby_size(&self, _count: usize) {}
}

impl ChatTelemetry for NoTelemetry {
    fn message_sent(&self, _kind: &str) {}
    fn thread_created(&self) {}
    fn events_delivered(&self, _name: &str, _count: u64) {}
}
