//! `cluster_probe`: one QUIC participant of a group call that survives the loss of the
//! call's home node, for the failover trials of `tests/cluster/failover.py` (docs/cluster.md).
//!
//! It joins through the first node of `--nodes` (following a redirect to the home), sends a
//! sine tone as Opus, decodes what it receives, and prints JSON lines: `joined` (with the node
//! that hosts it), `audio` (the first decoded frame louder than [`AUDIBLE_RMS`] after each
//! join), `lost`. The loss of the home is noticed as the connection closing or as
//! [`MEDIA_TIMEOUT`] without any received packet; the probe then joins again through the next
//! node of the list, retrying every [`RETRY`], until `--seconds` have passed.
//!
//! Usage: `cluster_probe --ca CA.pem --token TOKEN --group UUID --nodes 127.0.0.1:p1,127.0.0.1:p2 --tone 440 --seconds 30`

use opus::{Application, Channels, Decoder, Encoder};
use palaver_client::{ConnectOptions, JoinTarget, MediaTrack, QuicClient, quic};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

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
    nodes: Vec<SocketAddr>,
    tone: f64,
    seconds: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let (mut ca, mut token, mut group, mut nodes, mut tone, mut seconds) = (None, None, None, None, 440.0, 30);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--ca" => ca = Some(std::fs::read_to_string(&value).map_err(|e| format!("{value}: {e}"))?),
            "--token" => token = Some(value),
            "--group" => group = Some(value),
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
        group: group.ok_or("--group")?,
        nodes: nodes.ok_or("--nodes")?,
        tone,
        seconds,
    })
}

fn now_ms() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0)
}

fn event(name: &str, extra: &str) {
    println!("{{\"event\":\"{name}\",\"at_ms\":{}{extra}}}", now_ms());
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("cluster_probe: {e}");
            std::process::exit(2);
        }
    };
    let end = Instant::now() + Duration::from_secs(args.seconds);
    let mut encoder = Encoder::new(SAMPLE_RATE, Channels::Mono, Application::Voip).expect("opus encoder");
    let mut decoder = Decoder::new(SAMPLE_RATE, Channels::Mono).expect("opus decoder");
    let mut phase = 0.0f64;
    let mut next_node = 0usize;
    // The node of the connection just lost (the home that died): not the first one tried again.
    let mut lost_home: Option<SocketAddr> = None;
    while Instant::now() < end {
        let mut server = args.nodes[next_node % args.nodes.len()];
        next_node += 1;
        if Some(server) == lost_home.take() {
            server = args.nodes[next_node % args.nodes.len()];
            next_node += 1;
        }
        let mut options = ConnectOptions::new(server, "localhost", args.ca.clone());
        options.timeout = REQUEST_TIMEOUT;
        let target = JoinTarget::GroupCall { group_id: args.group.clone() };
        let joined = QuicClient::connect_and_join(&options, &args.token, target, Some("probe".into())).await;
        let mut client = match joined {
            Ok((client, _)) => client,
            Err(e) => {
                eprintln!("cluster_probe: join through {server} failed: {e}");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        let ssrc = rand::random::<u32>() | 1;
        if let Err(e) = client.attach_media(vec![MediaTrack::opus(ssrc)]).await {
            eprintln!("cluster_probe: attach failed: {e}");
            client.close().await;
            tokio::time::sleep(RETRY).await;
            continue;
        }
        event("joined", &format!(",\"node\":\"{}\"", client.connection().remote_address()));
        let mut sender = client.rtp_sender(ssrc, quic::DEFAULT_OPUS_PT);
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let mut last_packet = Instant::now();
        let mut heard = false;
        let mut received_any = false;
        let mut pcm_out = vec![0i16; FRAME * 6];
        let mut opus_out = vec![0u8; 400];
        loop {
            if Instant::now() >= end {
                client.close().await;
                return;
            }
            tokio::select! {
                _ = tick.tick() => {
                    if received_any && last_packet.elapsed() > MEDIA_TIMEOUT {
                        break;
                    }
                    let mut pcm = [0i16; FRAME];
                    for s in pcm.iter_mut() {
                        *s = (8000.0 * phase.sin()) as i16;
                        phase += 2.0 * std::f64::consts::PI * args.tone / f64::from(SAMPLE_RATE);
                    }
                    phase %= 2.0 * std::f64::consts::PI;
                    if let Ok(n) = encoder.encode(&pcm, &mut opus_out)
                        && sender.send(&opus_out[..n], FRAME as u32, Some(20)).is_err()
                    {
                        break;
                    }
                }
                packet = client.recv_rtp() => {
                    let Some(packet) = packet else { break };
                    last_packet = Instant::now();
                    received_any = true;
                    if heard || packet.payload_type != quic::DEFAULT_OPUS_PT {
                        continue;
                    }
                    if let Ok(n) = decoder.decode(&packet.payload, &mut pcm_out, false) {
                        let rms = (pcm_out[..n].iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / n.max(1) as f64).sqrt();
                        if rms >= AUDIBLE_RMS {
                            heard = true;
                            event("audio", &format!(",\"rms\":{rms:.0}"));
                        }
                    }
                }
            }
        }
        event("lost", "");
        lost_home = Some(client.connection().remote_address());
        // Closing waits for the dead peer up to a second: not on the way to the next join.
        tokio::spawn(client.close());
    }
}
