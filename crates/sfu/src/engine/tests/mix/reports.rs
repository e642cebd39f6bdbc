//! The mixed stream's sender reports: a participant receives SRs for its mix SSRC with growing
//! counts, and its report block echoing one yields a round trip in the worker's counters (RTT
//! for audio-only calls, where no forwarded stream carries SRs).

use super::*;
use crate::rtp::rtcp::{Compound, ReportBlock, RtcpPacket, ntp_compact, write_receiver_report};

#[test]
fn the_mix_sends_sender_reports_and_their_echo_gives_a_round_trip() {
    let mut room = mix_room();
    let mut senders: Vec<ToneSender> = TONES.iter().map(|&f| ToneSender::new(f, Channels::Mono)).collect();
    let mut reports = Vec::new();
    for _ in 0..150u64 {
        room.send(&mut senders, |_| true);
        // Step through this period's timer runs, so each report is seen with its send time.
        let end = room.t.now() + Duration::from_millis(20);
        while let Some(at) = room.t.step(end) {
            room.t.out.sent.clear();
            while let Some(packet) = room.link.pop_egress() {
                for part in Compound::new(&packet).flatten().filter(|_| is_rtcp(&packet)) {
                    if let RtcpPacket::SenderReport { ssrc, ntp_time, packet_count, .. } = part {
                        reports.push((at, ssrc, ntp_time, packet_count));
                    }
                }
            }
        }
        room.t.advance_to(end);
    }
    // 3 s: the queue participant got SRs about its mix (SSRC 0x9002) only, counts growing
    assert!((2..=7).contains(&reports.len()), "{reports:?}");
    assert!(reports.iter().all(|r| r.1 == 0x9002), "{reports:?}");
    assert!(reports.windows(2).all(|w| w[1].3 > w[0].3 && w[1].2 > w[0].2));
    let before = room.t.counters().reception.rtt_samples;
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
    assert!(sent_at <= room.t.now());
    // Delivered at its own instant (virtual time has moved on since): the engine itself, not
    // the harness clock, which never goes back.
    room.t.engine.handle_direct(sent_at + Duration::from_millis(30), QUEUE_ID, &rr[..n], &mut room.t.out);
    let reception = room.t.counters().reception;
    assert_eq!(reception.rtt_samples, 1);
    assert!((reception.rtt_seconds() - 0.020).abs() < 0.0002, "{}", reception.rtt_seconds());
}
