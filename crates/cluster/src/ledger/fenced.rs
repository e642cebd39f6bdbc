//! The ledger's own fence (scale-out.md §3.6): a session write for a conversation this node
//! hosts in a cluster is checked **inside the ledger write's transaction** against
//! `cluster_homes`, so a takeover landing between the observer's check and the write cannot
//! let a write through.
//!
//! [`LedgerFence`] tells the ledger, per live conversation id, the home key and epoch this node
//! holds it at ([`Holding::Held`]), that it lost it ([`Holding::Lost`]), or that it is not
//! placed at all (single-node conversations, chat: [`Holding::Unplaced`], no fence). For a held
//! conversation the transaction reads the `cluster_homes` row `FOR SHARE`: a takeover's
//! compare-and-swap (an `UPDATE` of that row) waits until this write commits, and a write that
//! comes after a committed takeover sees the new epoch and is refused. Each opened session row
//! carries `home_key` and `owner_epoch`, which is how the new home finds and closes the old
//! home's open sessions in its takeover transaction (`crate::takeover`).
//!
//! A held conversation whose home row is gone (released 2 s after the conversation ended here)
//! is written: its late closes are the node's own, and a session the new home already closed
//! stays closed (`end_ms IS NULL` guards every close).

use super::{LedgerError, storage};
use palaver_billing::meter::LedgerChange;
use tokio_postgres::Transaction;

/// Append-only steps of the `ledger_fencing` component (its own component, so the `ledger`
/// component's steps stay free): the home key and fencing epoch a session was opened under.
/// Nullable: single-node conversations and rows written before have neither.
pub const FENCING_MIGRATIONS: &[&str] = &["
ALTER TABLE sessions ADD COLUMN home_key TEXT, ADD COLUMN owner_epoch BIGINT;
CREATE INDEX sessions_open_by_home ON sessions (home_key) WHERE end_ms IS NULL;
"];

/// How this node holds a live conversation, as far as billing is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holding {
    /// Not placed in `cluster_homes` (no placement, or not a call): written unfenced.
    Unplaced,
    /// Hosted here under home key `key` at `epoch`.
    Held { key: String, epoch: i64 },
    /// Taken over by another node: nothing more is written.
    Lost,
}

/// Who tells the ledger how this node holds each conversation (the cluster's `Fence`).
pub trait LedgerFence: Send + Sync {
    fn holding(&self, conversation_id: &str) -> Holding;
    /// A write was refused because the conversation moved on (counted, logged).
    fn refused(&self, conversation_id: &str, what: &str);
}

/// The conversation a change bills for, and what the write is (for the refusal's log).
pub(super) fn subject(change: &LedgerChange) -> Option<(&str, &'static str)> {
    match change {
        LedgerChange::CallStarted(call) => Some((&call.conversation_id, "call start")),
        LedgerChange::SessionOpened { started, .. } => Some((&started.conversation_id, "session start")),
        LedgerChange::SessionClosed { session, .. } => Some((&session.started.conversation_id, "session end")),
        LedgerChange::CallEnded { call, .. } => Some((&call.conversation_id, "call end")),
        LedgerChange::CallTypeChanged { conversation_id, .. } => Some((conversation_id, "call type")),
        LedgerChange::ChatMessageSent(_) | LedgerChange::MediaUsed(_) => None,
    }
}

/// Whether `node` still holds `key` at `epoch`, read in the write's transaction with a share
/// lock on the home row (a concurrent takeover waits for this transaction). A missing row
/// (released after the conversation ended) does not refuse.
pub(super) async fn still_home(tx: &Transaction<'_>, key: &str, node: &str, epoch: i64) -> Result<bool, LedgerError> {
    let row = tx
        .query_opt("SELECT home_node, epoch FROM cluster_homes WHERE conversation_id = $1 FOR SHARE", &[&key])
        .await
        .map_err(storage)?;
    Ok(row.is_none_or(|r| r.get::<_, String>(0) == node && r.get::<_, i64>(1) == epoch))
}
