//! The chat store port. Chat runs each request as one transaction that composes many small
//! steps (find the thread, check membership, append, count), so the port has two halves:
//! [`ChatTx`], the steps inside one open transaction, and [`ChatBackend`], which opens one,
//! runs a body in it and commits or rolls back. SQLite implements both here (queries in
//! [`super::chat`]); `palaver-cluster` implements them on PostgreSQL, selected by
//! `[cluster] postgres_url`. Both are synchronous: the chat service runs them on the blocking
//! pool.

use super::chat::{self, ThreadRow};
use super::{Store, StoreError};
use crate::domain::chat::{ChatMessage, ChatParticipant, ChatThread, Membership, ReadReceipt};
use rusqlite::Connection;

/// The steps of a chat transaction (see [`super::chat`] for what each does). A backend must
/// serialise transactions touching one thread from [`ChatTx::find_thread`] on, as SQLite's
/// single writer does: the service allocates message sequence ids from the row it read.
pub trait ChatTx {
    fn find_thread(&self, id: &str) -> Result<Option<ThreadRow>, StoreError>;
    fn insert_thread(&self, thread: &ChatThread) -> Result<i64, StoreError>;
    fn set_topic(&self, thread_seq: i64, topic: &str) -> Result<(), StoreError>;
    fn delete_thread(&self, thread_seq: i64) -> Result<(), StoreError>;
    fn list_threads_of(
        &self,
        raw_id: &str,
        after: Option<(i64, i64)>,
        start_ms: Option<i64>,
        limit: usize,
    ) -> Result<Vec<(i64, ThreadRow)>, StoreError>;
    fn membership(&self, thread_seq: i64, raw_id: &str) -> Result<Option<(Membership, Option<String>)>, StoreError>;
    fn upsert_participants(&self, thread_seq: i64, participants: &[ChatParticipant]) -> Result<(), StoreError>;
    fn mark_removed(&self, thread_seq: i64, raw_id: &str, at_seq: i64) -> Result<(), StoreError>;
    fn list_participants(&self, thread_seq: i64, skip: usize, limit: usize)
    -> Result<Vec<ChatParticipant>, StoreError>;
    fn active_participant_ids(&self, thread_seq: i64) -> Result<Vec<String>, StoreError>;
    fn insert_message(&self, thread_seq: i64, m: &ChatMessage) -> Result<(), StoreError>;
    fn find_message(&self, thread_seq: i64, id: i64) -> Result<Option<ChatMessage>, StoreError>;
    fn update_message(&self, thread_seq: i64, m: &ChatMessage) -> Result<(), StoreError>;
    fn list_messages(
        &self,
        thread_seq: i64,
        before_seq: i64,
        window: (i64, i64),
        start_ms: Option<i64>,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, StoreError>;
    fn upsert_read_receipt(
        &self,
        thread_seq: i64,
        raw_id: &str,
        message_id: i64,
        message_seq: i64,
        now_ms: i64,
    ) -> Result<(), StoreError>;
    fn list_read_receipts(
        &self,
        thread_seq: i64,
        max_seq: i64,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<ReadReceipt>, StoreError>;
    fn find_repeat(&self, requester: &str, request_id: &str) -> Result<Option<(String, String)>, StoreError>;
    fn save_repeat(
        &self,
        requester: &str,
        request_id: &str,
        fingerprint: &str,
        body: &str,
        now_ms: i64,
    ) -> Result<(), StoreError>;
    fn prune_repeats(&self, cutoff_ms: i64) -> Result<usize, StoreError>;
    fn forget_participant(&self, thread_seq: i64, raw_id: &str) -> Result<(), StoreError>;
}

/// How a transaction's body wants it to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxEnd {
    Commit,
    /// A refused request: nothing it wrote stays.
    Rollback,
}

/// Opens chat transactions.
pub trait ChatBackend: Send + Sync + std::fmt::Debug + 'static {
    /// Run `body` once in a new transaction and end it as `body` says; an error from `body`
    /// (or from the database) rolls back. Blocks the calling thread.
    fn transaction(&self, body: &mut dyn FnMut(&dyn ChatTx) -> Result<TxEnd, StoreError>) -> Result<(), StoreError>;
}

impl ChatBackend for Store {
    fn transaction(&self, body: &mut dyn FnMut(&dyn ChatTx) -> Result<TxEnd, StoreError>) -> Result<(), StoreError> {
        let mut failure = None;
        self.with_conn(|c| {
            let tx = c.transaction()?;
            match body(&*tx) {
                Ok(TxEnd::Commit) => tx.commit(),
                Ok(TxEnd::Rollback) => Ok(()),
                Err(e) => {
                    failure = Some(e);
                    Ok(())
                }
            }
        })?;
        failure.map_or(Ok(()), Err)
    }
}

impl ChatTx for Connection {
    fn find_thread(&self, id: &str) -> Result<Option<ThreadRow>, StoreError> {
        Ok(chat::find_thread(self, id)?)
    }
    fn insert_thread(&self, thread: &ChatThread) -> Result<i64, StoreError> {
        Ok(chat::insert_thread(self, thread)?)
    }
    fn set_topic(&self, thread_seq: i64, topic: &str) -> Result<(), StoreError> {
        Ok(chat::set_topic(self, thread_seq, topic)?)
    }
    fn delete_thread(&self, thread_seq: i64) -> Result<(), StoreError> {
        Ok(chat::delete_thread(self, thread_seq)?)
    }
    fn list_threads_of(
        &self,
        raw_id: &str,
        after: Option<(i64, i64)>,
        start_ms: Option<i64>,
        limit: usize,
    ) -> Result<Vec<(i64, ThreadRow)>, StoreError> {
        Ok(chat::list_threads_of(self, raw_id, after, start_ms, limit)?)
    }
    fn membership(&self, thread_seq: i64, raw_id: &str) -> Result<Option<(Membership, Option<String>)>, StoreError> {
        Ok(chat::membership(self, thread_seq, raw_id)?)
    }
    fn upsert_participants(&self, thread_seq: i64, participants: &[ChatParticipant]) -> Result<(), StoreError> {
        Ok(chat::upsert_participants(self, thread_seq, participants)?)
    }
    fn mark_removed(&self, thread_seq: i64, raw_id: &str, at_seq: i64) -> Result<(), StoreError> {
        Ok(chat::mark_removed(self, thread_seq, raw_id, at_seq)?)
    }
    fn list_participants(
        &self,
        thread_seq: i64,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<ChatParticipant>, StoreError> {
        Ok(chat::list_participants(self, thread_seq, skip, limit)?)
    }
    fn active_participant_ids(&self, thread_seq: i64) -> Result<Vec<String>, StoreError> {
        Ok(chat::active_participant_ids(self, thread_seq)?)
    }
    fn insert_message(&self, thread_seq: i64, m: &ChatMessage) -> Result<(), StoreError> {
        Ok(chat::insert_message(self, thread_seq, m)?)
    }
    fn find_message(&self, thread_seq: i64, id: i64) -> Result<Option<ChatMessage>, StoreError> {
        Ok(chat::find_message(self, thread_seq, id)?)
    }
    fn update_message(&self, thread_seq: i64, m: &ChatMessage) -> Result<(), StoreError> {
        Ok(chat::update_message(self, thread_seq, m)?)
    }
    fn list_messages(
        &self,
        thread_seq: i64,
        before_seq: i64,
        window: (i64, i64),
        start_ms: Option<i64>,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        Ok(chat::list_messages(self, thread_seq, before_seq, window, start_ms, limit)?)
    }
    fn upsert_read_receipt(
        &self,
        thread_seq: i64,
        raw_id: &str,
        message_id: i64,
        message_seq: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        Ok(chat::upsert_read_receipt(self, thread_seq, raw_id, message_id, message_seq, now_ms)?)
    }
    fn list_read_receipts(
        &self,
        thread_seq: i64,
        max_seq: i64,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<ReadReceipt>, StoreError> {
        Ok(chat::list_read_receipts(self, thread_seq, max_seq, skip, limit)?)
    }
    fn find_repeat(&self, requester: &str, request_id: &str) -> Result<Option<(String, String)>, StoreError> {
        Ok(chat::find_repeat(self, requester, request_id)?)
    }
    fn save_repeat(
        &self,
        requester: &str,
        request_id: &str,
        fingerprint: &str,
        body: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        Ok(chat::save_repeat(self, requester, request_id, fingerprint, body, now_ms)?)
    }
    fn prune_repeats(&self, cutoff_ms: i64) -> Result<usize, StoreError> {
        Ok(chat::prune_repeats(self, cutoff_ms)?)
    }
    fn forget_participant(&self, thread_seq: i64, raw_id: &str) -> Result<(), StoreError> {
        Ok(chat::forget_participant(self, thread_seq, raw_id)?)
    }
}

#[cfg(any(test, feature = "test-support"))]
pub mod conformance;
#[cfg(test)]
mod tests;
