use crate::api::router;
use crate::api::testing::{error_code, signed, test_state};
use axum::Extension;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use palaver_events::{Events, EventsConfig, EventsOptions, SubscriptionConfig};
use serde_json::Value;
use tower::ServiceExt;

fn events() -> Events {
    let config = EventsConfig {
        subscriptions: vec![SubscriptionConfig {
            name: "from-file".into(),
            endpoint: "http://127.0.0.1:9/x".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let events = Events::open_in_memory(EventsOptions::new(config, "res")).unwrap();
    events.set_public_url("https://127.0.0.1:4443");
    events
}

async fn send(state: &crate::app::AppState, events: &Events, req: Request<Body>) -> (StatusCode, Value) {
    let resp = router(state.clone()).layer(Extension(events.clone())).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() })
}

#[tokio::test]
async fn subscriptions_are_listed_created_replaced_and_deleted() {
    let state = test_state();
    let events = events();
    let (status, body) = send(&state, &events, signed(&state, "GET", "/events/subscriptions", "")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["value"][0]["name"], "from-file");
    assert_eq!(body["value"][0]["origin"], "config");
    assert_eq!(body["value"][0]["validationState"], "Pending");

    let create = r#"{"endpoint":"http://127.0.0.1:9/hook","schema":"CloudEventSchemaV1_0","eventTypes":["Microsoft.Communication.ChatThreadCreated"]}"#;
    let (status, body) = send(&state, &events, signed(&state, "PUT", "/events/subscriptions/run-time", create)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["schema"], "CloudEventSchemaV1_0");
    assert_eq!(body["origin"], "api");
    let (status, _) = send(&state, &events, signed(&state, "PUT", "/events/subscriptions/run-time", create)).await;
    assert_eq!(status, StatusCode::OK);

    let (status, body) = send(&state, &events, signed(&state, "GET", "/events/subscriptions/run-time", "")).await;
    assert_eq!((status, body["deliveries"]["pending"].as_u64()), (StatusCode::OK, Some(0)));

    let (status, body) = send(&state, &events, signed(&state, "DELETE", "/events/subscriptions/from-file", "")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "Conflict"));
    let (status, _) = send(&state, &events, signed(&state, "DELETE", "/events/subscriptions/run-time", "")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = send(&state, &events, signed(&state, "DELETE", "/events/subscriptions/run-time", "")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "NotFound"));
}

#[tokio::test]
async fn bad_input_gets_acs_errors_and_auth_is_required() {
    let state = test_state();
    let events = events();
    let insecure = r#"{"endpoint":"http://example.com/hook"}"#;
    let (status, body) = send(&state, &events, signed(&state, "PUT", "/events/subscriptions/sub-1", insecure)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "InvalidParameter"));
    assert_eq!(body["error"]["target"], "endpoint");
    let (status, body) = send(&state, &events, signed(&state, "PUT", "/events/subscriptions/sub-1", "{nope")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "InvalidJson"));
    let unknown = r#"{"endpoint":"http://127.0.0.1:9/x","bogus":1}"#;
    let (status, _) = send(&state, &events, signed(&state, "PUT", "/events/subscriptions/sub-1", unknown)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = send(
        &state,
        &events,
        signed(&state, "PUT", "/events/subscriptions/a%20b", r#"{"endpoint":"http://127.0.0.1:9/x"}"#),
    )
    .await;
    assert_eq!((status, body["error"]["target"].as_str()), (StatusCode::BAD_REQUEST, Some("name")));
    let unsigned = Request::get("/events/subscriptions").body(Body::empty()).unwrap();
    let (status, _) = send(&state, &events, unsigned).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_validation_url_validates_and_the_keys_are_public() {
    let state = test_state();
    let events = events();
    let (_, body) = send(&state, &events, signed(&state, "GET", "/events/subscriptions/from-file", "")).await;
    assert_eq!(body["validationState"], "Pending");
    let wrong = Request::get("/events/subscriptions/from-file/validate?code=wrong").body(Body::empty()).unwrap();
    assert_eq!(send(&state, &events, wrong).await.0, StatusCode::NOT_FOUND);
    let jwks = Request::get("/calling/keys").body(Body::empty()).unwrap();
    let (status, body) = send(&state, &events, jwks).await;
    assert_eq!((status, body["keys"][0]["kty"].as_str()), (StatusCode::OK, Some("RSA")));
    let oidc = Request::get("/calling/.well-known/acsopenidconfiguration").body(Body::empty()).unwrap();
    let (_, body) = send(&state, &events, oidc).await;
    assert_eq!(body["jwks_uri"], "https://127.0.0.1:4443/calling/keys");
    // no events service: a clear 503
    let (status, body) =
        crate::api::testing::send(&state, Request::get("/calling/keys").body(Body::empty()).unwrap()).await;
    assert_eq!((status, error_code(&body)), (StatusCode::SERVICE_UNAVAILABLE, "StorageUnavailable"));
}
