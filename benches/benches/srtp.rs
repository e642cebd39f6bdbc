//! Where the SRTP time of a forwarded audio packet goes: the pieces of in-place SRTP protect
//! and unprotect measured on their own (SHA-1 compression blocks, HMAC-SHA1 over a 124-byte
//! authenticated portion, AES-128 blocks for the counter-mode keystream) next to the whole
//! `SrtpContext` protect/unprotect of a 100-byte-payload audio packet for every profile, and
//! (`srtp_backends`) one packet's protect + unprotect with each cipher [`Backend`] —
//! hand-written AES-NI/SHA-NI/PCLMULQDQ vs the RustCrypto crates in place — for
//! AES-CM-HMAC-SHA1-80 and AEAD-AES-128-GCM at 100 B and 1,200 B payloads (docs/media.md).
//! CPU time of the benchmarking thread, see `support/thread_cpu.rs`.

mod support;

use std::hint::black_box;
use std::time::Duration;

use aes::Aes128Enc;
use aes::cipher::{BlockEncrypt, KeyInit};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use hmac::{Hmac, Mac};
use palaver_sfu::srtp::{Backend, Profile, SrtpContext};
use sha1::Sha1;
use support::thread_cpu::ThreadCpuTime;

/// 12-byte header + 8-byte one-byte-extension block + 100-byte payload (Opus ~40 kbit/s).
fn audio_packet(seq: u16) -> Vec<u8> {
    packet(seq, 100)
}

/// 12-byte header + 8-byte one-byte-extension block + `payload` bytes.
fn packet(seq: u16, payload: usize) -> Vec<u8> {
    let mut p = vec![0x90, 111, 0, 0, 0, 0, 0x30, 0x39, 1, 2, 3, 4, 0xBE, 0xDE, 0, 1, 0x10, 0xA8, 0, 0];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p.extend((0..payload).map(|i| i as u8));
    p
}

fn primitives(c: &mut Criterion<ThreadCpuTime>) {
    let mut group = c.benchmark_group("srtp_pieces");
    group.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(2));
    let blocks: [sha1::digest::core_api::Block<sha1::Sha1Core>; 4] = [[0x5Au8; 64].into(); 4];
    let mut state = [0x6745_2301u32, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476, 0xC3D2_E1F0];
    group.throughput(Throughput::Elements(1));
    group.bench_function("sha1_compress_1_block", |b| b.iter(|| sha1::compress(black_box(&mut state), &blocks[..1])));
    group.throughput(Throughput::Elements(4));
    group.bench_function("sha1_compress_4_blocks_per_element", |b| {
        b.iter(|| sha1::compress(black_box(&mut state), &blocks))
    });
    group.throughput(Throughput::Elements(1));
    let keyed = <Hmac<Sha1> as Mac>::new_from_slice(&[7u8; 20]).unwrap();
    let message = [0x33u8; 120];
    group.bench_function("hmac_crate_sha1_124B_from_cached_key", |b| {
        b.iter(|| {
            let mut mac = keyed.clone();
            mac.update(black_box(&message));
            mac.update(&[0, 0, 0, 0]);
            black_box(mac.finalize().into_bytes())
        })
    });
    let aes = Aes128Enc::new(&[9u8; 16].into());
    let mut ks = [aes::Block::default(); 7];
    group.bench_function("aes128_7_blocks", |b| b.iter(|| aes.encrypt_blocks(black_box(&mut ks))));
    group.finish();
}

fn context(c: &mut Criterion<ThreadCpuTime>) {
    let mut group = c.benchmark_group("srtp_context_100B");
    group.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(2));
    group.throughput(Throughput::Elements(1));
    for (name, profile) in [
        ("aes_cm_hmac_sha1_80", Profile::Aes128CmHmacSha1_80),
        ("aes_cm_hmac_sha1_32", Profile::Aes128CmHmacSha1_32),
        ("aead_aes_128_gcm", Profile::AeadAes128Gcm),
    ] {
        let key = [0x11u8; 16];
        let salt = vec![0x22u8; profile.salt_len()];
        let mut sender = SrtpContext::new(profile, &key, &salt).unwrap();
        let mut receiver = SrtpContext::new(profile, &key, &salt).unwrap();
        let plain = audio_packet(0);
        let mut buf = plain.clone();
        buf.resize(plain.len() + profile.rtp_overhead(), 0);
        let mut seq = 0u16;
        group.bench_function(format!("protect/{name}"), |b| {
            b.iter(|| {
                seq = seq.wrapping_add(1);
                buf[..plain.len()].copy_from_slice(&plain);
                buf[2..4].copy_from_slice(&seq.to_be_bytes());
                black_box(sender.protect_rtp(&mut buf, plain.len()).unwrap())
            })
        });
        // a fresh sender: the protect run above wrapped its sequence numbers many times
        let mut sender = SrtpContext::new(profile, &key, &salt).unwrap();
        let mut seq = 0u16;
        group.bench_function(format!("unprotect/{name}"), |b| {
            b.iter_batched_ref(
                || {
                    seq = seq.wrapping_add(1);
                    let mut p = audio_packet(seq);
                    let len = p.len();
                    p.resize(len + profile.rtp_overhead(), 0);
                    sender.protect_rtp(&mut p, len).unwrap();
                    p
                },
                |p| black_box(receiver.unprotect_rtp(p).unwrap()),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// One packet protected by a sender and unprotected by a receiver, per iteration, with each
/// backend: the end-to-end cost a forwarded packet pays (the copy of the plaintext into the
/// buffer is the same for both backends).
fn backends(c: &mut Criterion<ThreadCpuTime>) {
    let mut group = c.benchmark_group("srtp_backends");
    group.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(1));
    for (name, profile) in
        [("aes_cm_hmac_sha1_80", Profile::Aes128CmHmacSha1_80), ("aead_aes_128_gcm", Profile::AeadAes128Gcm)]
    {
        for payload in [100, 1200] {
            for backend in Backend::ALL {
                let key = [0x11u8; 16];
                let salt = vec![0x22u8; profile.salt_len()];
                let mut sender = SrtpContext::with_backend(profile, &key, &salt, backend).unwrap();
                let mut receiver = SrtpContext::with_backend(profile, &key, &salt, backend).unwrap();
                let plain = packet(0, payload);
                let mut buf = vec![0u8; plain.len() + profile.rtp_overhead()];
                let mut seq = 0u16;
                group.bench_function(format!("{name}/{payload}B/{backend:?}"), |b| {
                    b.iter(|| {
                        seq = seq.wrapping_add(1);
                        buf[..plain.len()].copy_from_slice(&plain);
                        buf[2..4].copy_from_slice(&seq.to_be_bytes());
                        let n = sender.protect_rtp(&mut buf, plain.len()).unwrap();
                        black_box(receiver.unprotect_rtp(&mut buf[..n]).unwrap())
                    })
                });
            }
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = primitives, context, backends
}
criterion_main!(benches);
