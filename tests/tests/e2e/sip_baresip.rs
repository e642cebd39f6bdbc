//! Issue 16's proof with a real SIP user agent: baresip (Debian `baresip-core`, installed by
//! `make prereqs`) places a call through the trunk to a number routed to a meeting. The
//! organizer admits it from the lobby; a second directory user in the meeting, on QUIC,
//! plays a 440 Hz Opus tone. baresip plays a 1000 Hz tone from a WAV file (`aufile`) and
//! records what it decodes (`sndfile`, an audio filter that dumps the decoded stream to a
//! WAV); the test decodes that recording and checks baresip heard the meeting's tone and not
//! its own, and that the QUIC participant heard baresip's. The call runs over UDP and, in a
//! second run, over SIP/TLS (`listen_tls`, a certificate signed by a CA of this test).
//!
//! When baresip is not installed (and `make prereqs` could not install it) the test says so
//! and passes without running.

use crate::signaling::connect;
use crate::support::{FRAME, ToneEncoder, assert_hears, collect, quic_address, tone_amplitude};
use palaver_client::{ConnectOptions, JoinTarget, MediaTrack, QuicClient};
use palaver_e2e::{Server, ServerOptions, TempDir};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::Command;

const MEETING_NUMBER: &str = "+14255550177";
const CALLER: &str = "+14255550199";
const ORGANIZER: (&str, &str) = ("0b000000-0000-4000-8000-0000000005c1", "Olga Organizer");
const SPEAKER: (&str, &str) = ("0b000000-0000-4000-8000-0000000005c2", "Sam Speaker");
const MEETING_HZ: f32 = 440.0;
const BARESIP_HZ: f32 = 1000.0;
const AMPLITUDE: f32 = 6000.0;
/// How long baresip runs before it hangs up and exits (`-t`).
const BARESIP_SECS: u64 = 6;

fn baresip_installed() -> bool {
    std::process::Command::new("baresip").arg("-h").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A mono 16-bit 8 kHz WAV of `seconds` of a `hz` tone (baresip's `aufile` source).
fn tone_wav(path: &Path, hz: f32, seconds: u32) {
    let samples = 8000 * seconds;
    let mut bytes = palaver_legs::wav::header(1, 8000, samples * 2).to_vec();
    let step = std::f32::consts::TAU * hz / 8000.0;
    for i in 0..samples {
        bytes.extend_from_slice(&((AMPLITUDE * (step * i as f32).sin()) as i16).to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

/// baresip's configuration directory: no sound card (the source is a WAV file, the player
/// the `aubridge` null device), PCMU, the decoded audio dumped to `<dir>/rec`.
fn baresip_config(dir: &Path, sip_port: u16, ca: Option<&Path>) -> std::path::PathBuf {
    let cfg = dir.join("baresip");
    std::fs::create_dir_all(cfg.join("rec")).unwrap();
    tone_wav(&cfg.join("tone.wav"), BARESIP_HZ, 20);
    let mut config = format!(
        "poll_method epoll\nsip_listen 127.0.0.1:{sip_port}\nnet_interface 127.0.0.1\n\
         audio_player aubridge,nil\naudio_alert aubridge,nil\naudio_source aufile,{}\n\
         module_path /usr/lib/baresip/modules\nmodule g711.so\nmodule aufile.so\nmodule aubridge.so\n\
         module sndfile.so\nmodule_app account.so\nmodule_app menu.so\nsnd_path {}\n",
        cfg.join("tone.wav").display(),
        cfg.join("rec").display()
    );
    if let Some(ca) = ca {
        config.push_str(&format!("sip_cafile {}\n", ca.display()));
    }
    std::fs::write(cfg.join("config"), config).unwrap();
    std::fs::write(
        cfg.join("accounts"),
        format!("\"Bea Baresip\" <sip:{CALLER}@127.0.0.1>;regint=0;audio_codecs=PCMU\n"),
    )
    .unwrap();
    cfg
}

/// The decoded audio baresip recorded, upsampled to 48 kHz for the Goertzel helper.
fn recording(cfg: &Path) -> Vec<i16> {
    let file = std::fs::read_dir(cfg.join("rec"))
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with("-dec.wav"))
        .expect("baresip recorded the decoded audio (sndfile *-dec.wav)");
    let pcm = palaver_legs::wav::parse(&std::fs::read(file.path()).unwrap()).expect("baresip's WAV");
    palaver_legs::wav::to_48k(&pcm)
}

/// Runs the meeting, baresip's call through `dial` and the checks (see the module docs).
async fn baresip_hears_the_meeting(prefix: &str, tls: bool) {
    let dir = TempDir::new(prefix);
    // The meeting exists before the number can route to it: create it, then restart.
    let mut server = Server::start_in(dir.path(), ServerOptions::default()).await;
    let org = server.directory_user_token(ORGANIZER.0, ORGANIZER.1).await;
    let (status, meeting) = server.bearer(reqwest::Method::POST, "/meetings", &org, Some(&serde_json::json!({}))).await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{meeting}");
    let meeting_id = meeting["id"].as_str().expect("meeting id").to_owned();
    let join_url = meeting["joinUrl"].as_str().unwrap().to_owned();
    server.terminate();
    let baresip_port = free_port();
    let tls_port = free_port();
    let mut tls_config = String::new();
    let mut ca = None;
    if tls {
        // The server's own private CA and certificate (generated on its first start) serve
        // SIP/TLS too; baresip trusts that CA.
        let tls_dir = server.ca_file().parent().expect("tls directory").to_owned();
        tls_config = format!(
            "listen_tls = \"127.0.0.1:{tls_port}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
            tls_dir.join("server.pem").display(),
            tls_dir.join("server.key").display()
        );
        ca = Some(server.ca_file().to_owned());
    }
    let config = format!(
        r#"[sip]
listen = "127.0.0.1:0"
options_interval_secs = 0
{tls_config}
[[sip.trunks]]
name = "carrier"
address = "127.0.0.1:{baresip_port}"
allow_from = ["127.0.0.1"]

[[phone_numbers]]
number = "{MEETING_NUMBER}"
route = "meeting:{meeting_id}"
"#
    );
    let server = Server::start_in(dir.path(), ServerOptions { config_toml: Some(config), ..Default::default() }).await;
    let sip = server.sip_addr().expect("PALAVER_SIP line");
    let org = server.directory_user_token(ORGANIZER.0, ORGANIZER.1).await;
    let speaker = server.directory_user_token(SPEAKER.0, SPEAKER.1).await;

    // The organizer (WebSocket, for the lobby) and the speaker (QUIC, playing its tone).
    let mut ws = connect(&server, &org).await;
    ws.send(serde_json::json!({"type":"join","target":{"kind":"meetingLink","joinUrl":join_url}})).await;
    ws.recv_type("joined").await;
    let ca_pem = std::fs::read_to_string(server.ca_file()).expect("CA");
    let addr = quic_address(&server, &speaker).await;
    let mut quic = QuicClient::connect(&ConnectOptions::new(addr, "localhost", ca_pem), &speaker).await.expect("QUIC");
    quic.join(JoinTarget::MeetingLink { join_url }, None).await.expect("the speaker joins");
    let ssrc = 0x05C2_0001;
    quic.attach_media(vec![MediaTrack::opus(ssrc)]).await.expect("media.attach");
    let mut rx = quic.take_rtp_receiver().expect("RTP queue");
    let mut tx = quic.rtp_sender(ssrc, 111);
    let talking = tokio::spawn(async move {
        let mut tone = ToneEncoder::new(MEETING_HZ, AMPLITUDE);
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let until = Instant::now() + Duration::from_secs(BARESIP_SECS + 5);
        while Instant::now() < until {
            tick.tick().await;
            if tx.send(&tone.next_frame(), FRAME as u32, Some(30)).is_err() {
                break;
            }
        }
    });

    // baresip dials the meeting's number through the trunk.
    let cfg = baresip_config(dir.path(), baresip_port, ca.as_deref());
    let target = match tls {
        true => format!("sip:{MEETING_NUMBER}@127.0.0.1:{tls_port};transport=tls"),
        false => format!("sip:{MEETING_NUMBER}@{sip}"),
    };
    let baresip = Command::new("baresip")
        .arg("-f")
        .arg(&cfg)
        .args(["-e", &format!("/dial {target}"), "-t", &BARESIP_SECS.to_string()])
        .current_dir(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn baresip");

    // It waits in the lobby as `4:+E.164` with its display name; the organizer admits it.
    let phone = loop {
        let delta = tokio::time::timeout(Duration::from_secs(10), ws.recv_type("roster.delta"))
            .await
            .expect("baresip's call reaches the meeting's lobby");
        let participant = &delta["delta"]["participant"];
        if delta["delta"]["change"] == "joined" && participant["identifier"]["rawId"] == format!("4:{CALLER}") {
            assert_eq!(participant["state"], "lobby", "{delta}");
            assert_eq!(participant["displayName"], "Bea Baresip", "{delta}");
            break participant["participantId"].as_str().unwrap().to_owned();
        }
    };
    ws.send(serde_json::json!({"type":"lobby.admit","participantId":phone})).await;
    let heard_by_speaker = collect(&mut rx, Instant::now() + Duration::from_secs(BARESIP_SECS - 1)).await;

    let out = tokio::time::timeout(Duration::from_secs(BARESIP_SECS + 10), baresip.wait_with_output())
        .await
        .expect("baresip exits after -t")
        .expect("baresip output");
    let log = String::from_utf8_lossy(&out.stdout).replace("/dial", "\n/dial");
    assert!(log.contains("Call established"), "baresip's call was not answered:\n{log}");
    talking.abort();
    // The first second is the mixer's warm-up; the end is baresip hanging up.
    let heard = recording(&cfg);
    let seconds = heard.len() as f32 / 48_000.0;
    assert!(seconds > 2.5, "baresip recorded only {seconds:.1} s:\n{log}");
    let window = &heard[48_000..heard.len() - 14_400];
    let (meeting_tone, own) = (tone_amplitude(window, MEETING_HZ), tone_amplitude(window, BARESIP_HZ));
    println!(
        "baresip ({}) recorded {seconds:.1} s: {MEETING_HZ} Hz amplitude {meeting_tone:.0}, own {BARESIP_HZ} Hz {own:.0}",
        if tls { "TLS" } else { "UDP" }
    );
    assert!(meeting_tone > 1000.0, "baresip does not hear the meeting's tone ({meeting_tone:.0}):\n{log}");
    assert!(own < meeting_tone / 10.0, "baresip hears its own tone ({own:.0} vs {meeting_tone:.0})");
    assert_hears("the QUIC speaker", &heard_by_speaker, BARESIP_HZ, MEETING_HZ, 1000.0);
    if tls {
        // The INVITE came over TLS (rsipstack logs every message it receives).
        let server_log = std::fs::read_to_string(dir.path().join("palaver.log")).unwrap_or_default();
        assert!(server_log.contains("SIP/2.0/TLS"), "no SIP/TLS message in the server's log");
    }
    quic.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_calls_a_meeting_through_the_trunk_and_hears_its_participants() {
    if !baresip_installed() {
        eprintln!("SKIPPED: baresip is not installed (`make prereqs` installs Debian's baresip-core)");
        return;
    }
    baresip_hears_the_meeting("palaver-e2e-baresip", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_calls_a_meeting_over_sip_tls_with_a_private_ca() {
    if !baresip_installed() {
        eprintln!("SKIPPED: baresip is not installed (`make prereqs` installs Debian's baresip-core)");
        return;
    }
    baresip_hears_the_meeting("palaver-e2e-baresip-tls", true).await;
}
