//! Directory token validation and the exchange route, against the dev IdP and forged keys.

use super::dev_idp::{DEV_APP_ID, DEV_AUDIENCE, DEV_ISSUER, DEV_PERMISSIONS, DEV_TENANT_ID};
use super::*;
use crate::api::testing::{error_code, send, signed, test_state};
use crate::store::Store;
use axum::http::StatusCode;
use palaver_core::ErrorCode;
use rsa::pkcs1::EncodeRsaPrivateKey;

const NOW: i64 = 1_800_000_000;
const OID: &str = "6a0b1b8e-0000-4000-8000-000000000001";

fn claims() -> serde_json::Value {
    serde_json::json!({
        "aud": DEV_AUDIENCE, "iss": DEV_ISSUER, "iat": NOW, "nbf": NOW - 60, "exp": NOW + 3600,
        "appid": DEV_APP_ID, "name": "Ada Agent", "oid": OID, "scp": DEV_PERMISSIONS, "tid": DEV_TENANT_ID,
    })
}

fn with(mut c: serde_json::Value, key: &str, value: serde_json::Value) -> serde_json::Value {
    c[key] = value;
    c
}

fn idp_and_validator(tenants: Vec<TenantConfig>) -> (DevIdp, DirectoryValidator) {
    let store = Store::open_in_memory().unwrap();
    let idp = DevIdp::load_or_create(&store).unwrap();
    let config = DirectoryConfig { tenants, dev_idp: Some(true), ..Default::default() };
    let validator = DirectoryValidator::new(&config, [idp.tenant_config()]).unwrap();
    (idp, validator)
}

fn forger() -> DevIdp {
    let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
    DevIdp::from_pem(&key.to_pkcs1_pem(rsa::pkcs8::LineEnding::LF).unwrap()).unwrap()
}

async fn code_of(v: &DirectoryValidator, token: &str) -> ErrorCode {
    v.validate(token, NOW).await.unwrap_err().code
}

#[tokio::test]
async fn valid_token_yields_user_and_passes_exchange_checks() {
    let (idp, v) = idp_and_validator(vec![]);
    let user = v.validate(&idp.sign_claims(&claims()).unwrap(), NOW).await.unwrap();
    assert_eq!(user.raw_id(), format!("8:orgid:{OID}"));
    assert_eq!(user.name.as_deref(), Some("Ada Agent"));
    assert_eq!(user.expires_at, NOW + 3600);
    check_exchange(&user, DEV_APP_ID, OID).unwrap();
    let refused = |app: &str, user_id: &str| {
        let r = check_exchange(&user, app, user_id).unwrap_err();
        (r.code, r.message, r.target)
    };
    let (code, message, target) = refused("other-app", OID);
    assert_eq!(
        (code, message.as_str(), target.as_deref()),
        (ErrorCode::ValidationError, "Provided AppId has invalid format.", Some("appId"))
    );
    let (code, message, target) = refused(DEV_APP_ID, "other-oid");
    assert_eq!(
        (code, message.as_str(), target.as_deref()),
        (ErrorCode::ValidationError, "Provided UserId has invalid format.", Some("userId"))
    );
    let other_guid = "0d0d0d0d-0000-4000-8000-00000000ffff";
    let (code, message, _) = refused(other_guid, OID);
    assert_eq!((code, message.as_str()), (ErrorCode::ValidationError, "AAD application is not the expected one."));
    let (code, message, _) = refused(DEV_APP_ID, other_guid);
    assert_eq!(
        (code, message.as_str()),
        (ErrorCode::ValidationError, "Provided AAD token issued for unexpected user.")
    );
    check_exchange(&user, &DEV_APP_ID.to_uppercase(), &OID.to_uppercase()).expect("GUIDs compare without case");
}

/// Found writing the `idp_token` fuzz target (no overflow on any signed claim): an IdP token
/// with `exp` near i64::MAX overflowed `exp + leeway` (a panic in debug builds, an "expired"
/// verdict in release).
#[tokio::test]
async fn huge_exp_does_not_overflow() {
    let (idp, v) = idp_and_validator(vec![]);
    let far = with(claims(), "exp", i64::MAX.into());
    assert_eq!(v.validate(&idp.sign_claims(&far).unwrap(), NOW).await.unwrap().expires_at, i64::MAX);
}

/// Issue #19 (low): the dev IdP computed `now + lifetimeSeconds` unchecked, so a lifetime near
/// i64::MAX panicked the request (debug) or wrapped into the past (release).
#[tokio::test]
async fn dev_idp_lifetimes_at_the_ends_of_i64_do_not_overflow() {
    let (idp, v) = idp_and_validator(vec![]);
    for (lifetime, expect_valid) in [(i64::MAX, true), (i64::MIN, false)] {
        let req = DevTokenRequest {
            oid: OID.into(),
            name: "Ada".into(),
            lifetime_seconds: Some(lifetime),
            ..DevTokenRequest::default()
        };
        let minted = idp.mint(&req, NOW).expect("minted without overflow");
        assert_eq!(v.validate(&minted.token, NOW).await.is_ok(), expect_valid, "lifetime {lifetime}");
    }
}

#[tokio::test]
async fn each_bad_token_gets_its_code() {
    let gov = TenantConfig {
        tenant_id: "gov-tenant".into(),
        issuer: "https://login.example.com/gov-tenant/v2.0".into(),
        audiences: vec![DEV_AUDIENCE.into()],
        jwks: None,
        jwks_uri: Some("https://127.0.0.1:9/keys".into()),
        cloud: TenantCloud::Gcch,
    };
    let (idp, v) = idp_and_validator(vec![gov]);
    let sign = |c: serde_json::Value| idp.sign_claims(&c).unwrap();
    assert_eq!(code_of(&v, &forger().sign_claims(&claims()).unwrap()).await, ErrorCode::InvalidIdpToken);
    assert_eq!(code_of(&v, &sign(with(claims(), "exp", (NOW - 120).into()))).await, ErrorCode::IdpTokenExpired);
    assert_eq!(code_of(&v, &sign(with(claims(), "nbf", (NOW + 600).into()))).await, ErrorCode::InvalidIdpToken);
    assert_eq!(code_of(&v, &sign(with(claims(), "tid", "someone-else".into()))).await, ErrorCode::UnknownTenant);
    assert_eq!(code_of(&v, &sign(with(claims(), "aud", "api://other".into()))).await, ErrorCode::InvalidIdpToken);
    assert_eq!(
        code_of(&v, &sign(with(claims(), "iss", "https://evil.example/v2.0".into()))).await,
        ErrorCode::InvalidIdpToken
    );
    assert_eq!(
        code_of(&v, &sign(with(claims(), "tid", "gov-tenant".into()))).await,
        ErrorCode::GovernmentCloudNotSupported
    );
    let gov_iss = with(claims(), "iss", format!("https://login.microsoftonline.us/{DEV_TENANT_ID}/v2.0").into());
    assert_eq!(code_of(&v, &sign(gov_iss)).await, ErrorCode::GovernmentCloudNotSupported);
    let gcc_region = with(claims(), "tenant_region_sub_scope", "GCC".into());
    assert_eq!(code_of(&v, &sign(gcc_region)).await, ErrorCode::GovernmentCloudNotSupported);
    let mut no_oid = claims();
    no_oid.as_object_mut().unwrap().remove("oid");
    assert_eq!(code_of(&v, &sign(no_oid)).await, ErrorCode::InvalidIdpToken);
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims(),
        &jsonwebtoken::EncodingKey::from_secret(b"k"),
    )
    .unwrap();
    assert_eq!(code_of(&v, &hs).await, ErrorCode::InvalidIdpToken);
    for junk in ["", "abc", "a.b.c"] {
        assert_eq!(code_of(&v, junk).await, ErrorCode::InvalidIdpToken, "{junk}");
    }
    let user = v.validate(&sign(with(claims(), "scp", "Teams.ManageCalls".into())), NOW).await.unwrap();
    assert_eq!(check_exchange(&user, DEV_APP_ID, OID).unwrap_err().code, ErrorCode::MissingDelegatedPermission);
}

#[test]
fn configuration_errors_are_reported() {
    let bad =
        TenantConfig { tenant_id: "t".into(), issuer: "i".into(), audiences: vec!["a".into()], ..Default::default() };
    let cfg = DirectoryConfig { tenants: vec![bad.clone()], dev_idp: Some(false), ..Default::default() };
    assert!(DirectoryValidator::new(&cfg, []).is_err(), "needs a key source");
    let cfg = DirectoryConfig {
        tenants: vec![TenantConfig { jwks: Some("{}".into()), ..bad }],
        dev_idp: None,
        ..Default::default()
    };
    assert!(DirectoryValidator::new(&cfg, []).is_err(), "invalid inline JWKS");
    assert!(!cfg.dev_idp_enabled(), "dev IdP is off by default once tenants are configured");
    assert!(DirectoryConfig::default().dev_idp_enabled());
}

#[tokio::test]
async fn exchange_route_issues_directory_token() {
    let state = test_state();
    let (status, minted) =
        send(&state, signed(&state, "POST", "/dev-idp/token", &format!(r#"{{"oid":"{OID}","name":"Zoë Agent"}}"#)))
            .await;
    assert_eq!(status, StatusCode::OK, "{minted}");
    let idp_token = minted["token"].as_str().unwrap();
    let body = serde_json::json!({"token": idp_token, "appId": DEV_APP_ID, "userId": OID}).to_string();
    let path = "/teamsUser/:exchangeAccessToken?api-version=2023-10-01";
    let (status, resp) = send(&state, signed(&state, "POST", path, &body)).await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    let claims = state.auth.tokens.verify(resp["token"].as_str().unwrap(), palaver_core::time::now_ms()).unwrap();
    assert_eq!(claims.raw_id(), format!("8:orgid:{OID}"));
    assert_eq!(claims.name.as_deref(), Some("Zoë Agent"));
    assert_eq!(claims.exp, minted["expiresAt"].as_i64().unwrap());

    let wrong_user = serde_json::json!({"token": idp_token, "appId": DEV_APP_ID, "userId": "x"}).to_string();
    let (status, resp) = send(&state, signed(&state, "POST", path, &wrong_user)).await;
    assert_eq!((status, error_code(&resp)), (StatusCode::BAD_REQUEST, "ValidationError"));
    assert_eq!(resp["error"]["target"], "userId");
    let missing = serde_json::json!({"token": idp_token, "appId": DEV_APP_ID}).to_string();
    let (status, resp) = send(&state, signed(&state, "POST", path, &missing)).await;
    assert_eq!((status, error_code(&resp)), (StatusCode::BAD_REQUEST, "ValidationError"));
    // The IdP token is checked first: an empty or malformed one is 401 whatever else is wrong.
    for token in ["", "not-a-jwt"] {
        let body = serde_json::json!({"token": token, "appId": "", "userId": ""}).to_string();
        let (status, resp) = send(&state, signed(&state, "POST", path, &body)).await;
        assert_eq!((status, error_code(&resp)), (StatusCode::UNAUTHORIZED, "InvalidAccessToken"), "{token:?}");
    }
    let (status, resp) = send(&state, signed(&state, "POST", path, "{}")).await;
    assert_eq!((status, error_code(&resp)), (StatusCode::UNAUTHORIZED, "InvalidAccessToken"));

    let (status, jwks) = send(
        &state,
        axum::http::Request::get(format!("/dev-idp/{DEV_TENANT_ID}/discovery/v2.0/keys"))
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(jwks["keys"][0]["kty"], "RSA");
}

/// An IdP token with a far `exp` (or one near `i64::MAX`, which overflowed `exp * 1000`) yields
/// an access token that lives at most 24 hours; an ordinary one still expires with the IdP token.
#[test]
fn exchanged_tokens_live_at_most_a_day() {
    let state = test_state();
    let now_ms = palaver_core::time::now_ms();
    let user = |expires_at: i64| DirectoryUser {
        oid: OID.to_string(),
        tenant_id: DEV_TENANT_ID.to_string(),
        name: Some("Ada Agent".to_string()),
        app_id: Some(DEV_APP_ID.to_string()),
        permissions: vec![],
        expires_at,
    };
    for far in [i64::MAX, now_ms / 1000 + 30 * 24 * 3600] {
        let issued = issue_for(&state, &user(far), false, now_ms).unwrap();
        let claims = state.auth.tokens.verify(&issued.token, now_ms).unwrap();
        assert_eq!(claims.exp, (now_ms + MAX_EXCHANGED_TOKEN_MS) / 1000, "exp {far}");
    }
    let hour = now_ms / 1000 + 3600;
    let issued = issue_for(&state, &user(hour), false, now_ms).unwrap();
    assert_eq!(state.auth.tokens.verify(&issued.token, now_ms).unwrap().exp, hour);
}

/// Issue #19 (high): the raw id `8:orgid:<oid>` is the same whatever tenant issued the token,
/// so a second tenant (or the dev IdP beside a real one) choosing a victim's oid acted as the
/// victim: read the meeting with its passcode, deleted it. The oid now belongs to the tenant
/// that presented it first, at every door.
#[tokio::test]
async fn a_directory_user_of_one_tenant_cannot_act_as_another_tenants_user() {
    use crate::auth::Credential;
    let other_idp = forger();
    let tenant_b = TenantConfig {
        tenant_id: "0b0b0b0b-0000-4000-8000-00000000b0b0".into(),
        issuer: "https://login.example/tenant-b/v2.0".into(),
        audiences: vec![DEV_AUDIENCE.into()],
        jwks: Some(other_idp.jwks_json()),
        ..Default::default()
    };
    let config = crate::app::SignalingConfig {
        directory: DirectoryConfig { tenants: vec![tenant_b.clone()], dev_idp: Some(true), ..Default::default() },
        ..Default::default()
    };
    let state = crate::app::AppState::open(config, Store::open_in_memory().unwrap(), crate::app::AppParts::default())
        .expect("state");
    let now = palaver_core::time::now_ms();
    let path = "/teamsUser/:exchangeAccessToken?api-version=2023-10-01";
    let exchange_body =
        |token: &str| serde_json::json!({"token": token, "appId": DEV_APP_ID, "userId": OID}).to_string();
    let fresh = |c: serde_json::Value| {
        let c = with(c, "iat", (now / 1000).into());
        let c = with(c, "nbf", (now / 1000 - 60).into());
        with(c, "exp", (now / 1000 + 3600).into())
    };
    // Tenant A (the dev IdP's tenant): the victim signs in and organizes a meeting.
    let victim_idp = state.auth.directory.dev_idp.as_ref().unwrap().sign_claims(&fresh(claims())).unwrap();
    let (status, victim) = send(&state, signed(&state, "POST", path, &exchange_body(&victim_idp))).await;
    assert_eq!(status, StatusCode::OK, "{victim}");
    let bearer = |token: &str, method: &str, uri: &str, body: &str| {
        axum::http::Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.to_string()))
            .unwrap()
    };
    let victim_token = victim["token"].as_str().unwrap();
    let (status, meeting) = send(&state, bearer(victim_token, "POST", "/meetings", r#"{"subject":"Board"}"#)).await;
    assert_eq!(status, StatusCode::CREATED, "{meeting}");
    let meeting_path = format!("/meetings/{}", meeting["id"].as_str().unwrap());

    // Tenant B presents a token for the same oid: refused at the exchange and the native door.
    let b_claims =
        with(with(fresh(claims()), "iss", tenant_b.issuer.clone().into()), "tid", tenant_b.tenant_id.clone().into());
    let b_idp = other_idp.sign_claims(&b_claims).unwrap();
    let (status, refused) = send(&state, signed(&state, "POST", path, &exchange_body(&b_idp))).await;
    assert_eq!((status, error_code(&refused)), (StatusCode::FORBIDDEN, "Forbidden"), "{refused}");
    let native = state.auth.verify(Credential::IdpToken(&b_idp), now).await.unwrap_err();
    assert_eq!(native.code, ErrorCode::Forbidden);

    // An access token of tenant B for that oid (issued before the binding existed, say) is refused too.
    let b_user = DirectoryUser {
        oid: OID.into(),
        tenant_id: tenant_b.tenant_id.clone(),
        name: Some("Mallory".into()),
        app_id: Some(DEV_APP_ID.into()),
        permissions: vec![],
        expires_at: now / 1000 + 3600,
    };
    let b_token = issue_for(&state, &b_user, false, now).unwrap().token;
    for (method, uri) in [("GET", meeting_path.as_str()), ("DELETE", meeting_path.as_str())] {
        let (status, answer) = send(&state, bearer(&b_token, method, uri, "")).await;
        assert_eq!((status, error_code(&answer)), (StatusCode::UNAUTHORIZED, "InvalidToken"), "{method}: {answer}");
    }
    // The victim still manages the meeting.
    let (status, answer) = send(&state, bearer(victim_token, "GET", &meeting_path, "")).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(answer["passcode"].is_string());
}

/// Issue #19 (low): tokens from `POST /teamsUser/:exchangeAccessToken` could not be revoked.
/// Now the same revocation marks refuse them and end the user's live signaling sessions.
#[tokio::test]
async fn exchanged_tokens_are_revoked_with_their_live_sessions() {
    let state = test_state();
    let (_, minted) =
        send(&state, signed(&state, "POST", "/dev-idp/token", &format!(r#"{{"oid":"{OID}","name":"Ada"}}"#))).await;
    let body = serde_json::json!({"token": minted["token"], "appId": DEV_APP_ID, "userId": OID}).to_string();
    let exchange_path = "/teamsUser/:exchangeAccessToken?api-version=2023-10-01";
    let (status, issued) = send(&state, signed(&state, "POST", exchange_path, &body)).await;
    assert_eq!(status, StatusCode::OK, "{issued}");
    let token = issued["token"].as_str().unwrap().to_string();
    let now = palaver_core::time::now_ms();
    state.auth.verify_access_token(&token, now).expect("valid before revocation");
    // A live signaling socket of that user.
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let entry = crate::gateway::PresenceEntry { conn_id: "c1".into(), tx, native: false };
    state.gateway.presence_add(&format!("8:orgid:{OID}"), entry);

    let revoke_path = "/teamsUser/:revokeAccessTokens?api-version=2023-10-01";
    let revoke = serde_json::json!({"userId": OID, "tenantId": DEV_TENANT_ID}).to_string();
    let (status, answer) = send(&state, signed(&state, "POST", revoke_path, &revoke)).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
    let refused = state.auth.verify_access_token(&token, palaver_core::time::now_ms()).unwrap_err();
    assert_eq!(refused.code, ErrorCode::TokenRevoked);
    let told = tokio::time::timeout(std::time::Duration::from_secs(2), rx.recv()).await.expect("in time");
    assert!(matches!(told, Some(crate::gateway::Outbound::AccessRevoked { .. })), "the live session is ended");
    // A new exchange works again.
    let (status, again) = send(&state, signed(&state, "POST", exchange_path, &body)).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    state.auth.verify_access_token(again["token"].as_str().unwrap(), palaver_core::time::now_ms()).expect("fresh");
    // Another tenant's, an unknown and a malformed user.
    for (body, status, code) in [
        (serde_json::json!({"userId": OID, "tenantId": "other"}), StatusCode::NOT_FOUND, "IdentityNotFound"),
        (
            serde_json::json!({"userId": "6a0b1b8e-0000-4000-8000-0000000000ff", "tenantId": DEV_TENANT_ID}),
            StatusCode::NOT_FOUND,
            "IdentityNotFound",
        ),
        (serde_json::json!({"userId": "x", "tenantId": DEV_TENANT_ID}), StatusCode::BAD_REQUEST, "ValidationError"),
    ] {
        let (got, answer) = send(&state, signed(&state, "POST", revoke_path, &body.to_string())).await;
        assert_eq!((got, error_code(&answer)), (status, code), "{body}: {answer}");
    }
}
