//! Delivery of user bus messages to other nodes' channels: in order per node, and retried
//! until Redis reports a receiver or [`DELIVERY_WINDOW`] has passed.
//!
//! Redis pub/sub drops a message published while nobody is subscribed to its channel, and
//! says so: `PUBLISH` answers the number of subscribers that got it. A node's subscriber
//! connection is away for a moment after every Redis restart or connection loss (it reconnects
//! after `redis.rs`'s delay and subscribes again), while its presence can already be known
//! (the presence sets of a restarted Redis are rebuilt by the command connection, and a
//! connection blip loses nothing in Redis). A ring published in that window was lost
//! (tests/cluster/rings.py, "Redis back: rings cross nodes again", failed in 1/3–3/4 of runs
//! under load). So a message answered "0 receivers" (or failed) is published again every
//! [`RETRY_DELAY`] until a subscriber got it or its window is over; a killed node's channel
//! therefore costs at most `DELIVERY_WINDOW / RETRY_DELAY` publishes per message.
//!
//! Each destination node has one queue and one task, so messages to a node leave in the order
//! they were handed over and a dead node delays only its own queue. A message whose window
//! ended while it waited is dropped without a publish. A retry follows only an attempt that no
//! subscriber got or that failed; a failure is almost always Redis being unreachable, so a
//! message reaches a node twice only if Redis ran a publish whose answer was then lost (the
//! 1 s command timeout).

use fred::prelude::*;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;
use tokio::sync::mpsc;

/// How long a message is retried before it is dropped: longer than a subscriber needs to
/// reconnect and subscribe again (250 ms delay + the connection), shorter than a ring
/// (a call rings for 30 s) or a forwarded answer's wait (`FORWARD_TIMEOUT`, 3 s).
pub const DELIVERY_WINDOW: Duration = Duration::from_millis(2500);
/// Pause between two attempts of one message.
pub const RETRY_DELAY: Duration = Duration::from_millis(50);
/// Messages waiting for one node beyond this are dropped at once (a node that is gone while
/// Redis answers slowly must not grow memory).
const QUEUE_LIMIT: usize = 4096;

/// What publishes: Redis (`fred::Client`), or a test's fake.
pub trait Publisher: Send + Sync + 'static {
    /// Publish `message` on `channel`: how many subscribers received it.
    fn publish(
        &self,
        channel: String,
        message: String,
    ) -> Pin<Box<dyn Future<Output = Result<i64, String>> + Send + '_>>;
}

impl Publisher for Client {
    fn publish(
        &self,
        channel: String,
        message: String,
    ) -> Pin<Box<dyn Future<Output = Result<i64, String>> + Send + '_>> {
        Box::pin(async move {
            PubsubInterface::publish::<i64, _, _>(self, channel, message).await.map_err(|e| e.to_string())
        })
    }
}

struct Outgoing {
    message: String,
    until: Instant,
}

/// The per-node queues of one node's bus.
pub struct Deliveries {
    publisher: Arc<dyn Publisher>,
    queues: dashmap::DashMap<String, mpsc::Sender<Outgoing>>,
    window: Duration,
    retry: Duration,
}

impl Deliveries {
    pub fn new(publisher: Arc<dyn Publisher>) -> Self {
        Self::with_timing(publisher, DELIVERY_WINDOW, RETRY_DELAY)
    }

    /// With another window and retry delay (tests).
    pub fn with_timing(publisher: Arc<dyn Publisher>, window: Duration, retry: Duration) -> Self {
        Self { publisher, queues: dashmap::DashMap::new(), window, retry }
    }

    /// Queue `message` for `node`'s channel (its task starts with the first message).
    pub fn send(&self, node: &str, message: String) {
        let outgoing = Outgoing { message, until: Instant::now() + self.window };
        let queue = self
            .queues
            .entry(node.to_string())
            .or_insert_with(|| {
                let (tx, rx) = mpsc::channel(QUEUE_LIMIT);
                tokio::spawn(drain(self.publisher.clone(), node.to_string(), rx, self.retry));
                tx
            })
            .clone();
        if let Err(e) = queue.try_send(outgoing) {
            tracing::warn!(node, error = %e, "user bus: message to node dropped (queue full)");
        }
    }
}

/// Publish `node`'s messages in order, each until a subscriber got it or its window ended.
async fn drain(publisher: Arc<dyn Publisher>, node: String, mut queue: mpsc::Receiver<Outgoing>, retry: Duration) {
    let channel = super::channel(&node);
    while let Some(outgoing) = queue.recv().await {
        let mut attempts = 0u32;
        loop {
            if Instant::now() >= outgoing.until {
                tracing::warn!(node = %node, attempts, "user bus: no subscriber of the node's channel took the message in time; dropped");
                break;
            }
            attempts += 1;
            match publisher.publish(channel.clone(), outgoing.message.clone()).await {
                Ok(received) if received > 0 => {
                    if attempts > 1 {
                        tracing::info!(node = %node, attempts, "user bus: message delivered after retries");
                    }
                    break;
                }
                Ok(_) => {
                    tracing::debug!(node = %node, attempts, "user bus: nobody subscribed to the node's channel yet")
                }
                Err(e) => tracing::debug!(node = %node, attempts, error = %e, "user bus: publish failed (Redis away?)"),
            }
            tokio::time::sleep(retry).await;
        }
    }
}

#[cfg(test)]
mod tests;
