//! Story tests for the conversation machine, on virtual time: lobby wait and admission,
//! roster deltas, recording notices reaching the lobby, grace periods, token expiry,
//! group-call and capacity rules, bad commands leaving state untouched.

use super::*;
use palaver_core::protocol::{
    CaptureStatus, LobbyBypass, MeetingPolicy, ParticipantState, PolicyUpdate, RosterChange, ServerMessage,
};
use palaver_core::{CommunicationIdentifier, EndReason, ErrorCode, MeetingRole, ParticipantType, RoomRole};

const T0: i64 = 1_800_000_000_000;
const HOUR: i64 = 3_600_000;
const ORG: &str = "8:orgid:organizer";
const TENANT: &str = "tenant-a";

fn meeting(policy: MeetingPolicy) -> Conversation {
    let setup = MeetingSetup {
        subject: Some("Weekly".into()),
        organizer_raw_id: ORG.into(),
        organizer_tenant_id: Some(TENANT.into()),
        co_organizers: vec!["8:orgid:coorg".into()],
        presenters: vec![],
        policy,
        thread_id: Some("19:meeting_m1@thread.v2".into()),
    };
    Conversation::new("m1", ConversationSetup::Meeting(setup), ConversationConfig::default())
}

fn directory(oid: &str, name: &str, tenant: &str) -> JoinIdentity {
    JoinIdentity {
        identifier: CommunicationIdentifier::parse(&format!("8:orgid:{oid}")).unwrap(),
        directory_name: Some(name.into()),
        tenant_id: Some(tenant.into()),
        native_client: false,
        token_expires_at_ms: T0 + 24 * HOUR,
    }
}

fn external(user: &str) -> JoinIdentity {
    JoinIdentity {
        identifier: CommunicationIdentifier::parse(&format!("8:acs:res_{user}")).unwrap(),
        directory_name: None,
        tenant_id: None,
        native_client: false,
        token_expires_at_ms: T0 + 24 * HOUR,
    }
}

fn join(c: &mut Conversation, now: i64, pid: &str, identity: JoinIdentity, name: Option<&str>) -> Vec<Output> {
    c.handle(
        now,
        Input::Join(JoinRequest {
            participant_id: pid.into(),
            resume_token: format!("secret-{pid}"),
            request_id: Some(format!("join-{pid}")),
            identity,
            proposed_display_name: name.map(str::to_string),
            room_role: None,
        }),
    )
}

fn cmd(c: &mut Conversation, now: i64, pid: &str, command: Command) -> Vec<Output> {
    c.handle(now, Input::Command { participant_id: pid.into(), request_id: Some("r".into()), command })
}

/// Messages delivered to `pid`, in order.
pub(super) fn to(out: &[Output], pid: &str) -> Vec<ServerMessage> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send { to, message } if to.iter().any(|t| t == pid) => Some(message.clone()),
            _ => None,
        })
        .collect()
}

fn error_code(out: &[Output], pid: &str) -> Option<String> {
    to(out, pid).into_iter().find_map(|m| match m {
        ServerMessage::Error { code, .. } => Some(code),
        _ => None,
    })
}

fn state_of(c: &Conversation, pid: &str) -> Option<ParticipantState> {
    c.participant(pid).map(|p| p.state())
}

fn ended_sessions(out: &[Output]) -> Vec<(String, EndReason)> {
    out.iter()
        .filter_map(|o| match o {
            Output::SessionEnded(e) => Some((e.session_id.clone(), e.reason)),
            _ => None,
        })
        .collect()
}

#[test]
fn external_user_waits_in_lobby_until_organizer_admits() {
    let mut c = meeting(MeetingPolicy::default());
    // The external user arrives first: lobby, empty roster, billing starts.
    let out = join(&mut c, T0, "ext", external("u1"), Some("Bob"));
    assert!(out.iter().any(|o| matches!(o, Output::SessionStarted(s)
        if s.participant_type == ParticipantType::AcsAsTeamsExternalUser)));
    let ServerMessage::Joined { snapshot, .. } = &to(&out, "ext")[0] else { panic!("{out:?}") };
    assert_eq!(snapshot.state, ParticipantState::Lobby);
    assert!(snapshot.participants.is_empty());

    // The organizer joins directly and sees Bob waiting in the roster snapshot.
    let out = join(&mut c, T0 + 1000, "org", directory("organizer", "Olivia", TENANT), None);
    let ServerMessage::Joined { snapshot, .. } = &to(&out, "org")[0] else { panic!() };
    assert_eq!(snapshot.state, ParticipantState::Connected);
    assert_eq!(snapshot.role, MeetingRole::Organizer);
    let bob = snapshot.participants.iter().find(|p| p.participant_id == "ext").unwrap();
    assert_eq!(bob.display_name, "Bob (External)");
    assert_eq!(bob.state, ParticipantState::Lobby);
    assert!(to(&out, "ext").is_empty(), "the lobby does not see the roster");

    // Admit: Bob gets a snapshot (connected), the organizer an ack and a delta.
    let out = cmd(&mut c, T0 + 2000, "org", Command::Admit { participant_id: "ext".into() });
    let org_msgs = to(&out, "org");
    assert!(matches!(org_msgs[0], ServerMessage::Ack { .. }));
    assert!(
        matches!(&org_msgs[1], ServerMessage::RosterDelta { delta: RosterChange::StateChanged { participant_id, state: ParticipantState::Connected }, .. } if participant_id == "ext")
    );
    let ServerMessage::Snapshot { snapshot } = &to(&out, "ext")[0] else { panic!() };
    assert_eq!(snapshot.state, ParticipantState::Connected);
    assert_eq!(snapshot.participants.len(), 2);
    assert_eq!(state_of(&c, "ext"), Some(ParticipantState::Connected));

    // Admitting again is out of order.
    let out = cmd(&mut c, T0 + 3000, "org", Command::Admit { participant_id: "ext".into() });
    assert_eq!(error_code(&out, "org").as_deref(), Some("InvalidState"));
}

#[test]
fn external_users_wait_for_a_directory_user_even_when_everyone_bypasses() {
    let mut c = meeting(MeetingPolicy { lobby_bypass: LobbyBypass::Everyone, ..Default::default() });
    join(&mut c, T0, "ext", external("u1"), None);
    assert_eq!(state_of(&c, "ext"), Some(ParticipantState::Lobby));
    // A directory user from another tenant also bypasses under "everyone" and releases the lobby.
    let out = join(&mut c, T0 + 10, "guest", directory("g", "Gus", "tenant-b"), None);
    assert_eq!(state_of(&c, "guest"), Some(ParticipantState::Connected));
    assert_eq!(state_of(&c, "ext"), Some(ParticipantState::Connected));
    assert!(matches!(to(&out, "ext")[0], ServerMessage::Snapshot { .. }));
}

#[test]
fn lobby_bypass_policies() {
    // organization: same-tenant directory users in, other tenants wait.
    let mut c = meeting(MeetingPolicy::default());
    join(&mut c, T0, "org", directory("organizer", "O", TENANT), None);
    join(&mut c, T0, "colleague", directory("c", "C", TENANT), None);
    join(&mut c, T0, "other", directory("x", "X", "tenant-b"), None);
    assert_eq!(state_of(&c, "colleague"), Some(ParticipantState::Connected));
    assert_eq!(state_of(&c, "other"), Some(ParticipantState::Lobby));
    assert_eq!(c.participant("colleague").unwrap().role, MeetingRole::Presenter);
    assert_eq!(c.participant("other").unwrap().role, MeetingRole::Attendee);

    // organizerOnly: even colleagues wait; co-organizers do not.
    let mut c = meeting(MeetingPolicy { lobby_bypass: LobbyBypass::OrganizerOnly, ..Default::default() });
    join(&mut c, T0, "colleague", directory("c", "C", TENANT), None);
    join(&mut c, T0, "co", directory("coorg", "Co", TENANT), None);
    assert_eq!(state_of(&c, "colleague"), Some(ParticipantState::Lobby));
    assert_eq!(state_of(&c, "co"), Some(ParticipantState::Connected));
    assert_eq!(c.participant("co").unwrap().role, MeetingRole::CoOrganizer);

    // Switching the policy to everyone releases the lobby at once.
    let out = cmd(
        &mut c,
        T0 + 5,
        "co",
        Command::UpdatePolicy(PolicyUpdate { lobby_bypass: Some(LobbyBypass::Everyone), ..Default::default() }),
    );
    assert!(matches!(to(&out, "co")[0], ServerMessage::Ack { .. }));
    assert_eq!(state_of(&c, "colleague"), Some(ParticipantState::Connected));
    assert!(to(&out, "co").iter().any(|m| matches!(m, ServerMessage::PolicyChanged { .. })));
}

#[test]
fn external_users_refused_when_policy_forbids_them() {
    let mut c = meeting(MeetingPolicy { allow_external_users: false, ..Default::default() });
    let out = join(&mut c, T0, "ext", external("u1"), None);
    assert_eq!(error_code(&out, "ext").as_deref(), Some("ExternalUsersNotAllowed"));
    assert!(out.iter().any(|o| matches!(o, Output::JoinRefused { .. })));
    assert!(!out.iter().any(|o| matches!(o, Output::SessionStarted(_))), "nothing billed on refusal");
    assert!(c.participant("ext").is_none());
}

#[test]
fn deny_ends_the_lobby_session_and_is_billed_once() {
    let mut c = meeting(MeetingPolicy::default());
    join(&mut c, T0, "org", directory("organizer", "O", TENANT), None);
    join(&mut c, T0, "ext", external("u1"), None);
    // An attendee can't deny; a lobby user can't admit themselves.
    join(&mut c, T0, "other", directory("x", "X", "tenant-b"), None);
    let out = cmd(&mut c, T0, "ext", Command::Admit { participant_id: "ext".into() });
    assert_eq!(error_code(&out, "ext").as_deref(), Some("Forbidden"));
    let out = cmd(&mut c, T0 + 60_000, "org", Command::Deny { participant_id: "ext".into() });
    assert_eq!(ended_sessions(&out), vec![("ext".to_string(), EndReason::Removed)]);
    assert!(
        to(&out, "ext").iter().any(|m| matches!(m, ServerMessage::SessionEnded { reason: EndReason::Removed, .. }))
    );
    assert!(out.iter().any(|o| matches!(o, Output::Detach { participant_id, .. } if participant_id == "ext")));
    let out = cmd(&mut c, T0 + 60_001, "org", Command::Deny { participant_id: "ext".into() });
    assert_eq!(error_code(&out, "org").as_deref(), Some("NotFound"));
    assert!(ended_sessions(&out).is_empty());
}

#[test]
fn recording_notice_reaches_lobby_and_late_joiners_see_it() {
    let mut c = meeting(MeetingPolicy::default());
    join(&mut c, T0, "org", directory("organizer", "O", TENANT), None);
    join(&mut c, T0, "ext", external("u1"), None); // waits in the lobby
    join(&mut c, T0, "ext2", external("u2"), None);
    cmd(&mut c, T0, "org", Command::Admit { participant_id: "ext2".into() });

    // An external participant cannot start recording, even when admitted.
    let out = cmd(&mut c, T0, "ext2", Command::Recording { active: true });
    assert_eq!(error_code(&out, "ext2").as_deref(), Some("ExternalUsersNotAllowed"));
    assert_eq!(c.capture().recording, CaptureStatus::Inactive);

    let out = cmd(&mut c, T0 + 1, "org", Command::Recording { active: true });
    for pid in ["org", "ext", "ext2"] {
        assert!(
            to(&out, pid).iter().any(|m| matches!(m, ServerMessage::CaptureChanged { capture, .. }
                if capture.recording == CaptureStatus::Active)),
            "{pid} must be told"
        );
    }
    // Starting twice is out of order.
    let out = cmd(&mut c, T0 + 2, "org", Command::Recording { active: true });
    assert_eq!(error_code(&out, "org").as_deref(), Some("InvalidState"));

    // A late joiner (still in the lobby) has it in the snapshot.
    let out = join(&mut c, T0 + 3, "late", external("u3"), None);
    let ServerMessage::Joined { snapshot, .. } = &to(&out, "late")[0] else { panic!() };
    assert_eq!(snapshot.capture.recording, CaptureStatus::Active);

    // Transcription through the server API.
    let out = c.server_command(T0 + 4, &Authority::Server, ServerCommand::SetTranscription(true)).unwrap();
    assert_eq!(to(&out, "late").len(), 1);
    // Through REST by a user: their role decides.
    let err = c
        .server_command(T0 + 5, &Authority::User("8:acs:res_u2".into()), ServerCommand::SetRecording(false))
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::ExternalUsersNotAllowed);
    let err = c
        .server_command(T0 + 5, &Authority::User("8:orgid:stranger".into()), ServerCommand::SetRecording(false))
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Forbidden);
    c.server_command(T0 + 6, &Authority::User("8:orgid:coorg".into()), ServerCommand::SetRecording(false)).unwrap();
    assert_eq!(c.capture().recording, CaptureStatus::Inactive);
}

#[test]
fn roster_deltas_for_mute_hand_role_and_share() {
    let mut c = meeting(MeetingPolicy::default());
    join(&mut c, T0, "org", directory("organizer", "O", TENANT), None);
    join(&mut c, T0, "att", directory("x", "X", "tenant-b"), None);
    cmd(&mut c, T0, "org", Command::Admit { participant_id: "att".into() });
    let v0 = c.snapshot_for("org").roster_version;

    let out = cmd(&mut c, T0, "att", Command::RaiseHand { raised: true });
    assert!(
        matches!(&to(&out, "org")[0], ServerMessage::RosterDelta { roster_version, delta: RosterChange::HandRaised { raised: true, .. } } if *roster_version == v0 + 1)
    );
    // Attendees cannot share or mute others.
    let out = cmd(&mut c, T0, "att", Command::ScreenShare { active: true });
    assert_eq!(error_code(&out, "att").as_deref(), Some("RoleNotAllowed"));
    let out = cmd(&mut c, T0, "att", Command::MuteOther { participant_id: "org".into() });
    assert_eq!(error_code(&out, "att").as_deref(), Some("RoleNotAllowed"));
    // Organizer promotes, the new presenter shares; a second sharer conflicts.
    let out = cmd(&mut c, T0, "org", Command::SetRole { participant_id: "att".into(), role: MeetingRole::Presenter });
    assert!(to(&out, "att").iter().any(|m| matches!(
        m,
        ServerMessage::RosterDelta { delta: RosterChange::RoleChanged { role: MeetingRole::Presenter, .. }, .. }
    )));
    cmd(&mut c, T0, "att", Command::ScreenShare { active: true });
    let out = cmd(&mut c, T0, "org", Command::ScreenShare { active: true });
    assert_eq!(error_code(&out, "org").as_deref(), Some("Conflict"));
    // Demotion stops the share.
    let out = cmd(&mut c, T0, "org", Command::SetRole { participant_id: "att".into(), role: MeetingRole::Attendee });
    assert!(to(&out, "org").iter().any(|m| matches!(
        m,
        ServerMessage::RosterDelta { delta: RosterChange::ScreenShare { active: false, .. }, .. }
    )));
    assert!(!c.participant("att").unwrap().screen_sharing);
    // Mute by organizer, with `by`.
    let out = cmd(&mut c, T0, "org", Command::MuteOther { participant_id: "att".into() });
    assert!(to(&out, "att").iter().any(|m| matches!(m, ServerMessage::RosterDelta { delta: RosterChange::Muted { muted: true, by: Some(by), .. }, .. } if by == "org")));
    // Role rules: one organizer; organizer untouchable; external users can't be co-organizers.
    let out = cmd(&mut c, T0, "org", Command::SetRole { participant_id: "att".into(), role: MeetingRole::Organizer });
    assert_eq!(error_code(&out, "org").as_deref(), Some("InvalidParameter"));
    join(&mut c, T0, "ext", external("u1"), None);
    cmd(&mut c, T0, "org", Command::Admit { participant_id: "ext".into() });
    let out = cmd(&mut c, T0, "org", Command::SetRole { participant_id: "ext".into(), role: MeetingRole::CoOrganizer });
    assert_eq!(error_code(&out, "org").as_deref(), Some("RoleNotAllowed"));
    let out = cmd(&mut c, T0, "org", Command::Remove { participant_id: "org".into() });
    assert_eq!(error_code(&out, "org").as_deref(), Some("InvalidParameter"));
}

#[test]
fn presenter_cannot_remove_organizer_but_organizer_removes_anyone() {
    let mut c = meeting(MeetingPolicy::default());
    join(&mut c, T0, "org", directory("organizer", "O", TENANT), None);
    join(&mut c, T0, "pres", directory("p", "P", TENANT), None);
    let out = cmd(&mut c, T0, "pres", Command::Remove { participant_id: "org".into() });
    assert_eq!(error_code(&out, "pres").as_deref(), Some("RoleNotAllowed"));
    let out = cmd(&mut c, T0 + 5, "org", Command::Remove { participant_id: "pres".into() });
    assert_eq!(ended_sessions(&out), vec![("pres".to_string(), EndReason::Removed)]);
    assert!(to(&out, "org").iter().any(|m| matches!(
        m,
        ServerMessage::RosterDelta { delta: RosterChange::Left { reason: EndReason::Removed, .. }, .. }
    )));
}

#[test]
fn dropped_socket_reconnects_within_grace_or_leaves_after_it() {
    let mut c = meeting(MeetingPolicy::default());
    join(&mut c, T0, "org", directory("organizer", "O", TENANT), None);
    join(&mut c, T0, "pres", directory("p", "P", TENANT), None);
    let out = c.handle(T0 + 100, Input::ConnectionLost { participant_id: "pres".into() });
    assert!(to(&out, "org").iter().any(|m| matches!(
        m,
        ServerMessage::RosterDelta {
            delta: RosterChange::StateChanged { state: ParticipantState::Reconnecting, .. },
            ..
        }
    )));
    assert_eq!(c.next_deadline(), Some(T0 + 100 + 30_000));
    // Wrong secret or identity: refused.
    assert_eq!(c.check_resume("pres", "nope", "8:orgid:p").unwrap_err().code, ErrorCode::Forbidden);
    assert_eq!(c.check_resume("pres", "secret-pres", "8:orgid:q").unwrap_err().code, ErrorCode::Forbidden);
    c.check_resume("pres", "secret-pres", "8:orgid:p").unwrap();
    let out = c.handle(T0 + 29_000, Input::Resume { participant_id: "pres".into() });
    assert!(matches!(to(&out, "pres")[0], ServerMessage::Snapshot { .. }));
    assert_eq!(state_of(&c, "pres"), Some(ParticipantState::Connected));
    assert!(ended_sessions(&c.handle(T0 + 40_000, Input::Tick)).is_empty());

    // Drop again, and let the grace run out.
    c.handle(T0 + 50_000, Input::ConnectionLost { participant_id: "pres".into() });
    assert!(ended_sessions(&c.handle(T0 + 79_999, Input::Tick)).is_empty());
    let out = c.handle(T0 + 80_000, Input::Tick);
    assert_eq!(ended_sessions(&out), vec![("pres".to_string(), EndReason::ConnectionLost)]);
    assert!(to(&out, "pres").is_empty(), "nothing is sent to a dead socket");
    assert_eq!(c.check_resume("pres", "secret-pres", "8:orgid:p").unwrap_err().code, ErrorCode::NotFound);
}

#[test]
fn token_expiry_asks_for_refresh_then_ends_the_session() {
    let mut c = meeting(MeetingPolicy::default());
    let mut id = directory("organizer", "O", TENANT);
    id.token_expires_at_ms = T0 + 10 * 60_000;
    join(&mut c, T0, "org", id, None);
    assert_eq!(c.next_deadline(), Some(T0 + 8 * 60_000));
    let out = c.handle(T0 + 8 * 60_000, Input::Tick);
    assert_eq!(to(&out, "org"), vec![ServerMessage::TokenExpiring { expires_at_ms: T0 + 10 * 60_000 }]);
    // Refreshed: the deadline moves.
    let new_exp = T0 + 70 * 60_000;
    let out = c.handle(T0 + 9 * 60_000, Input::TokenRefreshed { participant_id: "org".into(), expires_at_ms: new_exp });
    assert_eq!(to(&out, "org"), vec![ServerMessage::TokenRefreshed { expires_at_ms: new_exp }]);
    assert!(ended_sessions(&c.handle(T0 + 11 * 60_000, Input::Tick)).is_empty());
    // Not refreshed this time: warned once, then ended.
    let out = c.handle(new_exp - 60_000, Input::Tick);
    assert_eq!(to(&out, "org").len(), 1);
    assert!(c.handle(new_exp - 30_000, Input::Tick).is_empty());
    let out = c.handle(new_exp, Input::Tick);
    assert_eq!(ended_sessions(&out), vec![("org".to_string(), EndReason::TokenExpired)]);
    assert!(out.iter().any(|o| matches!(o, Output::Detach { reason: EndReason::TokenExpired, .. })));
    assert!(out.contains(&Output::ConversationEnded));
}

#[test]
fn group_call_started_by_external_refuses_directory_users() {
    let mut c = Conversation::new("g1", ConversationSetup::GroupCall, ConversationConfig::default());
    let out = join(&mut c, T0, "e1", external("u1"), Some("Eve"));
    assert!(out.iter().any(|o| matches!(o, Output::SessionStarted(s) if s.participant_type == ParticipantType::Acs)));
    assert_eq!(state_of(&c, "e1"), Some(ParticipantState::Connected), "no lobby in group calls");
    let out = join(&mut c, T0, "d1", directory("d", "D", TENANT), None);
    assert_eq!(error_code(&out, "d1").as_deref(), Some("DirectoryUserCannotJoinExternalCall"));
    join(&mut c, T0, "e2", external("u2"), None);
    assert_eq!(c.participants().count(), 2);
    // Group calls have no meeting end or roles.
    let out = cmd(&mut c, T0, "e1", Command::EndMeeting);
    assert_eq!(error_code(&out, "e1").as_deref(), Some("RoleNotAllowed"));

    // Started by a directory user: external and directory users both join.
    let mut c = Conversation::new("g2", ConversationSetup::GroupCall, ConversationConfig::default());
    join(&mut c, T0, "d1", directory("d", "D", TENANT), None);
    join(&mut c, T0, "e1", external("u1"), None);
    assert_eq!(c.participants().count(), 2);
}

#[test]
fn rooms_need_a_room_role_and_consumers_only_receive() {
    let mut c = Conversation::new("room1", ConversationSetup::Room, ConversationConfig::default());
    let out = join(&mut c, T0, "x", external("u0"), None);
    assert_eq!(error_code(&out, "x").as_deref(), Some("NotRoomParticipant"));
    let out = c.handle(
        T0,
        Input::Join(JoinRequest {
            participant_id: "cons".into(),
            resume_token: "s".into(),
            request_id: None,
            identity: external("u1"),
            proposed_display_name: None,
            room_role: Some(RoomRole::Consumer),
        }),
    );
    assert!(matches!(to(&out, "cons")[0], ServerMessage::Joined { .. }));
    let out = cmd(&mut c, T0, "cons", Command::SelfMute { muted: false });
    assert_eq!(error_code(&out, "cons").as_deref(), Some("RoleNotAllowed"));
    let out = cmd(&mut c, T0, "cons", Command::MediaOffer { sdp: "v=0".into(), request_id: None });
    assert!(out.contains(&Output::MediaOffer {
        participant_id: "cons".into(),
        sdp: "v=0".into(),
        may_send_media: false,
        request_id: None
    }));
}

#[test]
fn capacity_counts_the_calling_path_and_the_hard_ceiling() {
    let mut c =
        meeting(MeetingPolicy { lobby_bypass: LobbyBypass::Everyone, max_participants: 3, ..Default::default() });
    join(&mut c, T0, "org", directory("organizer", "O", TENANT), None);
    join(&mut c, T0, "a", directory("a", "A", TENANT), None);
    join(&mut c, T0, "b", external("b"), None);
    let out = join(&mut c, T0, "c", external("c"), None);
    assert_eq!(error_code(&out, "c").as_deref(), Some("CapacityReached"));
    // A native directory client is outside the calling-path cap.
    let mut native = directory("n", "N", TENANT);
    native.native_client = true;
    let out = join(&mut c, T0, "n", native, None);
    assert!(out.iter().any(|o| matches!(o, Output::SessionStarted(s) if s.participant_type == ParticipantType::Teams)));
    // Policy caps are validated.
    let out = cmd(
        &mut c,
        T0,
        "org",
        Command::UpdatePolicy(PolicyUpdate { max_participants: Some(5000), ..Default::default() }),
    );
    assert_eq!(error_code(&out, "org").as_deref(), Some("InvalidParameter"));
    assert_eq!(c.policy().max_participants, 3);
}

#[test]
fn end_meeting_ends_everyone_once_and_dial_out_follows_policy() {
    let mut c = meeting(MeetingPolicy::default());
    join(&mut c, T0, "org", directory("organizer", "O", TENANT), None);
    join(&mut c, T0, "ext", external("u1"), None);
    join(&mut c, T0, "ext2", external("u2"), None);
    cmd(&mut c, T0, "org", Command::Admit { participant_id: "ext2".into() });
    let out = cmd(&mut c, T0, "ext2", Command::DialOut { phone_number: "+14255550123".into() });
    assert_eq!(error_code(&out, "ext2").as_deref(), Some("ExternalUsersNotAllowed"));
    let out = cmd(&mut c, T0, "org", Command::DialOut { phone_number: "12".into() });
    assert_eq!(error_code(&out, "org").as_deref(), Some("InvalidIdentifier"));
    let out = cmd(&mut c, T0, "org", Command::DialOut { phone_number: "+14255550123".into() });
    assert!(out.contains(&Output::DialOut { participant_id: "org".into(), phone_number: "+14255550123".into() }));
    // The number dialled joins without the lobby (once); another phone waits there.
    join(
        &mut c,
        T0,
        "dialed",
        JoinIdentity {
            identifier: CommunicationIdentifier::PhoneNumber { value: "+14255550123".into() },
            directory_name: None,
            tenant_id: None,
            native_client: false,
            token_expires_at_ms: i64::MAX / 2,
        },
        None,
    );
    join(
        &mut c,
        T0,
        "caller",
        JoinIdentity {
            identifier: CommunicationIdentifier::PhoneNumber { value: "+14255550123".into() },
            directory_name: None,
            tenant_id: None,
            native_client: false,
            token_expires_at_ms: i64::MAX / 2,
        },
        None,
    );
    assert_eq!(c.participants["dialed"].stage, super::participant::Stage::InConversation);
    assert_eq!(c.participants["caller"].stage, super::participant::Stage::Lobby);

    let out = cmd(&mut c, T0 + 10, "org", Command::EndMeeting);
    let ended = ended_sessions(&out);
    assert_eq!(ended.len(), 5, "three users and two phones");
    assert!(ended.iter().all(|(_, r)| *r == EndReason::ConversationEnded));
    assert_eq!(out.iter().filter(|o| **o == Output::ConversationEnded).count(), 1);
    let out = join(&mut c, T0 + 20, "again", directory("organizer", "O", TENANT), None);
    assert_eq!(error_code(&out, "again").as_deref(), Some("InvalidState"));
}

#[test]
fn last_one_out_ends_the_conversation_and_media_is_released() {
    let mut c = Conversation::new("g", ConversationSetup::GroupCall, ConversationConfig::default());
    join(&mut c, T0, "a", directory("a", "A", TENANT), None);
    let out = cmd(
        &mut c,
        T0,
        "a",
        Command::MediaIceCandidate(palaver_core::protocol::IceCandidate {
            candidate: "candidate:1".into(),
            sdp_mid: None,
            sdp_m_line_index: None,
        }),
    );
    assert_eq!(error_code(&out, "a").as_deref(), Some("InvalidState"), "ICE before offer is out of order");
    cmd(&mut c, T0, "a", Command::MediaOffer { sdp: "v=0".into(), request_id: None });
    let out = cmd(&mut c, T0 + 1, "a", Command::Leave);
    assert!(out.contains(&Output::MediaLeave { participant_id: "a".into() }));
    assert!(out.contains(&Output::ConversationEnded));
    assert_eq!(ended_sessions(&out), vec![("a".to_string(), EndReason::Left)]);
}

#[test]
fn media_subscribe_needs_an_offer_and_bounded_entries() {
    use palaver_core::protocol::{MAX_SLOT_SUBSCRIPTIONS, SlotSubscription};
    let mut c = Conversation::new("g", ConversationSetup::GroupCall, ConversationConfig::default());
    join(&mut c, T0, "a", directory("a", "A", TENANT), None);
    let entry = |mid: &str, max_height: Option<u16>| SlotSubscription { mid: mid.into(), max_height, paused: None };
    let out = cmd(&mut c, T0, "a", Command::MediaSubscribe { slots: vec![entry("3", Some(360))] });
    assert_eq!(error_code(&out, "a").as_deref(), Some("InvalidState"), "subscribe before offer is out of order");
    cmd(&mut c, T0, "a", Command::MediaOffer { sdp: "v=0".into(), request_id: None });
    for bad in [vec![entry("", None)], vec![entry("3", Some(0))], vec![entry("3", None); MAX_SLOT_SUBSCRIPTIONS + 1]] {
        let out = cmd(&mut c, T0, "a", Command::MediaSubscribe { slots: bad });
        assert_eq!(error_code(&out, "a").as_deref(), Some("InvalidParameter"));
        assert!(!out.iter().any(|o| matches!(o, Output::MediaSubscribe { .. })), "nothing reaches the media plane");
    }
    let slots = vec![entry("3", Some(360)), SlotSubscription { mid: "4".into(), max_height: None, paused: Some(true) }];
    let out = cmd(&mut c, T0, "a", Command::MediaSubscribe { slots: slots.clone() });
    assert!(out.contains(&Output::MediaSubscribe { participant_id: "a".into(), slots }));
    assert!(to(&out, "a").iter().any(|m| matches!(m, ServerMessage::Ack { .. })));
}

#[test]
fn unknown_actor_gets_invalid_state_and_nothing_changes() {
    let mut c = meeting(MeetingPolicy::default());
    let out = cmd(&mut c, T0, "ghost", Command::Recording { active: true });
    assert_eq!(error_code(&out, "ghost").as_deref(), Some("InvalidState"));
    assert_eq!(c.capture().recording, CaptureStatus::Inactive);
}

#[test]
fn nobody_admits_for_fifteen_minutes_so_the_lobby_wait_ends() {
    let mut c = meeting(MeetingPolicy::default());
    join(&mut c, T0, "ext", external("u1"), None);
    assert_eq!(c.next_deadline(), Some(T0 + 15 * 60_000));
    assert!(ended_sessions(&c.handle(T0 + 15 * 60_000 - 1, Input::Tick)).is_empty());
    let out = c.handle(T0 + 15 * 60_000, Input::Tick);
    assert_eq!(ended_sessions(&out), vec![("ext".to_string(), EndReason::Removed)]);
    assert!(to(&out, "ext").iter().any(|m| matches!(m, ServerMessage::SessionEnded { .. })));
    assert!(out.contains(&Output::ConversationEnded));
}

#[test]
fn server_shutdown_ends_every_session_once_and_only_the_server_may() {
    let mut c = meeting(MeetingPolicy::default());
    join(&mut c, T0, "org", directory("organizer", "O", TENANT), None);
    join(&mut c, T0, "ext", external("u1"), None);
    let err = c.server_command(T0, &Authority::User(ORG.into()), ServerCommand::Shutdown).unwrap_err();
    assert_eq!(err.code, ErrorCode::Forbidden);
    let out = c.server_command(T0 + 1, &Authority::Server, ServerCommand::Shutdown).unwrap();
    let ended = ended_sessions(&out);
    assert_eq!(ended.len(), 2);
    assert!(ended.iter().all(|(_, r)| *r == EndReason::ServerShutdown));
    assert_eq!(out.iter().filter(|o| **o == Output::ConversationEnded).count(), 1);
}

#[test]
fn a_hand_over_tells_everyone_to_resume_and_ends_no_session() {
    let mut c = meeting(MeetingPolicy::default());
    join(&mut c, T0, "org", directory("organizer", "O", TENANT), None);
    join(&mut c, T0, "ext", external("u1"), None);
    let err = c.server_command(T0, &Authority::User(ORG.into()), ServerCommand::HandOver).unwrap_err();
    assert_eq!(err.code, ErrorCode::Forbidden);
    let out = c.server_command(T0 + 1, &Authority::Server, ServerCommand::HandOver).unwrap();
    assert!(ended_sessions(&out).is_empty(), "the sessions stay open for the next home to adopt");
    for who in ["org", "ext"] {
        assert_eq!(error_code(&out, who).as_deref(), Some("NodeDraining"), "{who} is told to resume");
        assert!(out.iter().any(|o| matches!(o, Output::Detach { participant_id, .. } if participant_id == who)));
        assert!(!to(&out, who).iter().any(|m| matches!(m, ServerMessage::SessionEnded { .. })));
    }
    assert_eq!(out.iter().filter(|o| **o == Output::ConversationEnded).count(), 1);
    assert_eq!(c.participants().count(), 0);
}

#[test]
fn a_thousand_participants_get_one_broadcast_and_the_next_is_refused() {
    let policy = MeetingPolicy { lobby_bypass: LobbyBypass::Everyone, max_participants: 1000, ..Default::default() };
    let mut c = meeting(policy);
    join(&mut c, T0, "org", directory("organizer", "O", TENANT), None);
    for i in 1..1000 {
        let out = join(&mut c, T0 + i, &format!("p{i}"), external(&format!("u{i}")), None);
        assert!(error_code(&out, &format!("p{i}")).is_none());
    }
    assert_eq!(c.participants().count(), 1000);
    let out = join(&mut c, T0 + 2000, "one-too-many", external("late"), None);
    assert_eq!(error_code(&out, "one-too-many").as_deref(), Some("CapacityReached"));
    // The recording notice is one output addressed to all 1000 sockets (serialized once by the shell).
    let out = cmd(&mut c, T0 + 3000, "org", Command::Recording { active: true });
    let notices: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::Send { to, message: ServerMessage::CaptureChanged { .. } } => Some(to.len()),
            _ => None,
        })
        .collect();
    assert_eq!(notices, vec![1000]);
}

#[test]
fn call_automation_mutes_and_removes_an_identity_with_the_servers_authority() {
    let mut c = Conversation::new("g", ConversationSetup::GroupCall, ConversationConfig::default());
    join(&mut c, T0, "app", external("app"), None);
    join(&mut c, T0, "u1", external("u1"), None);
    join(&mut c, T0, "u1b", external("u1"), None);
    let mute = ServerCommand::MuteParticipant { raw_id: "8:acs:res_u1".into() };
    let out = c.server_command(T0 + 1, &Authority::Server, mute.clone()).unwrap();
    let muted: Vec<_> = to(&out, "app")
        .into_iter()
        .filter_map(|m| match m {
            ServerMessage::RosterDelta { delta: RosterChange::Muted { participant_id, muted: true, .. }, .. } => {
                Some(participant_id)
            }
            _ => None,
        })
        .collect();
    assert_eq!(muted, vec!["u1".to_string(), "u1b".to_string()], "every session of the identity, seen by the others");
    let again = c.server_command(T0 + 2, &Authority::Server, mute).unwrap();
    assert!(to(&again, "app").is_empty(), "already muted: no delta");
    let remove = ServerCommand::RemoveParticipant { raw_id: "8:acs:res_u1".into() };
    let out = c.server_command(T0 + 3, &Authority::Server, remove.clone()).unwrap();
    let mut ended = ended_sessions(&out);
    ended.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(ended, vec![("u1".into(), EndReason::Removed), ("u1b".into(), EndReason::Removed)]);
    let gone = c.server_command(T0 + 4, &Authority::Server, remove).unwrap_err();
    assert_eq!(gone.code, ErrorCode::NotFound, "nobody of that identity is left");
    assert_eq!(c.participants().count(), 1);
}
