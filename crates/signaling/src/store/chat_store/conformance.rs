//! The backend-independent cases of a [`ChatBackend`], run against SQLite here and against
//! PostgreSQL in `palaver-cluster` (through [`crate::chat_store_conformance_tests!`]).

use super::{ChatBackend, ChatTx, TxEnd};
use crate::domain::chat::service::{self, Caller, ChatService};
use crate::domain::chat::{ChatMessage, ChatParticipant, ChatThread, Membership, MessageKind, ReadReceipt};
use crate::store::StoreError;
use crate::store::chat::ThreadRow;
use palaver_core::{Scope, ScopeSet};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Run `body` in one committed transaction and hand back its value.
fn tx<R>(backend: &dyn ChatBackend, body: impl FnOnce(&dyn ChatTx) -> Result<R, StoreError>) -> R {
    let (mut body, mut out) = (Some(body), None);
    backend
        .transaction(&mut |c| {
            out = Some(body.take().unwrap()(c)?);
            Ok(TxEnd::Commit)
        })
        .unwrap();
    out.unwrap()
}

fn person(raw: &str, since: i64) -> ChatParticipant {
    ChatParticipant { raw_id: raw.into(), display_name: Some(raw.to_uppercase()), share_history_ms: since }
}

fn thread(id: &str, created_ms: i64) -> ChatThread {
    ChatThread { id: id.into(), topic: "t".into(), created_ms, created_by: "8:acs:r_a".into(), last_message_ms: None }
}

fn message(seq: i64, id: i64, kind: MessageKind, at: i64) -> ChatMessage {
    ChatMessage {
        id: id.to_string(),
        kind,
        sequence_id: seq,
        version: id.to_string(),
        content: (!kind.is_system()).then(|| format!("m{seq}")),
        sender: Some("8:acs:r_a".into()),
        sender_display_name: None,
        created_ms: at,
        edited_ms: None,
        deleted_ms: None,
        metadata: BTreeMap::from([("k".to_string(), "v".to_string())]),
        topic: None,
        participants: if kind.is_system() { vec![person("8:acs:r_b", 0)] } else { vec![] },
        initiator: kind.is_system().then(|| "8:acs:r_a".to_string()),
    }
}

/// Threads, participants (order, removal, re-adding, forgetting), topics, deletion.
pub fn threads_and_participants(b: &dyn ChatBackend) {
    let seq = tx(b, |c| c.insert_thread(&thread("19:a@thread.v2", 10)));
    let row = tx(b, |c| c.find_thread("19:a@thread.v2")).unwrap();
    assert_eq!(row, ThreadRow { seq, thread: thread("19:a@thread.v2", 10), last_message_id: None, last_seq: 0 });
    assert!(tx(b, |c| c.find_thread("19:none@thread.v2")).is_none());
    tx(b, |c| c.upsert_participants(seq, &[person("8:acs:r_c", 5), person("8:acs:r_a", 0), person("8:acs:r_b", 0)]));
    let names = |list: Vec<ChatParticipant>| list.into_iter().map(|p| p.raw_id).collect::<Vec<_>>();
    assert_eq!(names(tx(b, |c| c.list_participants(seq, 0, 10))), ["8:acs:r_c", "8:acs:r_a", "8:acs:r_b"]);
    assert_eq!(names(tx(b, |c| c.list_participants(seq, 1, 1))), ["8:acs:r_a"]);
    tx(b, |c| c.mark_removed(seq, "8:acs:r_a", 7));
    assert_eq!(tx(b, |c| c.active_participant_ids(seq)), ["8:acs:r_c", "8:acs:r_b"]);
    assert_eq!(
        tx(b, |c| c.membership(seq, "8:acs:r_a")),
        Some((Membership { share_history_ms: 0, removed_at_seq: Some(7) }, Some("8:ACS:R_A".into())))
    );
    // Re-adding clears the removal and keeps the first-added order.
    tx(b, |c| c.upsert_participants(seq, &[person("8:acs:r_a", 3)]));
    assert_eq!(tx(b, |c| c.active_participant_ids(seq)), ["8:acs:r_c", "8:acs:r_a", "8:acs:r_b"]);
    assert_eq!(tx(b, |c| c.membership(seq, "8:acs:r_a")).unwrap().0.share_history_ms, 3);
    tx(b, |c| c.forget_participant(seq, "8:acs:r_c"));
    assert_eq!(tx(b, |c| c.membership(seq, "8:acs:r_c")), None);
    tx(b, |c| c.set_topic(seq, "new"));
    assert_eq!(tx(b, |c| c.find_thread("19:a@thread.v2")).unwrap().thread.topic, "new");
    tx(b, |c| c.insert_message(seq, &message(1, 100, MessageKind::Text, 20)));
    tx(b, |c| c.delete_thread(seq));
    assert!(tx(b, |c| c.find_thread("19:a@thread.v2")).is_none());
    assert!(tx(b, |c| c.list_participants(seq, 0, 10)).is_empty(), "participants go with the thread");
    assert!(tx(b, |c| c.find_message(seq, 100)).is_none(), "messages go with the thread");
}

/// Messages: counters, round trip of every column, edits in place, the reader's window and
/// the `startTime` filter over created/edited/deleted, read receipts that never move back.
pub fn messages_and_receipts(b: &dyn ChatBackend) {
    let seq = tx(b, |c| c.insert_thread(&thread("19:m@thread.v2", 10)));
    let added = message(1, 100, MessageKind::ParticipantAdded, 20);
    tx(b, |c| c.insert_message(seq, &added));
    let row = tx(b, |c| c.find_thread("19:m@thread.v2")).unwrap();
    assert_eq!((row.last_seq, row.last_message_id, row.thread.last_message_ms), (1, Some(100), None));
    for (s, id, at) in [(2, 200, 30), (3, 300, 40), (4, 400, 50)] {
        tx(b, |c| c.insert_message(seq, &message(s, id, MessageKind::Text, at)));
    }
    let row = tx(b, |c| c.find_thread("19:m@thread.v2")).unwrap();
    assert_eq!((row.last_seq, row.last_message_id, row.thread.last_message_ms), (4, Some(400), Some(50)));
    assert_eq!(tx(b, |c| c.find_message(seq, 100)), Some(added));
    let mut edited = message(2, 200, MessageKind::Text, 30);
    edited.content = Some("edited".into());
    edited.version = "250".into();
    edited.edited_ms = Some(60);
    edited.metadata.clear();
    tx(b, |c| c.update_message(seq, &edited));
    assert_eq!(tx(b, |c| c.find_message(seq, 200)), Some(edited));
    let seqs = |list: Vec<ChatMessage>| list.into_iter().map(|m| m.sequence_id).collect::<Vec<_>>();
    assert_eq!(seqs(tx(b, |c| c.list_messages(seq, i64::MAX, (0, i64::MAX), None, 10))), [4, 3, 2, 1]);
    assert_eq!(seqs(tx(b, |c| c.list_messages(seq, 4, (0, i64::MAX), None, 2))), [3, 2]);
    assert_eq!(seqs(tx(b, |c| c.list_messages(seq, i64::MAX, (30, 3), None, 10))), [3, 2], "window");
    assert_eq!(seqs(tx(b, |c| c.list_messages(seq, i64::MAX, (0, i64::MAX), Some(45), 10))), [4, 2], "touched");

    tx(b, |c| c.upsert_read_receipt(seq, "8:acs:r_b", 300, 3, 70));
    tx(b, |c| c.upsert_read_receipt(seq, "8:acs:r_b", 200, 2, 80));
    tx(b, |c| c.upsert_read_receipt(seq, "8:acs:r_c", 400, 4, 90));
    let receipt = |who: &str, id: &str, at| ReadReceipt { sender: who.into(), message_id: id.into(), read_ms: at };
    assert_eq!(
        tx(b, |c| c.list_read_receipts(seq, i64::MAX, 0, 10)),
        [receipt("8:acs:r_c", "400", 90), receipt("8:acs:r_b", "300", 70)],
        "newest first; an older message leaves the receipt"
    );
    assert_eq!(tx(b, |c| c.list_read_receipts(seq, 3, 0, 10)), [receipt("8:acs:r_b", "300", 70)]);
    assert_eq!(tx(b, |c| c.list_read_receipts(seq, i64::MAX, 1, 10)).len(), 1);
}

/// A user's threads, most recently active first, paged by `(key, seq)`, filtered by activity.
pub fn threads_of_a_user(b: &dyn ChatBackend) {
    let mut seqs = Vec::new();
    for (i, created) in [10, 20, 30].into_iter().enumerate() {
        let s = tx(b, |c| c.insert_thread(&thread(&format!("19:{i}@thread.v2"), created)));
        tx(b, |c| c.upsert_participants(s, &[person("8:acs:r_u", 0)]));
        seqs.push(s);
    }
    tx(b, |c| c.insert_message(seqs[0], &message(1, 1, MessageKind::Text, 40)));
    tx(b, |c| c.mark_removed(seqs[1], "8:acs:r_u", 1));
    let ids = |list: Vec<(i64, ThreadRow)>| list.into_iter().map(|(k, r)| (k, r.thread.id)).collect::<Vec<_>>();
    let all = tx(b, |c| c.list_threads_of("8:acs:r_u", None, None, 10));
    assert_eq!(ids(all.clone()), [(40, "19:0@thread.v2".to_string()), (30, "19:2@thread.v2".to_string())]);
    let after_first = tx(b, |c| c.list_threads_of("8:acs:r_u", Some((all[0].0, all[0].1.seq)), None, 10));
    assert_eq!(ids(after_first), [(30, "19:2@thread.v2".to_string())]);
    assert_eq!(ids(tx(b, |c| c.list_threads_of("8:acs:r_u", None, Some(35), 10))).len(), 1);
    assert!(tx(b, |c| c.list_threads_of("8:acs:r_nobody", None, None, 10)).is_empty());
}

/// First answers of repeatable creates: per requester, pruned by age.
pub fn repeatable_answers(b: &dyn ChatBackend) {
    tx(b, |c| c.save_repeat("8:acs:r_a", "req", "fp", "{}", 10));
    assert_eq!(tx(b, |c| c.find_repeat("8:acs:r_a", "req")), Some(("fp".into(), "{}".into())));
    assert_eq!(tx(b, |c| c.find_repeat("8:acs:r_b", "req")), None);
    assert_eq!(tx(b, |c| c.prune_repeats(10)), 0);
    assert_eq!(tx(b, |c| c.prune_repeats(11)), 1);
    assert_eq!(tx(b, |c| c.find_repeat("8:acs:r_a", "req")), None);
}

/// A rolled-back body and a failed body leave nothing.
pub fn refused_and_failed_transactions_write_nothing(b: &dyn ChatBackend) {
    b.transaction(&mut |c| {
        c.insert_thread(&thread("19:r@thread.v2", 1))?;
        Ok(TxEnd::Rollback)
    })
    .unwrap();
    assert!(tx(b, |c| c.find_thread("19:r@thread.v2")).is_none());
    let failed = b.transaction(&mut |c| {
        c.insert_thread(&thread("19:f@thread.v2", 1))?;
        c.insert_thread(&thread("19:f@thread.v2", 1))?; // a unique violation
        Ok(TxEnd::Commit)
    });
    assert!(failed.is_err());
    assert!(tx(b, |c| c.find_thread("19:f@thread.v2")).is_none());
    // The backend is still usable after a failed transaction.
    tx(b, |c| c.insert_thread(&thread("19:f@thread.v2", 1)));
}

/// Eight senders racing into one thread through the chat service: every message stored,
/// sequence ids 3..=10 once each (creation writes messages 1 and 2).
pub async fn racing_senders_get_distinct_sequence_ids(backend: Arc<dyn ChatBackend>) {
    let chat = ChatService::with_backend(backend, "page-key", None);
    let caller = Caller { raw_id: "8:acs:r_a".into(), scopes: ScopeSet::empty().with(Scope::Chat) };
    let creator = person("8:acs:r_a", 0);
    chat.run(move |c| service::create_thread_in(c, "19:race@thread.v2".into(), "t".into(), creator, vec![], 1))
        .await
        .unwrap();
    let sends: Vec<_> = (0..8)
        .map(|i| {
            let (chat, caller) = (chat.clone(), caller.clone());
            tokio::spawn(async move {
                let m = service::user_message(&caller.raw_id, None, MessageKind::Text, format!("{i}"), BTreeMap::new());
                chat.run(move |c| service::send_message(c, "19:race@thread.v2", &caller, m, 100 + i)).await.unwrap()
            })
        })
        .collect();
    let mut seqs = Vec::new();
    for s in sends {
        seqs.push(s.await.unwrap().0.sequence_id);
    }
    seqs.sort();
    assert_eq!(seqs, (3..=10).collect::<Vec<_>>());
}

/// One `#[tokio::test]` per case; `$backend` makes a fresh backend (an `impl ChatBackend`).
#[macro_export]
macro_rules! chat_store_conformance_tests {
    ($backend:expr) => {
        $crate::chat_store_conformance_tests!(@sync $backend;
            threads_and_participants,
            messages_and_receipts,
            threads_of_a_user,
            repeatable_answers,
            refused_and_failed_transactions_write_nothing,
        );
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn racing_senders_get_distinct_sequence_ids() {
            let backend = std::sync::Arc::new($backend);
            $crate::store::chat_store::conformance::racing_senders_get_distinct_sequence_ids(backend).await;
        }
    };
    (@sync $backend:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let backend = $backend;
                $crate::store::chat_store::conformance::$case(&backend);
            }
        )*
    };
}
