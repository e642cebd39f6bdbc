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
//!
//! A participant may also send `resume` with its old conversation and participant ids: the
//! node that now hosts the conversation (the router maps the old id to the target key) joins
//! it again ([`target_of_key`] names the target) **under its old participant id**, answered
//! `joined` with a fresh resume token; its standing comes from the carried state as for a
//! join. The participant id is also the billing session id, and the takeover kept that session
//! open for it (the cluster ledger adopts the old home's open sessions), so the participant
//! continues one usage record through the takeover. The conversation accepts such a resume
//! only from the identity the old home seated under that id, within the reconnect grace of the
//! restore (`Input::Resumed`); otherwise it is refused `NotFound` and the client joins afresh.

use super::placement::RouterFuture;
use crate::domain::conversation::CarriedConversation;
use palaver_core::protocol::JoinTarget;

/// The join target a conversation's target key names (`meeting:<id>`, `groupCall:<id>`,
/// `room:<id>`), for a resume that lands on the conversation's new home. The join resolves it
/// as a fresh join would (meeting lookup, room role), so the same rules apply.
pub(crate) fn target_of_key(key: &str) -> Option<JoinTarget> {
    let (kind, id) = key.split_once(':')?;
    match kind {
        "meeting" => Some(JoinTarget::MeetingLink { join_url: id.to_string() }),
        "groupCall" => Some(JoinTarget::GroupCall { group_id: id.to_string() }),
        "room" => Some(JoinTarget::Room { room_id: id.to_string() }),
        _ => None,
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_target_key_names_its_join_target() {
        assert_eq!(target_of_key("meeting:m1"), Some(JoinTarget::MeetingLink { join_url: "m1".into() }));
        assert_eq!(
            target_of_key("groupCall:6f0e2c1a-0000-4000-8000-000000000017"),
            Some(JoinTarget::GroupCall { group_id: "6f0e2c1a-0000-4000-8000-000000000017".into() })
        );
        assert_eq!(target_of_key("room:r1"), Some(JoinTarget::Room { room_id: "r1".into() }));
        assert_eq!(target_of_key("phone:+1555"), None);
        assert_eq!(target_of_key("nonsense"), None);
    }
}
