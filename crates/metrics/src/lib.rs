//! palaver-metrics: the billing meter, the durable usage ledger, usage export, call-event
//! webhooks and the Prometheus registry.
//!
//! - [`meter`]: sans-IO participant-minute meter (virtual time in, ledger changes out).
//! - [`records`], [`pricing`]: record shapes (`ACSBillingUsage`, `ACSCallSummary`) and money.
//! - [`ledger`]: the storage trait and its SQLite (WAL) implementation, crash recovery.
//! - [`recorder`]: the [`recorder::BillingObserver`] signaling calls, and the ledger thread.
//! - [`export`]: validated usage queries, paging, JSON/CSV rendering (no HTTP here).
//! - [`webhook`]: Event Grid-style call events, the durable outbox and its delivery task.
//! - [`prom`]: the Prometheus registry, the media snapshot collector and `/metrics`.
//! - [`service`]: one-call wiring of all of the above for the server binary.

pub mod export;
pub mod ledger;
pub mod meter;
pub mod pricing;
pub mod prom;
pub mod recorder;
pub mod records;
pub mod service;
pub mod webhook;

pub use export::UsageExport;
pub use prom::{MediaSnapshot, PalaverMetrics, serve_metrics};
pub use recorder::{BillingObserver, UsageRecorder};
pub use service::{UsageConfig, UsageService};
