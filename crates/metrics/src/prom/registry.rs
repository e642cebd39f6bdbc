//! The Prometheus registry of palaver: billing, ledger, conversation gauges, signaling,
//! media (via [`MediaCollector`]) and process metrics.
//!
//! Conventions: base units (seconds, bytes, dollars), `_total` on counters, and labels
//! from closed sets only (participant type, billable, error code, drop reason, delivery
//! result): never a per-participant or per-conversation label.

use super::media::{MediaCollector, MediaSnapshot, MediaSource};
use palaver_core::{ErrorCode, ParticipantType};
use prometheus::{
    Counter, CounterVec, Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Billing counters, fed by the usage recorder as participant time accrues.
#[derive(Clone)]
pub struct BillingMetrics {
    participant_seconds: CounterVec,
    billed_seconds: Counter,
    billed_cost_usd: Counter,
}

impl BillingMetrics {
    /// Add accrued participant time of one type.
    pub fn add_participant_ms(&self, t: ParticipantType, ms: i64, micro_usd_per_minute: i64) {
        if ms <= 0 {
            return;
        }
        let billable = if t.is_billable() { "true" } else { "false" };
        self.participant_seconds.with_label_values(&[t.label(), billable]).inc_by(ms as f64 / 1000.0);
        if t.is_billable() {
            self.billed_seconds.inc_by(ms as f64 / 1000.0);
            self.billed_cost_usd.inc_by(ms as f64 / 60_000.0 * micro_usd_per_minute as f64 / 1e6);
        }
    }
}

/// Health of the usage ledger and the webhook outbox.
#[derive(Clone)]
pub struct LedgerMetrics {
    pub write_failures: IntCounter,
    pub rejected_events: IntCounterVec,
    pub pending_changes: IntGauge,
    pub last_checkpoint_timestamp: Gauge,
    pub recovered_sessions: IntCounter,
    pub webhook_backlog: IntGauge,
    pub webhook_deliveries: IntCounterVec,
}

/// Live conversation gauges. The recorder sets calls and participants (from the meter,
/// the same source as billing); signaling sets meetings and the lobby.
#[derive(Clone)]
pub struct ConversationGauges {
    meetings: IntGauge,
    calls: IntGauge,
    participants: IntGaugeVec,
    lobby: IntGauge,
}

impl ConversationGauges {
    pub fn set_active_meetings(&self, n: usize) {
        self.meetings.set(n as i64);
    }
    pub fn set_active_calls(&self, n: usize) {
        self.calls.set(n as i64);
    }
    pub fn set_participants(&self, t: ParticipantType, n: usize) {
        self.participants.with_label_values(&[t.label()]).set(n as i64);
    }
    pub fn set_lobby_size(&self, n: usize) {
        self.lobby.set(n as i64);
    }
}

/// Signaling counters: joins, join latency, errors by code.
#[derive(Clone)]
pub struct SignalingMetrics {
    joins: IntCounter,
    join_latency: Histogram,
    errors: IntCounterVec,
}

impl SignalingMetrics {
    /// A participant joined; `latency` from request to joined.
    pub fn record_join(&self, latency: Duration) {
        self.joins.inc();
        self.join_latency.observe(latency.as_secs_f64());
    }
    /// An error answered to a client (REST or WebSocket).
    pub fn record_error(&self, code: ErrorCode) {
        self.errors.with_label_values(&[code.as_str()]).inc();
    }
}

/// The control plane's counts, as `palaver_signaling_*`, `palaver_active_meetings` and
/// `palaver_lobby_participants`.
impl palaver_core::SignalingTelemetry for PalaverMetrics {
    fn join_completed(&self, latency: Duration) {
        self.signaling.record_join(latency);
    }
    fn error_answered(&self, code: ErrorCode) {
        self.signaling.record_error(code);
    }
    fn active_meetings(&self, count: usize) {
        self.conversations.set_active_meetings(count);
    }
    fn lobby_size(&self, count: usize) {
        self.conversations.set_lobby_size(count);
    }
}

/// Label values of `palaver_ledger_rejected_events_total`.
pub const REJECTION_REASONS: [&str; 5] =
    ["duplicate_session", "unknown_session", "conversation_mismatch", "empty_id", "recorder_stopped"];

/// Everything `/metrics` exposes.
pub struct PalaverMetrics {
    registry: Registry,
    pub billing: BillingMetrics,
    pub ledger: LedgerMetrics,
    pub conversations: ConversationGauges,
    pub signaling: SignalingMetrics,
    media_source: Arc<RwLock<Option<MediaSource>>>,
}

impl std::fmt::Debug for PalaverMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PalaverMetrics").finish_non_exhaustive()
    }
}

fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: T) -> prometheus::Result<T> {
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

impl PalaverMetrics {
    pub fn new() -> prometheus::Result<Arc<Self>> {
        let r = Registry::new();
        let billing = BillingMetrics {
            participant_seconds: reg(
                &r,
                CounterVec::new(
                    Opts::new(
                        "palaver_participant_seconds_total",
                        "Participant time consumed, by participant type and billability.",
                    ),
                    &["participant_type", "billable"],
                )?,
            )?,
            // Base units: billed minutes are this / 60 (promtool rejects a `_minutes` name).
            billed_seconds: reg(
                &r,
                Counter::new("palaver_billed_participant_seconds_total", "Billable participant time accrued.")?,
            )?,
            billed_cost_usd: reg(
                &r,
                Counter::new("palaver_billed_cost_usd_total", "Cost of billable participant-minutes, in US dollars.")?,
            )?,
        };
        let ledger = LedgerMetrics {
            write_failures: reg(
                &r,
                IntCounter::new("palaver_ledger_write_failures_total", "Usage ledger writes that failed (retried).")?,
            )?,
            rejected_events: reg(
                &r,
                IntCounterVec::new(
                    Opts::new("palaver_ledger_rejected_events_total", "Session events the meter refused, by reason."),
                    &["reason"],
                )?,
            )?,
            pending_changes: reg(
                &r,
                IntGauge::new("palaver_ledger_pending_changes", "Ledger changes waiting to be written.")?,
            )?,
            last_checkpoint_timestamp: reg(
                &r,
                Gauge::new(
                    "palaver_ledger_last_checkpoint_timestamp_seconds",
                    "Unix time of the last successful checkpoint.",
                )?,
            )?,
            recovered_sessions: reg(
                &r,
                IntCounter::new(
                    "palaver_ledger_recovered_sessions_total",
                    "Sessions closed by crash recovery at startup.",
                )?,
            )?,
            webhook_backlog: reg(
                &r,
                IntGauge::new("palaver_webhook_backlog", "Webhook deliveries not yet delivered.")?,
            )?,
            webhook_deliveries: reg(
                &r,
                IntCounterVec::new(
                    Opts::new("palaver_webhook_deliveries_total", "Webhook delivery attempts, by result."),
                    &["result"],
                )?,
            )?,
        };
        let conversations = ConversationGauges {
            meetings: reg(&r, IntGauge::new("palaver_active_meetings", "Meetings with at least one participant.")?)?,
            calls: reg(&r, IntGauge::new("palaver_active_calls", "Conversations with a running call.")?)?,
            participants: reg(
                &r,
                IntGaugeVec::new(
                    Opts::new("palaver_participants", "Connected participants, by participant type."),
                    &["participant_type"],
                )?,
            )?,
            lobby: reg(&r, IntGauge::new("palaver_lobby_participants", "Participants waiting in a lobby.")?)?,
        };
        let signaling = SignalingMetrics {
            joins: reg(
                &r,
                IntCounter::new("palaver_signaling_joins_total", "Participants joined through signaling.")?,
            )?,
            join_latency: reg(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new("palaver_signaling_join_duration_seconds", "Time from join request to joined.")
                        .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
                )?,
            )?,
            errors: reg(
                &r,
                IntCounterVec::new(
                    Opts::new("palaver_signaling_errors_total", "Errors answered to clients, by code."),
                    &["code"],
                )?,
            )?,
        };
        // Pre-create the bounded label sets so every series exists from the first scrape.
        for t in ParticipantType::ALL {
            let billable = if t.is_billable() { "true" } else { "false" };
            billing.participant_seconds.with_label_values(&[t.label(), billable]);
            conversations.participants.with_label_values(&[t.label()]);
        }
        for result in ["delivered", "failed", "dead"] {
            ledger.webhook_deliveries.with_label_values(&[result]);
        }
        for reason in REJECTION_REASONS {
            ledger.rejected_events.with_label_values(&[reason]);
        }
        for code in ErrorCode::ALL {
            signaling.errors.with_label_values(&[code.as_str()]);
        }
        let media_source: Arc<RwLock<Option<MediaSource>>> = Arc::new(RwLock::new(None));
        r.register(Box::new(MediaCollector::new(media_source.clone())?))?;
        #[cfg(target_os = "linux")]
        r.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))?;
        Ok(Arc::new(Self { registry: r, billing, ledger, conversations, signaling, media_source }))
    }

    /// Install the media plane's snapshot function (called at every scrape).
    pub fn set_media_source(&self, source: impl Fn() -> MediaSnapshot + Send + Sync + 'static) {
        let mut guard = self.media_source.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        *guard = Some(Box::new(source));
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The text exposition format of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prom::media::{AtomicHistogram, DropReason, FORWARDING_LATENCY_BOUNDS};

    #[test]
    fn billing_counters_follow_the_seed_example() {
        let m = PalaverMetrics::new().unwrap();
        m.billing.add_participant_ms(ParticipantType::AcsAsTeamsExternalUser, 600_000, 4_000);
        m.billing.add_participant_ms(ParticipantType::Teams, 600_000, 4_000);
        let text = m.render();
        assert!(
            text.contains(
                r#"palaver_participant_seconds_total{billable="true",participant_type="external_in_meeting"} 600"#
            ),
            "{text}"
        );
        assert!(text.contains(
            r#"palaver_participant_seconds_total{billable="false",participant_type="directory_native"} 600"#
        ));
        assert!(text.contains("palaver_billed_participant_seconds_total 600\n"));
        assert!(text.contains("palaver_billed_cost_usd_total 0.04"));
    }

    #[test]
    fn media_families_come_from_the_installed_snapshot() {
        let m = PalaverMetrics::new().unwrap();
        let before = m.render();
        assert!(before.contains("palaver_media_packets_received_total 0"));
        let hist = AtomicHistogram::new(&FORWARDING_LATENCY_BOUNDS);
        hist.observe_ns(7_000);
        let forwarding = hist.snapshot();
        m.set_media_source(move || {
            let mut s = MediaSnapshot { packets_received: 42, rtt_seconds: 0.031, ..MediaSnapshot::default() };
            s.packets_dropped[DropReason::SrtpAuth.index()] = 3;
            s.forwarding_latency = forwarding.clone();
            s
        });
        let text = m.render();
        assert!(text.contains("palaver_media_packets_received_total 42"));
        assert!(text.contains(r#"palaver_media_packets_dropped_total{reason="srtp_auth"} 3"#));
        assert!(text.contains("palaver_media_rtt_seconds 0.031"));
        assert!(text.contains(r#"palaver_media_forwarding_latency_seconds_bucket{le="0.00001"} 1"#), "{text}");
        assert!(text.contains("palaver_mixer_tick_duration_seconds_count 0"));
    }

    #[test]
    fn signaling_and_gauges_render_with_bounded_labels() {
        let m = PalaverMetrics::new().unwrap();
        m.signaling.record_join(Duration::from_millis(30));
        m.signaling.record_error(ErrorCode::InvalidTimeRange);
        m.conversations.set_participants(ParticipantType::Acs, 3);
        m.conversations.set_lobby_size(2);
        let text = m.render();
        assert!(text.contains("palaver_signaling_joins_total 1"));
        assert!(text.contains(r#"palaver_signaling_errors_total{code="InvalidTimeRange"} 1"#));
        assert!(text.contains(r#"palaver_participants{participant_type="acs"} 3"#));
        assert!(text.contains("palaver_lobby_participants 2"));
        assert!(text.contains("palaver_signaling_join_duration_seconds_bucket"));
    }

    #[test]
    fn every_metric_the_deploy_assets_use_is_exported() {
        let m = PalaverMetrics::new().unwrap();
        let text = m.render();
        let families: std::collections::HashSet<&str> =
            text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()).collect();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
        for file in ["prometheus/rules/palaver.rules.yml", "grafana/palaver-dashboard.json"] {
            let content = std::fs::read_to_string(root.join(file)).unwrap();
            let mut names = Vec::new();
            let mut rest = content.as_str();
            while let Some(pos) = rest.find('p') {
                rest = &rest[pos..];
                let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
                let word = &rest[..end];
                if word.starts_with("palaver_") || word.starts_with("process_") {
                    names.push(word.to_string());
                }
                rest = &rest[end.max(1)..];
            }
            assert!(!names.is_empty(), "{file}");
            for name in names {
                let family =
                    ["_bucket", "_count", "_sum"].iter().fold(name.as_str(), |n, s| n.strip_suffix(s).unwrap_or(n));
                assert!(families.contains(family), "{file} uses `{name}`, which /metrics does not export");
            }
        }
    }
}
