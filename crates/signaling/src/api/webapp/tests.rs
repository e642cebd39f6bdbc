//! Router tests of the web client's pages, files and development sign-in endpoints.

use super::assets::{ASSETS, INDEX_HTML};
use crate::api::router;
use crate::api::testing::{error_code, send, test_state};
use crate::app::{AppState, SignalingConfig};
use crate::store::Store;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use palaver_core::time::now_ms;
use tower::ServiceExt;

fn get(path: &str) -> Request<Body> {
    Request::builder().uri(path).body(Body::empty()).expect("request")
}

fn post(path: &str, body: &str) -> Request<Body> {
    Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("request")
}

async fn raw(state: &AppState, req: Request<Body>) -> (StatusCode, String, String) {
    let resp = router(state.clone()).oneshot(req).await.expect("infallible");
    let status = resp.status();
    let content_type = resp.headers().get("content-type").map(|v| v.to_str().unwrap_or("").to_string());
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 22).await.expect("body");
    (status, content_type.unwrap_or_default(), String::from_utf8_lossy(&bytes).into_owned())
}

fn dev_off_state() -> AppState {
    let mut config = SignalingConfig::default();
    config.directory.dev_idp = Some(false);
    AppState::open(config, Store::open_in_memory().expect("db"), crate::app::AppParts::default()).expect("state")
}

/// Development sign-in turned on, as `--dev-sign-in` does.
fn dev_state() -> AppState {
    let mut config = SignalingConfig::default();
    config.directory.dev_sign_in = true;
    AppState::open(config, Store::open_in_memory().expect("db"), crate::app::AppParts::default()).expect("state")
}

#[test]
fn every_file_in_web_app_is_embedded() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web/app");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .expect("web/app exists")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut embedded: Vec<String> = ASSETS.iter().map(|a| a.path.to_string()).collect();
    embedded.sort();
    assert_eq!(on_disk, embedded, "web/app and assets::ASSETS must list the same files");
}

#[test]
fn index_only_references_embedded_files() {
    for needed in ["/app/styles.css", "/app/main.js", "/app/icon.svg"] {
        assert!(INDEX_HTML.contains(needed), "index.html should load {needed}");
    }
    for asset in ASSETS.iter().filter(|a| a.path.ends_with(".js")) {
        for line in asset.body.lines().filter(|l| l.trim_start().starts_with("import ")) {
            let target =
                line.rsplit("from").next().unwrap_or("").trim().trim_matches(|c| c == '\'' || c == '"' || c == ';');
            let file = target.trim_start_matches("./");
            assert!(super::assets::find(file).is_some(), "{} imports `{target}`, which is not embedded", asset.path);
        }
    }
}

#[tokio::test]
async fn page_is_served_at_root_app_and_join_links() {
    let state = test_state();
    for path in ["/", "/app", "/app/", "/meetings/join/5f0c7a8e-9d7b-4b3e-8f25-1d2c3b4a5e6f"] {
        let (status, content_type, body) = raw(&state, get(path)).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(content_type.starts_with("text/html"), "{path}: {content_type}");
        assert_eq!(body, INDEX_HTML, "{path}");
    }
}

#[tokio::test]
async fn files_have_their_content_type_and_unknown_files_an_error_body() {
    let state = test_state();
    let (status, content_type, body) = raw(&state, get("/app/main.js")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/javascript"), "{content_type}");
    assert!(body.contains("import"));
    let (_, css_type, _) = raw(&state, get("/app/styles.css")).await;
    assert!(css_type.starts_with("text/css"), "{css_type}");
    let (status, body) = send(&state, get("/app/nope.js")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "NotFound");
    let (status, body) = send(&state, get("/app/../Cargo.toml")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn external_user_endpoint_issues_a_working_voip_token() {
    let state = dev_state();
    let (status, body) = send(&state, post("/dev/web/external-user", "")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let raw_id = body["rawId"].as_str().expect("rawId");
    assert!(raw_id.starts_with("8:acs:"), "{raw_id}");
    let user = state.auth.verify_access_token(body["token"].as_str().expect("token"), now_ms()).expect("token works");
    assert_eq!(user.identifier.raw_id(), raw_id);
    assert!(user.scopes.contains(palaver_core::Scope::Voip), "{:?}", user.scopes);
    let (status, body) = send(&state, post("/dev/web/external-user", "{}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = send(&state, post("/dev/web/external-user", "[1,")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "InvalidJson");
}

#[tokio::test]
async fn directory_user_endpoint_goes_through_the_exchange() {
    let state = dev_state();
    let (status, body) = send(&state, post("/dev/web/directory-user", r#"{"name":"Ada Organizer"}"#)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let raw_id = body["rawId"].as_str().expect("rawId");
    let oid = raw_id.strip_prefix("8:orgid:").expect("a directory user");
    assert!(uuid::Uuid::parse_str(oid).is_ok(), "{raw_id}");
    assert_eq!(body["displayName"], "Ada Organizer");
    let user = state.auth.verify_access_token(body["token"].as_str().expect("token"), now_ms()).expect("token works");
    assert_eq!(user.display_name.as_deref(), Some("Ada Organizer"));
    assert_eq!(user.identifier.raw_id(), raw_id);
    // A fresh oid is chosen each time.
    let (_, a) = send(&state, post("/dev/web/directory-user", r#"{"name":"X"}"#)).await;
    let (_, b) = send(&state, post("/dev/web/directory-user", r#"{"name":"X"}"#)).await;
    assert_ne!(a["rawId"], b["rawId"]);
}

#[tokio::test]
async fn directory_user_endpoint_rejects_bad_input() {
    let state = dev_state();
    for (body, code) in [
        ("", "InvalidParameter"),
        (r#"{"name":"   "}"#, "InvalidParameter"),
        (r#"{"name":"a\u0007b"}"#, "InvalidParameter"),
        (&format!(r#"{{"name":"{}"}}"#, "n".repeat(65)), "InvalidParameter"),
        (r#"{"name":"Ada","oid":"not-a-uuid"}"#, "InvalidParameter"),
        (r#"{"name":"Ada","extra":1}"#, "InvalidJson"),
        (r#"{"name":5}"#, "InvalidJson"),
    ] {
        let (status, answer) = send(&state, post("/dev/web/directory-user", body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(error_code(&answer), code, "{body}: {answer}");
    }
}

#[tokio::test]
async fn dev_endpoints_are_absent_unless_dev_sign_in_was_chosen() {
    // The dev IdP off, and the embedded default (dev IdP on, dev sign-in not chosen).
    for state in [dev_off_state(), test_state()] {
        for path in ["/dev/web/external-user", "/dev/web/directory-user"] {
            let (status, body) = send(&state, post(path, r#"{"name":"Ada"}"#)).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
            assert_eq!(error_code(&body), "NotFound");
            assert!(body["error"]["message"].as_str().unwrap_or("").contains("development sign-in is off"));
        }
        let (status, body) = send(&state, get("/dev/web/status")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["devMode"], false);
    }
    let state = dev_off_state();
    let (_, body) = send(&dev_state(), get("/dev/web/status")).await;
    assert_eq!(body["devMode"], true);
    assert!(body["message"].as_str().unwrap_or("").contains("development sign-in is on"), "{body}");
    // The page itself is still served.
    let (status, _, _) = raw(&state, get("/")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn external_user_endpoint_refreshes_an_existing_identity() {
    let state = dev_state();
    let (_, first) = send(&state, post("/dev/web/external-user", "{}")).await;
    let raw_id = first["rawId"].as_str().expect("rawId");
    let secret = first["secret"].as_str().expect("secret");
    let (status, again) =
        send(&state, post("/dev/web/external-user", &format!(r#"{{"rawId":"{raw_id}","secret":"{secret}"}}"#))).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["rawId"], raw_id);
    assert_ne!(again["token"], first["token"]);
    let user = state.auth.verify_access_token(again["token"].as_str().expect("token"), now_ms()).expect("token works");
    assert_eq!(user.identifier.raw_id(), raw_id);
    // The secret of a deleted identity is still checked by the identity service.
    let unknown = format!("8:acs:{}_00000000-0000-4000-8000-000000000000", state.resource.resource_id);
    let gate = state.auth.directory.dev_sign_in.as_ref().expect("gate");
    let body = format!(r#"{{"rawId":"{unknown}","secret":"{}"}}"#, gate.secret_for(&unknown));
    let (status, body) = send(&state, post("/dev/web/external-user", &body)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(error_code(&body), "IdentityNotFound");
    let (status, body) = send(&state, post("/dev/web/external-user", r#"{"other":1}"#)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_code(&body), "InvalidJson");
}

/// Issue #19 (high): development sign-in handed a token to anyone for any existing identity
/// (`{"rawId"}` of an SDK-created user, `{"oid"}` of a meeting organizer).
#[tokio::test]
async fn dev_sign_in_never_takes_over_an_identity_it_did_not_mint() {
    let state = dev_state();
    // An identity created through the Identity API (the victim's backend).
    let req = crate::domain::identity::CreateIdentityRequest::default();
    let victim = state.identities().create(&req, None, now_ms()).await.expect("created").identity.id;
    // A directory user who signed in elsewhere (the organizer whose oid is in every roster).
    let organizer = "6a0b1b8e-0000-4000-8000-000000000001";
    let (_, mine) = send(&state, post("/dev/web/external-user", "{}")).await;
    let my_secret = mine["secret"].as_str().expect("secret").to_string();
    for (path, body) in [
        ("/dev/web/external-user", format!(r#"{{"rawId":"{victim}"}}"#)),
        ("/dev/web/external-user", format!(r#"{{"rawId":"{victim}","secret":"{my_secret}"}}"#)),
        ("/dev/web/external-user", format!(r#"{{"rawId":"{victim}","secret":"AAAA"}}"#)),
        ("/dev/web/directory-user", format!(r#"{{"name":"Mallory","oid":"{organizer}"}}"#)),
        ("/dev/web/directory-user", format!(r#"{{"name":"Mallory","oid":"{organizer}","secret":"{my_secret}"}}"#)),
    ] {
        let (status, answer) = send(&state, post(path, &body)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path} {body}: {answer}");
        assert_eq!(error_code(&answer), "Forbidden");
        assert_eq!(answer["error"]["target"], "secret");
    }
    // A directory user minted here is refreshed with its own secret.
    let (_, ada) = send(&state, post("/dev/web/directory-user", r#"{"name":"Ada"}"#)).await;
    let oid = ada["rawId"].as_str().expect("rawId").trim_start_matches("8:orgid:").to_string();
    let body = format!(r#"{{"name":"Ada","oid":"{oid}","secret":"{}"}}"#, ada["secret"].as_str().expect("secret"));
    let (status, again) = send(&state, post("/dev/web/directory-user", &body)).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["rawId"], ada["rawId"]);
}

/// Issue #19: one anonymous client minted 78 identities a second.
#[tokio::test]
async fn dev_sign_in_is_rate_limited_per_address() {
    use crate::auth::dev_sign_in::SIGN_IN_BURST;
    let state = dev_state();
    let with_peer = |peer: &str| {
        let mut req = post("/dev/web/external-user", "{}");
        let addr: std::net::SocketAddr = peer.parse().expect("addr");
        req.extensions_mut().insert(axum::extract::ConnectInfo(addr));
        req
    };
    for i in 0..SIGN_IN_BURST as usize {
        let (status, body) = send(&state, with_peer("192.0.2.7:4000")).await;
        assert_eq!(status, StatusCode::OK, "sign-in {i}: {body}");
    }
    let (status, body) = send(&state, with_peer("192.0.2.7:4001")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(error_code(&body), "TooManyRequests");
    let (status, _) = send(&state, post("/dev/web/directory-user", r#"{"name":"Ada"}"#)).await;
    assert_eq!(status, StatusCode::OK, "another address (none here) has its own bucket");
    let (status, body) = send(&state, with_peer("192.0.2.8:4000")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[test]
fn dev_sign_in_is_refused_beside_a_real_tenant_or_without_the_dev_idp() {
    let tenant = crate::auth::directory::TenantConfig {
        tenant_id: "t".into(),
        issuer: "https://login.example/t/v2.0".into(),
        audiences: vec!["api://x".into()],
        jwks: Some(r#"{"keys":[]}"#.into()),
        ..Default::default()
    };
    for directory in [
        crate::auth::directory::DirectoryConfig {
            tenants: vec![tenant.clone()],
            dev_sign_in: true,
            ..Default::default()
        },
        crate::auth::directory::DirectoryConfig { tenants: vec![tenant], dev_idp: Some(true), dev_sign_in: true },
        crate::auth::directory::DirectoryConfig { dev_idp: Some(false), dev_sign_in: true, ..Default::default() },
    ] {
        let config = SignalingConfig { directory, ..Default::default() };
        let opened = AppState::open(config, Store::open_in_memory().expect("db"), crate::app::AppParts::default());
        assert!(matches!(opened, Err(crate::app::StartupError::Config(_))), "{opened:?}");
    }
}
