//! Homes and their fencing epochs on the private PostgreSQL: one winner per claim and per
//! takeover, stale epochs refused, compare-and-delete.

use super::*;
use crate::testing::PostgresServer;

fn homes() -> Homes {
    Homes::open(&Database::connect(&PostgresServer::shared().unwrap().fresh_database().unwrap()).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_claim_wins_and_later_claims_read_it() {
    let homes = homes();
    assert_eq!(homes.claim("c", "a").await.unwrap(), Home { node: "a".into(), epoch: 1 });
    assert_eq!(homes.claim("c", "b").await.unwrap(), Home { node: "a".into(), epoch: 1 });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_racing_takeovers_exactly_one_wins_and_the_old_home_is_fenced() {
    let homes = homes();
    homes.claim("c", "a").await.unwrap();
    let racers: Vec<_> = ["b", "c", "d", "e"]
        .into_iter()
        .map(|node| {
            let homes = homes.clone();
            tokio::spawn(async move { homes.take_over("c", node, 1).await.unwrap() })
        })
        .collect();
    let mut winners = Vec::new();
    for r in racers {
        winners.extend(r.await.unwrap());
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(winners[0].epoch, 2);
    assert!(!homes.holds("c", "a", 1).await.unwrap(), "the old home is fenced");
    assert!(homes.holds("c", &winners[0].node, 2).await.unwrap());
    assert_eq!(homes.take_over("c", "a", 1).await.unwrap(), None, "a stale epoch changes nothing");
    assert!(!homes.release("c", "a", 1).await.unwrap(), "the old home cannot delete the new one's row");
    assert!(homes.release("c", &winners[0].node, 2).await.unwrap());
    assert_eq!(homes.get("c").await.unwrap(), None);
}
