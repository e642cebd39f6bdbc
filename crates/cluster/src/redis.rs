//! The Redis connection of cluster mode (fred): one way to connect, with a bounded first
//! connection and reconnection forever afterwards, and the error the Redis parts return.

use fred::prelude::*;
use std::time::Duration;

/// How long the first connection may take (a Redis that is down at start is an error).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Delay between reconnection attempts after a connection is lost.
pub const RECONNECT_DELAY_MS: u32 = 250;
/// How long a command may wait (queued while Redis is away) before it fails: Redis is a
/// hint, and nothing that waits on it may hang.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("redis: {0}")]
    Redis(#[from] fred::error::Error),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("redis value: {0}")]
    Encoding(String),
    #[error("redis is unreachable (a command failed less than {0:?} ago); not waiting for it")]
    Unreachable(Duration),
}

fn builder(redis_url: &str) -> Result<Builder, RedisError> {
    let mut builder = Builder::from_config(Config::from_url(redis_url)?);
    builder.set_policy(ReconnectPolicy::new_constant(0, RECONNECT_DELAY_MS));
    builder.with_connection_config(|c| c.connection_timeout = CONNECT_TIMEOUT);
    builder.with_performance_config(|p| p.default_command_timeout = COMMAND_TIMEOUT);
    Ok(builder)
}

/// A connected client for `redis_url` (`redis://host:port[/db]`).
pub async fn connect(redis_url: &str) -> Result<Client, RedisError> {
    let client = builder(redis_url)?.build()?;
    tokio::time::timeout(CONNECT_TIMEOUT, client.init()).await.map_err(|_| RedisError::Timeout(CONNECT_TIMEOUT))??;
    Ok(client)
}

/// A connected subscriber client that re-subscribes by itself after a reconnection.
pub async fn connect_subscriber(redis_url: &str) -> Result<fred::clients::SubscriberClient, RedisError> {
    let client = builder(redis_url)?.build_subscriber_client()?;
    tokio::time::timeout(CONNECT_TIMEOUT, client.init()).await.map_err(|_| RedisError::Timeout(CONNECT_TIMEOUT))??;
    Ok(client)
}
