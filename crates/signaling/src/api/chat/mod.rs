//! The ACS Chat REST API over the TLS listener, Bearer access tokens, as the official
//! `azure-communication-chat` SDK calls it: threads ([`threads`]), messages ([`messages`]),
//! participants, read receipts and typing ([`participants`]). Handlers parse and check the
//! request, run one `ChatService` transaction (`crate::domain::chat`), answer with ACS's status code, and hand
//! the resulting events to the gateway for real-time delivery.

mod messages;
mod participants;
mod request;
mod threads;
pub mod wire;

use crate::api::{ApiError, api_router};
use crate::app::AppState;
use crate::domain::chat::{ChatError, ChatEvent};
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use palaver_core::ErrorCode;
pub(crate) use request::{ChatRequest, ItemPath, ThreadPath};

/// api-versions of the Chat API (SDK 1.3.0 defaults to 2024-03-07).
pub const API_VERSIONS: &[&str] = &["2021-03-07", "2021-09-07", "2023-11-07", "2024-03-07", "2025-03-15"];

pub fn routes() -> Router<AppState> {
    api_router()
        .route("/chat/threads", post(threads::create).get(threads::list))
        .route("/chat/threads/{thread_id}", get(threads::get).patch(threads::update).delete(threads::delete))
        .route("/chat/threads/{thread_id}/messages", post(messages::send).get(messages::list))
        .route(
            "/chat/threads/{thread_id}/messages/{message_id}",
            get(messages::get).patch(messages::update).delete(messages::delete),
        )
        .route("/chat/threads/{thread_id}/participants", get(participants::list))
        .route("/chat/threads/{thread_id}/participants/{action}", post(participants::change))
        .route(
            "/chat/threads/{thread_id}/readReceipts",
            post(participants::send_receipt).get(participants::list_receipts),
        )
        .route("/chat/threads/{thread_id}/typing", post(participants::typing))
}

/// Parse an RFC 3339 time (naive times read as UTC, as the SDK's serializer writes them) to ms.
pub fn parse_time_ms(value: &str, target: &'static str) -> Result<i64, ApiError> {
    chrono::DateTime::parse_from_rfc3339(value)
        .map(|t| t.timestamp_millis())
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S%.f").map(|n| n.and_utc().timestamp_millis())
        })
        .map_err(|_| {
            ApiError::new(ErrorCode::InvalidParameter, format!("`{value}` is not an RFC 3339 date-time"))
                .with_target(target)
        })
}

/// A JSON answer with `status`.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], value.to_string()).into_response()
}

/// Percent-encode a thread id for a path (`19:x@thread.v2` → `19%3Ax%40thread.v2`).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A required request member (`InvalidParameter` naming it when absent).
pub fn required<T>(value: Option<T>, target: &'static str) -> Result<T, ApiError> {
    value.ok_or_else(|| ApiError::from(ChatError::invalid(target, format!("`{target}` is required"))))
}

/// Hand events to the gateway for delivery and count them, and announce them to Event Grid
/// subscriptions.
pub fn publish(state: &AppState, events: impl IntoIterator<Item = ChatEvent>) {
    for event in events {
        publish_to_event_grid(state, crate::domain::chat::grid_events::from_chat_event(&event));
        let delivered = state.gateway.deliver_chat(&event);
        if let Some(m) = state.chat.metrics() {
            m.events_delivered(event.name, delivered as u64);
        }
    }
}

/// Hand Event Grid events to the events port (durable once accepted; a failure is logged: the
/// chat change itself has happened).
pub fn publish_to_event_grid(state: &AppState, events: Vec<palaver_core::SystemEvent>) {
    for event in events {
        let event_type = event.event_type.clone();
        let accepted = state.events.publish(event);
        tokio::spawn(async move {
            if let Err(e) = accepted.await {
                tracing::error!(error = %e, event_type = %event_type, "chat event not accepted by the events outbox");
            }
        });
    }
}

#[cfg(test)]
mod tests;
