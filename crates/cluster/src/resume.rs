//! [`ResumeMirror`]: the cluster's [`ConversationMirror`]. The home keeps what a conversation
//! carries across a takeover ([`CarriedConversation`]: capture state; each identity's
//! participant id, role, lobby standing and raised hand) in PostgreSQL, and a node that takes
//! the conversation over restores it before the first join (docs/cluster.md, "Resume across a
//! takeover").
//!
//! - **Written behind, fenced by the epoch.** The actor hands each changed state over without
//!   waiting ([`ConversationMirror::mirror`]); a writer task stores the latest state per
//!   conversation every [`WRITE_EVERY`], only while `cluster_homes` still names this node at
//!   the epoch it holds, and never over a row of a newer epoch. The row references its
//!   `cluster_homes` row (`ON DELETE CASCADE`), so giving up the home of an ended conversation
//!   removes it.
//! - **Fresh only.** The writer stamps `seen_at` on the rows of the conversations this node
//!   hosts every [`STAMP_EVERY`]; a takeover restores a row only if it was stamped within
//!   [`RESTORE_WITHIN`] (the default reconnect grace): the participants who come back within
//!   that time after the home died keep their standing; a meeting held again days later starts
//!   afresh.
//! - **Only after a takeover.** [`ConversationMirror::restore`] answers at once, with no query,
//!   unless this node took the key over moments ago ([`Takeover::take_recent`]).

use crate::database::{Database, DatabaseError};
use crate::takeover::Takeover;
use dashmap::DashMap;
use palaver_signaling::domain::conversation::CarriedConversation;
use palaver_signaling::gateway::ConversationMirror;
use palaver_signaling::gateway::placement::RouterFuture;
use std::sync::Arc;
use std::time::Duration;

/// Append-only migration steps of the `resume` component.
pub const MIGRATIONS: &[&str] = &["
CREATE TABLE cluster_conversation_state (
    conversation_key TEXT PRIMARY KEY REFERENCES cluster_homes (conversation_id) ON DELETE CASCADE,
    home_node TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    live_conversation_id TEXT NOT NULL,
    state TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    seen_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
"];

/// How often pending states are written.
pub const WRITE_EVERY: Duration = Duration::from_millis(100);
/// How often the hosted conversations' rows are stamped as alive.
pub const STAMP_EVERY: Duration = Duration::from_secs(2);
/// How old a stamp a takeover still restores.
pub const RESTORE_WITHIN: Duration = Duration::from_secs(30);

/// The PostgreSQL mirror of one node.
#[derive(Debug)]
pub struct ResumeMirror {
    node_id: String,
    db: Database,
    takeover: Arc<Takeover>,
    /// The router's hosted conversations: target key → epoch held.
    held: Arc<DashMap<String, i64>>,
    /// Latest state per key not written yet: (live conversation id, state).
    pending: DashMap<String, (String, CarriedConversation)>,
    wake: tokio::sync::Notify,
    /// Held while writing, so [`ResumeMirror::flush_now`] returns only once a write the writer
    /// task had started is done too.
    writing: tokio::sync::Mutex<()>,
}

impl ResumeMirror {
    /// The mirror of `node_id` (applies the `resume` migrations; `cluster_homes` must exist).
    pub fn open(
        db: &Database,
        node_id: &str,
        takeover: Arc<Takeover>,
        held: Arc<DashMap<String, i64>>,
    ) -> Result<Arc<Self>, DatabaseError> {
        db.migrate("resume", MIGRATIONS)?;
        Ok(Arc::new(Self {
            node_id: node_id.to_string(),
            db: db.clone(),
            takeover,
            held,
            pending: DashMap::new(),
            wake: tokio::sync::Notify::new(),
            writing: tokio::sync::Mutex::new(()),
        }))
    }

    /// Write `state` for `key` if this node still holds it at `epoch` and no newer epoch wrote
    /// it; true if written.
    pub async fn store(
        &self,
        key: &str,
        epoch: i64,
        conversation_id: &str,
        state: &CarriedConversation,
    ) -> Result<bool, DatabaseError> {
        let (k, n, c) = (key.to_string(), self.node_id.clone(), conversation_id.to_string());
        let state = serde_json::to_string(state).map_err(|e| DatabaseError::Runtime(e.to_string()))?;
        self.db
            .run(move |pool| async move {
                let written = pool
                    .get()
                    .await?
                    .execute(
                        "INSERT INTO cluster_conversation_state
                             (conversation_key, home_node, epoch, live_conversation_id, state)
                         SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM cluster_homes
                             WHERE conversation_id = $1 AND home_node = $2 AND epoch = $3)
                         ON CONFLICT (conversation_key) DO UPDATE SET home_node = excluded.home_node,
                             epoch = excluded.epoch, live_conversation_id = excluded.live_conversation_id,
                             state = excluded.state, updated_at = now(), seen_at = now()
                         WHERE cluster_conversation_state.epoch <= excluded.epoch",
                        &[&k, &n, &epoch, &c, &state],
                    )
                    .await?;
                Ok(written == 1)
            })
            .await?
    }

    /// What a home older than `epoch` stored for `key`, if stamped within [`RESTORE_WITHIN`].
    pub async fn load(&self, key: &str, epoch: i64) -> Result<Option<CarriedConversation>, DatabaseError> {
        let k = key.to_string();
        let within = RESTORE_WITHIN.as_secs_f64();
        let row = self
            .db
            .run(move |pool| async move {
                pool.get()
                    .await?
                    .query_opt(
                        "SELECT state FROM cluster_conversation_state WHERE conversation_key = $1 AND epoch < $2
                           AND seen_at > now() - make_interval(secs => $3)",
                        &[&k, &epoch, &within],
                    )
                    .await
                    .map_err(DatabaseError::from)
            })
            .await??;
        Ok(row.and_then(|r| serde_json::from_str(r.get::<_, &str>(0)).ok()))
    }

    /// Stamp the rows of the conversations this node hosts as alive.
    async fn stamp(&self) -> Result<u64, DatabaseError> {
        let keys: Vec<String> = self.held.iter().map(|e| e.key().clone()).collect();
        if keys.is_empty() {
            return Ok(0);
        }
        let node = self.node_id.clone();
        self.db
            .run(move |pool| async move {
                Ok(pool
                    .get()
                    .await?
                    .execute(
                        "UPDATE cluster_conversation_state SET seen_at = now()
                         WHERE home_node = $1 AND conversation_key = ANY($2)",
                        &[&node, &keys],
                    )
                    .await?)
            })
            .await?
    }

    /// Write pending states (the latest per conversation) and stamp hosted rows, until aborted.
    pub fn spawn_writer(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let mirror = self.clone();
        tokio::spawn(async move {
            let mut stamp = tokio::time::interval(STAMP_EVERY);
            stamp.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = mirror.wake.notified() => {}
                    _ = stamp.tick() => {
                        if let Err(e) = mirror.stamp().await {
                            tracing::warn!(error = %e, "could not stamp the mirrored conversations");
                        }
                    }
                }
                mirror.flush().await;
                tokio::time::sleep(WRITE_EVERY).await;
            }
        })
    }

    /// Write every pending state now (a drain, before handing its conversations over).
    pub async fn flush_now(&self) {
        self.flush().await;
    }

    async fn flush(&self) {
        let _writing = self.writing.lock().await;
        let keys: Vec<String> = self.pending.iter().map(|e| e.key().clone()).collect();
        for key in keys {
            let Some((_, (conversation_id, state))) = self.pending.remove(&key) else { continue };
            let Some(epoch) = self.held.get(&key).map(|e| *e) else { continue };
            match self.store(&key, epoch, &conversation_id, &state).await {
                Ok(true) => {}
                Ok(false) => tracing::debug!(key, epoch, "mirror not written: the home moved on"),
                Err(e) => {
                    tracing::warn!(key, error = %e, "could not mirror the conversation state; retrying");
                    // Keep it unless a newer state arrived meanwhile.
                    self.pending.entry(key).or_insert((conversation_id, state));
                }
            }
        }
    }
}

impl ConversationMirror for ResumeMirror {
    fn restore<'a>(&'a self, key: &'a str) -> RouterFuture<'a, Option<CarriedConversation>> {
        Box::pin(async move {
            let epoch = self.takeover.take_recent(key)?;
            match self.load(key, epoch).await {
                Ok(carried) => carried,
                Err(e) => {
                    tracing::warn!(key, error = %e, "could not read the carried state; the conversation starts afresh");
                    None
                }
            }
        })
    }

    fn mirror(&self, key: &str, conversation_id: &str, state: &CarriedConversation) {
        self.pending.insert(key.to_string(), (conversation_id.to_string(), state.clone()));
        self.wake.notify_one();
    }
}

#[cfg(test)]
mod tests;
