//! palaver-billing: participant-minute billing — the meter, the durable usage ledger, usage
//! export and call-event webhooks. No metrics library: what operators see is reported through
//! the [`UsageTelemetry`] port (the binary plugs in `palaver-telemetry`'s Prometheus registry),
//! and signaling reaches billing only through `palaver_core::SessionObserver`.
//!
//! - [`meter`]: sans-IO participant-minute meter (virtual time in, ledger changes out).
//! - [`records`], [`pricing`]: record shapes (`ACSBillingUsage`, `ACSCallSummary`) and money.
//! - [`ledger`]: the storage trait and its SQLite (WAL) implementation, crash recovery.
//! - [`recorder`]: the [`recorder::BillingObserver`] signaling calls, and the ledger thread.
//! - [`export`]: validated usage queries, paging, JSON/CSV rendering (no HTTP here).
//! - [`webhook`]: Event Grid-style call events, the durable outbox and its delivery task.
//! - [`telemetry`]: the [`UsageTelemetry`] port and its closed label sets.
//! - [`service`]: one-call wiring of all of the above for the server binary.

pub mod export;
pub mod ledger;
pub mod meter;
pub mod pricing;
pub mod recorder;
pub mod records;
pub mod service;
pub mod telemetry;
pub mod webhook;

#[cfg(test)]
mod testing;

pub use export::UsageExport;
pub use recorder::{BillingObserver, UsageRecorder};
pub use service::{UsageConfig, UsageService};
pub use telemetry::{NoUsageTelemetry, UsageTelemetry};
