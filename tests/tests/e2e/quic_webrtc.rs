//! Issue 7 proof against the real binary: a QUIC participant (`palaver_client::QuicClient`)
//! and a WebRTC participant (`palaver_client::webrtc::WebRtcClient`, webrtc-rs over the
//! WebSocket signaling) join one meeting and each send a different Opus tone (QUIC 500 Hz,
//! WebRTC 1300 Hz). Each decodes the mixed audio the server sends it and must find the other's
//! tone and not its own (mix-minus through the room's mixer, across both transports). The
//! same check with two WebRTC participants covers the WebRTC participant on its own, and a
//! third test sends its simulcast camera (three rid layers) to the other participant.

use crate::support::{FRAME, Meeting, ToneEncoder, assert_hears, collect, meeting, quic_address};
use palaver_client::webrtc::{MediaOptions, WebRtcClient, WebRtcOptions};
use palaver_client::{ConnectOptions, JoinTarget, MediaTrack, QuicClient, ReceivedRtp};
use palaver_e2e::Server;
use std::time::{Duration, Instant};

const QUIC_TONE_HZ: f32 = 500.0;
const WEBRTC_TONE_HZ: f32 = 1300.0;
/// Peak amplitude of both tones (-20 dBFS).
const TONE_AMPLITUDE: f32 = 3277.0;
/// The least amplitude of the other's tone a participant must hear.
const MIN_HEARD: f32 = 500.0;
const TALK: Duration = Duration::from_secs(4);
const USERS: [(&str, &str); 2] = [
    ("0a000000-0000-4000-8000-0000000000c1", "Wendy Webrtc"),
    ("0a000000-0000-4000-8000-0000000000c2", "Quentin Quic"),
];

/// A WebRTC participant joined to `join_url` with its media negotiated (one Opus track).
async fn webrtc_participant(
    server: &Server,
    ca_pem: &str,
    token: &str,
    join_url: &str,
    media: MediaOptions,
) -> WebRtcClient {
    let mut client = WebRtcClient::connect(&WebRtcOptions::new(server.base_url(), ca_pem), token)
        .await
        .expect("WebRTC participant connects");
    let target = JoinTarget::MeetingLink { join_url: join_url.to_string() };
    client.join(target, None).await.expect("WebRTC participant joins");
    let session = client.start_media(media).await.expect("WebRTC media negotiated");
    println!("WebRTC media: Opus ssrc {} pt {}", session.audio_ssrc, session.audio_payload_type);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_webrtc_participants_hear_each_others_tone() {
    let Meeting { dir: _dir, server, ca_pem, tokens: [a, b], join_url } =
        meeting("palaver-e2e-webrtc-tones", USERS).await;
    let mut low = webrtc_participant(&server, &ca_pem, &a, &join_url, MediaOptions::default()).await;
    let mut high = webrtc_participant(&server, &ca_pem, &b, &join_url, MediaOptions::default()).await;
    let mut low_rx = low.take_rtp_receiver().expect("RTP queue");
    let mut high_rx = high.take_rtp_receiver().expect("RTP queue");
    let (mut low_tx, mut high_tx) = (low.audio_sender().expect("sender"), high.audio_sender().expect("sender"));
    let until = Instant::now() + TALK;
    let talk = async move {
        let (mut low_tone, mut high_tone) =
            (ToneEncoder::new(QUIC_TONE_HZ, TONE_AMPLITUDE), ToneEncoder::new(WEBRTC_TONE_HZ, TONE_AMPLITUDE));
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        while Instant::now() < until {
            tick.tick().await;
            low_tx.send(&low_tone.next_frame(), FRAME as u32, Some(20)).await.expect("send");
            high_tx.send(&high_tone.next_frame(), FRAME as u32, Some(20)).await.expect("send");
        }
    };
    let end = until + Duration::from_millis(300);
    let (_, low_heard, high_heard) = tokio::join!(talk, collect(&mut low_rx, end), collect(&mut high_rx, end));
    println!("stats: {:?} / {:?}", low.stats(), high.stats());
    assert_hears("WebRTC participant A", &low_heard, WEBRTC_TONE_HZ, QUIC_TONE_HZ, MIN_HEARD);
    assert_hears("WebRTC participant B", &high_heard, QUIC_TONE_HZ, WEBRTC_TONE_HZ, MIN_HEARD);
    low.close().await;
    high.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_and_webrtc_participants_hear_each_others_tone_through_the_mixer() {
    let Meeting { dir: _dir, server, ca_pem, tokens: [organizer, colleague], join_url } =
        meeting("palaver-e2e-quic-webrtc", USERS).await;
    // WebRTC participant: WebSocket signaling, webrtc-rs peer connection with one Opus track.
    let mut webrtc = webrtc_participant(&server, &ca_pem, &organizer, &join_url, MediaOptions::default()).await;

    // QUIC participant: discovered through GET /quic, one Opus track attached.
    let quic_addr = quic_address(&server, &colleague).await;
    let mut quic = QuicClient::connect(&ConnectOptions::new(quic_addr, "localhost", ca_pem), &colleague)
        .await
        .expect("QUIC participant connects");
    quic.join(JoinTarget::MeetingLink { join_url }, None).await.expect("QUIC joins");
    let quic_ssrc = rand::random::<u32>() | 1;
    let server_tracks = quic.attach_media(vec![MediaTrack::opus(quic_ssrc)]).await.expect("QUIC media attached");
    assert_eq!(server_tracks.len(), 1, "the server sends the QUIC participant one stream (the mix): {server_tracks:?}");

    // Both talk at the same time, each its own tone, for TALK, 20 ms per frame.
    let mut quic_rx = quic.take_rtp_receiver().expect("QUIC RTP queue");
    let mut webrtc_rx = webrtc.take_rtp_receiver().expect("WebRTC RTP queue");
    let mut quic_tx = quic.rtp_sender(quic_ssrc, palaver_core::protocol::quic::DEFAULT_OPUS_PT);
    let mut webrtc_tx = webrtc.audio_sender().expect("WebRTC audio sender");
    let until = Instant::now() + TALK;
    let talk = async move {
        let (mut quic_tone, mut webrtc_tone) =
            (ToneEncoder::new(QUIC_TONE_HZ, TONE_AMPLITUDE), ToneEncoder::new(WEBRTC_TONE_HZ, TONE_AMPLITUDE));
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        while Instant::now() < until {
            tick.tick().await;
            quic_tx.send(&quic_tone.next_frame(), FRAME as u32, Some(20)).expect("QUIC send");
            webrtc_tx.send(&webrtc_tone.next_frame(), FRAME as u32, Some(20)).await.expect("WebRTC send");
        }
    };
    let end = until + Duration::from_millis(300);
    let (_, quic_heard, webrtc_heard) = tokio::join!(talk, collect(&mut quic_rx, end), collect(&mut webrtc_rx, end));

    let stats = webrtc.stats();
    println!("WebRTC client stats: {stats:?}; QUIC client stats: {:?}", quic.stats());
    assert_hears("QUIC participant", &quic_heard, WEBRTC_TONE_HZ, QUIC_TONE_HZ, MIN_HEARD);
    assert_hears("WebRTC participant", &webrtc_heard, QUIC_TONE_HZ, WEBRTC_TONE_HZ, MIN_HEARD);
    webrtc.close().await;
    quic.close().await;
}

/// Synthetic VP8 payload: descriptor (S=1, PID=0), one header byte whose P bit marks keyframes,
/// then a tag (layer, frame number) the receiver can check.
fn vp8_frame(layer: u8, frame: u32, keyframe: bool) -> Vec<u8> {
    let mut p = vec![0x10, if keyframe { 0x00 } else { 0x01 }, layer];
    p.extend_from_slice(&frame.to_be_bytes());
    p.resize(200 + 300 * usize::from(layer), 0xAB);
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_simulcast_camera_reaches_the_other_participant() {
    let Meeting { dir: _dir, server, ca_pem, tokens: [a, b], join_url } =
        meeting("palaver-e2e-webrtc-video", USERS).await;
    let video = MediaOptions { simulcast_video: true };
    let sender = webrtc_participant(&server, &ca_pem, &a, &join_url, video).await;
    let mut receiver = webrtc_participant(&server, &ca_pem, &b, &join_url, video).await;
    let mut camera = sender.video_sender().expect("simulcast sender");
    let mut rx = receiver.take_rtp_receiver().expect("RTP queue");
    let until = Instant::now() + Duration::from_secs(3);
    let send = async move {
        let mut tick = tokio::time::interval(Duration::from_millis(33));
        let mut frame = 0u32;
        while Instant::now() < until {
            tick.tick().await;
            for layer in 0..3u8 {
                let payload = vp8_frame(layer, frame, frame.is_multiple_of(15));
                camera.send_frame(usize::from(layer), &[&payload], 3000).await.expect("send frame");
            }
            frame += 1;
        }
        frame
    };
    let (frames_sent, received) = tokio::join!(send, collect(&mut rx, until + Duration::from_millis(300)));
    // Everything not on the audio mix's payload type is the camera slot.
    let video: Vec<&ReceivedRtp> =
        received.iter().filter(|p| p.payload_type != palaver_core::protocol::quic::DEFAULT_OPUS_PT).collect();
    println!(
        "sent {frames_sent} frames per layer; receiver got {} RTP packets, {} of them video",
        received.len(),
        video.len()
    );
    assert!(video.len() > 30, "the receiver got {} VP8 packets of the sender's camera", video.len());
    let first = video[0];
    assert_eq!(first.payload[1] & 1, 0, "the forwarded stream starts on a keyframe");
    for pair in video.windows(2) {
        let (x, y) = (pair[0], pair[1]);
        assert_eq!(y.ssrc, x.ssrc, "one SSRC for the camera slot");
        assert_eq!(y.sequence, x.sequence.wrapping_add(1), "continuous sequence numbers");
        let ours = y.payload.len() >= 7 && y.payload[0] == 0x10 && usize::from(y.payload[2]) < 3;
        assert!(ours, "a payload the sender wrote: {:?}", &y.payload[..y.payload.len().min(8)]);
    }
    sender.close().await;
    receiver.close().await;
}
