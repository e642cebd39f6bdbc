//! The reference web client, served by palaver itself: the embedded page and its files
//! ([`assets`]) at `/`, `/app/...` and `/meetings/join/{id}` (so a meeting's join link opens
//! the client), and the development-only endpoints the page uses to sign in ([`dev`]).

pub mod assets;
pub mod dev;
#[cfg(test)]
mod tests;

use crate::api::{ApiError, api_router};
use crate::app::AppState;
use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use palaver_core::ErrorCode;

/// Content-Security-Policy of every page and file: only this origin (plus the camera and
/// microphone streams and the signaling WebSocket on it); no inline script.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data: blob:; media-src 'self' blob: mediastream:; connect-src 'self'; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

pub fn routes() -> Router<AppState> {
    api_router()
        .route("/", get(index))
        .route("/app", get(index))
        .route("/app/", get(index))
        .route("/app/{file}", get(asset))
        .route("/meetings/join/{id}", get(join_link))
        .route("/dev/web/status", get(dev::status))
        .route("/dev/web/external-user", post(dev::external_user))
        .route("/dev/web/directory-user", post(dev::directory_user))
}

fn with_headers(content_type: &'static str, body: &'static str) -> Response {
    let mut resp = body.into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    resp
}

async fn index() -> Response {
    with_headers("text/html; charset=utf-8", assets::INDEX_HTML)
}

/// A meeting join link opens the client; the page reads the meeting id from its own URL
/// (the id is checked by the server when the client joins, not here).
async fn join_link(Path(_id): Path<String>) -> Response {
    with_headers("text/html; charset=utf-8", assets::INDEX_HTML)
}

async fn asset(Path(file): Path<String>) -> Result<Response, ApiError> {
    let found = assets::find(&file)
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("the web client has no file `{file}`")))?;
    Ok(with_headers(found.content_type, found.body))
}
