//! Event Grid-style call events derived from ledger changes: CallStarted, CallEnded,
//! CallParticipantAdded, CallParticipantRemoved.
//!
//! Event ids are deterministic (UUIDv5 of what happened), so a replayed ledger change
//! produces the same event and the outbox stores it once; receivers can deduplicate on
//! `id` because delivery is at-least-once.

use crate::meter::LedgerChange;
use crate::records::{CallSpan, ClosedSession, deterministic_id, rfc3339_ms};
use palaver_core::{CallType, CommunicationIdentifier, SessionStarted};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Event type names (the ACS wire names of the Event Grid system events).
pub const CALL_STARTED: &str = "Microsoft.Communication.CallStarted";
pub const CALL_ENDED: &str = "Microsoft.Communication.CallEnded";
pub const PARTICIPANT_ADDED: &str = "Microsoft.Communication.CallParticipantAdded";
pub const PARTICIPANT_REMOVED: &str = "Microsoft.Communication.CallParticipantRemoved";

/// One event in the Event Grid event schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallEvent {
    pub id: String,
    pub topic: String,
    pub subject: String,
    pub data: Value,
    pub event_type: String,
    pub data_version: String,
    pub metadata_version: String,
    pub event_time: String,
}

fn identifier_json(raw_id: &str) -> Value {
    match CommunicationIdentifier::parse(raw_id) {
        Ok(id) => serde_json::to_value(id.to_model()).unwrap_or_else(|_| json!({ "rawId": raw_id })),
        Err(_) => json!({ "kind": "unknown", "rawId": raw_id }),
    }
}

fn call_data(call: &CallSpan) -> serde_json::Map<String, Value> {
    let mut data = serde_json::Map::new();
    data.insert("correlationId".into(), json!(call.conversation_id));
    data.insert("serverCallId".into(), json!(call.call_id()));
    data.insert("group".into(), json!({ "id": call.conversation_id }));
    data.insert("isTwoParty".into(), json!(call.call_type == CallType::P2P));
    data.insert("isRoomsCall".into(), json!(false));
    data.insert("startedBy".into(), json!({ "communicationIdentifier": identifier_json(&call.started_by) }));
    if let Some(thread) = &call.thread_id {
        data.insert("threadId".into(), json!(thread));
    }
    data
}

fn event(
    topic: &str,
    id: String,
    event_type: &str,
    subject: String,
    data: serde_json::Map<String, Value>,
    at_ms: i64,
) -> CallEvent {
    CallEvent {
        id,
        topic: topic.to_string(),
        subject,
        data: Value::Object(data),
        event_type: event_type.to_string(),
        data_version: "1.0".into(),
        metadata_version: "1".into(),
        event_time: rfc3339_ms(at_ms),
    }
}

fn participant_fields(data: &mut serde_json::Map<String, Value>, s: &SessionStarted) {
    data.insert("user".into(), json!({ "communicationIdentifier": identifier_json(&s.participant_raw_id) }));
    data.insert("participantId".into(), json!(s.session_id));
    data.insert("participantType".into(), json!(s.participant_type.as_str()));
    data.insert("endpointType".into(), json!(s.endpoint_type.as_str()));
}

/// A call span carrying just what the participant events need (the meter's change holds
/// the call start time; the rest is the participant's).
fn call_of_session(s: &SessionStarted, call_started_ms: i64) -> CallSpan {
    CallSpan {
        conversation_id: s.conversation_id.clone(),
        started_ms: call_started_ms,
        call_type: s.call_type,
        started_by: s.participant_raw_id.clone(),
        thread_id: s.thread_id.clone(),
        ended_ms: None,
    }
}

/// The events a ledger change announces.
pub fn events_for(topic: &str, change: &LedgerChange) -> Vec<CallEvent> {
    match change {
        LedgerChange::CallStarted(call) => {
            let subject = format!("call/{}/startedBy/{}", call.call_id(), call.started_by);
            let id = deterministic_id("event/call-started", &call.call_id());
            vec![event(topic, id, CALL_STARTED, subject, call_data(call), call.started_ms)]
        }
        LedgerChange::CallEnded { call, ended_by } => {
            let ended_ms = call.ended_ms.unwrap_or(call.started_ms);
            let mut data = call_data(call);
            let seconds = (ended_ms - call.started_ms).max(0) as f64 / 1000.0;
            data.insert("endedBy".into(), json!({ "communicationIdentifier": identifier_json(ended_by) }));
            data.insert("callDurationInSeconds".into(), json!(seconds));
            data.insert("durationOfCall".into(), json!(seconds));
            let subject = format!("call/{}/endedBy/{}", call.call_id(), ended_by);
            let id = deterministic_id("event/call-ended", &call.call_id());
            vec![event(topic, id, CALL_ENDED, subject, data, ended_ms)]
        }
        LedgerChange::SessionOpened { started, call_started_ms } => {
            let call = call_of_session(started, *call_started_ms);
            let mut data = call_data(&call);
            data.remove("startedBy");
            participant_fields(&mut data, started);
            let subject = format!("call/{}/participant/{}", call.call_id(), started.participant_raw_id);
            let id = deterministic_id("event/participant-added", &started.session_id);
            vec![event(topic, id, PARTICIPANT_ADDED, subject, data, started.at_ms)]
        }
        LedgerChange::SessionClosed { session, call_started_ms, .. } => {
            vec![participant_removed(topic, session, *call_started_ms)]
        }
        LedgerChange::CallTypeChanged { .. } | LedgerChange::ChatMessageSent(_) | LedgerChange::MediaUsed(_) => {
            Vec::new()
        }
    }
}

fn participant_removed(topic: &str, session: &ClosedSession, call_started_ms: i64) -> CallEvent {
    let s = &session.started;
    let call = call_of_session(s, call_started_ms);
    let mut data = call_data(&call);
    data.remove("startedBy");
    participant_fields(&mut data, s);
    data.insert("participantEndReason".into(), json!(session.reason.as_str()));
    data.insert("participantDurationInSeconds".into(), json!(session.duration_ms() as f64 / 1000.0));
    let subject = format!("call/{}/participant/{}", call.call_id(), s.participant_raw_id);
    let id = deterministic_id("event/participant-removed", &s.session_id);
    event(topic, id, PARTICIPANT_REMOVED, subject, data, session.end_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meter::Meter;
    use crate::pricing::Price;
    use palaver_core::{EndReason, ParticipantType, SessionEnded};

    #[test]
    fn a_call_announces_start_participants_and_end_with_stable_ids() {
        let mut m = Meter::new(Price::default());
        let started = SessionStarted {
            call_type: CallType::P2P,
            ..crate::testing::session_started("s1", "conv", "8:acs:res_u1", ParticipantType::Acs, 1_000)
        };
        let mut changes = m.session_started(started).unwrap();
        changes.extend(
            m.session_ended(SessionEnded {
                session_id: "s1".into(),
                conversation_id: "conv".into(),
                reason: EndReason::Left,
                at_ms: 91_000,
            })
            .unwrap(),
        );
        let events: Vec<CallEvent> = changes.iter().flat_map(|c| events_for("/palaver/test", c)).collect();
        let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(types, vec![CALL_STARTED, PARTICIPANT_ADDED, PARTICIPANT_REMOVED, CALL_ENDED]);
        let ended = &events[3];
        assert_eq!(ended.data["callDurationInSeconds"], json!(90.0));
        assert_eq!(ended.data["durationOfCall"], json!(90.0));
        assert_eq!(ended.data["isTwoParty"], json!(true));
        assert_eq!(ended.data["endedBy"]["communicationIdentifier"]["kind"], json!("communicationUser"));
        assert_eq!(events[2].data["participantEndReason"], json!("Left"));
        // replaying the same changes yields the same ids
        let again: Vec<String> = changes.iter().flat_map(|c| events_for("/palaver/test", c)).map(|e| e.id).collect();
        assert_eq!(again, events.iter().map(|e| e.id.clone()).collect::<Vec<_>>());
        let mut unique = again.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 4);
        // the wire form uses Event Grid's camelCase keys
        let wire = serde_json::to_value(ended).unwrap();
        assert!(
            wire.get("eventType").is_some() && wire.get("dataVersion").is_some() && wire.get("eventTime").is_some()
        );
    }
}
