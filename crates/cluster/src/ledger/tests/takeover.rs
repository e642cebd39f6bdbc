//! Billing across a takeover on the private PostgreSQL: the new home adopts the old home's open
//! sessions in the takeover's own transaction; a participant who resumes continues one record
//! (same record ids, its real start, closed once), one who never returns is closed at the old
//! home's last checkpoint after the grace; and the old home (a zombie that still believes it is
//! home) can neither close, checkpoint nor open sessions afterwards, because the fence is read
//! inside the ledger write's transaction.

use super::*;
use crate::homes::{Home, Homes};
use crate::ledger::{Holding, LedgerFence, take_over_with_sessions};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};

const KEY: &str = "groupCall:00000000-0000-0000-0000-000000000017";

/// A fence that believes what the test tells it (the zombie's stale belief included).
#[derive(Default)]
struct BelievedFence {
    holdings: Mutex<HashMap<String, Holding>>,
    refused: AtomicUsize,
}

impl BelievedFence {
    fn holding_at(conversation: &str, epoch: i64) -> Arc<Self> {
        Self::holding_key_at(KEY, conversation, epoch)
    }
    fn holding_key_at(key: &str, conversation: &str, epoch: i64) -> Arc<Self> {
        let fence = Arc::new(Self::default());
        fence.holdings.lock().unwrap().insert(conversation.into(), Holding::Held { key: key.into(), epoch });
        fence
    }
}

impl LedgerFence for BelievedFence {
    fn holding(&self, conversation_id: &str) -> Holding {
        self.holdings.lock().unwrap().get(conversation_id).cloned().unwrap_or(Holding::Unplaced)
    }
    fn refused(&self, _: &str, _: &str) {
        self.refused.fetch_add(1, Ordering::SeqCst);
    }
}

fn in_conversation(session: &str, conversation: &str, at_ms: i64) -> SessionStarted {
    SessionStarted { conversation_id: conversation.into(), ..started(session, at_ms) }
}

fn ended(session: &str, conversation: &str, at_ms: i64) -> SessionEnded {
    SessionEnded { session_id: session.into(), conversation_id: conversation.into(), reason: EndReason::Left, at_ms }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// A database with `KEY` homed on node-a at epoch 1 running live conversation `live`.
fn homed_on_a(live: &str) -> (Database, Homes) {
    let db = fresh_database();
    let homes = Homes::open(&db).unwrap();
    PgLedger::open(&db, "node-a", LedgerOptions::default()).unwrap();
    home_on_a(&homes, KEY, live);
    (db, homes)
}

fn home_on_a(homes: &Homes, key: &str, live: &str) {
    runtime().block_on(async {
        homes.claim(key, "node-a").await.unwrap();
        assert!(homes.record_live(key, "node-a", 1, live).await.unwrap());
    });
}

fn usage_of(ledger: &PgLedger, session: &str) -> Vec<UsageRecord> {
    all_usage(ledger).into_iter().filter(|r| r.participant_id == session).collect()
}

/// Reconnect grace of the tests' ledgers (adopted sessions wait this plus the margin).
const GRACE_MS: i64 = 5_000;
const AWAIT_MS: i64 = GRACE_MS + crate::ledger::ADOPTION_MARGIN_MS;

fn take_over(db: &Database, key: &str, node: &str, dead: &Home, now_ms: i64) -> Option<crate::ledger::TakenOver> {
    runtime().block_on(take_over_with_sessions(db, key, node, dead, &LedgerOptions::default(), now_ms)).unwrap()
}

/// `node`'s ledger, believing it holds `live` under `KEY` at `epoch`.
fn ledger_of(db: &Database, node: &str, live: &str, epoch: i64) -> (PgLedger, Arc<BelievedFence>) {
    let fence = BelievedFence::holding_at(live, epoch);
    let ledger = PgLedger::open(db, node, LedgerOptions::default())
        .unwrap()
        .with_fence(fence.clone())
        .with_reconnect_grace(GRACE_MS);
    (ledger, fence)
}

fn call_ended(ledger: &PgLedger, live: &str) -> bool {
    let summaries = ledger.call_summaries(live).unwrap();
    !summaries.is_empty() && summaries.iter().all(|s| s.call_duration_ms.is_some())
}

#[test]
fn a_resumed_participant_continues_one_record_and_one_who_never_returns_is_closed_at_the_checkpoint() {
    let (db, homes) = homed_on_a("live-1");
    let (mut a, a_fence) = ledger_of(&db, "node-a", "live-1", 1);
    let mut meter_a = Meter::new(Price::default());
    for s in ["p1", "p2"] {
        a.apply(&meter_a.session_started(in_conversation(s, "live-1", T0)).unwrap()).unwrap();
    }
    assert_eq!(a.checkpoint(T0 + MIN).unwrap(), 2);

    // node-a dies; node-b takes over at T0 + 70 s: both sessions adopted, nothing billed yet,
    // the call still running.
    let dead = Home { node: "node-a".into(), epoch: 1 };
    let taken_at = T0 + MIN + 10_000;
    let taken = take_over(&db, KEY, "node-b", &dead, taken_at).unwrap();
    assert_eq!(taken.home, Home { node: "node-b".into(), epoch: 2 });
    assert_eq!(taken.adopted, vec!["p1".to_string(), "p2".to_string()]);
    assert!(taken.changes.is_empty(), "the call goes on: {:?}", taken.changes);
    assert!(all_usage(&a).is_empty());
    runtime().block_on(homes.record_live(KEY, "node-b", 2, "live-2")).unwrap();

    // The zombie node-a comes back still believing it holds epoch 1: its close, checkpoint
    // and new session are all refused or move nothing; its restart recovers nothing.
    a.apply(&meter_a.session_ended(ended("p1", "live-1", T0 + 5 * MIN)).unwrap()).unwrap();
    assert_eq!(a.checkpoint(T0 + 6 * MIN).unwrap(), 0, "nothing of node-a is open any more");
    a.apply(&meter_a.session_started(in_conversation("p3", "live-1", T0 + 6 * MIN)).unwrap()).unwrap();
    assert_eq!(a_fence.refused.load(Ordering::SeqCst), 2, "the zombie's session end and start were refused");
    assert_eq!(PgLedger::open(&db, "node-a", LedgerOptions::default()).unwrap().recover().unwrap().sessions_closed, 0);
    // A second taker that saw epoch 1 loses and adopts nothing.
    assert_eq!(take_over(&db, KEY, "node-c", &dead, taken_at), None);

    // p1 resumes on node-b (new live conversation, same participant id = session id) 2 s after
    // the takeover, is checkpointed there, and leaves at T0 + 4 min.
    let (mut b, b_fence) = ledger_of(&db, "node-b", "live-2", 2);
    let mut meter_b = Meter::new(Price::default());
    b.apply(&meter_b.session_started(in_conversation("p1", "live-2", taken_at + 2_000)).unwrap()).unwrap();
    assert_eq!(
        b.checkpoint(taken_at + 10_000).unwrap(),
        1,
        "the resumed session is checkpointed, the awaiting one not"
    );
    let close = meter_b.session_ended(ended("p1", "live-2", T0 + 4 * MIN)).unwrap();
    b.apply(&close).unwrap();
    b.apply(&close).unwrap(); // a replayed batch adds nothing
    let p1 = usage_of(&b, "p1");
    assert_eq!(p1.len(), 1, "one record through the takeover: {p1:?}");
    assert_eq!((p1[0].start_ms, p1[0].end_ms), (T0, T0 + 4 * MIN), "from the first join to the leave");
    assert_eq!(p1[0].correlation_id, "live-1", "billed in the call it began in");
    let single_node = palaver_billing::records::usage_records_for(
        &palaver_billing::records::ClosedSession {
            started: in_conversation("p1", "live-1", T0),
            end_ms: T0 + 4 * MIN,
            reason: EndReason::Left,
        },
        Price::default(),
    );
    assert_eq!(p1[0].record_id, single_node[0].record_id, "the record id a session without a takeover gets");
    assert!(!call_ended(&b, "live-1"), "p2 may still come back");

    // p2 never comes back: the checkpoint before the grace leaves it, the one after closes
    // it at node-a's last checkpoint, and the old call ends.
    b.checkpoint(taken_at + AWAIT_MS - 1).unwrap();
    assert!(usage_of(&b, "p2").is_empty());
    b.checkpoint(taken_at + AWAIT_MS).unwrap();
    let p2 = usage_of(&b, "p2");
    assert_eq!(p2.iter().map(|r| (r.start_ms, r.end_ms)).collect::<Vec<_>>(), vec![(T0, T0 + MIN)]);
    assert!(call_ended(&b, "live-1"), "the old call ended with its last session");
    b.checkpoint(taken_at + 2 * AWAIT_MS).unwrap();
    assert_eq!(all_usage(&b).len(), 2, "exactly one record per participant");
    assert_eq!(b_fence.refused.load(Ordering::SeqCst), 0);
    assert_eq!(runtime().block_on(homes.get(KEY)).unwrap(), Some(Home { node: "node-b".into(), epoch: 2 }));
}

#[test]
fn a_second_takeover_adopts_again_and_a_crash_of_the_new_home_closes_at_the_checkpoint() {
    let (db, homes) = homed_on_a("live-1");
    let (mut a, _) = ledger_of(&db, "node-a", "live-1", 1);
    let mut meter_a = Meter::new(Price::default());
    a.apply(&meter_a.session_started(in_conversation("q1", "live-1", T0)).unwrap()).unwrap();
    a.checkpoint(T0 + MIN).unwrap();
    let taken = take_over(&db, KEY, "node-b", &Home { node: "node-a".into(), epoch: 1 }, T0 + MIN + 500).unwrap();
    runtime().block_on(homes.record_live(KEY, "node-b", 2, "live-2")).unwrap();
    assert_eq!(taken.adopted, vec!["q1".to_string()]);
    // q1 resumes on node-b and is checkpointed at 2 min; node-b dies; node-c takes over.
    let (mut b, _) = ledger_of(&db, "node-b", "live-2", 2);
    let mut meter_b = Meter::new(Price::default());
    b.apply(&meter_b.session_started(in_conversation("q1", "live-2", T0 + MIN + 900)).unwrap()).unwrap();
    b.checkpoint(T0 + 2 * MIN).unwrap();
    let taken = take_over(&db, KEY, "node-c", &Home { node: "node-b".into(), epoch: 2 }, T0 + 2 * MIN + 500).unwrap();
    assert_eq!((taken.home.epoch, taken.adopted.clone()), (3, vec!["q1".to_string()]));
    // node-c crashes before q1 comes back: its recovery closes q1 at node-b's checkpoint.
    let report = PgLedger::open(&db, "node-c", LedgerOptions::default()).unwrap().recover().unwrap();
    assert_eq!(report.sessions_closed, 1);
    let q1 = usage_of(&b, "q1");
    assert_eq!(q1.iter().map(|r| (r.start_ms, r.end_ms)).collect::<Vec<_>>(), vec![(T0, T0 + 2 * MIN)]);
}

/// Two nodes racing to take one conversation over (and each to continue the session): the
/// compare-and-swap lets one adopt; the session is billed once, by the winner.
#[test]
fn nodes_racing_a_takeover_bill_a_resumed_session_once() {
    for trial in 0..5 {
        let (db, homes) = homed_on_a("live-warm-up");
        let (key, live) = (format!("groupCall:takers-{trial}"), format!("live-{trial}"));
        home_on_a(&homes, &key, &live);
        let fence = BelievedFence::holding_key_at(&key, &live, 1);
        let mut a = PgLedger::open(&db, "node-a", LedgerOptions::default()).unwrap().with_fence(fence);
        let session = format!("r-{trial}");
        a.apply(&Meter::new(Price::default()).session_started(in_conversation(&session, &live, T0)).unwrap()).unwrap();
        a.checkpoint(T0 + MIN).unwrap();
        let barrier = Arc::new(Barrier::new(2));
        let takers: Vec<_> = ["node-b", "node-c"]
            .into_iter()
            .map(|node| {
                let (barrier, db, key, session) = (barrier.clone(), db.clone(), key.clone(), session.clone());
                std::thread::spawn(move || {
                    let dead = Home { node: "node-a".into(), epoch: 1 };
                    barrier.wait();
                    let taken = take_over(&db, &key, node, &dead, T0 + MIN + 1_000);
                    // Each node continues the session as if it had won (the loser's writes
                    // must be refused by the fence, read in their own transaction).
                    let fence = BelievedFence::holding_key_at(&key, &format!("live-{node}"), 2);
                    let mut ledger =
                        PgLedger::open(&db, node, LedgerOptions::default()).unwrap().with_fence(fence.clone());
                    let mut meter = Meter::new(Price::default());
                    let conv = format!("live-{node}");
                    ledger
                        .apply(&meter.session_started(in_conversation(&session, &conv, T0 + MIN + 2_000)).unwrap())
                        .unwrap();
                    ledger.apply(&meter.session_ended(ended(&session, &conv, T0 + 3 * MIN)).unwrap()).unwrap();
                    (node, taken.is_some(), fence.refused.load(Ordering::SeqCst))
                })
            })
            .collect();
        let outcomes: Vec<_> = takers.into_iter().map(|t| t.join().unwrap()).collect();
        let winners: Vec<_> = outcomes.iter().filter(|(_, won, _)| *won).collect();
        assert_eq!(winners.len(), 1, "trial {trial}: one compare-and-swap wins: {outcomes:?}");
        let usage = usage_of(&a, &session);
        assert_eq!(usage.len(), 1, "trial {trial}: exactly one record: {usage:?} {outcomes:?}");
        assert_eq!((usage[0].start_ms, usage[0].end_ms), (T0, T0 + 3 * MIN), "trial {trial}");
        for (node, won, refused) in &outcomes {
            assert_eq!(*refused > 0, !won, "trial {trial}: {node} (won {won}) refused {refused}");
        }
    }
}

#[test]
fn sessions_opened_under_the_new_epoch_are_not_adopted_by_that_takeover_and_are_fenced_on_their_own() {
    let (db, homes) = homed_on_a("live-1");
    let dead = Home { node: "node-a".into(), epoch: 1 };
    take_over(&db, KEY, "node-b", &dead, T0).unwrap();
    runtime().block_on(homes.record_live(KEY, "node-b", 2, "live-2")).unwrap();
    // node-b opens a session at epoch 2; a takeover by node-c from epoch 2 adopts it, and
    // node-c closes it at node-b's checkpoint once nobody resumed it.
    let (mut b, b_fence) = ledger_of(&db, "node-b", "live-2", 2);
    let mut meter = Meter::new(Price::default());
    b.apply(&meter.session_started(in_conversation("q1", "live-2", T0)).unwrap()).unwrap();
    b.checkpoint(T0 + 2 * MIN).unwrap();
    assert_eq!(b_fence.refused.load(Ordering::SeqCst), 0, "the holder at the current epoch writes");
    let from_b = Home { node: "node-b".into(), epoch: 2 };
    let taken = take_over(&db, KEY, "node-c", &from_b, T0 + 2 * MIN + 100).unwrap();
    assert_eq!((taken.home.epoch, taken.adopted), (3, vec!["q1".to_string()]));
    let (mut c, _) = ledger_of(&db, "node-c", "live-3", 3);
    c.checkpoint(T0 + 2 * MIN + 100 + AWAIT_MS).unwrap();
    assert_eq!(usage_of(&b, "q1").iter().map(|r| r.duration_ms()).collect::<Vec<_>>(), vec![2 * MIN]);
}

/// The race the in-transaction fence closes: node-a's close of a session and node-b's takeover
/// start at the same instant. Whichever commits first wins; the session has exactly one record,
/// either its true end (the close won) or, when the takeover won and nobody resumed it, the
/// last checkpoint (closed by node-b after the grace), never both and never a close written
/// after the takeover.
#[test]
fn a_close_racing_a_takeover_bills_the_session_exactly_once() {
    let trials = 10;
    let mut outcomes = HashMap::new();
    let (db, homes) = homed_on_a("live-warm-up");
    for trial in 0..trials {
        let (key, live) = (format!("groupCall:race-{trial}"), format!("live-{trial}"));
        home_on_a(&homes, &key, &live);
        let fence = BelievedFence::holding_key_at(&key, &live, 1);
        let mut a = PgLedger::open(&db, "node-a", LedgerOptions::default()).unwrap().with_fence(fence.clone());
        let mut meter = Meter::new(Price::default());
        let session = format!("p-{trial}");
        a.apply(&meter.session_started(in_conversation(&session, &live, T0)).unwrap()).unwrap();
        a.checkpoint(T0 + MIN).unwrap();
        let close = meter.session_ended(ended(&session, &live, T0 + 3 * MIN)).unwrap();
        let barrier = Arc::new(Barrier::new(2));
        let closer = {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                a.apply(&close).unwrap();
                a
            })
        };
        let taker = {
            let (barrier, db, key) = (barrier.clone(), db.clone(), key.clone());
            std::thread::spawn(move || {
                let dead = Home { node: "node-a".into(), epoch: 1 };
                let rt = runtime();
                barrier.wait();
                rt.block_on(take_over_with_sessions(
                    &db,
                    &key,
                    "node-b",
                    &dead,
                    &LedgerOptions::default(),
                    T0 + 2 * MIN,
                ))
                .unwrap()
            })
        };
        let a = closer.join().unwrap();
        let taken = taker.join().unwrap().expect("the only taker wins the compare-and-swap");
        // Nobody resumes: node-b closes what it adopted once the grace has passed.
        let mut b = PgLedger::open(&db, "node-b", LedgerOptions::default()).unwrap();
        b.checkpoint(T0 + 2 * MIN + crate::ledger::DEFAULT_ADOPTION_GRACE_MS).unwrap();
        let usage = usage_of(&a, &session);
        assert_eq!(usage.len(), 1, "trial {trial}: exactly one record");
        let refused = fence.refused.load(Ordering::SeqCst);
        let closed_by_takeover = taken.adopted.contains(&session);
        let outcome = match (usage[0].duration_ms(), refused, closed_by_takeover) {
            (d, 0, false) if d == 3 * MIN => "close first",
            // The refused writes: the session end and the call end of the same batch.
            (d, r, true) if d == MIN && r > 0 => "takeover first",
            other => panic!("trial {trial}: inconsistent outcome {other:?}"),
        };
        *outcomes.entry(outcome).or_insert(0) += 1;
    }
    eprintln!("close/takeover race outcomes over {trials} trials: {outcomes:?}");
}
