//! The Rooms API through the real router with signed requests: the SDK's flows, paging,
//! replays, and every bad input answered with its code while nothing is written.

use crate::auth::hmac::{authorization_header, content_hash};
use crate::api::router;
use crate::app::{AppState, SignalingConfig};
use crate::store::Store;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use serde_json::{Value, json};
use tower::ServiceExt;

const V: &str = "2025-03-13";
const HOST: &str = "127.0.0.1:8443";

struct Api {
    state: AppState,
}

struct Reply {
    status: StatusCode,
    json: Value,
}

impl Reply {
    fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("<none>")
    }
}

impl Api {
    fn new() -> Self {
        let cfg = SignalingConfig { resource_id: Some("res1".into()), ..Default::default() };
        Self { state: AppState::open(cfg, Store::open_in_memory().unwrap(), crate::app::AppParts::default()).unwrap() }
    }

    async fn send(&self, method: &str, target: &str, body: Option<Value>, headers: &[(&str, &str)]) -> Reply {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let key = base64::engine::general_purpose::STANDARD.decode(&self.state.resource.access_key).unwrap();
        let date = httpdate::fmt_http_date(std::time::SystemTime::now());
        let hash = content_hash(body.as_bytes());
        let mut req = Request::builder()
            .method(method)
            .uri(target)
            .header("host", HOST)
            .header("x-ms-date", &date)
            .header("x-ms-content-sha256", &hash)
            .header("content-type", "application/merge-patch+json");
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("authorization")) {
            req = req.header("authorization", authorization_header(&key, method, target, &date, HOST, &hash));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = router(self.state.clone()).oneshot(req.body(Body::from(body)).unwrap()).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        let json = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
        Reply { status, json }
    }

    async fn create(&self, body: Value) -> Reply {
        self.send("POST", &format!("/rooms?api-version={V}"), Some(body), &[]).await
    }

    fn counts(&self) -> (i64, i64) {
        self.state
            .store
            .with_conn(|c| {
                let rooms = c.query_row("SELECT COUNT(*) FROM rooms", [], |r| r.get(0))?;
                let parts = c.query_row("SELECT COUNT(*) FROM room_participants", [], |r| r.get(0))?;
                Ok((rooms, parts))
            })
            .unwrap()
    }
}

fn in_days(days: i64) -> String {
    (chrono::Utc::now() + chrono::TimeDelta::days(days)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[tokio::test]
async fn room_lifecycle_as_the_sdk_drives_it() {
    let api = Api::new();
    let created = api
        .create(json!({"validFrom": null, "validUntil": in_days(30), "pstnDialOutEnabled": true,
            "participants": {"8:acs:res1_a": {"role": "Presenter"}, "8:orgid:oid-b": {"role": "Collaborator"}}}))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.json);
    let id = created.json["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 17);
    assert!(id.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(created.json["pstnDialOutEnabled"], true);
    for key in ["createdAt", "validFrom", "validUntil"] {
        assert!(created.json[key].as_str().unwrap().ends_with('Z'), "{key}");
    }

    let got = api.send("GET", &format!("/rooms/{id}?api-version={V}"), None, &[]).await;
    assert_eq!((got.status, &got.json), (StatusCode::OK, &created.json));

    let patched = api
        .send(
            "PATCH",
            &format!("/rooms/{id}?api-version={V}"),
            Some(json!({"validFrom": null, "validUntil": null, "pstnDialOutEnabled": false})),
            &[],
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK);
    assert_eq!(patched.json["pstnDialOutEnabled"], false);
    assert_eq!(patched.json["validUntil"], created.json["validUntil"]);

    let participants = format!("/rooms/{id}/participants?api-version={V}");
    let upd = api
        .send("PATCH", &participants, Some(json!({"participants": {"8:acs:res1_a": {"role": "Consumer"}, "8:acs:res1_c": {}, "8:orgid:oid-b": null}})), &[])
        .await;
    assert_eq!((upd.status, &upd.json), (StatusCode::OK, &json!({})));
    let listed = api.send("GET", &participants, None, &[]).await;
    assert_eq!(
        listed.json,
        json!({"value": [{"rawId": "8:acs:res1_a", "role": "Consumer"}, {"rawId": "8:acs:res1_c", "role": "Attendee"}]})
    );
    assert_eq!(
        api.state.rooms.participant_role(&id, "8:acs:res1_a", palaver_core::time::now_ms()).await,
        Ok(palaver_core::RoomRole::Consumer)
    );

    let del = api.send("DELETE", &format!("/rooms/{id}?api-version={V}"), None, &[]).await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    let gone = api.send("GET", &format!("/rooms/{id}?api-version={V}"), None, &[]).await;
    assert_eq!((gone.status, gone.code()), (StatusCode::NOT_FOUND, "NotFound"));
    assert_eq!(gone.json["error"]["message"], "The server cannot find the requested resource.");
    let again = api.send("DELETE", &format!("/rooms/{id}?api-version={V}"), None, &[]).await;
    assert_eq!(again.status, StatusCode::NO_CONTENT, "a second delete is 204, as on ACS");
    assert_eq!(api.counts(), (0, 0));
}

#[tokio::test]
async fn lists_are_paged_with_next_links() {
    let api = Api::new();
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(api.create(json!({})).await.json["id"].as_str().unwrap().to_string());
    }
    let mut seen = Vec::new();
    let mut target = format!("/rooms?api-version={V}&maxPageSize=2");
    let mut pages = 0;
    loop {
        let page = api.send("GET", &target, None, &[]).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.json);
        pages += 1;
        seen.extend(page.json["value"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()));
        match page.json["nextLink"].as_str() {
            Some(next) => target = next.to_string(),
            None => break,
        }
    }
    assert_eq!((seen, pages), (ids.clone(), 3));
    let all = api.send("GET", &format!("/rooms?api-version={V}"), None, &[]).await;
    assert_eq!(all.json["value"].as_array().unwrap().len(), 5);
    assert!(all.json.get("nextLink").is_none());
}

#[tokio::test]
async fn participant_lists_are_paged_in_the_order_added() {
    let api = Api::new();
    let ids: Vec<String> = (0..5).map(|i| format!("8:acs:res1_p{i}")).collect();
    let id = api.create(json!({})).await.json["id"].as_str().unwrap().to_string();
    for raw in &ids {
        let body = json!({"participants": {raw.clone(): {"role": "Consumer"}}});
        let r = api.send("PATCH", &format!("/rooms/{id}/participants?api-version={V}"), Some(body), &[]).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let (mut seen, mut target) = (Vec::new(), format!("/rooms/{id}/participants?api-version={V}&maxPageSize=2"));
    loop {
        let page = api.send("GET", &target, None, &[]).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.json);
        seen.extend(page.json["value"].as_array().unwrap().iter().map(|p| p["rawId"].as_str().unwrap().to_string()));
        match page.json["nextLink"].as_str() {
            Some(next) => target = next.to_string(),
            None => break,
        }
    }
    assert_eq!(seen, ids);
}

#[tokio::test]
async fn older_api_versions_are_accepted() {
    let api = Api::new();
    for v in ["2023-06-14", "2024-04-15"] {
        let r = api.send("POST", &format!("/rooms?api-version={v}"), Some(json!({})), &[]).await;
        assert_eq!(r.status, StatusCode::CREATED, "{v}");
    }
    // The SDK's enum spelling, sent when it follows a nextLink on Python 3.11+.
    let r = api.send("GET", "/rooms?api-version=ApiVersion.V2025_03_13&maxPageSize=1", None, &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = api.send("GET", "/rooms?api-version=ApiVersion.V2020_01_01", None, &[]).await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "UnsupportedApiVersion"));
}

#[tokio::test]
async fn repeatability_request_id_replays_the_first_room() {
    let api = Api::new();
    let target = format!("/rooms?api-version={V}");
    let body = json!({"validUntil": in_days(3)});
    let h = [("Repeatability-Request-Id", "7f1c0d2e-0000-4000-8000-000000000001")];
    let first = api.send("POST", &target, Some(body.clone()), &h).await;
    let again = api.send("POST", &target, Some(body), &h).await;
    assert_eq!((again.status, &again.json), (StatusCode::CREATED, &first.json));
    let other = api.send("POST", &target, Some(json!({"validUntil": in_days(4)})), &h).await;
    assert_eq!((other.status, other.code()), (StatusCode::CONFLICT, "Conflict"));
    assert_eq!(api.counts(), (1, 0));
}

#[tokio::test]
async fn bad_input_gets_its_code_and_writes_nothing() {
    let api = Api::new();
    let id = api.create(json!({"participants": {"8:acs:res1_keep": {"role": "Attendee"}}})).await.json["id"]
        .as_str()
        .unwrap()
        .to_string();
    let before = api.counts();
    let room = format!("/rooms/{id}?api-version={V}");
    let parts = format!("/rooms/{id}/participants?api-version={V}");
    let create = format!("/rooms?api-version={V}");
    let many: serde_json::Map<String, Value> =
        (0..351).map(|i| (format!("8:acs:res1_u{i}"), json!({"role": "Attendee"}))).collect();
    let cases: Vec<(&str, String, Option<Value>, StatusCode, &str)> = vec![
        (
            "POST",
            create.clone(),
            Some(json!({"validFrom": "yesterday-ish"})),
            StatusCode::BAD_REQUEST,
            "InvalidParameter",
        ),
        (
            "POST",
            create.clone(),
            Some(json!({"validFrom": in_days(2), "validUntil": in_days(1)})),
            StatusCode::BAD_REQUEST,
            "BadRequest",
        ),
        (
            "POST",
            create.clone(),
            Some(json!({"validUntil": in_days(181)})),
            StatusCode::BAD_REQUEST,
            "BadRequest",
        ),
        (
            "POST",
            create.clone(),
            Some(json!({"validFrom": in_days(-3), "validUntil": in_days(-1)})),
            StatusCode::BAD_REQUEST,
            "BadRequest",
        ),
        ("POST", create.clone(), Some(json!({"pstnDialOutEnabled": "yes"})), StatusCode::BAD_REQUEST, "InvalidJson"),
        ("POST", create.clone(), Some(json!([1, 2])), StatusCode::BAD_REQUEST, "InvalidJson"),
        (
            "POST",
            create.clone(),
            Some(json!({"participants": {"8:acs:res1_x": {"role": "Owner"}}})),
            StatusCode::BAD_REQUEST,
            "InvalidParameter",
        ),
        (
            "POST",
            create.clone(),
            Some(json!({"participants": {"8:acs:other_x": {}}})),
            StatusCode::BAD_REQUEST,
            "InvalidIdentifier",
        ),
        (
            "POST",
            create.clone(),
            Some(json!({"participants": {"4:+14255550123": {}}})),
            StatusCode::BAD_REQUEST,
            "InvalidIdentifier",
        ),
        (
            "POST",
            create.clone(),
            Some(json!({"participants": {"8:gcch:gov": {}}})),
            StatusCode::FORBIDDEN,
            "GovernmentCloudNotSupported",
        ),
        (
            "POST",
            create.clone(),
            Some(json!({"participants": {"8:acs:res1_x": null}})),
            StatusCode::BAD_REQUEST,
            "InvalidParameter",
        ),
        (
            "POST",
            create.clone(),
            Some(json!({"participants": many.clone()})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "CapacityReached",
        ),
        ("POST", "/rooms".into(), Some(json!({})), StatusCode::BAD_REQUEST, "UnsupportedApiVersion"),
        (
            "POST",
            "/rooms?api-version=2022-01-01".into(),
            Some(json!({})),
            StatusCode::BAD_REQUEST,
            "UnsupportedApiVersion",
        ),
        ("GET", format!("/rooms?api-version={V}&skipToken=zzz"), None, StatusCode::BAD_REQUEST, "InvalidPageToken"),
        ("GET", format!("/rooms?api-version={V}&maxPageSize=0"), None, StatusCode::BAD_REQUEST, "InvalidParameter"),
        ("GET", format!("/rooms/123?api-version={V}"), None, StatusCode::BAD_REQUEST, "InvalidInput"),
        ("PATCH", format!("/rooms/123?api-version={V}"), Some(json!({})), StatusCode::BAD_REQUEST, "InvalidInput"),
        ("DELETE", format!("/rooms/123?api-version={V}"), None, StatusCode::BAD_REQUEST, "InvalidInput"),
        ("GET", format!("/rooms/f-123456789012345?api-version={V}"), None, StatusCode::BAD_REQUEST, "InvalidInput"),
        ("GET", format!("/rooms/99999999999999999?api-version={V}"), None, StatusCode::NOT_FOUND, "NotFound"),
        ("POST", create.clone(), Some(json!({"validFrom": in_days(181)})), StatusCode::BAD_REQUEST, "BadRequest"),
        ("PATCH", room.clone(), Some(json!({"validUntil": in_days(-1)})), StatusCode::BAD_REQUEST, "BadRequest"),
        ("PATCH", room.clone(), Some(json!({"validFrom": in_days(200)})), StatusCode::BAD_REQUEST, "BadRequest"),
        (
            "PATCH",
            room.clone(),
            Some(json!({"validFrom": in_days(100), "validUntil": in_days(290)})),
            StatusCode::BAD_REQUEST,
            "BadRequest",
        ),
        ("PATCH", room.clone(), Some(json!({"validUntil": 5})), StatusCode::BAD_REQUEST, "InvalidJson"),
        ("PATCH", parts.clone(), Some(json!({})), StatusCode::BAD_REQUEST, "InvalidParameter"),
        ("PATCH", parts.clone(), None, StatusCode::BAD_REQUEST, "InvalidJson"),
        (
            "PATCH",
            parts.clone(),
            Some(json!({"participants": {"8:acs:res1_n": {"role": "Owner"}}})),
            StatusCode::BAD_REQUEST,
            "BadRequest",
        ),
        (
            "PATCH",
            parts.clone(),
            Some(json!({"participants": {"garbage": {}}})),
            StatusCode::BAD_REQUEST,
            "InvalidInput",
        ),
        (
            "PATCH",
            parts.clone(),
            Some(json!({"participants": many})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "CapacityReached",
        ),
        (
            "PATCH",
            format!("/rooms/99999999999999999/participants?api-version={V}"),
            Some(json!({"participants": {}})),
            StatusCode::NOT_FOUND,
            "NotFound",
        ),
        ("GET", format!("/rooms/123/participants?api-version={V}"), None, StatusCode::BAD_REQUEST, "InvalidInput"),
    ];
    for (method, target, body, status, code) in cases {
        let r = api.send(method, &target, body, &[]).await;
        assert_eq!((r.status, r.code()), (status, code), "{method} {target}: {}", r.json);
        assert_eq!(api.counts(), before, "{method} {target} wrote something");
    }
    let got = api.send("GET", &room, None, &[]).await;
    assert_eq!(got.status, StatusCode::OK, "the room is intact");
}

#[tokio::test]
async fn unsigned_or_badly_signed_requests_are_refused() {
    let api = Api::new();
    let req = Request::builder().method("GET").uri(format!("/rooms?api-version={V}")).header("host", HOST);
    let resp = router(api.state.clone()).oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let forged = api
        .send(
            "GET",
            &format!("/rooms?api-version={V}"),
            None,
            &[("authorization", "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=AAAA")],
        )
        .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
}
