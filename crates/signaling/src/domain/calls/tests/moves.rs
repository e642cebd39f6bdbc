//! Moves out of a call into a conversation (Call Automation's `moveParticipants` into a group
//! call or a room): a client's socket is told first, a server-side participant has none, and
//! a phone leaves its call without being hung up.

use super::*;

#[test]
fn a_participant_moved_to_a_conversation_leaves_its_call_and_its_socket_is_told_first() {
    let mut w = World::new();
    let join = palaver_core::protocol::JoinTarget::GroupCall { group_id: "g1".into() };
    let move_out =
        |target: &str| Input::MoveToConversation { call_id: "c1".into(), target: target.into(), join: join.clone() };
    // Not answered yet, unknown call, not a member: refused, nothing changes.
    w.place("c1", A, &[B]).unwrap();
    assert_eq!(w.err(move_out(A)), ErrorCode::InvalidState);
    w.accept("c1", B).unwrap();
    assert_eq!(
        w.err(Input::MoveToConversation { call_id: "nope".into(), target: A.into(), join: join.clone() }),
        ErrorCode::CallNotFound
    );
    assert_eq!(w.err(move_out(C)), ErrorCode::NotFound);

    let out = w.ok(move_out(A));
    assert_eq!(
        out[0],
        Output::MovedToConversation {
            call_id: "c1".into(),
            raw_id: A.into(),
            endpoint: format!("ep-{A}"),
            join: join.clone()
        },
        "the socket that was in the call moves, before anything else is sent: {out:?}"
    );
    assert_eq!(ended_for(&out, A), Some(CallEndReason::Transferred));
    // B is alone: the call ends; every billing session is closed.
    assert!(call_ended(&out).is_some(), "{out:?}");
    assert_eq!(w.open_sessions(), 0);
}

#[test]
fn a_server_side_participant_has_no_socket_to_move() {
    let mut w = World::new();
    w.place("c1", A, &[B]).unwrap();
    w.ok(Input::Accept {
        call_id: "c1".into(),
        callee: party(B),
        endpoint: format!("{SERVER_LEG_ENDPOINT_PREFIX}cc1"),
    });
    let join = palaver_core::protocol::JoinTarget::Room { room_id: "r1".into() };
    assert_eq!(
        w.err(Input::MoveToConversation { call_id: "c1".into(), target: B.into(), join }),
        ErrorCode::InvalidState
    );
}

#[test]
fn a_phone_caller_answered_by_a_server_leg_moves_out_without_being_hung_up() {
    const PHONE: &str = "4:+14255550199";
    let mut w = World::new();
    w.place("c1", PHONE, &[B]).unwrap();
    w.ok(Input::Accept {
        call_id: "c1".into(),
        callee: party(B),
        endpoint: format!("{SERVER_LEG_ENDPOINT_PREFIX}cc1"),
    });
    let join = palaver_core::protocol::JoinTarget::GroupCall { group_id: "g1".into() };
    let out = w.ok(Input::MoveToConversation { call_id: "c1".into(), target: PHONE.into(), join: join.clone() });
    // The SIP gateway is told where the phone goes before the call's end reaches it, so its
    // leg follows the phone instead of hanging up (`gateway/phone_moves.rs`).
    assert_eq!(
        out[0],
        Output::MovedToConversation {
            call_id: "c1".into(),
            raw_id: PHONE.into(),
            endpoint: format!("ep-{PHONE}"),
            join
        }
    );
    assert_eq!(ended_for(&out, PHONE), Some(CallEndReason::Transferred));
    assert!(call_ended(&out).is_some(), "the server leg was left alone: {out:?}");
    assert_eq!(w.open_sessions(), 0, "the phone's session in the call is closed; it goes on in the conversation");
}
