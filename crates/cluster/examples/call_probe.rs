//! `call_probe`: one QUIC party of a 1:1 call between users, for `tests/cluster/calls.py`
//! (docs/cluster-rings.md, "Media of a call whose ring crossed nodes").
//!
//! It connects to the node `--node` (`palaver-client`), then either places a call to
//! `--call <raw id>` and waits for `call.connected`, or waits for a `call.incoming` and
//! accepts it. It then attaches the call's media with
//! `QuicClient::attach_call_media_following`: when the call runs on another node (the ring
//! crossed nodes), the node answers `redirect` and the probe attaches on the call's node over a
//! new connection. It sends a sine tone of `--tone` Hz as Opus and decodes what it receives,
//! and reports the first 100 ms in which the tone of `--expect` Hz is louder than
//! [`HEARD_AMPLITUDE`] (the Goertzel amplitude of that frequency, so its own tone or noise
//! does not count).
//!
//! With `--web https://host:port` instead of `--node`, the probe is a **WebRTC** party
//! (`palaver_client::webrtc`, the webrtc-rs peer): WebSocket signaling to that node, and the
//! call's `media.offer` is forwarded to the call's node, whose answer names its own worker, so
//! the media goes straight there while the socket stays where it is (`redirected` is false).
//!
//! JSON lines on stdout: `ready` (welcome read), `placed` / `incoming` (the call id),
//! `connected`, `attached` (`node`: the address the media goes to, `redirected`: whether it
//! moved to another node), `audio` (`amplitude`, `afterAttachMs`), `ended` (the call ended,
//! with its reason), `failed` (`error`), `left`. A line on stdin (or `--seconds` passing)
//! makes it hang up (`call.hangUp`), close and exit.
//!
//! Usage: `call_probe --ca CA.pem --token TOKEN (--node 127.0.0.1:PORT | --web https://127.0.0.1:PORT)
//! --tone 440 --expect 660 [--call 8:acs:...] --seconds 30`

use opus::{Application, Channels, Decoder, Encoder};
use palaver_client::webrtc::{MediaOptions, WebRtcClient, WebRtcOptions};
use palaver_client::{CallEvent, ClientMessage, ConnectOptions, MediaTrack, QuicClient, ServerMessage, quic};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;

const SAMPLE_RATE: u32 = 48_000;
const FRAME: usize = 960;
/// 100 ms of samples: one Goertzel block.
const BLOCK: usize = 4800;
/// The tone is sent at amplitude 8000; heard through Opus and the mixer it reads several
/// thousand. Silence, noise and the other frequency read far below this.
const HEARD_AMPLITUDE: f64 = 1500.0;
/// Connect and each request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

struct Args {
    ca: String,
    token: String,
    node: Option<SocketAddr>,
    /// An `https://` base URL: the probe is a WebRTC party.
    web: Option<String>,
    call: Option<String>,
    tone: f64,
    expect: f64,
    seconds: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let (mut ca, mut token, mut node, mut call, mut web) = (None, None, None, None, None);
    let (mut tone, mut expect, mut seconds) = (440.0, 660.0, 30);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--ca" => ca = Some(std::fs::read_to_string(&value).map_err(|e| format!("{value}: {e}"))?),
            "--token" => token = Some(value),
            "--node" => node = Some(value.parse().map_err(|_| format!("bad address {value}"))?),
            "--web" => web = Some(value),
            "--call" => call = Some(value),
            "--tone" => tone = value.parse().map_err(|_| "bad --tone")?,
            "--expect" => expect = value.parse().map_err(|_| "bad --expect")?,
            "--seconds" => seconds = value.parse().map_err(|_| "bad --seconds")?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if node.is_none() == web.is_none() {
        return Err("exactly one of --node and --web".into());
    }
    Ok(Args { ca: ca.ok_or("--ca")?, token: token.ok_or("--token")?, node, web, call, tone, expect, seconds })
}

fn now_ms() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0)
}

fn event(name: &str, extra: serde_json::Value) {
    let mut line = serde_json::json!({"event": name, "at_ms": now_ms() as u64});
    if let (Some(line), Some(extra)) = (line.as_object_mut(), extra.as_object()) {
        line.extend(extra.clone());
    }
    println!("{line}");
}

fn fail(error: impl std::fmt::Display) -> ! {
    event("failed", serde_json::json!({"error": error.to_string()}));
    std::process::exit(1);
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("call_probe: {e}");
        std::process::exit(2);
    });
    run(args).await;
    // The stdin reader is a blocking read the runtime would wait for at shutdown.
    std::process::exit(0);
}

/// Places the call (`--call`) or answers the first ring, then waits for `call.connected`;
/// the call id. For both clients (`QuicClient`, `WebRtcClient`: the same method names).
macro_rules! set_up_call {
    ($client:ident, $args:ident) => {{
        let call_id = match &$args.call {
            Some(target) => {
                let placed = $client.request(ClientMessage::CallPlace { targets: vec![target.clone()] }).await;
                let call_id = match placed {
                    Ok(ServerMessage::CallPlaced { call_id, .. }) => call_id,
                    other => fail(format!("call.place: {other:?}")),
                };
                event("placed", serde_json::json!({"callId": call_id}));
                call_id
            }
            None => loop {
                match $client.next_call_event().await {
                    Some(incoming @ CallEvent::Incoming { .. }) => {
                        let call_id = incoming.call_id().to_string();
                        event("incoming", serde_json::json!({"callId": call_id}));
                        if let Err(e) = $client.accept_call(&incoming).await {
                            fail(format!("call.accept: {e}"));
                        }
                        break call_id;
                    }
                    Some(_) => {}
                    None => fail("the connection closed before a call rang"),
                }
            },
        };
        loop {
            match $client.next_call_event().await {
                Some(CallEvent::Connected { call_id: c, .. }) if c == call_id => break,
                Some(CallEvent::Ended { call_id: c, reason }) if c == call_id => {
                    fail(format!("the call ended: {reason:?}"))
                }
                Some(_) => {}
                None => fail("the connection closed before the call connected"),
            }
        }
        event("connected", serde_json::json!({"callId": call_id}));
        call_id
    }};
}

/// What the probe hears: decoded Opus in 100 ms blocks, looking for the `--expect` tone.
struct Listener {
    decoder: Decoder,
    expect: f64,
    pcm: Vec<i16>,
    out: Vec<i16>,
    heard: bool,
    since: Instant,
}

impl Listener {
    fn new(expect: f64) -> Self {
        Self {
            decoder: Decoder::new(SAMPLE_RATE, Channels::Mono).expect("opus decoder"),
            expect,
            pcm: Vec::with_capacity(BLOCK * 2),
            out: vec![0i16; FRAME * 6],
            heard: false,
            since: Instant::now(),
        }
    }

    /// One received Opus payload; prints `audio` the first time the expected tone is heard.
    fn feed(&mut self, payload: &[u8]) {
        if self.heard {
            return;
        }
        let Ok(n) = self.decoder.decode(payload, &mut self.out, false) else { return };
        self.pcm.extend_from_slice(&self.out[..n]);
        while self.pcm.len() >= BLOCK && !self.heard {
            let amplitude = goertzel(&self.pcm[..BLOCK], self.expect);
            self.pcm.drain(..BLOCK);
            if amplitude >= HEARD_AMPLITUDE {
                self.heard = true;
                let after = self.since.elapsed().as_millis() as u64;
                event("audio", serde_json::json!({"amplitude": amplitude.round(), "afterAttachMs": after}));
            }
        }
    }
}

/// The probe's own tone, 20 ms of Opus at a time.
struct Speaker {
    encoder: Encoder,
    tone: f64,
    phase: f64,
    out: Vec<u8>,
}

impl Speaker {
    fn new(tone: f64) -> Self {
        let encoder = Encoder::new(SAMPLE_RATE, Channels::Mono, Application::Voip).expect("opus encoder");
        Self { encoder, tone, phase: 0.0, out: vec![0u8; 400] }
    }

    fn next(&mut self) -> Option<&[u8]> {
        let frame = tone_frame(&mut self.phase, self.tone);
        let n = self.encoder.encode(&frame, &mut self.out).ok()?;
        Some(&self.out[..n])
    }
}

/// Why the media loop ended.
enum Ended {
    Stop,
    CallEnded(String),
}

async fn run(args: Args) {
    let end = Instant::now() + Duration::from_secs(args.seconds);
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        if let Ok(Some(_)) = lines.next_line().await {
            let _ = stop_tx.send(true);
        }
        // Keep the sender: a dropped one would read as a change.
        std::future::pending::<()>().await;
    });
    match (args.node, args.web.clone()) {
        (Some(node), _) => run_quic(&args, node, end, stop).await,
        (None, Some(url)) => run_webrtc(&args, url, end, stop).await,
        (None, None) => unreachable!("parse_args requires one"),
    }
}

fn report_end(ended: &Ended) {
    if let Ended::CallEnded(reason) = ended {
        event("ended", serde_json::json!({"reason": reason}));
    }
}

async fn run_quic(args: &Args, node: SocketAddr, end: Instant, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut options = ConnectOptions::new(node, "localhost", args.ca.clone());
    options.timeout = REQUEST_TIMEOUT;
    let mut client = QuicClient::connect(&options, &args.token).await.unwrap_or_else(|e| fail(e));
    event("ready", serde_json::json!({"node": node.to_string()}));
    let call_id = set_up_call!(client, args);
    let ssrc = rand::random::<u32>() | 1;
    let before = client.connection().remote_address();
    if let Err(e) =
        client.attach_call_media_following(&options, &args.token, &call_id, vec![MediaTrack::opus(ssrc)]).await
    {
        fail(format!("media.attach: {e}"));
    }
    let media_node = client.connection().remote_address();
    event("attached", serde_json::json!({"node": media_node.to_string(), "redirected": media_node != before}));
    let mut sender = client.rtp_sender(ssrc, quic::DEFAULT_OPUS_PT);
    let Some(mut rtp) = client.take_rtp_receiver() else { fail("no RTP receiver") };
    let (mut speaker, mut listener) = (Speaker::new(args.tone), Listener::new(args.expect));
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let ended = loop {
        if Instant::now() >= end {
            break Ended::Stop;
        }
        tokio::select! {
            Ok(()) = stop.changed() => break Ended::Stop,
            _ = tick.tick() => {
                if let Some(payload) = speaker.next() {
                    let _ = sender.send(payload, FRAME as u32, Some(20));
                }
            }
            call = client.next_call_event() => match call {
                Some(CallEvent::Ended { call_id: c, reason }) if c == call_id => break Ended::CallEnded(format!("{reason:?}")),
                Some(_) => {}
                None => fail("the connection closed during the call"),
            },
            packet = rtp.recv() => match packet {
                Some(p) if p.payload_type == quic::DEFAULT_OPUS_PT => listener.feed(&p.payload),
                Some(_) => {}
                None => fail("the media ended"),
            },
        }
    };
    report_end(&ended);
    if matches!(ended, Ended::Stop) {
        let _ = client.request(ClientMessage::CallHangUp { call_id }).await;
    }
    event("left", serde_json::json!({}));
    client.close().await;
}

async fn run_webrtc(args: &Args, url: String, end: Instant, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut options = WebRtcOptions::new(url.clone(), args.ca.clone());
    options.timeout = REQUEST_TIMEOUT;
    let mut client = WebRtcClient::connect(&options, &args.token).await.unwrap_or_else(|e| fail(e));
    event("ready", serde_json::json!({"node": url}));
    let call_id = set_up_call!(client, args);
    let session = match client.start_call_media(&call_id, MediaOptions::default()).await {
        Ok(session) => session,
        Err(e) => fail(format!("media.offer: {e}")),
    };
    event("attached", serde_json::json!({"node": url, "redirected": false}));
    let Ok(mut sender) = client.audio_sender() else { fail("no audio sender") };
    let Some(mut rtp) = client.take_rtp_receiver() else { fail("no RTP receiver") };
    let (mut speaker, mut listener) = (Speaker::new(args.tone), Listener::new(args.expect));
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let ended = loop {
        if Instant::now() >= end {
            break Ended::Stop;
        }
        tokio::select! {
            Ok(()) = stop.changed() => break Ended::Stop,
            _ = tick.tick() => {
                if let Some(payload) = speaker.next() {
                    let _ = sender.send(payload, FRAME as u32, Some(20)).await;
                }
            }
            call = client.next_call_event() => match call {
                Some(CallEvent::Ended { call_id: c, reason }) if c == call_id => break Ended::CallEnded(format!("{reason:?}")),
                Some(_) => {}
                None => fail("the socket closed during the call"),
            },
            packet = rtp.recv() => match packet {
                Some(p) if p.payload_type == session.audio_payload_type => listener.feed(&p.payload),
                Some(_) => {}
                None => fail("the media ended"),
            },
        }
    };
    report_end(&ended);
    if matches!(ended, Ended::Stop) {
        let _ = client.request(ClientMessage::CallHangUp { call_id }).await;
    }
    event("left", serde_json::json!({}));
    client.close().await;
}

/// The next 20 ms of the probe's sine tone (amplitude 8000).
fn tone_frame(phase: &mut f64, tone: f64) -> [i16; FRAME] {
    let mut pcm = [0i16; FRAME];
    for s in pcm.iter_mut() {
        *s = (8000.0 * phase.sin()) as i16;
        *phase += 2.0 * std::f64::consts::PI * tone / f64::from(SAMPLE_RATE);
    }
    *phase %= 2.0 * std::f64::consts::PI;
    pcm
}

/// The Goertzel amplitude of `hz` in `pcm` (a sine of amplitude A at `hz` reads about A).
fn goertzel(pcm: &[i16], hz: f64) -> f64 {
    let coeff = 2.0 * (2.0 * std::f64::consts::PI * hz / f64::from(SAMPLE_RATE)).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in pcm {
        let s = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    2.0 * (s1 * s1 + s2 * s2 - coeff * s1 * s2).max(0.0).sqrt() / pcm.len() as f64
}
