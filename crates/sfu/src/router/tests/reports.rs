//! Router RTCP report stories: a subscriber receives SR + SDES per stream and its RR yields the
//! round trip; a publisher receives RR (loss, LSR/DLSR echo) + SDES + REMB; forged echoes are
//! ignored.

use super::*;
use crate::rtp::rtcp::{Compound, ReportBlock, RtcpPacket, ntp_compact, write_receiver_report};

/// Parses every RTCP packet the router sent to `to` (dropping them from the recorder).
fn reports_to(rec: &mut Recorder, to: TransportId) -> Vec<Vec<u8>> {
    let (mine, rest) = rec.rtcp.drain(..).partition(|(t, _)| *t == to);
    rec.rtcp = rest;
    mine.into_iter().map(|(_, p)| p).collect()
}

fn block(ssrc: u32, last_sr: u32, delay_since_last_sr: u32) -> ReportBlock {
    ReportBlock {
        ssrc,
        fraction_lost: 0,
        cumulative_lost: 0,
        highest_sequence: 0,
        jitter: 0,
        last_sr,
        delay_since_last_sr,
    }
}

#[test]
fn subscriber_gets_sender_reports_and_its_receiver_report_gives_the_round_trip() {
    let t0 = Instant::now();
    let mut router = Router::new(RouterConfig::default(), 1);
    let mut rec = Recorder::default();
    router.add_producer(audio_producer(1, PUB, 11)).unwrap();
    router.add_consumer(t0, consumer(1, SUB, 1, 21), &mut rec).unwrap();
    let mut now = t0;
    let mut sent = Vec::new();
    let mut reports = Vec::new();
    for i in 0..250u16 {
        now += Duration::from_millis(20);
        router.handle_rtp(now, PUB, &rtp(11, i, 960 * i as u32, OPUS, &[], &[7; 40]), &mut rec);
        sent.extend(rec.take_rtp().into_iter().map(|(_, h, _)| (now, h)));
        router.poll(now, &mut rec);
        reports.extend(reports_to(&mut rec, SUB).into_iter().map(|p| (now, p)));
    }
    // 5 s at a 1 s mean interval (0.5–1.5 s each, the first after 0.25–0.75 s)
    assert!((4..=10).contains(&reports.len()), "{} reports", reports.len());
    for pair in reports.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(gap >= Duration::from_millis(500) && gap <= Duration::from_millis(1520), "{gap:?}");
    }
    let mut last_ntp = 0;
    for (at, packet) in &reports {
        let parts: Vec<_> = Compound::new(packet).collect::<Result<_, _>>().unwrap();
        assert_eq!(parts.len(), 2, "SR + SDES");
        let RtcpPacket::SenderReport { ssrc, ntp_time, rtp_time, packet_count, octet_count, reports } = parts[0] else {
            panic!("compound starts with {:?}", parts[0]);
        };
        let RtcpPacket::SourceDescription { chunks } = parts[1] else { panic!("then {:?}", parts[1]) };
        assert_eq!(&chunks[..4], &21u32.to_be_bytes());
        assert_eq!(&chunks[4..6 + CNAME.len()], [&[1, CNAME.len() as u8][..], CNAME].concat());
        assert_eq!(ssrc, 21, "about the stream the subscriber sees");
        assert!(reports.is_empty());
        let forwarded: Vec<_> = sent.iter().filter(|(t, _)| t <= at).collect();
        assert_eq!(packet_count as usize, forwarded.len());
        assert_eq!(octet_count as usize, 40 * forwarded.len(), "payload octets");
        // forwarded in the same tick as the report: the RTP time is that packet's timestamp
        assert_eq!(rtp_time, forwarded.last().unwrap().1.timestamp);
        assert!(ntp_time > last_ntp);
        last_ntp = ntp_time;
    }
    // The subscriber answers the last SR 60 ms later, having held it for 10 ms: RTT 50 ms.
    let lsr = ntp_compact(last_ntp);
    let mut rr = [0u8; 64];
    let n = write_receiver_report(&mut rr, 9, &[block(21, lsr, 655)]).unwrap(); // 655/65536 s ≈ 10 ms
    router.handle_rtcp(reports.last().unwrap().0 + Duration::from_millis(60), SUB, &rr[..n], &mut rec);
    let rtts: Vec<_> = rec
        .notes
        .iter()
        .filter_map(|n| if let RouterNote::RoundTrip { rtt_ns } = n { Some(*rtt_ns) } else { None })
        .collect();
    assert_eq!(rtts.len(), 1);
    assert!(rtts[0].abs_diff(50_000_000) < 100_000, "{} ns", rtts[0]);
}

#[test]
fn forged_or_missing_sender_report_echoes_give_no_round_trip() {
    let t0 = Instant::now();
    let mut router = Router::new(RouterConfig::default(), 1);
    let mut rec = Recorder::default();
    router.add_producer(audio_producer(1, PUB, 11)).unwrap();
    router.add_consumer(t0, consumer(1, SUB, 1, 21), &mut rec).unwrap();
    let now = ntp_compact(router.ntp_time(t0 + Duration::from_secs(30)));
    let mut rr = [0u8; 128];
    // no SR yet (LSR 0), an LSR from the future, and a DLSR longer than the time since the LSR
    let blocks = [block(21, 0, 0), block(21, now.wrapping_add(1 << 16), 0), block(21, now - 100, 200)];
    let n = write_receiver_report(&mut rr, 9, &blocks).unwrap();
    router.handle_rtcp(t0 + Duration::from_secs(30), SUB, &rr[..n], &mut rec);
    assert!(!rec.notes.iter().any(|n| matches!(n, RouterNote::RoundTrip { .. })), "{:?}", rec.notes);
}

#[test]
fn publisher_gets_receiver_reports_with_loss_sr_echo_and_a_bandwidth_estimate() {
    let t0 = Instant::now();
    let mut router = Router::new(RouterConfig::default(), 0x5EBE);
    let mut rec = Recorder::default();
    let mut video = simulcast_producer();
    video.layers.truncate(1);
    router.add_producer(video).unwrap();
    router.add_producer(audio_producer(1, PUB, 11)).unwrap();
    // the publisher's own SR about its video stream
    let mut sr = vec![0x80, 200, 0, 6];
    sr.extend_from_slice(&1000u32.to_be_bytes());
    sr.extend_from_slice(&0x0000_1234_5678_0000u64.to_be_bytes());
    sr.extend_from_slice(&[0; 12]);
    router.handle_rtcp(t0, PUB, &sr, &mut rec);
    let mut now = t0;
    let mut packets = Vec::new();
    for i in 0..150u16 {
        now += Duration::from_millis(10);
        if i % 50 != 7 {
            // every 50th video packet is lost
            router.handle_rtp(now, PUB, &rtp(1000, 100 + i, 900 * i as u32, VP8, &[], &[0; 1000]), &mut rec);
        }
        if i % 2 == 0 {
            router.handle_rtp(now, PUB, &rtp(11, 9 + i / 2, 960 * i as u32, OPUS, &[], &[1; 50]), &mut rec);
        }
        router.poll(now, &mut rec);
        packets.extend(reports_to(&mut rec, PUB).into_iter().filter(|p| p[1] == 201).map(|p| (now, p)));
    }
    assert!(!packets.is_empty(), "{:?}", rec.rtcp);
    let (at, packet) = packets.last().unwrap();
    let parts: Vec<_> = Compound::new(packet).collect::<Result<_, _>>().unwrap();
    assert_eq!(parts.len(), 3, "RR + SDES + REMB: {parts:?}");
    let RtcpPacket::ReceiverReport { ssrc: 0x5EBE, reports } = parts[0] else { panic!("{:?}", parts[0]) };
    let blocks: Vec<_> = reports.iter().collect();
    assert_eq!(blocks.len(), 2, "video and audio streams");
    let video = blocks.iter().find(|b| b.ssrc == 1000).unwrap();
    let lost =
        (0..150u16).filter(|i| i % 50 == 7 && (at.duration_since(t0).as_millis() as u16) >= 10 * (i + 2)).count();
    assert_eq!(video.cumulative_lost as usize, lost);
    assert_eq!(video.last_sr, 0x1234_5678, "echoes the publisher's SR");
    let expected_dlsr = (at.duration_since(t0).as_nanos() << 16) / 1_000_000_000;
    assert!((video.delay_since_last_sr as i64 - expected_dlsr as i64).abs() <= 1);
    let audio = blocks.iter().find(|b| b.ssrc == 11).unwrap();
    assert_eq!((audio.cumulative_lost, audio.last_sr), (0, 0));
    let RtcpPacket::Remb { sender_ssrc: 0x5EBE, bitrate_bps, ssrcs } = parts[2] else { panic!("{:?}", parts[2]) };
    assert_eq!(ssrcs.iter().collect::<Vec<_>>(), vec![1000], "REMB covers the video streams");
    assert!(bitrate_bps >= 1_000_000, "{bitrate_bps}");
}
