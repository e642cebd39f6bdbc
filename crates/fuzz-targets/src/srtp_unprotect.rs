//! SRTP/SRTCP unprotect (`palaver_sfu::srtp::SrtpContext`) of any datagram, for every profile
//! and both cipher backends. The first byte picks the profile, RTP or RTCP, and a sequence
//! offset; the rest is the datagram. Properties: no panic; a refused packet leaves the replay
//! state alone (the same packet protected afterwards still unprotects); the hand-written and
//! RustCrypto backends produce identical ciphertexts and agree on every verdict; protect →
//! unprotect restores the plaintext.

use palaver_sfu::rtp::packet::header_len;
use palaver_sfu::srtp::{Backend, Profile, SrtpContext};

const PROFILES: [Profile; 3] = [Profile::Aes128CmHmacSha1_80, Profile::Aes128CmHmacSha1_32, Profile::AeadAes128Gcm];

fn contexts(profile: Profile) -> [SrtpContext; 2] {
    let key: [u8; 16] = std::array::from_fn(|i| (i as u8).wrapping_mul(17).wrapping_add(3));
    let salt: Vec<u8> = (0..profile.salt_len()).map(|i| i as u8 ^ 0x5C).collect();
    Backend::ALL.map(|backend| SrtpContext::with_backend(profile, &key, &salt, backend).expect("valid key lengths"))
}

/// One input (the body of the libFuzzer target of the same name).
pub fn run(data: &[u8]) {
    let Some((&selector, packet)) = data.split_first() else { return };
    let profile = PROFILES[(selector % 3) as usize];
    let rtcp = selector & 0x80 != 0;

    // Unprotect the input as it is, with both backends: same verdict, same plaintext.
    let [mut hand, mut rust] = contexts(profile);
    let mut a = packet.to_vec();
    let mut b = packet.to_vec();
    let (ra, rb) = if rtcp {
        (hand.unprotect_rtcp(&mut a), rust.unprotect_rtcp(&mut b))
    } else {
        (hand.unprotect_rtp(&mut a), rust.unprotect_rtp(&mut b))
    };
    assert_eq!(ra, rb, "backends disagree on unprotect");
    if let Ok(n) = ra {
        assert_eq!(a[..n], b[..n], "backends decrypt differently");
    }

    // Protect the input as plaintext with both backends, then unprotect with fresh receivers.
    let [mut hand_tx, mut rust_tx] = contexts(profile);
    let [mut hand_rx, mut rust_rx] = contexts(profile);
    let overhead = if rtcp { profile.rtcp_overhead() } else { profile.rtp_overhead() };
    let mut a = packet.to_vec();
    a.resize(packet.len() + overhead, 0);
    let mut b = a.clone();
    let (pa, pb) = if rtcp {
        (hand_tx.protect_rtcp(&mut a, packet.len()), rust_tx.protect_rtcp(&mut b, packet.len()))
    } else {
        (hand_tx.protect_rtp(&mut a, packet.len()), rust_tx.protect_rtp(&mut b, packet.len()))
    };
    assert_eq!(pa, pb, "backends disagree on protect");
    let Ok(n) = pa else {
        assert!(rtcp || header_len(packet).is_err(), "protect refused a packet with a valid RTP header");
        return;
    };
    assert_eq!(a, b, "backends produce different ciphertexts");
    for rx in [&mut hand_rx, &mut rust_rx] {
        // A tampered copy first: refused, and it must not disturb the replay window.
        let mut tampered = a.clone();
        let flip = (selector as usize * 7) % n;
        tampered[flip] ^= 0x01;
        let refused = if rtcp { rx.unprotect_rtcp(&mut tampered) } else { rx.unprotect_rtp(&mut tampered) };
        let mut good = a.clone();
        let back = if rtcp { rx.unprotect_rtcp(&mut good) } else { rx.unprotect_rtp(&mut good) };
        assert_eq!(back, Ok(packet.len()), "a protected packet did not unprotect (tampered first: {refused:?})");
        assert_eq!(&good[..packet.len()], packet, "unprotect did not restore the plaintext");
    }
}
