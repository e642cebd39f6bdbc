//! Tests of the SQLite ledger: idempotent replays, checkpoint and crash recovery,
//! paging, totals, call summaries and the outbox.

use super::*;
use crate::meter::Meter;
use crate::pricing::Price;
use crate::webhook::events::{CALL_ENDED, CALL_STARTED, PARTICIPANT_ADDED, PARTICIPANT_REMOVED};
use palaver_core::{CallType, SessionEnded};
use std::path::PathBuf;

const MIN: i64 = 60_000;
const T0: i64 = 1_795_255_200_000; // 2026-11-21T10:00:00Z

pub(crate) fn temp_db(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("palaver-billing-{}-{}", std::process::id(), uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{name}.sqlite"))
}

fn options() -> LedgerOptions {
    LedgerOptions { webhook_endpoints: vec!["http://127.0.0.1:1/hook".into()], ..LedgerOptions::default() }
}

use crate::testing::session_started as started;

fn ended(session: &str, conv: &str, at_ms: i64) -> SessionEnded {
    SessionEnded { session_id: session.into(), conversation_id: conv.into(), reason: EndReason::Left, at_ms }
}

fn all_usage(ledger: &SqliteLedger) -> Vec<UsageRecord> {
    ledger.usage_page(&UsageQuery { from_ms: 0, to_ms: i64::MAX, after: None, limit: 10_000 }).unwrap()
}

fn event_types(ledger: &SqliteLedger) -> Vec<String> {
    let mut stmt = ledger.conn.prepare("SELECT payload FROM outbox ORDER BY created_ms, rowid").unwrap();
    stmt.query_map([], |row| row.get::<_, String>(0))
        .unwrap()
        .map(|p| {
            serde_json::from_str::<serde_json::Value>(&p.unwrap()).unwrap()["eventType"].as_str().unwrap().to_string()
        })
        .collect()
}

#[test]
fn seed_example_is_stored_once_even_when_replayed() {
    let mut ledger = SqliteLedger::open(temp_db("seed"), options()).unwrap();
    let mut meter = Meter::new(Price::default());
    let mut changes = meter
        .session_started(started("ext", "meet", "8:acs:r_u1", ParticipantType::AcsAsTeamsExternalUser, T0))
        .unwrap();
    changes.extend(meter.session_started(started("dir", "meet", "8:orgid:o1", ParticipantType::Teams, T0)).unwrap());
    changes.extend(meter.session_ended(ended("ext", "meet", T0 + 10 * MIN)).unwrap());
    changes.extend(meter.session_ended(ended("dir", "meet", T0 + 10 * MIN)).unwrap());
    ledger.apply(&changes).unwrap();
    ledger.apply(&changes).unwrap(); // a retry after an unknown outcome
    let usage = all_usage(&ledger);
    assert_eq!(usage.len(), 2);
    let totals = ledger.totals(0, i64::MAX).unwrap();
    let consumed: i64 = totals.iter().map(|t| t.consumed_ms).sum();
    let billed: i64 = totals.iter().map(|t| t.billed_ms).sum();
    let cost: i64 = totals.iter().map(|t| t.cost_micro_usd).sum();
    assert_eq!((consumed, billed, cost), (20 * MIN, 10 * MIN, 40_000));
    let native = totals.iter().find(|t| t.participant_type == ParticipantType::Teams).unwrap();
    assert_eq!((native.consumed_ms, native.billed_ms, native.cost_micro_usd), (10 * MIN, 0, 0));
    // events queued once, in order
    assert_eq!(
        event_types(&ledger),
        vec![CALL_STARTED, PARTICIPANT_ADDED, PARTICIPANT_ADDED, PARTICIPANT_REMOVED, PARTICIPANT_REMOVED, CALL_ENDED]
    );
    let summaries = ledger.call_summaries("meet").unwrap();
    assert_eq!(summaries.len(), 2);
    assert!(
        summaries.iter().all(|s| s.call_duration_ms == Some(10 * MIN) && s.participant_duration_ms == Some(10 * MIN))
    );
    assert!(summaries.iter().all(|s| s.participant_end_reason == Some(EndReason::Left)));
}

#[test]
fn crash_recovery_closes_open_sessions_at_the_last_checkpoint_once() {
    let path = temp_db("crash");
    {
        let mut ledger = SqliteLedger::open(&path, options()).unwrap();
        let mut meter = Meter::new(Price::default());
        let mut changes = meter.session_started(started("a", "c", "8:acs:r_a", ParticipantType::Acs, T0)).unwrap();
        changes.extend(meter.session_started(started("b", "c", "8:acs:r_b", ParticipantType::Acs, T0 + MIN)).unwrap());
        changes.extend(meter.session_ended(ended("b", "c", T0 + 2 * MIN)).unwrap());
        ledger.apply(&changes).unwrap();
        assert_eq!(ledger.checkpoint(T0 + 3 * MIN).unwrap(), 1);
        assert_eq!(ledger.checkpoint(T0 + 3 * MIN + 15_000).unwrap(), 1);
        // the process dies here: no close, no shutdown
    }
    let mut ledger = SqliteLedger::open(&path, options()).unwrap();
    assert_eq!(ledger.last_checkpoint_ms().unwrap(), Some(T0 + 3 * MIN + 15_000));
    let report = ledger.recover().unwrap();
    assert_eq!((report.sessions_closed, report.calls_ended), (1, 1));
    assert!(
        matches!(report.changes.as_slice(), [LedgerChange::SessionClosed { .. }, LedgerChange::CallEnded { .. }]),
        "the report carries what recovery wrote: {:?}",
        report.changes
    );
    // a second recovery (another crash right after) finds nothing to do
    assert_eq!(ledger.recover().unwrap(), RecoveryReport::default());
    let usage = all_usage(&ledger);
    assert_eq!(usage.len(), 2);
    let a = usage.iter().find(|r| r.participant_id == "a").unwrap();
    assert_eq!(a.duration_ms(), 3 * MIN + 15_000);
    let summaries = ledger.call_summaries("c").unwrap();
    let a = summaries.iter().find(|s| s.participant_id == "a").unwrap();
    assert_eq!(a.participant_end_reason, Some(EndReason::ServerFailure));
    assert_eq!(a.call_duration_ms, Some(3 * MIN + 15_000));
    let types = event_types(&ledger);
    assert_eq!(types.iter().filter(|t| *t == CALL_ENDED).count(), 1);
    assert_eq!(types.iter().filter(|t| *t == PARTICIPANT_REMOVED).count(), 2);
}

#[test]
fn a_late_close_after_recovery_adds_no_minutes() {
    let mut ledger = SqliteLedger::open(temp_db("late"), options()).unwrap();
    let mut meter = Meter::new(Price::default());
    let start = meter.session_started(started("s", "c", "8:acs:r_s", ParticipantType::Acs, T0 - 5 * MIN)).unwrap();
    ledger.apply(&start).unwrap();
    ledger.checkpoint(T0).unwrap();
    ledger.recover().unwrap();
    // The old process's close (e.g. replayed from somewhere) arrives with a later end and
    // crosses midnight: the session is already closed, so nothing is added.
    let close = meter.session_ended(ended("s", "c", T0 + 30 * 60 * MIN)).unwrap();
    ledger.apply(&close).unwrap();
    let usage = all_usage(&ledger);
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0].duration_ms(), 5 * MIN);
}

#[test]
fn paging_walks_every_record_once_in_order() {
    let mut ledger = SqliteLedger::open_in_memory(LedgerOptions::default()).unwrap();
    let mut meter = Meter::new(Price::default());
    for i in 0..25 {
        let id = format!("s{i:02}");
        let mut ch =
            meter.session_started(started(&id, "c", "8:acs:r_x", ParticipantType::Acs, T0 + i * 1000)).unwrap();
        ch.extend(meter.session_ended(ended(&id, "c", T0 + i * 1000 + MIN)).unwrap());
        ledger.apply(&ch).unwrap();
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page =
            ledger.usage_page(&UsageQuery { from_ms: T0, to_ms: T0 + 20_000, after: after.clone(), limit: 7 }).unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(|r| (r.start_ms, r.record_id.clone()));
        seen.extend(page);
    }
    assert_eq!(seen.len(), 20, "range end is exclusive");
    assert!(seen.windows(2).all(|w| (w[0].start_ms, &w[0].record_id) < (w[1].start_ms, &w[1].record_id)));
    assert_eq!(ledger.outbox_backlog().unwrap(), 0, "no endpoints configured, no outbox rows");
}

#[test]
fn outbox_tracks_attempts_until_delivered_or_dead() {
    let mut ledger = SqliteLedger::open_in_memory(options()).unwrap();
    let mut meter = Meter::new(Price::default());
    ledger.apply(&meter.session_started(started("s", "c", "8:acs:r_s", ParticipantType::Acs, T0)).unwrap()).unwrap();
    assert_eq!(ledger.outbox_backlog().unwrap(), 2);
    let due = ledger.due_deliveries(T0, 10).unwrap();
    assert_eq!(due.len(), 2);
    let first = &due[0];
    ledger
        .record_delivery(&DeliveryOutcome::Failed {
            event_id: first.event_id.clone(),
            endpoint: first.endpoint.clone(),
            attempts: 1,
            next_attempt_ms: T0 + 1000,
            error: "HTTP 500".into(),
            dead: false,
        })
        .unwrap();
    assert_eq!(ledger.due_deliveries(T0, 10).unwrap().len(), 1, "retry not due yet");
    assert_eq!(ledger.due_deliveries(T0 + 1000, 10).unwrap().len(), 2);
    ledger
        .record_delivery(&DeliveryOutcome::Delivered {
            event_id: first.event_id.clone(),
            endpoint: first.endpoint.clone(),
            at_ms: T0 + 1000,
        })
        .unwrap();
    let second = &due[1];
    ledger
        .record_delivery(&DeliveryOutcome::Failed {
            event_id: second.event_id.clone(),
            endpoint: second.endpoint.clone(),
            attempts: 30,
            next_attempt_ms: T0,
            error: "gave up".into(),
            dead: true,
        })
        .unwrap();
    assert_eq!(ledger.outbox_backlog().unwrap(), 0);
    assert!(ledger.due_deliveries(i64::MAX, 10).unwrap().is_empty());
}

#[test]
fn call_summary_of_a_running_call_has_open_durations() {
    let mut ledger = SqliteLedger::open_in_memory(LedgerOptions::default()).unwrap();
    let mut meter = Meter::new(Price::default());
    let mut ch = meter.session_started(started("a", "c", "8:acs:r_a", ParticipantType::Acs, T0)).unwrap();
    ch.extend(meter.call_type_changed("c", CallType::P2P));
    ledger.apply(&ch).unwrap();
    let s = ledger.call_summaries("c").unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!((s[0].call_type, s[0].call_duration_ms, s[0].participant_duration_ms), (CallType::P2P, None, None));
    assert!(ledger.call_summaries("nobody").unwrap().is_empty());
}

/// The backend-independent cases (`ledger::conformance`), on a fresh SQLite file per test.
mod conformance {
    use super::*;

    crate::ledger_conformance_tests!({
        let path = temp_db("conformance");
        move |options: LedgerOptions| Box::new(SqliteLedger::open(&path, options).unwrap()) as Box<dyn UsageLedger>
    });
}
