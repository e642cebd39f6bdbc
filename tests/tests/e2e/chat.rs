//! Meeting chat in real time against the real binary: two WebSocket participants (the
//! directory organizer and an external guest admitted from the lobby) and one `palaver-client`
//! QUIC participant (a directory colleague) share the meeting's chat thread. Each acts through
//! the Chat REST API (the QUIC one through `palaver_client::ChatRest`) and every other one must
//! receive the event within 1 s: message received / edited / deleted, typing, read receipt,
//! participants added / removed (by REST and by joining/leaving the meeting) and the topic update.
//! Each message sent is one `ChatMessage` usage record in the usage export.

use crate::signaling::{Ws, connect};
use futures_util::StreamExt;
use palaver_client::{ChatEvent, ChatRest, ConnectOptions, JoinTarget, QuicClient};
use palaver_e2e::{Server, ServerOptions, TempDir};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// Receive timeout of one expected event (a functional bound, not a benchmark).
const WITHIN: Duration = Duration::from_secs(1);
const API: &str = "api-version=2024-03-07";

/// A participant's signaling connection, seen as a stream of chat events.
enum Listener {
    Ws(Box<Ws>),
    Quic(Box<QuicClient>),
}

impl Listener {
    /// The next chat event (name, data) before `deadline`; other frames are skipped.
    async fn next_chat(&mut self, deadline: Instant) -> Option<(String, Value)> {
        loop {
            match self {
                Listener::Ws(ws) => {
                    let msg = tokio::time::timeout_at(deadline.into(), ws.stream.next()).await.ok()??.ok()?;
                    let Message::Text(text) = msg else { continue };
                    let frame: Value = serde_json::from_str(&text).expect("JSON frame");
                    if frame["type"] == "chat.event" {
                        return Some((frame["event"].as_str()?.to_string(), frame["data"].clone()));
                    }
                }
                Listener::Quic(client) => {
                    let message = tokio::time::timeout_at(deadline.into(), client.next_event()).await.ok()??;
                    if let Some(ChatEvent { name, data }) = ChatEvent::from_message(&message) {
                        return Some((name, data));
                    }
                }
            }
        }
    }
}

/// One participant: name, raw id, token, connection.
struct Member {
    name: &'static str,
    raw_id: String,
    token: String,
    listener: Listener,
}

/// Waits (≤ 1 s) until `member` receives `event` whose data satisfies `matches`.
async fn expect(member: &mut Member, event: &str, matches: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WITHIN;
    let mut skipped = Vec::new();
    while let Some((name, data)) = member.listener.next_chat(deadline).await {
        if name == event && matches(&data) {
            return data;
        }
        skipped.push(name);
    }
    panic!("{} got no matching `{event}` within {WITHIN:?} (skipped {skipped:?})", member.name);
}

/// Every member except `actor` receives the matching event.
async fn others_expect(members: &mut [Member], actor: usize, event: &str, matches: impl Fn(&Value) -> bool) {
    for (i, m) in members.iter_mut().enumerate() {
        if i != actor {
            expect(m, event, &matches).await;
        }
    }
}

fn lists_name(data: &Value, key: &str, name: &str) -> bool {
    data[key]
        .as_array()
        .is_some_and(|ps| ps.iter().any(|p| p["displayName"].as_str().is_some_and(|n| n.contains(name))))
}

fn lists_raw_id(data: &Value, key: &str, raw_id: &str) -> bool {
    data[key].as_array().is_some_and(|ps| ps.iter().any(|p| p["id"]["rawId"] == raw_id))
}

async fn raw_id_of(server: &Server, token: &str) -> String {
    let (status, me) = server.whoami(token).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    me["identifier"]["rawId"].as_str().expect("rawId").to_string()
}

fn encode(thread_id: &str) -> String {
    thread_id.replace(':', "%3A").replace('@', "%40")
}

/// The `ChatMessage` usage records of `thread_id` in the usage export (waits up to 3 s for
/// the recorder to write `count` of them).
async fn chat_usage_records(server: &Server, thread_id: &str, count: usize) -> Vec<Value> {
    let now = chrono::Utc::now();
    let fmt = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let path =
        format!("/usage?from={}&to={}", fmt(now - chrono::Duration::hours(1)), fmt(now + chrono::Duration::hours(1)));
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let (status, page) = server.signed(Method::GET, &path, "").await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let found: Vec<Value> = page["value"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["UsageType"] == "ChatMessage" && r["CorrelationId"] == thread_id)
            .cloned()
            .collect();
        if found.len() >= count || Instant::now() > deadline {
            assert_eq!(found.len(), count, "{page}");
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_and_quic_participants_receive_each_others_chat_events_within_a_second() {
    let dir = TempDir::new("palaver-e2e-chat");
    let server = Server::start_in(dir.path(), ServerOptions::default()).await;
    let ca_pem = std::fs::read_to_string(server.ca_file()).expect("CA file");
    let org_token = server.directory_user_token("0c000000-0000-4000-8000-00000000000a", "Olivia Organizer").await;
    let quic_token = server.directory_user_token("0c000000-0000-4000-8000-00000000000c", "Quentin Quic").await;
    let (guest_raw, guest_token) = server.create_user_token(&["voip", "chat"]).await;
    let (status, meeting) =
        server.bearer(Method::POST, "/meetings", &org_token, Some(&json!({"subject": "Claim 4711"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{meeting}");
    let thread_id = meeting["chatThreadId"].as_str().expect("chatThreadId").to_string();
    let thread = format!("/chat/threads/{}", encode(&thread_id));

    // The organizer joins on a WebSocket: the join snapshot names the thread.
    let mut org_ws = connect(&server, &org_token).await;
    org_ws.send(json!({"type":"join","target":{"kind":"meetingLink","joinUrl":meeting["joinUrl"]}})).await;
    assert_eq!(org_ws.recv_type("joined").await["snapshot"]["threadId"], thread_id.as_str());
    let org_raw = raw_id_of(&server, &org_token).await;
    let mut org = Member {
        name: "Olivia (WebSocket)",
        raw_id: org_raw,
        token: org_token,
        listener: Listener::Ws(Box::new(org_ws)),
    };

    // The colleague joins over QUIC: the organizer sees them added to the thread.
    let addr = crate::support::quic_address(&server, &quic_token).await;
    let client = QuicClient::connect(&ConnectOptions::new(addr, "localhost", ca_pem.clone()), &quic_token)
        .await
        .expect("QUIC connects");
    let joined = client.join(JoinTarget::MeetingLink { join_url: meeting["joinUrl"].as_str().unwrap().into() }, None);
    assert_eq!(joined.await.expect("QUIC joins").snapshot.thread_id.as_deref(), Some(thread_id.as_str()));
    expect(&mut org, "participantsAdded", |d| lists_name(d, "participantsAdded", "Quentin")).await;
    let quic_raw = raw_id_of(&server, &quic_token).await;
    let quic = Member {
        name: "Quentin (QUIC)",
        raw_id: quic_raw,
        token: quic_token.clone(),
        listener: Listener::Quic(Box::new(client)),
    };

    // The guest waits in the lobby (not in the thread), then is admitted: both others see them added.
    let mut guest_ws = connect(&server, &guest_token).await;
    guest_ws
        .send(json!({"type":"join","requestId":"j","displayName":"Gina",
            "target":{"kind":"meetingCode","meetingCode":meeting["meetingCode"],"passcode":meeting["passcode"]}}))
        .await;
    let lobby = guest_ws.recv_type("joined").await;
    assert_eq!(lobby["snapshot"]["state"], "lobby");
    let (status, refused) = server.bearer(Method::GET, &format!("{thread}/messages?{API}"), &guest_token, None).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("Forbidden")), "{refused}");
    let Listener::Ws(ws) = &mut org.listener else { unreachable!() };
    let guest_pid = lobby["snapshot"]["participantId"].clone();
    ws.send(json!({"type":"lobby.admit","requestId":"adm","participantId":guest_pid})).await;
    assert_eq!(guest_ws.recv_type("snapshot").await["snapshot"]["state"], "connected");
    let guest = Member {
        name: "Gina (WebSocket)",
        raw_id: guest_raw,
        token: guest_token,
        listener: Listener::Ws(Box::new(guest_ws)),
    };
    let mut members = [org, guest, quic];
    for i in [0, 2] {
        expect(&mut members[i], "participantsAdded", |d| lists_name(d, "participantsAdded", "Gina")).await;
    }

    let rest = ChatRest::new(server.base_url(), &ca_pem, &quic_token).expect("ChatRest");
    let mut message_ids = Vec::new();

    // Messages: each sends one; the two others receive it with the sender's name.
    for actor in 0..members.len() {
        let text = format!("hello from {}", members[actor].name);
        let id = if actor == 2 {
            rest.send_message(&thread_id, &text, Some("Quentin")).await.expect("QUIC member sends")
        } else {
            let body = json!({"content": text, "senderDisplayName": members[actor].name});
            let (status, sent) = server
                .bearer(Method::POST, &format!("{thread}/messages?{API}"), &members[actor].token, Some(&body))
                .await;
            assert_eq!(status, StatusCode::CREATED, "{sent}");
            sent["id"].as_str().unwrap().to_string()
        };
        let sender = members[actor].raw_id.clone();
        others_expect(&mut members, actor, "chatMessageReceived", |d| {
            d["id"] == id.as_str() && d["message"] == text.as_str() && d["sender"]["rawId"] == sender.as_str()
        })
        .await;
        message_ids.push(id);
    }

    // Edits, typing and read receipts from each.
    for actor in 0..members.len() {
        let (id, edited) = (message_ids[actor].clone(), format!("edited by {}", members[actor].name));
        if actor == 2 {
            rest.edit_message(&thread_id, &id, &edited).await.expect("QUIC member edits");
            rest.send_typing(&thread_id, Some("Quentin")).await.expect("QUIC member types");
            rest.send_read_receipt(&thread_id, &message_ids[0]).await.expect("QUIC member reads");
        } else {
            let token = members[actor].token.clone();
            let path = format!("{thread}/messages/{id}?{API}");
            let (status, body) = server.bearer(Method::PATCH, &path, &token, Some(&json!({"content": edited}))).await;
            assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
            let (status, body) =
                server.bearer(Method::POST, &format!("{thread}/typing?{API}"), &token, Some(&json!({}))).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let receipt = json!({"chatMessageId": message_ids[2]});
            let (status, body) =
                server.bearer(Method::POST, &format!("{thread}/readReceipts?{API}"), &token, Some(&receipt)).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        let sender = members[actor].raw_id.clone();
        let read = if actor == 2 { message_ids[0].clone() } else { message_ids[2].clone() };
        others_expect(&mut members, actor, "chatMessageEdited", |d| {
            d["id"] == id.as_str() && d["message"] == edited.as_str()
        })
        .await;
        others_expect(&mut members, actor, "typingIndicatorReceived", |d| d["sender"]["rawId"] == sender.as_str())
            .await;
        others_expect(&mut members, actor, "readReceiptReceived", |d| {
            d["sender"]["rawId"] == sender.as_str() && d["chatMessageId"] == read.as_str()
        })
        .await;
    }

    // Participants added and removed over REST: the organizer adds a user, the guest removes them.
    let (extra_raw, _) = server.create_user_token(&["chat"]).await;
    let add = json!({"participants": [{"communicationIdentifier": {"rawId": extra_raw, "communicationUser": {"id": extra_raw}},
        "displayName": "Xavier"}]});
    let (status, body) =
        server.bearer(Method::POST, &format!("{thread}/participants/:add?{API}"), &members[0].token, Some(&add)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    others_expect(&mut members, 0, "participantsAdded", |d| lists_raw_id(d, "participantsAdded", &extra_raw)).await;
    let remove = json!({"rawId": extra_raw, "communicationUser": {"id": extra_raw}});
    let (status, body) = server
        .bearer(Method::POST, &format!("{thread}/participants/:remove?{API}"), &members[1].token, Some(&remove))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    others_expect(&mut members, 1, "participantsRemoved", |d| lists_raw_id(d, "participantsRemoved", &extra_raw)).await;

    // The QUIC member renames the thread.
    let (status, body) = server
        .bearer(Method::PATCH, &format!("{thread}?{API}"), &members[2].token, Some(&json!({"topic": "Claim 4712"})))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    others_expect(&mut members, 2, "chatThreadPropertiesUpdated", |d| d["properties"]["topic"] == "Claim 4712").await;

    // Deletes from each.
    for actor in 0..members.len() {
        let id = message_ids[actor].clone();
        if actor == 2 {
            rest.delete_message(&thread_id, &id).await.expect("QUIC member deletes");
        } else {
            let path = format!("{thread}/messages/{id}?{API}");
            let (status, body) = server.bearer(Method::DELETE, &path, &members[actor].token, None).await;
            assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
        }
        others_expect(&mut members, actor, "chatMessageDeleted", |d| {
            d["id"] == id.as_str() && d["deletedOn"].is_string()
        })
        .await;
    }

    // Billing: one ChatMessage usage record per message sent, in the usage export with calling usage.
    let chat_usage = chat_usage_records(&server, &thread_id, 3).await;
    let mut senders: Vec<_> = chat_usage.iter().map(|r| r["UserIdA"].as_str().unwrap().to_string()).collect();
    senders.sort();
    let mut expected: Vec<_> = members.iter().map(|m| m.raw_id.clone()).collect();
    expected.sort();
    assert_eq!(senders, expected, "{chat_usage:?}");
    for r in &chat_usage {
        assert_eq!(
            (r["UnitType"].as_str(), r["Quantity"].as_str(), r["CostUsd"].as_str()),
            (Some("Message"), Some("1"), Some("0.000800")),
            "{r}"
        );
    }

    // The history the QUIC member reads: three tombstones in their places, the system messages around them.
    let history = rest.list_messages(&thread_id).await.expect("history");
    let users: Vec<_> = history.iter().filter(|m| m.kind == "text").collect();
    assert_eq!(users.len(), 3, "{history:?}");
    assert!(users.iter().all(|m| m.content.is_none()), "deleted messages keep their place without content");
    assert!(history.iter().any(|m| m.kind == "topicUpdated"));

    // The guest leaves the meeting: an external user leaves the thread too, and the others are told.
    let Listener::Ws(ws) = &mut members[1].listener else { unreachable!() };
    ws.send(json!({"type":"leave"})).await;
    let guest_raw = members[1].raw_id.clone();
    for i in [0, 2] {
        expect(&mut members[i], "participantsRemoved", |d| lists_raw_id(d, "participantsRemoved", &guest_raw)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_meeting_deletes_its_chat_thread() {
    let dir = TempDir::new("palaver-e2e-chat-delete");
    let server = Server::start_in(dir.path(), ServerOptions::default()).await;
    let org_token = server.directory_user_token("0c000000-0000-4000-8000-0000000000d1", "Dora Organizer").await;
    let (status, meeting) = server.bearer(Method::POST, "/meetings", &org_token, Some(&json!({}))).await;
    assert_eq!(status, StatusCode::CREATED, "{meeting}");
    let thread = format!("/chat/threads/{}", encode(meeting["chatThreadId"].as_str().unwrap()));
    let mut ws = connect(&server, &org_token).await;
    ws.send(json!({"type":"join","target":{"kind":"meetingLink","joinUrl":meeting["joinUrl"]}})).await;
    ws.recv_type("joined").await;
    let body = json!({"content": "kept until the meeting goes"});
    let (status, _) = server.bearer(Method::POST, &format!("{thread}/messages?{API}"), &org_token, Some(&body)).await;
    assert_eq!(status, StatusCode::CREATED);

    let path = format!("/meetings/{}", meeting["id"].as_str().unwrap());
    let (status, body) = server.bearer(Method::DELETE, &path, &org_token, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let raw_id = raw_id_of(&server, &org_token).await;
    let mut org = Member { name: "Dora", raw_id, token: org_token.clone(), listener: Listener::Ws(Box::new(ws)) };
    let deleted = expect(&mut org, "chatThreadDeleted", |d| d["threadId"] == meeting["chatThreadId"]).await;
    assert_eq!(deleted["deletedBy"]["id"]["rawId"], org.raw_id.as_str());
    let (status, gone) = server.bearer(Method::GET, &format!("{thread}/messages?{API}"), &org.token, None).await;
    assert_eq!((status, gone["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("NotFound")), "{gone}");
}
