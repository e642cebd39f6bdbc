//! Placement seam tests (issue #17, docs/cluster.md): with a cluster's [`HomeRouter`] plugged
//! in, a join whose conversation lives on another node is relayed there frame for frame, the
//! home's frames reach the client, a gone home ends the socket with `NodeUnavailable`; a
//! conversation homed here joins as on a single node; a resume of a conversation hosted
//! elsewhere is relayed too; a join whose home dies while its relay opens is placed again.

use super::placement::{HomeDecision, HomeRouter, RelayCredential, RelayLink, RemoteHome, RouterFuture};
use super::tests::Server;
use super::tests_joins::group_join;
use crate::domain::Refusal;
use palaver_core::Scope;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Routes `groupCall:<elsewhere>` to node-b, everything else here; hands each opened relay's
/// far ends to the test.
struct FakeRouter {
    elsewhere: String,
    relays: mpsc::UnboundedSender<(mpsc::Receiver<String>, mpsc::Sender<String>, RelayCredential)>,
    released: Mutex<Vec<String>>,
}

impl HomeRouter for FakeRouter {
    fn home_of<'a>(&'a self, key: &'a str) -> RouterFuture<'a, Result<HomeDecision, Refusal>> {
        Box::pin(async move {
            Ok(if key == format!("groupCall:{}", self.elsewhere) {
                HomeDecision::Elsewhere(RemoteHome {
                    node: "node-b".into(),
                    quic: Some("127.0.0.1:9".into()),
                    https: None,
                })
            } else {
                HomeDecision::Here
            })
        })
    }

    fn open_relay<'a>(
        &'a self,
        _home: &'a RemoteHome,
        credential: RelayCredential,
    ) -> RouterFuture<'a, Result<RelayLink, Refusal>> {
        Box::pin(async move {
            let (to_home, at_home) = mpsc::channel(16);
            let (from_home_tx, from_home) = mpsc::channel(16);
            let _ = self.relays.send((at_home, from_home_tx, credential));
            Ok(RelayLink { to_home, from_home })
        })
    }

    fn key_of<'a>(&'a self, conversation_id: &'a str) -> RouterFuture<'a, Option<String>> {
        Box::pin(async move { (conversation_id == "remote-conv").then(|| format!("groupCall:{}", self.elsewhere)) })
    }

    fn released(&self, key: &str) {
        self.released.lock().unwrap().push(key.to_string());
    }
}

#[tokio::test]
async fn a_join_homed_elsewhere_is_relayed_and_one_homed_here_is_not() {
    let s = Server::start().await;
    let elsewhere = uuid::Uuid::new_v4().to_string();
    let (relays, mut opened) = mpsc::unbounded_channel();
    let router = Arc::new(FakeRouter { elsewhere: elsewhere.clone(), relays, released: Mutex::new(Vec::new()) });
    assert!(s.state.gateway.set_home_router(router.clone()));

    let token = s.token("8:orgid:a", Some("Ada"), &[Scope::Voip]);
    let mut ada = s.connect(&token).await;
    let join = group_join(&elsewhere, "a1");
    ada.send(join.clone()).await;
    let (mut at_home, from_home, credential) = opened.recv().await.expect("a relay was opened");
    assert_eq!(credential.token, token, "the home authenticates the client's own token");
    let forwarded: Value = serde_json::from_str(&at_home.recv().await.unwrap()).unwrap();
    assert_eq!(forwarded, join, "the join reaches the home as sent");
    // The home's frames reach the client; the client's next frames reach the home.
    from_home.send(json!({"type":"ack","requestId":"from-home"}).to_string()).await.unwrap();
    assert_eq!(ada.recv_type("ack").await["requestId"], "from-home");
    ada.send(json!({"type":"self.raiseHand","raised":true})).await;
    let next: Value = serde_json::from_str(&at_home.recv().await.unwrap()).unwrap();
    assert_eq!(next["type"], "self.raiseHand");
    assert!(!s.state.gateway.is_live(&format!("groupCall:{elsewhere}")), "not hosted here");
    // The home goes away: the client is told to reconnect.
    drop(from_home);
    let gone = ada.recv_type("error").await;
    assert_eq!(gone["code"], "NodeUnavailable", "{gone}");

    // A conversation homed here joins locally.
    let here = uuid::Uuid::new_v4().to_string();
    let mut ben = s.connect(&s.token("8:orgid:b", Some("Ben"), &[Scope::Voip])).await;
    ben.send(group_join(&here, "b1")).await;
    assert_eq!(ben.recv_type("joined").await["requestId"], "b1");
    assert!(opened.try_recv().is_err(), "no relay for a local conversation");
    ben.send(json!({"type":"leave"})).await;
    ben.recv_type("session.ended").await;
    for _ in 0..100 {
        if !router.released.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(*router.released.lock().unwrap(), vec![format!("groupCall:{here}")], "the ended home is given up");
}

#[tokio::test]
async fn a_resume_of_a_conversation_hosted_elsewhere_is_relayed() {
    let s = Server::start().await;
    let (relays, mut opened) = mpsc::unbounded_channel();
    let router =
        Arc::new(FakeRouter { elsewhere: uuid::Uuid::new_v4().to_string(), relays, released: Mutex::new(Vec::new()) });
    s.state.gateway.set_home_router(router);
    let mut ada = s.connect(&s.token("8:orgid:a", Some("Ada"), &[Scope::Voip])).await;
    // Unknown anywhere: NotFound as on a single node.
    ada.send(
        json!({"type":"resume","requestId":"r0","conversationId":"nowhere","participantId":"p","resumeToken":"t"}),
    )
    .await;
    assert_eq!(ada.recv_type("error").await["code"], "NotFound");
    let resume =
        json!({"type":"resume","requestId":"r1","conversationId":"remote-conv","participantId":"p","resumeToken":"t"});
    ada.send(resume.clone()).await;
    let (mut at_home, _from_home, _) = opened.recv().await.expect("a relay was opened");
    let forwarded: Value = serde_json::from_str(&at_home.recv().await.unwrap()).unwrap();
    assert_eq!(forwarded, resume);
}

/// A home that dies while the relay to it opens: the first relay is refused `NodeUnavailable`,
/// and from then on the conversation is placed here (this node took it over).
struct DyingHomeRouter {
    relay_failed: std::sync::atomic::AtomicUsize,
}

impl HomeRouter for DyingHomeRouter {
    fn home_of<'a>(&'a self, _key: &'a str) -> RouterFuture<'a, Result<HomeDecision, Refusal>> {
        Box::pin(async move {
            Ok(if self.relay_failed.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                HomeDecision::Elsewhere(RemoteHome { node: "node-b".into(), quic: None, https: None })
            } else {
                HomeDecision::Here
            })
        })
    }

    fn open_relay<'a>(
        &'a self,
        _home: &'a RemoteHome,
        _credential: RelayCredential,
    ) -> RouterFuture<'a, Result<RelayLink, Refusal>> {
        Box::pin(async move {
            self.relay_failed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Err(super::placement::home_unavailable("node node-b left the registry while the relay was opening"))
        })
    }

    fn key_of<'a>(&'a self, _conversation_id: &'a str) -> RouterFuture<'a, Option<String>> {
        Box::pin(async move { None })
    }

    fn released(&self, _key: &str) {}
}

#[tokio::test]
async fn a_join_whose_home_dies_while_its_relay_opens_is_placed_again_and_joins() {
    let s = Server::start().await;
    let router = Arc::new(DyingHomeRouter { relay_failed: Default::default() });
    s.state.gateway.set_home_router(router.clone());
    let mut ada = s.connect(&s.token("8:orgid:a", Some("Ada"), &[Scope::Voip])).await;
    ada.send(group_join(&uuid::Uuid::new_v4().to_string(), "a1")).await;
    let answer = loop {
        let frame = ada.recv().await;
        if frame["type"] == "joined" || frame["type"] == "error" {
            break frame;
        }
    };
    assert_eq!(answer["type"], "joined", "placed again after the failed relay, not refused: {answer}");
    assert_eq!(router.relay_failed.load(std::sync::atomic::Ordering::SeqCst), 1, "one relay was tried");
}
