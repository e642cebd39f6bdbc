//! Tests of the SQLite ledger: the backend-independent cases of `ledger::conformance` (idempotent
//! replays, checkpoint and crash recovery, racing writers, paging, call summaries and the outbox)
//! on a fresh SQLite file per test.

use super::*;
use std::path::PathBuf;

pub(crate) fn temp_db(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("palaver-billing-{}-{}", std::process::id(), uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{name}.sqlite"))
}

/// The backend-independent cases (`ledger::conformance`), on a fresh SQLite file per test.
mod conformance {
    use super::*;

    crate::ledger_conformance_tests!({
        let path = temp_db("conformance");
        move |options: LedgerOptions| Box::new(SqliteLedger::open(&path, options).unwrap()) as Box<dyn UsageLedger>
    });
}
