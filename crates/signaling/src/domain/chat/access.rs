//! Who may do what on a chat thread: the scope table of the ACS identity model, and a
//! participant's membership window (history from `shareHistoryTime`, nothing after removal).

use super::ChatError;
use super::model::ChatMessage;
use palaver_core::{Scope, ScopeSet};
use std::fmt;

/// Every chat operation, as the scope table groups them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatOperation {
    CreateThread,
    UpdateTopic,
    DeleteThread,
    AddParticipants,
    RemoveParticipant,
    ListThreads,
    GetThread,
    SendMessage,
    ReadMessages,
    EditMessage,
    DeleteMessage,
    ListParticipants,
    SendReadReceipt,
    ListReadReceipts,
    SendTyping,
}

impl ChatOperation {
    /// The scopes any one of which allows this operation (MicrosoftDocs identity model):
    /// thread management needs `chat`; adding and removing participants `chat` or
    /// `chat.join`; everything else any chat scope.
    pub fn allowed_scopes(self) -> &'static [Scope] {
        use ChatOperation::*;
        match self {
            CreateThread | UpdateTopic | DeleteThread => &[Scope::Chat],
            AddParticipants | RemoveParticipant => &[Scope::Chat, Scope::ChatJoin],
            _ => &[Scope::Chat, Scope::ChatJoin, Scope::ChatJoinLimited],
        }
    }

    /// `MissingScope` unless `scopes` holds one of [`allowed_scopes`](Self::allowed_scopes).
    pub fn authorize(self, scopes: ScopeSet) -> Result<(), ChatError> {
        if self.allowed_scopes().iter().any(|s| scopes.contains(*s)) {
            Ok(())
        } else {
            Err(ChatError::MissingScope(self))
        }
    }

    /// Whether a removed participant may still do this (read what they had).
    pub fn allowed_after_removal(self) -> bool {
        use ChatOperation::*;
        matches!(self, GetThread | ReadMessages | ListParticipants | ListReadReceipts)
    }
}

impl fmt::Display for ChatOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            ChatOperation::CreateThread => "creating a thread",
            ChatOperation::UpdateTopic => "updating the topic",
            ChatOperation::DeleteThread => "deleting a thread",
            ChatOperation::AddParticipants => "adding participants",
            ChatOperation::RemoveParticipant => "removing participants",
            ChatOperation::ListThreads => "listing threads",
            ChatOperation::GetThread => "reading the thread",
            ChatOperation::SendMessage => "sending messages",
            ChatOperation::ReadMessages => "reading messages",
            ChatOperation::EditMessage => "editing messages",
            ChatOperation::DeleteMessage => "deleting messages",
            ChatOperation::ListParticipants => "listing participants",
            ChatOperation::SendReadReceipt => "sending read receipts",
            ChatOperation::ListReadReceipts => "listing read receipts",
            ChatOperation::SendTyping => "sending typing notifications",
        };
        f.write_str(name)
    }
}

/// One identity's standing in one thread (active or removed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Membership {
    /// Messages created at or after this instant are visible (ms since the epoch).
    pub share_history_ms: i64,
    /// The sequence id of the `participantRemoved` message that removed them, if removed:
    /// they keep messages up to it and see nothing newer.
    pub removed_at_seq: Option<i64>,
}

impl Membership {
    pub fn is_active(&self) -> bool {
        self.removed_at_seq.is_none()
    }

    /// Check `op` against this membership (the scope check is separate).
    pub fn allows(&self, op: ChatOperation) -> Result<(), ChatError> {
        if self.is_active() || op.allowed_after_removal() { Ok(()) } else { Err(ChatError::RemovedParticipant) }
    }

    /// The sequence-id range this member may read: `(min_created_ms, max_seq)`.
    pub fn window(&self) -> (i64, i64) {
        (self.share_history_ms, self.removed_at_seq.unwrap_or(i64::MAX))
    }

    /// Whether this member may see `message`.
    pub fn sees(&self, message: &ChatMessage) -> bool {
        let (from_ms, max_seq) = self.window();
        message.created_ms >= from_ms && message.sequence_id <= max_seq
    }
}

/// Resolve the caller's standing: not a member at all is `NotParticipant`.
pub fn require_member(membership: Option<Membership>, op: ChatOperation) -> Result<Membership, ChatError> {
    let m = membership.ok_or(ChatError::NotParticipant)?;
    m.allows(op)?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(scopes: &[Scope]) -> ScopeSet {
        scopes.iter().fold(ScopeSet::empty(), |s, x| s.with(*x))
    }

    #[test]
    fn scope_table_matches_the_identity_model() {
        use ChatOperation::*;
        let chat = set(&[Scope::Chat]);
        let join = set(&[Scope::ChatJoin]);
        let limited = set(&[Scope::ChatJoinLimited]);
        let voip = set(&[Scope::Voip]);
        for op in [CreateThread, UpdateTopic, DeleteThread] {
            assert!(op.authorize(chat).is_ok());
            assert_eq!(op.authorize(join), Err(ChatError::MissingScope(op)));
            assert!(op.authorize(limited).is_err());
        }
        for op in [AddParticipants, RemoveParticipant] {
            assert!(op.authorize(chat).is_ok() && op.authorize(join).is_ok());
            assert!(op.authorize(limited).is_err());
        }
        for op in [ListThreads, GetThread, SendMessage, ReadMessages, EditMessage, DeleteMessage, SendTyping] {
            assert!(op.authorize(chat).is_ok() && op.authorize(join).is_ok() && op.authorize(limited).is_ok());
            assert!(op.authorize(voip).is_err());
        }
    }

    #[test]
    fn removed_members_read_only_what_they_had() {
        let active = Membership { share_history_ms: 100, removed_at_seq: None };
        let removed = Membership { share_history_ms: 0, removed_at_seq: Some(7) };
        assert!(active.allows(ChatOperation::SendMessage).is_ok());
        assert_eq!(removed.allows(ChatOperation::SendMessage), Err(ChatError::RemovedParticipant));
        assert!(removed.allows(ChatOperation::ReadMessages).is_ok());
        assert_eq!(require_member(None, ChatOperation::ReadMessages), Err(ChatError::NotParticipant));
        let msg = |seq, created_ms| ChatMessage::test_text(seq, created_ms);
        assert!(!active.sees(&msg(1, 99)) && active.sees(&msg(2, 100)));
        assert!(removed.sees(&msg(7, 5)) && !removed.sees(&msg(8, 5)));
    }
}
