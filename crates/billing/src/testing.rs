//! Test constructors shared by the crate's tests (compiled only for `cargo test`).

use palaver_core::{CallType, EndpointType, ParticipantType, SessionStarted};

/// A participant joining a group call over VoIP, without a meeting chat thread. Tests that need
/// another call type or a thread change it with struct update syntax.
pub(crate) fn session_started(
    session: &str,
    conversation: &str,
    raw_id: &str,
    participant_type: ParticipantType,
    at_ms: i64,
) -> SessionStarted {
    SessionStarted {
        session_id: session.into(),
        conversation_id: conversation.into(),
        call_type: CallType::Group,
        participant_raw_id: raw_id.into(),
        participant_type,
        endpoint_type: EndpointType::Voip,
        thread_id: None,
        at_ms,
    }
}
