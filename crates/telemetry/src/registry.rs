//! The Prometheus registry of palaver: billing, ledger, conversation gauges, signaling, chat,
//! media (via [`MediaCollector`]) and process metrics; and the ports it implements
//! (`UsageTelemetry`, `SignalingTelemetry`, `ChatTelemetry`).
//!
//! Conventions: base units (seconds, bytes, dollars), `_total` on counters, and labels
//! from closed sets only (participant type, billable, error code, drop reason, delivery
//! result): never a per-participant or per-conversation label.

use crate::chat::ChatMetrics;
use crate::media::{MediaCollector, MediaSnapshot, MediaSource};
use crate::udp_drops::{UdpDropsCollector, UdpSocketKind, WatchedSockets};
use palaver_billing::telemetry::{DeliveryResult, Rejection, UsageTelemetry};
use palaver_core::{ChatTelemetry, ErrorCode, ParticipantType, PhoneLeg};
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
    phone_seconds: CounterVec,
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

    /// Add a phone leg's recorded minutes (durable usage records) on its number, trunk and
    /// direction.
    pub fn add_phone_ms(&self, leg: &PhoneLeg, ms: i64) {
        if ms <= 0 {
            return;
        }
        let labels = [leg.number.as_str(), leg.trunk.as_str(), leg.direction.as_str()];
        self.phone_seconds.with_label_values(&labels).inc_by(ms as f64 / 1000.0);
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
    /// `palaver_billing_outbox_pending`: the billing outbox's undelivered events (cluster-wide
    /// in cluster mode, where every node reports the shared count).
    pub billing_outbox_pending: IntGauge,
    /// `palaver_ledger_spooled_records`: ledger changes spooled on this node's disk.
    pub ledger_spooled_records: IntGauge,
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

/// Billing's counts (the recorder and webhook delivery) as the `palaver_participant_*`,
/// `palaver_billed_*`, `palaver_ledger_*`, `palaver_webhook_*` families and the call and
/// participant gauges.
impl UsageTelemetry for PalaverMetrics {
    fn participant_time(&self, participant_type: ParticipantType, ms: i64, micro_usd_per_minute: i64) {
        self.billing.add_participant_ms(participant_type, ms, micro_usd_per_minute);
    }
    fn phone_time(&self, leg: &PhoneLeg, ms: i64) {
        self.billing.add_phone_ms(leg, ms);
    }
    fn open_participants(&self, participant_type: ParticipantType, count: usize) {
        self.conversations.set_participants(participant_type, count);
    }
    fn active_calls(&self, count: usize) {
        self.conversations.set_active_calls(count);
    }
    fn pending_changes(&self, count: usize) {
        self.ledger.pending_changes.set(count as i64);
    }
    fn checkpoint_written(&self, at_ms: i64) {
        self.ledger.last_checkpoint_timestamp.set(at_ms as f64 / 1000.0);
    }
    fn ledger_write_failed(&self) {
        self.ledger.write_failures.inc();
    }
    fn event_rejected(&self, reason: Rejection) {
        self.ledger.rejected_events.with_label_values(&[reason.as_str()]).inc();
    }
    fn sessions_recovered(&self, count: u64) {
        self.ledger.recovered_sessions.inc_by(count);
    }
    fn webhook_delivery(&self, result: DeliveryResult) {
        self.ledger.webhook_deliveries.with_label_values(&[result.as_str()]).inc();
    }
    fn webhook_backlog(&self, count: u64) {
        self.ledger.webhook_backlog.set(count as i64);
    }
    fn billing_outbox_pending(&self, count: u64) {
        self.ledger.billing_outbox_pending.set(count as i64);
    }
    fn ledger_spooled(&self, count: u64) {
        self.ledger.ledger_spooled_records.set(count as i64);
    }
}

/// The chat service's counts, as the `palaver_chat_*` families.
impl ChatTelemetry for PalaverMetrics {
    fn message_sent(&self, kind: &str) {
        self.chat.message_sent(kind);
    }
    fn thread_created(&self) {
        self.chat.thread_created();
    }
    fn events_delivered(&self, name: &str, count: u64) {
        self.chat.events_delivered(name, count);
    }
}

/// Everything `/metrics` exposes.
pub struct PalaverMetrics {
    registry: Registry,
    pub billing: BillingMetrics,
    pub ledger: LedgerMetrics,
    pub conversations: ConversationGauges,
    pub signaling: SignalingMetrics,
    pub chat: ChatMetrics,
    media_source: Arc<RwLock<Option<MediaSource>>>,
    udp_sockets: WatchedSockets,
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
            phone_seconds: reg(
                &r,
                CounterVec::new(
                    Opts::new(
                        "palaver_phone_seconds_total",
                        "Phone (SIP trunk) time recorded in the usage ledger, by palaver's number, trunk and direction.",
                    ),
                    &["number", "trunk", "direction"],
                )?,
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
            billing_outbox_pending: reg(
                &r,
                IntGauge::new(
                    "palaver_billing_outbox_pending",
                    "Billing outbox events not yet delivered nor given up (the shared outbox in cluster mode).",
                )?,
            )?,
            ledger_spooled_records: reg(
                &r,
                IntGauge::new(
                    "palaver_ledger_spooled_records",
                    "Ledger changes spooled on local disk while the ledger database refuses writes.",
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
        for result in DeliveryResult::ALL {
            ledger.webhook_deliveries.with_label_values(&[result.as_str()]);
        }
        for reason in Rejection::ALL {
            ledger.rejected_events.with_label_values(&[reason.as_str()]);
        }
        for code in ErrorCode::ALL {
            signaling.errors.with_label_values(&[code.as_str()]);
        }
        let chat = ChatMetrics::register(&r)?;
        let media_source: Arc<RwLock<Option<MediaSource>>> = Arc::new(RwLock::new(None));
        r.register(Box::new(MediaCollector::new(media_source.clone())?))?;
        let udp_sockets = WatchedSockets::default();
        r.register(Box::new(UdpDropsCollector::new(udp_sockets.clone())?))?;
        #[cfg(target_os = "linux")]
        r.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))?;
        Ok(Arc::new(Self { registry: r, billing, ledger, conversations, signaling, chat, media_source, udp_sockets }))
    }

    /// Count the kernel's receive drops of this process's UDP socket on local `port` under
    /// `palaver_udp_receive_drops_total{socket=kind}` (a warning when no such socket is found).
    pub fn watch_udp_socket(&self, kind: UdpSocketKind, port: u16) {
        match crate::udp_drops::own_udp_socket_inode(port) {
            Ok(Some(inode)) => {
                let mut sockets = self.udp_sockets.write().unwrap_or_else(|poisoned| poisoned.into_inner());
                sockets.entry(kind).or_default().push(inode);
            }
            Ok(None) => tracing::warn!(port, socket = kind.as_str(), "no UDP socket of ours on this port to watch"),
            Err(e) => tracing::warn!(port, error = %e, "cannot read /proc for UDP drop counters"),
        }
    }

    /// Install the media plane's snapshot function (called at every scrape).
    pub fn set_media_source(&self, source: impl Fn() -> MediaSnapshot + Send + Sync + 'static) {
        let mut guard = self.media_source.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        *guard = Some(Box::new(source));
    }

    /// Registers the SIP gateway's families, read from `source` at every scrape.
    pub fn set_sip_source(
        &self,
        source: impl Fn() -> crate::sip::SipSnapshot + Send + Sync + 'static,
    ) -> prometheus::Result<()> {
        self.registry.register(Box::new(crate::sip::SipCollector::new(Box::new(source))?))
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
    use crate::media::HistogramSnapshot;

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
    fn phone_minutes_are_counted_per_number_trunk_and_direction() {
        let m = PalaverMetrics::new().unwrap();
        let leg = |number: &str, direction| PhoneLeg { number: number.into(), trunk: "carrier".into(), direction };
        m.phone_time(&leg("+14255550100", palaver_core::PhoneDirection::Inbound), 90_000);
        m.phone_time(&leg("+14255550100", palaver_core::PhoneDirection::Inbound), 30_000);
        m.phone_time(&leg("+14255550101", palaver_core::PhoneDirection::Outbound), 6_000);
        let text = m.render();
        assert!(
            text.contains(
                r#"palaver_phone_seconds_total{direction="inbound",number="+14255550100",trunk="carrier"} 120"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"palaver_phone_seconds_total{direction="outbound",number="+14255550101",trunk="carrier"} 6"#
            ),
            "{text}"
        );
    }

    #[test]
    fn media_families_come_from_the_installed_snapshot() {
        let m = PalaverMetrics::new().unwrap();
        let before = m.render();
        assert!(before.contains("palaver_media_packets_received_total 0"));
        assert!(!before.contains("palaver_media_packets_dropped_total{"), "no drop series without a source");
        // One observation of 7 µs in buckets 5 µs / 10 µs.
        let forwarding = HistogramSnapshot {
            upper_bounds_seconds: vec![0.000_005, 0.000_01],
            cumulative_counts: vec![0, 1],
            count: 1,
            sum_seconds: 0.000_007,
        };
        m.set_media_source(move || MediaSnapshot {
            packets_received: 42,
            rtt_seconds: 0.031,
            packets_dropped: vec![("srtp_auth_failed", 3), ("not_media", 0)],
            forwarding_latency: forwarding.clone(),
            trunks: vec![crate::TrunkRtpSnapshot {
                trunk: "carrier".into(),
                packets: 500,
                packets_lost: 5,
                loss_ratio: 0.01,
                jitter_seconds: 0.002,
            }],
            transcode_seconds: 0.25,
            ..MediaSnapshot::default()
        });
        let text = m.render();
        assert!(text.contains("palaver_media_packets_received_total 42"));
        assert!(text.contains(r#"palaver_sip_rtp_packets_received_total{trunk="carrier"} 500"#), "{text}");
        assert!(text.contains(r#"palaver_sip_rtp_packets_lost_total{trunk="carrier"} 5"#));
        assert!(text.contains(r#"palaver_sip_rtp_loss_ratio{trunk="carrier"} 0.01"#));
        assert!(text.contains(r#"palaver_sip_rtp_jitter_seconds{trunk="carrier"} 0.002"#));
        assert!(text.contains("palaver_media_transcode_seconds_total 0.25"));
        assert!(text.contains(r#"palaver_media_packets_dropped_total{reason="srtp_auth_failed"} 3"#));
        assert!(text.contains(r#"palaver_media_packets_dropped_total{reason="not_media"} 0"#));
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
    fn billing_ledger_and_chat_ports_render_as_their_families() {
        let m = PalaverMetrics::new().unwrap();
        let usage: &dyn UsageTelemetry = m.as_ref();
        usage.event_rejected(Rejection::DuplicateSession);
        usage.webhook_delivery(DeliveryResult::Dead);
        usage.webhook_backlog(2);
        usage.billing_outbox_pending(5);
        usage.ledger_spooled(7);
        usage.sessions_recovered(3);
        usage.checkpoint_written(1_500);
        usage.active_calls(1);
        usage.open_participants(ParticipantType::Teams, 4);
        let chat: &dyn ChatTelemetry = m.as_ref();
        chat.message_sent("html");
        chat.events_delivered("chatMessageReceived", 2);
        let text = m.render();
        for line in [
            r#"palaver_ledger_rejected_events_total{reason="duplicate_session"} 1"#,
            r#"palaver_ledger_rejected_events_total{reason="recorder_stopped"} 0"#,
            r#"palaver_webhook_deliveries_total{result="dead"} 1"#,
            "palaver_webhook_backlog 2",
            "palaver_billing_outbox_pending 5",
            "palaver_ledger_spooled_records 7",
            "palaver_ledger_recovered_sessions_total 3",
            "palaver_ledger_last_checkpoint_timestamp_seconds 1.5",
            "palaver_active_calls 1",
            r#"palaver_participants{participant_type="directory_native"} 4"#,
            r#"palaver_chat_messages_total{type="html"} 1"#,
            r#"palaver_chat_events_delivered_total{event="chatMessageReceived"} 2"#,
        ] {
            assert!(text.contains(line), "missing `{line}` in\n{text}");
        }
    }

    #[test]
    fn every_metric_the_deploy_assets_use_is_exported() {
        let m = PalaverMetrics::new().unwrap();
        // The binary installs the media source at startup; the drop family has series from then.
        m.set_media_source(|| MediaSnapshot { packets_dropped: vec![("not_media", 0)], ..MediaSnapshot::default() });
        let text = m.render();
        let families: std::collections::HashSet<&str> =
            text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()).collect();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
        for file in [
            "prometheus/rules/palaver.rules.yml",
            "prometheus/rules/cluster.rules.yml",
            "grafana/palaver-dashboard.json",
        ] {
            let content = std::fs::read_to_string(root.join(file)).unwrap();
            let mut names = Vec::new();
            let mut rest = content.as_str();
            while let Some(pos) = rest.find('p') {
                rest = &rest[pos..];
                let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
                let word = &rest[..end];
                // `palaver_cluster_*` is registered by palaver-cluster (its `metrics` module), which
                // this crate cannot depend on; the other families are all registered here.
                if (word.starts_with("palaver_") && !word.starts_with("palaver_cluster_"))
                    || word.starts_with("process_")
                {
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
