//! Export tests: validation errors, paging through a ledger, CSV, summaries, totals.

use super::*;
use crate::ledger::{LedgerOptions, SqliteLedger};
use crate::meter::Meter;
use palaver_core::{EndReason, EndpointType, ParticipantType, SessionEnded, SessionStarted};

const MIN: i64 = 60_000;
const T0: i64 = 1_795_255_200_000; // 2026-11-21T10:00:00Z

fn code(r: Result<impl std::fmt::Debug, ExportError>) -> ErrorCode {
    r.unwrap_err().code
}

#[test]
fn bad_dates_and_ranges_are_invalid_time_range() {
    assert_eq!(code(TimeRange::parse(Some("yesterday"), Some("2026-11-21"))), ErrorCode::InvalidTimeRange);
    assert_eq!(code(TimeRange::parse(Some("2026-13-01"), Some("2026-11-21"))), ErrorCode::InvalidTimeRange);
    assert_eq!(code(TimeRange::parse(None, Some("2026-11-21"))), ErrorCode::InvalidTimeRange);
    assert_eq!(code(TimeRange::parse(Some("2026-11-21"), None)), ErrorCode::InvalidTimeRange);
    assert_eq!(code(TimeRange::parse(Some("2026-11-21"), Some("2026-11-21"))), ErrorCode::InvalidTimeRange);
    assert_eq!(code(TimeRange::parse(Some("2026-11-22"), Some("2026-11-21"))), ErrorCode::InvalidTimeRange);
    let huge = TimeRange::parse(Some("2026-01-01"), Some("2026-12-31")).unwrap_err();
    assert_eq!((huge.code, huge.target), (ErrorCode::InvalidTimeRange, Some("to")));
    assert!(huge.message.contains("31 days"));
    // a full 31-day month is fine, as are RFC 3339 timestamps with offsets
    let month = TimeRange::parse(Some("2026-12-01"), Some("2027-01-01")).unwrap();
    assert_eq!(month.to_ms - month.from_ms, 31 * 86_400_000);
    let r = TimeRange::parse(Some("2026-11-21T10:00:00+02:00"), Some("2026-11-21T09:00:00Z")).unwrap();
    assert_eq!(r.to_ms - r.from_ms, MIN * 60);
}

#[test]
fn bad_page_tokens_and_sizes_are_refused() {
    let parse = |token: Option<&str>, size: Option<&str>| {
        UsageRequest::parse(Some("2026-11-21"), Some("2026-11-22"), token, size)
    };
    assert_eq!(code(parse(Some("not a token!"), None)), ErrorCode::InvalidPageToken);
    assert_eq!(code(parse(Some(""), None)), ErrorCode::InvalidPageToken);
    assert_eq!(code(parse(Some(&"A".repeat(600)), None)), ErrorCode::InvalidPageToken);
    assert_eq!(code(parse(Some("eyJ2IjoxfQ"), None)), ErrorCode::InvalidPageToken); // {"v":1}
    // a token from another range is refused
    let range = TimeRange::parse(Some("2026-11-20"), Some("2026-11-21")).unwrap();
    let other = UsageRecord {
        record_id: uuid::Uuid::nil().to_string(),
        kind: crate::records::UsageKind::ParticipantMinutes,
        correlation_id: "c".into(),
        participant_id: "p".into(),
        segment: 0,
        start_ms: range.from_ms,
        end_ms: range.from_ms,
        user_id_a: "8:acs:r_u".into(),
        participant_type: ParticipantType::Acs,
        endpoint_type: EndpointType::Voip,
        billable: true,
        unit_price_micro_usd: 4000,
        cost_micro_usd: 0,
        phone: None,
    };
    let foreign = encode_page_token(range, &other);
    assert_eq!(code(parse(Some(&foreign), None)), ErrorCode::InvalidPageToken);
    assert_eq!(decode_page_token(range, &foreign).unwrap().0, range.from_ms);
    for size in ["0", "5001", "-1", "ten"] {
        assert_eq!(code(parse(None, Some(size))), ErrorCode::InvalidParameter, "{size}");
    }
    assert_eq!(parse(None, Some("5000")).unwrap().page_size, 5000);
    assert_eq!(code(ExportFormat::parse(Some("xml"))), ErrorCode::InvalidParameter);
    assert_eq!(ExportFormat::parse(Some("CSV")).unwrap(), ExportFormat::Csv);
}

fn export_with_calls() -> UsageExport {
    let mut ledger = SqliteLedger::open_in_memory(LedgerOptions::default()).unwrap();
    let mut meter = Meter::new(Price::default());
    let mut changes = Vec::new();
    let people = [
        ("ext", "8:acs:r_u1", ParticipantType::AcsAsTeamsExternalUser),
        ("dir", "8:orgid:o1", ParticipantType::Teams),
        ("m365", "8:orgid:o2", ParticipantType::AcsAsM365User),
    ];
    for (i, (id, raw, t)) in people.iter().enumerate() {
        changes.extend(
            meter
                .session_started(SessionStarted {
                    thread_id: Some("19:meeting_abc@thread.v2".into()),
                    ..crate::testing::session_started(id, "meet", raw, *t, T0 + i as i64)
                })
                .unwrap(),
        );
    }
    for (i, (id, _, _)) in people.iter().enumerate() {
        let ev = SessionEnded {
            session_id: (*id).into(),
            conversation_id: "meet".into(),
            reason: EndReason::Left,
            at_ms: T0 + i as i64 + 10 * MIN,
        };
        changes.extend(meter.session_ended(ev).unwrap());
    }
    ledger.apply(&changes).unwrap();
    UsageExport::new(Box::new(ledger), Price::default())
}

#[test]
fn pages_chain_through_tokens_and_render_json_and_csv() {
    let export = export_with_calls();
    let mut req = UsageRequest::parse(Some("2026-11-21"), Some("2026-11-22"), None, Some("2")).unwrap();
    let first = export.usage(&req).unwrap();
    assert_eq!(first.records.len(), 2);
    let token = first.next_page_token.clone().unwrap();
    let json = first.to_json();
    assert_eq!(json["nextPageToken"], json!(token));
    assert_eq!(json["value"][0]["ParticipantId"], json!("ext"));
    assert_eq!(json["value"][0]["Quantity"], json!("10.000000"));
    assert_eq!(json["value"][0]["CostUsd"], json!("0.040000"));
    assert_eq!(json["value"][0]["UnitType"], json!("Minute"));
    req = UsageRequest::parse(Some("2026-11-21"), Some("2026-11-22"), Some(&token), Some("2")).unwrap();
    let second = export.usage(&req).unwrap();
    assert_eq!(second.records.len(), 1);
    assert_eq!(second.next_page_token, None);
    assert_eq!(second.records[0].participant_id, "m365");
    let csv = second.to_csv();
    let lines: Vec<&str> = csv.split("\r\n").collect();
    assert_eq!(lines[0], CSV_HEADER);
    assert!(
        lines[1].contains(",8:orgid:o2,,ACS as Microsoft 365 user,VoIP,true,600000,0.004000,0.040000"),
        "{}",
        lines[1]
    );
    // outside the range: nothing
    let empty =
        export.usage(&UsageRequest::parse(Some("2026-11-22"), Some("2026-11-23"), None, None).unwrap()).unwrap();
    assert!(empty.records.is_empty() && empty.next_page_token.is_none());
}

#[test]
fn call_summary_and_totals_by_participant_type() {
    let export = export_with_calls();
    let summary = export.call_summary("meet").unwrap();
    let rows = summary["value"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1]["ParticipantType"], json!("Teams"));
    assert_eq!(rows[1]["ParticipantDuration"], json!(600));
    assert_eq!(rows[1]["ParticipantEndReason"], json!("Left"));
    assert_eq!(rows[1]["CallType"], json!("Group"));
    assert_eq!(rows[1]["TeamsThreadId"], json!("19:meeting_abc@thread.v2"));
    assert_eq!(code(export.call_summary("nope")), ErrorCode::CallNotFound);
    assert_eq!(code(export.call_summary("")), ErrorCode::InvalidParameter);

    let totals = export.totals(TimeRange::parse(Some("2026-11-21"), Some("2026-11-22")).unwrap()).unwrap();
    assert_eq!(totals["total"]["consumedMinutes"], json!("30.000000"));
    assert_eq!(totals["total"]["billedMinutes"], json!("20.000000"));
    assert_eq!(totals["total"]["costUsd"], json!("0.080000"));
    let native = totals["value"].as_array().unwrap().iter().find(|t| t["participantType"] == json!("Teams")).unwrap();
    assert_eq!((native["consumedMinutes"].clone(), native["costUsd"].clone()), (json!("10.000000"), json!("0.000000")));
    assert_eq!(totals["value"].as_array().unwrap().len(), 4, "every type listed, zero when unused");
}

#[test]
fn csv_fields_are_quoted_and_formula_safe() {
    assert_eq!(csv_field("plain"), "plain");
    assert_eq!(csv_field("a,b"), "\"a,b\"");
    assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    assert_eq!(csv_field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
    assert_eq!(csv_field("-1.5"), "-1.5");
}
