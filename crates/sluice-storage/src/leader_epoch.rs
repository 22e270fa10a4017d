//! The leader-epoch cache of one partition (Kafka's `LeaderEpochFileCache`): which leader epoch
//! started at which offset, so a leader can tell a follower where their logs diverge
//! (`end_offset_for`, KIP-101/KIP-279) and a follower can find where to truncate.
//!
//! Entries are `(epoch, start_offset)`, both strictly increasing. The rules are Kafka's:
//! - [`LeaderEpochCache::assign`] ignores an entry that repeats the latest epoch at the same or a
//!   later start offset; any other entry first removes every entry whose epoch or start offset
//!   is at or above its own (keeping both sequences increasing), then is added. (Kafka throws on
//!   a negative epoch or offset; here they are ignored and `assign` returns false.)
//! - [`LeaderEpochCache::end_offset_for`] answers OffsetForLeaderEpoch / `DivergingEpoch`: the
//!   largest epoch at or below the requested one and where it ended (the next entry's start,
//!   or the log end offset for the latest epoch); `(-1, -1)` for an undefined request or one
//!   above every known epoch; `(requested, first start)` for one below every known epoch.
//! - [`LeaderEpochCache::truncate_from_end`] (a log truncated to an end offset) removes the
//!   entries starting at or after it; [`LeaderEpochCache::truncate_from_start`] (log start moved
//!   by retention or DeleteRecords) removes the entries starting at or before it and re-adds the
//!   last removed one at the new start.
//!
//! On disk it is Kafka's `leader-epoch-checkpoint` text file in the partition directory:
//! `0\n<count>\n` then one `<epoch> <start_offset>\n` line per entry. It is rewritten whole
//! (temporary file, fsync, rename, directory fsync) whenever the cache changes; that is rare
//! (a new leader epoch, a truncation, a log start moving). Decoding never panics: a file that is
//! not exactly this format is "unreadable" and the log rebuilds the cache from batch headers.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use crate::durability;

/// Kafka's `UNDEFINED_EPOCH` (`RecordBatch.NO_PARTITION_LEADER_EPOCH`).
pub const UNDEFINED_EPOCH: i32 = -1;
/// Kafka's `UNDEFINED_EPOCH_OFFSET`.
pub const UNDEFINED_EPOCH_OFFSET: i64 = -1;
/// Kafka's file name for the checkpoint, in the partition directory.
pub const LEADER_EPOCH_CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";
/// The checkpoint's format version (Kafka's `LeaderEpochCheckpointFile.CURRENT_VERSION`).
pub const CHECKPOINT_VERSION: i32 = 0;
/// Largest checkpoint file read: an entry line is at most 32 bytes (`i32`, space, `i64`,
/// newline), so 4 MiB holds over 100,000 leader epochs, far beyond what a partition sees
/// (one per leader change). A larger file is treated as unreadable (rebuilt from the log).
pub const MAX_CHECKPOINT_BYTES: u64 = 4 << 20;
/// Most entries a checkpoint may declare (a bound on what a hostile count can make us
/// allocate); consistent with [`MAX_CHECKPOINT_BYTES`].
pub const MAX_CHECKPOINT_ENTRIES: usize = 1 << 17;

/// One leader epoch and the first offset written in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

/// The in-memory cache: entries with strictly increasing epochs and start offsets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderEpochCache {
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    pub fn new() -> Self {
        LeaderEpochCache::default()
    }

    /// A cache built by assigning each entry in turn (how Kafka loads its checkpoint).
    pub fn from_entries(entries: impl IntoIterator<Item = EpochEntry>) -> Self {
        let mut cache = LeaderEpochCache::new();
        for e in entries {
            cache.assign(e.epoch, e.start_offset);
        }
        cache
    }

    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn latest_entry(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    pub fn earliest_entry(&self) -> Option<EpochEntry> {
        self.entries.first().copied()
    }

    /// The latest epoch, if any (Kafka's `latestEpoch`).
    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    /// Kafka's `isUpdateNeeded`: a new epoch, or the latest one moving to an earlier offset.
    fn is_update_needed(&self, epoch: i32, start_offset: i64) -> bool {
        self.entries
            .last()
            .is_none_or(|l| epoch != l.epoch || start_offset < l.start_offset)
    }

    /// Records that `epoch` starts at `start_offset`. Returns whether the cache changed (the
    /// caller then persists it). Entries at or above the new one (by epoch or by offset) are
    /// removed first, so both sequences stay strictly increasing.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 || start_offset < 0 {
            return false;
        }
        if !self.is_update_needed(epoch, start_offset) {
            return false;
        }
        let keep = self
            .entries
            .iter()
            .rposition(|e| e.epoch < epoch && e.start_offset < start_offset)
            .map_or(0, |i| i + 1);
        let removed = self.entries.len() - keep;
        if removed > 1
            || (removed == 1
                && self.entries.get(keep).map(|e| e.start_offset) != Some(start_offset))
        {
            tracing::warn!(
                epoch,
                start_offset,
                removed,
                "new leader epoch entry truncated conflicting entries"
            );
        }
        self.entries.truncate(keep);
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        true
    }

    /// Kafka's `endOffsetFor`: the largest epoch at or below `requested_epoch` and its end
    /// offset (the start of the next epoch, or `log_end_offset` for the latest epoch).
    /// - `requested_epoch == -1` → `(-1, -1)`;
    /// - the latest epoch → `(latest, log_end_offset)`;
    /// - above every epoch (or an empty cache) → `(-1, -1)`;
    /// - below every epoch → `(requested_epoch, start of the first entry)`;
    /// - otherwise → `(floor epoch, start of the next higher entry)`.
    pub fn end_offset_for(&self, requested_epoch: i32, log_end_offset: i64) -> (i32, i64) {
        if requested_epoch == UNDEFINED_EPOCH {
            return (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        }
        if self.latest_epoch() == Some(requested_epoch) {
            return (requested_epoch, log_end_offset);
        }
        // First entry with an epoch above the requested one.
        let higher = self.entries.partition_point(|e| e.epoch <= requested_epoch);
        let Some(higher_entry) = self.entries.get(higher) else {
            return (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        };
        match higher.checked_sub(1).and_then(|i| self.entries.get(i)) {
            None => (requested_epoch, higher_entry.start_offset),
            Some(floor) => (floor.epoch, higher_entry.start_offset),
        }
    }

    /// The epoch of the batch holding `offset` (Kafka's `epochForOffset`), if known.
    pub fn epoch_for_offset(&self, offset: i64) -> Option<i32> {
        let i = self.entries.partition_point(|e| e.start_offset <= offset);
        i.checked_sub(1)
            .and_then(|i| self.entries.get(i))
            .map(|e| e.epoch)
    }

    /// The log was truncated to end at `end_offset`: entries starting at or after it go.
    /// Returns whether the cache changed.
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        if end_offset < 0 {
            return false;
        }
        let keep = self
            .entries
            .partition_point(|e| e.start_offset < end_offset);
        let changed = keep < self.entries.len();
        self.entries.truncate(keep);
        changed
    }

    /// The log now starts at `start_offset`: entries starting at or before it go, and the last
    /// of them comes back starting at `start_offset` (its epoch still covers the new start).
    /// Returns whether the cache changed.
    pub fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let removed = self
            .entries
            .partition_point(|e| e.start_offset <= start_offset);
        let Some(last_removed) = removed.checked_sub(1).and_then(|i| self.entries.get(i)) else {
            return false;
        };
        let updated = EpochEntry {
            epoch: last_removed.epoch,
            start_offset,
        };
        let changed = removed > 1 || last_removed.start_offset != start_offset;
        self.entries.drain(..removed);
        self.entries.insert(0, updated);
        changed
    }

    /// Removes every entry (a log truncated fully).
    pub fn clear(&mut self) -> bool {
        let changed = !self.entries.is_empty();
        self.entries.clear();
        changed
    }

    /// The checkpoint file's text.
    pub fn encode(&self) -> String {
        let mut out = format!("{CHECKPOINT_VERSION}\n{}\n", self.entries.len());
        for e in &self.entries {
            out.push_str(&format!("{} {}\n", e.epoch, e.start_offset));
        }
        out
    }

    /// Parses a checkpoint file. `None` unless it is exactly Kafka's format: version 0, a count,
    /// that many `epoch offset` lines of non-negative numbers, nothing after. The entries are
    /// then assigned in order (as Kafka loads them), which drops non-monotonic ones.
    pub fn decode(bytes: &[u8]) -> Option<LeaderEpochCache> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.split('\n');
        if lines.next()?.trim().parse::<i32>().ok()? != CHECKPOINT_VERSION {
            return None;
        }
        let count = lines.next()?.trim().parse::<usize>().ok()?;
        if count > MAX_CHECKPOINT_ENTRIES {
            return None;
        }
        let mut entries = Vec::with_capacity(count);
        for _ in 0..count {
            let line = lines.next()?;
            let mut fields = line.split_whitespace();
            let epoch = fields.next()?.parse::<i32>().ok()?;
            let start_offset = fields.next()?.parse::<i64>().ok()?;
            if fields.next().is_some() || epoch < 0 || start_offset < 0 {
                return None;
            }
            entries.push(EpochEntry {
                epoch,
                start_offset,
            });
        }
        // Only an empty remainder (the final newline) may follow.
        if lines.any(|l| !l.trim().is_empty()) {
            return None;
        }
        Some(LeaderEpochCache::from_entries(entries))
    }
}

/// What [`read_checkpoint`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checkpoint {
    Missing,
    /// Present but not a valid checkpoint (torn, garbage, too large).
    Unreadable,
    Loaded(LeaderEpochCache),
}

/// Reads the partition's checkpoint file.
pub fn read_checkpoint(dir: &Path) -> io::Result<Checkpoint> {
    let path = dir.join(LEADER_EPOCH_CHECKPOINT_FILE);
    match fs::metadata(&path) {
        Ok(meta) if meta.len() > MAX_CHECKPOINT_BYTES => return Ok(Checkpoint::Unreadable),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Checkpoint::Missing),
        Err(e) => return Err(e),
    }
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Checkpoint::Missing),
        Err(e) => return Err(e),
    };
    Ok(match LeaderEpochCache::decode(&bytes) {
        Some(cache) => Checkpoint::Loaded(cache),
        None => Checkpoint::Unreadable,
    })
}

/// Writes the checkpoint durably: a temporary file, fsynced, renamed over the old one, and the
/// directory fsynced. A crash leaves the old file or the new one.
pub fn write_checkpoint(dir: &Path, cache: &LeaderEpochCache) -> io::Result<()> {
    let path = dir.join(LEADER_EPOCH_CHECKPOINT_FILE);
    let tmp = dir.join(format!("{LEADER_EPOCH_CHECKPOINT_FILE}.tmp"));
    let mut file = fs::File::create(&tmp)?;
    file.write_all(cache.encode().as_bytes())?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, &path)?;
    durability::fsync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> LeaderEpochCache {
        LeaderEpochCache::from_entries(entries.iter().map(|&(epoch, start_offset)| EpochEntry {
            epoch,
            start_offset,
        }))
    }

    fn pairs(c: &LeaderEpochCache) -> Vec<(i32, i64)> {
        c.entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect()
    }

    #[test]
    fn assign_follows_kafka() {
        let mut c = LeaderEpochCache::new();
        assert!(c.assign(2, 10));
        assert!(!c.assign(2, 10), "duplicate ignored");
        assert!(!c.assign(2, 15), "same epoch, later offset ignored");
        assert!(c.assign(2, 5), "same epoch, earlier offset moves it");
        assert_eq!(pairs(&c), vec![(2, 5)]);
        assert!(c.assign(3, 20));
        assert!(c.assign(5, 30));
        // A new epoch at an offset not above the latest start removes the entries it overlaps.
        assert!(c.assign(6, 20));
        assert_eq!(pairs(&c), vec![(2, 5), (6, 20)]);
        // A lower epoch removes every entry at or above it (Kafka's non-monotonic truncation).
        assert!(c.assign(4, 25));
        assert_eq!(pairs(&c), vec![(2, 5), (4, 25)]);
        assert!(!c.assign(-1, 40), "negative epoch ignored");
        assert!(!c.assign(7, -3), "negative offset ignored");
        assert_eq!(c.latest_epoch(), Some(4));
        assert_eq!(c.epoch_for_offset(4), None);
        assert_eq!(c.epoch_for_offset(5), Some(2));
        assert_eq!(c.epoch_for_offset(24), Some(2));
        assert_eq!(c.epoch_for_offset(1000), Some(4));
    }

    #[test]
    fn end_offset_for_matches_kafka() {
        let c = cache(&[(1, 0), (3, 10), (5, 20)]);
        assert_eq!(c.end_offset_for(-1, 30), (-1, -1));
        assert_eq!(
            c.end_offset_for(5, 30),
            (5, 30),
            "latest epoch ends at the LEO"
        );
        assert_eq!(c.end_offset_for(6, 30), (-1, -1), "above every epoch");
        assert_eq!(c.end_offset_for(0, 30), (0, 0), "below every epoch");
        assert_eq!(c.end_offset_for(1, 30), (1, 10));
        assert_eq!(c.end_offset_for(2, 30), (1, 10), "largest epoch below");
        assert_eq!(c.end_offset_for(3, 30), (3, 20));
        assert_eq!(c.end_offset_for(4, 30), (3, 20));
        assert_eq!(LeaderEpochCache::new().end_offset_for(0, 5), (-1, -1));
    }

    #[test]
    fn truncation_from_both_ends() {
        let mut c = cache(&[(1, 0), (3, 10), (5, 20)]);
        assert!(!c.truncate_from_end(25));
        assert!(!c.truncate_from_end(-1));
        assert!(c.truncate_from_end(20));
        assert_eq!(pairs(&c), vec![(1, 0), (3, 10)]);
        assert!(c.truncate_from_end(5));
        assert_eq!(pairs(&c), vec![(1, 0)]);
        let mut c = cache(&[(1, 0), (3, 10), (5, 20)]);
        assert!(!c.truncate_from_start(0));
        assert!(c.truncate_from_start(15));
        assert_eq!(pairs(&c), vec![(3, 15), (5, 20)]);
        assert!(c.truncate_from_start(20));
        assert_eq!(pairs(&c), vec![(5, 20)]);
        assert!(c.truncate_from_start(100));
        assert_eq!(pairs(&c), vec![(5, 100)]);
        assert!(c.clear() && c.is_empty() && !c.clear());
    }

    #[test]
    fn checkpoint_round_trip_and_format() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_checkpoint(dir.path()).unwrap(), Checkpoint::Missing);
        let c = cache(&[(0, 0), (4, 100)]);
        write_checkpoint(dir.path(), &c).unwrap();
        let text = fs::read_to_string(dir.path().join(LEADER_EPOCH_CHECKPOINT_FILE)).unwrap();
        assert_eq!(text, "0\n2\n0 0\n4 100\n");
        assert_eq!(
            read_checkpoint(dir.path()).unwrap(),
            Checkpoint::Loaded(c.clone())
        );
        assert!(!dir
            .path()
            .join(format!("{LEADER_EPOCH_CHECKPOINT_FILE}.tmp"))
            .exists());
        // Kafka writes exactly this; an empty cache too.
        assert_eq!(LeaderEpochCache::new().encode(), "0\n0\n");
        assert_eq!(
            LeaderEpochCache::decode(b"0\n0\n"),
            Some(LeaderEpochCache::new())
        );
    }

    #[test]
    fn hostile_checkpoints_never_panic() {
        let bad: &[&[u8]] = &[
            b"",
            b"0",
            b"1\n0\n",
            b"0\n2\n1 5\n",
            b"0\n1\n1 5 7\n",
            b"0\n1\n-1 5\n",
            b"0\n1\n1 -5\n",
            b"0\n1\n1 5\nextra\n",
            b"0\n99999999999999999999\n",
            b"0\n131073\n",
            b"0\n1\n\xff\xfe\n",
            b"0\n1\n2147483648 1\n",
        ];
        for b in bad {
            assert_eq!(LeaderEpochCache::decode(b), None, "{:?}", b);
        }
        // Non-monotonic entries load as Kafka loads them (assign in order).
        assert_eq!(
            pairs(&LeaderEpochCache::decode(b"0\n3\n1 0\n5 10\n3 20\n").unwrap()),
            vec![(1, 0), (3, 20)]
        );
        // Every prefix and every single-byte corruption of a valid file: no panic.
        let good = cache(&[(0, 0), (7, 1234), (9, 99999)])
            .encode()
            .into_bytes();
        for cut in 0..good.len() {
            let _ = LeaderEpochCache::decode(&good[..cut]);
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..good.len() * 256 {
            let mut b = good.clone();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            b[i % good.len()] = (seed >> 24) as u8;
            if let Some(c) = LeaderEpochCache::decode(&b) {
                let e = c.entries();
                assert!(e
                    .windows(2)
                    .all(|w| w[0].epoch < w[1].epoch && w[0].start_offset < w[1].start_offset));
            }
        }
        // A file too large to be a checkpoint is unreadable, not read.
        let dir = tempfile::tempdir().unwrap();
        let f = fs::File::create(dir.path().join(LEADER_EPOCH_CHECKPOINT_FILE)).unwrap();
        f.set_len(MAX_CHECKPOINT_BYTES + 1).unwrap();
        assert_eq!(read_checkpoint(dir.path()).unwrap(), Checkpoint::Unreadable);
    }
}
