//! Error codes and the ACS error body `{"error":{"code","message",...}}`.
//!
//! Every REST and WebSocket error in palaver carries one of these codes. The HTTP
//! status lives here too (as a number, so this crate needs no HTTP dependency).

use serde::{Deserialize, Serialize};

macro_rules! error_codes {
    ($( $variant:ident = $status:expr ),* $(,)?) => {
        /// A stable, specific error code. The string form is the variant name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode { $($variant),* }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),*];
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => stringify!($variant)),* }
            }
            /// The HTTP status this code is answered with.
            pub fn http_status(self) -> u16 {
                match self { $(ErrorCode::$variant => $status),* }
            }
        }
    };
}

error_codes! {
    // 400: the request itself is wrong
    BadRequest = 400,
    InvalidJson = 400,
    InvalidScope = 400,
    InvalidExpiry = 400,
    InvalidIdentifier = 400,
    InvalidParameter = 400,
    // The Rooms API's code for a malformed room id or participant identifier.
    InvalidInput = 400,
    // ACS's generic validation failure (the identity exchange answers it for a bad or
    // mismatched `appId` / `userId`).
    ValidationError = 400,
    UnsupportedApiVersion = 400,
    InvalidPageToken = 400,
    InvalidTimeRange = 400,
    UnknownMessageType = 400,
    // 401: who are you?
    MissingAuthentication = 401,
    InvalidAuthentication = 401,
    InvalidSignature = 401,
    StaleRequestDate = 401,
    ContentHashMismatch = 401,
    InvalidToken = 401,
    // ACS's answer to an IdP token the exchange cannot accept (checked before anything else).
    InvalidAccessToken = 401,
    TokenExpired = 401,
    TokenRevoked = 401,
    InvalidIdpToken = 401,
    IdpTokenExpired = 401,
    // 403: known, but not allowed
    Forbidden = 403,
    InsufficientScope = 403,
    UnknownTenant = 403,
    GovernmentCloudNotSupported = 403,
    MissingDelegatedPermission = 403,
    ExternalUserCannotCallDirectoryUser = 403,
    DirectoryUserCannotJoinExternalCall = 403,
    RoleNotAllowed = 403,
    ExternalUsersNotAllowed = 403,
    WrongPasscode = 403,
    PhoneTargetNotAllowed = 403,
    NotRoomParticipant = 403,
    RoomNotActive = 403,
    // 404, 408, 409, 413, 422, 429
    NotFound = 404,
    IdentityNotFound = 404,
    MeetingNotFound = 404,
    CallNotFound = 404,
    RoomNotFound = 404,
    CallQueueNotFound = 404,
    Conflict = 409,
    InvalidState = 409,
    Busy = 409,
    RequestTimeout = 408,
    PayloadTooLarge = 413,
    CapacityReached = 422,
    TooManyRequests = 429,
    // 5xx
    InternalError = 500,
    StorageUnavailable = 503,
    MediaUnavailable = 503,
    PstnUnavailable = 503,
    // In a cluster, the node hosting the conversation cannot be reached or decided right now
    // (issue 17, docs/cluster.md): reconnect and join again.
    NodeUnavailable = 503,
    // In a cluster, the conversation's home is draining (a planned stop, issue 17): the
    // participant's session is kept; reconnect through another node and send `resume`.
    NodeDraining = 503,
    // A phone number dialled out through a SIP trunk did not answer (issue 16): the SIP
    // final response mapped to what the requester can act on (crates/sip, docs/sip.md).
    PhoneBusy = 409,
    PhoneNoAnswer = 408,
    PhoneDeclined = 403,
    PhoneNumberUnreachable = 404,
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `{"error": {...}}`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// The inner ACS error object. Optional members are omitted when empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<ErrorDetail>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub innererror: Option<InnerError>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InnerError {
    pub code: String,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            error: ErrorDetail {
                code: code.as_str().to_string(),
                message: message.into(),
                target: None,
                details: vec![],
                innererror: None,
            },
        }
    }
    pub fn with_target(mut self, target: impl Into<String>) -> Self {
        self.error.target = Some(target.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_shape() {
        let body = ErrorBody::new(ErrorCode::InvalidScope, "unknown scope `x`").with_target("scopes");
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"error":{"code":"InvalidScope","message":"unknown scope `x`","target":"scopes"}})
        );
    }

    #[test]
    fn every_code_is_an_http_error_status() {
        for c in ErrorCode::ALL {
            assert!((400..600).contains(&c.http_status()), "{c}");
        }
    }
}
