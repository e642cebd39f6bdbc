//! Development-only sign-in for the web client. These endpoints hand out access tokens
//! without any credential, so they exist only while the built-in development identity
//! provider is on (the embedded default); otherwise they answer `404 NotFound` saying so.
//! `GET /dev/web/status` always answers, so the page can tell the user which mode it is in.
//!
//! - `POST /dev/web/external-user` → a new external identity with a `voip`+`chat` token;
//!   with `{"rawId"}`, a fresh token for that existing identity (token refresh).
//! - `POST /dev/web/directory-user` `{"name","oid"?}` → a dev IdP token for that directory
//!   user, exchanged through the real directory exchange for a palaver token.

use crate::api::{ApiError, parse_json_or_default};
use crate::app::AppState;
use crate::auth::directory::dev_idp::DEV_APP_ID;
use crate::auth::directory::{DevTokenRequest, exchange};
use crate::domain::identity::{CreateIdentityRequest, IssueTokenRequest};
use axum::Json;
use axum::extract::State;
use bytes::Bytes;
use palaver_core::ErrorCode;
use palaver_core::time::now_ms;
use serde::{Deserialize, Serialize};

/// Lifetime of a dev-issued external-user token.
pub const EXTERNAL_TOKEN_MINUTES: i64 = 60;
/// Lifetime of a dev IdP token (and so of the exchanged directory-user token).
pub const DIRECTORY_TOKEN_SECONDS: i64 = 3600;
/// Longest accepted directory display name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

/// `GET /dev/web/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DevStatus {
    /// True while the development sign-in endpoints are available.
    pub dev_mode: bool,
    pub message: String,
}

/// A token handed to the page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DevSignIn {
    pub raw_id: String,
    pub token: String,
    pub expires_on: String,
    /// Directory users: the name the server will show; external users choose theirs on join.
    pub display_name: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ExternalUserRequest {
    raw_id: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DirectoryUserRequest {
    name: Option<String>,
    oid: Option<String>,
}

/// The identity service answers with JSON text (stored for repeatability); read it back.
fn dev_mode_off() -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        "development sign-in is off on this server (the development identity provider is disabled); \
         get an access token from your own backend",
    )
}

pub async fn status(State(state): State<AppState>) -> Json<DevStatus> {
    let dev_mode = state.auth.directory.dev_idp.is_some();
    let message = if dev_mode {
        "Development mode: tokens come from dev-only endpoints without any sign-in. Turn the development \
         identity provider off on shared deployments."
    } else {
        "Development sign-in is off: open this page with a token from your own backend."
    };
    Json(DevStatus { dev_mode, message: message.to_string() })
}

/// `POST /dev/web/external-user`: empty body or `{}` for a new identity, `{"rawId"}` for a
/// fresh token of an existing one.
pub async fn external_user(State(state): State<AppState>, body: Bytes) -> Result<Json<DevSignIn>, ApiError> {
    if state.auth.directory.dev_idp.is_none() {
        return Err(dev_mode_off());
    }
    let req: ExternalUserRequest = parse_json_or_default(&body)?;
    let scopes = Some(vec!["voip".to_string(), "chat".to_string()]);
    let (raw_id, token) = match req.raw_id {
        Some(raw_id) => {
            let req = IssueTokenRequest { scopes, expires_in_minutes: Some(EXTERNAL_TOKEN_MINUTES) };
            let token = state.identities().issue_token(&raw_id, &req, None, now_ms()).await?;
            (raw_id, token)
        }
        None => {
            let req = CreateIdentityRequest {
                create_token_with_scopes: scopes,
                expires_in_minutes: Some(EXTERNAL_TOKEN_MINUTES),
            };
            let created = state.identities().create(&req, None, now_ms()).await?;
            tracing::info!(identity = %created.identity.id, "web client: dev external user created");
            let token =
                created.access_token.ok_or_else(|| ApiError::internal("identity was created without a token"))?;
            (created.identity.id, token)
        }
    };
    Ok(Json(DevSignIn { raw_id, token: token.token, expires_on: token.expires_on, display_name: None }))
}

/// `POST /dev/web/directory-user` `{"name": "Ada", "oid"?: "<uuid>"}`.
pub async fn directory_user(State(state): State<AppState>, body: Bytes) -> Result<Json<DevSignIn>, ApiError> {
    let idp = state.auth.directory.dev_idp.as_ref().ok_or_else(dev_mode_off)?;
    let req: DirectoryUserRequest = parse_json_or_default(&body)?;
    let name = req.name.as_deref().map(str::trim).unwrap_or_default().to_string();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(ApiError::new(
            ErrorCode::InvalidParameter,
            format!("`name` must be 1 to {MAX_NAME_CHARS} printable characters"),
        )
        .with_target("name"));
    }
    let oid = match req.oid {
        Some(oid) => uuid::Uuid::parse_str(&oid)
            .map_err(|_| ApiError::new(ErrorCode::InvalidParameter, "`oid` must be a UUID").with_target("oid"))?
            .hyphenated()
            .to_string(),
        None => uuid::Uuid::new_v4().to_string(),
    };
    let now = now_ms();
    let minted = idp
        .mint(
            &DevTokenRequest {
                oid: oid.clone(),
                name: name.clone(),
                lifetime_seconds: Some(DIRECTORY_TOKEN_SECONDS),
                ..DevTokenRequest::default()
            },
            now.div_euclid(1000),
        )
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let issued = exchange(&state, &minted.token, DEV_APP_ID, &oid, now).await?;
    let raw_id = issued.claims.raw_id();
    tracing::info!(identity = %raw_id, "web client: dev directory user signed in");
    Ok(Json(DevSignIn {
        token: issued.token.clone(),
        expires_on: issued.expires_on(),
        raw_id,
        display_name: Some(name),
    }))
}
