//! Shared set-up and audio checks of the media e2e tests (`quic`, `quic_webrtc`): a server
//! with a meeting and two directory users, QUIC discovery, Opus tone encoding, collecting
//! received RTP, and checking by Goertzel amplitude that a participant hears the other's
//! tone and not its own.

use palaver_client::ReceivedRtp;
use palaver_e2e::{Server, ServerOptions, TempDir};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::f32::consts::PI;
use std::net::SocketAddr;
use std::time::Instant;
use tokio::sync::mpsc;

pub const SAMPLE_RATE: u32 = 48_000;
/// Samples per 20 ms Opus frame.
pub const FRAME: usize = 960;
/// The first second of what each participant receives is skipped (mixer warm-up).
const SKIP_SAMPLES: usize = SAMPLE_RATE as usize;

/// A running server with a meeting organized by the first of two directory users of the same
/// tenant (both bypass the lobby). Keep it alive for the test: dropping `dir` removes the
/// server's data directory.
pub struct Meeting {
    pub dir: TempDir,
    pub server: Server,
    pub ca_pem: String,
    pub tokens: [String; 2],
    pub join_url: String,
}

/// Starts a server in a fresh `prefix` directory and creates the meeting; `users` are
/// `(directory object id, display name)`.
pub async fn meeting(prefix: &str, users: [(&str, &str); 2]) -> Meeting {
    let dir = TempDir::new(prefix);
    let server = Server::start_in(dir.path(), ServerOptions::default()).await;
    let ca_pem = std::fs::read_to_string(server.ca_file()).expect("CA file");
    let a = server.directory_user_token(users[0].0, users[0].1).await;
    let b = server.directory_user_token(users[1].0, users[1].1).await;
    let (status, meeting) = server.bearer(Method::POST, "/meetings", &a, Some(&json!({"subject":prefix}))).await;
    assert_eq!(status, StatusCode::CREATED, "{meeting}");
    let join_url = meeting["joinUrl"].as_str().unwrap().to_string();
    Meeting { dir, server, ca_pem, tokens: [a, b], join_url }
}

/// `GET /quic` (the discovery document, with its counters).
pub async fn quic_info(server: &Server, token: &str) -> Value {
    let (status, info) = server.bearer(Method::GET, "/quic", token, None).await;
    assert_eq!(status, StatusCode::OK, "{info}");
    assert_eq!(info["alpn"], "palaver/1");
    info
}

/// The server's QUIC address, discovered through `GET /quic`.
pub async fn quic_address(server: &Server, token: &str) -> SocketAddr {
    quic_info(server, token).await["address"].as_str().expect("address").parse().expect("QUIC address")
}

/// Opus frames of a sine tone at a steady level.
pub struct ToneEncoder {
    encoder: opus::Encoder,
    step: f32,
    amplitude: f32,
    phase: f32,
}

impl ToneEncoder {
    /// A `frequency` Hz tone of peak `amplitude` (3277 ≈ -20 dBFS).
    pub fn new(frequency: f32, amplitude: f32) -> Self {
        let encoder = opus::Encoder::new(SAMPLE_RATE, opus::Channels::Mono, opus::Application::Voip).expect("encoder");
        Self { encoder, step: 2.0 * PI * frequency / SAMPLE_RATE as f32, amplitude, phase: 0.0 }
    }

    /// The next 20 ms frame, Opus-encoded.
    pub fn next_frame(&mut self) -> Vec<u8> {
        let pcm: Vec<i16> = (0..FRAME)
            .map(|_| {
                let sample = (self.phase.sin() * self.amplitude) as i16;
                self.phase = (self.phase + self.step) % (2.0 * PI);
                sample
            })
            .collect();
        self.encoder.encode_vec(&pcm, 4000).expect("encode")
    }
}

/// Goertzel amplitude of `frequency` in `pcm`, averaged over 100 ms blocks (10 Hz bins, so
/// the tones fall on a bin): a sine of amplitude A reads ≈ A.
pub fn tone_amplitude(pcm: &[i16], frequency: f32) -> f32 {
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
pub fn decode(packets: &[ReceivedRtp]) -> Vec<i16> {
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

/// Checks one participant's received audio: the other's tone reaches at least `min_other`
/// and dominates the signal, its own is absent.
pub fn assert_hears(who: &str, packets: &[ReceivedRtp], other_hz: f32, own_hz: f32, min_other: f32) {
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
    assert!(other > min_other, "{who} does not hear the other's {other_hz} Hz tone (amplitude {other:.0})");
    // A pure tone of amplitude A has rms A/√2: the other's tone carries most of the signal.
    assert!(other > 0.8 * std::f32::consts::SQRT_2 * level, "{who}: {other_hz} Hz is not the dominant signal");
    assert!(own < other / 10.0, "{who} hears its own {own_hz} Hz tone ({own:.0} vs {other:.0})");
}

/// Collects RTP until `until`.
pub async fn collect(rx: &mut mpsc::Receiver<ReceivedRtp>, until: Instant) -> Vec<ReceivedRtp> {
    let mut packets = Vec::new();
    while let Ok(Some(p)) = tokio::time::timeout_at(until.into(), rx.recv()).await {
        packets.push(p);
    }
    packets
}
