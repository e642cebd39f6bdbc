//! Event Grid filter semantics for a subscription, and the subscription as the REST API shows
//! it (camelCase) and accepts it.

use crate::config::{EventSchema, SubscriptionConfig};
use crate::store::{DeliveryCounts, StoredSubscription};
use serde::{Deserialize, Serialize};

/// Whether an event of `event_type` about `subject` goes to the subscription: its event types
/// (none = all) and subject prefix/suffix, compared case-insensitively as Event Grid does.
pub fn matches(config: &SubscriptionConfig, event_type: &str, subject: &str) -> bool {
    let type_ok =
        config.event_types.is_empty() || config.event_types.iter().any(|t| t.eq_ignore_ascii_case(event_type));
    let subject = subject.to_ascii_lowercase();
    type_ok
        && subject.starts_with(&config.subject_begins_with.to_ascii_lowercase())
        && subject.ends_with(&config.subject_ends_with.to_ascii_lowercase())
}

/// The REST API's body for creating a subscription (`PUT /events/subscriptions/{name}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubscriptionRequest {
    pub endpoint: String,
    #[serde(default)]
    pub schema: Option<String>,
    #[serde(default)]
    pub event_types: Vec<String>,
    #[serde(default)]
    pub subject_begins_with: String,
    #[serde(default)]
    pub subject_ends_with: String,
    #[serde(default)]
    pub ca_file: String,
    #[serde(default)]
    pub validation_handshake: Option<bool>,
    /// Output batching (Event Grid's `maxEventsPerBatch`, 1-5000; default 1).
    #[serde(default)]
    pub max_events_per_batch: Option<u32>,
    /// Output batching (Event Grid's `preferredBatchSizeInKilobytes`, 1-1024; default 64).
    #[serde(default)]
    pub preferred_batch_size_in_kilobytes: Option<u32>,
}

impl SubscriptionRequest {
    /// The configuration this request describes, for subscription `name`.
    pub fn into_config(self, name: &str) -> Result<SubscriptionConfig, crate::config::InvalidSubscription> {
        let schema = match self.schema.as_deref() {
            None => EventSchema::EventGridSchema,
            Some(s) => EventSchema::parse(s).ok_or_else(|| crate::config::InvalidSubscription {
                target: "schema",
                message: format!("schema `{s}` is not EventGridSchema or CloudEventSchemaV1_0"),
            })?,
        };
        let config = SubscriptionConfig {
            name: name.to_string(),
            endpoint: self.endpoint,
            schema,
            event_types: self.event_types,
            subject_begins_with: self.subject_begins_with,
            subject_ends_with: self.subject_ends_with,
            ca_file: self.ca_file,
            validation_handshake: self.validation_handshake.unwrap_or(true),
            max_events_per_batch: self.max_events_per_batch.unwrap_or(1),
            preferred_batch_size_in_kilobytes: self
                .preferred_batch_size_in_kilobytes
                .unwrap_or(crate::config::DEFAULT_PREFERRED_BATCH_KB),
        };
        config.validate()?;
        Ok(config)
    }
}

/// A subscription as the REST API answers it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionView {
    pub name: String,
    pub endpoint: String,
    pub schema: &'static str,
    pub event_types: Vec<String>,
    pub subject_begins_with: String,
    pub subject_ends_with: String,
    pub ca_file: String,
    pub validation_handshake: bool,
    pub max_events_per_batch: u32,
    pub preferred_batch_size_in_kilobytes: u32,
    /// `config` (the TOML file; read-only) or `api`.
    pub origin: &'static str,
    /// `Pending`, `Validated` or `Failed`.
    pub validation_state: &'static str,
    pub validation_attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub deliveries: DeliveryCounts,
}

impl SubscriptionView {
    pub fn new(s: StoredSubscription, deliveries: DeliveryCounts) -> Self {
        Self {
            name: s.config.name,
            endpoint: s.config.endpoint,
            schema: s.config.schema.as_str(),
            event_types: s.config.event_types,
            subject_begins_with: s.config.subject_begins_with,
            subject_ends_with: s.config.subject_ends_with,
            ca_file: s.config.ca_file,
            validation_handshake: s.config.validation_handshake,
            max_events_per_batch: s.config.max_events_per_batch,
            preferred_batch_size_in_kilobytes: s.config.preferred_batch_size_in_kilobytes,
            origin: s.origin.as_str(),
            validation_state: s.state.as_str(),
            validation_attempts: s.validation_attempts,
            last_error: s.last_error,
            deliveries,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_grid_filters() {
        let config = SubscriptionConfig {
            event_types: vec!["Microsoft.Communication.IncomingCall".into()],
            subject_begins_with: "/caller/4:+1425".into(),
            subject_ends_with: "/recipient/8:ACS:bot".into(),
            ..Default::default()
        };
        let t = "microsoft.communication.incomingcall";
        assert!(matches(&config, t, "/caller/4:+14255550100/recipient/8:acs:bot"));
        assert!(!matches(&config, t, "/caller/4:+15555550100/recipient/8:acs:bot"));
        assert!(!matches(&config, t, "/caller/4:+14255550100/recipient/8:acs:other"));
        assert!(!matches(&config, "Microsoft.Communication.CallStarted", "/caller/4:+1425/recipient/8:acs:bot"));
        assert!(matches(&SubscriptionConfig::default(), "anything", "any"));
    }

    #[test]
    fn requests_are_checked() {
        let ok = SubscriptionRequest { endpoint: "http://127.0.0.1:9/x".into(), ..Default::default() };
        assert_eq!(ok.into_config("sub-1").unwrap().schema, EventSchema::EventGridSchema);
        let bad = SubscriptionRequest {
            endpoint: "http://127.0.0.1:9/x".into(),
            schema: Some("Custom".into()),
            ..Default::default()
        };
        assert_eq!(bad.into_config("sub-1").unwrap_err().target, "schema");
        let insecure = SubscriptionRequest { endpoint: "http://example.com/x".into(), ..Default::default() };
        assert_eq!(insecure.into_config("sub-1").unwrap_err().target, "endpoint");
    }
}
