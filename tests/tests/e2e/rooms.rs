//! Rooms API over HTTPS against the started binary: the lifecycle with real users,
//! paging, persistence across a restart, and every bad-input case answered with its
//! specific code while nothing is written to the database.

use palaver_e2e::{Server, ServerOptions, TempDir};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::path::Path;

const V: &str = "api-version=2025-03-13";

/// Rows in the rooms tables, read straight from the database file.
fn room_counts(data_dir: &Path) -> (i64, i64) {
    let conn =
        rusqlite::Connection::open_with_flags(data_dir.join("palaver.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open db");
    let count = |t: &str| conn.query_row(&format!("SELECT COUNT(*) FROM {t}"), [], |r| r.get(0)).unwrap();
    (count("rooms"), count("room_participants"))
}

fn in_days(days: i64) -> String {
    (chrono::Utc::now() + chrono::TimeDelta::days(days)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

async fn create(server: &Server, body: Value) -> String {
    let (status, room) = server.signed(Method::POST, &format!("/rooms?{V}"), &body.to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{room}");
    room["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn room_lifecycle_with_real_users_survives_a_restart() {
    let dir = TempDir::new("palaver-e2e-rooms");
    let mut server = Server::start_in(dir.path(), ServerOptions::default()).await;
    let (alice, _) = server.create_user_token(&["voip"]).await;
    let (bob, _) = server.create_user_token(&["voip"]).await;

    let until = in_days(10);
    let id = create(
        &server,
        json!({"validUntil": until, "pstnDialOutEnabled": true,
            "participants": {alice.clone(): {"role": "Presenter"}, "8:orgid:agent-1": {"role": "Collaborator"}}}),
    )
    .await;
    let participants = format!("/rooms/{id}/participants?{V}");
    let (status, upd) = server
        .signed(
            Method::PATCH,
            &participants,
            &json!({"participants": {bob.clone(): {}, "8:orgid:agent-1": null}}).to_string(),
        )
        .await;
    assert_eq!((status, upd), (StatusCode::OK, json!({})));

    server.terminate();
    let server = Server::start_in(dir.path(), ServerOptions::default()).await;
    let (status, room) = server.signed(Method::GET, &format!("/rooms/{id}?{V}"), "").await;
    assert_eq!(status, StatusCode::OK, "{room}");
    assert_eq!((room["validUntil"].as_str(), &room["pstnDialOutEnabled"]), (Some(until.as_str()), &json!(true)));
    let (_, listed) = server.signed(Method::GET, &participants, "").await;
    assert_eq!(listed["value"], json!([{"rawId": alice, "role": "Presenter"}, {"rawId": bob, "role": "Attendee"}]));

    let (status, patched) =
        server.signed(Method::PATCH, &format!("/rooms/{id}?{V}"), r#"{"pstnDialOutEnabled":false}"#).await;
    assert_eq!((status, &patched["pstnDialOutEnabled"]), (StatusCode::OK, &json!(false)));
    let (status, _) = server.signed(Method::DELETE, &format!("/rooms/{id}?{V}"), "").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(room_counts(dir.path()), (0, 0));
}

#[tokio::test]
async fn room_list_pages_follow_next_link() {
    let dir = TempDir::new("palaver-e2e-rooms");
    let server = Server::start_in(dir.path(), ServerOptions::default()).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(create(&server, json!({})).await);
    }
    let (mut seen, mut target) = (Vec::new(), format!("/rooms?{V}&maxPageSize=2"));
    loop {
        let (status, page) = server.signed(Method::GET, &target, "").await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(page["value"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()));
        match page["nextLink"].as_str() {
            Some(next) => target = next.to_string(),
            None => break,
        }
    }
    assert_eq!(seen, ids);
}

#[tokio::test]
async fn room_bad_input_gets_specific_codes_and_writes_nothing() {
    let dir = TempDir::new("palaver-e2e-rooms");
    let server = Server::start_in(dir.path(), ServerOptions::default()).await;
    let (alice, _) = server.create_user_token(&["voip"]).await;
    let id = create(&server, json!({"participants": {alice.clone(): {"role": "Attendee"}}})).await;
    let before = room_counts(dir.path());
    let create_path = format!("/rooms?{V}");
    let room = format!("/rooms/{id}?{V}");
    let parts = format!("/rooms/{id}/participants?{V}");
    let cases: Vec<(Method, String, String, StatusCode, &str)> = vec![
        (Method::POST, create_path.clone(), "{".into(), StatusCode::BAD_REQUEST, "InvalidJson"),
        (
            Method::POST,
            create_path.clone(),
            json!({"validFrom": "not a date"}).to_string(),
            StatusCode::BAD_REQUEST,
            "InvalidParameter",
        ),
        (
            Method::POST,
            create_path.clone(),
            json!({"validFrom": in_days(3), "validUntil": in_days(2)}).to_string(),
            StatusCode::BAD_REQUEST,
            "BadRequest",
        ),
        (
            Method::POST,
            create_path.clone(),
            json!({"validUntil": in_days(200)}).to_string(),
            StatusCode::BAD_REQUEST,
            "BadRequest",
        ),
        (
            Method::POST,
            create_path.clone(),
            json!({"participants": {alice.clone(): {"role": "Admin"}}}).to_string(),
            StatusCode::BAD_REQUEST,
            "BadRequest",
        ),
        (
            Method::POST,
            create_path.clone(),
            json!({"participants": {"8:acs:elsewhere_u": {}}}).to_string(),
            StatusCode::BAD_REQUEST,
            "InvalidIdentifier",
        ),
        (
            Method::POST,
            create_path.clone(),
            json!({"participants": {"8:dod:gov-user": {}}}).to_string(),
            StatusCode::FORBIDDEN,
            "GovernmentCloudNotSupported",
        ),
        (
            Method::POST,
            "/rooms?api-version=2021-03-07".into(),
            "{}".into(),
            StatusCode::BAD_REQUEST,
            "UnsupportedApiVersion",
        ),
        (
            Method::GET,
            format!("/rooms?{V}&skipToken=not-a-token"),
            String::new(),
            StatusCode::BAD_REQUEST,
            "InvalidPageToken",
        ),
        (Method::GET, format!("/rooms/99999999999999999?{V}"), String::new(), StatusCode::NOT_FOUND, "NotFound"),
        (
            Method::PATCH,
            room.clone(),
            json!({"validUntil": in_days(-2)}).to_string(),
            StatusCode::BAD_REQUEST,
            "BadRequest",
        ),
        (
            Method::PATCH,
            room.clone(),
            json!({"pstnDialOutEnabled": 1}).to_string(),
            StatusCode::BAD_REQUEST,
            "InvalidJson",
        ),
        (
            Method::PATCH,
            parts.clone(),
            json!({"participants": {alice.clone(): {"role": "Root"}}}).to_string(),
            StatusCode::BAD_REQUEST,
            "BadRequest",
        ),
        (
            Method::PATCH,
            parts.clone(),
            json!({"participants": {"4:+14255550123": {}}}).to_string(),
            StatusCode::BAD_REQUEST,
            "InvalidIdentifier",
        ),
        (Method::PATCH, parts.clone(), json!({"roles": {}}).to_string(), StatusCode::BAD_REQUEST, "InvalidParameter"),
    ];
    for (method, target, body, status, code) in cases {
        let (got, reply) = server.signed(method.clone(), &target, &body).await;
        assert_eq!((got, reply["error"]["code"].as_str()), (status, Some(code)), "{method} {target} {body}: {reply}");
        assert_eq!(room_counts(dir.path()), before, "{method} {target} wrote something");
    }
    // Unsigned requests never reach the handlers.
    let unsigned = server.http().get(format!("{}/rooms?{V}", server.base_url())).send().await.unwrap();
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);
    let (status, _) = server.signed(Method::GET, &room, "").await;
    assert_eq!(status, StatusCode::OK, "the room is intact");
}
