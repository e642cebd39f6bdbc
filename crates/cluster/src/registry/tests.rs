//! The node registry on a private Redis.

use super::*;
use crate::testing::RedisServer;

fn status(id: &str, conversations: u64) -> NodeStatus {
    NodeStatus { node_id: id.into(), conversations, at_ms: 1, addresses: Default::default() }
}

#[tokio::test]
async fn nodes_are_listed_until_they_leave_or_expire() {
    let redis = RedisServer::start().unwrap();
    let a = NodeRegistry::connect(&redis.url()).await.unwrap();
    let b = NodeRegistry::connect(&redis.url()).await.unwrap();
    a.announce(&status("node-a", 3)).await.unwrap();
    b.announce(&status("node-b", 0)).await.unwrap();
    b.announce(&status("node-b", 1)).await.unwrap();
    assert_eq!(a.nodes().await.unwrap(), vec![status("node-a", 3), status("node-b", 1)]);
    b.leave("node-b").await.unwrap();
    assert_eq!(a.nodes().await.unwrap(), vec![status("node-a", 3)]);
    // An expired announcement (its key gone, as after NODE_TTL_MS) drops out, and out of
    // the index too.
    let _: () = a.client.del(node_key("node-a")).await.unwrap();
    assert!(b.nodes().await.unwrap().is_empty());
    let left: Vec<String> = a.client.hkeys(NODES_INDEX).await.unwrap();
    assert!(left.is_empty());
    let ttl: i64 = {
        a.announce(&status("node-a", 0)).await.unwrap();
        a.client.pttl(node_key("node-a")).await.unwrap()
    };
    assert!(ttl > 0 && ttl <= NODE_TTL_MS, "announcements expire: {ttl} ms");
}

#[tokio::test]
async fn one_node_is_read_with_its_addresses_while_it_is_announced() {
    let redis = RedisServer::start().unwrap();
    let a = NodeRegistry::connect(&redis.url()).await.unwrap();
    let b = NodeRegistry::on_client(crate::redis::connect(&redis.url()).await.unwrap());
    let mut announced = status("node-a", 2);
    announced.addresses.quic = Some("127.0.0.1:8444".into());
    a.announce(&announced).await.unwrap();
    assert_eq!(b.node("node-a").await.unwrap(), Some(announced));
    assert_eq!(b.node("node-b").await.unwrap(), None);
    a.leave("node-a").await.unwrap();
    assert_eq!(b.node("node-a").await.unwrap(), None, "a node that left is not read");
}

#[tokio::test]
async fn heartbeats_announce_the_current_load() {
    let redis = RedisServer::start().unwrap();
    let registry = NodeRegistry::connect(&redis.url()).await.unwrap();
    let load = Arc::new(std::sync::atomic::AtomicU64::new(7));
    let seen = load.clone();
    let beats = registry.spawn_heartbeats(
        "node-h".into(),
        Default::default(),
        Arc::new(move || seen.load(std::sync::atomic::Ordering::SeqCst)),
    );
    // The first beat is immediate.
    let mut listed = Vec::new();
    for _ in 0..100 {
        listed = registry.nodes().await.unwrap();
        if !listed.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    beats.abort();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].node_id.as_str(), listed[0].conversations), ("node-h", 7));
}
