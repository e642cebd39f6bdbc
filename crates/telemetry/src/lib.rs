//! palaver-telemetry: what operators scrape. One Prometheus registry per process
//! ([`PalaverMetrics`]) implementing the reporting ports of the other crates —
//! `palaver_core::SignalingTelemetry` and `ChatTelemetry` (signaling) and
//! `palaver_billing::UsageTelemetry` (the meter, ledger and webhooks) — plus the media
//! families read from a [`MediaSnapshot`] at scrape time and the `/metrics` listener.
//! Only the binary depends on this crate; the planes report through traits.
//!
//! - [`registry`]: the registry and its billing, ledger, conversation and signaling families.
//! - [`media`]: [`MediaSnapshot`] and the collector that turns it into families.
//! - [`chat`]: the chat counters.
//! - [`events`]: event delivery counters (`palaver_events::EventsTelemetry`).
//! - [`serve`]: the `/metrics` HTTP listener.
//! - [`udp_drops`]: kernel receive drops of the server's UDP sockets (`/proc/net/udp`).
//! - [`sip`]: the SIP trunk gateway's families from a [`SipSnapshot`].

pub mod chat;
pub mod events;
pub mod media;
pub mod registry;
pub mod serve;
pub mod sip;
pub mod udp_drops;

pub use chat::ChatMetrics;
pub use events::EventMetrics;
pub use media::{HistogramSnapshot, MediaSnapshot, TrunkRtpSnapshot};
pub use registry::{BillingMetrics, ConversationGauges, LedgerMetrics, PalaverMetrics, SignalingMetrics};
pub use serve::{DEFAULT_METRICS_ADDR, IfTaken, ListenError, MetricsServer, serve_metrics, start_metrics_listener};
pub use sip::SipSnapshot;
pub use udp_drops::UdpSocketKind;
