//! Meeting chat: every meeting owns the thread `19:meeting_<id>@thread.v2`, created with
//! the meeting (organizer as creator, whole history). Who is in it follows the meeting:
//! entering the conversation (not the lobby) adds the participant — external users see
//! history from their join time, directory users all of it — and leaving removes an
//! external user entirely (they lose access), while directory users keep theirs.

use super::service::{self, Access, ChatService, TxResult, create_thread_in};
use crate::domain::Refusal;
use crate::domain::chat::ids::meeting_thread_id;
use crate::domain::chat::{ChatEvent, ChatParticipant, Membership, MessageKind};
use crate::store::chat::ThreadRow;
use crate::store::chat_store::ChatTx;

/// A change of who is in a meeting, for its chat thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeetingChatChange {
    pub meeting_id: String,
    /// Thread topic if the thread has to be created (the meeting subject).
    pub topic: String,
    pub organizer: String,
    pub raw_id: String,
    pub display_name: String,
    pub is_external: bool,
    /// Entered the conversation (`true`) or left it (`false`).
    pub entered: bool,
    pub at_ms: i64,
}

/// Topic of a meeting thread without a subject.
pub const DEFAULT_MEETING_TOPIC: &str = "Meeting chat";

/// The meeting's thread, created if missing.
pub fn ensure_thread(
    c: &dyn ChatTx,
    meeting_id: &str,
    topic: &str,
    organizer: &str,
    now_ms: i64,
) -> TxResult<ThreadRow> {
    let id = meeting_thread_id(meeting_id);
    if let Some(row) = c.find_thread(&id)? {
        return Ok(row);
    }
    let creator = ChatParticipant { raw_id: organizer.to_string(), display_name: None, share_history_ms: 0 };
    create_thread_in(c, id, topic.to_string(), creator, vec![], now_ms)
}

/// Apply one meeting membership change; returns the events to deliver.
pub fn apply_change(c: &dyn ChatTx, ch: &MeetingChatChange) -> TxResult<Vec<ChatEvent>> {
    let row = ensure_thread(c, &ch.meeting_id, &ch.topic, &ch.organizer, ch.at_ms)?;
    let found = c.membership(row.seq, &ch.raw_id)?;
    let active = found.as_ref().is_some_and(|(m, _)| m.is_active());
    let me = ChatParticipant {
        raw_id: ch.raw_id.clone(),
        display_name: Some(ch.display_name.clone()),
        share_history_ms: if ch.is_external { ch.at_ms } else { 0 },
    };
    let mut a = Access { row, member: Membership { share_history_ms: 0, removed_at_seq: None }, display_name: None };
    if ch.entered {
        if let Some((member, None)) = found.filter(|(m, _)| m.is_active()) {
            // The organizer created the thread before joining: name them now (for receipts and typing).
            let named = ChatParticipant { share_history_ms: member.share_history_ms, ..me };
            c.upsert_participants(a.row.seq, &[named])?;
            return Ok(vec![]);
        }
        if active {
            return Ok(vec![]);
        }
        return Ok(service::add_participants(c, &mut a, &me, vec![me.clone()], ch.at_ms)?.into_iter().collect());
    }
    if !ch.is_external || !active {
        return Ok(vec![]);
    }
    let to = c.active_participant_ids(a.row.seq)?;
    let m = service::append(
        c,
        &mut a.row,
        service::system_message(MessageKind::ParticipantRemoved, &ch.raw_id, None, vec![me.clone()]),
        ch.at_ms,
    )?;
    c.forget_participant(a.row.seq, &ch.raw_id)?;
    Ok(vec![ChatEvent::participants(
        &a.row.thread.id,
        false,
        std::slice::from_ref(&me),
        &me,
        m.sequence_id,
        ch.at_ms,
        &to,
    )])
}

/// Delete a meeting's thread with the meeting (a system action, no caller check): returns
/// the `chatThreadDeleted` event for its active participants, `None` if there was no thread.
pub fn delete_thread(c: &dyn ChatTx, meeting_id: &str, deleted_by: &str, now_ms: i64) -> TxResult<Option<ChatEvent>> {
    let Some(row) = c.find_thread(&meeting_thread_id(meeting_id))? else {
        return Ok(None);
    };
    let to = c.active_participant_ids(row.seq)?;
    c.delete_thread(row.seq)?;
    let by = ChatParticipant { raw_id: deleted_by.to_string(), display_name: None, share_history_ms: 0 };
    Ok(Some(ChatEvent::thread_deleted(&row.thread.id, &by, now_ms, &to)))
}

impl ChatService {
    /// Delete the meeting's thread and everything in it (with the meeting); the event to deliver.
    pub async fn delete_meeting_thread(
        &self,
        meeting_id: &str,
        deleted_by: &str,
        now_ms: i64,
    ) -> Result<Option<ChatEvent>, Refusal> {
        let (m, by) = (meeting_id.to_string(), deleted_by.to_string());
        self.run(move |c| delete_thread(c, &m, &by, now_ms)).await
    }

    /// Create the meeting's thread (with the meeting).
    pub async fn create_meeting_thread(
        &self,
        meeting_id: &str,
        topic: &str,
        organizer: &str,
        now_ms: i64,
    ) -> Result<String, Refusal> {
        let (m, t, o) = (meeting_id.to_string(), topic.to_string(), organizer.to_string());
        let row = self.run(move |c| ensure_thread(c, &m, &t, &o, now_ms)).await?;
        Ok(row.thread.id)
    }

    /// Apply a membership change of a meeting to its thread (from the meeting's actor, which
    /// awaits it before sending the frames of the change).
    pub async fn meeting_change(&self, change: MeetingChatChange) -> Result<Vec<ChatEvent>, Refusal> {
        self.run(move |c| apply_change(c, &change)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::chat::ChatError;
    use crate::domain::chat::ChatOperation;
    use crate::domain::chat::access::require_member;
    use crate::store::chat as db;
    use rusqlite::Connection;

    fn change(raw: &str, external: bool, entered: bool, at_ms: i64) -> MeetingChatChange {
        MeetingChatChange {
            meeting_id: "m1".into(),
            topic: "Standup".into(),
            organizer: "8:orgid:org".into(),
            raw_id: raw.into(),
            display_name: "X".into(),
            is_external: external,
            entered,
            at_ms,
        }
    }

    /// Run `f` on a fresh in-memory store with the chat tables.
    fn with_chat_store(f: impl FnOnce(&Connection)) {
        let store = crate::store::Store::open_in_memory().unwrap();
        db::migrate(&store).unwrap();
        store
            .with_conn(|c| {
                f(c);
                Ok(())
            })
            .unwrap();
    }

    fn member(c: &dyn ChatTx, raw: &str) -> Option<Membership> {
        let row = c.find_thread(&meeting_thread_id("m1")).unwrap().unwrap();
        c.membership(row.seq, raw).unwrap().map(|(m, _)| m)
    }

    #[test]
    fn deleting_the_meeting_thread_removes_it_and_tells_its_participants() {
        with_chat_store(|c| {
            assert_eq!(delete_thread(c, "m1", "8:orgid:org", 1).ok().unwrap(), None);
            apply_change(c, &change("8:acs:r_e", true, true, 1000)).ok().unwrap();
            let event = delete_thread(c, "m1", "8:orgid:org", 2000).ok().unwrap().unwrap();
            assert_eq!(event.name, "chatThreadDeleted");
            assert_eq!(event.recipients, vec!["8:orgid:org".to_string(), "8:acs:r_e".to_string()]);
            assert!(c.find_thread(&meeting_thread_id("m1")).unwrap().is_none());
            let left: i64 = c.query_row("SELECT COUNT(*) FROM chat_messages", [], |r| r.get(0)).unwrap();
            assert_eq!(left, 0, "the thread's messages go with it");
        });
    }

    #[test]
    fn external_users_join_from_now_and_lose_access_on_leave() {
        with_chat_store(|c| {
            let ev = apply_change(c, &change("8:acs:r_e", true, true, 1000)).ok().unwrap();
            assert_eq!(ev.len(), 1);
            assert_eq!(ev[0].name, "participantsAdded");
            assert_eq!(member(c, "8:acs:r_e").unwrap().share_history_ms, 1000);
            // Entering again (a second device) changes nothing.
            assert!(apply_change(c, &change("8:acs:r_e", true, true, 2000)).ok().unwrap().is_empty());
            apply_change(c, &change("8:orgid:d", false, true, 3000)).ok().unwrap();
            assert_eq!(member(c, "8:orgid:d").unwrap().share_history_ms, 0);
            let ev = apply_change(c, &change("8:acs:r_e", true, false, 4000)).ok().unwrap();
            assert_eq!(ev[0].name, "participantsRemoved");
            assert_eq!(
                require_member(member(c, "8:acs:r_e"), ChatOperation::ReadMessages).unwrap_err(),
                ChatError::NotParticipant
            );
            assert!(apply_change(c, &change("8:orgid:d", false, false, 5000)).ok().unwrap().is_empty());
            assert!(member(c, "8:orgid:d").unwrap().is_active());
            let row = c.find_thread(&meeting_thread_id("m1")).unwrap().unwrap();
            assert_eq!(row.thread.topic, "Standup");
            // The organizer (creator, unnamed) entering gets their name, no event.
            assert!(apply_change(c, &change("8:orgid:org", false, true, 6000)).ok().unwrap().is_empty());
            assert_eq!(c.membership(row.seq, "8:orgid:org").unwrap().unwrap().1.as_deref(), Some("X"));
            assert_eq!(row.thread.created_by, "8:orgid:org");
        });
    }
}
