//! The seam between a conversation's actor and a cluster's mirror of its state (issue #17,
//! docs/cluster.md "Resume across a takeover").
//!
//! In a cluster a conversation's home node can die. What must survive it (the capture state
//! and each participant's role, lobby standing and raised hand: [`CarriedConversation`]) is
//! handed on every change to the [`ConversationMirror`] plugged in with
//! [`super::Gateway::set_conversation_mirror`] (none on a single node), which stores it durably,
//! fenced by the home epoch. When a node starts a conversation it took over from a dead home,
//! the actor asks the mirror first ([`ConversationMirror::restore`]) and restores the carried
//! state before the first join is handled, so participants who come back through any node keep
//! their standing and hear the recording notice again at once.

use super::placement::RouterFuture;
use crate::domain::conversation::CarriedConversation;

/// Where a conversation's carried state is kept (the cluster's PostgreSQL mirror).
pub trait ConversationMirror: Send + Sync {
    /// What the previous home carried for `key`, when this node has just taken the conversation
    /// over from it (`None` otherwise, at once and without I/O for ordinary starts).
    fn restore<'a>(&'a self, key: &'a str) -> RouterFuture<'a, Option<CarriedConversation>>;
    /// The home's current state of `key` (live conversation `conversation_id`). Must not block:
    /// the implementation writes the latest state behind.
    fn mirror(&self, key: &str, conversation_id: &str, state: &CarriedConversation);
}

/// What the actor last handed to the mirror, so only changes are handed on.
#[derive(Debug, Default)]
pub(crate) struct MirrorCursor {
    last: Option<CarriedConversation>,
}

impl MirrorCursor {
    /// Hand `state` to `mirror` if it differs from the last one handed.
    pub(crate) fn offer(
        &mut self,
        mirror: &dyn ConversationMirror,
        key: &str,
        conversation_id: &str,
        state: CarriedConversation,
    ) {
        if self.last.as_ref() == Some(&state) {
            return;
        }
        mirror.mirror(key, conversation_id, &state);
        self.last = Some(state);
    }
}
