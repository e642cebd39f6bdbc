//! Chat API through the full router on an in-memory store: status codes, shapes, paging,
//! scopes, membership rules, limits, and that refused requests write nothing.

use super::encode_segment;
use crate::api::testing::{error_code, send, test_state};
use crate::app::AppState;
use crate::auth::TokenGrant;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use palaver_core::time::now_ms;
use palaver_core::{Scope, ScopeSet};
use serde_json::{Value, json};

const V: &str = "api-version=2024-03-07";

struct User {
    raw_id: String,
    token: String,
}

fn user(state: &AppState, scopes: &[Scope]) -> User {
    let raw_id = format!("8:acs:{}_{}", state.resource.resource_id, uuid::Uuid::new_v4());
    state.store.with_conn(|c| crate::store::identities::insert_identity(c, &raw_id, now_ms())).unwrap();
    let grant = TokenGrant {
        raw_id: raw_id.clone(),
        scopes: scopes.iter().fold(ScopeSet::empty(), |s, x| s.with(*x)),
        expires_at_ms: now_ms() + 3_600_000,
        name: None,
        tid: None,
        native: false,
    };
    User { raw_id, token: state.auth.tokens.issue(&grant, now_ms()).unwrap().token }
}

fn req(u: &User, method: &str, path: &str, body: Option<Value>) -> Request<Body> {
    let sep = if path.contains('?') { '&' } else { '?' };
    Request::builder()
        .method(method)
        .uri(format!("{path}{sep}{V}"))
        .header("authorization", format!("Bearer {}", u.token))
        .header("content-type", "application/json")
        .body(body.map(|b| Body::from(b.to_string())).unwrap_or_else(Body::empty))
        .unwrap()
}

fn ident(raw: &str) -> Value {
    json!({"rawId": raw, "communicationUser": {"id": raw}})
}

async fn create_thread(state: &AppState, u: &User, others: &[&User]) -> String {
    let participants: Vec<Value> =
        others.iter().map(|o| json!({"communicationIdentifier": ident(&o.raw_id), "displayName": "B"})).collect();
    let (status, body) =
        send(state, req(u, "POST", "/chat/threads", Some(json!({"topic": "t", "participants": participants})))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["chatThread"]["id"].as_str().unwrap().to_string()
}

fn thread_path(id: &str) -> String {
    format!("/chat/threads/{}", encode_segment(id))
}

async fn message_count(state: &AppState, u: &User, tid: &str) -> usize {
    let (_, body) = send(state, req(u, "GET", &format!("{}/messages", thread_path(tid)), None)).await;
    body["value"].as_array().unwrap().len()
}

#[tokio::test]
async fn create_writes_system_messages_and_replays() {
    let state = test_state();
    let (a, b) = (user(&state, &[Scope::Chat]), user(&state, &[Scope::Chat]));
    let body = json!({"topic": "Lunch", "participants": [
        {"communicationIdentifier": ident(&b.raw_id), "displayName": "Bea", "shareHistoryTime": "2026-01-01T00:00:00.000Z"},
        {"communicationIdentifier": ident("8:acs:other_x")},
        {"communicationIdentifier": ident(&format!("8:acs:{}_nobody", state.resource.resource_id))}]});
    let mut r = req(&a, "POST", "/chat/threads", Some(body.clone()));
    r.headers_mut().insert("repeatability-request-id", "r1".parse().unwrap());
    let (status, created) = send(&state, r).await;
    assert_eq!(status, StatusCode::CREATED);
    let thread = &created["chatThread"];
    assert!(thread["id"].as_str().unwrap().starts_with("19:"));
    assert_eq!(thread["topic"], "Lunch");
    assert_eq!(thread["createdByCommunicationIdentifier"]["rawId"], a.raw_id.as_str());
    assert_eq!(created["invalidParticipants"][0]["target"], "8:acs:other_x");
    assert_eq!(created["invalidParticipants"][0]["code"], "403");
    assert_eq!(created["invalidParticipants"][1]["code"], "404");
    let mut again = req(&a, "POST", "/chat/threads", Some(body));
    again.headers_mut().insert("repeatability-request-id", "r1".parse().unwrap());
    assert_eq!(send(&state, again).await, (StatusCode::CREATED, created.clone()));
    let tid = thread["id"].as_str().unwrap();
    let (_, msgs) = send(&state, req(&a, "GET", &format!("{}/messages", thread_path(tid)), None)).await;
    let v = msgs["value"].as_array().unwrap();
    assert_eq!(v.len(), 2, "{msgs}");
    assert_eq!((v[0]["type"].as_str(), v[0]["sequenceId"].as_str()), (Some("topicUpdated"), Some("2")));
    assert_eq!(v[0]["content"]["topic"], "Lunch");
    assert_eq!((v[1]["type"].as_str(), v[1]["sequenceId"].as_str()), (Some("participantAdded"), Some("1")));
    assert_eq!(v[1]["content"]["participants"].as_array().unwrap().len(), 2);
    assert_eq!(v[1]["content"]["initiatorCommunicationIdentifier"]["rawId"], a.raw_id.as_str());
}

#[tokio::test]
async fn messages_send_edit_delete_and_rules() {
    let state = test_state();
    let (a, b, c) =
        (user(&state, &[Scope::Chat]), user(&state, &[Scope::ChatJoinLimited]), user(&state, &[Scope::Chat]));
    let tid = create_thread(&state, &a, &[&b]).await;
    let msgs = format!("{}/messages", thread_path(&tid));
    let send_body = json!({"content": "<b>hi</b><img src=x onerror=alert(1)>", "type": "html", "senderDisplayName": "Ann", "metadata": {"k": "v"}});
    let (status, sent) = send(&state, req(&a, "POST", &msgs, Some(send_body))).await;
    assert_eq!(status, StatusCode::CREATED);
    let mid = sent["id"].as_str().unwrap().to_string();
    let (status, m) = send(&state, req(&b, "GET", &format!("{msgs}/{mid}"), None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(m["content"]["message"], "<b>hi</b>&lt;img src=x onerror=alert(1)&gt;");
    assert_eq!(
        (m["type"].as_str(), m["sequenceId"].as_str(), m["senderDisplayName"].as_str()),
        (Some("html"), Some("3"), Some("Ann"))
    );
    assert_eq!(m["version"], mid.as_str());
    assert_eq!(m["metadata"]["k"], "v");
    // Not the sender: 403, and nothing changed.
    let (status, e) = send(&state, req(&b, "PATCH", &format!("{msgs}/{mid}"), Some(json!({"content": "x"})))).await;
    assert_eq!((status, error_code(&e)), (StatusCode::FORBIDDEN, "Forbidden"));
    // Not a participant / unknown thread / too large / scope.
    let (status, e) = send(&state, req(&c, "POST", &msgs, Some(json!({"content": "x"})))).await;
    assert_eq!((status, error_code(&e)), (StatusCode::FORBIDDEN, "Forbidden"));
    let (status, e) =
        send(&state, req(&a, "GET", &format!("{}/messages", thread_path("19:nope@thread.v2")), None)).await;
    assert_eq!((status, error_code(&e)), (StatusCode::NOT_FOUND, "NotFound"));
    let big = "a".repeat(28 * 1024 + 1);
    let (status, e) = send(&state, req(&a, "POST", &msgs, Some(json!({"content": big})))).await;
    assert_eq!((status, error_code(&e)), (StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge"));
    let (status, e) = send(&state, req(&b, "PATCH", &thread_path(&tid), Some(json!({"topic": "x"})))).await;
    assert_eq!((status, error_code(&e)), (StatusCode::FORBIDDEN, "InsufficientScope"));
    let mut malformed = req(&a, "POST", &msgs, None);
    *malformed.body_mut() = Body::from("{\"content\": \"x\"");
    let (status, e) = send(&state, malformed).await;
    assert_eq!((status, error_code(&e)), (StatusCode::BAD_REQUEST, "InvalidJson"));
    assert_eq!(message_count(&state, &a, &tid).await, 3);
    // The sender edits (version moves, editedOn set) and deletes (tombstone keeps its place).
    let (status, _) = send(
        &state,
        req(&a, "PATCH", &format!("{msgs}/{mid}"), Some(json!({"content": "edited", "metadata": {"k": ""}}))),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, m) = send(&state, req(&a, "GET", &format!("{msgs}/{mid}"), None)).await;
    assert_eq!(m["content"]["message"], "edited");
    assert!(m["editedOn"].is_string() && m["version"] != mid.as_str() && m.get("metadata").is_none(), "{m}");
    let (status, _) = send(&state, req(&a, "DELETE", &format!("{msgs}/{mid}"), None)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, list) = send(&state, req(&b, "GET", &msgs, None)).await;
    assert_eq!(list["value"][0]["id"], mid.as_str());
    assert!(list["value"][0]["deletedOn"].is_string() && list["value"][0].get("content").is_none());
}

#[tokio::test]
async fn paging_tokens_are_signed_and_url_safe() {
    let state = test_state();
    let a = user(&state, &[Scope::Chat]);
    let tid = create_thread(&state, &a, &[]).await;
    let msgs = format!("{}/messages", thread_path(&tid));
    for i in 0..5 {
        send(&state, req(&a, "POST", &msgs, Some(json!({"content": format!("m{i}")})))).await;
    }
    let mut next = Some(format!("{msgs}?maxPageSize=3"));
    let mut seqs = vec![];
    while let Some(link) = next {
        let (status, page) = send(&state, req(&a, "GET", &link, None)).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seqs.extend(
            page["value"].as_array().unwrap().iter().map(|m| m["sequenceId"].as_str().unwrap().parse::<i64>().unwrap()),
        );
        next = page["nextLink"].as_str().map(str::to_string);
        if let Some(l) = &next {
            assert!(!l.contains('+') && !l.contains('='.to_string().repeat(2).as_str()), "{l}");
        }
    }
    assert_eq!(seqs, vec![7, 6, 5, 4, 3, 2, 1]);
    let (status, e) = send(&state, req(&a, "GET", &format!("{msgs}?syncState=forged"), None)).await;
    assert_eq!((status, error_code(&e)), (StatusCode::BAD_REQUEST, "InvalidPageToken"));
    let (status, e) = send(&state, req(&a, "GET", &format!("{msgs}?maxPageSize=0"), None)).await;
    assert_eq!((status, error_code(&e)), (StatusCode::BAD_REQUEST, "InvalidParameter"));
}

#[tokio::test]
async fn removed_participant_keeps_history_but_gets_nothing_new() {
    let state = test_state();
    let (a, b) = (user(&state, &[Scope::Chat]), user(&state, &[Scope::Chat]));
    let tid = create_thread(&state, &a, &[&b]).await;
    let msgs = format!("{}/messages", thread_path(&tid));
    send(&state, req(&a, "POST", &msgs, Some(json!({"content": "before"})))).await;
    let (status, _) =
        send(&state, req(&a, "POST", &format!("{}/participants/:remove", thread_path(&tid)), Some(ident(&b.raw_id))))
            .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    send(&state, req(&a, "POST", &msgs, Some(json!({"content": "after"})))).await;
    let (status, list) = send(&state, req(&b, "GET", &msgs, None)).await;
    assert_eq!(status, StatusCode::OK);
    let types: Vec<_> =
        list["value"].as_array().unwrap().iter().map(|m| m["type"].as_str().unwrap().to_string()).collect();
    assert_eq!(types, ["participantRemoved", "text", "topicUpdated", "participantAdded"]);
    let (status, e) = send(&state, req(&b, "POST", &msgs, Some(json!({"content": "x"})))).await;
    assert_eq!((status, error_code(&e)), (StatusCode::FORBIDDEN, "Forbidden"));
    let (_, ps) = send(&state, req(&a, "GET", &format!("{}/participants", thread_path(&tid)), None)).await;
    assert_eq!(ps["value"].as_array().unwrap().len(), 1);
    let (_, threads) = send(&state, req(&b, "GET", "/chat/threads", None)).await;
    assert_eq!(threads["value"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn participants_receipts_typing_and_limits() {
    let state = test_state();
    let (a, b) = (user(&state, &[Scope::Chat]), user(&state, &[Scope::ChatJoin]));
    let tid = create_thread(&state, &a, &[]).await;
    let tp = thread_path(&tid);
    let add = json!({"participants": [{"communicationIdentifier": ident(&b.raw_id), "displayName": "Bea", "shareHistoryTime": "2030-01-01T00:00:00Z"}]});
    let (status, body) = send(&state, req(&a, "POST", &format!("{tp}/participants/:add"), Some(add))).await;
    assert_eq!((status, body), (StatusCode::CREATED, json!({})));
    let (_, ps) = send(&state, req(&a, "GET", &format!("{tp}/participants?maxPageSize=1"), None)).await;
    assert_eq!(ps["value"].as_array().unwrap().len(), 1);
    let next = ps["nextLink"].as_str().unwrap();
    let (_, ps2) = send(&state, req(&a, "GET", next, None)).await;
    assert_eq!(ps2["value"][0]["communicationIdentifier"]["rawId"], b.raw_id.as_str());
    assert_eq!(ps2["value"][0]["shareHistoryTime"], "2030-01-01T00:00:00.000Z");
    // b's history starts in 2030: nothing visible yet.
    assert_eq!(message_count(&state, &b, &tid).await, 0);
    let (_, sent) = send(&state, req(&a, "POST", &format!("{tp}/messages"), Some(json!({"content": "x"})))).await;
    let mid = sent["id"].as_str().unwrap();
    let (status, _) =
        send(&state, req(&a, "POST", &format!("{tp}/readReceipts"), Some(json!({"chatMessageId": mid})))).await;
    assert_eq!(status, StatusCode::OK);
    let (_, rr) = send(&state, req(&a, "GET", &format!("{tp}/readReceipts"), None)).await;
    assert_eq!(rr["value"][0]["chatMessageId"], mid);
    assert_eq!(rr["value"][0]["senderCommunicationIdentifier"]["rawId"], a.raw_id.as_str());
    let (status, e) =
        send(&state, req(&a, "POST", &format!("{tp}/readReceipts"), Some(json!({"chatMessageId": "1"})))).await;
    assert_eq!((status, error_code(&e)), (StatusCode::NOT_FOUND, "NotFound"));
    let (status, _) = send(&state, req(&a, "POST", &format!("{tp}/typing"), None)).await;
    assert_eq!(status, StatusCode::OK);
    // 201 in one batch: refused whole.
    let many: Vec<Value> = (0..201)
        .map(|i| json!({"communicationIdentifier": ident(&format!("8:orgid:{i:08}-0000-4000-8000-000000000000"))}))
        .collect();
    let (status, e) =
        send(&state, req(&a, "POST", &format!("{tp}/participants/:add"), Some(json!({"participants": many})))).await;
    assert_eq!((status, error_code(&e)), (StatusCode::BAD_REQUEST, "InvalidParameter"));
    // Fill to 250, then one more is refused.
    for chunk in 0..2 {
        let list: Vec<Value> = (0..124).map(|i| json!({"communicationIdentifier": ident(&format!("8:orgid:{:08}-0000-4000-8000-000000000000", chunk * 1000 + i))})).collect();
        let (status, body) =
            send(&state, req(&a, "POST", &format!("{tp}/participants/:add"), Some(json!({"participants": list}))))
                .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let one =
        json!({"participants": [{"communicationIdentifier": ident("8:orgid:99999999-0000-4000-8000-000000000000")}]});
    let (status, e) = send(&state, req(&a, "POST", &format!("{tp}/participants/:add"), Some(one))).await;
    assert_eq!((status, error_code(&e)), (StatusCode::UNPROCESSABLE_ENTITY, "CapacityReached"));
    // chat.join cannot delete the thread; chat can.
    let (status, e) = send(&state, req(&b, "DELETE", &tp, None)).await;
    assert_eq!((status, error_code(&e)), (StatusCode::FORBIDDEN, "InsufficientScope"));
    assert_eq!(send(&state, req(&a, "DELETE", &tp, None)).await.0, StatusCode::NO_CONTENT);
    assert_eq!(send(&state, req(&a, "GET", &tp, None)).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn over_a_rate_limit_is_429_with_retry_after_and_writes_nothing() {
    use tower::ServiceExt;
    let state = test_state();
    let (a, b) = (user(&state, &[Scope::Chat]), user(&state, &[Scope::Chat]));
    // ACS: 10 thread creations per user per 10 s.
    for _ in 0..10 {
        create_thread(&state, &a, &[]).await;
    }
    let resp = crate::api::router(state.clone())
        .oneshot(req(&a, "POST", "/chat/threads", Some(json!({"topic": "one too many"}))))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=10).contains(&retry), "Retry-After {retry}");
    let body: Value = serde_json::from_slice(&axum::body::to_bytes(resp.into_body(), 1 << 16).await.unwrap()).unwrap();
    assert_eq!(error_code(&body), "TooManyRequests", "{body}");
    let (_, threads) = send(&state, req(&a, "GET", "/chat/threads", None)).await;
    assert_eq!(threads["value"].as_array().unwrap().len(), 10, "the refused create wrote nothing");
    // Another identity is not affected.
    create_thread(&state, &b, &[]).await;

    // ACS: 5 topic updates per thread per 10 s, whoever sends them.
    let tid = create_thread(&state, &b, &[&a]).await;
    for (i, who) in [&a, &b, &a, &b, &a].into_iter().enumerate() {
        let (status, body) =
            send(&state, req(who, "PATCH", &thread_path(&tid), Some(json!({"topic": format!("t{i}")})))).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    }
    let (status, body) = send(&state, req(&b, "PATCH", &thread_path(&tid), Some(json!({"topic": "t5"})))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::TOO_MANY_REQUESTS, "TooManyRequests"));
    let (_, thread) = send(&state, req(&b, "GET", &thread_path(&tid), None)).await;
    assert_eq!(thread["topic"], "t4");
}
