//! Durable meeting definitions (SQLite table `meetings`): organizer, tenant, listed
//! co-organizers and presenters, policy, numeric meeting code + passcode. Live state
//! (who is in, recording) lives in the gateway's conversation actors, not here.

use crate::domain::conversation::MeetingSetup;
use crate::store::{Store, StoreError};
use palaver_core::protocol::MeetingPolicy;
use rand::Rng;
use rusqlite::{OptionalExtension, params};

const MIGRATIONS: &[&str] = &["CREATE TABLE meetings (
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

/// The `meetings` table.
#[derive(Debug, Clone)]
pub struct MeetingDirectory {
    store: Store,
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

impl MeetingDirectory {
    pub fn open(store: Store) -> Result<Self, StoreError> {
        store.migrate("meetings", MIGRATIONS)?;
        Ok(Self { store })
    }

    /// Insert a new meeting unless its organizer already has `max_per_organizer` (one
    /// transaction); a meeting-code collision draws a new code (the record is updated).
    pub async fn create(&self, record: &mut MeetingRecord, max_per_organizer: usize) -> Result<Created, StoreError> {
        for _ in 0..8 {
            let r = record.clone();
            let inserted = self
                .store
                .call(move |c| {
                    let tx = c.transaction()?;
                    let held: i64 = tx.query_row(
                        "SELECT COUNT(*) FROM meetings WHERE organizer_raw_id = ?1",
                        [&r.organizer_raw_id],
                        |row| row.get(0),
                    )?;
                    if held >= max_per_organizer as i64 {
                        return Ok(None);
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
                    Ok(Some(n))
                })
                .await?;
            match inserted {
                None => return Ok(Created::OrganizerFull),
                Some(1) => return Ok(Created::Inserted),
                Some(_) => record.meeting_code = generate_meeting_code(),
            }
        }
        Err(StoreError::Sqlite(rusqlite::Error::QueryReturnedNoRows))
    }

    pub async fn get(&self, id: &str) -> Result<Option<MeetingRecord>, StoreError> {
        let id = id.to_string();
        self.store
            .call(move |c| {
                c.query_row(&format!("SELECT {COLUMNS} FROM meetings WHERE id = ?1"), [id], row_to_record).optional()
            })
            .await
    }

    /// The meeting with this 12-digit code (spaces ignored).
    pub async fn by_code(&self, code: &str) -> Result<Option<MeetingRecord>, StoreError> {
        let code = normalize_code(code);
        self.store
            .call(move |c| {
                c.query_row(&format!("SELECT {COLUMNS} FROM meetings WHERE meeting_code = ?1"), [code], row_to_record)
                    .optional()
            })
            .await
    }

    pub async fn set_policy(&self, id: &str, policy: &MeetingPolicy) -> Result<bool, StoreError> {
        let (id, policy) = (id.to_string(), to_json(policy));
        self.store
            .call(move |c| c.execute("UPDATE meetings SET policy = ?1 WHERE id = ?2", params![policy, id]))
            .await
            .map(|n| n == 1)
    }

    pub async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.store.call(move |c| c.execute("DELETE FROM meetings WHERE id = ?1", [id])).await.map(|n| n == 1)
    }

    /// Meetings organized by `raw_id`, newest first (at most 200).
    pub async fn list_by_organizer(&self, raw_id: &str) -> Result<Vec<MeetingRecord>, StoreError> {
        let raw_id = raw_id.to_string();
        self.store
            .call(move |c| {
                let mut stmt = c.prepare(&format!(
                    "SELECT {COLUMNS} FROM meetings WHERE organizer_raw_id = ?1 ORDER BY created_at_ms DESC LIMIT 200"
                ))?;
                stmt.query_map([raw_id], row_to_record)?.collect()
            })
            .await
    }
}

/// A meeting code as stored: the digits the user typed, without spaces.
pub fn normalize_code(code: &str) -> String {
    code.chars().filter(|c| !c.is_whitespace()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, code: &str) -> MeetingRecord {
        MeetingRecord {
            id: id.into(),
            meeting_code: code.into(),
            passcode: "Ab3xyz".into(),
            subject: Some("Plan".into()),
            organizer_raw_id: "8:orgid:o".into(),
            organizer_tenant_id: Some("t".into()),
            co_organizers: vec!["8:orgid:c".into()],
            presenters: vec![],
            policy: MeetingPolicy::default(),
            created_at_ms: 1,
        }
    }

    #[tokio::test]
    async fn create_lookup_update_delete() {
        let dir = MeetingDirectory::open(Store::open_in_memory().unwrap()).unwrap();
        let mut a = record("a", "123456789012");
        assert_eq!(dir.create(&mut a, 10).await.unwrap(), Created::Inserted);
        // Same code again: a new code is drawn, nothing overwritten.
        let mut b = record("b", "123456789012");
        assert_eq!(dir.create(&mut b, 10).await.unwrap(), Created::Inserted);
        assert_ne!(b.meeting_code, "123456789012");
        assert_eq!(dir.get("a").await.unwrap().unwrap(), a);
        assert_eq!(dir.by_code("1234 5678 9012").await.unwrap().unwrap().id, "a");
        assert!(a.passcode_matches(" Ab3xyz ") && !a.passcode_matches("ab3xyz"));
        let p = MeetingPolicy { external_dial_out: true, ..Default::default() };
        assert!(dir.set_policy("a", &p).await.unwrap());
        assert_eq!(dir.get("a").await.unwrap().unwrap().policy, p);
        assert_eq!(dir.list_by_organizer("8:orgid:o").await.unwrap().len(), 2);
        // The organizer holds two: a cap of two refuses a third and writes nothing.
        let mut c = record("c", "223456789012");
        assert_eq!(dir.create(&mut c, 2).await.unwrap(), Created::OrganizerFull);
        assert!(dir.get("c").await.unwrap().is_none());
        assert!(dir.delete("a").await.unwrap());
        assert!(dir.get("a").await.unwrap().is_none());
        assert!(!dir.delete("a").await.unwrap());
    }

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
