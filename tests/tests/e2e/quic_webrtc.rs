//! Issue 7 proof against the real binary: a QUIC participant (`palaver_client::QuicClient`)
//! and a WebRTC participant (`palaver_client::webrtc::WebRtcClient`, webrtc-rs over the
//! WebSocket signaling) join one meeting and each send a different Opus tone (QUIC 500 Hz,
//! WebRTC 1300 Hz). Each decodes the mixed audio the server sends it and must find the other's
//! tone and not its own (mix-minus through the room's mixer, across both transports). The
//! same check with two WebRTC participants covers the WebRTC participant on its own, and a
//! third test sends its simulcast camera (three rid layers) to the other participant.

use palaver_client::webrtc::{MediaOptions, WebRtcClient, WebRtcOptions};
use palaver_client::{ConnectOptions, JoinTarget, MediaTrack, QuicClient, ReceivedRtp};
use palaver_e2e::{Server, ServerOptions, TempDir};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::f32::consts::PI;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const SAMPLE_RATE: u32 = 48_000;
const FRAME: usize = 960; // 20 ms
const QUIC_TONE_HZ: f32 = 500.0;
const WEBRTC_TONE_HZ: f32 = 1300.0;
/// How long both talk; the first second of what each receives is skipped (mixer warm-up).
const TALK: Duration = Duration::from_secs(4);
const SKIP_SAMPLES: usize = SAMPLE_RATE as usize;

/// Opus frames of a sine tone at a steady level (-20 dBFS peak ≈ amplitude 3277).
struct ToneEncoder {
    encoder: opus::Encoder,
    frequency: f32,
    phase: f32,
}

impl ToneEncoder {
    fn new(frequency: f32) -> Self {
        let encoder = opus::Encoder::new(SAMPLE_RATE, opus::Channels::Mono, opus::Application::Voip).expect("encoder");
        Self { encoder, frequency, phase: 0.0 }
    }

    fn next_frame(&mut self) -> Vec<u8> {
        let step = 2.0 * PI * self.frequency / SAMPLE_RATE as f32;
        let pcm: Vec<i16> = (0..FRAME)
            .map(|_| {
                let sample = (self.phase.sin() * 3277.0) as i16;
                self.phase = (self.phase + step) % (2.0 * PI);
                sample
            })
            .collect();
        self.encoder.encode_vec(&pcm, 4000).expect("encode")
    }
}

/// Goertzel amplitude of `frequency` in `pcm`, averaged over 100 ms blocks (10 Hz bins, so
/// both tones fall on a bin): a sine of amplitude A reads ≈ A.
fn tone_amplitude(pcm: &[i16], frequency: f32) -> f32 {
    let block = (SAMPLE_RATE / 10) as usize;
    let coeff = 2.0 * (2.0 * PI * frequency / SAMPLE_RATE as f32).cos();
    let blocks: Vec<f32> = pcm
        .chunks_exact(block)
        .map(|chunk| {
            let (mut s1, mut s2) = (0.0f32, 0.0f32);
            for &x in chunk {
                let s = f32::from(x) + coeff * s1 - s2;
                s2 = s1;
                s1 = s;
            }
            let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
            2.0 * power.max(0.0).sqrt() / block as f32
        })
        .collect();
    blocks.iter().sum::<f32>() / blocks.len().max(1) as f32
}

fn rms(pcm: &[i16]) -> f32 {
    (pcm.iter().map(|&x| f32::from(x).powi(2)).sum::<f32>() / pcm.len().max(1) as f32).sqrt()
}

/// Decodes the received Opus packets (in arrival order; loss concealed by the decoder).
fn decode(packets: &[ReceivedRtp]) -> Vec<i16> {
    let mut decoder = opus::Decoder::new(SAMPLE_RATE, opus::Channels::Mono).expect("decoder");
    let mut pcm = Vec::with_capacity(packets.len() * FRAME);
    let mut frame = vec![0i16; 5760];
    let mut last_sequence: Option<u16> = None;
    for packet in packets {
        if let Some(last) = last_sequence {
            for _ in 1..packet.sequence.wrapping_sub(last).min(10) {
                let n = decoder.decode(&[], &mut frame, false).unwrap_or(0);
                pcm.extend_from_slice(&frame[..n]);
            }
        }
        last_sequence = Some(packet.sequence);
        let n = decoder.decode(&packet.payload, &mut frame, false).expect("decodable Opus from the server");
        pcm.extend_from_slice(&frame[..n]);
    }
    pcm
}

/// Checks one participant's received audio: the other's tone dominates, its own is absent.
fn assert_hears(who: &str, packets: &[ReceivedRtp], other_hz: f32, own_hz: f32) {
    let pcm = decode(packets);
    assert!(
        pcm.len() > SKIP_SAMPLES + SAMPLE_RATE as usize,
        "{who} received only {} packets ({} samples)",
        packets.len(),
        pcm.len()
    );
    let tail = &pcm[SKIP_SAMPLES..];
    let (other, own, level) = (tone_amplitude(tail, other_hz), tone_amplitude(tail, own_hz), rms(tail));
    println!(
        "{who}: {} packets, {:.1} s decoded; {other_hz} Hz amplitude {other:.0}, own {own_hz} Hz {own:.0}, rms {level:.0}",
        packets.len(),
        pcm.len() as f32 / SAMPLE_RATE as f32
    );
    // A pure tone of amplitude A has rms A/√2: the other's tone carries most of the signal.
    assert!(other > 500.0, "{who} does not hear the other's {other_hz} Hz tone (amplitude {other:.0})");
    assert!(other > 0.8 * std::f32::consts::SQRT_2 * level, "{who}: {other_hz} Hz is not the dominant signal");
    assert!(own < other / 10.0, "{who} hears its own {own_hz} Hz tone ({own:.0} vs {other:.0})");
}

/// Collects RTP until `until`.
async fn collect(rx: &mut mpsc::Receiver<ReceivedRtp>, until: Instant) -> Vec<ReceivedRtp> {
    let mut packets = Vec::new();
    while let Ok(Some(p)) = tokio::time::timeout_at(until.into(), rx.recv()).await {
        packets.push(p);
    }
    packets
}

/// A server, its CA, two directory users of the same tenant (both bypass the lobby) and a
/// meeting organized by the first: `(dir, server, ca_pem, [token_a, token_b], join_url)`.
async fn meeting(prefix: &str) -> (TempDir, Server, String, [String; 2], String) {
    let dir = TempDir::new(prefix);
    let server = Server::start_in(dir.path(), ServerOptions::default()).await;
    let ca_pem = std::fs::read_to_string(server.ca_file()).expect("CA file");
    let a = server.directory_user_token("0a000000-0000-4000-8000-0000000000c1", "Wendy Webrtc").await;
    let b = server.directory_user_token("0a000000-0000-4000-8000-0000000000c2", "Quentin Quic").await;
    let (status, meeting) = server.bearer(Method::POST, "/meetings", &a, Some(&json!({"subject":"tones"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{meeting}");
    let join_url = meeting["joinUrl"].as_str().unwrap().to_string();
    (dir, server, ca_pem, [a, b], join_url)
}

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
    let (_dir, server, ca_pem, [a, b], join_url) = meeting("palaver-e2e-webrtc-tones").await;
    let mut low = webrtc_participant(&server, &ca_pem, &a, &join_url, MediaOptions::default()).await;
    let mut high = webrtc_participant(&server, &ca_pem, &b, &join_url, MediaOptions::default()).await;
    let mut low_rx = low.take_rtp_receiver().expect("RTP queue");
    let mut high_rx = high.take_rtp_receiver().expect("RTP queue");
    let (mut low_tx, mut high_tx) = (low.audio_sender().expect("sender"), high.audio_sender().expect("sender"));
    let until = Instant::now() + TALK;
    let talk = async move {
        let (mut low_tone, mut high_tone) = (ToneEncoder::new(QUIC_TONE_HZ), ToneEncoder::new(WEBRTC_TONE_HZ));
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
    assert_hears("WebRTC participant A", &low_heard, WEBRTC_TONE_HZ, QUIC_TONE_HZ);
    assert_hears("WebRTC participant B", &high_heard, QUIC_TONE_HZ, WEBRTC_TONE_HZ);
    low.close().await;
    high.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_and_webrtc_participants_hear_each_others_tone_through_the_mixer() {
    let (_dir, server, ca_pem, [organizer, colleague], join_url) = meeting("palaver-e2e-quic-webrtc").await;
    // WebRTC participant: WebSocket signaling, webrtc-rs peer connection with one Opus track.
    let mut webrtc = webrtc_participant(&server, &ca_pem, &organizer, &join_url, MediaOptions::default()).await;

    // QUIC participant: discovered through GET /quic, one Opus track attached.
    let (status, quic_info) = server.bearer(Method::GET, "/quic", &colleague, None).await;
    assert_eq!(status, StatusCode::OK, "{quic_info}");
    let quic_addr: SocketAddr = quic_info["address"].as_str().unwrap().parse().expect("QUIC address");
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
    let mut quic_tx = quic.rtp_sender(quic_ssrc, MediaTrack::DEFAULT_OPUS_PT);
    let mut webrtc_tx = webrtc.audio_sender().expect("WebRTC audio sender");
    let until = Instant::now() + TALK;
    let talk = async move {
        let (mut quic_tone, mut webrtc_tone) = (ToneEncoder::new(QUIC_TONE_HZ), ToneEncoder::new(WEBRTC_TONE_HZ));
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
    assert_hears("QUIC participant", &quic_heard, WEBRTC_TONE_HZ, QUIC_TONE_HZ);
    assert_hears("WebRTC participant", &webrtc_heard, QUIC_TONE_HZ, WEBRTC_TONE_HZ);
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
    let (_dir, server, ca_pem, [a, b], join_url) = meeting("palaver-e2e-webrtc-video").await;
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
    let video: Vec<&ReceivedRtp> = received.iter().filter(|p| p.payload_type != MediaTrack::DEFAULT_OPUS_PT).collect();
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
