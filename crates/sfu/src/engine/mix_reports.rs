//! RTCP sender reports for the mixed audio stream each participant receives: packet and
//! payload-octet counts and the NTP ↔ RTP mapping of that stream, about every second while it
//! sends (none while it is paused: RFC 3550 6.4 has an SR only from a sender that sent since its
//! previous report, and a silent room's streams send a DTX keep-alive every few seconds), on the
//! room router's NTP clock ([`crate::router::Router::ntp_time`]) so the receiver's report blocks
//! echoing them yield round trips like those of forwarded streams. Fixed-size state, written
//! into a caller's buffer: nothing allocates.

use std::time::{Duration, Instant};

use crate::router::CNAME;
use crate::rtp::rtcp::{SenderInfo, write_sdes_cname, write_sender_report};

/// The mix is Opus: 48 kHz RTP clock.
const CLOCK_RATE: u128 = 48_000;
/// Mean report interval (each one spread over 0.5–1.5× of it).
const INTERVAL: Duration = Duration::from_secs(1);

/// What one mix output has sent, and when its next SR is due.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct MixSendStats {
    packets: u32,
    octets: u32,
    /// Newest RTP timestamp sent and when.
    last: Option<(u32, Instant)>,
    next_report_at: Option<Instant>,
    /// `packets` at the last report: no new report until the stream sent again.
    reported_packets: Option<u32>,
}

/// A pseudo-random spread of the interval (deterministic per stream and report count).
fn spread(ssrc: u32, salt: u32) -> Duration {
    let x = (ssrc ^ salt.wrapping_mul(0x9E37_79B9)).wrapping_mul(0x85EB_CA6B) >> 8;
    INTERVAL * (500 + x % 1000) / 1000
}

impl MixSendStats {
    /// Counts a packet of the stream `ssrc` sent at `now`; the stream's first report is due
    /// 0.25–0.75 s after its first packet.
    pub fn on_sent(&mut self, now: Instant, ssrc: u32, timestamp: u32, payload_len: usize) {
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(payload_len as u32);
        self.last = Some((timestamp, now));
        if self.next_report_at.is_none() {
            self.next_report_at = Some(now + spread(ssrc, 0) / 2);
        }
    }

    /// When the next report is due, if the stream sent since its last one (a paused stream has
    /// none: [`Self::report`] need not be asked until it sends again). The room keeps the
    /// earliest of its streams' and scans them only then.
    pub fn due(&self) -> Option<Instant> {
        self.last?;
        if self.reported_packets == Some(self.packets) {
            return None;
        }
        self.next_report_at
    }

    /// Writes `SR + SDES(CNAME)` for `ssrc` into `buf` when one is due: the stream sent since
    /// its previous report and the interval has passed.
    pub fn report(&mut self, now: Instant, ntp_time: u64, ssrc: u32, buf: &mut [u8]) -> Option<usize> {
        let due = self.due()?;
        if now < due {
            return None;
        }
        let (timestamp, at) = self.last?;
        self.next_report_at = Some(now + spread(ssrc, self.packets));
        self.reported_packets = Some(self.packets);
        let elapsed = now.saturating_duration_since(at).as_nanos();
        let info = SenderInfo {
            ssrc,
            ntp_time,
            rtp_time: timestamp.wrapping_add((elapsed * CLOCK_RATE / 1_000_000_000) as u32),
            packet_count: self.packets,
            octet_count: self.octets,
        };
        let n = write_sender_report(buf, &info, &[]).ok()?;
        let m = write_sdes_cname(buf.get_mut(n..)?, ssrc, CNAME).ok()?;
        Some(n + m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::rtcp::{Compound, RtcpPacket};

    #[test]
    fn reports_follow_what_the_mix_sent_about_every_second() {
        let t0 = Instant::now();
        let mut stats = MixSendStats::default();
        let mut buf = [0u8; 64];
        assert_eq!(stats.report(t0, 1, 9, &mut buf), None, "nothing sent yet");
        let mut reports = Vec::new();
        for i in 0..250u32 {
            let now = t0 + Duration::from_millis(20) * i;
            stats.on_sent(now, 9, 960 * i, 40);
            if let Some(n) = stats.report(now + Duration::from_millis(5), u64::from(i), 9, &mut buf) {
                reports.push((i, buf[..n].to_vec()));
            }
        }
        assert!((4..=10).contains(&reports.len()), "{} reports in 5 s", reports.len());
        for (i, packet) in &reports {
            let parts: Vec<_> = Compound::new(packet).collect::<Result<_, _>>().unwrap();
            let RtcpPacket::SenderReport { ssrc, ntp_time, rtp_time, packet_count, octet_count, .. } = parts[0] else {
                panic!("{parts:?}")
            };
            assert_eq!((ssrc, ntp_time), (9, u64::from(*i)));
            assert_eq!((packet_count, octet_count), (i + 1, 40 * (i + 1)));
            assert_eq!(rtp_time, 960 * i + 240, "extrapolated 5 ms at 48 kHz");
            assert!(matches!(parts[1], RtcpPacket::SourceDescription { .. }));
        }
        for pair in reports.windows(2) {
            let gap = (pair[1].0 - pair[0].0) * 20;
            assert!((480..=1520).contains(&gap), "{gap} ms");
        }
    }

    #[test]
    fn a_paused_stream_sends_no_report_until_it_sends_again() {
        let t0 = Instant::now();
        let mut stats = MixSendStats::default();
        let mut buf = [0u8; 64];
        stats.on_sent(t0, 9, 0, 40);
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // One report for the packet sent, then nothing for 10 s of silence.
        let reports = (1..=500u64).filter(|&i| stats.report(at(20 * i), 1, 9, &mut buf).is_some()).count();
        assert_eq!(reports, 1);
        assert_eq!(stats.due(), None, "a paused stream needs no scan");
        // The stream sends again (a keep-alive): one report about it within the next interval.
        stats.on_sent(at(10_010), 9, 960, 1);
        let again = (501..=600u64).filter(|&i| stats.report(at(20 * i), 1, 9, &mut buf).is_some()).count();
        assert_eq!(again, 1);
    }
}
