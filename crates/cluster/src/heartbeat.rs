//! [`NodeHeartbeats`]: the `cluster_nodes` table, scale-out.md §3.5's death verdict in
//! PostgreSQL. Every node upserts its row (id, addresses, `last_seen = now()` **of the
//! database**, so node clocks do not matter) every [`BEAT_EVERY`]; a home whose row is older than
//! [`DEAD_AFTER`] by the database's clock, or that left (a drain sets `left_at`), is gone.
//!
//! Where it is used (docs/cluster.md, "Placement, relay, takeover, fencing"): the Redis registry
//! stays the fast verdict (its announcement expires 2 s after the last heartbeat); when Redis is
//! away, the router asks this table instead, so a conversation whose home died during a Redis
//! outage is still taken over. The epoch compare-and-swap on `cluster_homes` stays what makes a
//! takeover safe: a wrong verdict (a node too slow to beat) only moves the conversation, and
//! the old home is fenced.

use crate::database::{Database, DatabaseError};
use crate::registry::NodeAddresses;
use prometheus::IntGauge;
use std::time::Duration;

/// Append-only migration steps of the `nodes` component.
pub const MIGRATIONS: &[&str] = &["
CREATE TABLE cluster_nodes (
    node_id TEXT PRIMARY KEY,
    mesh TEXT,
    quic TEXT,
    https TEXT,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen TIMESTAMPTZ NOT NULL DEFAULT now(),
    left_at TIMESTAMPTZ
);
"];

/// How often a node writes its row.
pub const BEAT_EVERY: Duration = Duration::from_secs(1);
/// A row older than this (database clock) is a dead node: three missed beats.
pub const DEAD_AFTER: Duration = Duration::from_secs(3);
/// A beat gives up after this (an unresponsive database must not pile beats up).
const BEAT_TIMEOUT: Duration = Duration::from_millis(900);

/// What `cluster_nodes` says about a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Its last beat is younger than [`DEAD_AFTER`] and it did not leave.
    Alive,
    /// Its last beat is older than [`DEAD_AFTER`], or it left (drained).
    Gone,
    /// No row: a node of a version before the table, or never started; no verdict.
    Unknown,
}

/// The `cluster_nodes` table.
#[derive(Clone, Debug)]
pub struct NodeHeartbeats {
    db: Database,
}

impl NodeHeartbeats {
    pub fn open(db: &Database) -> Result<Self, DatabaseError> {
        db.migrate("nodes", MIGRATIONS)?;
        Ok(Self { db: db.clone() })
    }

    /// Write `node`'s row now: its addresses, `last_seen = now()`, not left.
    pub async fn beat(&self, node: &str, addresses: &NodeAddresses) -> Result<(), DatabaseError> {
        let (n, a) = (node.to_string(), addresses.clone());
        self.db
            .run(move |pool| async move {
                pool.get()
                    .await?
                    .execute(
                        "INSERT INTO cluster_nodes (node_id, mesh, quic, https) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (node_id) DO UPDATE SET mesh = excluded.mesh, quic = excluded.quic,
                             https = excluded.https, last_seen = now(), left_at = NULL",
                        &[&n, &a.mesh, &a.quic, &a.https],
                    )
                    .await?;
                Ok(())
            })
            .await?
    }

    /// `node` leaves (a drain): its row says so at once, whatever its last beat.
    pub async fn leave(&self, node: &str) -> Result<(), DatabaseError> {
        let n = node.to_string();
        self.db
            .run(move |pool| async move {
                pool.get().await?.execute("UPDATE cluster_nodes SET left_at = now() WHERE node_id = $1", &[&n]).await?;
                Ok(())
            })
            .await?
    }

    /// The verdict on `node`, by the database's clock.
    pub async fn liveness(&self, node: &str) -> Result<Liveness, DatabaseError> {
        let n = node.to_string();
        let dead_after = DEAD_AFTER.as_secs_f64();
        self.db
            .run(move |pool| async move {
                let row = pool
                    .get()
                    .await?
                    .query_opt(
                        "SELECT left_at IS NULL AND last_seen > now() - make_interval(secs => $2)
                         FROM cluster_nodes WHERE node_id = $1",
                        &[&n, &dead_after],
                    )
                    .await?;
                Ok(match row.map(|r| r.get::<_, bool>(0)) {
                    Some(true) => Liveness::Alive,
                    Some(false) => Liveness::Gone,
                    None => Liveness::Unknown,
                })
            })
            .await?
    }

    /// How many nodes are alive by [`NodeHeartbeats::liveness`]'s rule.
    pub async fn alive_count(&self) -> Result<i64, DatabaseError> {
        let dead_after = DEAD_AFTER.as_secs_f64();
        self.db
            .run(move |pool| async move {
                let row = pool
                    .get()
                    .await?
                    .query_one(
                        "SELECT count(*) FROM cluster_nodes
                         WHERE left_at IS NULL AND last_seen > now() - make_interval(secs => $1)",
                        &[&dead_after],
                    )
                    .await?;
                Ok(row.get::<_, i64>(0))
            })
            .await?
    }

    /// Beat every [`BEAT_EVERY`] until aborted, and set `alive` to the live node count read
    /// after each beat (`palaver_cluster_pg_nodes`); a failed beat is logged and retried at the
    /// next tick.
    pub fn spawn(&self, node: String, addresses: NodeAddresses, alive: IntGauge) -> tokio::task::JoinHandle<()> {
        let beats = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(BEAT_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match tokio::time::timeout(BEAT_TIMEOUT, beats.beat(&node, &addresses)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(node, error = %e, "could not write the cluster_nodes heartbeat"),
                    Err(_) => tracing::warn!(node, "the cluster_nodes heartbeat timed out (PostgreSQL unresponsive)"),
                }
                if let Ok(Ok(n)) = tokio::time::timeout(BEAT_TIMEOUT, beats.alive_count()).await {
                    alive.set(n);
                }
            }
        })
    }
}

#[cfg(test)]
mod tests;
