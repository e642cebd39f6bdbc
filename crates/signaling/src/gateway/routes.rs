//! The socket endpoints: `/signaling/v1` (access token with `voip` or `voip.join`, as
//! `Authorization: Bearer` or `?access_token=`) and `/signaling/v1/native` (the native
//! directory client: an IdP token, as `Authorization: Bearer` or `?idp_token=`;
//! participant type `Teams`, not billed). Authentication happens before the upgrade:
//! a refused socket gets an HTTP error with the ACS error body.

use super::connection::{self, AuthPath, ConnIdentity};
use crate::auth::authenticate_token;
use crate::conversation::JoinIdentity;
use crate::http::{ApiError, AppState, api_router, now_ms};
use axum::Router;
use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use palaver_core::{CommunicationIdentifier, ErrorCode, Scope, ScopeSet};
use std::collections::HashMap;

/// Largest WebSocket message the transport reads at all; anything between
/// `MAX_FRAME_BYTES` (64 KiB) and this gets a `PayloadTooLarge` error frame, anything
/// larger drops the connection.
pub const MAX_SOCKET_MESSAGE_BYTES: usize = 1024 * 1024;
/// Bytes a WebSocket read asks the kernel for at once. The frame codec zero-fills this much
/// before every read (tungstenite's default is 128 KiB, so every wake of every connection
/// cleared 128 KiB: 4 % of the server's CPU with 200 idle participants); frames larger than
/// this still arrive, the buffer grows for them.
const SOCKET_READ_BUFFER_BYTES: usize = 8 * 1024;

pub fn routes() -> Router<AppState> {
    api_router().route("/signaling/v1", get(access_token_socket)).route("/signaling/v1/native", get(native_socket))
}

fn token_from(headers: &HeaderMap, query: &HashMap<String, String>, param: &str) -> Result<String, ApiError> {
    if let Some(v) = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        return v.strip_prefix("Bearer ").map(|t| t.trim().to_string()).ok_or_else(|| {
            ApiError::new(ErrorCode::InvalidAuthentication, "expected `Authorization: Bearer <token>`")
        });
    }
    query
        .get(param)
        .filter(|t| !t.is_empty())
        .cloned()
        .ok_or_else(|| ApiError::new(ErrorCode::MissingAuthentication, format!("send a bearer token or `?{param}=`")))
}

fn upgrade(state: AppState, ident: ConnIdentity, ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>) -> Response {
    match ws {
        Ok(ws) => ws
            .max_message_size(MAX_SOCKET_MESSAGE_BYTES)
            .max_frame_size(MAX_SOCKET_MESSAGE_BYTES)
            .read_buffer_size(SOCKET_READ_BUFFER_BYTES)
            .on_upgrade(move |socket| connection::run(state, ident, socket)),
        Err(e) => ApiError::new(ErrorCode::BadRequest, format!("a WebSocket upgrade is required: {e}")).into_response(),
    }
}

async fn access_token_socket(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let token = token_from(&headers, &query, "access_token")?;
    let ident = verify_access_token(&state, &token, now_ms())?;
    Ok(upgrade(state, ident, ws))
}

async fn native_socket(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let token = token_from(&headers, &query, "idp_token")?;
    let ident = verify_native_token(&state, &token, now_ms()).await?;
    Ok(upgrade(state, ident, ws))
}

/// A palaver access token that may take part in calls (`voip` or `voip.join`): the identity a
/// WebSocket upgrade or a QUIC `auth` frame authenticates as.
pub fn verify_access_token(state: &AppState, token: &str, now: i64) -> Result<ConnIdentity, ApiError> {
    let user = authenticate_token(state, token, now)?;
    let scopes = user.scopes();
    if !scopes.allows_calling() {
        return Err(ApiError::new(ErrorCode::InsufficientScope, "signaling needs a token with `voip` or `voip.join`"));
    }
    let native_client = user.claims.native && user.identifier.is_directory_user();
    Ok(ConnIdentity {
        identity: JoinIdentity {
            identifier: user.identifier,
            directory_name: user.claims.name,
            tenant_id: user.claims.tid,
            native_client,
            token_expires_at_ms: user.claims.exp.saturating_mul(1000),
        },
        scopes,
        path: AuthPath::AccessToken,
    })
}

/// An IdP token presented directly by a native directory client.
pub(crate) async fn verify_native_token(state: &AppState, token: &str, now: i64) -> Result<ConnIdentity, ApiError> {
    let user = crate::directory::validate_native(state, token, now).await?;
    let identifier = CommunicationIdentifier::parse(&user.raw_id())
        .map_err(|e| ApiError::new(ErrorCode::InvalidIdpToken, format!("bad directory user id: {e}")))?;
    Ok(ConnIdentity {
        identity: JoinIdentity {
            identifier,
            directory_name: user.name,
            tenant_id: Some(user.tenant_id),
            native_client: true,
            token_expires_at_ms: user.expires_at.saturating_mul(1000),
        },
        scopes: ScopeSet::empty().with(Scope::Voip).with(Scope::Chat),
        path: AuthPath::NativeIdp,
    })
}
