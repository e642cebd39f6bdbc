//! PostgreSQL schema of the usage ledger: the SQLite ledger's tables (`crates/billing/src/ledger/
//! schema.rs`) with PostgreSQL types, plus the owning node of each open session, so that a
//! node's checkpoint and crash recovery touch only the sessions it hosts when several nodes
//! share the database. Versioned under the `ledger` component of `schema_migrations`.

/// Append-only migration steps of the `ledger` component.
pub const MIGRATIONS: &[&str] = &[
    "
CREATE TABLE calls (
    conversation_id TEXT NOT NULL,
    started_ms      BIGINT NOT NULL,
    call_type       TEXT NOT NULL,
    started_by      TEXT NOT NULL,
    thread_id       TEXT,
    ended_ms        BIGINT,
    PRIMARY KEY (conversation_id, started_ms)
);
CREATE INDEX calls_running ON calls (started_ms) WHERE ended_ms IS NULL;

CREATE TABLE sessions (
    session_id         TEXT PRIMARY KEY,
    conversation_id    TEXT NOT NULL,
    call_started_ms    BIGINT NOT NULL,
    call_type          TEXT NOT NULL,
    participant_raw_id TEXT NOT NULL,
    participant_type   TEXT NOT NULL,
    endpoint_type      TEXT NOT NULL,
    thread_id          TEXT,
    start_ms           BIGINT NOT NULL,
    checkpoint_ms      BIGINT NOT NULL,
    end_ms             BIGINT,
    end_reason         TEXT,
    owner_node         TEXT NOT NULL
);
CREATE INDEX sessions_open ON sessions (owner_node) WHERE end_ms IS NULL;
CREATE INDEX sessions_by_conversation ON sessions (conversation_id, start_ms);

CREATE TABLE usage_records (
    record_id            TEXT PRIMARY KEY,
    correlation_id       TEXT NOT NULL,
    participant_id       TEXT NOT NULL,
    segment              INTEGER NOT NULL,
    start_ms             BIGINT NOT NULL,
    end_ms               BIGINT NOT NULL,
    user_id_a            TEXT NOT NULL,
    participant_type     TEXT NOT NULL,
    endpoint_type        TEXT NOT NULL,
    billable             BOOLEAN NOT NULL,
    unit_price_micro_usd BIGINT NOT NULL,
    cost_micro_usd       BIGINT NOT NULL,
    usage_type           TEXT NOT NULL
);
CREATE INDEX usage_by_start ON usage_records (start_ms, record_id);

CREATE TABLE webhook_outbox (
    seq             BIGSERIAL UNIQUE,
    event_id        TEXT NOT NULL,
    endpoint        TEXT NOT NULL,
    payload         TEXT NOT NULL,
    created_ms      BIGINT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL,
    delivered_ms    BIGINT,
    dead            BOOLEAN NOT NULL DEFAULT false,
    last_error      TEXT,
    PRIMARY KEY (event_id, endpoint)
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_ms) WHERE delivered_ms IS NULL AND NOT dead;

CREATE TABLE ledger_checkpoints (
    node_id TEXT PRIMARY KEY,
    last_checkpoint_ms BIGINT NOT NULL
);
",
    // 2: phone minutes per number, trunk and direction (the SQLite ledger's schema version 3).
    // Nullable, so existing rows stay as they are (NULL: not a phone leg, or written before).
    "
ALTER TABLE sessions ADD COLUMN phone_number TEXT;
ALTER TABLE sessions ADD COLUMN trunk TEXT;
ALTER TABLE sessions ADD COLUMN direction TEXT;
ALTER TABLE usage_records ADD COLUMN phone_number TEXT;
ALTER TABLE usage_records ADD COLUMN trunk TEXT;
ALTER TABLE usage_records ADD COLUMN direction TEXT;
",
];

/// Append-only steps of the `ledger_outbox_leases` component (a component of its own, so the
/// `ledger` component's steps stay free for the usage columns): the webhook outbox's delivery
/// lease, so several nodes can deliver one outbox without sending a row twice at once.
pub const OUTBOX_LEASE_MIGRATIONS: &[&str] = &["
ALTER TABLE webhook_outbox
    ADD COLUMN lease_until_ms BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN lease_owner    TEXT;
"];
