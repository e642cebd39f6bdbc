//! The SIP trunk gateway's families, read from a [`SipSnapshot`] at scrape time (the binary
//! maps `palaver-sip`'s counters into it, as it does for the media workers, so this crate does
//! not depend on the SIP stack): calls by trunk, direction and outcome, final responses by
//! status code, requests dropped (unknown source, malformed), digest challenges, keep-alives.

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, LabelPair, Metric, MetricFamily, MetricType};
use std::collections::HashMap;

/// What the SIP gateway counted so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SipSnapshot {
    /// (trunk, direction, outcome, calls)
    pub calls: Vec<(String, &'static str, &'static str, u64)>,
    /// (status code, responses sent)
    pub responses: Vec<(u16, u64)>,
    pub unknown_source: u64,
    pub malformed: u64,
    pub challenges: u64,
    pub keepalives_ok: u64,
    pub keepalives_failed: u64,
}

pub type SipSource = Box<dyn Fn() -> SipSnapshot + Send + Sync>;

const FAMILIES: [(&str, &str, &[&str]); 5] = [
    ("palaver_sip_calls_total", "Phone calls by trunk, direction and outcome", &["trunk", "direction", "outcome"]),
    ("palaver_sip_responses_total", "Final SIP responses sent, by status code", &["code"]),
    (
        "palaver_sip_requests_dropped_total",
        "SIP input dropped: unknown source (unparsed) or malformed (400)",
        &["reason"],
    ),
    ("palaver_sip_challenges_total", "Digest challenges (401) sent to trunks", &[]),
    ("palaver_sip_keepalives_total", "OPTIONS keep-alives to trunks by result", &["result"]),
];

/// Turns the installed [`SipSnapshot`] source into the families above.
pub struct SipCollector {
    descs: Vec<Desc>,
    source: SipSource,
}

fn counter(value: u64, labels: &[(&str, String)]) -> Metric {
    let mut c = Counter::default();
    c.set_value(value as f64);
    let mut m = Metric::default();
    m.set_counter(c);
    m.set_label(
        labels
            .iter()
            .map(|(k, v)| {
                let mut l = LabelPair::default();
                l.set_name((*k).into());
                l.set_value(v.clone());
                l
            })
            .collect(),
    );
    m
}

impl SipCollector {
    pub fn new(source: SipSource) -> prometheus::Result<Self> {
        let descs = FAMILIES
            .iter()
            .map(|(name, help, labels)| {
                Desc::new(
                    name.to_string(),
                    help.to_string(),
                    labels.iter().map(|l| l.to_string()).collect(),
                    HashMap::new(),
                )
            })
            .collect::<prometheus::Result<Vec<_>>>()?;
        Ok(Self { descs, source })
    }
}

impl Collector for SipCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let s = (self.source)();
        let values: [Vec<Metric>; 5] = [
            s.calls
                .iter()
                .map(|(t, d, o, n)| {
                    counter(*n, &[("trunk", t.clone()), ("direction", (*d).into()), ("outcome", (*o).into())])
                })
                .collect(),
            s.responses.iter().map(|(code, n)| counter(*n, &[("code", code.to_string())])).collect(),
            vec![
                counter(s.unknown_source, &[("reason", "unknown_source".into())]),
                counter(s.malformed, &[("reason", "malformed".into())]),
            ],
            vec![counter(s.challenges, &[])],
            vec![
                counter(s.keepalives_ok, &[("result", "ok".into())]),
                counter(s.keepalives_failed, &[("result", "failed".into())]),
            ],
        ];
        FAMILIES
            .iter()
            .zip(values)
            .map(|((name, help, _), metrics)| {
                let mut family = MetricFamily::default();
                family.set_name(name.to_string());
                family.set_help(help.to_string());
                family.set_field_type(MetricType::COUNTER);
                family.set_metric(metrics);
                family
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snapshot_is_exposed_with_labels() {
        let registry = prometheus::Registry::new();
        let source: SipSource = Box::new(|| SipSnapshot {
            calls: vec![("carrier".into(), "inbound", "completed", 3)],
            responses: vec![(200, 3), (400, 20)],
            unknown_source: 7,
            ..SipSnapshot::default()
        });
        registry.register(Box::new(SipCollector::new(source).unwrap())).unwrap();
        let text = prometheus::TextEncoder::new().encode_to_string(&registry.gather()).unwrap();
        assert!(
            text.contains(r#"palaver_sip_calls_total{trunk="carrier",direction="inbound",outcome="completed"} 3"#),
            "{text}"
        );
        assert!(text.contains(r#"palaver_sip_responses_total{code="400"} 20"#), "{text}");
        assert!(text.contains(r#"palaver_sip_requests_dropped_total{reason="unknown_source"} 7"#), "{text}");
    }
}
