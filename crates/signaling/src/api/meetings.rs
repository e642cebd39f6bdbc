//! Handlers of the meetings API: each parses the request, says who asks, calls the meetings
//! domain ([`crate::domain::meetings`], which holds the rules and limits) and answers the
//! meeting as JSON or the refusal as the ACS error body. Nothing is written on a refused
//! request. Live operations reach meetings in progress through the gateway.

use crate::api::{ApiError, Caller, api_router, parse_json, parse_json_or_default};
use crate::app::AppState;
use crate::domain::conversation::ServerCommand;
use crate::domain::meetings::{CreateMeetingRequest, MeetingRecord, Requester};
use crate::gateway::LiveStatus;
use crate::store::run_blocking;
use axum::Json;
use axum::Router;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use palaver_core::Scope;
use palaver_core::protocol::{MeetingPolicy, PolicyUpdate};
use palaver_core::time::now_ms;
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

/// Who asks, for the domain. A user needs the `voip` scope to manage meetings.
fn requester(caller: &Caller) -> Result<Requester, ApiError> {
    match &caller.user {
        None => Ok(Requester::Server),
        Some(user) => {
            user.require_scope(Scope::Voip)?;
            Ok(Requester::User { identifier: user.identifier.clone(), tenant_id: user.tenant_id.clone() })
        }
    }
}

async fn create_meeting(
    State(state): State<AppState>,
    host: RequestHost,
    caller: Caller,
) -> Result<Response, ApiError> {
    let by = requester(&caller)?;
    // Up to 1 MiB of JSON: parsed on the blocking pool, not on an async worker.
    let body = caller.body.clone();
    let req: CreateMeetingRequest = run_blocking(move || parse_json_or_default(&body)).await??;
    let record = state.meetings.create(&by, req, now_ms()).await?;
    Ok((StatusCode::CREATED, Json(view(&state, &host, record).await)).into_response())
}

async fn get_meeting(
    State(state): State<AppState>,
    Path(id): Path<String>,
    host: RequestHost,
    caller: Caller,
) -> Result<Json<MeetingView>, ApiError> {
    let record = state.meetings.managed(&id, &requester(&caller)?).await?;
    Ok(Json(view(&state, &host, record).await))
}

async fn patch_meeting(
    State(state): State<AppState>,
    Path(id): Path<String>,
    host: RequestHost,
    caller: Caller,
) -> Result<Json<MeetingView>, ApiError> {
    let by = requester(&caller)?;
    let patch: PatchMeeting = parse_json(&caller.body)?;
    let record = state.meetings.update_policy(&id, &by, patch.policy, &state.gateway).await?;
    Ok(Json(view(&state, &host, record).await))
}

async fn delete_meeting(
    State(state): State<AppState>,
    Path(id): Path<String>,
    caller: Caller,
) -> Result<StatusCode, ApiError> {
    let thread_deleted = state.meetings.delete(&id, &requester(&caller)?, &state.gateway).await?;
    crate::api::chat::publish(&state, thread_deleted);
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
    let command = match cmd {
        Cmd::Rec(on) => ServerCommand::SetRecording(on),
        Cmd::Tr(on) => ServerCommand::SetTranscription(on),
    };
    let not_live = || ApiError::new(palaver_core::ErrorCode::InvalidState, "the conversation is not in progress");
    let handle = match target {
        Target::Meeting => {
            state.meetings.capture(&id, caller.authority(), command, &state.gateway).await?;
            state.gateway.meeting_handle(&id)
        }
        Target::Live => {
            let handle = state.gateway.conversation_handle(&id).ok_or_else(not_live)?;
            state.gateway.server_command(&handle, caller.authority(), command).await?;
            Some(handle)
        }
    };
    let status = match handle {
        Some(h) => state.gateway.live_status(&h).await,
        None => None,
    };
    let status =
        status.ok_or_else(|| ApiError::new(palaver_core::ErrorCode::InvalidState, "the conversation ended"))?;
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
