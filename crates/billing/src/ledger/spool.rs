//! The ledger spool: usage keeps being recorded while the ledger's database (PostgreSQL in
//! cluster mode) refuses writes, and nothing is lost or counted twice when it returns.
//!
//! [`SpoolingLedger`] wraps the writer's ledger. While the database answers, it writes through.
//! When a write or a checkpoint fails with a backend error (connection refused, server shut
//! down, timeout), the batch is appended to a local file, `fsync`ed, and the call succeeds: the
//! recorder's queue drains, joins get their durable acknowledgment, media and metering go on.
//! From then on, every later batch and checkpoint goes to the spool behind it, so the order of
//! the ledger's changes is kept. At most once per `retry_interval` (and at every checkpoint and
//! startup) the spool is replayed into the database in order; once it is all in, the file is
//! emptied and writes go through again.
//!
//! No loss: a batch is acknowledged only after it is in the database or in the synced spool,
//! and the spool survives a crash (replayed at the next start, before crash recovery closes what
//! was left open). No duplicates: every change is idempotent (deterministic record and event
//! ids, insert-or-ignore, close only if open, checkpoints only move forward), so a replay that
//! stops half way and starts again, or a batch the database committed just before the
//! connection broke, adds nothing.
//!
//! File format: JSON Lines, one [`SpoolEntry`] per line. A last line without its newline (a
//! write cut by a crash, never acknowledged) is dropped when the spool is opened.

use super::{DeliveryOutcome, LedgerError, OutboxItem, RecoveryReport, UsageLedger, UsageQuery};
use crate::meter::LedgerChange;
use crate::records::{CallSummary, TypeTotals, UsageRecord};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One spooled step, replayed as it would have been written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SpoolEntry {
    /// A batch for [`UsageLedger::apply`].
    Changes(Vec<LedgerChange>),
    /// A [`UsageLedger::checkpoint`] at this time (Unix ms).
    Checkpoint(i64),
}

impl SpoolEntry {
    fn change_count(&self) -> u64 {
        match self {
            Self::Changes(changes) => changes.len() as u64,
            Self::Checkpoint(_) => 0,
        }
    }
}

/// The append-only, synced spool file and an in-memory copy of its entries.
pub struct LedgerSpool {
    path: PathBuf,
    entries: Vec<SpoolEntry>,
}

fn spool_error(path: &Path, e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Backend(format!("ledger spool {}: {e}", path.display()))
}

/// Make a file's directory entry durable (after creating or renaming it).
fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
        _ => Ok(()),
    }
}

impl LedgerSpool {
    /// Open the spool at `path` (created empty when missing) and read what a previous run left.
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        let text = match std::fs::read(path) {
            Ok(bytes) => String::from_utf8(bytes).map_err(|e| spool_error(path, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(spool_error(path, e)),
        };
        let complete = match text.rfind('\n') {
            Some(end) => &text[..=end],
            None => "",
        };
        let mut entries = Vec::new();
        for (n, line) in complete.lines().enumerate() {
            let entry = serde_json::from_str(line)
                .map_err(|e| LedgerError::Corrupt(format!("ledger spool {} line {}: {e}", path.display(), n + 1)))?;
            entries.push(entry);
        }
        let spool = Self { path: path.to_path_buf(), entries };
        if complete.len() != text.len() {
            tracing::warn!(path = %path.display(), bytes = text.len() - complete.len(), "dropping a torn last spool line (never acknowledged)");
            spool.rewrite().map_err(|e| spool_error(path, e))?;
        } else if text.is_empty() && !path.exists() {
            spool.rewrite().map_err(|e| spool_error(path, e))?;
        }
        Ok(spool)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> &[SpoolEntry] {
        &self.entries
    }

    /// Ledger changes waiting in the spool.
    pub fn change_count(&self) -> u64 {
        self.entries.iter().map(SpoolEntry::change_count).sum()
    }

    /// Append one entry and sync it to disk before returning.
    pub fn append(&mut self, entry: SpoolEntry) -> Result<(), LedgerError> {
        let mut line = serde_json::to_string(&entry)?;
        line.push('\n');
        let write = || -> std::io::Result<()> {
            let mut file = OpenOptions::new().create(true).append(true).open(&self.path)?;
            file.write_all(line.as_bytes())?;
            file.sync_data()
        };
        write().map_err(|e| spool_error(&self.path, e))?;
        self.entries.push(entry);
        Ok(())
    }

    /// Forget the first `done` entries (they are in the database): the file is rewritten with
    /// the rest, atomically (a crash leaves the old or the new file, both replayable).
    pub fn remove_front(&mut self, done: usize) -> Result<(), LedgerError> {
        let kept = self.entries.split_off(done.min(self.entries.len()));
        let before = std::mem::replace(&mut self.entries, kept);
        if let Err(e) = self.rewrite() {
            let kept = std::mem::replace(&mut self.entries, before);
            self.entries.extend(kept);
            return Err(spool_error(&self.path, e));
        }
        Ok(())
    }

    fn rewrite(&self) -> std::io::Result<()> {
        let tmp = self.path.with_extension("tmp");
        let mut file = File::create(&tmp)?;
        for entry in &self.entries {
            let mut line = serde_json::to_string(entry).map_err(std::io::Error::other)?;
            line.push('\n');
            file.write_all(line.as_bytes())?;
        }
        file.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        sync_parent(&self.path)
    }
}

/// A [`UsageLedger`] that spools the writer's batches and checkpoints while `inner` refuses
/// writes, and replays them in order when it answers again (see the module doc).
pub struct SpoolingLedger {
    inner: Box<dyn UsageLedger>,
    spool: LedgerSpool,
    retry_interval: Duration,
    /// No replay attempt before this instant (the database just failed).
    quiet_until: Option<Instant>,
}

/// How long after a failed attempt the spool waits before trying the database again.
pub const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_secs(1);

impl SpoolingLedger {
    pub fn new(inner: Box<dyn UsageLedger>, spool: LedgerSpool, retry_interval: Duration) -> Self {
        Self { inner, spool, retry_interval, quiet_until: None }
    }

    /// Wrap `inner` with the spool file at `path`.
    pub fn open(inner: Box<dyn UsageLedger>, path: &Path) -> Result<Self, LedgerError> {
        let spool = LedgerSpool::open(path)?;
        if !spool.is_empty() {
            tracing::warn!(path = %path.display(), changes = spool.change_count(), "ledger spool holds changes from a previous run; replaying them before recovery");
        }
        Ok(Self::new(inner, spool, DEFAULT_RETRY_INTERVAL))
    }

    pub fn spool(&self) -> &LedgerSpool {
        &self.spool
    }

    fn backing_off(&self) -> bool {
        self.quiet_until.is_some_and(|t| Instant::now() < t)
    }

    fn failed(&mut self, what: &str, error: &str) {
        if self.quiet_until.is_none() {
            tracing::error!(error, what, path = %self.spool.path().display(), "ledger database refuses writes; spooling usage to local disk");
        }
        self.quiet_until = Some(Instant::now() + self.retry_interval);
    }

    /// Replay spooled entries in order until one fails; returns whether the spool is empty.
    /// `force` ignores the back-off (startup, explicit drain).
    pub fn replay(&mut self, force: bool) -> Result<bool, LedgerError> {
        if self.spool.is_empty() {
            return Ok(true);
        }
        if !force && self.backing_off() {
            return Ok(false);
        }
        let mut done = 0;
        let mut failure = None;
        for entry in self.spool.entries() {
            let result = match entry {
                SpoolEntry::Changes(changes) => self.inner.apply(changes),
                SpoolEntry::Checkpoint(at_ms) => self.inner.checkpoint(*at_ms).map(|_| ()),
            };
            match result {
                Ok(()) => done += 1,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let replayed: u64 = self.spool.entries()[..done].iter().map(SpoolEntry::change_count).sum();
        if done > 0 {
            self.spool.remove_front(done)?;
        }
        match failure {
            None => {
                tracing::info!(changes = replayed, "ledger spool replayed into the database; writing through again");
                self.quiet_until = None;
                Ok(true)
            }
            Some(LedgerError::Backend(e)) => {
                self.failed("replay", &e);
                Ok(false)
            }
            Some(other) => Err(other),
        }
    }

    /// Spool `entry` behind what is already spooled (the database is away).
    fn spool_entry(&mut self, entry: SpoolEntry) -> Result<(), LedgerError> {
        self.spool.append(entry)
    }
}

impl UsageLedger for SpoolingLedger {
    fn apply(&mut self, changes: &[LedgerChange]) -> Result<(), LedgerError> {
        if self.replay(false)? {
            match self.inner.apply(changes) {
                Ok(()) => return Ok(()),
                Err(LedgerError::Backend(e)) => self.failed("apply", &e),
                Err(other) => return Err(other),
            }
        }
        self.spool_entry(SpoolEntry::Changes(changes.to_vec()))
    }

    /// While spooling, the checkpoint is spooled too (so a crash during the outage is recovered
    /// at it, after the changes before it) and the open count is unknown: 0 is returned.
    fn checkpoint(&mut self, now_ms: i64) -> Result<usize, LedgerError> {
        if self.replay(false)? {
            match self.inner.checkpoint(now_ms) {
                Ok(open) => return Ok(open),
                Err(LedgerError::Backend(e)) => self.failed("checkpoint", &e),
                Err(other) => return Err(other),
            }
        }
        self.spool_entry(SpoolEntry::Checkpoint(now_ms))?;
        Ok(0)
    }

    /// Replays the whole spool first (a start with the database still away fails, and the
    /// spool is kept for the next start), then the inner ledger's crash recovery.
    fn recover(&mut self) -> Result<RecoveryReport, LedgerError> {
        if !self.replay(true)? {
            return Err(LedgerError::Backend(format!(
                "cannot replay the ledger spool {} ({} changes): the database refuses writes",
                self.spool.path().display(),
                self.spool.change_count()
            )));
        }
        self.inner.recover()
    }

    fn last_checkpoint_ms(&self) -> Result<Option<i64>, LedgerError> {
        let spooled = self
            .spool
            .entries()
            .iter()
            .filter_map(|e| match e {
                SpoolEntry::Checkpoint(at) => Some(*at),
                SpoolEntry::Changes(_) => None,
            })
            .max();
        match (self.inner.last_checkpoint_ms(), spooled) {
            (Ok(stored), spooled) => Ok(stored.max(spooled)),
            (Err(_), Some(spooled)) => Ok(Some(spooled)),
            (Err(e), None) => Err(e),
        }
    }

    fn usage_page(&self, query: &UsageQuery) -> Result<Vec<UsageRecord>, LedgerError> {
        self.inner.usage_page(query)
    }

    fn call_summaries(&self, correlation_id: &str) -> Result<Vec<CallSummary>, LedgerError> {
        self.inner.call_summaries(correlation_id)
    }

    fn totals(&self, from_ms: i64, to_ms: i64) -> Result<Vec<TypeTotals>, LedgerError> {
        self.inner.totals(from_ms, to_ms)
    }

    fn due_deliveries(&self, now_ms: i64, limit: usize) -> Result<Vec<OutboxItem>, LedgerError> {
        self.inner.due_deliveries(now_ms, limit)
    }

    fn record_delivery(&mut self, outcome: &DeliveryOutcome) -> Result<(), LedgerError> {
        self.inner.record_delivery(outcome)
    }

    fn outbox_backlog(&self) -> Result<u64, LedgerError> {
        self.inner.outbox_backlog()
    }

    fn spooled_changes(&self) -> u64 {
        self.spool.change_count()
    }
}

#[cfg(test)]
mod tests;
