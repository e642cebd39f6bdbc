//! Forwarding cost of the SFU packet path, in process: one publisher's SRTP packets through a
//! worker core (demux by source address → SRTP unprotect → route → per subscriber: header
//! rewrite + SRTP protect into the send batch) to N = 1, 10, 100, 500 subscribers, for
//! 100-byte audio and 1100-byte video payloads. Throughput is reported per forwarded packet
//! (`Throughput::Elements(N)`), so criterion's time/N is the cost of one forwarded packet.
//! Also compares our in-place SRTP protect with webrtc-rs `webrtc-srtp` (which allocates).
//!
//! Measured in CPU time of the benchmarking thread (`CLOCK_THREAD_CPUTIME_ID`), not wall
//! time (`support/thread_cpu.rs`), so figures stay meaningful on a shared, loaded machine; the
//! throughput line reads directly as CPU nanoseconds per forwarded packet.

mod support;

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use palaver_core::MediaKind;
use palaver_sfu::engine::{Command, Engine, RouterId, Transmit, TransportSpec, WorkerCounters};
use palaver_sfu::router::{ConsumerId, ConsumerSpec, LayerSpec, ProducerId, ProducerSpec, RouterConfig, TransportId};
use palaver_sfu::rtp::{Codec, ExtensionMap};
use palaver_sfu::srtp::SrtpKeys;
use palaver_sfu::srtp::{Profile, SrtpContext};
use support::thread_cpu::ThreadCpuTime;

const SSRC: u32 = 0x0102_0304;

/// Counts datagrams; the bytes stay in one reused buffer (no syscalls in this bench).
struct NullTransmit {
    buf: Vec<u8>,
    sent: u64,
}

impl Transmit for NullTransmit {
    fn buffer(&mut self) -> &mut [u8] {
        &mut self.buf
    }
    fn commit(&mut self, len: usize, _to: SocketAddr) {
        black_box(&self.buf[..len]);
        self.sent += 1;
    }
    fn commit_direct(&mut self, _len: usize, _to: &palaver_sfu::net::DirectLink) -> bool {
        unreachable!("only UDP transports here")
    }
}

fn keys(n: u32, profile: Profile) -> (Vec<u8>, Vec<u8>) {
    let key = (0..16u8).map(|i| i ^ n as u8 ^ (n >> 8) as u8).collect();
    let salt = (0..profile.salt_len() as u8).map(|i| i.wrapping_mul(7) ^ n as u8).collect();
    (key, salt)
}

fn transport(room: RouterId, n: u32, remote: SocketAddr, profile: Profile) -> Command {
    let (key, salt) = keys(n, profile);
    Command::AddTransport(Box::new(TransportSpec {
        id: TransportId(n),
        router: room,
        ice_ufrag: format!("u{n}"),
        ice_pwd: format!("p{n}"),
        remote: Some(remote),
        srtp: SrtpKeys {
            profile,
            local_master_key: key.clone(),
            local_master_salt: salt.clone(),
            remote_master_key: key,
            remote_master_salt: salt,
        },
    }))
}

/// A worker core with one publisher (transport 0) and `subscribers` consumers of its track.
fn setup(subscribers: u32, video: bool, profile: Profile) -> (Engine, NullTransmit, SrtpContext, SocketAddr) {
    let counters = Arc::new(WorkerCounters::default());
    let mut core = Engine::new(RouterConfig::default(), 1, counters);
    let mut tx = NullTransmit { buf: vec![0; 2048], sent: 0 };
    let now = Instant::now();
    let room = RouterId(1);
    let publisher: SocketAddr = "10.0.0.1:5000".parse().unwrap();
    core.handle_command(now, Command::CreateRouter { router: room }, &mut tx).unwrap();
    core.handle_command(now, transport(room, 0, publisher, profile), &mut tx).unwrap();
    let (codec, pt, kind) =
        if video { (Codec::Vp8, 96, MediaKind::Video) } else { (Codec::Opus, 111, MediaKind::Audio) };
    let spec = ProducerSpec {
        id: ProducerId(1),
        transport: TransportId(0),
        kind,
        mid: None,
        codecs: vec![(pt, codec)],
        layers: vec![LayerSpec {
            rid: None,
            ssrc: Some(SSRC),
            rtx_ssrc: None,
            width: 640,
            height: 360,
            max_bitrate_bps: 0,
        }],
        extensions: ExtensionMap { audio_level: if video { 0 } else { 1 }, ..Default::default() },
    };
    core.handle_command(now, Command::AddProducer { router: room, spec }, &mut tx).unwrap();
    for n in 1..=subscribers {
        let addr = SocketAddr::from(([10, 1, (n >> 8) as u8, n as u8], 6000));
        core.handle_command(now, transport(room, n, addr, profile), &mut tx).unwrap();
        let spec = ConsumerSpec {
            id: ConsumerId(n),
            transport: TransportId(n),
            producer: ProducerId(1),
            ssrc: 0x7000_0000 + n,
            rtx: None,
            paused: false,
            max_height: u16::MAX,
        };
        core.handle_command(now, Command::AddConsumer { router: room, spec }, &mut tx).unwrap();
    }
    let (key, salt) = keys(0, profile);
    let client = SrtpContext::new(profile, &key, &salt).unwrap();
    (core, tx, client, publisher)
}

/// Builds the next protected packet from the publisher.
fn next_packet(client: &mut SrtpContext, seq: &mut u16, payload: usize, video: bool) -> Vec<u8> {
    let overhead = client.profile().rtp_overhead();
    let mut p = vec![0u8; 12 + 8 + payload + overhead];
    p[..12].copy_from_slice(&[0x90, if video { 96 } else { 111 }, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(*seq as u32 * 960).to_be_bytes());
    p[8..12].copy_from_slice(&SSRC.to_be_bytes());
    p[12..20].copy_from_slice(&[0xBE, 0xDE, 0, 1, 0x10, 0x80 | 40, 0, 0]);
    p[20..20 + payload].fill(0x42);
    if video {
        p[20] = 0x10;
        p[21] = if *seq == 0 { 0x00 } else { 0x01 }; // first packet is a keyframe
    }
    *seq = seq.wrapping_add(1);
    let plain = p.len() - overhead;
    let n = client.protect_rtp(&mut p, plain).unwrap();
    p.truncate(n);
    p
}

fn forward(c: &mut Criterion<ThreadCpuTime>) {
    let cases = [
        ("forward_audio_100B_aes_cm_hmac_sha1_80", 100, false, Profile::Aes128CmHmacSha1_80),
        ("forward_audio_100B_aead_aes_128_gcm", 100, false, Profile::AeadAes128Gcm),
        ("forward_video_1100B_aes_cm_hmac_sha1_80", 1100, true, Profile::Aes128CmHmacSha1_80),
        ("forward_video_1100B_aead_aes_128_gcm", 1100, true, Profile::AeadAes128Gcm),
    ];
    for (name, payload, video, profile) in cases {
        let mut group = c.benchmark_group(name);
        group.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(2));
        for subscribers in [1u32, 10, 100, 500] {
            let (mut core, mut tx, mut client, publisher) = setup(subscribers, video, profile);
            let mut seq = 0u16;
            let now = Instant::now();
            // warm up: keyframe switch, SRTP per-SSRC state
            for _ in 0..10 {
                let mut p = next_packet(&mut client, &mut seq, payload, video);
                core.handle_datagram(now, publisher, &mut p, &mut tx);
            }
            let forwarded = core.counters().snapshot().rtp_forwarded;
            assert_eq!(forwarded, 10 * subscribers as u64, "every subscriber must be forwarded to");
            group.throughput(Throughput::Elements(subscribers as u64));
            group.bench_function(BenchmarkId::from_parameter(subscribers), |b| {
                b.iter_batched_ref(
                    || next_packet(&mut client, &mut seq, payload, video),
                    |p| core.handle_datagram(now, publisher, p, &mut tx),
                    BatchSize::SmallInput,
                )
            });
            let snapshot = core.counters().snapshot();
            assert_eq!(snapshot.dropped_total(), 0, "{snapshot:?}");
        }
        group.finish();
    }
}

fn srtp_protect(c: &mut Criterion<ThreadCpuTime>) {
    let mut group = c.benchmark_group("srtp_protect_100B");
    const PROFILE: Profile = Profile::Aes128CmHmacSha1_80;
    let (key, salt) = keys(3, PROFILE);
    let mut plain = vec![0x80u8, 111, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4];
    plain.extend_from_slice(&[0x42; 100]);
    let mut ours = SrtpContext::new(PROFILE, &key, &salt).unwrap();
    let mut buf = plain.clone();
    buf.resize(plain.len() + PROFILE.rtp_overhead(), 0);
    let mut seq = 0u16;
    group.bench_function("palaver_in_place", |b| {
        b.iter(|| {
            seq = seq.wrapping_add(1);
            buf[..plain.len()].copy_from_slice(&plain);
            buf[2..4].copy_from_slice(&seq.to_be_bytes());
            black_box(ours.protect_rtp(&mut buf, plain.len()).unwrap());
        })
    });
    let mut theirs = webrtc_srtp::context::Context::new(
        &key,
        &salt,
        webrtc_srtp::protection_profile::ProtectionProfile::Aes128CmHmacSha1_80,
        None,
        None,
    )
    .unwrap();
    let mut packet = plain.clone();
    group.bench_function("webrtc_srtp", |b| {
        b.iter(|| {
            seq = seq.wrapping_add(1);
            packet[2..4].copy_from_slice(&seq.to_be_bytes());
            black_box(theirs.encrypt_rtp(&packet).unwrap());
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = forward, srtp_protect
}
criterion_main!(benches);
