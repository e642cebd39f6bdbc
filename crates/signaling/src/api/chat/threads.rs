//! Thread handlers: create (with `repeatability-request-id` replay and
//! `invalidParticipants`), list the caller's threads (signed `syncState` paging), get,
//! update topic, delete.

use super::wire::{self, CreateThreadIn, UpdateThreadIn};
use super::{ChatRequest, ThreadPath, encode_segment, json, publish, required};
use crate::api::{ApiError, parse_json, parse_json_or_default, repeatability};
use crate::domain::chat::ids::new_thread_id;
use crate::domain::chat::model::{check_batch, check_display_name, check_topic};
use crate::domain::chat::service::{self, Caller, TxResult, create_thread_in};
use crate::domain::chat::{ChatError, ChatOperation, ChatParticipant, PageToken};
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use palaver_core::time::now_ms;
use palaver_core::{CommunicationIdentifier, IdentifierModel};

/// A requested participant that cannot join: `(raw id, "403"/"404" code, message)`.
pub type Invalid = (String, u16, &'static str);

/// The communication users of this resource among `list` that exist, asked of the identity
/// store (SQLite or PostgreSQL) before the chat transaction, which then only reads this set.
pub async fn existing_users(
    state: &crate::app::AppState,
    list: &[wire::ParticipantIn],
) -> Result<std::collections::HashSet<String>, ApiError> {
    let mut known = std::collections::HashSet::new();
    // Oversized batches are refused inside the transaction; never look up more than that.
    for p in list.iter().take(crate::domain::chat::MAX_BATCH + 1) {
        let Ok(id) = CommunicationIdentifier::from_model(&p.communication_identifier) else { continue };
        if matches!(id, CommunicationIdentifier::CommunicationUser { .. })
            && id.resource_id() == Some(state.resource.resource_id.as_str())
        {
            let raw = id.raw_id();
            if state.identity_store.identity_exists(&raw).await? {
                known.insert(raw);
            }
        }
    }
    Ok(known)
}

/// Check a requested participant: a communication user of this resource that exists (in
/// `known`, from [`existing_users`]), or a public-cloud directory user. Others are reported in
/// `invalidParticipants`.
pub fn classify(
    known: &std::collections::HashSet<String>,
    resource_id: &str,
    model: &IdentifierModel,
    display_name: Option<&str>,
    share_history: Option<&str>,
) -> TxResult<Result<ChatParticipant, Invalid>> {
    let raw =
        model.raw_id.clone().or_else(|| model.communication_user.as_ref().map(|u| u.id.clone())).unwrap_or_default();
    let id = match CommunicationIdentifier::from_model(model) {
        Ok(id) => id,
        Err(_) => return Ok(Err((raw, 404, "Not found"))),
    };
    let raw = id.raw_id();
    let allowed = match &id {
        CommunicationIdentifier::CommunicationUser { .. } if id.resource_id() == Some(resource_id) => {
            if !known.contains(&raw) {
                return Ok(Err((raw, 404, "Not found")));
            }
            true
        }
        CommunicationIdentifier::DirectoryUser { is_anonymous: false, cloud, .. } => !cloud.is_government(),
        _ => false,
    };
    if !allowed {
        return Ok(Err((raw, 403, "Permissions check failed")));
    }
    let share_history_ms = match share_history {
        Some(t) => super::parse_time_ms(t, "shareHistoryTime")
            .map_err(|e| ChatError::invalid("shareHistoryTime", e.message))?,
        None => 0,
    };
    let display_name = check_display_name(display_name, "displayName")?;
    Ok(Ok(ChatParticipant { raw_id: raw, display_name, share_history_ms }))
}

/// Classify a request's participants (batch limit, duplicates: the last one wins).
pub fn classify_all(
    known: &std::collections::HashSet<String>,
    resource_id: &str,
    list: &[wire::ParticipantIn],
) -> TxResult<(Vec<ChatParticipant>, Vec<Invalid>)> {
    check_batch(list.len())?;
    let (mut ok, mut bad) = (Vec::<ChatParticipant>::new(), Vec::new());
    for p in list {
        match classify(
            known,
            resource_id,
            &p.communication_identifier,
            p.display_name.as_deref(),
            p.share_history_time.as_deref(),
        )? {
            Ok(p) => {
                ok.retain(|q| q.raw_id != p.raw_id);
                ok.push(p);
            }
            Err(e) => bad.push(e),
        }
    }
    Ok((ok, bad))
}

fn invalid_json(bad: &[Invalid]) -> Vec<serde_json::Value> {
    bad.iter().map(|(raw, code, msg)| wire::invalid_participant_json(raw, *code, msg)).collect()
}

pub async fn create(req: ChatRequest, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let state = &req.state;
    ChatOperation::CreateThread.authorize(req.caller.scopes).map_err(ApiError::from)?;
    let input: CreateThreadIn = parse_json(&body)?;
    let topic = check_topic(&required(input.topic, "topic")?).map_err(ApiError::from)?;
    let repeat = repeatability(&Method::POST, &req.uri, &headers, &body)?;
    let participants = input.participants.unwrap_or_default();
    let resource_id = state.resource.resource_id.clone();
    let caller = req.caller.clone();
    let creator_name = req.display_name.clone();
    let now = now_ms();
    let known = existing_users(state, &participants).await?;
    let (status, body, created) = state
        .chat
        .run(move |c| {
            if let Some(r) = &repeat
                && let Some((fingerprint, body)) = c.find_repeat(&caller.raw_id, &r.request_id)?
            {
                if fingerprint != r.fingerprint {
                    return Err(ChatError::RepeatabilityConflict.into());
                }
                return Ok((StatusCode::CREATED, body, None));
            }
            let (ok, bad) = classify_all(&known, &resource_id, &participants)?;
            let creator_entry = ok.iter().find(|p| p.raw_id == caller.raw_id).cloned();
            let creator = ChatParticipant {
                raw_id: caller.raw_id.clone(),
                display_name: creator_entry.as_ref().and_then(|p| p.display_name.clone()).or(creator_name),
                share_history_ms: 0,
            };
            let members: Vec<ChatParticipant> = std::iter::once(creator.clone())
                .chain(ok.iter().filter(|p| p.raw_id != creator.raw_id).cloned())
                .collect();
            let row = create_thread_in(c, new_thread_id(), topic, creator, ok, now)?;
            let mut answer = serde_json::json!({ "chatThread": wire::thread_json(&row.thread) });
            if !bad.is_empty() {
                answer["invalidParticipants"] = serde_json::Value::Array(invalid_json(&bad));
            }
            let body = answer.to_string();
            if let Some(r) = &repeat {
                c.save_repeat(&caller.raw_id, &r.request_id, &r.fingerprint, &body, now)?;
            }
            Ok((StatusCode::CREATED, body, Some((row.thread, members))))
        })
        .await?;
    let value: serde_json::Value = serde_json::from_str(&body).map_err(|e| ApiError::internal(e.to_string()))?;
    let id = value["chatThread"]["id"].as_str().unwrap_or_default().to_string();
    if let Some((thread, members)) = created {
        tracing::info!(thread = %id, creator = %req.caller.raw_id, "chat thread created");
        super::publish_to_event_grid(state, vec![crate::domain::chat::grid_events::thread_created(&thread, &members)]);
        if let Some(m) = state.chat.metrics() {
            m.thread_created();
        }
    }
    let mut resp = json(status, &value);
    if let Ok(location) = format!("/chat/threads/{}", encode_segment(&id)).parse() {
        resp.headers_mut().insert(header::LOCATION, location);
    }
    Ok(resp)
}

pub async fn list(req: ChatRequest) -> Result<Response, ApiError> {
    let state = &req.state;
    ChatOperation::ListThreads.authorize(req.caller.scopes).map_err(ApiError::from)?;
    let size = req.page_size()?;
    let list_name = format!("threads:{}", req.caller.raw_id);
    let after = match req.param("syncState") {
        Some(t) => Some(state.chat.keys().verify(&list_name, t).map_err(ApiError::from)?),
        None => None,
    };
    let start_ms = match after {
        Some(t) => t.start_ms,
        None => req.start_ms()?,
    };
    let raw_id = req.caller.raw_id.clone();
    let rows = state
        .chat
        .run(move |c| Ok(c.list_threads_of(&raw_id, after.map(|t| (t.position, t.tie)), start_ms, size + 1)?))
        .await?;
    let more = rows.len() > size;
    let rows = &rows[..rows.len().min(size)];
    let next = match (more, rows.last()) {
        (true, Some((key, row))) => {
            let token = state.chat.keys().sign(&list_name, PageToken { position: *key, tie: row.seq, start_ms });
            Some(format!("/chat/threads?syncState={token}&maxPageSize={size}"))
        }
        _ => None,
    };
    let value = rows.iter().map(|(_, r)| wire::thread_item_json(&r.thread)).collect();
    Ok(json(StatusCode::OK, &wire::page_json(value, next)))
}

pub async fn get(req: ChatRequest<ThreadPath>) -> Result<Response, ApiError> {
    let state = &req.state;
    let thread_id = req.path.thread_id.clone();
    let caller = req.caller.clone();
    let a = state.chat.run(move |c| service::access(c, &thread_id, &caller, ChatOperation::GetThread)).await?;
    Ok(json(StatusCode::OK, &wire::thread_json(&a.row.thread)))
}

pub async fn update(req: ChatRequest<ThreadPath>, body: Bytes) -> Result<Response, ApiError> {
    let state = &req.state;
    let thread_id = req.path.thread_id.clone();
    let input: UpdateThreadIn = parse_json_or_default(&body)?;
    let caller = req.caller.clone();
    let now = now_ms();
    let event = state
        .chat
        .run(move |c| match input.topic {
            Some(topic) => service::update_topic(c, &thread_id, &caller, &topic, now).map(Some),
            // Nothing to change: still check the caller may update.
            None => service::access(c, &thread_id, &caller, ChatOperation::UpdateTopic).map(|_| None),
        })
        .await?;
    publish(state, event);
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn delete(req: ChatRequest<ThreadPath>) -> Result<Response, ApiError> {
    let state = &req.state;
    let thread_id = req.path.thread_id.clone();
    let caller: Caller = req.caller.clone();
    let now = now_ms();
    let event = state.chat.run(move |c| service::delete_thread(c, &thread_id, &caller, now)).await?;
    publish(state, [event]);
    Ok(StatusCode::NO_CONTENT.into_response())
}
