//! Stories for the call state machine on virtual time: ring, accept, decline, cancel,
//! no-answer, busy, group, add participant, transfer to a user and to a queue, and
//! the seed's identity rules. Every refusal is checked to leave the machine unchanged.

use super::*;
use palaver_core::{CallType, EndReason, ErrorCode};
use std::collections::HashMap;

const A: &str = "8:orgid:alice";
const B: &str = "8:orgid:bob";
const C: &str = "8:orgid:carol";
const D: &str = "8:orgid:dave";
const M1: &str = "8:orgid:agent-1";
const M2: &str = "8:orgid:agent-2";
const M3: &str = "8:orgid:agent-3";
const Q: &str = "28:orgid:support";
const E1: &str = "8:acs:res_ext-1";
const E2: &str = "8:acs:res_ext-2";

fn config() -> CallsConfig {
    CallsConfig {
        queues: vec![CallQueueConfig {
            app_id: "support".into(),
            name: Some("Support".into()),
            members: vec![M1.into(), M2.into(), M3.into()],
            member_ring_timeout_secs: 15,
            hold_audio: None,
        }],
        ..CallsConfig::default()
    }
}

fn party(raw: &str) -> Party {
    Party::new(raw, raw.rsplit(':').next().unwrap())
}

/// The machine plus a billing ledger that checks one disconnect per connect.
struct World {
    m: CallManager,
    now: u64,
    billed: HashMap<(String, String), bool>,
}

impl World {
    fn new() -> Self {
        Self::with(config())
    }
    fn with(cfg: CallsConfig) -> Self {
        Self { m: CallManager::new(cfg), now: 0, billed: HashMap::new() }
    }
    fn run(&mut self, input: Input) -> Result<Vec<Output>, CallError> {
        let before = format!("{:?}", self.m);
        let res = self.m.handle(self.now, input);
        match &res {
            Ok(out) => self.ledger(out),
            Err(_) => assert_eq!(format!("{:?}", self.m), before, "a refused input changed the machine"),
        }
        res
    }
    fn ok(&mut self, input: Input) -> Vec<Output> {
        self.run(input).expect("input accepted")
    }
    fn err(&mut self, input: Input) -> ErrorCode {
        self.run(input).expect_err("input refused").code
    }
    fn ledger(&mut self, out: &[Output]) {
        for o in out {
            match o {
                Output::ParticipantConnected { call_id, participant, .. } => {
                    let prev = self.billed.insert((call_id.clone(), participant.raw_id.clone()), true);
                    assert_ne!(prev, Some(true), "connected twice: {participant:?}");
                }
                Output::ParticipantDisconnected { call_id, raw_id, .. } => {
                    let prev = self.billed.insert((call_id.clone(), raw_id.clone()), false);
                    assert_eq!(prev, Some(true), "disconnected without connect: {raw_id}");
                }
                _ => {}
            }
        }
    }
    fn open_sessions(&self) -> usize {
        self.billed.values().filter(|v| **v).count()
    }
    fn advance_to(&mut self, t: u64) -> Vec<Output> {
        self.now = t;
        self.ok(Input::Tick)
    }
    fn place(&mut self, id: &str, caller: &str, targets: &[&str]) -> Result<Vec<Output>, CallError> {
        self.run(Input::Place {
            call_id: id.into(),
            caller: party(caller),
            endpoint: format!("ep-{caller}"),
            targets: targets.iter().map(|t| t.to_string()).collect(),
        })
    }
    fn accept(&mut self, id: &str, callee: &str) -> Result<Vec<Output>, CallError> {
        self.run(Input::Accept { call_id: id.into(), callee: party(callee), endpoint: format!("ep-{callee}") })
    }
    fn decline(&mut self, id: &str, user: &str) -> Result<Vec<Output>, CallError> {
        self.run(Input::Decline { call_id: id.into(), user: user.into() })
    }
    fn hang_up(&mut self, id: &str, user: &str) -> Result<Vec<Output>, CallError> {
        self.run(Input::HangUp { call_id: id.into(), user: user.into() })
    }
    fn transfer(&mut self, id: &str, by: &str, target: &str) -> Result<Vec<Output>, CallError> {
        self.run(Input::Transfer { call_id: id.into(), by: by.into(), target: target.into() })
    }
    fn add(&mut self, id: &str, by: &str, target: &str) -> Result<Vec<Output>, CallError> {
        self.run(Input::AddParticipant { call_id: id.into(), by: by.into(), target: target.into() })
    }
    /// A connected 1:1 call `id` from `a` to `b`.
    fn connected(&mut self, id: &str, a: &str, b: &str) {
        self.place(id, a, &[b]).unwrap();
        self.accept(id, b).unwrap();
    }
    fn participants(&self, id: &str) -> Vec<String> {
        self.m.snapshot(id).expect("call exists").participants.into_iter().map(|p| p.raw_id).collect()
    }
}

fn events_to<'a>(out: &'a [Output], to: &str) -> Vec<&'a CallEvent> {
    out.iter()
        .filter_map(|o| match o {
            Output::Notify { to: t, event } if t == to => Some(event),
            _ => None,
        })
        .collect()
}

fn ended_for(out: &[Output], to: &str) -> Option<CallEndReason> {
    events_to(out, to).into_iter().find_map(|e| match e {
        CallEvent::Ended { reason, .. } => Some(*reason),
        _ => None,
    })
}

fn call_ended(out: &[Output]) -> Option<CallEndReason> {
    out.iter().find_map(|o| match o {
        Output::CallEnded { reason, .. } => Some(*reason),
        _ => None,
    })
}

fn incoming(out: &[Output], to: &str) -> Option<CallEvent> {
    events_to(out, to).into_iter().find(|e| matches!(e, CallEvent::Incoming { .. })).cloned()
}

#[test]
fn one_to_one_ring_then_accept_connects_both() {
    let mut w = World::new();
    let out = w.place("c1", A, &[B]).unwrap();
    let Some(CallEvent::Incoming { caller, ring_timeout_ms, queue, .. }) = incoming(&out, B) else { panic!("{out:?}") };
    assert_eq!((caller.raw_id.as_str(), ring_timeout_ms, queue), (A, 30_000, None));
    assert!(events_to(&out, A).iter().any(|e| matches!(e, CallEvent::Ringing { target, .. } if target == B)));
    assert!(!out.iter().any(|o| matches!(o, Output::ParticipantConnected { .. })), "ringing is not billed");
    assert_eq!(w.m.snapshot("c1").unwrap().state, CallState::Ringing);
    assert_eq!(w.m.poll_timeout(), Some(30_000));

    w.now = 4_000;
    let out = w.accept("c1", B).unwrap();
    let connected: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::ParticipantConnected { participant, call_type, .. } => {
                Some((participant.raw_id.as_str(), *call_type))
            }
            _ => None,
        })
        .collect();
    assert_eq!(connected, vec![(A, CallType::P2P), (B, CallType::P2P)]);
    for who in [A, B] {
        assert!(
            events_to(&out, who)
                .iter()
                .any(|e| matches!(e, CallEvent::Connected { participants, .. } if participants.len() == 2))
        );
    }
    let snap = w.m.snapshot("c1").unwrap();
    assert_eq!((snap.state, snap.ringing.len()), (CallState::Connected, 0));
    assert_eq!(w.m.poll_timeout(), None);
    assert_eq!(w.m.calls_of(B), vec!["c1".to_string()]);
}

#[test]
fn decline_ends_a_one_to_one_call() {
    let mut w = World::new();
    w.place("c1", A, &[B]).unwrap();
    let out = w.decline("c1", B).unwrap();
    assert_eq!(ended_for(&out, B), Some(CallEndReason::Declined));
    assert!(
        events_to(&out, A).iter().any(|e| matches!(e, CallEvent::InviteFailed { reason: CallEndReason::Declined, .. }))
    );
    assert_eq!(ended_for(&out, A), Some(CallEndReason::Declined));
    assert_eq!(call_ended(&out), Some(CallEndReason::Declined));
    assert_eq!(w.m.call_count(), 0);
    w.place("c2", A, &[C]).expect("the caller is free again");
}

#[test]
fn a_failed_invitation_ends_the_call_with_its_reason() {
    let mut w = World::new();
    for (id, reason) in
        [("c1", CallEndReason::Unreachable), ("c2", CallEndReason::Busy), ("c3", CallEndReason::Unavailable)]
    {
        w.place(id, A, &[B]).unwrap();
        let out = w.run(Input::Fail { call_id: id.into(), user: B.into(), reason }).unwrap();
        assert!(
            events_to(&out, A).iter().any(|e| matches!(e, CallEvent::InviteFailed { reason: r, .. } if *r == reason))
        );
        assert_eq!(ended_for(&out, A), Some(reason));
        assert_eq!(call_ended(&out), Some(reason));
        assert_eq!(w.m.call_count(), 0);
    }
}

#[test]
fn caller_cancels_before_answer_and_hang_up_before_answer_is_a_cancel() {
    let mut w = World::new();
    w.place("c1", A, &[B, C]).unwrap();
    let out = w.ok(Input::Cancel { call_id: "c1".into(), user: A.into() });
    assert_eq!(ended_for(&out, B), Some(CallEndReason::Cancelled));
    assert_eq!(ended_for(&out, C), Some(CallEndReason::Cancelled));
    assert_eq!(call_ended(&out), Some(CallEndReason::Cancelled));
    assert_eq!(w.accept("c1", B).unwrap_err().code, ErrorCode::CallNotFound);

    w.place("c2", A, &[B]).unwrap();
    let out = w.hang_up("c2", A).unwrap();
    assert_eq!(call_ended(&out), Some(CallEndReason::Cancelled));
    assert_eq!(w.open_sessions(), 0);
}

#[test]
fn unanswered_call_times_out_on_the_configured_ring_timeout() {
    let mut w = World::with(CallsConfig { ring_timeout_secs: 5, ..config() });
    w.place("c1", A, &[B]).unwrap();
    assert_eq!(w.m.poll_timeout(), Some(5_000));
    assert!(w.advance_to(4_999).is_empty());
    let out = w.advance_to(5_000);
    assert_eq!(ended_for(&out, B), Some(CallEndReason::NoAnswer));
    assert_eq!(ended_for(&out, A), Some(CallEndReason::NoAnswer));
    assert_eq!(call_ended(&out), Some(CallEndReason::NoAnswer));
    assert_eq!(w.m.poll_timeout(), None);
}

#[test]
fn busy_callee_is_refused_and_busy_users_cannot_place_or_accept() {
    let mut w = World::new();
    w.connected("c1", A, B);
    assert_eq!(w.place("c2", C, &[B]).unwrap_err().code, ErrorCode::Busy);
    assert_eq!(w.m.call_count(), 1);
    assert_eq!(w.place("c2", A, &[C]).unwrap_err().code, ErrorCode::InvalidState, "caller already in a call");
    // D rings A while A is in c1: A may not accept until hanging up.
    w.place("c3", D, &[C]).unwrap();
    w.place("c4", C, &[]).unwrap_err();
    w.ok(Input::Cancel { call_id: "c3".into(), user: D.into() });
    w.place("c3", C, &[D]).unwrap();
    w.accept("c3", D).unwrap();
    assert_eq!(w.place("c5", M1, &[A, C]).unwrap_err().code, ErrorCode::Busy, "all targets busy");
}

#[test]
fn user_rung_by_two_calls_can_take_only_one() {
    let mut w = World::new();
    w.place("c1", A, &[C]).unwrap();
    w.place("c2", B, &[C]).unwrap();
    w.accept("c1", C).unwrap();
    assert_eq!(w.accept("c2", C).unwrap_err().code, ErrorCode::InvalidState);
    let out = w.decline("c2", C).unwrap();
    assert_eq!(call_ended(&out), Some(CallEndReason::Declined));
}

#[test]
fn hang_up_ends_a_one_to_one_call_for_both() {
    let mut w = World::new();
    w.connected("c1", A, B);
    let out = w.hang_up("c1", B).unwrap();
    assert!(out.contains(&Output::ParticipantDisconnected {
        call_id: "c1".into(),
        raw_id: B.into(),
        reason: EndReason::Left
    }));
    assert!(out.contains(&Output::ParticipantDisconnected {
        call_id: "c1".into(),
        raw_id: A.into(),
        reason: EndReason::ConversationEnded
    }));
    assert!(
        events_to(&out, A)
            .iter()
            .any(|e| matches!(e, CallEvent::ParticipantLeft { participant, .. } if participant == B))
    );
    assert_eq!(ended_for(&out, A), Some(CallEndReason::HungUp));
    assert_eq!(call_ended(&out), Some(CallEndReason::HungUp));
    assert_eq!(w.open_sessions(), 0);
    assert_eq!(w.hang_up("c1", A).unwrap_err().code, ErrorCode::CallNotFound);
}

#[test]
fn group_call_rings_everyone_and_survives_partial_declines() {
    let mut w = World::new();
    let out = w.place("g", A, &[B, C, D]).unwrap();
    for who in [B, C, D] {
        assert!(incoming(&out, who).is_some());
    }
    assert_eq!(w.m.snapshot("g").unwrap().call_type, CallType::Group);
    let out = w.decline("g", D).unwrap();
    assert!(call_ended(&out).is_none());
    w.accept("g", B).unwrap();
    let out = w.accept("g", C).unwrap();
    for who in [A, B] {
        assert!(
            events_to(&out, who)
                .iter()
                .any(|e| matches!(e, CallEvent::ParticipantJoined { participant, .. } if participant.raw_id == C))
        );
    }
    assert_eq!(w.participants("g"), vec![A, B, C]);
    let out = w.hang_up("g", A).unwrap();
    assert!(call_ended(&out).is_none(), "two remain");
    let out = w.hang_up("g", B).unwrap();
    assert_eq!(call_ended(&out), Some(CallEndReason::HungUp));
    assert_eq!(w.open_sessions(), 0);
}

#[test]
fn group_call_with_some_busy_targets_rings_the_rest() {
    let mut w = World::new();
    w.connected("c1", B, C);
    let out = w.place("g", A, &[B, D]).unwrap();
    assert!(
        events_to(&out, A)
            .iter()
            .any(|e| matches!(e, CallEvent::InviteFailed { target, reason: CallEndReason::Busy, .. } if target == B))
    );
    assert!(incoming(&out, D).is_some());
    let out = w.decline("g", D).unwrap();
    assert_eq!(call_ended(&out), Some(CallEndReason::Declined), "nobody left ringing");
}

#[test]
fn group_call_where_everyone_lets_it_ring_ends_with_no_answer() {
    let mut w = World::new();
    w.place("g", A, &[B, C]).unwrap();
    let out = w.advance_to(30_000);
    assert_eq!(ended_for(&out, B), Some(CallEndReason::NoAnswer));
    assert_eq!(ended_for(&out, C), Some(CallEndReason::NoAnswer));
    assert_eq!(call_ended(&out), Some(CallEndReason::NoAnswer));
}

#[test]
fn adding_a_participant_turns_a_one_to_one_call_into_a_group_call() {
    let mut w = World::new();
    w.connected("c1", A, B);
    let out = w.add("c1", B, C).unwrap();
    assert!(incoming(&out, C).is_some());
    let out = w.accept("c1", C).unwrap();
    assert!(out.contains(&Output::CallTypeChanged { call_id: "c1".into(), call_type: CallType::Group }));
    assert!(out.iter().any(|o| matches!(o, Output::ParticipantConnected { participant, call_type: CallType::Group, .. } if participant.raw_id == C)));
    assert_eq!(w.add("c1", A, C).unwrap_err().code, ErrorCode::InvalidState, "already in the call");
    // An added invitee who lets it ring fails without touching the call.
    w.add("c1", A, D).unwrap();
    let out = w.advance_to(30_000);
    assert!(
        events_to(&out, B).iter().any(|e| matches!(e, CallEvent::InviteFailed { reason: CallEndReason::NoAnswer, .. }))
    );
    assert_eq!(w.participants("c1").len(), 3);
}

#[test]
fn participant_cancels_their_pending_invitation() {
    let mut w = World::new();
    w.connected("c1", A, B);
    assert_eq!(w.err(Input::Cancel { call_id: "c1".into(), user: A.into() }), ErrorCode::InvalidState);
    w.add("c1", A, C).unwrap();
    assert_eq!(
        w.err(Input::Cancel { call_id: "c1".into(), user: B.into() }),
        ErrorCode::InvalidState,
        "not B's invite"
    );
    let out = w.ok(Input::Cancel { call_id: "c1".into(), user: A.into() });
    assert_eq!(ended_for(&out, C), Some(CallEndReason::Cancelled));
    assert!(call_ended(&out).is_none());
    assert_eq!(w.m.snapshot("c1").unwrap().ringing.len(), 0);
}

#[test]
fn participant_left_alone_while_an_invitation_rings_waits_for_it() {
    let mut w = World::new();
    w.connected("c1", A, B);
    w.add("c1", A, C).unwrap();
    let out = w.hang_up("c1", A).unwrap();
    assert!(call_ended(&out).is_none(), "B waits for C");
    let out = w.accept("c1", C).unwrap();
    assert!(events_to(&out, B).iter().any(|e| matches!(e, CallEvent::ParticipantJoined { .. })));
    assert_eq!(w.participants("c1"), vec![B, C]);
}

#[test]
fn blind_transfer_completes_after_the_transferor_left() {
    let mut w = World::new();
    w.connected("c1", A, B);
    w.transfer("c1", A, C).unwrap();
    w.hang_up("c1", A).unwrap();
    let out = w.accept("c1", C).unwrap();
    assert!(events_to(&out, A).is_empty(), "A already left: {out:?}");
    assert!(
        events_to(&out, B)
            .iter()
            .any(|e| matches!(e, CallEvent::ParticipantJoined { participant, .. } if participant.raw_id == C))
    );
    assert_eq!(w.participants("c1"), vec![B, C]);
    w.hang_up("c1", C).unwrap();
    assert_eq!(w.open_sessions(), 0);
}

#[test]
fn transfer_to_a_user_replaces_the_transferor() {
    let mut w = World::new();
    w.connected("c1", A, B);
    let out = w.transfer("c1", A, C).unwrap();
    let Some(CallEvent::Incoming { transferred_by, participants, .. }) = incoming(&out, C) else { panic!() };
    assert_eq!(transferred_by.map(|p| p.raw_id), Some(A.to_string()));
    assert_eq!(participants.len(), 2);
    assert!(events_to(&out, B).iter().any(|e| matches!(e, CallEvent::Ringing { target, .. } if target == C)));
    assert_eq!(w.m.snapshot("c1").unwrap().transfer_target.as_deref(), Some(C));
    assert_eq!(w.transfer("c1", B, D).unwrap_err().code, ErrorCode::InvalidState, "one transfer at a time");

    let out = w.accept("c1", C).unwrap();
    assert!(
        events_to(&out, A)
            .iter()
            .any(|e| matches!(e, CallEvent::TransferAccepted { accepted_by, .. } if accepted_by.raw_id == C))
    );
    assert_eq!(ended_for(&out, A), Some(CallEndReason::Transferred));
    assert!(out.contains(&Output::ParticipantDisconnected {
        call_id: "c1".into(),
        raw_id: A.into(),
        reason: EndReason::Left
    }));
    assert!(
        events_to(&out, B)
            .iter()
            .any(|e| matches!(e, CallEvent::ParticipantLeft { reason: CallEndReason::Transferred, .. }))
    );
    assert!(
        events_to(&out, B)
            .iter()
            .any(|e| matches!(e, CallEvent::ParticipantJoined { participant, .. } if participant.raw_id == C))
    );
    assert!(!out.iter().any(|o| matches!(o, Output::CallTypeChanged { .. })), "still two people");
    assert_eq!(w.participants("c1"), vec![B, C]);
    w.place("c2", A, &[D]).expect("the transferor is free");
}

#[test]
fn failed_transfer_leaves_the_call_as_it_was() {
    let mut w = World::new();
    w.connected("c1", A, B);
    w.transfer("c1", A, C).unwrap();
    let out = w.decline("c1", C).unwrap();
    for who in [A, B] {
        assert!(
            events_to(&out, who)
                .iter()
                .any(|e| matches!(e, CallEvent::TransferFailed { reason: CallEndReason::Declined, .. }))
        );
    }
    assert!(call_ended(&out).is_none());
    assert_eq!(w.participants("c1"), vec![A, B]);

    w.now = 1_000;
    w.transfer("c1", A, C).unwrap();
    let out = w.advance_to(31_000);
    assert!(
        events_to(&out, A)
            .iter()
            .any(|e| matches!(e, CallEvent::TransferFailed { reason: CallEndReason::NoAnswer, .. }))
    );
    assert_eq!(w.participants("c1"), vec![A, B]);

    w.connected("c2", C, D);
    assert_eq!(w.transfer("c1", A, C).unwrap_err().code, ErrorCode::Busy);
    assert_eq!(w.m.snapshot("c1").unwrap().transfer_target, None);
}

#[test]
fn transferor_hanging_up_makes_it_a_blind_transfer() {
    let mut w = World::new();
    w.connected("c1", A, B);
    w.transfer("c1", A, C).unwrap();
    let out = w.hang_up("c1", A).unwrap();
    assert!(call_ended(&out).is_none(), "B waits for the transfer target");
    let out = w.decline("c1", C).unwrap();
    assert_eq!(ended_for(&out, B), Some(CallEndReason::Declined));
    assert_eq!(call_ended(&out), Some(CallEndReason::Declined));
    assert_eq!(w.open_sessions(), 0);
}

#[test]
fn transfer_is_withdrawn_when_the_party_to_transfer_hangs_up() {
    let mut w = World::new();
    w.connected("c1", A, B);
    w.transfer("c1", A, C).unwrap();
    let out = w.hang_up("c1", B).unwrap();
    assert_eq!(ended_for(&out, C), Some(CallEndReason::Cancelled), "C stops ringing");
    assert!(
        events_to(&out, A).iter().any(|e| matches!(e, CallEvent::TransferFailed { reason: CallEndReason::HungUp, .. }))
    );
    assert_eq!(ended_for(&out, A), Some(CallEndReason::HungUp));
    assert_eq!(call_ended(&out), Some(CallEndReason::HungUp));
    assert_eq!(w.open_sessions(), 0);
}

#[test]
fn transfer_to_a_queue_rings_members_in_turn() {
    let mut w = World::new();
    w.connected("c1", A, B);
    w.now = 1_000;
    let out = w.transfer("c1", A, Q).unwrap();
    let Some(CallEvent::Incoming { queue, ring_timeout_ms, .. }) = incoming(&out, M1) else { panic!("{out:?}") };
    assert_eq!((queue.as_deref(), ring_timeout_ms), (Some(Q), 15_000));
    assert_eq!(w.m.poll_timeout(), Some(16_000));
    // M1 lets it ring: M2 is next.
    let out = w.advance_to(16_000);
    assert_eq!(ended_for(&out, M1), Some(CallEndReason::NoAnswer));
    assert!(incoming(&out, M2).is_some());
    assert!(
        events_to(&out, B)
            .iter()
            .any(|e| matches!(e, CallEvent::Ringing { target, queue: Some(_), .. } if target == M2))
    );
    // M2 declines: M3 at once.
    let out = w.decline("c1", M2).unwrap();
    assert!(incoming(&out, M3).is_some());
    assert_eq!(w.accept("c1", M1).unwrap_err().code, ErrorCode::CallNotFound, "M1 no longer rings");
    let out = w.accept("c1", M3).unwrap();
    assert_eq!(ended_for(&out, A), Some(CallEndReason::Transferred));
    assert_eq!(w.participants("c1"), vec![B, M3]);
}

#[test]
fn a_queue_and_one_of_its_members_called_together_ring_each_user_once() {
    let mut w = World::new();
    let out = w.place("c1", A, &[Q, M1]).unwrap();
    let incoming_to =
        |who: &str| events_to(&out, who).iter().filter(|e| matches!(e, CallEvent::Incoming { .. })).count();
    assert_eq!((incoming_to(M1), incoming_to(M2)), (1, 1), "M1 directly, the queue hunts on to M2");
    assert_eq!(w.m.snapshot("c1").unwrap().ringing, vec![M1.to_string(), M2.to_string()]);
}

#[test]
fn queue_skips_busy_members() {
    let mut w = World::new();
    w.connected("busy", M1, D);
    w.connected("c1", A, B);
    let out = w.transfer("c1", A, Q).unwrap();
    assert!(incoming(&out, M1).is_none());
    assert!(incoming(&out, M2).is_some());
    // M3 gets busy while M2 rings: after M2 the queue is exhausted.
    w.place("m3", M3, &[C]).unwrap();
    let out = w.decline("c1", M2).unwrap();
    assert!(incoming(&out, M3).is_none());
    for who in [A, B] {
        assert!(
            events_to(&out, who)
                .iter()
                .any(|e| matches!(e, CallEvent::TransferFailed { reason: CallEndReason::QueueExhausted, .. }))
        );
    }
    assert_eq!(w.participants("c1"), vec![A, B], "the original call continues");
}

#[test]
fn queue_with_every_member_busy_refuses_the_transfer() {
    let mut w = World::new();
    w.connected("x", M1, M2);
    w.place("y", M3, &[D]).unwrap();
    w.connected("c1", A, B);
    assert_eq!(w.transfer("c1", A, Q).unwrap_err().code, ErrorCode::Busy);
    assert_eq!(w.place("c2", C, &[Q]).unwrap_err().code, ErrorCode::Busy);
}

#[test]
fn queue_where_nobody_answers_is_exhausted_after_each_member_rang() {
    let mut w = World::new();
    w.connected("c1", A, B);
    w.transfer("c1", A, Q).unwrap();
    assert!(incoming(&w.advance_to(15_000), M2).is_some());
    assert!(incoming(&w.advance_to(30_000), M3).is_some());
    let out = w.advance_to(45_000);
    assert!(
        events_to(&out, A)
            .iter()
            .any(|e| matches!(e, CallEvent::TransferFailed { reason: CallEndReason::QueueExhausted, .. }))
    );
    assert_eq!(w.m.poll_timeout(), None);
}

#[test]
fn calling_a_queue_directly_connects_the_first_member_who_answers() {
    let mut w = World::new();
    // An external customer may call the queue (an app); its member answers.
    let out = w.place("c1", E1, &[Q]).unwrap();
    assert!(incoming(&out, M1).is_some());
    let out = w.accept("c1", M1).unwrap();
    assert!(events_to(&out, E1).iter().any(|e| matches!(e, CallEvent::Connected { .. })));
    // The agent may hand the customer to another queue, but not to a directory user directly.
    assert_eq!(w.transfer("c1", M1, C).unwrap_err().code, ErrorCode::ExternalUserCannotCallDirectoryUser);
    assert_eq!(w.add("c1", M1, C).unwrap_err().code, ErrorCode::ExternalUserCannotCallDirectoryUser);
    assert_eq!(w.add("c1", M1, E2).unwrap_err().code, ErrorCode::ExternalUserCannotCallDirectoryUser);
    w.transfer("c1", M1, Q).expect("queue transfer");

    let mut w = World::new();
    w.place("c2", A, &[Q]).unwrap();
    w.advance_to(15_000);
    w.advance_to(30_000);
    let out = w.advance_to(45_000);
    assert_eq!(ended_for(&out, A), Some(CallEndReason::QueueExhausted));
    assert_eq!(call_ended(&out), Some(CallEndReason::QueueExhausted));
}

#[test]
fn seed_identity_rules_are_enforced_with_specific_codes() {
    let mut w = World::new();
    let cases: &[(&str, &[&str], ErrorCode)] = &[
        (E1, &[B], ErrorCode::ExternalUserCannotCallDirectoryUser),
        (A, &[E1], ErrorCode::ExternalUserCannotCallDirectoryUser),
        (A, &[B, E1], ErrorCode::ExternalUserCannotCallDirectoryUser),
        (A, &["8:gcch:gov-user"], ErrorCode::GovernmentCloudNotSupported),
        (A, &["8:dod:gov-user"], ErrorCode::GovernmentCloudNotSupported),
        (A, &["28:gcch:support"], ErrorCode::GovernmentCloudNotSupported),
        ("8:gcch:gov-user", &[B], ErrorCode::GovernmentCloudNotSupported),
        ("8:teamsvisitor:v1", &[B], ErrorCode::Forbidden),
        (A, &["8:teamsvisitor:v1"], ErrorCode::InvalidParameter),
        (A, &["4:+14255550123"], ErrorCode::PhoneTargetNotAllowed),
        (A, &["4:anonymous"], ErrorCode::InvalidParameter),
        (A, &["28:orgid:no-such-queue"], ErrorCode::CallQueueNotFound),
        (A, &["8:acs:broken"], ErrorCode::InvalidIdentifier),
        (A, &["99:whatever"], ErrorCode::InvalidIdentifier),
        (A, &[""], ErrorCode::InvalidIdentifier),
        (A, &[A], ErrorCode::InvalidParameter),
        (A, &[], ErrorCode::InvalidParameter),
        ("garbage", &[B], ErrorCode::Forbidden),
    ];
    for (i, (caller, targets, code)) in cases.iter().enumerate() {
        let got = w.place(&format!("x{i}"), caller, targets).map(|_| ()).map_err(|e| e.code);
        assert_eq!(got, Err(*code), "{caller} -> {targets:?}");
    }
    assert_eq!(w.m.call_count(), 0);
    // A phone number places calls (only the SIP gateway does: access tokens carry no `4:` id),
    // and is never busy: one number may be in several calls at once (a trunk's channels).
    assert!(w.place("phone1", "4:+14255550100", &[B]).is_ok());
    assert!(w.place("phone2", "4:+14255550100", &[E2]).is_ok());
    assert_eq!(w.m.call_count(), 2);
    // External users may call each other.
    w.connected("ext", E1, E2);
    assert_eq!(w.add("ext", E1, B).unwrap_err().code, ErrorCode::ExternalUserCannotCallDirectoryUser);
    assert_eq!(w.transfer("ext", E1, B).unwrap_err().code, ErrorCode::ExternalUserCannotCallDirectoryUser);
}

#[test]
fn phone_targets_ring_only_where_allowed() {
    let mut w = World::with(CallsConfig { allow_phone_targets: true, ..config() });
    let out = w.place("p", A, &["4:+14255550123"]).unwrap();
    assert!(incoming(&out, "4:+14255550123").is_some());
    w.accept("p", "4:+14255550123").unwrap();
    assert_eq!(w.participants("p").len(), 2);
}

#[test]
fn capacity_and_duplicate_ids_are_refused() {
    let mut w = World::with(CallsConfig { max_participants: 3, ..config() });
    assert_eq!(w.place("c", A, &[B, C, D]).unwrap_err().code, ErrorCode::CapacityReached);
    w.place("c", A, &[B, B, C]).expect("duplicates collapse");
    assert_eq!(w.m.snapshot("c").unwrap().ringing, vec![B.to_string(), C.to_string()]);
    assert_eq!(w.place("c", D, &[M1]).unwrap_err().code, ErrorCode::Conflict);
    assert_eq!(w.place("", D, &[M1]).unwrap_err().code, ErrorCode::InvalidParameter);
    w.accept("c", B).unwrap();
    assert_eq!(w.add("c", A, D).unwrap_err().code, ErrorCode::CapacityReached);
}

#[test]
fn actions_out_of_order_are_refused_without_effect() {
    let mut w = World::new();
    assert_eq!(w.accept("nope", B).unwrap_err().code, ErrorCode::CallNotFound);
    w.place("c1", A, &[B]).unwrap();
    assert_eq!(w.accept("c1", C).unwrap_err().code, ErrorCode::CallNotFound, "not invited");
    assert_eq!(w.decline("c1", A).unwrap_err().code, ErrorCode::InvalidState, "caller cannot decline");
    assert_eq!(w.hang_up("c1", B).unwrap_err().code, ErrorCode::InvalidState, "rung user must decline");
    assert_eq!(w.transfer("c1", A, C).unwrap_err().code, ErrorCode::InvalidState, "not answered yet");
    assert_eq!(w.add("c1", C, D).unwrap_err().code, ErrorCode::CallNotFound, "outsider");
    assert_eq!(w.err(Input::Cancel { call_id: "c1".into(), user: C.into() }), ErrorCode::CallNotFound);
    w.accept("c1", B).unwrap();
    assert_eq!(w.accept("c1", B).unwrap_err().code, ErrorCode::InvalidState, "accept twice");
    assert_eq!(w.transfer("c1", A, A).unwrap_err().code, ErrorCode::InvalidParameter);
    assert_eq!(w.transfer("c1", A, B).unwrap_err().code, ErrorCode::InvalidState);
    assert_eq!(w.participants("c1"), vec![A, B]);
}

#[test]
fn user_gone_hangs_up_their_calls_and_stops_their_rings() {
    let mut w = World::new();
    w.connected("c1", A, B);
    w.place("c2", C, &[Q]).unwrap();
    let out = w.ok(Input::UserGone { user: B.into() });
    assert!(out.contains(&Output::ParticipantDisconnected {
        call_id: "c1".into(),
        raw_id: B.into(),
        reason: EndReason::ConnectionLost
    }));
    assert!(
        events_to(&out, A)
            .iter()
            .any(|e| matches!(e, CallEvent::ParticipantLeft { reason: CallEndReason::ConnectionLost, .. }))
    );
    assert_eq!(call_ended(&out), Some(CallEndReason::ConnectionLost));
    // A rung queue member going away moves the queue on.
    let out = w.ok(Input::UserGone { user: M1.into() });
    assert!(incoming(&out, M2).is_some());
    // An unanswered caller going away cancels the call.
    let out = w.ok(Input::UserGone { user: C.into() });
    assert_eq!(ended_for(&out, M2), Some(CallEndReason::Cancelled));
    assert_eq!(w.m.call_count(), 0);
    assert!(w.ok(Input::UserGone { user: D.into() }).is_empty());
    assert_eq!(w.open_sessions(), 0);
}

#[test]
fn user_gone_from_one_call_ends_that_part_only() {
    // A cluster node whose sockets of B answered c1 tells the call's node B is gone from it.
    let mut w = World::new();
    w.connected("c1", A, B);
    w.connected("c2", C, D);
    assert!(w.ok(Input::UserGoneFrom { call_id: "c2".into(), user: B.into() }).is_empty(), "not in c2");
    let out = w.ok(Input::UserGoneFrom { call_id: "c1".into(), user: B.into() });
    assert!(out.contains(&Output::ParticipantDisconnected {
        call_id: "c1".into(),
        raw_id: B.into(),
        reason: EndReason::ConnectionLost
    }));
    assert_eq!(call_ended(&out), Some(CallEndReason::ConnectionLost));
    assert_eq!(w.participants("c2"), vec![C, D], "the other call is untouched");
    assert!(w.ok(Input::UserGoneFrom { call_id: "c1".into(), user: B.into() }).is_empty(), "told twice");
}

#[test]
fn every_billed_participant_is_closed_exactly_once_in_a_long_story() {
    let mut w = World::new();
    w.connected("c1", A, B);
    w.add("c1", A, C).unwrap();
    w.accept("c1", C).unwrap();
    w.transfer("c1", C, Q).unwrap();
    w.now = 15_000;
    w.ok(Input::Tick);
    w.accept("c1", M2).unwrap();
    w.hang_up("c1", A).unwrap();
    w.connected("c2", D, M1);
    w.ok(Input::UserGone { user: M2.into() });
    w.hang_up("c2", M1).unwrap();
    assert_eq!(w.m.call_count(), 0);
    assert_eq!(w.open_sessions(), 0);
    assert!(w.billed.len() >= 6);
}

mod moves;
