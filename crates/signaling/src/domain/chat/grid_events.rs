//! Chat as an Event Grid source: the `Microsoft.Communication.Chat*` system events (data
//! shapes of ACS's Event Grid schemas: `AcsChatMessageReceivedInThreadEventData`, ...) built
//! from the real-time [`ChatEvent`]s a change already produces, plus `ChatThreadCreated`
//! from a new thread. Thread-level events (`...InThread`, `ChatThread*`) are one per change;
//! the per-user message events (`ChatMessageReceived`/`Edited`/`Deleted`) one per recipient
//! other than the sender. Pure: the caller hands them to the events port.

use super::events::{ChatEvent, identifier_json};
use super::model::{ChatParticipant, ChatThread};
use crate::auth::token::rfc3339_ms;
use palaver_core::SystemEvent;
use serde_json::{Map, Value, json};

const PREFIX: &str = "Microsoft.Communication.";

fn system(name: &str, subject: String, data: Map<String, Value>) -> SystemEvent {
    SystemEvent { event_type: format!("{PREFIX}{name}"), subject, data: Value::Object(data) }
}

fn raw_id(identifier: &Value) -> &str {
    identifier["rawId"].as_str().unwrap_or_default()
}

/// `Text`, `Html`, ... as Event Grid spells the message type.
fn message_type(kind: &Value) -> String {
    let s = kind.as_str().unwrap_or("text");
    let mut chars = s.chars();
    chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
}

/// `{displayName, participantCommunicationIdentifier, shareHistoryTime?}` from a real-time
/// participant object (`{id, displayName, shareHistoryTime}`).
fn participant(p: &Value) -> Value {
    json!({
        "displayName": p["displayName"],
        "participantCommunicationIdentifier": p["id"],
        "shareHistoryTime": p["shareHistoryTime"],
    })
}

fn base(p: &Value) -> Map<String, Value> {
    let mut d = Map::new();
    d.insert("threadId".into(), p["threadId"].clone());
    d.insert("transactionId".into(), json!(uuid::Uuid::new_v4().simple().to_string()));
    d.insert("version".into(), json!(p["version"].as_str().and_then(|v| v.parse::<i64>().ok()).unwrap_or(0)));
    d
}

/// The Event Grid events one real-time chat event announces (none for typing and read
/// receipts, which ACS does not publish to Event Grid).
pub fn from_chat_event(event: &ChatEvent) -> Vec<SystemEvent> {
    let p = &event.payload;
    let thread = &event.thread_id;
    match event.name {
        "chatMessageReceived" | "chatMessageEdited" | "chatMessageDeleted" => message_events(event),
        "participantsAdded" | "participantsRemoved" => {
            let added = event.name == "participantsAdded";
            let (list, by, on, name, key, by_key) = if added {
                (
                    "participantsAdded",
                    "addedBy",
                    "addedOn",
                    "ChatThreadParticipantAdded",
                    "participantAdded",
                    "addedByCommunicationIdentifier",
                )
            } else {
                (
                    "participantsRemoved",
                    "removedBy",
                    "removedOn",
                    "ChatThreadParticipantRemoved",
                    "participantRemoved",
                    "removedByCommunicationIdentifier",
                )
            };
            p[list]
                .as_array()
                .into_iter()
                .flatten()
                .map(|who| {
                    let mut d = base(p);
                    d.insert("time".into(), p[on].clone());
                    d.insert(by_key.into(), p[by]["id"].clone());
                    d.insert(key.into(), participant(who));
                    let verb = if added { "participantAdded" } else { "participantRemoved" };
                    system(name, format!("thread/{thread}/{verb}/{}", raw_id(&who["id"])), d)
                })
                .collect()
        }
        "chatThreadPropertiesUpdated" => {
            let mut d = base(p);
            d.insert("editedByCommunicationIdentifier".into(), p["updatedBy"]["id"].clone());
            d.insert("editTime".into(), p["updatedOn"].clone());
            d.insert("properties".into(), json!({ "topic": p["properties"]["topic"] }));
            d.insert("metadata".into(), json!({}));
            let subject = format!("thread/{thread}/editedBy/{}", raw_id(&p["updatedBy"]["id"]));
            vec![system("ChatThreadPropertiesUpdated", subject, d)]
        }
        "chatThreadDeleted" => {
            let mut d = base(p);
            d.insert("deletedByCommunicationIdentifier".into(), p["deletedBy"]["id"].clone());
            d.insert("deleteTime".into(), p["deletedOn"].clone());
            let subject = format!("thread/{thread}/deletedBy/{}", raw_id(&p["deletedBy"]["id"]));
            vec![system("ChatThreadDeleted", subject, d)]
        }
        _ => Vec::new(),
    }
}

fn message_events(event: &ChatEvent) -> Vec<SystemEvent> {
    let p = &event.payload;
    let thread = &event.thread_id;
    let sender = raw_id(&p["sender"]).to_string();
    let mut d = base(p);
    d.insert("messageId".into(), p["id"].clone());
    d.insert("senderCommunicationIdentifier".into(), p["sender"].clone());
    d.insert("senderDisplayName".into(), p["senderDisplayName"].clone());
    d.insert("composeTime".into(), p["createdOn"].clone());
    d.insert("type".into(), json!(message_type(&p["type"])));
    let suffix = match event.name {
        "chatMessageReceived" => {
            d.insert("messageBody".into(), p["message"].clone());
            d.insert("metadata".into(), p["metadata"].clone());
            "ChatMessageReceived"
        }
        "chatMessageEdited" => {
            d.insert("messageBody".into(), p["message"].clone());
            d.insert("metadata".into(), p["metadata"].clone());
            d.insert("editTime".into(), p["editedOn"].clone());
            "ChatMessageEdited"
        }
        _ => {
            d.insert("deleteTime".into(), p["deletedOn"].clone());
            "ChatMessageDeleted"
        }
    };
    let mut out = vec![system(&format!("{suffix}InThread"), format!("thread/{thread}/sender/{sender}"), d.clone())];
    for recipient in event.recipients.iter().filter(|r| **r != sender) {
        let mut per_user = d.clone();
        per_user.insert("recipientCommunicationIdentifier".into(), identifier_json(recipient));
        out.push(system(suffix, format!("thread/{thread}/sender/{sender}/recipient/{recipient}"), per_user));
    }
    out
}

/// `ChatThreadCreated` for a new thread and its first participants.
pub fn thread_created(thread: &ChatThread, participants: &[ChatParticipant]) -> SystemEvent {
    let mut d = Map::new();
    d.insert("threadId".into(), json!(thread.id));
    d.insert("transactionId".into(), json!(uuid::Uuid::new_v4().simple().to_string()));
    d.insert("version".into(), json!(thread.created_ms));
    d.insert("createTime".into(), json!(rfc3339_ms(thread.created_ms)));
    d.insert("createdByCommunicationIdentifier".into(), identifier_json(&thread.created_by));
    d.insert("properties".into(), json!({ "topic": thread.topic }));
    d.insert("metadata".into(), json!({}));
    d.insert(
        "participants".into(),
        Value::Array(
            participants
                .iter()
                .map(|p| {
                    json!({
                        "displayName": p.display_name.clone().unwrap_or_default(),
                        "participantCommunicationIdentifier": identifier_json(&p.raw_id),
                    })
                })
                .collect(),
        ),
    );
    system("ChatThreadCreated", format!("thread/{}/createdBy/{}", thread.id, thread.created_by), d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::chat::ChatMessage;

    #[test]
    fn a_message_is_announced_in_thread_and_to_each_other_member() {
        let mut m = ChatMessage::test_text(1, 1_700_000_000_000);
        m.sender = Some("8:acs:r_a".into());
        m.content = Some("hello".into());
        let event = ChatEvent::message_received("19:t@thread.v2", &m, &["8:acs:r_a".into(), "8:acs:r_b".into()]);
        let out = from_chat_event(&event);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].event_type, "Microsoft.Communication.ChatMessageReceivedInThread");
        assert_eq!(out[0].subject, "thread/19:t@thread.v2/sender/8:acs:r_a");
        assert_eq!(out[0].data["messageBody"], "hello");
        assert_eq!(out[0].data["senderCommunicationIdentifier"]["rawId"], "8:acs:r_a");
        assert_eq!(out[0].data["type"], "Text");
        assert_eq!(out[1].event_type, "Microsoft.Communication.ChatMessageReceived");
        assert_eq!(out[1].data["recipientCommunicationIdentifier"]["rawId"], "8:acs:r_b");
        let thread = ChatThread {
            id: "19:t@thread.v2".into(),
            topic: "t".into(),
            created_ms: 1,
            created_by: "8:acs:r_a".into(),
            last_message_ms: None,
        };
        let created = thread_created(
            &thread,
            &[ChatParticipant { raw_id: "8:acs:r_b".into(), display_name: None, share_history_ms: 0 }],
        );
        assert_eq!(created.event_type, "Microsoft.Communication.ChatThreadCreated");
        assert_eq!(created.data["participants"][0]["participantCommunicationIdentifier"]["rawId"], "8:acs:r_b");
        assert_eq!(created.data["properties"]["topic"], "t");
    }

    #[test]
    fn participants_topic_and_deletion_are_announced() {
        let by = ChatParticipant { raw_id: "8:acs:r_a".into(), display_name: Some("A".into()), share_history_ms: 0 };
        let who = ChatParticipant { raw_id: "8:acs:r_c".into(), display_name: None, share_history_ms: 0 };
        let to = vec!["8:acs:r_a".to_string()];
        let added = from_chat_event(&ChatEvent::participants("19:t", true, std::slice::from_ref(&who), &by, 3, 5, &to));
        assert_eq!(added[0].event_type, "Microsoft.Communication.ChatThreadParticipantAdded");
        assert_eq!(added[0].data["participantAdded"]["participantCommunicationIdentifier"]["rawId"], "8:acs:r_c");
        assert_eq!(added[0].data["addedByCommunicationIdentifier"]["rawId"], "8:acs:r_a");
        let removed = from_chat_event(&ChatEvent::participants("19:t", false, &[who], &by, 4, 6, &to));
        assert_eq!(removed[0].event_type, "Microsoft.Communication.ChatThreadParticipantRemoved");
        let topic = from_chat_event(&ChatEvent::properties_updated("19:t", "new", &by, 5, 7, &to));
        assert_eq!(topic[0].data["properties"]["topic"], "new");
        let deleted = from_chat_event(&ChatEvent::thread_deleted("19:t", &by, 8, &to));
        assert_eq!(deleted[0].event_type, "Microsoft.Communication.ChatThreadDeleted");
        assert_eq!(deleted[0].subject, "thread/19:t/deletedBy/8:acs:r_a");
        assert!(from_chat_event(&ChatEvent::typing("19:t", "8:acs:r_a", None, 1, &to)).is_empty());
    }
}
