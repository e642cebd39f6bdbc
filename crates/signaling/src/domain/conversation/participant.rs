//! The participant model: who joined, under which name and billing type, in which role,
//! and the live flags (muted, hand raised, sharing) shown in the roster.

use palaver_core::protocol::{ConversationKind, ParticipantInfo, ParticipantState};
use palaver_core::{CommunicationIdentifier, MeetingRole, ParticipantType, RoomRole};

/// Suffix the server appends to every external user's display name.
pub const EXTERNAL_SUFFIX: &str = " (External)";
/// Longest display name kept (characters, suffix excluded).
pub const MAX_DISPLAY_NAME_CHARS: usize = 100;
/// Name shown for an external user who proposed none.
pub const DEFAULT_GUEST_NAME: &str = "Guest";

/// The identity a participant joins with, taken from their verified token by the shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinIdentity {
    pub identifier: CommunicationIdentifier,
    /// Display name from the directory (`name` claim); directory users only.
    pub directory_name: Option<String>,
    /// Directory tenant id (`tid` claim); directory users only.
    pub tenant_id: Option<String>,
    /// Signed in on the native directory-client endpoint (participant type `Teams`, not billed).
    pub native_client: bool,
    /// Access-token expiry, ms since the Unix epoch.
    pub token_expires_at_ms: i64,
}

impl JoinIdentity {
    pub fn raw_id(&self) -> String {
        self.identifier.raw_id()
    }
    /// A directory user (not an anonymous visitor).
    pub fn is_directory(&self) -> bool {
        self.identifier.is_directory_user()
    }
    /// An external (communication / bring-your-own-identity) user.
    pub fn is_external(&self) -> bool {
        self.identifier.is_external_user()
    }
}

/// The name shown for an external user: the proposed name, cleaned, with exactly one
/// server-added ` (External)` suffix (a suffix the client typed itself is not doubled).
pub fn external_display_name(proposed: Option<&str>) -> String {
    let cleaned: String = proposed.unwrap_or("").chars().filter(|c| !c.is_control()).collect();
    let mut base = cleaned.trim();
    loop {
        let lower = base.to_ascii_lowercase();
        let Some(stripped) = lower.strip_suffix(EXTERNAL_SUFFIX.trim_start().to_ascii_lowercase().as_str()) else {
            break;
        };
        base = base[..stripped.len()].trim_end();
    }
    let mut base: String = base.chars().take(MAX_DISPLAY_NAME_CHARS).collect();
    if base.trim().is_empty() {
        base = DEFAULT_GUEST_NAME.to_string();
    }
    format!("{}{EXTERNAL_SUFFIX}", base.trim_end())
}

/// The name shown for anyone: external users get the suffix; directory users their
/// directory name (a client-proposed name is ignored); anonymous visitors their proposal.
pub fn display_name_for(identity: &JoinIdentity, proposed: Option<&str>) -> String {
    if identity.is_external() {
        return external_display_name(proposed);
    }
    if identity.is_directory() {
        if let Some(name) = identity.directory_name.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
            return name.chars().take(MAX_DISPLAY_NAME_CHARS).collect();
        }
        return identity.raw_id();
    }
    let cleaned: String =
        proposed.unwrap_or("").chars().filter(|c| !c.is_control()).take(MAX_DISPLAY_NAME_CHARS).collect();
    if cleaned.trim().is_empty() { DEFAULT_GUEST_NAME.to_string() } else { cleaned.trim().to_string() }
}

/// Billing participant type: native directory clients are `Teams` (unbilled); external
/// users are `ACS as Teams external user` in meetings and `ACS` elsewhere; directory
/// users on palaver's client path are `ACS as Microsoft 365 user`.
pub fn participant_type_for(kind: ConversationKind, identity: &JoinIdentity) -> ParticipantType {
    if identity.native_client && identity.is_directory() {
        return ParticipantType::Teams;
    }
    if identity.is_directory() {
        return ParticipantType::AcsAsM365User;
    }
    match kind {
        ConversationKind::Meeting => ParticipantType::AcsAsTeamsExternalUser,
        ConversationKind::GroupCall | ConversationKind::Room => ParticipantType::Acs,
    }
}

/// Lobby or in the conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Lobby,
    InConversation,
}

/// Whether the participant's socket is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Live,
    /// Socket dropped; the session ends at `grace_deadline_ms` unless resumed.
    Dropped {
        grace_deadline_ms: i64,
    },
}

/// One participant session in a conversation.
#[derive(Debug, Clone)]
pub struct Participant {
    pub participant_id: String,
    pub resume_token: String,
    pub identity: JoinIdentity,
    pub display_name: String,
    pub participant_type: ParticipantType,
    pub role: MeetingRole,
    pub room_role: Option<RoomRole>,
    pub stage: Stage,
    pub link: Link,
    pub muted: bool,
    pub hand_raised: bool,
    pub screen_sharing: bool,
    pub media_active: bool,
    /// `token.expiring` already sent for the current token.
    pub token_warned: bool,
    pub joined_at_ms: i64,
}

impl Participant {
    pub fn state(&self) -> ParticipantState {
        match (self.stage, self.link) {
            (Stage::Lobby, _) => ParticipantState::Lobby,
            (Stage::InConversation, Link::Live) => ParticipantState::Connected,
            (Stage::InConversation, Link::Dropped { .. }) => ParticipantState::Reconnecting,
        }
    }
    pub fn in_conversation(&self) -> bool {
        self.stage == Stage::InConversation
    }
    /// May send audio/video (room consumers only receive).
    pub fn may_send_media(&self) -> bool {
        self.room_role.is_none_or(RoomRole::may_send_media)
    }
    pub fn info(&self) -> ParticipantInfo {
        ParticipantInfo {
            participant_id: self.participant_id.clone(),
            identifier: self.identity.identifier.to_model(),
            display_name: self.display_name.clone(),
            role: self.role,
            room_role: self.room_role,
            participant_type: self.participant_type,
            is_external: self.identity.is_external(),
            state: self.state(),
            muted: self.muted,
            hand_raised: self.hand_raised,
            screen_sharing: self.screen_sharing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident(raw: &str, name: Option<&str>, native: bool) -> JoinIdentity {
        JoinIdentity {
            identifier: CommunicationIdentifier::parse(raw).unwrap(),
            directory_name: name.map(str::to_string),
            tenant_id: None,
            native_client: native,
            token_expires_at_ms: 0,
        }
    }

    #[test]
    fn external_suffix_is_added_once_and_cannot_be_removed() {
        assert_eq!(external_display_name(Some("Bob")), "Bob (External)");
        assert_eq!(external_display_name(Some("Bob (External)")), "Bob (External)");
        assert_eq!(external_display_name(Some("Bob (external) (External) ")), "Bob (External)");
        assert_eq!(external_display_name(Some("  ")), "Guest (External)");
        assert_eq!(external_display_name(Some(" (External)")), "Guest (External)");
        assert_eq!(external_display_name(None), "Guest (External)");
        assert_eq!(external_display_name(Some("A\u{0}\nB")), "AB (External)");
        let long = "x".repeat(500);
        assert_eq!(external_display_name(Some(&long)).chars().count(), MAX_DISPLAY_NAME_CHARS + EXTERNAL_SUFFIX.len());
        // A multi-byte name right at the suffix boundary is handled char-wise.
        assert_eq!(external_display_name(Some("Zoë (External)")), "Zoë (External)");
    }

    #[test]
    fn directory_users_get_their_directory_name() {
        let dir = ident("8:orgid:o1", Some("Ada Lovelace"), false);
        assert_eq!(display_name_for(&dir, Some("Mallory")), "Ada Lovelace");
        let ext = ident("8:acs:res_u1", None, false);
        assert_eq!(display_name_for(&ext, Some("Mallory")), "Mallory (External)");
        let nameless = ident("8:orgid:o2", None, false);
        assert_eq!(display_name_for(&nameless, None), "8:orgid:o2");
    }

    #[test]
    fn participant_types_for_billing() {
        use ConversationKind::*;
        let ext = ident("8:acs:res_u1", None, false);
        let dir = ident("8:orgid:o1", Some("A"), false);
        let native = ident("8:orgid:o1", Some("A"), true);
        assert_eq!(participant_type_for(Meeting, &ext), ParticipantType::AcsAsTeamsExternalUser);
        assert_eq!(participant_type_for(GroupCall, &ext), ParticipantType::Acs);
        assert_eq!(participant_type_for(Room, &ext), ParticipantType::Acs);
        assert_eq!(participant_type_for(Meeting, &dir), ParticipantType::AcsAsM365User);
        assert_eq!(participant_type_for(Meeting, &native), ParticipantType::Teams);
        assert!(!participant_type_for(Meeting, &native).is_billable());
        // The native flag on an external identity is meaningless: still billed.
        assert_eq!(
            participant_type_for(Meeting, &ident("8:acs:res_u1", None, true)),
            ParticipantType::AcsAsTeamsExternalUser
        );
    }
}
