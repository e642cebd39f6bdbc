//! A send-side bandwidth estimate for one subscriber from its transport-wide congestion
//! control feedback: the server numbers every packet it sends to the subscriber, remembers send
//! time and size, and turns each feedback report into a delivery rate and a loss fraction.
//! The estimate follows delivery with a gentle upward probe when loss is low and backs off in
//! proportion to loss when it is high (a deliberately simple loss/delivery controller).

use std::time::Instant;

use crate::rtp::rtcp::TransportCc;

const RING: usize = 4096;
const MIN_BPS: u64 = 50_000;
const MAX_BPS: u64 = 50_000_000;

#[derive(Debug, Clone, Copy, Default)]
struct Sent {
    sequence: u16,
    size: u16,
    valid: bool,
}

/// Transport-wide sequence numbering plus the estimate derived from feedback.
pub struct TwccEstimator {
    next_sequence: u16,
    sent: Vec<Sent>,
    estimate_bps: Option<u64>,
}

impl std::fmt::Debug for TwccEstimator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwccEstimator").field("estimate_bps", &self.estimate_bps).finish()
    }
}

impl Default for TwccEstimator {
    fn default() -> Self {
        Self { next_sequence: 0, sent: vec![Sent::default(); RING], estimate_bps: None }
    }
}

impl TwccEstimator {
    /// Numbers a packet about to be sent and remembers its size.
    pub fn on_send(&mut self, size: usize) -> u16 {
        let sequence = self.next_sequence;
        self.next_sequence = sequence.wrapping_add(1);
        self.sent[sequence as usize % RING] = Sent { sequence, size: size.min(u16::MAX as usize) as u16, valid: true };
        sequence
    }

    pub fn estimate_bps(&self) -> Option<u64> {
        self.estimate_bps
    }

    /// Folds one feedback report in; returns the new estimate when the report was usable.
    pub fn on_feedback(&mut self, _now: Instant, feedback: &TransportCc<'_>) -> Option<u64> {
        let mut received_bytes = 0u64;
        let mut received = 0u32;
        let mut lost = 0u32;
        let mut span_250us = 0i64;
        let mut first = true;
        feedback.for_each(|seq, delta| {
            let sent = self.sent[seq as usize % RING];
            if !sent.valid || sent.sequence != seq {
                return;
            }
            match delta {
                Some(d) => {
                    received += 1;
                    received_bytes += sent.size as u64;
                    if !first {
                        span_250us += d as i64;
                    }
                    first = false;
                }
                None => lost += 1,
            }
        });
        if received + lost < 10 || span_250us <= 80 {
            return None; // too little to judge (under 20 ms of arrivals)
        }
        let delivered = received_bytes * 8 * 4000 / span_250us as u64;
        let loss = lost as f64 / (received + lost) as f64;
        let previous = self.estimate_bps.unwrap_or(delivered);
        let next = if loss > 0.10 {
            (delivered as f64 * (1.0 - 0.5 * loss)) as u64
        } else if loss < 0.02 {
            (previous.max(delivered) as f64 * 1.08) as u64
        } else {
            previous
        }
        .clamp(MIN_BPS, MAX_BPS);
        self.estimate_bps = Some(next);
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::rtcp::{Compound, RtcpPacket};

    /// Feedback for `count` packets from `base`: the first `received` arrived 1 ms apart.
    fn feedback(base: u16, count: u16, received: u16) -> Vec<u8> {
        let mut p = vec![0x8F, 205, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2];
        p.extend_from_slice(&base.to_be_bytes());
        p.extend_from_slice(&count.to_be_bytes());
        p.extend_from_slice(&[0, 0, 1, 0]);
        p.extend_from_slice(&(0x2000 | received).to_be_bytes());
        if count > received {
            p.extend_from_slice(&(count - received).to_be_bytes());
        }
        p.extend(std::iter::repeat_n(4u8, received as usize));
        while p.len() % 4 != 0 {
            p.push(0);
        }
        let words = (p.len() / 4 - 1) as u16;
        p[2..4].copy_from_slice(&words.to_be_bytes());
        p
    }

    fn apply(e: &mut TwccEstimator, packet: &[u8]) -> Option<u64> {
        let Some(Ok(RtcpPacket::TransportCc(t))) = Compound::new(packet).next() else { panic!("not twcc") };
        e.on_feedback(Instant::now(), &t)
    }

    #[test]
    fn estimate_follows_delivery_and_backs_off_on_loss() {
        let mut e = TwccEstimator::default();
        for _ in 0..200 {
            e.on_send(1000);
        }
        // 100 x 1000 B over 99 ms ≈ 8.08 Mbit/s delivered, no loss: probe 8% above it.
        let first = apply(&mut e, &feedback(0, 100, 100)).unwrap();
        assert_eq!(first, (100_000u64 * 8 * 4000 / 396) * 108 / 100);
        // half lost: back off below what was delivered
        let second = apply(&mut e, &feedback(100, 100, 50)).unwrap();
        let delivered = 50_000u64 * 8 * 4000 / 196;
        assert!(second < delivered && second > delivered / 2, "{second} vs {delivered}");
        // feedback about packets never sent is ignored
        assert_eq!(apply(&mut e, &feedback(5000, 100, 100)), None);
    }
}
