//! Tests of the SQLite ledger: the backend-independent cases of `ledger::conformance` (idempotent
//! replays, checkpoint and crash recovery, racing writers, paging, call summaries and the outbox)
//! on a fresh SQLite file per test.

use super::*;
use crate::testing::ScratchDb;

/// The backend-independent cases (`ledger::conformance`), on a fresh SQLite file per test.
mod conformance {
    use super::*;

    crate::ledger_conformance_tests!({
        let path = ScratchDb::new("palaver-billing", "conformance");
        move |options: LedgerOptions| Box::new(SqliteLedger::open(&path, options).unwrap()) as Box<dyn UsageLedger>
    });
}
