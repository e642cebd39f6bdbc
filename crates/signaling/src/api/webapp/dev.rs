//! Development-only sign-in for the web client. These endpoints hand out access tokens
//! without any credential, so they exist only when the operator turned development sign-in
//! on (`[dev] sign_in = true` / `--dev-sign-in`, refused beside real tenants); otherwise they
//! answer `404 NotFound` saying so. `GET /dev/web/status` always answers, so the page can
//! tell the user which mode it is in (and show the development banner).
//!
//! They never reach an identity they did not mint ([`DevSignInGate`]): every answer carries a
//! `secret`, and a fresh token for an existing identity needs it. Each source address gets a
//! token bucket of sign-ins (`429 TooManyRequests` when it is empty).
//!
//! - `POST /dev/web/external-user` → a new external identity with a `voip`+`chat` token;
//!   with `{"rawId","secret"}`, a fresh token for that identity (token refresh).
//! - `POST /dev/web/directory-user` `{"name"}` → a new directory user (fresh oid) from the
//!   dev IdP, exchanged through the real directory exchange for a palaver token; with
//!   `{"name","oid","secret"}`, a fresh token for that user.

use crate::api::{ApiError, parse_json_or_default};
use crate::app::AppState;
use crate::auth::dev_sign_in::DevSignInGate;
use crate::auth::directory::dev_idp::DEV_APP_ID;
use crate::auth::directory::{DevTokenRequest, exchange};
use crate::domain::identity::{CreateIdentityRequest, IssueTokenRequest};
use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::Extensions;
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
    /// What a fresh token for this identity needs (`rawId`/`oid` plus this secret).
    pub secret: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ExternalUserRequest {
    raw_id: Option<String>,
    secret: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DirectoryUserRequest {
    name: Option<String>,
    oid: Option<String>,
    secret: Option<String>,
}

/// The identity service answers with JSON text (stored for repeatability); read it back.
fn dev_mode_off() -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        "development sign-in is off on this server (start it with `--dev-sign-in` for local development); \
         get an access token from your own backend",
    )
}

/// The gate, after admitting one sign-in from the caller's address (`429` when its bucket is
/// empty). Requests without a peer address (in-process tests) share one bucket.
fn admit<'a>(state: &'a AppState, extensions: &Extensions) -> Result<&'a DevSignInGate, ApiError> {
    let gate = state.auth.directory.dev_sign_in.as_ref().ok_or_else(dev_mode_off)?;
    let addr = extensions
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |ConnectInfo(peer)| peer.ip());
    if !gate.admit(addr, std::time::Instant::now()) {
        tracing::warn!(%addr, "development sign-in rate limit reached");
        return Err(ApiError::new(
            ErrorCode::TooManyRequests,
            "too many development sign-ins from this address; try again in a few seconds",
        ));
    }
    Ok(gate)
}

/// A re-issue needs the secret this sign-in handed out with the identity.
fn require_secret(gate: &DevSignInGate, raw_id: &str, secret: Option<&str>) -> Result<(), ApiError> {
    if secret.is_some_and(|s| gate.check_secret(raw_id, s)) {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::Forbidden,
            "development sign-in only refreshes identities it minted, with the `secret` it handed out",
        )
        .with_target("secret"))
    }
}

pub async fn status(State(state): State<AppState>) -> Json<DevStatus> {
    let dev_mode = state.auth.directory.dev_sign_in.is_some();
    let message = if dev_mode {
        "Development mode: development sign-in is on, so anyone who reaches this server gets tokens \
         without signing in. Never run it like this on a shared or public deployment."
    } else {
        "Development sign-in is off: open this page with a token from your own backend."
    };
    Json(DevStatus { dev_mode, message: message.to_string() })
}

/// `POST /dev/web/external-user`: empty body or `{}` for a new identity, `{"rawId","secret"}` for a
/// fresh token of an existing one.
pub async fn external_user(
    State(state): State<AppState>,
    extensions: Extensions,
    body: Bytes,
) -> Result<Json<DevSignIn>, ApiError> {
    let gate = admit(&state, &extensions)?;
    let req: ExternalUserRequest = parse_json_or_default(&body)?;
    let scopes = Some(vec!["voip".to_string(), "chat".to_string()]);
    let (raw_id, token) = match req.raw_id {
        Some(raw_id) => {
            require_secret(gate, &raw_id, req.secret.as_deref())?;
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
    let secret = gate.secret_for(&raw_id);
    Ok(Json(DevSignIn { raw_id, token: token.token, expires_on: token.expires_on, display_name: None, secret }))
}

/// `POST /dev/web/directory-user` `{"name": "Ada"}`, or `{"name","oid","secret"}` to refresh.
pub async fn directory_user(
    State(state): State<AppState>,
    extensions: Extensions,
    body: Bytes,
) -> Result<Json<DevSignIn>, ApiError> {
    let gate = admit(&state, &extensions)?;
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
        Some(oid) => {
            let oid = uuid::Uuid::parse_str(&oid)
                .map_err(|_| ApiError::new(ErrorCode::InvalidParameter, "`oid` must be a UUID").with_target("oid"))?
                .hyphenated()
                .to_string();
            require_secret(gate, &format!("8:orgid:{oid}"), req.secret.as_deref())?;
            oid
        }
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
        secret: gate.secret_for(&raw_id),
        raw_id,
        display_name: Some(name),
    }))
}
