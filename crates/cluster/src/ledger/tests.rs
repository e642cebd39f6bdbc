//! The PostgreSQL ledger: billing's conformance cases (the ones SQLite passes), then what
//! only a shared database adds: nodes keep to their own sessions, and an outage loses nothing.

use super::*;
use crate::testing::PostgresServer;
use palaver_billing::meter::Meter;
use palaver_billing::pricing::Price;
use palaver_core::{CallType, EndpointType, SessionEnded};

fn fresh_database() -> Database {
    Database::connect(&PostgresServer::shared().unwrap().fresh_database().unwrap()).unwrap()
}

palaver_billing::ledger_conformance_tests!({
    let db = fresh_database();
    move |options: LedgerOptions| Box::new(PgLedger::open(&db, "node-a", options).unwrap()) as Box<dyn UsageLedger>
});

const T0: i64 = 1_795_255_200_000;
const MIN: i64 = 60_000;

fn started(session: &str, at_ms: i64) -> SessionStarted {
    SessionStarted {
        session_id: session.into(),
        conversation_id: format!("conv-{session}"),
        call_type: CallType::Group,
        participant_raw_id: format!("8:acs:r_{session}"),
        participant_type: ParticipantType::Acs,
        endpoint_type: EndpointType::Voip,
        thread_id: None,
        at_ms,
        phone: None,
    }
}

fn all_usage(ledger: &PgLedger) -> Vec<UsageRecord> {
    ledger.usage_page(&UsageQuery { from_ms: 0, to_ms: i64::MAX, after: None, limit: 1000 }).unwrap()
}

#[test]
fn a_restarting_node_recovers_only_its_own_sessions() {
    let db = fresh_database();
    let mut a = PgLedger::open(&db, "node-a", LedgerOptions::default()).unwrap();
    let mut b = PgLedger::open(&db, "node-b", LedgerOptions::default()).unwrap();
    let mut meter_a = Meter::new(Price::default());
    let mut meter_b = Meter::new(Price::default());
    a.apply(&meter_a.session_started(started("on-a", T0)).unwrap()).unwrap();
    b.apply(&meter_b.session_started(started("on-b", T0)).unwrap()).unwrap();
    assert_eq!(a.checkpoint(T0 + MIN).unwrap(), 1, "a checkpoints only its own open session");
    assert_eq!(b.checkpoint(T0 + 2 * MIN).unwrap(), 1);
    assert_eq!(a.last_checkpoint_ms().unwrap(), Some(T0 + MIN), "checkpoint marks are per node");
    // node b restarts: its session is closed at its checkpoint, a's stays open.
    let mut b2 = PgLedger::open(&db, "node-b", LedgerOptions::default()).unwrap();
    let report = b2.recover().unwrap();
    assert_eq!((report.sessions_closed, report.calls_ended, report.changes.len()), (1, 1, 2));
    let usage = all_usage(&a);
    assert_eq!(usage.len(), 1);
    assert_eq!((usage[0].participant_id.as_str(), usage[0].duration_ms()), ("on-b", 2 * MIN));
    // a's participant leaves normally later: one record, the true duration.
    let close = meter_a
        .session_ended(SessionEnded {
            session_id: "on-a".into(),
            conversation_id: "conv-on-a".into(),
            reason: EndReason::Left,
            at_ms: T0 + 5 * MIN,
        })
        .unwrap();
    a.apply(&close).unwrap();
    let on_a: Vec<_> = all_usage(&a).into_iter().filter(|r| r.participant_id == "on-a").collect();
    assert_eq!(on_a.len(), 1);
    assert_eq!(on_a[0].duration_ms(), 5 * MIN);
}

#[test]
fn a_postgres_outage_fails_writes_and_loses_nothing_once_it_returns() {
    let pg = PostgresServer::start().unwrap();
    let db = Database::connect(&pg.fresh_database().unwrap()).unwrap();
    let mut ledger = PgLedger::open(&db, "node-a", LedgerOptions::default()).unwrap();
    let mut meter = Meter::new(Price::default());
    let opened = meter.session_started(started("s", T0)).unwrap();
    ledger.apply(&opened).unwrap();
    pg.stop();
    let close = meter
        .session_ended(SessionEnded {
            session_id: "s".into(),
            conversation_id: "conv-s".into(),
            reason: EndReason::Left,
            at_ms: T0 + 3 * MIN,
        })
        .unwrap();
    let err = ledger.apply(&close).unwrap_err();
    assert!(matches!(err, LedgerError::Backend(_)), "{err:?}");
    pg.restart().unwrap();
    // The recorder retries the same batch in order (billing's recorder keeps it pending).
    ledger.apply(&close).unwrap();
    ledger.apply(&close).unwrap();
    let usage = all_usage(&ledger);
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0].duration_ms(), 3 * MIN);
}

mod outage;
mod outbox;
mod takeover;

/// Migration 2 (phone number, trunk, direction) on a ledger written before it: the rows stay,
/// with no phone leg, and phone minutes stored before read back as phone minutes.
#[test]
fn the_phone_columns_migration_keeps_existing_rows() {
    let db = fresh_database();
    db.migrate("ledger", &MIGRATIONS[..1]).unwrap();
    db.block_on(|pool| async move {
        let client = pool.get().await.unwrap();
        client
            .batch_execute(&format!(
                "INSERT INTO usage_records (record_id, correlation_id, participant_id, segment, start_ms, end_ms,
                     user_id_a, participant_type, endpoint_type, billable, unit_price_micro_usd, cost_micro_usd, usage_type)
                 VALUES ('r-old', 'c', 's', 0, {T0}, {}, '4:+14255550199', 'ACS', 'PSTN', true, 4000, 4000, 'DirectRouting')",
                T0 + MIN
            ))
            .await
            .unwrap();
    })
    .unwrap();
    let ledger = PgLedger::open(&db, "node-a", LedgerOptions::default()).unwrap();
    let usage = all_usage(&ledger);
    assert_eq!(usage.len(), 1);
    assert_eq!(
        (usage[0].record_id.as_str(), usage[0].kind, usage[0].phone.clone()),
        ("r-old", palaver_billing::records::UsageKind::PhoneMinutes, None)
    );
    assert_eq!(usage[0].duration_ms(), MIN);
}
