//! The delivery worker against loopback receivers: the Event Grid and CloudEvents handshakes,
//! `aeg-*` headers, retries of a flaky receiver, callbacks in order per call connection with a
//! verifiable JWT, and dead letters.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use palaver_core::{CallbackEvent, EventPublisher, SystemEvent};
use palaver_events::{
    DeliveryConfig, EventSchema, Events, EventsConfig, EventsOptions, SubscriptionConfig, spawn_delivery,
};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Default)]
struct Receiver {
    /// (method, headers, body) of every request.
    seen: Arc<Mutex<Vec<(Method, HeaderMap, String)>>>,
    /// Fail the first attempt of each event id / callback type with 500.
    fail_first: bool,
    failed: Arc<Mutex<Vec<String>>>,
    /// Answer everything 410.
    always_fail: bool,
}

async fn receive(State(rx): State<Receiver>, method: Method, headers: HeaderMap, body: String) -> Response {
    rx.seen.lock().unwrap().push((method.clone(), headers.clone(), body.clone()));
    if rx.always_fail {
        return StatusCode::GONE.into_response();
    }
    if method == Method::OPTIONS {
        let origin = headers.get("webhook-request-origin").unwrap().to_str().unwrap().to_string();
        return (StatusCode::OK, [("WebHook-Allowed-Origin", origin)]).into_response();
    }
    if headers.get("aeg-event-type").is_some_and(|v| v == "SubscriptionValidation") {
        let events: Value = serde_json::from_str(&body).unwrap();
        let code = events[0]["data"]["validationCode"].as_str().unwrap().to_string();
        return axum::Json(json!({ "validationResponse": code })).into_response();
    }
    let parsed: Value = serde_json::from_str(&body).unwrap();
    let first = if parsed.is_array() { parsed[0].clone() } else { parsed };
    let id = first["id"].as_str().unwrap().to_string();
    if rx.fail_first {
        let mut failed = rx.failed.lock().unwrap();
        if !failed.contains(&id) {
            failed.push(id);
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    }
    StatusCode::OK.into_response()
}

async fn start(rx: Receiver) -> String {
    let app = Router::new().route("/hook", any(receive)).with_state(rx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/hook")
}

fn fast() -> DeliveryConfig {
    DeliveryConfig {
        poll_interval_ms: 20,
        base_backoff_ms: 30,
        max_backoff_ms: 200,
        max_attempts: 4,
        ..Default::default()
    }
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn notifications(rx: &Receiver) -> Vec<(HeaderMap, String)> {
    rx.seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(m, h, _)| m == Method::POST && h.get("aeg-event-type").is_some_and(|v| v == "Notification"))
        .map(|(_, h, b)| (h.clone(), b.clone()))
        .collect()
}

#[tokio::test]
async fn event_grid_subscription_is_validated_then_delivered_with_retries() {
    let rx = Receiver { fail_first: true, ..Default::default() };
    let endpoint = start(rx.clone()).await;
    let config = EventsConfig {
        subscriptions: vec![SubscriptionConfig {
            name: "cc-backend".into(),
            endpoint,
            event_types: vec!["Microsoft.Communication.IncomingCall".into()],
            ..Default::default()
        }],
        delivery: fast(),
        ..Default::default()
    };
    let events = Events::open_in_memory(EventsOptions::new(config, "res-1")).unwrap();
    events.set_public_url("https://127.0.0.1:1");
    // accepted before any handshake: durable, waits for validation
    let incoming = SystemEvent {
        event_type: "Microsoft.Communication.IncomingCall".into(),
        subject: "/caller/8:acs:res-1_a/recipient/8:acs:res-1_b".into(),
        data: json!({ "serverCallId": "s1" }),
    };
    events.publish(incoming).await.unwrap();
    events
        .publish(SystemEvent {
            event_type: "Microsoft.Communication.CallStarted".into(),
            subject: "x".into(),
            data: json!({}),
        })
        .await
        .unwrap();
    let task = spawn_delivery(events.clone());
    wait_for("the delivery", || notifications(&rx).len() == 2).await;
    let seen = rx.seen.lock().unwrap().clone();
    let (_, h0, b0) = &seen[0];
    assert_eq!(h0["aeg-event-type"], "SubscriptionValidation", "the handshake comes first");
    let validation: Value = serde_json::from_str(b0).unwrap();
    assert_eq!(validation[0]["eventType"], "Microsoft.EventGrid.SubscriptionValidationEvent");
    assert!(
        validation[0]["data"]["validationUrl"]
            .as_str()
            .unwrap()
            .starts_with("https://127.0.0.1:1/events/subscriptions/cc-backend/validate?code=")
    );
    let sent = notifications(&rx);
    assert_eq!(sent[0].1, sent[1].1, "the retry sends the same body");
    assert_eq!(sent[0].0["aeg-delivery-count"], "0");
    assert_eq!(sent[1].0["aeg-delivery-count"], "1");
    for (h, _) in &sent {
        assert_eq!(h["aeg-subscription-name"], "CC-BACKEND");
        assert_eq!(h["aeg-data-version"], "1.0");
        assert_eq!(h["aeg-metadata-version"], "1");
        assert_eq!(h["content-type"], "application/json");
    }
    let body: Value = serde_json::from_str(&sent[1].1).unwrap();
    assert_eq!(body.as_array().unwrap().len(), 1);
    assert_eq!(body[0]["eventType"], "Microsoft.Communication.IncomingCall");
    assert_eq!(body[0]["data"]["serverCallId"], "s1");
    assert!(body[0]["topic"].as_str().unwrap().ends_with("/communicationServices/res-1"));
    let view = events.subscription("cc-backend").unwrap().unwrap();
    assert_eq!(view.validation_state, "Validated");
    wait_for("the delivery to be recorded", || {
        events.subscription("cc-backend").unwrap().unwrap().deliveries.delivered == 1
    })
    .await;
    // CallStarted was filtered out by event type
    assert!(sent.iter().all(|(_, b)| !b.contains("CallStarted")));
    task.stop();
}

#[tokio::test]
async fn cloud_event_subscription_uses_the_options_handshake() {
    let rx = Receiver::default();
    let endpoint = start(rx.clone()).await;
    let config = EventsConfig {
        subscriptions: vec![SubscriptionConfig {
            name: "ce-sub".into(),
            endpoint,
            schema: EventSchema::CloudEventSchemaV10,
            ..Default::default()
        }],
        delivery: fast(),
        ..Default::default()
    };
    let events = Events::open_in_memory(EventsOptions::new(config, "res-1")).unwrap();
    let task = spawn_delivery(events.clone());
    events
        .publish(SystemEvent {
            event_type: "Microsoft.Communication.ChatThreadCreated".into(),
            subject: "thread/19:x".into(),
            data: json!({"threadId": "19:x"}),
        })
        .await
        .unwrap();
    wait_for("the delivery", || notifications(&rx).len() == 1).await;
    let seen = rx.seen.lock().unwrap().clone();
    assert_eq!(seen[0].0, Method::OPTIONS);
    assert_eq!(seen[0].1["webhook-request-origin"], "eventgrid.azure.net");
    let (h, b) = &notifications(&rx)[0];
    assert_eq!(h["content-type"], "application/cloudevents+json; charset=utf-8");
    let event: Value = serde_json::from_str(b).unwrap();
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(event["type"], "Microsoft.Communication.ChatThreadCreated");
    assert_eq!(event["subject"], "thread/19:x");
    task.stop();
}

#[tokio::test]
async fn callbacks_arrive_in_order_one_per_post_and_signed() {
    let rx = Receiver { fail_first: true, ..Default::default() };
    let endpoint = start(rx.clone()).await;
    let config = EventsConfig { delivery: fast(), issuer: Some("https://palaver.test".into()), ..Default::default() };
    let events = Events::open_in_memory(EventsOptions::new(config, "res-1")).unwrap();
    let task = spawn_delivery(events.clone());
    let uri = format!("{endpoint}?secret=a%20b&x=1");
    for name in ["CallConnected", "PlayStarted", "PlayCompleted", "CallDisconnected"] {
        events
            .callback(CallbackEvent {
                callback_uri: uri.clone(),
                call_connection_id: "cc-1".into(),
                event_type: format!("Microsoft.Communication.{name}"),
                data: json!({ "callConnectionId": "cc-1", "operationContext": name }),
            })
            .await
            .unwrap();
    }
    let accepted = |rx: &Receiver| {
        let failed = rx.failed.lock().unwrap().clone();
        let seen = rx.seen.lock().unwrap().clone();
        // the accepted attempts are the second sight of each id
        let mut out = Vec::new();
        let mut count = std::collections::HashMap::<String, u32>::new();
        for (_, h, b) in seen {
            let v: Value = serde_json::from_str(&b).unwrap();
            let id = v[0]["id"].as_str().unwrap().to_string();
            let n = count.entry(id.clone()).or_default();
            *n += 1;
            if *n == 2 || !failed.contains(&id) {
                out.push((h, v));
            }
        }
        out
    };
    wait_for("four callbacks", || accepted(&rx).len() == 4).await;
    let got = accepted(&rx);
    let types: Vec<&str> = got.iter().map(|(_, v)| v[0]["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "Microsoft.Communication.CallConnected",
            "Microsoft.Communication.PlayStarted",
            "Microsoft.Communication.PlayCompleted",
            "Microsoft.Communication.CallDisconnected"
        ]
    );
    // strictly in order: every request (failures included) sees the types in order
    let all: Vec<String> = rx
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|(_, _, b)| serde_json::from_str::<Value>(b).unwrap()[0]["type"].as_str().unwrap().to_string())
        .collect();
    let mut sorted = all.clone();
    let rank = |t: &str| types.iter().position(|x| *x == t).unwrap();
    sorted.sort_by_key(|t| rank(t));
    assert_eq!(all, sorted, "a later callback waited while an earlier one was retried");
    let jwks = events.jwks();
    let jwk = &jwks["keys"][0];
    let key =
        jsonwebtoken::DecodingKey::from_rsa_components(jwk["n"].as_str().unwrap(), jwk["e"].as_str().unwrap()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&["res-1"]);
    validation.set_issuer(&["https://palaver.test"]);
    for (h, v) in &got {
        assert_eq!(v.as_array().unwrap().len(), 1);
        let token = h["authorization"].to_str().unwrap().strip_prefix("Bearer ").unwrap();
        jsonwebtoken::decode::<Value>(token, &key, &validation).unwrap();
        assert_eq!(v[0]["source"], "calling/callConnections/cc-1");
        assert_eq!(v[0]["datacontenttype"], "application/json");
    }
    task.stop();
}

#[tokio::test]
async fn a_failing_endpoint_is_dead_lettered_after_the_retry_limit() {
    let rx = Receiver { always_fail: true, ..Default::default() };
    let endpoint = start(rx.clone()).await;
    let config = EventsConfig { delivery: fast(), ..Default::default() };
    let events = Events::open_in_memory(EventsOptions::new(config, "res-1")).unwrap();
    let task = spawn_delivery(events.clone());
    for n in 0..2 {
        events
            .callback(CallbackEvent {
                callback_uri: endpoint.clone(),
                call_connection_id: "cc-dead".into(),
                event_type: format!("Microsoft.Communication.Event{n}"),
                data: json!({}),
            })
            .await
            .unwrap();
    }
    wait_for("dead letters", || events.dead_letters(10).unwrap().len() == 2).await;
    let dead = events.dead_letters(10).unwrap();
    assert!(dead.iter().all(|d| d.attempts == 4 && d.last_error.as_deref() == Some("HTTP 410")));
    assert_eq!(rx.seen.lock().unwrap().len(), 8);
    // a bad callback URI is refused up front
    let refused = events
        .callback(CallbackEvent {
            callback_uri: "http://example.com/x".into(),
            call_connection_id: "c".into(),
            event_type: "t".into(),
            data: json!({}),
        })
        .await;
    assert!(refused.is_err());
    task.stop();
}

#[tokio::test]
async fn batching_subscriptions_get_arrays_of_up_to_max_events_within_the_preferred_size() {
    let (ce, eg, small) = (Receiver::default(), Receiver::default(), Receiver::default());
    let sub = |name: &str, endpoint: String, schema, max_events_per_batch, kb| SubscriptionConfig {
        name: name.into(),
        endpoint,
        schema,
        validation_handshake: false,
        max_events_per_batch,
        preferred_batch_size_in_kilobytes: kb,
        ..Default::default()
    };
    let config = EventsConfig {
        subscriptions: vec![
            sub("ce-batch", start(ce.clone()).await, EventSchema::CloudEventSchemaV10, 2, 64),
            sub("eg-batch", start(eg.clone()).await, EventSchema::EventGridSchema, 3, 64),
            sub("eg-small", start(small.clone()).await, EventSchema::EventGridSchema, 10, 1),
        ],
        delivery: fast(),
        ..Default::default()
    };
    let events = Events::open_in_memory(EventsOptions::new(config, "res-1")).unwrap();
    // Five events accepted before the worker runs: all due at once.
    for i in 0..5 {
        let data = json!({"n": i, "padding": "x".repeat(600)});
        let event =
            SystemEvent { event_type: "Microsoft.Communication.CallStarted".into(), subject: format!("s{i}"), data };
        events.publish(event).await.unwrap();
    }
    let task = spawn_delivery(events.clone());
    let posts = |rx: &Receiver| -> Vec<(HeaderMap, Vec<Value>)> {
        rx.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, _, _)| m == Method::POST)
            .map(|(_, h, b)| (h.clone(), serde_json::from_str::<Value>(b).unwrap().as_array().cloned().unwrap()))
            .collect()
    };
    let total = |rx: &Receiver| posts(rx).iter().map(|(_, e)| e.len()).sum::<usize>();
    wait_for("every event to every subscription", || total(&ce) == 5 && total(&eg) == 5 && total(&small) == 5).await;

    let ce_posts = posts(&ce);
    let sizes: Vec<usize> = ce_posts.iter().map(|(_, e)| e.len()).collect();
    assert_eq!(sizes, vec![2, 2, 1], "CloudEvents: batches of at most 2");
    for (h, batch) in &ce_posts {
        assert_eq!(h["content-type"], "application/cloudevents-batch+json; charset=utf-8");
        assert!(batch.iter().all(|e| e["specversion"] == "1.0"));
    }
    let order: Vec<i64> =
        ce_posts.iter().flat_map(|(_, e)| e.iter().map(|e| e["data"]["n"].as_i64().unwrap())).collect();
    assert_eq!(order, vec![0, 1, 2, 3, 4], "each event once, in order");

    let eg_sizes: Vec<usize> = posts(&eg).iter().map(|(_, e)| e.len()).collect();
    assert_eq!(eg_sizes, vec![3, 2], "Event Grid schema: batches of at most 3");
    assert!(posts(&eg).iter().all(|(h, b)| h["content-type"] == "application/json" && b[0]["eventType"].is_string()));
    // Each event is about 0.9 KB: a preferred size of 1 KB holds one.
    let small_sizes: Vec<usize> = posts(&small).iter().map(|(_, e)| e.len()).collect();
    assert_eq!(small_sizes, vec![1, 1, 1, 1, 1], "the preferred size cuts the batches");
    wait_for("every delivery recorded", || {
        ["ce-batch", "eg-batch", "eg-small"]
            .iter()
            .all(|n| events.subscription(n).unwrap().unwrap().deliveries.delivered == 5)
    })
    .await;
    task.stop();
}
