//! [`PgMeetingStore`]: meeting definitions on PostgreSQL, behind signaling's [`MeetingStore`]
//! port (the SQLite table of `store/meetings.rs`; list columns and the policy as JSON text,
//! as there). Creates by one organizer serialise on a transaction-scoped advisory lock on the
//! organizer, so the per-organizer cap holds when two nodes create at once.

use crate::database::Database;
use crate::identity::{pg, store_error};
use async_trait::async_trait;
use palaver_core::protocol::MeetingPolicy;
use palaver_signaling::store::StoreError;
use palaver_signaling::store::meetings::{InsertOutcome, MeetingRecord, MeetingStore};
use tokio_postgres::Row;

/// Append-only migration steps of the `meetings` component.
pub const MIGRATIONS: &[&str] = &["
CREATE TABLE meetings (
    id TEXT PRIMARY KEY,
    meeting_code TEXT NOT NULL UNIQUE,
    passcode TEXT NOT NULL,
    subject TEXT,
    organizer_raw_id TEXT NOT NULL,
    organizer_tenant_id TEXT,
    co_organizers TEXT NOT NULL,
    presenters TEXT NOT NULL,
    policy TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX meetings_by_organizer ON meetings (organizer_raw_id, created_at_ms DESC);
"];

const COLUMNS: &str = "id, meeting_code, passcode, subject, organizer_raw_id, organizer_tenant_id, \
                       co_organizers, presenters, policy, created_at_ms";

/// The meetings store of a cluster.
#[derive(Clone, Debug)]
pub struct PgMeetingStore {
    db: Database,
}

impl PgMeetingStore {
    /// The store on `db`, after applying its migrations.
    pub fn open(db: &Database) -> Result<Self, StoreError> {
        db.migrate("meetings", MIGRATIONS).map_err(store_error)?;
        Ok(Self { db: db.clone() })
    }

    /// Run one statement's worth of work on a pooled connection.
    async fn with_client<R, F, Fut>(&self, work: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(deadpool_postgres::Object) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<R, StoreError>> + Send + 'static,
    {
        self.db
            .run(move |pool| async move {
                let client = pool.get().await.map_err(|e| store_error(e.into()))?;
                work(client).await
            })
            .await
            .map_err(store_error)?
    }
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

fn decode<T: serde::de::DeserializeOwned>(row: &Row, i: usize) -> Result<T, StoreError> {
    serde_json::from_str(row.get(i)).map_err(|e| StoreError::Backend(format!("meetings column {i}: {e}")))
}

fn row_to_record(r: &Row) -> Result<MeetingRecord, StoreError> {
    Ok(MeetingRecord {
        id: r.get(0),
        meeting_code: r.get(1),
        passcode: r.get(2),
        subject: r.get(3),
        organizer_raw_id: r.get(4),
        organizer_tenant_id: r.get(5),
        co_organizers: decode(r, 6)?,
        presenters: decode(r, 7)?,
        policy: decode(r, 8)?,
        created_at_ms: r.get(9),
    })
}

#[async_trait]
impl MeetingStore for PgMeetingStore {
    async fn insert_meeting(
        &self,
        record: &MeetingRecord,
        max_per_organizer: usize,
    ) -> Result<InsertOutcome, StoreError> {
        let r = record.clone();
        self.with_client(move |mut client| async move {
            let tx = client.transaction().await.map_err(pg)?;
            tx.execute("SELECT pg_advisory_xact_lock(hashtext('meetings ' || $1))", &[&r.organizer_raw_id])
                .await
                .map_err(pg)?;
            let held: i64 = tx
                .query_one("SELECT COUNT(*) FROM meetings WHERE organizer_raw_id = $1", &[&r.organizer_raw_id])
                .await
                .map_err(pg)?
                .get(0);
            if held >= max_per_organizer as i64 {
                return Ok(InsertOutcome::OrganizerFull);
            }
            let n = tx
                .execute(
                    &format!(
                        "INSERT INTO meetings ({COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) ON CONFLICT DO NOTHING"
                    ),
                    &[
                        &r.id,
                        &r.meeting_code,
                        &r.passcode,
                        &r.subject,
                        &r.organizer_raw_id,
                        &r.organizer_tenant_id,
                        &json(&r.co_organizers),
                        &json(&r.presenters),
                        &json(&r.policy),
                        &r.created_at_ms,
                    ],
                )
                .await
                .map_err(pg)?;
            tx.commit().await.map_err(pg)?;
            Ok(if n == 1 { InsertOutcome::Inserted } else { InsertOutcome::Collision })
        })
        .await
    }

    async fn meeting(&self, id: &str) -> Result<Option<MeetingRecord>, StoreError> {
        let id = id.to_string();
        self.with_client(move |client| async move {
            let row =
                client.query_opt(&format!("SELECT {COLUMNS} FROM meetings WHERE id = $1"), &[&id]).await.map_err(pg)?;
            row.as_ref().map(row_to_record).transpose()
        })
        .await
    }

    async fn meeting_by_code(&self, code: &str) -> Result<Option<MeetingRecord>, StoreError> {
        let code = code.to_string();
        self.with_client(move |client| async move {
            let row = client
                .query_opt(&format!("SELECT {COLUMNS} FROM meetings WHERE meeting_code = $1"), &[&code])
                .await
                .map_err(pg)?;
            row.as_ref().map(row_to_record).transpose()
        })
        .await
    }

    async fn set_meeting_policy(&self, id: &str, policy: &MeetingPolicy) -> Result<bool, StoreError> {
        let (id, policy) = (id.to_string(), json(policy));
        self.with_client(move |client| async move {
            let n =
                client.execute("UPDATE meetings SET policy = $1 WHERE id = $2", &[&policy, &id]).await.map_err(pg)?;
            Ok(n == 1)
        })
        .await
    }

    async fn delete_meeting(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.with_client(move |client| async move {
            Ok(client.execute("DELETE FROM meetings WHERE id = $1", &[&id]).await.map_err(pg)? == 1)
        })
        .await
    }

    async fn meetings_of(&self, raw_id: &str, limit: usize) -> Result<Vec<MeetingRecord>, StoreError> {
        let raw_id = raw_id.to_string();
        self.with_client(move |client| async move {
            let rows = client
                .query(
                    &format!(
                        "SELECT {COLUMNS} FROM meetings WHERE organizer_raw_id = $1
                         ORDER BY created_at_ms DESC, id LIMIT $2"
                    ),
                    &[&raw_id, &(limit as i64)],
                )
                .await
                .map_err(pg)?;
            rows.iter().map(row_to_record).collect()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::PostgresServer;

    fn fresh_database() -> Database {
        Database::connect(&PostgresServer::shared().unwrap().fresh_database().unwrap()).unwrap()
    }

    palaver_signaling::meeting_store_conformance_tests!(PgMeetingStore::open(&fresh_database()).unwrap());
}
