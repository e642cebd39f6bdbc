//! Presence on a private Redis: announced only once the node's channel has its subscriber,
//! and re-announced as soon as the subscriber subscribed again after losing its connection.

use super::*;
use crate::testing::RedisServer;

async fn members(client: &Client, raw_id: &str) -> Vec<String> {
    client.smembers(presence_key(raw_id)).await.unwrap()
}

/// The ordering behind the lost rings: presence written before the node's subscriber is
/// subscribed again advertises a channel nobody hears. Without the `PUBSUB NUMSUB` check the
/// first announcement below succeeds and the node is listed with no subscriber.
#[tokio::test]
async fn presence_waits_for_the_nodes_subscriber() {
    let redis = RedisServer::start().unwrap();
    let client = crate::redis::connect(&redis.url()).await.unwrap();
    let users = vec!["8:acs:bob".to_string()];
    assert!(!announce_presence(&client, "node-1", &users).await, "nobody subscribed: not announced");
    assert!(members(&client, "8:acs:bob").await.is_empty());
    let subscriber = crate::redis::connect_subscriber(&redis.url()).await.unwrap();
    subscriber.subscribe(channel("node-1")).await.unwrap();
    assert!(announce_presence(&client, "node-1", &users).await);
    assert_eq!(members(&client, "8:acs:bob").await, vec!["node-1".to_string()]);
    let listed: Vec<String> = client.smembers(node_users_key("node-1")).await.unwrap();
    assert_eq!(listed, users);
    // Another node's subscriber does not count for this one.
    assert!(!announce_presence(&client, "node-2", &users).await);
}

/// A subscriber whose connection is killed (as by a Redis restart) subscribes again by itself
/// and says so, which is when the bus re-announces presence.
#[tokio::test]
async fn the_subscriber_subscribes_again_after_losing_its_connection_and_says_so() {
    let redis = RedisServer::start().unwrap();
    let client = crate::redis::connect(&redis.url()).await.unwrap();
    let subscriber = crate::redis::connect_subscriber(&redis.url()).await.unwrap();
    subscriber.subscribe(channel("node-r")).await.unwrap();
    let subscribed = Arc::new(Notify::new());
    let task = keep_subscribed(subscriber.clone(), "node-r".into(), subscribed.clone());
    assert!(channel_has_subscriber(&client, "node-r").await.unwrap());
    let killed: Value =
        client.custom(fred::cmd!("CLIENT"), vec!["KILL".to_string(), "TYPE".into(), "pubsub".into()]).await.unwrap();
    assert_eq!(killed.as_i64(), Some(1), "the subscriber's connection was killed");
    assert!(!channel_has_subscriber(&client, "node-r").await.unwrap(), "right after the kill nobody listens");
    tokio::time::timeout(Duration::from_secs(5), subscribed.notified()).await.expect("subscribed again");
    assert!(channel_has_subscriber(&client, "node-r").await.unwrap(), "told only once the subscription is back");
    task.abort();
}
