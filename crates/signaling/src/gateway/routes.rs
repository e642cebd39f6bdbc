//! The socket endpoints: `/signaling/v1` (access token with `voip` or `voip.join`, as
//! `Authorization: Bearer` or `?access_token=`) and `/signaling/v1/native` (the native
//! directory client: an IdP token, as `Authorization: Bearer` or `?idp_token=`;
//! participant type `Teams`, not billed). Authentication happens before the upgrade:
//! a refused socket gets an HTTP error with the ACS error body.

use super::connection::{self, ConnIdentity};
use crate::api::{ApiError, api_router};
use crate::app::AppState;
use crate::auth::{Credential, Door, bearer_token};
use crate::domain::Refusal;
use crate::domain::conversation::JoinIdentity;
use axum::Router;
use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use palaver_core::ErrorCode;
use palaver_core::time::now_ms;
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

/// The credential of an upgrade: `Authorization: Bearer` (the one parser), else `?{param}=`.
fn token_from<'a>(
    headers: &'a HeaderMap,
    query: &'a HashMap<String, String>,
    param: &str,
) -> Result<&'a str, ApiError> {
    if let Some(v) = headers.get(axum::http::header::AUTHORIZATION) {
        let v = v
            .to_str()
            .map_err(|_| ApiError::new(ErrorCode::InvalidAuthentication, "the Authorization header is not ASCII"))?;
        return bearer_token(v);
    }
    query
        .get(param)
        .map(String::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::new(ErrorCode::MissingAuthentication, format!("send a bearer token or `?{param}=`")))
}

/// Upgrade an authenticated request, unless its identity already holds its maximum of open
/// sockets (`429 TooManyRequests` before the upgrade; QUIC connections meet the same cap
/// when they register).
fn upgrade(state: AppState, ident: ConnIdentity, ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>) -> Response {
    if let Err(refusal) = state.gateway.check_socket_cap(&ident.raw_id()) {
        return refusal.into_response();
    }
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
    let ident = authenticate(&state, Credential::AccessToken(token), now_ms()).await?;
    Ok(upgrade(state, ident, ws))
}

async fn native_socket(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let token = token_from(&headers, &query, "idp_token")?;
    let ident = authenticate(&state, Credential::IdpToken(token), now_ms()).await?;
    Ok(upgrade(state, ident, ws))
}

/// Who a signaling connection (WebSocket upgrade, QUIC `auth` frame, token refresh) is, through
/// the one [`Authenticator`](crate::auth::Authenticator): an access token must allow calling
/// (`voip` or `voip.join`); an IdP token is a native directory client (`Teams`, not billed).
pub async fn authenticate(state: &AppState, credential: Credential<'_>, now: i64) -> Result<ConnIdentity, Refusal> {
    let token = match credential {
        Credential::AccessToken(t) | Credential::IdpToken(t) => t.to_string(),
    };
    let principal = state.auth.verify(credential, now).await?;
    if principal.door == Door::AccessToken && !principal.scopes.allows_calling() {
        return Err(Refusal::new(ErrorCode::InsufficientScope, "signaling needs a token with `voip` or `voip.join`"));
    }
    let native_client = match principal.door {
        Door::AccessToken => principal.native && principal.identifier.is_directory_user(),
        Door::NativeIdp => true,
    };
    Ok(ConnIdentity {
        identity: JoinIdentity {
            identifier: principal.identifier,
            directory_name: principal.display_name,
            tenant_id: principal.tenant_id,
            native_client,
            token_expires_at_ms: principal.expires_at_ms,
        },
        scopes: principal.scopes,
        door: principal.door,
        issued_at_ms: principal.issued_at_ms,
        credential: Some(super::RelayCredential { door: principal.door, token }),
        relayed: false,
    })
}
