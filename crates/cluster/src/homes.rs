//! [`Homes`]: which node hosts each live conversation, with a fencing epoch that only changes
//! by compare-and-swap (`UPDATE … WHERE epoch = $seen`), so two nodes can never both believe
//! they took a conversation over (the split rooms of LiveKit's unfenced Redis map,
//! scale-out.md §1.1). The first claim inserts epoch 1 (`ON CONFLICT DO NOTHING`: the loser
//! reads the winner); a takeover moves the home and bumps the epoch only if the epoch is still
//! the one the taker saw; the home leaves by compare-and-delete on its epoch.
//!
//! This is the building block of placement and takeover (docs/cluster.md); nothing calls it
//! yet: the gateway still places every conversation on the node that has its socket.

use crate::database::{Database, DatabaseError};

/// Append-only migration steps of the `homes` component.
pub const MIGRATIONS: &[&str] = &[
    "
CREATE TABLE cluster_homes (
    conversation_id TEXT PRIMARY KEY,
    home_node TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX cluster_homes_by_node ON cluster_homes (home_node);
",
    "
ALTER TABLE cluster_homes ADD COLUMN live_conversation_id TEXT;
CREATE INDEX cluster_homes_by_live_conversation ON cluster_homes (live_conversation_id);
",
];

/// A conversation's home as read or written: the node and the fencing epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    pub node: String,
    pub epoch: i64,
}

/// The `cluster_homes` table.
#[derive(Clone, Debug)]
pub struct Homes {
    db: Database,
}

impl Homes {
    pub fn open(db: &Database) -> Result<Self, DatabaseError> {
        db.migrate("homes", MIGRATIONS)?;
        Ok(Self { db: db.clone() })
    }

    /// Claim `conversation` for `node` if it has no home; either way answer the home now
    /// recorded (the caller's at epoch 1, or the winner's).
    pub async fn claim(&self, conversation: &str, node: &str) -> Result<Home, DatabaseError> {
        let (c, n) = (conversation.to_string(), node.to_string());
        self.db
            .run(move |pool| async move {
                let client = pool.get().await?;
                client
                    .execute(
                        "INSERT INTO cluster_homes (conversation_id, home_node, epoch) VALUES ($1, $2, 1)
                         ON CONFLICT (conversation_id) DO NOTHING",
                        &[&c, &n],
                    )
                    .await?;
                let row = client
                    .query_one("SELECT home_node, epoch FROM cluster_homes WHERE conversation_id = $1", &[&c])
                    .await?;
                Ok(Home { node: row.get(0), epoch: row.get(1) })
            })
            .await?
    }

    /// The current home, if any.
    pub async fn get(&self, conversation: &str) -> Result<Option<Home>, DatabaseError> {
        let c = conversation.to_string();
        self.db
            .run(move |pool| async move {
                let row = pool
                    .get()
                    .await?
                    .query_opt("SELECT home_node, epoch FROM cluster_homes WHERE conversation_id = $1", &[&c])
                    .await?;
                Ok(row.map(|r| Home { node: r.get(0), epoch: r.get(1) }))
            })
            .await?
    }

    /// Move `conversation` to `node` if its epoch is still `seen`: the new home (epoch
    /// `seen + 1`), or `None` when someone else moved it first (re-read and decide again).
    pub async fn take_over(&self, conversation: &str, node: &str, seen: i64) -> Result<Option<Home>, DatabaseError> {
        let (c, n) = (conversation.to_string(), node.to_string());
        self.db
            .run(move |pool| async move {
                let row = pool
                    .get()
                    .await?
                    .query_opt(
                        "UPDATE cluster_homes SET home_node = $2, epoch = epoch + 1, updated_at = now()
                         WHERE conversation_id = $1 AND epoch = $3 RETURNING home_node, epoch",
                        &[&c, &n, &seen],
                    )
                    .await?;
                Ok(row.map(|r| Home { node: r.get(0), epoch: r.get(1) }))
            })
            .await?
    }

    /// Whether `node` still holds `conversation` at `epoch` (a fenced node's check before it
    /// writes: false means it was taken over and must stop hosting).
    pub async fn holds(&self, conversation: &str, node: &str, epoch: i64) -> Result<bool, DatabaseError> {
        Ok(self.get(conversation).await?.is_some_and(|h| h.node == node && h.epoch == epoch))
    }

    /// Record the id of the live conversation `node` runs for `key` at `epoch` (so a `resume`
    /// reaching another node finds its home); nothing when the home moved on.
    pub async fn record_live(
        &self,
        key: &str,
        node: &str,
        epoch: i64,
        conversation_id: &str,
    ) -> Result<bool, DatabaseError> {
        let (k, n, c) = (key.to_string(), node.to_string(), conversation_id.to_string());
        self.db
            .run(move |pool| async move {
                let updated = pool
                    .get()
                    .await?
                    .execute(
                        "UPDATE cluster_homes SET live_conversation_id = $4
                         WHERE conversation_id = $1 AND home_node = $2 AND epoch = $3",
                        &[&k, &n, &epoch, &c],
                    )
                    .await?;
                Ok(updated == 1)
            })
            .await?
    }

    /// The target key of the live conversation with id `conversation_id`, if a home recorded it.
    pub async fn key_of_live(&self, conversation_id: &str) -> Result<Option<String>, DatabaseError> {
        let c = conversation_id.to_string();
        self.db
            .run(move |pool| async move {
                let row = pool
                    .get()
                    .await?
                    .query_opt("SELECT conversation_id FROM cluster_homes WHERE live_conversation_id = $1", &[&c])
                    .await?;
                Ok(row.map(|r| r.get(0)))
            })
            .await?
    }

    /// How many conversations `node` is the home of.
    pub async fn count_for(&self, node: &str) -> Result<i64, DatabaseError> {
        let n = node.to_string();
        self.db
            .run(move |pool| async move {
                let row = pool
                    .get()
                    .await?
                    .query_one("SELECT count(*) FROM cluster_homes WHERE home_node = $1", &[&n])
                    .await?;
                Ok(row.get::<_, i64>(0))
            })
            .await?
    }

    /// The home leaves: delete the row only if it is still `node`'s at `epoch`.
    pub async fn release(&self, conversation: &str, node: &str, epoch: i64) -> Result<bool, DatabaseError> {
        let (c, n) = (conversation.to_string(), node.to_string());
        self.db
            .run(move |pool| async move {
                let deleted = pool
                    .get()
                    .await?
                    .execute(
                        "DELETE FROM cluster_homes WHERE conversation_id = $1 AND home_node = $2 AND epoch = $3",
                        &[&c, &n, &epoch],
                    )
                    .await?;
                Ok(deleted == 1)
            })
            .await?
    }
}

#[cfg(test)]
mod tests;
