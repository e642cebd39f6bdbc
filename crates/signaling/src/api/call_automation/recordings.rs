//! Call recording (`/calling/recordings...`) and the recording files (`/v1/objects/...`).
//!
//! A recording is its own server-side leg in the call's conversation (participant
//! `recorder/{recordingId}`, not in the roster): it hears the whole mix and writes it
//! durably (`palaver-legs`' recorder: WAV 16 kHz mono, or Ogg Opus with the palaver format
//! value `ogg`). Start raises the conversation's recording notice through the same server
//! command the meetings API uses, so every client sees it; state changes go to
//! `recordingStateCallbackUri` (else the call connection's callback uri) as
//! `RecordingStateChanged`; the finished file is announced by the Event Grid event
//! `RecordingFileStatusUpdated` with `contentLocation`/`metadataLocation`/`deleteLocation` on
//! this server, served with HMAC auth and `Range`, and deletable (`200`, then `404`).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use super::{CallRequest, ca_error, split_action};
use crate::api::{HmacAuthenticated, api_router};
use crate::app::AppState;
use crate::domain::call_automation::events::{event_type, result};
use crate::domain::call_automation::{CaOutput, CallAutomationError};
use crate::domain::conversation::{Authority, ServerCommand};
use crate::gateway::legs::{
    LegEvent, LegEventKind, OperationTag, RecordRequest, RecordingAction, RecordingFile, RecordingFormat, ServerLeg,
};
use crate::gateway::{Gateway, MediaSession};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use palaver_core::{IdentifierModel, SystemEvent};
use serde::Deserialize;
use serde_json::{Value, json};

pub fn routes() -> Router<AppState> {
    api_router()
        .route("/calling/recordings", post(start))
        .route("/calling/recordings/{seg}", get(get_recording).post(action).delete(stop))
        .route("/v1/objects/{doc}/content/{kind}", get(download).delete(delete_file))
}

/// One recording of this process.
#[derive(Clone)]
struct Recording {
    leg: Option<Arc<dyn ServerLeg>>,
    active: bool,
    conversation_id: String,
    server_call_id: String,
    call_connection_id: Option<String>,
    correlation_id: String,
    /// The application identity that started it (billed for its minutes).
    user_raw_id: String,
    state_callback_uri: Option<String>,
    started: chrono::DateTime<chrono::Utc>,
    file: Option<RecordingFile>,
    deleted: bool,
    base_url: String,
}

static RECORDINGS: LazyLock<Mutex<HashMap<String, Recording>>> = LazyLock::new(Mutex::default);

fn recordings() -> std::sync::MutexGuard<'static, HashMap<String, Recording>> {
    RECORDINGS.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartBody {
    call_locator: Option<Locator>,
    call_connection_id: Option<String>,
    recording_state_callback_uri: Option<String>,
    recording_content_type: Option<String>,
    recording_channel_type: Option<String>,
    recording_format_type: Option<String>,
    audio_channel_participant_ordering: Option<Vec<IdentifierModel>>,
    channel_affinity: Option<Vec<ChannelAffinity>>,
    pause_on_start: Option<bool>,
    external_storage: Option<Value>,
}

/// ACS `ChannelAffinity`: a participant pinned to an unmixed recording's channel.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChannelAffinity {
    channel: Option<i64>,
    participant: Option<IdentifierModel>,
}

/// Channels of an unmixed recording (ACS `channelAffinity` channels 0–4).
const UNMIXED_CHANNELS: i64 = 5;

/// `recordingChannelType`, `channelAffinity` and `audioChannelParticipantOrdering` checked:
/// (unmixed, channel order, affinity).
type ChannelOptions = (bool, Vec<String>, Vec<(u8, String)>);

fn channel_options(body: &StartBody, format: RecordingFormat) -> Result<ChannelOptions, CallAutomationError> {
    let unmixed = match body.recording_channel_type.as_deref() {
        None | Some("mixed") => false,
        Some("unmixed") => true,
        Some(other) => return Err(invalid(format!("RecordingChannelType `{other}` is not one of mixed, unmixed."))),
    };
    let affinity = body.channel_affinity.as_deref().unwrap_or_default();
    if !unmixed {
        if !affinity.is_empty() {
            return Err(invalid("ChannelAffinity needs RecordingChannelType `unmixed`."));
        }
        return Ok((false, Vec::new(), Vec::new()));
    }
    if format != RecordingFormat::Wav {
        return Err(invalid(
            "Unmixed recordings are WAV (one channel per participant): use RecordingFormatType `wav`.",
        ));
    }
    let mut pinned: Vec<(u8, String)> = Vec::new();
    for entry in affinity {
        let participant = entry
            .participant
            .as_ref()
            .ok_or_else(|| invalid("ChannelAffinity.Participant is required."))
            .and_then(|p| super::wire::raw_id(p, "ChannelAffinity.Participant"))?;
        let channel = match entry.channel {
            Some(c) if (0..UNMIXED_CHANNELS).contains(&c) => c as u8,
            Some(c) => return Err(invalid(format!("ChannelAffinity.Channel {c} is outside 0..4."))),
            // No channel given: the lowest one nobody is pinned to.
            None => (0..UNMIXED_CHANNELS as u8).find(|c| !pinned.iter().any(|(p, _)| p == c)).unwrap_or(0),
        };
        if pinned.iter().any(|(c, p)| *c == channel || *p == participant) {
            return Err(invalid("ChannelAffinity names a channel or a participant twice."));
        }
        pinned.push((channel, participant));
    }
    let order = body
        .audio_channel_participant_ordering
        .iter()
        .flatten()
        .map(|p| super::wire::raw_id(p, "AudioChannelParticipantOrdering"))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((true, order, pinned))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Locator {
    server_call_id: Option<String>,
    group_call_id: Option<String>,
    room_id: Option<String>,
}

fn invalid(message: impl Into<String>) -> CallAutomationError {
    CallAutomationError::invalid_argument(message)
}

fn state_response(id: &str, active: bool) -> Value {
    json!({"recordingId": id, "recordingState": if active { "active" } else { "inactive" },
        "recordingKind": "azureCommunicationServices"})
}

/// `POST /calling/recordings` → 200 `RecordingStateResponse`.
async fn start(State(state): State<AppState>, request: CallRequest) -> Response {
    start_recording(&state, &request).await.unwrap_or_else(ca_error)
}

async fn start_recording(state: &AppState, request: &CallRequest) -> Result<Response, CallAutomationError> {
    let body: StartBody = request.json()?;
    if body.recording_content_type.as_deref().is_some_and(|c| c != "audio") {
        return Err(invalid("RecordingContentType `audioVideo` is not supported: this server records audio only."));
    }
    let format = match body.recording_format_type.as_deref() {
        None | Some("wav") => RecordingFormat::Wav,
        Some("ogg") => RecordingFormat::OggOpus,
        Some(other) => {
            return Err(invalid(format!(
                "RecordingFormatType `{other}` is not supported: use `wav` (or palaver's `ogg` for Ogg Opus)."
            )));
        }
    };
    let (unmixed, channel_order, channel_affinity) = channel_options(&body, format)?;
    if body.external_storage.as_ref().is_some_and(|s| s["recordingStorageKind"] != "azureCommunicationServices") {
        return Err(invalid("ExternalStorage is not supported: recordings are kept on this server."));
    }
    let state_callback_uri = match body.recording_state_callback_uri.filter(|u| !u.is_empty()) {
        Some(uri) => Some(super::wire::callback_uri(Some(uri), "RecordingStateCallbackUri")?),
        None => None,
    };
    let ca = state.call_automation();
    let locator = body.call_locator.unwrap_or_default();
    let (conversation_id, server_call_id, call_connection_id, correlation_id, user_raw_id) = match (
        body.call_connection_id.filter(|c| !c.is_empty()),
        locator.server_call_id,
        locator.group_call_id,
        locator.room_id,
    ) {
        (Some(ccid), None, None, None) => {
            let view = ca.connection(&ccid)?;
            view.require_established()?;
            (view.conversation_id, view.server_call_id, Some(ccid), view.correlation_id, view.source_raw_id)
        }
        (None, Some(server_call_id), None, None) => {
            let view = ca.with_machine(|m| m.connection_of_call(&server_call_id)).ok_or_else(|| {
                CallAutomationError::new(404, 8522, format!("No call `{server_call_id}` is in progress."))
            })?;
            let ccid = Some(view.call_connection_id);
            (view.conversation_id, view.server_call_id, ccid, view.correlation_id, view.source_raw_id)
        }
        (None, None, Some(group), None) => {
            let group =
                uuid::Uuid::parse_str(group.trim()).map_err(|_| invalid("The field GroupCallId must be a UUID."))?;
            let view = state.gateway.ca_connection_in(&format!("groupCall:{group}")).ok_or_else(|| {
                CallAutomationError::new(404, 8522, format!("No call connection is in group call `{group}`."))
            })?;
            let ccid = Some(view.call_connection_id);
            (view.conversation_id, view.server_call_id, ccid, view.correlation_id, view.source_raw_id)
        }
        (None, None, None, Some(room)) => {
            let view = state.gateway.ca_connection_in(&format!("room:{room}")).ok_or_else(|| {
                CallAutomationError::new(404, 8522, format!("No call connection is in room `{room}`."))
            })?;
            let ccid = Some(view.call_connection_id);
            (view.conversation_id, view.server_call_id, ccid, view.correlation_id, view.source_raw_id)
        }
        _ => return Err(invalid("Exactly one of CallConnectionId and CallLocator is required.")),
    };
    let id = uuid::Uuid::new_v4().simple().to_string();
    let session = MediaSession {
        conversation_id: conversation_id.clone(),
        participant_id: format!("recorder/{id}"),
        may_send_media: false,
    };
    let leg =
        state.gateway.media().attach_leg(session).await.map_err(|e| {
            CallAutomationError::new(500, 9999, format!("The recording could not start: {}", e.message))
        })?;
    let events = leg.take_events();
    // In a group call or a room the recorder names participants by raw id like the connection.
    if let Some(ccid) = &call_connection_id {
        state.call_automation().follow_aliases(ccid, &leg);
    }
    let pause = body.pause_on_start.unwrap_or(false);
    let record = RecordRequest {
        recording_id: id.clone(),
        format,
        unmixed,
        channel_order,
        channel_affinity,
        pause_on_start: pause,
    };
    let host = request.headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let entry = Recording {
        leg: Some(leg.clone()),
        active: !pause,
        conversation_id: conversation_id.clone(),
        server_call_id,
        call_connection_id,
        correlation_id,
        user_raw_id,
        state_callback_uri,
        started: chrono::Utc::now(),
        file: None,
        deleted: false,
        base_url: format!("https://{host}"),
    };
    recordings().insert(id.clone(), entry);
    if let Some(events) = events {
        tokio::spawn(recording_events(state.gateway.clone(), id.clone(), events));
    }
    if let Err(e) = leg.start_recording(record, OperationTag::default()).await {
        recordings().remove(&id);
        leg.detach();
        return Err(CallAutomationError::new(e.status, e.sub_code, e.message));
    }
    set_notice(&state.gateway, &conversation_id, true).await;
    call_notice(&state.gateway, &id, true);
    tracing::info!(recording = %id, conversation = %conversation_id, "call recording started");
    Ok(axum::Json(state_response(&id, !pause)).into_response())
}

/// The conversation's recording notice (every participant sees it), where the conversation
/// has one (meetings, group calls, rooms).
async fn set_notice(gateway: &Gateway, conversation_id: &str, on: bool) {
    let Some(handle) = gateway.conversation_handle(conversation_id) else {
        tracing::debug!(conversation = %conversation_id, "no conversation actor for the recording notice");
        return;
    };
    if let Err(refusal) = gateway.server_command(&handle, Authority::Server, ServerCommand::SetRecording(on)).await {
        tracing::debug!(conversation = %conversation_id, %refusal, "recording notice unchanged");
    }
}

/// The recording notice of a call between users (no conversation actor): a
/// `call.recordingChanged` frame to every participant of the call but the applications.
fn call_notice(gateway: &Gateway, recording_id: &str, on: bool) {
    let Some(r) = recordings().get(recording_id).cloned() else { return };
    if gateway.conversation_handle(&r.conversation_id).is_some() {
        return; // the conversation's own notice covers it
    }
    let Some(ccid) = r.call_connection_id else { return };
    let Ok(participants) = gateway.call_automation().with_machine(|m| m.participants(&ccid)) else { return };
    let event = crate::domain::calls::CallEvent::RecordingChanged { call_id: r.server_call_id.clone(), recording: on };
    let text: Arc<str> = serde_json::to_string(&event).unwrap_or_default().into();
    for raw_id in participants.iter().filter_map(|p| p["identifier"]["rawId"].as_str()) {
        gateway.notify_user(raw_id, text.clone());
    }
}

/// `GET /calling/recordings/{id}` → 200.
async fn get_recording(Path(seg): Path<String>, _request: CallRequest) -> Response {
    match recordings().get(&seg) {
        Some(r) if r.leg.is_some() => axum::Json(state_response(&seg, r.active)).into_response(),
        _ => ca_error(CallAutomationError::new(404, 8522, format!("Recording `{seg}` is not active."))),
    }
}

/// `POST /calling/recordings/{id}:pause|:resume` → 202.
async fn action(Path(seg): Path<String>, _request: CallRequest) -> Response {
    let (id, action) = split_action(&seg);
    let action = match action {
        Some("pause") => RecordingAction::Pause,
        Some("resume") => RecordingAction::Resume,
        _ => return ca_error(CallAutomationError::new(404, 8522, format!("No recording operation `{seg}`."))),
    };
    recording_action(id, action).await.map(|_| StatusCode::ACCEPTED.into_response()).unwrap_or_else(ca_error)
}

/// `DELETE /calling/recordings/{id}` (stop) → 204.
async fn stop(State(state): State<AppState>, Path(seg): Path<String>, _request: CallRequest) -> Response {
    match recording_action(&seg, RecordingAction::Stop).await {
        Ok(conversation) => {
            set_notice(&state.gateway, &conversation, false).await;
            call_notice(&state.gateway, &seg, false);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => ca_error(e),
    }
}

async fn recording_action(id: &str, action: RecordingAction) -> Result<String, CallAutomationError> {
    let (leg, conversation) = {
        let all = recordings();
        let r = all.get(id).filter(|r| r.leg.is_some());
        let r = r.ok_or_else(|| CallAutomationError::new(404, 8522, format!("Recording `{id}` is not active.")))?;
        (r.leg.clone().expect("filtered"), r.conversation_id.clone())
    };
    leg.recording(id.to_owned(), action, OperationTag::default())
        .await
        .map_err(|e| CallAutomationError::new(e.status, e.sub_code, e.message))?;
    if let Some(r) = recordings().get_mut(id) {
        match action {
            RecordingAction::Pause => r.active = false,
            RecordingAction::Resume => r.active = true,
            RecordingAction::Stop => {
                r.active = false;
                r.leg = None;
            }
        }
    }
    Ok(conversation)
}

/// The recording leg's events: `RecordingStateChanged` callbacks, and on the file,
/// `RecordingFileStatusUpdated`; the leg is detached once the file is written.
async fn recording_events(gateway: Gateway, id: String, mut events: tokio::sync::mpsc::UnboundedReceiver<LegEvent>) {
    while let Some(event) = events.recv().await {
        let Some(r) = recordings().get(&id).cloned() else { continue };
        match event.kind {
            LegEventKind::RecordingStateChanged { active, .. } => {
                let Some(ccid) = r.call_connection_id.clone() else { continue };
                let Some(uri) = r
                    .state_callback_uri
                    .clone()
                    .or_else(|| gateway.call_automation().connection(&ccid).ok().map(|v| v.callback_uri))
                else {
                    continue;
                };
                let data = json!({"callConnectionId": ccid, "serverCallId": r.server_call_id,
                    "correlationId": r.correlation_id, "recordingId": id,
                    "state": if active { "active" } else { "inactive" },
                    "startDateTime": r.started.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    "recordingKind": "azureCommunicationServices",
                    "resultInformation": result(200, 0, "Action completed successfully.")});
                gateway.call_automation_outputs(vec![CaOutput::Callback {
                    call_connection_id: ccid,
                    callback_uri: uri,
                    event_type: event_type("RecordingStateChanged"),
                    data,
                }]);
            }
            LegEventKind::RecordingFileReady(file) => {
                let event = file_status_event(&id, &r, &file);
                gateway.observer().media_used(palaver_core::MediaUsed {
                    kind: palaver_core::MediaUsageKind::Recording,
                    id: id.clone(),
                    correlation_id: r.server_call_id.clone(),
                    user_raw_id: r.user_raw_id.clone(),
                    end_ms: palaver_core::time::now_ms(),
                    metered_ms: file.duration_ms as i64,
                });
                if let Err(e) = write_sidecar(&id, &r, &file) {
                    tracing::warn!(recording = %id, error = %e, "recording metadata not written; the file is not found after a restart");
                }
                if let Some(entry) = recordings().get_mut(&id) {
                    entry.file = Some(file);
                    entry.leg = None;
                }
                if let Some(leg) = r.leg {
                    leg.detach();
                }
                if let Err(e) = gateway.events().publish(event).await {
                    tracing::warn!(recording = %id, error = %e, "RecordingFileStatusUpdated not accepted");
                }
            }
            LegEventKind::RecordingFailed { result: failure, .. } => {
                tracing::warn!(recording = %id, message = %failure.message, "recording failed");
                if let Some(leg) = recordings().get_mut(&id).and_then(|e| e.leg.take()) {
                    leg.detach();
                }
            }
            _ => {}
        }
    }
}

/// Event Grid `Microsoft.Communication.RecordingFileStatusUpdated` (reference §3.9).
fn file_status_event(id: &str, r: &Recording, file: &RecordingFile) -> SystemEvent {
    let object = format!("{}/v1/objects/{id}/content", r.base_url);
    let data = json!({
        "recordingStorageInfo": {"recordingChunks": [{
            "documentId": id, "index": 0, "endReason": "SessionEnded",
            "contentLocation": format!("{object}/audio"),
            "metadataLocation": format!("{object}/acsmetadata"),
            "deleteLocation": format!("{object}/deletedata"),
        }]},
        "recordingStartTime": r.started.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "recordingDurationMs": file.duration_ms,
        "sessionEndReason": "CallEnded",
        "recordingContentType": "Audio",
        "recordingChannelType": "Mixed",
        "recordingFormatType": if file.content_type == "audio/ogg" { "Ogg" } else { "Wav" },
    });
    SystemEvent {
        event_type: event_type("RecordingFileStatusUpdated"),
        subject: format!("/recording/call/{}/recordingId/{id}", r.server_call_id),
        data,
    }
}

fn not_found(doc: &str) -> Response {
    ca_error(CallAutomationError::new(404, 8522, format!("Recording file `{doc}` was not found.")))
}

/// `GET /v1/objects/{id}/content/audio|acsmetadata` (HMAC, `Range` → 206).
async fn download(
    State(state): State<AppState>,
    Path((doc, kind)): Path<(String, String)>,
    headers: HeaderMap,
    _auth: HmacAuthenticated,
) -> Response {
    let Some((r, file)) = finished(&state, &doc) else { return not_found(&doc) };
    match kind.as_str() {
        "audio" => {}
        "acsmetadata" => {
            let unmixed = file.channels != ["mixed"];
            // Unmixed: one entry per channel (a channel shared by several participants lists
            // each of them on it).
            let participants: Vec<Value> = if unmixed {
                file.channels
                    .iter()
                    .enumerate()
                    .flat_map(|(channel, ids)| {
                        ids.split(',')
                            .filter(|id| !id.is_empty())
                            .map(move |id| json!({"participantId": id, "channel": channel}))
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let meta = json!({"resourceId": "", "callId": r.server_call_id, "chunkDocumentId": doc,
                "chunkIndex": 0, "chunkStartTime": r.started.to_rfc3339(), "chunkDuration": file.duration_ms,
                "recordingInfo": {"contentType": "audio", "channelType": if unmixed { "unmixed" } else { "mixed" },
                    "format": if file.content_type == "audio/ogg" { "ogg" } else { "wav" },
                    "audioConfiguration": {"sampleRate": 16000, "channels": file.channels.len()}},
                "participants": participants});
            return axum::Json(meta).into_response();
        }
        _ => return not_found(&doc),
    }
    let bytes = match tokio::fs::read(&file.path).await {
        Ok(b) => b,
        Err(_) => return not_found(&doc),
    };
    let total = bytes.len();
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).map(|v| parse_range(v, total));
    let content_type = HeaderValue::from_static(file.content_type);
    match range {
        None => {
            ([(header::CONTENT_TYPE, content_type), (header::ACCEPT_RANGES, HeaderValue::from_static("bytes"))], bytes)
                .into_response()
        }
        Some(Some((start, end))) => {
            let content_range = format!("bytes {start}-{end}/{total}");
            (
                StatusCode::PARTIAL_CONTENT,
                [
                    (header::CONTENT_TYPE, content_type),
                    (header::CONTENT_RANGE, HeaderValue::from_str(&content_range).expect("ascii")),
                ],
                bytes[start..=end].to_vec(),
            )
                .into_response()
        }
        Some(None) => (
            StatusCode::RANGE_NOT_SATISFIABLE,
            [(header::CONTENT_RANGE, HeaderValue::from_str(&format!("bytes */{total}")).expect("ascii"))],
        )
            .into_response(),
    }
}

/// A single `bytes=` range of a `total`-byte body as inclusive offsets (`None`: unsatisfiable).
pub(crate) fn parse_range(value: &str, total: usize) -> Option<(usize, usize)> {
    let spec = value.trim().strip_prefix("bytes=")?.split(',').next()?.trim();
    let (first, last) = spec.split_once('-')?;
    if total == 0 {
        return None;
    }
    let (start, end) = match (first.trim(), last.trim()) {
        ("", suffix) => {
            let n: usize = suffix.parse().ok()?;
            (total.saturating_sub(n), total - 1)
        }
        (start, "") => (start.parse().ok()?, total - 1),
        (start, end) => (start.parse().ok()?, end.parse::<usize>().ok()?.min(total - 1)),
    };
    (start <= end && start < total).then_some((start, end))
}

/// `DELETE /v1/objects/{id}/content/{audio|deletedata|...}` → 200 (then the file is gone: 404).
async fn delete_file(
    State(state): State<AppState>,
    Path((doc, _kind)): Path<(String, String)>,
    _auth: HmacAuthenticated,
) -> Response {
    let Some((_, file)) = finished(&state, &doc) else { return not_found(&doc) };
    if let Some(r) = recordings().get_mut(&doc) {
        r.deleted = true;
    }
    // The metadata goes first: a crash in between leaves an orphan file, never a listed
    // recording without its audio.
    for path in [sidecar_path(&file.path), file.path.clone()] {
        if let Err(e) = tokio::fs::remove_file(&path).await {
            tracing::warn!(recording = %doc, path = %path.display(), error = %e, "recording file not removed");
        }
    }
    StatusCode::OK.into_response()
}

/// A finished, undeleted recording: this process's, or one a previous run wrote (found by its
/// metadata file in the recordings directory).
fn finished(state: &AppState, id: &str) -> Option<(Recording, RecordingFile)> {
    if let Some(r) = recordings().get(id).cloned() {
        let file = r.file.clone().filter(|_| !r.deleted)?;
        return Some((r, file));
    }
    let dir = state.config.recordings_dir.as_deref()?;
    read_sidecar(dir, id)
}

/// The metadata file beside a recording (`{id}.json` next to `{id}.wav`).
fn sidecar_path(file: &std::path::Path) -> std::path::PathBuf {
    file.with_extension("json")
}

/// Writes the recording's metadata durably beside its file (temporary file, fsync, rename,
/// directory fsync), so its id outlives the process.
fn write_sidecar(id: &str, r: &Recording, file: &RecordingFile) -> std::io::Result<()> {
    use std::io::Write;
    let meta = json!({"recordingId": id, "serverCallId": r.server_call_id, "correlationId": r.correlation_id,
        "conversationId": r.conversation_id, "callConnectionId": r.call_connection_id, "userRawId": r.user_raw_id,
        "started": r.started.to_rfc3339_opts(chrono::SecondsFormat::Millis, true), "baseUrl": r.base_url,
        "file": file.path.file_name().and_then(|n| n.to_str()), "contentType": file.content_type,
        "durationMs": file.duration_ms, "bytes": file.bytes, "channels": file.channels});
    let path = sidecar_path(&file.path);
    let part = path.with_extension("json.part");
    let mut out = std::fs::File::create(&part)?;
    out.write_all(meta.to_string().as_bytes())?;
    out.sync_all()?;
    std::fs::rename(&part, &path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// A previous run's recording `id` from its metadata in `dir` (ids are this server's: hex
/// only, so no path can be named).
fn read_sidecar(dir: &std::path::Path, id: &str) -> Option<(Recording, RecordingFile)> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let meta: Value = serde_json::from_slice(&std::fs::read(dir.join(format!("{id}.json"))).ok()?).ok()?;
    let text = |key: &str| meta[key].as_str().unwrap_or_default().to_owned();
    let content_type = if meta["contentType"] == "audio/ogg" { "audio/ogg" } else { "audio/wav" };
    let file = RecordingFile {
        recording_id: id.to_owned(),
        path: dir.join(meta["file"].as_str()?),
        content_type,
        duration_ms: meta["durationMs"].as_u64().unwrap_or(0),
        bytes: meta["bytes"].as_u64().unwrap_or(0),
        channels: meta["channels"]
            .as_array()
            .map(|c| c.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default(),
    };
    let recording = Recording {
        leg: None,
        active: false,
        conversation_id: text("conversationId"),
        server_call_id: text("serverCallId"),
        call_connection_id: meta["callConnectionId"].as_str().map(str::to_owned),
        correlation_id: text("correlationId"),
        user_raw_id: text("userRawId"),
        state_callback_uri: None,
        started: chrono::DateTime::parse_from_rfc3339(&text("started")).ok()?.with_timezone(&chrono::Utc),
        file: Some(file.clone()),
        deleted: false,
        base_url: text("baseUrl"),
    };
    Some((recording, file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_recording_is_found_again_from_its_metadata() {
        let dir = std::env::temp_dir().join(format!("palaver-rec-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let id = "0123456789abcdef0123456789abcdef";
        let file = RecordingFile {
            recording_id: id.into(),
            path: dir.join(format!("{id}.wav")),
            content_type: "audio/wav",
            duration_ms: 2_000,
            bytes: 64_044,
            channels: vec!["mixed".into()],
        };
        std::fs::write(&file.path, b"RIFF").unwrap();
        let started = chrono::Utc::now();
        let recording = Recording {
            leg: None,
            active: false,
            conversation_id: "conv".into(),
            server_call_id: "call-1".into(),
            call_connection_id: Some("cc-1".into()),
            correlation_id: "corr".into(),
            user_raw_id: "8:acs:r_bot".into(),
            state_callback_uri: None,
            started,
            file: None,
            deleted: false,
            base_url: "https://127.0.0.1:1".into(),
        };
        write_sidecar(id, &recording, &file).unwrap();
        let (found, found_file) = read_sidecar(&dir, id).expect("found after a restart");
        assert_eq!(found_file, file);
        assert_eq!((found.server_call_id.as_str(), found.user_raw_id.as_str()), ("call-1", "8:acs:r_bot"));
        assert_eq!(found.started.timestamp_millis(), started.timestamp_millis());
        assert!(read_sidecar(&dir, "../etc/passwd").is_none(), "only hex ids");
        assert!(read_sidecar(&dir, "ffff").is_none(), "unknown id");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn ranges_are_inclusive_and_clamped() {
        assert_eq!(parse_range("bytes=0-99", 1000), Some((0, 99)));
        assert_eq!(parse_range("bytes=900-", 1000), Some((900, 999)));
        assert_eq!(parse_range("bytes=-100", 1000), Some((900, 999)));
        assert_eq!(parse_range("bytes=990-2000", 1000), Some((990, 999)));
        assert_eq!(parse_range("bytes=1000-", 1000), None);
        assert_eq!(parse_range("bytes=5-1", 1000), None);
        assert_eq!(parse_range("items=0-1", 1000), None);
    }
}
