//! `add_participant` / `transfer_call_to_participant` of a phone number (`4:+E.164`) in a
//! group call and a room joined with `connect`, through the router, with this test as the SIP
//! gateway (it takes the phone events and answers with what `crates/sip` calls: `phone_fail`,
//! `phone_accept`, then seats the answered leg with `phone_join_moved` as `crate::moved`
//! does). Busy (486 → `AddParticipantFailed` 486/560486 with `sipDetails`), cancel (`call.ended`
//! to the dial task → CANCEL, `CancelAddParticipantSucceeded`), the ring time over (CANCEL,
//! 408/8587, not the earlier 486), answered (`Moved` into the conversation,
//! `AddParticipantSucceeded`, the roster, a PSTN usage session with the trunk leg), a transfer
//! declined by the phone (`CallTransferFailed` 603/560603), and the refusals: no SIP gateway,
//! a room without `pstnDialOutEnabled`.

use super::flow_tests::{Recorder, V, callback};
use crate::api::testing::{error_code, send, signed};
use crate::app::{AppParts, AppState, SignalingConfig};
use crate::domain::calls::{CallEndReason, CallEvent, Party};
use crate::gateway::PhoneNotice;
use crate::store::Store;
use axum::http::StatusCode;
use palaver_core::protocol::JoinTarget;
use palaver_core::{EndpointType, PhoneDirection, PhoneLeg};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;

const PHONE: &str = "4:+14255550123";
const OWNED: &str = "+14255550100";

/// The billing sessions started: (raw id, endpoint type, trunk leg).
#[derive(Default)]
struct Sessions(Mutex<Vec<(String, EndpointType, Option<PhoneLeg>)>>);

impl palaver_core::SessionObserver for Sessions {
    fn session_started(&self, e: palaver_core::SessionStarted) {
        self.0.lock().unwrap().push((e.participant_raw_id, e.endpoint_type, e.phone));
    }
    fn session_ended(&self, _e: palaver_core::SessionEnded) {}
}

fn app(sip_gateway: bool) -> (AppState, Arc<Recorder>, Arc<Sessions>, Option<UnboundedReceiver<PhoneNotice>>) {
    let recorder = Arc::new(Recorder::default());
    let sessions = Arc::new(Sessions::default());
    let parts = AppParts { events: recorder.clone(), sessions: sessions.clone(), ..Default::default() };
    let mut config = SignalingConfig::default();
    config.calls.allow_phone_targets = true;
    let state = AppState::open(config, Store::open_in_memory().unwrap(), parts).unwrap();
    // What the SIP gateway does at start: take the phone events, name its numbers.
    let events = sip_gateway.then(|| state.gateway.take_phone_events().unwrap());
    state.gateway.set_owned_phone_numbers([OWNED.to_string()]);
    (state, recorder, sessions, events)
}

async fn connect(state: &AppState, recorder: &Recorder, locator: Value) -> String {
    let body = json!({"callLocator": locator, "callbackUri": "https://app.example/cb"}).to_string();
    let (status, props) =
        send(state, signed(state, "POST", &format!("/calling/callConnections:connect?{V}"), &body)).await;
    assert_eq!(status, StatusCode::OK, "{props}");
    let ccid = props["callConnectionId"].as_str().unwrap().to_string();
    recorder.wait_for(|r| r.names(&ccid).contains(&"CallConnected".to_string())).await;
    ccid
}

fn phone_id() -> Value {
    json!({"rawId": PHONE, "phoneNumber": {"value": "+14255550123"}})
}

async fn add(state: &AppState, ccid: &str, body: Value) -> (StatusCode, Value) {
    let path = format!("/calling/callConnections/{ccid}/participants:add?{V}");
    send(state, signed(state, "POST", &path, &body.to_string())).await
}

async fn next_notice(events: &mut UnboundedReceiver<PhoneNotice>) -> PhoneNotice {
    tokio::time::timeout(Duration::from_secs(5), events.recv()).await.expect("a phone event").expect("open")
}

/// The `n`th callback `name` of `ccid` (waits for it).
async fn nth(recorder: &Recorder, ccid: &str, name: &str, n: usize) -> Value {
    recorder.wait_for(|r| r.names(ccid).iter().filter(|e| *e == name).count() > n).await;
    let callbacks = recorder.callbacks.lock().unwrap();
    let event_type = format!("Microsoft.Communication.{name}");
    let mut found = callbacks.iter().filter(|c| c.call_connection_id == ccid && c.event_type == event_type);
    found.nth(n).map(|c| c.data.clone()).unwrap()
}

#[tokio::test]
async fn a_phone_number_is_dialled_into_a_group_call_busy_canceled_timed_out_and_answered() {
    let (state, recorder, sessions, events) = app(true);
    let mut sip = events.unwrap();
    let group = uuid::Uuid::new_v4().to_string();
    let ccid = connect(&state, &recorder, json!({"kind": "groupCallLocator", "groupCallId": group})).await;

    // Busy: the ring goes to the SIP gateway (the invitation id as the call id, the group call
    // to join, the application's caller id); 486 from the trunk is AddParticipantFailed.
    let body = json!({"participantToAdd": phone_id(), "operationContext": "p1",
        "sourceCallerIdNumber": {"value": OWNED}});
    let (status, added) = add(&state, &ccid, body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{added}");
    let invitation = added["invitationId"].as_str().unwrap().to_string();
    let ring = next_notice(&mut sip).await;
    assert_eq!(ring.phone, PHONE);
    match &ring.event {
        CallEvent::Incoming { call_id, join, caller_id_number, .. } => {
            assert_eq!(call_id, &invitation);
            assert_eq!(join, &Some(JoinTarget::GroupCall { group_id: group.clone() }));
            assert_eq!(caller_id_number.as_deref(), Some(OWNED));
        }
        other => panic!("not a ring: {other:?}"),
    }
    state.gateway.phone_fail(&invitation, PHONE, Some(486)).await.unwrap();
    let failed = nth(&recorder, &ccid, "AddParticipantFailed", 0).await;
    assert_eq!((&failed["operationContext"], &failed["invitationId"]), (&json!("p1"), &json!(invitation)));
    assert_eq!(failed["participant"]["rawId"], PHONE);
    let result = &failed["resultInformation"];
    assert_eq!((&result["code"], &result["subCode"]), (&json!(486), &json!(560486)), "{failed}");
    assert_eq!(result["sipDetails"], json!({"code": 486, "message": "Busy Here"}));

    // Cancel while it rings: the dial task is told (`call.ended`: it sends CANCEL).
    let (status, added) = add(&state, &ccid, json!({"participantToAdd": phone_id(), "operationContext": "p2"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{added}");
    let invitation = added["invitationId"].as_str().unwrap().to_string();
    let ring = next_notice(&mut sip).await;
    assert!(matches!(&ring.event, CallEvent::Incoming { caller_id_number: None, .. }), "{ring:?}");
    let cancel = json!({"invitationId": invitation, "operationContext": "c2"}).to_string();
    let cancel_path = format!("/calling/callConnections/{ccid}/participants:cancelAddParticipant?{V}");
    let (status, body) = send(&state, signed(&state, "POST", &cancel_path, &cancel)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let ended = next_notice(&mut sip).await;
    assert_eq!(ended.event, CallEvent::Ended { call_id: invitation.clone(), reason: CallEndReason::Cancelled });
    let canceled = nth(&recorder, &ccid, "CancelAddParticipantSucceeded", 0).await;
    assert_eq!((&canceled["operationContext"], &canceled["invitationId"]), (&json!("c2"), &json!(invitation)));
    // The trunk's 487 after the CANCEL changes nothing (the dial task reports no failure).

    // The ring time over: CANCEL, AddParticipantFailed 408/8587 (not the earlier 486).
    let body = json!({"participantToAdd": phone_id(), "operationContext": "p3", "invitationTimeoutInSeconds": 1});
    let (status, added) = add(&state, &ccid, body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{added}");
    let invitation = added["invitationId"].as_str().unwrap().to_string();
    next_notice(&mut sip).await;
    let ended = next_notice(&mut sip).await;
    assert_eq!(ended.event, CallEvent::Ended { call_id: invitation.clone(), reason: CallEndReason::NoAnswer });
    let failed = nth(&recorder, &ccid, "AddParticipantFailed", 1).await;
    assert_eq!(failed["operationContext"], "p3");
    let result = &failed["resultInformation"];
    assert_eq!((&result["code"], &result["subCode"]), (&json!(408), &json!(8587)), "{failed}");

    // Answered: the leg is told to move into the group call; seated there (as the SIP
    // gateway's `crate::moved` does) it is in the roster, AddParticipantSucceeded follows,
    // and its minutes are a PSTN session with its trunk leg.
    let (status, added) = add(&state, &ccid, json!({"participantToAdd": phone_id(), "operationContext": "p4"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{added}");
    let invitation = added["invitationId"].as_str().unwrap().to_string();
    next_notice(&mut sip).await;
    state.gateway.phone_accept(&invitation, Party::new(PHONE, "+14255550123"), "dialog-1").await.unwrap();
    let moved = next_notice(&mut sip).await;
    let join = match moved.event {
        CallEvent::Moved { call_id, join } => {
            assert_eq!(call_id, invitation);
            join
        }
        other => panic!("not a move: {other:?}"),
    };
    // Answered: a cancel now is CancelAddParticipantFailed, the ring time no longer applies.
    let cancel = json!({"invitationId": invitation, "operationContext": "c4"}).to_string();
    let (status, body) = send(&state, signed(&state, "POST", &cancel_path, &cancel)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let refused = nth(&recorder, &ccid, "CancelAddParticipantFailed", 0).await;
    assert_eq!(refused["operationContext"], "c4");
    let leg = PhoneLeg { number: OWNED.into(), trunk: "carrier".into(), direction: PhoneDirection::Outbound };
    let participant = uuid::Uuid::new_v4().to_string();
    state.gateway.name_phone_leg(&participant, leg.clone());
    let seat = state.gateway.phone_join_moved(&join, PHONE, "+14255550123", participant).await.unwrap();
    let succeeded = nth(&recorder, &ccid, "AddParticipantSucceeded", 0).await;
    assert_eq!((&succeeded["operationContext"], &succeeded["invitationId"]), (&json!("p4"), &json!(invitation)));
    assert_eq!(succeeded["participant"]["rawId"], PHONE);
    let names = recorder.names(&ccid);
    let at = names.iter().position(|n| n == "AddParticipantSucceeded").unwrap();
    assert_eq!(names[at - 1], "ParticipantsUpdated", "the roster first: {names:?}");
    let list_path = format!("/calling/callConnections/{ccid}/participants?{V}");
    let (_, list) = send(&state, signed(&state, "GET", &list_path, "")).await;
    assert!(list["value"].as_array().unwrap().iter().any(|p| p["identifier"]["rawId"] == PHONE), "{list}");
    let billed = sessions.0.lock().unwrap().clone();
    assert!(billed.contains(&(PHONE.to_string(), EndpointType::Pstn, Some(leg))), "{billed:?}");
    assert_eq!(failed_count(&recorder, &ccid), 2, "the answered add did not also fail");
    // Already there: a second add is refused.
    let (status, body) = add(&state, &ccid, json!({"participantToAdd": phone_id()})).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "8523"), "{body}");

    // A transfer replacing the phone with another number the trunk declines: CallTransferFailed
    // with the SIP status.
    let other = json!({"rawId": "4:+14255550124", "phoneNumber": {"value": "+14255550124"}});
    let transfer = json!({"targetParticipant": other, "transferee": phone_id(), "operationContext": "t1"}).to_string();
    let path = format!("/calling/callConnections/{ccid}:transferToParticipant?{V}");
    let (status, body) = send(&state, signed(&state, "POST", &path, &transfer)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let ring = next_notice(&mut sip).await;
    assert_eq!(ring.phone, "4:+14255550124");
    state.gateway.phone_fail(ring.event.call_id(), "4:+14255550124", Some(603)).await.unwrap();
    let failed = callback_when(&recorder, &ccid, "CallTransferFailed").await;
    assert_eq!(failed["operationContext"], "t1");
    let result = &failed["resultInformation"];
    assert_eq!((&result["code"], &result["subCode"]), (&json!(603), &json!(560603)), "{failed}");

    // The phone hangs up (BYE): it leaves the roster.
    state.gateway.phone_leave_meeting(&seat).await;
    recorder
        .wait_for(|r| {
            let callbacks = r.callbacks.lock().unwrap();
            let last = callbacks.iter().rev().find(|c| c.event_type.ends_with("ParticipantsUpdated"));
            last.is_some_and(|c| {
                !c.data["participants"].as_array().unwrap().iter().any(|p| p["identifier"]["rawId"] == PHONE)
            })
        })
        .await;
}

fn failed_count(recorder: &Recorder, ccid: &str) -> usize {
    recorder.names(ccid).iter().filter(|n| *n == "AddParticipantFailed").count()
}

async fn callback_when(recorder: &Recorder, ccid: &str, name: &str) -> Value {
    recorder.wait_for(|r| r.names(ccid).iter().any(|n| n == name)).await;
    callback(recorder, ccid, name)
}

#[tokio::test]
async fn a_phone_number_is_refused_without_a_sip_gateway_and_in_a_room_that_does_not_dial_out() {
    let (state, recorder, _, _) = app(false);
    let group = uuid::Uuid::new_v4().to_string();
    let ccid = connect(&state, &recorder, json!({"kind": "groupCallLocator", "groupCallId": group})).await;
    let (status, body) = add(&state, &ccid, json!({"participantToAdd": phone_id()})).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "8523"), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("SIP"), "{body}");

    let (state, recorder, _, events) = app(true);
    let mut sip = events.unwrap();
    let member = format!("8:acs:{}_m1", state.resource.resource_id);
    let create = |pstn: bool| {
        json!({"participants": {member.clone(): {"role": "Attendee"}}, "pstnDialOutEnabled": pstn}).to_string()
    };
    let mut rooms = Vec::new();
    for pstn in [false, true] {
        let (status, room) = send(&state, signed(&state, "POST", "/rooms?api-version=2025-03-13", &create(pstn))).await;
        assert_eq!(status, StatusCode::CREATED, "{room}");
        rooms.push(room["id"].as_str().unwrap().to_string());
    }
    let closed = connect(&state, &recorder, json!({"kind": "roomCallLocator", "roomId": rooms[0]})).await;
    let (status, body) = add(&state, &closed, json!({"participantToAdd": phone_id()})).await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "8523"), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("pstnDialOutEnabled"), "{body}");
    // A room that dials out rings the number (it joins as an attendee, never on the list).
    let open = connect(&state, &recorder, json!({"kind": "roomCallLocator", "roomId": rooms[1]})).await;
    let (status, body) = add(&state, &open, json!({"participantToAdd": phone_id()})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let ring = next_notice(&mut sip).await;
    assert!(
        matches!(&ring.event, CallEvent::Incoming { join: Some(JoinTarget::Room { room_id }), .. } if *room_id == rooms[1]),
        "{ring:?}"
    );
}

/// The connection leaves (`DELETE`) while the phone rings, and the trunk's 200 comes right
/// after, before the conversation has even seen the connection go: the ring is over at the
/// hang-up (`call.ended` to the dial task: CANCEL), so the late answer is refused (the dial
/// task hangs the phone up) and the phone is never moved into the group call nor billed.
#[tokio::test]
async fn a_phone_answering_after_its_connection_hung_up_is_not_moved_into_the_call() {
    let (state, recorder, sessions, events) = app(true);
    let mut sip = events.unwrap();
    let group = uuid::Uuid::new_v4().to_string();
    let ccid = connect(&state, &recorder, json!({"kind": "groupCallLocator", "groupCallId": group})).await;
    let (status, added) = add(&state, &ccid, json!({"participantToAdd": phone_id(), "operationContext": "p"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{added}");
    let invitation = added["invitationId"].as_str().unwrap().to_string();
    next_notice(&mut sip).await;

    state.gateway.ca_hang_up(&ccid, false).await.unwrap();
    let answered = state.gateway.phone_accept(&invitation, Party::new(PHONE, "+14255550123"), "dialog-9").await;
    assert!(answered.is_err(), "a phone answering after its connection left is refused (the dial task sends BYE)");
    let ended = next_notice(&mut sip).await;
    assert_eq!(ended.event, CallEvent::Ended { call_id: invitation, reason: CallEndReason::Cancelled });
    recorder.wait_for(|r| r.names(&ccid).contains(&"CallDisconnected".to_string())).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(sip.try_recv().is_err(), "nothing more for the phone (no move)");
    let names = recorder.names(&ccid);
    assert_eq!(names.last().map(String::as_str), Some("CallDisconnected"), "{names:?}");
    assert!(!names.iter().any(|n| n.starts_with("AddParticipant")), "{names:?}");
    assert!(!sessions.0.lock().unwrap().iter().any(|(raw, ..)| raw == PHONE), "the phone is not billed");
}
