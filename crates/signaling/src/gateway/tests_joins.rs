//! Join acknowledgment tests on 127.0.0.1 (issue #19): `joined` only once billing holds the
//! session start durably, without holding anyone else up, and a `join` sent right after
//! `session.ended` on the same socket is accepted.

use super::tests::{Client, Server};
use futures_util::StreamExt;
use palaver_core::Scope;
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// Frames of `ty` a client reads within `ms` (other frames are skipped).
async fn frames_within(c: &mut Client, ty: &str, ms: u64) -> Vec<Value> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
    while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, c.ws.next()).await {
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["type"] == ty {
                seen.push(v);
            }
        }
    }
    seen
}

pub(super) fn group_join(group: &str, request_id: &str) -> Value {
    json!({"type":"join","requestId":request_id,"target":{"kind":"groupCall","groupId":group}})
}

/// A kill -9 right after a client read `joined` lost its billing record (2 of 10 in
/// `tests/trials/join_then_kill.py`): `joined` was sent before the recorder's write. Now it
/// waits for the acknowledgment, and only that participant waits.
#[tokio::test]
async fn joined_waits_for_the_durable_session_start_and_no_one_else_does() {
    let s = Server::start().await;
    let group = uuid::Uuid::new_v4().to_string();
    let mut ada = s.connect(&s.token("8:orgid:a", Some("Ada"), &[Scope::Voip])).await;
    ada.send(group_join(&group, "a1")).await;
    ada.recv_type("joined").await;

    s.observer.hold_durability(); // the ledger has not synced Ben's start yet
    let mut ben = s.connect(&s.token("8:orgid:b", Some("Ben"), &[Scope::Voip])).await;
    ben.send(group_join(&group, "b1")).await;
    // Ada is not held up: she sees Ben arrive and her own commands are answered.
    assert_eq!(ada.recv_type("roster.delta").await["delta"]["change"], "joined");
    ada.send(json!({"type":"self.raiseHand","raised":true})).await;
    assert_eq!(ada.recv_type("roster.delta").await["delta"]["change"], "handRaised");
    assert_eq!(s.observer.started.lock().unwrap().len(), 2, "Ben's start was handed to billing");
    assert!(frames_within(&mut ben, "joined", 300).await.is_empty(), "joined before the start was durable");

    s.observer.sync();
    let joined = ben.recv_type("joined").await;
    assert_eq!(joined["requestId"], "b1");
    // Frames held meanwhile follow in order: Ada's raised hand, coalesced, reaches Ben too.
    let hand = ben.recv_type("roster.delta").await;
    assert_eq!(hand["delta"]["change"], "handRaised", "{hand}");
}

/// A `join` sent the moment a client reads `session.ended` was refused `InvalidState`
/// ("already in a conversation") when the socket had not yet handled the actor's detach
/// (129 of 2,700 joins in the crash trials). Now the detach carries the frame. Many sockets
/// at once on a multi-threaded runtime, as in the trials (each stays under its rate limit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_sent_on_reading_session_ended_is_accepted() {
    let s = std::sync::Arc::new(Server::start().await);
    let group = uuid::Uuid::new_v4().to_string();
    let mut clients = Vec::new();
    for n in 0..8 {
        let s = s.clone();
        let group = group.clone();
        clients.push(tokio::spawn(async move {
            let mut c = s.connect(&s.token(&format!("8:orgid:u{n}"), None, &[Scope::Voip])).await;
            for round in 0..15 {
                c.send(group_join(&group, &format!("j{round}"))).await;
                let reply = loop {
                    let v = c.recv().await;
                    if v["type"] == "joined" || v["type"] == "error" {
                        break v;
                    }
                };
                assert_eq!(reply["type"], "joined", "client {n}, round {round}: {reply}");
                c.send(json!({"type":"leave"})).await;
                c.recv_type("session.ended").await;
                // The next join goes out at once, as a client does on reading `session.ended`.
            }
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
}

/// A conversation that ends (its last participant left) leaves no task behind: a soak's heap
/// profile showed one allocation per conversation ever started still live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_conversations_leave_no_task_behind() {
    let s = Server::start().await;
    let mut ada = s.connect(&s.token("8:orgid:a", Some("Ada"), &[Scope::Voip])).await;
    let metrics = tokio::runtime::Handle::current().metrics();
    let settle = || tokio::time::sleep(Duration::from_millis(300));
    // Two rounds first, so lazily started tasks (the call actor, timers) are in the baseline.
    let mut baseline = 0;
    for round in 0..12 {
        if round == 2 {
            settle().await;
            baseline = metrics.num_alive_tasks();
        }
        let group = uuid::Uuid::new_v4().to_string();
        ada.send(group_join(&group, &format!("j{round}"))).await;
        ada.recv_type("joined").await;
        ada.send(json!({"type":"leave"})).await;
        ada.recv_type("session.ended").await;
    }
    settle().await;
    let alive = metrics.num_alive_tasks();
    assert_eq!(s.state.gateway.live_conversations(), 0, "every conversation was forgotten");
    assert!(alive <= baseline, "{alive} tasks alive after 10 more conversations, {baseline} before");
}
