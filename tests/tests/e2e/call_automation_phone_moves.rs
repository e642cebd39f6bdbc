//! The contact-center hand-over with a real phone leg: a PSTN caller (SIPp as the carrier's
//! signaling, this test's UDP socket as the phone's RTP) calls a number routed to Call
//! Automation; the backend answers the `IncomingCall` in a 1:1 call connection, then moves
//! the caller (`participants:moveHere`) into the group call where an agent (a QUIC
//! participant) and the application already are. The trunk is not hung up (SIPp is still in
//! its call after the move and only sees palaver's BYE when the application removes the
//! phone at the end), `MoveParticipantSucceeded` names the phone, the group call's roster
//! (`ParticipantsUpdated`) lists it, and the agent and the phone hear each other's tones.
//!
//! - With one media worker both conversations share the worker's socket: the trunk
//!   transport moves in place and the carrier gets no re-INVITE (`call.xml` would fail on an
//!   INVITE it does not expect).
//! - With two workers the group call (created first) and the phone's call sit on different
//!   sockets: palaver re-INVITEs the carrier with the group call's socket
//!   (`call_reinvited.xml` answers it and logs the port) and the phone's RTP goes there.

use crate::call_automation::{Backend, answer_incoming, connect_to_group_call, heard_at, post, talker};
use crate::sip::{PHONE_HZ, finished, logged_after, phone_talks, server_rtp_port, server_rtp_port_logged_by, sipp_to};
use crate::sip_media::start_trunk;
use crate::support::tone_amplitude;
use axum::http::StatusCode;
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;

const APP_NUMBER: &str = "+14255550188";
const CALLER: &str = "4:+14255550199";
const AGENT_HZ: f32 = 440.0;

fn phone() -> serde_json::Value {
    json!({"rawId": CALLER, "phoneNumber": {"value": "+14255550199"}})
}

/// Runs the hand-over with `workers` media workers and the carrier `scenario`.
async fn hand_over(workers: usize, scenario: &str) {
    let backend = Backend::start().await;
    let before = format!("{}\n[media]\nworkers = {workers}\n", backend.incoming_call_config());
    let prefix = format!("palaver-e2e-ca-phone-move-{workers}");
    let (dir, server, sip) =
        start_trunk(&prefix, "codecs = [\"PCMU\"]\nsrtp = \"off\"", APP_NUMBER, "call-automation", &before).await;
    let (_, agent_token) = server.create_user_token(&["voip"]).await;

    // The agent's group call, with the application in it (created first: worker 0).
    let group = uuid::Uuid::new_v4().to_string();
    let mut agent = talker(&server, &agent_token, &group, AGENT_HZ, 0x0A6E_0001).await;
    let gc = connect_to_group_call(&server, &backend, &group, "gc").await;

    // The phone calls the application's number; the backend answers it 1:1.
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let rtp_port = socket.local_addr().unwrap().port().to_string();
    let extra =
        ["-m", "1", "-trace_logs", "-set", "rtp_port", &rtp_port, "-set", "hangup", "palaver"].map(String::from);
    let mut carrier = sipp_to(APP_NUMBER, sip, scenario, "127.0.0.1", &extra, dir.path());
    let incoming = backend.wait("incoming", "IncomingCall", |_| true).await;
    let one_to_one = answer_incoming(&server, &backend, &incoming, "bot").await;
    let prefix = scenario.trim_end_matches(".xml");
    let first_port = if prefix == "call" {
        server_rtp_port(dir.path()).await
    } else {
        server_rtp_port_logged_by(dir.path(), prefix).await
    };

    // The backend moves the caller into the agent's group call.
    let move_body = json!({"targetParticipants": [phone()], "fromCall": one_to_one, "operationContext": "to-agent"});
    let path = format!("/calling/callConnections/{gc}/participants:moveHere");
    let moved = post(&server, &path, &move_body, StatusCode::ACCEPTED).await;
    assert_eq!(moved["participants"][0]["identifier"]["rawId"], CALLER, "{moved}");
    let done = backend.wait("cb/gc", "MoveParticipantSucceeded", |e| e["data"]["participant"]["rawId"] == CALLER).await;
    assert_eq!(
        (&done["data"]["fromCall"], &done["data"]["operationContext"]),
        (&json!(one_to_one), &json!("to-agent"))
    );
    let roster = backend
        .wait("cb/gc", "ParticipantsUpdated", |e| {
            e["data"]["participants"].as_array().is_some_and(|ps| ps.iter().any(|p| p["identifier"]["rawId"] == CALLER))
        })
        .await;
    println!("group call roster after the move: {}", roster["data"]["participants"]);
    // The phone was the bot's only counterpart: the 1:1 connection is over, the trunk is not.
    backend.wait("cb/bot", "CallDisconnected", |_| true).await;
    assert!(carrier.try_wait().unwrap().is_none(), "the carrier's call must go on after the move (no BYE)");
    let port = if prefix == "call" {
        first_port
    } else {
        let line = logged_after(dir.path(), prefix, "REINVITE_RTP_PORT ").await;
        line.split_whitespace().next().unwrap().parse().expect("port")
    };
    println!("phone RTP to palaver port {first_port} before the move, {port} after ({workers} workers)");

    // The phone and the agent hear each other in the group call.
    let to: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let phone_side = tokio::spawn(async move { phone_talks(&socket, to, Duration::from_millis(2000)).await });
    tokio::time::sleep(Duration::from_millis(600)).await;
    let agent_hears_phone = heard_at(&mut agent, PHONE_HZ).await;
    let (phone_heard, packets) = phone_side.await.unwrap();
    let phone_hears_agent = tone_amplitude(&phone_heard[phone_heard.len() / 3..], AGENT_HZ);
    let phone_hears_itself = tone_amplitude(&phone_heard[phone_heard.len() / 3..], PHONE_HZ);
    println!(
        "after the move ({workers} workers): the agent hears the phone's {PHONE_HZ} Hz at {agent_hears_phone:.0}; \
         the phone ({packets} µ-law packets) hears the agent's {AGENT_HZ} Hz at {phone_hears_agent:.0} (itself {phone_hears_itself:.0})"
    );
    assert!(agent_hears_phone > 300.0, "the agent does not hear the moved phone ({agent_hears_phone:.0})");
    assert!(phone_hears_agent > 300.0, "the moved phone does not hear the agent ({phone_hears_agent:.0})");
    assert!(phone_hears_itself < phone_hears_agent / 5.0, "the phone hears itself");

    // The application removes the phone: now palaver hangs the trunk up (BYE).
    let remove = json!({"participantToRemove": phone(), "operationContext": "bye"});
    post(&server, &format!("/calling/callConnections/{gc}/participants:remove"), &remove, StatusCode::ACCEPTED).await;
    backend.wait("cb/gc", "RemoveParticipantSucceeded", |e| e["data"]["operationContext"] == "bye").await;
    finished(carrier, "a phone call moved into a group call").await;
    agent.client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_caller_is_moved_into_a_group_call_without_a_re_invite_and_talks_with_the_agent() {
    hand_over(1, "call.xml").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_caller_moved_to_a_group_call_on_another_socket_is_re_invited_there() {
    hand_over(2, "call_reinvited.xml").await;
}
