//! Tests for RTCP compound parsing and the feedback writers, including a randomized
//! garbage/truncation loop over every parser in `rtp`.

use super::*;
use crate::rtp::{Codec, ExtensionMap, Extensions, RtpHeader, is_keyframe};
use rand::{Rng, SeedableRng, rngs::StdRng};

fn sr_rr_sdes_bye() -> Vec<u8> {
    let mut p = Vec::new();
    // SR with one report block
    p.extend_from_slice(&[0x81, 200, 0, 12]);
    p.extend_from_slice(&1u32.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 3]);
    p.extend_from_slice(&4u32.to_be_bytes());
    p.extend_from_slice(&5u32.to_be_bytes());
    p.extend_from_slice(&6u32.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 9, 25, 0, 0, 7, 0, 0, 1, 0, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5]);
    // RR without blocks
    p.extend_from_slice(&[0x80, 201, 0, 1, 0, 0, 0, 1]);
    // SDES: one chunk with CNAME "ab"
    p.extend_from_slice(&[0x81, 202, 0, 3, 0, 0, 0, 1, 1, 2, b'a', b'b', 0, 0, 0, 0]);
    // BYE one ssrc
    p.extend_from_slice(&[0x81, 203, 0, 1, 0, 0, 0, 1]);
    p
}

#[test]
fn parses_compound_report_packets() {
    let p = sr_rr_sdes_bye();
    let packets: Vec<_> = Compound::new(&p).collect::<Result<_, _>>().unwrap();
    assert_eq!(packets.len(), 4);
    match packets[0] {
        RtcpPacket::SenderReport { ssrc, ntp_time, rtp_time, packet_count, octet_count, reports } => {
            assert_eq!((ssrc, ntp_time, rtp_time, packet_count, octet_count), (1, (2 << 32) | 3, 4, 5, 6));
            let block = reports.iter().next().unwrap();
            assert_eq!((block.ssrc, block.fraction_lost, block.cumulative_lost), (9, 25, 7));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(packets[1], RtcpPacket::ReceiverReport { ssrc: 1, .. }));
    assert!(matches!(packets[2], RtcpPacket::SourceDescription { .. }));
    match packets[3] {
        RtcpPacket::Bye { ssrcs } => assert_eq!(ssrcs.iter().collect::<Vec<_>>(), vec![1]),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(Compound::validate(&p), Ok(4));
}

#[test]
fn feedback_writers_round_trip() {
    let mut buf = [0u8; 64];
    let n = write_pli(&mut buf, 1, 2).unwrap();
    assert_eq!(Compound::new(&buf[..n]).next().unwrap().unwrap(), RtcpPacket::Pli { sender_ssrc: 1, media_ssrc: 2 });
    let n = write_fir(&mut buf, 1, 3, 9).unwrap();
    match Compound::new(&buf[..n]).next().unwrap().unwrap() {
        RtcpPacket::Fir { entries, .. } => {
            assert_eq!(RtcpPacket::fir_entries(entries).collect::<Vec<_>>(), vec![(3, 9)])
        }
        other => panic!("unexpected {other:?}"),
    }
    let lost = [10u16, 11, 26, 27, 100, 65535, 0];
    let n = write_nack(&mut buf, 1, 4, &lost).unwrap();
    match Compound::new(&buf[..n]).next().unwrap().unwrap() {
        RtcpPacket::Nack(nack) => {
            assert_eq!(nack.media_ssrc, 4);
            assert_eq!(nack.lost().collect::<Vec<_>>(), lost.to_vec());
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(write_pli(&mut buf[..11], 1, 2), Err(RtpError::BufferTooSmall));
}

#[test]
fn parses_remb() {
    // exponent 3, mantissa 125000 -> 1_000_000 bps, two SSRCs
    let mantissa = 125_000u32;
    let mut p = vec![0x8F, 206, 0, 6, 0, 0, 0, 1, 0, 0, 0, 0, b'R', b'E', b'M', b'B', 2];
    p.push((3 << 2) | ((mantissa >> 16) as u8 & 0x3));
    p.extend_from_slice(&(mantissa as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 7, 0, 0, 0, 8]);
    match Compound::new(&p).next().unwrap().unwrap() {
        RtcpPacket::Remb { bitrate_bps, ssrcs, .. } => {
            assert_eq!(bitrate_bps, 1_000_000);
            assert_eq!(ssrcs.iter().collect::<Vec<_>>(), vec![7, 8]);
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// Found writing the `rtcp_compound` fuzz target (bitrate = mantissa * 2^exponent, saturated):
/// a REMB with a large exponent wrapped (`checked_shl` only refuses shifts >= 64), so a claimed
/// ~2^81 bit/s read as a small number.
#[test]
fn remb_bitrate_saturates_instead_of_wrapping() {
    for (exponent, mantissa, expected) in
        [(63u8, 0x3FFFFu32, u64::MAX), (47, 0x20000, u64::MAX), (46, 0x3FFFF, 0x3FFFF << 46), (0, 0, 0), (63, 0, 0)]
    {
        let mut p = vec![0x8F, 206, 0, 4, 0, 0, 0, 1, 0, 0, 0, 0, b'R', b'E', b'M', b'B', 0];
        p.push((exponent << 2) | ((mantissa >> 16) as u8 & 0x3));
        p.extend_from_slice(&(mantissa as u16).to_be_bytes());
        match Compound::new(&p).next().unwrap().unwrap() {
            RtcpPacket::Remb { bitrate_bps, .. } => assert_eq!(bitrate_bps, expected, "{mantissa} << {exponent}"),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn parses_transport_cc() {
    // base 100, 20 packets: run-length chunk of 10 "small delta", then a two-bit vector
    // chunk with 7 symbols (large, not received, small, small, small, small, small), then a
    // run of 3 "not received".
    let mut fci = vec![0, 100, 0, 20, 0, 0, 2, 5];
    fci.extend_from_slice(&(0x2000u16 | 10).to_be_bytes());
    let vector: u16 = 0xC000 | (2 << 12) | (1 << 8) | (1 << 6) | (1 << 4) | (1 << 2) | 1;
    fci.extend_from_slice(&vector.to_be_bytes());
    fci.extend_from_slice(&3u16.to_be_bytes());
    fci.extend_from_slice(&[4; 10]); // 10 small deltas
    fci.extend_from_slice(&(-8i16).to_be_bytes()); // large delta
    fci.extend_from_slice(&[1; 5]);
    while fci.len() % 4 != 0 {
        fci.push(0);
    }
    let mut p = vec![0x8F, 205, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2];
    p.extend_from_slice(&fci);
    let words = (p.len() / 4 - 1) as u16;
    p[2..4].copy_from_slice(&words.to_be_bytes());
    let RtcpPacket::TransportCc(twcc) = Compound::new(&p).next().unwrap().unwrap() else { panic!("not twcc") };
    assert_eq!((twcc.base_sequence, twcc.status_count, twcc.reference_time, twcc.feedback_count), (100, 20, 2, 5));
    let mut seen = Vec::new();
    twcc.for_each(|seq, delta| seen.push((seq, delta)));
    assert_eq!(seen.len(), 20);
    assert_eq!(seen[0], (100, Some(4)));
    assert_eq!(seen[10], (110, Some(-8)));
    assert_eq!(seen[11], (111, None));
    assert_eq!(seen[16], (116, Some(1)));
    assert_eq!(seen[19], (119, None));
    // Truncating the deltas must be an error.
    let mut short = p.clone();
    short.truncate(p.len() - 8);
    let words = (short.len() / 4 - 1) as u16;
    short[2..4].copy_from_slice(&words.to_be_bytes());
    assert!(Compound::validate(&short).is_err());
}

#[test]
fn truncated_and_inconsistent_rtcp_is_rejected() {
    let p = sr_rr_sdes_bye();
    for cut in 1..p.len() {
        let r = Compound::validate(&p[..cut]);
        // A cut exactly on a packet boundary leaves valid packets; anything else errors.
        if ![52, 60, 76].contains(&cut) {
            assert!(r.is_err(), "cut {cut} accepted");
        }
    }
    assert!(Compound::validate(&[0x81, 200, 0, 1, 0, 0, 0, 1]).is_err()); // SR claims a block it lacks
    assert!(Compound::validate(&[0x80, 150, 0, 0]).is_err()); // not an RTCP type
}

/// Random bytes and random mutations of valid packets must never panic any parser.
#[test]
fn random_garbage_never_panics() {
    let mut rng = StdRng::seed_from_u64(0x5EED);
    let valid = sr_rr_sdes_bye();
    let map = ExtensionMap { audio_level: 1, transport_cc: 3, abs_send_time: 2, mid: 4, rid: 10, repaired_rid: 11 };
    let mut buf = [0u8; 1500];
    for round in 0..200_000 {
        let len = rng.gen_range(0..200);
        if round % 2 == 0 {
            rng.fill(&mut buf[..len]);
        } else {
            let n = len.min(valid.len());
            buf[..n].copy_from_slice(&valid[..n]);
            for _ in 0..rng.gen_range(1..4) {
                if n > 0 {
                    let at = rng.gen_range(0..n);
                    buf[at] = rng.r#gen();
                }
            }
        }
        let data = &buf[..len];
        for packet in Compound::new(data) {
            if let Ok(RtcpPacket::TransportCc(t)) = packet {
                t.for_each(|_, _| {});
            }
            if let Ok(RtcpPacket::Nack(n)) = packet {
                n.lost().for_each(drop);
            }
        }
        if let Ok(h) = RtpHeader::parse(data) {
            let _ = Extensions::parse(data, &h, &map);
            for codec in [Codec::Vp8, Codec::H264, Codec::Vp9, Codec::Av1, Codec::Opus] {
                let _ = is_keyframe(codec, h.payload(data));
            }
        }
    }
}

fn block(ssrc: u32) -> ReportBlock {
    ReportBlock {
        ssrc,
        fraction_lost: 26,
        cumulative_lost: 0x01_2345,
        highest_sequence: 0x0001_FFFF,
        jitter: 77,
        last_sr: 0xABCD_0123,
        delay_since_last_sr: 0x0000_8000,
    }
}

#[test]
fn compound_sr_sdes_remb_round_trips() {
    let mut buf = [0u8; 256];
    let info = SenderInfo { ssrc: 5, ntp_time: 0x1122_3344_5566_7788, rtp_time: 9, packet_count: 10, octet_count: 11 };
    let mut at = write_sender_report(&mut buf, &info, &[block(21)]).unwrap();
    assert_eq!(at, 52);
    at += write_sdes_cname(&mut buf[at..], 5, b"palaver").unwrap();
    at += write_receiver_report(&mut buf[at..], 6, &[block(22), block(23)]).unwrap();
    at += write_remb(&mut buf[at..], 6, 2_500_000, &[22, 23]).unwrap();
    let packets: Vec<_> = Compound::new(&buf[..at]).collect::<Result<_, _>>().unwrap();
    assert_eq!(packets.len(), 4, "{packets:?}");
    match packets[0] {
        RtcpPacket::SenderReport { ssrc, ntp_time, rtp_time, packet_count, octet_count, reports } => {
            assert_eq!((ssrc, ntp_time, rtp_time, packet_count, octet_count), (5, info.ntp_time, 9, 10, 11));
            assert_eq!(reports.iter().collect::<Vec<_>>(), vec![block(21)]);
        }
        ref other => panic!("unexpected {other:?}"),
    }
    match packets[1] {
        RtcpPacket::SourceDescription { chunks } => {
            assert_eq!(&chunks[..4], &5u32.to_be_bytes());
            assert_eq!(&chunks[4..6], &[1, 7]);
            assert_eq!(&chunks[6..13], b"palaver");
            assert_eq!(chunks[13], 0, "chunk is zero-terminated");
        }
        ref other => panic!("unexpected {other:?}"),
    }
    match packets[2] {
        RtcpPacket::ReceiverReport { ssrc: 6, reports } => {
            assert_eq!(reports.iter().collect::<Vec<_>>(), vec![block(22), block(23)])
        }
        ref other => panic!("unexpected {other:?}"),
    }
    match packets[3] {
        RtcpPacket::Remb { sender_ssrc: 6, bitrate_bps, ssrcs } => {
            // 2.5 Mbit/s needs an exponent: rounded down by at most one mantissa step
            assert!(bitrate_bps <= 2_500_000 && bitrate_bps > 2_500_000 - 16, "{bitrate_bps}");
            assert_eq!(ssrcs.iter().collect::<Vec<_>>(), vec![22, 23]);
        }
        ref other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn report_writers_refuse_small_buffers_and_bad_arguments() {
    let info = SenderInfo { ssrc: 1, ntp_time: 0, rtp_time: 0, packet_count: 0, octet_count: 0 };
    assert_eq!(write_sender_report(&mut [0; 51], &info, &[block(1)]), Err(RtpError::BufferTooSmall));
    assert_eq!(write_receiver_report(&mut [0; 512], 1, &[block(1); 32]), Err(RtpError::BadRtcp));
    assert_eq!(write_sdes_cname(&mut [0; 64], 1, b""), Err(RtpError::BadRtcp));
    assert_eq!(write_sdes_cname(&mut [0; 15], 1, b"palaver"), Err(RtpError::BufferTooSmall));
    assert_eq!(write_remb(&mut [0; 23], 1, 1, &[1]), Err(RtpError::BufferTooSmall));
    // an empty RR is valid (the server reports as a receiver before anything arrived)
    let mut buf = [0u8; 8];
    assert_eq!(write_receiver_report(&mut buf, 3, &[]), Ok(8));
    assert_eq!(Compound::validate(&buf), Ok(1));
}

#[test]
fn ntp_fixed_point_conversions() {
    use std::time::Duration;
    let ntp = ntp_from_unix(Duration::from_millis(1_500));
    assert_eq!(ntp >> 32, NTP_UNIX_OFFSET_SECS + 1);
    assert_eq!(ntp as u32, 1 << 31, "half a second");
    assert_eq!(ntp_compact(ntp), ((((NTP_UNIX_OFFSET_SECS + 1) & 0xFFFF) as u32) << 16) | 0x8000);
    assert_eq!(compact_from_nanos(250_000_000), 0x4000);
    assert_eq!(nanos_from_compact(0x4000), 250_000_000);
    assert_eq!(compact_from_nanos(u64::MAX), u32::MAX);
}
