//! Directory-user token exchange against the started binary and its dev IdP: success, and
//! each forged / expired / wrong-tenant / wrong-app / missing-permission case.

use palaver_e2e::{Server, ServerOptions, TempDir};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const EXCHANGE: &str = "/teamsUser/:exchangeAccessToken?api-version=2023-10-01";
const OID: &str = "3f1e2d4c-0000-4000-8000-0000000000e1";

async fn exchange(server: &Server, token: &str, app_id: &str, user_id: &str) -> (StatusCode, Value) {
    let body = json!({ "token": token, "appId": app_id, "userId": user_id }).to_string();
    server.signed(Method::POST, EXCHANGE, &body).await
}

#[tokio::test]
async fn dev_idp_token_exchanges_for_a_directory_identity() {
    let dir = TempDir::new("palaver-e2e");
    let server = Server::start_in(dir.path(), ServerOptions::default()).await;
    let minted = server.dev_idp_token(OID, "Grace Hopper", Value::Null).await;
    let app_id = minted["appId"].as_str().unwrap();
    let (s, resp) = exchange(&server, minted["token"].as_str().unwrap(), app_id, OID).await;
    assert_eq!(s, StatusCode::OK, "{resp}");
    let (s, me) = server.whoami(resp["token"].as_str().unwrap()).await;
    assert_eq!(s, StatusCode::OK, "{me}");
    assert_eq!(me["identifier"]["rawId"], format!("8:orgid:{OID}"));
    assert_eq!(me["identifier"]["kind"], "microsoftTeamsUser");
    assert_eq!(me["displayName"], "Grace Hopper");
    let expires = chrono::DateTime::parse_from_rfc3339(resp["expiresOn"].as_str().unwrap()).unwrap().timestamp();
    assert_eq!(expires, minted["expiresAt"].as_i64().unwrap(), "expires with the IdP token");

    // The JWKS the dev IdP serves is public.
    let tenant = minted["tenantId"].as_str().unwrap();
    let jwks =
        server.http().get(format!("{}/dev-idp/{tenant}/discovery/v2.0/keys", server.base_url())).send().await.unwrap();
    assert_eq!(jwks.status(), StatusCode::OK);
}

#[tokio::test]
async fn bad_idp_tokens_get_specific_codes() {
    let dir = TempDir::new("palaver-e2e");
    let server = Server::start_in(dir.path(), ServerOptions::default()).await;
    let good = server.dev_idp_token(OID, "Grace", Value::Null).await;
    let app_id = good["appId"].as_str().unwrap().to_string();
    let token = good["token"].as_str().unwrap().to_string();

    let expired = server.dev_idp_token(OID, "Grace", json!({"lifetimeSeconds": -3600})).await;
    let other_tenant = server.dev_idp_token(OID, "Grace", json!({"tid": "11111111-2222-3333-4444-555555555555"})).await;
    let no_chats = server.dev_idp_token(OID, "Grace", json!({"scp": "Teams.ManageCalls"})).await;

    // A token with the right claims but signed by a key the tenant does not publish.
    let header = jsonwebtoken::decode_header(&token).unwrap();
    let claims: Value = jsonwebtoken::dangerous::insecure_decode(&token).unwrap().claims;
    let forger = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
    let pem = rsa::pkcs1::EncodeRsaPrivateKey::to_pkcs1_pem(&forger, rsa::pkcs8::LineEnding::LF).unwrap();
    let forged =
        jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap())
            .unwrap();

    let cases = [
        (forged.as_str(), app_id.as_str(), OID, StatusCode::UNAUTHORIZED, "InvalidAccessToken"),
        ("not-a-jwt", app_id.as_str(), OID, StatusCode::UNAUTHORIZED, "InvalidAccessToken"),
        ("", "", "", StatusCode::UNAUTHORIZED, "InvalidAccessToken"),
        (expired["token"].as_str().unwrap(), app_id.as_str(), OID, StatusCode::UNAUTHORIZED, "InvalidAccessToken"),
        (other_tenant["token"].as_str().unwrap(), app_id.as_str(), OID, StatusCode::FORBIDDEN, "UnknownTenant"),
        (
            no_chats["token"].as_str().unwrap(),
            app_id.as_str(),
            OID,
            StatusCode::FORBIDDEN,
            "MissingDelegatedPermission",
        ),
        (token.as_str(), "some-other-app", OID, StatusCode::BAD_REQUEST, "ValidationError"),
        (token.as_str(), "0d0d0d0d-0000-4000-8000-00000000ffff", OID, StatusCode::BAD_REQUEST, "ValidationError"),
        (token.as_str(), app_id.as_str(), "some-other-user", StatusCode::BAD_REQUEST, "ValidationError"),
        (
            token.as_str(),
            app_id.as_str(),
            "6a0b1b8e-0000-4000-8000-00000000ffff",
            StatusCode::BAD_REQUEST,
            "ValidationError",
        ),
    ];
    for (token, app, user, status, code) in cases {
        let (s, r) = exchange(&server, token, app, user).await;
        assert_eq!((s, r["error"]["code"].as_str()), (status, Some(code)), "{r}");
    }
    let (s, r) = server.signed(Method::POST, EXCHANGE, r#"{"token": 5}"#).await;
    assert_eq!((s, r["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("InvalidJson")));
}

#[tokio::test]
async fn government_cloud_tenants_are_refused() {
    let dir = TempDir::new("palaver-e2e");
    // Trust the dev IdP's key under a tenant marked as a government cloud.
    let probe = Server::start_in(dir.path(), ServerOptions::default()).await;
    let jwks = probe
        .http()
        .get(format!("{}/dev-idp/0d0d0d0d-0000-4000-8000-00000000d0d0/discovery/v2.0/keys", probe.base_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let minted = probe.dev_idp_token(OID, "Gov User", json!({"tid": "9a9a9a9a-0000-4000-8000-000000000009"})).await;
    drop(probe);
    let config = format!(
        r#"
[signaling.directory]
dev_idp = true
[[signaling.directory.tenants]]
tenant_id = "9a9a9a9a-0000-4000-8000-000000000009"
issuer = "https://dev-idp.palaver.invalid/0d0d0d0d-0000-4000-8000-00000000d0d0/v2.0"
audiences = ["api://palaver-communication"]
cloud = "gcch"
jwks = '{jwks}'
"#
    );
    let server = Server::start_in(dir.path(), ServerOptions { config_toml: Some(config), ..Default::default() }).await;
    let (s, r) = exchange(&server, minted["token"].as_str().unwrap(), minted["appId"].as_str().unwrap(), OID).await;
    assert_eq!((s, r["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("GovernmentCloudNotSupported")), "{r}");
}
