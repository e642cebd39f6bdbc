//! [`PgLedger`]: the usage ledger and webhook outbox on PostgreSQL, behind billing's
//! [`UsageLedger`] trait, with the SQLite ledger's guarantees (docs/billing.md): every write
//! idempotent (deterministic record and event ids, `ON CONFLICT DO NOTHING`, close only if
//! open), changes, their records and their outbox events in one transaction, so a replayed or
//! concurrent close never adds minutes or duplicates a record id.
//!
//! One addition for several nodes on one database: a session row carries `owner_node`, the
//! node that opened it, and a node's [`UsageLedger::checkpoint`] and [`UsageLedger::recover`]
//! touch only its own open sessions (a node restarting never closes another node's live
//! participants). In a cluster with placement, session writes are fenced by the conversation's
//! home epoch inside their own transaction ([`fenced`]), and a new home adopts the old home's
//! open sessions when it takes a conversation over (`crate::takeover`): a participant who
//! resumes continues one record, one who never returns is closed at the last checkpoint
//! ([`adoption`]).
//!
//! The webhook outbox is delivered from any node: [`UsageLedger::due_deliveries`] claims the due
//! rows whose lease has passed `FOR UPDATE SKIP LOCKED` and leases them to this node for
//! [`OUTBOX_LEASE`] (in the caller's clock, so node clocks must be NTP-synced), as the events
//! outbox does. A second node polling at the same moment skips the locked rows and, once the
//! first commits, sees them leased; so two nodes never send one row at once. A delivery ends
//! the lease whoever holds it; a failure verdict is recorded only by the lease's holder (a node
//! whose lease ran out cannot reschedule a row another node has claimed since). A node that
//! dies mid-delivery leaves its lease to run out, and another node sends the row again: at
//! least once, with the deterministic event id receivers deduplicate on.

mod adoption;
mod fenced;
mod schema;
mod takeover;

pub use adoption::{ADOPTION_MARGIN_MS, ADOPTION_MIGRATIONS, DEFAULT_ADOPTION_GRACE_MS};
pub use fenced::{FENCING_MIGRATIONS, Holding, LedgerFence};
pub use takeover::{TakenOver, take_over_with_sessions};

use crate::database::{Database, DatabaseError};
use palaver_billing::ledger::{
    DeliveryOutcome, LedgerError, LedgerOptions, OutboxItem, RecoveryReport, UsageLedger, UsageQuery,
};
use palaver_billing::meter::LedgerChange;
use palaver_billing::records::{
    CallSpan, CallSummary, ClosedSession, TypeTotals, UsageKind, UsageRecord, call_type_str, parse_call_type,
    parse_end_reason, parse_endpoint_type, parse_participant_type, usage_records_for,
};
use palaver_billing::webhook::events::events_for;
use palaver_core::{EndReason, ParticipantType, PhoneDirection, PhoneLeg, SessionStarted};
use tokio_postgres::{Row, Transaction};

use palaver_billing::webhook::OUTBOX_LEASE;
/// The ledger's tables, applied by [`PgLedger::open`].
pub use schema::MIGRATIONS;
/// The outbox lease columns, applied by [`PgLedger::open`] after [`MIGRATIONS`].
pub use schema::OUTBOX_LEASE_MIGRATIONS;

/// The usage ledger of one node on a shared PostgreSQL database.
pub struct PgLedger {
    db: Database,
    options: LedgerOptions,
    node_id: String,
    fence: Option<std::sync::Arc<dyn LedgerFence>>,
    /// How long an adopted session awaits its participant before it is closed at its last
    /// checkpoint (`adoption.rs`).
    adoption_grace_ms: i64,
}

pub(crate) fn storage(e: tokio_postgres::Error) -> LedgerError {
    LedgerError::Backend(match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    })
}

fn database(e: DatabaseError) -> LedgerError {
    match e {
        DatabaseError::Postgres(e) => storage(e),
        other => LedgerError::Backend(other.to_string()),
    }
}

fn corrupt(what: &str, value: &str) -> LedgerError {
    LedgerError::Corrupt(format!("{what} `{value}`"))
}

impl PgLedger {
    /// A ledger handle for `node_id` on `db`, after applying the ledger's migrations.
    pub fn open(db: &Database, node_id: &str, options: LedgerOptions) -> Result<Self, LedgerError> {
        db.migrate("ledger", MIGRATIONS).map_err(database)?;
        db.migrate("ledger_outbox_leases", OUTBOX_LEASE_MIGRATIONS).map_err(database)?;
        db.migrate("ledger_fencing", FENCING_MIGRATIONS).map_err(database)?;
        db.migrate("ledger_adoption", ADOPTION_MIGRATIONS).map_err(database)?;
        Ok(Self {
            db: db.clone(),
            options,
            node_id: node_id.to_string(),
            fence: None,
            adoption_grace_ms: DEFAULT_ADOPTION_GRACE_MS,
        })
    }

    /// Close adopted sessions whose participant has not resumed them within the conversations'
    /// reconnect grace `grace_ms` (plus [`ADOPTION_MARGIN_MS`]).
    pub fn with_reconnect_grace(mut self, grace_ms: i64) -> Self {
        self.adoption_grace_ms = grace_ms.max(0) + ADOPTION_MARGIN_MS;
        self
    }

    /// Fence session writes by the conversations' home epochs (cluster placement on).
    pub fn with_fence(mut self, fence: std::sync::Arc<dyn LedgerFence>) -> Self {
        self.fence = Some(fence);
        self
    }

    pub fn options(&self) -> &LedgerOptions {
        &self.options
    }

    /// Run `work` in one transaction on a pooled connection, blocking the caller.
    fn transaction<R, W>(&self, work: W) -> Result<R, LedgerError>
    where
        R: Send + 'static,
        W: for<'t> FnOnce(&'t Transaction<'t>) -> futures_boxed::BoxFuture<'t, Result<R, LedgerError>> + Send + 'static,
    {
        self.db
            .block_on(move |pool| async move {
                let mut client = pool.get().await.map_err(|e| database(e.into()))?;
                let tx = client.transaction().await.map_err(storage)?;
                let out = work(&tx).await?;
                tx.commit().await.map_err(storage)?;
                Ok(out)
            })
            .map_err(database)?
    }

    /// Run a read (or a single statement) on a pooled connection, blocking the caller.
    fn read<R, W>(&self, work: W) -> Result<R, LedgerError>
    where
        R: Send + 'static,
        W: for<'c> FnOnce(&'c deadpool_postgres::Client) -> futures_boxed::BoxFuture<'c, Result<R, LedgerError>>
            + Send
            + 'static,
    {
        self.db
            .block_on(move |pool| async move {
                let client = pool.get().await.map_err(|e| database(e.into()))?;
                work(&client).await
            })
            .map_err(database)?
    }
}

/// A boxed future borrowing its connection (the closures above return one).
pub(crate) mod futures_boxed {
    pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
}

async fn queue_events(tx: &Transaction<'_>, options: &LedgerOptions, change: &LedgerChange) -> Result<(), LedgerError> {
    if options.webhook_endpoints.is_empty() {
        return Ok(());
    }
    for ev in events_for(&options.event_topic, change) {
        let payload = serde_json::to_string(&ev)?;
        let created_ms =
            chrono::DateTime::parse_from_rfc3339(&ev.event_time).map(|t| t.timestamp_millis()).unwrap_or(0);
        for endpoint in &options.webhook_endpoints {
            tx.execute(
                "INSERT INTO webhook_outbox (event_id, endpoint, payload, created_ms, next_attempt_ms)
                 VALUES ($1, $2, $3, $4, 0) ON CONFLICT DO NOTHING",
                &[&ev.id, endpoint, &payload, &created_ms],
            )
            .await
            .map_err(storage)?;
        }
    }
    Ok(())
}

async fn insert_session(
    tx: &Transaction<'_>,
    node: &str,
    s: &SessionStarted,
    call_started_ms: i64,
    home: Option<(&str, i64)>,
) -> Result<u64, LedgerError> {
    tx.execute(
        "INSERT INTO sessions (session_id, conversation_id, call_started_ms, call_type, participant_raw_id,
             participant_type, endpoint_type, thread_id, start_ms, checkpoint_ms, owner_node,
             phone_number, trunk, direction, home_key, owner_epoch)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10, $11, $12, $13, $14, $15) ON CONFLICT DO NOTHING",
        &[
            &s.session_id,
            &s.conversation_id,
            &call_started_ms,
            &call_type_str(s.call_type),
            &s.participant_raw_id,
            &s.participant_type.as_str(),
            &s.endpoint_type.as_str(),
            &s.thread_id,
            &s.at_ms,
            &node,
            &s.phone.as_ref().map(|p| p.number.as_str()),
            &s.phone.as_ref().map(|p| p.trunk.as_str()),
            &s.phone.as_ref().map(|p| p.direction.as_str()),
            &home.map(|h| h.0),
            &home.map(|h| h.1),
        ],
    )
    .await
    .map_err(storage)
}

async fn insert_usage(tx: &Transaction<'_>, r: &UsageRecord) -> Result<u64, LedgerError> {
    tx.execute(
        "INSERT INTO usage_records (record_id, correlation_id, participant_id, segment, start_ms, end_ms,
             user_id_a, participant_type, endpoint_type, billable, unit_price_micro_usd, cost_micro_usd, usage_type,
             phone_number, trunk, direction)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) ON CONFLICT DO NOTHING",
        &[
            &r.record_id,
            &r.correlation_id,
            &r.participant_id,
            &(r.segment as i32),
            &r.start_ms,
            &r.end_ms,
            &r.user_id_a,
            &r.participant_type.as_str(),
            &r.endpoint_type.as_str(),
            &r.billable,
            &r.unit_price_micro_usd,
            &r.cost_micro_usd,
            &r.kind.usage_type(),
            &r.phone.as_ref().map(|p| p.number.as_str()),
            &r.phone.as_ref().map(|p| p.trunk.as_str()),
            &r.phone.as_ref().map(|p| p.direction.as_str()),
        ],
    )
    .await
    .map_err(storage)
}

/// Apply one change; returns whether it took effect (events are queued only then).
async fn apply_one(
    tx: &Transaction<'_>,
    node: &str,
    change: &LedgerChange,
    home: Option<(&str, i64)>,
) -> Result<bool, LedgerError> {
    Ok(match change {
        LedgerChange::CallStarted(call) => {
            tx.execute(
                "INSERT INTO calls (conversation_id, started_ms, call_type, started_by, thread_id)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                &[
                    &call.conversation_id,
                    &call.started_ms,
                    &call_type_str(call.call_type),
                    &call.started_by,
                    &call.thread_id,
                ],
            )
            .await
            .map_err(storage)?
                == 1
        }
        LedgerChange::SessionOpened { started, call_started_ms } => {
            let inserted = insert_session(tx, node, started, *call_started_ms, home).await? == 1;
            // The id is known: a participant resuming the session a takeover adopted.
            if !inserted {
                adoption::resume(tx, node, started).await?;
            }
            inserted
        }
        LedgerChange::SessionClosed { session, call_started_ms, usage } => {
            // A session never stored as open (should not happen) is stored closed directly.
            insert_session(tx, node, &session.started, *call_started_ms, home).await?;
            // Under concurrent closes the second UPDATE waits for the first's row lock, then
            // re-checks `end_ms IS NULL` and moves nothing: records are written once.
            let moved = tx
                .execute(
                    "UPDATE sessions SET end_ms = $2, end_reason = $3 WHERE session_id = $1 AND end_ms IS NULL",
                    &[&session.started.session_id, &session.end_ms, &session.reason.as_str()],
                )
                .await
                .map_err(storage)?
                == 1;
            if moved {
                for r in usage {
                    insert_usage(tx, r).await?;
                }
            }
            moved
        }
        LedgerChange::CallEnded { call, .. } => {
            tx.execute(
                "UPDATE calls SET ended_ms = $3 WHERE conversation_id = $1 AND started_ms = $2 AND ended_ms IS NULL",
                &[&call.conversation_id, &call.started_ms, &call.ended_ms.unwrap_or(call.started_ms)],
            )
            .await
            .map_err(storage)?
                == 1
        }
        LedgerChange::ChatMessageSent(record) | LedgerChange::MediaUsed(record) => insert_usage(tx, record).await? == 1,
        LedgerChange::CallTypeChanged { conversation_id, call_started_ms, call_type } => {
            tx.execute(
                "UPDATE calls SET call_type = $3 WHERE conversation_id = $1 AND started_ms = $2",
                &[conversation_id, call_started_ms, &call_type_str(*call_type)],
            )
            .await
            .map_err(storage)?
                == 1
        }
    })
}

pub(crate) async fn apply_changes(
    tx: &Transaction<'_>,
    options: &LedgerOptions,
    node: &str,
    changes: &[LedgerChange],
) -> Result<(), LedgerError> {
    apply_fenced(tx, options, node, changes, None).await
}

/// [`apply_changes`] behind `fence`: a change of a conversation this node lost (by the fence's
/// own record, or by the home row read in this transaction) is skipped and reported.
async fn apply_fenced(
    tx: &Transaction<'_>,
    options: &LedgerOptions,
    node: &str,
    changes: &[LedgerChange],
    fence: Option<&dyn LedgerFence>,
) -> Result<(), LedgerError> {
    for change in changes {
        let holding = match (fence, fenced::subject(change)) {
            (Some(fence), Some((conversation_id, what))) => match fence.holding(conversation_id) {
                Holding::Unplaced => Holding::Unplaced,
                Holding::Lost => {
                    fence.refused(conversation_id, what);
                    continue;
                }
                Holding::Held { key, epoch } => {
                    if !fenced::still_home(tx, &key, node, epoch).await? {
                        fence.refused(conversation_id, what);
                        continue;
                    }
                    Holding::Held { key, epoch }
                }
            },
            _ => Holding::Unplaced,
        };
        let home = match &holding {
            Holding::Held { key, epoch } => Some((key.as_str(), *epoch)),
            _ => None,
        };
        // The close of a session adopted at a takeover bills the stored session whole.
        let continued = adoption::continued_close(tx, change, options).await?;
        let change = continued.as_ref().unwrap_or(change);
        if apply_one(tx, node, change, home).await? {
            queue_events(tx, options, change).await?;
            if continued.is_some() {
                // The old call's last participant may just have left (boxed: ending a call
                // applies a change through this function again).
                let conversations = adoption::conversations_of(std::slice::from_ref(change));
                Box::pin(adoption::end_finished_calls(tx, options, node, conversations)).await?;
            }
        }
    }
    Ok(())
}

/// The columns [`closed_at_checkpoint`] reads, in its order.
pub(super) const OPEN_SESSION_COLUMNS: &str = "session_id, conversation_id, call_started_ms, call_type, \
     participant_raw_id, participant_type, endpoint_type, thread_id, start_ms, checkpoint_ms, phone_number, trunk, direction";

/// This node's open sessions, as closed at their last checkpoint (crash recovery). Rows are
/// locked, so two recoveries of the same node cannot both close them.
async fn open_sessions_of(
    tx: &Transaction<'_>,
    node: &str,
    price: palaver_billing::pricing::Price,
) -> Result<Vec<LedgerChange>, LedgerError> {
    let rows = tx
        .query(
            &format!(
                "SELECT {OPEN_SESSION_COLUMNS} FROM sessions WHERE end_ms IS NULL AND owner_node = $1
                 ORDER BY start_ms, session_id FOR UPDATE"
            ),
            &[&node],
        )
        .await
        .map_err(storage)?;
    rows.iter().map(|row| closed_at_checkpoint(row, price)).collect()
}

/// An open session (a row of [`OPEN_SESSION_COLUMNS`]) closed at its last checkpoint with
/// `ServerFailure`, with its usage records.
pub(super) fn closed_at_checkpoint(
    row: &Row,
    price: palaver_billing::pricing::Price,
) -> Result<LedgerChange, LedgerError> {
    let checkpoint_ms: i64 = row.get(9);
    closed_from_row(row, checkpoint_ms, EndReason::ServerFailure, price)
}

/// The stored session of a row of [`OPEN_SESSION_COLUMNS`] closed at `end_ms` (not before its
/// start) for `reason`, with its usage records.
pub(super) fn closed_from_row(
    row: &Row,
    end_ms: i64,
    reason: EndReason,
    price: palaver_billing::pricing::Price,
) -> Result<LedgerChange, LedgerError> {
    let started = started_from_row(row)?;
    let end_ms = end_ms.max(started.at_ms);
    let session = ClosedSession { started, end_ms, reason };
    let usage = usage_records_for(&session, price);
    Ok(LedgerChange::SessionClosed { session, call_started_ms: row.get(2), usage })
}

/// The session start a row of [`OPEN_SESSION_COLUMNS`] stored.
fn started_from_row(row: &Row) -> Result<SessionStarted, LedgerError> {
    let call_type: String = row.get(3);
    let ptype: String = row.get(5);
    let etype: String = row.get(6);
    Ok(SessionStarted {
        session_id: row.get(0),
        conversation_id: row.get(1),
        call_type: parse_call_type(&call_type).ok_or_else(|| corrupt("call type", &call_type))?,
        participant_raw_id: row.get(4),
        participant_type: parse_participant_type(&ptype).ok_or_else(|| corrupt("participant type", &ptype))?,
        endpoint_type: parse_endpoint_type(&etype).ok_or_else(|| corrupt("endpoint type", &etype))?,
        thread_id: row.get(7),
        at_ms: row.get(8),
        phone: phone_leg(row.get(10), row.get(11), row.get(12)),
    })
}

/// End a running call whose sessions are all closed, when its last participant's session did;
/// returns the change applied.
pub(super) async fn end_call_at_last_session(
    tx: &Transaction<'_>,
    options: &LedgerOptions,
    node: &str,
    mut call: CallSpan,
) -> Result<LedgerChange, LedgerError> {
    let last = tx
        .query_opt(
            "SELECT end_ms, participant_raw_id FROM sessions
             WHERE conversation_id = $1 AND call_started_ms = $2 AND end_ms IS NOT NULL
             ORDER BY end_ms DESC, session_id DESC LIMIT 1",
            &[&call.conversation_id, &call.started_ms],
        )
        .await
        .map_err(storage)?;
    let (ended_ms, ended_by) = match last {
        Some(row) => (row.get::<_, i64>(0), row.get::<_, String>(1)),
        None => (call.started_ms, call.started_by.clone()),
    };
    call.ended_ms = Some(ended_ms.max(call.started_ms));
    let ended = LedgerChange::CallEnded { call, ended_by };
    apply_changes(tx, options, node, std::slice::from_ref(&ended)).await?;
    Ok(ended)
}

/// A `calls` row (conversation_id, started_ms, call_type, started_by, thread_id) as a span.
pub(super) fn call_from_row(row: &Row) -> Result<CallSpan, LedgerError> {
    let call_type: String = row.get(2);
    Ok(CallSpan {
        conversation_id: row.get(0),
        started_ms: row.get(1),
        call_type: parse_call_type(&call_type).ok_or_else(|| corrupt("call type", &call_type))?,
        started_by: row.get(3),
        thread_id: row.get(4),
        ended_ms: None,
    })
}

/// Running calls this node took part in (or nobody did) that have no open session left on
/// any node: their last participant is gone, so they are over.
async fn orphaned_calls(tx: &Transaction<'_>, node: &str) -> Result<Vec<CallSpan>, LedgerError> {
    let rows = tx
        .query(
            "SELECT c.conversation_id, c.started_ms, c.call_type, c.started_by, c.thread_id FROM calls c
             WHERE c.ended_ms IS NULL
               AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.conversation_id = c.conversation_id
                                 AND s.call_started_ms = c.started_ms AND s.end_ms IS NULL)
               AND (EXISTS (SELECT 1 FROM sessions s WHERE s.conversation_id = c.conversation_id
                              AND s.call_started_ms = c.started_ms AND s.owner_node = $1)
                    OR NOT EXISTS (SELECT 1 FROM sessions s WHERE s.conversation_id = c.conversation_id
                              AND s.call_started_ms = c.started_ms))
             ORDER BY c.started_ms, c.conversation_id FOR UPDATE OF c",
            &[&node],
        )
        .await
        .map_err(storage)?;
    rows.iter().map(call_from_row).collect()
}

fn usage_from_row(row: &Row) -> Result<UsageRecord, LedgerError> {
    let ptype: String = row.get(7);
    let etype: String = row.get(8);
    let utype: String = row.get(12);
    Ok(UsageRecord {
        record_id: row.get(0),
        kind: UsageKind::parse(&utype).ok_or_else(|| corrupt("usage type", &utype))?,
        correlation_id: row.get(1),
        participant_id: row.get(2),
        segment: row.get::<_, i32>(3) as u32,
        start_ms: row.get(4),
        end_ms: row.get(5),
        user_id_a: row.get(6),
        participant_type: parse_participant_type(&ptype).ok_or_else(|| corrupt("participant type", &ptype))?,
        endpoint_type: parse_endpoint_type(&etype).ok_or_else(|| corrupt("endpoint type", &etype))?,
        billable: row.get(9),
        unit_price_micro_usd: row.get(10),
        cost_micro_usd: row.get(11),
        phone: phone_leg(row.get(13), row.get(14), row.get(15)),
    })
}

/// A phone leg from its three stored columns (NULL for everyone but phones, and for rows
/// written before migration 2).
fn phone_leg(number: Option<String>, trunk: Option<String>, direction: Option<String>) -> Option<PhoneLeg> {
    let direction = PhoneDirection::parse(direction.as_deref()?)?;
    Some(PhoneLeg { number: number?, trunk: trunk?, direction })
}

fn summary_from_row(correlation_id: &str, row: &Row) -> Result<CallSummary, LedgerError> {
    let etype: String = row.get(2);
    let ptype: String = row.get(3);
    let start_ms: i64 = row.get(4);
    let end_ms: Option<i64> = row.get(5);
    let reason: Option<String> = row.get(6);
    let call_start_ms: i64 = row.get(8);
    let call_type: String = row.get(9);
    let call_end: Option<i64> = row.get(10);
    Ok(CallSummary {
        correlation_id: correlation_id.to_string(),
        call_type: parse_call_type(&call_type).ok_or_else(|| corrupt("call type", &call_type))?,
        call_start_ms,
        call_duration_ms: call_end.map(|e| e - call_start_ms),
        participant_id: row.get(0),
        identifier: row.get(1),
        endpoint_type: parse_endpoint_type(&etype).ok_or_else(|| corrupt("endpoint type", &etype))?,
        participant_type: parse_participant_type(&ptype).ok_or_else(|| corrupt("participant type", &ptype))?,
        participant_start_ms: start_ms,
        participant_duration_ms: end_ms.map(|e| e - start_ms),
        participant_end_reason: match reason {
            Some(r) => Some(parse_end_reason(&r).ok_or_else(|| corrupt("end reason", &r))?),
            None => None,
        },
        thread_id: row.get(7),
    })
}

impl UsageLedger for PgLedger {
    fn apply(&mut self, changes: &[LedgerChange]) -> Result<(), LedgerError> {
        let (changes, options, node) = (changes.to_vec(), self.options.clone(), self.node_id.clone());
        let fence = self.fence.clone();
        self.transaction(move |tx| {
            Box::pin(async move { apply_fenced(tx, &options, &node, &changes, fence.as_deref()).await })
        })
    }

    fn checkpoint(&mut self, now_ms: i64) -> Result<usize, LedgerError> {
        let (node, options, grace_ms) = (self.node_id.clone(), self.options.clone(), self.adoption_grace_ms);
        self.transaction(move |tx| {
            Box::pin(async move {
                // Adopted sessions awaiting their participant keep the old home's checkpoint.
                adoption::close_unclaimed(tx, &options, &node, now_ms, grace_ms).await?;
                let open = tx
                    .execute(
                        "UPDATE sessions SET checkpoint_ms = GREATEST(checkpoint_ms, $1)
                         WHERE end_ms IS NULL AND owner_node = $2 AND (adopted_ms IS NULL OR resumed_ms IS NOT NULL)",
                        &[&now_ms, &node],
                    )
                    .await
                    .map_err(storage)?;
                tx.execute(
                    "INSERT INTO ledger_checkpoints (node_id, last_checkpoint_ms) VALUES ($1, $2)
                     ON CONFLICT (node_id) DO UPDATE
                     SET last_checkpoint_ms = GREATEST(ledger_checkpoints.last_checkpoint_ms, excluded.last_checkpoint_ms)",
                    &[&node, &now_ms],
                )
                .await
                .map_err(storage)?;
                Ok(open as usize)
            })
        })
    }

    fn recover(&mut self) -> Result<RecoveryReport, LedgerError> {
        let (options, node) = (self.options.clone(), self.node_id.clone());
        self.transaction(move |tx| {
            Box::pin(async move {
                let mut report = RecoveryReport::default();
                let closes = open_sessions_of(tx, &node, options.price).await?;
                report.sessions_closed = closes.len();
                apply_changes(tx, &options, &node, &closes).await?;
                report.changes = closes;
                for call in orphaned_calls(tx, &node).await? {
                    // The call ended when its last participant's session did.
                    let ended = end_call_at_last_session(tx, &options, &node, call).await?;
                    report.changes.push(ended);
                    report.calls_ended += 1;
                }
                Ok(report)
            })
        })
    }

    fn last_checkpoint_ms(&self) -> Result<Option<i64>, LedgerError> {
        let node = self.node_id.clone();
        self.read(move |c| {
            Box::pin(async move {
                let row = c
                    .query_opt("SELECT last_checkpoint_ms FROM ledger_checkpoints WHERE node_id = $1", &[&node])
                    .await
                    .map_err(storage)?;
                Ok(row.map(|r| r.get(0)))
            })
        })
    }

    fn usage_page(&self, q: &UsageQuery) -> Result<Vec<UsageRecord>, LedgerError> {
        let q = q.clone();
        self.read(move |c| {
            Box::pin(async move {
                let (after_start, after_id) = q.after.clone().unwrap_or((i64::MIN, String::new()));
                let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
                // `COLLATE "C"`: record ids compare bytewise, as in SQLite, whatever the
                // database's collation, so pages tile the same way on both backends.
                let rows = c
                    .query(
                        "SELECT record_id, correlation_id, participant_id, segment, start_ms, end_ms, user_id_a,
                                participant_type, endpoint_type, billable, unit_price_micro_usd, cost_micro_usd, usage_type,
                                phone_number, trunk, direction
                         FROM usage_records
                         WHERE start_ms >= $1 AND start_ms < $2
                           AND (start_ms > $3 OR (start_ms = $3 AND record_id COLLATE \"C\" > $4))
                         ORDER BY start_ms, record_id COLLATE \"C\" LIMIT $5",
                        &[&q.from_ms, &q.to_ms, &after_start, &after_id, &limit],
                    )
                    .await
                    .map_err(storage)?;
                rows.iter().map(usage_from_row).collect()
            })
        })
    }

    fn call_summaries(&self, correlation_id: &str) -> Result<Vec<CallSummary>, LedgerError> {
        let id = correlation_id.to_string();
        self.read(move |c| {
            Box::pin(async move {
                let rows = c
                    .query(
                        "SELECT s.session_id, s.participant_raw_id, s.endpoint_type, s.participant_type, s.start_ms,
                                s.end_ms, s.end_reason, s.thread_id, s.call_started_ms,
                                COALESCE(c.call_type, s.call_type), c.ended_ms
                         FROM sessions s LEFT JOIN calls c
                           ON c.conversation_id = s.conversation_id AND c.started_ms = s.call_started_ms
                         WHERE s.conversation_id = $1 ORDER BY s.start_ms, s.session_id COLLATE \"C\"",
                        &[&id],
                    )
                    .await
                    .map_err(storage)?;
                rows.iter().map(|r| summary_from_row(&id, r)).collect()
            })
        })
    }

    fn totals(&self, from_ms: i64, to_ms: i64) -> Result<Vec<TypeTotals>, LedgerError> {
        self.read(move |c| {
            Box::pin(async move {
                let mut totals: Vec<TypeTotals> = ParticipantType::ALL.into_iter().map(TypeTotals::zero).collect();
                let rows = c
                    .query(
                        "SELECT participant_type, COUNT(*), SUM(end_ms - start_ms)::BIGINT,
                                SUM(CASE WHEN billable THEN end_ms - start_ms ELSE 0 END)::BIGINT,
                                SUM(cost_micro_usd)::BIGINT
                         FROM usage_records WHERE start_ms >= $1 AND start_ms < $2 GROUP BY participant_type",
                        &[&from_ms, &to_ms],
                    )
                    .await
                    .map_err(storage)?;
                for row in rows {
                    let ptype: String = row.get(0);
                    let t = parse_participant_type(&ptype).ok_or_else(|| corrupt("participant type", &ptype))?;
                    if let Some(slot) = totals.iter_mut().find(|x| x.participant_type == t) {
                        *slot = TypeTotals {
                            participant_type: t,
                            records: row.get::<_, i64>(1) as u64,
                            consumed_ms: row.get(2),
                            billed_ms: row.get(3),
                            cost_micro_usd: row.get(4),
                        };
                    }
                }
                Ok(totals)
            })
        })
    }

    /// Claims what it returns: the due rows not leased to anyone, leased to this node for
    /// [`OUTBOX_LEASE`] (see the module doc).
    fn due_deliveries(&self, now_ms: i64, limit: usize) -> Result<Vec<OutboxItem>, LedgerError> {
        let node = self.node_id.clone();
        self.read(move |c| {
            Box::pin(async move {
                let limit = i64::try_from(limit).unwrap_or(i64::MAX);
                let lease_until_ms = now_ms.saturating_add(OUTBOX_LEASE.as_millis() as i64);
                let rows = c
                    .query(
                        "WITH claimable AS (
                             SELECT seq FROM webhook_outbox
                             WHERE delivered_ms IS NULL AND NOT dead AND next_attempt_ms <= $1 AND lease_until_ms <= $1
                             ORDER BY next_attempt_ms, created_ms, seq LIMIT $2
                             FOR UPDATE SKIP LOCKED)
                         UPDATE webhook_outbox o SET lease_until_ms = $3, lease_owner = $4
                         FROM claimable WHERE o.seq = claimable.seq
                         RETURNING o.event_id, o.endpoint, o.payload, o.attempts, o.next_attempt_ms, o.created_ms, o.seq",
                        &[&now_ms, &limit, &lease_until_ms, &node],
                    )
                    .await
                    .map_err(storage)?;
                let mut rows: Vec<_> = rows
                    .iter()
                    .map(|r| {
                        let order = (r.get::<_, i64>(4), r.get::<_, i64>(5), r.get::<_, i64>(6));
                        let item = OutboxItem {
                            event_id: r.get(0),
                            endpoint: r.get(1),
                            payload: r.get(2),
                            attempts: r.get::<_, i32>(3) as u32,
                            next_attempt_ms: r.get(4),
                        };
                        (order, item)
                    })
                    .collect();
                // RETURNING has no order: the outbox's order is (due time, creation, insertion).
                rows.sort_by_key(|(order, _)| *order);
                Ok(rows.into_iter().map(|(_, item)| item).collect())
            })
        })
    }

    fn record_delivery(&mut self, outcome: &DeliveryOutcome) -> Result<(), LedgerError> {
        let outcome = outcome.clone();
        let node = self.node_id.clone();
        self.read(move |c| {
            Box::pin(async move {
                match &outcome {
                    DeliveryOutcome::Delivered { event_id, endpoint, at_ms } => {
                        c.execute(
                            "UPDATE webhook_outbox SET delivered_ms = $3, attempts = attempts + 1, last_error = NULL,
                                 lease_until_ms = 0, lease_owner = NULL
                             WHERE event_id = $1 AND endpoint = $2 AND delivered_ms IS NULL",
                            &[event_id, endpoint, at_ms],
                        )
                        .await
                        .map_err(storage)?;
                    }
                    DeliveryOutcome::Failed { event_id, endpoint, attempts, next_attempt_ms, error, dead } => {
                        let attempts = i32::try_from(*attempts).unwrap_or(i32::MAX);
                        c.execute(
                            "UPDATE webhook_outbox SET attempts = $3, next_attempt_ms = $4, last_error = $5, dead = $6,
                                 lease_until_ms = 0, lease_owner = NULL
                             WHERE event_id = $1 AND endpoint = $2 AND delivered_ms IS NULL
                               AND lease_owner = $7",
                            &[event_id, endpoint, &attempts, next_attempt_ms, error, dead, &node],
                        )
                        .await
                        .map_err(storage)?;
                    }
                }
                Ok(())
            })
        })
    }

    fn outbox_backlog(&self) -> Result<u64, LedgerError> {
        self.read(move |c| {
            Box::pin(async move {
                let row = c
                    .query_one("SELECT COUNT(*) FROM webhook_outbox WHERE delivered_ms IS NULL AND NOT dead", &[])
                    .await
                    .map_err(storage)?;
                Ok(row.get::<_, i64>(0) as u64)
            })
        })
    }
}

#[cfg(test)]
mod tests;
