//! The aborted-transaction index of one segment (Kafka's `TransactionIndex`, `.txnindex`): one
//! 34-byte entry per transaction whose ABORT marker is in the segment, in marker order:
//! `version i16 = 0, producerId i64, firstOffset i64, lastOffset i64, lastStableOffset i64`.
//!
//! `lastOffset` is the marker's offset; `lastStableOffset` is the last stable offset right after
//! the marker (the first offset of the oldest transaction still open, else marker + 1), which
//! lets a lookup stop early. The entries are kept in memory (aborts are rare next to data) and
//! appended to the file as they come; the file is created on the first entry, fsynced with its
//! segment, and a torn last entry is dropped on open. The broker rebuilds the entries of
//! whatever it replays at recovery ([`TxnIndex::truncate_from`] then appends).
//!
//! A segment written by the log cleaner starts with an empty index, and stays correct: the cleaner
//! removes all data of every aborted transaction whose marker is in its range (the data precedes
//! the marker, the range starts at the log start), whether it keeps the marker for a while or
//! removes it after its delete horizon (docs/COMPACTION.md "Transaction markers").

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Bytes of one entry on disk.
pub const ENTRY_LEN: usize = 34;

/// One aborted transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxnEntry {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The offset of the ABORT marker.
    pub last_offset: i64,
    pub last_stable_offset: i64,
}

impl AbortedTxnEntry {
    fn encode(&self) -> [u8; ENTRY_LEN] {
        let mut b = [0u8; ENTRY_LEN];
        b[0..2].copy_from_slice(&0i16.to_be_bytes());
        b[2..10].copy_from_slice(&self.producer_id.to_be_bytes());
        b[10..18].copy_from_slice(&self.first_offset.to_be_bytes());
        b[18..26].copy_from_slice(&self.last_offset.to_be_bytes());
        b[26..34].copy_from_slice(&self.last_stable_offset.to_be_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<Self> {
        let i64_at = |at: usize| -> Option<i64> {
            Some(i64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
        };
        let version = i16::from_be_bytes(b.get(0..2)?.try_into().ok()?);
        if version != 0 {
            return None;
        }
        Some(AbortedTxnEntry {
            producer_id: i64_at(2)?,
            first_offset: i64_at(10)?,
            last_offset: i64_at(18)?,
            last_stable_offset: i64_at(26)?,
        })
    }
}

pub struct TxnIndex {
    path: PathBuf,
    entries: Vec<AbortedTxnEntry>,
    /// Entries written since the last fsync.
    dirty: AtomicBool,
    /// The file may not hold every entry (a write failed, or only part of it was written):
    /// the next [`TxnIndex::sync`] rewrites it whole from `entries`. Readers use `entries`, so
    /// read_committed stays right meanwhile.
    unwritten: AtomicBool,
    /// The file was created since the last sync: its directory entry needs an fsync too.
    created: AtomicBool,
}

impl TxnIndex {
    pub fn path_for(dir: &Path, stem: &str) -> PathBuf {
        dir.join(format!("{stem}.txnindex"))
    }

    /// A new segment's index: no file until the first entry.
    pub fn create(path: PathBuf) -> io::Result<Self> {
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        Ok(TxnIndex {
            path,
            entries: Vec::new(),
            dirty: AtomicBool::new(false),
            unwritten: AtomicBool::new(false),
            created: AtomicBool::new(false),
        })
    }

    /// Loads an existing index (missing: empty). Entries that are torn, of an unknown version,
    /// or out of order end it; the file is cut there.
    pub fn open(path: PathBuf) -> io::Result<Self> {
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut entries = Vec::with_capacity(bytes.len() / ENTRY_LEN);
        for chunk in bytes.chunks_exact(ENTRY_LEN) {
            let Some(e) = AbortedTxnEntry::decode(chunk) else {
                break;
            };
            let ordered = entries
                .last()
                .is_none_or(|p: &AbortedTxnEntry| p.last_offset < e.last_offset);
            if !ordered || e.first_offset > e.last_offset {
                break;
            }
            entries.push(e);
        }
        let mut index = TxnIndex {
            path,
            entries,
            dirty: AtomicBool::new(false),
            unwritten: AtomicBool::new(false),
            created: AtomicBool::new(false),
        };
        if index.entries.len() * ENTRY_LEN != bytes.len() {
            tracing::warn!(
                index = %index.path.display(),
                kept = index.entries.len(),
                "dropping a torn or invalid tail of a transaction index"
            );
            index.rewrite()?;
        }
        Ok(index)
    }

    pub fn entries(&self) -> &[AbortedTxnEntry] {
        &self.entries
    }

    /// Appends an entry (its marker must come after every entry's). The entry is in memory
    /// (what readers use) whatever happens to the write: the caller has already appended the
    /// ABORT marker, and a retried marker finds no open transaction to index, so losing the
    /// entry here would show aborted data to read_committed readers. A failed or partial write
    /// is repaired by the next [`TxnIndex::sync`], which rewrites the file whole (and reports
    /// the error if it still cannot).
    pub fn append(&mut self, entry: AbortedTxnEntry) -> io::Result<()> {
        self.entries.push(entry);
        self.dirty.store(true, Ordering::Release);
        if self.unwritten.load(Ordering::Acquire) {
            return Ok(());
        }
        let existed = self.path.exists();
        let written = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut f| f.write_all(&entry.encode()));
        if !existed {
            self.created.store(true, Ordering::Release);
        }
        if let Err(e) = written {
            tracing::warn!(index = %self.path.display(), error = %e, "transaction index write failed; it is rewritten at the next sync");
            self.unwritten.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Drops the entries whose marker is at or after `offset` (recovery replays them again).
    pub fn truncate_from(&mut self, offset: i64) -> io::Result<()> {
        let keep = self.entries.partition_point(|e| e.last_offset < offset);
        if keep < self.entries.len() {
            self.entries.truncate(keep);
            self.rewrite()?;
        }
        Ok(())
    }

    fn rewrite(&mut self) -> io::Result<()> {
        if !self.path.exists() {
            return Ok(());
        }
        let f = OpenOptions::new().write(true).open(&self.path)?;
        f.set_len((self.entries.len() * ENTRY_LEN) as u64)?;
        self.dirty.store(true, Ordering::Release);
        Ok(())
    }

    /// Fsyncs the file if entries were written since the last sync (rewriting it whole first if
    /// a write failed), and its directory if the file is new.
    pub fn sync(&self) -> io::Result<()> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let result = self.sync_inner();
        if result.is_err() {
            self.dirty.store(true, Ordering::Release);
        }
        result
    }

    fn sync_inner(&self) -> io::Result<()> {
        if self.unwritten.load(Ordering::Acquire) {
            let mut bytes = Vec::with_capacity(self.entries.len() * ENTRY_LEN);
            for e in &self.entries {
                bytes.extend_from_slice(&e.encode());
            }
            let mut f = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .open(&self.path)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            self.unwritten.store(false, Ordering::Release);
            self.created.store(true, Ordering::Release);
        } else {
            match fs::File::open(&self.path) {
                Ok(f) => f.sync_all()?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        if self.created.swap(false, Ordering::AcqRel) {
            if let Some(dir) = self.path.parent() {
                if let Err(e) = crate::durability::fsync_dir(dir) {
                    self.created.store(true, Ordering::Release);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Kafka's `TransactionIndex.collectAbortedTxns`: the entries overlapping
    /// `[fetch_offset, upper_bound)`, and whether the search is complete (an entry's last
    /// stable offset reached `upper_bound`, so no later segment can add one).
    pub fn collect(
        &self,
        fetch_offset: i64,
        upper_bound: i64,
        out: &mut Vec<AbortedTxnEntry>,
    ) -> bool {
        let start = self
            .entries
            .partition_point(|e| e.last_offset < fetch_offset);
        for e in &self.entries[start..] {
            if e.first_offset < upper_bound {
                out.push(*e);
            }
            if e.last_stable_offset >= upper_bound {
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(pid: i64, first: i64, last: i64, lso: i64) -> AbortedTxnEntry {
        AbortedTxnEntry {
            producer_id: pid,
            first_offset: first,
            last_offset: last,
            last_stable_offset: lso,
        }
    }

    #[test]
    fn a_failed_write_keeps_the_entry_and_the_next_sync_repairs_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = TxnIndex::path_for(dir.path(), "00000000000000000000");
        let mut idx = TxnIndex::create(path.clone()).unwrap();
        idx.append(e(1, 0, 5, 6)).unwrap();
        // The next write fails: the path is taken by a directory.
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        idx.append(e(2, 7, 9, 10)).unwrap();
        assert_eq!(idx.entries().len(), 2, "readers keep seeing the entry");
        assert!(
            idx.sync().is_err(),
            "the sync reports what it cannot repair"
        );
        std::fs::remove_dir(&path).unwrap();
        idx.sync().unwrap();
        let reopened = TxnIndex::open(path).unwrap();
        assert_eq!(reopened.entries(), &[e(1, 0, 5, 6), e(2, 7, 9, 10)]);
    }

    #[test]
    fn round_trip_torn_tail_truncate_and_collect() {
        let dir = tempfile::tempdir().unwrap();
        let path = TxnIndex::path_for(dir.path(), "00000000000000000000");
        let mut idx = TxnIndex::create(path.clone()).unwrap();
        assert!(!path.exists(), "created lazily");
        idx.append(e(1, 0, 5, 6)).unwrap();
        idx.append(e(2, 3, 9, 10)).unwrap();
        idx.append(e(3, 11, 20, 15)).unwrap();
        idx.sync().unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), 3 * ENTRY_LEN as u64);
        // A torn write of a fourth entry.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&e(4, 21, 22, 23).encode()[..20]).unwrap();
        drop(f);
        let mut idx = TxnIndex::open(path.clone()).unwrap();
        assert_eq!(idx.entries().len(), 3);
        assert_eq!(fs::metadata(&path).unwrap().len(), 3 * ENTRY_LEN as u64);

        let mut out = Vec::new();
        assert!(idx.collect(4, 7, &mut out));
        assert_eq!(out, vec![e(1, 0, 5, 6), e(2, 3, 9, 10)]);
        out.clear();
        assert!(!idx.collect(10, 100, &mut out));
        assert_eq!(out, vec![e(3, 11, 20, 15)]);
        out.clear();
        // An entry whose data starts after the bound is skipped, but its LSO may end the search.
        assert!(idx.collect(0, 2, &mut out));
        assert_eq!(out, vec![e(1, 0, 5, 6)]);

        idx.truncate_from(9).unwrap();
        assert_eq!(idx.entries(), &[e(1, 0, 5, 6)]);
        let idx = TxnIndex::open(path.clone()).unwrap();
        assert_eq!(idx.entries(), &[e(1, 0, 5, 6)]);

        // Garbage is dropped, never a panic.
        fs::write(&path, [0xffu8; 100]).unwrap();
        assert!(TxnIndex::open(path).unwrap().entries().is_empty());
    }
}
