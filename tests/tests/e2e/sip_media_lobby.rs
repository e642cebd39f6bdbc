//! Hold audio of a meeting's lobby against the real binary: a number routed to a meeting
//! whose default lobby policy holds phone callers; `[sip] lobby_hold_audio` is a WAV of
//! 900 Hz and the trunk has `ringback = "us"`. SIPp (`early_media.xml`, 100rel) gets a
//! reliable 183; while the caller waits in the lobby the phone's socket decodes the file's
//! 900 Hz (not the US ringback); the organizer admits it and the 200 continues on the 183's
//! session, where the hold audio stops.

use std::net::SocketAddr;
use std::time::Duration;

use palaver_e2e::{Server, ServerOptions, TempDir};
use tokio::net::UdpSocket;

use crate::signaling::connect;
use crate::sip::{finished, require_sipp, server_rtp_port_logged_by, sipp_to};
use crate::sip_media::{logged_after, phone_talks_on, tone_wav};
use crate::support::tone_amplitude;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_caller_in_a_meetings_lobby_hears_the_lobby_hold_audio_until_admitted() {
    const NUMBER: &str = "+14255550177";
    const HOLD_HZ: f32 = 900.0;
    require_sipp();
    let dir = TempDir::new("palaver-e2e-sipmedia-lobby");
    let mut server = Server::start_in(dir.path(), ServerOptions::default()).await;
    let organizer = "0b000000-0000-4000-8000-0000000005b3";
    let org = server.directory_user_token(organizer, "Olga Organizer").await;
    let (status, meeting) = server.bearer(reqwest::Method::POST, "/meetings", &org, Some(&serde_json::json!({}))).await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{meeting}");
    let meeting_id = meeting["id"].as_str().expect("meeting id").to_owned();
    server.terminate();
    let wav = dir.path().join("lobby.wav");
    std::fs::write(&wav, tone_wav(8_000, HOLD_HZ, 1)).unwrap();
    let config = format!(
        "[sip]\nlisten = \"127.0.0.1:0\"\noptions_interval_secs = 0\nlobby_hold_audio = \"{}\"\n\n[[sip.trunks]]\n\
         name = \"carrier\"\naddress = \"127.0.0.1:9\"\nallow_from = [\"127.0.0.1\"]\ncodecs = [\"PCMU\"]\n\
         ringback = \"us\"\n\n[[phone_numbers]]\nnumber = \"{NUMBER}\"\nroute = \"meeting:{meeting_id}\"\n",
        wav.display()
    );
    let server = Server::start_in(dir.path(), ServerOptions { config_toml: Some(config), ..Default::default() }).await;
    let sip = server.sip_addr().expect("PALAVER_SIP line");
    let org = server.directory_user_token(organizer, "Olga Organizer").await;
    let mut ws = connect(&server, &org).await;
    ws.send(serde_json::json!({"type":"join","target":{"kind":"meetingLink","joinUrl":meeting["joinUrl"]}})).await;
    ws.recv_type("joined").await;
    let phone = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let rtp_port = phone.local_addr().unwrap().port().to_string();
    let extra = ["-m", "1", "-trace_logs", "-set", "rtp_port", &rtp_port].map(String::from);
    let carrier = sipp_to(NUMBER, sip, "early_media.xml", "127.0.0.1", &extra, dir.path());
    let waiting = loop {
        let delta = ws.recv_type("roster.delta").await;
        let participant = &delta["delta"]["participant"];
        if delta["delta"]["change"] == "joined" && participant["identifier"]["rawId"] == "4:+14255550199" {
            assert_eq!(participant["state"], "lobby", "{delta}");
            break participant["participantId"].as_str().unwrap().to_owned();
        }
    };
    let early = logged_after(dir.path(), "early_media_", "SERVER_EARLY_PORT ").await;
    let early_port: u16 = early.split_whitespace().next().and_then(|p| p.parse().ok()).expect("port");
    let to = SocketAddr::from(([127, 0, 0, 1], early_port));
    let lobby = phone_talks_on(&phone, to, None, Duration::from_millis(2000)).await;
    let (hold, ringback) = (tone_amplitude(&lobby.pcm, HOLD_HZ), tone_amplitude(&lobby.pcm, 480.0));
    println!(
        "in the lobby: {} µ-law packets in 2 s on the 183's session; hold audio {HOLD_HZ} Hz at {hold:.0} (file at \
         6000), ringback 480 Hz {ringback:.0}",
        lobby.good
    );
    assert!(lobby.good >= 80, "hold audio packets in the lobby: {}", lobby.good);
    assert!(hold > 2000.0 && ringback < hold / 10.0, "the lobby's hold audio, not ringback ({hold:.0}, {ringback:.0})");
    ws.send(serde_json::json!({"type":"lobby.admit","participantId":waiting})).await;
    let answer_port = server_rtp_port_logged_by(dir.path(), "early_media_").await;
    assert_eq!(answer_port, early_port, "the 200's SDP is the 183's");
    let admitted = phone_talks_on(&phone, to, None, Duration::from_millis(1500)).await;
    let hold_after = tone_amplitude(&admitted.pcm[admitted.pcm.len() / 3..], HOLD_HZ);
    println!("admitted: {} packets in 1.5 s, hold audio {hold_after:.0}", admitted.good);
    assert!(admitted.good >= 60 && hold_after < 200.0, "the hold audio stops ({hold_after:.0})");
    finished(carrier, "a lobby call with hold audio").await;
}
