//! Usage export domain (no HTTP): validated queries, opaque page tokens, JSON and CSV
//! rendering, per-call summaries and totals per participant type.
//!
//! Rules: `from` and `to` are RFC 3339 timestamps or `YYYY-MM-DD` dates (UTC midnight),
//! `from < to`, and the range is at most [`MAX_RANGE_DAYS`] days (a calendar month fits);
//! records are selected by `StartTime` in `[from, to)`. Pages hold at most
//! [`MAX_PAGE_SIZE`] records; the page token is opaque (base64url JSON) and only valid
//! for the same `from`/`to` it was issued for.

use crate::ledger::{LedgerError, UsageLedger, UsageQuery};
use crate::pricing::{Price, format_minutes, format_usd};
use crate::records::{CallSummary, CallSummaryView, TypeTotals, UsageRecord, UsageRecordView, rfc3339_ms};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use palaver_core::ErrorCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Mutex;

/// Longest accepted export range.
pub const MAX_RANGE_DAYS: i64 = 31;
pub const DEFAULT_PAGE_SIZE: usize = 1000;
pub const MAX_PAGE_SIZE: usize = 5000;
const MS_PER_DAY: i64 = 86_400_000;

/// A rejected export request or a storage failure, with its ACS error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ExportError {
    pub code: ErrorCode,
    pub message: String,
    /// The offending query parameter.
    pub target: Option<&'static str>,
}

impl ExportError {
    fn new(code: ErrorCode, target: Option<&'static str>, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), target }
    }
}

impl From<LedgerError> for ExportError {
    fn from(e: LedgerError) -> Self {
        tracing::error!(error = %e, "usage ledger read failed");
        Self::new(ErrorCode::StorageUnavailable, None, "the usage ledger is unavailable, retry later")
    }
}

/// Parse an RFC 3339 timestamp or a `YYYY-MM-DD` date (UTC midnight) to epoch ms.
pub fn parse_time(name: &'static str, text: &str) -> Result<i64, ExportError> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_millis());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        && let Some(t) = d.and_hms_opt(0, 0, 0)
    {
        return Ok(t.and_utc().timestamp_millis());
    }
    Err(ExportError::new(
        ErrorCode::InvalidTimeRange,
        Some(name),
        format!("`{name}` must be an RFC 3339 timestamp (2026-11-21T00:00:00Z) or a date (2026-11-21), got `{text}`"),
    ))
}

/// A validated time range `[from_ms, to_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub from_ms: i64,
    pub to_ms: i64,
}

impl TimeRange {
    pub fn parse(from: Option<&str>, to: Option<&str>) -> Result<Self, ExportError> {
        let from =
            from.ok_or_else(|| ExportError::new(ErrorCode::InvalidTimeRange, Some("from"), "`from` is required"))?;
        let to = to.ok_or_else(|| ExportError::new(ErrorCode::InvalidTimeRange, Some("to"), "`to` is required"))?;
        Self::new(parse_time("from", from)?, parse_time("to", to)?)
    }

    pub fn new(from_ms: i64, to_ms: i64) -> Result<Self, ExportError> {
        if from_ms >= to_ms {
            return Err(ExportError::new(ErrorCode::InvalidTimeRange, Some("to"), "`to` must be after `from`"));
        }
        if to_ms - from_ms > MAX_RANGE_DAYS * MS_PER_DAY {
            return Err(ExportError::new(
                ErrorCode::InvalidTimeRange,
                Some("to"),
                format!("the range may span at most {MAX_RANGE_DAYS} days; page through longer periods range by range"),
            ));
        }
        Ok(Self { from_ms, to_ms })
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct PageTokenBody {
    v: u8,
    f: i64,
    t: i64,
    s: i64,
    r: String,
}

/// Encode the position after `last` for `range`.
pub fn encode_page_token(range: TimeRange, last: &UsageRecord) -> String {
    let body = PageTokenBody { v: 1, f: range.from_ms, t: range.to_ms, s: last.start_ms, r: last.record_id.clone() };
    B64URL.encode(serde_json::to_vec(&body).unwrap_or_default())
}

/// Decode a page token; it must be well-formed and issued for this exact range.
pub fn decode_page_token(range: TimeRange, token: &str) -> Result<(i64, String), ExportError> {
    let bad = |why: &str| {
        ExportError::new(ErrorCode::InvalidPageToken, Some("pageToken"), format!("page token is not valid: {why}"))
    };
    if token.is_empty() {
        return Err(bad("empty"));
    }
    if token.len() > 512 {
        return Err(bad("too long"));
    }
    let bytes = B64URL.decode(token).map_err(|_| bad("not base64url"))?;
    let body: PageTokenBody = serde_json::from_slice(&bytes).map_err(|_| bad("unreadable"))?;
    if body.v != 1 {
        return Err(bad("unknown version"));
    }
    if body.f != range.from_ms || body.t != range.to_ms {
        return Err(bad("issued for a different `from`/`to`"));
    }
    if body.s < range.from_ms || body.s >= range.to_ms || uuid::Uuid::parse_str(&body.r).is_err() {
        return Err(bad("position outside the range"));
    }
    Ok((body.s, body.r))
}

/// Output format of the usage listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Json,
    Csv,
}

impl ExportFormat {
    pub fn parse(text: Option<&str>) -> Result<Self, ExportError> {
        match text.map(str::to_ascii_lowercase).as_deref() {
            None | Some("json") => Ok(Self::Json),
            Some("csv") => Ok(Self::Csv),
            Some(other) => Err(ExportError::new(
                ErrorCode::InvalidParameter,
                Some("format"),
                format!("`format` must be `json` or `csv`, got `{other}`"),
            )),
        }
    }
}

/// A validated usage listing request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRequest {
    pub range: TimeRange,
    pub after: Option<(i64, String)>,
    pub page_size: usize,
}

impl UsageRequest {
    /// From the raw query parameters `from`, `to`, `pageToken`, `maxPageSize`.
    pub fn parse(
        from: Option<&str>,
        to: Option<&str>,
        page_token: Option<&str>,
        max_page_size: Option<&str>,
    ) -> Result<Self, ExportError> {
        let range = TimeRange::parse(from, to)?;
        let page_size = match max_page_size {
            None => DEFAULT_PAGE_SIZE,
            Some(text) => match text.parse::<usize>() {
                Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => n,
                _ => {
                    return Err(ExportError::new(
                        ErrorCode::InvalidParameter,
                        Some("maxPageSize"),
                        format!("`maxPageSize` must be an integer from 1 to {MAX_PAGE_SIZE}"),
                    ));
                }
            },
        };
        let after = match page_token {
            None => None,
            Some(t) => Some(decode_page_token(range, t)?),
        };
        Ok(Self { range, after, page_size })
    }
}

/// One page of usage records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsagePage {
    pub records: Vec<UsageRecord>,
    pub next_page_token: Option<String>,
}

impl UsagePage {
    /// `{"value":[...],"nextPageToken"?}` with `ACSBillingUsage` field names.
    pub fn to_json(&self) -> Value {
        let value: Vec<UsageRecordView> = self.records.iter().map(UsageRecordView::from).collect();
        match &self.next_page_token {
            Some(t) => json!({ "value": value, "nextPageToken": t }),
            None => json!({ "value": value }),
        }
    }

    /// RFC 4180 CSV with a header row (the next page token travels in a response header).
    pub fn to_csv(&self) -> String {
        let mut out = String::from(CSV_HEADER);
        out.push_str("\r\n");
        for r in &self.records {
            let v = UsageRecordView::from(r);
            let fields = [
                v.record_id,
                v.correlation_id,
                v.start_time,
                v.end_time,
                v.operation_name.to_string(),
                v.usage_type.to_string(),
                v.unit_type.to_string(),
                v.quantity,
                v.participant_id,
                v.user_id_a,
                String::new(),
                v.participant_type.to_string(),
                v.endpoint_type.to_string(),
                v.billable.to_string(),
                v.duration_ms.to_string(),
                v.unit_price_usd,
                v.cost_usd,
                v.phone_number.unwrap_or_default(),
                v.trunk.unwrap_or_default(),
                v.direction.unwrap_or_default().to_string(),
            ];
            let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
            out.push_str(&line.join(","));
            out.push_str("\r\n");
        }
        out
    }
}

pub const CSV_HEADER: &str = "RecordId,CorrelationId,StartTime,EndTime,OperationName,UsageType,UnitType,Quantity,ParticipantId,UserIdA,UserIdB,ParticipantType,EndpointType,Billable,DurationMs,UnitPriceUsd,CostUsd,PhoneNumber,Trunk,Direction";

/// Quote a CSV field when needed; neutralise spreadsheet formulas in text fields.
fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@']) && text.parse::<f64>().is_err() {
        format!("'{text}")
    } else {
        text.to_string()
    };
    if text.contains([',', '"', '\r', '\n']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text }
}

/// The export service the HTTP layer calls; owns its own ledger connection.
pub struct UsageExport {
    ledger: Mutex<Box<dyn UsageLedger>>,
    price: Price,
}

impl UsageExport {
    pub fn new(ledger: Box<dyn UsageLedger>, price: Price) -> Self {
        Self { ledger: Mutex::new(ledger), price }
    }

    fn with_ledger<T>(&self, f: impl FnOnce(&dyn UsageLedger) -> Result<T, LedgerError>) -> Result<T, ExportError> {
        let guard = self.ledger.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok(f(guard.as_ref())?)
    }

    pub fn usage(&self, req: &UsageRequest) -> Result<UsagePage, ExportError> {
        let query = UsageQuery {
            from_ms: req.range.from_ms,
            to_ms: req.range.to_ms,
            after: req.after.clone(),
            limit: req.page_size + 1,
        };
        let mut records = self.with_ledger(|l| l.usage_page(&query))?;
        let next_page_token = if records.len() > req.page_size {
            records.truncate(req.page_size);
            records.last().map(|last| encode_page_token(req.range, last))
        } else {
            None
        };
        Ok(UsagePage { records, next_page_token })
    }

    /// `{"correlationId", "value":[ACSCallSummary...]}`; unknown ids are `CallNotFound`.
    pub fn call_summary(&self, correlation_id: &str) -> Result<Value, ExportError> {
        if correlation_id.is_empty() || correlation_id.len() > 256 {
            return Err(ExportError::new(
                ErrorCode::InvalidParameter,
                Some("correlationId"),
                "correlation id must be 1..=256 characters",
            ));
        }
        let rows: Vec<CallSummary> = self.with_ledger(|l| l.call_summaries(correlation_id))?;
        if rows.is_empty() {
            return Err(ExportError::new(
                ErrorCode::CallNotFound,
                None,
                format!("no call with correlation id `{correlation_id}`"),
            ));
        }
        let value: Vec<CallSummaryView> = rows.iter().map(CallSummaryView::from).collect();
        Ok(json!({ "correlationId": correlation_id, "value": value }))
    }

    /// Totals per participant type over `range`, plus the grand total.
    pub fn totals(&self, range: TimeRange) -> Result<Value, ExportError> {
        let totals = self.with_ledger(|l| l.totals(range.from_ms, range.to_ms))?;
        Ok(totals_json(range, self.price, &totals))
    }
}

fn totals_row(t: &TypeTotals) -> Value {
    json!({
        "participantType": t.participant_type.as_str(),
        "label": t.participant_type.label(),
        "billable": t.participant_type.is_billable(),
        "records": t.records,
        "consumedMs": t.consumed_ms,
        "consumedMinutes": format_minutes(t.consumed_ms),
        "billedMinutes": format_minutes(t.billed_ms),
        "costUsd": format_usd(t.cost_micro_usd),
    })
}

fn totals_json(range: TimeRange, price: Price, totals: &[TypeTotals]) -> Value {
    let consumed: i64 = totals.iter().map(|t| t.consumed_ms).sum();
    let billed: i64 = totals.iter().map(|t| t.billed_ms).sum();
    let cost: i64 = totals.iter().map(|t| t.cost_micro_usd).sum();
    json!({
        "from": rfc3339_ms(range.from_ms),
        "to": rfc3339_ms(range.to_ms),
        "currentUnitPriceUsd": format_usd(price.micro_usd_per_minute),
        "value": totals.iter().map(totals_row).collect::<Vec<_>>(),
        "total": {
            "consumedMinutes": format_minutes(consumed),
            "billedMinutes": format_minutes(billed),
            "costUsd": format_usd(cost),
        },
    })
}

#[cfg(test)]
mod tests;
