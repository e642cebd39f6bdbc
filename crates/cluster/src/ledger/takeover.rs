//! The takeover transaction (scale-out.md §3.5–3.6): in **one** PostgreSQL transaction, move a
//! conversation's home to this node by compare-and-swap on its epoch (`cluster_homes`) and
//! **adopt** the old home's open sessions of it (`adoption.rs`): they stay open, now owned by
//! this node at the new epoch, awaiting their participants. One who resumes here continues its
//! session (one record through the takeover); one who never returns is closed at the old home's
//! last checkpoint once the grace has passed. A call of the old live conversation that has no
//! open session left is ended.
//!
//! One transaction is what makes billing exactly once across a takeover: the old home's
//! checkpoint and recovery only touch rows it owns (adopted rows are not), its fenced writes
//! read the new epoch (`fenced`), and a takeover that loses the compare-and-swap adopts nothing.
//!
//! Which sessions: those opened under this home key at an older epoch (`home_key`,
//! `owner_epoch`), and, for rows written before the key was known, the old home's open
//! sessions of the live conversation id recorded in `cluster_homes`.

use super::adoption::{adopt, end_finished_calls};
use super::{LedgerError, database, storage};
use crate::database::Database;
use crate::homes::Home;
use palaver_billing::ledger::LedgerOptions;
use palaver_billing::meter::LedgerChange;

/// A takeover that won: the new home, the sessions it adopted and the calls it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct TakenOver {
    pub home: Home,
    /// The old home's open sessions, now this node's, awaiting their participants.
    pub adopted: Vec<String>,
    /// Calls of the old live conversation ended (no open session left).
    pub changes: Vec<LedgerChange>,
}

/// Move `key` from `dead` to `node` (epoch `dead.epoch + 1`) and adopt `dead`'s open sessions
/// of it at `now_ms`, in one transaction. `None`: another node moved it first (nothing was
/// written).
pub async fn take_over_with_sessions(
    db: &Database,
    key: &str,
    node: &str,
    dead: &Home,
    options: &LedgerOptions,
    now_ms: i64,
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
        let adopted = adopt(&tx, &key, epoch, live.as_deref(), &dead.node, &node, now_ms).await?;
        let changes = end_finished_calls(&tx, &options, &node, live.into_iter().collect()).await?;
        tx.commit().await.map_err(storage)?;
        Ok(Some(TakenOver { home: Home { node, epoch }, adopted, changes }))
    })
    .await
    .map_err(database)?
}
