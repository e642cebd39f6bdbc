//! `ChatService`: each chat operation as one store transaction — check the caller's scope
//! and membership, apply the rule, write (message, system message, counters) — returning
//! the answer and the real-time events it produced. A refused request rolls back, so it
//! writes nothing.

use crate::domain::Refusal;
use crate::domain::chat::access::require_member;
use crate::domain::chat::ids::{next_message_id, next_version};
use crate::domain::chat::model::{check_content, check_own_message, check_topic};
use crate::domain::chat::{
    ChatError, ChatEvent, ChatMessage, ChatOperation, ChatParticipant, ChatThread, MAX_PARTICIPANTS,
    MAX_RECEIPT_PARTICIPANTS, Membership, MessageKind, PageKeys, ReadReceipt,
};
use crate::store::chat::{self as db, ThreadRow};
use crate::store::chat_store::{ChatBackend, ChatTx, TxEnd};
use crate::store::{Store, StoreError};
use palaver_core::{ChatTelemetry, ScopeSet};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Who is asking (from the verified access token).
#[derive(Debug, Clone)]
pub struct Caller {
    pub raw_id: String,
    pub scopes: ScopeSet,
}

/// A failure inside a transaction: a rule refusal (rolled back, answered 4xx) or the database.
#[derive(Debug)]
pub enum TxError {
    Chat(ChatError),
    Db(StoreError),
}

impl From<ChatError> for TxError {
    fn from(e: ChatError) -> Self {
        TxError::Chat(e)
    }
}

impl From<StoreError> for TxError {
    fn from(e: StoreError) -> Self {
        TxError::Db(e)
    }
}

impl From<rusqlite::Error> for TxError {
    fn from(e: rusqlite::Error) -> Self {
        TxError::Db(StoreError::Sqlite(e))
    }
}

pub type TxResult<T> = Result<T, TxError>;

/// The service; cheap to clone.
#[derive(Clone)]
pub struct ChatService {
    backend: Arc<dyn ChatBackend>,
    keys: PageKeys,
    metrics: Option<Arc<dyn ChatTelemetry>>,
    limits: Arc<crate::domain::chat::rate_limit::ChatRateLimiter>,
    /// Chat usage billing (one record per message sent); none in tools and tests.
    usage: Option<Arc<dyn palaver_core::ChatUsageObserver>>,
}

impl std::fmt::Debug for ChatService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatService")
            .field("backend", &self.backend)
            .field("metrics", &self.metrics.is_some())
            .field("usage", &self.usage.is_some())
            .finish()
    }
}

/// A thread the caller may act on, and their standing in it.
pub struct Access {
    pub row: ThreadRow,
    pub member: Membership,
    pub display_name: Option<String>,
}

impl Access {
    pub fn as_participant(&self, raw_id: &str) -> ChatParticipant {
        ChatParticipant {
            raw_id: raw_id.to_string(),
            display_name: self.display_name.clone(),
            share_history_ms: self.member.share_history_ms,
        }
    }
}

impl ChatService {
    /// Apply the chat migrations and load (or create) the paging-token key; `metrics` are
    /// the chat counters (registered by the composition root).
    pub fn open(store: Store, metrics: Option<Arc<dyn ChatTelemetry>>) -> Result<Self, StoreError> {
        db::migrate(&store)?;
        let key = crate::store::settings::get_or_create(
            &store,
            PAGE_KEY_SETTING,
            crate::auth::TokenService::generate_seed_base64,
        )?;
        Ok(Self::with_backend(Arc::new(store), &key, metrics))
    }

    /// On another backend (PostgreSQL in cluster mode, already migrated), with the paging-token
    /// key every node shares (the [`PAGE_KEY_SETTING`] setting).
    pub fn with_backend(
        backend: Arc<dyn ChatBackend>,
        page_key: &str,
        metrics: Option<Arc<dyn ChatTelemetry>>,
    ) -> Self {
        Self { backend, keys: PageKeys::new(page_key.as_bytes()), metrics, limits: Default::default(), usage: None }
    }

    /// Report every message sent to `usage` (billing).
    pub fn with_usage(mut self, usage: Option<Arc<dyn palaver_core::ChatUsageObserver>>) -> Self {
        self.usage = usage;
        self
    }

    /// Bill one message `sender` sent (a no-op without a usage observer). `native`: the
    /// sender's token came through the native directory-client path (recorded at $0).
    pub fn message_sent(&self, thread_id: &str, message_id: &str, sender: &str, native: bool, at_ms: i64) {
        if let Some(usage) = &self.usage {
            usage.chat_message_sent(palaver_core::ChatMessageSent {
                thread_id: thread_id.to_string(),
                message_id: message_id.to_string(),
                sender_raw_id: sender.to_string(),
                participant_type: sender_type(sender, native, thread_id),
                at_ms,
            });
        }
    }

    /// The chat counters, if the binary plugged them in.
    pub fn metrics(&self) -> Option<&dyn ChatTelemetry> {
        self.metrics.as_deref()
    }

    pub fn keys(&self) -> &PageKeys {
        &self.keys
    }

    /// The per-identity rate limits (shared by every clone).
    pub fn limits(&self) -> &crate::domain::chat::rate_limit::ChatRateLimiter {
        &self.limits
    }

    /// Run `f` in one transaction on the blocking pool; commit only if it succeeds.
    pub async fn run<R, F>(&self, f: F) -> Result<R, Refusal>
    where
        R: Send + 'static,
        F: FnOnce(&dyn ChatTx) -> TxResult<R> + Send + 'static,
    {
        let backend = self.backend.clone();
        Ok(crate::store::run_blocking(move || in_transaction(backend.as_ref(), f)).await???)
    }
}

/// The setting holding the key of chat's paging tokens (shared by every node of a cluster).
pub const PAGE_KEY_SETTING: &str = "chat_page_key";

/// How billing classifies a chat sender, as calling usage classifies participants: an
/// external user is `ACS` (`ACS as Teams external user` in a meeting thread), a directory
/// user `ACS as Microsoft 365 user`, or `Teams` (unbilled) on the native directory path.
pub fn sender_type(raw_id: &str, native: bool, thread_id: &str) -> palaver_core::ParticipantType {
    use palaver_core::{CommunicationIdentifier, ParticipantType};
    match CommunicationIdentifier::parse(raw_id) {
        Ok(CommunicationIdentifier::DirectoryUser { .. }) if native => ParticipantType::Teams,
        Ok(CommunicationIdentifier::DirectoryUser { .. }) => ParticipantType::AcsAsM365User,
        _ if thread_id.starts_with(crate::domain::chat::ids::MEETING_THREAD_PREFIX) => {
            ParticipantType::AcsAsTeamsExternalUser
        }
        _ => ParticipantType::Acs,
    }
}

/// Run `f` in a transaction: commit on success, roll back on a refusal (returned as the
/// inner error) or a database error.
fn in_transaction<R>(
    backend: &dyn ChatBackend,
    f: impl FnOnce(&dyn ChatTx) -> TxResult<R>,
) -> Result<Result<R, ChatError>, StoreError> {
    let mut f = Some(f);
    let mut answer = None;
    backend.transaction(&mut |tx| {
        let Some(f) = f.take() else { return Err(StoreError::Worker("a chat transaction body ran twice".into())) };
        match f(tx) {
            Ok(r) => {
                answer = Some(Ok(r));
                Ok(TxEnd::Commit)
            }
            Err(TxError::Chat(e)) => {
                answer = Some(Err(e));
                Ok(TxEnd::Rollback)
            }
            Err(TxError::Db(e)) => Err(e),
        }
    })?;
    answer.ok_or_else(|| StoreError::Worker("a chat transaction ended without its body".into()))
}

/// The thread `thread_id` and `caller`'s standing, checked for `op` (scope, membership).
pub fn access(c: &dyn ChatTx, thread_id: &str, caller: &Caller, op: ChatOperation) -> TxResult<Access> {
    op.authorize(caller.scopes)?;
    let row = c.find_thread(thread_id)?.ok_or_else(|| ChatError::ThreadNotFound(thread_id.to_string()))?;
    let found = c.membership(row.seq, &caller.raw_id)?;
    let display_name = found.as_ref().and_then(|(_, n)| n.clone());
    let member = require_member(found.map(|(m, _)| m), op)?;
    Ok(Access { row, member, display_name })
}

/// Append a message to the thread: allocate its sequence id and message id (and version).
pub fn append(c: &dyn ChatTx, row: &mut ThreadRow, mut m: ChatMessage, now_ms: i64) -> TxResult<ChatMessage> {
    let id = next_message_id(now_ms, row.last_message_id);
    m.id = id.to_string();
    m.version = m.id.clone();
    m.sequence_id = row.last_seq + 1;
    m.created_ms = now_ms;
    c.insert_message(row.seq, &m)?;
    row.last_seq = m.sequence_id;
    row.last_message_id = Some(id);
    if !m.kind.is_system() {
        row.thread.last_message_ms = Some(now_ms);
    }
    Ok(m)
}

/// A system message (`topicUpdated`, `participantAdded`, `participantRemoved`).
pub fn system_message(
    kind: MessageKind,
    initiator: &str,
    topic: Option<&str>,
    participants: Vec<ChatParticipant>,
) -> ChatMessage {
    ChatMessage {
        id: String::new(),
        kind,
        sequence_id: 0,
        version: String::new(),
        content: None,
        sender: None,
        sender_display_name: None,
        created_ms: 0,
        edited_ms: None,
        deleted_ms: None,
        metadata: BTreeMap::new(),
        topic: topic.map(str::to_string),
        participants,
        initiator: Some(initiator.to_string()),
    }
}

/// A user message of `kind` (content already checked and sanitised).
pub fn user_message(
    sender: &str,
    name: Option<String>,
    kind: MessageKind,
    content: String,
    metadata: BTreeMap<String, String>,
) -> ChatMessage {
    ChatMessage {
        content: Some(content),
        sender: Some(sender.to_string()),
        sender_display_name: name,
        metadata,
        topic: None,
        initiator: None,
        ..system_message(kind, sender, None, vec![])
    }
}

/// Send a user message; returns it and its `chatMessageReceived` event.
pub fn send_message(
    c: &dyn ChatTx,
    thread_id: &str,
    caller: &Caller,
    m: ChatMessage,
    now_ms: i64,
) -> TxResult<(ChatMessage, ChatEvent)> {
    let mut a = access(c, thread_id, caller, ChatOperation::SendMessage)?;
    let m = append(c, &mut a.row, m, now_ms)?;
    let to = c.active_participant_ids(a.row.seq)?;
    let event = ChatEvent::message_received(thread_id, &m, &to);
    Ok((m, event))
}

/// Edit the caller's own message (content and/or metadata; metadata merges, a `""` value removes).
pub fn edit_message(
    c: &dyn ChatTx,
    thread_id: &str,
    caller: &Caller,
    message_id: &str,
    content: Option<String>,
    metadata: Option<BTreeMap<String, String>>,
    now_ms: i64,
) -> TxResult<ChatEvent> {
    let a = access(c, thread_id, caller, ChatOperation::EditMessage)?;
    let mut m = visible_message(c, &a, message_id)?;
    check_own_message(&m, &caller.raw_id)?;
    if let Some(meta) = metadata {
        for (k, v) in meta {
            if v.is_empty() {
                m.metadata.remove(&k);
            } else {
                m.metadata.insert(k, v);
            }
        }
    }
    let text = content.unwrap_or_else(|| m.content.clone().unwrap_or_default());
    m.content = Some(check_content(&text, m.kind, &m.metadata)?);
    m.version = next_version(now_ms, &m.version);
    m.edited_ms = Some(now_ms);
    c.update_message(a.row.seq, &m)?;
    let to = c.active_participant_ids(a.row.seq)?;
    Ok(ChatEvent::message_edited(thread_id, &m, &to))
}

/// Delete the caller's own message: it keeps its place as a tombstone.
pub fn delete_message(
    c: &dyn ChatTx,
    thread_id: &str,
    caller: &Caller,
    message_id: &str,
    now_ms: i64,
) -> TxResult<ChatEvent> {
    let a = access(c, thread_id, caller, ChatOperation::DeleteMessage)?;
    let mut m = visible_message(c, &a, message_id)?;
    check_own_message(&m, &caller.raw_id)?;
    m.version = next_version(now_ms, &m.version);
    m.deleted_ms = Some(now_ms);
    m.content = None;
    m.metadata.clear();
    c.update_message(a.row.seq, &m)?;
    let to = c.active_participant_ids(a.row.seq)?;
    Ok(ChatEvent::message_deleted(thread_id, &m, &to))
}

/// A message the member may see (`MessageNotFound` otherwise, also for non-numeric ids).
pub fn visible_message(c: &dyn ChatTx, a: &Access, message_id: &str) -> TxResult<ChatMessage> {
    let not_found = || ChatError::MessageNotFound(message_id.to_string());
    let id: i64 = message_id.parse().map_err(|_| not_found())?;
    let m = c.find_message(a.row.seq, id)?.ok_or_else(not_found)?;
    if a.member.sees(&m) { Ok(m) } else { Err(not_found().into()) }
}

/// Update the topic: writes a `topicUpdated` system message.
pub fn update_topic(c: &dyn ChatTx, thread_id: &str, caller: &Caller, topic: &str, now_ms: i64) -> TxResult<ChatEvent> {
    let mut a = access(c, thread_id, caller, ChatOperation::UpdateTopic)?;
    let topic = check_topic(topic)?;
    c.set_topic(a.row.seq, &topic)?;
    let m =
        append(c, &mut a.row, system_message(MessageKind::TopicUpdated, &caller.raw_id, Some(&topic), vec![]), now_ms)?;
    let to = c.active_participant_ids(a.row.seq)?;
    Ok(ChatEvent::properties_updated(thread_id, &topic, &a.as_participant(&caller.raw_id), m.sequence_id, now_ms, &to))
}

/// Delete the thread and everything in it.
pub fn delete_thread(c: &dyn ChatTx, thread_id: &str, caller: &Caller, now_ms: i64) -> TxResult<ChatEvent> {
    let a = access(c, thread_id, caller, ChatOperation::DeleteThread)?;
    let to = c.active_participant_ids(a.row.seq)?;
    c.delete_thread(a.row.seq)?;
    Ok(ChatEvent::thread_deleted(thread_id, &a.as_participant(&caller.raw_id), now_ms, &to))
}

/// Add checked participants (re-adding a removed one restores them): one `participantAdded`
/// system message naming those not already active. Over 250 active is refused.
pub fn add_participants(
    c: &dyn ChatTx,
    a: &mut Access,
    initiator: &ChatParticipant,
    participants: Vec<ChatParticipant>,
    now_ms: i64,
) -> TxResult<Option<ChatEvent>> {
    let active = c.active_participant_ids(a.row.seq)?;
    let new: Vec<ChatParticipant> = participants.iter().filter(|p| !active.contains(&p.raw_id)).cloned().collect();
    let count = active.len() + new.len();
    if count > MAX_PARTICIPANTS {
        return Err(ChatError::TooManyParticipants { count, limit: MAX_PARTICIPANTS }.into());
    }
    c.upsert_participants(a.row.seq, &participants)?;
    if new.is_empty() {
        return Ok(None);
    }
    let m = append(
        c,
        &mut a.row,
        system_message(MessageKind::ParticipantAdded, &initiator.raw_id, None, new.clone()),
        now_ms,
    )?;
    let to = c.active_participant_ids(a.row.seq)?;
    Ok(Some(ChatEvent::participants(&a.row.thread.id, true, &new, initiator, m.sequence_id, now_ms, &to)))
}

/// Remove a participant (no-op if not active): a `participantRemoved` system message, the
/// last one they see. They are told, then get nothing more.
pub fn remove_participant(
    c: &dyn ChatTx,
    thread_id: &str,
    caller: &Caller,
    target: &str,
    now_ms: i64,
) -> TxResult<Option<ChatEvent>> {
    let mut a = access(c, thread_id, caller, ChatOperation::RemoveParticipant)?;
    let Some((member, name)) = c.membership(a.row.seq, target)? else {
        return Ok(None);
    };
    if !member.is_active() {
        return Ok(None);
    }
    let to = c.active_participant_ids(a.row.seq)?;
    let removed =
        ChatParticipant { raw_id: target.to_string(), display_name: name, share_history_ms: member.share_history_ms };
    let m = append(
        c,
        &mut a.row,
        system_message(MessageKind::ParticipantRemoved, &caller.raw_id, None, vec![removed.clone()]),
        now_ms,
    )?;
    c.mark_removed(a.row.seq, target, m.sequence_id)?;
    let by = a.as_participant(&caller.raw_id);
    Ok(Some(ChatEvent::participants(thread_id, false, &[removed], &by, m.sequence_id, now_ms, &to)))
}

/// Record a read receipt for a visible message; the event goes out only in threads of at
/// most 20 participants (as ACS).
pub fn send_read_receipt(
    c: &dyn ChatTx,
    thread_id: &str,
    caller: &Caller,
    message_id: &str,
    now_ms: i64,
) -> TxResult<Option<ChatEvent>> {
    let a = access(c, thread_id, caller, ChatOperation::SendReadReceipt)?;
    let m = visible_message(c, &a, message_id)?;
    c.upsert_read_receipt(a.row.seq, &caller.raw_id, m.id.parse().unwrap_or(0), m.sequence_id, now_ms)?;
    let to = c.active_participant_ids(a.row.seq)?;
    Ok((to.len() <= MAX_RECEIPT_PARTICIPANTS)
        .then(|| ChatEvent::read_receipt(thread_id, &caller.raw_id, a.display_name.as_deref(), &m.id, now_ms, &to)))
}

/// A typing notification: nothing stored; delivered in threads of at most 20 participants.
pub fn typing(
    c: &dyn ChatTx,
    thread_id: &str,
    caller: &Caller,
    name: Option<&str>,
    now_ms: i64,
) -> TxResult<Option<ChatEvent>> {
    let a = access(c, thread_id, caller, ChatOperation::SendTyping)?;
    let to = c.active_participant_ids(a.row.seq)?;
    let name = name.or(a.display_name.as_deref());
    Ok((to.len() <= MAX_RECEIPT_PARTICIPANTS).then(|| ChatEvent::typing(thread_id, &caller.raw_id, name, now_ms, &to)))
}

/// Read receipts the member may see (none past their removal).
pub fn read_receipts(
    c: &dyn ChatTx,
    thread_id: &str,
    caller: &Caller,
    skip: usize,
    limit: usize,
) -> TxResult<Vec<ReadReceipt>> {
    let a = access(c, thread_id, caller, ChatOperation::ListReadReceipts)?;
    let (_, max_seq) = a.member.window();
    Ok(c.list_read_receipts(a.row.seq, max_seq, skip, limit)?)
}

/// Create a thread in `c`: the creator joins (whole history), then `participantAdded`
/// (seq 1) and `topicUpdated` (seq 2) as ACS writes them. Returns the thread row.
pub fn create_thread_in(
    c: &dyn ChatTx,
    id: String,
    topic: String,
    creator: ChatParticipant,
    mut participants: Vec<ChatParticipant>,
    now: i64,
) -> TxResult<ThreadRow> {
    participants.retain(|p| p.raw_id != creator.raw_id);
    participants.insert(0, creator.clone());
    let thread = ChatThread {
        id,
        topic: topic.clone(),
        created_ms: now,
        created_by: creator.raw_id.clone(),
        last_message_ms: None,
    };
    let seq = c.insert_thread(&thread)?;
    let mut row = ThreadRow { seq, thread, last_message_id: None, last_seq: 0 };
    let mut a = Access { row, member: Membership { share_history_ms: 0, removed_at_seq: None }, display_name: None };
    let count = participants.len();
    if count > MAX_PARTICIPANTS {
        return Err(ChatError::TooManyParticipants { count, limit: MAX_PARTICIPANTS }.into());
    }
    c.upsert_participants(seq, &participants)?;
    append(c, &mut a.row, system_message(MessageKind::ParticipantAdded, &creator.raw_id, None, participants), now)?;
    append(c, &mut a.row, system_message(MessageKind::TopicUpdated, &creator.raw_id, Some(&topic), vec![]), now)?;
    row = a.row;
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::sender_type;
    use palaver_core::ParticipantType;

    #[test]
    fn chat_senders_are_classified_like_call_participants() {
        let (meeting, plain) = ("19:meeting_abc@thread.v2", "19:abc@thread.v2");
        assert_eq!(sender_type("8:acs:r_u", false, plain), ParticipantType::Acs);
        assert_eq!(sender_type("8:acs:r_u", false, meeting), ParticipantType::AcsAsTeamsExternalUser);
        let directory = "8:orgid:0a000000-0000-4000-8000-000000000001";
        assert_eq!(sender_type(directory, false, meeting), ParticipantType::AcsAsM365User);
        assert_eq!(sender_type(directory, true, meeting), ParticipantType::Teams);
    }
}
