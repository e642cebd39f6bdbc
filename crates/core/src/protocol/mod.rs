//! WebSocket client protocol, version 1: every JSON frame a client and the server
//! exchange on `/signaling/v1` (and, length-prefixed, on a QUIC signaling stream; see
//! `docs/quic.md`: [`AuthFrame`] first, `media.attach` only there).
//!
//! Frames are JSON objects with a `type` tag. Client frames may carry a `requestId`
//! which the server echoes on the `ack`, `error` or `joined` frame that answers them.
//! Unknown fields are ignored (forward compatibility); an unknown `type` is answered
//! with an `error` frame (`UnknownMessageType`). The reference with one example per
//! message is `docs/signaling.md`.

use crate::identifier::IdentifierModel;
use crate::participant::ParticipantType;
use crate::role::{MeetingRole, RoomRole};
use crate::session::EndReason;
use serde::{Deserialize, Serialize};

pub mod calls;
mod close;
mod media;
pub mod quic;
pub use close::ConnectionClose;
pub use media::*;

/// The protocol version served on `/signaling/v1`.
pub const PROTOCOL_VERSION: u32 = 1;
/// Largest text frame the server accepts; larger frames get a `PayloadTooLarge` error frame.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

// ---------------------------------------------------------------------------------
// Shared shapes
// ---------------------------------------------------------------------------------

/// What kind of conversation a participant is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ConversationKind {
    Meeting,
    GroupCall,
    Room,
}

/// Which conversation a `join` asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum JoinTarget {
    /// A directory-style meeting, by its join link.
    MeetingLink { join_url: String },
    /// A directory-style meeting, by its numeric meeting id and passcode.
    MeetingCode { meeting_code: String, passcode: String },
    /// A group call identified by a client-chosen group id (a UUID).
    GroupCall { group_id: String },
    /// An ACS Room created through the Rooms API.
    Room { room_id: String },
}

/// Who may skip the lobby of a meeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum LobbyBypass {
    /// Everybody joins directly (external users still wait until a directory user is present).
    Everyone,
    /// Directory users of the organizer's tenant join directly; everyone else waits.
    #[default]
    Organization,
    /// Only the organizer joins directly.
    OrganizerOnly,
}

/// Meeting policies, set at creation and changed by organizers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeetingPolicy {
    pub lobby_bypass: LobbyBypass,
    /// May external (communication) users join at all?
    pub allow_external_users: bool,
    /// May external users dial out to phone numbers from the meeting? Off by default.
    pub external_dial_out: bool,
    /// Cap on participants on the calling path (default 350; at most 1000).
    pub max_participants: u32,
}

impl MeetingPolicy {
    /// Participants on the calling path, by default.
    pub const DEFAULT_MAX_PARTICIPANTS: u32 = 350;
    /// Hard ceiling for any conversation, native directory clients included.
    pub const HARD_MAX_PARTICIPANTS: u32 = 1000;
}

impl Default for MeetingPolicy {
    fn default() -> Self {
        Self {
            lobby_bypass: LobbyBypass::default(),
            allow_external_users: true,
            external_dial_out: false,
            max_participants: Self::DEFAULT_MAX_PARTICIPANTS,
        }
    }
}

/// A partial policy change: absent members stay as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lobby_bypass: Option<LobbyBypass>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_external_users: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_dial_out: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_participants: Option<u32>,
}

/// Where a participant is in a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ParticipantState {
    /// Waiting in the lobby to be admitted.
    Lobby,
    /// In the conversation.
    Connected,
    /// In the conversation, socket dropped, within the reconnect grace period.
    Reconnecting,
}

/// `active` / `inactive`, for recording and transcription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum CaptureStatus {
    Active,
    #[default]
    Inactive,
}

impl CaptureStatus {
    pub fn from_active(active: bool) -> Self {
        if active { Self::Active } else { Self::Inactive }
    }
    pub fn is_active(self) -> bool {
        matches!(self, Self::Active)
    }
}

/// Recording and transcription state of a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CaptureState {
    pub recording: CaptureStatus,
    pub transcription: CaptureStatus,
}

/// One roster entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantInfo {
    pub participant_id: String,
    pub identifier: IdentifierModel,
    pub display_name: String,
    pub role: MeetingRole,
    /// The participant's Rooms role, in a room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_role: Option<RoomRole>,
    pub participant_type: ParticipantType,
    /// External (communication) user, shown with the ` (External)` suffix.
    pub is_external: bool,
    pub state: ParticipantState,
    pub muted: bool,
    pub hand_raised: bool,
    pub screen_sharing: bool,
}

/// The full view of a conversation a participant gets on join, admission and resume.
/// Participants still in the lobby get an empty `participants` list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationSnapshot {
    pub conversation_id: String,
    pub kind: ConversationKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The receiving participant's own id.
    pub participant_id: String,
    /// The receiving participant's own state (`lobby` while waiting).
    pub state: ParticipantState,
    pub role: MeetingRole,
    pub capture: CaptureState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<MeetingPolicy>,
    /// Roster version: every later `roster.delta` carries the next number.
    pub roster_version: u64,
    pub participants: Vec<ParticipantInfo>,
    /// The meeting's chat thread (`19:meeting_…@thread.v2`); absent outside meetings and
    /// for participants still in the lobby.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
}

/// One change to the roster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum RosterChange {
    /// Someone joined (possibly into the lobby: see `participant.state`).
    Joined {
        participant: ParticipantInfo,
    },
    /// Someone left, was removed, was denied from the lobby, or their grace period ran out.
    Left {
        participant_id: String,
        reason: EndReason,
    },
    /// Lobby → connected (admitted), connected ↔ reconnecting.
    StateChanged {
        participant_id: String,
        state: ParticipantState,
    },
    RoleChanged {
        participant_id: String,
        role: MeetingRole,
    },
    Muted {
        participant_id: String,
        muted: bool,
        by: Option<String>,
    },
    HandRaised {
        participant_id: String,
        raised: bool,
    },
    ScreenShare {
        participant_id: String,
        active: bool,
    },
    /// Loudest participants, most active first (fed by the media plane).
    ActiveSpeakers {
        participant_ids: Vec<String>,
    },
}

// ---------------------------------------------------------------------------------
// Client → server
// ---------------------------------------------------------------------------------

/// A frame from the client: an optional `requestId` plus the tagged message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientFrame {
    #[serde(rename = "requestId", default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(flatten)]
    pub message: ClientMessage,
}

/// Client messages, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all_fields = "camelCase")]
pub enum ClientMessage {
    /// Application heartbeat; answered with `pong`.
    #[serde(rename = "ping")]
    Ping {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nonce: Option<u64>,
    },
    /// Join a conversation. External users may propose a display name (the server adds ` (External)`).
    #[serde(rename = "join")]
    Join {
        target: JoinTarget,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        display_name: Option<String>,
    },
    /// Take a participant back after a dropped socket, within the grace period.
    #[serde(rename = "resume")]
    Resume { conversation_id: String, participant_id: String, resume_token: String },
    /// Leave the current conversation (the socket stays open).
    #[serde(rename = "leave")]
    Leave,
    /// Present a fresh access token for the same identity.
    #[serde(rename = "token.refresh")]
    TokenRefresh { token: String },
    #[serde(rename = "lobby.admit")]
    LobbyAdmit { participant_id: String },
    #[serde(rename = "lobby.deny")]
    LobbyDeny { participant_id: String },
    #[serde(rename = "participant.remove")]
    ParticipantRemove { participant_id: String },
    /// Mute someone else (unmuting others is not possible: they unmute themselves).
    #[serde(rename = "participant.mute")]
    ParticipantMute { participant_id: String },
    #[serde(rename = "participant.setRole")]
    ParticipantSetRole { participant_id: String, role: MeetingRole },
    /// Mute or unmute oneself.
    #[serde(rename = "self.mute")]
    SelfMute { muted: bool },
    #[serde(rename = "self.raiseHand")]
    SelfRaiseHand { raised: bool },
    #[serde(rename = "screenShare.start")]
    ScreenShareStart,
    #[serde(rename = "screenShare.stop")]
    ScreenShareStop,
    #[serde(rename = "recording.start")]
    RecordingStart,
    #[serde(rename = "recording.stop")]
    RecordingStop,
    #[serde(rename = "transcription.start")]
    TranscriptionStart,
    #[serde(rename = "transcription.stop")]
    TranscriptionStop,
    #[serde(rename = "meeting.updatePolicy")]
    MeetingUpdatePolicy { policy: PolicyUpdate },
    #[serde(rename = "meeting.end")]
    MeetingEnd,
    /// Dial a phone number into the conversation (`+E.164`).
    #[serde(rename = "dialOut")]
    DialOut { phone_number: String },
    /// SDP offer for this participant's media session; answered with `media.answer`.
    #[serde(rename = "media.offer")]
    MediaOffer {
        sdp: String,
        /// Set for a call between users (`call.*`); absent for the joined conversation.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call_id: Option<String>,
    },
    #[serde(rename = "media.iceCandidate")]
    MediaIceCandidate {
        candidate: IceCandidate,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call_id: Option<String>,
    },
    /// QUIC connections only: start (or replace) this participant's datagram media session.
    /// `tracks` are the streams the client sends (rid layers of one kind = one simulcast
    /// camera/screen); `receive` asks for video receive slots (absent = the audio mix only).
    /// Answered with `media.attached`.
    #[serde(rename = "media.attach")]
    MediaAttach {
        #[serde(default)]
        tracks: Vec<MediaTrack>,
        #[serde(default, skip_serializing_if = "MediaReceive::is_audio_only")]
        receive: MediaReceive,
        /// Set for a call between users (`call.*`); absent for the joined conversation.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call_id: Option<String>,
    },
    /// Size or pause this participant's video receive slots (see `media.slots`); acked.
    #[serde(rename = "media.subscribe")]
    MediaSubscribe { slots: Vec<SlotSubscription> },
    /// Ring one directory user / call queue (1:1) or several (group); answered with `call.placed`.
    #[serde(rename = "call.place")]
    CallPlace { targets: Vec<String> },
    #[serde(rename = "call.accept")]
    CallAccept { call_id: String },
    #[serde(rename = "call.decline")]
    CallDecline { call_id: String },
    #[serde(rename = "call.cancel")]
    CallCancel { call_id: String },
    #[serde(rename = "call.hangUp")]
    CallHangUp { call_id: String },
    #[serde(rename = "call.addParticipant")]
    CallAddParticipant { call_id: String, target: String },
    #[serde(rename = "call.transfer")]
    CallTransfer { call_id: String, target: String },
}

impl ClientMessage {
    /// Every `type` a client may send (kept in sync with the enum by a unit test).
    pub const TYPES: &'static [&'static str] = &[
        "ping",
        "join",
        "resume",
        "leave",
        "token.refresh",
        "lobby.admit",
        "lobby.deny",
        "participant.remove",
        "participant.mute",
        "participant.setRole",
        "self.mute",
        "self.raiseHand",
        "screenShare.start",
        "screenShare.stop",
        "recording.start",
        "recording.stop",
        "transcription.start",
        "transcription.stop",
        "meeting.updatePolicy",
        "meeting.end",
        "dialOut",
        "media.offer",
        "media.iceCandidate",
        "media.attach",
        "media.subscribe",
        "call.place",
        "call.accept",
        "call.decline",
        "call.cancel",
        "call.hangUp",
        "call.addParticipant",
        "call.transfer",
    ];
}

/// Why a client frame could not be read; the `ErrorCode` the error frame carries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes exceeds the {MAX_FRAME_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("frame is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("frame is not a JSON object with a string `type`")]
    MissingType,
    #[error("unknown message type `{0}`")]
    UnknownType(String),
    #[error("invalid `{ty}` message: {detail}")]
    InvalidFields { ty: String, detail: String, request_id: Option<String> },
}

impl FrameError {
    pub fn code(&self) -> crate::ErrorCode {
        use crate::ErrorCode;
        match self {
            Self::TooLarge(_) => ErrorCode::PayloadTooLarge,
            Self::MalformedJson(_) | Self::MissingType => ErrorCode::InvalidJson,
            Self::UnknownType(_) => ErrorCode::UnknownMessageType,
            Self::InvalidFields { .. } => ErrorCode::InvalidParameter,
        }
    }
    /// The `requestId` of the offending frame, when it could be read.
    pub fn request_id(&self) -> Option<String> {
        match self {
            Self::InvalidFields { request_id, .. } => request_id.clone(),
            _ => None,
        }
    }
}

impl ClientFrame {
    /// Parse one text frame, telling apart oversize, bad JSON, unknown type and bad fields.
    pub fn parse(text: &str) -> Result<Self, FrameError> {
        if text.len() > MAX_FRAME_BYTES {
            return Err(FrameError::TooLarge(text.len()));
        }
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| FrameError::MalformedJson(e.to_string()))?;
        let ty = value.get("type").and_then(|t| t.as_str()).ok_or(FrameError::MissingType)?.to_string();
        if !ClientMessage::TYPES.contains(&ty.as_str()) {
            return Err(FrameError::UnknownType(ty));
        }
        let request_id = value.get("requestId").and_then(|r| r.as_str()).map(str::to_string);
        serde_json::from_value(value).map_err(|e| FrameError::InvalidFields { ty, detail: e.to_string(), request_id })
    }
}

// ---------------------------------------------------------------------------------
// Server → client
// ---------------------------------------------------------------------------------

/// Server messages, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all_fields = "camelCase")]
pub enum ServerMessage {
    /// First frame on every connection.
    #[serde(rename = "welcome")]
    Welcome {
        protocol_version: u32,
        connection_id: String,
        identifier: IdentifierModel,
        display_name: String,
        /// Send something (e.g. `ping`) at least this often.
        heartbeat_interval_ms: u64,
        /// The connection counts as dropped after this long without any inbound frame.
        idle_timeout_ms: u64,
        max_frame_bytes: usize,
        /// Access-token expiry, milliseconds since the Unix epoch.
        token_expires_at_ms: i64,
    },
    #[serde(rename = "pong")]
    Pong {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nonce: Option<u64>,
    },
    /// A request was carried out.
    #[serde(rename = "ack")]
    Ack {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<String>,
    },
    /// A request was refused or a frame could not be read; the connection stays usable.
    #[serde(rename = "error")]
    Error {
        code: String,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<String>,
    },
    /// Answer to a QUIC client's `join` in a cluster (docs/cluster.md): the conversation is
    /// hosted by another node, whose QUIC address (and HTTPS base URL) this names; the client
    /// connects there and sends the same `join` (QUIC media rides on the signaling connection,
    /// so it cannot be relayed the way WebSocket signaling is).
    #[serde(rename = "redirect")]
    Redirect {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<String>,
        /// The home node's id.
        node: String,
        /// The home node's QUIC address (`host:port`).
        quic: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        https: Option<String>,
    },
    /// Answer to `join`: the participant id, the secret to `resume` with, and the snapshot.
    #[serde(rename = "joined")]
    Joined {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<String>,
        resume_token: String,
        snapshot: ConversationSnapshot,
    },
    /// A fresh full view: after admission from the lobby and after `resume`.
    #[serde(rename = "snapshot")]
    Snapshot { snapshot: ConversationSnapshot },
    #[serde(rename = "roster.delta")]
    RosterDelta { roster_version: u64, delta: RosterChange },
    /// Recording/transcription changed. Sent to everyone, lobby included.
    #[serde(rename = "capture.changed")]
    CaptureChanged {
        capture: CaptureState,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        changed_by: Option<String>,
    },
    #[serde(rename = "policy.changed")]
    PolicyChanged { policy: MeetingPolicy },
    /// The access token runs out soon: send `token.refresh` before `expiresAtMs`.
    #[serde(rename = "token.expiring")]
    TokenExpiring { expires_at_ms: i64 },
    #[serde(rename = "token.refreshed")]
    TokenRefreshed { expires_at_ms: i64 },
    /// This participant's session in the conversation is over.
    #[serde(rename = "session.ended")]
    SessionEnded { conversation_id: String, reason: EndReason },
    #[serde(rename = "media.answer")]
    MediaAnswer {
        sdp: String,
        /// The call the answer belongs to, for calls between users.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call_id: Option<String>,
    },
    #[serde(rename = "media.iceCandidate")]
    MediaIceCandidate {
        candidate: IceCandidate,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call_id: Option<String>,
    },
    /// Which participant's camera or screen each video receive slot carries (the whole list,
    /// sent after the answer and again whenever a slot is filled, emptied or refilled).
    #[serde(rename = "media.slots")]
    MediaSlots { slots: Vec<MediaSlot> },
    /// Answer to `media.attach`: the streams the server sends to this client: the room's audio
    /// mix, then one VP8 track per requested receive slot (each with its slot's `mid`).
    #[serde(rename = "media.attached")]
    MediaAttached {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<String>,
        tracks: Vec<MediaTrack>,
        /// Set for a connection whose media carrier is SRTP over UDP (`docs/quic.md`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        udp: Option<UdpMedia>,
    },
    /// Answer to `call.place`: the new call's id. Call progress then arrives as `call.*` events.
    #[serde(rename = "call.placed")]
    CallPlaced {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<String>,
        call_id: String,
    },
    /// A real-time chat event (`docs/chat.md`): `event` is the ACS JavaScript SDK's event
    /// name (`chatMessageReceived`, `typingIndicatorReceived`, ...), `data` its fields.
    #[serde(rename = "chat.event")]
    ChatEvent { event: String, data: serde_json::Value },
}

impl ServerMessage {
    pub fn error(code: crate::ErrorCode, message: impl Into<String>, request_id: Option<String>) -> Self {
        Self::Error { code: code.as_str().to_string(), message: message.into(), request_id }
    }
    /// Serialize to the JSON text of a frame.
    pub fn to_json(&self) -> String {
        // Every member is a plain string, number, bool, list or map: serialization cannot fail.
        serde_json::to_string(self).unwrap_or_else(|e| {
            format!(r#"{{"type":"error","code":"InternalError","message":"serialization failed: {e}"}}"#)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn type_list_matches_the_enum() {
        let samples = vec![
            json!({"type":"ping"}),
            json!({"type":"join","target":{"kind":"groupCall","groupId":"g"}}),
            json!({"type":"resume","conversationId":"c","participantId":"p","resumeToken":"t"}),
            json!({"type":"leave"}),
            json!({"type":"token.refresh","token":"x"}),
            json!({"type":"lobby.admit","participantId":"p"}),
            json!({"type":"lobby.deny","participantId":"p"}),
            json!({"type":"participant.remove","participantId":"p"}),
            json!({"type":"participant.mute","participantId":"p"}),
            json!({"type":"participant.setRole","participantId":"p","role":"presenter"}),
            json!({"type":"self.mute","muted":true}),
            json!({"type":"self.raiseHand","raised":true}),
            json!({"type":"screenShare.start"}),
            json!({"type":"screenShare.stop"}),
            json!({"type":"recording.start"}),
            json!({"type":"recording.stop"}),
            json!({"type":"transcription.start"}),
            json!({"type":"transcription.stop"}),
            json!({"type":"meeting.updatePolicy","policy":{"lobbyBypass":"everyone"}}),
            json!({"type":"meeting.end"}),
            json!({"type":"dialOut","phoneNumber":"+14255550123"}),
            json!({"type":"media.offer","sdp":"v=0","callId":"c"}),
            json!({"type":"media.iceCandidate","candidate":{"candidate":"candidate:1","sdpMid":"0"}}),
            json!({"type":"media.attach","tracks":[{"kind":"audio","ssrc":7,"payloadType":111}]}),
            json!({"type":"media.subscribe","slots":[{"mid":"3","maxHeight":360},{"mid":"4","paused":true}]}),
            json!({"type":"call.place","targets":["8:orgid:b"]}),
            json!({"type":"call.accept","callId":"c"}),
            json!({"type":"call.decline","callId":"c"}),
            json!({"type":"call.cancel","callId":"c"}),
            json!({"type":"call.hangUp","callId":"c"}),
            json!({"type":"call.addParticipant","callId":"c","target":"8:orgid:d"}),
            json!({"type":"call.transfer","callId":"c","target":"28:orgid:support"}),
        ];
        assert_eq!(samples.len(), ClientMessage::TYPES.len());
        for (sample, ty) in samples.iter().zip(ClientMessage::TYPES) {
            let frame = ClientFrame::parse(&sample.to_string()).unwrap_or_else(|e| panic!("{ty}: {e}"));
            let back = serde_json::to_value(&frame).unwrap();
            assert_eq!(back["type"], json!(ty));
        }
    }

    #[test]
    fn request_id_is_read_next_to_the_tag() {
        let f = ClientFrame::parse(r#"{"type":"lobby.admit","requestId":"r1","participantId":"p2"}"#).unwrap();
        assert_eq!(f.request_id.as_deref(), Some("r1"));
        assert_eq!(f.message, ClientMessage::LobbyAdmit { participant_id: "p2".into() });
    }

    #[test]
    fn bad_frames_get_specific_codes() {
        use crate::ErrorCode;
        let big = format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(MAX_FRAME_BYTES));
        assert_eq!(ClientFrame::parse(&big).unwrap_err().code(), ErrorCode::PayloadTooLarge);
        assert_eq!(ClientFrame::parse("{nope").unwrap_err().code(), ErrorCode::InvalidJson);
        assert_eq!(ClientFrame::parse("[1,2]").unwrap_err().code(), ErrorCode::InvalidJson);
        assert_eq!(ClientFrame::parse(r#"{"type":7}"#).unwrap_err().code(), ErrorCode::InvalidJson);
        assert_eq!(ClientFrame::parse(r#"{"type":"teleport"}"#).unwrap_err().code(), ErrorCode::UnknownMessageType);
        let e = ClientFrame::parse(r#"{"type":"lobby.admit","requestId":"r9"}"#).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidParameter);
        assert_eq!(e.request_id().as_deref(), Some("r9"));
        let e = ClientFrame::parse(r#"{"type":"participant.setRole","participantId":"p","role":"king"}"#).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidParameter);
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let f = ClientFrame::parse(r#"{"type":"self.mute","muted":false,"future":1}"#).unwrap();
        assert_eq!(f.message, ClientMessage::SelfMute { muted: false });
    }

    #[test]
    fn server_frames_have_documented_shapes() {
        let err = ServerMessage::error(crate::ErrorCode::WrongPasscode, "wrong passcode", Some("r1".into()));
        assert_eq!(
            serde_json::to_value(&err).unwrap(),
            json!({"type":"error","code":"WrongPasscode","message":"wrong passcode","requestId":"r1"})
        );
        let delta = ServerMessage::RosterDelta {
            roster_version: 4,
            delta: RosterChange::StateChanged { participant_id: "p1".into(), state: ParticipantState::Connected },
        };
        assert_eq!(
            serde_json::to_value(&delta).unwrap(),
            json!({"type":"roster.delta","rosterVersion":4,
                   "delta":{"change":"stateChanged","participantId":"p1","state":"connected"}})
        );
        let cap = ServerMessage::CaptureChanged {
            capture: CaptureState { recording: CaptureStatus::Active, transcription: CaptureStatus::Inactive },
            changed_by: None,
        };
        assert_eq!(
            serde_json::to_value(&cap).unwrap(),
            json!({"type":"capture.changed","capture":{"recording":"active","transcription":"inactive"}})
        );
        let text = cap.to_json();
        assert_eq!(serde_json::from_str::<ServerMessage>(&text).unwrap(), cap);
    }

    #[test]
    fn media_slots_frame_round_trips_with_null_for_empty_slots() {
        let frame = ServerMessage::MediaSlots {
            slots: vec![
                MediaSlot { mid: "1".into(), kind: MediaKind::Video, participant_id: Some("p2".into()) },
                MediaSlot { mid: "2".into(), kind: MediaKind::Screen, participant_id: None },
            ],
        };
        let value = serde_json::to_value(&frame).unwrap();
        assert_eq!(
            value,
            json!({"type":"media.slots","slots":[
                {"mid":"1","kind":"video","participantId":"p2"},
                {"mid":"2","kind":"screen","participantId":null}]})
        );
        assert_eq!(serde_json::from_str::<ServerMessage>(&frame.to_json()).unwrap(), frame);
    }

    #[test]
    fn quic_frames_have_documented_shapes() {
        let auth = AuthFrame::parse(r#"{"type":"auth","token":"t"}"#).unwrap();
        assert_eq!(auth.token, "t");
        assert_eq!(auth.media, MediaCarrier::Datagram);
        let srtp = AuthFrame::parse(r#"{"type":"auth","token":"t","media":"srtp"}"#).unwrap();
        assert_eq!(srtp.media, MediaCarrier::Srtp);
        assert_eq!(serde_json::to_value(&srtp).unwrap(), json!({"type":"auth","token":"t","media":"srtp"}));
        assert_eq!(serde_json::to_value(&auth).unwrap(), json!({"type":"auth","token":"t"}));
        assert_eq!(
            AuthFrame::parse(r#"{"type":"join","token":"t"}"#).unwrap_err().code(),
            crate::ErrorCode::UnknownMessageType
        );
        assert_eq!(AuthFrame::parse(r#"{"type":"auth"}"#).unwrap_err().code(), crate::ErrorCode::InvalidParameter);
        assert_eq!(AuthFrame::parse("\u{0}").unwrap_err().code(), crate::ErrorCode::InvalidJson);
        let attached = ServerMessage::MediaAttached {
            request_id: Some("r1".into()),
            tracks: vec![MediaTrack::opus(9)],
            udp: None,
        };
        assert_eq!(
            serde_json::to_value(&attached).unwrap(),
            json!({"type":"media.attached","requestId":"r1","tracks":[{"kind":"audio","ssrc":9,"payloadType":111}]})
        );
        let listener = ClientFrame::parse(r#"{"type":"media.attach"}"#).unwrap();
        assert_eq!(
            listener.message,
            ClientMessage::MediaAttach { tracks: vec![], receive: MediaReceive::default(), call_id: None }
        );
        let bad =
            ClientFrame::parse(r#"{"type":"media.attach","tracks":[{"kind":"audio","ssrc":-1,"payloadType":1}]}"#);
        assert_eq!(bad.unwrap_err().code(), crate::ErrorCode::InvalidParameter);
    }

    #[test]
    fn policy_defaults_follow_the_seed() {
        let p = MeetingPolicy::default();
        assert!(!p.external_dial_out);
        assert!(p.allow_external_users);
        assert_eq!(p.max_participants, 350);
        let upd: PolicyUpdate = serde_json::from_str(r#"{"externalDialOut":true}"#).unwrap();
        assert_eq!(upd.external_dial_out, Some(true));
        assert_eq!(upd.lobby_bypass, None);
    }
}
