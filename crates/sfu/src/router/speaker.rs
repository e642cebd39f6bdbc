//! Active-speaker detection from RFC 6464 audio levels: a smoothed loudness per audio
//! publisher, reported as the top three talkers when the set changes, at most once per
//! report interval.

use std::time::{Duration, Instant};

use super::TransportId;

/// Smoothed loudness (127 - level dBov) above which a participant counts as talking.
const TALKING_THRESHOLD: f32 = 60.0;
/// A talker whose last audio packet is older than this is silent (DTX or muted).
const SILENCE_AFTER: Duration = Duration::from_millis(500);
const SMOOTHING: f32 = 0.15;

#[derive(Debug, Clone, Copy)]
struct Talker {
    transport: TransportId,
    loudness: f32,
    last_at: Instant,
}

/// Tracks audio levels and decides when to report the speaker set.
#[derive(Debug)]
pub struct SpeakerDetector {
    talkers: Vec<Talker>,
    interval: Duration,
    last_report_at: Option<Instant>,
    last_reported: [Option<TransportId>; 3],
}

impl SpeakerDetector {
    pub fn new(interval: Duration) -> Self {
        Self { talkers: Vec::with_capacity(16), interval, last_report_at: None, last_reported: [None; 3] }
    }

    /// Feeds one packet's audio level (0 = loudest, 127 = silence).
    pub fn on_level(&mut self, now: Instant, transport: TransportId, level: u8) {
        let loudness = 127.0 - level.min(127) as f32;
        match self.talkers.iter_mut().find(|t| t.transport == transport) {
            Some(t) => {
                t.loudness += SMOOTHING * (loudness - t.loudness);
                t.last_at = now;
            }
            None => self.talkers.push(Talker { transport, loudness: loudness * SMOOTHING, last_at: now }),
        }
    }

    pub fn remove(&mut self, transport: TransportId) {
        self.talkers.retain(|t| t.transport != transport);
    }

    /// The current top three talkers, loudest first.
    pub fn current(&self, now: Instant) -> [Option<TransportId>; 3] {
        let mut top: [Option<(f32, TransportId)>; 3] = [None; 3];
        for t in &self.talkers {
            if t.loudness < TALKING_THRESHOLD || now.saturating_duration_since(t.last_at) > SILENCE_AFTER {
                continue;
            }
            let mut candidate = (t.loudness, t.transport);
            for slot in top.iter_mut() {
                match slot {
                    Some(existing) if existing.0 >= candidate.0 => {}
                    Some(existing) => std::mem::swap(existing, &mut candidate),
                    None => {
                        *slot = Some(candidate);
                        break;
                    }
                }
            }
        }
        top.map(|s| s.map(|(_, t)| t))
    }

    /// Returns the speaker set if it changed and the report interval has passed.
    pub fn poll(&mut self, now: Instant) -> Option<[Option<TransportId>; 3]> {
        if self.last_report_at.is_some_and(|at| now.saturating_duration_since(at) < self.interval) {
            return None;
        }
        let current = self.current(now);
        if current == self.last_reported {
            return None;
        }
        self.last_reported = current;
        self.last_report_at = Some(now);
        Some(current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_loudest_first_and_rate_limits() {
        let t0 = Instant::now();
        let mut d = SpeakerDetector::new(Duration::from_millis(300));
        let (a, b) = (TransportId(1), TransportId(2));
        for i in 0..50 {
            let now = t0 + Duration::from_millis(20 * i);
            d.on_level(now, a, 30); // loud
            d.on_level(now, b, 50); // quieter
        }
        let t1 = t0 + Duration::from_millis(1000);
        assert_eq!(d.poll(t1), Some([Some(a), Some(b), None]));
        assert_eq!(d.poll(t1), None, "unchanged set is not re-reported");
        for i in 0..50 {
            let now = t1 + Duration::from_millis(2 * i);
            d.on_level(now, a, 127);
        }
        let t2 = t1 + Duration::from_millis(100);
        assert_eq!(d.poll(t2), None, "within 300 ms of the last report");
        let t3 = t1 + Duration::from_millis(600);
        assert_eq!(d.poll(t3), Some([None, None, None]), "b's last packet is too old, a went quiet");
    }
}
