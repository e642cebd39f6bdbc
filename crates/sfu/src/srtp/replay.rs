//! Receive-side index tracking: RTP rollover-counter estimation (RFC 3711 section 3.3.1 and
//! appendix A) and a 64-entry sliding replay window (section 3.3.2), shared with SRTCP indices.

/// A sliding replay window over 64 indices below the highest accepted index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    highest: u64,
    bitmap: u64,
    initialized: bool,
}

const WINDOW: u64 = 64;

impl ReplayWindow {
    /// True if `index` has not been seen and is not too old. Does not record it.
    pub fn check(&self, index: u64) -> bool {
        if !self.initialized || index > self.highest {
            return true;
        }
        let behind = self.highest - index;
        behind < WINDOW && self.bitmap & (1 << behind) == 0
    }

    /// Records an authenticated index (call only after [`check`](Self::check) and auth).
    pub fn accept(&mut self, index: u64) {
        if !self.initialized {
            self.initialized = true;
            self.highest = index;
            self.bitmap = 1;
        } else if index > self.highest {
            let shift = index - self.highest;
            self.bitmap = if shift >= WINDOW { 1 } else { (self.bitmap << shift) | 1 };
            self.highest = index;
        } else {
            self.bitmap |= 1 << (self.highest - index);
        }
    }

    pub fn highest(&self) -> Option<u64> {
        self.initialized.then_some(self.highest)
    }
}

/// Estimates the 48-bit packet index (ROC << 16 | SEQ) of an incoming RTP sequence number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RtpIndexEstimator {
    pub window: ReplayWindow,
}

impl RtpIndexEstimator {
    /// The most likely index for `sequence`; `None` if it would precede index 0.
    pub fn estimate(&self, sequence: u16) -> Option<u64> {
        let Some(highest) = self.window.highest() else { return Some(sequence as u64) };
        let roc = highest >> 16;
        let s_l = (highest & 0xFFFF) as u16;
        let guess = if s_l < 0x8000 {
            if sequence > s_l && sequence - s_l > 0x8000 { roc.checked_sub(1)? } else { roc }
        } else if s_l - 0x8000 > sequence {
            roc + 1
        } else {
            roc
        };
        Some(guess << 16 | sequence as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_rejects_replays_and_old_packets() {
        let mut w = ReplayWindow::default();
        for i in [10, 12, 11, 100] {
            assert!(w.check(i));
            w.accept(i);
        }
        assert!(!w.check(100));
        assert!(!w.check(36)); // 64 behind
        assert!(w.check(37));
        assert!(w.check(99));
        w.accept(1000);
        assert!(!w.check(900));
    }

    #[test]
    fn estimates_rollover_both_ways() {
        let mut e = RtpIndexEstimator::default();
        e.window.accept(65_530);
        assert_eq!(e.estimate(3), Some(65_536 + 3));
        e.window.accept(65_536 + 3);
        assert_eq!(e.estimate(65_534), Some(65_534)); // late packet from before the wrap
        assert_eq!(e.estimate(10), Some(65_536 + 10));
        let mut fresh = RtpIndexEstimator::default();
        fresh.window.accept(5);
        assert_eq!(fresh.estimate(65_000), None); // would be ROC -1
    }
}
