//! A partition's log (Kafka's `UnifiedLog`/`LocalLog`): an ordered list of segments, the last
//! one active; offsets from the log start offset to the log end offset.
//!
//! Invariants:
//! - segments are sorted by base offset and never overlap; only the last one is written;
//! - every byte below a segment's `size` is a whole, CRC-valid batch (recovery guarantees it
//!   after a crash; appends write validated batches);
//! - `log_start_offset <= log_end_offset`, and the log start offset survives restarts in the
//!   `log-start-offset` file of the partition directory.
//!
//! The log does no locking and no fsync policy of its own: the broker wraps it in a mutex and
//! decides when to call [`Log::sync`] (see the flush policy in the broker).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::durability;
use crate::error::{Result, StorageError};
use crate::records::{self, BatchHeader, ControlRecord, ProducedBatch, Stamp};
use crate::segment::{LogSegment, OpenMode, SegmentSlice};
use crate::txn_index::AbortedTxnEntry;

const LOG_START_OFFSET_FILE: &str = "log-start-offset";

/// Largest offset a segment holds relative to its base offset. The indexes store relative
/// offsets in 32 bits; as Kafka (`LogSegment.canConvertToRelativeOffset`) the log keeps them
/// within `i32::MAX` and rolls a new segment before an append would go past it.
pub const MAX_RELATIVE_OFFSET: i64 = i32::MAX as i64;

/// The per-topic settings the log obeys, with Kafka's names and defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `segment.bytes` (default 1 GiB).
    pub segment_bytes: u64,
    /// `segment.ms` (default 7 days).
    pub segment_ms: i64,
    /// `retention.ms` (default 7 days; -1 keeps forever).
    pub retention_ms: i64,
    /// `retention.bytes` (default -1: no size limit).
    pub retention_bytes: i64,
    /// `max.message.bytes` (default 1 MiB + 12 bytes, as Kafka).
    pub max_message_bytes: usize,
    /// `index.interval.bytes` (default 4096).
    pub index_interval_bytes: u64,
    /// `message.timestamp.type=LogAppendTime`.
    pub log_append_time: bool,
    /// `message.timestamp.after.max.ms` (default 1 hour): CreateTime batches whose newest
    /// timestamp is further in the future are refused.
    pub timestamp_after_max_ms: i64,
    /// `message.timestamp.before.max.ms` (default unbounded): CreateTime batches whose first
    /// timestamp is further in the past are refused.
    pub timestamp_before_max_ms: i64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            max_message_bytes: 1_048_588,
            index_interval_bytes: 4096,
            log_append_time: false,
            timestamp_after_max_ms: 3_600_000,
            timestamp_before_max_ms: i64::MAX,
        }
    }
}

/// What an append assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub first_offset: i64,
    pub last_offset: i64,
    /// The broker's timestamp under LogAppendTime, else -1.
    pub log_append_time_ms: i64,
}

/// What a retention pass removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RetentionOutcome {
    pub segments_deleted: usize,
    pub bytes_deleted: u64,
}

pub struct Log {
    pub(crate) dir: PathBuf,
    pub(crate) config: LogConfig,
    pub(crate) segments: Vec<LogSegment>,
    pub(crate) log_start_offset: i64,
    /// Compaction's progress (`cleaner.rs`): the first dirty offset and the earliest delete
    /// horizon the last cleaning left.
    pub(crate) cleaner: crate::cleaner::CleanerState,
}

impl Log {
    /// Opens (or creates) the log in `dir`. The active segment is recovered (every batch
    /// CRC-checked, a torn tail truncated) unless the data directory holding `dir` has the
    /// clean-shutdown marker, in which case only its headers are read. Older segments keep
    /// their index files if those pass every check, else are recovered the same way.
    /// `on_batch` sees the header of every batch of the active segment (the broker rebuilds
    /// idempotent-producer state from them).
    pub fn open(
        dir: &Path,
        config: LogConfig,
        now_ms: i64,
        on_batch: &mut dyn FnMut(&BatchHeader),
    ) -> Result<Log> {
        validate_config(&config)?;
        if !dir.is_dir() {
            fs::create_dir_all(dir)?;
            // The new partition directory's name must survive a power loss.
            durability::fsync_parent(dir)?;
        }
        // A cleaning interrupted by a crash is finished or rolled back before the segments
        // are listed (Kafka's `.cleaned`/`.swap` scheme, see cleaner.rs).
        crate::cleaner::recover_interrupted(dir)?;
        let clean = durability::parent_shut_down_cleanly(dir);
        let mut bases = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(stem) = name.strip_suffix(".log") {
                match stem.parse::<i64>() {
                    Ok(base) if base >= 0 => bases.push(base),
                    _ => tracing::warn!(
                        dir = %dir.display(),
                        file = name,
                        "ignoring a .log file whose name is not a base offset"
                    ),
                }
            }
        }
        bases.sort_unstable();
        let mut segments = Vec::with_capacity(bases.len().max(1));
        let last = bases.len().saturating_sub(1);
        for (i, base) in bases.iter().enumerate() {
            let mode = match (i == last, clean) {
                (true, true) => OpenMode::Clean,
                (true, false) => OpenMode::Recover,
                (false, _) => OpenMode::Older,
            };
            let mut ignore = |_: &BatchHeader| {};
            let observer: &mut dyn FnMut(&BatchHeader) = if i == last {
                &mut *on_batch
            } else {
                &mut ignore
            };
            segments.push(LogSegment::open(
                dir,
                *base,
                config.index_interval_bytes,
                mode,
                observer,
            )?);
        }
        let stored_start = read_log_start_offset(dir)?;
        if segments.is_empty() {
            let base = stored_start.unwrap_or(0).max(0);
            segments.push(LogSegment::create(dir, base, config.index_interval_bytes)?);
        }
        let first_base = segments.first().map_or(0, |s| s.base_offset());
        let end = segments.last().map_or(0, |s| s.next_offset());
        let log_start_offset = stored_start.unwrap_or(first_base).clamp(first_base, end);
        let cleaner = crate::cleaner::CleanerState::load(dir, log_start_offset);
        let mut log = Log {
            dir: dir.to_path_buf(),
            config,
            segments,
            log_start_offset,
            cleaner,
        };
        log.opened_at(now_ms);
        Ok(log)
    }

    /// Reopened segments have no first-append time; `segment.ms` counts from the reopening.
    fn opened_at(&mut self, now_ms: i64) {
        self.active_mut().mark_opened(now_ms);
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn config(&self) -> &LogConfig {
        &self.config
    }
    pub fn set_config(&mut self, config: LogConfig) -> Result<()> {
        validate_config(&config)?;
        self.config = config;
        Ok(())
    }
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }
    /// The offset the next append gets (Kafka's log end offset).
    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset()
    }
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(LogSegment::size).sum()
    }
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    fn active(&self) -> &LogSegment {
        // `open` and `roll` keep at least one segment.
        &self.segments[self.segments.len() - 1]
    }
    fn active_mut(&mut self) -> &mut LogSegment {
        let last = self.segments.len() - 1;
        &mut self.segments[last]
    }

    /// Validates a produced record set (header, CRC, size, timestamps; records are not
    /// decoded, so timestamps are checked on the batch header's first and newest values).
    pub fn validate(&self, buf: &[u8], now_ms: i64) -> Result<Vec<ProducedBatch>> {
        let batches = records::validate_produced(buf, self.config.max_message_bytes)?;
        if batches.is_empty() {
            return Err(StorageError::CorruptMessage("empty record set".into()));
        }
        if !self.config.log_append_time {
            for b in &batches {
                let (first, newest) = (b.header.base_timestamp, b.header.max_timestamp);
                if newest.saturating_sub(now_ms) > self.config.timestamp_after_max_ms {
                    return Err(StorageError::InvalidTimestamp(format!(
                        "timestamp {newest} is more than message.timestamp.after.max.ms ({}) ahead of the broker's clock ({now_ms})",
                        self.config.timestamp_after_max_ms
                    )));
                }
                if first >= 0 && now_ms.saturating_sub(first) > self.config.timestamp_before_max_ms
                {
                    return Err(StorageError::InvalidTimestamp(format!(
                        "timestamp {first} is more than message.timestamp.before.max.ms ({}) behind the broker's clock ({now_ms})",
                        self.config.timestamp_before_max_ms
                    )));
                }
            }
        }
        Ok(batches)
    }

    /// Stamps and appends batches that [`Log::validate`] accepted for this same buffer. The
    /// client's bytes are written from where they are: only each batch's 61-byte header is
    /// copied (and patched), and the whole request goes out in one vectored write.
    pub fn append(
        &mut self,
        src: &[u8],
        batches: &[ProducedBatch],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo> {
        let first_offset = self.log_end_offset();
        let log_append_time_ms = self.config.log_append_time.then_some(now_ms);
        // Offsets this append takes; `validate` bounded each batch's count, so only a log end
        // near i64::MAX can overflow, and that is refused rather than wrapped.
        let span = batches.iter().try_fold(0i64, |acc, b| {
            acc.checked_add(i64::from(b.header.last_offset_delta))?
                .checked_add(1)
        });
        let next_end = span.and_then(|span| first_offset.checked_add(span));
        let (Some(span), Some(_)) = (span, next_end) else {
            return Err(StorageError::InvalidRecord(format!(
                "the record set's offsets would overflow the log end offset {first_offset}"
            )));
        };
        if span - 1 > MAX_RELATIVE_OFFSET {
            return Err(StorageError::InvalidRecord(format!(
                "the record set spans {span} offsets; one segment indexes at most {}",
                MAX_RELATIVE_OFFSET + 1
            )));
        }
        let mut next = first_offset;
        let mut headers = Vec::with_capacity(batches.len());
        let mut bodies = Vec::with_capacity(batches.len());
        let mut total = 0u64;
        for batch in batches {
            let len = batch.header.total_len();
            let Some(bytes) = batch
                .position
                .checked_add(len)
                .and_then(|end| src.get(batch.position..end))
            else {
                return Err(StorageError::CorruptMessage(
                    "batch positions do not match the buffer".into(),
                ));
            };
            let (head, rest) = bytes.split_at(records::BATCH_HEADER_LEN.min(bytes.len()));
            let mut header = [0u8; records::BATCH_HEADER_LEN];
            header[..head.len()].copy_from_slice(head);
            records::stamp_header(
                &mut header,
                rest,
                Stamp {
                    base_offset: next,
                    leader_epoch,
                    log_append_time_ms,
                },
            );
            headers.push(header);
            bodies.push(rest);
            total += len as u64;
            // Cannot overflow: the sum is `span`, checked above.
            next += i64::from(batch.header.last_offset_delta) + 1;
        }
        if self.should_roll(total, next - 1, now_ms) {
            self.roll()?;
        }
        self.active_mut().append(&headers, &bodies, now_ms)?;
        Ok(AppendInfo {
            first_offset,
            last_offset: next - 1,
            log_append_time_ms: log_append_time_ms.unwrap_or(-1),
        })
    }

    /// Whether to start a new segment before appending `incoming` bytes whose last offset is
    /// `last_offset`: the active one is full, too old, or (as Kafka) could not index the
    /// offset relative to its base in its 32-bit index entries.
    fn should_roll(&self, incoming: u64, last_offset: i64, now_ms: i64) -> bool {
        let active = self.active();
        if active.is_empty() {
            return false;
        }
        let full = active.size().saturating_add(incoming) > self.config.segment_bytes;
        let old = active
            .first_append_ms()
            .is_some_and(|t| now_ms.saturating_sub(t) >= self.config.segment_ms);
        let unindexable = last_offset.saturating_sub(active.base_offset()) > MAX_RELATIVE_OFFSET;
        full || old || unindexable
    }

    /// Starts a new active segment at the log end offset. The old one is fsynced first, so a
    /// sync of the active segment always covers everything appended before it.
    pub fn roll(&mut self) -> Result<()> {
        let base = self.log_end_offset();
        if self.active().is_empty() && self.active().base_offset() == base {
            return Ok(());
        }
        self.active().sync()?;
        let seg = LogSegment::create(&self.dir, base, self.config.index_interval_bytes)?;
        self.segments.push(seg);
        Ok(())
    }

    /// What to fsync to make every append so far durable, and the offset it covers.
    pub fn sync_target(&self) -> (Arc<std::fs::File>, i64) {
        (self.active().file().clone(), self.log_end_offset())
    }

    /// Fsyncs the active segment and its indexes.
    pub fn sync(&self) -> Result<()> {
        Ok(self.active().sync()?)
    }

    /// Finds the bytes to serve a fetch at `offset`: whole batches from the one containing
    /// `offset`, up to `max_bytes` but always at least one batch (KIP-74), from one segment.
    /// An empty slice means `offset` is the log end.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<Option<SegmentSlice>> {
        let end = self.log_end_offset();
        if offset < self.log_start_offset || offset > end {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset,
                log_end_offset: end,
            });
        }
        let first = self
            .segments
            .partition_point(|s| s.base_offset() <= offset)
            .saturating_sub(1);
        for seg in &self.segments[first..] {
            if let Some((position, header)) = seg.locate(offset)? {
                let available = (seg.size() - position) as usize;
                let len = available.min(max_bytes).max(header.total_len());
                return Ok(Some(seg.slice(position, len)));
            }
        }
        Ok(None)
    }

    /// The first batch whose max timestamp is at or after `timestamp` (ListOffsets by time).
    /// The caller finds the exact record inside it.
    pub fn find_by_timestamp(&self, timestamp: i64) -> Result<Option<SegmentSlice>> {
        for seg in &self.segments {
            if let Some(slice) = seg.find_by_timestamp(timestamp)? {
                // A batch straddling the log start is still served whole, as by Fetch.
                return Ok(Some(slice));
            }
        }
        Ok(None)
    }

    /// The batch holding the largest timestamp (ListOffsets MAX_TIMESTAMP), if any.
    pub fn max_timestamp_batch(&self) -> Result<Option<(i64, SegmentSlice)>> {
        let best = self
            .segments
            .iter()
            .filter(|s| !s.is_empty())
            .max_by_key(|s| s.max_timestamp());
        let Some(seg) = best else { return Ok(None) };
        let Some((position, header)) = seg.locate(seg.offset_of_max_timestamp())? else {
            return Ok(None);
        };
        Ok(Some((
            seg.max_timestamp(),
            seg.slice(position, header.total_len()),
        )))
    }

    /// DeleteRecords: moves the log start offset up to `offset` (at most the log end) and drops
    /// segments wholly below it. Returns the new log start offset.
    pub fn delete_records_before(&mut self, offset: i64) -> Result<i64> {
        let end = self.log_end_offset();
        if offset < 0 || offset > end {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset,
                log_end_offset: end,
            });
        }
        if offset > self.log_start_offset {
            self.log_start_offset = offset;
            write_log_start_offset(&self.dir, offset)?;
            self.delete_segments_below_start()?;
        }
        Ok(self.log_start_offset)
    }

    fn delete_segments_below_start(&mut self) -> Result<RetentionOutcome> {
        let mut outcome = RetentionOutcome::default();
        while self.segments.len() > 1 && self.segments[1].base_offset() <= self.log_start_offset {
            let seg = self.segments.remove(0);
            outcome.segments_deleted += 1;
            outcome.bytes_deleted += seg.size();
            seg.delete_files()?;
        }
        if outcome.segments_deleted > 0 {
            durability::fsync_dir(&self.dir)?;
        }
        Ok(outcome)
    }

    /// Time- and size-based retention, and `segment.ms` rolling. Whole segments only; the
    /// active segment is rolled first when everything in it has expired, as Kafka does.
    pub fn apply_retention(&mut self, now_ms: i64) -> Result<RetentionOutcome> {
        if self.should_roll(0, self.log_end_offset().saturating_sub(1), now_ms) {
            self.roll()?;
        }
        let mut new_start = self.log_start_offset;
        if self.config.retention_ms >= 0 {
            let cutoff = now_ms - self.config.retention_ms;
            let expired = |s: &LogSegment| !s.is_empty() && s.max_timestamp() < cutoff;
            if self.segments.iter().all(expired) {
                self.roll()?;
            }
            for (i, seg) in self.segments.iter().enumerate() {
                let is_active = i + 1 == self.segments.len();
                if is_active || !expired(seg) {
                    break;
                }
                new_start = new_start.max(seg.next_offset());
            }
        }
        if self.config.retention_bytes >= 0 {
            let limit = self.config.retention_bytes as u64;
            let mut total = self.size_bytes();
            for (i, seg) in self.segments.iter().enumerate() {
                let is_active = i + 1 == self.segments.len();
                if is_active || total.saturating_sub(seg.size()) < limit {
                    break;
                }
                total -= seg.size();
                new_start = new_start.max(seg.next_offset());
            }
        }
        if new_start > self.log_start_offset {
            self.log_start_offset = new_start;
            write_log_start_offset(&self.dir, new_start)?;
            return self.delete_segments_below_start();
        }
        Ok(RetentionOutcome::default())
    }

    /// The base offset of the active segment (a change after an append means it rolled).
    pub fn active_base_offset(&self) -> i64 {
        self.active().base_offset()
    }

    /// Index of the segment that holds `offset` (the first one if it is below them all).
    fn segment_index_of(&self, offset: i64) -> usize {
        self.segments
            .partition_point(|s| s.base_offset() <= offset)
            .saturating_sub(1)
    }

    /// Walks every batch header from the batch holding `from` to the log end, with the control
    /// record of each control batch (producer-state replay after a snapshot).
    pub fn scan_from(
        &self,
        from: i64,
        on_batch: &mut dyn FnMut(&BatchHeader, Option<ControlRecord>),
    ) -> Result<()> {
        let first = self.segment_index_of(from);
        for seg in &self.segments[first..] {
            seg.scan(from, on_batch)?;
        }
        Ok(())
    }

    /// Enters an aborted transaction in the index of the segment holding its ABORT marker.
    pub fn add_aborted_txn(&mut self, entry: AbortedTxnEntry) -> Result<()> {
        let i = self.segment_index_of(entry.last_offset);
        self.segments[i].txn_index_mut().append(entry)?;
        Ok(())
    }

    /// Drops the index entries of markers at or after `offset` in every segment (recovery
    /// re-enters them while it replays the log from there).
    pub fn truncate_txn_indexes_from(&mut self, offset: i64) -> Result<()> {
        for seg in &mut self.segments {
            if seg.next_offset() > offset || seg.base_offset() >= offset {
                seg.txn_index_mut().truncate_from(offset)?;
            }
        }
        Ok(())
    }

    /// Kafka's `LocalLog.collectAbortedTransactions`: the aborted transactions overlapping
    /// `[from, upper_bound)`, walking the transaction indexes from the segment holding `from`
    /// until an entry's last stable offset reaches the bound.
    pub fn aborted_txns(&self, from: i64, upper_bound: i64) -> Vec<AbortedTxnEntry> {
        let mut out = Vec::new();
        if upper_bound <= from {
            return out;
        }
        let first = self.segment_index_of(from);
        for seg in &self.segments[first..] {
            if seg.txn_index().collect(from, upper_bound, &mut out) {
                break;
            }
        }
        out
    }

    /// Removes the whole partition directory (topic deletion).
    pub fn delete(self) -> Result<()> {
        remove_log_dir(&self.dir)
    }
}

fn validate_config(config: &LogConfig) -> Result<()> {
    if config.segment_bytes < 14 || config.segment_bytes > i32::MAX as u64 {
        return Err(StorageError::InvalidConfig(format!(
            "segment.bytes {} must be between 14 and {}",
            config.segment_bytes,
            i32::MAX
        )));
    }
    if config.segment_ms < 1 {
        return Err(StorageError::InvalidConfig(
            "segment.ms must be at least 1".into(),
        ));
    }
    Ok(())
}

fn read_log_start_offset(dir: &Path) -> Result<Option<i64>> {
    match fs::read_to_string(dir.join(LOG_START_OFFSET_FILE)) {
        Ok(text) => Ok(text.trim().parse::<i64>().ok()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Written by rename so a crash leaves the old or the new value, never a torn one.
fn write_log_start_offset(dir: &Path, offset: i64) -> Result<()> {
    let tmp = dir.join(format!("{LOG_START_OFFSET_FILE}.tmp"));
    fs::write(&tmp, offset.to_string())?;
    fs::File::open(&tmp)?.sync_all()?;
    fs::rename(&tmp, dir.join(LOG_START_OFFSET_FILE))?;
    durability::fsync_dir(dir)?;
    Ok(())
}

/// Removes a log's directory and makes the removal durable (topic deletion). A directory
/// already gone is fine.
pub fn remove_log_dir(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    match durability::fsync_parent(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}
