//! RTCP compound datagrams (`palaver_sfu::rtp::rtcp`): SR, RR, SDES, BYE and the feedback
//! packets (generic NACK, transport-cc, PLI, FIR, REMB). Properties: no panic; every view and
//! iterator of every packet can be walked; sender and receiver reports and REMB written back
//! with the server's own writers parse to the same values; a REMB's bitrate is its mantissa
//! times two to its exponent, saturated, never wrapped.

use palaver_sfu::rtp::rtcp::{
    Compound, ReportBlock, RtcpPacket, SenderInfo, write_receiver_report, write_remb, write_sender_report,
};

fn reparse(buf: &[u8]) -> RtcpPacket<'_> {
    let mut packets = Compound::new(buf);
    let packet = packets.next().expect("one packet").expect("the writer's output parses");
    assert!(packets.next().is_none());
    packet
}

/// One input (the body of the libFuzzer target of the same name).
pub fn run(data: &[u8]) {
    let _ = Compound::validate(data);
    let mut out = [0u8; 1500];
    let mut at = 0;
    for packet in Compound::new(data) {
        let Ok(packet) = packet else { break };
        // Find this packet's bytes for the REMB check (lengths are validated by the parser).
        let len = 4 * (u16::from_be_bytes([data[at + 2], data[at + 3]]) as usize + 1);
        let raw = &data[at..at + len];
        at += len;
        match packet {
            RtcpPacket::SenderReport { ssrc, ntp_time, rtp_time, packet_count, octet_count, reports } => {
                let blocks: Vec<ReportBlock> = reports.iter().collect();
                assert_eq!(blocks.len(), reports.len());
                let info = SenderInfo { ssrc, ntp_time, rtp_time, packet_count, octet_count };
                let n = write_sender_report(&mut out, &info, &blocks).expect("at most 31 blocks fit");
                let RtcpPacket::SenderReport {
                    ssrc: s,
                    ntp_time: t,
                    rtp_time: r,
                    packet_count: p,
                    octet_count: o,
                    reports,
                } = reparse(&out[..n])
                else {
                    panic!("an SR was written as something else")
                };
                assert_eq!(SenderInfo { ssrc: s, ntp_time: t, rtp_time: r, packet_count: p, octet_count: o }, info);
                assert!(reports.iter().eq(blocks.iter().copied()));
            }
            RtcpPacket::ReceiverReport { ssrc, reports } => {
                let blocks: Vec<ReportBlock> = reports.iter().collect();
                let n = write_receiver_report(&mut out, ssrc, &blocks).expect("at most 31 blocks fit");
                let RtcpPacket::ReceiverReport { ssrc: s, reports } = reparse(&out[..n]) else {
                    panic!("an RR was written as something else")
                };
                assert_eq!(s, ssrc);
                assert!(reports.iter().eq(blocks.iter().copied()));
            }
            RtcpPacket::Bye { ssrcs } => ssrcs.iter().for_each(drop),
            RtcpPacket::Nack(nack) => assert!(nack.lost().count() >= 1),
            RtcpPacket::TransportCc(twcc) => {
                let mut reported = 0usize;
                twcc.for_each(|_, _| reported += 1);
                assert_eq!(reported, twcc.status_count as usize);
            }
            RtcpPacket::Fir { entries, .. } => RtcpPacket::fir_entries(entries).for_each(drop),
            RtcpPacket::Remb { sender_ssrc, bitrate_bps, ssrcs } => {
                let fci = &raw[12..];
                let exponent = u32::from(fci[5] >> 2);
                let mantissa = u128::from(u32::from_be_bytes([0, fci[5] & 0x03, fci[6], fci[7]]));
                let expected = u64::try_from(mantissa << exponent).unwrap_or(u64::MAX);
                assert_eq!(bitrate_bps, expected, "REMB bitrate {mantissa} << {exponent}");
                let list: Vec<u32> = ssrcs.iter().collect();
                let n = write_remb(&mut out, sender_ssrc, bitrate_bps, &list).expect("at most 255 SSRCs");
                let RtcpPacket::Remb { sender_ssrc: s, bitrate_bps: b, ssrcs } = reparse(&out[..n]) else {
                    panic!("a REMB was written as something else")
                };
                assert_eq!((s, ssrcs.iter().collect::<Vec<_>>()), (sender_ssrc, list));
                // 18-bit mantissa: the written value is the parsed one rounded down to 18 bits.
                assert!(b <= bitrate_bps && (bitrate_bps - b) <= bitrate_bps >> 17, "REMB {bitrate_bps} -> {b}");
            }
            RtcpPacket::SourceDescription { .. } | RtcpPacket::Pli { .. } | RtcpPacket::Other { .. } => {}
        }
    }
}
