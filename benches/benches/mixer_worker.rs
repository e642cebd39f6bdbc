//! The mixer in the worker's live path: cost of one 20 ms step of a room whose N participants
//! each send one SRTP Opus packet and receive one SRTP mixed packet (SRTP unprotect → parse →
//! `Mixer::push`, then the tick → RTP header → SRTP protect → socket batch), against the bare
//! `Mixer` (push + tick) on the same packets, so the wired overhead is printed in one run.
//!
//! Run: `cargo bench -p palaver-benches --bench mixer_worker` (criterion group, then the
//! table). `MIXER_BENCH_QUICK=1` prints only the table.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use palaver_sfu::engine::{Command, Engine, MixOutputSpec, RouterId, Transmit, TransportSpec, WorkerCounters};
use palaver_sfu::mixer::{MixOutputs, Mixer, MixerConfig, MixerInput, RtpAudioIn};
use palaver_sfu::router::{ProducerId, ProducerSpec, RouterConfig, TransportId};
use palaver_sfu::srtp::SrtpKeys;
use palaver_sfu::srtp::{Profile, SrtpContext};

mod support;

const OPUS: u8 = 111;
const TALKERS: usize = 3;
const SIZES: [usize; 3] = [3, 50, 350];

/// Keeps nothing: the cost of the socket batch copy is in `buffer`/`commit` of the real shell.
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
    fn commit_direct(&mut self, _len: usize, _to: &palaver_sfu::net::DirectLink) -> bool {
        unreachable!("only UDP transports here")
    }
}

/// Participant `i`'s 20 ms packet at `tick` (plain RTP with an RFC 6464 level).
fn packet(voice: &[Vec<u8>], quiet: &[Vec<u8>], i: usize, tick: u64, out: &mut [u8]) -> usize {
    let talking = i < TALKERS;
    let payload = if talking { &voice[tick as usize % 50] } else { &quiet[tick as usize % 50] };
    out[..12].copy_from_slice(&[0x90, OPUS, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    out[2..4].copy_from_slice(&(tick as u16).to_be_bytes());
    out[4..8].copy_from_slice(&(tick as u32).wrapping_mul(960).to_be_bytes());
    out[8..12].copy_from_slice(&(0xA000 + i as u32).to_be_bytes());
    out[12..20].copy_from_slice(&[0xBE, 0xDE, 0, 1, 0x10, if talking { 0x80 | 20 } else { 110 }, 0, 0]);
    out[20..20 + payload.len()].copy_from_slice(payload);
    20 + payload.len()
}

/// A worker with one room of `n` SRTP participants, all publishing and receiving the mix.
struct WorkerRoom {
    core: Engine,
    tx: Discard,
    clients: Vec<(SrtpContext, SocketAddr)>,
    voice: Vec<Vec<u8>>,
    quiet: Vec<Vec<u8>>,
    t0: Instant,
    tick: u64,
    plain: Vec<u8>,
}

impl WorkerRoom {
    fn new(n: usize, voice: &[Vec<u8>], quiet: &[Vec<u8>]) -> Self {
        let mut core = Engine::new(RouterConfig::default(), 1, Arc::new(WorkerCounters::default()));
        let mut tx = Discard { buf: vec![0; 2048], sent: 0 };
        let t0 = Instant::now();
        let room = RouterId(1);
        core.handle_command(t0, Command::CreateRouter { router: room }, &mut tx).unwrap();
        let profile = Profile::Aes128CmHmacSha1_80;
        let mut clients = Vec::new();
        for i in 0..n {
            let key: Vec<u8> = (0..16u8).map(|b| b ^ i as u8).collect();
            let salt: Vec<u8> = (0..14u8).map(|b| b.wrapping_mul(3) ^ (i >> 8) as u8).collect();
            let addr: SocketAddr = SocketAddr::from(([127, 0, (i >> 8) as u8, i as u8], 40_000));
            let transport = TransportId(i as u32 + 1);
            let keys = SrtpKeys {
                profile,
                local_master_key: key.iter().map(|b| b ^ 0x55).collect(),
                local_master_salt: salt.clone(),
                remote_master_key: key.clone(),
                remote_master_salt: salt.clone(),
            };
            let spec = TransportSpec {
                id: transport,
                router: room,
                ice_ufrag: format!("u{i}"),
                ice_pwd: format!("p{i}"),
                remote: Some(addr),
                srtp: keys,
            };
            let producer = ProducerSpec::opus(ProducerId(i as u32 + 1), transport, OPUS, 0xA000 + i as u32, 1);
            let output = Some(MixOutputSpec { ssrc: 0x9000 + i as u32, payload_type: OPUS });
            for command in [
                Command::AddTransport(Box::new(spec)),
                Command::AddProducer { router: room, spec: producer },
                Command::SetMixOutput { router: room, transport, output },
            ] {
                core.handle_command(t0, command, &mut tx).unwrap();
            }
            clients.push((SrtpContext::new(profile, &key, &salt).unwrap(), addr));
        }
        Self { core, tx, clients, voice: voice.to_vec(), quiet: quiet.to_vec(), t0, tick: 0, plain: vec![0; 1600] }
    }

    /// Hands the worker every client's SRTP packet of this 20 ms (prepared by `prepare`, so
    /// client-side encryption is not timed), then polls once past the tick deadline.
    fn step(&mut self, wire: &mut [Vec<u8>]) {
        let base = self.t0 + Duration::from_millis(self.tick * 20);
        for (i, buf) in wire.iter_mut().enumerate() {
            let len = buf.len();
            self.core.handle_datagram(
                base + Duration::from_millis(1),
                self.clients[i].1,
                &mut buf[..len],
                &mut self.tx,
            );
        }
        self.core.handle_timeout(base + Duration::from_millis(2), &mut self.tx);
        self.tick += 1;
    }

    /// The SRTP packets of the next step (prepared outside the timed region).
    fn prepare(&mut self) -> Vec<Vec<u8>> {
        let tick = self.tick;
        (0..self.clients.len())
            .map(|i| {
                let len = packet(&self.voice, &self.quiet, i, tick, &mut self.plain);
                let mut wire = self.plain[..len].to_vec();
                wire.resize(len + 16, 0);
                let n = self.clients[i].0.protect_rtp(&mut wire, len).unwrap();
                wire.truncate(n);
                wire
            })
            .collect()
    }
}

/// The bare mixer on the same traffic (push parsed fields + tick).
struct BareRoom {
    mixer: Mixer,
    inputs: Vec<MixerInput>,
    out: MixOutputs,
    voice: Vec<Vec<u8>>,
    quiet: Vec<Vec<u8>>,
    t0: Instant,
    tick: u64,
}

impl BareRoom {
    fn new(n: usize, voice: &[Vec<u8>], quiet: &[Vec<u8>]) -> Self {
        let t0 = Instant::now();
        let mut mixer = Mixer::new(t0, MixerConfig::default()).unwrap();
        let inputs = (0..n).map(|_| mixer.add_participant().unwrap()).collect();
        Self { mixer, inputs, out: MixOutputs::new(), voice: voice.to_vec(), quiet: quiet.to_vec(), t0, tick: 0 }
    }

    fn step(&mut self) {
        let base = self.t0 + Duration::from_millis(self.tick * 20);
        for (i, &input) in self.inputs.iter().enumerate() {
            let talking = i < TALKERS;
            let payload =
                if talking { &self.voice[self.tick as usize % 50] } else { &self.quiet[self.tick as usize % 50] };
            let packet = RtpAudioIn {
                seq: self.tick as u16,
                timestamp: (self.tick as u32).wrapping_mul(960),
                audio_level: Some(if talking { (20, true) } else { (110, false) }),
                marker: false,
                payload,
            };
            let _ = self.mixer.push(base + Duration::from_millis(1), input, &packet);
        }
        self.mixer.tick(base + Duration::from_millis(2), &mut self.out);
        self.tick += 1;
    }
}

/// Median µs of the timed part of one step over `steps` steps after a warm-up (medians: the
/// bench machine is shared, and a preempted step should not move the figure), and the
/// packets the worker sent per step.
fn measure(n: usize, voice: &[Vec<u8>], quiet: &[Vec<u8>], steps: u64) -> (f64, f64, u64) {
    let mut worker = WorkerRoom::new(n, voice, quiet);
    let mut bare = BareRoom::new(n, voice, quiet);
    for _ in 0..150 {
        let mut wire = worker.prepare();
        worker.step(&mut wire);
        bare.step();
    }
    let (mut worker_ns, mut bare_ns) = (Vec::new(), Vec::new());
    let sent_before = worker.tx.sent;
    for _ in 0..steps {
        let mut wire = worker.prepare();
        let start = Instant::now();
        worker.step(&mut wire);
        worker_ns.push(start.elapsed().as_nanos() as f64);
        let start = Instant::now();
        bare.step();
        bare_ns.push(start.elapsed().as_nanos() as f64);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2] / 1e3
    };
    let sent = (worker.tx.sent - sent_before) / steps;
    (median(&mut worker_ns), median(&mut bare_ns), sent)
}

fn main() {
    let voice = support::opus_frames::encoded_second(Some(440.0), false);
    let quiet = support::opus_frames::encoded_second(None, false);
    if std::env::var_os("MIXER_BENCH_QUICK").is_none() {
        let mut criterion = Criterion::default().configure_from_args();
        let mut group = criterion.benchmark_group("worker_mix_step");
        group.sample_size(20).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(2));
        for n in SIZES {
            let mut worker = WorkerRoom::new(n, &voice, &quiet);
            group.bench_function(format!("n{n}/talkers{TALKERS}"), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let mut wire = worker.prepare();
                        let start = Instant::now();
                        worker.step(&mut wire);
                        total += start.elapsed();
                    }
                    black_box(worker.tx.sent);
                    total
                })
            });
        }
        group.finish();
        criterion.final_summary();
    }
    println!();
    println!(
        "worker mixing step (20 ms of audio: N SRTP packets in, one mixed SRTP packet out per participant), {TALKERS} talkers"
    );
    println!(
        "{:>5} {:>14} {:>14} {:>14} {:>16} {:>10}",
        "N", "worker µs", "bare mixer µs", "wired extra µs", "extra ns/partic.", "% of core"
    );
    for n in SIZES {
        let (worker, bare, sent) = measure(n, &voice, &quiet, 1000);
        println!(
            "{n:>5} {worker:>14.1} {bare:>14.1} {:>14.1} {:>16.0} {:>9.2}%   ({sent} packets out per step)",
            worker - bare,
            (worker - bare) * 1e3 / n as f64,
            worker / 20_000.0 * 100.0
        );
    }
}
