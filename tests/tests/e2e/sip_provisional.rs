//! The SIP trunk gateway's provisional responses and in-dialog transfer against the real
//! binary, with SIPp as the carrier (the set-up helpers are `sip.rs`'s): palaver's reliable
//! 180s PRACKed and repeated while a user lets a call ring (RFC 3262), a REFER from the trunk
//! with NOTIFY progress (RFC 3515), and the carrier's early media (a reliable 183 with SDP)
//! heard by the caller before the answer and continued after it.

use crate::signaling::connect;
use crate::sip::{
    PHONE_HZ, USER, USER_HZ, finished, free_udp_port, phone_talks, scenario, server_rtp_port_logged_by, sipp, start,
    start_with, uas, uas_from,
};
use crate::support::{assert_hears, collect, quic_address, tone_amplitude};
use palaver_client::{ConnectOptions, MediaTrack, QuicClient};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

/// Every `RSEQ n` SIPp logged in `dir` (`prack.xml`), in order.
fn logged_rseqs(dir: &Path) -> Vec<u32> {
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with("prack_") && name.ends_with("_logs.log") {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            seen.extend(text.split("RSEQ ").skip(1).filter_map(|r| r.split_whitespace().next()?.parse::<u32>().ok()));
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reliable_ringing_is_pracked_and_repeated_while_the_user_does_not_answer() {
    // RFC 3262 and RFC 3261 §13.3.1.1: the carrier requires 100rel; palaver's 180 carries
    // Require: 100rel and an RSeq, is PRACKed, and is repeated every second (a short
    // `provisional_refresh_secs`) with a new RSeq while the user lets it ring.
    let (dir, server, sip) = start_with("palaver-e2e-sip-prack", 9, 0, "provisional_refresh_secs = 1").await;
    let token = server.directory_user_token(USER, "Uma User").await;
    let mut ws = connect(&server, &token).await;
    let extra = ["-m", "1", "-trace_logs", "-set", "rtp_port", "9"];
    let carrier = sipp(sip, "prack.xml", "127.0.0.1", &extra.map(String::from), dir.path());
    let call_id = ws.recv_type("call.incoming").await["callId"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    let rseqs = loop {
        let rseqs = logged_rseqs(dir.path());
        if rseqs.len() >= 3 {
            break rseqs;
        }
        assert!(Instant::now() < deadline, "palaver did not repeat its reliable 180: RSeqs {rseqs:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!("reliable 180s while ringing, RSeq {rseqs:?}");
    assert!(rseqs.windows(2).all(|w| w[1] == w[0] + 1), "each repeated 180 is a new reliable response: {rseqs:?}");
    ws.send(serde_json::json!({"type":"call.accept","callId":call_id})).await;
    ws.recv_type("call.connected").await;
    ws.send(serde_json::json!({"type":"call.hangUp","callId":call_id})).await;
    finished(carrier, "reliable provisional responses, PRACKed, then answered").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refer_from_the_trunk_transfers_the_call_and_notifies_its_progress() {
    // RFC 3515: the carrier transfers its answered call to another number with REFER; palaver
    // answers 202, dials the number through the trunk (SIPp as the called carrier), NOTIFYs
    // "100 Trying" then "200 OK" in message/sipfrag, and hangs the transferred leg up. The
    // user now talks to the new phone and hangs up: BYE to it.
    let carrier_port = free_udp_port();
    let (dir, server, sip) = start("palaver-e2e-sip-refer", carrier_port, 0).await;
    let token = server.directory_user_token(USER, "Uma User").await;
    let mut ws = connect(&server, &token).await;
    let dialled = uas(dir.path(), carrier_port, "uas_answer.xml");
    let extra = ["-m", "1", "-set", "target", "+14255550123"];
    let carrier = sipp(sip, "refer.xml", "127.0.0.1", &extra.map(String::from), dir.path());
    let call_id = ws.recv_type("call.incoming").await["callId"].as_str().unwrap().to_owned();
    ws.send(serde_json::json!({"type":"call.accept","callId":call_id})).await;
    ws.recv_type("call.connected").await;
    finished(carrier, "REFER with NOTIFY progress, then BYE to the transferred leg").await;
    ws.send(serde_json::json!({"type":"call.hangUp","callId":call_id})).await;
    finished(dialled, "the REFER's target answered, then the user hung up").await;
}

/// Early media on a call out to a phone number: the carrier's reliable 183 with SDP (PRACKed
/// by palaver) joins the phone's RTP to the call before the answer, so the caller hears the
/// carrier's audio (ringback, announcements) before `call.connected`; the 200 continues on
/// the same media and the call goes on until the user hangs up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_media_from_the_trunk_is_heard_before_the_answer_and_the_answer_continues_on_it() {
    let carrier_port = free_udp_port();
    let (dir, server, _sip) = start("palaver-e2e-sip-early", carrier_port, 0).await;
    let phone = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let rtp_port = phone.local_addr().unwrap().port().to_string();
    let carrier = uas_from(
        dir.path(),
        carrier_port,
        &scenario("uas_early_media.xml"),
        &["-set", "rtp_port", &rtp_port, "-trace_logs"],
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let token = server.directory_user_token(USER, "Uma User").await;
    let mut ws = connect(&server, &token).await;
    ws.send(serde_json::json!({"type":"call.place","targets":["4:+14255550123"]})).await;
    let call_id = ws.recv_type("call.placed").await["callId"].as_str().unwrap().to_owned();
    // The caller attaches its media while the phone rings.
    let ca_pem = std::fs::read_to_string(server.ca_file()).expect("CA");
    let addr = quic_address(&server, &token).await;
    let mut client = QuicClient::connect(&ConnectOptions::new(addr, "localhost", ca_pem), &token).await.expect("QUIC");
    let ssrc = 0x05B1_0002;
    let tracks =
        client.attach_call_media(&call_id, vec![MediaTrack::opus(ssrc)]).await.expect("media.attach while ringing");
    assert_eq!(tracks.len(), 1, "the call's mix: {tracks:?}");
    let mut rx = client.take_rtp_receiver().expect("RTP queue");
    let media_port = server_rtp_port_logged_by(dir.path(), "uas_early_media_").await;
    let to = SocketAddr::from(([127, 0, 0, 1], media_port));
    // 1.5 s of the carrier's tone, all before the 200 (SIPp answers 2.5 s after its 183; the
    // test server rings for 3 s).
    let until = Instant::now() + Duration::from_millis(1500);
    let (_, heard_early) = tokio::join!(phone_talks(&phone, to, Duration::from_millis(1500)), collect(&mut rx, until));
    let answered_already = tokio::time::timeout(Duration::from_millis(50), ws.recv_type("call.connected")).await;
    assert!(answered_already.is_err(), "the phone answered before the early media was checked");
    let pcm = crate::support::decode(&heard_early);
    assert!(pcm.len() > 48_000, "the caller got {} packets of early media", heard_early.len());
    let tail = &pcm[24_000..];
    let (phone_tone, own) = (tone_amplitude(tail, PHONE_HZ), tone_amplitude(tail, USER_HZ));
    println!("before the answer: {} packets, 1000 Hz amplitude {phone_tone:.0}, 440 Hz {own:.0}", heard_early.len());
    assert!(phone_tone > 1000.0, "the caller does not hear the carrier's early media ({phone_tone:.0})");
    let Ok(connected) = tokio::time::timeout(Duration::from_secs(4), ws.recv_type("call.connected")).await else {
        let log = std::fs::read_to_string(dir.path().join("palaver.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        panic!("no call.connected after the 200; server log:\n{}", tail.join("\n"));
    };
    assert_eq!(connected["callId"], call_id.as_str(), "{connected}");
    // After the 200, the same media goes on.
    let until = Instant::now() + Duration::from_millis(2500);
    let (_, heard_after) = tokio::join!(phone_talks(&phone, to, Duration::from_millis(2500)), collect(&mut rx, until));
    assert_hears("the caller, after the answer", &heard_after, PHONE_HZ, USER_HZ, 1000.0);
    ws.send(serde_json::json!({"type":"call.hangUp","callId":call_id})).await;
    finished(carrier, "the carrier's early media, PRACK, answer and BYE").await;
    let log = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .find(|e| {
            e.file_name().to_string_lossy().starts_with("uas_early_media_")
                && e.file_name().to_string_lossy().ends_with("_logs.log")
        })
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .unwrap_or_default();
    assert!(log.contains("PRACKED 7001 "), "palaver PRACKs the reliable 183: {log}");
}
