//! The billing meter: a sans-IO state machine that turns participant-session events into
//! ledger changes (usage records, call spans) and running participant-time totals.
//!
//! Time is always passed in (milliseconds since the Unix epoch); the meter never reads a
//! clock. A session runs from connect (lobby included) to leave. Reconnect grace is
//! signaling's business: a participant who drops and comes back within grace keeps one
//! session, so the meter sees one uninterrupted span; a rejoin after grace is a new
//! session with its own records, and the gap between them is not billed.

use crate::pricing::Price;
use crate::records::{CallSpan, ClosedSession, UsageRecord, usage_records_for};
use palaver_core::{CallType, EndReason, ParticipantType, SessionEnded, SessionStarted};
use std::collections::HashMap;

/// One durable change the ledger must apply (in order, each idempotently). Serializable: the
/// ledger spool keeps changes on disk while the ledger's database is away (`ledger::spool`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LedgerChange {
    /// The first participant of a conversation connected: a call begins.
    CallStarted(CallSpan),
    /// A participant session opened (stored as open, then checkpointed).
    SessionOpened {
        started: SessionStarted,
        call_started_ms: i64,
    },
    /// A participant session closed, with its usage records (one per UTC day).
    SessionClosed {
        session: ClosedSession,
        call_started_ms: i64,
        usage: Vec<UsageRecord>,
    },
    /// The last participant left: the call is over. `ended_by` is the last participant.
    CallEnded {
        call: CallSpan,
        ended_by: String,
    },
    CallTypeChanged {
        conversation_id: String,
        call_started_ms: i64,
        call_type: CallType,
    },
    /// A chat message was sent: its usage record (not from the meter; the recorder builds it).
    ChatMessageSent(UsageRecord),
    /// A recording or a media stream ended: its usage record (not from the meter; the
    /// recorder builds it).
    MediaUsed(UsageRecord),
}

/// Input the meter refuses (the event is dropped and counted by the shell).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MeterError {
    #[error("session `{0}` is already open")]
    DuplicateSession(String),
    #[error("session `{0}` is not open")]
    UnknownSession(String),
    #[error("session `{session}` belongs to conversation `{expected}`, not `{got}`")]
    ConversationMismatch { session: String, expected: String, got: String },
    #[error("session id and conversation id must not be empty")]
    EmptyId,
}

/// Participant time accrued so far, per participant type (index = position in
/// [`ParticipantType::ALL`]); open sessions count up to the last [`Meter::accrue`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AccruedTotals {
    pub consumed_ms: [i64; 4],
}

impl AccruedTotals {
    pub fn consumed_ms_of(&self, t: ParticipantType) -> i64 {
        self.consumed_ms[type_index(t)]
    }
    pub fn billed_ms(&self) -> i64 {
        ParticipantType::ALL.iter().filter(|t| t.is_billable()).map(|t| self.consumed_ms_of(*t)).sum()
    }
}

pub fn type_index(t: ParticipantType) -> usize {
    ParticipantType::ALL.iter().position(|x| *x == t).unwrap_or(0)
}

#[derive(Debug, Clone)]
struct OpenSession {
    started: SessionStarted,
    call_started_ms: i64,
    accrued_until_ms: i64,
}

#[derive(Debug, Clone)]
struct ActiveCall {
    span: CallSpan,
    open_sessions: usize,
}

/// The billing meter.
#[derive(Debug, Clone, Default)]
pub struct Meter {
    price: Price,
    sessions: HashMap<String, OpenSession>,
    calls: HashMap<String, ActiveCall>,
    accrued: AccruedTotals,
}

impl Meter {
    pub fn new(price: Price) -> Self {
        Self { price, ..Self::default() }
    }

    pub fn price(&self) -> Price {
        self.price
    }

    /// A participant connected (lobby included).
    pub fn session_started(&mut self, ev: SessionStarted) -> Result<Vec<LedgerChange>, MeterError> {
        if ev.session_id.is_empty() || ev.conversation_id.is_empty() {
            return Err(MeterError::EmptyId);
        }
        if self.sessions.contains_key(&ev.session_id) {
            return Err(MeterError::DuplicateSession(ev.session_id));
        }
        let mut changes = Vec::with_capacity(2);
        let call = self.calls.entry(ev.conversation_id.clone()).or_insert_with(|| {
            let span = CallSpan {
                conversation_id: ev.conversation_id.clone(),
                started_ms: ev.at_ms,
                call_type: ev.call_type,
                started_by: ev.participant_raw_id.clone(),
                thread_id: ev.thread_id.clone(),
                ended_ms: None,
            };
            changes.push(LedgerChange::CallStarted(span.clone()));
            ActiveCall { span, open_sessions: 0 }
        });
        call.open_sessions += 1;
        let call_started_ms = call.span.started_ms;
        self.sessions.insert(
            ev.session_id.clone(),
            OpenSession { started: ev.clone(), call_started_ms, accrued_until_ms: ev.at_ms },
        );
        changes.push(LedgerChange::SessionOpened { started: ev, call_started_ms });
        Ok(changes)
    }

    /// A participant left (or was removed, or grace ran out).
    pub fn session_ended(&mut self, ev: SessionEnded) -> Result<Vec<LedgerChange>, MeterError> {
        let Some(open) = self.sessions.get(&ev.session_id) else {
            return Err(MeterError::UnknownSession(ev.session_id));
        };
        if open.started.conversation_id != ev.conversation_id {
            return Err(MeterError::ConversationMismatch {
                session: ev.session_id,
                expected: open.started.conversation_id.clone(),
                got: ev.conversation_id,
            });
        }
        Ok(self.close(&ev.session_id, ev.at_ms, ev.reason))
    }

    /// The conversation's call type changed (e.g. a 1:1 call became a group call).
    pub fn call_type_changed(&mut self, conversation_id: &str, call_type: CallType) -> Vec<LedgerChange> {
        match self.calls.get_mut(conversation_id) {
            Some(call) if call.span.call_type != call_type => {
                call.span.call_type = call_type;
                vec![LedgerChange::CallTypeChanged {
                    conversation_id: conversation_id.to_string(),
                    call_started_ms: call.span.started_ms,
                    call_type,
                }]
            }
            _ => Vec::new(),
        }
    }

    /// Close every open session at `now_ms` (clean shutdown).
    pub fn close_all(&mut self, now_ms: i64, reason: EndReason) -> Vec<LedgerChange> {
        let mut ids: Vec<String> = self.sessions.keys().cloned().collect();
        ids.sort();
        ids.iter().flat_map(|id| self.close(id, now_ms, reason)).collect()
    }

    /// Count open sessions' time up to `now_ms` into the running totals.
    pub fn accrue(&mut self, now_ms: i64) {
        for s in self.sessions.values_mut() {
            if now_ms > s.accrued_until_ms {
                self.accrued.consumed_ms[type_index(s.started.participant_type)] += now_ms - s.accrued_until_ms;
                s.accrued_until_ms = now_ms;
            }
        }
    }

    pub fn accrued(&self) -> AccruedTotals {
        self.accrued
    }

    /// Open sessions per participant type (index as in [`ParticipantType::ALL`]).
    pub fn open_sessions_by_type(&self) -> [usize; 4] {
        let mut n = [0; 4];
        for s in self.sessions.values() {
            n[type_index(s.started.participant_type)] += 1;
        }
        n
    }

    pub fn open_session_count(&self) -> usize {
        self.sessions.len()
    }

    pub fn active_call_count(&self) -> usize {
        self.calls.len()
    }

    fn close(&mut self, session_id: &str, at_ms: i64, reason: EndReason) -> Vec<LedgerChange> {
        let Some(open) = self.sessions.remove(session_id) else {
            return Vec::new();
        };
        // A clock step backwards must never produce negative time.
        let end_ms = at_ms.max(open.started.at_ms);
        if end_ms > open.accrued_until_ms {
            self.accrued.consumed_ms[type_index(open.started.participant_type)] += end_ms - open.accrued_until_ms;
        }
        let conversation_id = open.started.conversation_id.clone();
        let last_participant = open.started.participant_raw_id.clone();
        let session = ClosedSession { started: open.started, end_ms, reason };
        let usage = usage_records_for(&session, self.price);
        let mut changes = vec![LedgerChange::SessionClosed { session, call_started_ms: open.call_started_ms, usage }];
        let call_is_empty = match self.calls.get_mut(&conversation_id) {
            Some(call) => {
                call.open_sessions = call.open_sessions.saturating_sub(1);
                call.open_sessions == 0
            }
            None => false,
        };
        if call_is_empty && let Some(call) = self.calls.remove(&conversation_id) {
            let mut span = call.span;
            span.ended_ms = Some(end_ms.max(span.started_ms));
            changes.push(LedgerChange::CallEnded { call: span, ended_by: last_participant });
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::MS_PER_DAY;
    use crate::testing::session_started;

    const MIN: i64 = 60_000;
    /// 2026-11-21T10:00:00Z
    const T0: i64 = 1_795_255_200_000;

    fn join(
        meter: &mut Meter,
        session: &str,
        conv: &str,
        raw: &str,
        t: ParticipantType,
        at_ms: i64,
    ) -> Vec<LedgerChange> {
        meter
            .session_started(SessionStarted {
                thread_id: Some("19:meeting_x@thread.v2".into()),
                ..session_started(session, conv, raw, t, at_ms)
            })
            .unwrap()
    }

    fn leave(meter: &mut Meter, session: &str, conv: &str, at_ms: i64) -> Vec<LedgerChange> {
        meter
            .session_ended(SessionEnded {
                session_id: session.into(),
                conversation_id: conv.into(),
                reason: EndReason::Left,
                at_ms,
            })
            .unwrap()
    }

    fn usage(changes: &[LedgerChange]) -> Vec<UsageRecord> {
        changes
            .iter()
            .flat_map(|c| match c {
                LedgerChange::SessionClosed { usage, .. } => usage.clone(),
                _ => Vec::new(),
            })
            .collect()
    }

    #[test]
    fn seed_example_twenty_minutes_consumed_ten_billed() {
        // A 10-minute meeting: one external user on the palaver client, one directory user
        // on the native client.
        let mut m = Meter::new(Price::default());
        let mut out = join(&mut m, "ext", "meet", "8:acs:r_u1", ParticipantType::AcsAsTeamsExternalUser, T0);
        out.extend(join(&mut m, "dir", "meet", "8:orgid:o1", ParticipantType::Teams, T0));
        out.extend(leave(&mut m, "ext", "meet", T0 + 10 * MIN));
        out.extend(leave(&mut m, "dir", "meet", T0 + 10 * MIN));
        let records = usage(&out);
        let consumed: i64 = records.iter().map(UsageRecord::duration_ms).sum();
        let billed: i64 = records.iter().map(UsageRecord::billable_ms).sum();
        let cost: i64 = records.iter().map(|r| r.cost_micro_usd).sum();
        assert_eq!(consumed, 20 * MIN);
        assert_eq!(billed, 10 * MIN);
        assert_eq!(cost, 40_000, "10 billed minutes at $0.004 = $0.04");
        assert_eq!(m.accrued().consumed_ms_of(ParticipantType::Teams), 10 * MIN);
        assert_eq!(m.accrued().billed_ms(), 10 * MIN);
        // the native directory client is recorded, at zero price
        let native = records.iter().find(|r| r.participant_type == ParticipantType::Teams).unwrap();
        assert_eq!((native.duration_ms(), native.cost_micro_usd, native.billable), (10 * MIN, 0, false));
        // one call started and ended, with the full duration
        assert!(matches!(&out[0], LedgerChange::CallStarted(c) if c.started_ms == T0));
        let ended = out.iter().find_map(|c| match c {
            LedgerChange::CallEnded { call, ended_by } => Some((call.clone(), ended_by.clone())),
            _ => None,
        });
        let (call, by) = ended.unwrap();
        assert_eq!((call.ended_ms, by.as_str()), (Some(T0 + 10 * MIN), "8:orgid:o1"));
        assert_eq!(m.active_call_count(), 0);
    }

    #[test]
    fn lobby_time_is_billed_from_connect() {
        // Connects at T0, waits 3 minutes in the lobby, is admitted, stays 7 minutes. The
        // session starts at connect; admission does not restart it.
        let mut m = Meter::new(Price::default());
        join(&mut m, "org", "meet", "8:orgid:o1", ParticipantType::AcsAsM365User, T0);
        join(&mut m, "guest", "meet", "8:acs:r_g", ParticipantType::AcsAsTeamsExternalUser, T0);
        let records = usage(&leave(&mut m, "guest", "meet", T0 + 10 * MIN));
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].billable_ms(), 10 * MIN);
        assert_eq!(records[0].cost_micro_usd, 40_000);
    }

    #[test]
    fn reconnect_within_grace_is_one_uninterrupted_session() {
        // Signaling keeps the session across a grace reconnect, so the meter sees no events
        // in between: one record for the whole span.
        let mut m = Meter::new(Price::default());
        join(&mut m, "s", "call", "8:acs:r_u", ParticipantType::Acs, T0);
        m.accrue(T0 + 2 * MIN); // connection drops around here; grace holds the session
        m.accrue(T0 + 3 * MIN);
        let records = usage(&leave(&mut m, "s", "call", T0 + 5 * MIN));
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].duration_ms(), 5 * MIN);
        assert_eq!(m.accrued().consumed_ms_of(ParticipantType::Acs), 5 * MIN);
    }

    #[test]
    fn rejoin_is_a_new_session_and_the_gap_is_not_billed() {
        let mut m = Meter::new(Price::default());
        join(&mut m, "keep", "call", "8:acs:r_a", ParticipantType::Acs, T0);
        join(&mut m, "first", "call", "8:acs:r_b", ParticipantType::Acs, T0);
        let mut out = leave(&mut m, "first", "call", T0 + 2 * MIN);
        out.extend(join(&mut m, "second", "call", "8:acs:r_b", ParticipantType::Acs, T0 + 4 * MIN));
        out.extend(leave(&mut m, "second", "call", T0 + 6 * MIN));
        let records = usage(&out);
        assert_eq!(records.len(), 2);
        assert_ne!(records[0].record_id, records[1].record_id);
        assert_eq!(records.iter().map(UsageRecord::billable_ms).sum::<i64>(), 4 * MIN);
        // the call never emptied, so no second CallStarted
        assert!(!out.iter().any(|c| matches!(c, LedgerChange::CallStarted(_) | LedgerChange::CallEnded { .. })));
    }

    #[test]
    fn sessions_are_split_at_utc_midnight() {
        let midnight = (T0.div_euclid(MS_PER_DAY) + 1) * MS_PER_DAY;
        let mut m = Meter::new(Price::default());
        join(&mut m, "night", "call", "8:acs:r_n", ParticipantType::Acs, midnight - 5 * MIN);
        let records = usage(&leave(&mut m, "night", "call", midnight + 7 * MIN));
        assert_eq!(records.len(), 2);
        assert_eq!((records[0].start_ms, records[0].end_ms), (midnight - 5 * MIN, midnight));
        assert_eq!((records[1].start_ms, records[1].end_ms), (midnight, midnight + 7 * MIN));
        assert_eq!(records[0].cost_micro_usd + records[1].cost_micro_usd, 48_000);
        assert!(records.iter().all(|r| r.participant_id == "night"));
    }

    #[test]
    fn bad_events_are_refused_without_changing_state() {
        let mut m = Meter::new(Price::default());
        join(&mut m, "s", "c", "8:acs:r_u", ParticipantType::Acs, T0);
        let dup = SessionStarted {
            call_type: CallType::P2P,
            ..session_started("s", "c", "8:acs:r_u", ParticipantType::Acs, T0 + MIN)
        };
        assert_eq!(m.session_started(dup), Err(MeterError::DuplicateSession("s".into())));
        let unknown =
            SessionEnded { session_id: "x".into(), conversation_id: "c".into(), reason: EndReason::Left, at_ms: T0 };
        assert_eq!(m.session_ended(unknown), Err(MeterError::UnknownSession("x".into())));
        let wrong = SessionEnded {
            session_id: "s".into(),
            conversation_id: "other".into(),
            reason: EndReason::Left,
            at_ms: T0,
        };
        assert!(matches!(m.session_ended(wrong), Err(MeterError::ConversationMismatch { .. })));
        assert_eq!(m.open_session_count(), 1);
        // an end stamped before the start (clock stepped back) is a zero-length record
        let records = usage(&leave(&mut m, "s", "c", T0 - 10_000));
        assert_eq!(records[0].duration_ms(), 0);
        // a second end for the same session is refused: records are written once
        let again = SessionEnded {
            session_id: "s".into(),
            conversation_id: "c".into(),
            reason: EndReason::Left,
            at_ms: T0 + MIN,
        };
        assert!(m.session_ended(again).is_err());
    }

    #[test]
    fn accrual_counts_open_sessions_once() {
        let mut m = Meter::new(Price::default());
        join(&mut m, "a", "c", "8:acs:r_a", ParticipantType::Acs, T0);
        join(&mut m, "b", "c", "8:orgid:b", ParticipantType::Teams, T0 + MIN);
        m.accrue(T0 + 3 * MIN);
        m.accrue(T0 + 2 * MIN); // time going backwards adds nothing
        assert_eq!(m.accrued().consumed_ms_of(ParticipantType::Acs), 3 * MIN);
        assert_eq!(m.accrued().consumed_ms_of(ParticipantType::Teams), 2 * MIN);
        leave(&mut m, "a", "c", T0 + 4 * MIN);
        assert_eq!(m.accrued().consumed_ms_of(ParticipantType::Acs), 4 * MIN);
        assert_eq!(m.open_sessions_by_type()[type_index(ParticipantType::Teams)], 1);
        let out = m.close_all(T0 + 5 * MIN, EndReason::ServerShutdown);
        assert!(
            matches!(&out[0], LedgerChange::SessionClosed { session, .. } if session.reason == EndReason::ServerShutdown)
        );
        assert_eq!(m.accrued().consumed_ms_of(ParticipantType::Teams), 4 * MIN);
        assert_eq!(m.open_session_count(), 0);
    }

    #[test]
    fn call_type_change_is_recorded_once() {
        let mut m = Meter::new(Price::default());
        join(&mut m, "a", "c", "8:acs:r_a", ParticipantType::Acs, T0);
        assert_eq!(m.call_type_changed("c", CallType::Group), vec![]);
        assert_eq!(m.call_type_changed("c", CallType::P2P).len(), 1);
        assert_eq!(m.call_type_changed("unknown", CallType::P2P), vec![]);
    }
}
