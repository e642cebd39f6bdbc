//! A phone participant moved by Call Automation (`moveParticipants` into a group call or a
//! room): the call machine takes the phone out of its call without hanging it up and hands
//! the SIP gateway a [`CallEvent::Moved`](crate::domain::calls::CallEvent::Moved) naming the
//! target; the SIP gateway then seats the phone in that conversation as a participant
//! ([`Gateway::phone_join_moved`]) — it appears in the roster as a phone (PSTN) participant,
//! and its minutes go on, metered as a new session in the target — and re-seats the leg's
//! trunk transport there ([`Gateway::phone_reseat`]), with a re-INVITE only when the target's
//! media is served from another socket.

use palaver_core::RoomRole;
use palaver_core::protocol::JoinTarget;

use super::Gateway;
use super::media::{MediaFuture, MediaSession, TrunkReseat};
use super::phone::PhoneMeetingLeg;
use crate::domain::Refusal;
use crate::domain::conversation::ConversationSetup;

/// The conversation a phone may be moved into: a group call or a room (a room's phone
/// participants are attendees: ACS lists phone numbers on no room's participant list).
pub fn phone_move_target(join: &JoinTarget) -> Option<(String, ConversationSetup, Option<RoomRole>)> {
    match join {
        JoinTarget::GroupCall { group_id } => {
            Some((format!("groupCall:{group_id}"), ConversationSetup::GroupCall, None))
        }
        JoinTarget::Room { room_id } => {
            Some((format!("room:{room_id}"), ConversationSetup::Room, Some(RoomRole::Attendee)))
        }
        JoinTarget::MeetingLink { .. } | JoinTarget::MeetingCode { .. } => None,
    }
}

impl Gateway {
    /// Seats the moved phone `phone` (shown as `display_name`) in the conversation `join`
    /// names, as participant `participant_id` (name its trunk leg with
    /// [`Gateway::name_phone_leg`] first, so its minutes stay metered per number and trunk).
    pub async fn phone_join_moved(
        &self,
        join: &JoinTarget,
        phone: &str,
        display_name: &str,
        participant_id: String,
    ) -> Result<PhoneMeetingLeg, Refusal> {
        let (key, setup, role) = phone_move_target(join).ok_or_else(|| {
            Refusal::new(palaver_core::ErrorCode::InvalidParameter, "a phone moves into a group call or a room only")
        })?;
        self.phone_join_conversation(key, setup, role, phone, display_name, Some(participant_id)).await
    }

    /// Moves the phone leg's media from session `from` to `to` (see [`TrunkReseat`]).
    pub fn phone_reseat(
        &self,
        from: MediaSession,
        to: MediaSession,
        peer_sdp: String,
        codecs: Vec<String>,
    ) -> MediaFuture<TrunkReseat> {
        self.media().reseat_trunk(from, to, peer_sdp, codecs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phone_moves_into_group_calls_and_rooms_only() {
        let group = JoinTarget::GroupCall { group_id: "6c5c2a6e-1111-4a5b-9c6d-000000000001".into() };
        let (key, setup, role) = phone_move_target(&group).unwrap();
        assert_eq!(
            (key.as_str(), setup, role),
            ("groupCall:6c5c2a6e-1111-4a5b-9c6d-000000000001", ConversationSetup::GroupCall, None)
        );
        let room = JoinTarget::Room { room_id: "99".into() };
        let (key, setup, role) = phone_move_target(&room).unwrap();
        assert_eq!((key.as_str(), setup, role), ("room:99", ConversationSetup::Room, Some(RoomRole::Attendee)));
        assert!(phone_move_target(&JoinTarget::MeetingLink { join_url: "x".into() }).is_none());
    }
}
