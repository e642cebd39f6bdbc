//! Gateway tests over real sockets on 127.0.0.1 (plain HTTP, in-process router): lobby
//! story, recording notice timing, bad input, calls, reconnect with resume.

use crate::api::router;
use crate::app::{AppParts, AppState, SignalingConfig};
use crate::auth::TokenGrant;
use crate::store::Store;
use axum::body::Body;
use futures_util::{SinkExt, StreamExt};
use palaver_core::time::now_ms;
use palaver_core::{DurableAck, ErrorCode, Scope, ScopeSet, SessionEnded, SessionObserver, SessionStarted};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use tower::ServiceExt;

#[derive(Default)]
pub(super) struct RecordingObserver {
    pub(super) started: Mutex<Vec<SessionStarted>>,
    pub(super) ended: Mutex<Vec<SessionEnded>>,
    /// While `Some`, session starts are not acknowledged as durable: their acknowledgments
    /// wait here (a billing ledger that has not synced yet).
    pub(super) unsynced: Mutex<Option<Vec<DurableAck>>>,
}

impl RecordingObserver {
    /// Hold the durability acknowledgments of session starts from now on.
    pub(super) fn hold_durability(&self) {
        *self.unsynced.lock().unwrap() = Some(Vec::new());
    }
    /// Acknowledge every held session start, and those to come at once.
    pub(super) fn sync(&self) {
        for ack in self.unsynced.lock().unwrap().take().unwrap_or_default() {
            ack.acknowledge();
        }
    }
}

impl SessionObserver for RecordingObserver {
    fn session_started(&self, e: SessionStarted) {
        self.started.lock().unwrap().push(e);
    }
    fn session_started_durably(&self, e: SessionStarted, durable: DurableAck) {
        self.session_started(e);
        match self.unsynced.lock().unwrap().as_mut() {
            Some(held) => held.push(durable),
            None => durable.acknowledge(),
        }
    }
    fn session_ended(&self, e: SessionEnded) {
        self.ended.lock().unwrap().push(e);
    }
}

pub(super) struct Server {
    pub(super) state: AppState,
    pub(super) addr: SocketAddr,
    pub(super) observer: Arc<RecordingObserver>,
    /// What the gateway reports to operators.
    pub(super) telemetry: Arc<crate::api::testing::RecordingTelemetry>,
}

impl Server {
    pub(super) async fn start() -> Self {
        Self::start_with(SignalingConfig::default(), Arc::new(crate::gateway::MediaUnavailable)).await
    }

    pub(super) async fn start_with(config: SignalingConfig, media: Arc<dyn crate::gateway::MediaPlane>) -> Self {
        let observer = Arc::new(RecordingObserver::default());
        let telemetry = Arc::new(crate::api::testing::RecordingTelemetry::default());
        let parts = AppParts { sessions: observer.clone(), telemetry: telemetry.clone(), media, ..AppParts::default() };
        let state = AppState::open(config, Store::open_in_memory().unwrap(), parts).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { state, addr, observer, telemetry }
    }

    pub(super) fn token(&self, raw_id: &str, name: Option<&str>, scopes: &[Scope]) -> String {
        let grant = TokenGrant {
            raw_id: raw_id.to_string(),
            scopes: scopes.iter().copied().collect::<ScopeSet>(),
            expires_at_ms: now_ms() + 3_600_000,
            name: name.map(str::to_string),
            tid: raw_id.starts_with("8:orgid:").then(|| "tenant-1".to_string()),
            native: false,
        };
        self.state.auth.tokens.issue(&grant, now_ms()).unwrap().token
    }

    pub(super) fn external_id(&self) -> String {
        format!("8:acs:{}_{}", self.state.resource.resource_id, uuid::Uuid::new_v4())
    }

    async fn rest(&self, method: &str, uri: &str, token: &str, body: Value) -> (u16, Value) {
        let req = axum::http::Request::builder()
            .method(method)
            .uri(uri)
            .header("host", self.addr.to_string())
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let resp = router(self.state.clone()).oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    pub(super) async fn connect(&self, token: &str) -> Client {
        let url = format!("ws://{}/signaling/v1?access_token={token}", self.addr);
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let mut c = Client { ws };
        assert_eq!(c.recv().await["type"], "welcome");
        c
    }
}

pub(super) struct Client {
    pub(super) ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
}

impl Client {
    pub(super) async fn send(&mut self, v: Value) {
        self.ws.send(Message::Text(v.to_string().into())).await.unwrap();
    }
    pub(super) async fn recv(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(3), self.ws.next())
                .await
                .expect("no frame within 3 s")
                .expect("socket closed")
                .unwrap();
            if let Message::Text(t) = msg {
                return serde_json::from_str(&t).unwrap();
            }
        }
    }
    /// Next frame of type `ty`, skipping others.
    pub(super) async fn recv_type(&mut self, ty: &str) -> Value {
        loop {
            let v = self.recv().await;
            if v["type"] == ty {
                return v;
            }
        }
    }
}

const ORG: &str = "8:orgid:organizer-1";

#[tokio::test]
async fn lobby_admit_roster_and_recording_notice_within_a_second() {
    let s = Server::start().await;
    let org_token = s.token(ORG, Some("Olivia"), &[Scope::Voip, Scope::Chat]);
    let (status, meeting) = s.rest("POST", "/meetings", &org_token, json!({"subject":"Support"})).await;
    assert_eq!(status, 201, "{meeting}");
    let ext_id = s.external_id();
    let mut ext = s.connect(&s.token(&ext_id, None, &[Scope::Voip])).await;
    ext.send(json!({"type":"join","requestId":"j1","displayName":"Bob (External)",
        "target":{"kind":"meetingCode","meetingCode":meeting["meetingCode"],"passcode":meeting["passcode"]}}))
        .await;
    let joined = ext.recv_type("joined").await;
    assert_eq!(joined["requestId"], "j1");
    assert_eq!(joined["snapshot"]["state"], "lobby");
    let ext_pid = joined["snapshot"]["participantId"].as_str().unwrap().to_string();

    let mut org = s.connect(&org_token).await;
    org.send(json!({"type":"join","target":{"kind":"meetingLink","joinUrl":meeting["joinUrl"]}})).await;
    let joined = org.recv_type("joined").await;
    assert_eq!(joined["snapshot"]["role"], "organizer");
    let waiting: Vec<&Value> = joined["snapshot"]["participants"].as_array().unwrap().iter().collect();
    let bob = waiting.iter().find(|p| p["participantId"] == ext_pid.as_str()).unwrap();
    assert_eq!(bob["displayName"], "Bob (External)");
    assert_eq!(bob["state"], "lobby");
    assert_eq!(bob["participantType"], "ACS as Teams external user");
    // The operator's gauges see the waiting participant and the live meeting.
    assert_eq!(s.telemetry.lobby_size(), 1);
    assert_eq!(s.telemetry.active_meetings(), 1);

    // Recording starts while Bob still waits: the lobby hears it too, within 1 s.
    let started = Instant::now();
    let meeting_id = meeting["id"].as_str().unwrap();
    let (status, body) =
        s.rest("POST", &format!("/meetings/{meeting_id}/recording:start"), &org_token, json!({})).await;
    assert_eq!(status, 200, "{body}");
    let seen_ext = ext.recv_type("capture.changed").await;
    let seen_org = org.recv_type("capture.changed").await;
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
    assert_eq!(seen_ext["capture"]["recording"], "active");
    assert_eq!(seen_org["capture"]["recording"], "active");

    // Admit: Bob sees his state change live, the organizer gets the delta.
    org.send(json!({"type":"lobby.admit","requestId":"a1","participantId":ext_pid})).await;
    assert_eq!(org.recv_type("ack").await["requestId"], "a1");
    let delta = org.recv_type("roster.delta").await;
    assert_eq!(delta["delta"], json!({"change":"stateChanged","participantId":ext_pid,"state":"connected"}));
    let snap = ext.recv_type("snapshot").await;
    assert_eq!(snap["snapshot"]["state"], "connected");
    // Admitted: the lobby gauge drains (the actor updates it right after sending the frames).
    let deadline = Instant::now() + Duration::from_secs(2);
    while s.telemetry.lobby_size() != 0 {
        assert!(Instant::now() < deadline, "lobby gauge did not drop to 0");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(snap["snapshot"]["capture"]["recording"], "active");

    // External users cannot stop (or start) recording.
    ext.send(json!({"type":"recording.stop","requestId":"r1"})).await;
    let err = ext.recv_type("error").await;
    assert_eq!((err["code"].as_str(), err["requestId"].as_str()), (Some("ExternalUsersNotAllowed"), Some("r1")));

    ext.send(json!({"type":"leave"})).await;
    assert_eq!(ext.recv_type("session.ended").await["reason"], "Left");
    assert_eq!(org.recv_type("roster.delta").await["delta"]["change"], "left");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = s.observer.started.lock().unwrap().clone();
    let ended = s.observer.ended.lock().unwrap().clone();
    assert_eq!(started.len(), 2);
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].session_id, ext_pid);
}

#[tokio::test]
async fn bad_input_gets_error_frames_and_the_socket_keeps_working() {
    let s = Server::start().await;
    let org_token = s.token(ORG, Some("Olivia"), &[Scope::Voip]);
    let (_, meeting) = s.rest("POST", "/meetings", &org_token, json!({})).await;
    let mut c = s.connect(&s.token(&s.external_id(), None, &[Scope::VoipJoin])).await;
    let expect = async |c: &mut Client, frame: Message, code: &str| {
        c.ws.send(frame).await.unwrap();
        let e = c.recv_type("error").await;
        assert_eq!(e["code"], code, "{e}");
    };
    expect(&mut c, Message::Text("{nope".into()), "InvalidJson").await;
    expect(&mut c, Message::Text(r#"{"type":"teleport"}"#.into()), "UnknownMessageType").await;
    expect(&mut c, Message::Text(r#"{"type":"lobby.admit"}"#.into()), "InvalidParameter").await;
    let big = json!({"type":"ping","pad":"x".repeat(70 * 1024)}).to_string();
    expect(&mut c, Message::Text(big.into()), "PayloadTooLarge").await;
    expect(&mut c, Message::Binary(vec![1, 2, 3].into()), "InvalidJson").await;
    let admit = json!({"type":"lobby.admit","participantId":"x"}).to_string();
    expect(&mut c, Message::Text(admit.into()), "InvalidState").await;
    let wrong =
        json!({"type":"join","target":{"kind":"meetingCode","meetingCode":meeting["meetingCode"],"passcode":"nope00"}});
    expect(&mut c, Message::Text(wrong.to_string().into()), "WrongPasscode").await;
    // An unknown meeting code reads like a wrong passcode, so codes cannot be enumerated.
    let unknown = json!({"type":"join","target":{"kind":"meetingCode","meetingCode":"999999999999","passcode":"x"}});
    expect(&mut c, Message::Text(unknown.to_string().into()), "WrongPasscode").await;
    let bad_group = json!({"type":"join","target":{"kind":"groupCall","groupId":"not-a-uuid"}});
    expect(&mut c, Message::Text(bad_group.to_string().into()), "InvalidParameter").await;
    // voip.join joins existing calls only: it cannot start a group call or place calls.
    let fresh_group = json!({"type":"join","target":{"kind":"groupCall","groupId":uuid::Uuid::new_v4().to_string()}});
    expect(&mut c, Message::Text(fresh_group.to_string().into()), "InsufficientScope").await;
    let place = json!({"type":"call.place","targets":["8:orgid:someone"]});
    expect(&mut c, Message::Text(place.to_string().into()), "InsufficientScope").await;
    // media.attach is for QUIC connections (datagram media); a WebSocket uses media.offer.
    expect(&mut c, Message::Text(r#"{"type":"media.attach","tracks":[]}"#.into()), "BadRequest").await;
    // Still alive.
    c.send(json!({"type":"ping","nonce":7})).await;
    assert_eq!(c.recv_type("pong").await["nonce"], 7);
    // Every error frame is counted by code for operators.
    for (code, n) in [
        (ErrorCode::InvalidJson, 2),
        (ErrorCode::UnknownMessageType, 1),
        (ErrorCode::WrongPasscode, 2),
        (ErrorCode::InsufficientScope, 2),
    ] {
        assert_eq!(s.telemetry.errors(code), n, "{code:?}");
    }

    // A chat-only token is refused before the upgrade.
    let url = format!("ws://{}/signaling/v1?access_token={}", s.addr, s.token(&s.external_id(), None, &[Scope::Chat]));
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 403),
        other => panic!("expected HTTP 403, got {:?}", other.map(|_| ())),
    }
    let url = format!("ws://{}/signaling/v1", s.addr);
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 401),
        other => panic!("expected HTTP 401, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn calls_ring_accept_and_external_to_directory_is_refused() {
    let media = Arc::new(FakeMedia {
        left: Mutex::new(Vec::new()),
        shares: Mutex::new(Vec::new()),
        subscribed: Mutex::new(Vec::new()),
    });
    let s = Server::start_with(SignalingConfig::default(), media.clone()).await;
    let mut ext = s.connect(&s.token(&s.external_id(), None, &[Scope::Voip])).await;
    let mut a = s.connect(&s.token("8:orgid:a", Some("Ada"), &[Scope::Voip])).await;
    let mut b = s.connect(&s.token("8:orgid:b", Some("Ben"), &[Scope::Voip])).await;
    ext.send(json!({"type":"call.place","requestId":"p0","targets":["8:orgid:b"]})).await;
    let e = ext.recv_type("error").await;
    assert_eq!(e["code"], "ExternalUserCannotCallDirectoryUser");

    a.send(json!({"type":"call.place","requestId":"p1","targets":["8:orgid:b"]})).await;
    let placed = a.recv_type("call.placed").await;
    let call_id = placed["callId"].as_str().unwrap().to_string();
    let incoming = b.recv_type("call.incoming").await;
    assert_eq!(incoming["callId"], call_id.as_str());
    assert_eq!(incoming["caller"]["displayName"], "Ada");
    // Media before the call is connected is out of order.
    b.send(json!({"type":"media.offer","sdp":"v=0","callId":call_id})).await;
    assert_eq!(b.recv_type("error").await["code"], "InvalidState");
    b.send(json!({"type":"call.accept","callId":call_id})).await;
    assert_eq!(a.recv_type("call.connected").await["callId"], call_id.as_str());
    // Call media goes to the media plane, keyed by call; outsiders cannot negotiate.
    a.send(json!({"type":"media.iceCandidate","callId":call_id,"candidate":{"candidate":"c"}})).await;
    assert_eq!(a.recv_type("error").await["code"], "InvalidState", "ICE before offer");
    a.send(json!({"type":"media.offer","sdp":"v=0","callId":call_id})).await;
    let answer = a.recv_type("media.answer").await;
    assert_eq!(
        (answer["sdp"].as_str(), answer["callId"].as_str()),
        (Some("answer-to:v=0:send=true"), Some(call_id.as_str()))
    );
    ext.send(json!({"type":"media.offer","sdp":"v=0","callId":call_id})).await;
    assert_eq!(ext.recv_type("error").await["code"], "InvalidState");
    a.send(json!({"type":"call.hangUp","callId":call_id})).await;
    b.recv_type("call.ended").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(media.left.lock().unwrap().as_slice(), [format!("{call_id}/8:orgid:a")]);
    assert_eq!(s.observer.started.lock().unwrap().len(), 2);
    assert_eq!(s.observer.ended.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn dropped_socket_reconnects_with_resume_and_group_call_rule_holds() {
    let s = Server::start().await;
    let group = uuid::Uuid::new_v4().to_string();
    let a_token = s.token("8:orgid:a", Some("Ada"), &[Scope::Voip]);
    let b_token = s.token("8:orgid:b", Some("Ben"), &[Scope::Voip]);
    let mut a = s.connect(&a_token).await;
    let mut b = s.connect(&b_token).await;
    let join = json!({"type":"join","target":{"kind":"groupCall","groupId":group}});
    a.send(join.clone()).await;
    a.recv_type("joined").await;
    b.send(join.clone()).await;
    let joined = b.recv_type("joined").await;
    let conversation_id = joined["snapshot"]["conversationId"].as_str().unwrap().to_string();
    let b_pid = joined["snapshot"]["participantId"].as_str().unwrap().to_string();
    let resume_token = joined["resumeToken"].as_str().unwrap().to_string();
    assert_eq!(a.recv_type("roster.delta").await["delta"]["change"], "joined");

    drop(b); // the socket dies without `leave`
    let d = a.recv_type("roster.delta").await;
    assert_eq!(d["delta"], json!({"change":"stateChanged","participantId":b_pid,"state":"reconnecting"}));

    // Someone else cannot take the seat; Ben can.
    let mut intruder = s.connect(&a_token).await;
    intruder
        .send(
            json!({"type":"resume","conversationId":conversation_id,"participantId":b_pid,"resumeToken":resume_token}),
        )
        .await;
    assert_eq!(intruder.recv_type("error").await["code"], "Forbidden");
    let mut b2 = s.connect(&b_token).await;
    b2.send(json!({"type":"resume","conversationId":conversation_id,"participantId":b_pid,"resumeToken":resume_token}))
        .await;
    assert_eq!(b2.recv_type("snapshot").await["snapshot"]["state"], "connected");
    let d = a.recv_type("roster.delta").await;
    assert_eq!(d["delta"]["state"], "connected");
    assert!(s.observer.ended.lock().unwrap().is_empty(), "a resumed session is the same session");

    // A group call started by an external user refuses directory users.
    let group2 = uuid::Uuid::new_v4().to_string();
    let mut ext = s.connect(&s.token(&s.external_id(), None, &[Scope::Voip])).await;
    ext.send(json!({"type":"join","target":{"kind":"groupCall","groupId":group2}})).await;
    assert_eq!(ext.recv_type("joined").await["snapshot"]["participants"][0]["participantType"], "ACS");
    intruder.send(json!({"type":"join","requestId":"g2","target":{"kind":"groupCall","groupId":group2}})).await;
    let e = intruder.recv_type("error").await;
    assert_eq!(
        (e["code"].as_str(), e["requestId"].as_str()),
        (Some("DirectoryUserCannotJoinExternalCall"), Some("g2"))
    );
    // The refused socket is not stuck: it can join elsewhere.
    intruder
        .send(json!({"type":"join","target":{"kind":"groupCall","groupId":uuid::Uuid::new_v4().to_string()}}))
        .await;
    intruder.recv_type("joined").await;
}

#[tokio::test]
async fn meetings_api_validates_and_authorizes() {
    let s = Server::start().await;
    let org_token = s.token(ORG, Some("Olivia"), &[Scope::Voip]);
    let ext_token = s.token(&s.external_id(), None, &[Scope::Voip]);
    let (status, body) = s.rest("POST", "/meetings", &ext_token, json!({})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("Forbidden")));
    let (status, body) = s.rest("POST", "/meetings", &org_token, json!({"policy":{"maxParticipants":5000}})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("InvalidParameter")));
    let (status, body) = s.rest("POST", "/meetings", &org_token, json!({"coOrganizers":["8:acs:x_y"]})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("InvalidIdentifier")));
    // Lists are capped (issue #19: 21,000 co-organizers once cost 2.4 s of CPU on a worker).
    let eleven: Vec<String> = (0..11).map(|i| format!("8:orgid:co-{i}")).collect();
    let (status, body) = s.rest("POST", "/meetings", &org_token, json!({"coOrganizers": eleven})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str(), body["error"]["target"].as_str()),
        (400, Some("InvalidParameter"), Some("coOrganizers")),
        "{body}"
    );
    let (status, body) = s.rest("POST", "/meetings", &org_token, json!({"subjekt":"typo"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("InvalidJson")));
    let (status, m) =
        s.rest("POST", "/meetings", &org_token, json!({"subject":"Q3","policy":{"lobbyBypass":"everyone"}})).await;
    assert_eq!(status, 201);
    assert_eq!(m["policy"]["lobbyBypass"], "everyone");
    assert_eq!(m["policy"]["externalDialOut"], false);
    assert_eq!(m["meetingCode"].as_str().unwrap().len(), 12);
    let id = m["id"].as_str().unwrap();
    let (status, _) = s.rest("GET", &format!("/meetings/{id}"), &ext_token, Value::Null).await;
    assert_eq!(status, 403);
    let (status, body) =
        s.rest("PATCH", &format!("/meetings/{id}"), &org_token, json!({"policy":{"externalDialOut":true}})).await;
    assert_eq!((status, body["policy"]["externalDialOut"].as_bool()), (200, Some(true)));
    let (status, body) = s.rest("POST", &format!("/meetings/{id}/recording:start"), &org_token, json!({})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("InvalidState")), "not in progress");
    let (status, _) = s.rest("DELETE", &format!("/meetings/{id}"), &org_token, Value::Null).await;
    assert_eq!(status, 204);
    let (status, _) = s.rest("GET", &format!("/meetings/{id}"), &org_token, Value::Null).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn transfer_to_a_queue_rings_members_in_turn() {
    let config = SignalingConfig {
        calls: crate::domain::calls::CallsConfig {
            queues: vec![crate::domain::calls::CallQueueConfig {
                app_id: "support".into(),
                name: Some("Support".into()),
                members: vec!["8:orgid:agent-1".into(), "8:orgid:agent-2".into()],
                member_ring_timeout_secs: 15,
                hold_audio: None,
            }],
            ..Default::default()
        },
        ..Default::default()
    };
    let s = Server::start_with(config, Arc::new(crate::gateway::MediaUnavailable)).await;
    let mut a = s.connect(&s.token("8:orgid:a", Some("Ada"), &[Scope::Voip])).await;
    let mut b = s.connect(&s.token("8:orgid:b", Some("Ben"), &[Scope::Voip])).await;
    let mut agent1 = s.connect(&s.token("8:orgid:agent-1", Some("Agent One"), &[Scope::Voip])).await;
    let mut agent2 = s.connect(&s.token("8:orgid:agent-2", Some("Agent Two"), &[Scope::Voip])).await;
    a.send(json!({"type":"call.place","targets":["8:orgid:b"]})).await;
    let call_id = a.recv_type("call.placed").await["callId"].as_str().unwrap().to_string();
    b.recv_type("call.incoming").await;
    b.send(json!({"type":"call.accept","requestId":"acc","callId":call_id})).await;
    assert_eq!(b.recv_type("ack").await["requestId"], "acc");
    a.recv_type("call.connected").await;

    b.send(json!({"type":"call.transfer","requestId":"t1","callId":call_id,"target":"28:orgid:support"})).await;
    assert_eq!(b.recv_type("ack").await["requestId"], "t1");
    let first = agent1.recv_type("call.incoming").await;
    assert_eq!(first["queue"], "28:orgid:support");
    agent1.send(json!({"type":"call.decline","callId":call_id})).await;
    agent2.recv_type("call.incoming").await;
    agent2.send(json!({"type":"call.accept","callId":call_id})).await;
    assert_eq!(b.recv_type("call.transferAccepted").await["acceptedBy"]["rawId"], "8:orgid:agent-2");
    assert_eq!(b.recv_type("call.ended").await["reason"], "transferred");
    assert_eq!(a.recv_type("call.participantJoined").await["participant"]["rawId"], "8:orgid:agent-2");
}

#[tokio::test]
async fn native_directory_client_joins_unbilled() {
    let s = Server::start().await;
    let idp = s.state.auth.directory.dev_idp.as_ref().expect("dev IdP on by default");
    let req = crate::auth::directory::DevTokenRequest {
        oid: "native-1".into(),
        name: "Nadia".into(),
        app_id: None,
        scp: None,
        tid: None,
        lifetime_seconds: None,
    };
    let idp_token = idp.mint(&req, now_ms() / 1000).unwrap().token;
    let url = format!("ws://{}/signaling/v1/native?idp_token={idp_token}", s.addr);
    let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut c = Client { ws };
    let welcome = c.recv_type("welcome").await;
    assert_eq!(welcome["displayName"], "Nadia");
    let group = uuid::Uuid::new_v4().to_string();
    c.send(json!({"type":"join","target":{"kind":"groupCall","groupId":group}})).await;
    let joined = c.recv_type("joined").await;
    assert_eq!(joined["snapshot"]["participants"][0]["participantType"], "Teams");
    let started = s.observer.started.lock().unwrap().clone();
    assert_eq!(started.len(), 1);
    assert!(!started[0].participant_type.is_billable());
    // A forged IdP token is refused before the upgrade.
    let url = format!("ws://{}/signaling/v1/native?idp_token=abc.def.ghi", s.addr);
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 401),
        other => panic!("expected HTTP 401, got {:?}", other.map(|_| ())),
    }
}

impl Server {
    /// A server-API request signed like the ACS SDKs sign it.
    pub(super) async fn hmac_rest(&self, method: &str, path_and_query: &str, body: Value) -> (u16, Value) {
        use base64::Engine;
        let body = if body.is_null() { String::new() } else { body.to_string() };
        let key = base64::engine::general_purpose::STANDARD.decode(&self.state.resource.access_key).unwrap();
        let date = httpdate::fmt_http_date(std::time::SystemTime::now());
        let host = self.addr.to_string();
        let hash = crate::auth::hmac::content_hash(body.as_bytes());
        let auth = crate::auth::hmac::authorization_header(&key, method, path_and_query, &date, &host, &hash);
        let req = axum::http::Request::builder()
            .method(method)
            .uri(path_and_query)
            .header("host", &host)
            .header("x-ms-date", &date)
            .header("x-ms-content-sha256", &hash)
            .header("authorization", auth)
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap();
        let resp = router(self.state.clone()).oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }
}

/// A media plane that answers every offer with a fixed answer.
struct FakeMedia {
    left: Mutex<Vec<String>>,
    shares: Mutex<Vec<(String, bool)>>,
    subscribed: Mutex<Vec<palaver_core::protocol::SlotSubscription>>,
}

impl super::MediaPlane for FakeMedia {
    fn offer(&self, session: super::MediaSession, sdp: String) -> super::media::MediaFuture<String> {
        Box::pin(async move { Ok(format!("answer-to:{sdp}:send={}", session.may_send_media)) })
    }
    fn ice_candidate(
        &self,
        _session: super::MediaSession,
        candidate: palaver_core::protocol::IceCandidate,
    ) -> super::media::MediaFuture<()> {
        Box::pin(async move {
            if candidate.candidate.is_empty() {
                Err(super::MediaError { code: palaver_core::ErrorCode::InvalidParameter, message: "empty".into() })
            } else {
                Ok(())
            }
        })
    }
    fn leave(&self, session: super::MediaSession) {
        self.left.lock().unwrap().push(session.participant_id);
    }
    fn screen_share(&self, session: super::MediaSession, active: bool) {
        self.shares.lock().unwrap().push((session.participant_id, active));
    }
    fn subscribe(&self, _session: super::MediaSession, slots: Vec<palaver_core::protocol::SlotSubscription>) {
        self.subscribed.lock().unwrap().extend(slots);
    }
}

#[tokio::test]
async fn rooms_join_by_role_media_negotiation_and_server_api_recording() {
    let media = Arc::new(FakeMedia {
        left: Mutex::new(Vec::new()),
        shares: Mutex::new(Vec::new()),
        subscribed: Mutex::new(Vec::new()),
    });
    let s = Server::start_with(SignalingConfig::default(), media.clone()).await;
    let presenter = s.external_id();
    let consumer = s.external_id();
    let (status, room) = s
        .hmac_rest(
            "POST",
            "/rooms?api-version=2025-03-13",
            json!({"participants":{presenter.clone():{"role":"Presenter"},consumer.clone():{"role":"Consumer"}}}),
        )
        .await;
    assert_eq!(status, 201, "{room}");
    let room_id = room["id"].as_str().unwrap().to_string();
    let join = json!({"type":"join","target":{"kind":"room","roomId":room_id}});

    // Not a participant: refused with the Rooms lookup's code.
    let mut stranger = s.connect(&s.token(&s.external_id(), None, &[Scope::Voip])).await;
    stranger.send(join.clone()).await;
    assert_eq!(stranger.recv_type("error").await["code"], "NotRoomParticipant");

    // A presenter may send media; a consumer only receives.
    let mut p = s.connect(&s.token(&presenter, None, &[Scope::Voip])).await;
    p.send(join.clone()).await;
    let joined = p.recv_type("joined").await;
    assert_eq!(joined["snapshot"]["participants"][0]["roomRole"], "Presenter");
    assert_eq!(joined["snapshot"]["role"], "presenter");
    p.send(json!({"type":"media.offer","sdp":"v=0"})).await;
    assert_eq!(p.recv_type("media.answer").await["sdp"], "answer-to:v=0:send=true");

    let mut c = s.connect(&s.token(&consumer, None, &[Scope::Voip])).await;
    c.send(join).await;
    let c_pid = c.recv_type("joined").await["snapshot"]["participantId"].as_str().unwrap().to_string();
    c.send(json!({"type":"self.mute","muted":false})).await;
    assert_eq!(c.recv_type("error").await["code"], "RoleNotAllowed");
    c.send(json!({"type":"media.offer","sdp":"v=0"})).await;
    assert_eq!(c.recv_type("media.answer").await["sdp"], "answer-to:v=0:send=false");
    c.send(json!({"type":"media.iceCandidate","candidate":{"candidate":""}})).await;
    assert_eq!(c.recv_type("error").await["code"], "InvalidParameter");
    c.send(json!({"type":"media.subscribe","requestId":"m1","slots":[{"mid":"3","paused":true}]})).await;
    assert_eq!(c.recv_type("ack").await["requestId"], "m1");
    // The ack is queued before the actor hands the subscription on: give it a moment.
    for _ in 0..100 {
        if !media.subscribed.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let subscribed = media.subscribed.lock().unwrap().clone();
    assert_eq!(
        subscribed,
        [palaver_core::protocol::SlotSubscription { mid: "3".into(), max_height: None, paused: Some(true) }]
    );

    // The server API (HMAC) starts transcription on the live room; everyone hears it.
    let conversation_id = joined["snapshot"]["conversationId"].as_str().unwrap();
    let (status, live) =
        s.hmac_rest("POST", &format!("/conversations/{conversation_id}/transcription:start"), Value::Null).await;
    assert_eq!(status, 200, "{live}");
    assert_eq!(live["capture"]["transcription"], "active");
    assert_eq!(p.recv_type("capture.changed").await["capture"]["transcription"], "active");
    assert_eq!(c.recv_type("capture.changed").await["capture"]["transcription"], "active");
    // A participant through REST: external users are refused.
    let (status, body) = s
        .rest(
            "POST",
            &format!("/conversations/{conversation_id}/recording:start"),
            &s.token(&presenter, None, &[Scope::Voip]),
            Value::Null,
        )
        .await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("ExternalUsersNotAllowed")));

    // The media plane trickles a server candidate to the consumer.
    let cand =
        palaver_core::protocol::IceCandidate { candidate: "candidate:9".into(), sdp_mid: None, sdp_m_line_index: None };
    assert!(s.state.gateway.send_ice_candidate(conversation_id, &c_pid, cand).await);
    assert_eq!(c.recv_type("media.iceCandidate").await["candidate"]["candidate"], "candidate:9");
    assert!(
        !s.state
            .gateway
            .send_ice_candidate(
                conversation_id,
                "nobody",
                palaver_core::protocol::IceCandidate { candidate: "x".into(), sdp_mid: None, sdp_m_line_index: None }
            )
            .await
    );

    // Active speakers from the media plane reach the roster.
    assert!(s.state.gateway.active_speakers(conversation_id, vec![c_pid.clone()]).await);
    let d = p.recv_type("roster.delta").await;
    assert_eq!(d["delta"], json!({"change":"activeSpeakers","participantIds":[c_pid]}));

    // Roster screen-share changes reach the media plane; slot maps reach one participant.
    let p_pid = joined["snapshot"]["participantId"].as_str().unwrap().to_string();
    p.send(json!({"type":"screenShare.start","requestId":"s1"})).await;
    p.recv_type("ack").await;
    p.send(json!({"type":"screenShare.stop","requestId":"s2"})).await;
    p.recv_type("ack").await;
    assert_eq!(media.shares.lock().unwrap().as_slice(), [(p_pid.clone(), true), (p_pid.clone(), false)]);
    let slot = |participant: Option<&str>| palaver_core::protocol::MediaSlot {
        mid: "3".into(),
        kind: palaver_core::protocol::MediaKind::Video,
        participant_id: participant.map(str::to_owned),
    };
    assert!(s.state.gateway.send_media_slots(conversation_id, &c_pid, vec![slot(Some(&p_pid))]).await);
    let frame = c.recv_type("media.slots").await;
    assert_eq!(frame["slots"], json!([{"mid":"3","kind":"video","participantId":p_pid}]));
    assert!(!s.state.gateway.send_media_slots(conversation_id, "nobody", vec![slot(None)]).await);
    assert!(!s.state.gateway.send_media_slots("no-such-conversation", &c_pid, vec![slot(None)]).await);

    c.send(json!({"type":"leave"})).await;
    c.recv_type("session.ended").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(media.left.lock().unwrap().as_slice(), [c_pid]);
}

#[tokio::test]
async fn calls_decline_and_no_answer_timeout() {
    let config = SignalingConfig {
        calls: crate::domain::calls::CallsConfig { ring_timeout_secs: 1, ..Default::default() },
        ..Default::default()
    };
    let s = Server::start_with(config, Arc::new(crate::gateway::MediaUnavailable)).await;
    let mut a = s.connect(&s.token("8:orgid:a", Some("Ada"), &[Scope::Voip])).await;
    let mut b = s.connect(&s.token("8:orgid:b", Some("Ben"), &[Scope::Voip])).await;
    a.send(json!({"type":"call.place","targets":["8:orgid:b"]})).await;
    let call_id = a.recv_type("call.placed").await["callId"].as_str().unwrap().to_string();
    b.recv_type("call.incoming").await;
    b.send(json!({"type":"call.decline","callId":call_id})).await;
    assert_eq!(a.recv_type("call.ended").await["reason"], "declined");

    let t0 = Instant::now();
    a.send(json!({"type":"call.place","targets":["8:orgid:b"]})).await;
    a.recv_type("call.placed").await;
    b.recv_type("call.incoming").await;
    assert_eq!(a.recv_type("call.ended").await["reason"], "noAnswer");
    assert_eq!(b.recv_type("call.ended").await["reason"], "noAnswer");
    assert!(t0.elapsed() >= Duration::from_millis(900), "rang for the configured second");
    assert!(s.observer.started.lock().unwrap().is_empty(), "ringing is not billed");
}

#[test]
fn gateway_config_reads_from_toml_with_defaults() {
    let cfg: super::GatewayConfig =
        toml::from_str("reconnect_grace_ms = 5000\n[rate_limit]\nper_second = 5\n").unwrap();
    assert_eq!(cfg.reconnect_grace_ms, 5000);
    assert_eq!(cfg.rate_limit.per_second, 5);
    assert_eq!(cfg.rate_limit.burst, super::RateLimit::default().burst);
    assert_eq!(cfg.idle_timeout_ms, super::GatewayConfig::default().idle_timeout_ms);
    assert!(toml::from_str::<super::GatewayConfig>("grace = 1").is_err(), "typos are refused");
    // The server's `[signaling.gateway]` section reaches the running gateway.
    let signaling: crate::app::SignalingConfig =
        toml::from_str("[gateway]\nreconnect_grace_ms = 7000\nheartbeat_interval_ms = 5000\n").unwrap();
    let state = AppState::open(signaling, Store::open_in_memory().unwrap(), AppParts::default()).unwrap();
    assert_eq!(state.gateway.config().reconnect_grace_ms, 7000);
    assert_eq!(state.gateway.config().heartbeat_interval_ms, 5000);
}

#[tokio::test]
async fn without_a_media_plane_offers_are_answered_media_unavailable() {
    let s = Server::start().await;
    let mut a = s.connect(&s.token(&s.external_id(), None, &[Scope::Voip])).await;
    let group = uuid::Uuid::new_v4().to_string();
    a.send(json!({"type":"join","target":{"kind":"groupCall","groupId":group}})).await;
    a.recv_type("joined").await;
    a.send(json!({"type":"media.offer","sdp":"v=0"})).await;
    assert_eq!(a.recv_type("error").await["code"], "MediaUnavailable");
}
