//! Real-time chat events: the event names and payload fields of the ACS JavaScript SDK's
//! chat events (`@azure/communication-signaling`), with identifiers in the REST wire model
//! (`kind`, `rawId`, ...). Each event names the thread's participants to deliver it to; the
//! gateway adds each recipient's own `recipient` field when it sends.

use super::model::{ChatMessage, ChatParticipant};
use crate::auth::token::rfc3339_ms;
use palaver_core::CommunicationIdentifier;
use serde_json::{Value, json};

/// One event for the participants in `recipients` (raw ids).
#[derive(Debug, Clone, PartialEq)]
pub struct ChatEvent {
    /// JS SDK event id: `chatMessageReceived`, `typingIndicatorReceived`, ...
    pub name: &'static str,
    pub thread_id: String,
    pub payload: Value,
    pub recipients: Vec<String>,
}

/// The wire identifier model of a raw id (with `kind` and `rawId`).
pub fn identifier_json(raw_id: &str) -> Value {
    let model = CommunicationIdentifier::parse(raw_id)
        .map(|id| id.to_model())
        .unwrap_or_else(|_| palaver_core::IdentifierModel { raw_id: Some(raw_id.to_string()), ..Default::default() });
    serde_json::to_value(model).unwrap_or(Value::Null)
}

fn participant_json(p: &ChatParticipant) -> Value {
    json!({
        "id": identifier_json(&p.raw_id),
        "displayName": p.display_name.clone().unwrap_or_default(),
        "shareHistoryTime": rfc3339_ms(p.share_history_ms),
        "metadata": {},
    })
}

fn message_base(thread_id: &str, m: &ChatMessage) -> serde_json::Map<String, Value> {
    let mut o = serde_json::Map::new();
    o.insert("threadId".into(), json!(thread_id));
    o.insert("sender".into(), m.sender.as_deref().map(identifier_json).unwrap_or(Value::Null));
    o.insert("senderDisplayName".into(), json!(m.sender_display_name.clone().unwrap_or_default()));
    o.insert("id".into(), json!(m.id));
    o.insert("createdOn".into(), json!(rfc3339_ms(m.created_ms)));
    o.insert("version".into(), json!(m.version));
    o.insert("type".into(), json!(m.kind.as_str()));
    o
}

impl ChatEvent {
    fn new(name: &'static str, thread_id: &str, payload: serde_json::Map<String, Value>, to: &[String]) -> Self {
        Self { name, thread_id: thread_id.to_string(), payload: Value::Object(payload), recipients: to.to_vec() }
    }

    pub fn message_received(thread_id: &str, m: &ChatMessage, to: &[String]) -> Self {
        let mut o = message_base(thread_id, m);
        o.insert("message".into(), json!(m.content.clone().unwrap_or_default()));
        o.insert("metadata".into(), json!(m.metadata));
        Self::new("chatMessageReceived", thread_id, o, to)
    }

    pub fn message_edited(thread_id: &str, m: &ChatMessage, to: &[String]) -> Self {
        let mut o = message_base(thread_id, m);
        o.insert("message".into(), json!(m.content.clone().unwrap_or_default()));
        o.insert("metadata".into(), json!(m.metadata));
        o.insert("editedOn".into(), json!(m.edited_ms.map(rfc3339_ms)));
        Self::new("chatMessageEdited", thread_id, o, to)
    }

    pub fn message_deleted(thread_id: &str, m: &ChatMessage, to: &[String]) -> Self {
        let mut o = message_base(thread_id, m);
        o.insert("deletedOn".into(), json!(m.deleted_ms.map(rfc3339_ms)));
        Self::new("chatMessageDeleted", thread_id, o, to)
    }

    pub fn typing(thread_id: &str, sender: &str, name: Option<&str>, now_ms: i64, to: &[String]) -> Self {
        let mut o = serde_json::Map::new();
        o.insert("threadId".into(), json!(thread_id));
        o.insert("sender".into(), identifier_json(sender));
        o.insert("senderDisplayName".into(), json!(name.unwrap_or_default()));
        o.insert("version".into(), json!(now_ms.to_string()));
        o.insert("receivedOn".into(), json!(rfc3339_ms(now_ms)));
        Self::new("typingIndicatorReceived", thread_id, o, to)
    }

    pub fn read_receipt(
        thread_id: &str,
        sender: &str,
        name: Option<&str>,
        message_id: &str,
        now_ms: i64,
        to: &[String],
    ) -> Self {
        let mut o = serde_json::Map::new();
        o.insert("threadId".into(), json!(thread_id));
        o.insert("sender".into(), identifier_json(sender));
        o.insert("senderDisplayName".into(), json!(name.unwrap_or_default()));
        o.insert("chatMessageId".into(), json!(message_id));
        o.insert("readOn".into(), json!(rfc3339_ms(now_ms)));
        Self::new("readReceiptReceived", thread_id, o, to)
    }

    /// `participantsAdded` / `participantsRemoved` (`added` picks which).
    pub fn participants(
        thread_id: &str,
        added: bool,
        who: &[ChatParticipant],
        by: &ChatParticipant,
        version: i64,
        now_ms: i64,
        to: &[String],
    ) -> Self {
        let (name, list, on, by_key) = if added {
            ("participantsAdded", "participantsAdded", "addedOn", "addedBy")
        } else {
            ("participantsRemoved", "participantsRemoved", "removedOn", "removedBy")
        };
        let mut o = serde_json::Map::new();
        o.insert("threadId".into(), json!(thread_id));
        o.insert("version".into(), json!(version.to_string()));
        o.insert(on.into(), json!(rfc3339_ms(now_ms)));
        o.insert(list.into(), Value::Array(who.iter().map(participant_json).collect()));
        o.insert(by_key.into(), participant_json(by));
        Self::new(name, thread_id, o, to)
    }

    pub fn properties_updated(
        thread_id: &str,
        topic: &str,
        by: &ChatParticipant,
        version: i64,
        now_ms: i64,
        to: &[String],
    ) -> Self {
        let mut o = serde_json::Map::new();
        o.insert("threadId".into(), json!(thread_id));
        o.insert("version".into(), json!(version.to_string()));
        o.insert("properties".into(), json!({ "topic": topic, "metadata": {} }));
        o.insert("updatedOn".into(), json!(rfc3339_ms(now_ms)));
        o.insert("updatedBy".into(), participant_json(by));
        o.insert("retentionPolicy".into(), json!({ "kind": "none" }));
        Self::new("chatThreadPropertiesUpdated", thread_id, o, to)
    }

    pub fn thread_deleted(thread_id: &str, by: &ChatParticipant, now_ms: i64, to: &[String]) -> Self {
        let mut o = serde_json::Map::new();
        o.insert("threadId".into(), json!(thread_id));
        o.insert("version".into(), json!(now_ms.to_string()));
        o.insert("deletedOn".into(), json!(rfc3339_ms(now_ms)));
        o.insert("deletedBy".into(), participant_json(by));
        o.insert("reason".into(), json!("deletedByUser"));
        Self::new("chatThreadDeleted", thread_id, o, to)
    }

    /// The payload as sent to `recipient`: the event's fields plus `recipient` where the
    /// JS SDK has one (message, typing and read-receipt events).
    pub fn payload_for(&self, recipient: &str) -> Value {
        let mut payload = self.payload.clone();
        let per_recipient = matches!(
            self.name,
            "chatMessageReceived"
                | "chatMessageEdited"
                | "chatMessageDeleted"
                | "typingIndicatorReceived"
                | "readReceiptReceived"
        );
        if let (true, Value::Object(o)) = (per_recipient, &mut payload) {
            o.insert("recipient".into(), identifier_json(recipient));
        }
        payload
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_events_carry_the_js_sdk_fields() {
        let mut m = ChatMessage::test_text(4, 1_700_000_000_000);
        m.sender_display_name = Some("Ann".into());
        let to = vec!["8:acs:r_b".to_string()];
        let e = ChatEvent::message_received("19:t@thread.v2", &m, &to);
        let p = e.payload_for("8:acs:r_b");
        assert_eq!(e.name, "chatMessageReceived");
        assert_eq!(p["threadId"], "19:t@thread.v2");
        assert_eq!(p["sender"]["rawId"], "8:acs:r_a");
        assert_eq!(p["sender"]["kind"], "communicationUser");
        assert_eq!(p["recipient"]["rawId"], "8:acs:r_b");
        assert_eq!(p["senderDisplayName"], "Ann");
        assert_eq!(p["message"], "x");
        assert_eq!(p["type"], "text");
        assert_eq!(p["createdOn"], "2023-11-14T22:13:20.000Z");
        let by = ChatParticipant { raw_id: "8:acs:r_a".into(), display_name: None, share_history_ms: 0 };
        let d = ChatEvent::thread_deleted("19:t@thread.v2", &by, 5, &to).payload_for("8:acs:r_b");
        assert!(d.get("recipient").is_none());
        assert_eq!(d["deletedBy"]["id"]["rawId"], "8:acs:r_a");
        assert_eq!(d["reason"], "deletedByUser");
    }
}
