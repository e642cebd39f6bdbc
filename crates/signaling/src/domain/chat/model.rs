//! Threads, messages, participants and read receipts as chat rules see them (times in ms
//! since the Unix epoch, identities as raw ids), and the checks on what a client sends.

use super::{ChatError, MAX_BATCH, MAX_MESSAGE_BYTES, MAX_TOPIC_CHARS, sanitize};
use std::collections::BTreeMap;

/// Longest display name accepted, in characters.
pub const MAX_DISPLAY_NAME_CHARS: usize = 256;

/// A message's `type`: the two a user sends and the system messages a change writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Text,
    Html,
    TopicUpdated,
    ParticipantAdded,
    ParticipantRemoved,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Text => "text",
            MessageKind::Html => "html",
            MessageKind::TopicUpdated => "topicUpdated",
            MessageKind::ParticipantAdded => "participantAdded",
            MessageKind::ParticipantRemoved => "participantRemoved",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Text, Self::Html, Self::TopicUpdated, Self::ParticipantAdded, Self::ParticipantRemoved]
            .into_iter()
            .find(|k| k.as_str() == s)
    }

    pub fn is_system(self) -> bool {
        !matches!(self, MessageKind::Text | MessageKind::Html)
    }

    /// The type of a user message from the request's `type` (absent = text; the SDK
    /// sends `text`/`html`, the REST API names them case-insensitively).
    pub fn from_request(value: Option<&str>) -> Result<Self, ChatError> {
        match value.map(str::to_ascii_lowercase).as_deref() {
            None | Some("text") => Ok(MessageKind::Text),
            Some("html") => Ok(MessageKind::Html),
            Some(other) => Err(ChatError::invalid("type", format!("message type `{other}` is not one of text, html"))),
        }
    }
}

/// A thread participant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatParticipant {
    pub raw_id: String,
    pub display_name: Option<String>,
    /// History visible from this instant (0 = the whole history).
    pub share_history_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatThread {
    pub id: String,
    pub topic: String,
    pub created_ms: i64,
    pub created_by: String,
    pub last_message_ms: Option<i64>,
}

/// A message, user or system. System messages have no sender; their `initiator`,
/// `topic` or `participants` say what changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub id: String,
    pub kind: MessageKind,
    pub sequence_id: i64,
    pub version: String,
    pub content: Option<String>,
    pub sender: Option<String>,
    pub sender_display_name: Option<String>,
    pub created_ms: i64,
    pub edited_ms: Option<i64>,
    pub deleted_ms: Option<i64>,
    pub metadata: BTreeMap<String, String>,
    pub topic: Option<String>,
    pub participants: Vec<ChatParticipant>,
    pub initiator: Option<String>,
}

impl ChatMessage {
    /// A bare text message (tests).
    #[cfg(test)]
    pub fn test_text(sequence_id: i64, created_ms: i64) -> Self {
        Self {
            id: created_ms.to_string(),
            kind: MessageKind::Text,
            sequence_id,
            version: created_ms.to_string(),
            content: Some("x".into()),
            sender: Some("8:acs:r_a".into()),
            sender_display_name: None,
            created_ms,
            edited_ms: None,
            deleted_ms: None,
            metadata: BTreeMap::new(),
            topic: None,
            participants: vec![],
            initiator: None,
        }
    }
}

/// The latest message a participant has read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadReceipt {
    pub sender: String,
    pub message_id: String,
    pub read_ms: i64,
}

/// A checked topic: 1..=250 characters.
pub fn check_topic(topic: &str) -> Result<String, ChatError> {
    let n = topic.chars().count();
    if topic.trim().is_empty() {
        return Err(ChatError::invalid("topic", "the topic must not be empty"));
    }
    if n > MAX_TOPIC_CHARS {
        return Err(ChatError::invalid("topic", format!("the topic has {n} characters; at most {MAX_TOPIC_CHARS}")));
    }
    Ok(topic.to_string())
}

/// A checked display name (optional; at most 256 characters).
pub fn check_display_name(name: Option<&str>, target: &'static str) -> Result<Option<String>, ChatError> {
    match name {
        Some(n) if n.chars().count() > MAX_DISPLAY_NAME_CHARS => {
            Err(ChatError::invalid(target, format!("display names are at most {MAX_DISPLAY_NAME_CHARS} characters")))
        }
        Some(n) if !n.is_empty() => Ok(Some(n.to_string())),
        _ => Ok(None),
    }
}

/// The size a message counts against the 28 KB limit: content plus metadata.
pub fn message_bytes(content: &str, metadata: &BTreeMap<String, String>) -> usize {
    content.len() + metadata.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
}

/// Check user-message content of `kind` and return what is stored: `html` is sanitised,
/// text kept verbatim. Empty content and content over the limit are refused.
pub fn check_content(
    content: &str,
    kind: MessageKind,
    metadata: &BTreeMap<String, String>,
) -> Result<String, ChatError> {
    if content.is_empty() {
        return Err(ChatError::invalid("content", "the message content must not be empty"));
    }
    let bytes = message_bytes(content, metadata);
    if bytes > MAX_MESSAGE_BYTES {
        return Err(ChatError::MessageTooLarge { bytes, limit: MAX_MESSAGE_BYTES });
    }
    Ok(match kind {
        MessageKind::Html => sanitize::sanitize_html(content),
        _ => content.to_string(),
    })
}

/// Check the number of participants one request names.
pub fn check_batch(count: usize) -> Result<(), ChatError> {
    if count > MAX_BATCH { Err(ChatError::BatchTooLarge { count, limit: MAX_BATCH }) } else { Ok(()) }
}

/// Check that the caller may change `message` (its sender, and not a system message).
pub fn check_own_message(message: &ChatMessage, caller: &str) -> Result<(), ChatError> {
    if message.kind.is_system() {
        return Err(ChatError::SystemMessage);
    }
    if message.sender.as_deref() != Some(caller) {
        return Err(ChatError::NotSender);
    }
    if message.deleted_ms.is_some() {
        return Err(ChatError::MessageNotFound(message.id.clone()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_requests_are_checked() {
        for k in ["text", "html", "topicUpdated", "participantAdded", "participantRemoved"] {
            assert_eq!(MessageKind::parse(k).unwrap().as_str(), k);
        }
        assert_eq!(MessageKind::from_request(None), Ok(MessageKind::Text));
        assert_eq!(MessageKind::from_request(Some("HTML")), Ok(MessageKind::Html));
        assert!(MessageKind::from_request(Some("topicUpdated")).is_err());
    }

    #[test]
    fn content_limits_and_sanitising() {
        let none = BTreeMap::new();
        assert!(check_content("", MessageKind::Text, &none).is_err());
        let max = "a".repeat(MAX_MESSAGE_BYTES);
        assert_eq!(check_content(&max, MessageKind::Text, &none).unwrap().len(), MAX_MESSAGE_BYTES);
        let over = "a".repeat(MAX_MESSAGE_BYTES - 1);
        let meta = BTreeMap::from([("k".to_string(), "v".to_string())]);
        assert_eq!(
            check_content(&over, MessageKind::Text, &meta),
            Err(ChatError::MessageTooLarge { bytes: MAX_MESSAGE_BYTES + 1, limit: MAX_MESSAGE_BYTES })
        );
        assert_eq!(
            check_content("<b>x</b><img src=x onerror=alert(1)>", MessageKind::Html, &none).unwrap(),
            "<b>x</b>&lt;img src=x onerror=alert(1)&gt;"
        );
        assert_eq!(check_content("<b>x</b>", MessageKind::Text, &none).unwrap(), "<b>x</b>");
    }

    #[test]
    fn topics_names_batches_and_ownership() {
        assert!(check_topic(" ").is_err() && check_topic(&"t".repeat(251)).is_err());
        assert_eq!(check_topic("Lunch").unwrap(), "Lunch");
        assert_eq!(check_display_name(Some(""), "senderDisplayName").unwrap(), None);
        assert!(check_display_name(Some(&"n".repeat(257)), "senderDisplayName").is_err());
        assert!(check_batch(200).is_ok() && check_batch(201).is_err());
        let m = ChatMessage::test_text(3, 10);
        assert!(check_own_message(&m, "8:acs:r_a").is_ok());
        assert_eq!(check_own_message(&m, "8:acs:r_b"), Err(ChatError::NotSender));
    }
}
