//! Event delivery counters: attempts by kind (system event, callback, validation) and result
//! (delivered, retried, dead-lettered), and the outbox depth. Registered on the palaver
//! registry by the binary; implements `palaver_events::EventsTelemetry`.

use palaver_events::{AttemptResult, DeliveryKind, EventsTelemetry};
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone, Debug)]
pub struct EventMetrics {
    attempts: IntCounterVec,
    outbox_depth: IntGauge,
}

impl EventMetrics {
    /// Create the families (every label pair at 0) and register them on `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let attempts = IntCounterVec::new(
            Opts::new(
                "palaver_event_deliveries_total",
                "Event Grid and Call Automation callback delivery attempts, by kind and result.",
            ),
            &["kind", "result"],
        )?;
        let outbox_depth =
            IntGauge::new("palaver_event_outbox_depth", "Event deliveries accepted and not yet delivered.")?;
        registry.register(Box::new(attempts.clone()))?;
        registry.register(Box::new(outbox_depth.clone()))?;
        for kind in DeliveryKind::ALL {
            for result in AttemptResult::ALL {
                attempts.with_label_values(&[kind.as_str(), result.as_str()]);
            }
        }
        Ok(Self { attempts, outbox_depth })
    }
}

impl EventsTelemetry for EventMetrics {
    fn attempt(&self, kind: DeliveryKind, result: AttemptResult) {
        self.attempts.with_label_values(&[kind.as_str(), result.as_str()]).inc();
    }
    fn outbox_depth(&self, pending: u64) {
        self.outbox_depth.set(pending as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::Encoder;

    #[test]
    fn attempts_and_depth_are_exposed() {
        let registry = Registry::new();
        let metrics = EventMetrics::register(&registry).unwrap();
        metrics.attempt(DeliveryKind::Callback, AttemptResult::DeadLettered);
        metrics.outbox_depth(3);
        let mut buf = Vec::new();
        prometheus::TextEncoder::new().encode(&registry.gather(), &mut buf).unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert!(text.contains(r#"palaver_event_deliveries_total{kind="callback",result="dead_lettered"} 1"#));
        assert!(text.contains(r#"palaver_event_deliveries_total{kind="system",result="delivered"} 0"#));
        assert!(text.contains("palaver_event_outbox_depth 3"));
    }
}
