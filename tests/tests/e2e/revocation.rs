//! Revocation reaches live sessions, through the real binary: an external user is in a group
//! call twice, over a WebSocket and over QUIC (palaver-client); a second one over a WebSocket.
//! Revoking the first identity's tokens (`:revokeAccessTokens`, HMAC) ends both its sessions
//! within 1 s — the socket reads `session.ended` (`TokenRevoked`) and a close frame 4001
//! "access revoked", the QUIC connection closes with application code 4 and the same reason —
//! and deleting the second identity ends its socket the same way. The usage export shows
//! every session closed at the revocation with `ParticipantEndReason` `TokenRevoked`.

use crate::signaling::{Ws, connect};
use crate::support::quic_address;
use futures_util::StreamExt;
use palaver_client::{ConnectOptions, JoinTarget, QuicClient};
use palaver_core::protocol::ConnectionClose;
use palaver_e2e::{Server, ServerOptions, TempDir};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// 1 s checkpoints; `/metrics` on a free port (9464 may be taken).
const CONFIG: &str = "[usage]\nmetrics_listen = \"127.0.0.1:0\"\ncheckpoint_interval_secs = 1\n";
const API: &str = "api-version=2023-10-01";
/// How soon a revoked session must end.
const WITHIN: Duration = Duration::from_secs(1);

async fn join_group_call(ws: &mut Ws, group_id: &str) -> Value {
    ws.send(json!({"type":"join","target":{"kind":"groupCall","groupId":group_id}})).await;
    ws.recv_type("joined").await
}

/// Reads the socket until the server closes it; returns the `session.ended` reason seen (if
/// any) and the close frame's code and reason.
async fn until_closed(ws: &mut Ws) -> (Option<String>, Option<(u16, String)>) {
    let mut ended = None;
    loop {
        match ws.stream.next().await {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).expect("JSON frame");
                if v["type"] == "session.ended" {
                    ended = v["reason"].as_str().map(str::to_string);
                }
            }
            Some(Ok(Message::Close(frame))) => {
                return (ended, frame.map(|f| (u16::from(f.code), f.reason.to_string())));
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return (ended, None),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_or_deleting_an_identity_ends_its_live_sessions_within_a_second() {
    let dir = TempDir::new("palaver-e2e-revocation");
    let options = ServerOptions { config_toml: Some(CONFIG.into()), ..ServerOptions::default() };
    let server = Server::start_in(dir.path(), options).await;
    let ca_pem = std::fs::read_to_string(server.ca_file()).expect("CA file");
    let (alice, alice_token) = server.create_user_token(&["voip"]).await;
    let (bob, bob_token) = server.create_user_token(&["voip"]).await;
    let group_id = uuid::Uuid::new_v4().to_string();

    // Alice over a WebSocket and over QUIC, Bob over a WebSocket, all in one group call.
    let mut alice_ws = connect(&server, &alice_token).await;
    let joined = join_group_call(&mut alice_ws, &group_id).await;
    let conversation_id = joined["snapshot"]["conversationId"].as_str().expect("conversationId").to_string();
    let options = ConnectOptions::new(quic_address(&server, &alice_token).await, "localhost", ca_pem);
    let alice_quic = QuicClient::connect(&options, &alice_token).await.expect("Alice connects over QUIC");
    let on_quic = alice_quic.join(JoinTarget::GroupCall { group_id: group_id.clone() }, None).await.expect("joins");
    assert_eq!(on_quic.conversation_id, conversation_id);
    let mut bob_ws = connect(&server, &bob_token).await;
    join_group_call(&mut bob_ws, &group_id).await;
    let joined_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    // Revoke Alice's tokens: both her sessions end within 1 s, with the reason.
    let revoked_at = Instant::now();
    let (status, body) =
        server.signed(Method::POST, &format!("/identities/{alice}/:revokeAccessTokens?{API}"), "").await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (ws_end, quic_end) = tokio::join!(
        tokio::time::timeout(WITHIN, until_closed(&mut alice_ws)),
        tokio::time::timeout(WITHIN, alice_quic.connection().closed()),
    );
    let (ended, close) = ws_end.expect("Alice's socket still open 1 s after the revocation");
    let revoked = ConnectionClose::AccessRevoked;
    assert_eq!(ended.as_deref(), Some("TokenRevoked"));
    assert_eq!(close, Some((revoked.websocket_code(), revoked.reason().to_string())));
    match quic_end.expect("Alice's QUIC connection still open 1 s after the revocation") {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(u64::from(c.error_code), u64::from(revoked.quic_code()), "{c:?}");
            assert_eq!(&c.reason[..], revoked.reason().as_bytes(), "{c:?}");
        }
        other => panic!("the QUIC connection ended without the revocation close: {other:?}"),
    }
    println!("revocation reached both sessions in {} ms", revoked_at.elapsed().as_millis());
    // The revoked token opens nothing any more.
    assert_eq!(server.whoami(&alice_token).await.0, StatusCode::UNAUTHORIZED);

    // Deleting Bob ends his socket the same way; the conversation itself went on until then.
    let (status, body) = server.signed(Method::DELETE, &format!("/identities/{bob}?{API}"), "").await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (ended, close) = tokio::time::timeout(WITHIN, until_closed(&mut bob_ws)).await.expect("Bob's socket ends");
    assert_eq!(ended.as_deref(), Some("TokenRevoked"));
    assert_eq!(close, Some((revoked.websocket_code(), revoked.reason().to_string())));
    let deleted_after = joined_at.elapsed();

    // Billing closed each session normally, at the revocation, not after a reconnect grace.
    let summary = wait_for_closed_sessions(&server, &conversation_id, 3).await;
    for row in &summary {
        assert_eq!(row["ParticipantEndReason"], "TokenRevoked", "{row}");
        let duration_ms = row["ParticipantDurationMs"].as_i64().expect("duration");
        assert!(duration_ms > 1_000 && duration_ms <= deleted_after.as_millis() as i64 + 500, "{row}");
    }
}

/// The call summary of `conversation_id` once it lists `n` closed participant sessions.
async fn wait_for_closed_sessions(server: &Server, conversation_id: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, summary) = server.signed(Method::GET, &format!("/usage/calls/{conversation_id}"), "").await;
        let rows: Vec<Value> = summary["value"].as_array().cloned().unwrap_or_default();
        let closed = rows.iter().filter(|r| !r["ParticipantEndReason"].is_null()).count();
        if status == StatusCode::OK && closed == n {
            return rows;
        }
        assert!(Instant::now() < deadline, "usage records not closed: {status} {summary}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
