//! SRTP context tests: round trips, tamper/replay rejection, rollover, and interop with
//! webrtc-rs's `webrtc-srtp` in both directions for every profile.

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

fn pair(profile: Profile) -> (SrtpContext, SrtpContext) {
    let (k, s) = keys(profile);
    (SrtpContext::new(profile, &k, &s).unwrap(), SrtpContext::new(profile, &k, &s).unwrap())
}

#[test]
fn round_trip_and_rejections_every_profile() {
    for (profile, _) in PROFILES {
        let (mut tx, mut rx) = pair(profile);
        for seq in [1u16, 2, 3, 5, 4] {
            let plain = rtp(seq, 42, 100);
            let mut buf = plain.clone();
            buf.resize(plain.len() + profile.rtp_overhead(), 0);
            let n = tx.protect_rtp(&mut buf, plain.len()).unwrap();
            assert_eq!(n, buf.len());
            assert_ne!(&buf[20..plain.len()], &plain[20..], "{profile:?} payload not encrypted");
            let mut replay = buf.clone();
            let mut tampered = buf.clone();
            tampered[30] ^= 1;
            assert_eq!(rx.unprotect_rtp(&mut tampered), Err(SrtpError::AuthFailed), "{profile:?}");
            assert_eq!(rx.unprotect_rtp(&mut buf).unwrap(), plain.len());
            assert_eq!(&buf[..plain.len()], &plain[..]);
            assert_eq!(rx.unprotect_rtp(&mut replay), Err(SrtpError::Replayed), "{profile:?}");
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
    for (profile, _) in PROFILES {
        let (mut tx, mut rx) = pair(profile);
        let mut seq = 65_000u16;
        for _ in 0..2_000 {
            let plain = rtp(seq, 7, 20);
            let mut buf = plain.clone();
            buf.resize(plain.len() + profile.rtp_overhead(), 0);
            tx.protect_rtp(&mut buf, plain.len()).unwrap();
            assert_eq!(rx.unprotect_rtp(&mut buf).unwrap(), plain.len(), "{profile:?} seq {seq}");
            seq = seq.wrapping_add(1);
        }
    }
}

#[test]
fn interop_with_webrtc_srtp_both_directions() {
    for (profile, theirs) in PROFILES {
        let (k, s) = keys(profile);
        let mut ours_tx = SrtpContext::new(profile, &k, &s).unwrap();
        let mut ours_rx = SrtpContext::new(profile, &k, &s).unwrap();
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
            assert_eq!(&decrypted[..], &plain[..], "{profile:?} ours->theirs seq {seq}");
            // theirs -> ours
            let encrypted = their_tx.encrypt_rtp(&plain).unwrap();
            assert_eq!(&encrypted[..], &buf[..], "{profile:?} ciphertexts differ");
            let mut buf = encrypted.to_vec();
            let n = ours_rx.unprotect_rtp(&mut buf).unwrap();
            assert_eq!(&buf[..n], &plain[..], "{profile:?} theirs->ours seq {seq}");
            seq = seq.wrapping_add(1);
        }
        for _ in 0..3 {
            let plain = rtcp_pli(0x1234_5678);
            let mut buf = plain.clone();
            buf.resize(plain.len() + profile.rtcp_overhead(), 0);
            ours_tx.protect_rtcp(&mut buf, plain.len()).unwrap();
            let decrypted = their_rx.decrypt_rtcp(&buf).unwrap();
            assert_eq!(&decrypted[..], &plain[..], "{profile:?} rtcp ours->theirs");
            let encrypted = their_tx.encrypt_rtcp(&plain).unwrap();
            let mut buf = encrypted.to_vec();
            let n = ours_rx.unprotect_rtcp(&mut buf).unwrap();
            assert_eq!(&buf[..n], &plain[..], "{profile:?} rtcp theirs->ours");
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
