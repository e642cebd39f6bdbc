//! The identity store port: the atomic steps the identity rules and the token check need
//! (identities, revocation marks, first answers to repeatable requests, and the generated
//! settings every node must share: resource id, access key, token-signing seed). The SQLite
//! [`Store`] implements it here; `palaver-cluster` implements it on PostgreSQL, selected by
//! `[cluster] postgres_url`. Every method is one transaction.

use super::identities::{self, StoredAnswer};
use super::{Store, StoreError, settings};
use async_trait::async_trait;

/// A `Repeatability-Request-ID` and the fingerprint of the request that carried it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepeatKey {
    pub request_id: String,
    pub fingerprint: String,
}

/// What a repeatable write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityWrite {
    /// The request id was seen before: this is the first answer (nothing written).
    Replay(StoredAnswer),
    /// Written, and the answer remembered under the request id.
    Done,
    /// The identity does not exist (nothing written).
    NotFound,
}

/// What a revocation does besides writing the mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeAction {
    /// The identity must exist.
    Revoke,
    /// Delete the identity (it must exist).
    Delete,
    /// Only the mark (directory users, who have no identity row).
    MarkOnly,
}

/// How long a repeatable request's first answer is kept.
pub const REPEATABILITY_WINDOW_MS: i64 = 24 * 60 * 60 * 1000;

/// The mark a revocation at `now_ms` writes: every token issued up to `now_ms` is revoked.
pub fn revocation_mark(now_ms: i64) -> i64 {
    now_ms + 1
}

#[async_trait]
pub trait IdentityStore: Send + Sync + std::fmt::Debug + 'static {
    /// The first answer of `repeat` if seen; else insert identity `raw_id` and remember
    /// `answer` under `repeat`.
    async fn create_identity(
        &self,
        raw_id: &str,
        now_ms: i64,
        repeat: Option<&RepeatKey>,
        answer: &str,
    ) -> Result<IdentityWrite, StoreError>;

    /// The first answer of `repeat` if seen; else, if identity `raw_id` exists, remember
    /// `answer` under `repeat` (`NotFound` otherwise).
    async fn answer_for_existing(
        &self,
        raw_id: &str,
        now_ms: i64,
        repeat: Option<&RepeatKey>,
        answer: &str,
    ) -> Result<IdentityWrite, StoreError>;

    /// Apply `action` and write the revocation mark at `now_ms` (marks never move back);
    /// the mark, or `None` when the identity must exist and does not.
    async fn revoke(&self, raw_id: &str, now_ms: i64, action: RevokeAction) -> Result<Option<i64>, StoreError>;

    async fn identity_exists(&self, raw_id: &str) -> Result<bool, StoreError>;

    /// Every revocation mark (start-up, before requests are served).
    fn revocations(&self) -> Result<Vec<(String, i64)>, StoreError>;

    /// The stored setting `name`, or `generate()`'s value stored now (two callers agree).
    fn setting_or_create(&self, name: &str, generate: &mut dyn FnMut() -> String) -> Result<String, StoreError>;

    /// Number of identities (tests, diagnostics).
    fn identity_count(&self) -> Result<i64, StoreError>;
}

fn repeatable_sqlite(
    conn: &mut rusqlite::Connection,
    repeat: Option<&RepeatKey>,
    now_ms: i64,
    answer: &str,
    write: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<bool>,
) -> rusqlite::Result<IdentityWrite> {
    let tx = conn.transaction()?;
    if let Some(rep) = repeat
        && let Some(stored) = identities::find_answer(&tx, &rep.request_id)?
    {
        return Ok(IdentityWrite::Replay(stored));
    }
    if !write(&tx)? {
        return Ok(IdentityWrite::NotFound);
    }
    if let Some(rep) = repeat {
        let stored = StoredAnswer { fingerprint: rep.fingerprint.clone(), body: answer.to_string() };
        identities::save_answer(&tx, &rep.request_id, &stored, now_ms)?;
        identities::prune_answers(&tx, now_ms - REPEATABILITY_WINDOW_MS)?;
    }
    tx.commit()?;
    Ok(IdentityWrite::Done)
}

#[async_trait]
impl IdentityStore for Store {
    async fn create_identity(
        &self,
        raw_id: &str,
        now_ms: i64,
        repeat: Option<&RepeatKey>,
        answer: &str,
    ) -> Result<IdentityWrite, StoreError> {
        let (id, rep, answer) = (raw_id.to_string(), repeat.cloned(), answer.to_string());
        self.call(move |conn| {
            repeatable_sqlite(conn, rep.as_ref(), now_ms, &answer, |tx| {
                identities::insert_identity(tx, &id, now_ms)?;
                Ok(true)
            })
        })
        .await
    }

    async fn answer_for_existing(
        &self,
        raw_id: &str,
        now_ms: i64,
        repeat: Option<&RepeatKey>,
        answer: &str,
    ) -> Result<IdentityWrite, StoreError> {
        let (id, rep, answer) = (raw_id.to_string(), repeat.cloned(), answer.to_string());
        self.call(move |conn| {
            repeatable_sqlite(conn, rep.as_ref(), now_ms, &answer, |tx| identities::identity_exists(tx, &id))
        })
        .await
    }

    async fn revoke(&self, raw_id: &str, now_ms: i64, action: RevokeAction) -> Result<Option<i64>, StoreError> {
        let id = raw_id.to_string();
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let proceed = match action {
                RevokeAction::Revoke => identities::identity_exists(&tx, &id)?,
                RevokeAction::Delete => identities::delete_identity(&tx, &id)?,
                RevokeAction::MarkOnly => true,
            };
            if !proceed {
                return Ok(None);
            }
            let mark = revocation_mark(now_ms);
            identities::set_revoked_before(&tx, &id, mark)?;
            tx.commit()?;
            Ok(Some(mark))
        })
        .await
    }

    async fn identity_exists(&self, raw_id: &str) -> Result<bool, StoreError> {
        let id = raw_id.to_string();
        self.call(move |conn| identities::identity_exists(conn, &id)).await
    }

    fn revocations(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.with_conn(|c| identities::all_revocations(c))
    }

    fn setting_or_create(&self, name: &str, generate: &mut dyn FnMut() -> String) -> Result<String, StoreError> {
        settings::get_or_create(self, name, generate)
    }

    fn identity_count(&self) -> Result<i64, StoreError> {
        self.with_conn(|c| identities::count_identities(c))
    }
}

#[cfg(any(test, feature = "test-support"))]
pub mod conformance;
#[cfg(test)]
mod tests;
