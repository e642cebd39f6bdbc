//! SRTP context tests, each for every [`Backend`]: round trips, tamper/replay rejection,
//! rollover, interop with webrtc-rs's `webrtc-srtp` in both directions for every profile, and
//! the published vectors (RFC 7714 sections 16 and 17 packets, RFC 3711 B.2 keystream).

use super::*;
use webrtc_srtp::context::Context as TheirContext;
use webrtc_srtp::protection_profile::ProtectionProfile as TheirProfile;

const PROFILES: [(Profile, TheirProfile); 3] = [
    (Profile::Aes128CmHmacSha1_80, TheirProfile::Aes128CmHmacSha1_80),
    (Profile::Aes128CmHmacSha1_32, TheirProfile::Aes128CmHmacSha1_32),
    (Profile::AeadAes128Gcm, TheirProfile::AeadAes128Gcm),
];

fn keys(profile: Profile) -> ([u8; 16], Vec<u8>) {
    let key: [u8; 16] = std::array::from_fn(|i| i as u8 * 7 + 1);
    let salt: Vec<u8> = (0..profile.salt_len()).map(|i| 0xA0 ^ i as u8).collect();
    (key, salt)
}

fn rtp(seq: u16, ssrc: u32, payload_len: usize) -> Vec<u8> {
    let mut p = vec![0x90, 111, 0, 0, 0, 0, 0x30, 0x39, 0, 0, 0, 0, 0xBE, 0xDE, 0, 1, 0x10, 0x42, 0, 0];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    p.extend((0..payload_len).map(|i| (i * 31 + seq as usize) as u8));
    p
}

fn rtcp_pli(sender: u32) -> Vec<u8> {
    let mut p = vec![0u8; 12];
    crate::rtp::rtcp::write_pli(&mut p, sender, 0xDEAD).unwrap();
    p
}

fn pair(profile: Profile, backend: Backend) -> (SrtpContext, SrtpContext) {
    let (k, s) = keys(profile);
    let context = || SrtpContext::with_backend(profile, &k, &s, backend).unwrap();
    (context(), context())
}

/// Every profile with every backend.
fn cases() -> impl Iterator<Item = (Profile, TheirProfile, Backend)> {
    PROFILES.into_iter().flat_map(|(ours, theirs)| Backend::ALL.map(|backend| (ours, theirs, backend)))
}

#[test]
fn round_trip_and_rejections_every_profile() {
    for (profile, _, backend) in cases() {
        let (mut tx, mut rx) = pair(profile, backend);
        for seq in [1u16, 2, 3, 5, 4] {
            let plain = rtp(seq, 42, 100);
            let mut buf = plain.clone();
            buf.resize(plain.len() + profile.rtp_overhead(), 0);
            let n = tx.protect_rtp(&mut buf, plain.len()).unwrap();
            assert_eq!(n, buf.len());
            assert_ne!(&buf[20..plain.len()], &plain[20..], "{profile:?} {backend:?} payload not encrypted");
            let mut replay = buf.clone();
            let mut tampered = buf.clone();
            tampered[30] ^= 1;
            assert_eq!(rx.unprotect_rtp(&mut tampered), Err(SrtpError::AuthFailed), "{profile:?} {backend:?}");
            assert_eq!(rx.unprotect_rtp(&mut buf).unwrap(), plain.len());
            assert_eq!(&buf[..plain.len()], &plain[..]);
            assert_eq!(rx.unprotect_rtp(&mut replay), Err(SrtpError::Replayed), "{profile:?} {backend:?}");
        }
        let plain = rtcp_pli(42);
        let mut buf = plain.clone();
        buf.resize(plain.len() + profile.rtcp_overhead(), 0);
        tx.protect_rtcp(&mut buf, plain.len()).unwrap();
        let mut replay = buf.clone();
        assert_eq!(rx.unprotect_rtcp(&mut buf).unwrap(), plain.len());
        assert_eq!(&buf[..plain.len()], &plain[..]);
        assert_eq!(rx.unprotect_rtcp(&mut replay), Err(SrtpError::Replayed));
        let mut short = [0x80u8; 10];
        assert!(rx.unprotect_rtcp(&mut short).is_err());
        assert!(rx.unprotect_rtp(&mut short).is_err());
        let mut no_room = rtp(9, 42, 10);
        let len = no_room.len();
        assert_eq!(tx.protect_rtp(&mut no_room, len), Err(SrtpError::NoTailRoom));
    }
}

#[test]
fn rollover_counter_survives_sequence_wrap() {
    for (profile, _, backend) in cases() {
        let (mut tx, mut rx) = pair(profile, backend);
        let mut seq = 65_000u16;
        for _ in 0..2_000 {
            let plain = rtp(seq, 7, 20);
            let mut buf = plain.clone();
            buf.resize(plain.len() + profile.rtp_overhead(), 0);
            tx.protect_rtp(&mut buf, plain.len()).unwrap();
            assert_eq!(rx.unprotect_rtp(&mut buf).unwrap(), plain.len(), "{profile:?} {backend:?} seq {seq}");
            seq = seq.wrapping_add(1);
        }
    }
}

#[test]
fn interop_with_webrtc_srtp_both_directions() {
    for (profile, theirs, backend) in cases() {
        let (k, s) = keys(profile);
        let (mut ours_tx, mut ours_rx) = pair(profile, backend);
        let mut their_rx = TheirContext::new(&k, &s, theirs, None, None).unwrap();
        let mut their_tx = TheirContext::new(&k, &s, theirs, None, None).unwrap();
        // Cross the 16-bit sequence wrap so ROC handling must agree too.
        let mut seq = 65_530u16;
        for _ in 0..20 {
            let plain = rtp(seq, 0x1234_5678, 160);
            // ours -> theirs
            let mut buf = plain.clone();
            buf.resize(plain.len() + profile.rtp_overhead(), 0);
            ours_tx.protect_rtp(&mut buf, plain.len()).unwrap();
            let decrypted = their_rx.decrypt_rtp(&buf).unwrap();
            assert_eq!(&decrypted[..], &plain[..], "{profile:?} {backend:?} ours->theirs seq {seq}");
            // theirs -> ours
            let encrypted = their_tx.encrypt_rtp(&plain).unwrap();
            assert_eq!(&encrypted[..], &buf[..], "{profile:?} {backend:?} ciphertexts differ");
            let mut buf = encrypted.to_vec();
            let n = ours_rx.unprotect_rtp(&mut buf).unwrap();
            assert_eq!(&buf[..n], &plain[..], "{profile:?} {backend:?} theirs->ours seq {seq}");
            seq = seq.wrapping_add(1);
        }
        for _ in 0..3 {
            let plain = rtcp_pli(0x1234_5678);
            let mut buf = plain.clone();
            buf.resize(plain.len() + profile.rtcp_overhead(), 0);
            ours_tx.protect_rtcp(&mut buf, plain.len()).unwrap();
            let decrypted = their_rx.decrypt_rtcp(&buf).unwrap();
            assert_eq!(&decrypted[..], &plain[..], "{profile:?} {backend:?} rtcp ours->theirs");
            let encrypted = their_tx.encrypt_rtcp(&plain).unwrap();
            let mut buf = encrypted.to_vec();
            let n = ours_rx.unprotect_rtcp(&mut buf).unwrap();
            assert_eq!(&buf[..n], &plain[..], "{profile:?} {backend:?} rtcp theirs->ours");
        }
    }
}

#[test]
fn rejects_wrong_key_lengths() {
    assert_eq!(SrtpContext::new(Profile::AeadAes128Gcm, &[0; 16], &[0; 14]).unwrap_err(), SrtpError::BadKeyLength);
    assert_eq!(
        SrtpContext::new(Profile::Aes128CmHmacSha1_80, &[0; 15], &[0; 14]).unwrap_err(),
        SrtpError::BadKeyLength
    );
}

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// An AEAD_AES_128_GCM context keyed with session keys directly, as RFC 7714's vectors give them.
fn gcm_with_session_keys(backend: Backend) -> SrtpContext {
    let key: [u8; 16] = hex("000102030405060708090a0b0c0d0e0f").try_into().unwrap();
    let salt: [u8; 12] = hex("517569642070726f2071756f").try_into().unwrap();
    SrtpContext {
        profile: Profile::AeadAes128Gcm,
        cipher: Cipher::Gcm {
            rtp: Gcm::new(&key, backend),
            rtp_salt: salt,
            rtcp: Gcm::new(&key, backend),
            rtcp_salt: salt,
        },
        states: Vec::new(),
        last_hit: 0,
    }
}

/// RFC 7714 section 16.1: "Gallia est omnis divisa in partes tres" behind a 12-octet header
/// (sequence number 0xf17b, SSRC 0x5501a0b2, ROC 0), its IV, and the encrypted and tagged
/// packet; decryption back, and a flipped bit refused.
#[test]
fn rfc7714_section16_srtp_vector() {
    let plain = hex("8040f17b 8041f8d3 5501a0b2 47616c6c 69612065 7374206f 6d6e6973 20646976
                     69736120 696e2070 61727465 73207472 6573");
    let protected = hex("8040f17b 8041f8d3 5501a0b2 f24de3a3 fb34de6c acba861c 9d7e4bca be633bd5
                         0d294e6f 42a5f47a 51c7d19b 36de3adf 8833899d 7f27beb1 6a9152cf 765ee439 0cce");
    let salt: [u8; 12] = hex("517569642070726f2071756f").try_into().unwrap();
    assert_eq!(gcm_iv(&salt, 0x5501_a0b2, 0, 0xf17b).to_vec(), hex("51753c6580c2726f20718414"));
    for backend in Backend::ALL {
        let mut buf = plain.clone();
        buf.resize(plain.len() + 16, 0);
        let n = gcm_with_session_keys(backend).protect_rtp(&mut buf, plain.len()).unwrap();
        assert_eq!(buf[..n], protected[..], "{backend:?}");
        let mut rx = gcm_with_session_keys(backend);
        let mut tampered = protected.clone();
        tampered[20] ^= 0x01;
        assert_eq!(rx.unprotect_rtp(&mut tampered), Err(SrtpError::AuthFailed), "{backend:?}");
        let mut buf = protected.clone();
        assert_eq!(rx.unprotect_rtp(&mut buf), Ok(plain.len()), "{backend:?}");
        assert_eq!(buf[..plain.len()], plain[..], "{backend:?}");
    }
}

/// RFC 7714 section 17.1: an SRTCP sender report with SRTCP index 0x5d4, its IV, and the
/// encrypted and tagged packet with the E flag and index appended; decryption back.
#[test]
fn rfc7714_section17_srtcp_vector() {
    let plain = hex("81c8000d 4d617273 4e545031 4e545032 52545020 0000042a 0000e930 4c756e61
                     deadbeef deadbeef deadbeef deadbeef deadbeef");
    let protected = hex("81c8000d 4d617273 63e94885 dcdab67c a727d766 2f6b7e99 7ff5c0f7 6c06f32d
                         c676a5f1 730d6fda 4ce09b46 86303ded 0bb9275b c84aa458 96cf4d2f c5abf872
                         45d9eade 800005d4");
    let salt: [u8; 12] = hex("517569642070726f2071756f").try_into().unwrap();
    let iv = xor_rtcp_index(gcm_iv(&salt, 0x4d61_7273, 0, 0), 0x5d4);
    assert_eq!(iv.to_vec(), hex("517524055203726f207170bb"));
    for backend in Backend::ALL {
        let mut tx = gcm_with_session_keys(backend);
        tx.state_or_insert(0x4d61_7273).unwrap().rtcp_out_index = 0x5d4;
        let mut buf = plain.clone();
        buf.resize(plain.len() + Profile::AeadAes128Gcm.rtcp_overhead(), 0);
        let n = tx.protect_rtcp(&mut buf, plain.len()).unwrap();
        assert_eq!(buf[..n], protected[..], "{backend:?}");
        let mut rx = gcm_with_session_keys(backend);
        let mut tampered = protected.clone();
        tampered[30] ^= 0x08;
        assert_eq!(rx.unprotect_rtcp(&mut tampered), Err(SrtpError::AuthFailed), "{backend:?}");
        let mut buf = protected.clone();
        assert_eq!(rx.unprotect_rtcp(&mut buf), Ok(plain.len()), "{backend:?}");
        assert_eq!(buf[..plain.len()], plain[..], "{backend:?}");
    }
}

/// RFC 3711 appendix B.2: the AES-CM keystream for session key 2B7E…, session salt F0F1…FCFD,
/// SSRC 0 and index 0 (so the IV is the shifted salt), at the start of the 65,282-block
/// segment and at its end, where the 16-bit block counter has wrapped into the salt.
#[test]
fn rfc3711_b2_aes_cm_keystream() {
    let key: [u8; 16] = hex("2B7E151628AED2A6ABF7158809CF4F3C").try_into().unwrap();
    let salt: [u8; 14] = hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD").try_into().unwrap();
    let iv = aes_cm_iv(&salt, 0, 0);
    assert_eq!(iv.to_vec(), hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD0000"));
    for backend in Backend::ALL {
        let mut keystream = vec![0u8; 65_282 * 16];
        AesCtr::new(&key, backend).apply(iv, &mut keystream);
        let start =
            hex("E03EAD0935C95E80E166B16DD92B4EB4 D23513162B02D0F72A43A2FE4A5F97AB 41E95B3BB0A2E8DD477901E4FCA894C0");
        let end =
            hex("EC8CDF7398607CB0F2D21675EA9EA1E4 362B7C3C6773516318A077D7FC5073AE 6A2CC3787889374FBEB4C81B17BA6C44");
        assert_eq!(keystream[..48], start[..], "{backend:?}");
        assert_eq!(keystream[keystream.len() - 48..], end[..], "{backend:?}");
    }
}
