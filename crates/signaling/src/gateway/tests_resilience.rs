//! Gateway resilience tests on 127.0.0.1: rate limiting and oversized messages, token
//! expiry mid-call, a socket that falls behind, and clean shutdown.

use super::tests::Server;
use crate::auth::Credential;
use crate::auth::TokenGrant;
use futures_util::{SinkExt, StreamExt};
use palaver_core::time::now_ms;
use palaver_core::{Scope, ScopeSet};
use serde_json::json;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn flooding_is_rate_limited_and_huge_messages_close_only_that_socket() {
    let s = Server::start().await;
    let mut flooder = s.connect(&s.token(&s.external_id(), None, &[Scope::Voip])).await;
    let mut bystander = s.connect(&s.token(&s.external_id(), None, &[Scope::Voip])).await;
    for i in 0..60 {
        flooder.send(json!({"type":"ping","nonce":i})).await;
    }
    let (mut pongs, mut limited) = (0, 0);
    while pongs + limited < 60 {
        let f = flooder.recv().await;
        match f["type"].as_str() {
            Some("pong") => pongs += 1,
            Some("error") if f["code"] == "TooManyRequests" => limited += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(limited >= 1 && pongs >= 40, "pongs {pongs}, limited {limited}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    flooder.send(json!({"type":"ping","nonce":99})).await;
    assert_eq!(flooder.recv_type("pong").await["nonce"], 99, "tokens refill");

    // Over the transport limit (1 MiB): that socket is closed, nobody else is affected.
    let huge = "x".repeat(super::routes::MAX_SOCKET_MESSAGE_BYTES + 1);
    let _ = flooder.ws.send(Message::Text(huge.into())).await;
    tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match flooder.ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .expect("socket must close");
    bystander.send(json!({"type":"ping","nonce":1})).await;
    assert_eq!(bystander.recv_type("pong").await["nonce"], 1);
}

#[tokio::test]
async fn clean_shutdown_ends_every_session_with_server_shutdown() {
    let s = Server::start().await;
    let group = uuid::Uuid::new_v4().to_string();
    let join = json!({"type":"join","target":{"kind":"groupCall","groupId":group}});
    let mut a = s.connect(&s.token("8:orgid:a", Some("Ada"), &[Scope::Voip])).await;
    let mut b = s.connect(&s.token("8:orgid:b", Some("Ben"), &[Scope::Voip])).await;
    a.send(join.clone()).await;
    a.recv_type("joined").await;
    b.send(join).await;
    b.recv_type("joined").await;
    assert_eq!(s.state.gateway.shutdown().await, 1);
    for c in [&mut a, &mut b] {
        assert_eq!(c.recv_type("session.ended").await["reason"], "ServerShutdown");
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let ended = s.observer.ended.lock().unwrap().clone();
    assert_eq!(ended.len(), 2);
    assert!(ended.iter().all(|e| e.reason == palaver_core::EndReason::ServerShutdown));
    assert_eq!(s.state.gateway.live_conversations(), 0);
}

#[tokio::test]
async fn a_socket_that_falls_behind_is_dropped_into_reconnecting() {
    use super::connection::Outbound;
    let s = Server::start().await;
    let group = uuid::Uuid::new_v4().to_string();
    // A participant whose socket queue holds one frame and is never drained.
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let identity = super::routes::authenticate(
        &s.state,
        Credential::AccessToken(&s.token("8:orgid:slow", None, &[Scope::Voip])),
        now_ms(),
    )
    .await
    .unwrap()
    .identity;
    let request = crate::domain::conversation::JoinRequest {
        participant_id: "slow".into(),
        resume_token: "t".into(),
        request_id: None,
        identity,
        proposed_display_name: None,
        room_role: None,
    };
    let key = format!("groupCall:{group}");
    s.state
        .gateway
        .join(key, crate::domain::conversation::ConversationSetup::GroupCall, request, "c-slow".into(), tx)
        .await;
    // Its `joined` frame fills the queue; the next roster delta overflows it.
    let mut fast = s.connect(&s.token("8:orgid:fast", None, &[Scope::Voip])).await;
    fast.send(json!({"type":"join","target":{"kind":"groupCall","groupId":group}})).await;
    fast.recv_type("joined").await;
    fast.send(json!({"type":"self.raiseHand","raised":true})).await;
    let d = fast.recv_type("roster.delta").await;
    assert_eq!(d["delta"], json!({"change":"stateChanged","participantId":"slow","state":"reconnecting"}));
    assert!(matches!(rx.recv().await, Some(Outbound::Frame(_))), "the joined frame");
    assert!(matches!(rx.recv().await, Some(Outbound::Overflowed)), "then the order to close");
}

#[tokio::test]
async fn token_expiry_mid_call_asks_for_refresh_then_ends_the_session() {
    let s = Server::start().await;
    let short = |raw: &str, secs: i64| {
        let grant = TokenGrant {
            raw_id: raw.to_string(),
            scopes: ScopeSet::empty().with(Scope::Voip),
            expires_at_ms: now_ms() + secs * 1000,
            name: Some(raw.to_string()),
            tid: Some("tenant-1".into()),
            native: false,
        };
        s.state.auth.tokens.issue(&grant, now_ms()).unwrap().token
    };
    let group = uuid::Uuid::new_v4().to_string();
    let join = json!({"type":"join","target":{"kind":"groupCall","groupId":group}});
    let mut keeper = s.connect(&short("8:orgid:keeper", 3)).await;
    let mut lapser = s.connect(&short("8:orgid:lapser", 3)).await;
    keeper.send(join.clone()).await;
    keeper.recv_type("joined").await;
    lapser.send(join).await;
    lapser.recv_type("joined").await;
    // Inside the refresh window from the start: both are asked at once.
    keeper.recv_type("token.expiring").await;
    lapser.recv_type("token.expiring").await;
    // Someone else's token is refused; the right one is taken.
    keeper.send(json!({"type":"token.refresh","token":short("8:orgid:other", 3600)})).await;
    assert_eq!(keeper.recv_type("error").await["code"], "Forbidden");
    keeper.send(json!({"type":"token.refresh","token":short("8:orgid:keeper", 3600)})).await;
    keeper.recv_type("token.refreshed").await;
    // The lapser's session ends with TokenExpired and the socket closes.
    let ended = tokio::time::timeout(Duration::from_secs(6), lapser.recv_type("session.ended")).await.unwrap();
    assert_eq!(ended["reason"], "TokenExpired");
    let left = tokio::time::timeout(Duration::from_secs(6), keeper.recv_type("roster.delta")).await.unwrap();
    assert_eq!(left["delta"]["change"], "left");
    let closed = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match lapser.ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "socket must close after token expiry");
    // The keeper is still in.
    keeper.send(json!({"type":"self.raiseHand","raised":true,"requestId":"h"})).await;
    assert_eq!(keeper.recv_type("ack").await["requestId"], "h");
    let ended = s.observer.ended.lock().unwrap().clone();
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].reason, palaver_core::EndReason::TokenExpired);
}

#[tokio::test]
async fn one_identity_holds_at_most_the_configured_number_of_sockets() {
    use crate::app::SignalingConfig;
    use serde_json::Value;
    use std::sync::Arc;
    use std::time::Instant;
    let mut config = SignalingConfig::default();
    config.gateway.max_sockets_per_identity = 2;
    let s = Server::start_with(config, Arc::new(crate::gateway::MediaUnavailable)).await;
    let token = s.token("8:orgid:guesser", Some("Gus"), &[Scope::Voip]);
    let first = s.connect(&token).await;
    let _second = s.connect(&token).await;
    // A third socket on the same identity is refused before the upgrade, in the ACS shape.
    let url = format!("ws://{}/signaling/v1?access_token={token}", s.addr);
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 429);
            let body: Value = serde_json::from_slice(resp.body().as_deref().unwrap_or_default()).unwrap();
            assert_eq!(body["error"]["code"], "TooManyRequests", "{body}");
        }
        other => panic!("expected HTTP 429, got {:?}", other.map(|_| ())),
    }
    // Another identity is not affected; closing a socket frees its place.
    s.connect(&s.token("8:orgid:other", Some("Oto"), &[Scope::Voip])).await;
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(3);
    while s.state.gateway.check_socket_cap("8:orgid:guesser").is_err() {
        assert!(Instant::now() < deadline, "the closed socket was never released");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    s.connect(&token).await;
}
