//! Roles in conversations: directory-style meeting roles and ACS Rooms roles.

use serde::{Deserialize, Serialize};

/// Role in a directory-style meeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MeetingRole {
    Attendee,
    Presenter,
    CoOrganizer,
    Organizer,
}

impl MeetingRole {
    pub const ALL: [MeetingRole; 4] =
        [MeetingRole::Organizer, MeetingRole::CoOrganizer, MeetingRole::Presenter, MeetingRole::Attendee];

    /// Organizer and co-organizer run the meeting (policies, roles, recording).
    pub fn is_organizer_like(self) -> bool {
        self >= MeetingRole::CoOrganizer
    }
    /// Presenters and above may admit from the lobby, share, mute others.
    pub fn is_presenter_or_above(self) -> bool {
        self >= MeetingRole::Presenter
    }
}

/// Role in an ACS Room (Rooms API wire names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum RoomRole {
    Presenter,
    #[default]
    Attendee,
    Consumer,
    Collaborator,
}

impl RoomRole {
    pub fn parse(s: &str) -> Option<Self> {
        // The service accepts the role names case-insensitively.
        match s.to_ascii_lowercase().as_str() {
            "presenter" => Some(Self::Presenter),
            "attendee" => Some(Self::Attendee),
            "consumer" => Some(Self::Consumer),
            "collaborator" => Some(Self::Collaborator),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Presenter => "Presenter",
            Self::Attendee => "Attendee",
            Self::Consumer => "Consumer",
            Self::Collaborator => "Collaborator",
        }
    }
    /// Consumers only receive media; everyone else may send.
    pub fn may_send_media(self) -> bool {
        !matches!(self, Self::Consumer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meeting_role_order() {
        assert!(MeetingRole::Organizer.is_organizer_like());
        assert!(MeetingRole::CoOrganizer.is_organizer_like());
        assert!(!MeetingRole::Presenter.is_organizer_like());
        assert!(MeetingRole::Presenter.is_presenter_or_above());
        assert!(!MeetingRole::Attendee.is_presenter_or_above());
    }

    #[test]
    fn room_role_names() {
        for r in [RoomRole::Presenter, RoomRole::Attendee, RoomRole::Consumer, RoomRole::Collaborator] {
            assert_eq!(RoomRole::parse(r.as_str()), Some(r));
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{}\"", r.as_str()));
        }
        assert_eq!(RoomRole::parse("owner"), None);
    }
}
