//! Log compaction (Kafka's `LogCleaner`): the IO of rewriting a partition's closed segments so
//! that only the latest record of each key is kept. The broker decides when and what (its
//! `cleaner.rs`: dirty ratio, LSO, aborted transactions); this module does the work in three
//! steps, so that the partition lock is held only for the first and the last:
//!
//! 1. [`Log::plan_clean`] (under the lock): the closed segments from the log start to the first
//!    uncleanable offset, and where the dirty section starts;
//! 2. [`CleanPlan::execute`] (no lock): builds the offset map (key -> last offset) over the dirty
//!    section, bounded by `dedupe_buffer_bytes` (when full, the round stops at the batch where it
//!    got, as Kafka does), then recopies the segments, in groups merged up to `segment.bytes`,
//!    into `<base>.log.cleaned` files (+ their indexes), fsynced;
//! 3. [`Log::install_clean`] (under the lock): renames the `.cleaned` files to `.swap` (the
//!    commit point, directory fsynced), deletes the old segments, renames the `.swap` files to
//!    their final names and swaps the segments in. On open, [`recover_interrupted`] deletes
//!    `.cleaned` files and finishes every `.swap` (deleting the old segments its offsets cover),
//!    so a crash at any point leaves either the old segments or the new ones, never a mix.
//!
//! Readers that located a slice in an old segment keep reading it: its file stays open until
//! their `Arc<File>` is dropped.
//!
//! What a recopy keeps, per record (Kafka's rule):
//! - a record whose offset is at or past the end of the offset map;
//! - a record with a key whose offset is at or past the map's entry for that key, unless it is
//!   a tombstone (null value) whose delete horizon has passed.
//!
//! Keyless records are dropped. Control batches (transaction markers) are never deduplicated.
//! Batches of aborted transactions are dropped whole. A COMMIT or ABORT marker none of whose
//! transaction's batches is kept gets a delete horizon (as a tombstone's) and goes once it has
//! passed (Kafka's `CleanedTransactionMetadata`; docs/COMPACTION.md "Transaction markers"),
//! unless it ends a group or is its producer's fencing marker (a newer epoch than its last data
//! batch). The last batch of each producer is kept (empty if all its records went) so
//! idempotent state survives, and so is the last batch of each group, so a cleaned segment ends
//! at the same offset as the segments it replaces.
//!
//! A rewritten batch keeps its base offset, last offset delta, producer id, epoch, base
//! sequence, max timestamp and codec; records keep their offset deltas. The first cleaning that
//! keeps a tombstone sets the batch's delete horizon as Kafka does (KIP-534): attribute bit 6,
//! `baseTimestamp = now + delete.retention.ms`, record timestamp deltas rebased. A later
//! cleaning after that time drops the tombstones.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::durability::fsync_dir;
use crate::error::Result;
use crate::log::{Log, MAX_RELATIVE_OFFSET};
use crate::records::{BatchHeader, BATCH_HEADER_LEN, LOG_OVERHEAD};
use crate::segment::{file_stem, LogSegment, OpenMode};

/// Kafka's `cleaner-offset-checkpoint`, kept per partition directory: the first dirty offset.
pub const CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";
const CLEANED: &str = ".cleaned";
const SWAP: &str = ".swap";
const EXTENSIONS: [&str; 3] = ["log", "index", "timeindex"];

/// Attribute bit 6: the batch's base timestamp is its delete horizon (KIP-534).
pub const ATTR_DELETE_HORIZON: i16 = 0x40;
const ATTR_COMPRESSION_MASK: i16 = 0x07;
const ATTRIBUTES_AT: usize = 21;
const CRC_AT: usize = 17;
const BATCH_LENGTH_AT: usize = 8;
const BASE_TIMESTAMP_AT: usize = 27;
const RECORDS_COUNT_AT: usize = 57;
/// Memory an offset-map entry costs beyond its key's bytes (hash table slot, vector header,
/// offset), for the dedupe buffer's accounting.
const MAP_ENTRY_OVERHEAD: usize = 48;
/// Memory a producer's last-batch entry costs, counted against the same bound.
const PRODUCER_ENTRY_BYTES: usize = 40;

/// How the cleaner reads compressed batches; the broker passes its codecs. An error keeps the
/// batch as it is (the cleaner never loses data it cannot read).
pub trait RecordCodec: Sync {
    /// Decompresses the records section of a batch with codec id `codec` (1-4) into `out`,
    /// refusing to produce more than `cap` bytes.
    fn decompress(
        &self,
        codec: i16,
        body: &[u8],
        cap: usize,
        out: &mut Vec<u8>,
    ) -> std::result::Result<(), String>;
    /// Compresses a records section with codec id `codec`, appending to `out`.
    fn compress(
        &self,
        codec: i16,
        section: &[u8],
        out: &mut Vec<u8>,
    ) -> std::result::Result<(), String>;
}

/// A codec that reads only uncompressed batches (compressed ones are kept as they are).
pub struct UncompressedOnly;

impl RecordCodec for UncompressedOnly {
    fn decompress(
        &self,
        codec: i16,
        _: &[u8],
        _: usize,
        _: &mut Vec<u8>,
    ) -> std::result::Result<(), String> {
        Err(format!("codec {codec} not available"))
    }
    fn compress(&self, codec: i16, _: &[u8], _: &mut Vec<u8>) -> std::result::Result<(), String> {
        Err(format!("codec {codec} not available"))
    }
}

/// Compaction's progress on one log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanerState {
    /// Offsets below this were cleaned (Kafka's first dirty offset).
    pub first_dirty: i64,
    /// The earliest delete horizon of a batch the last cleaning kept with tombstones: once the
    /// clock passes it, the log is worth cleaning again even if nothing is dirty. Not stored
    /// (after a restart tombstones go at the next cleaning the dirty ratio triggers).
    pub earliest_horizon: Option<i64>,
}

impl CleanerState {
    /// The checkpoint, kept within the log: a crash inside `Log::truncate_to` after the cut
    /// and before the checkpoint was lowered leaves it past the log end, where it would make
    /// records appended later count as already clean.
    pub(crate) fn load(dir: &Path, log_start_offset: i64, log_end_offset: i64) -> Self {
        let stored = fs::read_to_string(dir.join(CHECKPOINT_FILE))
            .ok()
            .and_then(|t| t.trim().parse::<i64>().ok());
        CleanerState {
            first_dirty: stored
                .unwrap_or(log_start_offset)
                .clamp(log_start_offset, log_end_offset.max(log_start_offset)),
            earliest_horizon: None,
        }
    }
}

/// Written by rename, as the log start offset: the old value or the new one survives a crash.
pub(crate) fn write_checkpoint(dir: &Path, offset: i64) -> io::Result<()> {
    let tmp = dir.join(format!("{CHECKPOINT_FILE}.tmp"));
    fs::write(&tmp, offset.to_string())?;
    File::open(&tmp)?.sync_all()?;
    fs::rename(&tmp, dir.join(CHECKPOINT_FILE))?;
    fsync_dir(dir)
}

/// What the broker needs to decide whether a log is worth cleaning (Kafka's
/// `LogCleanerManager.cleanableOffsets` and the dirty ratio).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cleanable {
    pub first_dirty: i64,
    /// Segments below this offset may be cleaned (a segment boundary).
    pub first_uncleanable: i64,
    /// Bytes of the closed segments below `first_dirty`.
    pub clean_bytes: u64,
    /// Bytes of the closed segments in `[first_dirty, first_uncleanable)`.
    pub dirty_bytes: u64,
    /// The oldest dirty batch is older than `max.compaction.lag.ms`.
    pub overdue: bool,
    /// A delete horizon of the last cleaning has passed.
    pub horizon_due: bool,
}

impl Cleanable {
    /// `dirty / (clean + dirty)`, Kafka's cleanable ratio.
    pub fn dirty_ratio(&self) -> f64 {
        let total = self.clean_bytes + self.dirty_bytes;
        if total == 0 {
            return 0.0;
        }
        self.dirty_bytes as f64 / total as f64
    }
}

/// One transaction whose data the cleaner drops: `producer_id`'s transactional batches with
/// offsets in `[first_offset, last_offset]` (the ABORT marker at `last_offset` is judged by the
/// marker rule: it goes after its horizon once the data is gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedRange {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
}

/// The inputs of one cleaning round that are not in the log.
#[derive(Debug, Clone)]
pub struct CleanOptions {
    pub now_ms: i64,
    /// `delete.retention.ms`.
    pub delete_retention_ms: i64,
    /// `log.cleaner.dedupe.buffer.size`: bytes the offset map may take.
    pub dedupe_buffer_bytes: usize,
    /// `log.cleaner.io.max.bytes.per.second` (read + written); 0 for no bound.
    pub io_bytes_per_second: u64,
    /// `log.cleaner.io.buffer.size`: bytes read or written per IO.
    pub io_buffer_bytes: usize,
    /// The most bytes one batch may inflate to.
    pub decompression_cap: usize,
    /// Aborted transactions overlapping the cleaned range.
    pub aborted: Vec<AbortedRange>,
}

impl Default for CleanOptions {
    fn default() -> Self {
        CleanOptions {
            now_ms: 0,
            delete_retention_ms: 86_400_000,
            dedupe_buffer_bytes: 128 << 20,
            io_bytes_per_second: 0,
            io_buffer_bytes: 512 << 10,
            decompression_cap: 1 << 20,
            aborted: Vec::new(),
        }
    }
}

/// A closed segment as the plan saw it.
#[derive(Clone)]
struct SourceSegment {
    base: i64,
    next_offset: i64,
    size: u64,
    file: Arc<File>,
}

/// What one round will clean (from [`Log::plan_clean`]).
pub struct CleanPlan {
    dir: PathBuf,
    /// The log's truncation count at planning: a follower's truncation in between voids the
    /// round (its segments could come back with the same offsets and sizes but other data).
    truncations: u64,
    sources: Vec<SourceSegment>,
    first_dirty: i64,
    segment_bytes: u64,
    index_interval_bytes: u64,
}

/// One cleaned group: the `.cleaned` files of the segment replacing `sources`.
struct CleanedGroup {
    base: i64,
    /// (base, size, next offset) of each replaced segment, checked again at install.
    sources: Vec<(i64, u64, i64)>,
}

/// A finished recopy, ready for [`Log::install_clean`].
pub struct CleanedLog {
    dir: PathBuf,
    truncations: u64,
    groups: Vec<CleanedGroup>,
    /// The end of the offset map: the next round's first dirty offset.
    map_end: i64,
    earliest_horizon: Option<i64>,
    pub stats: CleanStats,
}

/// What a round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CleanStats {
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub segments_before: usize,
    pub segments_after: usize,
    pub records_removed: u64,
    pub batches_removed: u64,
    pub map_keys: usize,
    /// True when the sources changed under the cleaner (retention, deletion) and the round's
    /// output was thrown away.
    pub abandoned: bool,
}

fn paths(dir: &Path, base: i64, suffix: &str) -> [PathBuf; 3] {
    let stem = file_stem(base);
    EXTENSIONS.map(|ext| dir.join(format!("{stem}.{ext}{suffix}")))
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The offset after the last whole batch of a `.swap` file (its header walk).
fn swap_end_offset(path: &Path, base: i64) -> io::Result<i64> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut position = 0u64;
    let mut next = base;
    let mut header = [0u8; BATCH_HEADER_LEN];
    while position.saturating_add(BATCH_HEADER_LEN as u64) <= len {
        file.read_exact_at(&mut header, position)?;
        let Some(h) = BatchHeader::parse(&header) else {
            break;
        };
        let Some(end) = position.checked_add(h.total_len() as u64) else {
            break;
        };
        if !h.covers_header() || end > len {
            break;
        }
        let Some(n) = h.checked_next_offset() else {
            break;
        };
        next = next.max(n);
        position = end;
    }
    Ok(next)
}

/// Finishes or rolls back a cleaning interrupted by a crash (called by [`Log::open`] before it
/// lists segments). `.cleaned` files were never committed: deleted. A `<base>.log.swap` was
/// committed: the old segments whose base offsets it covers are deleted and the `.swap` files
/// take their final names (an index `.swap` without its log is deleted; the index is then
/// rebuilt on open).
pub fn recover_interrupted(dir: &Path) -> io::Result<()> {
    let mut changed = false;
    let mut swaps = Vec::new();
    let mut logs = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(CLEANED) {
            fs::remove_file(dir.join(name))?;
            changed = true;
        } else if let Some(stem) = name.strip_suffix(".log.swap") {
            if let Ok(base) = stem.parse::<i64>() {
                swaps.push(base);
            }
        } else if let Some(stem) = name.strip_suffix(".log") {
            if let Ok(base) = stem.parse::<i64>() {
                logs.push(base);
            }
        }
    }
    for base in &swaps {
        let [log_swap, index_swap, time_swap] = paths(dir, *base, SWAP);
        let end = swap_end_offset(&log_swap, *base)?;
        tracing::warn!(dir = %dir.display(), base, end, "finishing an interrupted log cleaning");
        for old in logs
            .iter()
            .filter(|b| (*base..end.max(base + 1)).contains(*b))
        {
            for p in paths(dir, *old, "") {
                remove_if_present(&p)?;
            }
        }
        let [log, index, time] = paths(dir, *base, "");
        for (from, to) in [(index_swap, index), (time_swap, time)] {
            if from.exists() {
                fs::rename(&from, &to)?;
            }
        }
        fs::rename(&log_swap, &log)?;
        changed = true;
    }
    // Index `.swap` files whose log `.swap` was already renamed (or never written).
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(SWAP) {
            fs::remove_file(dir.join(name))?;
            changed = true;
        }
    }
    if changed {
        fsync_dir(dir)?;
    }
    Ok(())
}

impl Log {
    /// Where compaction stands: the cleanable range is bounded by `upper_bound` (the broker
    /// passes the last stable offset), the active segment, and the first segment holding a
    /// record newer than `now - min_compaction_lag_ms`; it ends at a segment boundary.
    pub fn cleanable(
        &self,
        upper_bound: i64,
        now_ms: i64,
        min_compaction_lag_ms: i64,
        max_compaction_lag_ms: i64,
    ) -> Cleanable {
        let first_dirty = self.cleaner.first_dirty.max(self.log_start_offset);
        let lag_cutoff = now_ms.saturating_sub(min_compaction_lag_ms);
        let closed = self.segments.len().saturating_sub(1);
        let mut first_uncleanable = self.segments.first().map_or(0, |s| s.base_offset());
        let (mut clean_bytes, mut dirty_bytes) = (0u64, 0u64);
        let mut overdue = false;
        for seg in self.segments.iter().take(closed) {
            if seg.next_offset() > upper_bound
                || (min_compaction_lag_ms > 0 && seg.max_timestamp() > lag_cutoff)
            {
                break;
            }
            first_uncleanable = seg.next_offset();
            if seg.next_offset() <= first_dirty {
                clean_bytes += seg.size();
            } else {
                dirty_bytes += seg.size();
                if !overdue && !seg.is_empty() {
                    overdue = seg.first_batch_timestamp().is_some_and(|t| {
                        t >= 0 && now_ms.saturating_sub(t) > max_compaction_lag_ms
                    });
                }
            }
        }
        let horizon_due = self.cleaner.earliest_horizon.is_some_and(|h| now_ms >= h)
            && first_uncleanable > self.log_start_offset;
        Cleanable {
            first_dirty,
            first_uncleanable,
            clean_bytes,
            dirty_bytes,
            overdue,
            horizon_due,
        }
    }

    /// The segments one round cleans (everything from the log start to the first uncleanable
    /// offset of [`Log::cleanable`]); `None` when there is nothing to clean.
    pub fn plan_clean(&self, cleanable: &Cleanable) -> Option<CleanPlan> {
        let closed = self.segments.len().saturating_sub(1);
        let sources: Vec<SourceSegment> = self
            .segments
            .iter()
            .take(closed)
            .take_while(|s| s.next_offset() <= cleanable.first_uncleanable)
            .map(|s| SourceSegment {
                base: s.base_offset(),
                next_offset: s.next_offset(),
                size: s.size(),
                file: s.file().clone(),
            })
            .collect();
        if sources.iter().all(|s| s.size == 0) {
            return None;
        }
        Some(CleanPlan {
            dir: self.dir.clone(),
            truncations: self.truncations,
            sources,
            first_dirty: cleanable.first_dirty,
            segment_bytes: self.config.segment_bytes,
            index_interval_bytes: self.config.index_interval_bytes,
        })
    }

    /// Swaps a finished recopy in (see the module comment for the order of renames). If a
    /// source segment changed since the plan (retention or DeleteRecords removed it), the
    /// output is deleted and nothing changes.
    pub fn install_clean(&mut self, cleaned: CleanedLog) -> Result<CleanStats> {
        let mut stats = cleaned.stats;
        let closed = self.segments.len().saturating_sub(1);
        let still_there = cleaned.groups.iter().all(|g| {
            g.sources.iter().all(|(base, size, next)| {
                self.segments.iter().take(closed).any(|s| {
                    s.base_offset() == *base && s.size() == *size && s.next_offset() == *next
                })
            })
        });
        if !still_there || cleaned.dir != self.dir || cleaned.truncations != self.truncations {
            for g in &cleaned.groups {
                for p in paths(&cleaned.dir, g.base, CLEANED) {
                    remove_if_present(&p)?;
                }
            }
            stats.abandoned = true;
            return Ok(stats);
        }
        let dir = self.dir.clone();
        // 1. Commit: `.cleaned` -> `.swap` (the log last: its `.swap` is the commit point).
        for g in &cleaned.groups {
            let from = paths(&dir, g.base, CLEANED);
            let to = paths(&dir, g.base, SWAP);
            for i in [1, 2, 0] {
                fs::rename(&from[i], &to[i])?;
            }
        }
        fsync_dir(&dir)?;
        // 2. The old segments go (readers holding their files keep reading them).
        for g in &cleaned.groups {
            for (base, _, _) in &g.sources {
                if let Some(seg) = self.segments.iter().find(|s| s.base_offset() == *base) {
                    seg.delete_files()?;
                }
            }
        }
        fsync_dir(&dir)?;
        // 3. `.swap` -> final names, then the segments are swapped in.
        for g in &cleaned.groups {
            let from = paths(&dir, g.base, SWAP);
            let to = paths(&dir, g.base, "");
            for i in [1, 2, 0] {
                fs::rename(&from[i], &to[i])?;
            }
        }
        fsync_dir(&dir)?;
        for g in &cleaned.groups {
            let Some(first) = self.segments.iter().position(|s| s.base_offset() == g.base) else {
                continue;
            };
            let count = g.sources.len();
            let seg = LogSegment::open(
                &dir,
                g.base,
                self.config.index_interval_bytes,
                OpenMode::Older,
                &mut |_| {},
            )?;
            let end = first.saturating_add(count).min(self.segments.len());
            self.segments.splice(first..end, std::iter::once(seg));
        }
        stats.segments_after = self.segments.len().saturating_sub(1);
        self.cleaner.first_dirty = cleaned.map_end.max(self.log_start_offset);
        self.cleaner.earliest_horizon = cleaned.earliest_horizon;
        write_checkpoint(&dir, self.cleaner.first_dirty)?;
        Ok(stats)
    }

    /// Compaction's progress (tests, metrics).
    pub fn cleaner_state(&self) -> CleanerState {
        self.cleaner
    }
}

/// Reads a segment's batches in chunks of `buffer` bytes (one pread per chunk, or per batch
/// larger than a chunk).
struct ChunkReader<'f> {
    file: &'f File,
    end: u64,
    buf: Vec<u8>,
    /// File position of `buf[0]`.
    buf_pos: u64,
    at: usize,
    chunk: usize,
}

impl<'f> ChunkReader<'f> {
    fn new(file: &'f File, end: u64, chunk: usize) -> Self {
        ChunkReader {
            file,
            end,
            buf: Vec::new(),
            buf_pos: 0,
            at: 0,
            chunk: chunk.max(BATCH_HEADER_LEN),
        }
    }

    /// The next whole batch, as its header and its range in [`ChunkReader::buf`]; `None` at
    /// the end (or at a batch that is not whole, which a closed segment does not have).
    fn next_batch(&mut self, read: &mut u64) -> io::Result<Option<(BatchHeader, usize, usize)>> {
        // At most two refills: one for the header, one for a batch larger than a chunk.
        for _ in 0..3 {
            let avail = self.buf.get(self.at..).unwrap_or_default();
            let mut need = BATCH_HEADER_LEN;
            if let Some(h) = BatchHeader::parse(avail) {
                if !h.covers_header() {
                    return Ok(None);
                }
                let len = h.total_len();
                if avail.len() >= len {
                    let start = self.at;
                    self.at += len;
                    return Ok(Some((h, start, start + len)));
                }
                need = len;
            }
            let pos = self.buf_pos + self.at as u64;
            let left = self.end.saturating_sub(pos);
            let want = (need.max(self.chunk) as u64).min(left) as usize;
            if want < need {
                // The segment ends inside this batch (a closed segment has no torn tail).
                return Ok(None);
            }
            self.buf.resize(want, 0);
            self.file.read_exact_at(&mut self.buf, pos)?;
            *read += want as u64;
            self.buf_pos = pos;
            self.at = 0;
        }
        Ok(None)
    }
}

impl ChunkReader<'_> {
    /// Fails unless every byte of the segment was walked as whole batches: the cleaner never
    /// rewrites a segment it could not read to the end (that would drop its tail).
    fn check_whole(&self, base: i64) -> Result<()> {
        let done = self.buf_pos + self.at as u64;
        if done != self.end {
            return Err(crate::error::StorageError::CorruptMessage(format!(
                "segment {base}: the cleaner read {done} of {} bytes as whole batches; not cleaning it",
                self.end
            )));
        }
        Ok(())
    }
}

/// Sleeps so that the bytes counted stay under a rate.
struct Throttle {
    start: Instant,
    bytes: u64,
    rate: u64,
}

impl Throttle {
    fn account(&mut self, bytes: u64) {
        self.bytes = self.bytes.saturating_add(bytes);
        if self.rate == 0 {
            return;
        }
        let due = Duration::from_secs_f64(self.bytes as f64 / self.rate as f64);
        let elapsed = self.start.elapsed();
        if due > elapsed {
            std::thread::sleep(due - elapsed);
        }
    }
}

/// The offset map: key -> the offset of its last record in the dirty section, with the bytes
/// it takes counted against the dedupe buffer.
struct OffsetMap {
    map: HashMap<Vec<u8>, i64>,
    bytes: usize,
    limit: usize,
}

impl OffsetMap {
    fn latest(&self, key: &[u8]) -> Option<i64> {
        self.map.get(key).copied()
    }
}

// ---- Records (format v2), read where the cleaner must ----

fn read_varlong(buf: &[u8], pos: &mut usize) -> Option<i64> {
    let mut value: u64 = 0;
    for shift in (0..70).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        value |= u64::from(b & 0x7f).checked_shl(shift).unwrap_or(0);
        if b & 0x80 == 0 {
            return Some(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    None
}

fn put_varlong(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// One record of a records section, as the cleaner needs it.
struct RecordRef<'a> {
    /// The whole record, length prefix included.
    bytes: &'a [u8],
    timestamp_delta: i64,
    offset_delta: i64,
    key: Option<&'a [u8]>,
    has_value: bool,
    /// Position in `bytes` right after the timestamp delta (the rest is copied on rebase).
    after_timestamp: usize,
}

fn read_blob<'a>(buf: &'a [u8], pos: &mut usize) -> Option<Option<&'a [u8]>> {
    let len = read_varlong(buf, pos)?;
    if len < 0 {
        return Some(None);
    }
    let len = usize::try_from(len).ok()?;
    let end = pos.checked_add(len)?;
    let b = buf.get(*pos..end)?;
    *pos = end;
    Some(Some(b))
}

/// The `count` records of a records section; `None` if any is malformed.
fn parse_records(section: &[u8], count: i32) -> Option<Vec<RecordRef<'_>>> {
    let mut out = Vec::with_capacity(usize::try_from(count).ok()?.min(section.len()));
    let mut pos = 0usize;
    for _ in 0..count {
        let start = pos;
        let len = usize::try_from(read_varlong(section, &mut pos)?).ok()?;
        let body_start = pos;
        let end = pos.checked_add(len)?;
        let bytes = section.get(start..end)?;
        let body = section.get(body_start..end)?;
        let mut p = 1usize; // attributes
        let timestamp_delta = read_varlong(body, &mut p)?;
        let after_timestamp = body_start - start + p;
        let offset_delta = read_varlong(body, &mut p)?;
        let key = read_blob(body, &mut p)?;
        let value = read_blob(body, &mut p)?;
        out.push(RecordRef {
            bytes,
            timestamp_delta,
            offset_delta,
            key,
            has_value: value.is_some(),
            after_timestamp,
        });
        pos = end;
    }
    if pos != section.len() {
        return None;
    }
    Some(out)
}

/// What [`filter_batch`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Keep the batch byte for byte.
    Verbatim,
    /// The rewritten batch was appended to `out`.
    Rewritten { records_removed: u64 },
    /// Nothing of it survives.
    Dropped { records_removed: u64 },
}

/// The per-batch inputs of [`filter_batch`].
pub struct BatchContext<'a> {
    pub now_ms: i64,
    pub delete_retention_ms: i64,
    pub decompression_cap: usize,
    pub codec: &'a dyn RecordCodec,
    /// The batch must stay, as an empty batch if no record survives (a producer's last batch,
    /// a group's last batch).
    pub must_keep: bool,
}

/// Decides one data batch's fate: `latest(key, offset)` says whether a record is the latest of
/// its key (or past the offset map); tombstones go once the batch's delete horizon has passed.
/// A batch that cannot be read is kept verbatim. Returns the earliest delete horizon of the
/// kept batch, if it keeps tombstones. Never panics on any input (fuzzed).
pub fn filter_batch(
    batch: &[u8],
    header: &BatchHeader,
    ctx: &BatchContext<'_>,
    latest: &mut dyn FnMut(Option<&[u8]>, i64) -> bool,
    out: &mut Vec<u8>,
) -> (Fate, Option<i64>) {
    filter_batch_with(batch, header, ctx, latest, false, out)
}

/// [`filter_batch`], where `as_tombstones` makes every record count as a tombstone: a
/// transaction marker whose transaction's data is gone gets its delete horizon this way (its
/// records are never dropped by it; the caller drops the whole marker once the horizon passed).
fn filter_batch_with(
    batch: &[u8],
    header: &BatchHeader,
    ctx: &BatchContext<'_>,
    latest: &mut dyn FnMut(Option<&[u8]>, i64) -> bool,
    as_tombstones: bool,
    out: &mut Vec<u8>,
) -> (Fate, Option<i64>) {
    let Some(body) = batch.get(BATCH_HEADER_LEN..header.total_len()) else {
        return (Fate::Verbatim, None);
    };
    let codec = header.compression();
    let mut scratch = Vec::new();
    let section: &[u8] = if codec == 0 {
        body
    } else {
        match ctx
            .codec
            .decompress(codec, body, ctx.decompression_cap, &mut scratch)
        {
            Ok(()) => &scratch,
            Err(e) => {
                tracing::warn!(offset = header.base_offset, error = %e, "cleaner keeps a batch it cannot decompress");
                return (Fate::Verbatim, None);
            }
        }
    };
    let Some(records) = parse_records(section, header.records_count) else {
        tracing::warn!(
            offset = header.base_offset,
            "cleaner keeps a batch whose records it cannot read"
        );
        return (Fate::Verbatim, None);
    };
    let old_horizon =
        (header.attributes & ATTR_DELETE_HORIZON != 0).then_some(header.base_timestamp);
    let mut kept = Vec::with_capacity(records.len());
    let mut tombstones = false;
    for r in &records {
        let offset = header.base_offset.saturating_add(r.offset_delta);
        if !latest(r.key, offset) {
            continue;
        }
        if !r.has_value || as_tombstones {
            if !as_tombstones && old_horizon.is_some_and(|h| ctx.now_ms >= h) {
                continue;
            }
            tombstones = true;
        }
        kept.push(r);
    }
    let removed = (records.len() - kept.len()) as u64;
    let new_horizon = match (tombstones, old_horizon) {
        (true, None) => Some(ctx.now_ms.saturating_add(ctx.delete_retention_ms.max(0))),
        _ => None,
    };
    let horizon = if tombstones {
        old_horizon.or(new_horizon)
    } else {
        None
    };
    if removed == 0 && new_horizon.is_none() {
        return (Fate::Verbatim, horizon);
    }
    if kept.is_empty() && !ctx.must_keep {
        return (
            Fate::Dropped {
                records_removed: removed,
            },
            None,
        );
    }
    // The new records section.
    let base_ts = new_horizon.unwrap_or(header.base_timestamp);
    let mut section_out = Vec::with_capacity(section.len());
    for r in &kept {
        if new_horizon.is_none() {
            section_out.extend_from_slice(r.bytes);
            continue;
        }
        let ts = header.base_timestamp.saturating_add(r.timestamp_delta);
        let mut rec = Vec::with_capacity(r.bytes.len() + 8);
        // Attributes (the byte after the length prefix), the rebased delta, the rest as is.
        let length_len = {
            let mut p = 0usize;
            let _ = read_varlong(r.bytes, &mut p);
            p
        };
        rec.push(r.bytes.get(length_len).copied().unwrap_or(0));
        put_varlong(&mut rec, ts.saturating_sub(base_ts));
        rec.extend_from_slice(r.bytes.get(r.after_timestamp..).unwrap_or_default());
        put_varlong(&mut section_out, rec.len() as i64);
        section_out.extend_from_slice(&rec);
    }
    let start = out.len();
    let Some(head) = batch.get(..BATCH_HEADER_LEN) else {
        return (Fate::Verbatim, None);
    };
    out.extend_from_slice(head);
    let mut attributes = header.attributes;
    if new_horizon.is_some() {
        attributes |= ATTR_DELETE_HORIZON;
    }
    if codec != 0 && !kept.is_empty() {
        if let Err(e) = ctx.codec.compress(codec, &section_out, out) {
            tracing::warn!(offset = header.base_offset, error = %e, "cleaner keeps a batch it cannot recompress");
            out.truncate(start);
            return (Fate::Verbatim, horizon);
        }
    } else {
        attributes &= !ATTR_COMPRESSION_MASK;
        out.extend_from_slice(&section_out);
    }
    let Ok(batch_length) = i32::try_from(out.len() - start - LOG_OVERHEAD) else {
        out.truncate(start);
        return (Fate::Verbatim, horizon);
    };
    let new = &mut out[start..];
    new[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&batch_length.to_be_bytes());
    new[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    new[BASE_TIMESTAMP_AT..BASE_TIMESTAMP_AT + 8].copy_from_slice(&base_ts.to_be_bytes());
    new[RECORDS_COUNT_AT..RECORDS_COUNT_AT + 4].copy_from_slice(&(kept.len() as i32).to_be_bytes());
    let crc = crc32c::crc32c(&new[ATTRIBUTES_AT..]);
    new[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    (
        Fate::Rewritten {
            records_removed: removed,
        },
        horizon,
    )
}

fn is_aborted(header: &BatchHeader, aborted: &[AbortedRange]) -> bool {
    header.is_transactional()
        && !header.is_control()
        && aborted.iter().any(|a| {
            a.producer_id == header.producer_id
                && header.base_offset >= a.first_offset
                && header.base_offset < a.last_offset
        })
}

impl CleanPlan {
    /// The first offset of the dirty section.
    pub fn first_dirty(&self) -> i64 {
        self.first_dirty
    }

    /// Builds the offset map and recopies the segments into `.cleaned` files (fsynced). Holds
    /// no lock; the log may take appends meanwhile (they go to the active segment, never
    /// cleaned).
    pub fn execute(&self, opts: &CleanOptions, codec: &dyn RecordCodec) -> Result<CleanedLog> {
        let mut stats = CleanStats {
            segments_before: self.sources.len(),
            ..CleanStats::default()
        };
        let mut throttle = Throttle {
            start: Instant::now(),
            bytes: 0,
            rate: opts.io_bytes_per_second,
        };
        // Pass 1: the offset map over the dirty section, and each producer's last batch over
        // the whole range.
        let mut map = OffsetMap {
            map: HashMap::new(),
            bytes: 0,
            limit: opts.dedupe_buffer_bytes,
        };
        let range_end = self
            .sources
            .last()
            .map_or(self.first_dirty, |s| s.next_offset);
        let mut map_end = range_end;
        // Producer id -> (base offset, epoch) of its last data batch, and of its last marker.
        let mut last_batch_of: HashMap<i64, (i64, i16)> = HashMap::new();
        let mut last_marker_of: HashMap<i64, (i64, i16)> = HashMap::new();
        let mut scratch = Vec::new();
        for src in &self.sources {
            let mut reader = ChunkReader::new(&src.file, src.size, opts.io_buffer_bytes);
            let mut read = 0u64;
            while let Some((h, start, end)) = reader.next_batch(&mut read)? {
                throttle.account(std::mem::take(&mut read));
                stats.bytes_read += (end - start) as u64;
                if h.has_producer_id() && h.base_offset < map_end {
                    // Producers count against the same memory bound as keys: when it is
                    // reached, the round ends at this batch (kept, as everything after it).
                    let last_of = if h.is_control() {
                        &mut last_marker_of
                    } else {
                        &mut last_batch_of
                    };
                    if let Some(last) = last_of.get_mut(&h.producer_id) {
                        *last = (h.base_offset, h.producer_epoch);
                    } else if map.bytes.saturating_add(PRODUCER_ENTRY_BYTES) > map.limit {
                        map_end = h.base_offset;
                    } else {
                        map.bytes += PRODUCER_ENTRY_BYTES;
                        last_of.insert(h.producer_id, (h.base_offset, h.producer_epoch));
                    }
                }
                if h.next_offset() <= self.first_dirty
                    || h.is_control()
                    || is_aborted(&h, &opts.aborted)
                    || map_end < range_end
                {
                    continue;
                }
                let batch = &reader.buf[start..end];
                let section: &[u8] = match h.compression() {
                    0 => batch.get(BATCH_HEADER_LEN..).unwrap_or_default(),
                    c => {
                        scratch.clear();
                        match codec.decompress(
                            c,
                            batch.get(BATCH_HEADER_LEN..).unwrap_or_default(),
                            opts.decompression_cap,
                            &mut scratch,
                        ) {
                            Ok(()) => &scratch,
                            Err(_) => continue,
                        }
                    }
                };
                let Some(records) = parse_records(section, h.records_count) else {
                    continue;
                };
                // The whole batch goes in, or the map is full and the round ends before it.
                let new_bytes: usize = records
                    .iter()
                    .filter_map(|r| r.key)
                    .filter(|k| !map.map.contains_key(*k))
                    .map(|k| k.len() + MAP_ENTRY_OVERHEAD)
                    .sum();
                if map.bytes.saturating_add(new_bytes) > map.limit {
                    map_end = h.base_offset;
                    tracing::info!(dir = %self.dir.display(), map_end, "offset map full: cleaning up to here this round");
                    continue;
                }
                map.bytes += new_bytes;
                for r in &records {
                    if let Some(k) = r.key {
                        let offset = h.base_offset.saturating_add(r.offset_delta);
                        match map.map.get_mut(k) {
                            Some(o) => *o = (*o).max(offset),
                            None => {
                                map.map.insert(k.to_vec(), offset);
                            }
                        }
                    }
                }
            }
            reader.check_whole(src.base)?;
        }
        stats.map_keys = map.map.len();
        if map_end <= self.first_dirty && self.first_dirty < range_end {
            // Not even one batch fitted: nothing can be cleaned.
            return Ok(CleanedLog {
                dir: self.dir.clone(),
                truncations: self.truncations,
                groups: Vec::new(),
                map_end: self.first_dirty,
                earliest_horizon: None,
                stats,
            });
        }
        // A marker is its producer's fencing record when it is the producer's last entry and
        // carries a newer epoch than the producer's last data batch (or there is none): kept,
        // as Kafka keeps it, so the epoch survives in the log.
        let mut producer_last: std::collections::HashSet<(i64, i64)> = last_marker_of
            .iter()
            .filter(|(pid, (offset, epoch))| {
                last_batch_of
                    .get(pid)
                    .is_none_or(|(data, data_epoch)| data < offset && data_epoch < epoch)
            })
            .map(|(pid, (offset, _))| (*pid, *offset))
            .collect();
        producer_last.extend(
            last_batch_of
                .iter()
                .map(|(pid, (offset, _))| (*pid, *offset)),
        );
        // Producers with a transactional data batch kept (in this round's output, even empty)
        // since their last marker: their next marker stays.
        let mut txn_data_kept: std::collections::HashSet<i64> = std::collections::HashSet::new();

        // Pass 2: recopy, in groups of segments merged up to segment.bytes.
        let mut groups = Vec::new();
        let mut earliest_horizon: Option<i64> = None;
        let mut i = 0usize;
        while i < self.sources.len() {
            let first = &self.sources[i];
            let mut j = i + 1;
            let mut size = first.size;
            while let Some(next) = self.sources.get(j) {
                if size.saturating_add(next.size) > self.segment_bytes
                    || next.next_offset.saturating_sub(first.base) - 1 > MAX_RELATIVE_OFFSET
                {
                    break;
                }
                size += next.size;
                j += 1;
            }
            let group = &self.sources[i..j];
            i = j;
            if group.iter().all(|s| s.size == 0) {
                continue;
            }
            let group_last = group
                .iter()
                .rev()
                .find(|s| s.size > 0)
                .map(|s| s.next_offset);
            let [log_p, index_p, time_p] = paths(&self.dir, first.base, CLEANED);
            let mut out_seg = LogSegment::create_at(
                [log_p, index_p, time_p],
                first.base,
                self.index_interval_bytes,
            )?;
            let mut pending = Vec::new();
            let mut pending_batches: Vec<(usize, usize)> = Vec::new();
            let flush = |pending: &mut Vec<u8>,
                         batches: &mut Vec<(usize, usize)>,
                         seg: &mut LogSegment,
                         throttle: &mut Throttle,
                         stats: &mut CleanStats|
             -> io::Result<()> {
                if batches.is_empty() {
                    return Ok(());
                }
                let mut headers = Vec::with_capacity(batches.len());
                let mut bodies = Vec::with_capacity(batches.len());
                for (s, e) in batches.iter() {
                    let mut h = [0u8; BATCH_HEADER_LEN];
                    h.copy_from_slice(&pending[*s..*s + BATCH_HEADER_LEN]);
                    headers.push(h);
                    bodies.push(&pending[*s + BATCH_HEADER_LEN..*e]);
                }
                seg.append(&headers, &bodies, 0)?;
                stats.bytes_written += pending.len() as u64;
                throttle.account(pending.len() as u64);
                pending.clear();
                batches.clear();
                Ok(())
            };
            for src in group {
                let mut reader = ChunkReader::new(&src.file, src.size, opts.io_buffer_bytes);
                let mut read = 0u64;
                while let Some((h, start, end)) = reader.next_batch(&mut read)? {
                    throttle.account(std::mem::take(&mut read));
                    stats.bytes_read += (end - start) as u64;
                    let batch = &reader.buf[start..end];
                    let must_keep = producer_last.contains(&(h.producer_id, h.base_offset))
                        || Some(h.next_offset()) == group_last;
                    let at = pending.len();
                    // Kafka's `CleanedTransactionMetadata`: a COMMIT or ABORT marker may go once
                    // no batch of its transaction is left (none kept before it since the
                    // producer's previous marker), after a delete horizon set on it like a
                    // tombstone's. Everything here is below the LSO (the cleanable range).
                    let removable_marker = if h.is_control() {
                        let had_data = txn_data_kept.remove(&h.producer_id);
                        !had_data
                            && !must_keep
                            && h.has_producer_id()
                            && h.base_offset < map_end
                            && crate::records::parse_control_record(batch)
                                .is_some_and(|c| c.is_abort() || c.is_commit())
                    } else {
                        false
                    };
                    let fate = if h.is_control() {
                        let old_horizon =
                            (h.attributes & ATTR_DELETE_HORIZON != 0).then_some(h.base_timestamp);
                        if !removable_marker {
                            Fate::Verbatim
                        } else if let Some(hz) = old_horizon {
                            if opts.now_ms >= hz && !must_keep {
                                Fate::Dropped {
                                    records_removed: h.records_count.max(0) as u64,
                                }
                            } else {
                                if opts.now_ms < hz {
                                    earliest_horizon =
                                        Some(earliest_horizon.map_or(hz, |e| e.min(hz)));
                                }
                                Fate::Verbatim
                            }
                        } else {
                            let ctx = BatchContext {
                                now_ms: opts.now_ms,
                                delete_retention_ms: opts.delete_retention_ms,
                                decompression_cap: opts.decompression_cap,
                                codec,
                                must_keep: true,
                            };
                            let (fate, horizon) = filter_batch_with(
                                batch,
                                &h,
                                &ctx,
                                &mut |_, _| true,
                                true,
                                &mut pending,
                            );
                            if let Some(hz) = horizon {
                                earliest_horizon = Some(earliest_horizon.map_or(hz, |e| e.min(hz)));
                            }
                            fate
                        }
                    } else if is_aborted(&h, &opts.aborted) {
                        // Aborted data goes in the whole range, past the offset map's end too:
                        // the cleaned segment's transaction index starts empty. Past the map's
                        // end (where producers' last batches are not tracked) it is emptied.
                        if must_keep || h.base_offset >= map_end {
                            let ctx = BatchContext {
                                now_ms: opts.now_ms,
                                delete_retention_ms: opts.delete_retention_ms,
                                decompression_cap: opts.decompression_cap,
                                codec,
                                must_keep: true,
                            };
                            filter_batch(batch, &h, &ctx, &mut |_, _| false, &mut pending).0
                        } else {
                            Fate::Dropped {
                                records_removed: h.records_count.max(0) as u64,
                            }
                        }
                    } else if h.base_offset >= map_end {
                        Fate::Verbatim
                    } else {
                        let ctx = BatchContext {
                            now_ms: opts.now_ms,
                            delete_retention_ms: opts.delete_retention_ms,
                            decompression_cap: opts.decompression_cap,
                            codec,
                            must_keep,
                        };
                        let (fate, horizon) = filter_batch(
                            batch,
                            &h,
                            &ctx,
                            &mut |key, offset| {
                                offset >= map_end
                                    || key.is_some_and(|k| {
                                        map.latest(k).is_none_or(|latest| offset >= latest)
                                    })
                            },
                            &mut pending,
                        );
                        if let Some(hz) = horizon {
                            earliest_horizon = Some(earliest_horizon.map_or(hz, |e| e.min(hz)));
                        }
                        fate
                    };
                    match fate {
                        Fate::Verbatim => pending.extend_from_slice(batch),
                        Fate::Rewritten { records_removed } => {
                            stats.records_removed += records_removed;
                        }
                        Fate::Dropped { records_removed } => {
                            stats.records_removed += records_removed;
                            stats.batches_removed += 1;
                            continue;
                        }
                    }
                    if !h.is_control()
                        && h.is_transactional()
                        && h.has_producer_id()
                        && h.base_offset < map_end
                    {
                        txn_data_kept.insert(h.producer_id);
                    }
                    pending_batches.push((at, pending.len()));
                    if pending.len() >= opts.io_buffer_bytes {
                        flush(
                            &mut pending,
                            &mut pending_batches,
                            &mut out_seg,
                            &mut throttle,
                            &mut stats,
                        )?;
                    }
                }
                reader.check_whole(src.base)?;
            }
            flush(
                &mut pending,
                &mut pending_batches,
                &mut out_seg,
                &mut throttle,
                &mut stats,
            )?;
            out_seg.sync()?;
            groups.push(CleanedGroup {
                base: first.base,
                sources: group
                    .iter()
                    .map(|s| (s.base, s.size, s.next_offset))
                    .collect(),
            });
        }
        Ok(CleanedLog {
            dir: self.dir.clone(),
            truncations: self.truncations,
            groups,
            map_end,
            earliest_horizon,
            stats,
        })
    }
}

#[cfg(test)]
#[path = "cleaner_tests.rs"]
mod tests;
