//! [`PgChatBackend`]: chat's threads, participants, messages, read receipts and repeatable
//! creates on PostgreSQL, behind signaling's [`ChatBackend`]/[`ChatTx`] port (the SQLite tables
//! of `store/chat.rs`, with `BIGINT`s, `GREATEST` for SQLite's scalar `MAX`, and an explicit
//! `pos` column for SQLite's `rowid` order of participants).
//!
//! Chat runs on tokio's blocking pool and composes many steps per transaction, so a
//! transaction here holds one pooled connection between `BEGIN` and `COMMIT`/`ROLLBACK` and
//! each step waits for its statement on the database's runtime ([`Database::block_on`]).
//! [`ChatTx::find_thread`] locks the thread's row (`FOR UPDATE`): every operation on a thread
//! reads it first, so operations on one thread are serialised across nodes as SQLite's
//! single writer serialises them, and the message sequence ids the service allocates from
//! that row stay unique. Two nodes answering one `repeatability-request-id` serialise on a
//! transaction-scoped advisory lock on it.

use crate::database::Database;
use crate::identity::{pg, store_error};
use palaver_signaling::domain::chat::{ChatMessage, ChatParticipant, ChatThread, Membership, MessageKind, ReadReceipt};
use palaver_signaling::store::StoreError;
use palaver_signaling::store::chat::{ThreadRow, participants_from_json, participants_to_json};
use palaver_signaling::store::chat_store::{ChatBackend, ChatTx, TxEnd};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

/// Append-only migration steps of the `chat` component.
pub const MIGRATIONS: &[&str] = &["
CREATE TABLE chat_threads (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    last_message_ms BIGINT,
    last_message_id BIGINT,
    last_seq BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE chat_participants (
    pos BIGSERIAL,
    thread_seq BIGINT NOT NULL REFERENCES chat_threads(seq) ON DELETE CASCADE,
    raw_id TEXT NOT NULL,
    display_name TEXT,
    share_history_ms BIGINT NOT NULL,
    removed_at_seq BIGINT,
    PRIMARY KEY (thread_seq, raw_id)
);
CREATE INDEX chat_participants_by_user ON chat_participants (raw_id);
CREATE TABLE chat_messages (
    thread_seq BIGINT NOT NULL REFERENCES chat_threads(seq) ON DELETE CASCADE,
    sequence_id BIGINT NOT NULL,
    id BIGINT NOT NULL,
    kind TEXT NOT NULL,
    version BIGINT NOT NULL,
    content TEXT,
    sender TEXT,
    sender_display_name TEXT,
    created_ms BIGINT NOT NULL,
    edited_ms BIGINT,
    deleted_ms BIGINT,
    metadata TEXT NOT NULL,
    topic TEXT,
    participants TEXT,
    initiator TEXT,
    PRIMARY KEY (thread_seq, sequence_id),
    UNIQUE (thread_seq, id)
);
CREATE TABLE chat_read_receipts (
    thread_seq BIGINT NOT NULL REFERENCES chat_threads(seq) ON DELETE CASCADE,
    raw_id TEXT NOT NULL,
    message_id BIGINT NOT NULL,
    message_seq BIGINT NOT NULL,
    read_ms BIGINT NOT NULL,
    PRIMARY KEY (thread_seq, raw_id)
);
CREATE TABLE chat_repeatability (
    requester TEXT NOT NULL,
    request_id TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    body TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (requester, request_id)
);
"];

/// Chat's store in a cluster.
#[derive(Clone, Debug)]
pub struct PgChatBackend {
    db: Database,
}

impl PgChatBackend {
    /// The backend on `db`, after applying its migrations.
    pub fn open(db: &Database) -> Result<Self, StoreError> {
        db.migrate("chat", MIGRATIONS).map_err(store_error)?;
        Ok(Self { db: db.clone() })
    }
}

type Param = Box<dyn ToSql + Sync + Send>;

fn p<T: ToSql + Sync + Send + 'static>(v: T) -> Param {
    Box::new(v)
}

/// One open transaction: a pooled connection between `BEGIN` and its end.
struct PgChatTx {
    db: Database,
    conn: Arc<tokio::sync::Mutex<deadpool_postgres::Object>>,
}

impl PgChatTx {
    fn rows(&self, sql: impl Into<String>, params: Vec<Param>) -> Result<Vec<Row>, StoreError> {
        let (conn, sql) = (self.conn.clone(), sql.into());
        self.db
            .block_on(move |_| async move {
                let client = conn.lock().await;
                let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|b| b.as_ref() as &(dyn ToSql + Sync)).collect();
                client.query(&sql, &refs).await.map_err(pg)
            })
            .map_err(store_error)?
    }

    fn row(&self, sql: impl Into<String>, params: Vec<Param>) -> Result<Option<Row>, StoreError> {
        Ok(self.rows(sql, params)?.into_iter().next())
    }

    fn exec(&self, sql: impl Into<String>, params: Vec<Param>) -> Result<u64, StoreError> {
        let (conn, sql) = (self.conn.clone(), sql.into());
        self.db
            .block_on(move |_| async move {
                let client = conn.lock().await;
                let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|b| b.as_ref() as &(dyn ToSql + Sync)).collect();
                client.execute(&sql, &refs).await.map_err(pg)
            })
            .map_err(store_error)?
    }
}

impl ChatBackend for PgChatBackend {
    fn transaction(&self, body: &mut dyn FnMut(&dyn ChatTx) -> Result<TxEnd, StoreError>) -> Result<(), StoreError> {
        let client = self
            .db
            .block_on(|pool| async move { pool.get().await.map_err(|e| store_error(e.into())) })
            .map_err(store_error)??;
        let tx = PgChatTx { db: self.db.clone(), conn: Arc::new(tokio::sync::Mutex::new(client)) };
        tx.exec("BEGIN", vec![])?;
        match body(&tx) {
            Ok(TxEnd::Commit) => tx.exec("COMMIT", vec![]).map(drop),
            Ok(TxEnd::Rollback) => tx.exec("ROLLBACK", vec![]).map(drop),
            Err(e) => {
                // The connection goes back to the pool either way; a failed ROLLBACK means it
                // broke, and the pool's verification drops it.
                let _ = tx.exec("ROLLBACK", vec![]);
                Err(e)
            }
        }
    }
}

const THREAD_COLUMNS: &str = "seq, id, topic, created_ms, created_by, last_message_ms, last_message_id, last_seq";

fn thread_at(r: &Row, at: usize) -> ThreadRow {
    ThreadRow {
        seq: r.get(at),
        thread: ChatThread {
            id: r.get(at + 1),
            topic: r.get(at + 2),
            created_ms: r.get(at + 3),
            created_by: r.get(at + 4),
            last_message_ms: r.get(at + 5),
        },
        last_message_id: r.get(at + 6),
        last_seq: r.get(at + 7),
    }
}

const MESSAGE_COLUMNS: &str = "sequence_id, id, kind, version, content, sender, sender_display_name, created_ms, \
     edited_ms, deleted_ms, metadata, topic, participants, initiator";

fn row_to_message(r: &Row) -> ChatMessage {
    let kind: String = r.get(2);
    let metadata: String = r.get(10);
    let participants: Option<String> = r.get(12);
    ChatMessage {
        sequence_id: r.get(0),
        id: r.get::<_, i64>(1).to_string(),
        kind: MessageKind::parse(&kind).unwrap_or(MessageKind::Text),
        version: r.get::<_, i64>(3).to_string(),
        content: r.get(4),
        sender: r.get(5),
        sender_display_name: r.get(6),
        created_ms: r.get(7),
        edited_ms: r.get(8),
        deleted_ms: r.get(9),
        metadata: serde_json::from_str::<BTreeMap<String, String>>(&metadata).unwrap_or_default(),
        topic: r.get(11),
        participants: participants.as_deref().map(participants_from_json).unwrap_or_default(),
        initiator: r.get(13),
    }
}

fn metadata_json(m: &ChatMessage) -> String {
    serde_json::to_string(&m.metadata).unwrap_or_else(|_| "{}".into())
}

impl ChatTx for PgChatTx {
    fn find_thread(&self, id: &str) -> Result<Option<ThreadRow>, StoreError> {
        let row = self.row(
            format!("SELECT {THREAD_COLUMNS} FROM chat_threads WHERE id = $1 FOR UPDATE"),
            vec![p(id.to_string())],
        )?;
        Ok(row.map(|r| thread_at(&r, 0)))
    }

    fn insert_thread(&self, t: &ChatThread) -> Result<i64, StoreError> {
        let row = self.row(
            "INSERT INTO chat_threads (id, topic, created_ms, created_by) VALUES ($1, $2, $3, $4) RETURNING seq",
            vec![p(t.id.clone()), p(t.topic.clone()), p(t.created_ms), p(t.created_by.clone())],
        )?;
        row.map(|r| r.get(0)).ok_or_else(|| StoreError::Backend("INSERT … RETURNING gave no row".into()))
    }

    fn set_topic(&self, thread_seq: i64, topic: &str) -> Result<(), StoreError> {
        self.exec("UPDATE chat_threads SET topic = $2 WHERE seq = $1", vec![p(thread_seq), p(topic.to_string())])
            .map(drop)
    }

    fn delete_thread(&self, thread_seq: i64) -> Result<(), StoreError> {
        self.exec("DELETE FROM chat_threads WHERE seq = $1", vec![p(thread_seq)]).map(drop)
    }

    fn list_threads_of(
        &self,
        raw_id: &str,
        after: Option<(i64, i64)>,
        start_ms: Option<i64>,
        limit: usize,
    ) -> Result<Vec<(i64, ThreadRow)>, StoreError> {
        let (key, seq) = after.unwrap_or((i64::MAX, i64::MAX));
        let rows = self.rows(
            format!(
                "SELECT k, {THREAD_COLUMNS} FROM (
                   SELECT COALESCE(t.last_message_ms, t.created_ms) AS k, t.* FROM chat_threads t
                   JOIN chat_participants p ON p.thread_seq = t.seq AND p.raw_id = $1 AND p.removed_at_seq IS NULL
                 ) x
                 WHERE (k < $2 OR (k = $2 AND seq < $3)) AND k >= $4
                 ORDER BY k DESC, seq DESC LIMIT $5"
            ),
            vec![p(raw_id.to_string()), p(key), p(seq), p(start_ms.unwrap_or(i64::MIN)), p(limit as i64)],
        )?;
        Ok(rows.iter().map(|r| (r.get(0), thread_at(r, 1))).collect())
    }

    fn membership(&self, thread_seq: i64, raw_id: &str) -> Result<Option<(Membership, Option<String>)>, StoreError> {
        let row = self.row(
            "SELECT share_history_ms, removed_at_seq, display_name FROM chat_participants
             WHERE thread_seq = $1 AND raw_id = $2",
            vec![p(thread_seq), p(raw_id.to_string())],
        )?;
        Ok(row.map(|r| (Membership { share_history_ms: r.get(0), removed_at_seq: r.get(1) }, r.get(2))))
    }

    fn upsert_participants(&self, thread_seq: i64, participants: &[ChatParticipant]) -> Result<(), StoreError> {
        for x in participants {
            self.exec(
                "INSERT INTO chat_participants (thread_seq, raw_id, display_name, share_history_ms, removed_at_seq)
                 VALUES ($1, $2, $3, $4, NULL)
                 ON CONFLICT (thread_seq, raw_id) DO UPDATE SET display_name = excluded.display_name,
                   share_history_ms = excluded.share_history_ms, removed_at_seq = NULL",
                vec![p(thread_seq), p(x.raw_id.clone()), p(x.display_name.clone()), p(x.share_history_ms)],
            )?;
        }
        Ok(())
    }

    fn mark_removed(&self, thread_seq: i64, raw_id: &str, at_seq: i64) -> Result<(), StoreError> {
        self.exec(
            "UPDATE chat_participants SET removed_at_seq = $3 WHERE thread_seq = $1 AND raw_id = $2",
            vec![p(thread_seq), p(raw_id.to_string()), p(at_seq)],
        )
        .map(drop)
    }

    fn list_participants(
        &self,
        thread_seq: i64,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<ChatParticipant>, StoreError> {
        let rows = self.rows(
            "SELECT raw_id, display_name, share_history_ms FROM chat_participants
             WHERE thread_seq = $1 AND removed_at_seq IS NULL ORDER BY pos LIMIT $2 OFFSET $3",
            vec![p(thread_seq), p(limit as i64), p(skip as i64)],
        )?;
        Ok(rows
            .iter()
            .map(|r| ChatParticipant { raw_id: r.get(0), display_name: r.get(1), share_history_ms: r.get(2) })
            .collect())
    }

    fn active_participant_ids(&self, thread_seq: i64) -> Result<Vec<String>, StoreError> {
        let rows = self.rows(
            "SELECT raw_id FROM chat_participants WHERE thread_seq = $1 AND removed_at_seq IS NULL ORDER BY pos",
            vec![p(thread_seq)],
        )?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    fn insert_message(&self, thread_seq: i64, m: &ChatMessage) -> Result<(), StoreError> {
        let id: i64 = m.id.parse().unwrap_or(0);
        let version: i64 = m.version.parse().unwrap_or(id);
        let participants = (!m.participants.is_empty()).then(|| participants_to_json(&m.participants));
        self.exec(
            format!(
                "INSERT INTO chat_messages (thread_seq, {MESSAGE_COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
            ),
            vec![
                p(thread_seq),
                p(m.sequence_id),
                p(id),
                p(m.kind.as_str().to_string()),
                p(version),
                p(m.content.clone()),
                p(m.sender.clone()),
                p(m.sender_display_name.clone()),
                p(m.created_ms),
                p(m.edited_ms),
                p(m.deleted_ms),
                p(metadata_json(m)),
                p(m.topic.clone()),
                p(participants),
                p(m.initiator.clone()),
            ],
        )?;
        let last_message_ms = (!m.kind.is_system()).then_some(m.created_ms);
        self.exec(
            "UPDATE chat_threads SET last_seq = $2, last_message_id = $3,
               last_message_ms = COALESCE($4, last_message_ms) WHERE seq = $1",
            vec![p(thread_seq), p(m.sequence_id), p(id), p(last_message_ms)],
        )
        .map(drop)
    }

    fn find_message(&self, thread_seq: i64, id: i64) -> Result<Option<ChatMessage>, StoreError> {
        let row = self.row(
            format!("SELECT {MESSAGE_COLUMNS} FROM chat_messages WHERE thread_seq = $1 AND id = $2"),
            vec![p(thread_seq), p(id)],
        )?;
        Ok(row.as_ref().map(row_to_message))
    }

    fn update_message(&self, thread_seq: i64, m: &ChatMessage) -> Result<(), StoreError> {
        self.exec(
            "UPDATE chat_messages SET content = $3, metadata = $4, version = $5, edited_ms = $6, deleted_ms = $7
             WHERE thread_seq = $1 AND id = $2",
            vec![
                p(thread_seq),
                p(m.id.parse::<i64>().unwrap_or(0)),
                p(m.content.clone()),
                p(metadata_json(m)),
                p(m.version.parse::<i64>().unwrap_or(0)),
                p(m.edited_ms),
                p(m.deleted_ms),
            ],
        )
        .map(drop)
    }

    fn list_messages(
        &self,
        thread_seq: i64,
        before_seq: i64,
        window: (i64, i64),
        start_ms: Option<i64>,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        let (from_ms, max_seq) = window;
        let rows = self.rows(
            format!(
                "SELECT {MESSAGE_COLUMNS} FROM chat_messages
                 WHERE thread_seq = $1 AND sequence_id < $2 AND sequence_id <= $3 AND created_ms >= $4
                   AND GREATEST(created_ms, COALESCE(edited_ms, 0), COALESCE(deleted_ms, 0)) >= $5
                 ORDER BY sequence_id DESC LIMIT $6"
            ),
            vec![
                p(thread_seq),
                p(before_seq),
                p(max_seq),
                p(from_ms),
                p(start_ms.unwrap_or(i64::MIN)),
                p(limit as i64),
            ],
        )?;
        Ok(rows.iter().map(row_to_message).collect())
    }

    fn upsert_read_receipt(
        &self,
        thread_seq: i64,
        raw_id: &str,
        message_id: i64,
        message_seq: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO chat_read_receipts (thread_seq, raw_id, message_id, message_seq, read_ms)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (thread_seq, raw_id) DO UPDATE SET message_id = excluded.message_id,
               message_seq = excluded.message_seq, read_ms = excluded.read_ms
             WHERE excluded.message_seq >= chat_read_receipts.message_seq",
            vec![p(thread_seq), p(raw_id.to_string()), p(message_id), p(message_seq), p(now_ms)],
        )
        .map(drop)
    }

    fn list_read_receipts(
        &self,
        thread_seq: i64,
        max_seq: i64,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<ReadReceipt>, StoreError> {
        let rows = self.rows(
            "SELECT raw_id, message_id, read_ms FROM chat_read_receipts WHERE thread_seq = $1 AND message_seq <= $2
             ORDER BY read_ms DESC, raw_id COLLATE \"C\" LIMIT $3 OFFSET $4",
            vec![p(thread_seq), p(max_seq), p(limit as i64), p(skip as i64)],
        )?;
        Ok(rows
            .iter()
            .map(|r| ReadReceipt { sender: r.get(0), message_id: r.get::<_, i64>(1).to_string(), read_ms: r.get(2) })
            .collect())
    }

    fn find_repeat(&self, requester: &str, request_id: &str) -> Result<Option<(String, String)>, StoreError> {
        // Held to the end of the transaction: a second node with the same request id waits,
        // then finds this one's answer.
        self.exec(
            "SELECT pg_advisory_xact_lock(hashtext('chat ' || $1 || ' ' || $2))",
            vec![p(requester.to_string()), p(request_id.to_string())],
        )?;
        let row = self.row(
            "SELECT fingerprint, body FROM chat_repeatability WHERE requester = $1 AND request_id = $2",
            vec![p(requester.to_string()), p(request_id.to_string())],
        )?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    fn save_repeat(
        &self,
        requester: &str,
        request_id: &str,
        fingerprint: &str,
        body: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO chat_repeatability (requester, request_id, fingerprint, body, created_ms)
             VALUES ($1, $2, $3, $4, $5)",
            vec![
                p(requester.to_string()),
                p(request_id.to_string()),
                p(fingerprint.to_string()),
                p(body.to_string()),
                p(now_ms),
            ],
        )
        .map(drop)
    }

    fn prune_repeats(&self, cutoff_ms: i64) -> Result<usize, StoreError> {
        Ok(self.exec("DELETE FROM chat_repeatability WHERE created_ms < $1", vec![p(cutoff_ms)])? as usize)
    }

    fn forget_participant(&self, thread_seq: i64, raw_id: &str) -> Result<(), StoreError> {
        self.exec(
            "DELETE FROM chat_participants WHERE thread_seq = $1 AND raw_id = $2",
            vec![p(thread_seq), p(raw_id.to_string())],
        )?;
        self.exec(
            "DELETE FROM chat_read_receipts WHERE thread_seq = $1 AND raw_id = $2",
            vec![p(thread_seq), p(raw_id.to_string())],
        )
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::PostgresServer;

    fn fresh_database() -> Database {
        Database::connect(&PostgresServer::shared().unwrap().fresh_database().unwrap()).unwrap()
    }

    palaver_signaling::chat_store_conformance_tests!(PgChatBackend::open(&fresh_database()).unwrap());
}
