//! [`PgIdentityStore`]: identities, token revocation marks, first answers to repeatable
//! requests and the generated settings (resource id, access key, token-signing seed) on
//! PostgreSQL, behind signaling's [`IdentityStore`] port. Every node of a cluster reads the same
//! settings, so a token issued by one node is accepted by all. Each method is one transaction.

use crate::database::{Database, DatabaseError};
use async_trait::async_trait;
use palaver_signaling::store::StoreError;
use palaver_signaling::store::identities::StoredAnswer;
use palaver_signaling::store::identity_store::{
    IdentityStore, IdentityWrite, REPEATABILITY_WINDOW_MS, RepeatKey, RevokeAction, revocation_mark,
};
use tokio_postgres::Transaction;

/// Append-only migration steps of the `identity` component (the SQLite tables of
/// `store/identities.rs` and `store/settings.rs`).
pub const MIGRATIONS: &[&str] = &["
CREATE TABLE settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE identities (
    raw_id TEXT PRIMARY KEY,
    created_at_ms BIGINT NOT NULL
);
CREATE TABLE token_revocations (
    raw_id TEXT PRIMARY KEY,
    revoked_before_ms BIGINT NOT NULL
);
CREATE TABLE repeatable_requests (
    request_id TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX repeatable_requests_age ON repeatable_requests (created_at_ms);
"];

/// The identity store of a cluster.
#[derive(Clone, Debug)]
pub struct PgIdentityStore {
    db: Database,
}

pub(crate) fn store_error(e: DatabaseError) -> StoreError {
    StoreError::Backend(match e {
        DatabaseError::Postgres(e) => pg_message(&e),
        other => other.to_string(),
    })
}

pub(crate) fn pg_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

pub(crate) fn pg(e: tokio_postgres::Error) -> StoreError {
    StoreError::Backend(pg_message(&e))
}

/// In `tx`: the first answer of `repeat` if seen; else `write` (false = identity not found)
/// and remember `answer`. Commits only when something was written.
async fn repeatable(
    mut client: deadpool_postgres::Object,
    repeat: Option<RepeatKey>,
    now_ms: i64,
    answer: String,
    write: impl for<'t> FnOnce(&'t Transaction<'t>) -> crate::ledger::futures_boxed::BoxFuture<'t, Result<bool, StoreError>>
    + Send,
) -> Result<IdentityWrite, StoreError> {
    let tx = client.transaction().await.map_err(pg)?;
    if let Some(rep) = &repeat {
        // Lock the request id for the transaction, so two nodes answering the same repeat
        // cannot both write (the second waits, then sees the first's answer).
        tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&rep.request_id]).await.map_err(pg)?;
        if let Some(row) = tx
            .query_opt("SELECT fingerprint, body FROM repeatable_requests WHERE request_id = $1", &[&rep.request_id])
            .await
            .map_err(pg)?
        {
            return Ok(IdentityWrite::Replay(StoredAnswer { fingerprint: row.get(0), body: row.get(1) }));
        }
    }
    if !write(&tx).await? {
        return Ok(IdentityWrite::NotFound);
    }
    if let Some(rep) = &repeat {
        tx.execute(
            "INSERT INTO repeatable_requests (request_id, fingerprint, body, created_at_ms) VALUES ($1, $2, $3, $4)",
            &[&rep.request_id, &rep.fingerprint, &answer, &now_ms],
        )
        .await
        .map_err(pg)?;
        tx.execute("DELETE FROM repeatable_requests WHERE created_at_ms < $1", &[&(now_ms - REPEATABILITY_WINDOW_MS)])
            .await
            .map_err(pg)?;
    }
    tx.commit().await.map_err(pg)?;
    Ok(IdentityWrite::Done)
}

impl PgIdentityStore {
    /// The store on `db`, after applying its migrations.
    pub fn open(db: &Database) -> Result<Self, StoreError> {
        db.migrate("identity", MIGRATIONS).map_err(store_error)?;
        Ok(Self { db: db.clone() })
    }

    async fn client(pool: &deadpool_postgres::Pool) -> Result<deadpool_postgres::Object, StoreError> {
        pool.get().await.map_err(|e| store_error(e.into()))
    }
}

#[async_trait]
impl IdentityStore for PgIdentityStore {
    async fn create_identity(
        &self,
        raw_id: &str,
        now_ms: i64,
        repeat: Option<&RepeatKey>,
        answer: &str,
    ) -> Result<IdentityWrite, StoreError> {
        let (id, rep, answer) = (raw_id.to_string(), repeat.cloned(), answer.to_string());
        self.db
            .run(move |pool| async move {
                let client = Self::client(&pool).await?;
                repeatable(client, rep, now_ms, answer, move |tx| {
                    Box::pin(async move {
                        tx.execute("INSERT INTO identities (raw_id, created_at_ms) VALUES ($1, $2)", &[&id, &now_ms])
                            .await
                            .map_err(pg)?;
                        Ok(true)
                    })
                })
                .await
            })
            .await
            .map_err(store_error)?
    }

    async fn answer_for_existing(
        &self,
        raw_id: &str,
        now_ms: i64,
        repeat: Option<&RepeatKey>,
        answer: &str,
    ) -> Result<IdentityWrite, StoreError> {
        let (id, rep, answer) = (raw_id.to_string(), repeat.cloned(), answer.to_string());
        self.db
            .run(move |pool| async move {
                let client = Self::client(&pool).await?;
                repeatable(client, rep, now_ms, answer, move |tx| {
                    Box::pin(async move {
                        Ok(tx
                            .query_opt("SELECT 1 FROM identities WHERE raw_id = $1", &[&id])
                            .await
                            .map_err(pg)?
                            .is_some())
                    })
                })
                .await
            })
            .await
            .map_err(store_error)?
    }

    async fn revoke(&self, raw_id: &str, now_ms: i64, action: RevokeAction) -> Result<Option<i64>, StoreError> {
        let id = raw_id.to_string();
        self.db
            .run(move |pool| async move {
                let mut client = Self::client(&pool).await?;
                let tx = client.transaction().await.map_err(pg)?;
                let proceed = match action {
                    RevokeAction::Revoke => tx
                        .query_opt("SELECT 1 FROM identities WHERE raw_id = $1 FOR UPDATE", &[&id])
                        .await
                        .map_err(pg)?
                        .is_some(),
                    RevokeAction::Delete => {
                        tx.execute("DELETE FROM identities WHERE raw_id = $1", &[&id]).await.map_err(pg)? > 0
                    }
                    RevokeAction::MarkOnly => true,
                };
                if !proceed {
                    return Ok(None);
                }
                let mark = revocation_mark(now_ms);
                tx.execute(
                    "INSERT INTO token_revocations (raw_id, revoked_before_ms) VALUES ($1, $2)
                     ON CONFLICT (raw_id) DO UPDATE
                     SET revoked_before_ms = GREATEST(token_revocations.revoked_before_ms, excluded.revoked_before_ms)",
                    &[&id, &mark],
                )
                .await
                .map_err(pg)?;
                tx.commit().await.map_err(pg)?;
                Ok(Some(mark))
            })
            .await
            .map_err(store_error)?
    }

    async fn identity_exists(&self, raw_id: &str) -> Result<bool, StoreError> {
        let id = raw_id.to_string();
        self.db
            .run(move |pool| async move {
                let client = Self::client(&pool).await?;
                Ok(client.query_opt("SELECT 1 FROM identities WHERE raw_id = $1", &[&id]).await.map_err(pg)?.is_some())
            })
            .await
            .map_err(store_error)?
    }

    fn revocations(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.db
            .block_on(|pool| async move {
                let client = Self::client(&pool).await?;
                let rows =
                    client.query("SELECT raw_id, revoked_before_ms FROM token_revocations", &[]).await.map_err(pg)?;
                Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
            })
            .map_err(store_error)?
    }

    fn setting_or_create(&self, name: &str, generate: &mut dyn FnMut() -> String) -> Result<String, StoreError> {
        // Generated before the transaction (the closure is not Send); thrown away if another
        // node stored its value first: `ON CONFLICT DO NOTHING`, then read the winner.
        let (name, candidate) = (name.to_string(), generate());
        self.db
            .block_on(move |pool| async move {
                let client = Self::client(&pool).await?;
                client
                    .execute(
                        "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                        &[&name, &candidate],
                    )
                    .await
                    .map_err(pg)?;
                let row = client.query_one("SELECT value FROM settings WHERE name = $1", &[&name]).await.map_err(pg)?;
                Ok(row.get(0))
            })
            .map_err(store_error)?
    }

    fn identity_count(&self) -> Result<i64, StoreError> {
        self.db
            .block_on(|pool| async move {
                let client = Self::client(&pool).await?;
                Ok(client.query_one("SELECT COUNT(*) FROM identities", &[]).await.map_err(pg)?.get(0))
            })
            .map_err(store_error)?
    }
}

#[cfg(test)]
mod tests;
