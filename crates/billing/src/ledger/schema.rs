//! SQLite schema of the usage ledger (created on open; `user_version` tracks it).

use rusqlite::Connection;

/// 2: `usage_records.usage_type` (chat messages next to participant minutes).
/// 3: `phone_number`, `trunk`, `direction` on `sessions` and `usage_records` (phone minutes
/// per number, trunk and direction; NULL for every other participant and for older rows).
pub const SCHEMA_VERSION: i64 = 3;

/// The columns a phone leg adds to `sessions` and `usage_records` (schema version 3).
const PHONE_COLUMNS: [&str; 3] = ["phone_number", "trunk", "direction"];

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS calls (
    conversation_id TEXT NOT NULL,
    started_ms      INTEGER NOT NULL,
    call_type       TEXT NOT NULL,
    started_by      TEXT NOT NULL,
    thread_id       TEXT,
    ended_ms        INTEGER,
    PRIMARY KEY (conversation_id, started_ms)
);
CREATE INDEX IF NOT EXISTS calls_running ON calls(ended_ms) WHERE ended_ms IS NULL;

CREATE TABLE IF NOT EXISTS sessions (
    session_id         TEXT PRIMARY KEY,
    conversation_id    TEXT NOT NULL,
    call_started_ms    INTEGER NOT NULL,
    call_type          TEXT NOT NULL,
    participant_raw_id TEXT NOT NULL,
    participant_type   TEXT NOT NULL,
    endpoint_type      TEXT NOT NULL,
    thread_id          TEXT,
    start_ms           INTEGER NOT NULL,
    checkpoint_ms      INTEGER NOT NULL,
    end_ms             INTEGER,
    end_reason         TEXT,
    phone_number       TEXT,
    trunk              TEXT,
    direction          TEXT
);
CREATE INDEX IF NOT EXISTS sessions_open ON sessions(end_ms) WHERE end_ms IS NULL;
CREATE INDEX IF NOT EXISTS sessions_by_conversation ON sessions(conversation_id, start_ms);

CREATE TABLE IF NOT EXISTS usage_records (
    record_id            TEXT PRIMARY KEY,
    correlation_id       TEXT NOT NULL,
    participant_id       TEXT NOT NULL,
    segment              INTEGER NOT NULL,
    start_ms             INTEGER NOT NULL,
    end_ms               INTEGER NOT NULL,
    user_id_a            TEXT NOT NULL,
    participant_type     TEXT NOT NULL,
    endpoint_type        TEXT NOT NULL,
    billable             INTEGER NOT NULL,
    unit_price_micro_usd INTEGER NOT NULL,
    cost_micro_usd       INTEGER NOT NULL,
    usage_type           TEXT NOT NULL DEFAULT 'ParticipantMinutes',
    phone_number         TEXT,
    trunk                TEXT,
    direction            TEXT
);
CREATE INDEX IF NOT EXISTS usage_by_start ON usage_records(start_ms, record_id);

CREATE TABLE IF NOT EXISTS outbox (
    event_id        TEXT NOT NULL,
    endpoint        TEXT NOT NULL,
    payload         TEXT NOT NULL,
    created_ms      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    delivered_ms    INTEGER,
    dead            INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    PRIMARY KEY (event_id, endpoint)
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(next_attempt_ms) WHERE delivered_ms IS NULL AND dead = 0;

CREATE TABLE IF NOT EXISTS ledger_meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
";

/// Page cache of each ledger connection, KiB (SQLite's default is ~2 MiB per connection, and
/// the server holds three: the recorder's, the export's and the outbox's). The ledger only
/// appends and reads recent rows. The bundled SQLite (`SQLITE_ENABLE_MEMORY_MANAGEMENT`)
/// pools every connection's cache into one, as large as the sum of their `cache_size`, that
/// any connection may fill: at 512 KiB each these three let the store's connection grow the
/// pool for a whole soak (docs/soak.md, session 9), so each is 128 KiB (29 pages: the
/// right edge of each B-tree and its indexes, which appends touch).
pub const CACHE_KIB: i64 = 128;

/// Set the pragmas (WAL, full sync: a committed minute survives power loss; a bounded page
/// cache, no memory-mapped I/O) and create the tables.
pub fn prepare(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
    conn.pragma_update(None, "mmap_size", 0)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.execute_batch(SCHEMA)?;
    // A version-1 ledger has no usage_type column: every record in it is participant minutes.
    let has_usage_type =
        conn.prepare("SELECT 1 FROM pragma_table_info('usage_records') WHERE name = 'usage_type'")?.exists([])?;
    if !has_usage_type {
        conn.execute_batch(
            "ALTER TABLE usage_records ADD COLUMN usage_type TEXT NOT NULL DEFAULT 'ParticipantMinutes'",
        )?;
    }
    // Version 2 and older: no phone columns; their rows keep NULL there.
    for table in ["sessions", "usage_records"] {
        for column in PHONE_COLUMNS {
            let exists = conn
                .prepare(&format!("SELECT 1 FROM pragma_table_info('{table}') WHERE name = '{column}'"))?
                .exists([])?;
            if !exists {
                conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} TEXT"))?;
            }
        }
    }
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_cache_is_bounded() {
        let conn = Connection::open_in_memory().unwrap();
        prepare(&conn).unwrap();
        let cache: i64 = conn.query_row("PRAGMA cache_size", [], |r| r.get(0)).unwrap();
        assert_eq!(cache, -CACHE_KIB);
    }

    #[test]
    fn a_version_1_ledger_gains_usage_type_and_its_records_stay_participant_minutes() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE usage_records (record_id TEXT PRIMARY KEY, correlation_id TEXT NOT NULL,
               participant_id TEXT NOT NULL, segment INTEGER NOT NULL, start_ms INTEGER NOT NULL,
               end_ms INTEGER NOT NULL, user_id_a TEXT NOT NULL, participant_type TEXT NOT NULL,
               endpoint_type TEXT NOT NULL, billable INTEGER NOT NULL, unit_price_micro_usd INTEGER NOT NULL,
               cost_micro_usd INTEGER NOT NULL);
             INSERT INTO usage_records VALUES ('r', 'c', 'p', 0, 0, 60000, 'u', 'ACS', 'VoIP', 1, 4000, 4000);
             PRAGMA user_version = 1;",
        )
        .unwrap();
        prepare(&conn).unwrap();
        prepare(&conn).unwrap(); // idempotent
        let kind: String = conn.query_row("SELECT usage_type FROM usage_records", [], |r| r.get(0)).unwrap();
        assert_eq!(kind, "ParticipantMinutes");
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[test]
    fn a_version_2_ledger_gains_the_phone_columns_and_keeps_its_rows() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE sessions (session_id TEXT PRIMARY KEY, conversation_id TEXT NOT NULL,
               call_started_ms INTEGER NOT NULL, call_type TEXT NOT NULL, participant_raw_id TEXT NOT NULL,
               participant_type TEXT NOT NULL, endpoint_type TEXT NOT NULL, thread_id TEXT,
               start_ms INTEGER NOT NULL, checkpoint_ms INTEGER NOT NULL, end_ms INTEGER, end_reason TEXT);
             CREATE TABLE usage_records (record_id TEXT PRIMARY KEY, correlation_id TEXT NOT NULL,
               participant_id TEXT NOT NULL, segment INTEGER NOT NULL, start_ms INTEGER NOT NULL,
               end_ms INTEGER NOT NULL, user_id_a TEXT NOT NULL, participant_type TEXT NOT NULL,
               endpoint_type TEXT NOT NULL, billable INTEGER NOT NULL, unit_price_micro_usd INTEGER NOT NULL,
               cost_micro_usd INTEGER NOT NULL, usage_type TEXT NOT NULL DEFAULT 'ParticipantMinutes');
             INSERT INTO sessions VALUES ('s', 'c', 0, 'Group', '4:+14255550199', 'ACS', 'PSTN', NULL, 0, 0, NULL, NULL);
             INSERT INTO usage_records VALUES ('r', 'c', 's', 0, 0, 60000, '4:+14255550199', 'ACS', 'PSTN', 1, 4000, 4000, 'DirectRouting');
             PRAGMA user_version = 2;",
        )
        .unwrap();
        prepare(&conn).unwrap();
        prepare(&conn).unwrap(); // idempotent
        for table in ["sessions", "usage_records"] {
            let row: (Option<String>, Option<String>, Option<String>) = conn
                .query_row(&format!("SELECT phone_number, trunk, direction FROM {table}"), [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .unwrap();
            assert_eq!(row, (None, None, None), "{table}");
        }
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(version, 3);
    }
}
