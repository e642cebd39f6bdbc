//! Real-time chat delivery: a chat event goes to every open signaling connection
//! (WebSocket or QUIC control stream, through the presence registry) of each recipient, as
//! `{"type":"chat.event","event":"<JS SDK event name>","data":{...}}`. A recipient who is
//! not connected gets nothing pushed and reads the history later. Meeting threads follow
//! who is in the meeting ([`MeetingChatTracker`], driven by each meeting's actor).

use super::Gateway;
use crate::domain::chat::ChatEvent;
use crate::domain::chat::MeetingChatChange;
use crate::domain::chat::meeting::DEFAULT_MEETING_TOPIC;
use crate::domain::conversation::ConversationSetup;
use crate::domain::conversation::participant::Participant;
use palaver_core::protocol::ServerMessage;
use palaver_core::time::now_ms;
use std::collections::HashMap;
use std::sync::Arc;

/// The `type` of a chat event frame.
pub const CHAT_EVENT_FRAME: &str = "chat.event";

impl Gateway {
    /// Push `event` to its recipients' connections; returns the number of frames queued.
    pub fn deliver_chat(&self, event: &ChatEvent) -> usize {
        let mut queued = 0;
        for recipient in &event.recipients {
            let sockets = self.presence_of(recipient);
            if sockets.is_empty() {
                continue;
            }
            let frame = ServerMessage::ChatEvent { event: event.name.to_string(), data: event.payload_for(recipient) };
            let text: Arc<str> = frame.to_json().into();
            for entry in sockets {
                if entry.tx.try_send(super::connection::Outbound::Frame(text.clone())).is_ok() {
                    queued += 1;
                } else {
                    tracing::warn!(user = %recipient, conn = %entry.conn_id, event = event.name, "outbound queue full; chat event dropped");
                }
            }
        }
        tracing::debug!(thread = %event.thread_id, event = event.name, queued, "chat event delivered");
        queued
    }
}

impl Gateway {
    /// The chat service (given at construction: meeting threads follow meeting membership).
    pub fn chat(&self) -> &crate::domain::chat::ChatService {
        &self.chat
    }
}

/// Who of a meeting's conversation is in its chat thread, as last synced by its actor.
#[derive(Debug, Default)]
pub(crate) struct MeetingChatTracker {
    /// participant id → (raw id, display name, external)
    present: HashMap<String, (String, String, bool)>,
}

impl MeetingChatTracker {
    /// Bring the meeting's thread in line with who is in the conversation now (lobby
    /// participants are not in it): participants who entered are added, those who left
    /// removed (external users). The actor applies the changes ([`apply_meeting_changes`])
    /// before it sends the frames of the change, so a client that has its join snapshot can
    /// already read the thread.
    pub fn changes<'a>(
        &mut self,
        key: &str,
        setup: &ConversationSetup,
        participants: impl Iterator<Item = &'a Participant>,
    ) -> Vec<MeetingChatChange> {
        let ConversationSetup::Meeting(meeting) = setup else { return Vec::new() };
        let Some(meeting_id) = key.strip_prefix("meeting:") else { return Vec::new() };
        let now: HashMap<String, (String, String, bool)> = participants
            .filter(|p| p.in_conversation())
            .map(|p| {
                (p.participant_id.clone(), (p.identity.raw_id(), p.display_name.clone(), p.identity.is_external()))
            })
            .collect();
        let entered = now.iter().filter(|(pid, _)| !self.present.contains_key(*pid));
        let left = self.present.iter().filter(|(pid, _)| !now.contains_key(*pid));
        let changes: Vec<MeetingChatChange> = entered
            .map(|(_, who)| (who, true))
            .chain(left.map(|(_, who)| (who, false)))
            // A user still present on another device has not left.
            .filter(|((raw, _, _), entered)| *entered || !now.values().any(|(r, _, _)| r == raw))
            .map(|((raw_id, name, external), entered)| MeetingChatChange {
                meeting_id: meeting_id.to_string(),
                topic: meeting.subject.clone().unwrap_or_else(|| DEFAULT_MEETING_TOPIC.to_string()),
                organizer: meeting.organizer_raw_id.clone(),
                raw_id: raw_id.clone(),
                display_name: name.clone(),
                is_external: *external,
                entered,
                at_ms: now_ms(),
            })
            .collect();
        self.present = now;
        changes
    }
}

/// Write meeting membership changes to the thread (through the store's async door) and push
/// the resulting chat events.
pub(crate) async fn apply_meeting_changes(gateway: &Gateway, changes: Vec<MeetingChatChange>) {
    let chat = gateway.chat();
    for change in changes {
        let meeting_id = change.meeting_id.clone();
        match chat.meeting_change(change.clone()).await {
            Ok(events) => {
                for event in events {
                    let delivered = gateway.deliver_chat(&event);
                    if let Some(m) = chat.metrics() {
                        m.events_delivered(event.name, delivered as u64);
                    }
                }
            }
            Err(e) => {
                tracing::error!(meeting = %meeting_id, participant = %change.raw_id, error = %e, "meeting chat membership change failed")
            }
        }
    }
}
