//! A PostgreSQL outage during a call, through the real usage stack (`UsageService` with the
//! PostgreSQL ledger and the spool): metering goes on and joins are acknowledged while the
//! database is down, and once it is back every record is there once, with its true span.

use super::*;
use palaver_billing::service::{LedgerOpener, SPOOL_FILE, UsageConfig, UsageService};
use palaver_billing::telemetry::{DeliveryResult, Rejection, UsageTelemetry};
use palaver_core::DurableAck;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

/// How long PostgreSQL stays down: 3 s by default, to keep `make test` short (the real-server
/// test, `tests/billing/pg_outage.py`, runs the 10 s); PALAVER_PG_OUTAGE_SECS=10 for
/// the figures of docs/cluster.md.
fn outage() -> Duration {
    let secs = std::env::var("PALAVER_PG_OUTAGE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    Duration::from_secs(secs)
}

/// Remembers the spool gauge and the write failures.
#[derive(Default)]
struct Gauges {
    spooled: AtomicU64,
    max_spooled: AtomicU64,
    write_failures: AtomicU64,
}

impl UsageTelemetry for Gauges {
    fn participant_time(&self, _: ParticipantType, _: i64, _: i64) {}
    fn open_participants(&self, _: ParticipantType, _: usize) {}
    fn active_calls(&self, _: usize) {}
    fn pending_changes(&self, _: usize) {}
    fn checkpoint_written(&self, _: i64) {}
    fn ledger_write_failed(&self) {
        self.write_failures.fetch_add(1, Ordering::SeqCst);
    }
    fn event_rejected(&self, _: Rejection) {}
    fn sessions_recovered(&self, _: u64) {}
    fn webhook_delivery(&self, _: DeliveryResult) {}
    fn webhook_backlog(&self, _: u64) {}
    fn billing_outbox_pending(&self, _: u64) {}
    fn ledger_spooled(&self, count: u64) {
        self.spooled.store(count, Ordering::SeqCst);
        self.max_spooled.fetch_max(count, Ordering::SeqCst);
    }
}

fn join(usage: &UsageService, session: &str, at_ms: i64) -> Duration {
    let (tx, rx) = mpsc::channel();
    let asked = Instant::now();
    let s = started(session, at_ms);
    usage.observer().session_started_durably(
        SessionStarted { conversation_id: "meeting".into(), ..s },
        DurableAck::new(move || {
            let _ = tx.send(());
        }),
    );
    rx.recv_timeout(Duration::from_secs(5)).expect("the join was acknowledged as durable");
    asked.elapsed()
}

fn leave(usage: &UsageService, session: &str, at_ms: i64) {
    usage.observer().session_ended(SessionEnded {
        session_id: session.into(),
        conversation_id: "meeting".into(),
        reason: EndReason::Left,
        at_ms,
    });
}

#[test]
fn a_postgres_outage_during_a_call_spools_usage_and_replays_it_once() {
    let pg = PostgresServer::start().unwrap();
    let db = Database::connect(&pg.fresh_database().unwrap()).unwrap();
    let data_dir = std::env::temp_dir().join(format!("palaver-outage-{}-{}", std::process::id(), uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&data_dir).unwrap();
    let opener: LedgerOpener = {
        let db = db.clone();
        Arc::new(move |options| Ok(Box::new(PgLedger::open(&db, "node-a", options)?) as Box<dyn UsageLedger>))
    };
    let gauges = Arc::new(Gauges::default());
    let config = UsageConfig { checkpoint_interval_secs: 1, metrics_listen: None, ..UsageConfig::default() };
    let usage = UsageService::start_with(&config, &data_dir, Some(opener), gauges.clone()).unwrap();

    // A call is running: alice and bob are in (times are what the meter is told).
    let t = chrono::Utc::now().timestamp_millis();
    join(&usage, "alice", t);
    join(&usage, "bob", t + 100);
    usage.flush();

    pg.stop();
    let down = Instant::now();
    // During the outage: carol joins (her join is still acknowledged as durable, from the
    // spool), alice leaves, and the recorder keeps checkpointing.
    let carol_ack = join(&usage, "carol", t + 2_000);
    leave(&usage, "alice", t + 4_000);
    usage.flush();
    std::thread::sleep(outage().saturating_sub(down.elapsed()));
    let spooled_during = gauges.spooled.load(Ordering::SeqCst);
    let spool_lines = std::fs::read_to_string(data_dir.join(SPOOL_FILE)).unwrap().lines().count();
    pg.restart().unwrap();
    let outage_secs = down.elapsed().as_secs_f64();

    // The next checkpoint (1 s) replays the spool.
    let back = Instant::now();
    while gauges.spooled.load(Ordering::SeqCst) > 0 {
        assert!(back.elapsed() < Duration::from_secs(15), "the spool was not replayed");
        std::thread::sleep(Duration::from_millis(50));
    }
    let replayed_after = back.elapsed();
    leave(&usage, "bob", t + 20_000);
    leave(&usage, "carol", t + 21_000);
    usage.flush();
    usage.shutdown();
    println!(
        "outage {outage_secs:.1} s: carol's join acknowledged in {} ms, {spooled_during} changes in {spool_lines} \
         spool entries, replayed {} ms after PostgreSQL returned, {} failed writes",
        carol_ack.as_millis(),
        replayed_after.as_millis(),
        gauges.write_failures.load(Ordering::SeqCst),
    );
    assert_eq!(spooled_during, 2, "carol's join and alice's leave were spooled");
    assert!(spool_lines >= 3, "two batches and at least one checkpoint behind them ({spool_lines} lines)");
    assert_eq!(gauges.write_failures.load(Ordering::SeqCst), 0, "the recorder never saw a failed write");

    let ledger = PgLedger::open(&db, "probe", LedgerOptions::default()).unwrap();
    let mut usage_rows = all_usage(&ledger);
    usage_rows.sort_by(|a, b| a.participant_id.cmp(&b.participant_id));
    let spans: Vec<_> = usage_rows.iter().map(|r| (r.participant_id.as_str(), r.start_ms - t, r.end_ms - t)).collect();
    assert_eq!(
        spans,
        vec![("alice", 0, 4_000), ("bob", 100, 20_000), ("carol", 2_000, 21_000)],
        "one record each, true spans"
    );
    let summaries = ledger.call_summaries("meeting").unwrap();
    assert_eq!(summaries.len(), 3);
    assert!(summaries.iter().all(|s| s.participant_end_reason == Some(EndReason::Left)));
    assert_eq!(std::fs::read_to_string(data_dir.join(SPOOL_FILE)).unwrap(), "", "nothing left in the spool");
    let _ = std::fs::remove_dir_all(&data_dir);
}
