//! Calls between users against the real binary: an external user calling a directory
//! user is refused; ring → accept, ring → decline, ring → no answer; transfer of a
//! connected call to a call queue whose members are rung in turn.

use crate::signaling::connect;
use palaver_e2e::{Server, ServerOptions, TempDir};
use serde_json::json;

const A: &str = "0b000000-0000-4000-8000-00000000000a";
const B: &str = "0b000000-0000-4000-8000-00000000000b";
const AGENT1: &str = "0b000000-0000-4000-8000-0000000000a1";
const AGENT2: &str = "0b000000-0000-4000-8000-0000000000a2";

async fn start() -> (TempDir, Server) {
    let dir = TempDir::new("palaver-e2e-calls");
    let config = format!(
        "[signaling.calls]\nring_timeout_secs = 2\n\n[[signaling.calls.queues]]\napp_id = \"support\"\nname = \"Support\"\n\
         members = [\"8:orgid:{AGENT1}\", \"8:orgid:{AGENT2}\"]\nmember_ring_timeout_secs = 5\n"
    );
    let server = Server::start_in(dir.path(), ServerOptions { config_toml: Some(config), ..Default::default() }).await;
    (dir, server)
}

#[tokio::test]
async fn ring_accept_decline_timeout_and_the_external_user_rule() {
    let (_dir, server) = start().await;
    let mut a = connect(&server, &server.directory_user_token(A, "Ada").await).await;
    let mut b = connect(&server, &server.directory_user_token(B, "Ben").await).await;
    let (_, ext_token) = server.create_user_token(&["voip"]).await;
    let mut ext = connect(&server, &ext_token).await;

    ext.send(json!({"type":"call.place","requestId":"x","targets":[format!("8:orgid:{B}")]})).await;
    let e = ext.recv_type("error").await;
    assert_eq!((e["code"].as_str(), e["requestId"].as_str()), (Some("ExternalUserCannotCallDirectoryUser"), Some("x")));

    // Ring → accept → hang up.
    a.send(json!({"type":"call.place","targets":[format!("8:orgid:{B}")]})).await;
    let call = a.recv_type("call.placed").await["callId"].as_str().unwrap().to_string();
    assert_eq!(b.recv_type("call.incoming").await["caller"]["displayName"], "Ada");
    b.send(json!({"type":"call.accept","callId":call})).await;
    assert_eq!(a.recv_type("call.connected").await["callType"], "P2P");
    a.send(json!({"type":"call.hangUp","callId":call})).await;
    b.recv_type("call.ended").await;

    // Ring → decline.
    a.send(json!({"type":"call.place","targets":[format!("8:orgid:{B}")]})).await;
    let call = a.recv_type("call.placed").await["callId"].as_str().unwrap().to_string();
    b.recv_type("call.incoming").await;
    b.send(json!({"type":"call.decline","callId":call})).await;
    assert_eq!(a.recv_type("call.ended").await["reason"], "declined");

    // Ring → nobody answers (ring timeout 2 s from the config).
    a.send(json!({"type":"call.place","targets":[format!("8:orgid:{B}")]})).await;
    a.recv_type("call.placed").await;
    b.recv_type("call.incoming").await;
    assert_eq!(a.recv_type("call.ended").await["reason"], "noAnswer");
    assert_eq!(b.recv_type("call.ended").await["reason"], "noAnswer");
}

#[tokio::test]
async fn transfer_to_a_call_queue_rings_its_members_in_turn() {
    let (_dir, server) = start().await;
    let mut a = connect(&server, &server.directory_user_token(A, "Ada").await).await;
    let mut b = connect(&server, &server.directory_user_token(B, "Ben").await).await;
    let mut agent1 = connect(&server, &server.directory_user_token(AGENT1, "Agent One").await).await;
    let mut agent2 = connect(&server, &server.directory_user_token(AGENT2, "Agent Two").await).await;

    a.send(json!({"type":"call.place","targets":[format!("8:orgid:{B}")]})).await;
    let call = a.recv_type("call.placed").await["callId"].as_str().unwrap().to_string();
    b.recv_type("call.incoming").await;
    b.send(json!({"type":"call.accept","callId":call})).await;
    a.recv_type("call.connected").await;

    b.send(json!({"type":"call.transfer","requestId":"t","callId":call,"target":"28:orgid:support"})).await;
    let first = agent1.recv_type("call.incoming").await;
    assert_eq!(first["queue"], "28:orgid:support");
    agent1.send(json!({"type":"call.decline","callId":call})).await;
    agent2.recv_type("call.incoming").await;
    agent2.send(json!({"type":"call.accept","callId":call})).await;
    assert_eq!(b.recv_type("call.transferAccepted").await["acceptedBy"]["rawId"], format!("8:orgid:{AGENT2}"));
    assert_eq!(b.recv_type("call.ended").await["reason"], "transferred");
    assert_eq!(a.recv_type("call.participantJoined").await["participant"]["displayName"], "Agent Two");
}
