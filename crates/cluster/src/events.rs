//! [`PgEventStore`]: the events service's subscriptions, outbox and settings (the callback
//! signing key) on PostgreSQL, behind `palaver-events`' [`EventStorage`] port, so every node
//! publishes into one outbox and any node delivers it.
//!
//! **Leases.** [`EventStorage::due`] claims the rows it returns in one statement: it selects
//! the due rows whose lease has passed `FOR UPDATE SKIP LOCKED` and stamps them
//! `lease_until_ms = now + LEASE_MS` and `lease_owner = <node>`. A second node polling at the
//! same moment skips the locked rows and, once the first commits, sees them leased; so two
//! nodes never deliver one row at the same time. [`EventStorage::record`] ends the lease. A
//! node that dies mid-delivery leaves its lease to expire: another node then sends the row
//! again (at least once; receivers deduplicate on the event id, as with one node). Callback
//! order holds: a leased head of a call connection stays pending, so the callbacks behind it
//! are not due on any node. The lease is in the caller's clock (milliseconds since the
//! epoch), so nodes need NTP, as the ledger's checkpoints do.

use crate::database::{Database, DatabaseError};
use crate::identity::pg_message;
use palaver_events::config::SubscriptionConfig;
use palaver_events::store::{
    DeliveryCounts, EventStorage, ItemKind, NewItem, Origin, OutboxItem, OutboxRow, Outcome, StoreError,
    StoredSubscription, ValidationState,
};
use tokio_postgres::Row;

/// How long a claimed delivery stays with the node that claimed it: above the longest
/// attempt (a 10 s request timeout by default, `[events.delivery] request_timeout_ms`).
pub const LEASE_MS: i64 = 60_000;

/// Append-only migration steps of the `events` component (`events.db`'s tables, prefixed).
pub const MIGRATIONS: &[&str] = &["
CREATE TABLE events_subscriptions (
    name TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    origin TEXT NOT NULL,
    state TEXT NOT NULL,
    validation_code TEXT NOT NULL,
    validation_attempts INTEGER NOT NULL DEFAULT 0,
    next_validation_ms BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    created_ms BIGINT NOT NULL,
    validated_ms BIGINT
);
CREATE TABLE events_outbox (
    seq BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL,
    subscription TEXT,
    stream TEXT,
    endpoint TEXT NOT NULL,
    content_type TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL,
    created_ms BIGINT NOT NULL,
    delivered_ms BIGINT,
    last_error TEXT,
    lease_until_ms BIGINT NOT NULL DEFAULT 0,
    lease_owner TEXT
);
CREATE INDEX events_outbox_due ON events_outbox (next_attempt_ms) WHERE state = 'pending';
CREATE INDEX events_outbox_stream ON events_outbox (stream, seq) WHERE state = 'pending' AND kind = 'callback';
CREATE TABLE events_settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"];

/// The events store of one node of a cluster.
#[derive(Clone, Debug)]
pub struct PgEventStore {
    db: Database,
    node_id: String,
}

fn backend(e: DatabaseError) -> StoreError {
    StoreError::Backend(match e {
        DatabaseError::Postgres(e) => pg_message(&e),
        other => other.to_string(),
    })
}

fn pg(e: tokio_postgres::Error) -> StoreError {
    StoreError::Backend(pg_message(&e))
}

const SUBSCRIPTION_COLUMNS: &str = "name, config, origin, state, validation_code, validation_attempts, \
     next_validation_ms, last_error, created_ms, validated_ms";

fn row_to_subscription(r: &Row) -> Result<StoredSubscription, StoreError> {
    let name: String = r.get(0);
    let config: SubscriptionConfig =
        serde_json::from_str(r.get::<_, &str>(1)).map_err(|_| StoreError::Corrupt(name.clone()))?;
    let origin: &str = r.get(2);
    let state = match r.get::<_, &str>(3) {
        "Validated" => ValidationState::Validated,
        "Failed" => ValidationState::Failed,
        _ => ValidationState::Pending,
    };
    Ok(StoredSubscription {
        config,
        origin: if origin == "config" { Origin::Config } else { Origin::Api },
        state,
        validation_code: r.get(4),
        validation_attempts: r.get::<_, i32>(5) as u32,
        next_validation_ms: r.get(6),
        last_error: r.get(7),
        created_ms: r.get(8),
        validated_ms: r.get(9),
    })
}

impl PgEventStore {
    /// The store of node `node_id` on `db`, after applying its migrations.
    pub fn open(db: &Database, node_id: &str) -> Result<Self, StoreError> {
        db.migrate("events", MIGRATIONS).map_err(backend)?;
        Ok(Self { db: db.clone(), node_id: node_id.to_string() })
    }

    /// Run `work` on a pooled connection, blocking (the events service calls its store from
    /// under a mutex, as it does SQLite).
    fn with_client<R, F, Fut>(&self, work: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(deadpool_postgres::Object) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<R, StoreError>> + Send + 'static,
    {
        self.db
            .block_on(move |pool| async move {
                let client = pool.get().await.map_err(|e| backend(e.into()))?;
                work(client).await
            })
            .map_err(backend)?
    }
}

impl EventStorage for PgEventStore {
    fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        let key = key.to_string();
        self.with_client(|c| async move {
            let row = c.query_opt("SELECT value FROM events_settings WHERE key = $1", &[&key]).await.map_err(pg)?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    fn setting_or_insert(&self, key: &str, value: &str) -> Result<String, StoreError> {
        let (key, value) = (key.to_string(), value.to_string());
        self.with_client(|c| async move {
            c.execute(
                "INSERT INTO events_settings (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&key, &value],
            )
            .await
            .map_err(pg)?;
            Ok(c.query_one("SELECT value FROM events_settings WHERE key = $1", &[&key]).await.map_err(pg)?.get(0))
        })
    }

    fn subscriptions(&self) -> Result<Vec<StoredSubscription>, StoreError> {
        self.with_client(|c| async move {
            let rows = c
                .query(
                    &format!("SELECT {SUBSCRIPTION_COLUMNS} FROM events_subscriptions ORDER BY name COLLATE \"C\""),
                    &[],
                )
                .await
                .map_err(pg)?;
            rows.iter().map(row_to_subscription).collect()
        })
    }

    fn subscription(&self, name: &str) -> Result<Option<StoredSubscription>, StoreError> {
        let name = name.to_string();
        self.with_client(|c| async move {
            let row = c
                .query_opt(
                    &format!("SELECT {SUBSCRIPTION_COLUMNS} FROM events_subscriptions WHERE name = $1"),
                    &[&name],
                )
                .await
                .map_err(pg)?;
            row.as_ref().map(row_to_subscription).transpose()
        })
    }

    fn upsert_subscription(
        &mut self,
        config: &SubscriptionConfig,
        origin: Origin,
        now_ms: i64,
    ) -> Result<StoredSubscription, StoreError> {
        if let Some(old) = self.subscription(&config.name)?
            && old.config == *config
            && old.origin == origin
        {
            return Ok(old);
        }
        let json = serde_json::to_string(config).map_err(|e| StoreError::Backend(e.to_string()))?;
        let (state, validated) = if config.validation_handshake {
            (ValidationState::Pending, None)
        } else {
            (ValidationState::Validated, Some(now_ms))
        };
        let code = uuid::Uuid::new_v4().to_string();
        let name = config.name.clone();
        self.with_client(move |c| async move {
            c.execute(
                "INSERT INTO events_subscriptions (name, config, origin, state, validation_code, validation_attempts,
                     next_validation_ms, last_error, created_ms, validated_ms)
                 VALUES ($1, $2, $3, $4, $5, 0, $6, NULL, $6, $7)
                 ON CONFLICT (name) DO UPDATE SET config = $2, origin = $3, state = $4, validation_code = $5,
                     validation_attempts = 0, next_validation_ms = $6, last_error = NULL, validated_ms = $7",
                &[&name, &json, &origin.as_str(), &state.as_str(), &code, &now_ms, &validated],
            )
            .await
            .map_err(pg)?;
            Ok(())
        })?;
        self.subscription(&config.name)?.ok_or_else(|| StoreError::Backend("subscription vanished".into()))
    }

    fn delete_subscription(&mut self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_string();
        self.with_client(|mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            tx.execute("DELETE FROM events_outbox WHERE subscription = $1 AND state = 'pending'", &[&name])
                .await
                .map_err(pg)?;
            let n = tx.execute("DELETE FROM events_subscriptions WHERE name = $1", &[&name]).await.map_err(pg)?;
            tx.commit().await.map_err(pg)?;
            Ok(n > 0)
        })
    }

    fn due_validations(&self, now_ms: i64) -> Result<Vec<StoredSubscription>, StoreError> {
        self.with_client(move |c| async move {
            let rows = c
                .query(
                    &format!(
                        "SELECT {SUBSCRIPTION_COLUMNS} FROM events_subscriptions
                         WHERE state <> 'Validated' AND next_validation_ms <= $1 ORDER BY name COLLATE \"C\""
                    ),
                    &[&now_ms],
                )
                .await
                .map_err(pg)?;
            rows.iter().map(row_to_subscription).collect()
        })
    }

    fn record_validation(
        &mut self,
        name: &str,
        code: &str,
        result: Result<i64, (String, i64)>,
    ) -> Result<bool, StoreError> {
        let (name, code) = (name.to_string(), code.to_string());
        self.with_client(move |c| async move {
            let n = match result {
                Ok(at_ms) => c
                    .execute(
                        "UPDATE events_subscriptions SET state = 'Validated', validated_ms = $3, last_error = NULL,
                             validation_attempts = validation_attempts + 1
                         WHERE name = $1 AND validation_code = $2",
                        &[&name, &code, &at_ms],
                    )
                    .await
                    .map_err(pg)?,
                Err((error, next_ms)) => c
                    .execute(
                        "UPDATE events_subscriptions SET state = 'Failed', last_error = $3, next_validation_ms = $4,
                             validation_attempts = validation_attempts + 1
                         WHERE name = $1 AND validation_code = $2 AND state <> 'Validated'",
                        &[&name, &code, &error, &next_ms],
                    )
                    .await
                    .map_err(pg)?,
            };
            Ok(n > 0)
        })
    }

    fn enqueue(&mut self, items: &[NewItem], now_ms: i64) -> Result<(), StoreError> {
        let items = items.to_vec();
        self.with_client(move |mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            let insert = tx
                .prepare(
                    "INSERT INTO events_outbox (kind, subscription, stream, endpoint, content_type, event_id,
                         event_type, payload, next_attempt_ms, created_ms)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
                )
                .await
                .map_err(pg)?;
            for item in &items {
                tx.execute(
                    &insert,
                    &[
                        &item.kind.as_str(),
                        &item.subscription,
                        &item.stream,
                        &item.endpoint,
                        &item.content_type,
                        &item.event_id,
                        &item.event_type,
                        &item.payload,
                        &now_ms,
                    ],
                )
                .await
                .map_err(pg)?;
            }
            tx.commit().await.map_err(pg)
        })
    }

    fn due(&self, now_ms: i64, limit: usize) -> Result<Vec<OutboxItem>, StoreError> {
        let node = self.node_id.clone();
        self.with_client(move |c| async move {
            let rows = c
                .query(
                    "WITH claimable AS (
                         SELECT o.seq, s.config FROM events_outbox o
                         LEFT JOIN events_subscriptions s ON s.name = o.subscription
                         WHERE o.state = 'pending' AND o.next_attempt_ms <= $1 AND o.lease_until_ms <= $1
                           AND ((o.kind = 'system' AND s.state = 'Validated')
                             OR (o.kind = 'callback' AND o.seq = (SELECT MIN(p.seq) FROM events_outbox p
                                     WHERE p.kind = 'callback' AND p.stream = o.stream AND p.state = 'pending')))
                         ORDER BY o.seq LIMIT $2
                         FOR UPDATE OF o SKIP LOCKED)
                     UPDATE events_outbox o SET lease_until_ms = $1 + $3, lease_owner = $4
                     FROM claimable WHERE o.seq = claimable.seq
                     RETURNING o.seq, o.kind, o.subscription, o.stream, o.endpoint, o.content_type, o.event_id,
                               o.event_type, o.payload, o.attempts, claimable.config, o.created_ms",
                    &[&now_ms, &(limit as i64), &LEASE_MS, &node],
                )
                .await
                .map_err(pg)?;
            let mut items: Vec<OutboxItem> = rows
                .iter()
                .map(|r| {
                    let config: Option<String> = r.get(10);
                    let config = config.and_then(|c| serde_json::from_str::<SubscriptionConfig>(&c).ok());
                    OutboxItem {
                        seq: r.get(0),
                        kind: if r.get::<_, &str>(1) == "callback" { ItemKind::Callback } else { ItemKind::System },
                        subscription: r.get(2),
                        stream: r.get(3),
                        endpoint: r.get(4),
                        content_type: r.get(5),
                        event_id: r.get(6),
                        event_type: r.get(7),
                        payload: r.get(8),
                        attempts: r.get::<_, i32>(9) as u32,
                        created_ms: r.get(11),
                        batching: config.as_ref().map_or((1, 0), SubscriptionConfig::batching),
                        ca_file: config.and_then(|c| (!c.ca_file.is_empty()).then_some(c.ca_file)),
                    }
                })
                .collect();
            items.sort_by_key(|i| i.seq);
            Ok(items)
        })
    }

    fn record(&mut self, seq: i64, outcome: &Outcome) -> Result<(), StoreError> {
        let outcome = outcome.clone();
        // Only a pending row changes: a node whose lease ran out while another delivered the
        // row cannot turn it back (its late `Dead` or `Retry` finds it delivered).
        self.with_client(move |c| async move {
            match outcome {
                Outcome::Delivered { at_ms } => {
                    c.execute(
                        "UPDATE events_outbox SET state = 'delivered', delivered_ms = $2, attempts = attempts + 1,
                             last_error = NULL, lease_until_ms = 0, lease_owner = NULL
                         WHERE seq = $1 AND state = 'pending'",
                        &[&seq, &at_ms],
                    )
                    .await
                }
                Outcome::Retry { attempts, next_attempt_ms, error } => {
                    c.execute(
                        "UPDATE events_outbox SET attempts = $2, next_attempt_ms = $3, last_error = $4,
                             lease_until_ms = 0, lease_owner = NULL
                         WHERE seq = $1 AND state = 'pending'",
                        &[&seq, &(attempts as i32), &next_attempt_ms, &error],
                    )
                    .await
                }
                Outcome::Dead { attempts, error } => {
                    c.execute(
                        "UPDATE events_outbox SET state = 'dead', attempts = $2, last_error = $3,
                             lease_until_ms = 0, lease_owner = NULL
                         WHERE seq = $1 AND state = 'pending'",
                        &[&seq, &(attempts as i32), &error],
                    )
                    .await
                }
            }
            .map_err(pg)?;
            Ok(())
        })
    }

    fn pending_count(&self) -> Result<u64, StoreError> {
        self.with_client(|c| async move {
            let n: i64 = c
                .query_one("SELECT COUNT(*) FROM events_outbox WHERE state = 'pending'", &[])
                .await
                .map_err(pg)?
                .get(0);
            Ok(n as u64)
        })
    }

    fn counts(&self, subscription: Option<&str>) -> Result<DeliveryCounts, StoreError> {
        let subscription = subscription.map(str::to_string);
        self.with_client(move |c| async move {
            let rows = c
                .query(
                    "SELECT state, COUNT(*) FROM events_outbox
                     WHERE ($1::TEXT IS NULL AND kind = 'callback') OR subscription = $1 GROUP BY state",
                    &[&subscription],
                )
                .await
                .map_err(pg)?;
            let mut counts = DeliveryCounts::default();
            for r in rows {
                let n = r.get::<_, i64>(1) as u64;
                match r.get::<_, &str>(0) {
                    "pending" => counts.pending = n,
                    "delivered" => counts.delivered = n,
                    _ => counts.dead_lettered = n,
                }
            }
            Ok(counts)
        })
    }

    fn dead_letters(&self, limit: usize) -> Result<Vec<OutboxRow>, StoreError> {
        self.with_client(move |c| async move {
            let rows = c
                .query(
                    "SELECT seq, kind, subscription, stream, endpoint, event_id, event_type, state, attempts, last_error
                     FROM events_outbox WHERE state = 'dead' ORDER BY seq DESC LIMIT $1",
                    &[&(limit as i64)],
                )
                .await
                .map_err(pg)?;
            Ok(rows
                .iter()
                .map(|r| OutboxRow {
                    seq: r.get(0),
                    kind: r.get(1),
                    subscription: r.get(2),
                    call_connection_id: r.get(3),
                    endpoint: r.get(4),
                    event_id: r.get(5),
                    event_type: r.get(6),
                    state: r.get(7),
                    attempts: r.get::<_, i32>(8) as u32,
                    last_error: r.get(9),
                })
                .collect())
        })
    }

    fn pending_event_types(&self) -> Result<Vec<String>, StoreError> {
        self.with_client(|c| async move {
            let rows = c
                .query("SELECT event_type FROM events_outbox WHERE state = 'pending' ORDER BY seq", &[])
                .await
                .map_err(pg)?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    fn prune_delivered(&mut self, before_ms: i64) -> Result<usize, StoreError> {
        self.with_client(move |c| async move {
            let n = c
                .execute("DELETE FROM events_outbox WHERE state = 'delivered' AND delivered_ms < $1", &[&before_ms])
                .await
                .map_err(pg)?;
            Ok(n as usize)
        })
    }
}

#[cfg(test)]
mod tests;
