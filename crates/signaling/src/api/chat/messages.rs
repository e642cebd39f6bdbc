//! Message handlers: send (text/html with metadata and sender display name; 201 + `{id}`),
//! list (newest first, signed `syncState` paging, `startTime`), get, edit, delete. Only the
//! sender edits or deletes; a reader sees only their history window.

use super::wire::{self, SendMessageIn, UpdateMessageIn};
use super::{ChatRequest, ItemPath, ThreadPath, encode_segment, json, publish, required};
use crate::api::{ApiError, parse_json, parse_json_or_default};
use crate::domain::chat::model::{check_content, check_display_name};
use crate::domain::chat::service::{self, user_message};
use crate::domain::chat::{ChatOperation, MessageKind, PageToken};
use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use palaver_core::time::now_ms;

pub async fn send(req: ChatRequest<ThreadPath>, body: Bytes) -> Result<Response, ApiError> {
    let state = &req.state;
    let thread_id = req.path.thread_id.clone();
    let input: SendMessageIn = parse_json(&body)?;
    let content = required(input.content, "content")?;
    let kind = MessageKind::from_request(input.kind.as_deref()).map_err(ApiError::from)?;
    let metadata = input.metadata.unwrap_or_default();
    let content = check_content(&content, kind, &metadata).map_err(ApiError::from)?;
    let name = check_display_name(input.sender_display_name.as_deref(), "senderDisplayName").map_err(ApiError::from)?;
    let m = user_message(&req.caller.raw_id, name, kind, content, metadata);
    let caller = req.caller.clone();
    let tid = thread_id.clone();
    let now = now_ms();
    let (m, event) = state.chat.run(move |c| service::send_message(c, &tid, &caller, m, now)).await?;
    publish(state, [event]);
    state.chat.message_sent(&thread_id, &m.id, &req.caller.raw_id, req.native, m.created_ms);
    if let Some(metrics) = state.chat.metrics() {
        metrics.message_sent(m.kind.as_str());
    }
    let mut resp = json(StatusCode::CREATED, &serde_json::json!({ "id": m.id }));
    if let Ok(location) = format!("/chat/threads/{}/messages/{}", encode_segment(&thread_id), m.id).parse() {
        resp.headers_mut().insert(header::LOCATION, location);
    }
    Ok(resp)
}

pub async fn list(req: ChatRequest<ThreadPath>) -> Result<Response, ApiError> {
    let state = &req.state;
    let thread_id = req.path.thread_id.clone();
    let size = req.page_size()?;
    let list_name = format!("messages:{thread_id}");
    let after = match req.param("syncState") {
        Some(t) => Some(state.chat.keys().verify(&list_name, t).map_err(ApiError::from)?),
        None => None,
    };
    let start_ms = match after {
        Some(t) => t.start_ms,
        None => req.start_ms()?,
    };
    let caller = req.caller.clone();
    let tid = thread_id.clone();
    let rows = state
        .chat
        .run(move |c| {
            let a = service::access(c, &tid, &caller, ChatOperation::ReadMessages)?;
            let before = after.map(|t| t.position).unwrap_or(i64::MAX);
            Ok(c.list_messages(a.row.seq, before, a.member.window(), start_ms, size + 1)?)
        })
        .await?;
    let more = rows.len() > size;
    let rows = &rows[..rows.len().min(size)];
    let next = match (more, rows.last()) {
        (true, Some(last)) => {
            let token = state.chat.keys().sign(&list_name, PageToken { position: last.sequence_id, tie: 0, start_ms });
            Some(format!("/chat/threads/{}/messages?syncState={token}&maxPageSize={size}", encode_segment(&thread_id)))
        }
        _ => None,
    };
    Ok(json(StatusCode::OK, &wire::page_json(rows.iter().map(wire::message_json).collect(), next)))
}

pub async fn get(req: ChatRequest<ItemPath>) -> Result<Response, ApiError> {
    let state = &req.state;
    let (thread_id, message_id) = (req.path.thread_id.clone(), req.path.item.clone());
    let caller = req.caller.clone();
    let m = state
        .chat
        .run(move |c| {
            let a = service::access(c, &thread_id, &caller, ChatOperation::ReadMessages)?;
            service::visible_message(c, &a, &message_id)
        })
        .await?;
    Ok(json(StatusCode::OK, &wire::message_json(&m)))
}

pub async fn update(req: ChatRequest<ItemPath>, body: Bytes) -> Result<Response, ApiError> {
    let state = &req.state;
    let (thread_id, message_id) = (req.path.thread_id.clone(), req.path.item.clone());
    let input: UpdateMessageIn = parse_json_or_default(&body)?;
    let caller = req.caller.clone();
    let now = now_ms();
    let event = state
        .chat
        .run(move |c| service::edit_message(c, &thread_id, &caller, &message_id, input.content, input.metadata, now))
        .await?;
    publish(state, [event]);
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn delete(req: ChatRequest<ItemPath>) -> Result<Response, ApiError> {
    let state = &req.state;
    let (thread_id, message_id) = (req.path.thread_id.clone(), req.path.item.clone());
    let caller = req.caller.clone();
    let now = now_ms();
    let event = state.chat.run(move |c| service::delete_message(c, &thread_id, &caller, &message_id, now)).await?;
    publish(state, [event]);
    Ok(StatusCode::NO_CONTENT.into_response())
}
