//! The SIP trunk gateway's signaling against the real binary, with SIPp as the carrier (the
//! set-up helpers are `sip.rs`'s): a call over TCP in each direction (the user and the phone
//! hear each other's tones; palaver's BYE goes back over TCP) and keep-alives to a TCP
//! trunk, UPDATE (RFC 3311: early
//! refresh and offer, session refresh, hold and resume, on a call the trunk placed and on one
//! palaver placed), palaver answering a trunk's digest challenge (401 and 407) on an
//! INVITE that also carries a Call Automation `customCallingContext`'s `X-` and
//! `User-To-User` headers, the allow-list (an INVITE from an unknown address is dropped
//! unanswered and counted; from a trunk's address it rings the user), a phone call the
//! user transfers to another user, who then talks with the phone, and early UPDATEs with
//! offers (491 on a call palaver placed before its answer, 488 after a reliable 183).

use crate::signaling::connect;
use crate::sip::{
    NUMBER, PHONE_HZ, USER, event_receiver, finished, free_udp_port, packets_across_hold, phone_talks, scenario,
    server_rtp_port, server_rtp_port_logged_by, sipp, start_with, uas_from, user_answers, user_answers_with_tone,
};
use crate::support::{assert_hears, tone_amplitude};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

/// The user a phone call is transferred to.
const SECOND_USER: &str = "0b000000-0000-4000-8000-0000000005b3";
/// The owned number routed to the second user (a REFER's target).
const SECOND_NUMBER: &str = "+14255550101";
/// The tone the second user sends.
const SECOND_USER_HZ: f32 = 700.0;
const API: &str = "api-version=2025-05-15";

/// `[sip]` lines that put a trunk first (so calls out go to it): `name`, on `carrier_port`,
/// with more keys (`keys`). `allow_from` is 127.0.0.1 unless `keys` says otherwise.
fn first_trunk(name: &str, carrier_port: u16, keys: &str) -> String {
    let allow = if keys.contains("allow_from") { "" } else { "allow_from = [\"127.0.0.1\"]\n" };
    format!("\n[[sip.trunks]]\nname = \"{name}\"\naddress = \"127.0.0.1:{carrier_port}\"\n{allow}{keys}\n")
}

/// Waits until a SIPp log in `dir` holds `marker`.
async fn logged(dir: &Path, marker: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = std::fs::read_dir(dir).unwrap().flatten().any(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            name.ends_with("_logs.log") && std::fs::read_to_string(e.path()).unwrap_or_default().contains(marker)
        });
        if seen {
            return;
        }
        assert!(Instant::now() < deadline, "SIPp never logged {marker}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_over_tcp_both_ways_are_heard_and_hung_up_over_tcp() {
    let carrier_port = free_udp_port();
    let trunk = first_trunk("tcp-carrier", carrier_port, "transport = \"tcp\"");
    let (dir, server, sip) = start_with("palaver-e2e-sip-tcp", carrier_port, 0, &trunk).await;
    let token = server.directory_user_token(USER, "Uma User").await;
    let mut ws = connect(&server, &token).await;
    // The carrier calls over TCP (SIPp `-t t1`: one connection); its Contact says
    // `transport=TCP`, so palaver's BYE goes over TCP as well.
    let phone = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let rtp_port = phone.local_addr().unwrap().port().to_string();
    let extra = ["-t", "t1", "-m", "1", "-trace_logs", "-set", "rtp_port", &rtp_port, "-set", "hangup", "palaver"];
    let carrier = sipp(sip, "call.xml", "127.0.0.1", &extra.map(String::from), dir.path());
    let call_id = ws.recv_type("call.incoming").await["callId"].as_str().unwrap().to_owned();
    let user = user_answers(&server, &token, &call_id, Duration::from_secs(3));
    let phone_side = async {
        let port = server_rtp_port(dir.path()).await;
        phone_talks(&phone, SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(3)).await
    };
    let ((client, user_heard), (phone_heard, phone_packets)) = tokio::join!(user, phone_side);
    assert_hears("the directory user (TCP call)", &user_heard, PHONE_HZ, crate::sip::USER_HZ, 1000.0);
    let tail = &phone_heard[phone_heard.len() / 3..];
    let (other, own) = (tone_amplitude(tail, crate::sip::USER_HZ), tone_amplitude(tail, PHONE_HZ));
    println!("TCP call: the phone got {phone_packets} packets; 440 Hz amplitude {other:.0}, own {own:.0}");
    assert!(other > 1000.0 && own < other / 10.0, "the phone does not hear the user ({other:.0}, own {own:.0})");
    ws.send(serde_json::json!({"type":"call.hangUp","callId":call_id})).await;
    finished(carrier, "an inbound call over TCP, BYE from palaver over TCP").await;
    client.close().await;

    // palaver calls out through the TCP trunk: INVITE, ACK and BYE on one TCP connection.
    let called = uas_from(dir.path(), carrier_port, &scenario("uas_answer.xml"), &["-t", "t1"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    ws.send(serde_json::json!({"type":"call.place","targets":["4:+14255550123"]})).await;
    let call_id = ws.recv_type("call.placed").await["callId"].as_str().unwrap().to_owned();
    let connected = ws.recv_type("call.connected").await;
    assert_eq!(connected["callId"], call_id.as_str(), "{connected}");
    ws.send(serde_json::json!({"type":"call.hangUp","callId":call_id})).await;
    finished(called, "a call out through a TCP trunk").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalives_reach_a_tcp_trunk_over_tcp() {
    // Every second palaver sends OPTIONS to each trunk: the TCP trunk's come over TCP (SIPp
    // `-t t1` listens on TCP only; the UDP trunk on the same port number gets nothing).
    let carrier_port = free_udp_port();
    let trunk = first_trunk("tcp-carrier", carrier_port, "transport = \"tcp\"");
    let (dir, _server, _sip) = start_with("palaver-e2e-sip-tcp-options", carrier_port, 1, &trunk).await;
    let carrier = uas_from(dir.path(), carrier_port, &scenario("options_uas.xml"), &["-t", "t1"]);
    finished(carrier, "an OPTIONS keep-alive over TCP").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_refreshes_holds_and_resumes_calls_in_both_directions() {
    let carrier_port = free_udp_port();
    let (dir, server, sip) = crate::sip::start("palaver-e2e-sip-update", carrier_port, 0).await;
    let token = server.directory_user_token(USER, "Uma User").await;
    let mut ws = connect(&server, &token).await;
    // The trunk's call: two UPDATEs while it rings (refresh 200, offer 500 + Retry-After),
    // then after the answer a refresh, hold and resume by UPDATE.
    let phone = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let rtp_port = phone.local_addr().unwrap().port().to_string();
    let extra = ["-m", "1", "-trace_logs", "-set", "rtp_port", &rtp_port];
    let carrier = sipp(sip, "update.xml", "127.0.0.1", &extra.map(String::from), dir.path());
    let call_id = ws.recv_type("call.incoming").await["callId"].as_str().unwrap().to_owned();
    logged(dir.path(), "EARLY_UPDATES_DONE").await;
    ws.send(serde_json::json!({"type":"call.accept","callId":call_id})).await;
    let (before, held, resumed) = packets_across_hold(&phone, dir.path()).await;
    println!("UPDATE: {before} packets before hold, {held} on hold, {resumed} in 1 s after resume");
    assert!(before >= 25, "the mix reached the phone before the hold ({before})");
    assert!(held <= 5, "the mix kept flowing on hold ({held})");
    assert!(resumed >= 25, "the mix did not come back after resume ({resumed})");
    finished(carrier, "UPDATE in the early dialog, refresh, hold and resume").await;
    assert_eq!(ws.recv_type("call.ended").await["callId"], call_id.as_str());

    // A call palaver placed: the carrier holds it with UPDATE, resumes with re-INVITE and
    // refreshes with UPDATE (each was answered 501 before: the dialled leg ignored them).
    let called = uas_from(dir.path(), carrier_port, &scenario("uas_update.xml"), &["-trace_logs"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    ws.send(serde_json::json!({"type":"call.place","targets":["4:+14255550123"]})).await;
    let call_id = ws.recv_type("call.placed").await["callId"].as_str().unwrap().to_owned();
    ws.recv_type("call.connected").await;
    logged(dir.path(), "DIALLED CALL REFRESHED").await;
    ws.send(serde_json::json!({"type":"call.hangUp","callId":call_id})).await;
    finished(called, "the carrier's UPDATE and re-INVITE on a call palaver placed").await;
}

/// `uas_auth.xml` with its placeholders filled for a 401 or a 407 challenge.
fn challenging_carrier(dir: &Path, port: u16, proxy: bool, from_number: &str) -> tokio::process::Child {
    let template = std::fs::read_to_string(scenario("uas_auth.xml")).expect("uas_auth.xml");
    let (status, challenge, credentials, unverified) = if proxy {
        // SIPp's verifyauth reads only `Authorization`: the 407 round checks the header.
        ("407 Proxy Authentication Required", "Proxy-Authenticate", "Proxy-Authorization", "good")
    } else {
        ("401 Unauthorized", "WWW-Authenticate", "Authorization", "bad")
    };
    let text = template
        .replace("CHALLENGE_STATUS", status)
        .replace("CHALLENGE_HEADER", challenge)
        .replace("CREDENTIALS_HEADER", credentials)
        .replace("UNVERIFIED", unverified)
        .replace("FROM_NUMBER", &from_number.replace('+', "[+]"));
    let file: PathBuf = dir.join(format!("uas_auth_{}.xml", &status[..3]));
    std::fs::write(&file, text).unwrap();
    uas_from(dir, port, &file, &["-trace_logs"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn palaver_answers_the_trunks_digest_challenge_on_an_invite_with_custom_headers() {
    // The trunk palaver dials first has credentials: its 401/407 challenges are answered
    // with them (rsipstack's client digest, MD5). Inbound requests from 127.0.0.1 still
    // belong to the `carrier` trunk (no credentials): this one only allows 127.0.0.5.
    let carrier_port = free_udp_port();
    let keys = "allow_from = [\"127.0.0.5\"]\nusername = \"palaver\"\npassword = \"s3cret\"";
    let mut trunk = first_trunk("challenging", carrier_port, keys);
    trunk.push_str(&format!(
        "\n[[phone_numbers]]\nnumber = \"{SECOND_NUMBER}\"\nroute = \"user:8:orgid:{SECOND_USER}\"\n"
    ));
    let (dir, server, _sip) = start_with("palaver-e2e-sip-digest", carrier_port, 0, &trunk).await;
    let (hook_port, events) = event_receiver().await;
    // Call Automation calls a user (an ACS identity, as the application's own users are),
    // who answers.
    let (callee, token) = server.create_user_token(&["voip"]).await;
    let mut ws = connect(&server, &token).await;
    let (bot, _) = server.create_user_token(&["voip"]).await;
    let create = serde_json::json!({
        "targets": [{"rawId": callee, "communicationUser": {"id": callee}}],
        "source": {"id": bot},
        "callbackUri": format!("http://127.0.0.1:{hook_port}/callbacks"),
    });
    let (status, created) =
        server.signed(reqwest::Method::POST, &format!("/calling/callConnections?{API}"), &create.to_string()).await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{created}");
    let ccid = created["callConnectionId"].as_str().expect("callConnectionId").to_owned();
    let call_id = ws.recv_type("call.incoming").await["callId"].as_str().unwrap().to_owned();
    ws.send(serde_json::json!({"type":"call.accept","callId":call_id})).await;
    ws.recv_type("call.connected").await;
    // It adds a phone with customCallingContext SIP headers: the carrier challenges (401,
    // then 407 on a second add), checks the credentials and the headers on both INVITEs.
    let phone = serde_json::json!({"rawId": "4:+14255550123", "phoneNumber": {"value": "+14255550123"}});
    // `sourceCallerIdNumber` must be one of the server's numbers.
    let path = format!("/calling/callConnections/{ccid}/participants:add?{API}");
    for (number, why) in [("+19995550000", "is not a phone number of this resource"), ("42", "E.164")] {
        let add = serde_json::json!({"participantToAdd": phone, "sourceCallerIdNumber": {"value": number}});
        let (status, body) = server.signed(reqwest::Method::POST, &path, &add.to_string()).await;
        assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains(why)), "{body}");
    }
    // The first add presents the trunk's policy (the lowest owned number), the second the
    // application's `sourceCallerIdNumber`.
    for proxy in [false, true] {
        let from_number = if proxy { SECOND_NUMBER } else { NUMBER };
        let carrier = challenging_carrier(dir.path(), carrier_port, proxy, from_number);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut add = serde_json::json!({
            "participantToAdd": phone,
            "operationContext": if proxy { "proxy" } else { "www" },
            "customCallingContext": {"sipHeaders": {
                "X-MS-Custom-Ticket": "42", "User-To-User": "3d2a;encoding=hex", "Via": "SIP/2.0/UDP forged"}},
        });
        if proxy {
            add["sourceCallerIdNumber"] = serde_json::json!({"value": SECOND_NUMBER});
        }
        let path = format!("/calling/callConnections/{ccid}/participants:add?{API}");
        let (status, body) = server.signed(reqwest::Method::POST, &path, &add.to_string()).await;
        assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{body}");
        let deadline = Instant::now() + Duration::from_secs(15);
        let result = loop {
            let found = events
                .lock()
                .unwrap()
                .iter()
                .find(|e| {
                    e["data"]["operationContext"] == if proxy { "proxy" } else { "www" }
                        && e["type"].as_str().is_some_and(|t| t.contains("AddParticipant"))
                })
                .cloned();
            if let Some(event) = found {
                break event;
            }
            assert!(Instant::now() < deadline, "no AddParticipant result (407: {proxy})");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(result["type"].as_str().unwrap().ends_with("AddParticipantSucceeded"), "{result}");
        let remove = serde_json::json!({"participantToRemove": phone});
        let path = format!("/calling/callConnections/{ccid}/participants:remove?{API}");
        let (status, body) = server.signed(reqwest::Method::POST, &path, &remove.to_string()).await;
        assert!(status.is_success(), "{status} {body}");
        finished(carrier, if proxy { "a 407 challenge answered" } else { "a 401 challenge answered" }).await;
    }
    let log = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with("_logs.log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect::<String>();
    println!("{}", log.lines().filter(|l| l.contains("INVITE")).collect::<Vec<_>>().join("\n"));
    assert!(log.contains("Authorization: Digest username=\"palaver\""), "{log}");
    assert!(log.contains("Proxy-Authorization: Digest username=\"palaver\""), "{log}");
    assert!(log.contains("digest verified: true"), "the 401 round's digest was checked: {log}");
    let path = format!("/calling/callConnections/{ccid}?{API}");
    let (status, body) = server.signed(reqwest::Method::DELETE, &path, "").await;
    assert!(status.is_success(), "{status} {body}");
}

/// `palaver_sip_requests_dropped_total{reason="unknown_source"}` on `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_updates_with_offers_get_491_before_the_answer_and_488_after_a_reliable_one() {
    let carrier_port = free_udp_port();
    let trunk = first_trunk("ringing-carrier", carrier_port, "ringback = \"us\"");
    let (dir, server, sip) = start_with("palaver-e2e-sip-early-update", carrier_port, 0, &trunk).await;
    let token = server.directory_user_token(USER, "Uma User").await;
    let mut ws = connect(&server, &token).await;
    // The carrier UPDATEs with an offer a call palaver placed, before answering it: palaver's
    // INVITE offer is still unanswered, so 491 (RFC 3311 §5.2); the call then connects.
    let called = uas_from(dir.path(), carrier_port, &scenario("uas_early_update.xml"), &["-trace_logs"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    ws.send(serde_json::json!({"type":"call.place","targets":["4:+14255550123"]})).await;
    let call_id = ws.recv_type("call.placed").await["callId"].as_str().unwrap().to_owned();
    let connected = ws.recv_type("call.connected").await;
    assert_eq!(connected["callId"], call_id.as_str(), "{connected}");
    logged(dir.path(), "EARLY_UPDATE_491").await;
    ws.send(serde_json::json!({"type":"call.hangUp","callId":call_id})).await;
    finished(called, "an early UPDATE refused with 491, then the call").await;

    // The carrier calls in with 100rel: palaver's reliable 183 (ringback) answers its offer,
    // so the carrier's UPDATE offer before the answer gets 488 with a Warning; the user
    // answers and the 200 repeats the 183's session.
    let phone = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let rtp_port = phone.local_addr().unwrap().port().to_string();
    let extra = ["-m", "1", "-trace_logs", "-set", "rtp_port", &rtp_port].map(String::from);
    let carrier = sipp(sip, "early_update_answered.xml", "127.0.0.1", &extra, dir.path());
    let call_id = ws.recv_type("call.incoming").await["callId"].as_str().unwrap().to_owned();
    logged(dir.path(), "EARLY_UPDATE_488").await;
    ws.send(serde_json::json!({"type":"call.accept","callId":call_id})).await;
    finished(carrier, "an early UPDATE after a reliable 183 refused with 488, then the call").await;
    let early = crate::sip::logged_after(dir.path(), "early_update_answered_", "SERVER_EARLY_PORT ").await;
    let answered = server_rtp_port_logged_by(dir.path(), "early_update_answered_").await;
    println!("early UPDATEs: 491 on palaver's call, 488 after the reliable 183 ({early}); the 200 on port {answered}");
    assert_eq!(
        early.split_whitespace().next(),
        Some(answered.to_string().as_str()),
        "the 200 continues the 183's session"
    );
}

async fn dropped_unknown(metrics: &str) -> u64 {
    let text = reqwest::get(metrics).await.expect("/metrics").text().await.expect("metrics text");
    text.lines()
        .find(|l| l.starts_with("palaver_sip_requests_dropped_total{reason=\"unknown_source\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invite_from_an_unknown_address_is_dropped_and_counted_and_a_trunks_rings() {
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    // A `[usage]` table between `[sip]` and its trunks: valid TOML, `/metrics` on a free port.
    let usage = format!("\n[usage]\nmetrics_listen = \"127.0.0.1:{metrics_port}\"\n");
    let (dir, server, sip) = start_with("palaver-e2e-sip-allow", 9, 0, &usage).await;
    let metrics = format!("http://127.0.0.1:{metrics_port}/metrics");
    let token = server.directory_user_token(USER, "Uma User").await;
    let mut ws = connect(&server, &token).await;
    let before = dropped_unknown(&metrics).await;
    // 127.0.0.3 is on no trunk's allow_from: no answer at all, one counter.
    let stranger = sipp(sip, "unknown_source.xml", "127.0.0.3", &["-m".into(), "1".into()], dir.path());
    finished(stranger, "an INVITE from an unknown address gets no answer").await;
    let after = dropped_unknown(&metrics).await;
    println!("dropped from unknown sources: {before} before, {after} after");
    assert_eq!(after, before + 1, "the dropped INVITE is counted once");
    let rung = tokio::time::timeout(Duration::from_millis(200), ws.recv_type("call.incoming")).await;
    assert!(rung.is_err(), "the stranger's INVITE rang the user");
    // The same INVITE from the carrier's address rings the user (then the carrier cancels).
    let carrier = sipp(sip, "cancel.xml", "127.0.0.1", &["-m".into(), "1".into()], dir.path());
    let incoming = ws.recv_type("call.incoming").await;
    assert_eq!(incoming["caller"]["rawId"], "4:+14255550199", "{incoming}");
    finished(carrier, "an INVITE from the trunk's address").await;
    assert_eq!(ws.recv_type("call.ended").await["reason"], "cancelled");
    assert_eq!(dropped_unknown(&metrics).await, after, "the trunk's requests are not dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_call_transferred_to_another_user_hears_the_new_party() {
    let carrier_port = free_udp_port();
    let second_number =
        format!("\n[[phone_numbers]]\nnumber = \"{SECOND_NUMBER}\"\nroute = \"user:8:orgid:{SECOND_USER}\"\n");
    let (dir, server, sip) = start_with("palaver-e2e-sip-transfer", carrier_port, 0, &second_number).await;
    let first = server.directory_user_token(USER, "Uma User").await;
    let second = server.directory_user_token(SECOND_USER, "Theo Transferee").await;
    let mut ws_first = connect(&server, &first).await;
    let mut ws_second = connect(&server, &second).await;
    let phone = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let rtp_port = phone.local_addr().unwrap().port().to_string();
    let extra = ["-m", "1", "-trace_logs", "-set", "rtp_port", &rtp_port, "-set", "hangup", "palaver"];
    let carrier = sipp(sip, "call.xml", "127.0.0.1", &extra.map(String::from), dir.path());
    // Uma answers the phone, then transfers it to Theo (call.transfer).
    let call_id = ws_first.recv_type("call.incoming").await["callId"].as_str().unwrap().to_owned();
    ws_first.send(serde_json::json!({"type":"call.accept","callId":call_id})).await;
    ws_first.recv_type("call.connected").await;
    let media_port = server_rtp_port_logged_by(dir.path(), "call_").await;
    let target = format!("8:orgid:{SECOND_USER}");
    ws_first.send(serde_json::json!({"type":"call.transfer","callId":call_id,"target":target})).await;
    let incoming = ws_second.recv_type("call.incoming").await;
    assert_eq!(incoming["callId"], call_id.as_str(), "{incoming}");
    assert_eq!(incoming["transferredBy"]["rawId"], format!("8:orgid:{USER}"), "{incoming}");
    // Theo answers over QUIC with his 700 Hz tone; the phone keeps its RTP and hears him.
    let user = user_answers_with_tone(&server, &second, &call_id, Duration::from_secs(3), SECOND_USER_HZ);
    let to = SocketAddr::from(([127, 0, 0, 1], media_port));
    let ((client, heard), (phone_heard, packets)) = tokio::join!(user, phone_talks(&phone, to, Duration::from_secs(3)));
    assert_hears("the transfer target", &heard, PHONE_HZ, SECOND_USER_HZ, 1000.0);
    let tail = &phone_heard[phone_heard.len() / 2..];
    let (new_party, own) = (tone_amplitude(tail, SECOND_USER_HZ), tone_amplitude(tail, PHONE_HZ));
    println!("after the transfer the phone got {packets} packets: 700 Hz amplitude {new_party:.0}, own {own:.0}");
    assert!(new_party > 1000.0, "the transferred phone does not hear the new party ({new_party:.0})");
    assert!(own < new_party / 10.0, "the phone hears itself ({own:.0})");
    ws_second.send(serde_json::json!({"type":"call.hangUp","callId":call_id})).await;
    finished(carrier, "a transferred phone call, hung up by the transfer target").await;
    client.close().await;

    // A call the first user placed: the phone transfers it with REFER to an owned number
    // routed to the second user (it got 501 before), who answers; the phone hears NOTIFY
    // 100 then 200 and gets BYE; the two users stay in the call.
    let extra = ["-set", "target", SECOND_NUMBER, "-trace_logs"];
    let called = uas_from(dir.path(), carrier_port, &scenario("uas_refer.xml"), &extra);
    tokio::time::sleep(Duration::from_millis(300)).await;
    ws_first.send(serde_json::json!({"type":"call.place","targets":["4:+14255550123"]})).await;
    let call_id = ws_first.recv_type("call.placed").await["callId"].as_str().unwrap().to_owned();
    ws_first.recv_type("call.connected").await;
    let incoming = ws_second.recv_type("call.incoming").await;
    assert_eq!(incoming["callId"], call_id.as_str(), "{incoming}");
    assert_eq!(incoming["transferredBy"]["rawId"], "4:+14255550123", "{incoming}");
    ws_second.send(serde_json::json!({"type":"call.accept","callId":call_id})).await;
    finished(called, "a REFER from the trunk on a call palaver placed").await;
    ws_second.send(serde_json::json!({"type":"call.hangUp","callId":call_id})).await;
}
