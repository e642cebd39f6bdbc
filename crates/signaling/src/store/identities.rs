//! Identity tables: communication identities, per-identity token revocation marks, and
//! the first answer to each `Repeatability-Request-ID`.
//!
//! Functions take a `rusqlite` connection or transaction so the identity service can make
//! "check replay, create identity, record answer" one atomic step.

use rusqlite::{Connection, OptionalExtension, params};

pub(super) const MIGRATIONS: &[&str] = &[
    "
    CREATE TABLE identities (
        raw_id TEXT PRIMARY KEY NOT NULL,
        created_at_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE token_revocations (
        raw_id TEXT PRIMARY KEY NOT NULL,
        revoked_before_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE repeatable_requests (
        request_id TEXT PRIMARY KEY NOT NULL,
        fingerprint TEXT NOT NULL,
        status INTEGER NOT NULL,
        body TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX repeatable_requests_age ON repeatable_requests (created_at_ms);
",
    "ALTER TABLE repeatable_requests DROP COLUMN status;",
];

/// The stored first answer to a repeatable request (its JSON body; the operation fixes the
/// status, so none is stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnswer {
    pub fingerprint: String,
    pub body: String,
}

pub fn insert_identity(conn: &Connection, raw_id: &str, now_ms: i64) -> rusqlite::Result<()> {
    conn.execute("INSERT INTO identities (raw_id, created_at_ms) VALUES (?1, ?2)", params![raw_id, now_ms]).map(|_| ())
}

pub fn identity_exists(conn: &Connection, raw_id: &str) -> rusqlite::Result<bool> {
    conn.query_row("SELECT 1 FROM identities WHERE raw_id = ?1", [raw_id], |_| Ok(())).optional().map(|o| o.is_some())
}

/// Delete an identity; returns whether it existed.
pub fn delete_identity(conn: &Connection, raw_id: &str) -> rusqlite::Result<bool> {
    conn.execute("DELETE FROM identities WHERE raw_id = ?1", [raw_id]).map(|n| n > 0)
}

pub fn count_identities(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT COUNT(*) FROM identities", [], |r| r.get(0))
}

/// Mark every token of `raw_id` issued before `revoked_before_ms` as revoked (never moves back).
pub fn set_revoked_before(conn: &Connection, raw_id: &str, revoked_before_ms: i64) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO token_revocations (raw_id, revoked_before_ms) VALUES (?1, ?2)
         ON CONFLICT(raw_id) DO UPDATE SET revoked_before_ms = MAX(revoked_before_ms, excluded.revoked_before_ms)",
        params![raw_id, revoked_before_ms],
    )
    .map(|_| ())
}

/// All revocation marks (loaded into memory at start).
pub fn all_revocations(conn: &Connection) -> rusqlite::Result<Vec<(String, i64)>> {
    let mut stmt = conn.prepare("SELECT raw_id, revoked_before_ms FROM token_revocations")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

pub fn find_answer(conn: &Connection, request_id: &str) -> rusqlite::Result<Option<StoredAnswer>> {
    conn.query_row("SELECT fingerprint, body FROM repeatable_requests WHERE request_id = ?1", [request_id], |r| {
        Ok(StoredAnswer { fingerprint: r.get(0)?, body: r.get(1)? })
    })
    .optional()
}

pub fn save_answer(conn: &Connection, request_id: &str, answer: &StoredAnswer, now_ms: i64) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO repeatable_requests (request_id, fingerprint, body, created_at_ms) VALUES (?1, ?2, ?3, ?4)",
        params![request_id, answer.fingerprint, answer.body, now_ms],
    )
    .map(|_| ())
}

/// Forget answers recorded before `cutoff_ms`; returns how many.
pub fn prune_answers(conn: &Connection, cutoff_ms: i64) -> rusqlite::Result<usize> {
    conn.execute("DELETE FROM repeatable_requests WHERE created_at_ms < ?1", [cutoff_ms])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn identity_lifecycle_and_revocation_marks() {
        let store = Store::open_in_memory().unwrap();
        store
            .with_conn(|c| {
                insert_identity(c, "8:acs:r_1", 10)?;
                assert!(identity_exists(c, "8:acs:r_1")?);
                assert!(insert_identity(c, "8:acs:r_1", 11).is_err());
                assert_eq!(count_identities(c)?, 1);
                set_revoked_before(c, "8:acs:r_1", 100)?;
                set_revoked_before(c, "8:acs:r_1", 50)?;
                assert_eq!(all_revocations(c)?, vec![("8:acs:r_1".to_string(), 100)]);
                assert!(delete_identity(c, "8:acs:r_1")?);
                assert!(!delete_identity(c, "8:acs:r_1")?);
                assert_eq!(all_revocations(c)?.len(), 1, "revocation outlives the identity");
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn answers_are_kept_and_pruned() {
        let store = Store::open_in_memory().unwrap();
        let answer = StoredAnswer { fingerprint: "f".into(), body: "{}".into() };
        store
            .with_conn(|c| {
                save_answer(c, "req", &answer, 5)?;
                assert_eq!(find_answer(c, "req")?, Some(answer.clone()));
                assert_eq!(prune_answers(c, 6)?, 1);
                assert_eq!(find_answer(c, "req")?, None);
                Ok(())
            })
            .unwrap();
    }
}
