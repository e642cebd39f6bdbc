//! `palaver-quic-caller`: a real QUIC participant (`palaver-client`) that scripts drive line
//! by line, for the Call Automation proof in `tests/sdk/callautomation_proof_compat.py`.
//!
//! ```text
//! palaver-quic-caller --base-url https://127.0.0.1:PORT --ca ca.pem --token <ACS user token> --hz 440
//! ```
//!
//! Commands on stdin, one JSON line answered on stdout for each:
//! - `place <raw id>` → `{"event":"placed","callId":…}` (the call rings the target)
//! - `attach <call id>` → `{"event":"attached"}`; from then on it sends a steady `--hz` tone
//!   (Opus, 20 ms frames) and keeps what it hears
//! - `dtmf <digits>` → sends each digit as an RFC 4733 tone 250 ms apart, then `{"event":"dtmfSent"}`
//! - `mark` → forgets what it heard so far; `heard <hz>` → `{"event":"heard","amplitude":…}`,
//!   the Goertzel amplitude of `hz` in what it heard since the mark
//! - `quit` → closes the connection and exits.

use palaver_client::{ConnectOptions, MediaTrack, QuicClient, ReceivedRtp};
use palaver_core::protocol::{ClientMessage, ServerMessage};
use serde_json::{Value, json};
use std::f32::consts::PI;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

const RATE: u32 = 48_000;
const FRAME: usize = 960;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn say(value: Value) {
    println!("{value}");
}

/// Goertzel amplitude of `hz` in `pcm` (100 ms blocks; a sine of amplitude A reads ≈ A).
fn amplitude(pcm: &[i16], hz: f32) -> f32 {
    let block = (RATE / 10) as usize;
    let coeff = 2.0 * (2.0 * PI * hz / RATE as f32).cos();
    let values: Vec<f32> = pcm
        .chunks_exact(block)
        .map(|chunk| {
            let (mut s1, mut s2) = (0f32, 0f32);
            for &x in chunk {
                let s = f32::from(x) + coeff * s1 - s2;
                s2 = s1;
                s1 = s;
            }
            2.0 * (s1 * s1 + s2 * s2 - coeff * s1 * s2).max(0.0).sqrt() / block as f32
        })
        .collect();
    values.iter().copied().fold(0f32, f32::max)
}

fn dtmf_event(digit: char) -> Option<u8> {
    match digit {
        '0'..='9' => Some(digit as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => Some(digit as u8 - b'A' + 12),
        _ => None,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let base = arg(&args, "--base-url").expect("--base-url");
    let ca_pem = std::fs::read_to_string(arg(&args, "--ca").expect("--ca")).expect("CA file");
    let token = arg(&args, "--token").expect("--token");
    let hz: f32 = arg(&args, "--hz").and_then(|v| v.parse().ok()).unwrap_or(440.0);
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA"))
        .build()
        .expect("http client");
    let info: Value = http
        .get(format!("{base}/quic"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("GET /quic")
        .json()
        .await
        .expect("discovery");
    let addr = info["address"].as_str().expect("address").parse().expect("QUIC address");
    let mut client = QuicClient::connect(&ConnectOptions::new(addr, "localhost", ca_pem), &token).await.expect("QUIC");
    let heard: Arc<Mutex<Vec<i16>>> = Arc::default();
    let mut dtmf_tx: Option<mpsc::UnboundedSender<(Vec<u8>, mpsc::UnboundedSender<()>)>> = None;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let (command, rest) = line.trim().split_once(' ').unwrap_or((line.trim(), ""));
        match command {
            "place" => match client.request(ClientMessage::CallPlace { targets: vec![rest.to_owned()] }).await {
                Ok(ServerMessage::CallPlaced { call_id, .. }) => say(json!({"event": "placed", "callId": call_id})),
                other => say(json!({"event": "error", "message": format!("{other:?}")})),
            },
            "attach" => {
                let ssrc = 0x0CA1_1000 + (hz as u32);
                if let Err(e) = client.attach_call_media(rest, vec![MediaTrack::opus(ssrc)]).await {
                    say(json!({"event": "error", "message": e.to_string()}));
                    continue;
                }
                let mut rx = client.take_rtp_receiver().expect("RTP queue");
                let sink = heard.clone();
                tokio::spawn(async move {
                    let mut decoder = opus::Decoder::new(RATE, opus::Channels::Mono).expect("decoder");
                    let mut frame = vec![0i16; 5760];
                    while let Some(packet) = rx.recv().await {
                        let packet: ReceivedRtp = packet;
                        if let Ok(n) = decoder.decode(&packet.payload, &mut frame, false) {
                            sink.lock().unwrap().extend_from_slice(&frame[..n]);
                        }
                    }
                });
                let mut tx = client.rtp_sender(ssrc, palaver_core::protocol::quic::DEFAULT_OPUS_PT);
                let (cmd_tx, mut cmd_rx) = mpsc::unbounded_channel::<(Vec<u8>, mpsc::UnboundedSender<()>)>();
                dtmf_tx = Some(cmd_tx);
                tokio::spawn(async move {
                    let mut encoder =
                        opus::Encoder::new(RATE, opus::Channels::Mono, opus::Application::Voip).expect("encoder");
                    let step = 2.0 * PI * hz / RATE as f32;
                    let mut phase = 0f32;
                    let mut tick = tokio::time::interval(Duration::from_millis(20));
                    let mut pending: Vec<u8> = Vec::new();
                    let mut done: Option<mpsc::UnboundedSender<()>> = None;
                    let mut frames = 0u64;
                    loop {
                        tokio::select! {
                            _ = tick.tick() => {}
                            command = cmd_rx.recv() => match command {
                                Some((events, reply)) => { pending = events; done = Some(reply); continue; }
                                None => return,
                            },
                        }
                        let pcm: Vec<i16> = (0..FRAME)
                            .map(|_| {
                                phase = (phase + step) % (2.0 * PI);
                                (phase.sin() * 6000.0) as i16
                            })
                            .collect();
                        let payload = encoder.encode_vec(&pcm, 4000).expect("encode");
                        if tx.send(&payload, FRAME as u32, Some(20)).is_err() {
                            return;
                        }
                        frames += 1;
                        // A digit every 250 ms (12 frames), in the audio stream's own timeline.
                        if frames.is_multiple_of(12) && !pending.is_empty() {
                            let _ = tx.send_dtmf(pending.remove(0));
                            if pending.is_empty()
                                && let Some(reply) = done.take()
                            {
                                let _ = reply.send(());
                            }
                        }
                    }
                });
                say(json!({"event": "attached"}));
            }
            "dtmf" => {
                let events: Vec<u8> = rest.chars().filter_map(dtmf_event).collect();
                let Some(sender) = dtmf_tx.as_ref() else {
                    say(json!({"event": "error", "message": "attach first"}));
                    continue;
                };
                let (reply, mut done) = mpsc::unbounded_channel();
                let _ = sender.send((events, reply));
                let _ = done.recv().await;
                say(json!({"event": "dtmfSent"}));
            }
            "mark" => {
                heard.lock().unwrap().clear();
                say(json!({"event": "marked"}));
            }
            "heard" => {
                let hz: f32 = rest.parse().unwrap_or(440.0);
                let value = amplitude(&heard.lock().unwrap(), hz);
                say(json!({"event": "heard", "amplitude": value}));
            }
            "quit" => break,
            other => say(json!({"event": "error", "message": format!("unknown command {other}")})),
        }
    }
    client.close().await;
}
