//! A conversation carried to a new home: roles (a promotion included), lobby standing and
//! raised hands come back with the identity, and the capture notice is re-sent to joiners.

use super::super::machine::{ConversationConfig, ConversationSetup, Input, JoinRequest, MeetingSetup, Output};
use super::super::participant::JoinIdentity;
use super::super::tests::to;
use super::super::{Command, Conversation};
use super::*;
use palaver_core::CommunicationIdentifier;
use palaver_core::protocol::{CaptureStatus, MeetingPolicy, ParticipantState, ServerMessage};

const T0: i64 = 1_800_000_000_000;
const ORG: &str = "8:orgid:organizer";

fn meeting(id: &str) -> Conversation {
    let setup = MeetingSetup {
        subject: None,
        organizer_raw_id: ORG.into(),
        organizer_tenant_id: Some("tenant-a".into()),
        co_organizers: vec![],
        presenters: vec![],
        policy: MeetingPolicy::default(),
        thread_id: None,
    };
    Conversation::new(id, ConversationSetup::Meeting(setup), ConversationConfig::default())
}

fn identity(raw: &str) -> JoinIdentity {
    let directory = raw.starts_with("8:orgid:");
    JoinIdentity {
        identifier: CommunicationIdentifier::parse(raw).unwrap(),
        directory_name: directory.then(|| "Olivia".into()),
        tenant_id: directory.then(|| "tenant-a".into()),
        native_client: false,
        token_expires_at_ms: T0 + 3_600_000,
    }
}

fn join(c: &mut Conversation, pid: &str, raw: &str) -> Vec<Output> {
    c.handle(
        T0,
        Input::Join(JoinRequest {
            participant_id: pid.into(),
            resume_token: format!("secret-{pid}"),
            request_id: None,
            identity: identity(raw),
            proposed_display_name: None,
            room_role: None,
        }),
    )
}

fn cmd(c: &mut Conversation, pid: &str, command: Command) {
    c.handle(T0, Input::Command { participant_id: pid.into(), request_id: None, command });
}

#[test]
fn roles_lobby_standing_hands_and_the_capture_notice_survive_a_new_home() {
    let (ann, bob) = ("8:acs:res_ann", "8:acs:res_bob");
    let mut old = meeting("live-a");
    join(&mut old, "org", ORG);
    join(&mut old, "ann", ann);
    join(&mut old, "bob", bob); // stays in the lobby
    cmd(&mut old, "org", Command::Admit { participant_id: "ann".into() });
    cmd(&mut old, "org", Command::SetRole { participant_id: "ann".into(), role: MeetingRole::Presenter });
    cmd(&mut old, "ann", Command::RaiseHand { raised: true });
    cmd(&mut old, "org", Command::Recording { active: true });
    let carried = old.carried();
    assert!(carried.capture_active());
    assert_eq!(carried.participants.len(), 3);

    // The new home restores it; Ann comes back first, with a new participant id and nobody
    // else present: no lobby (she had been admitted), her promotion and raised hand kept,
    // and the recording notice right after `joined`.
    let mut new = meeting("live-b");
    new.restore(carried);
    assert_eq!(new.carried_participant_id(ann), Some("ann"));
    let out = join(&mut new, "ann-2", ann);
    let msgs = to(&out, "ann-2");
    let ServerMessage::Joined { snapshot, .. } = &msgs[0] else { panic!("{msgs:?}") };
    assert_eq!(snapshot.state, ParticipantState::Connected);
    assert_eq!(snapshot.role, MeetingRole::Presenter);
    assert_eq!(snapshot.capture.recording, CaptureStatus::Active);
    assert!(matches!(&msgs[1], ServerMessage::CaptureChanged { capture, changed_by: None }
        if capture.recording == CaptureStatus::Active));
    assert!(new.participant("ann-2").unwrap().hand_raised);
    assert_eq!(new.participant("ann-2").unwrap().display_name, "Guest (External)", "her name came back");

    // The organizer's participant id is carried for the organizer only.
    let out = join(&mut new, "org", bob);
    assert!(to(&out, "org").iter().any(|m| matches!(m, ServerMessage::Error { code, .. } if code == "Conflict")));

    // Bob, who was waiting, waits again; the organizer's standing is still carried.
    let out = join(&mut new, "bob-2", bob);
    let ServerMessage::Joined { snapshot, .. } = &to(&out, "bob-2")[0] else { panic!() };
    assert_eq!(snapshot.state, ParticipantState::Lobby);
    let still = new.carried();
    assert!(still.participants.iter().any(|p| p.raw_id == ORG && p.participant_id == "org"));
    assert_eq!(still.participants.len(), 3, "{still:?}");

    // A second join of Ann's identity is a new one: the standing was used once.
    assert_eq!(new.carried_participant_id(ann), None);
}

#[test]
fn a_conversation_that_was_not_restored_sends_no_extra_notice() {
    let mut c = meeting("live");
    join(&mut c, "org", ORG);
    cmd(&mut c, "org", Command::Recording { active: true });
    let out = join(&mut c, "ann", "8:acs:res_ann");
    assert_eq!(to(&out, "ann").len(), 1, "the snapshot in `joined` is the notice");
}

fn resumed(c: &mut Conversation, now: i64, pid: &str, raw: &str) -> Vec<Output> {
    c.handle(
        now,
        Input::Resumed(JoinRequest {
            participant_id: pid.into(),
            resume_token: format!("fresh-{pid}"),
            request_id: Some("r1".into()),
            identity: identity(raw),
            proposed_display_name: None,
            room_role: None,
        }),
    )
}

fn refused_not_found(out: &[Output], pid: &str) -> bool {
    to(out, pid).iter().any(|m| matches!(m, ServerMessage::Error { code, .. } if code == "NotFound"))
        && out.iter().any(|o| matches!(o, Output::JoinRefused { participant_id } if participant_id == pid))
}

/// A resume on the new home continues the participant's billing session: it keeps the
/// participant id the old home gave (the session id), for its own identity only, within the
/// reconnect grace of the restore.
#[test]
fn a_resume_on_the_new_home_keeps_the_participant_id_for_its_identity_within_the_grace() {
    let (ann, bob, eve) = ("8:acs:res_ann", "8:acs:res_bob", "8:acs:res_eve");
    let mut old = meeting("live-a");
    join(&mut old, "org", ORG);
    join(&mut old, "ann", ann);
    join(&mut old, "bob", bob);
    cmd(&mut old, "org", Command::Admit { participant_id: "ann".into() });
    let grace = ConversationConfig::default().reconnect_grace_ms;
    let mut new = meeting("live-b");
    new.restore_at(T0, old.carried());

    // Eve may not take Ann's id, nor resume an id nobody carries.
    assert!(refused_not_found(&resumed(&mut new, T0 + 10, "ann", eve), "ann"));
    assert!(refused_not_found(&resumed(&mut new, T0 + 10, "nobody", eve), "nobody"));
    // Ann resumes as "ann": admitted as before, and the session that starts is hers.
    let out = resumed(&mut new, T0 + 1_000, "ann", ann);
    assert!(matches!(to(&out, "ann")[0], ServerMessage::Joined { .. }), "{out:?}");
    let session = out.iter().find_map(|o| match o {
        Output::SessionStarted(s) => Some(s.clone()),
        _ => None,
    });
    assert_eq!(session.map(|s| (s.session_id, s.conversation_id)), Some(("ann".into(), "live-b".into())));
    assert_eq!(new.participant("ann").unwrap().stage, Stage::InConversation);
    // Bob comes back after the grace: refused (his session was closed at its last
    // checkpoint by then); he joins afresh under a new id.
    assert!(refused_not_found(&resumed(&mut new, T0 + grace + 1, "bob", bob), "bob"));
    assert!(new.participant("bob").is_none());
    let out = join(&mut new, "bob-2", bob);
    assert!(matches!(to(&out, "bob-2")[0], ServerMessage::Joined { .. }));
}
