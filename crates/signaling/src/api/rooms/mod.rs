//! HTTP routes of the Rooms API (HMAC-authenticated), as the `azure-communication-rooms`
//! SDK calls them. Handlers parse and check everything first, then write in one
//! transaction; a refused request writes nothing.

use crate::api::HmacAuthenticated;
use crate::api::{ApiError, api_router, repeatability, require_api_version};
use crate::app::AppState;
use crate::domain::rooms::{
    self as rooms, CreateRoomRequest, Page, ParticipantJson, Room, RoomJson, UpdateParticipantsRequest,
    UpdateRoomRequest,
};
use crate::store::room_store::RoomRepeat;
use crate::store::rooms::{Created, WriteRefusal};
use axum::Router;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use palaver_core::ErrorCode;
use rand::Rng;
use serde::Serialize;

/// api-versions the Rooms API accepts (the SDK 1.2.0 knows these three; default the last).
pub const API_VERSIONS: &[&str] = &["2023-06-14", "2024-04-15", "2025-03-13"];

pub fn routes() -> Router<AppState> {
    api_router()
        .route("/rooms", post(create_room).get(list_rooms))
        .route("/rooms/{room_id}", get(get_room).patch(update_room).delete(delete_room))
        .route("/rooms/{room_id}/participants", get(list_participants).patch(update_participants))
}

/// The `{room_id}` path segment, checked as ACS checks it before any lookup
/// ([`rooms::check_room_id`]: `400 InvalidInput` for a malformed id), so no handler can forget it.
struct RoomIdPath(String);

impl<S: Send + Sync> FromRequestParts<S> for RoomIdPath {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::new(ErrorCode::InvalidInput, e.body_text()))?;
        rooms::check_room_id(&id)?;
        Ok(Self(id))
    }
}

/// The request's api-version. Besides the plain form, accept the SDK's enum spelling
/// `ApiVersion.V2025_03_13`: on Python 3.11+ the SDK sends that when it follows a
/// `nextLink` with its default (enum) api-version.
fn api_version(uri: &Uri) -> Result<&'static str, ApiError> {
    let query = uri.query().map(|q| {
        q.split('&')
            .map(|pair| match pair.strip_prefix("api-version=ApiVersion.V") {
                Some(v) => format!("api-version={}", v.replace('_', "-")),
                None => pair.to_string(),
            })
            .collect::<Vec<_>>()
            .join("&")
    });
    require_api_version(query.as_deref(), API_VERSIONS)
}

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Result<Response, ApiError> {
    let body =
        serde_json::to_string(value).map_err(|e| ApiError::internal(format!("cannot serialise response: {e}")))?;
    Ok(raw_json(status, body))
}

fn raw_json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// ACS's answer to a well-formed id of no room (GET, PATCH, participants), recorded from live
/// ACS: `404 NotFound` "The server cannot find the requested resource." (docs/acs-errors.md).
fn room_not_found(id: &str) -> ApiError {
    tracing::debug!(room_id = id, "no such room");
    ApiError::new(ErrorCode::NotFound, "The server cannot find the requested resource.")
}

fn refusal(e: WriteRefusal, room_id: &str) -> ApiError {
    match e {
        WriteRefusal::RoomNotFound => room_not_found(room_id),
        WriteRefusal::TooManyParticipants { count } => ApiError::new(
            ErrorCode::CapacityReached,
            format!("a room may list at most {} participants; this change would make {count}", rooms::MAX_PARTICIPANTS),
        )
        .with_target("participants"),
    }
}

/// A new room id: 17 decimal digits, as ACS room ids look.
fn new_room_id() -> String {
    rand::thread_rng().gen_range(10_000_000_000_000_000u64..100_000_000_000_000_000u64).to_string()
}

async fn create_room(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    auth: HmacAuthenticated,
) -> Result<Response, ApiError> {
    api_version(&uri)?;
    let req: CreateRoomRequest = auth.json_or_default()?;
    let now = now_us();
    let (valid_from_us, valid_until_us) = rooms::create_window(&req, now)?;
    let participants = match &req.participants {
        Some(map) => rooms::participant_changes(map, &state.resource.resource_id, false)?,
        None => Vec::new(),
    };
    if participants.len() > rooms::MAX_PARTICIPANTS {
        return Err(refusal(WriteRefusal::TooManyParticipants { count: participants.len() }, ""));
    }
    let repeat = repeatability(&axum::http::Method::POST, &uri, &headers, &auth.body)?;
    let room = Room {
        id: new_room_id(),
        created_at_us: now,
        valid_from_us,
        valid_until_us,
        pstn_dial_out_enabled: req.pstn_dial_out_enabled.unwrap_or(false),
    };
    let body = serde_json::to_string(&room.to_json()).map_err(|e| ApiError::internal(e.to_string()))?;
    let room_id = room.id.clone();
    let repeat = repeat.map(|r| RoomRepeat { request_id: r.request_id, fingerprint: r.fingerprint });
    let created = state.rooms.store().create_room(&room, &participants, repeat.as_ref(), &body).await?;
    match (created, repeat.map(|r| r.fingerprint)) {
        (Created::New, _) => {
            tracing::info!(room_id, "room created");
            Ok(raw_json(StatusCode::CREATED, body))
        }
        (Created::Replay(stored), Some(fp)) if stored.fingerprint == fp => {
            Ok(raw_json(StatusCode::from_u16(stored.status).unwrap_or(StatusCode::CREATED), stored.body))
        }
        (Created::Replay(_), _) => {
            Err(ApiError::new(ErrorCode::Conflict, "Repeatability-Request-ID was already used for a different request")
                .with_target("Repeatability-Request-ID"))
        }
    }
}

async fn list_rooms(State(state): State<AppState>, uri: Uri, _auth: HmacAuthenticated) -> Result<Response, ApiError> {
    let version = api_version(&uri)?;
    let page = rooms::page_request(uri.query())?;
    let rows = state.rooms.store().list_rooms(page.after, page.size + 1).await?;
    let more = rows.len() > page.size;
    let rows = &rows[..rows.len().min(page.size)];
    let next_link =
        (more && !rows.is_empty()).then(|| rooms::next_link("/rooms", version, &page, rows[rows.len() - 1].0));
    let value: Vec<RoomJson> = rows.iter().map(|(_, r)| r.to_json()).collect();
    json_response(StatusCode::OK, &Page { value, next_link })
}

async fn find(state: &AppState, room_id: &str) -> Result<(i64, Room), ApiError> {
    state.rooms.store().find_room(room_id).await?.ok_or_else(|| room_not_found(room_id))
}

async fn get_room(
    State(state): State<AppState>,
    RoomIdPath(room_id): RoomIdPath,
    uri: Uri,
    _auth: HmacAuthenticated,
) -> Result<Response, ApiError> {
    api_version(&uri)?;
    let (_, room) = find(&state, &room_id).await?;
    json_response(StatusCode::OK, &room.to_json())
}

async fn update_room(
    State(state): State<AppState>,
    RoomIdPath(room_id): RoomIdPath,
    uri: Uri,
    auth: HmacAuthenticated,
) -> Result<Response, ApiError> {
    api_version(&uri)?;
    let req: UpdateRoomRequest = auth.json_or_default()?;
    let (_, mut room) = find(&state, &room_id).await?;
    let (from, until) = rooms::updated_window(&room, &req, now_us())?;
    room.valid_from_us = from;
    room.valid_until_us = until;
    if let Some(pstn) = req.pstn_dial_out_enabled {
        room.pstn_dial_out_enabled = pstn;
    }
    state.rooms.store().update_room(&room).await?.map_err(|e| refusal(e, &room_id))?;
    json_response(StatusCode::OK, &room.to_json())
}

async fn delete_room(
    State(state): State<AppState>,
    RoomIdPath(room_id): RoomIdPath,
    uri: Uri,
    _auth: HmacAuthenticated,
) -> Result<Response, ApiError> {
    api_version(&uri)?;
    // Deleting a room that is not there (any more) is `204` like the first delete, as live
    // ACS answers a second DELETE (docs/acs-errors.md, Rooms).
    match state.rooms.store().delete_room(&room_id).await? {
        Ok(()) => tracing::info!(room_id, "room deleted"),
        Err(WriteRefusal::RoomNotFound) => tracing::debug!(room_id, "deleted a room that does not exist"),
        Err(e) => return Err(refusal(e, &room_id)),
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_participants(
    State(state): State<AppState>,
    RoomIdPath(room_id): RoomIdPath,
    uri: Uri,
    _auth: HmacAuthenticated,
) -> Result<Response, ApiError> {
    let version = api_version(&uri)?;
    let page = rooms::page_request(uri.query())?;
    let (seq, _) = find(&state, &room_id).await?;
    let rows = state.rooms.store().list_participants(seq, page.after, page.size + 1).await?;
    let more = rows.len() > page.size;
    let rows = &rows[..rows.len().min(page.size)];
    let path = format!("/rooms/{room_id}/participants");
    let next_link = (more && !rows.is_empty()).then(|| rooms::next_link(&path, version, &page, rows[rows.len() - 1].0));
    let value: Vec<ParticipantJson> =
        rows.iter().map(|(_, raw_id, role)| ParticipantJson { raw_id: raw_id.clone(), role: *role }).collect();
    json_response(StatusCode::OK, &Page { value, next_link })
}

async fn update_participants(
    State(state): State<AppState>,
    RoomIdPath(room_id): RoomIdPath,
    uri: Uri,
    auth: HmacAuthenticated,
) -> Result<Response, ApiError> {
    api_version(&uri)?;
    let req: UpdateParticipantsRequest = auth.json()?;
    let Some(map) = &req.participants else {
        return Err(
            ApiError::new(ErrorCode::InvalidParameter, "`participants` is required").with_target("participants")
        );
    };
    let changes = rooms::participant_changes(map, &state.resource.resource_id, true)?;
    state.rooms.store().patch_participants(&room_id, &changes).await?.map_err(|e| refusal(e, &room_id))?;
    json_response(StatusCode::OK, &serde_json::json!({}))
}
