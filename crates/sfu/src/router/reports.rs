//! RTCP reports the router originates and the round-trip time they yield (RFC 3550 6.4).
//!
//! - Towards subscribers: one compound `SR + SDES(CNAME)` per consumer stream about every
//!   [`RouterConfig::report_interval`] (randomized to 0.5–1.5×), mapping the stream's rewritten
//!   RTP clock to the router's NTP clock with its packet and payload-octet counts.
//! - Towards publishers: one compound `RR + SDES(CNAME) + REMB` per publishing transport with a
//!   report block per incoming stream (loss, extended highest sequence, jitter, LSR/DLSR from
//!   the publisher's own SRs) and a receive-side bandwidth estimate.
//! - Round trip: a report block whose LSR echoes one of our SRs gives
//!   `RTT = now − LSR − DLSR` (16.16 fixed point), reported as [`RouterNote::RoundTrip`].
//!
//! All state is fixed-size per stream; composing a report writes into the router's preallocated
//! buffer, so the periodic path allocates nothing.

use std::time::{Duration, Instant};

use super::router::Router;
use super::{RouterConfig, RouterNote, RouterOutput, TransportId};
use crate::rtp::rtcp::{
    MAX_REPORT_BLOCKS, ReportBlock, SenderInfo, compact_from_nanos, nanos_from_compact, ntp_compact, ntp_duration,
    ntp_from_unix, write_receiver_report, write_remb, write_sdes_cname, write_sender_report,
};
use palaver_core::MediaKind;

/// The CNAME the server announces (`a=ssrc:<ssrc> cname:palaver` in the SDP answer).
pub const CNAME: &[u8] = b"palaver";
/// How often the report schedules are scanned (the granularity of report times).
pub(super) const REPORT_SCAN: Duration = Duration::from_millis(20);
/// Largest round trip believed; anything above is a stale or forged LSR echo.
const MAX_RTT: Duration = Duration::from_secs(10);
/// Sequence jumps beyond this are a restart or garbage, not loss (RFC 3550 A.1).
const MAX_DROPOUT: u16 = 3000;
/// Sequence numbers this far behind the highest are late or duplicate packets.
const MAX_MISORDER: u16 = 100;
/// Receive-side estimate bounds and its start (a cap on the publisher's own estimate).
const REMB_MIN_BPS: u64 = 100_000;
const REMB_START_BPS: u64 = 3_000_000;
const REMB_MAX_BPS: u64 = 20_000_000;

/// The wall clock at one instant, from the I/O shell, so SR timestamps are real NTP time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WallClock {
    pub at: Instant,
    /// Time since the Unix epoch at `at`.
    pub since_unix_epoch: Duration,
}

impl WallClock {
    /// Reads both clocks now. For shells only: state machines get `now` passed in.
    pub fn now() -> Self {
        let since_unix_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Self { at: Instant::now(), since_unix_epoch }
    }
}

/// The router's NTP clock: a fixed (instant, NTP) anchor advanced by monotonic time.
#[derive(Debug, Clone, Copy)]
pub(super) struct NtpClock {
    at: Instant,
    ntp: u64,
}

impl NtpClock {
    /// Anchored on the configured wall clock, or (tests, shells without one) on `now` as the
    /// Unix epoch: RTTs are right either way, only the absolute SR time differs.
    pub fn new(config: &RouterConfig, now: Instant) -> Self {
        match config.wall_clock {
            Some(w) => Self { at: w.at, ntp: ntp_from_unix(w.since_unix_epoch) },
            None => Self { at: now, ntp: ntp_from_unix(Duration::ZERO) },
        }
    }

    pub fn ntp(&self, now: Instant) -> u64 {
        match now.checked_duration_since(self.at) {
            Some(ahead) => self.ntp.wrapping_add(ntp_duration(ahead)),
            None => self.ntp.wrapping_sub(ntp_duration(self.at.duration_since(now))),
        }
    }
}

/// What one consumer stream has sent (for its SRs).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct SendStats {
    pub packets: u32,
    pub octets: u32,
    pub next_report_at: Option<Instant>,
}

impl SendStats {
    pub fn on_sent(&mut self, payload_len: usize) {
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(payload_len as u32);
    }
}

/// Reception statistics of one incoming stream (RFC 3550 A.1, A.3, A.8).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct ReceiveStats {
    started: bool,
    base_seq: u16,
    max_seq: u16,
    /// Sequence number wraps, times 65536.
    cycles: u32,
    /// The sequence number that would confirm a large jump as a restart.
    bad_seq: Option<u16>,
    received: u32,
    expected_prior: u32,
    received_prior: u32,
    /// Interarrival jitter in RTP units, times 16 (RFC 3550 A.8 integer form).
    jitter_q4: u32,
    last_transit: Option<u32>,
    arrival_origin: Option<Instant>,
    /// Compact NTP of the publisher's last SR on this stream and when it arrived.
    last_sr: Option<(u32, Instant)>,
}

impl ReceiveStats {
    /// Folds one packet in. `clock_rate` converts arrival time to RTP units for jitter.
    pub fn on_packet(&mut self, now: Instant, seq: u16, timestamp: u32, clock_rate: u32) {
        if !self.started {
            *self = Self { started: true, base_seq: seq, max_seq: seq, last_sr: self.last_sr, ..Self::default() };
        } else {
            let ahead = seq.wrapping_sub(self.max_seq);
            if ahead == 0 {
                // duplicate of the highest: counted as received, like RFC 3550 does
            } else if ahead < MAX_DROPOUT {
                if seq < self.max_seq {
                    self.cycles = self.cycles.wrapping_add(1 << 16);
                }
                self.max_seq = seq;
            } else if ahead <= u16::MAX - MAX_MISORDER {
                // A big jump: two consecutive packets confirm a restarted sequence.
                if self.bad_seq == Some(seq) {
                    let last_sr = self.last_sr;
                    *self = Self::default();
                    self.last_sr = last_sr;
                    return self.on_packet(now, seq, timestamp, clock_rate);
                }
                self.bad_seq = Some(seq.wrapping_add(1));
                return;
            }
            // else: late or duplicate packet within the misorder window
        }
        self.bad_seq = None;
        self.received = self.received.wrapping_add(1);
        let origin = *self.arrival_origin.get_or_insert(now);
        // Whole seconds and the sub-second part separately: u64 arithmetic, no 128-bit division
        // on the packet path.
        let since = now.saturating_duration_since(origin);
        let rate = u64::from(clock_rate);
        let arrival =
            (since.as_secs().wrapping_mul(rate) + u64::from(since.subsec_nanos()) * rate / 1_000_000_000) as u32;
        let transit = arrival.wrapping_sub(timestamp);
        if let Some(last) = self.last_transit.replace(transit) {
            let d = (transit.wrapping_sub(last) as i32).unsigned_abs();
            // J += (|D| - J) / 16, kept scaled by 16
            self.jitter_q4 = self.jitter_q4.wrapping_add(d).wrapping_sub((self.jitter_q4 + 8) >> 4);
        }
    }

    pub fn on_sender_report(&mut self, now: Instant, ntp_time: u64) {
        self.last_sr = Some((ntp_compact(ntp_time), now));
    }

    /// The report block for this stream, advancing the "since last report" interval.
    pub fn report(&mut self, now: Instant, ssrc: u32) -> Option<ReportBlock> {
        if !self.started {
            return None;
        }
        let extended_max = self.cycles.wrapping_add(u32::from(self.max_seq));
        let expected = extended_max.wrapping_sub(u32::from(self.base_seq)).wrapping_add(1);
        let lost = i64::from(expected) - i64::from(self.received);
        let cumulative_lost = lost.clamp(-0x80_0000, 0x7F_FFFF) as i32 as u32 & 0x00FF_FFFF;
        let expected_interval = expected.wrapping_sub(self.expected_prior);
        let received_interval = self.received.wrapping_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = i64::from(expected_interval) - i64::from(received_interval);
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / i64::from(expected_interval)).min(255) as u8
        };
        let (last_sr, delay_since_last_sr) = match self.last_sr {
            Some((lsr, at)) => (lsr, compact_from_nanos(now.saturating_duration_since(at).as_nanos() as u64)),
            None => (0, 0),
        };
        Some(ReportBlock {
            ssrc,
            fraction_lost,
            cumulative_lost,
            highest_sequence: extended_max,
            jitter: self.jitter_q4 >> 4,
            last_sr,
            delay_since_last_sr,
        })
    }
}

/// Per publishing transport: when its next RR is due and the receive-side estimate.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct PublisherReports {
    pub next_report_at: Option<Instant>,
    pub estimate_bps: Option<u64>,
}

/// Tiny xorshift generator for report-interval jitter (not for anything secret).
#[derive(Debug, Clone, Copy)]
pub(super) struct Jitter(u64);

impl Jitter {
    pub fn new(seed: u32) -> Self {
        Self(u64::from(seed) << 1 | 1)
    }

    /// `interval` scaled by a factor in [0.5, 1.5).
    pub fn spread(&mut self, interval: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let permille = 500 + self.0 % 1000;
        interval * permille as u32 / 1000
    }
}

/// Next receive-side estimate from the incoming rate and the loss just reported: probe up
/// while loss stays under 2 %, hold between 2 and 10 %, back off in proportion above.
fn next_estimate(previous: Option<u64>, incoming_bps: u64, fraction_lost: u8) -> u64 {
    let previous = previous.unwrap_or(REMB_START_BPS);
    let loss = f64::from(fraction_lost) / 256.0;
    let next = if loss > 0.10 {
        (incoming_bps as f64 * (1.0 - 0.5 * loss)) as u64
    } else if loss < 0.02 {
        ((previous as f64 * 1.08) as u64).max(incoming_bps * 3 / 2)
    } else {
        previous
    };
    next.clamp(REMB_MIN_BPS, REMB_MAX_BPS)
}

impl Router {
    /// The router's NTP time at `now` (what its SRs carry; a mixer sending SRs on the same
    /// transports should use it so RTT works for its streams too).
    pub fn ntp_time(&mut self, now: Instant) -> u64 {
        let config = self.config;
        self.clock.get_or_insert_with(|| NtpClock::new(&config, now)).ntp(now)
    }

    /// Sends every SR and RR that is due. Called from [`Router::poll`]; the streams are scanned
    /// at most every [`REPORT_SCAN`] (large rooms have thousands of consumers).
    pub(super) fn send_reports(&mut self, now: Instant, out: &mut impl RouterOutput) {
        if self.last_report_scan.is_some_and(|at| now.saturating_duration_since(at) < REPORT_SCAN) {
            return;
        }
        self.last_report_scan = Some(now);
        let ntp = self.ntp_time(now);
        self.next_report = None;
        self.send_sender_reports(now, ntp, out);
        self.send_receiver_reports(now, out);
    }

    fn schedule_report(next_report: &mut Option<Instant>, at: Instant) {
        *next_report = Some(next_report.map_or(at, |next| next.min(at)));
    }

    fn send_sender_reports(&mut self, now: Instant, ntp: u64, out: &mut impl RouterOutput) {
        let Router { consumers, producers, config, jitter, report_buf, next_report, .. } = self;
        for c in consumers.iter_mut().flatten() {
            if c.sent.packets == 0 {
                continue;
            }
            let due = *c.sent.next_report_at.get_or_insert_with(|| now + jitter.spread(config.report_interval) / 2);
            if now < due {
                Self::schedule_report(next_report, due);
                continue;
            }
            let next = now + jitter.spread(config.report_interval);
            c.sent.next_report_at = Some(next);
            Self::schedule_report(next_report, next);
            let Some((last_ts, last_at)) = c.out.last_sent() else { continue };
            let clock_rate = match producers[c.producer].as_ref().map(|p| p.kind) {
                Some(MediaKind::Audio) => 48_000u128,
                _ => 90_000,
            };
            let elapsed = now.saturating_duration_since(last_at).as_nanos();
            let rtp_time = last_ts.wrapping_add((elapsed * clock_rate / 1_000_000_000) as u32);
            let info = SenderInfo {
                ssrc: c.ssrc,
                ntp_time: ntp,
                rtp_time,
                packet_count: c.sent.packets,
                octet_count: c.sent.octets,
            };
            let Ok(n) = write_sender_report(&mut report_buf[..], &info, &[]) else { continue };
            let Ok(m) = write_sdes_cname(&mut report_buf[n..], c.ssrc, CNAME) else { continue };
            out.send_rtcp(c.transport, &report_buf[..n + m]);
        }
    }

    fn send_receiver_reports(&mut self, now: Instant, out: &mut impl RouterOutput) {
        let Router { producers, publishers, config, jitter, report_buf, server_ssrc, next_report, .. } = self;
        for (&transport, state) in publishers.iter_mut() {
            let due = *state.next_report_at.get_or_insert_with(|| now + jitter.spread(config.report_interval) / 2);
            if now < due {
                Self::schedule_report(next_report, due);
                continue;
            }
            let next = now + jitter.spread(config.report_interval);
            state.next_report_at = Some(next);
            Self::schedule_report(next_report, next);
            let mut blocks = [ReportBlock {
                ssrc: 0,
                fraction_lost: 0,
                cumulative_lost: 0,
                highest_sequence: 0,
                jitter: 0,
                last_sr: 0,
                delay_since_last_sr: 0,
            }; MAX_REPORT_BLOCKS];
            let mut count = 0;
            let mut video_ssrcs = [0u32; MAX_REPORT_BLOCKS];
            let mut video_count = 0;
            let mut video_bps = 0u64;
            let mut worst_video_loss = 0u8;
            for producer in producers.iter_mut().flatten().filter(|p| p.transport == transport) {
                for layer in producer.layers.iter_mut() {
                    let Some(ssrc) = layer.ssrc else { continue };
                    let Some(block) = layer.received.report(now, ssrc) else { continue };
                    if count == MAX_REPORT_BLOCKS {
                        break;
                    }
                    blocks[count] = block;
                    count += 1;
                    if producer.kind != MediaKind::Audio {
                        video_ssrcs[video_count] = ssrc;
                        video_count += 1;
                        video_bps += layer.meter.rate_bps();
                        worst_video_loss = worst_video_loss.max(block.fraction_lost);
                    }
                }
            }
            let Ok(mut n) = write_receiver_report(&mut report_buf[..], *server_ssrc, &blocks[..count]) else {
                continue;
            };
            let Ok(m) = write_sdes_cname(&mut report_buf[n..], *server_ssrc, CNAME) else { continue };
            n += m;
            if video_count > 0 {
                let estimate = next_estimate(state.estimate_bps, video_bps, worst_video_loss);
                state.estimate_bps = Some(estimate);
                if let Ok(m) = write_remb(&mut report_buf[n..], *server_ssrc, estimate, &video_ssrcs[..video_count]) {
                    n += m;
                }
            }
            out.send_rtcp(transport, &report_buf[..n]);
        }
    }

    /// A publisher's SR about one of its streams: remembered for the LSR/DLSR of our RRs.
    pub(super) fn on_sender_report(&mut self, now: Instant, from: TransportId, ssrc: u32, ntp_time: u64) {
        let Some(route) = self.routes.get(&(from, ssrc)).copied() else { return };
        let Some(producer) = self.producers[route.producer].as_mut() else { return };
        if let Some(layer) = producer.layers.get_mut(route.layer as usize) {
            layer.received.on_sender_report(now, ntp_time);
        }
    }

    /// Round trip from a report block echoing one of our SRs (LSR 0 means "no SR yet").
    pub(super) fn round_trip(&mut self, now: Instant, block: &ReportBlock, out: &mut impl RouterOutput) {
        if block.last_sr == 0 {
            return;
        }
        let now_compact = ntp_compact(self.ntp_time(now));
        let rtt = now_compact.wrapping_sub(block.last_sr).wrapping_sub(block.delay_since_last_sr);
        let rtt_ns = nanos_from_compact(rtt);
        if rtt_ns <= MAX_RTT.as_nanos() as u64 {
            out.note(RouterNote::RoundTrip { rtt_ns });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_millis(20);

    #[test]
    fn receive_stats_count_loss_wraps_and_reorder() {
        let t0 = Instant::now();
        let mut s = ReceiveStats::default();
        assert!(s.report(t0, 9).is_none(), "nothing received, nothing to report");
        // 65530..=65535, 0..=9 with 3 and 5 missing and 7 arriving late (after 8)
        let mut seqs: Vec<u16> = (65_530..=65_535).chain([0, 1, 2, 4, 6, 8, 7, 9]).collect();
        for (i, seq) in seqs.drain(..).enumerate() {
            s.on_packet(t0 + T * i as u32, seq, 960 * i as u32, 48_000);
        }
        let block = s.report(t0 + T * 20, 9).unwrap();
        assert_eq!(block.ssrc, 9);
        assert_eq!(block.highest_sequence, (1 << 16) | 9, "one wrap");
        assert_eq!(block.cumulative_lost, 2);
        assert_eq!(block.fraction_lost, (2 * 256 / 16) as u8);
        assert_eq!(block.jitter, 0, "perfectly paced");
        // next interval: 10..=19 all present: no new loss
        for i in 10..20u16 {
            s.on_packet(t0 + T * (20 + i as u32), i, 960 * (20 + i as u32), 48_000);
        }
        let block = s.report(t0 + T * 40, 9).unwrap();
        assert_eq!((block.cumulative_lost, block.fraction_lost), (2, 0));
        // a duplicate makes the count go down (RFC 3550 allows a negative-going count)
        s.on_packet(t0 + T * 41, 19, 0, 48_000);
        assert_eq!(s.report(t0 + T * 42, 9).unwrap().cumulative_lost, 1);
    }

    #[test]
    fn a_big_jump_is_a_restart_only_when_confirmed() {
        let t0 = Instant::now();
        let mut s = ReceiveStats::default();
        for seq in 100..110u16 {
            s.on_packet(t0, seq, 0, 90_000);
        }
        s.on_packet(t0, 30_000, 0, 90_000); // one stray packet: ignored
        let block = s.report(t0, 1).unwrap();
        assert_eq!((block.highest_sequence, block.cumulative_lost), (109, 0));
        s.on_packet(t0, 40_000, 0, 90_000);
        s.on_packet(t0, 40_001, 0, 90_000); // confirmed: the stream restarted at 40000
        let block = s.report(t0, 1).unwrap();
        assert_eq!((block.highest_sequence, block.cumulative_lost), (40_001, 0));
    }

    #[test]
    fn jitter_follows_rfc3550() {
        let t0 = Instant::now();
        let mut s = ReceiveStats::default();
        // 90 kHz, packets every 10 ms (900 ticks) but arrivals alternate 8 ms / 12 ms:
        // |D| = 180 ticks each time, so J converges to 180.
        let mut at = t0;
        for i in 0..400u32 {
            s.on_packet(at, i as u16, 900 * i, 90_000);
            at += Duration::from_millis(if i % 2 == 0 { 8 } else { 12 });
        }
        let jitter = s.report(at, 1).unwrap().jitter;
        assert!((175..=180).contains(&jitter), "{jitter}");
    }

    #[test]
    fn lsr_and_dlsr_echo_the_publishers_sender_report() {
        let t0 = Instant::now();
        let mut s = ReceiveStats::default();
        s.on_packet(t0, 1, 0, 90_000);
        s.on_sender_report(t0, 0x0001_2345_6789_0000);
        let block = s.report(t0 + Duration::from_millis(500), 1).unwrap();
        assert_eq!(block.last_sr, 0x2345_6789);
        assert_eq!(block.delay_since_last_sr, 0x8000, "half a second in 1/65536 s");
    }

    #[test]
    fn ntp_clock_advances_with_monotonic_time() {
        let t0 = Instant::now();
        let config = RouterConfig {
            wall_clock: Some(WallClock { at: t0, since_unix_epoch: Duration::from_secs(1_700_000_000) }),
            ..RouterConfig::default()
        };
        let clock = NtpClock::new(&config, t0 + Duration::from_secs(5));
        let ntp = clock.ntp(t0 + Duration::from_millis(1_250));
        assert_eq!(ntp >> 32, 1_700_000_001 + 2_208_988_800);
        assert_eq!(ntp as u32, 1 << 30);
        assert_eq!(clock.ntp(t0), ntp_from_unix(Duration::from_secs(1_700_000_000)));
    }

    #[test]
    fn estimate_probes_up_holds_and_backs_off() {
        assert_eq!(next_estimate(None, 0, 0), (REMB_START_BPS as f64 * 1.08) as u64);
        assert_eq!(next_estimate(Some(1_000_000), 2_000_000, 0), 3_000_000, "headroom over what arrives");
        assert_eq!(next_estimate(Some(1_000_000), 500_000, 13), 1_000_000, "5 % loss holds");
        assert_eq!(next_estimate(Some(1_000_000), 800_000, 64), 700_000, "25 % loss backs off");
        assert_eq!(next_estimate(Some(1_000_000), 0, 255), REMB_MIN_BPS);
        assert_eq!(next_estimate(Some(REMB_MAX_BPS), REMB_MAX_BPS, 0), REMB_MAX_BPS);
    }

    #[test]
    fn jitter_spreads_intervals_between_half_and_one_and_a_half() {
        let mut j = Jitter::new(7);
        let spread: Vec<_> = (0..1000).map(|_| j.spread(Duration::from_secs(1))).collect();
        assert!(spread.iter().all(|d| *d >= Duration::from_millis(500) && *d < Duration::from_millis(1500)));
        assert!(spread.iter().any(|d| *d < Duration::from_millis(700)));
        assert!(spread.iter().any(|d| *d > Duration::from_millis(1300)));
    }
}
