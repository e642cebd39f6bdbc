//! The spool against a SQLite ledger whose "database" can be switched off: what is written
//! while it is away arrives once, in order, when it returns, also across a restart.

use super::*;
use crate::ledger::{LedgerOptions, SqliteLedger};
use crate::meter::Meter;
use crate::pricing::Price;
use crate::testing::{ScratchDb, session_started};
use palaver_core::{EndReason, ParticipantType, SessionEnded};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

const T0: i64 = 1_795_255_200_000;
const MIN: i64 = 60_000;

/// A SQLite ledger behind a switch: while `down`, writes fail as a lost PostgreSQL
/// connection does (`Backend`); `budget` (when not negative) is how many more writes succeed
/// before the database goes away by itself.
struct Switchable {
    inner: SqliteLedger,
    down: Arc<AtomicBool>,
    budget: Arc<AtomicI64>,
}

impl Switchable {
    fn write<R>(&mut self, f: impl FnOnce(&mut SqliteLedger) -> Result<R, LedgerError>) -> Result<R, LedgerError> {
        if self.budget.load(Ordering::SeqCst) == 0 {
            self.down.store(true, Ordering::SeqCst);
        }
        if self.down.load(Ordering::SeqCst) {
            return Err(LedgerError::Backend("08006: connection refused".into()));
        }
        if self.budget.load(Ordering::SeqCst) > 0 {
            self.budget.fetch_sub(1, Ordering::SeqCst);
        }
        f(&mut self.inner)
    }

    /// Reads fail too while the database is away.
    fn read<R>(&self, f: impl FnOnce(&SqliteLedger) -> Result<R, LedgerError>) -> Result<R, LedgerError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(LedgerError::Backend("08006: connection refused".into()));
        }
        f(&self.inner)
    }
}

impl UsageLedger for Switchable {
    fn apply(&mut self, changes: &[LedgerChange]) -> Result<(), LedgerError> {
        self.write(|l| l.apply(changes))
    }
    fn checkpoint(&mut self, now_ms: i64) -> Result<usize, LedgerError> {
        self.write(|l| l.checkpoint(now_ms))
    }
    fn recover(&mut self) -> Result<RecoveryReport, LedgerError> {
        self.write(|l| l.recover())
    }
    fn last_checkpoint_ms(&self) -> Result<Option<i64>, LedgerError> {
        self.read(|l| l.last_checkpoint_ms())
    }
    fn usage_page(&self, query: &UsageQuery) -> Result<Vec<UsageRecord>, LedgerError> {
        self.read(|l| l.usage_page(query))
    }
    fn call_summaries(&self, id: &str) -> Result<Vec<CallSummary>, LedgerError> {
        self.read(|l| l.call_summaries(id))
    }
    fn totals(&self, from_ms: i64, to_ms: i64) -> Result<Vec<TypeTotals>, LedgerError> {
        self.read(|l| l.totals(from_ms, to_ms))
    }
    fn due_deliveries(&self, now_ms: i64, limit: usize) -> Result<Vec<OutboxItem>, LedgerError> {
        self.read(|l| l.due_deliveries(now_ms, limit))
    }
    fn record_delivery(&mut self, outcome: &DeliveryOutcome) -> Result<(), LedgerError> {
        self.write(|l| l.record_delivery(outcome))
    }
    fn outbox_backlog(&self) -> Result<u64, LedgerError> {
        self.read(|l| l.outbox_backlog())
    }
}

struct Fixture {
    db: ScratchDb,
    down: Arc<AtomicBool>,
    budget: Arc<AtomicI64>,
}

impl Fixture {
    fn new() -> Self {
        Self {
            db: ScratchDb::new("palaver-spool", "usage"),
            down: Arc::default(),
            budget: Arc::new(AtomicI64::new(-1)),
        }
    }
    fn spool_path(&self) -> PathBuf {
        self.db.dir().join("ledger-spool.jsonl")
    }
    fn options() -> LedgerOptions {
        LedgerOptions { webhook_endpoints: vec!["https://hooks.example/usage".into()], ..LedgerOptions::default() }
    }
    /// A fresh spooling ledger on the same files (a process start).
    fn ledger(&self) -> SpoolingLedger {
        let inner = Switchable {
            inner: SqliteLedger::open(&*self.db, Self::options()).unwrap(),
            down: self.down.clone(),
            budget: self.budget.clone(),
        };
        let mut ledger = SpoolingLedger::open(Box::new(inner), &self.spool_path()).unwrap();
        // retry at every call: the tests switch the database back on explicitly
        ledger.retry_interval = Duration::ZERO;
        ledger
    }
    fn reader(&self) -> SqliteLedger {
        SqliteLedger::open(&*self.db, Self::options()).unwrap()
    }
    fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
}

fn all_usage(ledger: &dyn UsageLedger) -> Vec<UsageRecord> {
    ledger.usage_page(&UsageQuery { from_ms: 0, to_ms: i64::MAX, after: None, limit: 1000 }).unwrap()
}

fn ended(session: &str, conversation: &str, at_ms: i64) -> SessionEnded {
    SessionEnded { session_id: session.into(), conversation_id: conversation.into(), reason: EndReason::Left, at_ms }
}

#[test]
fn an_outage_is_spooled_in_order_and_replayed_once_when_the_database_returns() {
    let fx = Fixture::new();
    let mut ledger = fx.ledger();
    let mut meter = Meter::new(Price::default());
    let start = |m: &mut Meter, s: &str, at| m.session_started(session_started(s, "c", s, ParticipantType::Acs, at));
    ledger.apply(&start(&mut meter, "alice", T0).unwrap()).unwrap();
    assert_eq!(ledger.spooled_changes(), 0, "writes go through while the database answers");

    fx.set_down(true);
    // During the outage: a join, a checkpoint, alice leaves, bob leaves: all accepted.
    ledger.apply(&start(&mut meter, "bob", T0 + MIN).unwrap()).unwrap();
    assert_eq!(ledger.checkpoint(T0 + 2 * MIN).unwrap(), 0);
    ledger.apply(&meter.session_ended(ended("alice", "c", T0 + 3 * MIN)).unwrap()).unwrap();
    ledger.apply(&meter.session_ended(ended("bob", "c", T0 + 4 * MIN)).unwrap()).unwrap();
    let spooled = ledger.spooled_changes();
    assert!(spooled >= 4, "{spooled}");
    assert_eq!(ledger.spool().entries().len(), 4, "3 batches and 1 checkpoint, in order");
    assert!(matches!(ledger.spool().entries()[1], SpoolEntry::Checkpoint(t) if t == T0 + 2 * MIN));
    let on_disk = std::fs::read_to_string(fx.spool_path()).unwrap();
    assert_eq!(on_disk.lines().count(), 4, "every entry is on disk before the call returns");
    assert!(all_usage(&fx.reader()).is_empty(), "nothing reached the database");
    assert_eq!(ledger.last_checkpoint_ms().unwrap(), Some(T0 + 2 * MIN), "the spooled checkpoint counts");

    fx.set_down(false);
    // The next checkpoint replays the spool first, then writes through.
    ledger.checkpoint(T0 + 5 * MIN).unwrap();
    assert_eq!(ledger.spooled_changes(), 0);
    assert_eq!(std::fs::read_to_string(fx.spool_path()).unwrap(), "", "the spool file is emptied");
    let mut usage = all_usage(&fx.reader());
    usage.sort_by(|a, b| a.participant_id.cmp(&b.participant_id));
    let spans: Vec<_> = usage.iter().map(|r| (r.participant_id.as_str(), r.duration_ms())).collect();
    assert_eq!(spans, vec![("alice", 3 * MIN), ("bob", 3 * MIN)]);
    // The call's events were queued once each (CallStarted, 2 added, 2 removed, CallEnded).
    assert_eq!(fx.reader().outbox_backlog().unwrap(), 6);
}

#[test]
fn a_crash_during_the_outage_loses_nothing_the_spool_acknowledged() {
    let fx = Fixture::new();
    let mut meter = Meter::new(Price::default());
    {
        let mut ledger = fx.ledger();
        fx.set_down(true);
        let opened = meter.session_started(session_started("s1", "c", "u1", ParticipantType::Acs, T0)).unwrap();
        ledger.apply(&opened).unwrap();
        let opened = meter.session_started(session_started("s2", "c", "u2", ParticipantType::Acs, T0)).unwrap();
        ledger.apply(&opened).unwrap();
        ledger.checkpoint(T0 + MIN).unwrap();
        ledger.apply(&meter.session_ended(ended("s1", "c", T0 + 90_000)).unwrap()).unwrap();
        ledger.checkpoint(T0 + 2 * MIN).unwrap();
        // killed here: s2 is open, the database never saw any of it
    }
    // A half-written last line (the kill came during an append) was never acknowledged.
    std::fs::OpenOptions::new().append(true).open(fx.spool_path()).unwrap().write_all(b"{\"Checkp").unwrap();

    // The restart while the database is still away fails and keeps the spool.
    let mut early = fx.ledger();
    assert!(matches!(early.recover(), Err(LedgerError::Backend(_))));
    assert_eq!(early.spooled_changes(), 4, "2 opens (with the call start) and 1 close");
    drop(early);

    fx.set_down(false);
    let mut ledger = fx.ledger();
    let report = ledger.recover().unwrap();
    assert_eq!(report.sessions_closed, 1, "s2 is closed by crash recovery, after the replay");
    let mut usage = all_usage(&fx.reader());
    usage.sort_by(|a, b| a.participant_id.cmp(&b.participant_id));
    let spans: Vec<_> = usage.iter().map(|r| (r.participant_id.as_str(), r.duration_ms())).collect();
    // s1 left at 90 s; s2 is closed at the last spooled checkpoint (2 min), not the last stored one.
    assert_eq!(spans, vec![("s1", 90_000), ("s2", 2 * MIN)]);
    assert_eq!(ledger.spooled_changes(), 0);
    // A second start has nothing left to replay or recover.
    assert_eq!(fx.ledger().recover().unwrap().sessions_closed, 0);
    assert_eq!(all_usage(&fx.reader()).len(), 2);
}

#[test]
fn a_replay_cut_half_way_is_finished_later_without_duplicates() {
    let fx = Fixture::new();
    let mut ledger = fx.ledger();
    let mut meter = Meter::new(Price::default());
    fx.set_down(true);
    for i in 0..5 {
        let s = format!("s{i}");
        ledger.apply(&meter.session_started(session_started(&s, "c", &s, ParticipantType::Acs, T0)).unwrap()).unwrap();
        ledger.apply(&meter.session_ended(ended(&s, "c", T0 + (i + 1) * MIN)).unwrap()).unwrap();
    }
    assert_eq!(ledger.spool().entries().len(), 10);
    // The database comes back for 3 writes, then goes away again in the middle of the replay.
    fx.budget.store(3, Ordering::SeqCst);
    fx.set_down(false);
    assert!(!ledger.replay(true).unwrap(), "the replay stops at the failure");
    assert_eq!(ledger.spool().entries().len(), 7, "the 3 applied entries left the spool");
    let on_disk = std::fs::read_to_string(fx.spool_path()).unwrap().lines().count();
    assert_eq!(on_disk, 7, "the file holds exactly what is not yet in the database");
    assert_eq!(all_usage(&fx.reader()).len(), 1, "s0 (opened, closed) and s1's open are in");
    // The database returns for good: the rest arrives once.
    fx.budget.store(-1, Ordering::SeqCst);
    fx.set_down(false);
    assert!(ledger.replay(true).unwrap());
    let usage = all_usage(&fx.reader());
    let mut ids: Vec<_> = usage.iter().map(|r| r.record_id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!((usage.len(), ids.len()), (5, 5));
    assert_eq!(usage.iter().map(|r| r.duration_ms()).sum::<i64>(), 15 * MIN);
}

#[test]
fn other_failures_are_not_spooled_and_a_corrupt_spool_is_refused() {
    struct Broken;
    impl UsageLedger for Broken {
        fn apply(&mut self, _: &[LedgerChange]) -> Result<(), LedgerError> {
            Err(LedgerError::Corrupt("bad row".into()))
        }
        fn checkpoint(&mut self, _: i64) -> Result<usize, LedgerError> {
            Ok(0)
        }
        fn recover(&mut self) -> Result<RecoveryReport, LedgerError> {
            Ok(RecoveryReport::default())
        }
        fn last_checkpoint_ms(&self) -> Result<Option<i64>, LedgerError> {
            Ok(None)
        }
        fn usage_page(&self, _: &UsageQuery) -> Result<Vec<UsageRecord>, LedgerError> {
            Ok(vec![])
        }
        fn call_summaries(&self, _: &str) -> Result<Vec<CallSummary>, LedgerError> {
            Ok(vec![])
        }
        fn totals(&self, _: i64, _: i64) -> Result<Vec<TypeTotals>, LedgerError> {
            Ok(vec![])
        }
        fn due_deliveries(&self, _: i64, _: usize) -> Result<Vec<OutboxItem>, LedgerError> {
            Ok(vec![])
        }
        fn record_delivery(&mut self, _: &DeliveryOutcome) -> Result<(), LedgerError> {
            Ok(())
        }
        fn outbox_backlog(&self) -> Result<u64, LedgerError> {
            Ok(0)
        }
    }
    let fx = Fixture::new();
    let mut ledger = SpoolingLedger::open(Box::new(Broken), &fx.spool_path()).unwrap();
    let mut meter = Meter::new(Price::default());
    let opened = meter.session_started(session_started("s", "c", "u", ParticipantType::Acs, T0)).unwrap();
    assert!(matches!(ledger.apply(&opened), Err(LedgerError::Corrupt(_))), "a bug is not hidden in the spool");
    assert_eq!(ledger.spooled_changes(), 0);

    std::fs::write(fx.spool_path(), "{\"Checkpoint\":1}\nnot json\n{\"Checkpoint\":2}\n").unwrap();
    assert!(matches!(LedgerSpool::open(&fx.spool_path()), Err(LedgerError::Corrupt(m)) if m.contains("line 2")));
}
