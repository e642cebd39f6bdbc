//! Call Automation through the real binary with a real QUIC participant: an ACS user
//! (`palaver-client`) calls a bot identity; the backend (this test, over HMAC) answers the
//! `IncomingCall` with bidirectional `mediaStreamingOptions`, and a loopback voice bot (a
//! WebSocket server) receives the call's audio and sends every frame straight back.
//!
//! It measures the latency from the participant's packet to the bot's socket: the caller talks
//! in bursts (100 ms of tone, 200 ms of silence) and each burst's first packet is timed against
//! the first loud `AudioData` frame the bot reads. `CA_STREAM_BURSTS=200` makes a longer run
//! (docs/call-automation.md, "Media streaming latency"); the default keeps `make test` short.

use crate::support::{FRAME, SAMPLE_RATE, collect, decode, quic_address, tone_amplitude};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use palaver_client::{ConnectOptions, MediaTrack, QuicClient};
use palaver_core::protocol::{ClientMessage, ServerMessage};
use palaver_e2e::{Server, ServerOptions, TempDir};
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

const TONE_HZ: f32 = 600.0;
const AMPLITUDE: f32 = 6000.0;
/// Frames of tone and of silence in one burst (20 ms each).
const TONE_FRAMES: usize = 5;
const SILENT_FRAMES: usize = 10;
/// A bot frame louder than this holds the burst (the mix of silence decodes to a few units).
const LOUD: i16 = 1000;

type Seen = Arc<Mutex<Vec<(String, Value)>>>;

/// The backend's webhook: the Event Grid subscription (`/incoming`, with the handshake) and
/// the callback URIs (`/cb/{leg}`); every event is kept as (path, event).
async fn hook(State(seen): State<Seen>, Path(path): Path<String>, headers: HeaderMap, body: String) -> Response {
    let events: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    if headers.get("aeg-event-type").is_some_and(|v| v == "SubscriptionValidation") {
        return axum::Json(json!({ "validationResponse": events[0]["data"]["validationCode"] })).into_response();
    }
    let mut seen = seen.lock().unwrap();
    for event in events.as_array().into_iter().flatten() {
        seen.push((path.clone(), event.clone()));
    }
    StatusCode::OK.into_response()
}

struct Backend {
    seen: Seen,
    base: String,
}

impl Backend {
    async fn start() -> Self {
        let seen: Seen = Arc::default();
        let app = axum::Router::new().route("/{*path}", axum::routing::post(hook)).with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { seen, base }
    }

    /// Waits for the first event on `path` whose type ends with `kind` and that `filter` accepts.
    async fn wait(&self, path: &str, kind: &str, filter: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let found = self.seen.lock().unwrap().iter().find_map(|(p, e)| {
                let ty = e["eventType"].as_str().or(e["type"].as_str()).unwrap_or_default();
                (p == path && ty.ends_with(kind) && filter(e)).then(|| e.clone())
            });
            if let Some(event) = found {
                return event;
            }
            assert!(Instant::now() < deadline, "no {kind} on {path}: {:?}", self.seen.lock().unwrap());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// One `AudioData` frame the bot read: when, and its loudest sample.
type Frames = Arc<Mutex<Vec<(Instant, i16)>>>;

/// The voice bot: a WebSocket server that records each `AudioData` frame and echoes it back
/// in the bidirectional message of ACS's samples (PascalCase keys).
async fn echo_bot() -> (String, Frames, Arc<Mutex<Option<Value>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/bot", listener.local_addr().unwrap());
    let frames: Frames = Arc::default();
    let metadata: Arc<Mutex<Option<Value>>> = Arc::default();
    let (f, m) = (frames.clone(), metadata.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else { continue };
            let (mut sink, mut source) = ws.split();
            while let Some(Ok(message)) = source.next().await {
                let Message::Text(text) = message else { continue };
                let at = Instant::now();
                let value: Value = serde_json::from_str(text.as_str()).unwrap();
                if value["kind"] == "AudioMetadata" {
                    *m.lock().unwrap() = Some(value);
                    continue;
                }
                let data = value["audioData"]["data"].as_str().unwrap_or_default().to_owned();
                let bytes = base64::engine::general_purpose::STANDARD.decode(&data).unwrap();
                let peak = bytes.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]]).saturating_abs()).max();
                f.lock().unwrap().push((at, peak.unwrap_or(0)));
                let back = json!({"Kind": "AudioData", "AudioData": {"Data": data}, "StopAudio": null});
                if sink.send(Message::text(back.to_string())).await.is_err() {
                    break;
                }
            }
        }
    });
    (url, frames, metadata)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quic_caller_is_streamed_to_a_voice_bot_that_talks_back() {
    let bursts: usize = std::env::var("CA_STREAM_BURSTS").ok().and_then(|v| v.parse().ok()).unwrap_or(12);
    let backend = Backend::start().await;
    let (bot_url, frames, metadata) = echo_bot().await;
    let dir = TempDir::new("palaver-e2e-ca-stream");
    let config = format!(
        "[events.delivery]\npoll_interval_ms = 50\nbase_backoff_ms = 100\n\
         [[events.subscriptions]]\nname = \"backend\"\nendpoint = \"{}/incoming\"\n\
         event_types = [\"Microsoft.Communication.IncomingCall\"]\n",
        backend.base
    );
    let server = Server::start_in(dir.path(), ServerOptions { config_toml: Some(config), ..Default::default() }).await;
    let (caller_id, caller_token) = server.create_user_token(&["voip"]).await;
    let (bot_id, _) = server.create_user_token(&["voip"]).await;

    // The caller (QUIC) calls the bot identity.
    let ca_pem = std::fs::read_to_string(server.ca_file()).unwrap();
    let addr = quic_address(&server, &caller_token).await;
    let mut client = QuicClient::connect(&ConnectOptions::new(addr, "localhost", ca_pem), &caller_token).await.unwrap();
    let placed = client.request(ClientMessage::CallPlace { targets: vec![bot_id.clone()] }).await.unwrap();
    let ServerMessage::CallPlaced { call_id, .. } = placed else { panic!("call.place: {placed:?}") };

    // The backend answers the IncomingCall with bidirectional media streaming.
    let incoming = backend.wait("incoming", "IncomingCall", |e| e["data"]["to"]["rawId"] == bot_id.as_str()).await;
    assert_eq!(incoming["data"]["from"]["rawId"], caller_id.as_str());
    let answer = json!({
        "incomingCallContext": incoming["data"]["incomingCallContext"],
        "callbackUri": format!("{}/cb/bot", backend.base),
        "operationContext": "answer",
        "mediaStreamingOptions": {"transportType": "websocket", "transportUrl": bot_url, "contentType": "audio",
            "audioChannelType": "mixed", "startMediaStreaming": true, "enableBidirectional": true,
            "audioFormat": "pcm16KMono"},
    });
    let (status, props) = server
        .signed(Method::POST, "/calling/callConnections:answer?api-version=2025-06-15", &answer.to_string())
        .await;
    assert_eq!(status, StatusCode::OK, "{props}");
    backend.wait("cb/bot", "CallConnected", |e| e["data"]["operationContext"] == "answer").await;
    backend.wait("cb/bot", "MediaStreamingStarted", |_| true).await;
    let meta = metadata.lock().unwrap().clone().expect("AudioMetadata first");
    assert_eq!(meta["audioMetadata"]["sampleRate"], 16000, "{meta}");

    // The caller talks in bursts and hears what the bot sends back.
    let ssrc = 0x0CA1_0001;
    client.attach_call_media(&call_id, vec![MediaTrack::opus(ssrc)]).await.expect("media.attach");
    let mut rx = client.take_rtp_receiver().unwrap();
    let mut tx = client.rtp_sender(ssrc, 111);
    let mut encoder = opus::Encoder::new(SAMPLE_RATE, opus::Channels::Mono, opus::Application::Voip).unwrap();
    let talk_for = Duration::from_millis(20 * ((TONE_FRAMES + SILENT_FRAMES) * (bursts + 1)) as u64);
    let until = Instant::now() + talk_for;
    let talk = async {
        let mut sent_at = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let step = 2.0 * std::f32::consts::PI * TONE_HZ / SAMPLE_RATE as f32;
        let mut phase = 0f32;
        // A silent burst first: the call's media settles.
        for burst in 0..=bursts {
            for frame in 0..TONE_FRAMES + SILENT_FRAMES {
                let loud = burst > 0 && frame < TONE_FRAMES;
                let pcm: Vec<i16> = (0..FRAME)
                    .map(|_| {
                        phase = (phase + step) % (2.0 * std::f32::consts::PI);
                        if loud { (phase.sin() * AMPLITUDE) as i16 } else { 0 }
                    })
                    .collect();
                let payload = encoder.encode_vec(&pcm, 4000).unwrap();
                tick.tick().await;
                if loud && frame == 0 {
                    sent_at.push(Instant::now());
                }
                tx.send(&payload, FRAME as u32, Some(if loud { 20 } else { 127 })).unwrap();
            }
        }
        sent_at
    };
    let (sent_at, heard) = tokio::join!(talk, collect(&mut rx, until + Duration::from_millis(300)));

    let frames = frames.lock().unwrap().clone();
    let mut latencies: Vec<f64> = sent_at
        .iter()
        .filter_map(|&sent| {
            let burst_end = sent + Duration::from_millis(20 * (TONE_FRAMES + SILENT_FRAMES) as u64);
            frames
                .iter()
                .find(|(at, peak)| *at >= sent && *at < burst_end && *peak > LOUD)
                .map(|(at, _)| at.duration_since(sent).as_secs_f64() * 1000.0)
        })
        .collect();
    assert!(latencies.len() * 10 >= sent_at.len() * 9, "the bot heard {} of {} bursts", latencies.len(), sent_at.len());
    latencies.sort_by(f64::total_cmp);
    let (p50, p95) = (percentile(&latencies, 0.5), percentile(&latencies, 0.95));
    println!(
        "media streaming latency, participant packet -> bot socket: p50 {p50:.1} ms, p95 {p95:.1} ms, \
         min {:.1} ms, max {:.1} ms over {} bursts",
        latencies[0],
        latencies[latencies.len() - 1],
        latencies.len()
    );
    // The bar is p50 <= 60 ms (release build, docs/call-automation.md); a debug build on a
    // busy CI machine gets room.
    assert!(p50 < 150.0, "p50 {p50:.1} ms");

    // The bot's echo is played into the call: the caller hears its own tone come back.
    let pcm = decode(&heard);
    let echo = tone_amplitude(&pcm[pcm.len().min(SAMPLE_RATE as usize / 2)..], TONE_HZ);
    println!("the caller hears the bot's echo: {TONE_HZ} Hz amplitude {echo:.0}");
    assert!(echo > 300.0, "the caller does not hear the echo (amplitude {echo:.0})");
    client.close().await;
}
