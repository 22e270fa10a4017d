//! Sparse indexes beside each segment, as Kafka keeps them:
//! - the offset index maps a batch's offset (relative to the segment base) to its file position;
//! - the time index maps the largest timestamp seen so far to the offset where it was reached.
//!
//! One entry is added every `index.interval.bytes` of log. Entries live in memory (a segment of
//! 1 GiB with the default 4 KiB interval holds at most 262,144 of them). The file is written
//! whole, and fsynced, when the segment stops being active (roll) or after an index was rebuilt;
//! the active segment's index is always rebuilt by recovery, so it is never written while it
//! grows. No index file stays open: a partition holds one file descriptor (its active log),
//! which is what lets thousands of partitions live on one node.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// One fixed-size index entry.
pub trait IndexEntry: Copy {
    const SIZE: usize;
    fn encode(&self, out: &mut [u8]);
    fn decode(buf: &[u8]) -> Self;
}

/// Offset index entry: (offset - base, byte position in the segment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

impl IndexEntry for OffsetEntry {
    const SIZE: usize = 8;
    fn encode(&self, out: &mut [u8]) {
        out[..4].copy_from_slice(&self.relative_offset.to_be_bytes());
        out[4..8].copy_from_slice(&self.position.to_be_bytes());
    }
    fn decode(buf: &[u8]) -> Self {
        OffsetEntry {
            relative_offset: u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]),
            position: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
        }
    }
}

/// Time index entry: (largest timestamp so far, offset - base of the batch that carried it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    pub timestamp: i64,
    pub relative_offset: u32,
}

impl IndexEntry for TimeEntry {
    const SIZE: usize = 12;
    fn encode(&self, out: &mut [u8]) {
        out[..8].copy_from_slice(&self.timestamp.to_be_bytes());
        out[8..12].copy_from_slice(&self.relative_offset.to_be_bytes());
    }
    fn decode(buf: &[u8]) -> Self {
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&buf[..8]);
        TimeEntry {
            timestamp: i64::from_be_bytes(ts),
            relative_offset: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
        }
    }
}

/// An index file's entries in memory, and where the file lives.
pub struct IndexFile<E: IndexEntry> {
    path: PathBuf,
    entries: Vec<E>,
    /// False when the file read by [`IndexFile::open`] ended in a partial entry: it was not
    /// written by `persist` (which writes whole files), so it is not trusted.
    whole: bool,
}

impl<E: IndexEntry> IndexFile<E> {
    /// A new, empty index (a stale file of the same name is removed).
    pub fn create(path: &Path) -> io::Result<Self> {
        match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        Ok(IndexFile {
            path: path.to_path_buf(),
            entries: Vec::new(),
            whole: true,
        })
    }

    /// Loads the entries of an existing file (none if it is missing). A trailing partial entry
    /// is ignored and marks the file as not whole. An index is a hint: the segment checks the
    /// entries before it trusts them (`LogSegment::open`). A file larger than `max_bytes` (more
    /// entries than the segment could need) is not read at all and counts as not whole.
    pub fn open(path: &Path, max_bytes: u64) -> io::Result<Self> {
        let raw = match fs::metadata(path) {
            Ok(meta) if meta.len() > max_bytes => None,
            Ok(_) => Some(fs::read(path)?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Some(Vec::new()),
            Err(e) => return Err(e),
        };
        let Some(raw) = raw else {
            return Ok(IndexFile {
                path: path.to_path_buf(),
                entries: Vec::new(),
                whole: false,
            });
        };
        let entries = raw.chunks_exact(E::SIZE).map(E::decode).collect();
        Ok(IndexFile {
            path: path.to_path_buf(),
            entries,
            whole: raw.len() % E::SIZE == 0,
        })
    }

    /// False if the file ended in a partial entry or was too large to be this segment's.
    pub fn file_was_whole(&self) -> bool {
        self.whole
    }

    pub fn entries(&self) -> &[E] {
        &self.entries
    }

    pub fn last(&self) -> Option<&E> {
        self.entries.last()
    }

    pub fn append(&mut self, entry: E) {
        self.entries.push(entry);
    }

    /// Keeps the first `len` entries (recovery rebuilds from scratch).
    pub fn truncate(&mut self, len: usize) {
        self.entries.truncate(len);
        if len == 0 {
            self.whole = true;
        }
    }

    /// Writes every entry to the file and fsyncs it: written to a temporary name and renamed,
    /// so a crash leaves the old file or the new one, never a torn mix; the directory is
    /// fsynced after the rename so the new name survives a power loss.
    pub fn persist(&self) -> io::Result<()> {
        let mut raw = vec![0u8; self.entries.len() * E::SIZE];
        for (chunk, e) in raw.chunks_exact_mut(E::SIZE).zip(&self.entries) {
            e.encode(chunk);
        }
        let tmp = self.path.with_extension("tmp-index");
        let mut file = File::create(&tmp)?;
        file.write_all(&raw)?;
        file.sync_data()?;
        fs::rename(&tmp, &self.path)?;
        crate::durability::fsync_parent(&self.path)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl IndexFile<OffsetEntry> {
    /// The last entry whose offset is at most `relative_offset`.
    pub fn floor(&self, relative_offset: u32) -> Option<OffsetEntry> {
        let i = self
            .entries
            .partition_point(|e| e.relative_offset <= relative_offset);
        i.checked_sub(1).map(|i| self.entries[i])
    }
}

impl IndexFile<TimeEntry> {
    /// The last entry whose timestamp is below `timestamp`: a scan for the first batch at or
    /// after `timestamp` can start at its offset.
    pub fn floor_before(&self, timestamp: i64) -> Option<TimeEntry> {
        let i = self.entries.partition_point(|e| e.timestamp < timestamp);
        i.checked_sub(1).map(|i| self.entries[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_drops_torn_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.index");
        let mut idx = IndexFile::<OffsetEntry>::create(&path).unwrap();
        for i in 0..10u32 {
            idx.append(OffsetEntry {
                relative_offset: i * 10,
                position: i * 4096,
            });
        }
        idx.persist().unwrap();
        let mut raw = std::fs::read(&path).unwrap();
        assert_eq!(raw.len(), 80);
        raw.extend([1, 2, 3]);
        std::fs::write(&path, raw).unwrap();
        let idx = IndexFile::<OffsetEntry>::open(&path, 1 << 20).unwrap();
        assert_eq!(idx.entries().len(), 10);
        assert!(!idx.file_was_whole());
        assert!(!IndexFile::<OffsetEntry>::open(&path, 64)
            .unwrap()
            .file_was_whole());
        assert_eq!(idx.floor(25).unwrap().position, 2 * 4096);
        assert_eq!(idx.floor(0).unwrap().position, 0);
        let missing = IndexFile::<OffsetEntry>::open(&dir.path().join("none"), 64).unwrap();
        assert!(missing.entries().is_empty() && missing.file_was_whole());
    }

    #[test]
    fn time_floor() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = IndexFile::<TimeEntry>::create(&dir.path().join("t")).unwrap();
        for (ts, off) in [(100, 0), (200, 5), (300, 9)] {
            idx.append(TimeEntry {
                timestamp: ts,
                relative_offset: off,
            });
        }
        assert_eq!(idx.floor_before(100), None);
        assert_eq!(idx.floor_before(250).unwrap().relative_offset, 5);
    }
}
