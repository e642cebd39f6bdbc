//! Call Automation moving and ringing real QUIC participants into a group call: a QUIC
//! caller in a 1:1 call with a bot identity (answered by the backend) is moved into a group
//! call the application is connected to (`participants:moveHere`), without ringing: its
//! `palaver-client` reads `call.moved`, then `joined`, attaches its media there, and a group
//! call participant hears its tone. Then a QUIC user rung into that group call by
//! `add_participant` (with a `customCallingContext`) reads the `call.incoming` invitation
//! through `QuicClient::next_call_event` and answers it by joining. The second test does the
//! same with the WebRTC test client (`WebRtcClient`): moved, then rung, declining and accepting.

use crate::call_automation::{Backend, answer_incoming, connect_to_group_call, heard_at, identifier, post, talker};
use crate::support::{FRAME, ToneEncoder, quic_address};
use axum::http::StatusCode;
use palaver_client::{CallEvent, ConnectOptions, JoinTarget, MediaTrack, QuicClient, ServerMessage};
use palaver_core::protocol::ClientMessage;
use palaver_e2e::{Server, ServerOptions, TempDir};
use serde_json::json;
use std::time::Duration;

const ALICE_HZ: f32 = 440.0;
const CAROL_HZ: f32 = 700.0;

async fn connect(server: &Server, token: &str) -> QuicClient {
    let ca_pem = std::fs::read_to_string(server.ca_file()).unwrap();
    let addr = quic_address(server, token).await;
    QuicClient::connect(&ConnectOptions::new(addr, "localhost", ca_pem), token).await.unwrap()
}

async fn next_call_event(client: &mut QuicClient) -> CallEvent {
    tokio::time::timeout(Duration::from_secs(10), client.next_call_event())
        .await
        .expect("a call event within 10 s")
        .expect("the connection is open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quic_caller_is_moved_into_a_group_call_and_a_quic_user_answers_a_ring_there() {
    let backend = Backend::start().await;
    let dir = TempDir::new("palaver-e2e-ca-move");
    let config = backend.incoming_call_config();
    let server = Server::start_in(dir.path(), ServerOptions { config_toml: Some(config), ..Default::default() }).await;
    let (alice_id, alice_token) = server.create_user_token(&["voip"]).await;
    let (carol_id, carol_token) = server.create_user_token(&["voip"]).await;
    let (dave_id, dave_token) = server.create_user_token(&["voip"]).await;
    let (bot_id, _) = server.create_user_token(&["voip"]).await;
    let group = uuid::Uuid::new_v4().to_string();
    let mut alice = talker(&server, &alice_token, &group, ALICE_HZ, 0x0A11_CE02).await;

    // The application sits in the group call.
    let gc = connect_to_group_call(&server, &backend, &group, "gc").await;

    // Carol (QUIC) calls the bot identity; the backend answers: a 1:1 call.
    let mut carol = connect(&server, &carol_token).await;
    let placed = carol.request(ClientMessage::CallPlace { targets: vec![bot_id.clone()] }).await.unwrap();
    let ServerMessage::CallPlaced { call_id, .. } = placed else { panic!("call.place: {placed:?}") };
    let incoming = backend.wait("incoming", "IncomingCall", |e| e["data"]["to"]["rawId"] == bot_id.as_str()).await;
    let one_to_one = answer_incoming(&server, &backend, &incoming, "bot").await;
    loop {
        if let CallEvent::Connected { call_id: connected, .. } = next_call_event(&mut carol).await {
            assert_eq!(connected, call_id);
            break;
        }
    }

    // The application moves Carol from the 1:1 call into the group call.
    let move_body = json!({"targetParticipants": [identifier(&carol_id)], "fromCall": one_to_one,
        "operationContext": "mv"});
    let moved = post(
        &server,
        &format!("/calling/callConnections/{gc}/participants:moveHere"),
        &move_body,
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(moved["fromCall"], one_to_one.as_str(), "{moved}");
    assert_eq!(moved["participants"][0]["identifier"]["rawId"], carol_id.as_str(), "{moved}");
    loop {
        match next_call_event(&mut carol).await {
            CallEvent::Moved { call_id: from, join } => {
                assert_eq!(from, call_id);
                assert_eq!(join, JoinTarget::GroupCall { group_id: group.clone() });
                break;
            }
            CallEvent::Incoming { .. } => panic!("a moved participant is not rung"),
            _ => {}
        }
    }
    let joined = loop {
        let event = tokio::time::timeout(Duration::from_secs(10), carol.next_event()).await.unwrap().unwrap();
        if let ServerMessage::Joined { snapshot, .. } = event {
            break snapshot;
        }
    };
    assert!(joined.participants.iter().any(|p| p.identifier.raw_id.as_deref() == Some(alice_id.as_str())));
    let done = backend
        .wait("cb/gc", "MoveParticipantSucceeded", |e| e["data"]["participant"]["rawId"] == carol_id.as_str())
        .await;
    assert_eq!((&done["data"]["fromCall"], &done["data"]["operationContext"]), (&json!(one_to_one), &json!("mv")));
    // Carol was the bot's only counterpart: its 1:1 connection is over.
    backend.wait("cb/bot", "CallDisconnected", |_| true).await;

    // Carol's media, attached in the group call, is heard there.
    let ssrc = 0x0CA7_0001;
    carol.attach_media(vec![MediaTrack::opus(ssrc)]).await.expect("media.attach in the group call");
    let mut tx = carol.rtp_sender(ssrc, 111);
    let talking = tokio::spawn(async move {
        let mut tone = ToneEncoder::new(CAROL_HZ, 4000.0);
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tick.tick().await;
            if tx.send(&tone.next_frame(), FRAME as u32, Some(18)).is_err() {
                return;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // What Alice heard before Carol talked is not the question.
    let carol_in_group = heard_at(&mut alice, CAROL_HZ).await;
    println!("alice hears the moved caller's {CAROL_HZ} Hz tone at amplitude {carol_in_group:.0}");
    assert!(carol_in_group > 300.0, "alice does not hear carol in the group call ({carol_in_group:.0})");
    talking.abort();

    // Dave (QUIC) is rung into the group call and answers through the client's call events.
    let mut dave = connect(&server, &dave_token).await;
    let add = json!({"participantToAdd": identifier(&dave_id), "operationContext": "add-dave",
        "customCallingContext": {"voipHeaders": {"x-ms-custom-ticket": "42"}}});
    post(&server, &format!("/calling/callConnections/{gc}/participants:add"), &add, StatusCode::ACCEPTED).await;
    let ring = next_call_event(&mut dave).await;
    let CallEvent::Incoming { join, custom_context, .. } = &ring else { panic!("expected call.incoming: {ring:?}") };
    assert_eq!(join.as_ref(), Some(&JoinTarget::GroupCall { group_id: group.clone() }));
    assert_eq!(custom_context.as_ref().unwrap()["voipHeaders"]["x-ms-custom-ticket"], "42", "{ring:?}");
    let dave_joined = dave.accept_call(&ring).await.expect("join").expect("an invitation is answered by joining");
    assert!(
        dave_joined.snapshot.participants.iter().any(|p| p.identifier.raw_id.as_deref() == Some(carol_id.as_str()))
    );
    backend.wait("cb/gc", "AddParticipantSucceeded", |e| e["data"]["operationContext"] == "add-dave").await;

    dave.close().await;
    carol.close().await;
    alice.client.close().await;
}

/// The same hand-over and ring with the WebRTC test client (`WebRtcClient`, WebSocket
/// signaling and a webrtc-rs peer connection): Erin calls the bot identity and is connected
/// (`call.connected` through [`WebRtcClient::next_call_event`]); moved into the group call
/// she reads `call.moved`, then `joined`, negotiates her media there and Alice hears her tone.
/// Frank is rung into the group call by `add_participant`: he declines the first ring
/// (`AddParticipantFailed`) and accepts the second by joining (`AddParticipantSucceeded`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webrtc_caller_is_moved_into_a_group_call_and_a_webrtc_user_declines_then_accepts_a_ring() {
    use palaver_client::webrtc::{MediaOptions, WebRtcClient, WebRtcOptions};
    const ERIN_HZ: f32 = 900.0;
    async fn next_webrtc_call_event(client: &mut WebRtcClient) -> CallEvent {
        tokio::time::timeout(Duration::from_secs(10), client.next_call_event())
            .await
            .expect("a call event within 10 s")
            .expect("the socket is open")
    }
    let backend = Backend::start().await;
    let dir = TempDir::new("palaver-e2e-ca-move-webrtc");
    let config = backend.incoming_call_config();
    let server = Server::start_in(dir.path(), ServerOptions { config_toml: Some(config), ..Default::default() }).await;
    let ca_pem = std::fs::read_to_string(server.ca_file()).unwrap();
    let (_, alice_token) = server.create_user_token(&["voip"]).await;
    let (erin_id, erin_token) = server.create_user_token(&["voip"]).await;
    let (frank_id, frank_token) = server.create_user_token(&["voip"]).await;
    let (bot_id, _) = server.create_user_token(&["voip"]).await;
    let group = uuid::Uuid::new_v4().to_string();
    let mut alice = talker(&server, &alice_token, &group, ALICE_HZ, 0x0A11_CE03).await;
    let gc = connect_to_group_call(&server, &backend, &group, "gc").await;

    // Erin (WebRTC) calls the bot; the backend answers.
    let options = WebRtcOptions::new(server.base_url(), &ca_pem);
    let mut erin = WebRtcClient::connect(&options, &erin_token).await.expect("Erin connects");
    let placed = erin.request(ClientMessage::CallPlace { targets: vec![bot_id.clone()] }).await.unwrap();
    let ServerMessage::CallPlaced { call_id, .. } = placed else { panic!("call.place: {placed:?}") };
    let incoming = backend.wait("incoming", "IncomingCall", |e| e["data"]["to"]["rawId"] == bot_id.as_str()).await;
    let one_to_one = answer_incoming(&server, &backend, &incoming, "bot").await;
    loop {
        if let CallEvent::Connected { call_id: connected, .. } = next_webrtc_call_event(&mut erin).await {
            assert_eq!(connected, call_id);
            break;
        }
    }

    // Moved into the group call: call.moved, then joined; her media is negotiated there.
    let move_body = json!({"targetParticipants": [identifier(&erin_id)], "fromCall": one_to_one});
    let path = format!("/calling/callConnections/{gc}/participants:moveHere");
    post(&server, &path, &move_body, StatusCode::ACCEPTED).await;
    loop {
        match next_webrtc_call_event(&mut erin).await {
            CallEvent::Moved { call_id: from, join } => {
                assert_eq!((from, join), (call_id.clone(), JoinTarget::GroupCall { group_id: group.clone() }));
                break;
            }
            CallEvent::Incoming { .. } => panic!("a moved participant is not rung"),
            _ => {}
        }
    }
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), erin.next_event()).await.unwrap().unwrap();
        if let ServerMessage::Joined { .. } = event {
            break;
        }
    }
    backend.wait("cb/gc", "MoveParticipantSucceeded", |e| e["data"]["participant"]["rawId"] == erin_id.as_str()).await;
    erin.start_media(MediaOptions::default()).await.expect("WebRTC media in the group call");
    let mut erin_tx = erin.audio_sender().expect("audio sender");
    let talking = tokio::spawn(async move {
        let mut tone = ToneEncoder::new(ERIN_HZ, 4000.0);
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tick.tick().await;
            if erin_tx.send(&tone.next_frame(), FRAME as u32, Some(18)).await.is_err() {
                return;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    let erin_in_group = heard_at(&mut alice, ERIN_HZ).await;
    println!("alice hears the moved WebRTC caller's {ERIN_HZ} Hz tone at amplitude {erin_in_group:.0}");
    assert!(erin_in_group > 300.0, "alice does not hear erin in the group call ({erin_in_group:.0})");
    talking.abort();

    // Frank (WebRTC) is rung into the group call: declines, then accepts by joining.
    let mut frank = WebRtcClient::connect(&options, &frank_token).await.expect("Frank connects");
    let add = json!({"participantToAdd": identifier(&frank_id), "operationContext": "add-frank-1"});
    post(&server, &format!("/calling/callConnections/{gc}/participants:add"), &add, StatusCode::ACCEPTED).await;
    let ring = next_webrtc_call_event(&mut frank).await;
    let CallEvent::Incoming { call_id: ring_id, .. } = &ring else { panic!("expected call.incoming: {ring:?}") };
    frank.decline_call(ring_id).await.expect("call.decline");
    backend.wait("cb/gc", "AddParticipantFailed", |e| e["data"]["operationContext"] == "add-frank-1").await;
    let add = json!({"participantToAdd": identifier(&frank_id), "operationContext": "add-frank-2"});
    post(&server, &format!("/calling/callConnections/{gc}/participants:add"), &add, StatusCode::ACCEPTED).await;
    let ring = loop {
        let event = next_webrtc_call_event(&mut frank).await;
        if matches!(event, CallEvent::Incoming { .. }) {
            break event;
        }
    };
    let joined = frank.accept_call(&ring).await.expect("join").expect("an invitation is answered by joining");
    assert!(joined.snapshot.participants.iter().any(|p| p.identifier.raw_id.as_deref() == Some(erin_id.as_str())));
    backend.wait("cb/gc", "AddParticipantSucceeded", |e| e["data"]["operationContext"] == "add-frank-2").await;

    frank.close().await;
    erin.close().await;
    alice.client.close().await;
}
