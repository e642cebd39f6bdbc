//! The backend-independent tests of a [`UsageLedger`]: the exactly-once properties every
//! backend must have (docs/billing.md), written once and run against SQLite here and against
//! PostgreSQL in `palaver-cluster`. A backend's crate calls [`crate::ledger_conformance_tests!`]
//! with an expression that makes a fresh store and answers a function opening new handles on it
//! (a new handle plays a restarted process, or a second writer).

use super::{DeliveryOutcome, LedgerOptions, RecoveryReport, UsageLedger, UsageQuery};
use crate::meter::Meter;
use crate::pricing::Price;
use crate::records::UsageRecord;
use crate::webhook::events::{CALL_ENDED, CALL_STARTED, PARTICIPANT_ADDED, PARTICIPANT_REMOVED};
use palaver_core::{
    CallType, EndReason, EndpointType, ParticipantType, PhoneDirection, PhoneLeg, SessionEnded, SessionStarted,
};

/// Opens a new handle on one test's store, with these options.
pub type OpenLedger = dyn Fn(LedgerOptions) -> Box<dyn UsageLedger>;

const MIN: i64 = 60_000;
const T0: i64 = 1_795_255_200_000; // 2026-11-21T10:00:00Z

/// Options with one webhook endpoint, so every change queues outbox events.
pub fn options() -> LedgerOptions {
    LedgerOptions { webhook_endpoints: vec!["http://127.0.0.1:1/hook".into()], ..LedgerOptions::default() }
}

fn started(session: &str, conv: &str, raw: &str, at_ms: i64) -> SessionStarted {
    SessionStarted {
        session_id: session.into(),
        conversation_id: conv.into(),
        call_type: CallType::Group,
        participant_raw_id: raw.into(),
        participant_type: ParticipantType::Acs,
        endpoint_type: EndpointType::Voip,
        thread_id: None,
        at_ms,
        phone: None,
    }
}

fn ended(session: &str, conv: &str, at_ms: i64) -> SessionEnded {
    SessionEnded { session_id: session.into(), conversation_id: conv.into(), reason: EndReason::Left, at_ms }
}

fn all_usage(ledger: &dyn UsageLedger) -> Vec<UsageRecord> {
    ledger.usage_page(&UsageQuery { from_ms: 0, to_ms: i64::MAX, after: None, limit: 10_000 }).unwrap()
}

fn event_types(ledger: &dyn UsageLedger) -> Vec<String> {
    ledger
        .due_deliveries(i64::MAX, 10_000)
        .unwrap()
        .iter()
        .map(|item| {
            let v: serde_json::Value = serde_json::from_str(&item.payload).unwrap();
            v["eventType"].as_str().unwrap().to_string()
        })
        .collect()
}

/// A retried batch (unknown outcome) stores its records and events once.
pub fn replayed_changes_are_stored_once(open: &OpenLedger) {
    let mut ledger = open(options());
    let mut meter = Meter::new(Price::default());
    let mut changes = meter.session_started(started("a", "meet", "8:acs:r_a", T0)).unwrap();
    changes.extend(meter.session_started(started("b", "meet", "8:acs:r_b", T0)).unwrap());
    changes.extend(meter.session_ended(ended("a", "meet", T0 + 10 * MIN)).unwrap());
    changes.extend(meter.session_ended(ended("b", "meet", T0 + 10 * MIN)).unwrap());
    ledger.apply(&changes).unwrap();
    ledger.apply(&changes).unwrap();
    open(options()).apply(&changes).unwrap(); // and from another handle
    let usage = all_usage(ledger.as_ref());
    assert_eq!(usage.len(), 2);
    let totals = ledger.totals(0, i64::MAX).unwrap();
    let acs = totals.iter().find(|t| t.participant_type == ParticipantType::Acs).unwrap();
    assert_eq!((acs.records, acs.consumed_ms, acs.billed_ms, acs.cost_micro_usd), (2, 20 * MIN, 20 * MIN, 80_000));
    assert_eq!(
        event_types(ledger.as_ref()),
        vec![CALL_STARTED, PARTICIPANT_ADDED, PARTICIPANT_ADDED, PARTICIPANT_REMOVED, PARTICIPANT_REMOVED, CALL_ENDED]
    );
    let summaries = ledger.call_summaries("meet").unwrap();
    assert_eq!(summaries.len(), 2);
    assert!(
        summaries
            .iter()
            .all(|s| s.call_duration_ms == Some(10 * MIN) && s.participant_end_reason == Some(EndReason::Left))
    );
}

/// A process that dies leaves sessions open; the next one closes them at the last
/// checkpoint, once, and ends the call once.
pub fn recovery_closes_open_sessions_at_the_last_checkpoint_once(open: &OpenLedger) {
    {
        let mut ledger = open(options());
        let mut meter = Meter::new(Price::default());
        let mut changes = meter.session_started(started("a", "c", "8:acs:r_a", T0)).unwrap();
        changes.extend(meter.session_started(started("b", "c", "8:acs:r_b", T0 + MIN)).unwrap());
        changes.extend(meter.session_ended(ended("b", "c", T0 + 2 * MIN)).unwrap());
        ledger.apply(&changes).unwrap();
        assert_eq!(ledger.checkpoint(T0 + 3 * MIN + 15_000).unwrap(), 1);
        assert_eq!(ledger.checkpoint(T0 + 3 * MIN).unwrap(), 1, "an older checkpoint moves nothing back");
        // the process dies here: no close, no shutdown
    }
    let mut ledger = open(options());
    assert_eq!(ledger.last_checkpoint_ms().unwrap(), Some(T0 + 3 * MIN + 15_000));
    let report = ledger.recover().unwrap();
    assert_eq!((report.sessions_closed, report.calls_ended, report.changes.len()), (1, 1, 2));
    assert_eq!(ledger.recover().unwrap(), RecoveryReport::default(), "a second recovery finds nothing");
    assert_eq!(open(options()).recover().unwrap(), RecoveryReport::default(), "nor does another handle");
    let usage = all_usage(ledger.as_ref());
    assert_eq!(usage.len(), 2);
    assert_eq!(usage.iter().find(|r| r.participant_id == "a").unwrap().duration_ms(), 3 * MIN + 15_000);
    let summaries = ledger.call_summaries("c").unwrap();
    let a = summaries.iter().find(|s| s.participant_id == "a").unwrap();
    assert_eq!(
        (a.participant_end_reason, a.call_duration_ms),
        (Some(EndReason::ServerFailure), Some(3 * MIN + 15_000))
    );
    let types = event_types(ledger.as_ref());
    assert_eq!(types.iter().filter(|t| *t == CALL_ENDED).count(), 1);
    assert_eq!(types.iter().filter(|t| *t == PARTICIPANT_REMOVED).count(), 2);
}

/// Phone minutes keep palaver's number, the trunk and the direction on their usage records,
/// whether the session closes normally or is closed by crash recovery (the open session's
/// row must carry them).
pub fn phone_minutes_keep_their_number_trunk_and_direction(open: &OpenLedger) {
    let phone = |session: &str, raw: &str, number: &str, direction| SessionStarted {
        endpoint_type: EndpointType::Pstn,
        phone: Some(PhoneLeg { number: number.into(), trunk: "carrier".into(), direction }),
        ..started(session, "c", raw, T0)
    };
    {
        let mut ledger = open(options());
        let mut meter = Meter::new(Price::default());
        let mut changes =
            meter.session_started(phone("in", "4:+14255550199", "+14255550100", PhoneDirection::Inbound)).unwrap();
        changes.extend(
            meter.session_started(phone("out", "4:+14255550123", "+14255550101", PhoneDirection::Outbound)).unwrap(),
        );
        changes.extend(meter.session_started(started("voip", "c", "8:acs:r_v", T0)).unwrap());
        changes.extend(meter.session_ended(ended("in", "c", T0 + 2 * MIN)).unwrap());
        changes.extend(meter.session_ended(ended("voip", "c", T0 + 2 * MIN)).unwrap());
        ledger.apply(&changes).unwrap();
        ledger.checkpoint(T0 + 3 * MIN).unwrap();
        // the process dies with the outbound phone leg open
    }
    let mut ledger = open(options());
    assert_eq!(ledger.recover().unwrap().sessions_closed, 1);
    let usage = all_usage(ledger.as_ref());
    let leg_of = |id: &str| usage.iter().find(|r| r.participant_id == id).unwrap().phone.clone();
    let leg = |number: &str, direction| Some(PhoneLeg { number: number.into(), trunk: "carrier".into(), direction });
    assert_eq!(leg_of("in"), leg("+14255550100", PhoneDirection::Inbound));
    assert_eq!(leg_of("out"), leg("+14255550101", PhoneDirection::Outbound));
    assert_eq!(leg_of("voip"), None);
    let out = usage.iter().find(|r| r.participant_id == "out").unwrap();
    assert_eq!((out.kind, out.duration_ms()), (crate::records::UsageKind::PhoneMinutes, 3 * MIN));
}

/// The dead process's own close, arriving after recovery, adds nothing.
pub fn a_late_close_after_recovery_adds_no_minutes(open: &OpenLedger) {
    let mut ledger = open(options());
    let mut meter = Meter::new(Price::default());
    ledger.apply(&meter.session_started(started("s", "c", "8:acs:r_s", T0 - 5 * MIN)).unwrap()).unwrap();
    ledger.checkpoint(T0).unwrap();
    open(options()).recover().unwrap();
    ledger.apply(&meter.session_ended(ended("s", "c", T0 + 30 * 60 * MIN)).unwrap()).unwrap();
    let usage = all_usage(ledger.as_ref());
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0].duration_ms(), 5 * MIN);
}

/// Two writers racing to apply the same closes: each record id exists once, with the
/// minutes of one close.
pub fn racing_writers_store_each_record_once(open: &OpenLedger) {
    let mut meter = Meter::new(Price::default());
    let mut changes = Vec::new();
    for i in 0..10 {
        let id = format!("s{i}");
        changes.extend(meter.session_started(started(&id, "race", "8:acs:r_x", T0 + i * 1000)).unwrap());
        changes.extend(meter.session_ended(ended(&id, "race", T0 + i * 1000 + MIN)).unwrap());
    }
    let writers: Vec<Box<dyn UsageLedger>> = (0..3).map(|_| open(options())).collect();
    std::thread::scope(|scope| {
        for mut w in writers {
            let changes = &changes;
            scope.spawn(move || {
                for _ in 0..5 {
                    w.apply(changes).unwrap();
                }
            });
        }
    });
    let ledger = open(options());
    let usage = all_usage(ledger.as_ref());
    let mut ids: Vec<_> = usage.iter().map(|r| r.record_id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!((usage.len(), ids.len()), (10, 10));
    assert!(usage.iter().all(|r| r.duration_ms() == MIN));
    assert_eq!(event_types(ledger.as_ref()).iter().filter(|t| *t == PARTICIPANT_REMOVED).count(), 10);
}

/// Keyset pages tile the range: every record once, in (start, id) order, end exclusive.
pub fn paging_walks_every_record_once_in_order(open: &OpenLedger) {
    let mut ledger = open(LedgerOptions::default());
    let mut meter = Meter::new(Price::default());
    let mut changes = Vec::new();
    for i in 0..25 {
        let id = format!("s{i:02}");
        // Pairs share a start time, so the id breaks ties.
        changes.extend(meter.session_started(started(&id, "c", "8:acs:r_x", T0 + (i / 2) * 1000)).unwrap());
        changes.extend(meter.session_ended(ended(&id, "c", T0 + (i / 2) * 1000 + MIN)).unwrap());
    }
    ledger.apply(&changes).unwrap();
    let mut seen: Vec<UsageRecord> = Vec::new();
    let mut after = None;
    loop {
        let page =
            ledger.usage_page(&UsageQuery { from_ms: T0, to_ms: T0 + 10_000, after: after.clone(), limit: 7 }).unwrap();
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

/// Delivery attempts are counted until delivered or given up.
pub fn outbox_tracks_attempts_until_delivered_or_dead(open: &OpenLedger) {
    let mut ledger = open(options());
    let mut meter = Meter::new(Price::default());
    ledger.apply(&meter.session_started(started("s", "c", "8:acs:r_s", T0)).unwrap()).unwrap();
    assert_eq!(ledger.outbox_backlog().unwrap(), 2);
    let due = ledger.due_deliveries(T0, 10).unwrap();
    assert_eq!(due.len(), 2);
    let (first, second) = (&due[0], &due[1]);
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
    // (`second` may or may not come again: a shared outbox leases what it returned.)
    assert!(ledger.due_deliveries(T0, 10).unwrap().iter().all(|i| i.event_id != first.event_id), "retry not due yet");
    let retry = ledger.due_deliveries(T0 + 1000, 10).unwrap();
    assert_eq!(retry.iter().find(|i| i.event_id == first.event_id).unwrap().attempts, 1);
    ledger
        .record_delivery(&DeliveryOutcome::Delivered {
            event_id: first.event_id.clone(),
            endpoint: first.endpoint.clone(),
            at_ms: T0 + 1000,
        })
        .unwrap();
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

/// A running call's summary has open durations; the call type follows changes.
pub fn call_summary_of_a_running_call_has_open_durations(open: &OpenLedger) {
    let mut ledger = open(LedgerOptions::default());
    let mut meter = Meter::new(Price::default());
    let mut ch = meter.session_started(started("a", "c", "8:acs:r_a", T0)).unwrap();
    ch.extend(meter.call_type_changed("c", CallType::P2P));
    ledger.apply(&ch).unwrap();
    let s = ledger.call_summaries("c").unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!((s[0].call_type, s[0].call_duration_ms, s[0].participant_duration_ms), (CallType::P2P, None, None));
    assert!(ledger.call_summaries("nobody").unwrap().is_empty());
}

/// One `#[test]` per conformance case. `$store` is an expression evaluated once per test that
/// makes a fresh store and answers a `Fn(LedgerOptions) -> Box<dyn UsageLedger>` opening
/// handles on it.
#[macro_export]
macro_rules! ledger_conformance_tests {
    ($store:expr) => {
        $crate::ledger_conformance_tests!(@cases $store;
            replayed_changes_are_stored_once,
            recovery_closes_open_sessions_at_the_last_checkpoint_once,
            a_late_close_after_recovery_adds_no_minutes,
            racing_writers_store_each_record_once,
            paging_walks_every_record_once_in_order,
            outbox_tracks_attempts_until_delivered_or_dead,
            call_summary_of_a_running_call_has_open_durations,
            phone_minutes_keep_their_number_trunk_and_direction,
        );
    };
    (@cases $store:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let open = $store;
                $crate::ledger::conformance::$case(&open);
            }
        )*
    };
}
