//! Edge cases of phone numbers driven by Call Automation, with a real trunk leg (SIPp as the
//! carrier, this test's UDP socket as the phone's RTP, a QUIC agent in the group call):
//!
//! - a phone added to a group call (its trunk leg moved from the ring's conference into the
//!   group call's) puts palaver on hold and resumes: the moved leg is held and resumed in
//!   place (`uas_answer_rtp_hold.xml`: UPDATE `sendonly`, then re-INVITE `sendrecv`), so the
//!   agent stops hearing the phone, nothing is sent to it, and after the resume both hear
//!   each other again on the same mix stream (same SSRC);
//! - the call connection that added a phone leaves before the phone answers: a ringing phone
//!   gets CANCEL (`uas_cancel.xml`), and one that had not even rung (no provisional response,
//!   so no CANCEL may be sent) is hung up right after its 200 (`uas_answer_late.xml`); it
//!   never joins the group call, no `PSTN` minutes are billed, and the application hears
//!   nothing after `CallDisconnected`.

use crate::call_automation::{Backend, Talker, connect_to_group_call, heard_at, post, talker};
use crate::call_automation_phone_adds::{AGENT_HZ, OWNED, PHONE, phone_id, start};
use crate::sip::{PHONE_HZ, finished, free_udp_port, logged_after, scenario, uas_from};
use crate::support::tone_amplitude;
use axum::http::StatusCode;
use palaver_e2e::Server;
use palaver_sfu::mixer::g711::{G711_FRAME_BYTES, Law};
use reqwest::Method;
use serde_json::json;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

/// One RTP packet the phone received: when, its SSRC, its µ-law audio (decoded, 48 kHz).
struct Received {
    at: Instant,
    ssrc: u32,
    audio: Vec<i16>,
}

/// The phone sends its tone from `socket` to `to` for `duration` and keeps what it receives.
async fn phone_records(socket: UdpSocket, to: SocketAddr, duration: Duration) -> Vec<Received> {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let (mut seq, mut timestamp, mut phase) = (1000u16, 8000u32, 0f32);
    let step = std::f32::consts::TAU * PHONE_HZ / 8000.0;
    let until = Instant::now() + duration;
    let (mut received, mut buf) = (Vec::new(), [0u8; 1500]);
    while Instant::now() < until {
        tick.tick().await;
        let mut packet = vec![0x80, 0];
        packet.extend_from_slice(&seq.to_be_bytes());
        packet.extend_from_slice(&timestamp.to_be_bytes());
        packet.extend_from_slice(&0x00C0_FFEE_u32.to_be_bytes());
        for _ in 0..G711_FRAME_BYTES {
            packet.push(Law::Mu.encode((6000.0 * phase.sin()) as i16));
            phase = (phase + step) % std::f32::consts::TAU;
        }
        socket.send_to(&packet, to).await.expect("send RTP");
        (seq, timestamp) = (seq.wrapping_add(1), timestamp.wrapping_add(G711_FRAME_BYTES as u32));
        while let Ok(Ok((n, _))) = tokio::time::timeout(Duration::from_millis(1), socket.recv_from(&mut buf)).await {
            if n > 12 && buf[0] >> 6 == 2 && (buf[1] & 0x7f) == 0 {
                let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
                let audio = buf[12..n].iter().flat_map(|&b| std::iter::repeat_n(Law::Mu.decode(b), 6)).collect();
                received.push(Received { at: Instant::now(), ssrc, audio });
            }
        }
    }
    received
}

/// The `PSTN` usage records of the phone now.
async fn pstn_count(server: &Server) -> usize {
    let day = |d: i64| (chrono::Utc::now() + chrono::Duration::days(d)).format("%Y-%m-%d").to_string();
    let path = format!("/usage?from={}&to={}", day(-1), day(2));
    let (status, body) = server.signed(Method::GET, &path, "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["value"].as_array().unwrap().iter().filter(|r| r["UsageType"] == "PSTN" && r["UserIdA"] == PHONE).count()
}

/// Whether the agent's client saw the phone in the group call's roster (every server message
/// it got so far, then for `more`).
async fn agent_saw_the_phone(agent: &mut Talker, more: Duration) -> bool {
    let until = tokio::time::Instant::now() + more;
    let mut seen = false;
    while let Ok(Some(message)) = tokio::time::timeout_at(until, agent.client.next_event()).await {
        seen |= serde_json::to_string(&message).unwrap().contains(PHONE);
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_added_to_a_group_call_holds_and_resumes_on_its_moved_leg() {
    let backend = Backend::start().await;
    let carrier_port = free_udp_port();
    let (dir, server) = start("palaver-e2e-ca-phone-hold", 1, &backend, carrier_port).await;
    let (_, agent_token) = server.create_user_token(&["voip"]).await;
    let group = uuid::Uuid::new_v4().to_string();
    let mut agent = talker(&server, &agent_token, &group, AGENT_HZ, 0x0A6E_0005).await;
    let gc = connect_to_group_call(&server, &backend, &group, "gc").await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let rtp_port = socket.local_addr().unwrap().port().to_string();
    let extra = ["-trace_logs", "-set", "rtp_port", &rtp_port];
    let carrier = uas_from(dir.path(), carrier_port, &scenario("uas_answer_rtp_hold.xml"), &extra);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let add = json!({"participantToAdd": phone_id(), "operationContext": "dial",
        "sourceCallerIdNumber": {"value": OWNED}});
    post(&server, &format!("/calling/callConnections/{gc}/participants:add"), &add, StatusCode::ACCEPTED).await;
    backend.wait("cb/gc", "AddParticipantSucceeded", |e| e["data"]["participant"]["rawId"] == PHONE).await;
    let port: u16 = logged_after(dir.path(), "uas_answer_rtp_hold", "SERVER_RTP_PORT ")
        .await
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let to: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let phone = tokio::spawn(phone_records(socket, to, Duration::from_millis(7500)));

    tokio::time::sleep(Duration::from_millis(800)).await;
    let before_hold = heard_at(&mut agent, PHONE_HZ).await;
    logged_after(dir.path(), "uas_answer_rtp_hold", "HELD a=recvonly").await;
    let held_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let on_hold = heard_at(&mut agent, PHONE_HZ).await;
    logged_after(dir.path(), "uas_answer_rtp_hold", "RESUMED a=sendrecv").await;
    let resumed_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after_resume = heard_at(&mut agent, PHONE_HZ).await;
    let received = phone.await.unwrap();

    let before: Vec<&Received> = received.iter().filter(|r| r.at < held_at).collect();
    let during = received.iter().filter(|r| r.at > held_at + Duration::from_millis(300) && r.at < resumed_at).count();
    let after: Vec<&Received> = received.iter().filter(|r| r.at > resumed_at + Duration::from_millis(300)).collect();
    let tone = |packets: &[&Received]| {
        let audio: Vec<i16> = packets.iter().flat_map(|r| r.audio.iter().copied()).collect();
        tone_amplitude(&audio, AGENT_HZ)
    };
    let ssrcs = |packets: &[&Received]| {
        let mut s: Vec<u32> = packets.iter().map(|r| r.ssrc).collect();
        s.dedup();
        s
    };
    println!(
        "the agent hears the phone at {before_hold:.0} before the hold, {on_hold:.0} on hold, {after_resume:.0} after; \
         the phone got {} packets (SSRCs {:?}, the agent at {:.0}) before, {during} on hold, {} after (SSRCs {:?}, \
         the agent at {:.0})",
        before.len(),
        ssrcs(&before),
        tone(&before),
        after.len(),
        ssrcs(&after),
        tone(&after)
    );
    assert!(before_hold > 300.0, "the agent does not hear the phone before the hold ({before_hold:.0})");
    assert!(on_hold < before_hold / 10.0, "the agent hears the phone on hold ({on_hold:.0})");
    assert!(after_resume > 300.0, "the agent does not hear the resumed phone ({after_resume:.0})");
    assert!(before.len() >= 50 && tone(&before) > 300.0, "the phone does not hear the agent before the hold");
    assert!(during <= 3, "the mix went on to the phone on hold ({during} packets)");
    assert!(after.len() >= 20 && tone(&after) > 300.0, "the phone does not hear the agent after the resume");
    assert_eq!(
        ssrcs(&after),
        vec![*ssrcs(&before).last().unwrap()],
        "the resumed leg goes on with the same mix stream (held and resumed in place)"
    );

    let remove = json!({"participantToRemove": phone_id(), "operationContext": "bye"});
    post(&server, &format!("/calling/callConnections/{gc}/participants:remove"), &remove, StatusCode::ACCEPTED).await;
    finished(carrier, "a moved phone leg held and resumed, hung up by palaver").await;
    agent.client.close().await;
}

/// The connection `gc` that dialled the phone leaves the group call (`DELETE`, a hang-up)
/// while the carrier runs `scenario_file`: the phone never joins (the agent's client never
/// sees it in the roster), nothing is billed, and `gc` hears nothing after `CallDisconnected`.
async fn connection_leaves_before_the_answer(prefix: &str, scenario_file: &str, marker: &str) {
    let backend = Backend::start().await;
    let carrier_port = free_udp_port();
    let (dir, server) = start(prefix, 1, &backend, carrier_port).await;
    let (_, agent_token) = server.create_user_token(&["voip"]).await;
    let group = uuid::Uuid::new_v4().to_string();
    let mut agent = talker(&server, &agent_token, &group, AGENT_HZ, 0x0A6E_0006).await;
    let gc = connect_to_group_call(&server, &backend, &group, "gc").await;
    let rtp_port = free_udp_port().to_string();
    let mut extra = vec!["-trace_logs"];
    if scenario_file == "uas_answer_late.xml" {
        extra.extend(["-set", "rtp_port", &rtp_port]);
    }
    let carrier = uas_from(dir.path(), carrier_port, &scenario(scenario_file), &extra);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let add = json!({"participantToAdd": phone_id(), "operationContext": "dial"});
    post(&server, &format!("/calling/callConnections/{gc}/participants:add"), &add, StatusCode::ACCEPTED).await;
    logged_after(dir.path(), scenario_file.trim_end_matches(".xml"), marker).await;
    let (status, body) =
        server.signed(Method::DELETE, &format!("/calling/callConnections/{gc}?api-version=2025-06-15"), "").await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    backend.wait("cb/gc", "CallDisconnected", |_| true).await;
    finished(carrier, scenario_file).await;
    // Long enough for a joining phone to show up.
    assert!(
        !agent_saw_the_phone(&mut agent, Duration::from_secs(2)).await,
        "the phone joined after its connection left"
    );
    assert_eq!(pstn_count(&server).await, 0, "a phone that never joined is billed");
    let kinds = backend.types("cb/gc");
    println!("the leaving connection heard: {kinds:?}");
    assert_eq!(kinds.last().map(String::as_str), Some("Microsoft.Communication.CallDisconnected"), "{kinds:?}");
    assert!(!kinds.iter().any(|k| k.ends_with("AddParticipantSucceeded")), "{kinds:?}");
    agent.client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ringing_phone_is_cancelled_when_its_connection_leaves() {
    connection_leaves_before_the_answer("palaver-e2e-ca-phone-left-ringing", "uas_cancel.xml", "INVITE ").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_answering_after_its_connection_left_is_hung_up_and_never_joins() {
    connection_leaves_before_the_answer("palaver-e2e-ca-phone-left-answered", "uas_answer_late.xml", "INVITED ").await;
}

/// An ACS user (a QUIC client) calls the application's identity; the backend answers 1:1 and
/// transfers the call to a phone number (`transfer_call_to_participant(PhoneNumberIdentifier)`,
/// no transferee: the connection hands its own place over). The trunk rings the number
/// (`uas_answer_rtp.xml`), the connection gets `CallTransferAccepted` then
/// `CallDisconnected`, the caller and the phone hear each other, the caller's hang-up sends
/// palaver's BYE, and the phone's minutes are one `PSTN` record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_to_one_call_is_transferred_to_a_phone_number() {
    use crate::call_automation::answer_incoming;
    use crate::support::{FRAME, ToneEncoder, collect, decode, quic_address};
    use palaver_client::{ConnectOptions, MediaTrack, QuicClient};
    use palaver_core::protocol::{ClientMessage, ServerMessage};

    let backend = Backend::start().await;
    let carrier_port = free_udp_port();
    let (dir, server) = start("palaver-e2e-ca-phone-transfer-1to1", 1, &backend, carrier_port).await;
    let (_, caller_token) = server.create_user_token(&["voip"]).await;
    let (bot_id, _) = server.create_user_token(&["voip"]).await;
    let ca_pem = std::fs::read_to_string(server.ca_file()).unwrap();
    let addr = quic_address(&server, &caller_token).await;
    let mut caller = QuicClient::connect(&ConnectOptions::new(addr, "localhost", ca_pem), &caller_token).await.unwrap();
    let placed = caller.request(ClientMessage::CallPlace { targets: vec![bot_id.clone()] }).await.unwrap();
    let ServerMessage::CallPlaced { call_id, .. } = placed else { panic!("call.place: {placed:?}") };
    let incoming = backend.wait("incoming", "IncomingCall", |e| e["data"]["to"]["rawId"] == bot_id.as_str()).await;
    let ccid = answer_incoming(&server, &backend, &incoming, "bot").await;
    let ssrc = 0x0CA1_0015;
    caller.attach_call_media(&call_id, vec![MediaTrack::opus(ssrc)]).await.expect("media.attach");
    let mut heard = caller.take_rtp_receiver().unwrap();
    let mut tx = caller.rtp_sender(ssrc, 111);
    let talking = tokio::spawn(async move {
        let mut tone = ToneEncoder::new(AGENT_HZ, 4000.0);
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tick.tick().await;
            if tx.send(&tone.next_frame(), FRAME as u32, Some(18)).is_err() {
                return;
            }
        }
    });

    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let rtp_port = socket.local_addr().unwrap().port().to_string();
    let extra = ["-trace_logs", "-set", "rtp_port", &rtp_port];
    let carrier = uas_from(dir.path(), carrier_port, &scenario("uas_answer_rtp.xml"), &extra);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let transfer = json!({"targetParticipant": phone_id(), "operationContext": "to-phone",
        "sourceCallerIdNumber": {"value": OWNED}});
    post(&server, &format!("/calling/callConnections/{ccid}:transferToParticipant"), &transfer, StatusCode::ACCEPTED)
        .await;
    let accepted = backend.wait("cb/bot", "CallTransferAccepted", |_| true).await;
    assert_eq!(
        (&accepted["data"]["operationContext"], &accepted["data"]["transferTarget"]["rawId"]),
        (&json!("to-phone"), &json!(PHONE)),
        "{accepted}"
    );
    backend.wait("cb/bot", "CallDisconnected", |_| true).await;
    let kinds = backend.types("cb/bot");
    assert_eq!(
        kinds[kinds.len() - 2..],
        ["Microsoft.Communication.CallTransferAccepted", "Microsoft.Communication.CallDisconnected"],
        "{kinds:?}"
    );

    let port: u16 = logged_after(dir.path(), "uas_answer_rtp", "SERVER_RTP_PORT ")
        .await
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let to: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let phone = tokio::spawn(phone_records(socket, to, Duration::from_millis(2500)));
    tokio::time::sleep(Duration::from_millis(800)).await;
    while heard.try_recv().is_ok() {}
    let caller_heard = decode(&collect(&mut heard, Instant::now() + Duration::from_millis(1200)).await);
    let caller_hears_phone = tone_amplitude(&caller_heard, PHONE_HZ);
    let received = phone.await.unwrap();
    let tail: Vec<i16> = received[received.len() / 3..].iter().flat_map(|r| r.audio.iter().copied()).collect();
    let (phone_hears_caller, itself) = (tone_amplitude(&tail, AGENT_HZ), tone_amplitude(&tail, PHONE_HZ));
    println!(
        "after the transfer the caller hears the phone at {caller_hears_phone:.0}; the phone ({} packets) hears the \
         caller at {phone_hears_caller:.0} (itself {itself:.0}); callbacks {kinds:?}",
        received.len()
    );
    assert!(caller_hears_phone > 300.0, "the caller does not hear the phone ({caller_hears_phone:.0})");
    assert!(phone_hears_caller > 300.0, "the phone does not hear the caller ({phone_hears_caller:.0})");

    // The caller hangs up: palaver's BYE to the trunk.
    talking.abort();
    caller.request(ClientMessage::CallHangUp { call_id }).await.expect("call.hangUp");
    finished(carrier, "a phone a 1:1 call was transferred to, hung up by the caller").await;
    let rows = crate::call_automation_phone_adds::pstn_records(&server, 1).await;
    assert_eq!(rows.len(), 1, "one PSTN record: {rows:?}");
    assert_eq!((&rows[0]["Direction"], &rows[0]["PhoneNumber"]), (&json!("outbound"), &json!(OWNED)), "{rows:?}");
    caller.close().await;
}
