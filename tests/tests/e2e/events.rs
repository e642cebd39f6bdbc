//! Event Grid subscriptions through the real binary: a configured subscription whose receiver
//! is down accepts a chat event (`ChatThreadCreated`) and call events (`CallStarted`,
//! `CallParticipantAdded` from a meeting join over WSS) into the outbox; the server is killed
//! with SIGKILL; after a restart the receiver comes up, answers the validation handshake, and
//! gets every accepted event (same ids) in the Event Grid schema with the `aeg-*` headers.
//! Also: a subscription added through the REST API survives the restart.

use crate::signaling::try_connect;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use palaver_e2e::{Server, ServerOptions, TempDir};
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Seen = Arc<Mutex<Vec<(HeaderMap, Value)>>>;

async fn receive(State(seen): State<Seen>, headers: HeaderMap, body: String) -> Response {
    let events: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let validation = headers.get("aeg-event-type").is_some_and(|v| v == "SubscriptionValidation");
    seen.lock().unwrap().push((headers, events.clone()));
    if validation {
        return axum::Json(json!({ "validationResponse": events[0]["data"]["validationCode"] })).into_response();
    }
    StatusCode::OK.into_response()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn subscription(server: &Server, name: &str) -> Value {
    let (status, body) = server.signed(Method::GET, &format!("/events/subscriptions/{name}"), "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[tokio::test]
async fn events_accepted_before_sigkill_are_delivered_after_restart() {
    let dir = TempDir::new("palaver-e2e-events");
    let port = free_port();
    let config = format!(
        "[usage]\nmetrics_listen = \"127.0.0.1:0\"\n\
         [events.delivery]\npoll_interval_ms = 50\nbase_backoff_ms = 100\nmax_backoff_ms = 400\n\
         [[events.subscriptions]]\nname = \"e2e-sub\"\nendpoint = \"http://127.0.0.1:{port}/hook\"\n\
         event_types = [\"Microsoft.Communication.ChatThreadCreated\", \"Microsoft.Communication.CallStarted\", \
         \"Microsoft.Communication.CallParticipantAdded\"]\n"
    );
    let options = ServerOptions { config_toml: Some(config), ..ServerOptions::default() };
    let mut server = Server::start_in(dir.path(), options.clone()).await;

    // a run-time subscription (durable too), to a receiver that never answers
    let body = json!({"endpoint": format!("http://127.0.0.1:{}/none", free_port()), "schema": "CloudEventSchemaV1_0"});
    let (status, created) = server.signed(Method::PUT, "/events/subscriptions/api-sub", &body.to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");

    // a chat event
    let (_, token) = server.create_user_token(&["chat", "voip"]).await;
    let (status, thread) = server
        .bearer(Method::POST, "/chat/threads?api-version=2024-03-07", &token, Some(&json!({"topic": "events"})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{thread}");
    let thread_id = thread["chatThread"]["id"].as_str().unwrap().to_string();

    // call events: a directory user joins a meeting over WSS
    let org = server.directory_user_token("0b000000-0000-4000-8000-0000000000e1", "Eve").await;
    let (status, meeting) =
        server.bearer(Method::POST, "/meetings", &org, Some(&json!({"policy":{"lobbyBypass":"everyone"}}))).await;
    assert_eq!(status, StatusCode::CREATED, "{meeting}");
    let mut ws = try_connect(&server, &format!("/signaling/v1?access_token={org}")).await.expect("socket");
    ws.send(json!({"type":"join","target":{"kind":"meetingLink","joinUrl":meeting["joinUrl"]}})).await;
    ws.recv_type("joined").await;

    // accepted: in the outbox, undelivered (the receiver is down, the handshake keeps failing)
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let sub = subscription(&server, "e2e-sub").await;
        if sub["deliveries"]["pending"].as_u64() == Some(3) {
            assert_ne!(sub["validationState"], "Validated");
            break;
        }
        if Instant::now() >= deadline {
            let db = rusqlite::Connection::open(dir.path().join("events.db")).unwrap();
            let mut stmt = db.prepare("SELECT event_type, subscription, state FROM outbox").unwrap();
            let rows: Vec<(String, Option<String>, String)> =
                stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect();
            panic!("events not accepted: {sub}; outbox: {rows:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.kill();
    drop(ws);

    let seen: Seen = Arc::default();
    let app = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("receiver port");
    let receiver = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let server = Server::start_in(dir.path(), options).await;

    let deadline = Instant::now() + Duration::from_secs(30);
    let notifications = |seen: &Seen| -> Vec<(HeaderMap, Value)> {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|(h, _)| h.get("aeg-event-type").is_some_and(|v| v == "Notification"))
            .cloned()
            .collect()
    };
    while notifications(&seen).len() < 3 {
        assert!(Instant::now() < deadline, "delivered after restart: {:?}", notifications(&seen));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first = seen.lock().unwrap()[0].clone();
    assert_eq!(first.0["aeg-event-type"], "SubscriptionValidation", "the handshake precedes every delivery");
    let delivered = notifications(&seen);
    let mut types: Vec<String> =
        delivered.iter().map(|(_, v)| v[0]["eventType"].as_str().unwrap().to_string()).collect();
    types.sort();
    assert_eq!(
        types,
        [
            "Microsoft.Communication.CallParticipantAdded",
            "Microsoft.Communication.CallStarted",
            "Microsoft.Communication.ChatThreadCreated"
        ]
    );
    for (headers, body) in &delivered {
        assert_eq!(headers["aeg-subscription-name"], "E2E-SUB");
        assert_eq!(headers["aeg-metadata-version"], "1");
        let event = &body[0];
        for key in ["id", "topic", "subject", "data", "eventType", "eventTime", "dataVersion", "metadataVersion"] {
            assert!(event.get(key).is_some(), "{key} missing in {event}");
        }
    }
    let chat =
        delivered.iter().find(|(_, v)| v[0]["eventType"] == "Microsoft.Communication.ChatThreadCreated").unwrap();
    assert_eq!(chat.1[0]["data"]["threadId"], thread_id.as_str());
    let sub = subscription(&server, "e2e-sub").await;
    assert_eq!(sub["validationState"], "Validated");
    let api = subscription(&server, "api-sub").await;
    assert_eq!(api["origin"], "api", "the run-time subscription survived SIGKILL");
    receiver.abort();
}
