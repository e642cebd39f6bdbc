//! Presence of a node's users in Redis, announced only while the node can hear its channel.
//!
//! `palaver:presence:<raw id>` tells other nodes where to publish a user's rings. Announcing
//! a node there while its subscriber connection is not subscribed to `palaver:bus:<node>`
//! invites messages nobody receives: after a Redis restart the command connection came back
//! and re-announced every user before the subscriber connection had subscribed again, and
//! rings published in that window were lost (tests/cluster/rings.py). So:
//!
//! - before writing presence, the node asks Redis itself, on the same connection that then
//!   writes the sets, whether its channel has a subscriber (`PUBSUB NUMSUB`): Redis runs one
//!   connection's commands in order, so a presence entry written after "yes" is never older
//!   than the subscription it advertises (a subscriber lost later is what `delivery.rs`'s
//!   retries are for);
//! - the subscriber subscribes again after every reconnection ([`keep_subscribed`], instead of
//!   fred's `manage_subscriptions`, so the node knows when it is done) and then asks for a
//!   presence refresh at once, as does every reconnection of the command connection: presence
//!   is back right after the subscription, not up to [`PRESENCE_REFRESH`] later.

use super::{PRESENCE_REFRESH, RedisUserBus, channel};
use crate::redis::RedisError;
use fred::clients::SubscriberClient;
use fred::prelude::*;
use fred::types::Value;
use palaver_signaling::gateway::Gateway;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::sync::broadcast::error::RecvError;

/// Pause between attempts to subscribe again after a reconnection.
const RESUBSCRIBE_RETRY: Duration = Duration::from_millis(100);

pub(super) fn presence_key(raw_id: &str) -> String {
    format!("palaver:presence:{raw_id}")
}

pub(super) fn node_users_key(node: &str) -> String {
    format!("palaver:presence-node:{node}")
}

/// Whether Redis has a subscriber on `node`'s channel, asked on `client`.
pub(super) async fn channel_has_subscriber(client: &Client, node: &str) -> Result<bool, RedisError> {
    let answer: Vec<Value> = client.pubsub_numsub(channel(node)).await?;
    Ok(answer.get(1).and_then(Value::as_i64).is_some_and(|n| n > 0))
}

/// Subscribe `subscriber` to `node`'s channel again after each of its reconnections and
/// notify `subscribed` once it is (until the subscriber is dropped).
pub(super) fn keep_subscribed(
    subscriber: SubscriberClient,
    node: String,
    subscribed: Arc<Notify>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut reconnects = subscriber.reconnect_rx();
        loop {
            match reconnects.recv().await {
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            }
            let mut attempts = 0u32;
            loop {
                attempts += 1;
                match subscriber.subscribe(channel(&node)).await {
                    Ok(()) => {
                        tracing::info!(node = %node, attempts, "user bus: subscribed again after a reconnection");
                        subscribed.notify_one();
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(node = %node, attempts, error = %e, "user bus: subscribing again failed; retrying");
                        tokio::time::sleep(RESUBSCRIBE_RETRY).await;
                    }
                }
            }
        }
    })
}

/// Add `node` to the presence set of each of `users` (and them to its set), if Redis has
/// `node`'s subscriber on its channel: whether it did (false: not subscribed, or Redis away).
pub(super) async fn announce_presence(client: &Client, node: &str, users: &[String]) -> bool {
    match channel_has_subscriber(client, node).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::debug!(node, "presence not announced: this node's channel has no subscriber yet");
            return false;
        }
        Err(_) => return false,
    }
    for user in users {
        let added: Result<(i64, i64), fred::error::Error> = async {
            Ok((client.sadd(presence_key(user), node).await?, client.sadd(node_users_key(node), user.as_str()).await?))
        }
        .await;
        if added.is_err() {
            return false; // Redis away: the next refresh
        }
    }
    true
}

/// The next reconnection of a client (never, once its event channel is closed).
async fn next_reconnection(events: &mut Option<tokio::sync::broadcast::Receiver<fred::types::config::Server>>) {
    match events {
        Some(rx) => {
            if let Err(RecvError::Closed) = rx.recv().await {
                *events = None;
            }
        }
        None => std::future::pending().await,
    }
}

impl RedisUserBus {
    /// Remove this node from the presence sets of the users it listed (a restart after a
    /// kill leaves them behind).
    pub(super) async fn clear_own_presence(&self) -> Result<(), RedisError> {
        let users: Vec<String> = self.client.smembers(node_users_key(&self.node_id)).await?;
        for user in users {
            let _: i64 = self.client.srem(presence_key(&user), self.node_id.as_str()).await?;
        }
        let _: i64 = self.client.del(node_users_key(&self.node_id)).await?;
        Ok(())
    }

    /// See [`announce_presence`].
    pub(super) async fn announce_presence(&self, users: &[String]) -> bool {
        announce_presence(&self.client, &self.node_id, users).await
    }

    /// Every [`PRESENCE_REFRESH`], and at once after the subscriber subscribed again or the
    /// command connection reconnected, announce the users this node holds and re-write their
    /// engagements.
    pub(super) async fn refresh_presence(self: Arc<Self>, gateway: Gateway) {
        let mut every = tokio::time::interval(PRESENCE_REFRESH);
        let mut reconnects = Some(self.client.reconnect_rx());
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = self.refresh_now.notified() => {}
                _ = next_reconnection(&mut reconnects) => {}
            }
            self.announce_presence(&gateway.local_users()).await;
            self.refresh_engaged().await;
        }
    }

    /// Add this node to (or remove it from) `raw_id`'s presence set and the user to (from)
    /// this node's set, in the background; a failure (Redis away) or an add while this node's
    /// channel has no subscriber heals at the next refresh.
    pub(super) fn spawn_presence_change(&self, raw_id: &str, online: bool) {
        let (client, node, raw_id) = (self.client.clone(), self.node_id.clone(), raw_id.to_string());
        tokio::spawn(async move {
            if online {
                announce_presence(&client, &node, std::slice::from_ref(&raw_id)).await;
                return;
            }
            let (client, node) = (&client, node.as_str());
            let removed: Result<(i64, i64), fred::error::Error> = async {
                Ok((
                    client.srem(presence_key(&raw_id), node).await?,
                    client.srem(node_users_key(node), raw_id.as_str()).await?,
                ))
            }
            .await;
            if let Err(e) = removed {
                tracing::debug!(user = %raw_id, error = %e, "presence removal not published (Redis away?)");
            }
        });
    }
}

#[cfg(test)]
mod tests;
