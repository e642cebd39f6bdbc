//! Two choices on its own (seeded), then placement over a real registry and `cluster_homes`.

use super::*;
use crate::database::Database;
use crate::testing::{PostgresServer, RedisServer};
use rand::SeedableRng;
use rand::rngs::StdRng;

fn node(id: &str, conversations: u64) -> NodeStatus {
    NodeStatus { node_id: id.into(), conversations, at_ms: 0, addresses: Default::default() }
}

#[test]
fn two_choices_never_picks_the_busier_of_its_two() {
    let mut rng = StdRng::seed_from_u64(7);
    assert!(two_choices(&[], &mut rng).is_none());
    assert_eq!(two_choices(&[node("only", 9)], &mut rng).unwrap().node_id, "only");
    let pair = [node("busy", 9), node("idle", 1)];
    for _ in 0..100 {
        assert_eq!(two_choices(&pair, &mut rng).unwrap().node_id, "idle");
    }
    // Of three, the busiest can never win: whichever two are drawn, one is less loaded.
    let three = [node("a", 1), node("b", 2), node("c", 3)];
    for _ in 0..100 {
        assert_ne!(two_choices(&three, &mut rng).unwrap().node_id, "c");
    }
}

#[test]
fn placing_many_conversations_keeps_the_nodes_even() {
    let mut rng = StdRng::seed_from_u64(17);
    let mut nodes: Vec<_> = (0..5).map(|i| node(&format!("n{i}"), 0)).collect();
    for _ in 0..1000 {
        let chosen = two_choices(&nodes, &mut rng).unwrap().node_id.clone();
        nodes.iter_mut().find(|n| n.node_id == chosen).unwrap().conversations += 1;
    }
    let loads: Vec<u64> = nodes.iter().map(|n| n.conversations).collect();
    let spread = loads.iter().max().unwrap() - loads.iter().min().unwrap();
    assert!(spread <= 3, "1000 placements over 5 nodes: {loads:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_conversation_goes_to_the_less_loaded_node_once() {
    let redis = RedisServer::start().unwrap();
    let db = Database::connect(&PostgresServer::shared().unwrap().fresh_database().unwrap()).unwrap();
    let registry = NodeRegistry::connect(&redis.url()).await.unwrap();
    registry.announce(&node("node-a", 5)).await.unwrap();
    registry.announce(&node("node-b", 0)).await.unwrap();
    let from_a = Placement::new("node-a", Some(registry.clone()), Homes::open(&db).unwrap());
    let home = from_a.home_of("conv-1").await.unwrap();
    assert_eq!(home, Home { node: "node-b".into(), epoch: 1 });
    // Later the load flips: the recorded home stays.
    registry.announce(&node("node-b", 50)).await.unwrap();
    assert_eq!(from_a.home_of("conv-1").await.unwrap(), home);
    // Four nodes placing one new conversation at once agree on one home.
    let racing: Vec<_> = (0..4)
        .map(|i| {
            let p = Placement::new(&format!("node-{i}"), Some(registry.clone()), Homes::open(&db).unwrap());
            tokio::spawn(async move { p.home_of("conv-2").await.unwrap() })
        })
        .collect();
    let mut homes = Vec::new();
    for r in racing {
        homes.push(r.await.unwrap());
    }
    homes.dedup();
    assert_eq!(homes.len(), 1, "{homes:?}");
    assert_eq!(homes[0].epoch, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_registry_the_asking_node_hosts() {
    let db = Database::connect(&PostgresServer::shared().unwrap().fresh_database().unwrap()).unwrap();
    let alone = Placement::new("node-x", None, Homes::open(&db).unwrap());
    assert_eq!(alone.home_of("conv").await.unwrap(), Home { node: "node-x".into(), epoch: 1 });
}
