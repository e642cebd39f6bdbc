//! The wire envelopes: an Event Grid event, a CloudEvent 1.0 for a subscription, the
//! Call Automation callback CloudEvent (exact lower-case attribute names, reference §0 fact 9)
//! and the `SubscriptionValidationEvent`. Pure functions over a [`StampedEvent`].

use serde_json::{Value, json};

/// Event type of the validation handshake.
pub const SUBSCRIPTION_VALIDATION_EVENT: &str = "Microsoft.EventGrid.SubscriptionValidationEvent";
/// `dataVersion` of ACS system events.
pub const DATA_VERSION: &str = "1.0";
/// `metadataVersion` of Event Grid events.
pub const METADATA_VERSION: &str = "1";

/// An event with its identity and time fixed (once, when it is accepted): every
/// subscription and every retry sends the same `id` and time.
#[derive(Debug, Clone, PartialEq)]
pub struct StampedEvent {
    pub id: String,
    pub event_type: String,
    pub subject: String,
    pub data: Value,
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
}

impl StampedEvent {
    /// A fresh id (UUIDv4) and the given time.
    pub fn new(event_type: String, subject: String, data: Value, at_ms: i64) -> Self {
        Self { id: uuid::Uuid::new_v4().to_string(), event_type, subject, data, at_ms }
    }
}

/// RFC 3339 UTC with 7 fractional digits and `Z`, as Event Grid writes `eventTime`.
pub fn event_time(at_ms: i64) -> String {
    match chrono::DateTime::<chrono::Utc>::from_timestamp_millis(at_ms) {
        Some(t) => format!("{}0000Z", t.format("%Y-%m-%dT%H:%M:%S%.3f")),
        None => "1970-01-01T00:00:00.0000000Z".to_string(),
    }
}

/// One Event Grid schema event (a POST body is an array of these).
pub fn event_grid(topic: &str, event: &StampedEvent) -> Value {
    json!({
        "id": event.id,
        "topic": topic,
        "subject": event.subject,
        "data": event.data,
        "eventType": event.event_type,
        "dataVersion": DATA_VERSION,
        "metadataVersion": METADATA_VERSION,
        "eventTime": event_time(event.at_ms),
    })
}

/// One CloudEvents 1.0 event for a `CloudEventSchemaV1_0` subscription: `source` is the topic.
pub fn cloud_event(topic: &str, event: &StampedEvent) -> Value {
    json!({
        "id": event.id,
        "source": topic,
        "type": event.event_type,
        "subject": event.subject,
        "time": event_time(event.at_ms),
        "specversion": "1.0",
        "data": event.data,
    })
}

/// `source` and `subject` of a call connection's callbacks.
pub fn callback_source(call_connection_id: &str) -> String {
    format!("calling/callConnections/{call_connection_id}")
}

/// The Call Automation callback body: a JSON array of exactly one CloudEvent whose keys are
/// `id, source, type, data, time, specversion, datacontenttype, subject`.
pub fn callback_body(call_connection_id: &str, event: &StampedEvent) -> Value {
    let source = callback_source(call_connection_id);
    json!([{
        "id": event.id,
        "source": source,
        "type": event.event_type,
        "data": event.data,
        "time": event_time(event.at_ms),
        "specversion": "1.0",
        "datacontenttype": "application/json",
        "subject": source,
    }])
}

/// The Event Grid validation event (a one-element array), as Event Grid sends it.
pub fn validation_event(topic: &str, code: &str, url: &str, at_ms: i64) -> Value {
    json!([{
        "id": uuid::Uuid::new_v4().to_string(),
        "topic": topic,
        "subject": "",
        "data": { "validationCode": code, "validationUrl": url },
        "eventType": SUBSCRIPTION_VALIDATION_EVENT,
        "eventTime": event_time(at_ms),
        "metadataVersion": METADATA_VERSION,
        "dataVersion": "1",
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StampedEvent {
        StampedEvent {
            id: "e1".into(),
            event_type: "Microsoft.Communication.IncomingCall".into(),
            subject: "/caller/8:acs:r_a/recipient/8:acs:r_b".into(),
            data: json!({"serverCallId": "s"}),
            at_ms: 1_700_000_000_123,
        }
    }

    #[test]
    fn event_grid_fields_and_time_format() {
        let e = event_grid("/t", &sample());
        assert_eq!(e["eventTime"], "2023-11-14T22:13:20.1230000Z");
        let keys: Vec<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
        for k in ["id", "topic", "subject", "data", "eventType", "dataVersion", "metadataVersion", "eventTime"] {
            assert!(keys.contains(&k), "{k}");
        }
        assert_eq!(keys.len(), 8);
    }

    #[test]
    fn callback_is_an_array_of_one_lowercase_cloud_event() {
        let body = callback_body("cc1", &sample());
        let events = body.as_array().unwrap();
        assert_eq!(events.len(), 1);
        let keys: Vec<&str> = events[0].as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 8);
        assert!(keys.iter().all(|k| k.bytes().all(|b| b.is_ascii_lowercase())), "{keys:?}");
        assert_eq!(events[0]["source"], "calling/callConnections/cc1");
        assert_eq!(events[0]["specversion"], "1.0");
    }

    #[test]
    fn cloud_event_keys_are_lowercase() {
        let e = cloud_event("/t", &sample());
        assert!(e.as_object().unwrap().keys().all(|k| k.bytes().all(|b| b.is_ascii_lowercase())));
        let v = validation_event("/t", "code", "https://x/validate", 0);
        assert_eq!(v[0]["eventType"], SUBSCRIPTION_VALIDATION_EVENT);
        assert_eq!(v[0]["data"]["validationCode"], "code");
    }
}
