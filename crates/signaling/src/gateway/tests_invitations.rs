//! Call Automation invitations into a room joined with `connect`: only the room's participants
//! ring, the invited client joins by the `join` target its `call.incoming` names, and a
//! declined invitation stops ringing.

use super::tests::Server;
use palaver_core::Scope;
use serde_json::json;

/// `connect` to `locator`; the call connection id once it is connected (the conversation
/// answered its join).
async fn connect(s: &Server, locator: serde_json::Value) -> String {
    let body = json!({"callLocator": locator, "callbackUri": "https://app/cb"});
    let (status, props) = s.hmac_rest("POST", "/calling/callConnections:connect?api-version=2025-06-15", body).await;
    assert_eq!(status, 200, "{props}");
    let ccid = props["callConnectionId"].as_str().unwrap().to_string();
    let get_path = format!("/calling/callConnections/{ccid}?api-version=2025-06-15");
    for _ in 0..200 {
        if s.hmac_rest("GET", &get_path, serde_json::Value::Null).await.1["callConnectionState"] == "connected" {
            return ccid;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("call connection {ccid} did not connect");
}

/// Whether `raw` shows up in call connection `ccid`'s participant list within 2 s.
async fn listed(s: &Server, ccid: &str, raw: &str) -> bool {
    let list_path = format!("/calling/callConnections/{ccid}/participants?api-version=2025-06-15");
    for _ in 0..200 {
        let (_, list) = s.hmac_rest("GET", &list_path, serde_json::Value::Null).await;
        if list["value"].as_array().is_some_and(|v| v.iter().any(|p| p["identifier"]["rawId"] == raw)) {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn in_a_room_add_participant_rings_only_its_participants_and_the_invited_client_joins() {
    let s = Server::start().await;
    let (member, other_member, stranger) = (s.external_id(), s.external_id(), s.external_id());
    let participants = json!({member.clone(): {"role": "Attendee"}, other_member.clone(): {"role": "Attendee"}});
    let (status, room) =
        s.hmac_rest("POST", "/rooms?api-version=2025-03-13", json!({"participants": participants})).await;
    assert_eq!(status, 201, "{room}");
    let room_id = room["id"].as_str().unwrap().to_string();
    let ccid = connect(&s, json!({"kind": "roomCallLocator", "roomId": room_id})).await;
    let add_path = format!("/calling/callConnections/{ccid}/participants:add?api-version=2025-06-15");
    let id = |raw: &str| json!({"rawId": raw, "communicationUser": {"id": raw}});
    let (status, body) = s.hmac_rest("POST", &add_path, json!({"participantToAdd": id(&stranger)})).await;
    assert_eq!((status, &body["error"]["code"]), (403, &json!("8523")), "not on the room's list: {body}");

    let mut client = s.connect(&s.token(&member, None, &[Scope::Voip])).await;
    let (status, added) = s.hmac_rest("POST", &add_path, json!({"participantToAdd": id(&member)})).await;
    assert_eq!(status, 202, "{added}");
    let ring = client.recv_type("call.incoming").await;
    assert_eq!(ring["callId"], added["invitationId"]);
    assert_eq!(ring["join"], json!({"kind": "room", "roomId": room_id}));
    client.send(json!({"type": "join", "target": ring["join"]})).await;
    client.recv_type("joined").await;
    assert!(listed(&s, &ccid, &member).await, "the invited member is in the connection's roster");

    // A declined invitation stops ringing; declining again is an unknown call.
    let mut other = s.connect(&s.token(&other_member, None, &[Scope::Voip])).await;
    let (status, added) = s.hmac_rest("POST", &add_path, json!({"participantToAdd": id(&other_member)})).await;
    assert_eq!(status, 202, "{added}");
    let ring = other.recv_type("call.incoming").await;
    other.send(json!({"type": "call.decline", "requestId": "d1", "callId": ring["callId"]})).await;
    assert_eq!(other.recv_type("call.ended").await["reason"], "declined");
    other.send(json!({"type": "call.decline", "requestId": "d2", "callId": ring["callId"]})).await;
    assert_eq!(other.recv_type("error").await["requestId"], "d2");
}

/// `participants:moveHere` into a group call: a WebSocket client in a 1:1 call between users
/// is taken out of it and joined into the group call on the same socket without ringing
/// (`call.moved`, `call.ended`, `joined`); its counterpart sees it leave; the connection lists
/// it. A target that is not in the named call is refused without touching anyone.
#[tokio::test]
async fn move_here_takes_a_client_out_of_its_call_into_the_group_call_without_ringing() {
    let s = Server::start().await;
    let (alice, bob) = (s.external_id(), s.external_id());
    let group = uuid::Uuid::new_v4().to_string();
    let ccid = connect(&s, json!({"kind": "groupCallLocator", "groupCallId": group})).await;

    // Alice calls Bob; Bob answers.
    let mut a = s.connect(&s.token(&alice, None, &[Scope::Voip])).await;
    let mut b = s.connect(&s.token(&bob, None, &[Scope::Voip])).await;
    a.send(json!({"type": "call.place", "requestId": "p1", "targets": [bob]})).await;
    let call_id = a.recv_type("call.placed").await["callId"].as_str().unwrap().to_string();
    b.recv_type("call.incoming").await;
    b.send(json!({"type": "call.accept", "requestId": "a1", "callId": call_id})).await;
    a.recv_type("call.connected").await;

    let id = |raw: &str| json!({"rawId": raw, "communicationUser": {"id": raw}});
    let move_path = format!("/calling/callConnections/{ccid}/participants:moveHere?api-version=2025-06-15");
    let (status, body) = s
        .hmac_rest(
            "POST",
            &move_path,
            json!({"targetParticipants": [id(&alice)], "fromCall": call_id, "operationContext": "m1"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!((&body["fromCall"], &body["operationContext"]), (&json!(call_id), &json!("m1")), "{body}");
    let moved = a.recv_type("call.moved").await;
    assert_eq!(
        moved,
        json!({"type": "call.moved", "callId": call_id, "join": {"kind": "groupCall", "groupId": group}})
    );
    assert_eq!(a.recv_type("call.ended").await["reason"], "transferred");
    let joined = a.recv_type("joined").await;
    assert!(
        joined["snapshot"]["participants"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["identifier"]["rawId"] == alice.as_str())
    );
    // Bob was left alone: his call is over.
    assert_eq!(b.recv_type("call.ended").await["callId"], call_id.as_str());
    assert!(listed(&s, &ccid, &alice).await, "the moved client is in the connection's roster");

    // Bob is in no call now: the move is accepted (202) and reported failed; Bob is untouched.
    let (status, _) =
        s.hmac_rest("POST", &move_path, json!({"targetParticipants": [id(&bob)], "fromCall": call_id})).await;
    assert_eq!(status, 202);
    b.send(json!({"type": "ping", "nonce": 7})).await;
    let pong = b.recv_type("pong").await;
    assert_eq!(pong["nonce"], 7, "bob's socket is untouched");
}
