//! SQLite (WAL) implementation of [`UsageLedger`].
//!
//! One connection per owner: the recorder thread writes through one, the export API and
//! the webhook deliverer read/update through their own (WAL lets readers run beside the
//! writer). Closing a session only writes usage records when the session actually moves
//! from open to closed, so a replayed or late close never adds minutes.

use super::schema;
use super::{DeliveryOutcome, LedgerError, LedgerOptions, OutboxItem, RecoveryReport, UsageLedger, UsageQuery};
use crate::meter::LedgerChange;
use crate::records::{
    CallSpan, CallSummary, ClosedSession, TypeTotals, UsageKind, UsageRecord, call_type_str, parse_call_type,
    parse_end_reason, parse_endpoint_type, parse_participant_type, usage_records_for,
};
use crate::webhook::events::events_for;
use palaver_core::{EndReason, ParticipantType, PhoneDirection, PhoneLeg, SessionStarted};
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};
use std::path::Path;

const LAST_CHECKPOINT_KEY: &str = "last_checkpoint_ms";

pub struct SqliteLedger {
    conn: Connection,
    options: LedgerOptions,
}

impl SqliteLedger {
    /// Open (creating if needed) the ledger database at `path`.
    pub fn open(path: impl AsRef<Path>, options: LedgerOptions) -> Result<Self, LedgerError> {
        let conn = Connection::open(path)?;
        schema::prepare(&conn)?;
        Ok(Self { conn, options })
    }

    /// A private in-memory ledger (tests, ephemeral runs).
    pub fn open_in_memory(options: LedgerOptions) -> Result<Self, LedgerError> {
        let conn = Connection::open_in_memory()?;
        schema::prepare(&conn)?;
        Ok(Self { conn, options })
    }

    pub fn options(&self) -> &LedgerOptions {
        &self.options
    }
}

fn corrupt(what: &str, value: &str) -> LedgerError {
    LedgerError::Corrupt(format!("{what} `{value}`"))
}

fn queue_events(tx: &Transaction<'_>, options: &LedgerOptions, change: &LedgerChange) -> Result<(), LedgerError> {
    if options.webhook_endpoints.is_empty() {
        return Ok(());
    }
    for ev in events_for(&options.event_topic, change) {
        let payload = serde_json::to_string(&ev)?;
        let created_ms =
            chrono::DateTime::parse_from_rfc3339(&ev.event_time).map(|t| t.timestamp_millis()).unwrap_or(0);
        for endpoint in &options.webhook_endpoints {
            tx.execute(
                "INSERT OR IGNORE INTO outbox (event_id, endpoint, payload, created_ms, next_attempt_ms)
                 VALUES (?1, ?2, ?3, ?4, 0)",
                params![ev.id, endpoint, payload, created_ms],
            )?;
        }
    }
    Ok(())
}

fn insert_session(tx: &Transaction<'_>, s: &SessionStarted, call_started_ms: i64) -> rusqlite::Result<usize> {
    tx.execute(
        "INSERT OR IGNORE INTO sessions (session_id, conversation_id, call_started_ms, call_type, participant_raw_id,
             participant_type, endpoint_type, thread_id, start_ms, checkpoint_ms, phone_number, trunk, direction)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10, ?11, ?12)",
        params![
            s.session_id,
            s.conversation_id,
            call_started_ms,
            call_type_str(s.call_type),
            s.participant_raw_id,
            s.participant_type.as_str(),
            s.endpoint_type.as_str(),
            s.thread_id,
            s.at_ms,
            s.phone.as_ref().map(|p| p.number.as_str()),
            s.phone.as_ref().map(|p| p.trunk.as_str()),
            s.phone.as_ref().map(|p| p.direction.as_str())
        ],
    )
}

fn insert_usage(tx: &Transaction<'_>, r: &UsageRecord) -> rusqlite::Result<usize> {
    tx.execute(
        "INSERT OR IGNORE INTO usage_records (record_id, correlation_id, participant_id, segment, start_ms, end_ms,
             user_id_a, participant_type, endpoint_type, billable, unit_price_micro_usd, cost_micro_usd, usage_type,
             phone_number, trunk, direction)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
        params![
            r.record_id,
            r.correlation_id,
            r.participant_id,
            r.segment,
            r.start_ms,
            r.end_ms,
            r.user_id_a,
            r.participant_type.as_str(),
            r.endpoint_type.as_str(),
            r.billable,
            r.unit_price_micro_usd,
            r.cost_micro_usd,
            r.kind.usage_type(),
            r.phone.as_ref().map(|p| p.number.as_str()),
            r.phone.as_ref().map(|p| p.trunk.as_str()),
            r.phone.as_ref().map(|p| p.direction.as_str())
        ],
    )
}

/// Apply one change; returns whether it took effect (events are queued only then).
fn apply_one(tx: &Transaction<'_>, change: &LedgerChange) -> Result<bool, LedgerError> {
    Ok(match change {
        LedgerChange::CallStarted(call) => {
            tx.execute(
                "INSERT OR IGNORE INTO calls (conversation_id, started_ms, call_type, started_by, thread_id)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    call.conversation_id,
                    call.started_ms,
                    call_type_str(call.call_type),
                    call.started_by,
                    call.thread_id
                ],
            )? == 1
        }
        LedgerChange::SessionOpened { started, call_started_ms } => insert_session(tx, started, *call_started_ms)? == 1,
        LedgerChange::SessionClosed { session, call_started_ms, usage } => {
            // A session never stored as open (should not happen) is stored closed directly.
            insert_session(tx, &session.started, *call_started_ms)?;
            let moved = tx.execute(
                "UPDATE sessions SET end_ms = ?2, end_reason = ?3 WHERE session_id = ?1 AND end_ms IS NULL",
                params![session.started.session_id, session.end_ms, session.reason.as_str()],
            )? == 1;
            if moved {
                for r in usage {
                    insert_usage(tx, r)?;
                }
            }
            moved
        }
        LedgerChange::CallEnded { call, .. } => {
            tx.execute(
                "UPDATE calls SET ended_ms = ?3 WHERE conversation_id = ?1 AND started_ms = ?2 AND ended_ms IS NULL",
                params![call.conversation_id, call.started_ms, call.ended_ms.unwrap_or(call.started_ms)],
            )? == 1
        }
        LedgerChange::ChatMessageSent(record) | LedgerChange::MediaUsed(record) => insert_usage(tx, record)? == 1,
        LedgerChange::CallTypeChanged { conversation_id, call_started_ms, call_type } => {
            tx.execute(
                "UPDATE calls SET call_type = ?3 WHERE conversation_id = ?1 AND started_ms = ?2",
                params![conversation_id, call_started_ms, call_type_str(*call_type)],
            )? == 1
        }
    })
}

fn apply_changes(tx: &Transaction<'_>, options: &LedgerOptions, changes: &[LedgerChange]) -> Result<(), LedgerError> {
    for change in changes {
        if apply_one(tx, change)? {
            queue_events(tx, options, change)?;
        }
    }
    Ok(())
}

struct StoredSession {
    started: SessionStarted,
    call_started_ms: i64,
    checkpoint_ms: i64,
}

fn read_open_sessions(tx: &Transaction<'_>) -> Result<Vec<StoredSession>, LedgerError> {
    let mut stmt = tx.prepare(
        "SELECT session_id, conversation_id, call_started_ms, call_type, participant_raw_id, participant_type,
                endpoint_type, thread_id, start_ms, checkpoint_ms, phone_number, trunk, direction
         FROM sessions WHERE end_ms IS NULL ORDER BY start_ms, session_id",
    )?;
    let rows = stmt.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, i64>(2)?,
            row.get::<_, String>(3)?,
            row.get::<_, String>(4)?,
            row.get::<_, String>(5)?,
            row.get::<_, String>(6)?,
            row.get::<_, Option<String>>(7)?,
            row.get::<_, i64>(8)?,
            row.get::<_, i64>(9)?,
            phone_leg(row.get(10)?, row.get(11)?, row.get(12)?),
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (
            session_id,
            conversation_id,
            call_started_ms,
            call_type,
            raw,
            ptype,
            etype,
            thread_id,
            start_ms,
            checkpoint_ms,
            phone,
        ) = row?;
        out.push(StoredSession {
            started: SessionStarted {
                session_id,
                conversation_id,
                call_type: parse_call_type(&call_type).ok_or_else(|| corrupt("call type", &call_type))?,
                participant_raw_id: raw,
                participant_type: parse_participant_type(&ptype).ok_or_else(|| corrupt("participant type", &ptype))?,
                endpoint_type: parse_endpoint_type(&etype).ok_or_else(|| corrupt("endpoint type", &etype))?,
                thread_id,
                at_ms: start_ms,
                phone,
            },
            call_started_ms,
            checkpoint_ms,
        });
    }
    Ok(out)
}

fn read_running_calls(tx: &Transaction<'_>) -> Result<Vec<CallSpan>, LedgerError> {
    let mut stmt = tx.prepare(
        "SELECT conversation_id, started_ms, call_type, started_by, thread_id FROM calls
         WHERE ended_ms IS NULL ORDER BY started_ms, conversation_id",
    )?;
    let rows = stmt.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, i64>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, String>(3)?,
            row.get(4)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (conversation_id, started_ms, call_type, started_by, thread_id) = row?;
        out.push(CallSpan {
            conversation_id,
            started_ms,
            call_type: parse_call_type(&call_type).ok_or_else(|| corrupt("call type", &call_type))?,
            started_by,
            thread_id,
            ended_ms: None,
        });
    }
    Ok(out)
}

/// A phone leg from its three stored columns (all NULL for everyone but phones; a direction
/// this version does not know reads as no leg rather than failing the export).
fn phone_leg(number: Option<String>, trunk: Option<String>, direction: Option<String>) -> Option<PhoneLeg> {
    let direction = PhoneDirection::parse(direction.as_deref()?)?;
    Some(PhoneLeg { number: number?, trunk: trunk?, direction })
}

fn usage_from_row(row: &Row<'_>) -> rusqlite::Result<(UsageRecord, [String; 3])> {
    let ptype: String = row.get(7)?;
    let etype: String = row.get(8)?;
    let utype: String = row.get(12)?;
    let record = UsageRecord {
        record_id: row.get(0)?,
        kind: UsageKind::ParticipantMinutes,
        correlation_id: row.get(1)?,
        participant_id: row.get(2)?,
        segment: row.get(3)?,
        start_ms: row.get(4)?,
        end_ms: row.get(5)?,
        user_id_a: row.get(6)?,
        participant_type: ParticipantType::Acs,
        endpoint_type: palaver_core::EndpointType::Unknown,
        billable: row.get(9)?,
        unit_price_micro_usd: row.get(10)?,
        cost_micro_usd: row.get(11)?,
        phone: phone_leg(row.get(13)?, row.get(14)?, row.get(15)?),
    };
    Ok((record, [ptype, etype, utype]))
}

impl UsageLedger for SqliteLedger {
    fn apply(&mut self, changes: &[LedgerChange]) -> Result<(), LedgerError> {
        let tx = self.conn.transaction()?;
        apply_changes(&tx, &self.options, changes)?;
        tx.commit()?;
        Ok(())
    }

    fn checkpoint(&mut self, now_ms: i64) -> Result<usize, LedgerError> {
        let tx = self.conn.transaction()?;
        let open =
            tx.execute("UPDATE sessions SET checkpoint_ms = MAX(checkpoint_ms, ?1) WHERE end_ms IS NULL", [now_ms])?;
        tx.execute(
            "INSERT INTO ledger_meta (key, value) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = MAX(value, excluded.value)",
            params![LAST_CHECKPOINT_KEY, now_ms],
        )?;
        tx.commit()?;
        Ok(open)
    }

    fn recover(&mut self) -> Result<RecoveryReport, LedgerError> {
        let tx = self.conn.transaction()?;
        let mut report = RecoveryReport::default();
        let mut changes = Vec::new();
        for s in read_open_sessions(&tx)? {
            let session = ClosedSession {
                end_ms: s.checkpoint_ms.max(s.started.at_ms),
                reason: EndReason::ServerFailure,
                started: s.started,
            };
            let usage = usage_records_for(&session, self.options.price);
            changes.push(LedgerChange::SessionClosed { session, call_started_ms: s.call_started_ms, usage });
        }
        report.sessions_closed = changes.len();
        apply_changes(&tx, &self.options, &changes)?;
        report.changes = changes;
        for mut call in read_running_calls(&tx)? {
            // The call ended when its last participant's session did.
            let last: Option<(i64, String)> = tx
                .query_row(
                    "SELECT end_ms, participant_raw_id FROM sessions
                     WHERE conversation_id = ?1 AND call_started_ms = ?2 AND end_ms IS NOT NULL
                     ORDER BY end_ms DESC, session_id DESC LIMIT 1",
                    params![call.conversation_id, call.started_ms],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?;
            let (ended_ms, ended_by) = last.unwrap_or((call.started_ms, call.started_by.clone()));
            call.ended_ms = Some(ended_ms.max(call.started_ms));
            let ended = LedgerChange::CallEnded { call, ended_by };
            apply_changes(&tx, &self.options, std::slice::from_ref(&ended))?;
            report.changes.push(ended);
            report.calls_ended += 1;
        }
        tx.commit()?;
        Ok(report)
    }

    fn last_checkpoint_ms(&self) -> Result<Option<i64>, LedgerError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM ledger_meta WHERE key = ?1", [LAST_CHECKPOINT_KEY], |row| row.get(0))
            .optional()?)
    }

    fn usage_page(&self, q: &UsageQuery) -> Result<Vec<UsageRecord>, LedgerError> {
        let (after_start, after_id) = q.after.clone().unwrap_or((i64::MIN, String::new()));
        let mut stmt = self.conn.prepare_cached(
            "SELECT record_id, correlation_id, participant_id, segment, start_ms, end_ms, user_id_a, participant_type,
                    endpoint_type, billable, unit_price_micro_usd, cost_micro_usd, usage_type,
                    phone_number, trunk, direction
             FROM usage_records
             WHERE start_ms >= ?1 AND start_ms < ?2 AND (start_ms > ?3 OR (start_ms = ?3 AND record_id > ?4))
             ORDER BY start_ms, record_id LIMIT ?5",
        )?;
        let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![q.from_ms, q.to_ms, after_start, after_id, limit], usage_from_row)?;
        let mut out = Vec::new();
        for row in rows {
            let (mut record, [ptype, etype, utype]) = row?;
            record.kind = UsageKind::parse(&utype).ok_or_else(|| corrupt("usage type", &utype))?;
            record.participant_type =
                parse_participant_type(&ptype).ok_or_else(|| corrupt("participant type", &ptype))?;
            record.endpoint_type = parse_endpoint_type(&etype).ok_or_else(|| corrupt("endpoint type", &etype))?;
            out.push(record);
        }
        Ok(out)
    }

    fn call_summaries(&self, correlation_id: &str) -> Result<Vec<CallSummary>, LedgerError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT s.session_id, s.participant_raw_id, s.endpoint_type, s.participant_type, s.start_ms, s.end_ms,
                    s.end_reason, s.thread_id, s.call_started_ms, COALESCE(c.call_type, s.call_type), c.ended_ms
             FROM sessions s LEFT JOIN calls c
               ON c.conversation_id = s.conversation_id AND c.started_ms = s.call_started_ms
             WHERE s.conversation_id = ?1 ORDER BY s.start_ms, s.session_id",
        )?;
        let rows = stmt.query_map([correlation_id], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, i64>(4)?,
                row.get::<_, Option<i64>>(5)?,
                row.get::<_, Option<String>>(6)?,
                row.get::<_, Option<String>>(7)?,
                row.get::<_, i64>(8)?,
                row.get::<_, String>(9)?,
                row.get::<_, Option<i64>>(10)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (
                participant_id,
                identifier,
                etype,
                ptype,
                start_ms,
                end_ms,
                reason,
                thread_id,
                call_start_ms,
                call_type,
                call_end,
            ) = row?;
            let participant_end_reason = match reason {
                Some(r) => Some(parse_end_reason(&r).ok_or_else(|| corrupt("end reason", &r))?),
                None => None,
            };
            out.push(CallSummary {
                correlation_id: correlation_id.to_string(),
                call_type: parse_call_type(&call_type).ok_or_else(|| corrupt("call type", &call_type))?,
                call_start_ms,
                call_duration_ms: call_end.map(|e| e - call_start_ms),
                participant_id,
                identifier,
                endpoint_type: parse_endpoint_type(&etype).ok_or_else(|| corrupt("endpoint type", &etype))?,
                participant_type: parse_participant_type(&ptype).ok_or_else(|| corrupt("participant type", &ptype))?,
                participant_start_ms: start_ms,
                participant_duration_ms: end_ms.map(|e| e - start_ms),
                participant_end_reason,
                thread_id,
            });
        }
        Ok(out)
    }

    fn totals(&self, from_ms: i64, to_ms: i64) -> Result<Vec<TypeTotals>, LedgerError> {
        let mut totals: Vec<TypeTotals> = ParticipantType::ALL.into_iter().map(TypeTotals::zero).collect();
        let mut stmt = self.conn.prepare_cached(
            "SELECT participant_type, COUNT(*), SUM(end_ms - start_ms),
                    SUM(CASE WHEN billable THEN end_ms - start_ms ELSE 0 END), SUM(cost_micro_usd)
             FROM usage_records WHERE start_ms >= ?1 AND start_ms < ?2 GROUP BY participant_type",
        )?;
        let rows = stmt.query_map(params![from_ms, to_ms], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, i64>(3)?,
                row.get::<_, i64>(4)?,
            ))
        })?;
        for row in rows {
            let (ptype, records, consumed_ms, billed_ms, cost) = row?;
            let t = parse_participant_type(&ptype).ok_or_else(|| corrupt("participant type", &ptype))?;
            if let Some(slot) = totals.iter_mut().find(|x| x.participant_type == t) {
                *slot = TypeTotals {
                    participant_type: t,
                    records: records as u64,
                    consumed_ms,
                    billed_ms,
                    cost_micro_usd: cost,
                };
            }
        }
        Ok(totals)
    }

    fn due_deliveries(&self, now_ms: i64, limit: usize) -> Result<Vec<OutboxItem>, LedgerError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT event_id, endpoint, payload, attempts, next_attempt_ms FROM outbox
             WHERE delivered_ms IS NULL AND dead = 0 AND next_attempt_ms <= ?1
             ORDER BY next_attempt_ms, created_ms, rowid LIMIT ?2",
        )?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![now_ms, limit], |row| {
            Ok(OutboxItem {
                event_id: row.get(0)?,
                endpoint: row.get(1)?,
                payload: row.get(2)?,
                attempts: row.get(3)?,
                next_attempt_ms: row.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn record_delivery(&mut self, outcome: &DeliveryOutcome) -> Result<(), LedgerError> {
        match outcome {
            DeliveryOutcome::Delivered { event_id, endpoint, at_ms } => {
                self.conn.execute(
                    "UPDATE outbox SET delivered_ms = ?3, attempts = attempts + 1, last_error = NULL
                     WHERE event_id = ?1 AND endpoint = ?2 AND delivered_ms IS NULL",
                    params![event_id, endpoint, at_ms],
                )?;
            }
            DeliveryOutcome::Failed { event_id, endpoint, attempts, next_attempt_ms, error, dead } => {
                self.conn.execute(
                    "UPDATE outbox SET attempts = ?3, next_attempt_ms = ?4, last_error = ?5, dead = ?6
                     WHERE event_id = ?1 AND endpoint = ?2 AND delivered_ms IS NULL",
                    params![event_id, endpoint, attempts, next_attempt_ms, error, dead],
                )?;
            }
        }
        Ok(())
    }

    fn outbox_backlog(&self) -> Result<u64, LedgerError> {
        let n: i64 =
            self.conn.query_row("SELECT COUNT(*) FROM outbox WHERE delivered_ms IS NULL AND dead = 0", [], |row| {
                row.get(0)
            })?;
        Ok(n as u64)
    }
}

#[cfg(test)]
mod tests;
