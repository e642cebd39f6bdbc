//! The Call Automation API end to end through the router and the call actor, with an events
//! port that records what it is given: bot-to-bot createCall, IncomingCall, answer (once),
//! callbacks in order, participants, add with a bad timeout, terminate, and a replay.

use crate::api::testing::{error_code, send, signed};
use crate::app::{AppParts, AppState, SignalingConfig};
use crate::store::Store;
use axum::http::StatusCode;
use palaver_core::events::{CallbackEvent, EventError, EventFuture, EventPublisher, SystemEvent};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
pub(super) struct Recorder {
    pub(super) published: Mutex<Vec<SystemEvent>>,
    pub(super) callbacks: Mutex<Vec<CallbackEvent>>,
}

impl EventPublisher for Recorder {
    fn publish(&self, event: SystemEvent) -> EventFuture<Result<(), EventError>> {
        self.published.lock().unwrap().push(event);
        Box::pin(std::future::ready(Ok(())))
    }
    fn callback(&self, event: CallbackEvent) -> EventFuture<Result<(), EventError>> {
        self.callbacks.lock().unwrap().push(event);
        Box::pin(std::future::ready(Ok(())))
    }
}

impl Recorder {
    /// Callback type names of `ccid` (without the `Microsoft.Communication.` prefix).
    pub(super) fn names(&self, ccid: &str) -> Vec<String> {
        self.callbacks
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.call_connection_id == ccid)
            .map(|c| c.event_type.trim_start_matches("Microsoft.Communication.").to_string())
            .collect()
    }
    pub(super) async fn wait_for(&self, what: impl Fn(&Self) -> bool) {
        for _ in 0..200 {
            if what(self) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out; callbacks: {:?}", self.callbacks.lock().unwrap());
    }
}

/// Remembers the billing sessions started: (participant raw id, endpoint type).
#[derive(Default)]
struct Sessions(Mutex<Vec<(String, palaver_core::EndpointType)>>);

impl palaver_core::SessionObserver for Sessions {
    fn session_started(&self, e: palaver_core::SessionStarted) {
        self.0.lock().unwrap().push((e.participant_raw_id, e.endpoint_type));
    }
    fn session_ended(&self, _e: palaver_core::SessionEnded) {}
}

pub(super) const V: &str = "api-version=2026-03-12";

#[tokio::test]
async fn bot_to_bot_call_through_the_api() {
    let recorder = Arc::new(Recorder::default());
    let sessions = Arc::new(Sessions::default());
    let parts = AppParts { events: recorder.clone(), sessions: sessions.clone(), ..Default::default() };
    let state = AppState::open(SignalingConfig::default(), Store::open_in_memory().unwrap(), parts).unwrap();
    let res = state.resource.resource_id.clone();
    let bot = format!("8:acs:{res}_bot");
    let agent = format!("8:acs:{res}_agent");
    let id = |raw: &str| json!({"rawId": raw, "communicationUser": {"id": raw}});

    let create = json!({"targets": [id(&agent)], "source": {"id": bot}, "operationContext": "c1",
        "callbackUri": "https://app.example/cb/A?token=x%20y"})
    .to_string();
    let mut req = signed(&state, "POST", &format!("/calling/callConnections?{V}"), &create);
    req.headers_mut().insert("repeatability-request-id", "11111111-1111-1111-1111-111111111111".parse().unwrap());
    let (status, a) = send(&state, req).await;
    assert_eq!(status, StatusCode::CREATED, "{a}");
    assert_eq!(a["callConnectionState"], "connecting");
    assert_eq!(a["callbackUri"], "https://app.example/cb/A?token=x%20y");
    assert_eq!(a["source"]["rawId"], bot.as_str());
    assert_eq!(a["targets"][0]["rawId"], agent.as_str());
    let cc_a = a["callConnectionId"].as_str().unwrap().to_string();

    // A replay with the same Repeatability-Request-ID answers the first body, rings nobody new.
    let mut again = signed(&state, "POST", &format!("/calling/callConnections?{V}"), &create);
    again.headers_mut().insert("repeatability-request-id", "11111111-1111-1111-1111-111111111111".parse().unwrap());
    let (status, replay) = send(&state, again).await;
    assert_eq!((status, &replay), (StatusCode::CREATED, &a));

    recorder.wait_for(|r| !r.published.lock().unwrap().is_empty()).await;
    let incoming = recorder.published.lock().unwrap()[0].clone();
    assert_eq!(incoming.event_type, "Microsoft.Communication.IncomingCall");
    assert_eq!(incoming.subject, format!("/caller/{bot}/recipient/{agent}"));
    assert_eq!(incoming.data["from"]["rawId"], bot.as_str());
    assert_eq!(recorder.published.lock().unwrap().len(), 1, "the replay rang nobody");
    let ctx = incoming.data["incomingCallContext"].as_str().unwrap().to_string();

    let answer =
        json!({"incomingCallContext": ctx, "callbackUri": "https://app.example/cb/B", "operationContext": "c2"})
            .to_string();
    let (status, b) =
        send(&state, signed(&state, "POST", &format!("/calling/callConnections:answer?{V}"), &answer)).await;
    assert_eq!(status, StatusCode::OK, "{b}");
    let cc_b = b["callConnectionId"].as_str().unwrap().to_string();
    assert_eq!(b["serverCallId"], a["serverCallId"]);
    assert_eq!(b["correlationId"], a["correlationId"]);
    let (status, body) =
        send(&state, signed(&state, "POST", &format!("/calling/callConnections:answer?{V}"), &answer)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "8519"), "{body}");
    let forged = json!({"incomingCallContext": "bogus.context", "callbackUri": "https://app/cb"}).to_string();
    let (status, body) =
        send(&state, signed(&state, "POST", &format!("/calling/callConnections:answer?{V}"), &forged)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "8523"), "{body}");

    recorder
        .wait_for(|r| {
            r.names(&cc_a).contains(&"CallConnected".into()) && r.names(&cc_b).contains(&"CallConnected".into())
        })
        .await;
    assert_eq!(recorder.names(&cc_a)[..2], ["CallConnected", "ParticipantsUpdated"]);
    let connected_a =
        recorder.callbacks.lock().unwrap().iter().find(|c| c.call_connection_id == cc_a).cloned().unwrap();
    assert_eq!(connected_a.data["operationContext"], "c1");
    assert_eq!(connected_a.callback_uri, "https://app.example/cb/A?token=x%20y");

    let billed = sessions.0.lock().unwrap().clone();
    assert_eq!(billed.len(), 2, "{billed:?}");
    assert!(
        billed.iter().all(|(_, t)| *t == palaver_core::EndpointType::Server),
        "both legs are server endpoints: {billed:?}"
    );
    let (status, got) = send(&state, signed(&state, "GET", &format!("/calling/callConnections/{cc_a}?{V}"), "")).await;
    assert_eq!((status, got["callConnectionState"].as_str()), (StatusCode::OK, Some("connected")));
    let (status, list) =
        send(&state, signed(&state, "GET", &format!("/calling/callConnections/{cc_a}/participants?{V}"), "")).await;
    assert_eq!(status, StatusCode::OK);
    let raw: Vec<&str> =
        list["value"].as_array().unwrap().iter().map(|p| p["identifier"]["rawId"].as_str().unwrap()).collect();
    assert_eq!(raw, vec![bot.as_str(), agent.as_str()]);
    assert!(list.get("nextLink").is_none(), "one page: {list}");
    // Pages of one: the first page names the next (the query kept, `skip` moved on).
    let (status, first) = send(
        &state,
        signed(&state, "GET", &format!("/calling/callConnections/{cc_a}/participants?maxPageSize=1&{V}"), ""),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first["value"].as_array().map(Vec::len), Some(1), "{first}");
    let next = first["nextLink"].as_str().expect("a nextLink while more remain").to_owned();
    assert!(next.starts_with(&format!("/calling/callConnections/{cc_a}/participants?skip=1&maxPageSize=1&")), "{next}");
    let (status, second) = send(&state, signed(&state, "GET", &next, "")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(second["value"][0]["identifier"]["rawId"].as_str(), Some(agent.as_str()), "{second}");
    assert!(second.get("nextLink").is_none(), "the last page: {second}");
    let encoded = agent.replace(':', "%3A");
    let (status, p) =
        send(&state, signed(&state, "GET", &format!("/calling/callConnections/{cc_a}/participants/{encoded}?{V}"), ""))
            .await;
    assert_eq!(
        (status, p["identifier"]["rawId"].as_str(), p["isMuted"].as_bool()),
        (StatusCode::OK, Some(agent.as_str()), Some(false))
    );

    let bad_add =
        json!({"participantToAdd": id(&format!("8:acs:{res}_carol")), "invitationTimeoutInSeconds": 500}).to_string();
    let (status, body) = send(
        &state,
        signed(&state, "POST", &format!("/calling/callConnections/{cc_a}/participants:add?{V}"), &bad_add),
    )
    .await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "8523"), "{body}");
    let phone = json!({"targets": [{"rawId": "4:+14255550123", "phoneNumber": {"value": "+14255550123"}}],
        "callbackUri": "https://app/cb"})
    .to_string();
    let (status, body) = send(&state, signed(&state, "POST", &format!("/calling/callConnections?{V}"), &phone)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "8523"), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("SIP trunk"));

    let (status, _) =
        send(&state, signed(&state, "POST", &format!("/calling/callConnections/{cc_a}:terminate?{V}"), "")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    recorder
        .wait_for(|r| {
            r.names(&cc_a).last().map(String::as_str) == Some("CallDisconnected")
                && r.names(&cc_b).last().map(String::as_str) == Some("CallDisconnected")
        })
        .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    for cc in [&cc_a, &cc_b] {
        let names = recorder.names(cc);
        assert_eq!(names.iter().filter(|n| *n == "CallDisconnected").count(), 1, "{names:?}");
        assert_eq!(names.last().map(String::as_str), Some("CallDisconnected"), "nothing after it: {names:?}");
    }
    let (status, body) = send(&state, signed(&state, "GET", &format!("/calling/callConnections/{cc_a}?{V}"), "")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "8522"));
    let (status, body) =
        send(&state, signed(&state, "POST", &format!("/calling/callConnections/{cc_b}:play?{V}"), "{}")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "8522"));
    let _: Value = body;
}

#[tokio::test]
async fn connect_to_a_group_call_then_hang_up() {
    let recorder = Arc::new(Recorder::default());
    let sessions = Arc::new(Sessions::default());
    let parts = AppParts { events: recorder.clone(), sessions: sessions.clone(), ..Default::default() };
    let state = AppState::open(SignalingConfig::default(), Store::open_in_memory().unwrap(), parts).unwrap();
    let group = uuid::Uuid::new_v4().to_string();
    let connect = json!({"callLocator": {"kind": "groupCallLocator", "groupCallId": group},
        "callbackUri": "https://app.example/cb", "operationContext": "g1"})
    .to_string();
    let (status, props) =
        send(&state, signed(&state, "POST", &format!("/calling/callConnections:connect?{V}"), &connect)).await;
    assert_eq!(status, StatusCode::OK, "{props}");
    let ccid = props["callConnectionId"].as_str().unwrap().to_string();
    recorder.wait_for(|r| r.names(&ccid).len() >= 2).await;
    assert_eq!(recorder.names(&ccid)[..2], ["CallConnected", "ParticipantsUpdated"]);
    let connected = recorder.callbacks.lock().unwrap()[0].clone();
    assert_eq!(connected.data["operationContext"], "g1");
    let app = format!("8:acs:{}_callautomation", state.resource.resource_id);
    let (status, list) =
        send(&state, signed(&state, "GET", &format!("/calling/callConnections/{ccid}/participants?{V}"), "")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["value"][0]["identifier"]["rawId"], app.as_str());
    assert_eq!(state.gateway.live_conversations(), 1);
    assert_eq!(
        *sessions.0.lock().unwrap(),
        vec![(app.clone(), palaver_core::EndpointType::Server)],
        "billed as a server endpoint"
    );

    // add rings the user into the group call (nobody answers here); cancel ends the ring.
    let id = |raw: &str| json!({"rawId": raw, "communicationUser": {"id": raw}});
    let add_path = format!("/calling/callConnections/{ccid}/participants:add?{V}");
    let add = json!({"participantToAdd": id("8:acs:x_y"), "operationContext": "ga1"}).to_string();
    let (status, body) = send(&state, signed(&state, "POST", &add_path, &add)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let invitation = body["invitationId"].as_str().unwrap().to_string();
    let (status, body) = send(&state, signed(&state, "POST", &add_path, &add)).await;
    assert_eq!(status, StatusCode::CONFLICT, "already ringing: {body}");
    let cancel = json!({"invitationId": invitation, "operationContext": "gc1"}).to_string();
    let cancel_path = format!("/calling/callConnections/{ccid}/participants:cancelAddParticipant?{V}");
    let (status, body) = send(&state, signed(&state, "POST", &cancel_path, &cancel)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    recorder.wait_for(|r| r.names(&ccid).contains(&"CancelAddParticipantSucceeded".to_string())).await;
    let canceled = callback(&recorder, &ccid, "CancelAddParticipantSucceeded");
    assert_eq!(
        (canceled["operationContext"].as_str(), canceled["invitationId"].as_str()),
        (Some("gc1"), Some(&*invitation))
    );
    let (status, body) = send(&state, signed(&state, "POST", &cancel_path, &cancel)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "8522"), "no longer pending: {body}");
    // Unanswered within its ring time: AddParticipantFailed.
    let add = json!({"participantToAdd": id("8:acs:x_y"), "operationContext": "ga2", "invitationTimeoutInSeconds": 1})
        .to_string();
    let (status, body) = send(&state, signed(&state, "POST", &add_path, &add)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    for _ in 0..3 {
        if !recorder.names(&ccid).contains(&"AddParticipantFailed".to_string()) {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    recorder.wait_for(|r| r.names(&ccid).contains(&"AddParticipantFailed".to_string())).await;
    let failed = callback(&recorder, &ccid, "AddParticipantFailed");
    assert_eq!(
        (failed["operationContext"].as_str(), failed["participant"]["rawId"].as_str()),
        (Some("ga2"), Some("8:acs:x_y"))
    );
    // The seed's rules: an ACS identity is not in a call with a directory user; no queues here.
    let orgid =
        json!({"participantToAdd": {"rawId": "8:orgid:d1", "microsoftTeamsUser": {"userId": "d1"}}}).to_string();
    let (status, body) = send(&state, signed(&state, "POST", &add_path, &orgid)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "8523"), "{body}");
    let queue = json!({"participantToAdd": {"rawId": "28:orgid:q1", "microsoftTeamsApp": {"appId": "q1"}}}).to_string();
    let (status, body) = send(&state, signed(&state, "POST", &add_path, &queue)).await;
    assert_ne!(status, StatusCode::ACCEPTED, "{body}");

    let (status, _) = send(&state, signed(&state, "DELETE", &format!("/calling/callConnections/{ccid}?{V}"), "")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    recorder.wait_for(|r| r.names(&ccid).last().map(String::as_str) == Some("CallDisconnected")).await;
    let bad = json!({"callLocator": {"kind": "groupCallLocator", "groupCallId": "not-a-uuid"}, "callbackUri": "https://a/cb"})
        .to_string();
    let (status, body) =
        send(&state, signed(&state, "POST", &format!("/calling/callConnections:connect?{V}"), &bad)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "8523"));
    let room = json!({"callLocator": {"kind": "roomCallLocator", "roomId": "99000000000000001"}, "callbackUri": "https://a/cb"})
        .to_string();
    let (status, body) =
        send(&state, signed(&state, "POST", &format!("/calling/callConnections:connect?{V}"), &room)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "8522"), "{body}");
}

/// The data of `ccid`'s first callback named `name`.
pub(super) fn callback(recorder: &Recorder, ccid: &str, name: &str) -> Value {
    let callbacks = recorder.callbacks.lock().unwrap();
    let found = callbacks.iter().find(|c| c.call_connection_id == ccid && c.event_type.ends_with(name));
    found.map(|c| c.data.clone()).unwrap_or(Value::Null)
}
