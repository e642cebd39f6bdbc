//! Directory token validation and the exchange route, against the dev IdP and forged keys.

use super::dev_idp::{DEV_APP_ID, DEV_AUDIENCE, DEV_ISSUER, DEV_PERMISSIONS, DEV_TENANT_ID};
use super::*;
use crate::api::testing::{error_code, send, signed, test_state};
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
    let cfg = DirectoryConfig { tenants: vec![TenantConfig { jwks: Some("{}".into()), ..bad }], dev_idp: None, ..Default::default() };
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
