//! Call Automation (ACS `/calling/callConnections`): call connections, the server-side
//! participants a backend application drives over REST, and the `incomingCallContext`s it
//! answers, rejects or redirects by.
//!
//! This module holds the vocabulary every part of Call Automation shares (the API's
//! handlers, the media operations, the gateway glue): [`CallConnectionView`], what one call
//! connection is; [`CallConnectionState`]; and [`CallAutomationError`], a refusal with ACS's
//! own HTTP status and numeric sub-code (`8522` not found, `8523` invalid argument, ...),
//! which the API renders as `{"error":{"code":"8523","message":...}}`.

mod context;
pub mod events;
mod machine;
#[cfg(test)]
mod tests;

pub use context::{ContextSigner, IncomingCallClaim};
pub use machine::{
    CaOutput, CallAutomationMachine, NewConnection, OperationRoute, Origin, leg_endpoint, leg_participant_id,
};

use serde::Serialize;

use crate::domain::calls::{Input, Party};

/// The SIP trunk's `call-automation` route: an inbound phone call from `caller` (`4:+E.164`)
/// to the owned number `number` (`4:+E.164`) rings that number inside palaver, which raises
/// `IncomingCall` for the Call Automation backend (`to` the number, `from` the caller);
/// answering it connects the phone leg. `endpoint` names the SIP leg (its Call-ID).
pub fn incoming_from_phone(call_id: &str, caller: Party, endpoint: &str, number: &str) -> Input {
    Input::Place {
        call_id: call_id.to_owned(),
        caller,
        endpoint: endpoint.to_owned(),
        targets: vec![number.to_owned()],
    }
}

/// Where a call connection stands (`callConnectionState` of `CallConnectionProperties`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum CallConnectionState {
    Unknown,
    Connecting,
    Connected,
    Transferring,
    TransferAccepted,
    Disconnecting,
    Disconnected,
}

impl CallConnectionState {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Connecting => "connecting",
            Self::Connected => "connected",
            Self::Transferring => "transferring",
            Self::TransferAccepted => "transferAccepted",
            Self::Disconnecting => "disconnecting",
            Self::Disconnected => "disconnected",
        }
    }
}

/// One call connection as other parts of the server see it (media operations, recordings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallConnectionView {
    /// The id the application addresses it by (`/calling/callConnections/{id}`).
    pub call_connection_id: String,
    /// The call it is a leg of (stable for every leg of one call; the call's id in palaver).
    pub server_call_id: String,
    /// Stable for every leg of one call.
    pub correlation_id: String,
    /// The media plane's conversation id of the call (`MediaSession::conversation_id`).
    pub conversation_id: String,
    /// The media plane's participant id of the server leg (`MediaSession::participant_id`).
    pub leg_participant_id: String,
    /// Where the call's callbacks go, verbatim (query included).
    pub callback_uri: String,
    pub state: CallConnectionState,
    /// The identity the application acts as in this call (`8:acs:...`).
    pub source_raw_id: String,
}

impl CallConnectionView {
    /// Refuse media operations unless the call is established (`400/8501`).
    pub fn require_established(&self) -> Result<(), CallAutomationError> {
        match self.state {
            CallConnectionState::Connected => Ok(()),
            CallConnectionState::Disconnected | CallConnectionState::Disconnecting => {
                Err(CallAutomationError::call_not_found(&self.call_connection_id))
            }
            _ => Err(CallAutomationError::not_established()),
        }
    }
}

/// A Call Automation refusal: ACS's HTTP status and numeric sub-code (reference §3.7).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}/{subcode}: {message}")]
pub struct CallAutomationError {
    /// The HTTP status (400, 403, 404, 409, 412, 500).
    pub status: u16,
    /// ACS's sub-code, answered as the error body's `code` (`"8523"`).
    pub subcode: u32,
    pub message: String,
}

impl CallAutomationError {
    pub fn new(status: u16, subcode: u32, message: impl Into<String>) -> Self {
        Self { status, subcode, message: message.into() }
    }
    /// `404/8522`: no such call connection (or it is over).
    pub fn call_not_found(ccid: &str) -> Self {
        Self::new(404, 8522, format!("Call connection `{ccid}` was not found."))
    }
    /// `404/8522`: the participant is not in the call.
    pub fn participant_not_found(raw_id: &str) -> Self {
        Self::new(404, 8522, format!("Participant `{raw_id}` is not in the call."))
    }
    /// `400/8523`: a request member is missing or invalid.
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(400, 8523, message)
    }
    /// `400/8501`: the call is not established yet.
    pub fn not_established() -> Self {
        Self::new(400, 8501, "Action is invalid when call is not in Established state.")
    }
    /// `400/8500`: another media operation is running.
    pub fn media_operation_active() -> Self {
        Self::new(400, 8500, "Media operation is already active with other media operation.")
    }
    /// `409/8519`: conflicts with the call's state (e.g. a context already used).
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(409, 8519, message)
    }
    /// `400/8585`: not valid in the call's current state.
    pub fn invalid_state(message: impl Into<String>) -> Self {
        Self::new(400, 8585, message)
    }
    /// `403/7507`: the identity the request acts as is not valid here.
    pub fn invalid_source(message: impl Into<String>) -> Self {
        Self::new(403, 7507, message)
    }
    /// `500/9999`: the server failed.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, 9999, message)
    }
    /// The closest palaver error code (for the error counter; the body carries the sub-code).
    pub fn counted_as(&self) -> palaver_core::ErrorCode {
        use palaver_core::ErrorCode as C;
        match self.status {
            401 => C::InvalidAuthentication,
            403 => C::Forbidden,
            404 => C::CallNotFound,
            409 => C::Conflict,
            412 => C::InvalidState,
            500..=599 => C::InternalError,
            _ => C::BadRequest,
        }
    }
}

#[cfg(test)]
mod view_tests {
    use super::*;

    #[test]
    fn states_have_the_wire_names() {
        assert_eq!(serde_json::to_value(CallConnectionState::TransferAccepted).unwrap(), "transferAccepted");
        assert_eq!(CallConnectionState::Connecting.as_str(), "connecting");
    }

    #[test]
    fn media_operations_need_an_established_call() {
        let mut view = CallConnectionView {
            call_connection_id: "cc".into(),
            server_call_id: "s".into(),
            correlation_id: "c".into(),
            conversation_id: "s".into(),
            leg_participant_id: "s/8:acs:r_b".into(),
            callback_uri: "https://app/cb?x=1".into(),
            state: CallConnectionState::Connecting,
            source_raw_id: "8:acs:r_b".into(),
        };
        assert_eq!(view.require_established().unwrap_err().subcode, 8501);
        view.state = CallConnectionState::Connected;
        view.require_established().unwrap();
        view.state = CallConnectionState::Disconnected;
        assert_eq!(view.require_established().unwrap_err().subcode, 8522);
    }
}
