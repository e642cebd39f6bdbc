//! The SIP trunk gateway against the real binary, with SIPp (Debian `sip-tester`, installed by
//! `make prereqs`) as the carrier. SIPp does the signaling from `tests/sipp/*.xml`; for the
//! call with audio its SDP names an RTP socket of this test, which plays the phone: it sends
//! a µ-law 1000 Hz tone to the media port of palaver's answer (SIPp logs it) and decodes
//! what palaver sends back. The called directory user watches for `call.incoming` on a
//! WebSocket, answers over QUIC (`call.accept`, `media.attach` with the `callId`), sends a
//! 440 Hz Opus tone and decodes the mix. Cases: both directions hear each other through the
//! mixer (PCMU ↔ Opus) and the carrier hangs up; palaver's user hangs up (BYE from palaver);
//! CANCEL before answer; a digest challenge; OPTIONS both ways; INVITEs with an unusable
//! offer get 400 while a parallel good call carries on; an INVITE without offer, then hold and
//! resume; the meeting and call-automation routes, meeting dial-out, Call Automation
//! `createCall` to a number and a phone's DTMF reaching `recognize`. `SIP_DEBUG=1` prints the
//! server logs when a SIPp run fails.

use crate::signaling::connect;
use crate::support::{FRAME, ToneEncoder, assert_hears, collect, quic_address, tone_amplitude};
use palaver_client::{ConnectOptions, MediaTrack, QuicClient, ReceivedRtp};
use palaver_core::protocol::ClientMessage;
use palaver_e2e::{Server, ServerOptions, TempDir};
use palaver_sfu::mixer::g711::{G711_FRAME_BYTES, Law};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::process::Command;

pub(crate) const USER: &str = "0b000000-0000-4000-8000-0000000005b1";
pub(crate) const NUMBER: &str = "+14255550100";
pub(crate) const PHONE_HZ: f32 = 1000.0;
pub(crate) const USER_HZ: f32 = 440.0;
const AMPLITUDE: f32 = 6000.0;

pub(crate) fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sipp").join(name)
}

/// A free UDP port on loopback (SIPp's `-p 0` means its default 5060, which parallel tests share).
pub(crate) fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub(crate) fn require_sipp() {
    let found = std::process::Command::new("sipp").arg("-v").stdout(Stdio::null()).stderr(Stdio::null()).status();
    assert!(found.is_ok(), "SIPp is not installed: `make prereqs` (Debian package sip-tester)");
}

/// A server with a trunk on 127.0.0.1 (no credentials), one on 127.0.0.2 (digest), and
/// `NUMBER` routed to the directory user `USER`; palaver's keep-alives go to `keepalive_to`.
pub(crate) async fn start(prefix: &str, keepalive_to: u16, keepalive_secs: u64) -> (TempDir, Server, SocketAddr) {
    start_with(prefix, keepalive_to, keepalive_secs, "").await
}

/// [`start`], with more `[sip]` keys (`extra_sip`, TOML lines).
pub(crate) async fn start_with(
    prefix: &str,
    keepalive_to: u16,
    keepalive_secs: u64,
    extra_sip: &str,
) -> (TempDir, Server, SocketAddr) {
    // (The carrier trunk is also where calls to phone numbers go: `keepalive_to`.)
    require_sipp();
    let dir = TempDir::new(prefix);
    let config = format!(
        r#"[signaling.calls]
ring_timeout_secs = 3
allow_phone_targets = true

[sip]
listen = "127.0.0.1:0"
options_interval_secs = {keepalive_secs}
{extra_sip}

[[sip.trunks]]
name = "carrier"
address = "127.0.0.1:{keepalive_to}"
allow_from = ["127.0.0.1"]
codecs = ["PCMU", "PCMA"]

[[sip.trunks]]
name = "secure"
address = "127.0.0.2:5060"
allow_from = ["127.0.0.2"]
username = "palaver"
password = "s3cret"

[[phone_numbers]]
number = "{NUMBER}"
route = "user:8:orgid:{USER}"
"#
    );
    let server = Server::start_in(dir.path(), ServerOptions { config_toml: Some(config), ..Default::default() }).await;
    let sip = server.sip_addr().expect("PALAVER_SIP line");
    (dir, server, sip)
}

/// Starts SIPp with `scenario_file` against the gateway, from `local_ip`, in `dir`.
pub(crate) fn sipp(
    sip: SocketAddr,
    scenario_file: &str,
    local_ip: &str,
    extra: &[String],
    dir: &Path,
) -> tokio::process::Child {
    sipp_to(NUMBER, sip, scenario_file, local_ip, extra, dir)
}

/// [`sipp`], calling `number`.
pub(crate) fn sipp_to(
    number: &str,
    sip: SocketAddr,
    scenario_file: &str,
    local_ip: &str,
    extra: &[String],
    dir: &Path,
) -> tokio::process::Child {
    let mut cmd = Command::new("sipp");
    cmd.arg("-sf")
        .arg(scenario(scenario_file))
        .args(["-i", local_ip, "-p", &free_udp_port().to_string(), "-s", number, "-nostdin", "-timeout", "30s"])
        .args(["-timeout_error", "-trace_err"])
        .args(extra)
        .arg(sip.to_string())
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd.spawn().expect("spawn sipp")
}

pub(crate) async fn finished(child: tokio::process::Child, what: &str) {
    let out = tokio::time::timeout(Duration::from_secs(40), child.wait_with_output()).await.expect("sipp finishes");
    let out = out.expect("sipp output");
    if !out.status.success() && std::env::var("SIP_DEBUG").is_ok() {
        for e in std::fs::read_dir(std::env::temp_dir()).unwrap().flatten() {
            if e.file_name().to_string_lossy().starts_with("palaver-e2e-sip") {
                eprintln!("{}", std::fs::read_to_string(e.path().join("palaver.log")).unwrap_or_default());
            }
        }
    }
    assert!(
        out.status.success(),
        "SIPp {what} failed ({:?}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout).lines().rev().take(30).collect::<Vec<_>>().join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The media port of palaver's answer, from the SIPp log (`<log>` of `call.xml`).
pub(crate) async fn server_rtp_port(dir: &Path) -> u16 {
    server_rtp_port_logged_by(dir, "call_").await
}

/// The `SERVER_RTP_PORT` logged by the SIPp scenario whose log file starts with `prefix`.
pub(crate) async fn server_rtp_port_logged_by(dir: &Path, prefix: &str) -> u16 {
    let line = logged_after(dir, prefix, "SERVER_RTP_PORT ").await;
    line.split_whitespace().next().unwrap_or_default().parse().expect("port")
}

/// What the SIPp scenario whose log file starts with `prefix` logged after `marker` (the rest
/// of that line), once it is there (within 20 s).
pub(crate) async fn logged_after(dir: &Path, prefix: &str, marker: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with(prefix) && name.ends_with("_logs.log") {
                let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                if let Some(rest) = text.split(marker).nth(1) {
                    return rest.lines().next().unwrap_or_default().to_owned();
                }
            }
        }
        assert!(Instant::now() < deadline, "SIPp never logged `{marker}` (palaver's answer never reached it)");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The phone: sends `duration` of µ-law tone from `socket` to `to` and decodes what arrives.
pub(crate) async fn phone_talks(socket: &UdpSocket, to: SocketAddr, duration: Duration) -> (Vec<i16>, usize) {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let (mut seq, mut timestamp, mut phase) = (1000u16, 8000u32, 0f32);
    let step = std::f32::consts::TAU * PHONE_HZ / 8000.0;
    let until = Instant::now() + duration;
    let mut heard = Vec::new();
    let mut packets = 0;
    let mut buf = [0u8; 1500];
    while Instant::now() < until {
        tick.tick().await;
        let mut packet = vec![0x80, 0];
        packet.extend_from_slice(&seq.to_be_bytes());
        packet.extend_from_slice(&timestamp.to_be_bytes());
        packet.extend_from_slice(&0x00C0_FFEE_u32.to_be_bytes());
        for _ in 0..G711_FRAME_BYTES {
            packet.push(Law::Mu.encode((AMPLITUDE * phase.sin()) as i16));
            phase = (phase + step) % std::f32::consts::TAU;
        }
        socket.send_to(&packet, to).await.expect("send RTP");
        (seq, timestamp) = (seq.wrapping_add(1), timestamp.wrapping_add(G711_FRAME_BYTES as u32));
        while let Ok(Ok((n, _))) = tokio::time::timeout(Duration::from_millis(1), socket.recv_from(&mut buf)).await {
            if n > 12 && buf[0] >> 6 == 2 && (buf[1] & 0x7f) == 0 {
                packets += 1;
                // 8 kHz → 48 kHz by repetition, for the shared Goertzel helper.
                for &b in &buf[12..n] {
                    heard.extend(std::iter::repeat_n(Law::Mu.decode(b), 6));
                }
            }
        }
    }
    (heard, packets)
}

/// The directory user: answers `call_id` over QUIC, sends its Opus tone for `duration` and
/// collects what the server sends it.
pub(crate) async fn user_answers(
    server: &Server,
    token: &str,
    call_id: &str,
    duration: Duration,
) -> (QuicClient, Vec<ReceivedRtp>) {
    user_answers_with_tone(server, token, call_id, duration, USER_HZ).await
}

/// [`user_answers`], sending a tone of `hz`.
pub(crate) async fn user_answers_with_tone(
    server: &Server,
    token: &str,
    call_id: &str,
    duration: Duration,
    hz: f32,
) -> (QuicClient, Vec<ReceivedRtp>) {
    let ca_pem = std::fs::read_to_string(server.ca_file()).expect("CA");
    let addr = quic_address(server, token).await;
    let mut client = QuicClient::connect(&ConnectOptions::new(addr, "localhost", ca_pem), token).await.expect("QUIC");
    client.send(ClientMessage::CallAccept { call_id: call_id.to_owned() }).await.expect("call.accept");
    let ssrc = 0x05B1_0001;
    // The accept and the attach travel on one stream in order; the attach waits for nothing else.
    let tracks =
        client.attach_call_media(call_id, vec![MediaTrack::opus(ssrc)]).await.expect("media.attach in the call");
    assert_eq!(tracks.len(), 1, "the call's mix: {tracks:?}");
    let mut rx = client.take_rtp_receiver().expect("RTP queue");
    let mut tx = client.rtp_sender(ssrc, 111);
    let until = Instant::now() + duration;
    let talk = async move {
        let mut tone = ToneEncoder::new(hz, AMPLITUDE);
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        while Instant::now() < until {
            tick.tick().await;
            tx.send(&tone.next_frame(), FRAME as u32, Some(30)).expect("send Opus");
        }
    };
    let (_, heard) = tokio::join!(talk, collect(&mut rx, until + Duration::from_millis(200)));
    (client, heard)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_call_to_an_owned_number_rings_the_user_who_answers_over_quic_and_both_hear_each_other() {
    let (dir, server, sip) = start("palaver-e2e-sip-call", 9, 0).await;
    let token = server.directory_user_token(USER, "Uma User").await;
    let mut ws = connect(&server, &token).await;
    let phone = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let rtp_port = phone.local_addr().unwrap().port().to_string();
    let carrier = sipp(
        sip,
        "call.xml",
        "127.0.0.1",
        &[
            "-m".into(),
            "1".into(),
            "-trace_logs".into(),
            "-set".into(),
            "rtp_port".into(),
            rtp_port,
            "-set".into(),
            "hangup".into(),
            "carrier".into(),
        ],
        dir.path(),
    );
    let incoming = ws.recv_type("call.incoming").await;
    assert_eq!(incoming["caller"]["rawId"], "4:+14255550199", "{incoming}");
    assert_eq!(incoming["caller"]["displayName"], "Carla Caller", "{incoming}");
    let call_id = incoming["callId"].as_str().unwrap().to_owned();
    let user = user_answers(&server, &token, &call_id, Duration::from_secs(5));
    let phone_side = async {
        let port = server_rtp_port(dir.path()).await;
        phone_talks(&phone, SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(4)).await
    };
    let ((client, user_heard), (phone_heard, phone_packets)) = tokio::join!(user, phone_side);
    // The user hears the phone's tone (PCMU decoded into the mix, Opus out), not its own.
    assert_hears("the directory user", &user_heard, PHONE_HZ, USER_HZ, 1000.0);
    // The phone hears the user's tone in PCMU (one shared G.711 encode of the mix).
    assert!(phone_packets >= 100, "the phone received {phone_packets} PCMU packets");
    let tail = &phone_heard[phone_heard.len() / 3..];
    let (other, own) = (tone_amplitude(tail, USER_HZ), tone_amplitude(tail, PHONE_HZ));
    println!("phone: {phone_packets} packets; {USER_HZ} Hz amplitude {other:.0}, own {PHONE_HZ} Hz {own:.0}");
    assert!(other > 1000.0, "the phone does not hear the user's tone ({other:.0})");
    assert!(own < other / 10.0, "the phone hears itself ({own:.0} vs {other:.0})");
    // The carrier hangs up: the user's call ends.
    finished(carrier, "call with BYE from the carrier").await;
    let ended = ws.recv_type("call.ended").await;
    assert_eq!(ended["callId"], call_id.as_str());
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn palaver_hangs_up_a_phone_call_and_a_cancel_before_answer_stops_the_ringing() {
    let (dir, server, sip) = start("palaver-e2e-sip-bye", 9, 0).await;
    let token = server.directory_user_token(USER, "Uma User").await;
    let mut ws = connect(&server, &token).await;
    // BYE from palaver's side: the user answers (WebSocket), then hangs up.
    let extra = ["-m", "1", "-trace_logs", "-set", "rtp_port", "9", "-set", "hangup", "palaver"];
    let carrier = sipp(sip, "call.xml", "127.0.0.1", &extra.map(String::from), dir.path());
    let call_id = ws.recv_type("call.incoming").await["callId"].as_str().unwrap().to_owned();
    ws.send(serde_json::json!({"type":"call.accept","callId":call_id})).await;
    ws.recv_type("call.connected").await;
    server_rtp_port(dir.path()).await;
    // Hang up at once: the carrier acknowledges the 200 only 300 ms after it arrives, and
    // palaver's BYE must wait for that ACK (RFC 3261 §15; SIPp fails on a BYE before its ACK).
    ws.send(serde_json::json!({"type":"call.hangUp","callId":call_id})).await;
    finished(carrier, "call with BYE from palaver").await;

    // CANCEL while the user's phone rings: the ringing stops with `call.ended`.
    let carrier = sipp(sip, "cancel.xml", "127.0.0.1", &["-m".into(), "1".into()], dir.path());
    let ringing = ws.recv_type("call.incoming").await["callId"].as_str().unwrap().to_owned();
    finished(carrier, "CANCEL before answer").await;
    let ended = ws.recv_type("call.ended").await;
    assert_eq!((ended["callId"].as_str(), ended["reason"].as_str()), (Some(ringing.as_str()), Some("cancelled")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_options_both_ways_and_malformed_invites_beside_a_good_call() {
    let carrier_port = free_udp_port();
    let (dir, server, sip) = start("palaver-e2e-sip-misc", carrier_port, 1).await;
    // palaver's keep-alive OPTIONS reach the carrier (SIPp as UAS on the trunk's address).
    let options_uas = uas(dir.path(), carrier_port, "options_uas.xml");
    // The carrier's OPTIONS are answered 200 with Allow.
    finished(
        sipp(sip, "options.xml", "127.0.0.1", &["-m".into(), "1".into(), "-trace_logs".into()], dir.path()),
        "OPTIONS",
    )
    .await;
    finished(options_uas, "OPTIONS from palaver").await;
    // The trunk on 127.0.0.2 has credentials: 401, then the digest is accepted and the call
    // rings the (offline) user until the ring time runs out (480).
    finished(sipp(sip, "auth.xml", "127.0.0.2", &["-m".into(), "1".into()], dir.path()), "digest challenge").await;

    // Unusable INVITEs get 400 while a good call is answered and carries on.
    let token = server.directory_user_token(USER, "Uma User").await;
    let mut ws = connect(&server, &token).await;
    let good = sipp(
        sip,
        "call.xml",
        "127.0.0.1",
        &["-m", "1", "-trace_logs", "-set", "rtp_port", "9", "-set", "hangup", "carrier"].map(String::from),
        dir.path(),
    );
    let call_id = ws.recv_type("call.incoming").await["callId"].as_str().unwrap().to_owned();
    ws.send(serde_json::json!({"type":"call.accept","callId":call_id})).await;
    ws.recv_type("call.connected").await;
    let bad = sipp(sip, "malformed.xml", "127.0.0.1", &["-m", "20", "-r", "10"].map(String::from), dir.path());
    finished(bad, "20 malformed INVITEs answered 400").await;
    finished(good, "the good call beside them").await;
    assert_eq!(ws.recv_type("call.ended").await["callId"], call_id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_user_calls_a_phone_number_through_the_trunk_and_hangs_up() {
    let carrier_port = free_udp_port();
    let (dir, server, _sip) = start("palaver-e2e-sip-out", carrier_port, 0).await;
    let phone = uas_from(dir.path(), carrier_port, &scenario("uas_answer.xml"), &["-trace_logs"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let token = server.directory_user_token(USER, "Uma User").await;
    let mut ws = connect(&server, &token).await;
    ws.send(serde_json::json!({"type":"call.place","targets":["4:+14255550123"]})).await;
    let call_id = ws.recv_type("call.placed").await["callId"].as_str().unwrap().to_owned();
    let connected = ws.recv_type("call.connected").await;
    assert_eq!(connected["callId"], call_id.as_str(), "{connected}");
    let raw_ids: Vec<&str> =
        connected["participants"].as_array().unwrap().iter().filter_map(|p| p["rawId"].as_str()).collect();
    assert!(raw_ids.contains(&"4:+14255550123"), "{connected}");
    ws.send(serde_json::json!({"type":"call.hangUp","callId":call_id})).await;
    finished(phone, "the carrier's side of a call to a phone number").await;

    // The user gives up while the phone rings: palaver cancels the INVITE (CANCEL, 487, ACK).
    let ringing_phone = uas(dir.path(), carrier_port, "uas_cancel.xml");
    tokio::time::sleep(Duration::from_millis(300)).await;
    ws.send(serde_json::json!({"type":"call.place","targets":["4:+14255550123"]})).await;
    let call_id = ws.recv_type("call.placed").await["callId"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(500)).await;
    ws.send(serde_json::json!({"type":"call.hangUp","callId":call_id})).await;
    finished(ringing_phone, "a call to a phone number cancelled while it rings").await;

    // Calls that fail end with the reason the trunk's SIP status says.
    for (status, phrase, reason) in [
        ("486", "Busy Here", "busy"),
        ("404", "Not Found", "unreachable"),
        ("503", "Service Unavailable", "unavailable"),
    ] {
        let failing = uas_rejecting(dir.path(), carrier_port, status, phrase);
        tokio::time::sleep(Duration::from_millis(300)).await;
        ws.send(serde_json::json!({"type":"call.place","targets":["4:+14255550123"]})).await;
        let call_id = ws.recv_type("call.placed").await["callId"].as_str().unwrap().to_owned();
        let ended = loop {
            let ended = ws.recv_type("call.ended").await;
            if ended["callId"] == call_id.as_str() {
                break ended;
            }
        };
        assert_eq!(
            (ended["callId"].as_str(), ended["reason"].as_str()),
            (Some(call_id.as_str()), Some(reason)),
            "{ended}"
        );
        finished(failing, "a call to a phone number that fails").await;
    }
}

/// SIPp on the carrier's address, answering the next INVITE with `status` `phrase`.
pub(crate) fn uas_rejecting(dir: &Path, port: u16, status: &str, phrase: &str) -> tokio::process::Child {
    let template = std::fs::read_to_string(scenario("uas_reject.xml")).expect("uas_reject.xml");
    let file = dir.join(format!("uas_reject_{status}.xml"));
    std::fs::write(&file, template.replace("STATUS_CODE", status).replace("STATUS_PHRASE", phrase)).unwrap();
    uas_from(dir, port, &file, &[])
}

/// Packets that arrive on the phone's socket until SIPp's log holds `marker` (read from the
/// `*_logs.log` in `dir`).
async fn packets_until(socket: &UdpSocket, dir: &Path, marker: &str) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut packets = 0;
    let mut buf = [0u8; 1500];
    let mut last_check = Instant::now();
    loop {
        if let Ok(Ok((n, _))) = tokio::time::timeout(Duration::from_millis(20), socket.recv_from(&mut buf)).await
            && n > 12
        {
            packets += 1;
        }
        if last_check.elapsed() > Duration::from_millis(50) {
            last_check = Instant::now();
            let logged = std::fs::read_dir(dir).unwrap().flatten().any(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                name.ends_with("_logs.log") && std::fs::read_to_string(e.path()).unwrap_or_default().contains(marker)
            });
            if logged {
                return packets;
            }
        }
        assert!(Instant::now() < deadline, "SIPp never logged {marker}");
    }
}

/// Packets reaching the phone's socket before SIPp logs `HELD a=recvonly`, between that and
/// `RESUMED a=sendrecv` (after the ones already in flight), and in the second after it.
pub(crate) async fn packets_across_hold(phone: &UdpSocket, dir: &Path) -> (usize, usize, usize) {
    let before = packets_until(phone, dir, "HELD a=recvonly").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(1), phone.recv_from(&mut [0u8; 1500])).await {}
    let held = packets_until(phone, dir, "RESUMED a=sendrecv").await;
    let mut resumed = 0;
    let until = Instant::now() + Duration::from_millis(1000);
    while let Ok(Ok(_)) = tokio::time::timeout_at(until.into(), phone.recv_from(&mut [0u8; 1500])).await {
        resumed += 1;
    }
    (before, held, resumed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invite_without_offer_is_answered_in_the_ack_and_hold_stops_the_media_until_resume() {
    let (dir, server, sip) = start("palaver-e2e-sip-hold", 9, 0).await;
    let token = server.directory_user_token(USER, "Uma User").await;
    let mut ws = connect(&server, &token).await;
    let phone = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let rtp_port = phone.local_addr().unwrap().port().to_string();
    let extra = ["-m".into(), "1".into(), "-trace_logs".into(), "-set".into(), "rtp_port".into(), rtp_port];
    let carrier = sipp(sip, "hold.xml", "127.0.0.1", &extra, dir.path());
    let call_id = ws.recv_type("call.incoming").await["callId"].as_str().unwrap().to_owned();
    ws.send(serde_json::json!({"type":"call.accept","callId":call_id})).await;
    // Connected with the answer from the ACK: the mix (silence: G.711 has no DTX) flows.
    let (before, held, resumed) = packets_across_hold(&phone, dir.path()).await;
    println!("phone packets: {before} before hold, {held} on hold, {resumed} in 1 s after resume");
    assert!(before >= 20, "no media before hold ({before})");
    assert!(held <= 5, "media went on during hold ({held})");
    assert!(resumed >= 20, "no media after resume ({resumed})");
    finished(carrier, "INVITE without offer, hold, resume, BYE").await;
    assert_eq!(ws.recv_type("call.ended").await["callId"], call_id.as_str());
}

/// Starts Call Automation's DTMF recognize of one digit from the test phone `+14255550199` on
/// call connection `ccid` (operation context `menu`).
pub(crate) async fn recognize_one_phone_digit(server: &Server, ccid: &str) {
    let recognize = serde_json::json!({
        "recognizeInputType": "dtmf",
        "recognizeOptions": {
            "targetParticipant": {"rawId": "4:+14255550199", "phoneNumber": {"value": "+14255550199"}},
            "initialSilenceTimeoutInSeconds": 10,
            "dtmfOptions": {"maxTonesToCollect": 1},
        },
        "operationContext": "menu",
    });
    let path = format!("/calling/callConnections/{ccid}:recognize?api-version=2025-05-15");
    let (status, body) = server.signed(reqwest::Method::POST, &path, &recognize.to_string()).await;
    assert!(status.is_success(), "{status} {body}");
}

/// The phone presses `digit`: RFC 4733 telephone-events (payload type 101, as the trunk's
/// SDP offers) from its RTP socket, three updates and three end packets.
pub(crate) async fn send_digit(socket: &UdpSocket, to: SocketAddr, digit: u8) {
    for i in 0..6u16 {
        let mut packet = vec![0x80, if i == 0 { 0x80 | 101 } else { 101 }];
        packet.extend_from_slice(&(2000 + i).to_be_bytes());
        packet.extend_from_slice(&48_000u32.to_be_bytes());
        packet.extend_from_slice(&0x00D7_3F00_u32.to_be_bytes());
        let end = if i >= 3 { 0x80 } else { 0 };
        packet.extend_from_slice(&[digit, end | 10]);
        packet.extend_from_slice(&(160 * (i.min(3) + 1)).to_be_bytes());
        socket.send_to(&packet, to).await.expect("send DTMF");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// SIPp as the carrier's side of a call palaver places (on `port`), for one call.
pub(crate) fn uas(dir: &Path, port: u16, scenario_file: &str) -> tokio::process::Child {
    uas_from(dir, port, &scenario(scenario_file), &[])
}

/// [`uas`] with the scenario at `path` and `extra` SIPp arguments.
pub(crate) fn uas_from(dir: &Path, port: u16, path: &Path, extra: &[&str]) -> tokio::process::Child {
    let mut cmd = Command::new("sipp");
    cmd.arg("-sf")
        .arg(path)
        .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-m", "1", "-nostdin", "-timeout", "20s"])
        .args(["-timeout_error", "-trace_err"])
        .args(extra)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd.spawn().expect("spawn sipp")
}

/// The Event Grid receiver of the routes test: answers the validation handshake and keeps
/// every `IncomingCall` it is given.
pub(crate) async fn event_receiver() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>) {
    use axum::extract::State;
    use axum::http::HeaderMap;
    type Seen = std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>;
    async fn receive(State(seen): State<Seen>, headers: HeaderMap, body: String) -> axum::response::Response {
        use axum::response::IntoResponse;
        let events: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        if headers.get("aeg-event-type").is_some_and(|v| v == "SubscriptionValidation") {
            let code = events[0]["data"]["validationCode"].clone();
            return axum::Json(serde_json::json!({ "validationResponse": code })).into_response();
        }
        for event in events.as_array().into_iter().flatten() {
            seen.lock().unwrap().push(event.clone());
        }
        axum::http::StatusCode::OK.into_response()
    }
    let seen: Seen = Default::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    async fn callback(State(seen): State<Seen>, body: String) -> axum::http::StatusCode {
        let event: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        for event in event.as_array().cloned().unwrap_or_else(|| vec![event]) {
            seen.lock().unwrap().push(event);
        }
        axum::http::StatusCode::OK
    }
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .route("/callbacks", axum::routing::post(callback))
        .with_state(seen.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_caller_joins_a_meeting_through_its_lobby_and_call_automation_answers_and_dials_numbers() {
    const MEETING_NUMBER: &str = "+14255550177";
    const APP_NUMBER: &str = "+14255550188";
    require_sipp();
    let dir = TempDir::new("palaver-e2e-sip-routes");
    // The meeting exists before the number can route to it: create it, then restart.
    let mut server = Server::start_in(dir.path(), ServerOptions::default()).await;
    let organizer_oid = "0b000000-0000-4000-8000-0000000005b2";
    let org = server.directory_user_token(organizer_oid, "Olga Organizer").await;
    let (status, meeting) = server.bearer(reqwest::Method::POST, "/meetings", &org, Some(&serde_json::json!({}))).await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{meeting}");
    let meeting_id = meeting["id"].as_str().expect("meeting id").to_owned();
    server.terminate();
    let (hook_port, events) = event_receiver().await;
    let carrier_port = free_udp_port();
    let config = format!(
        r#"[signaling.calls]
allow_phone_targets = true

[events.delivery]
poll_interval_ms = 50

[[events.subscriptions]]
name = "incoming"
endpoint = "http://127.0.0.1:{hook_port}/hook"
event_types = ["Microsoft.Communication.IncomingCall"]

[sip]
listen = "127.0.0.1:0"
options_interval_secs = 0

[[sip.trunks]]
name = "carrier"
address = "127.0.0.1:{carrier_port}"
allow_from = ["127.0.0.1"]

[[phone_numbers]]
number = "{MEETING_NUMBER}"
route = "meeting:{meeting_id}"

[[phone_numbers]]
number = "{APP_NUMBER}"
route = "call-automation"
"#
    );
    let server = Server::start_in(dir.path(), ServerOptions { config_toml: Some(config), ..Default::default() }).await;
    let sip = server.sip_addr().expect("PALAVER_SIP line");
    let org = server.directory_user_token(organizer_oid, "Olga Organizer").await;

    // The organizer is in the meeting; the phone caller waits in the lobby (the default
    // policy lets only the organization in), is admitted, and the meeting's end hangs it up.
    let mut ws = connect(&server, &org).await;
    ws.send(serde_json::json!({"type":"join","target":{"kind":"meetingLink","joinUrl":meeting["joinUrl"]}})).await;
    ws.recv_type("joined").await;
    let extra = ["-m", "1", "-trace_logs", "-set", "rtp_port", "9", "-set", "hangup", "palaver"].map(String::from);
    let carrier = sipp_to(MEETING_NUMBER, sip, "call.xml", "127.0.0.1", &extra, dir.path());
    let phone = loop {
        let delta = ws.recv_type("roster.delta").await;
        let participant = &delta["delta"]["participant"];
        if delta["delta"]["change"] == "joined" && participant["identifier"]["rawId"] == "4:+14255550199" {
            assert_eq!(participant["state"], "lobby", "{delta}");
            assert_eq!(participant["displayName"].as_str().map(|n| n.starts_with("Carla Caller")), Some(true));
            break participant["participantId"].as_str().unwrap().to_owned();
        }
    };
    ws.send(serde_json::json!({"type":"lobby.admit","participantId":phone})).await;
    server_rtp_port(dir.path()).await;
    // A dial-out to a busy number: the carrier answers 486 and the organizer is told
    // (an `error` frame, code PhoneBusy, naming the number and the SIP status).
    let busy = uas(dir.path(), carrier_port, "uas_busy.xml");
    tokio::time::sleep(Duration::from_millis(300)).await;
    ws.send(serde_json::json!({"type":"dialOut","phoneNumber":"+14255550124"})).await;
    let error = ws.recv_type("error").await;
    assert_eq!(error["code"], "PhoneBusy", "{error}");
    assert!(error["message"].as_str().is_some_and(|m| m.contains("+14255550124") && m.contains("486")), "{error}");
    finished(busy, "a meeting dial-out to a busy number").await;
    // The organizer dials a number into the meeting: the carrier answers, the phone joins
    // without the lobby.
    let dialled = uas(dir.path(), carrier_port, "uas_answer.xml");
    tokio::time::sleep(Duration::from_millis(300)).await;
    ws.send(serde_json::json!({"type":"dialOut","phoneNumber":"+14255550123"})).await;
    loop {
        let delta = ws.recv_type("roster.delta").await;
        let participant = &delta["delta"]["participant"];
        if delta["delta"]["change"] == "joined" && participant["identifier"]["rawId"] == "4:+14255550123" {
            assert_eq!(participant["state"], "connected", "{delta}");
            break;
        }
    }
    ws.send(serde_json::json!({"type":"meeting.end"})).await;
    finished(carrier, "a phone caller admitted to a meeting, hung up when it ends").await;
    finished(dialled, "a phone dialled into the meeting, hung up when it ends").await;

    // Call Automation: IncomingCall for the number, from the caller; answering connects the
    // phone (200 to the carrier); the application hangs up (BYE to the carrier).
    for entry in std::fs::read_dir(dir.path()).unwrap().flatten() {
        if entry.file_name().to_string_lossy().ends_with("_logs.log") {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }
    let phone = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let rtp_port = phone.local_addr().unwrap().port().to_string();
    let extra =
        ["-m", "1", "-trace_logs", "-set", "rtp_port", &rtp_port, "-set", "hangup", "palaver"].map(String::from);
    let carrier = sipp_to(APP_NUMBER, sip, "call.xml", "127.0.0.1", &extra, dir.path());
    let deadline = Instant::now() + Duration::from_secs(20);
    let incoming = loop {
        if let Some(e) =
            events.lock().unwrap().iter().find(|e| e["eventType"] == "Microsoft.Communication.IncomingCall")
        {
            break e.clone();
        }
        assert!(Instant::now() < deadline, "no IncomingCall");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let data = &incoming["data"];
    assert_eq!(data["to"]["rawId"], format!("4:{APP_NUMBER}"), "{incoming}");
    assert_eq!(data["from"]["rawId"], "4:+14255550199", "{incoming}");
    assert_eq!(data["callerDisplayName"], "Carla Caller", "{incoming}");
    let answer = serde_json::json!({
        "incomingCallContext": data["incomingCallContext"],
        "callbackUri": format!("http://127.0.0.1:{hook_port}/callbacks"),
    });
    let (status, connection) = server
        .signed(reqwest::Method::POST, "/calling/callConnections:answer?api-version=2025-05-15", &answer.to_string())
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{connection}");
    let media_port = server_rtp_port(dir.path()).await;
    let ccid = connection["callConnectionId"].as_str().expect("callConnectionId");
    // DTMF from the phone (RFC 4733 on the trunk leg) reaches Call Automation's recognize.
    recognize_one_phone_digit(&server, ccid).await;
    send_digit(&phone, SocketAddr::from(([127, 0, 0, 1], media_port)), 5).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let completed = loop {
        let found = events
            .lock()
            .unwrap()
            .iter()
            .find(|e| {
                e["type"].as_str().is_some_and(|t| t.ends_with("RecognizeCompleted") || t.ends_with("RecognizeFailed"))
            })
            .cloned();
        if let Some(event) = found {
            break event;
        }
        assert!(Instant::now() < deadline, "no RecognizeCompleted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(completed["data"]["dtmfResult"]["tones"], serde_json::json!(["five"]), "{completed}");
    let path = format!("/calling/callConnections/{ccid}?api-version=2025-05-15");
    let (status, body) = server.signed(reqwest::Method::DELETE, &path, "").await;
    assert!(status.is_success(), "{status} {body}");
    finished(carrier, "a phone call answered and hung up by Call Automation").await;

    // createCall to a phone number dials out through the trunk; the application hangs up.
    let phone = uas(dir.path(), carrier_port, "uas_answer.xml");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (bot, _) = server.create_user_token(&["voip"]).await;
    let create = serde_json::json!({
        "targets": [{"rawId": "4:+14255550123", "phoneNumber": {"value": "+14255550123"}}],
        "source": {"id": bot},
        "callbackUri": format!("http://127.0.0.1:{hook_port}/callbacks"),
    });
    let (status, created) = server
        .signed(reqwest::Method::POST, "/calling/callConnections?api-version=2025-05-15", &create.to_string())
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{created}");
    let ccid = created["callConnectionId"].as_str().expect("callConnectionId").to_owned();
    let path = format!("/calling/callConnections/{ccid}?api-version=2025-05-15");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, props) = server.signed(reqwest::Method::GET, &path, "").await;
        if props["callConnectionState"] == "connected" {
            break;
        }
        assert!(Instant::now() < deadline, "the phone never answered: {props}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = server.signed(reqwest::Method::DELETE, &path, "").await;
    assert!(status.is_success(), "{status} {body}");
    finished(phone, "Call Automation's createCall to a phone number").await;

    // createCall to a number the carrier cannot reach: CreateCallFailed carries the SIP
    // status as ACS reports a direct-routing failure (code = status, subCode 560xxx).
    let failing = uas_rejecting(dir.path(), carrier_port, "484", "Address Incomplete");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, created) = server
        .signed(reqwest::Method::POST, "/calling/callConnections?api-version=2025-05-15", &create.to_string())
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{created}");
    let ccid = created["callConnectionId"].as_str().expect("callConnectionId").to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    let failed = loop {
        let found = events
            .lock()
            .unwrap()
            .iter()
            .find(|e| {
                e["type"].as_str().is_some_and(|t| t.ends_with("CreateCallFailed"))
                    && e["data"]["callConnectionId"] == ccid.as_str()
            })
            .cloned();
        if let Some(event) = found {
            break event;
        }
        assert!(Instant::now() < deadline, "no CreateCallFailed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let result = &failed["data"]["resultInformation"];
    assert_eq!((result["code"].as_u64(), result["subCode"].as_u64()), (Some(484), Some(560_484)), "{failed}");
    assert_eq!(result["sipDetails"]["code"], 484, "{failed}");
    finished(failing, "Call Automation's createCall to an unreachable number").await;
}
