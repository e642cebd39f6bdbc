//! [`Takeover`]: how this node takes a conversation over from a home that is gone, billing
//! included. The router calls it when the recorded home is no longer in the registry; it runs
//! the ledger's takeover transaction ([`take_over_with_sessions`]): the epoch compare-and-swap
//! on `cluster_homes` and the adoption of the old home's open sessions (kept open for their
//! participants to resume; closed at their last checkpoint if they never do) commit together
//! (docs/cluster.md, "Billing across a takeover").
//!
//! The usage records it writes are priced and announced (webhook outbox) with the options of
//! this node's ledger, which the ledger opener hands over once the usage service starts
//! ([`Takeover::set_ledger_options`]); before that (offline subcommands) the defaults apply.

use crate::database::Database;
use crate::homes::Home;
use crate::ledger::{TakenOver, take_over_with_sessions};
use dashmap::DashMap;
use palaver_billing::ledger::{LedgerError, LedgerOptions};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long after a takeover the conversation's first start here restores the carried state
/// (the join that took it over starts the conversation at once; this only bounds the memory).
pub const RESTORE_AFTER_TAKEOVER: Duration = Duration::from_secs(10);

/// One node's takeovers.
#[derive(Debug)]
pub struct Takeover {
    db: Database,
    node_id: String,
    options: OnceLock<LedgerOptions>,
    /// Keys this node took over lately, with the epoch won and when.
    recent: DashMap<String, (i64, Instant)>,
}

impl Takeover {
    pub fn new(db: &Database, node_id: &str) -> Self {
        Self { db: db.clone(), node_id: node_id.to_string(), options: OnceLock::new(), recent: DashMap::new() }
    }

    /// The epoch at which this node took `key` over, if it did within
    /// [`RESTORE_AFTER_TAKEOVER`]; taken (the conversation restores once).
    pub fn take_recent(&self, key: &str) -> Option<i64> {
        self.recent.retain(|_, (_, at)| at.elapsed() <= RESTORE_AFTER_TAKEOVER);
        self.recent.remove(key).map(|(_, (epoch, _))| epoch)
    }

    /// The ledger's options (price, webhook endpoints), set once by the ledger opener.
    pub fn set_ledger_options(&self, options: &LedgerOptions) {
        let _ = self.options.set(options.clone());
    }

    /// The target key a live conversation id was billed under (its sessions' `home_key`): how
    /// a `resume` naming the conversation id of a home that died finds the conversation after
    /// the new home recorded its own id in `cluster_homes`.
    pub async fn key_of_billed(&self, conversation_id: &str) -> Result<Option<String>, crate::DatabaseError> {
        let c = conversation_id.to_string();
        self.db
            .run(move |pool| async move {
                let row = pool
                    .get()
                    .await?
                    .query_opt(
                        "SELECT home_key FROM sessions WHERE conversation_id = $1 AND home_key IS NOT NULL LIMIT 1",
                        &[&c],
                    )
                    .await?;
                Ok(row.map(|r| r.get(0)))
            })
            .await?
    }

    /// Take `key` over from `dead` (its epoch must still be `dead.epoch`): the new home, or
    /// `None` when another node moved it first.
    pub async fn take_over(&self, key: &str, dead: &Home) -> Result<Option<Home>, LedgerError> {
        let options = self.options.get().cloned().unwrap_or_default();
        let now_ms = chrono::Utc::now().timestamp_millis();
        let taken = take_over_with_sessions(&self.db, key, &self.node_id, dead, &options, now_ms).await?;
        Ok(taken.map(|TakenOver { home, adopted, changes }| {
            tracing::info!(key, from = %dead.node, epoch = home.epoch, adopted_sessions = adopted.len(),
                calls_ended = changes.len(), "takeover: the old home's open sessions adopted, awaiting their participants");
            self.recent.insert(key.to_string(), (home.epoch, Instant::now()));
            home
        }))
    }
}
