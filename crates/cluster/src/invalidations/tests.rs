//! Revocations published through Redis reach every subscriber; the publishing store writes
//! first, then publishes.

use super::*;
use crate::testing::RedisServer;
use palaver_signaling::store::Store;

async fn next(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Revoked>) -> Revoked {
    tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("a revocation message").unwrap()
}

fn collector() -> (Arc<dyn Fn(Revoked) + Send + Sync>, tokio::sync::mpsc::UnboundedReceiver<Revoked>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    (Arc::new(move |r| drop(tx.send(r))), rx)
}

#[tokio::test]
async fn a_revoke_on_one_node_reaches_the_others() {
    let redis = RedisServer::start().unwrap();
    let (apply_b, mut on_b) = collector();
    let (apply_c, mut on_c) = collector();
    let _b = subscribe(&redis.url(), apply_b).await.unwrap();
    let _c = subscribe(&redis.url(), apply_c).await.unwrap();
    let sqlite = Store::open_in_memory().unwrap();
    let store = RevocationPublishingStore {
        inner: Arc::new(sqlite.clone()),
        invalidations: Invalidations::connect(&redis.url(), "node-a").await.unwrap(),
    };
    store.create_identity("8:acs:r_1", 1, None, "{}").await.unwrap();
    let mark = store.revoke("8:acs:r_1", 100, RevokeAction::Revoke).await.unwrap();
    assert_eq!(mark, Some(101));
    let expected = Revoked { raw_id: "8:acs:r_1".into(), mark: 101, node: "node-a".into() };
    assert_eq!(next(&mut on_b).await, expected);
    assert_eq!(next(&mut on_c).await, expected);
    // Written before it was published.
    assert_eq!(sqlite.revocations().unwrap(), vec![("8:acs:r_1".to_string(), 101)]);
    // Nothing is published for a revoke that did nothing.
    assert_eq!(store.revoke("8:acs:r_none", 200, RevokeAction::Revoke).await.unwrap(), None);
    store.invalidations.publish("8:acs:r_2", 5).await.unwrap();
    assert_eq!(next(&mut on_b).await.raw_id, "8:acs:r_2", "the empty revoke sent nothing before it");
}

#[tokio::test]
async fn a_revoke_with_redis_down_is_stored_and_resynced() {
    let mut redis = RedisServer::start().unwrap();
    let sqlite = Store::open_in_memory().unwrap();
    let store = RevocationPublishingStore {
        inner: Arc::new(sqlite.clone()),
        invalidations: Invalidations::connect(&redis.url(), "node-a").await.unwrap(),
    };
    store.create_identity("8:acs:r_1", 1, None, "{}").await.unwrap();
    redis.kill();
    let revoked = tokio::time::timeout(Duration::from_secs(20), store.revoke("8:acs:r_1", 100, RevokeAction::Revoke))
        .await
        .expect("a revoke does not hang on a dead Redis");
    assert_eq!(revoked.unwrap(), Some(101), "the mark is stored whatever Redis does");
    assert_eq!(store.revocations().unwrap(), vec![("8:acs:r_1".to_string(), 101)], "the resync path reads it");
}
