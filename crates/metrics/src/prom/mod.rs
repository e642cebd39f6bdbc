//! Prometheus: the registry ([`PalaverMetrics`]), media families read from a snapshot at
//! scrape time, and the `/metrics` listener.

pub mod chat;
pub mod media;
pub mod registry;
pub mod serve;

pub use chat::ChatMetrics;
pub use media::{AtomicHistogram, DropReason, HistogramSnapshot, MediaSnapshot};
pub use registry::{BillingMetrics, ConversationGauges, LedgerMetrics, PalaverMetrics, SignalingMetrics};
pub use serve::{DEFAULT_METRICS_ADDR, MetricsServer, serve_metrics};
