//! Identity API through the router: happy paths, every bad-input case with its code, and
//! "nothing written" on each rejection.

use crate::api::testing::{error_code, send, signed, test_state};
use crate::domain::identity::identity_count;
use axum::body::Body;
use axum::http::{Request, StatusCode};

const V: &str = "api-version=2023-10-01";

fn encode_id(id: &str) -> String {
    id.replace(':', "%3A")
}

#[tokio::test]
async fn create_without_body_then_issue_revoke_delete() {
    let state = test_state();
    let (status, body) = send(&state, signed(&state, "POST", &format!("/identities?{V}"), "")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["identity"]["id"].as_str().unwrap().to_string();
    assert!(id.starts_with(&format!("8:acs:{}_", state.resource.resource_id)));
    assert!(body.get("accessToken").is_none());

    let path = format!("/identities/{}/:issueAccessToken?{V}", encode_id(&id));
    let (status, body) = send(&state, signed(&state, "POST", &path, r#"{"scopes":["chat","voip"]}"#)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["token"].as_str().unwrap().to_string();
    assert!(body["expiresOn"].as_str().unwrap().ends_with('Z'));

    let whoami = |token: &str| {
        Request::get("/auth/whoami").header("authorization", format!("Bearer {token}")).body(Body::empty()).unwrap()
    };
    let (status, me) = send(&state, whoami(&token)).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["identifier"]["rawId"], id.as_str());
    assert_eq!(me["scopes"], serde_json::json!(["chat", "voip"]));

    let path = format!("/identities/{}/:revokeAccessTokens?{V}", encode_id(&id));
    let (status, _) = send(&state, signed(&state, "POST", &path, "")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, me) = send(&state, whoami(&token)).await;
    assert_eq!((status, error_code(&me)), (StatusCode::UNAUTHORIZED, "TokenRevoked"));

    // A token issued right after the revocation works.
    let path = format!("/identities/{}/:issueAccessToken?{V}", encode_id(&id));
    let (_, body) = send(&state, signed(&state, "POST", &path, r#"{"scopes":["voip"]}"#)).await;
    let fresh = body["token"].as_str().unwrap().to_string();
    assert_eq!(send(&state, whoami(&fresh)).await.0, StatusCode::OK);

    let (status, _) = send(&state, signed(&state, "DELETE", &format!("/identities/{}?{V}", encode_id(&id)), "")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, me) = send(&state, whoami(&fresh)).await;
    assert_eq!((status, error_code(&me)), (StatusCode::UNAUTHORIZED, "TokenRevoked"));
    assert_eq!(identity_count(state.identity_store.as_ref()).unwrap(), 0);
    let (status, body) = send(&state, signed(&state, "POST", &path, r#"{"scopes":["voip"]}"#)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "IdentityNotFound"));
}

#[tokio::test]
async fn create_with_token_for_every_api_version() {
    let state = test_state();
    for v in super::API_VERSIONS {
        let body = r#"{"createTokenWithScopes":["chat.join","voip.join","chat.join.limited"],"expiresInMinutes":60}"#;
        let (status, resp) = send(&state, signed(&state, "POST", &format!("/identities?api-version={v}"), body)).await;
        assert_eq!(status, StatusCode::CREATED, "{v}: {resp}");
        let claims =
            state.auth.tokens.verify(resp["accessToken"]["token"].as_str().unwrap(), palaver_core::time::now_ms()).unwrap();
        assert_eq!(claims.acs_scope, "chat.join,chat.join.limited,voip.join");
        assert!((claims.exp * 1000 - claims.iatms - 3_600_000).abs() < 1000);
    }
    assert_eq!(identity_count(state.identity_store.as_ref()).unwrap(), 4);
}

#[tokio::test]
async fn bad_input_gets_specific_codes_and_writes_nothing() {
    let state = test_state();
    let (_, created) = send(&state, signed(&state, "POST", &format!("/identities?{V}"), "")).await;
    let id = encode_id(created["identity"]["id"].as_str().unwrap());
    let issue = format!("/identities/{id}/:issueAccessToken?{V}");
    let cases: Vec<(Request<Body>, StatusCode, &str)> = vec![
        (signed(&state, "POST", &format!("/identities?{V}"), "{not json"), StatusCode::BAD_REQUEST, "InvalidJson"),
        (
            signed(&state, "POST", &format!("/identities?{V}"), r#"{"createTokenWithScopes":"chat"}"#),
            StatusCode::BAD_REQUEST,
            "InvalidJson",
        ),
        (
            signed(&state, "POST", &format!("/identities?{V}"), r#"{"createTokenWithScopes":["chat","admin"]}"#),
            StatusCode::BAD_REQUEST,
            "InvalidScope",
        ),
        (
            signed(&state, "POST", &format!("/identities?{V}"), r#"{"createTokenWithScopes":[]}"#),
            StatusCode::BAD_REQUEST,
            "InvalidScope",
        ),
        (
            signed(
                &state,
                "POST",
                &format!("/identities?{V}"),
                r#"{"createTokenWithScopes":["chat"],"expiresInMinutes":59}"#,
            ),
            StatusCode::BAD_REQUEST,
            "InvalidExpiry",
        ),
        (
            signed(
                &state,
                "POST",
                &format!("/identities?{V}"),
                r#"{"createTokenWithScopes":["chat"],"expiresInMinutes":1441}"#,
            ),
            StatusCode::BAD_REQUEST,
            "InvalidExpiry",
        ),
        (
            signed(&state, "POST", "/identities?api-version=2020-01-01", ""),
            StatusCode::BAD_REQUEST,
            "UnsupportedApiVersion",
        ),
        (signed(&state, "POST", "/identities", ""), StatusCode::BAD_REQUEST, "UnsupportedApiVersion"),
        (signed(&state, "POST", &issue, r#"{"scopes":["bogus"]}"#), StatusCode::BAD_REQUEST, "InvalidScope"),
        (signed(&state, "POST", &issue, r#"{}"#), StatusCode::BAD_REQUEST, "InvalidScope"),
        (
            signed(&state, "POST", &issue, r#"{"scopes":["chat"],"expiresInMinutes":0}"#),
            StatusCode::BAD_REQUEST,
            "InvalidExpiry",
        ),
        (signed(&state, "POST", &issue, ""), StatusCode::BAD_REQUEST, "InvalidJson"),
        (
            signed(
                &state,
                "POST",
                &format!("/identities/8%3Aacs%3Anope/:issueAccessToken?{V}"),
                r#"{"scopes":["chat"]}"#,
            ),
            StatusCode::BAD_REQUEST,
            "InvalidIdentifier",
        ),
        (
            signed(
                &state,
                "POST",
                &format!(
                    "/identities/{}/:issueAccessToken?{V}",
                    encode_id(&format!("8:acs:{}_00000000-0000-0000-0000-000000000000", state.resource.resource_id))
                ),
                r#"{"scopes":["chat"]}"#,
            ),
            StatusCode::NOT_FOUND,
            "IdentityNotFound",
        ),
        (
            signed(&state, "DELETE", &format!("/identities/{}?{V}", encode_id("8:acs:otherres_x")), ""),
            StatusCode::NOT_FOUND,
            "IdentityNotFound",
        ),
        (
            signed(&state, "POST", &format!("/identities/{}/:revokeAccessTokens?{V}", encode_id("8:orgid:abc")), ""),
            StatusCode::BAD_REQUEST,
            "InvalidIdentifier",
        ),
        (
            Request::post(format!("/identities?{V}")).header("host", "x").body(Body::empty()).unwrap(),
            StatusCode::UNAUTHORIZED,
            "MissingAuthentication",
        ),
    ];
    let before = identity_count(state.identity_store.as_ref()).unwrap();
    for (req, status, code) in cases {
        let target = req.uri().to_string();
        let (got, body) = send(&state, req).await;
        assert_eq!((got, error_code(&body)), (status, code), "{target}: {body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    assert_eq!(identity_count(state.identity_store.as_ref()).unwrap(), before, "a rejected request wrote nothing");
}

#[tokio::test]
async fn tampered_body_and_wrong_key_are_rejected() {
    let state = test_state();
    let mut req = signed(&state, "POST", &format!("/identities?{V}"), r#"{"createTokenWithScopes":["chat"]}"#);
    *req.body_mut() = Body::from(r#"{"createTokenWithScopes":["voip"]}"#);
    let (status, body) = send(&state, req).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "ContentHashMismatch"));

    let other = test_state();
    let (status, body) = send(&state, signed(&other, "POST", &format!("/identities?{V}"), "")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "InvalidSignature"));
    assert_eq!(identity_count(state.identity_store.as_ref()).unwrap(), 0);
}

#[tokio::test]
async fn repeatability_request_id_replays_the_first_answer() {
    let state = test_state();
    let body = r#"{"createTokenWithScopes":["chat"]}"#;
    let with_id = |id: &str, body: &str| {
        let mut req = signed(&state, "POST", &format!("/identities?{V}"), body);
        req.headers_mut().insert("repeatability-request-id", id.parse().unwrap());
        req.headers_mut().insert("repeatability-first-sent", "Tue, 18 Nov 2025 10:00:00 GMT".parse().unwrap());
        req
    };
    let (s1, first) = send(&state, with_id("7d5c1ab0-0000-4000-8000-000000000001", body)).await;
    let (s2, second) = send(&state, with_id("7d5c1ab0-0000-4000-8000-000000000001", body)).await;
    assert_eq!((s1, s2), (StatusCode::CREATED, StatusCode::CREATED));
    assert_eq!(first, second);
    assert_eq!(identity_count(state.identity_store.as_ref()).unwrap(), 1);
    // Same id, different request: refused, nothing written.
    let (s3, third) = send(&state, with_id("7d5c1ab0-0000-4000-8000-000000000001", "")).await;
    assert_eq!((s3, error_code(&third)), (StatusCode::CONFLICT, "Conflict"));
    // A new id creates a new identity.
    let (_, other) = send(&state, with_id("7d5c1ab0-0000-4000-8000-000000000002", body)).await;
    assert_ne!(other["identity"]["id"], first["identity"]["id"]);
    assert_eq!(identity_count(state.identity_store.as_ref()).unwrap(), 2);
}

#[tokio::test]
async fn unknown_routes_and_methods_use_the_error_body() {
    let state = test_state();
    let (status, body) = send(&state, Request::get("/nope").body(Body::empty()).unwrap()).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "NotFound"));
    let (status, body) = send(&state, Request::get("/identities").body(Body::empty()).unwrap()).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "BadRequest"));
    let (status, _) = send(&state, Request::get("/health").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) =
        send(&state, Request::get("/auth/whoami").header("authorization", "Bearer x.y.z").body(Body::empty()).unwrap())
            .await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "InvalidToken"));
}

#[tokio::test]
async fn client_request_id_is_echoed() {
    let state = test_state();
    let req = Request::get("/health").header("x-ms-client-request-id", "abc-123").body(Body::empty()).unwrap();
    let resp = tower::ServiceExt::oneshot(crate::api::router(state), req).await.unwrap();
    assert_eq!(resp.headers()["x-ms-client-request-id"], "abc-123");
}
