//! Participant handlers (list with `skip` paging, `:add` with `shareHistoryTime` and
//! `invalidParticipants`, `:remove` with the bare identifier), read receipts (send, list)
//! and typing notifications.

use super::threads::classify_all;
use super::wire::{self, AddParticipantsIn, ReadReceiptIn, TypingIn};
use super::{ChatRequest, ItemPath, ThreadPath, encode_segment, json, publish, required};
use crate::api::{ApiError, parse_json, parse_json_or_default};
use crate::domain::chat::model::check_display_name;
use crate::domain::chat::service::{self, add_participants};
use crate::domain::chat::{ChatError, ChatOperation};
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use palaver_core::time::now_ms;
use palaver_core::{CommunicationIdentifier, ErrorCode, IdentifierModel};

/// The `nextLink` of a `skip`-paged list when a further page exists.
fn skip_link(thread_id: &str, list: &str, skip: usize, size: usize, more: bool) -> Option<String> {
    more.then(|| format!("/chat/threads/{}/{list}?skip={}&maxPageSize={size}", encode_segment(thread_id), skip + size))
}

pub async fn list(req: ChatRequest<ThreadPath>) -> Result<Response, ApiError> {
    let state = &req.state;
    let thread_id = req.path.thread_id.clone();
    let (size, skip) = (req.page_size()?, req.skip()?);
    let caller = req.caller.clone();
    let tid = thread_id.clone();
    let mut rows = state
        .chat
        .run(move |c| {
            let a = service::access(c, &tid, &caller, ChatOperation::ListParticipants)?;
            Ok(c.list_participants(a.row.seq, skip, size + 1)?)
        })
        .await?;
    let more = rows.len() > size;
    rows.truncate(size);
    let next = skip_link(&thread_id, "participants", skip, size, more);
    Ok(json(StatusCode::OK, &wire::page_json(rows.iter().map(wire::participant_json).collect(), next)))
}

/// `POST …/participants/:add` and `…/participants/:remove`.
pub async fn change(req: ChatRequest<ItemPath>, body: Bytes) -> Result<Response, ApiError> {
    match req.path.item.as_str() {
        ":add" => add(req, body).await,
        ":remove" => remove(req, body).await,
        other => Err(ApiError::new(ErrorCode::NotFound, format!("no participants action `{other}`"))),
    }
}

async fn add(req: ChatRequest<ItemPath>, body: Bytes) -> Result<Response, ApiError> {
    let state = &req.state;
    let thread_id = req.path.thread_id.clone();
    let input: AddParticipantsIn = parse_json(&body)?;
    let list = required(input.participants, "participants")?;
    let resource_id = state.resource.resource_id.clone();
    let caller = req.caller.clone();
    let now = now_ms();
    let known = super::threads::existing_users(state, &list).await?;
    let (bad, event) = state
        .chat
        .run(move |c| {
            let mut a = service::access(c, &thread_id, &caller, ChatOperation::AddParticipants)?;
            let (ok, bad) = classify_all(&known, &resource_id, &list)?;
            let initiator = a.as_participant(&caller.raw_id);
            let event = add_participants(c, &mut a, &initiator, ok, now)?;
            Ok((bad, event))
        })
        .await?;
    publish(state, event);
    let mut answer = serde_json::json!({});
    if !bad.is_empty() {
        answer["invalidParticipants"] =
            bad.iter().map(|(raw, code, msg)| wire::invalid_participant_json(raw, *code, msg)).collect();
    }
    Ok(json(StatusCode::CREATED, &answer))
}

async fn remove(req: ChatRequest<ItemPath>, body: Bytes) -> Result<Response, ApiError> {
    let state = &req.state;
    let thread_id = req.path.thread_id.clone();
    let model: IdentifierModel = parse_json(&body)?;
    let target = CommunicationIdentifier::from_model(&model)
        .map_err(|e| ApiError::from(ChatError::invalid("rawId", e.to_string())))?
        .raw_id();
    let caller = req.caller.clone();
    let now = now_ms();
    let event = state.chat.run(move |c| service::remove_participant(c, &thread_id, &caller, &target, now)).await?;
    publish(state, event);
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn send_receipt(req: ChatRequest<ThreadPath>, body: Bytes) -> Result<Response, ApiError> {
    let state = &req.state;
    let thread_id = req.path.thread_id.clone();
    let input: ReadReceiptIn = parse_json(&body)?;
    let message_id = required(input.chat_message_id, "chatMessageId")?;
    let caller = req.caller.clone();
    let now = now_ms();
    let event = state.chat.run(move |c| service::send_read_receipt(c, &thread_id, &caller, &message_id, now)).await?;
    publish(state, event);
    Ok(StatusCode::OK.into_response())
}

pub async fn list_receipts(req: ChatRequest<ThreadPath>) -> Result<Response, ApiError> {
    let state = &req.state;
    let thread_id = req.path.thread_id.clone();
    let (size, skip) = (req.page_size()?, req.skip()?);
    let caller = req.caller.clone();
    let tid = thread_id.clone();
    let mut rows = state.chat.run(move |c| service::read_receipts(c, &tid, &caller, skip, size + 1)).await?;
    let more = rows.len() > size;
    rows.truncate(size);
    let next = skip_link(&thread_id, "readReceipts", skip, size, more);
    Ok(json(StatusCode::OK, &wire::page_json(rows.iter().map(wire::read_receipt_json).collect(), next)))
}

pub async fn typing(req: ChatRequest<ThreadPath>, body: Bytes) -> Result<Response, ApiError> {
    let state = &req.state;
    let thread_id = req.path.thread_id.clone();
    let input: TypingIn = parse_json_or_default(&body)?;
    let name = check_display_name(input.sender_display_name.as_deref(), "senderDisplayName").map_err(ApiError::from)?;
    let caller = req.caller.clone();
    let now = now_ms();
    let event = state.chat.run(move |c| service::typing(c, &thread_id, &caller, name.as_deref(), now)).await?;
    publish(state, event);
    Ok(StatusCode::OK.into_response())
}
