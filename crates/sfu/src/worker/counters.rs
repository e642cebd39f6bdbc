//! Per-worker atomic counters and the plain snapshot the metrics crate reads and sums across
//! workers at scrape time. Only the owning worker thread writes a worker's counters, so an
//! increment is a relaxed load plus a relaxed store (no locked read-modify-write on the packet
//! path); readers on other threads see every value whole.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

macro_rules! drop_reasons {
    ($( $variant:ident => $name:literal ),* $(,)?) => {
        /// Why an incoming or outgoing packet was dropped.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum DropReason { $($variant),* }

        impl DropReason {
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant),*];
            /// Stable label for metrics (`reason="..."`).
            pub fn as_str(self) -> &'static str {
                match self { $(DropReason::$variant => $name),* }
            }
        }
    };
}

drop_reasons! {
    NotMedia => "not_media",
    MalformedRtp => "malformed_rtp",
    MalformedRtcp => "malformed_rtcp",
    UnknownSource => "unknown_source",
    UnknownSsrc => "unknown_ssrc",
    StunInvalid => "stun_invalid",
    StunUnknownUfrag => "stun_unknown_ufrag",
    StunBadIntegrity => "stun_bad_integrity",
    SrtpAuthFailed => "srtp_auth_failed",
    SrtpReplayed => "srtp_replayed",
    Dtls => "dtls_unhandled",
    NoRemoteAddress => "no_remote_address",
    ProtectFailed => "protect_failed",
    SendFailed => "send_failed",
    EventQueueFull => "event_queue_full",
}

const REASONS: usize = 15;

/// Live counters of one worker.
#[derive(Debug)]
pub struct WorkerCounters {
    pub packets_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub packets_out: AtomicU64,
    pub bytes_out: AtomicU64,
    pub rtp_forwarded: AtomicU64,
    pub nack_received: AtomicU64,
    pub nack_resent: AtomicU64,
    pub nack_missed: AtomicU64,
    pub keyframe_requests: AtomicU64,
    pub keyframe_requests_suppressed: AtomicU64,
    pub layer_switches: AtomicU64,
    pub stun_answered: AtomicU64,
    pub commands: AtomicU64,
    pub commands_failed: AtomicU64,
    drops: [AtomicU64; REASONS],
}

impl Default for WorkerCounters {
    fn default() -> Self {
        Self {
            packets_in: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            packets_out: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            rtp_forwarded: AtomicU64::new(0),
            nack_received: AtomicU64::new(0),
            nack_resent: AtomicU64::new(0),
            nack_missed: AtomicU64::new(0),
            keyframe_requests: AtomicU64::new(0),
            keyframe_requests_suppressed: AtomicU64::new(0),
            layer_switches: AtomicU64::new(0),
            stun_answered: AtomicU64::new(0),
            commands: AtomicU64::new(0),
            commands_failed: AtomicU64::new(0),
            drops: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// A point-in-time copy of the counters; `+` sums workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CountersSnapshot {
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
    pub rtp_forwarded: u64,
    pub nack_received: u64,
    pub nack_resent: u64,
    pub nack_missed: u64,
    pub keyframe_requests: u64,
    pub keyframe_requests_suppressed: u64,
    pub layer_switches: u64,
    pub stun_answered: u64,
    pub commands: u64,
    pub commands_failed: u64,
    pub drops: [u64; REASONS],
}

impl CountersSnapshot {
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }

    pub fn dropped_total(&self) -> u64 {
        self.drops.iter().sum()
    }
}

impl std::ops::Add for CountersSnapshot {
    type Output = Self;
    fn add(mut self, o: Self) -> Self {
        self.packets_in += o.packets_in;
        self.bytes_in += o.bytes_in;
        self.packets_out += o.packets_out;
        self.bytes_out += o.bytes_out;
        self.rtp_forwarded += o.rtp_forwarded;
        self.nack_received += o.nack_received;
        self.nack_resent += o.nack_resent;
        self.nack_missed += o.nack_missed;
        self.keyframe_requests += o.keyframe_requests;
        self.keyframe_requests_suppressed += o.keyframe_requests_suppressed;
        self.layer_switches += o.layer_switches;
        self.stun_answered += o.stun_answered;
        self.commands += o.commands;
        self.commands_failed += o.commands_failed;
        for (a, b) in self.drops.iter_mut().zip(o.drops) {
            *a += b;
        }
        self
    }
}

impl WorkerCounters {
    /// Single-writer increment (call only from the worker that owns these counters).
    pub fn inc(counter: &AtomicU64) {
        Self::add(counter, 1);
    }

    /// Single-writer add (call only from the worker that owns these counters).
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
    }

    pub fn count_drop(&self, reason: DropReason) {
        Self::inc(&self.drops[reason as usize]);
    }

    pub fn snapshot(&self) -> CountersSnapshot {
        CountersSnapshot {
            packets_in: self.packets_in.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            packets_out: self.packets_out.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            rtp_forwarded: self.rtp_forwarded.load(Relaxed),
            nack_received: self.nack_received.load(Relaxed),
            nack_resent: self.nack_resent.load(Relaxed),
            nack_missed: self.nack_missed.load(Relaxed),
            keyframe_requests: self.keyframe_requests.load(Relaxed),
            keyframe_requests_suppressed: self.keyframe_requests_suppressed.load(Relaxed),
            layer_switches: self.layer_switches.load(Relaxed),
            stun_answered: self.stun_answered.load(Relaxed),
            commands: self.commands.load(Relaxed),
            commands_failed: self.commands_failed.load(Relaxed),
            drops: std::array::from_fn(|i| self.drops[i].load(Relaxed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_a_slot_and_snapshots_sum() {
        assert_eq!(DropReason::ALL.len(), REASONS);
        let a = WorkerCounters::default();
        a.count_drop(DropReason::EventQueueFull);
        WorkerCounters::inc(&a.packets_in);
        let b = WorkerCounters::default();
        b.count_drop(DropReason::EventQueueFull);
        let sum = a.snapshot() + b.snapshot();
        assert_eq!(sum.dropped(DropReason::EventQueueFull), 2);
        assert_eq!((sum.packets_in, sum.dropped_total()), (1, 2));
    }
}
