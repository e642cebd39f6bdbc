//! `cluster_probe`: one QUIC participant of a group call that survives the loss of the
//! call's home node, for the failover trials of `tests/cluster/failover.py` (docs/cluster.md).
//!
//! It joins through the first node of `--nodes` (following a redirect to the home), sends a
//! sine tone as Opus, decodes what it receives, and prints JSON lines: `joined` (the node that
//! hosts it, the conversation and participant ids, role and state, and `how`: `joined` first,
//! then `resumed` or `rejoined`), `audio` (the first decoded frame louder than [`AUDIBLE_RMS`]
//! after each join), `capture` (a `capture.changed` notice), `lost`, `rejoining` (before each
//! attempt to come back), `left`. The loss of the
//! home is noticed as the connection closing or as [`MEDIA_TIMEOUT`] without any received
//! packet (palaver-client's [`FailureDetector`]); the probe then reconnects through the next
//! node and resumes ([`Reconnector::rejoin`]), retrying every [`RETRY`], until `--seconds` have
//! passed or a line arrives on stdin, when it sends `leave` and exits (end of file on stdin,
//! e.g. `/dev/null`, does not stop it).
//!
//! With `https://` URLs in `--nodes` the probe is a **WebRTC** participant instead
//! (`palaver_client::webrtc`, the webrtc-rs peer palaver-load drives): WebSocket signaling to
//! the node named (relayed over the node mesh when the call's home is another node), media
//! straight to the home's worker. It notices the loss of the home as the socket closing, an
//! unsolicited `error`/`session.ended`, or [`MEDIA_TIMEOUT`] without media, and joins again
//! through the next URL.
//!
//! SIGINT (from `tests/cluster/trials.py`) makes the probe `leave` the call, close, print
//! `left` and exit, so the ledger gets the session's true end.
//!
//! With `--meeting-link URL` instead of `--group` the QUIC probe joins that meeting
//! (`tests/cluster/standing.py`); seated in the lobby it prints `lobby` and waits to be admitted
//! (a `snapshot` with its state connected) before attaching media, then prints `admitted`.
//!
//! Usage: `cluster_probe --ca CA.pem --token TOKEN --group UUID --nodes 127.0.0.1:p1,127.0.0.1:p2 --tone 440 --seconds 30`
//! (or `--nodes https://127.0.0.1:h1,https://127.0.0.1:h2` for WebRTC, `--meeting-link URL` for a meeting)

use opus::{Application, Channels, Decoder, Encoder};
use palaver_client::webrtc::{MediaOptions, WebRtcClient, WebRtcOptions};
use palaver_client::{
    ClientMessage, ConnectOptions, FailureDetector, JoinTarget, Joined, MediaTrack, QuicClient, Reconnector, Rejoin,
    ServerMessage, quic,
};
use palaver_core::protocol::{ParticipantState, RosterChange};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;

const SAMPLE_RATE: u32 = 48_000;
const FRAME: usize = 960;
/// A decoded 20 ms frame at least this loud (RMS of i16 samples) counts as hearing the other.
const AUDIBLE_RMS: f64 = 500.0;
/// No packet for this long: the home is gone.
const MEDIA_TIMEOUT: Duration = Duration::from_millis(600);
/// Between failed join attempts.
const RETRY: Duration = Duration::from_millis(150);
/// Connect + each request.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(1000);

struct Args {
    ca: String,
    token: String,
    group: String,
    /// Join this meeting (by its join link) instead of the group call `group`.
    meeting_link: Option<String>,
    nodes: Vec<SocketAddr>,
    tone: f64,
    seconds: u64,
    /// `https://` base URLs: the probe is a WebRTC participant.
    web_nodes: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let (mut ca, mut token, mut group, mut nodes, mut tone, mut seconds) = (None, None, None, None, 440.0, 30);
    let mut web_nodes = Vec::new();
    let mut meeting_link = None;
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--ca" => ca = Some(std::fs::read_to_string(&value).map_err(|e| format!("{value}: {e}"))?),
            "--token" => token = Some(value),
            "--group" => group = Some(value),
            "--meeting-link" => meeting_link = Some(value),
            "--nodes" if value.starts_with("https://") => {
                web_nodes = value.split(',').map(str::to_string).collect();
                nodes = Some(Vec::new());
            }
            "--nodes" => {
                nodes = Some(
                    value
                        .split(',')
                        .map(|a| a.parse().map_err(|_| format!("bad address {a}")))
                        .collect::<Result<_, _>>()?,
                )
            }
            "--tone" => tone = value.parse().map_err(|_| "bad --tone")?,
            "--seconds" => seconds = value.parse().map_err(|_| "bad --seconds")?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(Args {
        ca: ca.ok_or("--ca")?,
        token: token.ok_or("--token")?,
        group: match (group, &meeting_link) {
            (Some(g), _) => g,
            (None, Some(_)) => String::new(),
            (None, None) => return Err("--group or --meeting-link".into()),
        },
        meeting_link,
        nodes: nodes.ok_or("--nodes")?,
        tone,
        seconds,
        web_nodes,
    })
}

fn now_ms() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0)
}

fn event(name: &str, extra: &str) {
    println!("{{\"event\":\"{name}\",\"at_ms\":{}{extra}}}", now_ms());
}

/// Leave (the session ends before the connection closes, so the ledger gets the true end),
/// close, print `left` and return from the probe; every step is bounded so the probe always
/// exits. For both clients (`QuicClient`, `WebRtcClient`: the same method names).
macro_rules! leave_and_exit {
    ($client:ident) => {{
        let leave = async {
            if $client.leave().await.is_ok() {
                while let Some(e) = $client.next_event().await {
                    if matches!(e, ServerMessage::SessionEnded { .. }) {
                        break;
                    }
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), leave).await;
        let _ = tokio::time::timeout(Duration::from_secs(1), $client.close()).await;
        event("left", "");
        return;
    }};
}

fn joined_event(client: &QuicClient, joined: &Joined, how: &str) {
    let s = &joined.snapshot;
    let extra = format!(
        ",\"node\":\"{}\",\"how\":\"{how}\",\"conversation\":\"{}\",\"participant\":\"{}\",\"role\":{},\"state\":{}",
        client.connection().remote_address(),
        joined.conversation_id,
        joined.participant_id,
        serde_json::to_string(&s.role).unwrap_or_default(),
        serde_json::to_string(&s.state).unwrap_or_default(),
    );
    event("joined", &extra);
}

/// Why a connection's media loop ended.
enum Ended {
    Lost,
    Stop,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    probe().await;
    // The stdin reader is a blocking read that the runtime would wait for at shutdown (a
    // caller stopping the probe with SIGINT keeps stdin open): exit at once instead.
    std::process::exit(0);
}

async fn probe() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("cluster_probe: {e}");
            std::process::exit(2);
        }
    };
    let end = Instant::now() + Duration::from_secs(args.seconds);
    // Stop on a line on stdin (failover.py) or SIGINT (trials.py): `leave`, then exit. A closed
    // or /dev/null stdin (a caller that does not use it) leaves the probe running until
    // `--seconds`.
    let (stop_tx, mut stop) = tokio::sync::watch::channel(false);
    let interrupted = std::sync::Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        let line = async {
            if let Ok(Some(_)) = lines.next_line().await {
                return;
            }
            std::future::pending::<()>().await
        };
        tokio::select! {
            Ok(()) = tokio::signal::ctrl_c() => {}
            () = line => {}
        }
        flag.store(true, Ordering::Relaxed);
        let _ = stop_tx.send(true);
        // Keep the sender: a dropped one would read as a change.
        std::future::pending::<()>().await;
    });
    if !args.web_nodes.is_empty() {
        run_webrtc(&args, end, &interrupted).await;
        return;
    }
    let mut options = ConnectOptions::new(args.nodes[0], "localhost", args.ca.clone());
    options.timeout = REQUEST_TIMEOUT;
    let target = match &args.meeting_link {
        Some(join_url) => JoinTarget::MeetingLink { join_url: join_url.clone() },
        None => JoinTarget::GroupCall { group_id: args.group.clone() },
    };
    let mut reconnector =
        Reconnector::new(args.nodes.clone(), options, args.token.clone(), target, Some("probe".into())).expect("nodes");
    let mut encoder = Encoder::new(SAMPLE_RATE, Channels::Mono, Application::Voip).expect("opus encoder");
    let mut decoder = Decoder::new(SAMPLE_RATE, Channels::Mono).expect("opus decoder");
    let mut phase = 0.0f64;
    // The session to resume and the node just lost (not the first one tried again).
    let mut previous: Option<Joined> = None;
    let mut lost_home: Option<SocketAddr> = None;
    while Instant::now() < end && !*stop.borrow() {
        let attempt = match &previous {
            None => reconnector.join(None).await.map(|(c, j)| (c, j, "joined")),
            Some(p) => {
                event("rejoining", "");
                reconnector
                    .rejoin(p, lost_home.take())
                    .await
                    .map(|(c, j, how)| (c, j, if how == Rejoin::Resumed { "resumed" } else { "rejoined" }))
            }
        };
        let (mut client, joined, how) = match attempt {
            Ok(ok) => ok,
            Err(e) => {
                eprintln!("cluster_probe: join failed: {e}");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        let waited = joined.snapshot.state == ParticipantState::Lobby;
        if waited {
            joined_event(&client, &joined, how);
            event("lobby", "");
            match wait_for_admission(&mut client, &joined.participant_id, &mut stop, end).await {
                Some(true) => event("admitted", ""),
                Some(false) => {
                    event("lost", "");
                    lost_home = Some(client.connection().remote_address());
                    previous = Some(joined);
                    tokio::spawn(client.close());
                    continue;
                }
                None => {
                    let _ = client.leave().await;
                    event("left", "");
                    client.close().await;
                    return;
                }
            }
        }
        let ssrc = rand::random::<u32>() | 1;
        if let Err(e) = client.attach_media(vec![MediaTrack::opus(ssrc)]).await {
            eprintln!("cluster_probe: attach failed: {e}");
            client.close().await;
            tokio::time::sleep(RETRY).await;
            continue;
        }
        if !waited {
            joined_event(&client, &joined, how);
        }
        previous = Some(joined);
        let mut sender = client.rtp_sender(ssrc, quic::DEFAULT_OPUS_PT);
        let Some(mut rtp) = client.take_rtp_receiver() else { return };
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let mut detector = FailureDetector::new(MEDIA_TIMEOUT);
        let mut heard = false;
        let mut pcm_out = vec![0i16; FRAME * 6];
        let mut opus_out = vec![0u8; 400];
        let ended = loop {
            if Instant::now() >= end {
                break Ended::Stop;
            }
            tokio::select! {
                Ok(()) = stop.changed() => break Ended::Stop,
                _ = tick.tick() => {
                    if detector.lost(Instant::now()) {
                        break Ended::Lost;
                    }
                    let pcm = tone_frame(&mut phase, args.tone);
                    if let Ok(n) = encoder.encode(&pcm, &mut opus_out)
                        && sender.send(&opus_out[..n], FRAME as u32, Some(20)).is_err()
                    {
                        break Ended::Lost;
                    }
                }
                message = client.next_event() => match message {
                    Some(ServerMessage::CaptureChanged { capture, .. }) => {
                        event("capture", &format!(",\"capture\":{}", serde_json::to_string(&capture).unwrap_or_default()));
                    }
                    // The home is draining: resume elsewhere now (the session was handed over).
                    Some(m) if palaver_client::reconnect::asks_to_resume(&m) => {
                        event("draining", "");
                        break Ended::Lost;
                    }
                    Some(_) => {}
                    None => break Ended::Lost,
                },
                packet = rtp.recv() => {
                    let Some(packet) = packet else { break Ended::Lost };
                    detector.packet_received(Instant::now());
                    if heard || packet.payload_type != quic::DEFAULT_OPUS_PT {
                        continue;
                    }
                    heard = report_if_audible(&mut decoder, &packet.payload, &mut pcm_out);
                }
            }
        };
        match ended {
            Ended::Stop => {
                // `leave` is not answered by an ack: wait for `session.ended` before closing
                // (closing a QUIC connection drops the stream data not yet sent).
                let _ = client.leave().await;
                let _ = tokio::time::timeout(REQUEST_TIMEOUT, async {
                    while let Some(message) = client.next_event().await {
                        if matches!(message, ServerMessage::SessionEnded { .. }) {
                            break;
                        }
                    }
                })
                .await;
                event("left", "");
                client.close().await;
                return;
            }
            Ended::Lost => {
                event("lost", "");
                lost_home = Some(client.connection().remote_address());
                // Closing waits for the dead peer up to a second: not on the way to the next join.
                tokio::spawn(client.close());
            }
        }
    }
}

/// Waits in the lobby until the probe's own state turns `connected`: `Some(true)` admitted,
/// `Some(false)` the connection was lost, `None` stop (stdin, SIGINT, `--seconds`).
async fn wait_for_admission(
    client: &mut QuicClient,
    me: &str,
    stop: &mut tokio::sync::watch::Receiver<bool>,
    end: Instant,
) -> Option<bool> {
    loop {
        tokio::select! {
            Ok(()) = stop.changed() => return None,
            () = tokio::time::sleep_until(end.into()) => return None,
            message = client.next_event() => match message {
                Some(ServerMessage::CaptureChanged { capture, .. }) => {
                    event("capture", &format!(",\"capture\":{}", serde_json::to_string(&capture).unwrap_or_default()));
                }
                // Admission: a fresh snapshot (connected); a roster delta for itself, to be safe.
                Some(ServerMessage::Snapshot { snapshot }) if snapshot.state == ParticipantState::Connected => {
                    return Some(true);
                }
                Some(ServerMessage::RosterDelta {
                    delta: RosterChange::StateChanged { participant_id, state: ParticipantState::Connected },
                    ..
                }) if participant_id == me => return Some(true),
                Some(_) => {}
                None => return Some(false),
            },
        }
    }
}

/// The next 20 ms of the probe's sine tone.
fn tone_frame(phase: &mut f64, tone: f64) -> [i16; FRAME] {
    let mut pcm = [0i16; FRAME];
    for s in pcm.iter_mut() {
        *s = (8000.0 * phase.sin()) as i16;
        *phase += 2.0 * std::f64::consts::PI * tone / f64::from(SAMPLE_RATE);
    }
    *phase %= 2.0 * std::f64::consts::PI;
    pcm
}

/// Decodes one Opus payload; prints `audio` and returns true when the frame is audible.
fn report_if_audible(decoder: &mut Decoder, payload: &[u8], pcm_out: &mut [i16]) -> bool {
    let Ok(n) = decoder.decode(payload, pcm_out, false) else { return false };
    let rms = (pcm_out[..n].iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / n.max(1) as f64).sqrt();
    if rms >= AUDIBLE_RMS {
        event("audio", &format!(",\"rms\":{rms:.0}"));
        return true;
    }
    false
}

/// The WebRTC participant: joins through each URL of `--nodes` in turn until one answers, and
/// whenever the call is lost reconnects through the next one and `resume`s its participant
/// (the home is alive when only the relaying node died: one session continues), else joins
/// again (the home died: a new session on the new home).
async fn run_webrtc(args: &Args, end: Instant, interrupted: &AtomicBool) {
    let mut encoder = Encoder::new(SAMPLE_RATE, Channels::Mono, Application::Voip).expect("opus encoder");
    let mut decoder = Decoder::new(SAMPLE_RATE, Channels::Mono).expect("opus decoder");
    let mut phase = 0.0f64;
    let mut next_node = 0usize;
    let mut pcm_out = vec![0i16; FRAME * 6];
    let mut opus_out = vec![0u8; 400];
    let mut resumable: Option<palaver_client::Joined> = None;
    while Instant::now() < end && !interrupted.load(Ordering::Relaxed) {
        let url = &args.web_nodes[next_node % args.web_nodes.len()];
        next_node += 1;
        let mut options = WebRtcOptions::new(url.clone(), args.ca.clone());
        options.timeout = Duration::from_secs(3);
        let resumed = match resumable.take() {
            Some(previous) => resume_webrtc(&options, args, &previous).await,
            None => None,
        };
        let resumed_flag = resumed.is_some();
        let attempt = match resumed {
            Some(seated) => Ok(seated),
            None => join_webrtc(&options, args).await,
        };
        let (mut client, opus_pt, joined) = match attempt {
            Ok(joined) => joined,
            Err(e) => {
                eprintln!("cluster_probe: WebRTC join through {url} failed: {e}");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        let how = if resumed_flag { "resumed" } else { "joined" };
        let seat = format!(
            ",\"node\":\"{url}\",\"resumed\":{resumed_flag},\"how\":\"{how}\",\"participant\":\"{}\"",
            joined.participant_id
        );
        resumable = Some(joined);
        event("joined", &seat);
        let Ok(mut sender) = client.audio_sender() else { return };
        let Some(mut rtp) = client.take_rtp_receiver() else { return };
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let (mut last_packet, mut heard, mut received_any) = (Instant::now(), false, false);
        loop {
            if Instant::now() >= end {
                client.close().await;
                return;
            }
            tokio::select! {
                _ = tick.tick() => {
                    if interrupted.load(Ordering::Relaxed) {
                        leave_and_exit!(client);
                    }
                    if received_any && last_packet.elapsed() > MEDIA_TIMEOUT {
                        break;
                    }
                    let pcm = tone_frame(&mut phase, args.tone);
                    if let Ok(n) = encoder.encode(&pcm, &mut opus_out)
                        && sender.send(&opus_out[..n], FRAME as u32, Some(20)).await.is_err()
                    {
                        break;
                    }
                }
                frame = client.next_event() => match frame {
                    None | Some(ServerMessage::Error { .. }) | Some(ServerMessage::SessionEnded { .. }) => break,
                    Some(_) => {}
                },
                packet = rtp.recv() => {
                    let Some(packet) = packet else { break };
                    last_packet = Instant::now();
                    received_any = true;
                    if !heard && packet.payload_type == opus_pt {
                        heard = report_if_audible(&mut decoder, &packet.payload, &mut pcm_out);
                    }
                }
            }
        }
        event("lost", "");
        // Closing waits for the dead peer up to 2 s: not on the way to the next join.
        tokio::spawn(client.close());
    }
}

/// Connects, joins the group call and negotiates media; the client, the Opus payload type
/// and what a later `resume` needs.
async fn join_webrtc(
    options: &WebRtcOptions,
    args: &Args,
) -> Result<(WebRtcClient, u8, palaver_client::Joined), palaver_client::ClientError> {
    let mut client = WebRtcClient::connect(options, &args.token).await?;
    let joined = client.join(JoinTarget::GroupCall { group_id: args.group.clone() }, Some("probe".into())).await?;
    let session = client.start_media(MediaOptions::default()).await?;
    Ok((client, session.audio_payload_type, joined))
}

/// Connects and resumes `previous` (answered with `snapshot` by a home that is still alive,
/// with `joined` under the same participant id by the conversation's new home after a
/// takeover), then negotiates media again; `None` when the conversation refuses (join instead).
async fn resume_webrtc(
    options: &WebRtcOptions,
    args: &Args,
    previous: &palaver_client::Joined,
) -> Option<(WebRtcClient, u8, palaver_client::Joined)> {
    let mut client = WebRtcClient::connect(options, &args.token).await.ok()?;
    let resume = ClientMessage::Resume {
        conversation_id: previous.conversation_id.clone(),
        participant_id: previous.participant_id.clone(),
        resume_token: previous.resume_token.clone(),
    };
    client.send(resume).await.ok()?;
    let answered = async {
        while let Some(frame) = client.next_event().await {
            match frame {
                ServerMessage::Snapshot { .. } => return Some(previous.clone()),
                ServerMessage::Joined { resume_token, snapshot, .. } => {
                    return Some(palaver_client::Joined {
                        participant_id: snapshot.participant_id.clone(),
                        conversation_id: snapshot.conversation_id.clone(),
                        resume_token,
                        snapshot,
                    });
                }
                ServerMessage::Error { .. } | ServerMessage::SessionEnded { .. } => return None,
                _ => {}
            }
        }
        None
    };
    let Some(seated) = tokio::time::timeout(Duration::from_secs(2), answered).await.ok().flatten() else {
        tokio::spawn(client.close());
        return None;
    };
    let session = client.start_media(MediaOptions::default()).await.ok()?;
    Some((client, session.audio_payload_type, seated))
}
