//! Why palaver has its own SRTP: webrtc-rs's `webrtc-srtp` returns a fresh `Bytes` for every
//! packet it protects or unprotects, i.e. at least one heap allocation per packet, while our
//! in-place contexts allocate nothing. Both are measured here with a counting allocator.

mod support;

use palaver_sfu::srtp::{Profile, SrtpContext};
use webrtc_srtp::context::Context as TheirContext;
use webrtc_srtp::protection_profile::ProtectionProfile as TheirProfile;

#[global_allocator]
static GLOBAL: support::counting_alloc::CountingAllocator = support::counting_alloc::CountingAllocator;

/// Allocations made by `f` on this thread.
fn counted(f: impl FnOnce()) -> u64 {
    support::counting_alloc::counted(f).1
}

const PACKETS: u16 = 10_000;

fn packet(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80u8, 111, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&[0x42; 100]);
    p
}

#[test]
fn webrtc_srtp_allocates_per_packet_ours_does_not() {
    let key = [7u8; 16];
    let salt = [9u8; 14];
    let packets: Vec<Vec<u8>> = (0..PACKETS).map(packet).collect();

    let mut theirs_tx = TheirContext::new(&key, &salt, TheirProfile::Aes128CmHmacSha1_80, None, None).unwrap();
    let mut theirs_rx = TheirContext::new(&key, &salt, TheirProfile::Aes128CmHmacSha1_80, None, None).unwrap();
    // first packet creates per-SSRC state in both libraries; measure the steady state after it
    let first = theirs_tx.encrypt_rtp(&packets[0]).unwrap();
    theirs_rx.decrypt_rtp(&first).unwrap();
    let mut protected = Vec::with_capacity(PACKETS as usize);
    let theirs_protect = counted(|| {
        for p in &packets[1..] {
            protected.push(theirs_tx.encrypt_rtp(p).unwrap());
        }
    });
    let theirs_unprotect = counted(|| {
        for p in &protected {
            std::hint::black_box(theirs_rx.decrypt_rtp(p).unwrap());
        }
    });

    let mut ours_tx = SrtpContext::new(Profile::Aes128CmHmacSha1_80, &key, &salt).unwrap();
    let mut ours_rx = SrtpContext::new(Profile::Aes128CmHmacSha1_80, &key, &salt).unwrap();
    let mut buffers: Vec<Vec<u8>> = packets.iter().map(|p| [p.as_slice(), &[0u8; 10]].concat()).collect();
    let plain_len = packets[0].len();
    ours_tx.protect_rtp(&mut buffers[0], plain_len).unwrap();
    ours_rx.unprotect_rtp(&mut buffers[0]).unwrap();
    let ours_protect = counted(|| {
        for b in &mut buffers[1..] {
            ours_tx.protect_rtp(b, plain_len).unwrap();
        }
    });
    let ours_unprotect = counted(|| {
        for b in &mut buffers[1..] {
            ours_rx.unprotect_rtp(b).unwrap();
        }
    });
    // our ciphertext is what theirs produces (same keys, same packets)
    assert_eq!(
        protected[0][..],
        {
            let mut b = [packets[1].as_slice(), &[0u8; 10]].concat();
            let mut tx = SrtpContext::new(Profile::Aes128CmHmacSha1_80, &key, &salt).unwrap();
            tx.protect_rtp(&mut [packets[0].as_slice(), &[0u8; 10]].concat(), plain_len).unwrap();
            tx.protect_rtp(&mut b, plain_len).unwrap();
            b
        }[..]
    );

    let n = (PACKETS - 1) as u64;
    println!(
        "per packet: webrtc-srtp protect {:.2}, unprotect {:.2} allocations; palaver protect {}, unprotect {}",
        theirs_protect as f64 / n as f64,
        theirs_unprotect as f64 / n as f64,
        ours_protect,
        ours_unprotect
    );
    assert!(theirs_protect >= n, "webrtc-srtp protect: {theirs_protect} allocations for {n} packets");
    assert!(theirs_unprotect >= n, "webrtc-srtp unprotect: {theirs_unprotect} allocations for {n} packets");
    assert_eq!((ours_protect, ours_unprotect), (0, 0));
}
