//! Who may do what in a conversation: one pure function from (actor, action, policy)
//! to allowed / refused-with-a-code, plus the table-driven test of every role × action.

use super::participant::{Participant, Stage};
use crate::domain::Refusal;
use palaver_core::protocol::MeetingPolicy;
use palaver_core::{ErrorCode, MeetingRole, RoomRole};

/// A role-checked action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Admit,
    Deny,
    Remove,
    MuteOthers,
    StartRecording,
    StopRecording,
    StartTranscription,
    StopTranscription,
    ChangeRole,
    ChangePolicy,
    EndMeeting,
    ShareScreen,
    DialOutToPhone,
}

impl Action {
    pub const ALL: [Action; 13] = [
        Action::Admit,
        Action::Deny,
        Action::Remove,
        Action::MuteOthers,
        Action::StartRecording,
        Action::StopRecording,
        Action::StartTranscription,
        Action::StopTranscription,
        Action::ChangeRole,
        Action::ChangePolicy,
        Action::EndMeeting,
        Action::ShareScreen,
        Action::DialOutToPhone,
    ];
}

/// What the authorization decision looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActorView {
    pub role: MeetingRole,
    pub room_role: Option<RoomRole>,
    pub in_lobby: bool,
    /// A directory user (not external, not an anonymous visitor).
    pub is_directory: bool,
    pub is_external: bool,
}

impl ActorView {
    pub fn of(p: &Participant) -> Self {
        Self {
            role: p.role,
            room_role: p.room_role,
            in_lobby: p.stage == Stage::Lobby,
            is_directory: p.identity.is_directory(),
            is_external: p.identity.is_external(),
        }
    }
}

/// Decide whether `actor` may perform `action` under `policy`.
pub fn authorize(actor: &ActorView, action: Action, policy: &MeetingPolicy) -> Result<(), Refusal> {
    use Action::*;
    if actor.in_lobby {
        return Err(Refusal::new(ErrorCode::Forbidden, "participants waiting in the lobby cannot do this"));
    }
    let need = |ok: bool, who: &str| {
        if ok { Ok(()) } else { Err(Refusal::new(ErrorCode::RoleNotAllowed, format!("only {who} may do this"))) }
    };
    match action {
        Admit | Deny | Remove | MuteOthers => need(actor.role.is_presenter_or_above(), "presenters and organizers"),
        StartRecording | StopRecording | StartTranscription | StopTranscription => {
            if !actor.is_directory {
                return Err(Refusal::new(
                    ErrorCode::ExternalUsersNotAllowed,
                    "external and anonymous users cannot start or stop recording or transcription",
                ));
            }
            need(actor.role.is_presenter_or_above(), "presenters and organizers")
        }
        ChangeRole | ChangePolicy | EndMeeting => need(actor.role.is_organizer_like(), "organizers and co-organizers"),
        ShareScreen => need(
            actor.role.is_presenter_or_above() || actor.room_role == Some(RoomRole::Collaborator),
            "presenters and organizers",
        ),
        DialOutToPhone => {
            let may_dial = actor.is_directory || (actor.is_external && policy.external_dial_out);
            if !may_dial {
                return Err(Refusal::new(
                    ErrorCode::ExternalUsersNotAllowed,
                    "this meeting's policy does not let external users dial out to phone numbers",
                ));
            }
            need(actor.role.is_presenter_or_above(), "presenters and organizers")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Action::*;
    use super::*;
    use palaver_core::ErrorCode as E;

    fn actor(role: MeetingRole, directory: bool, lobby: bool) -> ActorView {
        ActorView { role, room_role: None, in_lobby: lobby, is_directory: directory, is_external: !directory }
    }

    /// Every role × every action. `None` = allowed, `Some(code)` = refused with that code.
    #[test]
    fn authorization_matrix() {
        let org = actor(MeetingRole::Organizer, true, false);
        let coorg = actor(MeetingRole::CoOrganizer, true, false);
        let presenter = actor(MeetingRole::Presenter, true, false);
        let attendee = actor(MeetingRole::Attendee, true, false);
        let ext_attendee = actor(MeetingRole::Attendee, false, false);
        let ext_presenter = actor(MeetingRole::Presenter, false, false);
        let waiting = actor(MeetingRole::Attendee, false, true);
        let waiting_dir = actor(MeetingRole::Presenter, true, true);
        let ok = None;
        let role = Some(E::RoleNotAllowed);
        let ext = Some(E::ExternalUsersNotAllowed);
        let lob = Some(E::Forbidden);
        #[rustfmt::skip]
        let rows: [(&str, ActorView, [Option<ErrorCode>; 13]); 8] = [
            //                         admit deny remove mute  recS  recE  trS   trE   role  pol   end   share dial
            ("organizer",     org,          [ok,  ok,  ok,   ok,   ok,   ok,   ok,   ok,   ok,   ok,   ok,   ok,   ok]),
            ("co-organizer",  coorg,        [ok,  ok,  ok,   ok,   ok,   ok,   ok,   ok,   ok,   ok,   ok,   ok,   ok]),
            ("presenter",     presenter,    [ok,  ok,  ok,   ok,   ok,   ok,   ok,   ok,   role, role, role, ok,   ok]),
            ("attendee",      attendee,     [role,role,role, role, role, role, role, role, role, role, role, role, role]),
            ("ext attendee",  ext_attendee, [role,role,role, role, ext,  ext,  ext,  ext,  role, role, role, role, ext]),
            ("ext presenter", ext_presenter,[ok,  ok,  ok,   ok,   ext,  ext,  ext,  ext,  role, role, role, ok,   ext]),
            ("lobby (ext)",   waiting,      [lob, lob, lob,  lob,  lob,  lob,  lob,  lob,  lob,  lob,  lob,  lob,  lob]),
            ("lobby (dir)",   waiting_dir,  [lob, lob, lob,  lob,  lob,  lob,  lob,  lob,  lob,  lob,  lob,  lob,  lob]),
        ];
        let policy = MeetingPolicy::default();
        for (name, who, expected) in rows {
            for (action, want) in Action::ALL.into_iter().zip(expected) {
                let got = authorize(&who, action, &policy).err().map(|r| r.code);
                assert_eq!(got, want, "{name} × {action:?}");
            }
        }
    }

    #[test]
    fn dial_out_policy_opens_it_to_external_presenters_only() {
        let policy = MeetingPolicy { external_dial_out: true, ..MeetingPolicy::default() };
        let ext_presenter = actor(MeetingRole::Presenter, false, false);
        let ext_attendee = actor(MeetingRole::Attendee, false, false);
        assert_eq!(authorize(&ext_presenter, DialOutToPhone, &policy), Ok(()));
        assert_eq!(authorize(&ext_attendee, DialOutToPhone, &policy).unwrap_err().code, E::RoleNotAllowed);
        // Recording stays closed to external users whatever the policy.
        assert_eq!(authorize(&ext_presenter, StartRecording, &policy).unwrap_err().code, E::ExternalUsersNotAllowed);
    }

    #[test]
    fn anonymous_visitors_are_treated_like_external_users_for_recording() {
        let visitor = ActorView {
            role: MeetingRole::Presenter,
            room_role: None,
            in_lobby: false,
            is_directory: false,
            is_external: false,
        };
        let policy = MeetingPolicy { external_dial_out: true, ..MeetingPolicy::default() };
        assert_eq!(authorize(&visitor, StartTranscription, &policy).unwrap_err().code, E::ExternalUsersNotAllowed);
        assert_eq!(authorize(&visitor, DialOutToPhone, &policy).unwrap_err().code, E::ExternalUsersNotAllowed);
    }

    #[test]
    fn room_collaborators_may_share_but_not_moderate() {
        let collab = ActorView {
            role: MeetingRole::Attendee,
            room_role: Some(RoomRole::Collaborator),
            in_lobby: false,
            is_directory: false,
            is_external: true,
        };
        let policy = MeetingPolicy::default();
        assert_eq!(authorize(&collab, ShareScreen, &policy), Ok(()));
        assert_eq!(authorize(&collab, MuteOthers, &policy).unwrap_err().code, E::RoleNotAllowed);
    }
}
