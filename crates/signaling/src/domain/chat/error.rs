//! Why a chat request is refused. Every refusal happens before anything is written; each
//! variant becomes a [`Refusal`] with its own ACS error code (and so its HTTP status).

use super::ChatOperation;
use crate::domain::Refusal;
use palaver_core::ErrorCode;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatError {
    #[error("the access token's scopes do not allow {0}")]
    MissingScope(ChatOperation),
    /// ACS's own message (a recorded live answer: docs/acs-errors.md, Chat).
    #[error("The specified thread id was not found.")]
    ThreadNotFound(String),
    #[error("chat message `{0}` does not exist in this thread")]
    MessageNotFound(String),
    /// ACS's own message (a recorded live answer: docs/acs-errors.md, Chat).
    #[error("The initiator is not a participant of the specified thread.")]
    NotParticipant,
    #[error("the caller was removed from this chat thread")]
    RemovedParticipant,
    #[error("only the sender may change or delete a message")]
    NotSender,
    #[error("system messages cannot be changed or deleted")]
    SystemMessage,
    #[error("the message is {bytes} bytes; the limit is {limit}")]
    MessageTooLarge { bytes: usize, limit: usize },
    #[error("a request may name at most {limit} participants; this one names {count}")]
    BatchTooLarge { count: usize, limit: usize },
    #[error("a thread may have at most {limit} participants; this change would make {count}")]
    TooManyParticipants { count: usize, limit: usize },
    #[error("the page token is not one this server issued for this list")]
    InvalidPageToken,
    #[error("{message}")]
    Invalid { target: &'static str, message: String },
    #[error("this chat thread is read-only")]
    ReadOnly,
    #[error("the repeatability-request-id was already used for a different request")]
    RepeatabilityConflict,
}

impl ChatError {
    pub fn invalid(target: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid { target, message: message.into() }
    }
}

impl From<ChatError> for Refusal {
    fn from(e: ChatError) -> Self {
        let message = e.to_string();
        match e {
            ChatError::MissingScope(_) => Refusal::new(ErrorCode::InsufficientScope, message),
            ChatError::ThreadNotFound(_) | ChatError::MessageNotFound(_) => Refusal::new(ErrorCode::NotFound, message),
            ChatError::NotParticipant
            | ChatError::RemovedParticipant
            | ChatError::NotSender
            | ChatError::SystemMessage
            | ChatError::ReadOnly => Refusal::new(ErrorCode::Forbidden, message),
            ChatError::MessageTooLarge { .. } => {
                Refusal::new(ErrorCode::PayloadTooLarge, message).with_target("content")
            }
            ChatError::BatchTooLarge { .. } => {
                Refusal::new(ErrorCode::InvalidParameter, message).with_target("participants")
            }
            ChatError::TooManyParticipants { .. } => {
                Refusal::new(ErrorCode::CapacityReached, message).with_target("participants")
            }
            ChatError::InvalidPageToken => Refusal::new(ErrorCode::InvalidPageToken, message),
            ChatError::Invalid { target, .. } => Refusal::new(ErrorCode::InvalidParameter, message).with_target(target),
            ChatError::RepeatabilityConflict => {
                Refusal::new(ErrorCode::Conflict, message).with_target("repeatability-request-id")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            (ChatError::MessageNotFound("1".into()), "NotFound", 404),
            (ChatError::RemovedParticipant, "Forbidden", 403),
            (ChatError::SystemMessage, "Forbidden", 403),
            (ChatError::ReadOnly, "Forbidden", 403),
            (ChatError::invalid("topic", "missing"), "InvalidParameter", 400),
            (ChatError::RepeatabilityConflict, "Conflict", 409),
        ];
        for (e, code, status) in cases {
            let r = Refusal::from(e);
            assert_eq!((r.code.as_str(), r.code.http_status()), (code, status));
        }
    }

    /// The two Chat refusals with a recorded live ACS answer carry ACS's code and message
    /// (azure-sdk-for-java's session records `getNotFoundOnNonExistingChatThread` and
    /// `getForbiddenOnNonExistingChatThread`; docs/acs-errors.md).
    #[test]
    fn refusals_recorded_from_live_acs_carry_its_code_and_message() {
        let unknown = Refusal::from(ChatError::ThreadNotFound("19:x@thread.v2".into()));
        assert_eq!(
            (unknown.code.as_str(), unknown.code.http_status(), unknown.message.as_str()),
            ("NotFound", 404, "The specified thread id was not found.")
        );
        let outsider = Refusal::from(ChatError::NotParticipant);
        assert_eq!(
            (outsider.code.as_str(), outsider.code.http_status(), outsider.message.as_str()),
            ("Forbidden", 403, "The initiator is not a participant of the specified thread.")
        );
    }
}
