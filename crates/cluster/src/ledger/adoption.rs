//! One continuous usage record per participant through a takeover (issue #17, docs/cluster.md
//! "Billing across a takeover").
//!
//! The takeover transaction (`takeover.rs`) does not close the old home's open sessions: it
//! **adopts** them ([`adopt`]): the rows move to the new home (`owner_node`, `home_key`, the new
//! `owner_epoch`) and are marked `adopted_ms` (when) with `resumed_ms` NULL: *awaiting* their
//! participant. While a session awaits, this node's checkpoint does not move it, so it still
//! ends at the last checkpoint the old home wrote.
//! - The participant **resumes** on the new home under its old participant id, which is the
//!   session id (`Input::Resumed` in signaling). The new home's meter opens that session again;
//!   the insert finds the adopted row and [`resume`] marks it resumed, so checkpoints move it
//!   again. When the participant leaves, the meter's close (which only knows the span since the
//!   resume, in the new live conversation) is rewritten by [`continued_close`] into the close of
//!   the **stored** session: its real start, its conversation and call, so the records (one per
//!   UTC day, deterministic ids) cover before and after the takeover, written once (every close
//!   is `end_ms IS NULL` guarded). The old call ends with its last session.
//! - A participant who **never returns** is closed by the new home's checkpoint at the old
//!   home's last checkpoint (`ServerFailure`), once the adoption is older than the grace
//!   ([`close_unclaimed`]): the conversation accepts a resume only within the reconnect grace of
//!   its restore, and the grace here adds [`ADOPTION_MARGIN_MS`] (the restore may start up to
//!   10 s after the takeover, `RESTORE_AFTER_TAKEOVER`), so no resume can land on a closed row.
//! - Exactly once with nodes racing: of two takeovers only one compare-and-swap moves the home
//!   and adopts; the old home's writes are fenced in their own transaction (`fenced.rs`) and its
//!   checkpoint and crash recovery touch only rows it owns, which adopted rows no longer are; a
//!   later takeover adopts the rows again (resumed or not) at its own epoch.

use super::{
    LedgerError, OPEN_SESSION_COLUMNS, apply_changes, call_from_row, closed_from_row, end_call_at_last_session, storage,
};
use palaver_billing::ledger::LedgerOptions;
use palaver_billing::meter::LedgerChange;
use palaver_core::{EndReason, SessionStarted};
use tokio_postgres::Transaction;

/// Append-only steps of the `ledger_adoption` component: when a takeover adopted an open
/// session, and when its participant resumed it on the new home.
pub const ADOPTION_MIGRATIONS: &[&str] = &["
ALTER TABLE sessions ADD COLUMN adopted_ms BIGINT, ADD COLUMN resumed_ms BIGINT;
CREATE INDEX sessions_awaiting ON sessions (owner_node, adopted_ms)
    WHERE end_ms IS NULL AND adopted_ms IS NOT NULL AND resumed_ms IS NULL;
"];

/// Added to the reconnect grace before an unclaimed adopted session is closed: the restore that
/// starts the grace may come up to 10 s after the takeover, plus clock and queue slack.
pub const ADOPTION_MARGIN_MS: i64 = 15_000;

/// The default grace of an adopted session (the gateway's default reconnect grace, 30 s, plus
/// [`ADOPTION_MARGIN_MS`]).
pub const DEFAULT_ADOPTION_GRACE_MS: i64 = 30_000 + ADOPTION_MARGIN_MS;

/// In the takeover's transaction, after its compare-and-swap won `epoch` for `key`: adopt the
/// old home's open sessions of the conversation (those opened under `key` at an older epoch,
/// and, for rows written before the key was known, `dead_node`'s sessions of the live
/// conversation `live`). Returns their session ids.
pub(super) async fn adopt(
    tx: &Transaction<'_>,
    key: &str,
    epoch: i64,
    live: Option<&str>,
    dead_node: &str,
    node: &str,
    now_ms: i64,
) -> Result<Vec<String>, LedgerError> {
    let rows = tx
        .query(
            "UPDATE sessions SET owner_node = $5, home_key = $1, owner_epoch = $2, adopted_ms = $6, resumed_ms = NULL
             WHERE end_ms IS NULL
               AND ((home_key = $1 AND owner_epoch < $2)
                    OR (conversation_id = $3 AND owner_node = $4 AND home_key IS NULL))
             RETURNING session_id",
            &[&key, &epoch, &live, &dead_node, &node, &now_ms],
        )
        .await
        .map_err(storage)?;
    let mut ids: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    ids.sort();
    Ok(ids)
}

/// A session opened on this node whose row already exists: the participant resumed a session
/// this node adopted (same identity, still awaiting): mark it resumed, so checkpoints move it.
/// Anything else (a replayed open, a reused id) changes nothing.
pub(super) async fn resume(tx: &Transaction<'_>, node: &str, started: &SessionStarted) -> Result<bool, LedgerError> {
    let resumed = tx
        .execute(
            "UPDATE sessions SET resumed_ms = $3
             WHERE session_id = $1 AND participant_raw_id = $2 AND owner_node = $4
               AND end_ms IS NULL AND adopted_ms IS NOT NULL AND resumed_ms IS NULL",
            &[&started.session_id, &started.participant_raw_id, &started.at_ms, &node],
        )
        .await
        .map_err(storage)?
        == 1;
    if resumed {
        tracing::info!(session = %started.session_id, conversation = %started.conversation_id,
            "billing: a participant resumed its session after a takeover; one record continues");
    }
    Ok(resumed)
}

/// The close of a session a takeover adopted, as the ledger must write it: the stored session
/// (its real start, conversation and call) closed at the meter's end and reason, with its
/// records. `None` when `change` is not such a close (the meter's own close stands).
pub(super) async fn continued_close(
    tx: &Transaction<'_>,
    change: &LedgerChange,
    options: &LedgerOptions,
) -> Result<Option<LedgerChange>, LedgerError> {
    let LedgerChange::SessionClosed { session, .. } = change else { return Ok(None) };
    let row = tx
        .query_opt(
            &format!(
                "SELECT {OPEN_SESSION_COLUMNS} FROM sessions
                 WHERE session_id = $1 AND participant_raw_id = $2 AND end_ms IS NULL AND adopted_ms IS NOT NULL
                 FOR UPDATE"
            ),
            &[&session.started.session_id, &session.started.participant_raw_id],
        )
        .await
        .map_err(storage)?;
    match row {
        Some(row) => closed_from_row(&row, session.end_ms, session.reason, options.price).map(Some),
        None => Ok(None),
    }
}

/// In a checkpoint at `now_ms`: close this node's adopted sessions whose participant did not
/// come back within `grace_ms` of the adoption, at their last checkpoint, and end the calls
/// left without an open session. Returns the changes applied.
pub(super) async fn close_unclaimed(
    tx: &Transaction<'_>,
    options: &LedgerOptions,
    node: &str,
    now_ms: i64,
    grace_ms: i64,
) -> Result<Vec<LedgerChange>, LedgerError> {
    let rows = tx
        .query(
            &format!(
                "SELECT {OPEN_SESSION_COLUMNS} FROM sessions
                 WHERE end_ms IS NULL AND owner_node = $1 AND adopted_ms IS NOT NULL AND resumed_ms IS NULL
                   AND adopted_ms <= $2
                 ORDER BY start_ms, session_id FOR UPDATE"
            ),
            &[&node, &(now_ms - grace_ms)],
        )
        .await
        .map_err(storage)?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut changes = Vec::with_capacity(rows.len());
    for row in &rows {
        let checkpoint_ms: i64 = row.get(9);
        changes.push(closed_from_row(row, checkpoint_ms, EndReason::ServerFailure, options.price)?);
    }
    apply_changes(tx, options, node, &changes).await?;
    tracing::info!(
        node,
        closed = changes.len(),
        "billing: adopted sessions whose participant never came back closed at their last checkpoint"
    );
    let conversations = conversations_of(&changes);
    changes.extend(end_finished_calls(tx, options, node, conversations).await?);
    Ok(changes)
}

/// The conversations the session closes among `changes` belong to, each once.
pub(super) fn conversations_of(changes: &[LedgerChange]) -> Vec<String> {
    let mut ids: Vec<String> = changes
        .iter()
        .filter_map(|c| match c {
            LedgerChange::SessionClosed { session, .. } => Some(session.started.conversation_id.clone()),
            _ => None,
        })
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// End the running calls of `conversations` that have no open session left, at their last
/// session's end. Returns the changes applied.
pub(super) async fn end_finished_calls(
    tx: &Transaction<'_>,
    options: &LedgerOptions,
    node: &str,
    conversations: Vec<String>,
) -> Result<Vec<LedgerChange>, LedgerError> {
    let mut changes = Vec::new();
    for conversation_id in conversations {
        let calls = tx
            .query(
                "SELECT c.conversation_id, c.started_ms, c.call_type, c.started_by, c.thread_id FROM calls c
                 WHERE c.conversation_id = $1 AND c.ended_ms IS NULL
                   AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.conversation_id = c.conversation_id
                                     AND s.call_started_ms = c.started_ms AND s.end_ms IS NULL)
                 ORDER BY c.started_ms FOR UPDATE OF c",
                &[&conversation_id],
            )
            .await
            .map_err(storage)?;
        for row in &calls {
            changes.push(end_call_at_last_session(tx, options, node, call_from_row(row)?).await?);
        }
    }
    Ok(changes)
}
