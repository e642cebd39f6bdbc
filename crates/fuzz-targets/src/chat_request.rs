//! Chat request bodies (`palaver_signaling::api::chat::wire`, `domain::chat::model`,
//! `sanitize`): the input, as JSON, is read as every Chat API request body the server takes
//! (create thread, update topic, send/update message, add participants, the bare identifier
//! of `:remove`, read receipt, typing), and accepted values go through the checks the
//! handlers apply. Properties: no panic; stored content stays within 28 KB of what was
//! sent; sanitised `html` keeps no `<` or `>` except the attribute-free allow-listed tags, so
//! no element or attribute of a message reaches a page; sanitising is idempotent; `text` is
//! stored verbatim.

use palaver_core::{CommunicationIdentifier, IdentifierModel};
use palaver_signaling::api::chat::wire::{
    AddParticipantsIn, CreateThreadIn, ReadReceiptIn, SendMessageIn, TypingIn, UpdateMessageIn, UpdateThreadIn,
};
use palaver_signaling::domain::chat::model::{check_batch, check_content, check_display_name, check_topic};
use palaver_signaling::domain::chat::sanitize::{ALLOWED, sanitize_html};
use palaver_signaling::domain::chat::{MAX_MESSAGE_BYTES, MessageKind};
use std::collections::BTreeMap;

/// Every `<` opens an allow-listed tag without attributes and every `>` closes one.
fn only_allowed_tags(html: &str) -> bool {
    let mut rest = html;
    while let Some(open) = rest.find(['<', '>']) {
        if rest.as_bytes()[open] == b'>' {
            return false;
        }
        let Some(close) = rest[open..].find('>') else { return false };
        let inner = &rest[open + 1..open + close];
        let name = inner.trim_start_matches('/').trim_end_matches('/');
        if !ALLOWED.contains(&name) {
            return false;
        }
        rest = &rest[open + close + 1..];
    }
    true
}

fn check_message(content: &str, kind: MessageKind, metadata: &BTreeMap<String, String>) {
    if let Ok(stored) = check_content(content, kind, metadata) {
        assert!(content.len() + metadata.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() <= MAX_MESSAGE_BYTES);
        match kind {
            MessageKind::Html => {
                assert!(only_allowed_tags(&stored), "markup survived sanitising: {stored:?}");
                assert_eq!(sanitize_html(&stored), stored, "sanitising is not idempotent");
            }
            _ => assert_eq!(stored, content),
        }
    }
}

/// One input (the body of the libFuzzer target of the same name).
pub fn run(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        // The sanitiser on raw text too (not only JSON strings).
        let once = sanitize_html(text);
        assert!(only_allowed_tags(&once), "markup survived sanitising: {once:?}");
    }
    if let Ok(m) = serde_json::from_slice::<SendMessageIn>(data) {
        let _ = check_display_name(m.sender_display_name.as_deref(), "senderDisplayName");
        if let (Some(content), Ok(kind)) = (m.content, MessageKind::from_request(m.kind.as_deref())) {
            check_message(&content, kind, &m.metadata.unwrap_or_default());
        }
    }
    if let Ok(m) = serde_json::from_slice::<UpdateMessageIn>(data)
        && let Some(content) = m.content
    {
        for kind in [MessageKind::Text, MessageKind::Html] {
            check_message(&content, kind, &m.metadata.clone().unwrap_or_default());
        }
    }
    if let Ok(t) = serde_json::from_slice::<CreateThreadIn>(data) {
        if let Some(topic) = t.topic
            && let Ok(checked) = check_topic(&topic)
        {
            assert!(!checked.is_empty() && checked.chars().count() <= 250);
        }
        let _ = check_batch(t.participants.map_or(0, |p| p.len()));
    }
    if let Ok(t) = serde_json::from_slice::<UpdateThreadIn>(data)
        && let Some(topic) = t.topic
    {
        let _ = check_topic(&topic);
    }
    if let Ok(a) = serde_json::from_slice::<AddParticipantsIn>(data) {
        for p in a.participants.unwrap_or_default() {
            let _ = CommunicationIdentifier::from_model(&p.communication_identifier).map(|id| id.raw_id());
            let _ = check_display_name(p.display_name.as_deref(), "displayName");
        }
    }
    if let Ok(model) = serde_json::from_slice::<IdentifierModel>(data) {
        let _ = CommunicationIdentifier::from_model(&model).map(|id| id.raw_id());
    }
    let _ = serde_json::from_slice::<ReadReceiptIn>(data);
    let _ = serde_json::from_slice::<TypingIn>(data);
}
