//! The Chat REST wire shapes (`azure-communication-chat` 1.3.0 / spec 2024-03-07):
//! request bodies as the SDK sends them, and the JSON of threads, messages, participants
//! and read receipts. Every identifier carries `rawId` (the SDK builds its identifiers
//! from it) and `kind`; times are RFC 3339 UTC with milliseconds and a `Z`.

use crate::auth::token::rfc3339_ms;
use crate::domain::chat::events::identifier_json;
use crate::domain::chat::{ChatMessage, ChatParticipant, ChatThread, ReadReceipt};
use palaver_core::IdentifierModel;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// `ChatParticipant` as sent.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantIn {
    pub communication_identifier: IdentifierModel,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub share_history_time: Option<String>,
}

/// `CreateChatThreadRequest`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateThreadIn {
    pub topic: Option<String>,
    #[serde(default)]
    pub participants: Option<Vec<ParticipantIn>>,
}

/// `UpdateChatThreadRequest` (merge patch).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct UpdateThreadIn {
    #[serde(default)]
    pub topic: Option<String>,
}

/// `SendChatMessageRequest`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendMessageIn {
    pub content: Option<String>,
    #[serde(default)]
    pub sender_display_name: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
}

/// `UpdateChatMessageRequest` (merge patch).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct UpdateMessageIn {
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
}

/// `AddChatParticipantsRequest`.
#[derive(Debug, Clone, Deserialize)]
pub struct AddParticipantsIn {
    pub participants: Option<Vec<ParticipantIn>>,
}

/// `SendReadReceiptRequest`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadReceiptIn {
    pub chat_message_id: Option<String>,
}

/// `SendTypingNotificationRequest` (the body may be empty or `{}`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TypingIn {
    #[serde(default)]
    pub sender_display_name: Option<String>,
}

/// `ChatThreadProperties`.
pub fn thread_json(t: &ChatThread) -> Value {
    json!({
        "id": t.id,
        "topic": t.topic,
        "createdOn": rfc3339_ms(t.created_ms),
        "createdByCommunicationIdentifier": identifier_json(&t.created_by),
    })
}

/// `ChatThreadItem`.
pub fn thread_item_json(t: &ChatThread) -> Value {
    let mut o = Map::new();
    o.insert("id".into(), json!(t.id));
    o.insert("topic".into(), json!(t.topic));
    if let Some(ms) = t.last_message_ms {
        o.insert("lastMessageReceivedOn".into(), json!(rfc3339_ms(ms)));
    }
    Value::Object(o)
}

/// `ChatParticipant`.
pub fn participant_json(p: &ChatParticipant) -> Value {
    let mut o = Map::new();
    o.insert("communicationIdentifier".into(), identifier_json(&p.raw_id));
    if let Some(name) = &p.display_name {
        o.insert("displayName".into(), json!(name));
    }
    o.insert("shareHistoryTime".into(), json!(rfc3339_ms(p.share_history_ms)));
    Value::Object(o)
}

/// `ChatMessage`: user messages carry `content.message`; system messages the topic or
/// participants and the initiator; deleted messages keep their place without content.
pub fn message_json(m: &ChatMessage) -> Value {
    let mut o = Map::new();
    o.insert("id".into(), json!(m.id));
    o.insert("type".into(), json!(m.kind.as_str()));
    o.insert("sequenceId".into(), json!(m.sequence_id.to_string()));
    o.insert("version".into(), json!(m.version));
    if m.deleted_ms.is_none() {
        let mut content = Map::new();
        if let Some(text) = &m.content {
            content.insert("message".into(), json!(text));
        }
        if let Some(topic) = &m.topic {
            content.insert("topic".into(), json!(topic));
        }
        if !m.participants.is_empty() {
            content.insert("participants".into(), Value::Array(m.participants.iter().map(participant_json).collect()));
        }
        if let Some(initiator) = &m.initiator {
            content.insert("initiatorCommunicationIdentifier".into(), identifier_json(initiator));
        }
        o.insert("content".into(), Value::Object(content));
    }
    if let Some(name) = &m.sender_display_name {
        o.insert("senderDisplayName".into(), json!(name));
    }
    o.insert("createdOn".into(), json!(rfc3339_ms(m.created_ms)));
    if let Some(sender) = &m.sender {
        o.insert("senderCommunicationIdentifier".into(), identifier_json(sender));
    }
    if let Some(ms) = m.deleted_ms {
        o.insert("deletedOn".into(), json!(rfc3339_ms(ms)));
    }
    if let Some(ms) = m.edited_ms {
        o.insert("editedOn".into(), json!(rfc3339_ms(ms)));
    }
    if !m.metadata.is_empty() && m.deleted_ms.is_none() {
        o.insert("metadata".into(), json!(m.metadata));
    }
    Value::Object(o)
}

/// `ChatMessageReadReceipt`.
pub fn read_receipt_json(r: &ReadReceipt) -> Value {
    json!({
        "senderCommunicationIdentifier": identifier_json(&r.sender),
        "chatMessageId": r.message_id,
        "readOn": rfc3339_ms(r.read_ms),
    })
}

/// A `ChatError` of `invalidParticipants`: the raw id as `target`, code `"403"`/`"404"`.
pub fn invalid_participant_json(raw_id: &str, code: u16, message: &str) -> Value {
    json!({ "code": code.to_string(), "message": message, "target": raw_id })
}

/// A page: `{value, nextLink?}`.
pub fn page_json(value: Vec<Value>, next_link: Option<String>) -> Value {
    let mut o = Map::new();
    o.insert("value".into(), Value::Array(value));
    if let Some(link) = next_link {
        o.insert("nextLink".into(), json!(link));
    }
    Value::Object(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::chat::MessageKind;

    #[test]
    fn messages_and_participants_carry_raw_ids() {
        let mut m = ChatMessage::test_text(3, 1_700_000_000_000);
        m.metadata.insert("k".into(), "v".into());
        let j = message_json(&m);
        assert_eq!(j["sequenceId"], "3");
        assert_eq!(j["content"]["message"], "x");
        assert_eq!(j["senderCommunicationIdentifier"]["rawId"], "8:acs:r_a");
        assert_eq!(j["senderCommunicationIdentifier"]["communicationUser"]["id"], "8:acs:r_a");
        assert_eq!(j["metadata"]["k"], "v");
        m.kind = MessageKind::ParticipantAdded;
        m.sender = None;
        m.content = None;
        m.initiator = Some("8:acs:r_a".into());
        m.participants = vec![ChatParticipant { raw_id: "8:orgid:u1".into(), display_name: None, share_history_ms: 0 }];
        let j = message_json(&m);
        assert!(j.get("senderCommunicationIdentifier").is_none());
        assert_eq!(j["content"]["participants"][0]["communicationIdentifier"]["rawId"], "8:orgid:u1");
        assert_eq!(j["content"]["participants"][0]["shareHistoryTime"], "1970-01-01T00:00:00.000Z");
        assert_eq!(j["content"]["initiatorCommunicationIdentifier"]["rawId"], "8:acs:r_a");
        m.deleted_ms = Some(1);
        assert!(message_json(&m).get("content").is_none());
    }
}
