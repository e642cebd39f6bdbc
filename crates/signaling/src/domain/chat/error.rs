//! Why a chat request is refused. Every refusal happens before anything is written; the
//! API layer maps each variant to its ACS error code and status.

use super::ChatOperation;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatError {
    #[error("the access token's scopes do not allow {0}")]
    MissingScope(ChatOperation),
    #[error("chat thread `{0}` does not exist")]
    ThreadNotFound(String),
    #[error("chat message `{0}` does not exist in this thread")]
    MessageNotFound(String),
    #[error("the caller is not a participant of this chat thread")]
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
