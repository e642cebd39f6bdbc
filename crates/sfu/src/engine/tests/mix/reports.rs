//! The mixed stream's sender reports: a participant receives SRs for its mix SSRC with growing
//! counts, and its report block echoing one yields a round trip in the worker's counters (RTT
//! for audio-only calls, where no forwarded stream carries SRs).

use super::*;
use crate::rtp::rtcp::{Compound, ReportBlock, RtcpPacket, ntp_compact, write_receiver_report};

#[test]
fn the_mix_sends_sender_reports_and_their_echo_gives_a_round_trip() {
    let mut room = mix_room();
    let mut senders: Vec<ToneSender> = TONES.iter().map(|&f| ToneSender::new(f, Channels::Mono)).collect();
    let start = room.t0 + Duration::from_millis(1);
    let mut reports = Vec::new();
    let mut at = start;
    for tick in 0..150u64 {
        at = start + Duration::from_millis(tick * 20);
        for (i, sender) in senders.iter_mut().enumerate() {
            let (seq, ts, level, payload) = sender.next(true);
            let packet = rtp_with_level(0xA000 + i as u32, seq, ts, level, &payload);
            if i < 2 {
                let mut wire = room.udp[i].srtp(&packet);
                let from = room.udp[i].addr;
                room.core.handle_datagram(at, from, &mut wire, &mut room.out);
            } else {
                room.core.handle_direct(at, QUEUE_ID, &packet, &mut room.out);
            }
        }
        room.core.poll(at, &mut room.out);
        room.out.sent.clear();
        while let Some(packet) = room.link.pop_egress() {
            for part in Compound::new(&packet).flatten().filter(|_| is_rtcp(&packet)) {
                if let RtcpPacket::SenderReport { ssrc, ntp_time, packet_count, .. } = part {
                    reports.push((at, ssrc, ntp_time, packet_count));
                }
            }
        }
    }
    // 3 s: the queue participant got SRs about its mix (SSRC 0x9002) only, counts growing
    assert!((2..=7).contains(&reports.len()), "{reports:?}");
    assert!(reports.iter().all(|r| r.1 == 0x9002), "{reports:?}");
    assert!(reports.windows(2).all(|w| w[1].3 > w[0].3 && w[1].2 > w[0].2));
    let before = room.core.counters().snapshot().reception.rtt_samples;
    assert_eq!(before, 0);
    // It echoes the last one 30 ms after it was sent, having held it 10 ms: RTT 20 ms.
    let (sent_at, _, ntp_time, _) = *reports.last().unwrap();
    let block = ReportBlock {
        ssrc: 0x9002,
        fraction_lost: 0,
        cumulative_lost: 0,
        highest_sequence: 0,
        jitter: 0,
        last_sr: ntp_compact(ntp_time),
        delay_since_last_sr: 655, // 10 ms in 1/65536 s
    };
    let mut rr = [0u8; 64];
    let n = write_receiver_report(&mut rr, 0xA002, &[block]).unwrap();
    assert!(sent_at <= at);
    room.core.handle_direct(sent_at + Duration::from_millis(30), QUEUE_ID, &rr[..n], &mut room.out);
    let reception = room.core.counters().snapshot().reception;
    assert_eq!(reception.rtt_samples, 1);
    assert!((reception.rtt_seconds() - 0.020).abs() < 0.0002, "{}", reception.rtt_seconds());
}
