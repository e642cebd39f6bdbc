//! Durable meeting definitions (SQLite table `meetings`): organizer, tenant, listed
//! co-organizers and presenters, policy, numeric meeting code + passcode. Live state
//! (who is in, recording) lives in the gateway's conversation actors, not here.
//! [`MeetingDirectory`] is the domain's handle; [`MeetingStore`] the port behind it (SQLite
//! here, PostgreSQL in `palaver-cluster`), with cases every backend passes in [`conformance`].

use crate::domain::conversation::MeetingSetup;
use crate::store::{Store, StoreError};
use palaver_core::protocol::MeetingPolicy;
use rand::Rng;
use rusqlite::{OptionalExtension, params};
use std::sync::Arc;

/// Append-only migration steps of the `meetings` component.
pub const MIGRATIONS: &[&str] = &["CREATE TABLE meetings (
        id TEXT PRIMARY KEY,
        meeting_code TEXT NOT NULL UNIQUE,
        passcode TEXT NOT NULL,
        subject TEXT,
        organizer_raw_id TEXT NOT NULL,
        organizer_tenant_id TEXT,
        co_organizers TEXT NOT NULL,
        presenters TEXT NOT NULL,
        policy TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL
    );"];

/// A meeting as created through `POST /meetings`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeetingRecord {
    /// Opaque id (UUID v4); also the last segment of the join link.
    pub id: String,
    /// 12-digit numeric meeting id for "join by id + passcode".
    pub meeting_code: String,
    pub passcode: String,
    pub subject: Option<String>,
    pub organizer_raw_id: String,
    pub organizer_tenant_id: Option<String>,
    pub co_organizers: Vec<String>,
    pub presenters: Vec<String>,
    pub policy: MeetingPolicy,
    pub created_at_ms: i64,
}

impl MeetingRecord {
    pub fn setup(&self) -> MeetingSetup {
        MeetingSetup {
            subject: self.subject.clone(),
            organizer_raw_id: self.organizer_raw_id.clone(),
            organizer_tenant_id: self.organizer_tenant_id.clone(),
            co_organizers: self.co_organizers.clone(),
            presenters: self.presenters.clone(),
            policy: self.policy,
            thread_id: Some(self.chat_thread_id()),
        }
    }
    /// The meeting's chat thread id (`19:meeting_…@thread.v2`).
    pub fn chat_thread_id(&self) -> String {
        crate::domain::chat::ids::meeting_thread_id(&self.id)
    }
    /// Organizer or a listed co-organizer?
    pub fn is_organizer_like(&self, raw_id: &str) -> bool {
        self.organizer_raw_id == raw_id || self.co_organizers.iter().any(|c| c == raw_id)
    }
    /// Constant-time passcode comparison.
    pub fn passcode_matches(&self, passcode: &str) -> bool {
        subtle::ConstantTimeEq::ct_eq(self.passcode.as_bytes(), passcode.trim().as_bytes()).into()
    }
}

/// A fresh 12-digit meeting code (first digit non-zero).
pub fn generate_meeting_code() -> String {
    let mut rng = rand::thread_rng();
    let first = rng.gen_range(1..=9u8);
    let rest: String = (0..11).map(|_| char::from(b'0' + rng.gen_range(0..=9u8))).collect();
    format!("{first}{rest}")
}

/// A fresh 6-character passcode without look-alike characters.
pub fn generate_passcode() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789";
    let mut rng = rand::thread_rng();
    (0..6).map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())])).collect()
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

fn row_to_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<MeetingRecord> {
    let json_col = |i: usize| -> rusqlite::Result<String> { r.get(i) };
    let bad = |i: usize, e: serde_json::Error| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    };
    Ok(MeetingRecord {
        id: r.get(0)?,
        meeting_code: r.get(1)?,
        passcode: r.get(2)?,
        subject: r.get(3)?,
        organizer_raw_id: r.get(4)?,
        organizer_tenant_id: r.get(5)?,
        co_organizers: serde_json::from_str(&json_col(6)?).map_err(|e| bad(6, e))?,
        presenters: serde_json::from_str(&json_col(7)?).map_err(|e| bad(7, e))?,
        policy: serde_json::from_str(&json_col(8)?).map_err(|e| bad(8, e))?,
        created_at_ms: r.get(9)?,
    })
}

const COLUMNS: &str = "id, meeting_code, passcode, subject, organizer_raw_id, organizer_tenant_id, \
                       co_organizers, presenters, policy, created_at_ms";

/// What [`MeetingDirectory::create`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    Inserted,
    /// The organizer already has `max_per_organizer` meetings: nothing written.
    OrganizerFull,
}

/// What one insert attempt did (nothing is written unless `Inserted`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    Inserted,
    /// The organizer already holds `max_per_organizer` meetings.
    OrganizerFull,
    /// Another meeting has this meeting code (or this id): draw another code.
    Collision,
}

/// The meetings store port: SQLite's [`Store`] here, PostgreSQL in `palaver-cluster`
/// (`[cluster] postgres_url`). Each method is one transaction.
#[async_trait::async_trait]
pub trait MeetingStore: Send + Sync + std::fmt::Debug + 'static {
    /// Insert `record` unless its organizer already holds `max_per_organizer` meetings or its
    /// code is taken (the count and the insert are atomic).
    async fn insert_meeting(
        &self,
        record: &MeetingRecord,
        max_per_organizer: usize,
    ) -> Result<InsertOutcome, StoreError>;
    async fn meeting(&self, id: &str) -> Result<Option<MeetingRecord>, StoreError>;
    /// The meeting with this (normalized) 12-digit code.
    async fn meeting_by_code(&self, code: &str) -> Result<Option<MeetingRecord>, StoreError>;
    /// Replace the policy; false if no such meeting.
    async fn set_meeting_policy(&self, id: &str, policy: &MeetingPolicy) -> Result<bool, StoreError>;
    /// Delete; false if no such meeting.
    async fn delete_meeting(&self, id: &str) -> Result<bool, StoreError>;
    /// Meetings organized by `raw_id`, newest first, at most `limit`.
    async fn meetings_of(&self, raw_id: &str, limit: usize) -> Result<Vec<MeetingRecord>, StoreError>;
}

#[async_trait::async_trait]
impl MeetingStore for Store {
    async fn insert_meeting(
        &self,
        record: &MeetingRecord,
        max_per_organizer: usize,
    ) -> Result<InsertOutcome, StoreError> {
        let r = record.clone();
        self.call(move |c| {
            let tx = c.transaction()?;
            let held: i64 = tx.query_row(
                "SELECT COUNT(*) FROM meetings WHERE organizer_raw_id = ?1",
                [&r.organizer_raw_id],
                |row| row.get(0),
            )?;
            if held >= max_per_organizer as i64 {
                return Ok(InsertOutcome::OrganizerFull);
            }
            let n = tx.execute(
                &format!("INSERT OR IGNORE INTO meetings ({COLUMNS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)"),
                params![
                    r.id,
                    r.meeting_code,
                    r.passcode,
                    r.subject,
                    r.organizer_raw_id,
                    r.organizer_tenant_id,
                    to_json(&r.co_organizers),
                    to_json(&r.presenters),
                    to_json(&r.policy),
                    r.created_at_ms
                ],
            )?;
            tx.commit()?;
            Ok(if n == 1 { InsertOutcome::Inserted } else { InsertOutcome::Collision })
        })
        .await
    }

    async fn meeting(&self, id: &str) -> Result<Option<MeetingRecord>, StoreError> {
        let id = id.to_string();
        self.call(move |c| {
            c.query_row(&format!("SELECT {COLUMNS} FROM meetings WHERE id = ?1"), [id], row_to_record).optional()
        })
        .await
    }

    async fn meeting_by_code(&self, code: &str) -> Result<Option<MeetingRecord>, StoreError> {
        let code = code.to_string();
        self.call(move |c| {
            c.query_row(&format!("SELECT {COLUMNS} FROM meetings WHERE meeting_code = ?1"), [code], row_to_record)
                .optional()
        })
        .await
    }

    async fn set_meeting_policy(&self, id: &str, policy: &MeetingPolicy) -> Result<bool, StoreError> {
        let (id, policy) = (id.to_string(), to_json(policy));
        self.call(move |c| c.execute("UPDATE meetings SET policy = ?1 WHERE id = ?2", params![policy, id]))
            .await
            .map(|n| n == 1)
    }

    async fn delete_meeting(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.call(move |c| c.execute("DELETE FROM meetings WHERE id = ?1", [id])).await.map(|n| n == 1)
    }

    async fn meetings_of(&self, raw_id: &str, limit: usize) -> Result<Vec<MeetingRecord>, StoreError> {
        let raw_id = raw_id.to_string();
        self.call(move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {COLUMNS} FROM meetings WHERE organizer_raw_id = ?1 ORDER BY created_at_ms DESC, id LIMIT ?2"
            ))?;
            stmt.query_map(params![raw_id, limit as i64], row_to_record)?.collect()
        })
        .await
    }
}

/// How many meetings [`MeetingDirectory::list_by_organizer`] returns at most.
pub const LIST_LIMIT: usize = 200;

/// The meeting definitions, on SQLite or (cluster mode) PostgreSQL. Cheap to clone.
#[derive(Debug, Clone)]
pub struct MeetingDirectory {
    store: Arc<dyn MeetingStore>,
}

impl MeetingDirectory {
    /// On the SQLite `store`, creating its table if needed.
    pub fn open(store: Store) -> Result<Self, StoreError> {
        store.migrate("meetings", MIGRATIONS)?;
        Ok(Self { store: Arc::new(store) })
    }

    /// On another backend's store (PostgreSQL in cluster mode), already migrated.
    pub fn with_store(store: Arc<dyn MeetingStore>) -> Self {
        Self { store }
    }

    /// Insert a new meeting unless its organizer already has `max_per_organizer` (one
    /// transaction); a meeting-code collision draws a new code (the record is updated).
    pub async fn create(&self, record: &mut MeetingRecord, max_per_organizer: usize) -> Result<Created, StoreError> {
        for _ in 0..8 {
            match self.store.insert_meeting(record, max_per_organizer).await? {
                InsertOutcome::OrganizerFull => return Ok(Created::OrganizerFull),
                InsertOutcome::Inserted => return Ok(Created::Inserted),
                InsertOutcome::Collision => record.meeting_code = generate_meeting_code(),
            }
        }
        Err(StoreError::Backend("no free meeting code after 8 draws".into()))
    }

    pub async fn get(&self, id: &str) -> Result<Option<MeetingRecord>, StoreError> {
        self.store.meeting(id).await
    }

    /// The meeting with this 12-digit code (spaces ignored).
    pub async fn by_code(&self, code: &str) -> Result<Option<MeetingRecord>, StoreError> {
        self.store.meeting_by_code(&normalize_code(code)).await
    }

    pub async fn set_policy(&self, id: &str, policy: &MeetingPolicy) -> Result<bool, StoreError> {
        self.store.set_meeting_policy(id, policy).await
    }

    pub async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        self.store.delete_meeting(id).await
    }

    /// Meetings organized by `raw_id`, newest first (at most [`LIST_LIMIT`]).
    pub async fn list_by_organizer(&self, raw_id: &str) -> Result<Vec<MeetingRecord>, StoreError> {
        self.store.meetings_of(raw_id, LIST_LIMIT).await
    }
}

/// A meeting code as stored: the digits the user typed, without spaces.
pub fn normalize_code(code: &str) -> String {
    code.chars().filter(|c| !c.is_whitespace()).collect()
}

#[cfg(any(test, feature = "test-support"))]
pub mod conformance;

#[cfg(test)]
mod tests {
    use super::*;

    crate::meeting_store_conformance_tests!({
        let store = Store::open_in_memory().unwrap();
        MeetingDirectory::open(store.clone()).unwrap();
        store
    });

    #[test]
    fn generated_codes_have_the_documented_shape() {
        for _ in 0..100 {
            let c = generate_meeting_code();
            assert_eq!(c.len(), 12);
            assert!(c.bytes().all(|b| b.is_ascii_digit()) && !c.starts_with('0'));
            assert_eq!(generate_passcode().len(), 6);
        }
    }
}
