//! The durable usage ledger: the storage trait and its SQLite implementation.
//!
//! The ledger stores participant sessions (open ones are checkpointed), call spans,
//! usage records and the webhook outbox. Every write is idempotent (deterministic ids,
//! insert-or-ignore, close-only-if-open), so replaying a change never duplicates a record.

#[cfg(any(test, feature = "test-support"))]
pub mod conformance;
mod schema;
pub mod spool;
mod sqlite;

pub use schema::CACHE_KIB;
pub use spool::SpoolingLedger;
pub use sqlite::SqliteLedger;

use crate::meter::LedgerChange;
use crate::pricing::Price;
use crate::records::{CallSummary, TypeTotals, UsageRecord};

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger storage error: {0}")]
    Storage(#[from] rusqlite::Error),
    /// A failure of another backend (PostgreSQL in cluster mode, `palaver-cluster`).
    #[error("ledger storage error: {0}")]
    Backend(String),
    #[error("ledger holds a value it cannot read back: {0}")]
    Corrupt(String),
    #[error("cannot serialize an outbox event: {0}")]
    Serialize(#[from] serde_json::Error),
}

/// Settings the ledger needs to derive records and events on its own (during recovery).
#[derive(Debug, Clone)]
pub struct LedgerOptions {
    /// Price applied to sessions the ledger closes itself (recovery).
    pub price: Price,
    /// Webhook endpoints: every call event is queued once per endpoint.
    pub webhook_endpoints: Vec<String>,
    /// `topic` of the call events.
    pub event_topic: String,
}

impl Default for LedgerOptions {
    fn default() -> Self {
        Self { price: Price::default(), webhook_endpoints: Vec::new(), event_topic: "/palaver".into() }
    }
}

/// Keyset page request over usage records ordered by (start time, record id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageQuery {
    /// Inclusive lower bound on `StartTime` (ms since the epoch).
    pub from_ms: i64,
    /// Exclusive upper bound on `StartTime`.
    pub to_ms: i64,
    /// Resume strictly after this (start_ms, record_id).
    pub after: Option<(i64, String)>,
    pub limit: usize,
}

/// What recovery did at startup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Sessions found open and closed at their last checkpoint (`ServerFailure`).
    pub sessions_closed: usize,
    /// Calls found running and ended.
    pub calls_ended: usize,
    /// What recovery wrote, in order (the closed sessions, then the ended calls), so the call
    /// lifecycle events (`CallParticipantRemoved`, `CallEnded`) can be raised for them.
    pub changes: Vec<crate::meter::LedgerChange>,
}

/// One pending webhook delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    pub event_id: String,
    pub endpoint: String,
    /// The JSON of one Event Grid event.
    pub payload: String,
    pub attempts: u32,
    pub next_attempt_ms: i64,
}

/// The result of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Delivered {
        event_id: String,
        endpoint: String,
        at_ms: i64,
    },
    /// Failed; retry at `next_attempt_ms`, or give up when `dead`.
    Failed {
        event_id: String,
        endpoint: String,
        attempts: u32,
        next_attempt_ms: i64,
        error: String,
        dead: bool,
    },
}

/// Durable storage for usage. SQLite is the embedded default; a server database can
/// implement the same trait.
pub trait UsageLedger: Send {
    /// Apply changes, their usage records and their outbox events in one transaction.
    fn apply(&mut self, changes: &[LedgerChange]) -> Result<(), LedgerError>;
    /// Mark every open session as alive at `now_ms`; returns how many are open.
    fn checkpoint(&mut self, now_ms: i64) -> Result<usize, LedgerError>;
    /// Close sessions and calls left open by a crash, at their last checkpoint.
    fn recover(&mut self) -> Result<RecoveryReport, LedgerError>;
    /// The time of the last checkpoint, if any.
    fn last_checkpoint_ms(&self) -> Result<Option<i64>, LedgerError>;

    fn usage_page(&self, query: &UsageQuery) -> Result<Vec<UsageRecord>, LedgerError>;
    /// Per-participant summaries of every call of a conversation (correlation id).
    fn call_summaries(&self, correlation_id: &str) -> Result<Vec<CallSummary>, LedgerError>;
    /// Totals per participant type of records starting in `[from_ms, to_ms)`; every type
    /// is present (zero when unused).
    fn totals(&self, from_ms: i64, to_ms: i64) -> Result<Vec<TypeTotals>, LedgerError>;

    /// Deliveries due at `now_ms`, in outbox order. A ledger shared by several processes
    /// (PostgreSQL) leases what it returns to the caller, so a row returned and not yet
    /// recorded is not returned again, to anyone, until its lease has passed; SQLite (one
    /// process, one deliverer) returns it again.
    fn due_deliveries(&self, now_ms: i64, limit: usize) -> Result<Vec<OutboxItem>, LedgerError>;
    fn record_delivery(&mut self, outcome: &DeliveryOutcome) -> Result<(), LedgerError>;
    /// Deliveries neither delivered nor given up.
    fn outbox_backlog(&self) -> Result<u64, LedgerError>;
    /// Changes held in a local spool while the storage refuses writes ([`SpoolingLedger`]);
    /// 0 for a ledger that writes through.
    fn spooled_changes(&self) -> u64 {
        0
    }
}
