//! What billing reports to operators: the [`UsageTelemetry`] port. The recorder and the
//! webhook delivery task call it; the binary plugs in the Prometheus registry
//! (`palaver-telemetry`), so this crate never depends on a metrics library.

use palaver_core::{ParticipantType, PhoneLeg};

/// Why the recorder refused a session event (a closed set: `reason` label values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    DuplicateSession,
    UnknownSession,
    ConversationMismatch,
    EmptyId,
    /// The recorder thread is gone (after shutdown).
    RecorderStopped,
}

impl Rejection {
    pub const ALL: [Rejection; 5] = [
        Self::DuplicateSession,
        Self::UnknownSession,
        Self::ConversationMismatch,
        Self::EmptyId,
        Self::RecorderStopped,
    ];

    /// Stable label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DuplicateSession => "duplicate_session",
            Self::UnknownSession => "unknown_session",
            Self::ConversationMismatch => "conversation_mismatch",
            Self::EmptyId => "empty_id",
            Self::RecorderStopped => "recorder_stopped",
        }
    }
}

/// The result of one webhook delivery attempt (a closed set: `result` label values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryResult {
    Delivered,
    /// Failed; retried later.
    Failed,
    /// Failed for the last time; given up.
    Dead,
}

impl DeliveryResult {
    pub const ALL: [DeliveryResult; 3] = [Self::Delivered, Self::Failed, Self::Dead];

    /// Stable label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Dead => "dead",
        }
    }
}

/// Billing's counts and gauges, as the recorder and webhook delivery see them. Calls come from
/// the recorder thread and the delivery task; implementations must not block.
pub trait UsageTelemetry: Send + Sync + 'static {
    /// Participant time of one type accrued since the last call, at the configured price.
    fn participant_time(&self, participant_type: ParticipantType, ms: i64, micro_usd_per_minute: i64);
    /// Open sessions of one type right now.
    fn open_participants(&self, participant_type: ParticipantType, count: usize);
    /// Conversations with a running call right now.
    fn active_calls(&self, count: usize);
    /// Ledger changes waiting to be written.
    fn pending_changes(&self, count: usize);
    /// A checkpoint was written at `at_ms` (Unix milliseconds).
    fn checkpoint_written(&self, at_ms: i64);
    /// A ledger write or checkpoint failed (it is retried).
    fn ledger_write_failed(&self);
    /// A session event was refused.
    fn event_rejected(&self, reason: Rejection);
    /// Crash recovery closed `count` sessions at startup.
    fn sessions_recovered(&self, count: u64);
    /// One webhook delivery attempt ended.
    fn webhook_delivery(&self, result: DeliveryResult);
    /// Webhook deliveries not yet delivered nor given up.
    fn webhook_backlog(&self, count: u64);
    /// Events in the billing outbox not yet delivered nor given up, as the delivery task last
    /// counted them (the whole shared outbox in cluster mode).
    fn billing_outbox_pending(&self, count: u64);
    /// Ledger changes held in the local spool while the ledger's database refuses writes.
    fn ledger_spooled(&self, count: u64);
    /// A phone leg's usage record (`ms` of phone time on its number, trunk and direction)
    /// was written to the ledger. Reports nothing unless implemented.
    fn phone_time(&self, leg: &PhoneLeg, ms: i64) {
        let _ = (leg, ms);
    }
}

/// Reports nothing (tools and tests without a registry).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoUsageTelemetry;

impl UsageTelemetry for NoUsageTelemetry {
    fn participant_time(&self, _: ParticipantType, _: i64, _: i64) {}
    fn open_participants(&self, _: ParticipantType, _: usize) {}
    fn active_calls(&self, _: usize) {}
    fn pending_changes(&self, _: usize) {}
    fn checkpoint_written(&self, _: i64) {}
    fn ledger_write_failed(&self) {}
    fn event_rejected(&self, _: Rejection) {}
    fn sessions_recovered(&self, _: u64) {}
    fn webhook_delivery(&self, _: DeliveryResult) {}
    fn webhook_backlog(&self, _: u64) {}
    fn billing_outbox_pending(&self, _: u64) {}
    fn ledger_spooled(&self, _: u64) {}
}

#[cfg(test)]
pub(crate) mod recording {
    //! A [`UsageTelemetry`] that remembers what it was told, for assertions.

    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    #[derive(Debug, Default, Clone)]
    pub struct Reported {
        /// Accrued milliseconds by participant type.
        pub participant_ms: HashMap<ParticipantType, i64>,
        /// Accrued billable cost, micro-USD (fractional).
        pub billed_micro_usd: f64,
        pub open_participants: HashMap<ParticipantType, usize>,
        pub active_calls: usize,
        pub pending_changes: usize,
        pub last_checkpoint_ms: Option<i64>,
        pub write_failures: u64,
        pub rejected: HashMap<Rejection, u64>,
        pub recovered_sessions: u64,
        pub deliveries: HashMap<DeliveryResult, u64>,
        pub webhook_backlog: Option<u64>,
        pub billing_outbox_pending: Option<u64>,
        pub ledger_spooled: Option<u64>,
    }

    impl Reported {
        /// Billable participant time, in seconds.
        pub fn billed_seconds(&self) -> f64 {
            let ms: i64 = self.participant_ms.iter().filter(|(t, _)| t.is_billable()).map(|(_, ms)| *ms).sum();
            ms as f64 / 1000.0
        }
    }

    #[derive(Debug, Default)]
    pub struct RecordingTelemetry(Mutex<Reported>);

    impl RecordingTelemetry {
        pub fn reported(&self) -> Reported {
            self.0.lock().unwrap().clone()
        }
        fn with(&self, f: impl FnOnce(&mut Reported)) {
            f(&mut self.0.lock().unwrap());
        }
    }

    impl UsageTelemetry for RecordingTelemetry {
        fn participant_time(&self, t: ParticipantType, ms: i64, micro_usd_per_minute: i64) {
            self.with(|r| {
                *r.participant_ms.entry(t).or_default() += ms;
                if t.is_billable() {
                    r.billed_micro_usd += ms as f64 / 60_000.0 * micro_usd_per_minute as f64;
                }
            });
        }
        fn open_participants(&self, t: ParticipantType, count: usize) {
            self.with(|r| {
                r.open_participants.insert(t, count);
            });
        }
        fn active_calls(&self, count: usize) {
            self.with(|r| r.active_calls = count);
        }
        fn pending_changes(&self, count: usize) {
            self.with(|r| r.pending_changes = count);
        }
        fn checkpoint_written(&self, at_ms: i64) {
            self.with(|r| r.last_checkpoint_ms = Some(at_ms));
        }
        fn ledger_write_failed(&self) {
            self.with(|r| r.write_failures += 1);
        }
        fn event_rejected(&self, reason: Rejection) {
            self.with(|r| *r.rejected.entry(reason).or_default() += 1);
        }
        fn sessions_recovered(&self, count: u64) {
            self.with(|r| r.recovered_sessions += count);
        }
        fn webhook_delivery(&self, result: DeliveryResult) {
            self.with(|r| *r.deliveries.entry(result).or_default() += 1);
        }
        fn webhook_backlog(&self, count: u64) {
            self.with(|r| r.webhook_backlog = Some(count));
        }
        fn billing_outbox_pending(&self, count: u64) {
            self.with(|r| r.billing_outbox_pending = Some(count));
        }
        fn ledger_spooled(&self, count: u64) {
            self.with(|r| r.ledger_spooled = Some(count));
        }
    }
}
