//! Usage API through the full router: authentication, paging, CSV, summaries, totals and
//! clear 4xx errors for bad input.

use crate::api::router;
use crate::api::testing::{TEST_HOST, error_code, signed, test_state};
use crate::app::AppState;
use axum::Extension;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use palaver_billing::export::UsageExport;
use palaver_billing::ledger::{LedgerOptions, SqliteLedger, UsageLedger};
use palaver_billing::meter::Meter;
use palaver_billing::pricing::Price;
use palaver_core::{CallType, EndReason, EndpointType, ParticipantType, SessionEnded, SessionStarted};
use std::sync::Arc;
use tower::ServiceExt;

const MIN: i64 = 60_000;
const T0: i64 = 1_795_255_200_000; // 2026-11-21T10:00:00Z

/// The seed example in a ledger: external user + native directory user, 10 minutes.
fn seed_export() -> Arc<UsageExport> {
    let mut ledger = SqliteLedger::open_in_memory(LedgerOptions::default()).unwrap();
    let mut meter = Meter::new(Price::default());
    let mut changes = Vec::new();
    for (id, raw, t) in
        [("ext", "8:acs:r_u1", ParticipantType::AcsAsTeamsExternalUser), ("dir", "8:orgid:o1", ParticipantType::Teams)]
    {
        changes.extend(
            meter
                .session_started(SessionStarted {
                    session_id: id.into(),
                    conversation_id: "meeting-1".into(),
                    call_type: CallType::Group,
                    participant_raw_id: raw.into(),
                    participant_type: t,
                    endpoint_type: EndpointType::Voip,
                    thread_id: None,
                    at_ms: T0,
                    phone: None,
                })
                .unwrap(),
        );
    }
    for id in ["ext", "dir"] {
        let ev = SessionEnded {
            session_id: id.into(),
            conversation_id: "meeting-1".into(),
            reason: EndReason::Left,
            at_ms: T0 + 10 * MIN,
        };
        changes.extend(meter.session_ended(ev).unwrap());
    }
    ledger.apply(&changes).unwrap();
    Arc::new(UsageExport::new(Box::new(ledger), Price::default()))
}

async fn send(
    state: &AppState,
    export: Option<Arc<UsageExport>>,
    req: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let app = match export {
        Some(e) => router(state.clone()).layer(Extension(e)),
        None => router(state.clone()),
    };
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, headers, String::from_utf8_lossy(&bytes).into_owned())
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap()
}

#[tokio::test]
async fn seed_example_exports_twenty_consumed_ten_billed() {
    let state = test_state();
    let export = seed_export();
    let (status, _, body) =
        send(&state, Some(export.clone()), signed(&state, "GET", "/usage/totals?from=2026-11-21&to=2026-11-22", ""))
            .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let totals = json(&body);
    assert_eq!(totals["total"]["consumedMinutes"], "20.000000");
    assert_eq!(totals["total"]["billedMinutes"], "10.000000");
    assert_eq!(totals["total"]["costUsd"], "0.040000");

    let (status, _, body) = send(
        &state,
        Some(export.clone()),
        signed(&state, "GET", "/usage?from=2026-11-21&to=2026-11-22&maxPageSize=1", ""),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let page = json(&body);
    assert_eq!(page["value"].as_array().unwrap().len(), 1);
    let next = page["nextLink"].as_str().unwrap().to_string();
    let (status, _, body) = send(&state, Some(export.clone()), signed(&state, "GET", &next, "")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let page2 = json(&body);
    assert_eq!(page2["value"].as_array().unwrap().len(), 1);
    assert!(page2.get("nextLink").is_none());
    assert_ne!(page["value"][0]["RecordId"], page2["value"][0]["RecordId"]);

    let (status, headers, body) = send(
        &state,
        Some(export.clone()),
        signed(&state, "GET", "/usage?from=2026-11-21&to=2026-11-22&format=csv", ""),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/csv"));
    assert_eq!(body.lines().count(), 3, "{body}");

    let (status, _, body) = send(&state, Some(export), signed(&state, "GET", "/usage/calls/meeting-1", "")).await;
    assert_eq!(status, StatusCode::OK);
    let rows = json(&body)["value"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r["CallDuration"] == 600 && r["ParticipantEndReason"] == "Left"));
}

#[tokio::test]
async fn bad_input_gets_specific_4xx_and_unsigned_requests_401() {
    let telemetry = std::sync::Arc::new(crate::api::testing::RecordingTelemetry::default());
    let parts = crate::app::AppParts { telemetry: telemetry.clone(), ..Default::default() };
    let state = AppState::open(Default::default(), crate::store::Store::open_in_memory().unwrap(), parts).unwrap();
    let export = seed_export();
    let cases = [
        ("/usage?from=yesterday&to=2026-11-22", StatusCode::BAD_REQUEST, "InvalidTimeRange"),
        ("/usage?to=2026-11-22", StatusCode::BAD_REQUEST, "InvalidTimeRange"),
        ("/usage?from=2026-11-22&to=2026-11-21", StatusCode::BAD_REQUEST, "InvalidTimeRange"),
        ("/usage?from=2025-01-01&to=2026-11-22", StatusCode::BAD_REQUEST, "InvalidTimeRange"),
        ("/usage?from=2026-11-21&to=2026-11-22&pageToken=garbage", StatusCode::BAD_REQUEST, "InvalidPageToken"),
        ("/usage?from=2026-11-21&to=2026-11-22&maxPageSize=0", StatusCode::BAD_REQUEST, "InvalidParameter"),
        ("/usage?from=2026-11-21&to=2026-11-22&format=xml", StatusCode::BAD_REQUEST, "InvalidParameter"),
        ("/usage?from=2026-11-21&from=2026-11-20&to=2026-11-22", StatusCode::BAD_REQUEST, "InvalidParameter"),
        ("/usage/totals?from=2026-11-21", StatusCode::BAD_REQUEST, "InvalidTimeRange"),
        ("/usage/calls/unknown-call", StatusCode::NOT_FOUND, "CallNotFound"),
    ];
    for (path, status, code) in cases {
        let (got, _, body) = send(&state, Some(export.clone()), signed(&state, "GET", path, "")).await;
        assert_eq!(got, status, "{path}: {body}");
        assert_eq!(error_code(&json(&body)), code, "{path}");
    }
    // every error answered is counted by code (on /metrics in the binary)
    assert_eq!(telemetry.errors(palaver_core::ErrorCode::InvalidTimeRange), 5);
    assert_eq!(telemetry.errors(palaver_core::ErrorCode::CallNotFound), 1);
    let unsigned = Request::builder()
        .uri("/usage?from=2026-11-21&to=2026-11-22")
        .header("host", TEST_HOST)
        .body(Body::empty())
        .unwrap();
    let (got, _, body) = send(&state, Some(export), unsigned).await;
    assert_eq!(got, StatusCode::UNAUTHORIZED, "{body}");
    // a server without a ledger says so instead of failing obscurely
    let (got, _, body) = send(&state, None, signed(&state, "GET", "/usage?from=2026-11-21&to=2026-11-22", "")).await;
    assert_eq!((got, error_code(&json(&body))), (StatusCode::SERVICE_UNAVAILABLE, "StorageUnavailable"));
}
