//! Signaling against the real binary over WSS (trusting the server's CA): lobby wait →
//! admit → roster deltas; the recording notice reaching everyone (lobby included) within
//! 1 s; bad input and a wrong passcode answered with error frames while the meeting keeps
//! working for everyone else. Also the WSS client helper the other signaling modules use.

use futures_util::{SinkExt, StreamExt};
use palaver_e2e::{Server, ServerOptions, TempDir};
use reqwest::{Method, StatusCode};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

type Stream = tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// One signaling socket.
pub(crate) struct Ws {
    pub stream: Stream,
    pub welcome: Value,
}

/// Open `wss://<server><path_and_query>`; an HTTP refusal comes back as `Err(Http(..))`.
pub(crate) async fn try_connect(server: &Server, path_and_query: &str) -> Result<Ws, WsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(server.ca_file()).expect("CA file") {
        roots.add(cert.expect("CA pem")).expect("CA cert");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let host = server.host().to_string();
    let tcp = tokio::net::TcpStream::connect(&host).await.expect("tcp connect");
    let name = host.rsplit_once(':').map(|(h, _)| h.trim_matches(['[', ']']).to_string()).unwrap();
    let server_name = ServerName::try_from(name).expect("server name");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(server_name, tcp).await.expect("TLS");
    let (stream, _) = tokio_tungstenite::client_async(format!("wss://{host}{path_and_query}"), tls).await?;
    let mut ws = Ws { stream, welcome: Value::Null };
    ws.welcome = ws.recv().await;
    assert_eq!(ws.welcome["type"], "welcome");
    Ok(ws)
}

/// A socket authenticated with an access token.
pub(crate) async fn connect(server: &Server, token: &str) -> Ws {
    try_connect(server, &format!("/signaling/v1?access_token={token}")).await.expect("websocket")
}

impl Ws {
    pub async fn send(&mut self, v: Value) {
        self.stream.send(Message::Text(v.to_string().into())).await.expect("send");
    }
    pub async fn send_raw(&mut self, m: Message) {
        self.stream.send(m).await.expect("send");
    }
    pub async fn recv(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(5), self.stream.next())
                .await
                .expect("no frame within 5 s")
                .expect("socket closed")
                .expect("socket error");
            if let Message::Text(t) = msg {
                return serde_json::from_str(&t).expect("JSON frame");
            }
        }
    }
    /// The next frame of type `ty` (others are skipped).
    pub async fn recv_type(&mut self, ty: &str) -> Value {
        loop {
            let v = self.recv().await;
            if v["type"] == ty {
                return v;
            }
        }
    }
}

async fn start() -> (TempDir, Server) {
    let dir = TempDir::new("palaver-e2e-signaling");
    let server = Server::start_in(dir.path(), ServerOptions::default()).await;
    (dir, server)
}

async fn create_meeting(server: &Server, organizer_token: &str, body: Value) -> Value {
    let (status, meeting) = server.bearer(Method::POST, "/meetings", organizer_token, Some(&body)).await;
    assert_eq!(status, StatusCode::CREATED, "{meeting}");
    meeting
}

#[tokio::test]
async fn lobby_wait_admit_roster_and_recording_notice_reach_everyone_within_a_second() {
    let (_dir, server) = start().await;
    let org_token = server.directory_user_token("0a000000-0000-4000-8000-00000000000a", "Olivia Organizer").await;
    let colleague_token = server.directory_user_token("0a000000-0000-4000-8000-00000000000b", "Carl Colleague").await;
    let (_, ext_token) = server.create_user_token(&["voip"]).await;
    let meeting = create_meeting(&server, &org_token, json!({"subject":"Claim 4711"})).await;

    // The customer waits in the lobby.
    let mut ext = connect(&server, &ext_token).await;
    ext.send(json!({"type":"join","requestId":"j","displayName":"Erin",
        "target":{"kind":"meetingCode","meetingCode":meeting["meetingCode"],"passcode":meeting["passcode"]}}))
        .await;
    let joined = ext.recv_type("joined").await;
    assert_eq!(joined["snapshot"]["state"], "lobby");
    assert_eq!(joined["snapshot"]["participants"], json!([]));
    let ext_pid = joined["snapshot"]["participantId"].as_str().unwrap().to_string();

    // A colleague of the organizer's tenant goes straight in and sees Erin waiting.
    let mut colleague = connect(&server, &colleague_token).await;
    colleague.send(json!({"type":"join","target":{"kind":"meetingLink","joinUrl":meeting["joinUrl"]}})).await;
    let snap = colleague.recv_type("joined").await["snapshot"].clone();
    assert_eq!((snap["state"].as_str(), snap["role"].as_str()), (Some("connected"), Some("presenter")));
    let erin =
        snap["participants"].as_array().unwrap().iter().find(|p| p["participantId"] == ext_pid.as_str()).unwrap();
    assert_eq!(erin["displayName"], "Erin (External)");
    assert_eq!(erin["state"], "lobby");

    // The organizer joins; the colleague gets a roster delta.
    let mut org = connect(&server, &org_token).await;
    org.send(json!({"type":"join","target":{"kind":"meetingLink","joinUrl":meeting["joinUrl"]}})).await;
    assert_eq!(org.recv_type("joined").await["snapshot"]["role"], "organizer");
    let d = colleague.recv_type("roster.delta").await;
    assert_eq!(d["delta"]["change"], "joined");
    assert_eq!(d["delta"]["participant"]["displayName"], "Olivia Organizer");

    // Recording starts through REST: all three, the lobby included, hear it within 1 s.
    let t0 = Instant::now();
    let path = format!("/meetings/{}/recording:start", meeting["id"].as_str().unwrap());
    let (status, live) = server.bearer(Method::POST, &path, &org_token, None).await;
    assert_eq!(status, StatusCode::OK, "{live}");
    for ws in [&mut ext, &mut colleague, &mut org] {
        assert_eq!(ws.recv_type("capture.changed").await["capture"]["recording"], "active");
    }
    let elapsed = t0.elapsed();
    println!("recording notice reached 3 participants (1 in the lobby) in {elapsed:?}");
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");

    // The colleague admits Erin: she sees it live; everyone in gets the delta.
    colleague.send(json!({"type":"lobby.admit","requestId":"adm","participantId":ext_pid})).await;
    assert_eq!(colleague.recv_type("ack").await["requestId"], "adm");
    let snap = ext.recv_type("snapshot").await["snapshot"].clone();
    assert_eq!(snap["state"], "connected");
    assert_eq!(snap["capture"]["recording"], "active");
    assert_eq!(snap["participants"].as_array().unwrap().len(), 3);
    let d = org.recv_type("roster.delta").await;
    assert_eq!(d["delta"], json!({"change":"stateChanged","participantId":ext_pid,"state":"connected"}));

    // Hand raised: a delta for the others. External users cannot touch recording.
    ext.send(json!({"type":"self.raiseHand","raised":true})).await;
    assert_eq!(org.recv_type("roster.delta").await["delta"]["change"], "handRaised");
    ext.send(json!({"type":"recording.stop","requestId":"rs"})).await;
    let e = ext.recv_type("error").await;
    assert_eq!((e["code"].as_str(), e["requestId"].as_str()), (Some("ExternalUsersNotAllowed"), Some("rs")));

    // The organizer ends the meeting for everyone.
    org.send(json!({"type":"meeting.end"})).await;
    for ws in [&mut ext, &mut colleague, &mut org] {
        assert_eq!(ws.recv_type("session.ended").await["reason"], "ConversationEnded");
    }
}

#[tokio::test]
async fn bad_input_and_wrong_passcode_get_error_frames_while_the_meeting_keeps_working() {
    let (_dir, server) = start().await;
    let org_token = server.directory_user_token("0a000000-0000-4000-8000-0000000000c1", "Olivia").await;
    let meeting = create_meeting(&server, &org_token, json!({"policy":{"lobbyBypass":"everyone"}})).await;
    let mut org = connect(&server, &org_token).await;
    org.send(json!({"type":"join","target":{"kind":"meetingLink","joinUrl":meeting["joinUrl"]}})).await;
    org.recv_type("joined").await;

    let (_, ext_token) = server.create_user_token(&["voip"]).await;
    let mut ext = connect(&server, &ext_token).await;
    let cases: Vec<(Message, &str)> = vec![
        (Message::Text("{not json".into()), "InvalidJson"),
        (Message::Text(r#"{"type":"warp.drive"}"#.into()), "UnknownMessageType"),
        (Message::Text(json!({"type":"ping","pad":"x".repeat(65 * 1024)}).to_string().into()), "PayloadTooLarge"),
        (Message::Text(r#"{"type":"self.mute","muted":"loud"}"#.into()), "InvalidParameter"),
        (Message::Text(r#"{"type":"lobby.admit","participantId":"p"}"#.into()), "InvalidState"),
        (
            Message::Text(
                json!({"type":"join","target":{"kind":"meetingCode","meetingCode":meeting["meetingCode"],"passcode":"000000"}})
                    .to_string()
                    .into(),
            ),
            "WrongPasscode",
        ),
    ];
    for (frame, code) in cases {
        ext.send_raw(frame).await;
        let e = ext.recv_type("error").await;
        assert_eq!(e["code"], code, "{e}");
    }
    // The same socket still works, and joins for real.
    ext.send(json!({"type":"ping","nonce":1})).await;
    assert_eq!(ext.recv_type("pong").await["nonce"], 1);
    ext.send(json!({"type":"join","target":{"kind":"meetingCode","meetingCode":meeting["meetingCode"],"passcode":meeting["passcode"]}})).await;
    assert_eq!(ext.recv_type("joined").await["snapshot"]["state"], "connected", "bypass: everyone, organizer present");
    assert_eq!(org.recv_type("roster.delta").await["delta"]["change"], "joined");
    // Out of order inside the meeting: admitting someone who is not waiting.
    ext.send(json!({"type":"screenShare.stop"})).await;
    assert_eq!(ext.recv_type("error").await["code"], "InvalidState");
    org.send(json!({"type":"self.mute","muted":true,"requestId":"m"})).await;
    assert_eq!(org.recv_type("ack").await["requestId"], "m");
    assert_eq!(ext.recv_type("roster.delta").await["delta"]["change"], "muted");

    // A chat-only token and a missing token are refused before the upgrade.
    let (_, chat_token) = server.create_user_token(&["chat"]).await;
    match try_connect(&server, &format!("/signaling/v1?access_token={chat_token}")).await {
        Err(WsError::Http(resp)) => assert_eq!(resp.status().as_u16(), 403),
        Err(e) => panic!("expected HTTP 403, got {e}"),
        Ok(_) => panic!("a chat-only token must be refused"),
    }
    match try_connect(&server, "/signaling/v1").await {
        Err(WsError::Http(resp)) => assert_eq!(resp.status().as_u16(), 401),
        Err(e) => panic!("expected HTTP 401, got {e}"),
        Ok(_) => panic!("a missing token must be refused"),
    }
}

#[tokio::test]
async fn native_directory_client_joins_as_an_unbilled_teams_participant() {
    let (_dir, server) = start().await;
    let org_token = server.directory_user_token("0a000000-0000-4000-8000-0000000000d1", "Olivia").await;
    let meeting = create_meeting(&server, &org_token, json!({})).await;
    let minted = server.dev_idp_token("0a000000-0000-4000-8000-0000000000d2", "Nadia Native", Value::Null).await;
    let idp = minted["token"].as_str().unwrap();
    let mut native =
        try_connect(&server, &format!("/signaling/v1/native?idp_token={idp}")).await.expect("native socket");
    assert_eq!(native.welcome["displayName"], "Nadia Native");
    native.send(json!({"type":"join","target":{"kind":"meetingLink","joinUrl":meeting["joinUrl"]}})).await;
    let snap = native.recv_type("joined").await["snapshot"].clone();
    let me = snap["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["participantId"] == snap["participantId"])
        .unwrap()
        .clone();
    assert_eq!(me["participantType"], "Teams");
    assert_eq!(snap["state"], "connected", "same tenant as the organizer: no lobby");
}
