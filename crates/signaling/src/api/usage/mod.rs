//! Usage export REST API (HMAC-authenticated, like the Identity API): the billing ledger
//! as `ACSBillingUsage`-shaped records, per-call `ACSCallSummary` rows and totals per
//! participant type.
//!
//! - `GET /usage?from=&to=[&pageToken=][&maxPageSize=][&format=json|csv]`
//! - `GET /usage/totals?from=&to=`
//! - `GET /usage/calls/{correlationId}`
//!
//! The export service ([`palaver_billing::export::UsageExport`]) is supplied by the
//! binary as an axum `Extension<Arc<UsageExport>>` layer; validation and rendering live
//! there, this module only parses, authenticates and answers.

mod query;
#[cfg(test)]
mod tests;

use crate::api::HmacAuthenticated;
use crate::api::{ApiError, api_router};
use crate::app::AppState;
use crate::store::run_blocking;
use axum::extract::{Extension, Path};
use axum::http::{HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use palaver_billing::export::{ExportError, ExportFormat, TimeRange, UsageExport, UsageRequest};
use palaver_core::ErrorCode;
use query::QueryParams;
use std::sync::Arc;

/// Header carrying the next page token of a CSV page (JSON pages carry it in the body).
pub const NEXT_PAGE_TOKEN_HEADER: &str = "x-next-page-token";

pub fn routes() -> Router<AppState> {
    api_router()
        .route("/usage", get(list_usage))
        .route("/usage/totals", get(usage_totals))
        .route("/usage/calls/{correlation_id}", get(call_summary))
}

type ExportHandle = Option<Extension<Arc<UsageExport>>>;

fn export_error(e: ExportError) -> ApiError {
    let err = ApiError::new(e.code, e.message);
    match e.target {
        Some(t) => err.with_target(t),
        None => err,
    }
}

fn service(export: ExportHandle) -> Result<Arc<UsageExport>, ApiError> {
    export.map(|Extension(e)| e).ok_or_else(|| {
        ApiError::new(ErrorCode::StorageUnavailable, "the usage ledger is not configured on this server")
    })
}

/// Run a ledger read off the async workers (the store's one blocking door).
async fn ledger<T: Send + 'static>(f: impl FnOnce() -> Result<T, ExportError> + Send + 'static) -> Result<T, ApiError> {
    run_blocking(f).await?.map_err(export_error)
}

async fn list_usage(export: ExportHandle, uri: Uri, _auth: HmacAuthenticated) -> Result<Response, ApiError> {
    let export = service(export)?;
    let params = QueryParams::parse(uri.query())?;
    let format = ExportFormat::parse(params.get("format")).map_err(export_error)?;
    let request =
        UsageRequest::parse(params.get("from"), params.get("to"), params.get("pageToken"), params.get("maxPageSize"))
            .map_err(export_error)?;
    let page_size = request.page_size;
    let page = ledger(move || export.usage(&request)).await?;
    match format {
        ExportFormat::Json => {
            let mut body = page.to_json();
            if let Some(token) = &page.next_page_token {
                body["nextLink"] = serde_json::Value::String(next_link(&params, token, page_size));
            }
            Ok(Json(body).into_response())
        }
        ExportFormat::Csv => {
            let mut resp = ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], page.to_csv()).into_response();
            if let Some(token) = &page.next_page_token
                && let Ok(v) = HeaderValue::from_str(token)
            {
                resp.headers_mut().insert(NEXT_PAGE_TOKEN_HEADER, v);
            }
            Ok(resp)
        }
    }
}

/// `/usage?...&pageToken=<token>` keeping the caller's other parameters.
fn next_link(params: &QueryParams, token: &str, page_size: usize) -> String {
    let mut parts = vec![];
    for key in ["from", "to", "format", "api-version"] {
        if let Some(v) = params.get(key) {
            parts.push(format!("{key}={}", query::encode(v)));
        }
    }
    parts.push(format!("maxPageSize={page_size}"));
    parts.push(format!("pageToken={}", query::encode(token)));
    format!("/usage?{}", parts.join("&"))
}

async fn usage_totals(export: ExportHandle, uri: Uri, _auth: HmacAuthenticated) -> Result<Response, ApiError> {
    let export = service(export)?;
    let params = QueryParams::parse(uri.query())?;
    let range = TimeRange::parse(params.get("from"), params.get("to")).map_err(export_error)?;
    let body = ledger(move || export.totals(range)).await?;
    Ok(Json(body).into_response())
}

async fn call_summary(
    export: ExportHandle,
    Path(correlation_id): Path<String>,
    _auth: HmacAuthenticated,
) -> Result<Response, ApiError> {
    let export = service(export)?;
    let body = ledger(move || export.call_summary(&correlation_id)).await?;
    Ok(Json(body).into_response())
}
