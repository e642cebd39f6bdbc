//! Test helpers (unit tests only): a full `AppState` on an in-memory database and
//! HMAC-signed requests driven through the router without a socket.

use super::router;
use crate::app::{AppParts, AppState, SignalingConfig};
use crate::auth::hmac::{authorization_header, content_hash};
use crate::store::Store;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use tower::ServiceExt;

pub const TEST_HOST: &str = "127.0.0.1:4443";

/// A state on a fresh in-memory database (dev IdP on).
pub fn test_state() -> AppState {
    AppState::open(SignalingConfig::default(), Store::open_in_memory().expect("in-memory db"), AppParts::default())
        .expect("state")
}

/// A request signed with the state's access key, as the SDK signs it.
pub fn signed(state: &AppState, method: &str, path_and_query: &str, body: &str) -> Request<Body> {
    let key = base64::engine::general_purpose::STANDARD.decode(&state.resource.access_key).expect("key");
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let hash = content_hash(body.as_bytes());
    let auth = authorization_header(&key, method, path_and_query, &date, TEST_HOST, &hash);
    Request::builder()
        .method(method)
        .uri(path_and_query)
        .header("host", TEST_HOST)
        .header("x-ms-date", date)
        .header("x-ms-content-sha256", hash)
        .header("authorization", auth)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("request")
}

/// Send a request through the full router; returns status and JSON body (Null when empty).
pub async fn send(state: &AppState, req: Request<Body>) -> (StatusCode, serde_json::Value) {
    let resp = router(state.clone()).oneshot(req).await.expect("infallible");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.expect("body");
    let json = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    (status, json)
}

/// The `error.code` of an ACS error body.
pub fn error_code(body: &serde_json::Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error code>")
}

/// A `SignalingTelemetry` that remembers what it was told (what `/metrics` would show).
#[derive(Debug, Default)]
pub struct RecordingTelemetry {
    pub joins: std::sync::atomic::AtomicU64,
    pub active_meetings: std::sync::atomic::AtomicUsize,
    pub lobby_size: std::sync::atomic::AtomicUsize,
    pub errors: std::sync::Mutex<std::collections::HashMap<palaver_core::ErrorCode, u64>>,
}

impl RecordingTelemetry {
    /// Errors answered with `code` so far.
    pub fn errors(&self, code: palaver_core::ErrorCode) -> u64 {
        self.errors.lock().unwrap().get(&code).copied().unwrap_or(0)
    }
    pub fn lobby_size(&self) -> usize {
        self.lobby_size.load(std::sync::atomic::Ordering::SeqCst)
    }
    pub fn active_meetings(&self) -> usize {
        self.active_meetings.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl palaver_core::SignalingTelemetry for RecordingTelemetry {
    fn join_completed(&self, _latency: std::time::Duration) {
        self.joins.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    fn error_answered(&self, code: palaver_core::ErrorCode) {
        *self.errors.lock().unwrap().entry(code).or_default() += 1;
    }
    fn active_meetings(&self, count: usize) {
        self.active_meetings.store(count, std::sync::atomic::Ordering::SeqCst);
    }
    fn lobby_size(&self, count: usize) {
        self.lobby_size.store(count, std::sync::atomic::Ordering::SeqCst);
    }
}
