//! The events database (SQLite, WAL): subscriptions with their validation state, the durable
//! outbox of deliveries, and settings (the callback signing key). Every `publish`/`callback`
//! is one committed transaction before it returns, so a `kill -9` loses nothing accepted.
//!
//! The outbox rows carry the exact body to send. Due rows ([`EventStore::due`]): a system
//! event once its subscription is validated; a callback only when it is the oldest pending
//! callback of its call connection, so a later callback waits while an earlier one retries.

use crate::config::SubscriptionConfig;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;

const SCHEMA: &str = r#"
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS subscriptions (
    name TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    origin TEXT NOT NULL,
    state TEXT NOT NULL,
    validation_code TEXT NOT NULL,
    validation_attempts INTEGER NOT NULL DEFAULT 0,
    next_validation_ms INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_ms INTEGER NOT NULL,
    validated_ms INTEGER
);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
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
    next_attempt_ms INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    delivered_ms INTEGER,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(next_attempt_ms) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS outbox_stream ON outbox(stream, seq) WHERE state = 'pending' AND kind = 'callback';
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"#;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("events database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("events database holds an unreadable subscription `{0}`")]
    Corrupt(String),
    /// A failure of another backend (PostgreSQL in cluster mode, `palaver-cluster`).
    #[error("events database: {0}")]
    Backend(String),
}

/// Where a subscription came from: the TOML file (read-only at run time) or the REST API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Config,
    Api,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Api => "api",
        }
    }
}

/// The validation handshake's state for a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValidationState {
    /// Not yet validated (first attempt due, or waiting for a retry).
    Pending,
    /// The endpoint answered the handshake (or it was disabled): deliveries flow.
    Validated,
    /// The last handshake failed; retried with backoff, nothing is delivered meanwhile.
    Failed,
}

impl ValidationState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Validated => "Validated",
            Self::Failed => "Failed",
        }
    }
    fn parse(s: &str) -> Self {
        match s {
            "Validated" => Self::Validated,
            "Failed" => Self::Failed,
            _ => Self::Pending,
        }
    }
}

/// A stored subscription.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSubscription {
    pub config: SubscriptionConfig,
    pub origin: Origin,
    pub state: ValidationState,
    pub validation_code: String,
    pub validation_attempts: u32,
    pub next_validation_ms: i64,
    pub last_error: Option<String>,
    pub created_ms: i64,
    pub validated_ms: Option<i64>,
}

/// What a delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ItemKind {
    /// An Event Grid system event for one subscription.
    System,
    /// A Call Automation callback.
    Callback,
}

impl ItemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::Callback => "callback",
        }
    }
}

/// One row to insert.
#[derive(Debug, Clone, PartialEq)]
pub struct NewItem {
    pub kind: ItemKind,
    pub subscription: Option<String>,
    /// Callbacks: the call connection id (the ordering key).
    pub stream: Option<String>,
    pub endpoint: String,
    pub content_type: String,
    pub event_id: String,
    pub event_type: String,
    pub payload: String,
}

/// One due delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxItem {
    pub seq: i64,
    pub kind: ItemKind,
    pub subscription: Option<String>,
    pub stream: Option<String>,
    pub endpoint: String,
    pub content_type: String,
    pub event_id: String,
    pub event_type: String,
    pub payload: String,
    /// Attempts made so far (0 on the first).
    pub attempts: u32,
    /// When it was accepted (milliseconds since the Unix epoch).
    pub created_ms: i64,
    /// The subscription's CA file (system events).
    pub ca_file: Option<String>,
    /// The subscription's output batching (system events; `(1, _)`: one event per POST):
    /// at most this many events, of about at most this many bytes, per POST.
    pub batching: (u32, usize),
}

/// A row as the REST API shows it (dead letters).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboxRow {
    pub seq: i64,
    pub kind: String,
    pub subscription: Option<String>,
    pub call_connection_id: Option<String>,
    pub endpoint: String,
    pub event_id: String,
    pub event_type: String,
    pub state: String,
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered { at_ms: i64 },
    Retry { attempts: u32, next_attempt_ms: i64, error: String },
    Dead { attempts: u32, error: String },
}

/// Counts per state for a subscription (or for all callbacks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryCounts {
    pub pending: u64,
    pub delivered: u64,
    pub dead_lettered: u64,
}

/// Page cache of the events connection, KiB. The bundled SQLite (libsqlite3-sys builds it
/// with `SQLITE_ENABLE_MEMORY_MANAGEMENT`) keeps one page-cache pool for the whole process,
/// as large as the sum of every connection's `cache_size`, and any connection may use all of
/// it; so each connection's setting adds to what the busiest one can hold (docs/soak.md).
/// The outbox reads a few recent rows.
pub const CACHE_KIB: i64 = 128;

/// The events database.
pub struct EventStore {
    conn: Connection,
}

impl std::fmt::Debug for EventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStore").finish_non_exhaustive()
    }
}

impl EventStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::init(Connection::open(path)?)
    }

    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self, StoreError> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // Without this the connection kept SQLite's default ~2 MiB cache, which (the bundled
        // SQLite pools every connection's cache, see `CACHE_KIB`) the busy store connection
        // filled over a whole soak: the heap growth of docs/soak.md.
        conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
        conn.pragma_update(None, "mmap_size", 0)?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self { conn })
    }

    pub fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self.conn.query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| r.get(0)).optional()?)
    }

    /// Store `value` under `key` unless a value is there; returns the stored value.
    pub fn setting_or_insert(&self, key: &str, value: &str) -> Result<String, StoreError> {
        self.conn.execute("INSERT OR IGNORE INTO settings (key, value) VALUES (?1, ?2)", params![key, value])?;
        Ok(self.setting(key)?.unwrap_or_else(|| value.to_string()))
    }

    fn row_to_subscription(row: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, StoredSubscriptionRaw)> {
        Ok((
            row.get(0)?,
            row.get(1)?,
            StoredSubscriptionRaw {
                origin: row.get(2)?,
                state: row.get(3)?,
                validation_code: row.get(4)?,
                validation_attempts: row.get(5)?,
                next_validation_ms: row.get(6)?,
                last_error: row.get(7)?,
                created_ms: row.get(8)?,
                validated_ms: row.get(9)?,
            },
        ))
    }

    fn decode(name: String, config: String, raw: StoredSubscriptionRaw) -> Result<StoredSubscription, StoreError> {
        let config: SubscriptionConfig = serde_json::from_str(&config).map_err(|_| StoreError::Corrupt(name))?;
        Ok(StoredSubscription {
            config,
            origin: if raw.origin == "config" { Origin::Config } else { Origin::Api },
            state: ValidationState::parse(&raw.state),
            validation_code: raw.validation_code,
            validation_attempts: raw.validation_attempts,
            next_validation_ms: raw.next_validation_ms,
            last_error: raw.last_error,
            created_ms: raw.created_ms,
            validated_ms: raw.validated_ms,
        })
    }

    const SUBSCRIPTION_COLUMNS: &'static str = "name, config, origin, state, validation_code, validation_attempts, \
         next_validation_ms, last_error, created_ms, validated_ms";

    pub fn subscriptions(&self) -> Result<Vec<StoredSubscription>, StoreError> {
        let mut stmt =
            self.conn.prepare(&format!("SELECT {} FROM subscriptions ORDER BY name", Self::SUBSCRIPTION_COLUMNS))?;
        let rows = stmt.query_map([], Self::row_to_subscription)?.collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().map(|(n, c, raw)| Self::decode(n, c, raw)).collect()
    }

    pub fn subscription(&self, name: &str) -> Result<Option<StoredSubscription>, StoreError> {
        let row = self
            .conn
            .query_row(
                &format!("SELECT {} FROM subscriptions WHERE name = ?1", Self::SUBSCRIPTION_COLUMNS),
                [name],
                Self::row_to_subscription,
            )
            .optional()?;
        row.map(|(n, c, raw)| Self::decode(n, c, raw)).transpose()
    }

    /// Insert or replace a subscription. An unchanged configuration keeps its validation
    /// state; a changed one (or a new one) starts over (validated at once when its
    /// handshake is off).
    pub fn upsert_subscription(
        &mut self,
        config: &SubscriptionConfig,
        origin: Origin,
        now_ms: i64,
    ) -> Result<StoredSubscription, StoreError> {
        let json = serde_json::to_string(config).expect("a subscription serializes");
        let existing = self.subscription(&config.name)?;
        if let Some(old) = &existing
            && old.config == *config
            && old.origin == origin
        {
            return Ok(old.clone());
        }
        let (state, validated) = if config.validation_handshake {
            (ValidationState::Pending, None)
        } else {
            (ValidationState::Validated, Some(now_ms))
        };
        let code = uuid::Uuid::new_v4().to_string();
        self.conn.execute(
            "INSERT INTO subscriptions (name, config, origin, state, validation_code, validation_attempts,
                 next_validation_ms, last_error, created_ms, validated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, NULL, ?6, ?7)
             ON CONFLICT(name) DO UPDATE SET config = ?2, origin = ?3, state = ?4, validation_code = ?5,
                 validation_attempts = 0, next_validation_ms = ?6, last_error = NULL, validated_ms = ?7",
            params![config.name, json, origin.as_str(), state.as_str(), code, now_ms, validated],
        )?;
        Ok(self.subscription(&config.name)?.expect("just written"))
    }

    /// Delete a subscription and its undelivered events; returns whether it existed.
    pub fn delete_subscription(&mut self, name: &str) -> Result<bool, StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM outbox WHERE subscription = ?1 AND state = 'pending'", [name])?;
        let n = tx.execute("DELETE FROM subscriptions WHERE name = ?1", [name])?;
        tx.commit()?;
        Ok(n > 0)
    }

    /// Subscriptions whose handshake is due.
    pub fn due_validations(&self, now_ms: i64) -> Result<Vec<StoredSubscription>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {} FROM subscriptions WHERE state != 'Validated' AND next_validation_ms <= ?1 ORDER BY name",
            Self::SUBSCRIPTION_COLUMNS
        ))?;
        let rows = stmt.query_map([now_ms], Self::row_to_subscription)?.collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().map(|(n, c, raw)| Self::decode(n, c, raw)).collect()
    }

    /// Record a handshake result for the subscription validated with `code` (a stale code,
    /// from before the subscription changed, is ignored). Returns whether it applied.
    pub fn record_validation(
        &mut self,
        name: &str,
        code: &str,
        result: Result<i64, (String, i64)>,
    ) -> Result<bool, StoreError> {
        let n = match result {
            Ok(at_ms) => self.conn.execute(
                "UPDATE subscriptions SET state = 'Validated', validated_ms = ?3, last_error = NULL,
                     validation_attempts = validation_attempts + 1
                 WHERE name = ?1 AND validation_code = ?2",
                params![name, code, at_ms],
            )?,
            Err((error, next_ms)) => self.conn.execute(
                "UPDATE subscriptions SET state = 'Failed', last_error = ?3, next_validation_ms = ?4,
                     validation_attempts = validation_attempts + 1
                 WHERE name = ?1 AND validation_code = ?2 AND state != 'Validated'",
                params![name, code, error, next_ms],
            )?,
        };
        Ok(n > 0)
    }

    /// Insert deliveries in one transaction.
    pub fn enqueue(&mut self, items: &[NewItem], now_ms: i64) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO outbox (kind, subscription, stream, endpoint, content_type, event_id, event_type, payload,
                     next_attempt_ms, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
            )?;
            for item in items {
                stmt.execute(params![
                    item.kind.as_str(),
                    item.subscription,
                    item.stream,
                    item.endpoint,
                    item.content_type,
                    item.event_id,
                    item.event_type,
                    item.payload,
                    now_ms
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Deliveries due at `now_ms`, oldest first, at most `limit`.
    pub fn due(&self, now_ms: i64, limit: usize) -> Result<Vec<OutboxItem>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT o.seq, o.kind, o.subscription, o.stream, o.endpoint, o.content_type, o.event_id, o.event_type,
                    o.payload, o.attempts, s.config, o.created_ms
             FROM outbox o LEFT JOIN subscriptions s ON s.name = o.subscription
             WHERE o.state = 'pending' AND o.next_attempt_ms <= ?1
               AND ((o.kind = 'system' AND s.state = 'Validated')
                 OR (o.kind = 'callback' AND o.seq = (SELECT MIN(p.seq) FROM outbox p
                         WHERE p.kind = 'callback' AND p.stream = o.stream AND p.state = 'pending')))
             ORDER BY o.seq LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![now_ms, limit as i64], |r| {
            let kind: String = r.get(1)?;
            let config: Option<String> = r.get(10)?;
            let config = config.and_then(|c| serde_json::from_str::<SubscriptionConfig>(&c).ok());
            Ok(OutboxItem {
                seq: r.get(0)?,
                kind: if kind == "callback" { ItemKind::Callback } else { ItemKind::System },
                subscription: r.get(2)?,
                stream: r.get(3)?,
                endpoint: r.get(4)?,
                content_type: r.get(5)?,
                event_id: r.get(6)?,
                event_type: r.get(7)?,
                payload: r.get(8)?,
                attempts: r.get(9)?,
                created_ms: r.get(11)?,
                batching: config.as_ref().map_or((1, 0), SubscriptionConfig::batching),
                ca_file: config.and_then(|c| (!c.ca_file.is_empty()).then_some(c.ca_file)),
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    pub fn record(&mut self, seq: i64, outcome: &Outcome) -> Result<(), StoreError> {
        match outcome {
            Outcome::Delivered { at_ms } => self.conn.execute(
                "UPDATE outbox SET state = 'delivered', delivered_ms = ?2, attempts = attempts + 1, last_error = NULL
                 WHERE seq = ?1",
                params![seq, at_ms],
            )?,
            Outcome::Retry { attempts, next_attempt_ms, error } => self.conn.execute(
                "UPDATE outbox SET attempts = ?2, next_attempt_ms = ?3, last_error = ?4 WHERE seq = ?1",
                params![seq, attempts, next_attempt_ms, error],
            )?,
            Outcome::Dead { attempts, error } => self.conn.execute(
                "UPDATE outbox SET state = 'dead', attempts = ?2, last_error = ?3 WHERE seq = ?1",
                params![seq, attempts, error],
            )?,
        };
        Ok(())
    }

    /// Undelivered rows (pending, whatever their subscription's state).
    pub fn pending_count(&self) -> Result<u64, StoreError> {
        Ok(self.conn.query_row("SELECT COUNT(*) FROM outbox WHERE state = 'pending'", [], |r| r.get::<_, i64>(0))?
            as u64)
    }

    /// Per-state counts of one subscription's rows (`None`: callbacks).
    pub fn counts(&self, subscription: Option<&str>) -> Result<DeliveryCounts, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT state, COUNT(*) FROM outbox
             WHERE (?1 IS NULL AND kind = 'callback') OR subscription = ?1 GROUP BY state",
        )?;
        let mut counts = DeliveryCounts::default();
        for row in stmt.query_map([subscription], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))? {
            let (state, n) = row?;
            match state.as_str() {
                "pending" => counts.pending = n,
                "delivered" => counts.delivered = n,
                _ => counts.dead_lettered = n,
            }
        }
        Ok(counts)
    }

    /// Dead-lettered rows, newest first.
    pub fn dead_letters(&self, limit: usize) -> Result<Vec<OutboxRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, kind, subscription, stream, endpoint, event_id, event_type, state, attempts, last_error
             FROM outbox WHERE state = 'dead' ORDER BY seq DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit as i64], |r| {
            Ok(OutboxRow {
                seq: r.get(0)?,
                kind: r.get(1)?,
                subscription: r.get(2)?,
                call_connection_id: r.get(3)?,
                endpoint: r.get(4)?,
                event_id: r.get(5)?,
                event_type: r.get(6)?,
                state: r.get(7)?,
                attempts: r.get(8)?,
                last_error: r.get(9)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Event types of the pending rows, oldest first (tests and diagnostics).
    pub fn pending_event_types(&self) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.conn.prepare("SELECT event_type FROM outbox WHERE state = 'pending' ORDER BY seq")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Forget delivered rows older than `before_ms`.
    pub fn prune_delivered(&mut self, before_ms: i64) -> Result<usize, StoreError> {
        Ok(self.conn.execute("DELETE FROM outbox WHERE state = 'delivered' AND delivered_ms < ?1", [before_ms])?)
    }
}

/// The events store port: what the service and the delivery worker need. [`EventStore`]
/// (SQLite) implements it with its methods above; `palaver-cluster` implements it on
/// PostgreSQL (`[cluster] postgres_url`), where [`EventStorage::due`] also leases the rows it
/// returns to the calling node, so two nodes never deliver one row at the same time.
pub trait EventStorage: Send {
    fn setting(&self, key: &str) -> Result<Option<String>, StoreError>;
    /// Store `value` under `key` unless a value is there; returns the stored value.
    fn setting_or_insert(&self, key: &str, value: &str) -> Result<String, StoreError>;
    fn subscriptions(&self) -> Result<Vec<StoredSubscription>, StoreError>;
    fn subscription(&self, name: &str) -> Result<Option<StoredSubscription>, StoreError>;
    /// Insert or replace a subscription (an unchanged one keeps its validation state).
    fn upsert_subscription(
        &mut self,
        config: &SubscriptionConfig,
        origin: Origin,
        now_ms: i64,
    ) -> Result<StoredSubscription, StoreError>;
    /// Delete a subscription and its undelivered events; whether it existed.
    fn delete_subscription(&mut self, name: &str) -> Result<bool, StoreError>;
    fn due_validations(&self, now_ms: i64) -> Result<Vec<StoredSubscription>, StoreError>;
    /// Record a handshake result for the subscription validated with `code`; whether it applied.
    fn record_validation(
        &mut self,
        name: &str,
        code: &str,
        result: Result<i64, (String, i64)>,
    ) -> Result<bool, StoreError>;
    /// Insert deliveries in one transaction.
    fn enqueue(&mut self, items: &[NewItem], now_ms: i64) -> Result<(), StoreError>;
    /// Deliveries due at `now_ms`, oldest first, at most `limit`: a system event once its
    /// subscription is validated, a callback when it is the oldest pending one of its call
    /// connection. A shared backend leases them to the caller until [`EventStorage::record`].
    fn due(&self, now_ms: i64, limit: usize) -> Result<Vec<OutboxItem>, StoreError>;
    fn record(&mut self, seq: i64, outcome: &Outcome) -> Result<(), StoreError>;
    fn pending_count(&self) -> Result<u64, StoreError>;
    fn counts(&self, subscription: Option<&str>) -> Result<DeliveryCounts, StoreError>;
    fn dead_letters(&self, limit: usize) -> Result<Vec<OutboxRow>, StoreError>;
    fn pending_event_types(&self) -> Result<Vec<String>, StoreError>;
    fn prune_delivered(&mut self, before_ms: i64) -> Result<usize, StoreError>;
}

impl EventStorage for EventStore {
    fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        EventStore::setting(self, key)
    }
    fn setting_or_insert(&self, key: &str, value: &str) -> Result<String, StoreError> {
        EventStore::setting_or_insert(self, key, value)
    }
    fn subscriptions(&self) -> Result<Vec<StoredSubscription>, StoreError> {
        EventStore::subscriptions(self)
    }
    fn subscription(&self, name: &str) -> Result<Option<StoredSubscription>, StoreError> {
        EventStore::subscription(self, name)
    }
    fn upsert_subscription(
        &mut self,
        config: &SubscriptionConfig,
        origin: Origin,
        now_ms: i64,
    ) -> Result<StoredSubscription, StoreError> {
        EventStore::upsert_subscription(self, config, origin, now_ms)
    }
    fn delete_subscription(&mut self, name: &str) -> Result<bool, StoreError> {
        EventStore::delete_subscription(self, name)
    }
    fn due_validations(&self, now_ms: i64) -> Result<Vec<StoredSubscription>, StoreError> {
        EventStore::due_validations(self, now_ms)
    }
    fn record_validation(
        &mut self,
        name: &str,
        code: &str,
        result: Result<i64, (String, i64)>,
    ) -> Result<bool, StoreError> {
        EventStore::record_validation(self, name, code, result)
    }
    fn enqueue(&mut self, items: &[NewItem], now_ms: i64) -> Result<(), StoreError> {
        EventStore::enqueue(self, items, now_ms)
    }
    fn due(&self, now_ms: i64, limit: usize) -> Result<Vec<OutboxItem>, StoreError> {
        EventStore::due(self, now_ms, limit)
    }
    fn record(&mut self, seq: i64, outcome: &Outcome) -> Result<(), StoreError> {
        EventStore::record(self, seq, outcome)
    }
    fn pending_count(&self) -> Result<u64, StoreError> {
        EventStore::pending_count(self)
    }
    fn counts(&self, subscription: Option<&str>) -> Result<DeliveryCounts, StoreError> {
        EventStore::counts(self, subscription)
    }
    fn dead_letters(&self, limit: usize) -> Result<Vec<OutboxRow>, StoreError> {
        EventStore::dead_letters(self, limit)
    }
    fn pending_event_types(&self) -> Result<Vec<String>, StoreError> {
        EventStore::pending_event_types(self)
    }
    fn prune_delivered(&mut self, before_ms: i64) -> Result<usize, StoreError> {
        EventStore::prune_delivered(self, before_ms)
    }
}

struct StoredSubscriptionRaw {
    origin: String,
    state: String,
    validation_code: String,
    validation_attempts: u32,
    next_validation_ms: i64,
    last_error: Option<String>,
    created_ms: i64,
    validated_ms: Option<i64>,
}

#[cfg(any(test, feature = "test-support"))]
pub mod conformance;
#[cfg(test)]
mod tests;
