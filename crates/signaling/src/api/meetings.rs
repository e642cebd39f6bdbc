//! Handlers of the meetings API. Each parses, authenticates, authorizes and calls the
//! directory or the live conversation; nothing is written on a rejected request.

use crate::api::{ApiError, Caller, api_router, parse_json, parse_json_or_default};
use crate::app::AppState;
use crate::domain::conversation::{Authority, ServerCommand, apply_policy_update};
use crate::gateway::LiveStatus;
use crate::store::meetings::{MeetingRecord, generate_meeting_code, generate_passcode};
use axum::Json;
use axum::Router;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use palaver_core::protocol::{MeetingPolicy, PolicyUpdate};
use palaver_core::time::now_ms;
use palaver_core::{CommunicationIdentifier, ErrorCode, Scope};
use serde::{Deserialize, Serialize};

pub fn routes() -> Router<AppState> {
    api_router()
        .route("/meetings", post(create_meeting))
        .route("/meetings/{id}", get(get_meeting).patch(patch_meeting).delete(delete_meeting))
        .route("/meetings/{id}/recording:start", capture_route(Target::Meeting, Cmd::Rec(true)))
        .route("/meetings/{id}/recording:stop", capture_route(Target::Meeting, Cmd::Rec(false)))
        .route("/meetings/{id}/transcription:start", capture_route(Target::Meeting, Cmd::Tr(true)))
        .route("/meetings/{id}/transcription:stop", capture_route(Target::Meeting, Cmd::Tr(false)))
        .route("/conversations/{id}/recording:start", capture_route(Target::Live, Cmd::Rec(true)))
        .route("/conversations/{id}/recording:stop", capture_route(Target::Live, Cmd::Rec(false)))
        .route("/conversations/{id}/transcription:start", capture_route(Target::Live, Cmd::Tr(true)))
        .route("/conversations/{id}/transcription:stop", capture_route(Target::Live, Cmd::Tr(false)))
}

/// `POST /meetings` body.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateMeeting {
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub co_organizers: Vec<String>,
    #[serde(default)]
    pub presenters: Vec<String>,
    #[serde(default)]
    pub policy: PolicyUpdate,
    /// Server API only: the organizing directory user.
    #[serde(default)]
    pub organizer: Option<String>,
    /// Server API only: the organizer's tenant.
    #[serde(default)]
    pub organizer_tenant_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PatchMeeting {
    policy: PolicyUpdate,
}

/// A meeting as answered by the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeetingView {
    pub id: String,
    pub join_url: String,
    pub meeting_code: String,
    pub passcode: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub organizer: String,
    pub co_organizers: Vec<String>,
    pub presenters: Vec<String>,
    pub policy: MeetingPolicy,
    pub created_at_ms: i64,
    /// The meeting's chat thread (Chat API, `19:meeting_…@thread.v2`).
    pub chat_thread_id: String,
    /// Present while the meeting is in progress.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<LiveView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveView {
    pub conversation_id: String,
    pub capture: palaver_core::protocol::CaptureState,
    pub participants: usize,
    pub in_lobby: usize,
}

impl From<LiveStatus> for LiveView {
    fn from(s: LiveStatus) -> Self {
        Self {
            conversation_id: s.conversation_id,
            capture: s.capture,
            participants: s.participants,
            in_lobby: s.in_lobby,
        }
    }
}

/// The host the client addressed: the `Host` header (HTTP/1.1) or the request URI's
/// authority (HTTP/2 `:authority`, which carries no `Host` header).
struct RequestHost(String);

impl<S: Send + Sync> FromRequestParts<S> for RequestHost {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(request_host(&parts.headers, &parts.uri)))
    }
}

fn request_host(headers: &HeaderMap, uri: &axum::http::Uri) -> String {
    headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .unwrap_or("localhost")
        .to_string()
}

fn join_url(host: &RequestHost, id: &str) -> String {
    format!("https://{}/meetings/join/{id}", host.0)
}

async fn view(state: &AppState, host: &RequestHost, r: MeetingRecord) -> MeetingView {
    let live = match state.gateway.meeting_handle(&r.id) {
        Some(h) => state.gateway.live_status(&h).await.map(LiveView::from),
        None => None,
    };
    MeetingView {
        join_url: join_url(host, &r.id),
        chat_thread_id: r.chat_thread_id(),
        id: r.id,
        meeting_code: r.meeting_code,
        passcode: r.passcode,
        subject: r.subject,
        organizer: r.organizer_raw_id,
        co_organizers: r.co_organizers,
        presenters: r.presenters,
        policy: r.policy,
        created_at_ms: r.created_at_ms,
        live,
    }
}

fn directory_ids(list: &[String], field: &str) -> Result<Vec<String>, ApiError> {
    let mut out: Vec<String> = Vec::new();
    for raw in list {
        let id = CommunicationIdentifier::parse(raw)
            .map_err(|e| ApiError::new(ErrorCode::InvalidIdentifier, e.to_string()).with_target(field))?;
        if !id.is_directory_user() {
            return Err(ApiError::new(ErrorCode::InvalidIdentifier, format!("`{raw}` is not a directory user"))
                .with_target(field));
        }
        if !out.contains(raw) {
            out.push(raw.clone());
        }
    }
    Ok(out)
}

async fn create_meeting(
    State(state): State<AppState>,
    host: RequestHost,
    caller: Caller,
) -> Result<Response, ApiError> {
    let body: CreateMeeting = parse_json_or_default(&caller.body)?;
    let (organizer, tenant) = match &caller.user {
        Some(user) => {
            user.require_scope(Scope::Voip)?;
            if !user.identifier.is_directory_user() {
                return Err(ApiError::new(ErrorCode::Forbidden, "only directory users can organize meetings"));
            }
            if body.organizer.is_some() || body.organizer_tenant_id.is_some() {
                return Err(ApiError::new(ErrorCode::InvalidParameter, "organizer is taken from the access token")
                    .with_target("organizer"));
            }
            (user.identifier.raw_id(), user.tenant_id.clone())
        }
        None => {
            let organizer = body.organizer.clone().ok_or_else(|| {
                ApiError::new(ErrorCode::InvalidParameter, "the server API must name the organizer")
                    .with_target("organizer")
            })?;
            directory_ids(std::slice::from_ref(&organizer), "organizer")?;
            (organizer, body.organizer_tenant_id.clone())
        }
    };
    let subject = body.subject.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    if subject.as_ref().is_some_and(|s| s.chars().count() > 256) {
        return Err(
            ApiError::new(ErrorCode::InvalidParameter, "subject is longer than 256 characters").with_target("subject")
        );
    }
    let policy = apply_policy_update(MeetingPolicy::default(), body.policy)
        .map_err(|r| ApiError::new(r.code, r.message).with_target("policy"))?;
    let mut record = MeetingRecord {
        id: uuid::Uuid::new_v4().to_string(),
        meeting_code: generate_meeting_code(),
        passcode: generate_passcode(),
        subject,
        organizer_raw_id: organizer,
        organizer_tenant_id: tenant,
        co_organizers: directory_ids(&body.co_organizers, "coOrganizers")?,
        presenters: directory_ids(&body.presenters, "presenters")?,
        policy,
        created_at_ms: now_ms(),
    };
    state.gateway.meetings.create(&mut record)?;
    let topic =
        record.subject.clone().unwrap_or_else(|| crate::domain::chat::meeting::DEFAULT_MEETING_TOPIC.to_string());
    state.chat.create_meeting_thread(&record.id, &topic, &record.organizer_raw_id, record.created_at_ms).await?;
    tracing::info!(meeting = %record.id, organizer = %record.organizer_raw_id, "meeting created");
    Ok((StatusCode::CREATED, Json(view(&state, &host, record).await)).into_response())
}

/// The meeting, if the caller may manage it (organizer, co-organizer, or the server API).
fn managed(state: &AppState, id: &str, caller: &Caller) -> Result<MeetingRecord, ApiError> {
    let record = state
        .gateway
        .meetings
        .get(id)?
        .ok_or_else(|| ApiError::new(ErrorCode::MeetingNotFound, format!("no meeting `{id}`")))?;
    // A directory caller of another tenant is not the organizer whatever its raw id (issue #19).
    let other_tenant = caller.user.as_ref().is_some_and(|u| {
        u.identifier.is_directory_user()
            && u.tenant_id.is_some()
            && record.organizer_tenant_id.is_some()
            && u.tenant_id != record.organizer_tenant_id
    });
    if let Some(raw) = caller.raw_id()
        && (other_tenant || !record.is_organizer_like(&raw))
    {
        return Err(ApiError::new(ErrorCode::Forbidden, "only the organizer and co-organizers manage this meeting"));
    }
    Ok(record)
}

async fn get_meeting(
    State(state): State<AppState>,
    Path(id): Path<String>,
    host: RequestHost,
    caller: Caller,
) -> Result<Json<MeetingView>, ApiError> {
    let record = managed(&state, &id, &caller)?;
    Ok(Json(view(&state, &host, record).await))
}

async fn patch_meeting(
    State(state): State<AppState>,
    Path(id): Path<String>,
    host: RequestHost,
    caller: Caller,
) -> Result<Json<MeetingView>, ApiError> {
    let patch: PatchMeeting = parse_json(&caller.body)?;
    let record = managed(&state, &id, &caller)?;
    let next = apply_policy_update(record.policy, patch.policy)
        .map_err(|r| ApiError::new(r.code, r.message).with_target("policy"))?;
    // A live meeting applies it (participants are told; the actor stores it), else store it here.
    let live = state.gateway.meeting_handle(&id);
    let applied_live = match live {
        Some(h) => {
            state.gateway.server_command(&h, Authority::Server, ServerCommand::UpdatePolicy(patch.policy)).await.is_ok()
        }
        None => false,
    };
    if !applied_live {
        state.gateway.meetings.set_policy(&id, &next)?;
    }
    let record = managed(&state, &id, &caller)?;
    Ok(Json(view(&state, &host, record).await))
}

async fn delete_meeting(
    State(state): State<AppState>,
    Path(id): Path<String>,
    caller: Caller,
) -> Result<StatusCode, ApiError> {
    let record = managed(&state, &id, &caller)?;
    if caller.user.as_ref().is_some_and(|u| u.identifier.raw_id() != record.organizer_raw_id) {
        return Err(ApiError::new(ErrorCode::Forbidden, "only the organizer deletes a meeting"));
    }
    if let Some(h) = state.gateway.meeting_handle(&id) {
        // Ends it for everyone; an already-ending meeting is fine.
        let _ = state.gateway.server_command(&h, Authority::Server, ServerCommand::End).await;
    }
    state.gateway.meetings.delete(&id)?;
    Ok(StatusCode::NO_CONTENT)
}

fn capture_route(target: Target, cmd: Cmd) -> axum::routing::MethodRouter<AppState> {
    post(move |s: State<AppState>, p: Path<String>, c: Caller| capture(s, p, c, target, cmd))
}

#[derive(Debug, Clone, Copy)]
enum Target {
    Meeting,
    Live,
}

#[derive(Debug, Clone, Copy)]
enum Cmd {
    Rec(bool),
    Tr(bool),
}

async fn capture(
    State(state): State<AppState>,
    Path(id): Path<String>,
    caller: Caller,
    target: Target,
    cmd: Cmd,
) -> Result<Json<LiveView>, ApiError> {
    let handle = match target {
        Target::Meeting => {
            if state.gateway.meetings.get(&id)?.is_none() {
                return Err(ApiError::new(ErrorCode::MeetingNotFound, format!("no meeting `{id}`")));
            }
            state.gateway.meeting_handle(&id)
        }
        Target::Live => state.gateway.conversation_handle(&id),
    };
    let handle = handle.ok_or_else(|| ApiError::new(ErrorCode::InvalidState, "the conversation is not in progress"))?;
    let command = match cmd {
        Cmd::Rec(on) => ServerCommand::SetRecording(on),
        Cmd::Tr(on) => ServerCommand::SetTranscription(on),
    };
    state
        .gateway
        .server_command(&handle, caller.authority(), command)
        .await
        .map_err(|r| ApiError::new(r.code, r.message))?;
    let status = state
        .gateway
        .live_status(&handle)
        .await
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidState, "the conversation ended"))?;
    Ok(Json(status.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_links_use_the_host_the_client_addressed_over_http1_and_http2() {
        let mut headers = HeaderMap::new();
        headers.insert(axum::http::header::HOST, "meet.example:8443".parse().unwrap());
        let path_only: axum::http::Uri = "/meetings".parse().unwrap();
        assert_eq!(request_host(&headers, &path_only), "meet.example:8443");
        // HTTP/2 requests carry `:authority` in the URI and no Host header.
        let h2: axum::http::Uri = "https://127.0.0.1:9443/meetings".parse().unwrap();
        assert_eq!(request_host(&HeaderMap::new(), &h2), "127.0.0.1:9443");
        assert_eq!(
            join_url(&RequestHost(request_host(&HeaderMap::new(), &h2)), "m1"),
            "https://127.0.0.1:9443/meetings/join/m1"
        );
    }
}
