//! Chat tables in the shared SQLite store: threads, participants (removed ones keep a row
//! saying where their history ends), messages (one row per message; edits and deletes
//! update it in place, so it keeps its sequence id and place), read receipts, and first
//! answers to `repeatability-request-id` creates. Functions take a connection or an open
//! transaction; the chat service runs each request in one transaction.

use crate::domain::chat::{ChatMessage, ChatParticipant, ChatThread, Membership, MessageKind, ReadReceipt};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::BTreeMap;

/// Append-only migration steps of the `chat` component.
pub const MIGRATIONS: &[&str] = &["CREATE TABLE chat_threads (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        topic TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        created_by TEXT NOT NULL,
        last_message_ms INTEGER,
        last_message_id INTEGER,
        last_seq INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE chat_participants (
        thread_seq INTEGER NOT NULL REFERENCES chat_threads(seq) ON DELETE CASCADE,
        raw_id TEXT NOT NULL,
        display_name TEXT,
        share_history_ms INTEGER NOT NULL,
        removed_at_seq INTEGER,
        PRIMARY KEY (thread_seq, raw_id)
    );
    CREATE INDEX chat_participants_by_user ON chat_participants (raw_id);
    CREATE TABLE chat_messages (
        thread_seq INTEGER NOT NULL REFERENCES chat_threads(seq) ON DELETE CASCADE,
        sequence_id INTEGER NOT NULL,
        id INTEGER NOT NULL,
        kind TEXT NOT NULL,
        version INTEGER NOT NULL,
        content TEXT,
        sender TEXT,
        sender_display_name TEXT,
        created_ms INTEGER NOT NULL,
        edited_ms INTEGER,
        deleted_ms INTEGER,
        metadata TEXT NOT NULL,
        topic TEXT,
        participants TEXT,
        initiator TEXT,
        PRIMARY KEY (thread_seq, sequence_id),
        UNIQUE (thread_seq, id)
    );
    CREATE TABLE chat_read_receipts (
        thread_seq INTEGER NOT NULL REFERENCES chat_threads(seq) ON DELETE CASCADE,
        raw_id TEXT NOT NULL,
        message_id INTEGER NOT NULL,
        message_seq INTEGER NOT NULL,
        read_ms INTEGER NOT NULL,
        PRIMARY KEY (thread_seq, raw_id)
    );
    CREATE TABLE chat_repeatability (
        requester TEXT NOT NULL,
        request_id TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        body TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        PRIMARY KEY (requester, request_id)
    );"];

/// Apply the chat migrations (idempotent).
pub fn migrate(store: &super::Store) -> Result<(), super::StoreError> {
    store.migrate("chat", MIGRATIONS)
}

/// A thread row and its internal key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadRow {
    pub seq: i64,
    pub thread: ChatThread,
    pub last_message_id: Option<i64>,
    pub last_seq: i64,
}

const THREAD_COLUMNS: &str = "seq, id, topic, created_ms, created_by, last_message_ms, last_message_id, last_seq";

/// A thread row read from the [`THREAD_COLUMNS`] starting at column `at`.
fn thread_at(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<ThreadRow> {
    Ok(ThreadRow {
        seq: r.get(at)?,
        thread: ChatThread {
            id: r.get(at + 1)?,
            topic: r.get(at + 2)?,
            created_ms: r.get(at + 3)?,
            created_by: r.get(at + 4)?,
            last_message_ms: r.get(at + 5)?,
        },
        last_message_id: r.get(at + 6)?,
        last_seq: r.get(at + 7)?,
    })
}

fn row_to_thread(r: &rusqlite::Row<'_>) -> rusqlite::Result<ThreadRow> {
    thread_at(r, 0)
}

pub fn find_thread(conn: &Connection, id: &str) -> rusqlite::Result<Option<ThreadRow>> {
    conn.query_row(&format!("SELECT {THREAD_COLUMNS} FROM chat_threads WHERE id = ?1"), [id], row_to_thread).optional()
}

pub fn insert_thread(conn: &Connection, thread: &ChatThread) -> rusqlite::Result<i64> {
    conn.execute(
        "INSERT INTO chat_threads (id, topic, created_ms, created_by) VALUES (?1, ?2, ?3, ?4)",
        params![thread.id, thread.topic, thread.created_ms, thread.created_by],
    )?;
    Ok(conn.last_insert_rowid())
}

pub fn set_topic(conn: &Connection, thread_seq: i64, topic: &str) -> rusqlite::Result<()> {
    conn.execute("UPDATE chat_threads SET topic = ?2 WHERE seq = ?1", params![thread_seq, topic]).map(drop)
}

pub fn delete_thread(conn: &Connection, thread_seq: i64) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM chat_threads WHERE seq = ?1", [thread_seq]).map(drop)
}

/// Threads `raw_id` is an active participant of, most recently active first (last
/// message, else creation), after the cursor `(key, seq)`, active at or after `start_ms`.
pub fn list_threads_of(
    conn: &Connection,
    raw_id: &str,
    after: Option<(i64, i64)>,
    start_ms: Option<i64>,
    limit: usize,
) -> rusqlite::Result<Vec<(i64, ThreadRow)>> {
    let (key, seq) = after.unwrap_or((i64::MAX, i64::MAX));
    let mut stmt = conn.prepare(&format!(
        "SELECT COALESCE(t.last_message_ms, t.created_ms) AS k, {cols} FROM chat_threads t
         JOIN chat_participants p ON p.thread_seq = t.seq AND p.raw_id = ?1 AND p.removed_at_seq IS NULL
         WHERE (k < ?2 OR (k = ?2 AND t.seq < ?3)) AND k >= ?4
         ORDER BY k DESC, t.seq DESC LIMIT ?5",
        cols = THREAD_COLUMNS.split(", ").map(|c| format!("t.{c}")).collect::<Vec<_>>().join(", ")
    ))?;
    stmt.query_map(params![raw_id, key, seq, start_ms.unwrap_or(i64::MIN), limit as i64], |r| {
        Ok((r.get(0)?, thread_at(r, 1)?))
    })?
    .collect()
}

/// `raw_id`'s membership of thread `thread_seq`, if they ever were a participant.
pub fn membership(
    conn: &Connection,
    thread_seq: i64,
    raw_id: &str,
) -> rusqlite::Result<Option<(Membership, Option<String>)>> {
    conn.query_row(
        "SELECT share_history_ms, removed_at_seq, display_name FROM chat_participants WHERE thread_seq = ?1 AND raw_id = ?2",
        params![thread_seq, raw_id],
        |r| Ok((Membership { share_history_ms: r.get(0)?, removed_at_seq: r.get(1)? }, r.get(2)?)),
    )
    .optional()
}

/// Add (or re-add, clearing a removal) participants.
pub fn upsert_participants(
    conn: &Connection,
    thread_seq: i64,
    participants: &[ChatParticipant],
) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare(
        "INSERT INTO chat_participants (thread_seq, raw_id, display_name, share_history_ms, removed_at_seq)
         VALUES (?1, ?2, ?3, ?4, NULL)
         ON CONFLICT (thread_seq, raw_id) DO UPDATE SET display_name = excluded.display_name,
           share_history_ms = excluded.share_history_ms, removed_at_seq = NULL",
    )?;
    for p in participants {
        stmt.execute(params![thread_seq, p.raw_id, p.display_name, p.share_history_ms])?;
    }
    Ok(())
}

/// Mark a participant removed at message `at_seq` (their history ends there).
pub fn mark_removed(conn: &Connection, thread_seq: i64, raw_id: &str, at_seq: i64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE chat_participants SET removed_at_seq = ?3 WHERE thread_seq = ?1 AND raw_id = ?2",
        params![thread_seq, raw_id, at_seq],
    )
    .map(drop)
}

/// Active participants, in the order they were first added, from `skip` on.
pub fn list_participants(
    conn: &Connection,
    thread_seq: i64,
    skip: usize,
    limit: usize,
) -> rusqlite::Result<Vec<ChatParticipant>> {
    let mut stmt = conn.prepare(
        "SELECT raw_id, display_name, share_history_ms FROM chat_participants
         WHERE thread_seq = ?1 AND removed_at_seq IS NULL ORDER BY rowid LIMIT ?2 OFFSET ?3",
    )?;
    stmt.query_map(params![thread_seq, limit as i64, skip as i64], |r| {
        Ok(ChatParticipant { raw_id: r.get(0)?, display_name: r.get(1)?, share_history_ms: r.get(2)? })
    })?
    .collect()
}

/// Raw ids of the active participants (event recipients, the 250 cap).
pub fn active_participant_ids(conn: &Connection, thread_seq: i64) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT raw_id FROM chat_participants WHERE thread_seq = ?1 AND removed_at_seq IS NULL ORDER BY rowid",
    )?;
    stmt.query_map([thread_seq], |r| r.get(0))?.collect()
}

const MESSAGE_COLUMNS: &str = "sequence_id, id, kind, version, content, sender, sender_display_name, created_ms, \
     edited_ms, deleted_ms, metadata, topic, participants, initiator";

pub fn participants_to_json(ps: &[ChatParticipant]) -> String {
    let list: Vec<_> = ps
        .iter()
        .map(|p| serde_json::json!({"rawId": p.raw_id, "displayName": p.display_name, "shareHistoryMs": p.share_history_ms}))
        .collect();
    serde_json::Value::Array(list).to_string()
}

pub fn participants_from_json(s: &str) -> Vec<ChatParticipant> {
    let v: Vec<serde_json::Value> = serde_json::from_str(s).unwrap_or_default();
    v.iter()
        .filter_map(|p| {
            Some(ChatParticipant {
                raw_id: p["rawId"].as_str()?.to_string(),
                display_name: p["displayName"].as_str().map(str::to_string),
                share_history_ms: p["shareHistoryMs"].as_i64().unwrap_or(0),
            })
        })
        .collect()
}

fn row_to_message(r: &rusqlite::Row<'_>) -> rusqlite::Result<ChatMessage> {
    let kind: String = r.get(2)?;
    let metadata: String = r.get(10)?;
    let participants: Option<String> = r.get(12)?;
    Ok(ChatMessage {
        sequence_id: r.get(0)?,
        id: r.get::<_, i64>(1)?.to_string(),
        kind: MessageKind::parse(&kind).unwrap_or(MessageKind::Text),
        version: r.get::<_, i64>(3)?.to_string(),
        content: r.get(4)?,
        sender: r.get(5)?,
        sender_display_name: r.get(6)?,
        created_ms: r.get(7)?,
        edited_ms: r.get(8)?,
        deleted_ms: r.get(9)?,
        metadata: serde_json::from_str::<BTreeMap<String, String>>(&metadata).unwrap_or_default(),
        topic: r.get(11)?,
        participants: participants.as_deref().map(participants_from_json).unwrap_or_default(),
        initiator: r.get(13)?,
    })
}

/// Append `message` to the thread: its `sequence_id` and `id` must be the thread's next
/// (the service allocates them from [`ThreadRow`]); the thread's counters move on.
pub fn insert_message(conn: &Connection, thread_seq: i64, m: &ChatMessage) -> rusqlite::Result<()> {
    let id: i64 = m.id.parse().unwrap_or(0);
    let version: i64 = m.version.parse().unwrap_or(id);
    let participants = (!m.participants.is_empty()).then(|| participants_to_json(&m.participants));
    conn.execute(
        &format!("INSERT INTO chat_messages (thread_seq, {MESSAGE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"),
        params![
            thread_seq,
            m.sequence_id,
            id,
            m.kind.as_str(),
            version,
            m.content,
            m.sender,
            m.sender_display_name,
            m.created_ms,
            m.edited_ms,
            m.deleted_ms,
            serde_json::to_string(&m.metadata).unwrap_or_else(|_| "{}".into()),
            m.topic,
            participants,
            m.initiator,
        ],
    )?;
    let last_message_ms = (!m.kind.is_system()).then_some(m.created_ms);
    conn.execute(
        "UPDATE chat_threads SET last_seq = ?2, last_message_id = ?3,
           last_message_ms = COALESCE(?4, last_message_ms) WHERE seq = ?1",
        params![thread_seq, m.sequence_id, id, last_message_ms],
    )?;
    Ok(())
}

pub fn find_message(conn: &Connection, thread_seq: i64, id: i64) -> rusqlite::Result<Option<ChatMessage>> {
    conn.query_row(
        &format!("SELECT {MESSAGE_COLUMNS} FROM chat_messages WHERE thread_seq = ?1 AND id = ?2"),
        params![thread_seq, id],
        row_to_message,
    )
    .optional()
}

/// Write an edited or deleted message back (same row, same sequence id).
pub fn update_message(conn: &Connection, thread_seq: i64, m: &ChatMessage) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE chat_messages SET content = ?3, metadata = ?4, version = ?5, edited_ms = ?6, deleted_ms = ?7
         WHERE thread_seq = ?1 AND id = ?2",
        params![
            thread_seq,
            m.id.parse::<i64>().unwrap_or(0),
            m.content,
            serde_json::to_string(&m.metadata).unwrap_or_else(|_| "{}".into()),
            m.version.parse::<i64>().unwrap_or(0),
            m.edited_ms,
            m.deleted_ms,
        ],
    )
    .map(drop)
}

/// Messages newest first with sequence id below `before_seq` and at most `max_seq`,
/// created at or after `from_ms` (the reader's history window), touched (created, edited
/// or deleted) at or after `start_ms`.
pub fn list_messages(
    conn: &Connection,
    thread_seq: i64,
    before_seq: i64,
    window: (i64, i64),
    start_ms: Option<i64>,
    limit: usize,
) -> rusqlite::Result<Vec<ChatMessage>> {
    let (from_ms, max_seq) = window;
    let mut stmt = conn.prepare(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM chat_messages
         WHERE thread_seq = ?1 AND sequence_id < ?2 AND sequence_id <= ?3 AND created_ms >= ?4
           AND MAX(created_ms, COALESCE(edited_ms, 0), COALESCE(deleted_ms, 0)) >= ?5
         ORDER BY sequence_id DESC LIMIT ?6"
    ))?;
    stmt.query_map(
        params![thread_seq, before_seq, max_seq, from_ms, start_ms.unwrap_or(i64::MIN), limit as i64],
        row_to_message,
    )?
    .collect()
}

/// Record that `raw_id` read up to message (`message_id`, `message_seq`); an older
/// message than the one already recorded leaves the receipt as it is.
pub fn upsert_read_receipt(
    conn: &Connection,
    thread_seq: i64,
    raw_id: &str,
    message_id: i64,
    message_seq: i64,
    now_ms: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO chat_read_receipts (thread_seq, raw_id, message_id, message_seq, read_ms) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (thread_seq, raw_id) DO UPDATE SET message_id = excluded.message_id,
           message_seq = excluded.message_seq, read_ms = excluded.read_ms
         WHERE excluded.message_seq >= chat_read_receipts.message_seq",
        params![thread_seq, raw_id, message_id, message_seq, now_ms],
    )
    .map(drop)
}

/// Read receipts (one per participant: the latest message read), newest first, visible
/// to a reader whose window ends at `max_seq`, from `skip` on.
pub fn list_read_receipts(
    conn: &Connection,
    thread_seq: i64,
    max_seq: i64,
    skip: usize,
    limit: usize,
) -> rusqlite::Result<Vec<ReadReceipt>> {
    let mut stmt = conn.prepare(
        "SELECT raw_id, message_id, read_ms FROM chat_read_receipts WHERE thread_seq = ?1 AND message_seq <= ?2
         ORDER BY read_ms DESC, raw_id LIMIT ?3 OFFSET ?4",
    )?;
    stmt.query_map(params![thread_seq, max_seq, limit as i64, skip as i64], |r| {
        Ok(ReadReceipt { sender: r.get(0)?, message_id: r.get::<_, i64>(1)?.to_string(), read_ms: r.get(2)? })
    })?
    .collect()
}

/// The stored first answer to a create with this requester and request id: `(fingerprint, body)`.
pub fn find_repeat(conn: &Connection, requester: &str, request_id: &str) -> rusqlite::Result<Option<(String, String)>> {
    conn.query_row(
        "SELECT fingerprint, body FROM chat_repeatability WHERE requester = ?1 AND request_id = ?2",
        params![requester, request_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
}

pub fn save_repeat(
    conn: &Connection,
    requester: &str,
    request_id: &str,
    fingerprint: &str,
    body: &str,
    now_ms: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO chat_repeatability (requester, request_id, fingerprint, body, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![requester, request_id, fingerprint, body, now_ms],
    )
    .map(drop)
}

/// Forget first answers older than `cutoff_ms` (ACS keeps them for a limited time).
pub fn prune_repeats(conn: &Connection, cutoff_ms: i64) -> rusqlite::Result<usize> {
    conn.execute("DELETE FROM chat_repeatability WHERE created_ms < ?1", [cutoff_ms])
}

/// Drop a participant's row entirely (a meeting's external user who left: no access at all).
pub fn forget_participant(conn: &Connection, thread_seq: i64, raw_id: &str) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM chat_participants WHERE thread_seq = ?1 AND raw_id = ?2", params![thread_seq, raw_id])
        .map(drop)?;
    conn.execute("DELETE FROM chat_read_receipts WHERE thread_seq = ?1 AND raw_id = ?2", params![thread_seq, raw_id])
        .map(drop)
}
