//! Delivery to other nodes' channels: a fake Redis whose subscriber appears at a chosen
//! attempt (deterministic: the answers depend on the attempt count, not on time), and one run
//! on a private Redis whose subscriber subscribes after the message was first published.

use super::*;
use crate::testing::RedisServer;
use std::collections::HashMap;
use std::sync::Mutex;

/// A fake `PUBLISH`: per channel, how many attempts fail (`Err`) and how many more find
/// nobody subscribed (0) before a subscriber takes every message (1).
#[derive(Default)]
struct FakeRedis {
    /// channel → (failing attempts, attempts with no subscriber)
    script: Mutex<HashMap<String, (usize, usize)>>,
    attempts: Mutex<Vec<(String, String)>>,
    received: Mutex<Vec<(String, String)>>,
}

impl FakeRedis {
    fn with(script: &[(&str, usize, usize)]) -> Arc<Self> {
        let fake = Self::default();
        for (node, failing, absent) in script {
            fake.script.lock().unwrap().insert(super::super::channel(node), (*failing, *absent));
        }
        Arc::new(fake)
    }

    fn received(&self) -> Vec<(String, String)> {
        self.received.lock().unwrap().clone()
    }

    fn attempts_on(&self, node: &str) -> usize {
        let channel = super::super::channel(node);
        self.attempts.lock().unwrap().iter().filter(|(c, _)| *c == channel).count()
    }
}

impl Publisher for FakeRedis {
    fn publish(
        &self,
        channel: String,
        message: String,
    ) -> Pin<Box<dyn Future<Output = Result<i64, String>> + Send + '_>> {
        Box::pin(async move {
            self.attempts.lock().unwrap().push((channel.clone(), message.clone()));
            let mut script = self.script.lock().unwrap();
            let (failing, absent) = script.entry(channel.clone()).or_insert((0, 0));
            if *failing > 0 {
                *failing -= 1;
                return Err("connection refused".into());
            }
            if *absent > 0 {
                *absent -= 1;
                return Ok(0);
            }
            self.received.lock().unwrap().push((channel, message));
            Ok(1)
        })
    }
}

async fn until(mut done: impl FnMut() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("not done within 2.5 s");
}

fn fast(fake: &Arc<FakeRedis>, window: Duration) -> Deliveries {
    Deliveries::with_timing(fake.clone(), window, Duration::from_millis(2))
}

/// The lost ring of rings.py: the callee's node is in the presence set, but its subscriber
/// has not subscribed again yet. Published once (as before), the ring was gone.
#[tokio::test]
async fn a_message_nobody_took_is_published_again_until_a_subscriber_takes_it() {
    let fake = FakeRedis::with(&[("node-1", 2, 3)]);
    let deliveries = fast(&fake, Duration::from_secs(5));
    deliveries.send("node-1", "ring".into());
    until(|| !fake.received().is_empty()).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(fake.received(), vec![(super::super::channel("node-1"), "ring".to_string())], "received once");
    assert_eq!(fake.attempts_on("node-1"), 6, "2 failures + 3 without a subscriber + the one taken");
}

/// Messages to one node keep their order through the retries (a cancel never overtakes the
/// ring it cancels).
#[tokio::test]
async fn messages_to_a_node_leave_in_order_through_retries() {
    let fake = FakeRedis::with(&[("node-1", 0, 4)]);
    let deliveries = fast(&fake, Duration::from_secs(5));
    for m in ["incoming", "ended", "incoming-2"] {
        deliveries.send("node-1", m.into());
    }
    until(|| fake.received().len() == 3).await;
    let order: Vec<String> = fake.received().into_iter().map(|(_, m)| m).collect();
    assert_eq!(order, ["incoming", "ended", "incoming-2"]);
}

/// A node nobody listens for (killed): its messages are dropped when their window ends, and
/// it does not hold back messages to the other nodes.
#[tokio::test]
async fn a_dead_node_costs_a_bounded_number_of_publishes_and_delays_nobody_else() {
    let fake = FakeRedis::with(&[("dead", 0, usize::MAX)]);
    let deliveries = fast(&fake, Duration::from_millis(100));
    deliveries.send("dead", "one".into());
    deliveries.send("dead", "two".into());
    deliveries.send("alive", "three".into());
    until(|| fake.received().len() == 1).await;
    assert_eq!(fake.received()[0].1, "three");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let spent = fake.attempts_on("dead");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(fake.attempts_on("dead"), spent, "both messages dropped once their window ended");
    // "two" waited behind "one" for the whole window: dropped without a publish of its own.
    let twos = fake.attempts.lock().unwrap().iter().filter(|(_, m)| m == "two").count();
    assert!(twos <= 1, "a message whose window ended while it waited is not published ({twos})");
}

/// On a real Redis: published before the node's subscriber (re)subscribes, received after.
#[tokio::test]
async fn on_redis_a_message_reaches_a_subscriber_that_subscribes_after_the_publish() {
    let redis = RedisServer::start().unwrap();
    let publisher = crate::redis::connect(&redis.url()).await.unwrap();
    let deliveries = Deliveries::new(Arc::new(publisher));
    deliveries.send("node-late", "ring".into());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let subscriber = crate::redis::connect_subscriber(&redis.url()).await.unwrap();
    let mut messages = subscriber.message_rx();
    subscriber.subscribe(super::super::channel("node-late")).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(2), messages.recv()).await;
    let got = got.expect("the message was retried after the subscribe").unwrap();
    assert_eq!(got.value.as_string().as_deref(), Some("ring"));
}
