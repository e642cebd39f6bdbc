//! palaver-core: the vocabulary every plane shares.
//!
//! Identifiers (raw ids such as `8:acs:<resource>_<guid>` and their structured wire
//! model), access-token claims and scopes, conversation roles, participant and
//! endpoint types used for billing, and the ACS-shaped error body; the signaling wire
//! protocol ([`protocol`]) and its stream framing ([`stream_frame`]); the contracts between
//! the control plane and billing/telemetry ([`session`]); the media kind shared by the protocol
//! and the media plane ([`MediaKind`]); the name of a direct media path
//! ([`MediaPathId`]); wall-clock milliseconds ([`time`]); the events port ([`events`]) through
//! which the control plane raises Event Grid events and Call Automation callbacks.
//! Nothing here does I/O (beyond reading the clock); everything is plain data with parsers
//! that return errors instead of panicking.

pub mod claims;
pub mod error;
pub mod events;
pub mod identifier;
pub mod media_kind;
pub mod media_path;
pub mod participant;
pub mod protocol;
pub mod role;
pub mod session;
pub mod stream_frame;
pub mod time;

pub use claims::{AccessTokenClaims, Scope, ScopeSet};
pub use error::{ErrorBody, ErrorCode, ErrorDetail};
pub use events::{CallbackEvent, EventError, EventFuture, EventPublisher, NoEventPublisher, SystemEvent};
pub use identifier::{Cloud, CommunicationIdentifier, IdentifierError, IdentifierModel};
pub use media_kind::MediaKind;
pub use media_path::MediaPathId;
pub use participant::{EndpointType, ParticipantType};
pub use role::{MeetingRole, RoomRole};
pub use session::{
    CallType, ChatMessageSent, ChatTelemetry, ChatUsageObserver, DurableAck, EndReason, MediaUsageKind, MediaUsed,
    NoTelemetry, PhoneDirection, PhoneLeg, SessionEnded, SessionObserver, SessionStarted, SignalingTelemetry,
};
