//! Chat counters: messages sent (by type), threads created, and real-time chat events
//! delivered to connected clients (by event name, a closed set). Registered on the
//! palaver registry by the chat service.

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

/// Label values of `palaver_chat_messages_total{type}`.
pub const MESSAGE_TYPES: [&str; 2] = ["text", "html"];

/// Label values of `palaver_chat_events_delivered_total{event}`.
pub const EVENT_NAMES: [&str; 9] = [
    "chatMessageReceived",
    "chatMessageEdited",
    "chatMessageDeleted",
    "typingIndicatorReceived",
    "readReceiptReceived",
    "participantsAdded",
    "participantsRemoved",
    "chatThreadPropertiesUpdated",
    "chatThreadDeleted",
];

#[derive(Clone, Debug)]
pub struct ChatMetrics {
    messages: IntCounterVec,
    threads: IntCounter,
    events: IntCounterVec,
}

impl ChatMetrics {
    /// Create the chat families and register them on `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let messages =
            IntCounterVec::new(Opts::new("palaver_chat_messages_total", "Chat messages sent, by type."), &["type"])?;
        let threads = IntCounter::new("palaver_chat_threads_created_total", "Chat threads created.")?;
        let events = IntCounterVec::new(
            Opts::new("palaver_chat_events_delivered_total", "Real-time chat events delivered to connected clients."),
            &["event"],
        )?;
        registry.register(Box::new(messages.clone()))?;
        registry.register(Box::new(threads.clone()))?;
        registry.register(Box::new(events.clone()))?;
        Ok(Self { messages, threads, events })
    }

    /// A user message of `kind` (`text`/`html`) was sent.
    pub fn message_sent(&self, kind: &str) {
        let label = if MESSAGE_TYPES.contains(&kind) { kind } else { "text" };
        self.messages.with_label_values(&[label]).inc();
    }

    pub fn thread_created(&self) {
        self.threads.inc();
    }

    /// `n` copies of event `name` were handed to client connections (names outside
    /// [`EVENT_NAMES`] are not counted, keeping the label set closed).
    pub fn events_delivered(&self, name: &str, n: u64) {
        if let Some(label) = EVENT_NAMES.iter().find(|e| **e == name) {
            self.events.with_label_values(&[label]).inc_by(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_with_closed_labels() {
        let r = Registry::new();
        let m = ChatMetrics::register(&r).unwrap();
        m.message_sent("html");
        m.message_sent("bogus");
        m.thread_created();
        m.events_delivered("chatMessageReceived", 3);
        let mut out = Vec::new();
        prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &r.gather(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("palaver_chat_messages_total{type=\"html\"} 1"), "{text}");
        assert!(text.contains("palaver_chat_messages_total{type=\"text\"} 1"), "{text}");
        assert!(text.contains("palaver_chat_threads_created_total 1"), "{text}");
        assert!(text.contains("palaver_chat_events_delivered_total{event=\"chatMessageReceived\"} 3"), "{text}");
    }
}
