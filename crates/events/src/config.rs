//! `[events]` configuration: Event Grid subscriptions (`[[events.subscriptions]]`), delivery
//! timing (`[events.delivery]`) and the callback signer's issuer.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// The `[events]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// Subscriptions from the file; run-time subscriptions (REST API) live in the events
    /// database and survive restarts.
    pub subscriptions: Vec<SubscriptionConfig>,
    /// Retry schedule and timeouts of every delivery.
    pub delivery: DeliveryConfig,
    /// `topic` of Event Grid events (`source` of CloudEvents). Default:
    /// `/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/palaver/providers/Microsoft.Communication/communicationServices/<resource id>`.
    pub topic: Option<String>,
    /// `iss` of callback JWTs. Default: the server's base URL.
    pub issuer: Option<String>,
    /// PEM file of extra trusted CAs for https callback URIs (default: system roots).
    pub callback_ca_file: Option<String>,
}

/// The event schema a subscription receives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventSchema {
    /// An array of Event Grid events per POST.
    #[default]
    EventGridSchema,
    /// One structured CloudEvent 1.0 per POST (`application/cloudevents+json`), or, with
    /// output batching, a JSON array of them (`application/cloudevents-batch+json`).
    #[serde(rename = "CloudEventSchemaV1_0")]
    CloudEventSchemaV10,
}

impl EventSchema {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EventGridSchema => "EventGridSchema",
            Self::CloudEventSchemaV10 => "CloudEventSchemaV1_0",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "EventGridSchema" => Some(Self::EventGridSchema),
            "CloudEventSchemaV1_0" => Some(Self::CloudEventSchemaV10),
            _ => None,
        }
    }
}

/// One `[[events.subscriptions]]` entry (also the REST API's create body, in camelCase there).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SubscriptionConfig {
    /// Unique; 3-64 letters, digits and `-` (Event Grid's rule).
    pub name: String,
    /// `https://...`, or `http://` to a loopback host.
    pub endpoint: String,
    pub schema: EventSchema,
    /// Event types delivered (case-insensitive); empty: all.
    pub event_types: Vec<String>,
    /// Event Grid subject filters (case-insensitive); empty: no filter.
    pub subject_begins_with: String,
    pub subject_ends_with: String,
    /// PEM file of extra trusted CA certificates for an https endpoint (empty: system roots).
    pub ca_file: String,
    /// Send the validation handshake before the first delivery (default true). When false
    /// the subscription is delivered to at once.
    #[serde(default = "yes")]
    pub validation_handshake: bool,
    /// Event Grid's output batching: at most this many events per POST (1-5000). 1, the
    /// default, sends each event on its own (still an array for EventGridSchema).
    pub max_events_per_batch: u32,
    /// Event Grid's preferred batch size in kilobytes (1-1024): a batch is cut before it
    /// would grow past it (one larger event still goes, alone).
    pub preferred_batch_size_in_kilobytes: u32,
}

/// Event Grid's bounds of the batching settings.
pub const MAX_EVENTS_PER_BATCH: u32 = 5000;
pub const MAX_PREFERRED_BATCH_KB: u32 = 1024;
/// The preferred batch size when a subscription sets none (Event Grid's portal default).
pub const DEFAULT_PREFERRED_BATCH_KB: u32 = 64;

fn yes() -> bool {
    true
}

impl Default for SubscriptionConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            endpoint: String::new(),
            schema: EventSchema::default(),
            event_types: Vec::new(),
            subject_begins_with: String::new(),
            subject_ends_with: String::new(),
            ca_file: String::new(),
            validation_handshake: true,
            max_events_per_batch: 1,
            preferred_batch_size_in_kilobytes: DEFAULT_PREFERRED_BATCH_KB,
        }
    }
}

/// `[events.delivery]`: at-least-once delivery with exponential backoff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    /// How often the outbox is polled when nothing wakes the worker.
    pub poll_interval_ms: u64,
    /// Delay after the first failure; doubles per failure (with up to 10% jitter).
    pub base_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// Attempts before an event is dead-lettered.
    pub max_attempts: u32,
    /// Per-request timeout.
    pub request_timeout_ms: u64,
    /// Deliveries started per pass.
    pub batch_size: usize,
    /// `IncomingCall` is worth delivering only while the call rings: it is retried for this
    /// long after it was raised (the default ring time), then dead-lettered.
    pub incoming_call_window_ms: u64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            poll_interval_ms: 500,
            base_backoff_ms: 1_000,
            max_backoff_ms: 600_000,
            max_attempts: 30,
            request_timeout_ms: 10_000,
            batch_size: 64,
            incoming_call_window_ms: 30_000,
        }
    }
}

impl DeliveryConfig {
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms.max(1))
    }
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms.max(1))
    }
}

/// A configuration or request value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidSubscription {
    /// The offending field (`name`, `endpoint`, ...).
    pub target: &'static str,
    pub message: String,
}

fn invalid(target: &'static str, message: impl Into<String>) -> InvalidSubscription {
    InvalidSubscription { target, message: message.into() }
}

impl SubscriptionConfig {
    /// The output batching an outbox item of this subscription carries: at most this many
    /// events and about this many bytes per POST (`(1, _)`: one event per POST).
    pub fn batching(&self) -> (u32, usize) {
        (self.max_events_per_batch.max(1), self.preferred_batch_size_in_kilobytes as usize * 1024)
    }

    /// Check the name, the endpoint (https, or http to loopback) and the CA file.
    pub fn validate(&self) -> Result<(), InvalidSubscription> {
        let name_ok =
            (3..=64).contains(&self.name.len()) && self.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !name_ok {
            return Err(invalid(
                "name",
                format!("subscription name `{}` must be 3-64 letters, digits or `-`", self.name),
            ));
        }
        check_endpoint(&self.endpoint).map_err(|m| invalid("endpoint", m))?;
        if !(1..=MAX_EVENTS_PER_BATCH).contains(&self.max_events_per_batch) {
            return Err(invalid("maxEventsPerBatch", format!("max_events_per_batch must be 1-{MAX_EVENTS_PER_BATCH}")));
        }
        if !(1..=MAX_PREFERRED_BATCH_KB).contains(&self.preferred_batch_size_in_kilobytes) {
            return Err(invalid(
                "preferredBatchSizeInKilobytes",
                format!("preferred_batch_size_in_kilobytes must be 1-{MAX_PREFERRED_BATCH_KB}"),
            ));
        }
        if self.event_types.iter().any(|t| t.trim().is_empty()) {
            return Err(invalid("eventTypes", "event types must not be empty strings"));
        }
        if !self.ca_file.is_empty() {
            let pem = std::fs::read(&self.ca_file)
                .map_err(|e| invalid("caFile", format!("cannot read ca_file `{}`: {e}", self.ca_file)))?;
            reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| invalid("caFile", format!("ca_file `{}` holds no PEM certificate: {e}", self.ca_file)))?;
        }
        Ok(())
    }

    /// The CA file as a path, when set.
    pub fn ca_path(&self) -> Option<PathBuf> {
        (!self.ca_file.is_empty()).then(|| PathBuf::from(&self.ca_file))
    }
}

/// An endpoint events may be POSTed to: an absolute `https` URL, or `http` to a loopback host
/// (development and tests).
pub fn check_endpoint(endpoint: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(endpoint).map_err(|e| format!("`{endpoint}` is not an absolute URL: {e}"))?;
    match url.scheme() {
        "https" if url.host().is_some() => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(format!("`{endpoint}`: plain http is allowed only to a loopback host; use https")),
        other => Err(format!("`{endpoint}`: scheme `{other}` is not http(s)")),
    }
}

fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issue_toml_shape_parses() {
        let text = r#"
            [[subscriptions]]
            name = "cc-backend"
            endpoint = "https://127.0.0.1:9443/api/incomingCall"
            schema = "EventGridSchema"
            event_types = ["Microsoft.Communication.IncomingCall"]
            subject_begins_with = ""
            subject_ends_with = ""
            ca_file = ""

            [[subscriptions]]
            name = "ce-sub"
            endpoint = "http://localhost:1/x"
            schema = "CloudEventSchemaV1_0"
        "#;
        let config: EventsConfig = toml::from_str(text).unwrap();
        assert_eq!(config.subscriptions.len(), 2);
        assert_eq!(config.subscriptions[0].schema, EventSchema::EventGridSchema);
        assert!(config.subscriptions[0].validation_handshake);
        assert_eq!(config.subscriptions[1].schema, EventSchema::CloudEventSchemaV10);
        assert!(config.subscriptions.iter().all(|s| s.validate().is_ok()));
        assert!(toml::from_str::<EventsConfig>("[[subscriptions]]\nname='x'\nbogus=1").is_err());
    }

    #[test]
    fn endpoints_must_be_https_or_loopback_http() {
        assert!(check_endpoint("https://example.com/hook?x=1").is_ok());
        assert!(check_endpoint("http://127.0.0.1:8080/hook").is_ok());
        assert!(check_endpoint("http://[::1]:8080/hook").is_ok());
        assert!(check_endpoint("http://example.com/hook").is_err());
        assert!(check_endpoint("ftp://127.0.0.1/").is_err());
        assert!(check_endpoint("/relative").is_err());
        let bad_name = SubscriptionConfig { name: "a b".into(), endpoint: "https://x/".into(), ..Default::default() };
        assert_eq!(bad_name.validate().unwrap_err().target, "name");
        let bad_ca = SubscriptionConfig {
            name: "abc".into(),
            endpoint: "https://x/".into(),
            ca_file: "/nonexistent/ca.pem".into(),
            ..Default::default()
        };
        assert_eq!(bad_ca.validate().unwrap_err().target, "caFile");
    }
}
