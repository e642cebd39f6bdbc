//! Identity API over HTTPS against the started binary: lifecycle, every bad-input case
//! with its specific code and nothing written, repeatability, revocation across restart.

use palaver_e2e::{Server, ServerOptions, TempDir, json_of};
use reqwest::{Method, StatusCode};
use std::path::Path;
use std::time::{Duration, SystemTime};

const V: &str = "api-version=2023-10-01";

/// Rows in identity's tables, read straight from the database file.
fn table_counts(data_dir: &Path) -> (i64, i64, i64) {
    let conn =
        rusqlite::Connection::open_with_flags(data_dir.join("palaver.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open db");
    let count = |t: &str| conn.query_row(&format!("SELECT COUNT(*) FROM {t}"), [], |r| r.get(0)).unwrap();
    (count("identities"), count("token_revocations"), count("repeatable_requests"))
}

fn enc(id: &str) -> String {
    id.replace(':', "%3A")
}

#[tokio::test]
async fn lifecycle_over_https() {
    let dir = TempDir::new("palaver-e2e");
    let server = Server::start_in(dir.path(), ServerOptions::default()).await;
    let (status, _) = json_of(server.http().get(format!("{}/health", server.base_url())).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);

    let (status, created) = server.signed(Method::POST, &format!("/identities?{V}"), "").await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["identity"]["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("8:acs:"));

    let issue = format!("/identities/{}/:issueAccessToken?{V}", enc(&id));
    let (status, token) = server.signed(Method::POST, &issue, r#"{"scopes":["voip"],"expiresInMinutes":60}"#).await;
    assert_eq!(status, StatusCode::OK, "{token}");
    let token = token["token"].as_str().unwrap().to_string();
    let (status, me) = server.whoami(&token).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["identifier"]["rawId"], id.as_str());
    assert_eq!(me["identifier"]["kind"], "communicationUser");

    let (status, _) =
        server.signed(Method::POST, &format!("/identities/{}/:revokeAccessTokens?{V}", enc(&id)), "").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = server.whoami(&token).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("TokenRevoked")));

    let (status, _) = server.signed(Method::DELETE, &format!("/identities/{}?{V}", enc(&id)), "").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(table_counts(dir.path()).0, 0);
}

#[tokio::test]
async fn bad_input_gets_specific_codes_and_writes_nothing() {
    let dir = TempDir::new("palaver-e2e");
    let server = Server::start_in(dir.path(), ServerOptions::default()).await;
    let (id, _) = server.create_user_token(&["chat"]).await;
    let issue = format!("/identities/{}/:issueAccessToken?{V}", enc(&id));
    let unknown = format!(
        "8:acs:{}_00000000-0000-4000-8000-000000000000",
        id.trim_start_matches("8:acs:").split('_').next().unwrap()
    );
    let before = table_counts(dir.path());

    let signed_cases: Vec<(Method, String, &str, StatusCode, &str)> = vec![
        (
            Method::POST,
            format!("/identities?{V}"),
            "{\"createTokenWithScopes\":",
            StatusCode::BAD_REQUEST,
            "InvalidJson",
        ),
        (
            Method::POST,
            format!("/identities?{V}"),
            r#"{"createTokenWithScopes":["voip.admin"]}"#,
            StatusCode::BAD_REQUEST,
            "InvalidScope",
        ),
        (
            Method::POST,
            format!("/identities?{V}"),
            r#"{"createTokenWithScopes":["chat"],"expiresInMinutes":10}"#,
            StatusCode::BAD_REQUEST,
            "InvalidExpiry",
        ),
        (
            Method::POST,
            format!("/identities?{V}"),
            r#"{"createTokenWithScopes":["chat"],"expiresInMinutes":2000}"#,
            StatusCode::BAD_REQUEST,
            "InvalidExpiry",
        ),
        (
            Method::POST,
            "/identities?api-version=2099-01-01".into(),
            "",
            StatusCode::BAD_REQUEST,
            "UnsupportedApiVersion",
        ),
        (Method::POST, issue.clone(), "[1,2", StatusCode::BAD_REQUEST, "InvalidJson"),
        (Method::POST, issue.clone(), r#"{"scopes":["chat","nope"]}"#, StatusCode::BAD_REQUEST, "InvalidScope"),
        (
            Method::POST,
            issue.clone(),
            r#"{"scopes":["chat"],"expiresInMinutes":1441}"#,
            StatusCode::BAD_REQUEST,
            "InvalidExpiry",
        ),
        (
            Method::POST,
            format!("/identities/{}/:issueAccessToken?{V}", enc(&unknown)),
            r#"{"scopes":["chat"]}"#,
            StatusCode::NOT_FOUND,
            "IdentityNotFound",
        ),
        (
            Method::POST,
            format!("/identities/{}/:revokeAccessTokens?{V}", enc(&unknown)),
            "",
            StatusCode::NOT_FOUND,
            "IdentityNotFound",
        ),
        (Method::DELETE, format!("/identities/{}?{V}", enc(&unknown)), "", StatusCode::NOT_FOUND, "IdentityNotFound"),
        (
            Method::DELETE,
            format!("/identities/{}?{V}", enc("8:acs:broken")),
            "",
            StatusCode::BAD_REQUEST,
            "InvalidIdentifier",
        ),
    ];
    for (method, path, body, status, code) in signed_cases {
        let (got, resp) = server.signed(method.clone(), &path, body).await;
        assert_eq!((got, resp["error"]["code"].as_str()), (status, Some(code)), "{method} {path} {body}: {resp}");
        assert!(resp["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{resp}");
    }

    // Authentication failures, built by hand.
    let url = format!("{}/identities?{V}", server.base_url());
    let path = format!("/identities?{V}");
    let body = r#"{"createTokenWithScopes":["chat"]}"#;
    let send = |headers: Vec<(String, String)>, body: &'static str| {
        let mut req = server.http().post(&url).body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        async move { json_of(req.send().await.unwrap()).await }
    };
    let now = SystemTime::now();
    let good = server.signer().headers("POST", &path, server.host(), body.as_bytes(), now);
    let (s, r) = send(vec![], body).await;
    assert_eq!((s, r["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("MissingAuthentication")));
    let stale =
        server.signer().headers("POST", &path, server.host(), body.as_bytes(), now - Duration::from_secs(20 * 60));
    let (s, r) = send(stale, body).await;
    assert_eq!((s, r["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("StaleRequestDate")));
    let (s, r) = send(good.clone(), r#"{"createTokenWithScopes":["voip"]}"#).await;
    assert_eq!((s, r["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("ContentHashMismatch")));
    let forged = palaver_e2e::sign_headers(b"not the key", "POST", &path, server.host(), body.as_bytes(), now);
    let (s, r) = send(forged, body).await;
    assert_eq!((s, r["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("InvalidSignature")));
    let mut bad_scheme = good.clone();
    bad_scheme[2].1 = "SharedKey abc".into();
    let (s, r) = send(bad_scheme, body).await;
    assert_eq!((s, r["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("InvalidAuthentication")));
    // Signed for a different path: the signature covers the raw target.
    let other_path =
        server.signer().headers("POST", "/identities?api-version=2022-06-01", server.host(), body.as_bytes(), now);
    let (s, r) = send(other_path, body).await;
    assert_eq!((s, r["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("InvalidSignature")));

    // Bearer failures.
    for (token, code) in [("garbage", "InvalidToken"), ("a.b.c", "InvalidToken")] {
        let (s, r) = server.whoami(token).await;
        assert_eq!((s, r["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some(code)));
    }
    let (s, r) = json_of(server.http().get(format!("{}/auth/whoami", server.base_url())).send().await.unwrap()).await;
    assert_eq!((s, r["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("MissingAuthentication")));

    assert_eq!(table_counts(dir.path()), before, "rejected requests wrote nothing");
}

#[tokio::test]
async fn repeatability_request_id_returns_the_first_answer() {
    let dir = TempDir::new("palaver-e2e");
    let server = Server::start_in(dir.path(), ServerOptions::default()).await;
    let path = format!("/identities?{V}");
    let body = r#"{"createTokenWithScopes":["chat"]}"#;
    let send = |request_id: &'static str| {
        let mut req = server.http().post(format!("{}{path}", server.base_url())).body(body);
        for (k, v) in server.signer().headers("POST", &path, server.host(), body.as_bytes(), SystemTime::now()) {
            req = req.header(k, v);
        }
        req = req
            .header("Repeatability-Request-ID", request_id)
            .header("Repeatability-First-Sent", httpdate::fmt_http_date(SystemTime::now()));
        async move { json_of(req.send().await.unwrap()).await }
    };
    let (s1, first) = send("0f6b6c3e-0000-4000-8000-000000000001").await;
    let (s2, replay) = send("0f6b6c3e-0000-4000-8000-000000000001").await;
    assert_eq!((s1, s2), (StatusCode::CREATED, StatusCode::CREATED));
    assert_eq!(first, replay, "the replay is the first answer");
    assert_eq!(table_counts(dir.path()).0, 1, "no second identity");
    let (_, other) = send("0f6b6c3e-0000-4000-8000-000000000002").await;
    assert_ne!(other["identity"]["id"], first["identity"]["id"]);
    assert_eq!(table_counts(dir.path()).0, 2);
}

#[tokio::test]
async fn revocation_and_keys_survive_restart() {
    let dir = TempDir::new("palaver-e2e");
    let mut server = Server::start_in(dir.path(), ServerOptions::default()).await;
    let (revoked_id, revoked_token) = server.create_user_token(&["chat"]).await;
    let (_, kept_token) = server.create_user_token(&["voip"]).await;
    let (s, _) =
        server.signed(Method::POST, &format!("/identities/{}/:revokeAccessTokens?{V}", enc(&revoked_id)), "").await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let connection_string = server.connection_string().to_string();
    assert!(server.terminate().success(), "graceful shutdown exits 0");

    let server = Server::start_in(dir.path(), ServerOptions::default()).await;
    assert_eq!(
        server.connection_string().split(";accesskey=").nth(1),
        connection_string.split(";accesskey=").nth(1),
        "access key kept"
    );
    let (s, r) = server.whoami(&revoked_token).await;
    assert_eq!(
        (s, r["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("TokenRevoked")),
        "revocation survives restart"
    );
    let (s, r) = server.whoami(&kept_token).await;
    assert_eq!(s, StatusCode::OK, "signing key survives restart: {r}");
    let issue = format!("/identities/{}/:issueAccessToken?{V}", enc(&revoked_id));
    let (s, fresh) = server.signed(Method::POST, &issue, r#"{"scopes":["chat"]}"#).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(server.whoami(fresh["token"].as_str().unwrap()).await.0, StatusCode::OK);
}
