//! [`Invalidations`]: telling every node of a cluster at once that a token was revoked, so a
//! token revoked through one node is refused by the others within a second (issue #17).
//!
//! Revocation marks are written to PostgreSQL first (the truth; [`crate::identity`]); the
//! node that wrote one then publishes `{raw_id, mark}` on the Redis channel
//! [`REVOCATIONS_CHANNEL`] ([`RevocationPublishingStore`] does it on every revoke), and every
//! node's subscriber applies it to its in-memory revocation list (marks only move forward,
//! so a repeated or late message changes nothing). Redis pub/sub is at most once: a node that
//! was disconnected when a mark was published would miss it, so every node also re-reads all
//! marks from PostgreSQL every [`RESYNC_EVERY`] (and the subscriber re-subscribes by itself
//! after a reconnection). Losing Redis therefore slows revocation down to that period; it
//! never loses one.

use crate::redis::{RedisError, connect, connect_subscriber};
use async_trait::async_trait;
use fred::clients::SubscriberClient;
use fred::prelude::*;
use palaver_signaling::store::StoreError;
use palaver_signaling::store::identity_store::{IdentityStore, IdentityWrite, RepeatKey, RevokeAction};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// The channel revocation marks travel on.
pub const REVOCATIONS_CHANNEL: &str = "palaver:revocations";
/// How often each node re-reads every mark from PostgreSQL (the path that does not need Redis).
pub const RESYNC_EVERY: Duration = Duration::from_secs(10);

/// One published mark.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revoked {
    pub raw_id: String,
    /// Tokens of `raw_id` issued before this (ms since the Unix epoch) are refused.
    pub mark: i64,
    /// The node that wrote it (diagnostics).
    pub node: String,
}

/// The publishing side, on one Redis client. Cheap to clone.
#[derive(Clone)]
pub struct Invalidations {
    client: Client,
    node_id: String,
}

impl std::fmt::Debug for Invalidations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invalidations").field("node_id", &self.node_id).finish_non_exhaustive()
    }
}

impl Invalidations {
    pub async fn connect(redis_url: &str, node_id: &str) -> Result<Self, RedisError> {
        Ok(Self { client: connect(redis_url).await?, node_id: node_id.to_string() })
    }

    /// Tell every node that `raw_id`'s tokens before `mark` are revoked.
    pub async fn publish(&self, raw_id: &str, mark: i64) -> Result<(), RedisError> {
        let message = Revoked { raw_id: raw_id.to_string(), mark, node: self.node_id.clone() };
        let json = serde_json::to_string(&message).map_err(|e| RedisError::Encoding(e.to_string()))?;
        let _: i64 = self.client.publish(REVOCATIONS_CHANNEL, json).await?;
        Ok(())
    }
}

/// Subscribe to [`REVOCATIONS_CHANNEL`] and call `apply` for every mark, until the returned
/// task is aborted. The subscription is renewed after every reconnection.
pub async fn subscribe(
    redis_url: &str,
    apply: Arc<dyn Fn(Revoked) + Send + Sync>,
) -> Result<tokio::task::JoinHandle<()>, RedisError> {
    let subscriber: SubscriberClient = connect_subscriber(redis_url).await?;
    let mut messages = subscriber.message_rx();
    subscriber.subscribe(REVOCATIONS_CHANNEL).await?;
    let renew = subscriber.manage_subscriptions();
    Ok(tokio::spawn(async move {
        // The client (and with it the connection) lives as long as this task.
        let _subscriber = subscriber;
        let _renew = AbortOnDrop(renew);
        loop {
            match messages.recv().await {
                Ok(message) => match message.value.as_string().and_then(|s| serde_json::from_str::<Revoked>(&s).ok()) {
                    Some(revoked) => apply(revoked),
                    None => tracing::warn!(channel = %message.channel, "unreadable revocation message"),
                },
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    // Missed marks arrive with the next resync from PostgreSQL.
                    tracing::warn!(missed = n, "revocation messages dropped; the next resync restores them");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    }))
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Every [`RESYNC_EVERY`], read all marks from `store` and `apply` each (until aborted).
pub fn spawn_resync(
    store: Arc<dyn IdentityStore>,
    apply: Arc<dyn Fn(Revoked) + Send + Sync>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(RESYNC_EVERY);
        every.tick().await; // the list was loaded at start-up
        loop {
            every.tick().await;
            let store = store.clone();
            match tokio::task::spawn_blocking(move || store.revocations()).await {
                Ok(Ok(marks)) => {
                    for (raw_id, mark) in marks {
                        apply(Revoked { raw_id, mark, node: String::new() });
                    }
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "revocation resync failed"),
                Err(e) => tracing::warn!(error = %e, "revocation resync task failed"),
            }
        }
    })
}

/// The cluster's identity store with publication: a revoke commits to the inner store
/// (PostgreSQL), then publishes the mark. A failed publication is logged; the other nodes
/// then learn the mark at their next resync.
#[derive(Debug)]
pub struct RevocationPublishingStore {
    pub inner: Arc<dyn IdentityStore>,
    pub invalidations: Invalidations,
}

#[async_trait]
impl IdentityStore for RevocationPublishingStore {
    async fn create_identity(
        &self,
        raw_id: &str,
        now_ms: i64,
        repeat: Option<&RepeatKey>,
        answer: &str,
    ) -> Result<IdentityWrite, StoreError> {
        self.inner.create_identity(raw_id, now_ms, repeat, answer).await
    }

    async fn answer_for_existing(
        &self,
        raw_id: &str,
        now_ms: i64,
        repeat: Option<&RepeatKey>,
        answer: &str,
    ) -> Result<IdentityWrite, StoreError> {
        self.inner.answer_for_existing(raw_id, now_ms, repeat, answer).await
    }

    async fn revoke(&self, raw_id: &str, now_ms: i64, action: RevokeAction) -> Result<Option<i64>, StoreError> {
        let mark = self.inner.revoke(raw_id, now_ms, action).await?;
        if let Some(mark) = mark
            && let Err(e) = self.invalidations.publish(raw_id, mark).await
        {
            tracing::warn!(raw_id, error = %e, "revocation not published; other nodes learn it at their resync");
        }
        Ok(mark)
    }

    async fn identity_exists(&self, raw_id: &str) -> Result<bool, StoreError> {
        self.inner.identity_exists(raw_id).await
    }

    fn revocations(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.inner.revocations()
    }

    fn setting_or_create(&self, name: &str, generate: &mut dyn FnMut() -> String) -> Result<String, StoreError> {
        self.inner.setting_or_create(name, generate)
    }

    fn identity_count(&self) -> Result<i64, StoreError> {
        self.inner.identity_count()
    }
}

#[cfg(test)]
mod tests;
