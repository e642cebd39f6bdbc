//! Stories of the call machine and the Call Automation machine together, on virtual time:
//! every call output addressed to a user goes through `on_call_event`, as the gateway does.

use super::*;
use crate::domain::calls::{CallEndReason, CallEvent, CallManager, CallsConfig, Input, Output, Party};
use serde_json::{Value, json};

const BOT: &str = "8:acs:r_bot";
const ALICE: &str = "8:acs:r_alice";
const AGENT: &str = "8:acs:r_agent";

struct World {
    calls: CallManager,
    ca: CallAutomationMachine,
    now: u64,
    outputs: Vec<CaOutput>,
    /// Call events that reached users' sockets: (to, type).
    notified: Vec<(String, String)>,
}

impl World {
    fn new() -> Self {
        Self {
            calls: CallManager::new(CallsConfig::default()),
            ca: CallAutomationMachine::new(ContextSigner::new([1; 32])),
            now: 1_000_000,
            outputs: Vec::new(),
            notified: Vec::new(),
        }
    }
    fn input(&mut self, input: Input) -> Result<(), crate::domain::calls::CallError> {
        let out = self.calls.handle(self.now, input)?;
        for o in out {
            if let Output::CallEnded { call_id, .. } = &o {
                self.ca.call_ended(call_id);
            }
            if let Output::Notify { to, event } = o {
                let kind = serde_json::to_value(&event).unwrap()["type"].as_str().unwrap().to_string();
                self.notified.push((to.clone(), kind));
                let ca = self.ca.on_call_event(self.now, &to, &event);
                self.outputs.extend(ca);
            }
        }
        Ok(())
    }
    fn take(&mut self) -> Vec<CaOutput> {
        std::mem::take(&mut self.outputs)
    }
    /// The callbacks taken, as (ccid, type name, data).
    fn callbacks(&mut self) -> Vec<(String, String, Value)> {
        self.take()
            .into_iter()
            .filter_map(|o| match o {
                CaOutput::Callback { call_connection_id, event_type, data, .. } => Some((
                    call_connection_id,
                    event_type.trim_start_matches("Microsoft.Communication.").to_string(),
                    data,
                )),
                _ => None,
            })
            .collect()
    }
    fn incoming_context(&mut self) -> (String, Value) {
        let outputs = self.take();
        let data = outputs
            .iter()
            .find_map(|o| match o {
                CaOutput::Publish { event_type, data, .. } if event_type.ends_with("IncomingCall") => {
                    Some(data.clone())
                }
                _ => None,
            })
            .expect("an IncomingCall");
        self.outputs = outputs.into_iter().filter(|o| !matches!(o, CaOutput::Publish { .. })).collect();
        (data["incomingCallContext"].as_str().unwrap().to_string(), data)
    }
    /// An application answers `ctx` as call connection `ccid`.
    fn answer(&mut self, ccid: &str, ctx: &str, op: &str) -> Result<(), CallAutomationError> {
        let claim = self.ca.consume_context(ctx, self.now)?;
        self.ca.open(
            ccid,
            NewConnection {
                call_id: claim.call_id.clone(),
                source: claim.callee.clone(),
                source_display_name: None,
                source_caller_id_number: None,
                callback_uri: format!("https://app/cb/{ccid}?token=s"),
                operation_context: Some(op.into()),
                targets: vec![],
                origin: Origin::Answer,
            },
        )?;
        let input = Input::Accept {
            call_id: claim.call_id,
            callee: Party::new(claim.callee, "bot"),
            endpoint: leg_endpoint(ccid),
        };
        self.input(input).map_err(|e| {
            self.ca.abort(ccid);
            CallAutomationError::invalid_state(e.message)
        })
    }
    /// Bot creates a call to `targets` as call connection `ccid`.
    fn create(&mut self, ccid: &str, call_id: &str, targets: &[&str]) {
        self.ca
            .open(
                ccid,
                NewConnection {
                    call_id: call_id.into(),
                    source: BOT.into(),
                    source_display_name: Some("Bot".into()),
                    source_caller_id_number: None,
                    callback_uri: format!("https://app/cb/{ccid}"),
                    operation_context: Some("c1".into()),
                    targets: targets.iter().map(|t| t.to_string()).collect(),
                    origin: Origin::Create,
                },
            )
            .unwrap();
        self.input(Input::Place {
            call_id: call_id.into(),
            caller: Party::new(BOT, "Bot"),
            endpoint: leg_endpoint(ccid),
            targets: targets.iter().map(|t| t.to_string()).collect(),
        })
        .unwrap();
    }
}

fn names(callbacks: &[(String, String, Value)]) -> Vec<(&str, &str)> {
    callbacks.iter().map(|(c, n, _)| (c.as_str(), n.as_str())).collect()
}

#[test]
fn a_call_to_an_acs_identity_raises_incoming_call_and_the_app_answers_it_once() {
    let mut w = World::new();
    w.input(Input::Place {
        call_id: "call1".into(),
        caller: Party::new(ALICE, "Alice"),
        endpoint: "conn-a".into(),
        targets: vec![BOT.into()],
    })
    .unwrap();
    let (ctx, data) = w.incoming_context();
    assert_eq!(data["to"]["rawId"], BOT);
    assert_eq!(data["to"]["kind"], "communicationUser");
    assert_eq!(data["from"]["rawId"], ALICE);
    assert_eq!(data["serverCallId"], "call1");
    assert_eq!(data["callerDisplayName"], "Alice");
    assert!(data["correlationId"].as_str().is_some_and(|c| !c.is_empty()));
    // The identity's own sockets are rung as well.
    assert!(w.notified.contains(&(BOT.to_string(), "call.incoming".to_string())));

    w.answer("cc1", &ctx, "c2").unwrap();
    let cbs = w.callbacks();
    assert_eq!(names(&cbs), vec![("cc1", "CallConnected"), ("cc1", "ParticipantsUpdated")]);
    assert_eq!(cbs[0].2["operationContext"], "c2");
    assert_eq!(cbs[0].2["serverCallId"], "call1");
    assert_eq!(cbs[0].2["correlationId"], data["correlationId"]);
    assert_eq!(cbs[1].2["sequenceNumber"], 1);
    let roster: Vec<&str> = cbs[1].2["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["identifier"]["rawId"].as_str().unwrap())
        .collect();
    assert_eq!(roster, vec![ALICE, BOT]);
    assert_eq!(w.ca.view("cc1").unwrap().state, CallConnectionState::Connected);
    assert_eq!(w.ca.properties("cc1").unwrap()["callbackUri"], "https://app/cb/cc1?token=s");

    let again = w.answer("cc2", &ctx, "x").unwrap_err();
    assert_eq!((again.status, again.subcode), (409, 8519));
    assert!(w.ca.view("cc2").is_err(), "a refused answer leaves nothing behind");

    // A call to an ACS identity that its own socket answers leaves nothing behind either.
    w.input(Input::Place {
        call_id: "call2".into(),
        caller: Party::new(AGENT, "G"),
        endpoint: "conn-g".into(),
        targets: vec!["8:acs:r_dan".into()],
    })
    .unwrap();
    w.take();
    w.input(Input::Accept {
        call_id: "call2".into(),
        callee: Party::new("8:acs:r_dan", "D"),
        endpoint: "conn-d".into(),
    })
    .unwrap();
    w.input(Input::HangUp { call_id: "call2".into(), user: AGENT.into() }).unwrap();
    assert_eq!(w.ca.tracked_calls(), 1, "only call1 is tracked");

    // Alice hangs up: CallDisconnected is the connection's last event.
    w.input(Input::HangUp { call_id: "call1".into(), user: ALICE.into() }).unwrap();
    let cbs = w.callbacks();
    assert_eq!(names(&cbs).last(), Some(&("cc1", "CallDisconnected")));
    assert_eq!(w.ca.view("cc1").unwrap_err().subcode, 8522);
    w.calls.assert_consistent();
}

#[test]
fn an_expired_context_is_refused() {
    let mut w = World::new();
    w.input(Input::Place {
        call_id: "call1".into(),
        caller: Party::new(ALICE, "Alice"),
        endpoint: "conn-a".into(),
        targets: vec![BOT.into()],
    })
    .unwrap();
    let (ctx, _) = w.incoming_context();
    w.now += 31_000;
    let e = w.answer("cc1", &ctx, "c").unwrap_err();
    assert_eq!((e.status, e.subcode), (400, 8523));
}

#[test]
fn bot_to_bot_call_add_cancel_transfer_and_terminate() {
    let mut w = World::new();
    w.create("ccA", "call1", &[AGENT]);
    let (ctx, data) = w.incoming_context();
    assert_eq!(data["from"]["rawId"], BOT);
    assert!(w.callbacks().is_empty(), "nothing before the answer");
    w.answer("ccB", &ctx, "c2").unwrap();
    let cbs = w.callbacks();
    let connected: Vec<_> = cbs.iter().filter(|(_, n, _)| n == "CallConnected").collect();
    assert_eq!(connected.len(), 2);
    assert_eq!(connected.iter().find(|(c, _, _)| c == "ccA").unwrap().2["operationContext"], "c1");
    assert_eq!(connected[0].2["serverCallId"], connected[1].2["serverCallId"]);
    assert_eq!(connected[0].2["correlationId"], connected[1].2["correlationId"]);

    // A adds alice; C answers her IncomingCall for her.
    let route = OperationRoute { operation_context: Some("a1".into()), operation_callback_uri: None };
    let inv = w.ca.begin_add("ccA", ALICE, route).unwrap();
    w.ca.set_custom_context("call1", ALICE, serde_json::json!({"voipHeaders": {"k": "v"}}));
    w.input(Input::AddParticipant { call_id: "call1".into(), by: BOT.into(), target: ALICE.into() }).unwrap();
    let (alice_ctx, data) = w.incoming_context();
    assert_eq!(data["customContext"]["voipHeaders"]["k"], "v");
    w.callbacks();
    w.answer("ccC", &alice_ctx, "c3").unwrap();
    let cbs = w.callbacks();
    let ok = cbs.iter().find(|(_, n, _)| n == "AddParticipantSucceeded").expect("add succeeded");
    assert_eq!(
        (ok.0.as_str(), &ok.2["operationContext"], &ok.2["invitationId"]),
        ("ccA", &"a1".into(), &inv.clone().into())
    );
    assert_eq!(ok.2["participant"]["rawId"], ALICE);
    let seqs: Vec<u64> = cbs
        .iter()
        .filter(|(c, n, _)| c == "ccA" && n == "ParticipantsUpdated")
        .map(|(_, _, d)| d["sequenceNumber"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![2], "one more roster for A");

    // A adds a second identity and cancels before it answers.
    const CAROL: &str = "8:acs:r_carol";
    let inv2 = w.ca.begin_add("ccA", CAROL, OperationRoute::default()).unwrap();
    w.input(Input::AddParticipant { call_id: "call1".into(), by: BOT.into(), target: CAROL.into() }).unwrap();
    w.take();
    let cancel =
        OperationRoute { operation_context: Some("x1".into()), operation_callback_uri: Some("https://op/cb".into()) };
    assert_eq!(w.ca.begin_cancel_add("ccA", &inv2, cancel).unwrap(), CAROL);
    w.input(Input::CancelInvite { call_id: "call1".into(), by: BOT.into(), target: CAROL.into() }).unwrap();
    let outputs = w.take();
    let cancelled = outputs
        .iter()
        .find_map(|o| match o {
            CaOutput::Callback { event_type, callback_uri, data, .. }
                if event_type.ends_with("CancelAddParticipantSucceeded") =>
            {
                Some((callback_uri.clone(), data.clone()))
            }
            _ => None,
        })
        .expect("cancel succeeded");
    assert_eq!(cancelled.0, "https://op/cb", "operationCallbackUri is honoured");
    assert_eq!((&cancelled.1["invitationId"], &cancelled.1["operationContext"]), (&inv2.into(), &"x1".into()));

    // B transfers its place to carol; carol's app answers; B ends with TransferAccepted, CallDisconnected.
    w.ca.begin_transfer(
        "ccB",
        CAROL,
        None,
        OperationRoute { operation_context: Some("t1".into()), operation_callback_uri: None },
    )
    .unwrap();
    w.input(Input::Transfer { call_id: "call1".into(), by: AGENT.into(), target: CAROL.into() }).unwrap();
    let (carol_ctx, _) = w.incoming_context();
    w.callbacks();
    w.answer("ccD", &carol_ctx, "c4").unwrap();
    let cbs = w.callbacks();
    let b: Vec<_> = cbs.iter().filter(|(c, _, _)| c == "ccB").map(|(_, n, d)| (n.as_str(), d.clone())).collect();
    assert_eq!(b.iter().map(|(n, _)| *n).collect::<Vec<_>>(), vec!["CallTransferAccepted", "CallDisconnected"]);
    assert_eq!(b[0].1["transferTarget"]["rawId"], CAROL);
    assert_eq!(b[0].1["operationContext"], "t1");

    // A terminates: every remaining connection ends with CallDisconnected, nothing after it.
    w.input(Input::Terminate { call_id: "call1".into(), by: BOT.into() }).unwrap();
    let cbs = w.callbacks();
    for cc in ["ccA", "ccC", "ccD"] {
        let mine: Vec<&str> = cbs.iter().filter(|(c, _, _)| c == cc).map(|(_, n, _)| n.as_str()).collect();
        assert_eq!(mine.last(), Some(&"CallDisconnected"), "{cc}: {mine:?}");
        assert_eq!(mine.iter().filter(|n| **n == "CallDisconnected").count(), 1);
    }
    assert_eq!(w.ca.connection_count(), 0);
    assert_eq!(w.calls.call_count(), 0);
    assert_eq!(w.ca.tracked_calls(), 0, "nothing kept for an ended call");
}

#[test]
fn a_declined_create_call_fails_then_disconnects() {
    let mut w = World::new();
    w.create("ccA", "call1", &[ALICE]);
    w.take();
    w.input(Input::Decline { call_id: "call1".into(), user: ALICE.into() }).unwrap();
    let cbs = w.callbacks();
    assert_eq!(names(&cbs), vec![("ccA", "CreateCallFailed"), ("ccA", "CallDisconnected")]);
    assert_eq!(cbs[0].2["resultInformation"]["subCode"], 8538);
    assert_eq!(cbs[0].2["operationContext"], "c1");

    // `callRejectReason: busy` is what the caller's side hears.
    w.create("ccB", "call2", &[ALICE]);
    w.take();
    w.ca.record_rejection("call2", ALICE, Some("busy"));
    w.input(Input::Decline { call_id: "call2".into(), user: ALICE.into() }).unwrap();
    let cbs = w.callbacks();
    assert_eq!(names(&cbs), vec![("ccB", "CreateCallFailed"), ("ccB", "CallDisconnected")]);
    assert_eq!(
        (&cbs[0].2["resultInformation"]["code"], &cbs[0].2["resultInformation"]["subCode"]),
        (&486.into(), &8539.into())
    );
}

#[test]
fn remove_and_mute_update_the_roster() {
    let mut w = World::new();
    w.create("ccA", "call1", &[ALICE, AGENT]);
    w.take();
    w.input(Input::Accept { call_id: "call1".into(), callee: Party::new(ALICE, "A"), endpoint: "e1".into() }).unwrap();
    w.input(Input::Accept { call_id: "call1".into(), callee: Party::new(AGENT, "G"), endpoint: "e2".into() }).unwrap();
    w.callbacks();
    let muted = w.ca.mute("ccA", ALICE).unwrap();
    assert!(matches!(&muted[..], [CaOutput::Callback { data, .. }] if data["participants"][1]["isMuted"] == true));
    assert_eq!(w.ca.participant("ccA", ALICE).unwrap()["isMuted"], true);
    assert_eq!(w.ca.mute("ccA", "8:acs:r_nobody").unwrap_err().subcode, 8522);
    // Hold shows as isOnHold (one ParticipantsUpdated per change), unhold clears it.
    let held = w.ca.set_on_hold("ccA", AGENT, true).unwrap();
    assert!(matches!(&held[..], [CaOutput::Callback { data, .. }] if data["participants"][2]["isOnHold"] == true));
    assert!(w.ca.set_on_hold("ccA", AGENT, true).unwrap().is_empty(), "no change, no event");
    assert_eq!(w.ca.participant("ccA", AGENT).unwrap()["isOnHold"], true);
    assert_eq!(w.ca.set_on_hold("ccA", AGENT, false).unwrap().len(), 1);
    assert_eq!(w.ca.participant("ccA", AGENT).unwrap()["isOnHold"], false);
    assert_eq!(w.ca.set_on_hold("ccA", "8:acs:r_nobody", true).unwrap_err().subcode, 8522);

    w.ca.begin_remove(
        "ccA",
        AGENT,
        OperationRoute { operation_context: Some("r1".into()), operation_callback_uri: None },
    )
    .unwrap();
    w.input(Input::RemoveParticipant { call_id: "call1".into(), by: BOT.into(), target: AGENT.into() }).unwrap();
    let cbs = w.callbacks();
    assert_eq!(names(&cbs), vec![("ccA", "ParticipantsUpdated"), ("ccA", "RemoveParticipantSucceeded")]);
    assert_eq!(cbs[1].2["operationContext"], "r1");
    assert_eq!(w.ca.participants("ccA").unwrap().len(), 2);
    assert!(w.notified.contains(&(AGENT.to_string(), "call.ended".to_string())));
    let _ = CallEndReason::Removed;
    w.calls.assert_consistent();
}

#[test]
fn one_identity_may_hold_many_call_connections() {
    let mut w = World::new();
    for (i, caller) in [ALICE, AGENT].iter().enumerate() {
        w.input(Input::Place {
            call_id: format!("call{i}"),
            caller: Party::new(*caller, "x"),
            endpoint: format!("conn{i}"),
            targets: vec![BOT.into()],
        })
        .unwrap();
        let (ctx, _) = w.incoming_context();
        w.answer(&format!("cc{i}"), &ctx, "c").unwrap();
    }
    assert_eq!(w.ca.connection_count(), 2);
    assert_eq!(w.calls.call_count(), 2);
    w.calls.assert_consistent();
}

#[test]
fn an_added_participant_rings_for_the_invitation_timeout_then_fails_8587() {
    let mut w = World::new();
    w.create("ccA", "call1", &[ALICE]);
    w.input(Input::Accept { call_id: "call1".into(), callee: Party::new(ALICE, "A"), endpoint: "e1".into() }).unwrap();
    w.take();
    let route = OperationRoute { operation_context: Some("a1".into()), operation_callback_uri: None };
    let inv = w.ca.begin_add("ccA", AGENT, route).unwrap();
    w.input(Input::AddParticipantRinging {
        call_id: "call1".into(),
        by: BOT.into(),
        target: AGENT.into(),
        ring_timeout_secs: 5,
    })
    .unwrap();
    let (ctx, _) = w.incoming_context();
    w.now += 4_999;
    w.input(Input::Tick).unwrap();
    assert!(w.callbacks().is_empty(), "still ringing");
    w.now += 1;
    w.input(Input::Tick).unwrap();
    let cbs = w.callbacks();
    assert_eq!(names(&cbs), vec![("ccA", "AddParticipantFailed")]);
    assert_eq!((&cbs[0].2["invitationId"], &cbs[0].2["operationContext"]), (&inv.into(), &"a1".into()));
    assert_eq!(cbs[0].2["resultInformation"]["subCode"], 8587);
    let late = w.answer("ccB", &ctx, "late").unwrap_err();
    assert_eq!(late.subcode, 8523, "the context expired with the ring");
}

#[test]
fn move_a_participant_from_another_call_into_this_one() {
    let mut w = World::new();
    w.create("ccA", "call1", &[ALICE]);
    w.input(Input::Accept { call_id: "call1".into(), callee: Party::new(ALICE, "A"), endpoint: "e1".into() }).unwrap();
    w.create("ccB", "call2", &[AGENT]);
    w.input(Input::Accept { call_id: "call2".into(), callee: Party::new(AGENT, "G"), endpoint: "e2".into() }).unwrap();
    w.take();
    let route = OperationRoute { operation_context: Some("m1".into()), operation_callback_uri: None };
    w.ca.begin_move("ccB", &[ALICE.to_string()], "call1", route.clone()).unwrap();
    w.input(Input::MoveParticipant {
        from_call: "call1".into(),
        to_call: "call2".into(),
        by: BOT.into(),
        target: ALICE.into(),
    })
    .unwrap();
    let cbs = w.callbacks();
    let b: Vec<&str> = cbs.iter().filter(|(c, _, _)| c == "ccB").map(|(_, n, _)| n.as_str()).collect();
    assert_eq!(b, vec!["ParticipantsUpdated", "MoveParticipantSucceeded"]);
    let moved = cbs.iter().find(|(_, n, _)| n == "MoveParticipantSucceeded").unwrap();
    assert_eq!(
        (&moved.2["participant"]["rawId"], &moved.2["fromCall"], &moved.2["operationContext"]),
        (&ALICE.into(), &"call1".into(), &"m1".into())
    );
    let a: Vec<&str> = cbs.iter().filter(|(c, _, _)| c == "ccA").map(|(_, n, _)| n.as_str()).collect();
    assert_eq!(a.last(), Some(&"CallDisconnected"), "call1 is left with the bot alone: {a:?}");
    assert_eq!(w.ca.participants("ccB").unwrap().len(), 3);
    assert!(w.notified.contains(&(ALICE.to_string(), "call.connected".to_string())));
    w.calls.assert_consistent();

    // A refused move is reported as MoveParticipantFailed.
    w.ca.begin_move("ccB", &["8:acs:r_nobody".to_string()], "call9", route).unwrap();
    let refused = w
        .input(Input::MoveParticipant {
            from_call: "call9".into(),
            to_call: "call2".into(),
            by: BOT.into(),
            target: "8:acs:r_nobody".into(),
        })
        .unwrap_err();
    let why = CallAutomationError::new(404, 8522, refused.message);
    let failed = w.ca.move_failed("ccB", "8:acs:r_nobody", &why);
    assert!(matches!(&failed[..], [CaOutput::Callback { event_type, data, .. }]
        if event_type.ends_with("MoveParticipantFailed") && data["resultInformation"]["subCode"] == 8522 && data["fromCall"] == "call9"));
}

#[test]
fn an_inbound_phone_call_routed_to_call_automation_raises_incoming_call_for_the_number() {
    // The SIP side places the phone leg's call to the called number (`incoming_from_phone`).
    // Calling phone numbers stays off (the default): the number is palaver's own.
    let mut w = World::new();
    w.calls = CallManager::new(CallsConfig::default());
    let caller = Party::new("4:+14255550100", "Alice Phone");
    w.input(super::incoming_from_phone("pstn1", caller, "sip-call-id", "4:+14255550199")).unwrap();
    let (ctx, data) = w.incoming_context();
    assert_eq!(data["to"]["kind"], "phoneNumber");
    assert_eq!(data["to"]["phoneNumber"]["value"], "+14255550199");
    assert_eq!(data["from"]["rawId"], "4:+14255550100");
    assert_eq!(data["callerDisplayName"], "Alice Phone");
    w.answer("ccP", &ctx, "p1").unwrap();
    let cbs = w.callbacks();
    assert_eq!(names(&cbs)[0], ("ccP", "CallConnected"));
}

#[test]
fn create_call_to_a_call_queue_rings_its_members_and_the_call_rules_hold() {
    let mut w = World::new();
    w.calls = CallManager::new(CallsConfig {
        queues: vec![crate::domain::calls::CallQueueConfig {
            app_id: "support".into(),
            name: Some("Support".into()),
            members: vec!["8:orgid:agent-a".into(), "8:orgid:agent-b".into()],
            member_ring_timeout_secs: 10,
            hold_audio: None,
        }],
        ..CallsConfig::default()
    });
    w.create("ccQ", "call1", &["28:orgid:support"]);
    assert!(w.notified.contains(&("8:orgid:agent-a".to_string(), "call.incoming".to_string())));
    assert!(w.take().iter().all(|o| !matches!(o, CaOutput::Publish { .. })), "directory users get no IncomingCall");
    // The first member does not answer; the second does.
    w.now += 10_000;
    w.input(Input::Tick).unwrap();
    assert!(w.notified.contains(&("8:orgid:agent-b".to_string(), "call.incoming".to_string())));
    w.input(Input::Accept {
        call_id: "call1".into(),
        callee: Party::new("8:orgid:agent-b", "B"),
        endpoint: "e".into(),
    })
    .unwrap();
    let cbs = w.callbacks();
    assert_eq!(names(&cbs)[0], ("ccQ", "CallConnected"));

    // An ACS identity may not call a directory user directly (the seed's rule).
    let refused = w
        .calls
        .handle(
            w.now,
            Input::Place {
                call_id: "call2".into(),
                caller: Party::new(BOT, "Bot"),
                endpoint: leg_endpoint("ccX"),
                targets: vec!["8:orgid:agent-a".into()],
            },
        )
        .unwrap_err();
    assert_eq!(refused.code, palaver_core::ErrorCode::ExternalUserCannotCallDirectoryUser);
    let answered = crate::gateway::call_automation_error(refused);
    assert_eq!((answered.status, answered.subcode), (403, 8523));
}

#[test]
fn a_removal_or_cancel_the_call_refuses_is_reported_by_a_failed_callback() {
    let mut w = World::new();
    w.create("ccA", "call1", &[ALICE, AGENT]);
    w.take();
    w.input(Input::Accept { call_id: "call1".into(), callee: Party::new(ALICE, "A"), endpoint: "e1".into() }).unwrap();
    w.callbacks();
    let refused = CallAutomationError::new(400, 8585, "The call refused it.");

    let route = OperationRoute { operation_context: Some("r9".into()), operation_callback_uri: None };
    w.ca.begin_remove("ccA", ALICE, route).unwrap();
    let failed = w.ca.fail_remove("ccA", ALICE, &refused);
    let [CaOutput::Callback { event_type, data, .. }] = failed.as_slice() else { panic!("{failed:?}") };
    assert!(event_type.ends_with("RemoveParticipantFailed"), "{event_type}");
    assert_eq!((&data["operationContext"], &data["participant"]["rawId"]), (&"r9".into(), &ALICE.into()));
    assert_eq!(
        (&data["resultInformation"]["code"], &data["resultInformation"]["subCode"]),
        (&400.into(), &8585.into())
    );
    assert!(w.ca.fail_remove("ccA", ALICE, &refused).is_empty(), "reported once");

    const CAROL: &str = "8:acs:r_carol";
    let invitation = w.ca.begin_add("ccA", CAROL, OperationRoute::default()).unwrap();
    let cancel = OperationRoute { operation_context: Some("x9".into()), operation_callback_uri: None };
    w.ca.begin_cancel_add("ccA", &invitation, cancel).unwrap();
    let failed = w.ca.fail_cancel_add("ccA", &invitation, &refused);
    let [CaOutput::Callback { event_type, data, .. }] = failed.as_slice() else { panic!("{failed:?}") };
    assert!(event_type.ends_with("CancelAddParticipantFailed"), "{event_type}");
    assert_eq!((&data["invitationId"], &data["operationContext"]), (&invitation.clone().into(), &"x9".into()));
    // The invitation stands: it may be canceled again.
    let again = OperationRoute { operation_context: Some("x10".into()), operation_callback_uri: None };
    assert_eq!(w.ca.begin_cancel_add("ccA", &invitation, again).unwrap(), CAROL);
}

#[test]
fn a_ring_from_an_add_or_transfer_carries_its_custom_calling_context_to_the_client() {
    let mut m = CallAutomationMachine::new(ContextSigner::random());
    let custom = json!({"voipHeaders": {"x-ms-custom-ticket": "42"}, "sipHeaders": {}});
    m.set_custom_context("call1", ALICE, custom.clone());
    let ring = |call_id: &str| -> CallEvent {
        let frame = json!({"type": "call.incoming", "callId": call_id, "caller": {"rawId": BOT, "displayName": "Bot"},
            "participants": [], "ringTimeoutMs": 30_000});
        serde_json::from_value(frame).unwrap()
    };
    let CallEvent::Incoming { custom_context, .. } = m.with_custom_context(ALICE, ring("call1")) else { panic!() };
    assert_eq!(custom_context, Some(custom));
    // Only the rung target of that call gets it; other frames are unchanged.
    let CallEvent::Incoming { custom_context, .. } = m.with_custom_context(AGENT, ring("call1")) else { panic!() };
    assert_eq!(custom_context, None);
    let CallEvent::Incoming { custom_context, .. } = m.with_custom_context(ALICE, ring("call2")) else { panic!() };
    assert_eq!(custom_context, None);
    let ended = CallEvent::Ended { call_id: "call1".into(), reason: CallEndReason::HungUp };
    assert_eq!(m.with_custom_context(ALICE, ended.clone()), ended);
}

#[test]
fn a_phone_rung_by_a_create_add_or_transfer_carries_its_source_caller_id_number() {
    const PHONE: &str = "4:+14255550123";
    let mut m = CallAutomationMachine::new(ContextSigner::random());
    m.set_caller_id("call1", PHONE, "+14255550100".into());
    let ring = |call_id: &str| -> CallEvent {
        let frame = json!({"type": "call.incoming", "callId": call_id, "caller": {"rawId": BOT, "displayName": "Bot"},
            "participants": [], "ringTimeoutMs": 30_000});
        serde_json::from_value(frame).unwrap()
    };
    let CallEvent::Incoming { caller_id_number, .. } = m.with_custom_context(PHONE, ring("call1")) else { panic!() };
    assert_eq!(caller_id_number.as_deref(), Some("+14255550100"));
    let CallEvent::Incoming { caller_id_number, .. } = m.with_custom_context(ALICE, ring("call1")) else { panic!() };
    assert_eq!(caller_id_number, None, "only the phone it was given for");
    // Refused add/transfer, or the call over: forgotten.
    m.clear_custom_context("call1", PHONE);
    let CallEvent::Incoming { caller_id_number, .. } = m.with_custom_context(PHONE, ring("call1")) else { panic!() };
    assert_eq!(caller_id_number, None);
    m.set_caller_id("call1", PHONE, "+14255550100".into());
    m.call_ended("call1");
    let CallEvent::Incoming { caller_id_number, .. } = m.with_custom_context(PHONE, ring("call1")) else { panic!() };
    assert_eq!(caller_id_number, None);
}
