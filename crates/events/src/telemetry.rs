//! What the events crate counts for operators (the binary maps it to Prometheus in
//! `palaver-telemetry`). Implementations must not block.

/// What a delivery attempt was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryKind {
    /// An Event Grid system event to a subscription.
    System,
    /// A Call Automation callback.
    Callback,
    /// A subscription validation handshake.
    Validation,
}

impl DeliveryKind {
    pub const ALL: [DeliveryKind; 3] = [Self::System, Self::Callback, Self::Validation];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::Callback => "callback",
            Self::Validation => "validation",
        }
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttemptResult {
    Delivered,
    /// Failed; another attempt is scheduled.
    Retried,
    /// Failed for the last time: dead-lettered.
    DeadLettered,
}

impl AttemptResult {
    pub const ALL: [AttemptResult; 3] = [Self::Delivered, Self::Retried, Self::DeadLettered];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Retried => "retried",
            Self::DeadLettered => "dead_lettered",
        }
    }
}

pub trait EventsTelemetry: Send + Sync + 'static {
    /// One delivery attempt ended.
    fn attempt(&self, kind: DeliveryKind, result: AttemptResult);
    /// Undelivered rows in the outbox.
    fn outbox_depth(&self, pending: u64);
}

/// Counts nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEventsTelemetry;

impl EventsTelemetry for NoEventsTelemetry {
    fn attempt(&self, _kind: DeliveryKind, _result: AttemptResult) {}
    fn outbox_depth(&self, _pending: u64) {}
}
