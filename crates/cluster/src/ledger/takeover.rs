//! The takeover transaction (scale-out.md §3.5–3.6): in **one** PostgreSQL transaction, move a
//! conversation's home to this node by compare-and-swap on its epoch (`cluster_homes`) and
//! close the old home's open sessions of it at their last checkpoint (`ServerFailure`), ending
//! the old live conversation's call once its last session is closed.
//!
//! One transaction is what makes billing exactly once across a takeover: the old home's
//! checkpoint cannot move a closed session's end (closes are `end_ms IS NULL` guarded and its
//! checkpoint only touches open rows), its fenced writes read the new epoch (`fenced`), and a
//! takeover that loses the compare-and-swap closes nothing. The participants who come back
//! open new sessions on the new home; one who never returns was billed to the last
//! checkpoint of the node that died: short by less than one checkpoint interval, never over.
//!
//! Which sessions: those opened under this home key at an older epoch (`home_key`,
//! `owner_epoch`), and, for rows written before the key was known, the old home's open
//! sessions of the live conversation id recorded in `cluster_homes`.

use super::{
    LedgerError, OPEN_SESSION_COLUMNS, apply_changes, call_from_row, closed_at_checkpoint, database,
    end_call_at_last_session, storage,
};
use crate::database::Database;
use crate::homes::Home;
use palaver_billing::ledger::LedgerOptions;
use palaver_billing::meter::LedgerChange;

/// A takeover that won: the new home and what it closed for the old one.
#[derive(Debug, Clone, PartialEq)]
pub struct TakenOver {
    pub home: Home,
    /// The old home's sessions closed at their last checkpoint, and calls ended.
    pub changes: Vec<LedgerChange>,
}

/// Move `key` from `dead` to `node` (epoch `dead.epoch + 1`) and close `dead`'s open sessions
/// of it, in one transaction. `None`: another node moved it first (nothing was written).
pub async fn take_over_with_sessions(
    db: &Database,
    key: &str,
    node: &str,
    dead: &Home,
    options: &LedgerOptions,
) -> Result<Option<TakenOver>, LedgerError> {
    let (key, node, dead, options) = (key.to_string(), node.to_string(), dead.clone(), options.clone());
    db.run(move |pool| async move {
        let mut client = pool.get().await.map_err(|e| database(e.into()))?;
        let tx = client.transaction().await.map_err(storage)?;
        let moved = tx
            .query_opt(
                "UPDATE cluster_homes SET home_node = $2, epoch = epoch + 1, updated_at = now()
                 WHERE conversation_id = $1 AND epoch = $3 RETURNING epoch, live_conversation_id",
                &[&key, &node, &dead.epoch],
            )
            .await
            .map_err(storage)?;
        let Some(moved) = moved else { return Ok(None) };
        let epoch: i64 = moved.get(0);
        let live: Option<String> = moved.get(1);
        let rows = tx
            .query(
                &format!(
                    "SELECT {OPEN_SESSION_COLUMNS} FROM sessions
                     WHERE end_ms IS NULL
                       AND ((home_key = $1 AND owner_epoch < $2)
                            OR (conversation_id = $3 AND owner_node = $4 AND home_key IS NULL))
                     ORDER BY start_ms, session_id FOR UPDATE"
                ),
                &[&key, &epoch, &live, &dead.node],
            )
            .await
            .map_err(storage)?;
        let mut changes =
            rows.iter().map(|row| closed_at_checkpoint(row, options.price)).collect::<Result<Vec<_>, _>>()?;
        apply_changes(&tx, &options, &node, &changes).await?;
        let mut conversations: Vec<String> = changes
            .iter()
            .filter_map(|c| match c {
                LedgerChange::SessionClosed { session, .. } => Some(session.started.conversation_id.clone()),
                _ => None,
            })
            .collect();
        conversations.extend(live);
        conversations.sort();
        conversations.dedup();
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
                changes.push(end_call_at_last_session(&tx, &options, &node, call_from_row(row)?).await?);
            }
        }
        tx.commit().await.map_err(storage)?;
        Ok(Some(TakenOver { home: Home { node, epoch }, changes }))
    })
    .await
    .map_err(database)?
}
