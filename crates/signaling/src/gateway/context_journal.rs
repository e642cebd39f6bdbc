//! [`ContextJournal`]: the consumed `incomingCallContext` ids on disk, so a context stays
//! single use across a restart (a `kill -9` included). One line per consumed context,
//! `{id} {expiry ms}`, appended and fsynced before the answer, reject or redirect that
//! consumed it goes on; on open the expired lines are dropped and the file is rewritten
//! (temporary file, fsync, rename), and it is compacted the same way whenever it has grown
//! well past what is still unexpired.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// Lines appended since the last compaction before the journal is rewritten (at least).
const COMPACT_AFTER: usize = 4096;

/// See the module docs.
#[derive(Debug)]
pub struct ContextJournal {
    path: PathBuf,
    file: File,
    appended: usize,
}

impl ContextJournal {
    /// Opens (or creates) the journal at `path` and answers it with the ids still unexpired
    /// at `now_ms`.
    pub fn open(path: &Path, now_ms: u64) -> std::io::Result<(Self, Vec<(String, u64)>)> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut live = Vec::new();
        if let Ok(file) = File::open(path) {
            for line in BufReader::new(file).lines() {
                let line = line?;
                // A torn last line (a crash mid-append) has no valid expiry: it is skipped.
                let Some((id, exp)) = line.split_once(' ') else { continue };
                let Ok(exp) = exp.trim().parse::<u64>() else { continue };
                if exp > now_ms && !id.is_empty() {
                    live.push((id.to_string(), exp));
                }
            }
        }
        let file = rewrite(path, &live)?;
        Ok((Self { path: path.to_path_buf(), file, appended: 0 }, live))
    }

    /// Records one consumed context durably.
    pub fn append(&mut self, id: &str, exp_ms: u64) -> std::io::Result<()> {
        writeln!(self.file, "{id} {exp_ms}")?;
        self.file.sync_data()?;
        self.appended += 1;
        Ok(())
    }

    /// Whether the journal should be rewritten with the `live` ids only.
    pub fn wants_compaction(&self, live: usize) -> bool {
        self.appended >= COMPACT_AFTER.max(2 * live)
    }

    /// Rewrites the journal with `live` only.
    pub fn compact(&mut self, live: &[(String, u64)]) -> std::io::Result<()> {
        self.file = rewrite(&self.path, live)?;
        self.appended = 0;
        Ok(())
    }
}

/// Writes `live` to a temporary file, fsyncs it, renames it over `path` and fsyncs the
/// directory; answers the new file opened for appending.
fn rewrite(path: &Path, live: &[(String, u64)]) -> std::io::Result<File> {
    let tmp = path.with_extension("tmp");
    {
        let mut out = File::create(&tmp)?;
        for (id, exp) in live {
            writeln!(out, "{id} {exp}")?;
        }
        out.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent()
        && let Ok(dir) = File::open(dir)
    {
        let _ = dir.sync_all();
    }
    OpenOptions::new().append(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumed_ids_survive_a_reopen_until_they_expire() {
        let dir = std::env::temp_dir().join(format!("palaver-ctx-journal-{}", uuid::Uuid::new_v4()));
        let path = dir.join("incoming-call-contexts");
        let (mut journal, live) = ContextJournal::open(&path, 0).unwrap();
        assert!(live.is_empty());
        journal.append("a", 1_000).unwrap();
        journal.append("b", 5_000).unwrap();
        drop(journal);
        // A torn line from a crash mid-append is ignored.
        OpenOptions::new().append(true).open(&path).unwrap().write_all(b"c").unwrap();
        let (mut journal, live) = ContextJournal::open(&path, 2_000).unwrap();
        assert_eq!(live, vec![("b".to_string(), 5_000)], "expired and torn lines are dropped");
        let rewritten = std::fs::read_to_string(&path).unwrap();
        assert_eq!(rewritten, "b 5000\n", "the file was rewritten with the live id only");
        assert!(!journal.wants_compaction(1));
        journal.compact(&[]).unwrap();
        let (_, live) = ContextJournal::open(&path, 0).unwrap();
        assert!(live.is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }
}
