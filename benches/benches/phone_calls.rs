//! Phone calls against QUIC calls in one media worker: N concurrent calls, each a QUIC agent
//! (direct transport, Opus) with either a G.711 phone leg (plain RTP/AVP, PCMU: decoded into
//! the mix, the mix encoded to PCMU and to Opus) or a second QUIC participant (Opus only).
//! The two sides of a call talk in turns (one second each), as people do. Measured: thread
//! CPU per 20 ms worker step (N packets in per side, the mixer ticks, the packets out), per
//! call and per packet, and the share of one core.
//!
//! Run: `cargo bench -p palaver-benches --bench phone_calls` (prints the table;
//! `PHONE_BENCH_STEPS` steps per row, default 500).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use palaver_core::MediaKind;
use palaver_sfu::engine::{Command, Engine, MixOutputSpec, RouterId, Transmit, WorkerCounters};
use palaver_sfu::mixer::g711::{G711_FRAME_BYTES, Law};
use palaver_sfu::net::DirectLink;
use palaver_sfu::router::{LayerSpec, ProducerId, ProducerSpec, RouterConfig, TransportId};
use palaver_sfu::rtp::{Codec, ExtensionMap};

mod support;

const OPUS: u8 = 111;
const CALLS: [usize; 3] = [10, 50, 200];

/// Keeps nothing, counts the packets.
struct Discard {
    buf: Vec<u8>,
    sent: u64,
}

impl Transmit for Discard {
    fn buffer(&mut self) -> &mut [u8] {
        &mut self.buf
    }
    fn commit(&mut self, _len: usize, _to: SocketAddr) {
        self.sent += 1;
    }
    fn commit_direct(&mut self, _len: usize, _to: &DirectLink) -> bool {
        self.sent += 1;
        true
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Phone,
    Quic,
}

struct Worker {
    core: Engine,
    tx: Discard,
    t0: Instant,
    tick: u64,
    kind: Kind,
    calls: usize,
    voice: Vec<Vec<u8>>,
    quiet: Vec<Vec<u8>>,
    tone: Vec<u8>,
    silence: Vec<u8>,
    packet: Vec<u8>,
    received: u64,
}

fn phone_addr(call: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, (call / 200) as u8, (call % 200) as u8 + 1], 40_000))
}

impl Worker {
    fn new(kind: Kind, calls: usize, voice: &[Vec<u8>], quiet: &[Vec<u8>]) -> Self {
        let counters = Arc::new(WorkerCounters::default());
        let mut core = Engine::new(RouterConfig::default(), 1, counters);
        let mut tx = Discard { buf: vec![0; 2048], sent: 0 };
        let t0 = Instant::now();
        for call in 0..calls {
            let router = RouterId(call as u64 + 1);
            let agent = TransportId(10 * call as u32 + 1);
            let other = TransportId(10 * call as u32 + 2);
            let mut commands = vec![
                Command::CreateRouter { router },
                Command::AddDirectTransport { id: agent, router, link: DirectLink::new(64) },
                Command::AddProducer { router, spec: ProducerSpec::opus(ProducerId(agent.0), agent, OPUS, agent.0, 1) },
                Command::SetMixOutput {
                    router,
                    transport: agent,
                    output: Some(MixOutputSpec { ssrc: 0x9000 + agent.0, payload_type: OPUS }),
                },
            ];
            match kind {
                Kind::Phone => {
                    let spec = ProducerSpec {
                        id: ProducerId(other.0),
                        transport: other,
                        kind: MediaKind::Audio,
                        mid: None,
                        codecs: vec![(0, Codec::Pcmu)],
                        layers: vec![LayerSpec {
                            rid: None,
                            ssrc: None,
                            rtx_ssrc: None,
                            width: 0,
                            height: 0,
                            max_bitrate_bps: 0,
                        }],
                        extensions: ExtensionMap::default(),
                    };
                    commands.push(Command::AddRtpTransport { id: other, router, remote: phone_addr(call) });
                    commands.push(Command::AddProducer { router, spec });
                    commands.push(Command::SetMixOutput {
                        router,
                        transport: other,
                        output: Some(MixOutputSpec { ssrc: 0x9000 + other.0, payload_type: 0 }),
                    });
                }
                Kind::Quic => {
                    commands.push(Command::AddDirectTransport { id: other, router, link: DirectLink::new(64) });
                    let spec = ProducerSpec::opus(ProducerId(other.0), other, OPUS, other.0, 1);
                    commands.push(Command::AddProducer { router, spec });
                    commands.push(Command::SetMixOutput {
                        router,
                        transport: other,
                        output: Some(MixOutputSpec { ssrc: 0x9000 + other.0, payload_type: OPUS }),
                    });
                }
            }
            for command in commands {
                core.handle_command(t0, command, &mut tx).expect("command");
            }
        }
        let tone = (0..G711_FRAME_BYTES)
            .map(|n| Law::Mu.encode((8000.0 * (std::f32::consts::TAU * 1000.0 * n as f32 / 8000.0).sin()) as i16))
            .collect();
        Self {
            core,
            tx,
            t0,
            tick: 0,
            kind,
            calls,
            voice: voice.to_vec(),
            quiet: quiet.to_vec(),
            tone,
            silence: vec![Law::Mu.silence_byte(); G711_FRAME_BYTES],
            packet: vec![0; 1500],
            received: 0,
        }
    }

    /// One 20 ms step: every participant's packet in, then the timers (the mixer ticks).
    fn step(&mut self) {
        let tick = self.tick;
        self.tick += 1;
        let now = self.t0 + Duration::from_millis(tick * 20);
        // The agent talks in odd seconds, the other side in even ones.
        let agent_talks = (tick / 50) % 2 == 1;
        for call in 0..self.calls {
            let agent = TransportId(10 * call as u32 + 1);
            let other = TransportId(10 * call as u32 + 2);
            for (who, talks) in [(agent, agent_talks), (other, !agent_talks)] {
                let p = &mut self.packet;
                if who == other && self.kind == Kind::Phone {
                    let payload = if talks { &self.tone } else { &self.silence };
                    p[..12].copy_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
                    p[2..4].copy_from_slice(&(tick as u16).to_be_bytes());
                    p[4..8].copy_from_slice(&(tick as u32).wrapping_mul(160).to_be_bytes());
                    p[8..12].copy_from_slice(&(0x5000 + call as u32).to_be_bytes());
                    p[12..12 + G711_FRAME_BYTES].copy_from_slice(payload);
                    let len = 12 + G711_FRAME_BYTES;
                    self.core.handle_datagram(
                        now + Duration::from_millis(1),
                        phone_addr(call),
                        &mut p[..len],
                        &mut self.tx,
                    );
                } else {
                    let payload = if talks { &self.voice[tick as usize % 50] } else { &self.quiet[tick as usize % 50] };
                    p[..12].copy_from_slice(&[0x90, OPUS, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
                    p[2..4].copy_from_slice(&(tick as u16).to_be_bytes());
                    p[4..8].copy_from_slice(&(tick as u32).wrapping_mul(960).to_be_bytes());
                    p[8..12].copy_from_slice(&who.0.to_be_bytes());
                    p[12..20].copy_from_slice(&[0xBE, 0xDE, 0, 1, 0x10, if talks { 0x80 | 20 } else { 110 }, 0, 0]);
                    p[20..20 + payload.len()].copy_from_slice(payload);
                    let len = 20 + payload.len();
                    self.core.handle_direct(now + Duration::from_millis(1), who, &p[..len], &mut self.tx);
                }
                self.received += 1;
            }
        }
        self.core.handle_timeout(now + Duration::from_millis(10), &mut self.tx);
    }
}

fn main() {
    let voice = support::opus_frames::encoded_second(Some(440.0), false);
    let quiet = support::opus_frames::encoded_second(None, false);
    let steps: u64 = std::env::var("PHONE_BENCH_STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(500);
    println!();
    println!(
        "N concurrent calls in one worker, sides talking in turns; thread CPU per 20 ms step ({steps} steps after 100 warm-up)"
    );
    println!(
        "{:>6} {:>14} {:>12} {:>14} {:>14} {:>10}",
        "calls", "kind", "µs / step", "µs / call", "ns / packet", "% of core"
    );
    for calls in CALLS {
        for kind in [Kind::Quic, Kind::Phone] {
            let mut worker = Worker::new(kind, calls, &voice, &quiet);
            for _ in 0..100 {
                worker.step();
            }
            let (sent_before, received_before) = (worker.tx.sent, worker.received);
            let start = support::thread_cpu::thread_cpu_ns();
            for _ in 0..steps {
                worker.step();
            }
            let cpu_ns = (support::thread_cpu::thread_cpu_ns() - start) as f64 / steps as f64;
            let packets = ((worker.tx.sent - sent_before) + (worker.received - received_before)) as f64 / steps as f64;
            let name = match kind {
                Kind::Quic => "Opus ↔ Opus",
                Kind::Phone => "PCMU ↔ Opus",
            };
            println!(
                "{calls:>6} {name:>14} {:>12.1} {:>14.2} {:>14.0} {:>9.2}%",
                cpu_ns / 1e3,
                cpu_ns / 1e3 / calls as f64,
                cpu_ns / packets.max(1.0),
                cpu_ns / 20e6 * 100.0
            );
        }
    }
}
