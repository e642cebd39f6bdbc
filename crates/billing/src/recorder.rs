//! The usage recorder: the thin I/O shell around the [`Meter`] and a [`UsageLedger`].
//!
//! Signaling calls [`BillingObserver`] (a [`SessionObserver`], and the
//! [`ChatUsageObserver`] of the chat service: one usage record per message); the observer only sends
//! the event down a channel, never blocks. One recorder thread owns the meter and the
//! ledger: it applies each event, writes the resulting changes in one transaction, and
//! every checkpoint interval (default 15 s) marks open sessions alive in the ledger.
//! Changes that fail to write stay queued in order and are retried (every change is
//! idempotent); the checkpoint waits until the queue is empty, so a crash never bills
//! past a session's real end. On startup, [`UsageRecorder::start`] runs crash recovery
//! before accepting events.

use crate::ledger::{LedgerError, RecoveryReport, UsageLedger};
use crate::meter::{AccruedTotals, LedgerChange, Meter, MeterError};
use crate::pricing::{ChatPrice, MediaPrices, Price};
use crate::records::{chat_usage_record, media_usage_record};
use crate::telemetry::{Rejection, UsageTelemetry};
use palaver_core::{
    CallType, ChatMessageSent, ChatUsageObserver, DurableAck, EndReason, MediaUsed, ParticipantType, SessionEnded,
    SessionObserver, SessionStarted,
};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Milliseconds since the Unix epoch; injectable so tests run on virtual time.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The wall clock.
pub fn system_clock() -> Clock {
    Arc::new(|| chrono::Utc::now().timestamp_millis())
}

#[derive(Clone)]
pub struct RecorderConfig {
    pub checkpoint_interval: Duration,
    pub price: Price,
    pub chat_price: ChatPrice,
    /// Recording and media streaming minutes.
    pub media_prices: MediaPrices,
    pub clock: Clock,
}

impl Default for RecorderConfig {
    fn default() -> Self {
        Self {
            checkpoint_interval: Duration::from_secs(15),
            price: Price::default(),
            chat_price: ChatPrice::default(),
            media_prices: MediaPrices::default(),
            clock: system_clock(),
        }
    }
}

enum Command {
    /// With the acknowledgment to give once the start is in a synced ledger commit.
    Started(SessionStarted, DurableAck),
    Ended(SessionEnded),
    CallTypeChanged(String, CallType),
    ChatMessage(ChatMessageSent),
    MediaUsed(MediaUsed),
    Flush(mpsc::Sender<()>),
    Shutdown(mpsc::Sender<()>),
}

/// The [`SessionObserver`] signaling holds. Cheap to clone; never blocks.
#[derive(Clone)]
pub struct BillingObserver {
    tx: mpsc::Sender<Command>,
    telemetry: Arc<dyn UsageTelemetry>,
}

impl BillingObserver {
    fn send(&self, cmd: Command) {
        if self.tx.send(cmd).is_err() {
            // The recorder is gone (shut down): the event cannot be metered.
            tracing::error!("usage recorder is not running; session event dropped");
            self.telemetry.event_rejected(Rejection::RecorderStopped);
        }
    }
}

impl SessionObserver for BillingObserver {
    fn session_started(&self, event: SessionStarted) {
        self.send(Command::Started(event, DurableAck::none()));
    }
    /// The acknowledgment travels with the event; the recorder gives it after the ledger
    /// transaction holding the start has committed (`synchronous=FULL`: synced). If the
    /// recorder is gone, the acknowledgment is dropped unacknowledged.
    fn session_started_durably(&self, event: SessionStarted, durable: DurableAck) {
        self.send(Command::Started(event, durable));
    }
    fn session_ended(&self, event: SessionEnded) {
        self.send(Command::Ended(event));
    }
    fn call_type_changed(&self, conversation_id: &str, call_type: CallType) {
        self.send(Command::CallTypeChanged(conversation_id.to_string(), call_type));
    }
    fn media_used(&self, usage: MediaUsed) {
        self.send(Command::MediaUsed(usage));
    }
}

impl ChatUsageObserver for BillingObserver {
    fn chat_message_sent(&self, event: ChatMessageSent) {
        self.send(Command::ChatMessage(event));
    }
}

/// Handle of the running recorder thread.
pub struct UsageRecorder {
    tx: mpsc::Sender<Command>,
    thread: Option<JoinHandle<()>>,
    telemetry: Arc<dyn UsageTelemetry>,
}

impl UsageRecorder {
    /// Recover what a crash left open, then start the recorder thread.
    pub fn start(
        mut ledger: Box<dyn UsageLedger>,
        config: RecorderConfig,
        telemetry: Arc<dyn UsageTelemetry>,
    ) -> Result<(Self, RecoveryReport), LedgerError> {
        let report = ledger.recover()?;
        if report.sessions_closed > 0 || report.calls_ended > 0 {
            tracing::warn!(
                sessions = report.sessions_closed,
                calls = report.calls_ended,
                "closed sessions left open by a crash at their last checkpoint (ServerFailure)"
            );
        }
        telemetry.sessions_recovered(report.sessions_closed as u64);
        let (tx, rx) = mpsc::channel();
        let worker = Worker {
            meter: Meter::new(config.price),
            chat_price: config.chat_price,
            media_prices: config.media_prices,
            ledger,
            pending: VecDeque::new(),
            awaiting_durable: Vec::new(),
            published: AccruedTotals::default(),
            telemetry: telemetry.clone(),
            clock: config.clock.clone(),
        };
        let interval = config.checkpoint_interval.max(Duration::from_millis(1));
        let thread = std::thread::Builder::new()
            .name("usage-recorder".into())
            .spawn(move || worker.run(rx, interval))
            .map_err(|e| LedgerError::Corrupt(format!("cannot start the recorder thread: {e}")))?;
        Ok((Self { tx, thread: Some(thread), telemetry }, report))
    }

    pub fn observer(&self) -> BillingObserver {
        BillingObserver { tx: self.tx.clone(), telemetry: self.telemetry.clone() }
    }

    /// Wait until every event sent before this call has been applied and written (or
    /// has failed to write and is queued for retry).
    pub fn flush(&self) {
        let (reply, done) = mpsc::channel();
        if self.tx.send(Command::Flush(reply)).is_ok() {
            let _ = done.recv();
        }
    }

    /// Clean shutdown: close every open session now (`ServerShutdown`), write, stop.
    pub fn shutdown(mut self) {
        let (reply, done) = mpsc::channel();
        if self.tx.send(Command::Shutdown(reply)).is_ok() {
            let _ = done.recv();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Worker {
    meter: Meter,
    chat_price: ChatPrice,
    media_prices: MediaPrices,
    ledger: Box<dyn UsageLedger>,
    pending: VecDeque<LedgerChange>,
    /// Session starts accepted but not yet written: acknowledged when `pending` empties.
    awaiting_durable: Vec<DurableAck>,
    published: AccruedTotals,
    telemetry: Arc<dyn UsageTelemetry>,
    clock: Clock,
}

fn rejection(e: &MeterError) -> Rejection {
    match e {
        MeterError::DuplicateSession(_) => Rejection::DuplicateSession,
        MeterError::UnknownSession(_) => Rejection::UnknownSession,
        MeterError::ConversationMismatch { .. } => Rejection::ConversationMismatch,
        MeterError::EmptyId => Rejection::EmptyId,
    }
}

impl Worker {
    fn run(mut self, rx: mpsc::Receiver<Command>, interval: Duration) {
        let mut next_tick = Instant::now() + interval;
        loop {
            // Checked before every receive so a steady stream of events cannot starve it.
            if Instant::now() >= next_tick {
                self.tick();
                next_tick = Instant::now() + interval;
            }
            let wait = next_tick.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(Command::Started(ev, durable)) => {
                    let result = self.meter.session_started(ev);
                    // A refused start (a duplicate) has nothing to write: it is acknowledged
                    // with whatever is pending, as soon as that is durable.
                    self.awaiting_durable.push(durable);
                    self.accept(result);
                }
                Ok(Command::Ended(ev)) => {
                    let result = self.meter.session_ended(ev);
                    self.accept(result);
                }
                Ok(Command::CallTypeChanged(conversation_id, call_type)) => {
                    let changes = self.meter.call_type_changed(&conversation_id, call_type);
                    self.accept(Ok(changes));
                }
                Ok(Command::ChatMessage(ev)) => {
                    let record = chat_usage_record(&ev, self.chat_price);
                    self.accept(Ok(vec![LedgerChange::ChatMessageSent(record)]));
                }
                Ok(Command::MediaUsed(usage)) => {
                    let record = media_usage_record(&usage, self.media_prices);
                    self.accept(Ok(vec![LedgerChange::MediaUsed(record)]));
                }
                Ok(Command::Flush(reply)) => {
                    self.write_pending();
                    let _ = reply.send(());
                }
                Ok(Command::Shutdown(reply)) => {
                    let changes = self.meter.close_all((self.clock)(), EndReason::ServerShutdown);
                    self.accept(Ok(changes));
                    let _ = reply.send(());
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    // Every handle is gone without a shutdown: keep what we have durable;
                    // open sessions are closed by recovery at this checkpoint.
                    self.tick();
                    return;
                }
            }
        }
    }

    fn accept(&mut self, result: Result<Vec<LedgerChange>, MeterError>) {
        match result {
            Ok(changes) => {
                self.pending.extend(changes);
                self.write_pending();
            }
            Err(e) => {
                tracing::warn!(error = %e, "session event refused by the meter");
                self.telemetry.event_rejected(rejection(&e));
            }
        }
        if self.pending.is_empty() {
            self.acknowledge_durable();
        }
        self.publish();
    }

    fn tick(&mut self) {
        let now = (self.clock)();
        self.meter.accrue(now);
        self.write_pending();
        // Never checkpoint past unwritten closes: recovery would bill beyond their end.
        if self.pending.is_empty() {
            match self.ledger.checkpoint(now) {
                Ok(open) => {
                    tracing::debug!(open_sessions = open, at_ms = now, "usage checkpoint");
                    self.telemetry.checkpoint_written(now);
                }
                Err(e) => {
                    tracing::error!(error = %e, "usage checkpoint failed");
                    self.telemetry.ledger_write_failed();
                }
            }
        }
        self.publish();
    }

    /// Everything accepted so far is in the ledger: release the joins waiting for it.
    fn acknowledge_durable(&mut self) {
        for durable in self.awaiting_durable.drain(..) {
            durable.acknowledge();
        }
    }

    fn write_pending(&mut self) {
        if self.pending.is_empty() {
            self.acknowledge_durable();
            return;
        }
        match self.ledger.apply(self.pending.make_contiguous()) {
            Ok(()) => {
                // Phone minutes reach /metrics once durable (per number, trunk, direction).
                for change in &self.pending {
                    if let LedgerChange::SessionClosed { usage, .. } = change {
                        for record in usage {
                            if let Some(leg) = &record.phone {
                                self.telemetry.phone_time(leg, record.duration_ms());
                            }
                        }
                    }
                }
                self.pending.clear();
                self.acknowledge_durable();
            }
            Err(e) => {
                tracing::error!(error = %e, pending = self.pending.len(), "usage ledger write failed; will retry");
                self.telemetry.ledger_write_failed();
            }
        }
    }

    /// Report accrued time, open sessions, calls and the write queue to telemetry.
    fn publish(&mut self) {
        let m = &self.telemetry;
        let accrued = self.meter.accrued();
        for (i, t) in ParticipantType::ALL.into_iter().enumerate() {
            let delta = accrued.consumed_ms[i] - self.published.consumed_ms[i];
            if delta > 0 {
                m.participant_time(t, delta, self.meter.price().micro_usd_per_minute);
            }
        }
        self.published = accrued;
        let open = self.meter.open_sessions_by_type();
        for (i, t) in ParticipantType::ALL.into_iter().enumerate() {
            m.open_participants(t, open[i]);
        }
        m.active_calls(self.meter.active_call_count());
        m.pending_changes(self.pending.len());
        m.ledger_spooled(self.ledger.spooled_changes());
    }
}

#[cfg(test)]
mod tests;
