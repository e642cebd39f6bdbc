//! [`ChatRequest`]: the part every chat handler needs, extracted once — the app state, the
//! path parameters, the caller (Bearer access token), the checked `api-version`, the parsed
//! query — and the per-identity rate limit of the operation the route serves (`429
//! TooManyRequests` with `Retry-After`, `crate::domain::chat::rate_limit`).

use super::API_VERSIONS;
use crate::api::{ApiError, require_api_version};
use crate::app::AppState;
use crate::auth::Principal;
use crate::domain::chat::{Caller, ChatOperation, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use axum::extract::{FromRequestParts, MatchedPath, Path};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, Uri, header};
use axum::response::{IntoResponse, Response};
use palaver_core::ErrorCode;
use palaver_core::time::now_ms;
use serde::de::DeserializeOwned;

/// Path parameters of a chat route: `()` (`/chat/threads`), [`ThreadPath`] or [`ItemPath`].
pub(crate) trait ChatPath: Sized + Send {
    fn extract(parts: &mut Parts, state: &AppState) -> impl Future<Output = Result<Self, ApiError>> + Send;
    /// The thread the request is about, if any.
    fn thread_id(&self) -> Option<&str>;
}

/// `/chat/threads/{thread_id}…` (percent-decoded).
#[derive(Debug, serde::Deserialize)]
pub(crate) struct ThreadPath {
    pub thread_id: String,
}

/// `/chat/threads/{thread_id}/messages/{message_id}` and `…/participants/{action}`: the
/// thread and the item (message id, or `:add` / `:remove`).
#[derive(Debug, serde::Deserialize)]
pub(crate) struct ItemPath {
    pub thread_id: String,
    #[serde(alias = "message_id", alias = "action")]
    pub item: String,
}

async fn path_of<T: DeserializeOwned + Send>(parts: &mut Parts, state: &AppState) -> Result<T, ApiError> {
    Path::<T>::from_request_parts(parts, state)
        .await
        .map(|p| p.0)
        .map_err(|e| ApiError::new(ErrorCode::InvalidParameter, format!("bad path: {}", e.body_text())))
}

impl ChatPath for () {
    async fn extract(_: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        Ok(())
    }
    fn thread_id(&self) -> Option<&str> {
        None
    }
}

impl ChatPath for ThreadPath {
    async fn extract(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        path_of(parts, state).await
    }
    fn thread_id(&self) -> Option<&str> {
        Some(&self.thread_id)
    }
}

impl ChatPath for ItemPath {
    async fn extract(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        path_of(parts, state).await
    }
    fn thread_id(&self) -> Option<&str> {
        Some(&self.thread_id)
    }
}

/// A chat request: state, path `P`, caller, query. Extract it before the body.
pub(crate) struct ChatRequest<P = ()> {
    pub state: AppState,
    pub path: P,
    pub uri: Uri,
    pub caller: Caller,
    pub display_name: Option<String>,
    /// The token came through the native directory-client path (billing: unbilled).
    pub native: bool,
    pub query: Vec<(String, String)>,
}

impl<P: ChatPath> FromRequestParts<AppState> for ChatRequest<P> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let path = P::extract(parts, state).await.map_err(IntoResponse::into_response)?;
        let user = Principal::from_request_parts(parts, state).await.map_err(IntoResponse::into_response)?;
        require_api_version(parts.uri.query(), API_VERSIONS).map_err(IntoResponse::into_response)?;
        let query =
            axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&parts.uri).map(|q| q.0).map_err(|e| {
                ApiError::new(ErrorCode::BadRequest, format!("malformed query string: {e}")).into_response()
            })?;
        let caller = Caller { raw_id: user.identifier.raw_id(), scopes: user.scopes };
        let route = parts.extensions.get::<MatchedPath>().map(MatchedPath::as_str).unwrap_or_default();
        if let Some(op) = operation(&parts.method, route, &parts.uri) {
            state.chat.limits().check(&caller.raw_id, path.thread_id(), op, now_ms()).map_err(|limited| {
                tracing::info!(caller = %caller.raw_id, rule = limited.rule, limit = limited.limit, "chat rate limit hit");
                let mut resp = ApiError::new(
                    ErrorCode::TooManyRequests,
                    format!(
                        "too many requests: at most {} per {} s ({}); retry in {} s",
                        limited.limit,
                        crate::domain::chat::rate_limit::WINDOW_MS / 1000,
                        limited.rule,
                        limited.retry_after_secs
                    ),
                )
                .into_response();
                resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(limited.retry_after_secs));
                resp
            })?;
        }
        Ok(Self {
            state: state.clone(),
            path,
            uri: parts.uri.clone(),
            caller,
            display_name: user.display_name,
            native: user.native,
            query,
        })
    }
}

/// The chat operation a route and method serve (routes in `super::routes`).
fn operation(method: &Method, route: &str, uri: &Uri) -> Option<ChatOperation> {
    use ChatOperation::*;
    let tail = route.strip_prefix("/chat/threads")?;
    Some(match (tail, method.as_str()) {
        ("", "POST") => CreateThread,
        ("", "GET") => ListThreads,
        ("/{thread_id}", "GET") => GetThread,
        ("/{thread_id}", "PATCH") => UpdateTopic,
        ("/{thread_id}", "DELETE") => DeleteThread,
        ("/{thread_id}/messages", "POST") => SendMessage,
        ("/{thread_id}/messages", "GET") | ("/{thread_id}/messages/{message_id}", "GET") => ReadMessages,
        ("/{thread_id}/messages/{message_id}", "PATCH") => EditMessage,
        ("/{thread_id}/messages/{message_id}", "DELETE") => DeleteMessage,
        ("/{thread_id}/participants", "GET") => ListParticipants,
        ("/{thread_id}/participants/{action}", "POST") if uri.path().ends_with(":remove") => RemoveParticipant,
        ("/{thread_id}/participants/{action}", "POST") => AddParticipants,
        ("/{thread_id}/readReceipts", "POST") => SendReadReceipt,
        ("/{thread_id}/readReceipts", "GET") => ListReadReceipts,
        ("/{thread_id}/typing", "POST") => SendTyping,
        _ => return None,
    })
}

impl<P> ChatRequest<P> {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// `maxPageSize` (1..=200; default 100).
    pub fn page_size(&self) -> Result<usize, ApiError> {
        match self.param("maxPageSize") {
            None => Ok(DEFAULT_PAGE_SIZE),
            Some(v) => v.parse().ok().filter(|n| (1..=MAX_PAGE_SIZE).contains(n)).ok_or_else(|| {
                ApiError::new(ErrorCode::InvalidParameter, format!("maxPageSize must be 1..={MAX_PAGE_SIZE}"))
                    .with_target("maxPageSize")
            }),
        }
    }

    /// `skip` (participants, read receipts): a non-negative integer.
    pub fn skip(&self) -> Result<usize, ApiError> {
        match self.param("skip") {
            None => Ok(0),
            Some(v) => v.parse().map_err(|_| {
                ApiError::new(ErrorCode::InvalidParameter, "skip must be a non-negative integer").with_target("skip")
            }),
        }
    }

    /// `startTime` in ms, if given.
    pub fn start_ms(&self) -> Result<Option<i64>, ApiError> {
        self.param("startTime").map(|v| super::parse_time_ms(v, "startTime")).transpose()
    }
}
