//! A callee who answered on another node: the call's node moves its socket there, and ends
//! its part only once it has no socket left anywhere in the cluster.

use super::super::{RemoteCallInput, RemoteCallMedia, UserBus};
use super::*;
use crate::domain::calls::Party;
use crate::gateway::placement::RouterFuture;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

const ALICE: &str = "8:acs:res_alice";
const BOB: &str = "8:acs:res_bob";

/// A bus recording what the gateway asks of it; `homes` are calls running on other nodes,
/// `elsewhere` the other nodes Bob's presence names.
#[derive(Default)]
struct Recorder {
    homes: Mutex<HashMap<String, String>>,
    elsewhere: Mutex<Vec<String>>,
    moves: Mutex<Vec<(String, RemoteMove)>>,
    watches: Mutex<Vec<(String, String, String)>>,
    inputs: Mutex<Vec<(String, RemoteCallInput)>>,
    freed: Mutex<Vec<String>>,
}

impl UserBus for Recorder {
    fn user_online(&self, _: &str) {}
    fn user_offline(&self, _: &str) {}
    fn notify_elsewhere(&self, _: &str, _: std::sync::Arc<str>) {}
    fn call_home(&self, call_id: &str) -> Option<String> {
        self.homes.lock().unwrap().get(call_id).cloned()
    }
    fn forward_call<'a>(&'a self, node: &'a str, input: RemoteCallInput) -> RouterFuture<'a, Result<(), CallError>> {
        self.inputs.lock().unwrap().push((node.to_string(), input));
        Box::pin(async { Ok(()) })
    }
    fn forward_media(&self, _: &str, _: RemoteCallMedia) {}
    fn engagement_changed(&self, _: &[String], freed: &[String]) {
        self.freed.lock().unwrap().extend(freed.iter().cloned());
    }
    fn move_socket(&self, node: &str, moved: RemoteMove) {
        self.moves.lock().unwrap().push((node.to_string(), moved));
    }
    fn user_nodes_elsewhere<'a>(&'a self, _: &'a str) -> RouterFuture<'a, Vec<String>> {
        let nodes = self.elsewhere.lock().unwrap().clone();
        Box::pin(async move { nodes })
    }
    fn watch_call(&self, node: &str, call_id: &str, user: &str) {
        self.watches.lock().unwrap().push((node.to_string(), call_id.to_string(), user.to_string()));
    }
}

fn gateway_with(bus: Arc<Recorder>) -> Gateway {
    let config = toml::from_str("[gateway]\nreconnect_grace_ms = 0\n").unwrap();
    let state = crate::app::AppState::open(
        config,
        crate::store::Store::open_in_memory().unwrap(),
        crate::app::AppParts::default(),
    )
    .unwrap();
    state.gateway.set_user_bus(bus);
    state.gateway.clone()
}

/// Alice (a socket here) calls Bob, who answers from socket `conn-b` on node-1.
async fn call_answered_on_node_1(gateway: &Gateway) {
    let place = Input::Place {
        call_id: "c".into(),
        caller: Party::new(ALICE, "Alice"),
        endpoint: "conn-a".into(),
        targets: vec![BOB.into()],
    };
    gateway.call_request_here(place).await.unwrap();
    let accept =
        RemoteCallInput::Accept { call_id: "c".into(), callee: Party::new(BOB, "Bob"), endpoint: "conn-b".into() };
    gateway.run_remote_call_input("node-1", accept).await.unwrap();
}

fn group() -> JoinTarget {
    JoinTarget::GroupCall { group_id: "g".into() }
}

fn socket(gateway: &Gateway, raw_id: &str, conn_id: &str) -> mpsc::Receiver<Outbound> {
    let (tx, rx) = mpsc::channel(8);
    assert!(gateway.presence_add(raw_id, PresenceEntry { conn_id: conn_id.into(), tx, native: false }));
    rx
}

async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn moved_into(out: Option<Outbound>) -> Option<(String, JoinTarget)> {
    match out {
        Some(Outbound::MoveInto { call_id, join }) => Some((call_id, join)),
        _ => None,
    }
}

#[tokio::test]
async fn a_callee_who_answered_on_another_node_is_moved_there() {
    let bus = Arc::new(Recorder::default());
    let gateway = gateway_with(bus.clone());
    call_answered_on_node_1(&gateway).await;
    let mv = Input::MoveToConversation { call_id: "c".into(), target: BOB.into(), join: group() };
    gateway.call_request_here(mv).await.unwrap();
    let expected = RemoteMove { raw_id: BOB.into(), conn_id: "conn-b".into(), call_id: "c".into(), join: group() };
    until("the move is sent to node-1", || {
        bus.moves.lock().unwrap().iter().any(|m| *m == ("node-1".into(), expected.clone()))
    })
    .await;
    assert_eq!(bus.moves.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_callee_whose_media_followed_the_call_here_is_moved_on_that_socket() {
    let bus = Arc::new(Recorder::default());
    let gateway = gateway_with(bus.clone());
    call_answered_on_node_1(&gateway).await;
    // Bob's QUIC client attached the call's media here on a new connection (redirect).
    let mut quic = socket(&gateway, BOB, "conn-q");
    gateway.remember_call_media_conn("c", BOB, "conn-q");
    let mv = Input::MoveToConversation { call_id: "c".into(), target: BOB.into(), join: group() };
    gateway.call_request_here(mv).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(2), quic.recv()).await.unwrap();
    assert_eq!(moved_into(got), Some(("c".into(), group())));
    assert!(bus.moves.lock().unwrap().is_empty(), "not sent to the node Bob answered on");
}

#[tokio::test]
async fn a_move_from_the_calls_node_reaches_the_socket_here() {
    let gateway = gateway_with(Arc::new(Recorder::default()));
    let mut bob = socket(&gateway, BOB, "conn-b");
    let moved = RemoteMove { raw_id: BOB.into(), conn_id: "conn-b".into(), call_id: "c".into(), join: group() };
    assert!(gateway.run_remote_move(moved.clone()));
    assert_eq!(moved_into(bob.try_recv().ok()), Some(("c".into(), group())));
    assert!(!gateway.run_remote_move(RemoteMove { conn_id: "gone".into(), ..moved }), "no such socket here");
}

#[tokio::test]
async fn a_callee_still_connected_on_a_third_node_stays_in_the_call() {
    let bus = Arc::new(Recorder::default());
    let gateway = gateway_with(bus.clone());
    call_answered_on_node_1(&gateway).await;
    // Node-1 says Bob's sockets there are gone; his presence names node-2 too.
    *bus.elsewhere.lock().unwrap() = vec!["node-2".into()];
    let gone = || RemoteCallInput::UserGone { call_id: "c".into(), user: BOB.into() };
    gateway.run_remote_call_input("node-1", gone()).await.unwrap();
    assert_eq!(*bus.watches.lock().unwrap(), vec![("node-2".to_string(), "c".to_string(), BOB.to_string())]);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(bus.freed.lock().unwrap().is_empty(), "the call goes on: {:?}", bus.freed.lock().unwrap());
    // Node-2 says his sockets there are gone too, and none is left: his part ends.
    bus.elsewhere.lock().unwrap().clear();
    gateway.run_remote_call_input("node-2", gone()).await.unwrap();
    until("Bob leaves the call", || bus.freed.lock().unwrap().iter().any(|u| u == BOB)).await;
}

#[tokio::test]
async fn a_watching_node_tells_the_calls_node_when_the_users_sockets_are_gone() {
    let bus = Arc::new(Recorder::default());
    bus.homes.lock().unwrap().insert("c".into(), "node-0".into());
    let gateway = gateway_with(bus.clone());
    let _bob = socket(&gateway, BOB, "conn-c");
    gateway.watch_remote_call("node-0", "c", BOB);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(bus.inputs.lock().unwrap().is_empty(), "Bob is connected here");
    // His last socket here closes; once the grace (0) is over node-0 hears it.
    assert!(gateway.presence_remove(BOB, "conn-c"));
    gateway.schedule_user_gone(BOB.into());
    let gone = RemoteCallInput::UserGone { call_id: "c".into(), user: BOB.into() };
    until("node-0 hears Bob is gone", || bus.inputs.lock().unwrap().contains(&("node-0".into(), gone.clone()))).await;
}

#[tokio::test]
async fn a_watch_for_a_user_already_gone_is_answered_after_the_grace() {
    let bus = Arc::new(Recorder::default());
    bus.homes.lock().unwrap().insert("c".into(), "node-0".into());
    let gateway = gateway_with(bus.clone());
    gateway.watch_remote_call("node-0", "c", BOB);
    let gone = RemoteCallInput::UserGone { call_id: "c".into(), user: BOB.into() };
    until("node-0 hears Bob is gone", || bus.inputs.lock().unwrap().contains(&("node-0".into(), gone.clone()))).await;
}
