//! Recorder tests: virtual-time metering through the thread, shutdown, and a real crash
//! (a child process killed with SIGKILL) followed by recovery.

use super::*;
use crate::ledger::{LedgerOptions, SqliteLedger, UsageQuery};
use crate::records::UsageRecord;
use crate::telemetry::NoUsageTelemetry;
use crate::telemetry::recording::RecordingTelemetry;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command as Process, Stdio};
use std::sync::atomic::{AtomicI64, Ordering};

const MIN: i64 = 60_000;
const T0: i64 = 1_795_255_200_000;
const CHILD_ENV: &str = "PALAVER_BILLING_CRASH_CHILD_DB";

fn temp_db(name: &str) -> crate::testing::ScratchDb {
    crate::testing::ScratchDb::new("palaver-recorder", name)
}

fn started(session: &str, raw: &str, t: ParticipantType, at_ms: i64) -> SessionStarted {
    crate::testing::session_started(session, "meeting-1", raw, t, at_ms)
}

fn all_usage(path: &PathBuf) -> Vec<UsageRecord> {
    let reader = SqliteLedger::open(path, LedgerOptions::default()).unwrap();
    reader.usage_page(&UsageQuery { from_ms: 0, to_ms: i64::MAX, after: None, limit: 1000 }).unwrap()
}

/// A recorder on virtual time starting at `T0` (advanced through the returned clock),
/// checkpointing only when told.
fn virtual_time_config() -> (Arc<AtomicI64>, RecorderConfig) {
    let now = Arc::new(AtomicI64::new(T0));
    let clock_now = now.clone();
    let clock: crate::recorder::Clock = Arc::new(move || clock_now.load(Ordering::SeqCst));
    (now, RecorderConfig { checkpoint_interval: Duration::from_secs(3600), clock, ..RecorderConfig::default() })
}

#[test]
fn seed_example_through_the_recorder_on_virtual_time() {
    let path = temp_db("virtual");
    let (_, config) = virtual_time_config();
    let telemetry = Arc::new(RecordingTelemetry::default());
    let ledger = Box::new(SqliteLedger::open(&path, LedgerOptions::default()).unwrap());
    let (recorder, report) = UsageRecorder::start(ledger, config, telemetry.clone()).unwrap();
    assert_eq!(report, RecoveryReport::default());
    let observer = recorder.observer();
    observer.session_started(started("ext", "8:acs:r_u1", ParticipantType::AcsAsTeamsExternalUser, T0));
    observer.session_started(started("dir", "8:orgid:o1", ParticipantType::Teams, T0));
    observer.session_started(started("dir", "8:orgid:o1", ParticipantType::Teams, T0)); // duplicate: refused
    recorder.flush();
    assert_eq!(telemetry.reported().open_participants.get(&ParticipantType::Teams), Some(&1));
    assert_eq!(telemetry.reported().active_calls, 1);
    for id in ["ext", "dir"] {
        observer.session_ended(SessionEnded {
            session_id: id.into(),
            conversation_id: "meeting-1".into(),
            reason: EndReason::Left,
            at_ms: T0 + 10 * MIN,
        });
    }
    recorder.flush();
    let usage = all_usage(&path);
    assert_eq!(usage.len(), 2);
    assert_eq!(usage.iter().map(UsageRecord::duration_ms).sum::<i64>(), 20 * MIN);
    assert_eq!(usage.iter().map(UsageRecord::billable_ms).sum::<i64>(), 10 * MIN);
    let reported = telemetry.reported();
    assert_eq!(reported.billed_seconds(), 600.0, "{reported:?}");
    assert_eq!(reported.rejected.get(&Rejection::DuplicateSession), Some(&1));
    assert_eq!(reported.active_calls, 0);
    recorder.shutdown();
}

#[test]
fn each_chat_message_sent_is_one_priced_usage_record_exported_with_calling_usage() {
    use crate::export::UsagePage;
    use palaver_core::{ChatMessageSent, ChatUsageObserver};
    let path = temp_db("chat");
    let config = RecorderConfig { checkpoint_interval: Duration::from_secs(3600), ..RecorderConfig::default() };
    let ledger = Box::new(SqliteLedger::open(&path, LedgerOptions::default()).unwrap());
    let (recorder, _) = UsageRecorder::start(ledger, config, Arc::new(NoUsageTelemetry)).unwrap();
    let observer = recorder.observer();
    observer.session_started(started("ext", "8:acs:r_u1", ParticipantType::AcsAsTeamsExternalUser, T0));
    let sent = |id: &str, raw: &str, participant_type| ChatMessageSent {
        thread_id: "19:meeting_x@thread.v2".into(),
        message_id: id.into(),
        sender_raw_id: raw.into(),
        participant_type,
        at_ms: T0 + MIN,
    };
    observer.chat_message_sent(sent("1001", "8:acs:r_u1", ParticipantType::AcsAsTeamsExternalUser));
    observer.chat_message_sent(sent("1001", "8:acs:r_u1", ParticipantType::AcsAsTeamsExternalUser)); // replay: once
    observer.chat_message_sent(sent("1002", "8:orgid:o1", ParticipantType::Teams));
    observer.session_ended(SessionEnded {
        session_id: "ext".into(),
        conversation_id: "meeting-1".into(),
        reason: EndReason::Left,
        at_ms: T0 + 2 * MIN,
    });
    recorder.flush();
    let usage = all_usage(&path);
    assert_eq!(usage.len(), 3, "{usage:?}");
    let mut chat: Vec<_> = usage.iter().filter(|r| r.kind == crate::records::UsageKind::ChatMessage).collect();
    chat.sort_by(|a, b| a.participant_id.cmp(&b.participant_id));
    assert_eq!(chat.len(), 2);
    assert_eq!((chat[0].cost_micro_usd, chat[0].billable), (800, true), "ACS: $0.0008 per message");
    assert_eq!((chat[1].cost_micro_usd, chat[1].billable), (0, false), "native directory user: recorded at $0");
    let page = UsagePage { records: usage.clone(), next_page_token: None };
    let json = page.to_json();
    let row = json["value"].as_array().unwrap().iter().find(|v| v["ParticipantId"] == "1001").unwrap().clone();
    assert_eq!(
        (row["OperationName"].as_str(), row["UnitType"].as_str(), row["Quantity"].as_str(), row["CostUsd"].as_str()),
        (Some("ChatMessageSent"), Some("Message"), Some("1"), Some("0.000800")),
        "{row}"
    );
    assert_eq!(row["CorrelationId"], "19:meeting_x@thread.v2");
    let csv = page.to_csv();
    assert!(csv.contains(",ChatMessageSent,ChatMessage,Message,1,1001,8:acs:r_u1,"), "{csv}");
    assert!(csv.contains(",CallParticipantUsage,ParticipantMinutes,Minute,"), "{csv}");
    recorder.shutdown();
}

#[test]
fn recording_and_streaming_minutes_are_priced_usage_records_written_once_and_exported() {
    use crate::export::UsagePage;
    use palaver_core::{MediaUsageKind, MediaUsed};
    let path = temp_db("media");
    let config = RecorderConfig { checkpoint_interval: Duration::from_secs(3600), ..RecorderConfig::default() };
    let ledger = Box::new(SqliteLedger::open(&path, LedgerOptions::default()).unwrap());
    let (recorder, _) = UsageRecorder::start(ledger, config, Arc::new(NoUsageTelemetry)).unwrap();
    let observer = recorder.observer();
    let used = |kind, id: &str, metered_ms| MediaUsed {
        kind,
        id: id.into(),
        correlation_id: "call-1".into(),
        user_raw_id: "8:acs:r_callautomation".into(),
        end_ms: T0 + 10 * MIN,
        metered_ms,
    };
    observer.media_used(used(MediaUsageKind::Recording, "rec-1", 3 * MIN));
    observer.media_used(used(MediaUsageKind::Recording, "rec-1", 3 * MIN)); // replay: once
    observer.media_used(used(MediaUsageKind::Streaming, "cc-1/1", MIN / 2));
    recorder.flush();
    let mut usage = all_usage(&path);
    usage.sort_by(|a, b| a.participant_id.cmp(&b.participant_id));
    assert_eq!(usage.len(), 2, "{usage:?}");
    let (stream, recording) = (&usage[0], &usage[1]);
    assert_eq!(recording.kind, crate::records::UsageKind::RecordingMinutes);
    assert_eq!((recording.duration_ms(), recording.cost_micro_usd), (3 * MIN, 6_000), "$0.002 a minute");
    assert_eq!(recording.end_ms, T0 + 10 * MIN);
    assert_eq!(stream.kind, crate::records::UsageKind::StreamingMinutes);
    assert_eq!((stream.duration_ms(), stream.cost_micro_usd), (MIN / 2, 1_500), "$0.003 a minute");
    let csv = UsagePage { records: usage.clone(), next_page_token: None }.to_csv();
    assert!(
        csv.contains(",CallRecording,CallRecordingMixedAudio,Minute,3.000000,rec-1,8:acs:r_callautomation,"),
        "{csv}"
    );
    assert!(csv.contains(",CallAutomationMediaStreaming,AudioStreaming,Minute,0.500000,cc-1/1,"), "{csv}");
    recorder.shutdown();
}

#[test]
fn clean_shutdown_closes_open_sessions_as_server_shutdown() {
    let path = temp_db("shutdown");
    let (now, config) = virtual_time_config();
    let ledger = Box::new(SqliteLedger::open(&path, LedgerOptions::default()).unwrap());
    let (recorder, _) = UsageRecorder::start(ledger, config, Arc::new(NoUsageTelemetry)).unwrap();
    recorder.observer().session_started(started("s", "8:acs:r_s", ParticipantType::Acs, T0));
    now.store(T0 + 7 * MIN, Ordering::SeqCst);
    recorder.shutdown();
    let usage = all_usage(&path);
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0].duration_ms(), 7 * MIN);
    let reader = SqliteLedger::open(&path, LedgerOptions::default()).unwrap();
    let summary = crate::ledger::UsageLedger::call_summaries(&reader, "meeting-1").unwrap();
    assert_eq!(summary[0].participant_end_reason, Some(EndReason::ServerShutdown));
}

/// Runs only as the child of `sigkill_then_restart_recovers_every_session_once`: meters
/// three participants with a 100 ms checkpoint, reports READY, and waits to be killed.
#[test]
fn crash_child_process() {
    let Ok(path) = std::env::var(CHILD_ENV) else { return };
    let config = RecorderConfig { checkpoint_interval: Duration::from_millis(100), ..RecorderConfig::default() };
    let ledger = Box::new(SqliteLedger::open(&path, LedgerOptions::default()).unwrap());
    let (recorder, _) = UsageRecorder::start(ledger, config, Arc::new(NoUsageTelemetry)).unwrap();
    let observer = recorder.observer();
    let now = chrono::Utc::now().timestamp_millis();
    observer.session_started(started("ext", "8:acs:r_u1", ParticipantType::AcsAsTeamsExternalUser, now));
    observer.session_started(started("dir", "8:orgid:o1", ParticipantType::Teams, now));
    observer.session_started(started("m365", "8:orgid:o2", ParticipantType::AcsAsM365User, now));
    recorder.flush();
    println!("READY {now}");
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn sigkill_then_restart_recovers_every_session_once() {
    let path = temp_db("sigkill");
    let mut child = Process::new(std::env::current_exe().unwrap())
        .args(["--exact", "recorder::tests::crash_child_process", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, path.as_os_str())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut started_ms = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        // libtest prints `test <name> ... ` before the child's own output, on the same line
        if let Some(pos) = line.find("READY ") {
            started_ms = line[pos + 6..].trim().parse::<i64>().ok();
            break;
        }
    }
    let Some(started_ms) = started_ms else {
        let _ = child.kill();
        panic!("child never became ready");
    };
    std::thread::sleep(Duration::from_millis(1_250));
    child.kill().unwrap(); // SIGKILL: no destructor, no shutdown, no final write
    let killed_ms = chrono::Utc::now().timestamp_millis();
    child.wait().unwrap();

    // Restart: recovery runs before the recorder accepts events.
    let ledger = Box::new(SqliteLedger::open(&path, LedgerOptions::default()).unwrap());
    let (recorder, report) =
        UsageRecorder::start(ledger, RecorderConfig::default(), Arc::new(NoUsageTelemetry)).unwrap();
    assert_eq!((report.sessions_closed, report.calls_ended), (3, 1));
    recorder.shutdown();
    // A second restart finds nothing left to recover.
    let ledger = Box::new(SqliteLedger::open(&path, LedgerOptions::default()).unwrap());
    let (recorder, report) =
        UsageRecorder::start(ledger, RecorderConfig::default(), Arc::new(NoUsageTelemetry)).unwrap();
    assert_eq!(report, RecoveryReport::default());
    recorder.shutdown();

    let usage = all_usage(&path);
    let mut ids: Vec<&str> = usage.iter().map(|r| r.participant_id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, vec!["dir", "ext", "m365"], "every participant exactly once");
    let truth = killed_ms - started_ms;
    for r in &usage {
        let short_by = truth - r.duration_ms();
        eprintln!("{}: truth {truth} ms, recorded {} ms (short by {short_by} ms)", r.participant_id, r.duration_ms());
        // closed at the last checkpoint: never more than the truth, at most one interval
        // (100 ms) short, plus scheduling slack on a loaded machine
        assert!(
            (0..=100 + 400).contains(&short_by),
            "{}: recorded {} ms, truth {truth} ms",
            r.participant_id,
            r.duration_ms()
        );
    }
}

/// A ledger whose writes fail while `failing` is set (a full disk, a locked file), so a test
/// can hold an event between "accepted" and "written".
struct FlakyLedger {
    inner: SqliteLedger,
    failing: Arc<std::sync::atomic::AtomicBool>,
}

impl UsageLedger for FlakyLedger {
    fn apply(&mut self, changes: &[LedgerChange]) -> Result<(), LedgerError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(LedgerError::Corrupt("disk full (test)".into()));
        }
        self.inner.apply(changes)
    }
    fn checkpoint(&mut self, now_ms: i64) -> Result<usize, LedgerError> {
        self.inner.checkpoint(now_ms)
    }
    fn recover(&mut self) -> Result<RecoveryReport, LedgerError> {
        self.inner.recover()
    }
    fn last_checkpoint_ms(&self) -> Result<Option<i64>, LedgerError> {
        self.inner.last_checkpoint_ms()
    }
    fn usage_page(&self, query: &UsageQuery) -> Result<Vec<UsageRecord>, LedgerError> {
        self.inner.usage_page(query)
    }
    fn call_summaries(&self, correlation_id: &str) -> Result<Vec<crate::records::CallSummary>, LedgerError> {
        self.inner.call_summaries(correlation_id)
    }
    fn totals(&self, from_ms: i64, to_ms: i64) -> Result<Vec<crate::records::TypeTotals>, LedgerError> {
        self.inner.totals(from_ms, to_ms)
    }
    fn due_deliveries(&self, now_ms: i64, limit: usize) -> Result<Vec<crate::ledger::OutboxItem>, LedgerError> {
        self.inner.due_deliveries(now_ms, limit)
    }
    fn record_delivery(&mut self, outcome: &crate::ledger::DeliveryOutcome) -> Result<(), LedgerError> {
        self.inner.record_delivery(outcome)
    }
    fn outbox_backlog(&self) -> Result<u64, LedgerError> {
        self.inner.outbox_backlog()
    }
}

/// The join acknowledgment (issue #19: `joined` was sent before the start was durable, and a
/// kill -9 right after it lost the participant's record): a start is acknowledged only once it
/// is in a committed ledger transaction, so "recovery after a crash at the moment of the
/// acknowledgment" finds the session; while the ledger cannot write, it is not acknowledged.
#[test]
fn a_session_start_is_acknowledged_only_once_it_is_in_the_ledger() {
    let path = temp_db("durable");
    let failing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let ledger = Box::new(FlakyLedger {
        inner: SqliteLedger::open(&path, LedgerOptions::default()).unwrap(),
        failing: failing.clone(),
    });
    let (_, config) = virtual_time_config();
    let (recorder, _) = UsageRecorder::start(ledger, config, Arc::new(NoUsageTelemetry)).unwrap();
    let observer = recorder.observer();
    let (acked_tx, acked) = mpsc::channel();
    let ack = DurableAck::new(move || acked_tx.send(()).unwrap());
    observer.session_started_durably(started("s1", "8:acs:r_s1", ParticipantType::Acs, T0), ack);
    recorder.flush(); // applied; its write failed and is queued for retry
    assert!(acked.recv_timeout(Duration::from_millis(200)).is_err(), "acknowledged before it was written");

    failing.store(false, Ordering::SeqCst);
    recorder.flush(); // the retry writes it
    acked.recv_timeout(Duration::from_secs(5)).expect("acknowledged once written");
    // A crash at the moment of the acknowledgment: recovery (another connection) finds the session.
    let mut after_crash = SqliteLedger::open(&path, LedgerOptions::default()).unwrap();
    assert_eq!(after_crash.recover().unwrap().sessions_closed, 1, "the acknowledged session is in the ledger");

    // A refused start (duplicate id) has nothing to wait for and is acknowledged too.
    let (dup_tx, dup) = mpsc::channel();
    let ack = DurableAck::new(move || dup_tx.send(()).unwrap());
    observer.session_started_durably(started("s1", "8:acs:r_s1", ParticipantType::Acs, T0), ack);
    dup.recv_timeout(Duration::from_secs(5)).expect("a duplicate start is acknowledged");
    recorder.shutdown();
}

/// With the recorder gone, the acknowledgment is dropped, never given: a waiter sees its
/// channel close instead of waiting forever.
#[test]
fn a_stopped_recorder_drops_the_acknowledgment() {
    let path = temp_db("stopped");
    let ledger = Box::new(SqliteLedger::open(&path, LedgerOptions::default()).unwrap());
    let (_, config) = virtual_time_config();
    let (recorder, _) = UsageRecorder::start(ledger, config, Arc::new(NoUsageTelemetry)).unwrap();
    let observer = recorder.observer();
    recorder.shutdown();
    let (acked_tx, acked) = mpsc::channel::<()>();
    observer.session_started_durably(
        started("late", "8:acs:r_late", ParticipantType::Acs, T0),
        DurableAck::new(move || acked_tx.send(()).unwrap()),
    );
    assert_eq!(acked.recv_timeout(Duration::from_secs(1)), Err(mpsc::RecvTimeoutError::Disconnected));
}
