//! The media side of the SIP trunk gateway against the real binary:
//! - SDES-SRTP on a trunk leg whose media endpoint is an independent SRTP implementation
//!   (webrtc-rs's `webrtc-srtp`, keyed only from the SDP). SIPp (`tests/sipp/call_srtp.xml`)
//!   is the carrier's signaling: it offers RTP/SAVP with this test's `a=crypto` and logs
//!   palaver's answer (media port, profile, palaver's own `a=crypto`). The called directory
//!   user answers over QUIC and sends a 440 Hz Opus tone; the phone sends a 1 kHz µ-law tone
//!   under SRTP. Each decodes the other.
//! - DTLS-SRTP the same way (`call_dtls.xml`: `UDP/TLS/RTP/SAVP`, the test's certificate
//!   fingerprint, `a=setup:active`): the test runs the DTLS client (rtc-dtls) on the phone's
//!   socket against palaver's answer, then `webrtc-srtp` with the exported keys.
//! - DTMF out: Call Automation answers a phone call and `sendDtmfTones` to the phone; the
//!   phone's socket decodes the RFC 4733 digits in palaver's mix stream.
//! - Inbound early media (`early_media.xml`): a trunk with `ringback = "us"`; the phone's
//!   socket decodes the ringback from palaver's reliable 183 while the user's phone rings,
//!   then, on the same port, SSRC and sequence, the user's tone after the 200.
//! - Hold audio: the same scenario to a number routed to a call queue with `hold_audio`; the
//!   phone decodes the WAV file's tone on the 183, then the agent after the 200.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use palaver_e2e::{Server, ServerOptions, TempDir};
use palaver_sfu::mixer::g711::{G711_FRAME_BYTES, Law};
use palaver_sfu::rtp::RtpHeader;
use palaver_sfu::rtp::telephone_event::{TelephoneEvent, ToneDetector};
use palaver_sfu::webrtc::dtls::{DtlsIdentity, DtlsSession};
use tokio::net::UdpSocket;
use webrtc_srtp::context::Context as SrtpContext;
use webrtc_srtp::protection_profile::ProtectionProfile;

use crate::signaling::connect;
use crate::sip::{
    event_receiver, finished, require_sipp, server_rtp_port, server_rtp_port_logged_by, sipp_to, user_answers,
};
use crate::support::{assert_hears, tone_amplitude};

pub(crate) const USER: &str = "0b000000-0000-4000-8000-0000000005b2";
pub(crate) const NUMBER: &str = "+14255550100";
pub(crate) const PHONE_HZ: f32 = 1000.0;
pub(crate) const USER_HZ: f32 = 440.0;
const AMPLITUDE: f32 = 6000.0;
/// The carrier's SDES key (RFC 4568's example key and salt).
const CARRIER_KEY: &str = "PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR";

/// A server whose one trunk (127.0.0.1) has PCMU and `srtp = "{srtp}"`, `NUMBER` routed to
/// `USER`.
async fn start(prefix: &str, srtp: &str) -> (TempDir, Server, SocketAddr) {
    let trunk = format!("codecs = [\"PCMU\"]\nsrtp = \"{srtp}\"");
    start_trunk(prefix, &trunk, NUMBER, &format!("user:8:orgid:{USER}"), "").await
}

/// A server whose one trunk (127.0.0.1) has `trunk_lines` (`codecs`, `srtp`, `ringback`, …),
/// `number` routed to `route`, and `before` (TOML) ahead of the `[sip]` table (also used by
/// `call_automation_phone_moves.rs`).
pub(crate) async fn start_trunk(
    prefix: &str,
    trunk_lines: &str,
    number: &str,
    route: &str,
    before: &str,
) -> (TempDir, Server, SocketAddr) {
    require_sipp();
    let dir = TempDir::new(prefix);
    let config = format!(
        r#"{before}
[sip]
listen = "127.0.0.1:0"
options_interval_secs = 0

[[sip.trunks]]
name = "carrier"
address = "127.0.0.1:9"
allow_from = ["127.0.0.1"]
{trunk_lines}

[[phone_numbers]]
number = "{number}"
route = "{route}"
"#
    );
    let server = Server::start_in(dir.path(), ServerOptions { config_toml: Some(config), ..Default::default() }).await;
    let sip = server.sip_addr().expect("PALAVER_SIP line");
    (dir, server, sip)
}

/// What palaver's answer said, from the SIPp log: media port, profile and its SDES key.
struct Answer {
    port: u16,
    profile: String,
    suite: String,
    key: Vec<u8>,
}

async fn answer_from_log(dir: &Path) -> Answer {
    let line = logged_answer(dir, "call_srtp_").await;
    let words: Vec<&str> = line.split_whitespace().collect();
    // <port> <profile> SERVER_CRYPTO <tag> <suite> <key> END
    assert!(words.len() >= 7 && words[2] == "SERVER_CRYPTO", "{line}");
    Answer {
        port: words[0].parse().expect("port"),
        profile: words[1].to_owned(),
        suite: words[4].to_owned(),
        key: base64::engine::general_purpose::STANDARD.decode(words[5]).expect("base64 key"),
    }
}

/// What SIPp logged after `SERVER_RTP_PORT ` in the scenario log whose name starts with
/// `prefix` (its `<log>` of palaver's answer), once it is there.
async fn logged_answer(dir: &Path, prefix: &str) -> String {
    logged_after(dir, prefix, "SERVER_RTP_PORT ").await
}

/// What SIPp logged after `marker` in the scenario log whose name starts with `prefix`.
pub(crate) async fn logged_after(dir: &Path, prefix: &str, marker: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if !(name.starts_with(prefix) && name.ends_with("_logs.log")) {
                continue;
            }
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            if let Some(line) = text.split(marker).nth(1) {
                return line.lines().next().unwrap_or_default().to_owned();
            }
        }
        assert!(Instant::now() < deadline, "SIPp never logged {marker}(palaver's answer)");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The phone under SRTP: protects its µ-law tone with `tx`, unprotects what arrives with
/// `rx`; returns the decoded samples (repeated to 48 kHz), the packets that authenticated and
/// those that did not.
async fn secure_phone_talks(
    socket: &UdpSocket,
    to: SocketAddr,
    tx: &mut SrtpContext,
    rx: &mut SrtpContext,
    duration: Duration,
) -> (Vec<i16>, usize, usize) {
    let heard = phone_talks_on(socket, to, Some((tx, rx)), duration).await;
    (heard.pcm, heard.good, heard.bad)
}

/// What a phone heard: µ-law decoded and repeated to 48 kHz, packets that authenticated (all,
/// in plain RTP) and those that did not, and each packet's (sequence number, SSRC).
pub(crate) struct Heard {
    pub(crate) pcm: Vec<i16>,
    pub(crate) good: usize,
    pub(crate) bad: usize,
    pub(crate) stream: Vec<(u16, u32)>,
    /// When each of `stream`'s packets arrived.
    pub(crate) arrivals: Vec<Instant>,
}

/// The phone: sends `duration` of its µ-law tone to `to` (under SRTP with `crypto`'s sending
/// context, else plain) and decodes the µ-law that arrives (unprotected with its receiving
/// context).
pub(crate) async fn phone_talks_on(
    socket: &UdpSocket,
    to: SocketAddr,
    mut crypto: Option<(&mut SrtpContext, &mut SrtpContext)>,
    duration: Duration,
) -> Heard {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let (mut seq, mut timestamp, mut phase) = (1000u16, 8000u32, 0f32);
    let step = std::f32::consts::TAU * PHONE_HZ / 8000.0;
    let until = Instant::now() + duration;
    let mut heard = Heard { pcm: Vec::new(), good: 0, bad: 0, stream: Vec::new(), arrivals: Vec::new() };
    let mut buf = [0u8; 1500];
    while Instant::now() < until {
        tick.tick().await;
        let mut packet = vec![0x80, 0];
        packet.extend_from_slice(&seq.to_be_bytes());
        packet.extend_from_slice(&timestamp.to_be_bytes());
        packet.extend_from_slice(&0x05EC_0001_u32.to_be_bytes());
        for _ in 0..G711_FRAME_BYTES {
            packet.push(Law::Mu.encode((AMPLITUDE * phase.sin()) as i16));
            phase = (phase + step) % std::f32::consts::TAU;
        }
        let wire = match crypto.as_mut() {
            Some((tx, _)) => tx.encrypt_rtp(&packet).expect("webrtc-srtp protects").to_vec(),
            None => packet,
        };
        socket.send_to(&wire, to).await.expect("send RTP");
        (seq, timestamp) = (seq.wrapping_add(1), timestamp.wrapping_add(G711_FRAME_BYTES as u32));
        while let Ok(Ok((n, _))) = tokio::time::timeout(Duration::from_millis(1), socket.recv_from(&mut buf)).await {
            if n < 12 || buf[0] >> 6 != 2 || (200..=206).contains(&buf[1]) {
                continue; // SRTCP
            }
            let clear = match crypto.as_mut() {
                Some((_, rx)) => rx.decrypt_rtp(&buf[..n]).map(|c| c.to_vec()),
                None => Ok(buf[..n].to_vec()),
            };
            match clear {
                Ok(clear) if clear[1] & 0x7f == 0 => {
                    heard.good += 1;
                    let header = RtpHeader::parse(&clear).expect("RTP");
                    heard.stream.push((header.sequence, header.ssrc));
                    heard.arrivals.push(Instant::now());
                    for &b in &clear[12..] {
                        heard.pcm.extend(std::iter::repeat_n(Law::Mu.decode(b), 6));
                    }
                }
                Ok(_) => {}
                Err(_) => heard.bad += 1,
            }
        }
    }
    heard
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sdes_srtp_trunk_call_is_heard_both_ways_through_an_independent_srtp_stack() {
    let (dir, server, sip) = start("palaver-e2e-sipmedia-srtp", "required").await;
    let token = server.directory_user_token(USER, "Sam Secure").await;
    let mut ws = connect(&server, &token).await;
    let phone = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let rtp_port = phone.local_addr().unwrap().port().to_string();
    let crypto = format!("AES_CM_128_HMAC_SHA1_80 inline:{CARRIER_KEY}");
    let extra = ["-m", "1", "-trace_logs", "-set", "rtp_port", &rtp_port, "-set", "crypto", &crypto];
    let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
    let carrier = sipp_to(NUMBER, sip, "call_srtp.xml", "127.0.0.1", &extra, dir.path());
    let incoming = ws.recv_type("call.incoming").await;
    let call_id = incoming["callId"].as_str().unwrap().to_owned();
    let user = user_answers(&server, &token, &call_id, Duration::from_secs(4));
    let phone_side = async {
        let answer = answer_from_log(dir.path()).await;
        assert_eq!((answer.profile.as_str(), answer.suite.as_str()), ("RTP/SAVP", "AES_CM_128_HMAC_SHA1_80"));
        assert_eq!(answer.key.len(), 30, "a 16-byte key and a 14-byte salt");
        let carrier = base64::engine::general_purpose::STANDARD.decode(CARRIER_KEY).unwrap();
        assert_ne!(answer.key, carrier, "palaver sends under its own key");
        let profile = ProtectionProfile::Aes128CmHmacSha1_80;
        let mut tx = SrtpContext::new(&carrier[..16], &carrier[16..], profile, None, None).unwrap();
        let mut rx = SrtpContext::new(&answer.key[..16], &answer.key[16..], profile, None, None).unwrap();
        let to = SocketAddr::from(([127, 0, 0, 1], answer.port));
        secure_phone_talks(&phone, to, &mut tx, &mut rx, Duration::from_secs(3)).await
    };
    let ((client, user_heard), (phone_heard, good, bad)) = tokio::join!(user, phone_side);
    // The user hears the phone's tone: palaver unprotected webrtc-srtp's packets.
    assert_hears("the directory user", &user_heard, PHONE_HZ, USER_HZ, 1000.0);
    // The phone hears the user's tone: webrtc-srtp unprotected palaver's packets.
    assert!(good >= 100 && bad == 0, "the phone authenticated {good} SRTP packets, {bad} failed");
    let tail = &phone_heard[phone_heard.len() / 3..];
    let (other, own) = (tone_amplitude(tail, USER_HZ), tone_amplitude(tail, PHONE_HZ));
    println!("SRTP phone: {good} packets; {USER_HZ} Hz amplitude {other:.0}, own {PHONE_HZ} Hz {own:.0}");
    assert!(other > 1000.0, "the phone does not hear the user's tone ({other:.0})");
    assert!(own < other / 10.0, "the phone hears itself ({own:.0} vs {other:.0})");
    finished(carrier, "SDES-SRTP call").await;
    let ended = ws.recv_type("call.ended").await;
    assert_eq!(ended["callId"], call_id.as_str());
    client.close().await;
}

/// What palaver's DTLS answer said (from the SIPp log): media port, profile, fingerprint, setup.
async fn dtls_answer_from_log(dir: &Path) -> (u16, String, String, String) {
    let line = logged_answer(dir, "call_dtls_").await;
    // <port> <profile> SERVER_DTLS <fingerprint> <setup> END
    let words: Vec<&str> = line.split_whitespace().collect();
    assert!(words.len() >= 5 && words[2] == "SERVER_DTLS", "{line}");
    (words[0].parse().expect("port"), words[1].to_owned(), words[3].to_owned(), words[4].to_owned())
}

/// SIPp as a DTLS-SRTP carrier (`scenario`): its SDP names `phone`'s socket and the
/// fingerprint of the trunk's certificate `identity`.
fn dtls_carrier(
    sip: SocketAddr,
    scenario: &str,
    phone: &UdpSocket,
    identity: &DtlsIdentity,
    dir: &Path,
) -> tokio::process::Child {
    let rtp_port = phone.local_addr().unwrap().port().to_string();
    let extra =
        ["-m", "1", "-trace_logs", "-set", "rtp_port", &rtp_port, "-set", "fingerprint", identity.fingerprint()]
            .map(String::from);
    sipp_to(NUMBER, sip, scenario, "127.0.0.1", &extra, dir)
}

/// The phone's sending and receiving SRTP contexts (webrtc-srtp) from the keys its DTLS
/// handshake exported.
fn srtp_contexts(keys: &palaver_sfu::srtp::SrtpKeys) -> (SrtpContext, SrtpContext) {
    let profile = match keys.profile {
        palaver_sfu::srtp::Profile::AeadAes128Gcm => ProtectionProfile::AeadAes128Gcm,
        palaver_sfu::srtp::Profile::Aes128CmHmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
        other => panic!("unexpected DTLS-SRTP profile {other:?}"),
    };
    let tx = SrtpContext::new(&keys.local_master_key, &keys.local_master_salt, profile, None, None).unwrap();
    let rx = SrtpContext::new(&keys.remote_master_key, &keys.remote_master_salt, profile, None, None).unwrap();
    (tx, rx)
}

/// The phone's DTLS client on `socket` against palaver's media port: returns the SRTP keys it
/// exported once palaver's certificate matched `server_fingerprint`.
async fn dtls_handshake(
    socket: &UdpSocket,
    server: SocketAddr,
    server_fingerprint: &str,
    identity: &DtlsIdentity,
) -> palaver_sfu::srtp::SrtpKeys {
    let (mut session, mut flight) =
        DtlsSession::client(identity, server_fingerprint, Instant::now(), server).expect("DTLS client");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 2048];
    loop {
        for datagram in flight.drain(..) {
            socket.send_to(&datagram, server).await.expect("send DTLS");
        }
        match tokio::time::timeout(Duration::from_millis(100), socket.recv_from(&mut buf)).await {
            Ok(Ok((n, from))) if n > 0 && (20..=63).contains(&buf[0]) => {
                let out = session.handle(Instant::now(), from, &buf[..n]).expect("palaver's DTLS flight");
                flight.extend(out.transmit);
                if let Some(keys) = out.keys {
                    for datagram in flight.drain(..) {
                        socket.send_to(&datagram, server).await.expect("send DTLS");
                    }
                    return keys;
                }
            }
            Ok(_) => {} // not DTLS (nothing else comes before the keys)
            Err(_) => flight.extend(session.poll(Instant::now(), server)),
        }
        assert!(Instant::now() < deadline, "the DTLS handshake with palaver did not complete");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dtls_srtp_trunk_call_is_heard_both_ways() {
    let (dir, server, sip) = start("palaver-e2e-sipmedia-dtls", "dtls").await;
    let token = server.directory_user_token(USER, "Dana Dtls").await;
    let mut ws = connect(&server, &token).await;
    let phone = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let identity = DtlsIdentity::generate(true).expect("the trunk's certificate");
    let carrier = dtls_carrier(sip, "call_dtls.xml", &phone, &identity, dir.path());
    let incoming = ws.recv_type("call.incoming").await;
    let call_id = incoming["callId"].as_str().unwrap().to_owned();
    let user = user_answers(&server, &token, &call_id, Duration::from_secs(4));
    let phone_side = async {
        let (port, profile, fingerprint, setup) = dtls_answer_from_log(dir.path()).await;
        assert_eq!((profile.as_str(), setup.as_str()), ("UDP/TLS/RTP/SAVP", "passive"));
        let to = SocketAddr::from(([127, 0, 0, 1], port));
        let keys = dtls_handshake(&phone, to, &fingerprint, &identity).await;
        let (mut tx, mut rx) = srtp_contexts(&keys);
        let heard = secure_phone_talks(&phone, to, &mut tx, &mut rx, Duration::from_secs(3)).await;
        (heard, keys.profile)
    };
    let ((client, user_heard), ((phone_heard, good, bad), profile)) = tokio::join!(user, phone_side);
    assert_hears("the directory user", &user_heard, PHONE_HZ, USER_HZ, 1000.0);
    assert!(good >= 100 && bad == 0, "the phone authenticated {good} SRTP packets, {bad} failed");
    let tail = &phone_heard[phone_heard.len() / 3..];
    let (other, own) = (tone_amplitude(tail, USER_HZ), tone_amplitude(tail, PHONE_HZ));
    println!(
        "DTLS-SRTP phone ({profile:?}): {good} packets; {USER_HZ} Hz amplitude {other:.0}, own {PHONE_HZ} Hz {own:.0}"
    );
    assert!(other > 1000.0, "the phone does not hear the user's tone ({other:.0})");
    assert!(own < other / 10.0, "the phone hears itself ({own:.0} vs {other:.0})");
    finished(carrier, "DTLS-SRTP call").await;
    let ended = ws.recv_type("call.ended").await;
    assert_eq!(ended["callId"], call_id.as_str());
    client.close().await;
}

/// DTLS-SRTP across a hold and a resume (`call_dtls_hold.xml`): the trunk keeps its
/// fingerprint and `a=setup:active`, so it keeps its association and never handshakes again;
/// palaver keeps the leg's transport, sends nothing while held, and after the resume the keys
/// of the first handshake carry the call both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dtls_srtp_trunk_keeps_its_association_across_hold_and_resume() {
    let (dir, server, sip) = start("palaver-e2e-sipmedia-dtls-hold", "dtls").await;
    let token = server.directory_user_token(USER, "Hal Hold").await;
    let mut ws = connect(&server, &token).await;
    let phone = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let identity = DtlsIdentity::generate(true).expect("the trunk's certificate");
    let carrier = dtls_carrier(sip, "call_dtls_hold.xml", &phone, &identity, dir.path());
    let incoming = ws.recv_type("call.incoming").await;
    let call_id = incoming["callId"].as_str().unwrap().to_owned();
    let user = user_answers(&server, &token, &call_id, Duration::from_secs(7));
    let phone_side = async {
        let (port, _, fingerprint, _) = dtls_answer_from_log(dir.path()).await;
        let to = SocketAddr::from(([127, 0, 0, 1], port));
        // One handshake, at the start of the call.
        let keys = dtls_handshake(&phone, to, &fingerprint, &identity).await;
        let (mut tx, mut rx) = srtp_contexts(&keys);
        let heard = phone_talks_on(&phone, to, Some((&mut tx, &mut rx)), Duration::from_millis(6300)).await;
        (port, fingerprint, heard)
    };
    let ((client, user_heard), (port, fingerprint, heard)) = tokio::join!(user, phone_side);
    let hold = logged_after(dir.path(), "call_dtls_hold_", "HOLD_ANSWER ").await;
    let resume = logged_after(dir.path(), "call_dtls_hold_", "RESUME_ANSWER ").await;
    // The longest silence the phone heard is the hold; what came after it is the resume.
    let (at, gap) = heard
        .arrivals
        .windows(2)
        .enumerate()
        .map(|(i, w)| (i + 1, w[1].duration_since(w[0])))
        .max_by_key(|(_, gap)| *gap)
        .expect("packets");
    let after_resume = heard.good - at;
    let tail = &heard.pcm[heard.pcm.len() * 2 / 3..];
    let (other, own) = (tone_amplitude(tail, USER_HZ), tone_amplitude(tail, PHONE_HZ));
    println!(
        "DTLS across hold: hold answered `{hold}`, resume `{resume}`; the phone got {} packets under the first \
         handshake's keys ({} failed), none for {gap:?} (the hold), {after_resume} after the resume; \
         the user's {USER_HZ} Hz at {other:.0} after it (own {own:.0})",
        heard.good, heard.bad
    );
    assert!(hold.starts_with(&format!("{port} recvonly {fingerprint}")), "hold answer: {hold}");
    assert!(resume.starts_with(&format!("{port} sendrecv {fingerprint}")), "resume answer: {resume}");
    assert!(gap >= Duration::from_millis(1000), "nothing is sent while the trunk holds ({gap:?})");
    assert!(after_resume >= 60 && heard.bad == 0, "{after_resume} packets after the resume, {} failed", heard.bad);
    assert!(other > 1000.0, "the phone hears the user after the resume ({other:.0})");
    assert_hears("the directory user", &user_heard, PHONE_HZ, USER_HZ, 800.0);
    finished(carrier, "DTLS-SRTP call with hold and resume").await;
    let ended = ws.recv_type("call.ended").await;
    assert_eq!(ended["callId"], call_id.as_str());
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_automation_send_dtmf_tones_reach_the_phone_as_rfc_4733() {
    let pcmu = PhoneStream { codec: "PCMU", audio_pt: 0, tone_pt: 101, tick: 160, inbound_digit: true };
    call_automation_sends_dtmf_to_the_phone("palaver-e2e-sipmedia-dtmf", "call.xml", pcmu).await;
}

/// DTMF out to an Opus trunk: `telephone-event/48000` (the trunk's payload type 102) is
/// agreed and the tones go out on the Opus mix stream at 48 kHz (960 per tick).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_automation_send_dtmf_tones_reach_an_opus_trunk_at_48_khz() {
    let opus = PhoneStream { codec: "opus", audio_pt: 111, tone_pt: 102, tick: 960, inbound_digit: false };
    call_automation_sends_dtmf_to_the_phone("palaver-e2e-sipmedia-dtmf-opus", "call_opus.xml", opus).await;
}

/// An Opus trunk that offers only `telephone-event/8000` (as many SBCs do): it is agreed
/// (the scenario checks the answer), the tones out go on the Opus stream with durations in
/// 8 kHz units (160 per tick), and the phone's own RFC 4733 digit at 8 kHz reaches Call
/// Automation's `recognize`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opus_trunk_with_only_8_khz_telephone_events_gets_dtmf_both_ways() {
    let opus = PhoneStream { codec: "opus", audio_pt: 111, tone_pt: 101, tick: 160, inbound_digit: true };
    call_automation_sends_dtmf_to_the_phone("palaver-e2e-sipmedia-dtmf-opus8k", "call_opus_te8k.xml", opus).await;
}

/// What a phone's stream from palaver carries: the trunk's codec and its audio and
/// telephone-event payload types, and RTP timestamp units per 20 ms.
#[derive(Debug, Clone, Copy)]
struct PhoneStream {
    codec: &'static str,
    audio_pt: u8,
    tone_pt: u8,
    /// Duration units per 20 ms in the telephone-event clock.
    tick: u32,
    /// The phone then presses 5 (RFC 4733, payload type 101, 8 kHz durations) and Call
    /// Automation's `recognize` must hear it.
    inbound_digit: bool,
}

/// SIPp (`scenario`) calls a number routed to Call Automation on a trunk with `stream.codec`;
/// the test answers and `sendDtmfTones` one, two, pound to the phone, whose socket must
/// decode them from palaver's one mix stream.
async fn call_automation_sends_dtmf_to_the_phone(prefix: &str, scenario: &str, stream: PhoneStream) {
    const APP_NUMBER: &str = "+14255550188";
    let (hook_port, events) = event_receiver().await;
    let subscription = format!(
        r#"[events.delivery]
poll_interval_ms = 50

[[events.subscriptions]]
name = "incoming"
endpoint = "http://127.0.0.1:{hook_port}/hook"
event_types = ["Microsoft.Communication.IncomingCall"]
"#
    );
    let trunk = format!("codecs = [\"{}\"]", stream.codec);
    let (dir, server, sip) = start_trunk(prefix, &trunk, APP_NUMBER, "call-automation", &subscription).await;
    let phone = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let rtp_port = phone.local_addr().unwrap().port().to_string();
    let extra =
        ["-m", "1", "-trace_logs", "-set", "rtp_port", &rtp_port, "-set", "hangup", "palaver"].map(String::from);
    let carrier = sipp_to(APP_NUMBER, sip, scenario, "127.0.0.1", &extra, dir.path());
    let incoming = wait_for(&events, |e| e["eventType"] == "Microsoft.Communication.IncomingCall").await;
    let answer = serde_json::json!({
        "incomingCallContext": incoming["data"]["incomingCallContext"],
        "callbackUri": format!("http://127.0.0.1:{hook_port}/callbacks"),
    });
    let (status, connection) = server
        .signed(reqwest::Method::POST, "/calling/callConnections:answer?api-version=2025-05-15", &answer.to_string())
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{connection}");
    let ccid = connection["callConnectionId"].as_str().expect("callConnectionId").to_owned();
    let media_port = server_rtp_port(dir.path()).await;
    // The phone hears the mix (in its codec) before anything is sent.
    let mut buf = [0u8; 1500];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), phone.recv_from(&mut buf)).await.unwrap().unwrap();
    assert_eq!(buf[1] & 0x7F, stream.audio_pt, "the mix reaches the phone first ({n} bytes)");
    let send = serde_json::json!({
        "tones": ["one", "two", "pound"],
        "targetParticipant": {"rawId": "4:+14255550199", "phoneNumber": {"value": "+14255550199"}},
        "operationContext": "dial-extension",
    });
    let path = format!("/calling/callConnections/{ccid}:sendDtmfTones?api-version=2025-05-15");
    let (status, body) = server.signed(reqwest::Method::POST, &path, &send.to_string()).await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{body}");
    // What the phone receives for the next 1.5 s: one RTP stream, audio and telephone-events.
    let mut packets: Vec<Vec<u8>> = Vec::new();
    let until = tokio::time::Instant::now() + Duration::from_millis(1500);
    while let Ok(Ok((n, _))) = tokio::time::timeout_at(until, phone.recv_from(&mut buf)).await {
        if n >= 12 && buf[0] >> 6 == 2 && !(200..=206).contains(&buf[1]) {
            packets.push(buf[..n].to_vec());
        }
    }
    let headers: Vec<RtpHeader> = packets.iter().map(|p| RtpHeader::parse(p).expect("RTP")).collect();
    assert!(headers.windows(2).all(|w| w[0].ssrc == w[1].ssrc), "one SSRC: tones share the mix's stream");
    let gaps = headers.windows(2).filter(|w| w[1].sequence != w[0].sequence.wrapping_add(1)).count();
    let mut detector = ToneDetector::default();
    let (mut digits, mut tone_packets, mut markers) = (Vec::new(), 0, 0);
    let mut longest = 0;
    for (h, p) in headers.iter().zip(&packets) {
        if h.payload_type != stream.tone_pt {
            assert_eq!(h.payload_type, stream.audio_pt, "audio or telephone-event only");
            continue;
        }
        tone_packets += 1;
        markers += usize::from(h.marker);
        let event = TelephoneEvent::parse(h.payload(p)).expect("a 4-byte event");
        assert_eq!(event.volume, 10);
        assert_eq!(u32::from(event.duration) % stream.tick, 0, "durations in whole ticks of the stream's clock");
        longest = longest.max(u32::from(event.duration));
        digits.extend(detector.on_packet(h.timestamp, &event).map(|e| e.event));
    }
    println!(
        "DTMF out ({}): {} packets to the phone, {tone_packets} telephone-events ({markers} markers, payload type {}, \
         longest duration {longest}), digits {digits:?}, {gaps} sequence gaps",
        stream.codec,
        packets.len(),
        stream.tone_pt
    );
    assert!(longest >= 5 * stream.tick, "a 100 ms tone lasts at least five ticks of {}", stream.tick);
    assert_eq!(digits, [1, 2, 11], "the phone decodes one, two, pound");
    assert_eq!(markers, 3, "a marker on each tone's first packet");
    assert_eq!(gaps, 0, "tones take the mix's place in one sequence space");
    wait_for(&events, |e| e["type"].as_str().is_some_and(|t| t.ends_with("SendDtmfTonesCompleted"))).await;
    if stream.inbound_digit {
        crate::sip::recognize_one_phone_digit(&server, &ccid).await;
        crate::sip::send_digit(&phone, SocketAddr::from(([127, 0, 0, 1], media_port)), 5).await;
        let done = |e: &serde_json::Value| {
            e["type"].as_str().is_some_and(|t| t.ends_with("RecognizeCompleted") || t.ends_with("RecognizeFailed"))
        };
        let completed = wait_for(&events, done).await;
        println!("DTMF in ({}): recognize got {}", stream.codec, completed["data"]["dtmfResult"]);
        assert_eq!(completed["data"]["dtmfResult"]["tones"], serde_json::json!(["five"]), "{completed}");
    }
    let path = format!("/calling/callConnections/{ccid}?api-version=2025-05-15");
    let (status, body) = server.signed(reqwest::Method::DELETE, &path, "").await;
    assert!(status.is_success(), "{status} {body}");
    finished(carrier, "a Call Automation call that sent DTMF to the phone").await;
}

/// The first event `events` received that matches `wanted` (within 20 s).
async fn wait_for(
    events: &std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    wanted: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(event) = events.lock().unwrap().iter().find(|e| wanted(e)) {
            return event.clone();
        }
        assert!(Instant::now() < deadline, "the awaited event never came");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ringing_call_hears_ringback_on_the_183_and_the_answer_continues_on_it() {
    let route = format!("user:8:orgid:{USER}");
    let trunk = "codecs = [\"PCMU\"]\nsrtp = \"off\"\nringback = \"us\"";
    let (dir, server, sip) = start_trunk("palaver-e2e-sipmedia-early", trunk, NUMBER, &route, "").await;
    let token = server.directory_user_token(USER, "Rita Ringback").await;
    let mut ws = connect(&server, &token).await;
    let phone = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let rtp_port = phone.local_addr().unwrap().port().to_string();
    let extra = ["-m", "1", "-trace_logs", "-set", "rtp_port", &rtp_port].map(String::from);
    let carrier = sipp_to(NUMBER, sip, "early_media.xml", "127.0.0.1", &extra, dir.path());
    let incoming = ws.recv_type("call.incoming").await;
    let call_id = incoming["callId"].as_str().unwrap().to_owned();
    // While the user's phone rings: what palaver's 183 session carries to the phone.
    let early = logged_after(dir.path(), "early_media_", "SERVER_EARLY_PORT ").await;
    let early_port: u16 = early.split_whitespace().next().and_then(|p| p.parse().ok()).expect("port");
    let to = SocketAddr::from(([127, 0, 0, 1], early_port));
    let ringing = phone_talks_on(&phone, to, None, Duration::from_millis(1500)).await;
    let (low, high) = (tone_amplitude(&ringing.pcm, 440.0), tone_amplitude(&ringing.pcm, 480.0));
    let phone_heard_by_nobody = ringing.good;
    println!(
        "early media: {} µ-law packets before the answer (183 {early}); ringback 440 Hz at {low:.0}, 480 Hz at {high:.0}",
        ringing.good
    );
    assert!(phone_heard_by_nobody >= 60, "ringback packets before the answer: {}", ringing.good);
    assert!(low > 1000.0 && high > 1000.0, "the phone hears the US ringback ({low:.0}, {high:.0})");
    // The user answers: the 200 continues on the 183's session.
    let user = user_answers(&server, &token, &call_id, Duration::from_secs(3));
    let phone_side = phone_talks_on(&phone, to, None, Duration::from_secs(3));
    let ((client, user_heard), answered) = tokio::join!(user, phone_side);
    let answer_port = server_rtp_port_logged_by(dir.path(), "early_media_").await;
    assert_eq!(answer_port, early_port, "the 200's SDP is the 183's");
    assert_hears("the directory user", &user_heard, PHONE_HZ, USER_HZ, 1000.0);
    let tail = &answered.pcm[answered.pcm.len() / 3..];
    let (user_tone, ring_after) = (tone_amplitude(tail, USER_HZ), tone_amplitude(tail, 480.0));
    let stream: Vec<(u16, u32)> = ringing.stream.iter().chain(&answered.stream).copied().collect();
    let gaps = stream.windows(2).filter(|w| w[1].0 != w[0].0.wrapping_add(1)).count();
    println!(
        "after the answer: {} packets; the user's {USER_HZ} Hz at {user_tone:.0}, ringback 480 Hz {ring_after:.0}; \
         one SSRC {:#x} across the answer, {gaps} sequence gaps in {} packets",
        answered.good,
        stream[0].1,
        stream.len()
    );
    assert!(user_tone > 1000.0, "the phone hears the user after the 200 ({user_tone:.0})");
    assert!(ring_after < user_tone / 4.0, "the ringback stopped ({ring_after:.0})");
    assert!(stream.windows(2).all(|w| w[0].1 == w[1].1), "one SSRC before and after the answer");
    assert!(gaps <= 2, "one sequence space across the answer ({gaps} gaps)");
    finished(carrier, "early media call").await;
    let ended = ws.recv_type("call.ended").await;
    assert_eq!(ended["callId"], call_id.as_str());
    client.close().await;
}

/// A 16-bit PCM mono WAV of `seconds` of `hz` at `rate`, amplitude 6,000.
pub(crate) fn tone_wav(rate: u32, hz: f32, seconds: u32) -> Vec<u8> {
    let samples = rate * seconds;
    let data: Vec<u8> = (0..samples)
        .map(|i| ((std::f32::consts::TAU * hz * i as f32 / rate as f32).sin() * 6000.0) as i16)
        .flat_map(i16::to_le_bytes)
        .collect();
    let mut wav = b"RIFF".to_vec();
    wav.extend((36 + data.len() as u32).to_le_bytes());
    wav.extend(b"WAVEfmt ");
    wav.extend(16u32.to_le_bytes());
    wav.extend(1u16.to_le_bytes()); // PCM
    wav.extend(1u16.to_le_bytes()); // mono
    wav.extend(rate.to_le_bytes());
    wav.extend((rate * 2).to_le_bytes());
    wav.extend(2u16.to_le_bytes());
    wav.extend(16u16.to_le_bytes());
    wav.extend(b"data");
    wav.extend((data.len() as u32).to_le_bytes());
    wav.extend(data);
    wav
}

/// Hold audio: a number routed to a call queue whose `hold_audio` is a 1 s WAV of 600 Hz
/// (16 kHz); the trunk has `ringback = "off"`. SIPp (`early_media.xml`, 100rel) gets a
/// reliable 183 with SDP; the phone's socket decodes the file's 600 Hz (looped) while the
/// queue's member is rung; the member answers over QUIC and the 200 continues on the 183's
/// session, where the phone now hears the member's 440 Hz and no more hold audio.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_waiting_in_a_queue_hears_its_hold_audio_then_the_agent_on_the_same_session() {
    const HOLD_HZ: f32 = 600.0;
    let files = TempDir::new("palaver-e2e-sipmedia-holdfiles");
    let wav = files.path().join("support-hold.wav");
    std::fs::write(&wav, tone_wav(16_000, HOLD_HZ, 1)).unwrap();
    let queue = format!(
        "[signaling.calls]\n[[signaling.calls.queues]]\napp_id = \"support\"\nmembers = [\"8:orgid:{USER}\"]\n\
         hold_audio = \"{}\"\n",
        wav.display()
    );
    let trunk = "codecs = [\"PCMU\"]\nsrtp = \"off\"\nringback = \"off\"";
    let (dir, server, sip) =
        start_trunk("palaver-e2e-sipmedia-hold", trunk, NUMBER, "queue:28:orgid:support", &queue).await;
    let token = server.directory_user_token(USER, "Quinn Queue").await;
    let mut ws = connect(&server, &token).await;
    let phone = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let rtp_port = phone.local_addr().unwrap().port().to_string();
    let extra = ["-m", "1", "-trace_logs", "-set", "rtp_port", &rtp_port].map(String::from);
    let carrier = sipp_to(NUMBER, sip, "early_media.xml", "127.0.0.1", &extra, dir.path());
    let incoming = ws.recv_type("call.incoming").await;
    let call_id = incoming["callId"].as_str().unwrap().to_owned();
    let early = logged_after(dir.path(), "early_media_", "SERVER_EARLY_PORT ").await;
    let early_port: u16 = early.split_whitespace().next().and_then(|p| p.parse().ok()).expect("port");
    let to = SocketAddr::from(([127, 0, 0, 1], early_port));
    let waiting = phone_talks_on(&phone, to, None, Duration::from_millis(2000)).await;
    let (hold, ringback) = (tone_amplitude(&waiting.pcm, HOLD_HZ), tone_amplitude(&waiting.pcm, 440.0));
    println!(
        "waiting in the queue: {} µ-law packets in 2 s on the 183's session ({early}); hold audio {HOLD_HZ} Hz at \
         {hold:.0} (file at 6000), 440 Hz {ringback:.0}",
        waiting.good
    );
    assert!(waiting.good >= 80, "hold audio packets before the answer: {}", waiting.good);
    assert!(
        hold > 2000.0 && ringback < hold / 10.0,
        "the phone hears the queue's hold audio ({hold:.0}, {ringback:.0})"
    );
    let user = user_answers(&server, &token, &call_id, Duration::from_secs(3));
    let phone_side = phone_talks_on(&phone, to, None, Duration::from_secs(3));
    let ((client, user_heard), answered) = tokio::join!(user, phone_side);
    let answer_port = server_rtp_port_logged_by(dir.path(), "early_media_").await;
    assert_eq!(answer_port, early_port, "the 200's SDP is the 183's");
    assert_hears("the queue's member", &user_heard, PHONE_HZ, USER_HZ, 1000.0);
    let tail = &answered.pcm[answered.pcm.len() / 3..];
    let (agent, hold_after) = (tone_amplitude(tail, USER_HZ), tone_amplitude(tail, HOLD_HZ));
    println!("after the answer: the member's {USER_HZ} Hz at {agent:.0}, hold audio {hold_after:.0}");
    assert!(
        agent > 1000.0 && hold_after < agent / 4.0,
        "the agent replaces the hold audio ({agent:.0}, {hold_after:.0})"
    );
    finished(carrier, "a queue call with hold audio").await;
    let ended = ws.recv_type("call.ended").await;
    assert_eq!(ended["callId"], call_id.as_str());
    client.close().await;
}
