//! Chat refusals as ACS errors: each [`ChatError`] becomes its own error code and status
//! (`{"error":{"code","message","target"?}}`).

use crate::domain::chat::ChatError;
use crate::http::ApiError;
use palaver_core::ErrorCode;

pub fn api_error(e: ChatError) -> ApiError {
    let message = e.to_string();
    match e {
        ChatError::MissingScope(_) => ApiError::new(ErrorCode::InsufficientScope, message),
        ChatError::ThreadNotFound(_) | ChatError::MessageNotFound(_) => ApiError::new(ErrorCode::NotFound, message),
        ChatError::NotParticipant
        | ChatError::RemovedParticipant
        | ChatError::NotSender
        | ChatError::SystemMessage
        | ChatError::ReadOnly => ApiError::new(ErrorCode::Forbidden, message),
        ChatError::MessageTooLarge { .. } => ApiError::new(ErrorCode::PayloadTooLarge, message).with_target("content"),
        ChatError::BatchTooLarge { .. } => {
            ApiError::new(ErrorCode::InvalidParameter, message).with_target("participants")
        }
        ChatError::TooManyParticipants { .. } => {
            ApiError::new(ErrorCode::CapacityReached, message).with_target("participants")
        }
        ChatError::InvalidPageToken => ApiError::new(ErrorCode::InvalidPageToken, message),
        ChatError::Invalid { target, .. } => ApiError::new(ErrorCode::InvalidParameter, message).with_target(target),
        ChatError::RepeatabilityConflict => {
            ApiError::new(ErrorCode::Conflict, message).with_target("repeatability-request-id")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::chat::ChatOperation;

    #[test]
    fn each_refusal_has_its_code_and_status() {
        let cases = [
            (ChatError::MissingScope(ChatOperation::CreateThread), "InsufficientScope", 403),
            (ChatError::ThreadNotFound("t".into()), "NotFound", 404),
            (ChatError::NotParticipant, "Forbidden", 403),
            (ChatError::NotSender, "Forbidden", 403),
            (ChatError::MessageTooLarge { bytes: 2, limit: 1 }, "PayloadTooLarge", 413),
            (ChatError::BatchTooLarge { count: 201, limit: 200 }, "InvalidParameter", 400),
            (ChatError::TooManyParticipants { count: 251, limit: 250 }, "CapacityReached", 422),
            (ChatError::InvalidPageToken, "InvalidPageToken", 400),
        ];
        for (e, code, status) in cases {
            let a = api_error(e);
            assert_eq!((a.code.as_str(), a.code.http_status()), (code, status));
        }
    }
}
