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
use crate::leader_epoch::{self, Checkpoint, LeaderEpochCache};
use crate::producer_snapshot;
use crate::records::{self, BatchHeader, ControlRecord, ProducedBatch, Stamp, BATCH_HEADER_LEN};
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
    /// Which leader epoch started at which offset (`leader-epoch-checkpoint`).
    pub(crate) epoch_cache: LeaderEpochCache,
    /// Truncations since open: a cleaning planned before one is abandoned at install (Kafka
    /// aborts the partition's cleaning before it truncates).
    pub(crate) truncations: u64,
}

/// One batch a follower appended ([`Log::append_as_follower`]): its header, and its control
/// record when it is a transaction marker, so the broker can rebuild producer and transaction
/// state exactly as the leader did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerBatch {
    pub header: BatchHeader,
    pub control: Option<ControlRecord>,
}

/// What [`Log::append_as_follower`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowerAppend {
    /// Base offset of the first batch.
    pub first_offset: i64,
    /// Last offset of the last batch.
    pub last_offset: i64,
    /// The log end offset after the append (`last_offset + 1`).
    pub log_end_offset: i64,
    /// Every batch appended, in order.
    pub batches: Vec<FollowerBatch>,
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
        // (epoch, first offset) of each epoch change among the active segment's batches.
        let mut active_epochs: Vec<(i32, i64)> = Vec::new();
        for (i, base) in bases.iter().enumerate() {
            let mode = match (i == last, clean) {
                (true, true) => OpenMode::Clean,
                (true, false) => OpenMode::Recover,
                (false, _) => OpenMode::Older,
            };
            let mut ignore = |_: &BatchHeader| {};
            let mut observe_active = |h: &BatchHeader| {
                if h.partition_leader_epoch >= 0
                    && active_epochs
                        .last()
                        .is_none_or(|&(e, _)| e != h.partition_leader_epoch)
                {
                    active_epochs.push((h.partition_leader_epoch, h.base_offset));
                }
                on_batch(h);
            };
            let observer: &mut dyn FnMut(&BatchHeader) = if i == last {
                &mut observe_active
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
        let cleaner = crate::cleaner::CleanerState::load(dir, log_start_offset, end);
        let mut log = Log {
            dir: dir.to_path_buf(),
            config,
            segments,
            log_start_offset,
            cleaner,
            epoch_cache: LeaderEpochCache::new(),
            truncations: 0,
        };
        log.load_epoch_cache(&active_epochs)?;
        log.opened_at(now_ms);
        Ok(log)
    }

    /// Loads the leader-epoch checkpoint, or rebuilds it from the batch headers when it is
    /// missing or unreadable; then makes it agree with the recovered log: the epochs seen in
    /// the active segment (recovery read its headers anyway) are assigned, and the cache is
    /// truncated to the log end and the log start. Written back only if that changed it.
    fn load_epoch_cache(&mut self, active_epochs: &[(i32, i64)]) -> Result<()> {
        let (mut cache, stored) = match leader_epoch::read_checkpoint(&self.dir)? {
            Checkpoint::Loaded(cache) => (cache.clone(), Some(cache)),
            Checkpoint::Missing => (self.rebuild_epoch_cache()?, None),
            Checkpoint::Unreadable => {
                tracing::warn!(
                    dir = %self.dir.display(),
                    "leader-epoch-checkpoint is unreadable: rebuilding it from the batch headers"
                );
                (self.rebuild_epoch_cache()?, None)
            }
        };
        for &(epoch, offset) in active_epochs {
            // The active segment's batches are the truth; the checkpoint was written before
            // them, so this normally changes nothing.
            if cache.epoch_for_offset(offset) != Some(epoch) {
                cache.assign(epoch, offset);
            }
        }
        // Kafka's order (`LogLoader`): an entry left at the log start by `truncate_from_start`
        // goes if no batch is there, as does any entry at or past the log end.
        cache.truncate_from_start(self.log_start_offset);
        cache.truncate_from_end(self.log_end_offset());
        let changed = match &stored {
            Some(old) => *old != cache,
            None => !cache.is_empty(),
        };
        self.epoch_cache = cache;
        if changed {
            leader_epoch::write_checkpoint(&self.dir, &self.epoch_cache)?;
        }
        Ok(())
    }

    /// Rebuilds the cache from batch headers (`PartitionLeaderEpoch`), never decoding records.
    /// Epochs never decrease along a log, so a segment whose first and last batches carry the
    /// same epoch holds only that one: it costs two header reads. Only a segment in which the
    /// epoch changes (one per leader change at most) is walked header by header.
    fn rebuild_epoch_cache(&self) -> Result<LeaderEpochCache> {
        let mut cache = LeaderEpochCache::new();
        for seg in &self.segments {
            let (Some(first), Some(last)) = (seg.first_header()?, seg.last_header()?) else {
                continue;
            };
            if first.partition_leader_epoch == last.partition_leader_epoch {
                if first.partition_leader_epoch >= 0
                    && cache.latest_epoch() != Some(first.partition_leader_epoch)
                {
                    cache.assign(first.partition_leader_epoch, first.base_offset);
                }
                continue;
            }
            seg.for_each_header(&mut |h| {
                if h.partition_leader_epoch >= 0
                    && cache.latest_epoch() != Some(h.partition_leader_epoch)
                {
                    cache.assign(h.partition_leader_epoch, h.base_offset);
                }
            })?;
        }
        Ok(cache)
    }

    /// The partition's leader-epoch cache.
    pub fn leader_epoch_cache(&self) -> &LeaderEpochCache {
        &self.epoch_cache
    }

    /// Kafka's `endOffsetForEpoch` (OffsetForLeaderEpoch, a leader's `DivergingEpoch` check):
    /// the largest epoch at or below `requested_epoch` and its end offset, `(-1, -1)` when
    /// undefined. See [`LeaderEpochCache::end_offset_for`].
    pub fn end_offset_for(&self, requested_epoch: i32) -> (i32, i64) {
        self.epoch_cache
            .end_offset_for(requested_epoch, self.log_end_offset())
    }

    /// The latest leader epoch in the cache, if any.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.epoch_cache.latest_epoch()
    }

    /// A replica becoming leader in `epoch` records that the epoch starts at its log end
    /// offset, before it serves anything (Kafka's `Partition.makeLeader`), so followers that
    /// fetch before the first append in the epoch are still answered correctly. Persisted.
    /// An epoch below the latest one is refused (epochs are never reused; a stale leader must
    /// not rewrite the history of a newer one).
    pub fn assign_leader_epoch(&mut self, epoch: i32) -> Result<bool> {
        self.check_epoch_not_stale(epoch)?;
        let leo = self.log_end_offset();
        if self.epoch_cache.assign(epoch, leo) {
            leader_epoch::write_checkpoint(&self.dir, &self.epoch_cache)?;
            return Ok(true);
        }
        Ok(false)
    }

    fn check_epoch_not_stale(&self, epoch: i32) -> Result<()> {
        match self.epoch_cache.latest_epoch() {
            Some(latest) if epoch >= 0 && epoch < latest => Err(StorageError::InvalidRecord(
                format!("leader epoch {epoch} is older than the log's latest epoch {latest}"),
            )),
            _ => Ok(()),
        }
    }

    /// Persists the cache after a change; on a write error the in-memory cache is still the
    /// truth (the next change or the next open rewrites the file; open truncates it to the log).
    fn persist_epoch_cache(&self) -> Result<()> {
        Ok(leader_epoch::write_checkpoint(
            &self.dir,
            &self.epoch_cache,
        )?)
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
        self.check_epoch_not_stale(leader_epoch)?;
        if self.should_roll(total, next - 1, now_ms) {
            self.roll()?;
        }
        // The epoch is checkpointed before the data it covers is written: the file never
        // misses an epoch the log holds (open truncates an entry past the log end).
        if self.epoch_cache.assign(leader_epoch, first_offset) {
            self.persist_epoch_cache()?;
        }
        if let Err(e) = self.active_mut().append(&headers, &bodies, now_ms) {
            self.epoch_cache.truncate_from_end(self.log_end_offset());
            return Err(e.into());
        }
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
        self.roll_to(base)
    }

    /// [`Log::roll`] with the new segment based at `base` (at least the log end offset; a
    /// follower rolls at a batch's base offset when a compacted gap follows the log end).
    fn roll_to(&mut self, base: i64) -> Result<()> {
        if self.active().is_empty() && self.active().base_offset() == base {
            return Ok(());
        }
        if self.active().is_empty() {
            // An empty active segment below `base` is replaced rather than left behind.
            let old = self.segments.remove(self.segments.len() - 1);
            old.delete_files()?;
            let seg = LogSegment::create(&self.dir, base, self.config.index_interval_bytes)?;
            self.segments.push(seg);
            if self.segments.len() == 1 && self.log_start_offset < base {
                // Nothing lies below the only segment any more (`open` would say the same).
                self.log_start_offset = base;
            }
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
            self.truncate_epoch_cache_from_start()?;
            self.delete_segments_below_start()?;
        }
        Ok(self.log_start_offset)
    }

    fn truncate_epoch_cache_from_start(&mut self) -> Result<()> {
        if self.epoch_cache.truncate_from_start(self.log_start_offset) {
            self.persist_epoch_cache()?;
        }
        Ok(())
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
    ///
    /// Only segments that end at or below `high_watermark` may go (Kafka's
    /// `UnifiedLog.deletableSegments`: a segment's upper bound, the next segment's base
    /// offset, must not pass the HW), so retention never removes a record that is not yet
    /// committed: on a replicated leader followers may still need it, on a follower the leader
    /// may still hold it. A single node passes its log end.
    pub fn apply_retention(
        &mut self,
        now_ms: i64,
        high_watermark: i64,
    ) -> Result<RetentionOutcome> {
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
                if is_active || !expired(seg) || seg.next_offset() > high_watermark {
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
                if is_active
                    || total.saturating_sub(seg.size()) < limit
                    || seg.next_offset() > high_watermark
                {
                    break;
                }
                total -= seg.size();
                new_start = new_start.max(seg.next_offset());
            }
        }
        if new_start > self.log_start_offset {
            self.log_start_offset = new_start;
            write_log_start_offset(&self.dir, new_start)?;
            self.truncate_epoch_cache_from_start()?;
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

/// Replication: what a follower does to its log (Kafka's `UnifiedLog.appendAsFollower`,
/// `truncateTo`, `truncateFullyAndStartAt`).
///
/// Crash safety. Each operation changes files in an order such that a `kill -9` (or power
/// loss) at any point leaves a valid log that [`Log::open`] recovers: always a prefix of the
/// log before the operation, or the intended result.
/// - `truncate_to`: producer snapshots past the new end are removed first (a missing snapshot
///   only means a longer replay); then the segments after the cut go one at a time from the
///   last, each removal made durable before the next (so a crash leaves a prefix of segments,
///   never a hole); then the segment holding the cut is cut (`set_len`, fsync); only then is
///   the epoch checkpoint rewritten. A crash before that leaves a checkpoint with entries past
///   the log end, which `open` truncates. The cut segment becomes the last one, and the last
///   segment's indexes are always rebuilt by `open` (its stale index files are never trusted).
/// - `truncate_fully_and_start_at`: snapshots go, then every segment from the last to the
///   first (a crash leaves a prefix), then the `log-start-offset` file is written, then the new
///   empty segment is created, then the epoch checkpoint is cleared. A crash after the last
///   segment is gone and before the new one exists leaves a directory with no segment: `open`
///   creates an empty one at the stored log start, a valid empty log.
/// - `append_as_follower`: epochs are checkpointed before the batches are written (as a
///   leader's append); a torn write is cut by recovery and the checkpoint truncated to the log.
impl Log {
    /// Kafka's `UnifiedLog.appendAsFollower`: appends the leader's batches exactly as the
    /// leader stored them (offsets, leader epochs and CRCs already set; nothing is restamped).
    ///
    /// Checks, each failing the whole append before anything is written:
    /// - framing: every batch whole (a trailing partial batch is an error: our leader serves
    ///   whole batches only), batch length at least a header, magic 2
    ///   (UNSUPPORTED_FOR_MESSAGE_FORMAT otherwise), CRC (CORRUPT_MESSAGE);
    /// - offsets: the first batch's base offset is at or after the log end offset, and each
    ///   batch starts after the previous one ends (INVALID_RECORD otherwise; a mismatch is
    ///   never silently fixed). A *forward gap* is accepted, as Kafka does: compaction removes
    ///   whole batches, so a compacted leader's log has gaps a follower must copy;
    /// - epochs: never decreasing along the batches and never below the log's latest epoch
    ///   (a follower that truncated correctly cannot see that; INVALID_RECORD).
    ///
    /// Epochs new to the cache are assigned at their first batch's base offset and
    /// checkpointed before the data is written. Segments roll as for a leader's append
    /// (`segment.bytes`, `segment.ms`, 32-bit relative offsets), between batches.
    pub fn append_as_follower(&mut self, buf: &[u8], now_ms: i64) -> Result<FollowerAppend> {
        let leo = self.log_end_offset();
        let mut batches: Vec<(usize, FollowerBatch)> = Vec::new();
        let mut position = 0usize;
        // An empty log whose end falls inside the leader's first batch (the leader's log start,
        // moved by DeleteRecords, is not batch aligned) restarts at that batch's base offset,
        // keeping its log start (Kafka's `Partition.appendRecordsToFollowerOrFutureReplica`).
        let rebase = match BatchHeader::parse(buf) {
            Some(h)
                if self.size_bytes() == 0
                    && self.segments.len() == 1
                    && h.base_offset >= 0
                    && h.base_offset < leo
                    && h.last_offset() >= leo =>
            {
                Some(h.base_offset)
            }
            _ => None,
        };
        let mut expected_min = rebase.unwrap_or(leo);
        let mut min_epoch = self.epoch_cache.latest_epoch().unwrap_or(-1);
        while position < buf.len() {
            let rest = buf.get(position..).unwrap_or(&[]);
            let Some(header) = BatchHeader::parse(rest) else {
                return Err(StorageError::CorruptMessage(format!(
                    "{} trailing bytes at position {position} are too few for a batch header",
                    rest.len()
                )));
            };
            if header.magic != 2 {
                return Err(StorageError::UnsupportedMessageFormat(format!(
                    "replicated batch at position {position} has magic {}; only magic 2 is supported",
                    header.magic
                )));
            }
            if !header.covers_header() {
                return Err(StorageError::CorruptMessage(format!(
                    "replicated batch length {} is shorter than a batch header",
                    header.batch_length
                )));
            }
            let len = header.total_len();
            let Some(batch) = rest.get(..len) else {
                return Err(StorageError::CorruptMessage(format!(
                    "replicated batch at position {position} claims {len} bytes but only {} remain",
                    rest.len()
                )));
            };
            if !records::crc_matches(batch) {
                return Err(StorageError::CorruptMessage(format!(
                    "replicated batch at offset {} fails its CRC",
                    header.base_offset
                )));
            }
            if header.last_offset_delta < 0 || header.checked_next_offset().is_none() {
                return Err(StorageError::InvalidRecord(format!(
                    "replicated batch at offset {} has last offset delta {}",
                    header.base_offset, header.last_offset_delta
                )));
            }
            if header.base_offset < expected_min {
                return Err(StorageError::InvalidRecord(format!(
                    "replicated batch at offset {} does not follow offset {} (log end offset {leo})",
                    header.base_offset,
                    expected_min.saturating_sub(1)
                )));
            }
            if header.partition_leader_epoch >= 0 {
                if header.partition_leader_epoch < min_epoch {
                    return Err(StorageError::InvalidRecord(format!(
                        "replicated batch at offset {} has leader epoch {} below epoch {min_epoch} already in the log",
                        header.base_offset, header.partition_leader_epoch
                    )));
                }
                min_epoch = header.partition_leader_epoch;
            }
            expected_min = header.next_offset();
            let control = if header.is_control() {
                records::parse_control_record(batch)
            } else {
                None
            };
            batches.push((position, FollowerBatch { header, control }));
            position += len;
        }
        let (Some((_, first)), Some((_, last))) = (batches.first(), batches.last()) else {
            return Err(StorageError::CorruptMessage(
                "empty replicated record set".into(),
            ));
        };
        let (first_offset, last_offset) = (first.header.base_offset, last.header.last_offset());

        let mut cache_changed = false;
        for (_, b) in &batches {
            let epoch = b.header.partition_leader_epoch;
            if epoch >= 0 && self.epoch_cache.latest_epoch() != Some(epoch) {
                cache_changed |= self.epoch_cache.assign(epoch, b.header.base_offset);
            }
        }
        if let Some(base) = rebase {
            let old = self.segments.remove(self.segments.len() - 1);
            old.delete_files()?;
            let seg = LogSegment::create(&self.dir, base, self.config.index_interval_bytes)?;
            self.segments.push(seg);
            cache_changed |= self.epoch_cache.truncate_from_start(self.log_start_offset);
        }
        if cache_changed {
            self.persist_epoch_cache()?;
        }
        if let Err(e) = self.write_follower_batches(buf, &batches, now_ms) {
            if self.epoch_cache.truncate_from_end(self.log_end_offset()) {
                let _ = self.persist_epoch_cache();
            }
            return Err(e);
        }
        Ok(FollowerAppend {
            first_offset,
            last_offset,
            log_end_offset: self.log_end_offset(),
            batches: batches.into_iter().map(|(_, b)| b).collect(),
        })
    }

    /// Writes validated batches in runs: one vectored write per run of batches that share a
    /// segment, rolling between runs when the next batch would not fit the active segment.
    fn write_follower_batches(
        &mut self,
        buf: &[u8],
        batches: &[(usize, FollowerBatch)],
        now_ms: i64,
    ) -> Result<()> {
        let mut i = 0;
        while i < batches.len() {
            let Some((_, first)) = batches.get(i) else {
                break;
            };
            let first_len = first.header.total_len() as u64;
            if self.should_roll(first_len, first.header.last_offset(), now_ms) {
                let base = first.header.base_offset.max(self.log_end_offset());
                self.roll_to(base)?;
            } else if first
                .header
                .last_offset()
                .saturating_sub(self.active().base_offset())
                > MAX_RELATIVE_OFFSET
            {
                // An empty active segment far below a compacted gap.
                self.roll_to(first.header.base_offset)?;
            }
            let active_base = self.active().base_offset();
            let mut size = self.active().size();
            let mut headers = Vec::new();
            let mut bodies = Vec::new();
            while let Some((position, b)) = batches.get(i) {
                let len = b.header.total_len();
                let fits = size.saturating_add(len as u64) <= self.config.segment_bytes
                    && b.header.last_offset().saturating_sub(active_base) <= MAX_RELATIVE_OFFSET;
                if !headers.is_empty() && !fits {
                    break;
                }
                let bytes = position
                    .checked_add(len)
                    .and_then(|end| buf.get(*position..end))
                    .ok_or_else(|| {
                        StorageError::CorruptMessage(
                            "batch positions do not match the buffer".into(),
                        )
                    })?;
                let (head, body) = bytes.split_at(BATCH_HEADER_LEN.min(bytes.len()));
                let mut header = [0u8; BATCH_HEADER_LEN];
                header[..head.len()].copy_from_slice(head);
                headers.push(header);
                bodies.push(body);
                size = size.saturating_add(len as u64);
                i += 1;
            }
            self.active_mut().append(&headers, &bodies, now_ms)?;
        }
        Ok(())
    }

    /// Kafka's `UnifiedLog.truncateTo` (a follower removing what diverged from its leader):
    /// removes the batch holding `offset` and every batch after it, and returns the new log end
    /// offset. A no-op (returning the log end) when `offset` is at or past the log end.
    ///
    /// Truncation offsets are batch boundaries in practice (an epoch's start or end offset, a
    /// high watermark, a follower's log end). Kafka cuts the segment before the batch holding a
    /// mid-batch offset but then sets its log end offset to the requested offset, which leaves
    /// it pointing past its data; here the log end is always where the data ends: the base
    /// offset of the batch holding `offset` (or, after a compacted gap, the end of the last
    /// batch kept), so the result is at most `offset` and the caller fetches from it.
    ///
    /// Below the first segment's base offset the log is emptied and restarted at `offset`
    /// ([`Log::truncate_fully_and_start_at`]), as Kafka does. Otherwise: later segments are
    /// deleted, the segment holding the cut is cut (file, offset/time/txn indexes), the epoch
    /// cache is truncated to the new end, producer snapshots past the new end are deleted (a
    /// snapshot *at* the new end still describes exactly the records kept), the cleaner's
    /// checkpoint is lowered to the new end, the log start offset is lowered to the new end if
    /// it was above it; all durable before it returns (see the crash notes on this `impl`).
    pub fn truncate_to(&mut self, offset: i64) -> Result<i64> {
        let leo = self.log_end_offset();
        if offset >= leo {
            // No data to remove, but the epoch cache may still end with an epoch this replica
            // assigned as leader and never wrote to (elected, then replaced before any
            // append). Left there, it would refuse the new leader's batches of older epochs
            // forever; Kafka's `truncateTo` drops such entries too.
            if self.epoch_cache.truncate_from_end(leo) {
                self.persist_epoch_cache()?;
            }
            return Ok(leo);
        }
        let first_base = self.segments.first().map_or(0, |s| s.base_offset());
        if offset < first_base || offset < 0 {
            self.truncate_fully_and_start_at(offset.max(0))?;
            return Ok(self.log_end_offset());
        }
        self.truncations += 1;
        let i = self.segment_index_of(offset);
        // Snapshots past the first removed batch's base go first. One at an offset in a
        // compacted gap before it is still exact: no record lies between the new end and it.
        let first_removed = match self.segments.get(i) {
            Some(seg) => seg.locate(offset)?.map_or(offset, |(_, h)| h.base_offset),
            None => offset,
        };
        producer_snapshot::remove_after(&self.dir, first_removed)?;
        while self.segments.len() > i + 1 {
            let seg = self.segments.remove(self.segments.len() - 1);
            seg.delete_files()?;
            durability::fsync_dir(&self.dir)?;
        }
        self.active_mut().truncate_to(offset)?;
        let end = self.log_end_offset();
        if self.epoch_cache.truncate_from_end(end) {
            self.persist_epoch_cache()?;
        }
        if self.cleaner.first_dirty > end {
            self.cleaner.first_dirty = end;
            crate::cleaner::write_checkpoint(&self.dir, end)?;
        }
        if self.log_start_offset > end {
            self.log_start_offset = end;
            write_log_start_offset(&self.dir, end)?;
        }
        Ok(end)
    }

    /// Kafka's `UnifiedLog.truncateFullyAndStartAt` (a follower whose fetch offset fell below
    /// the leader's log start, or a truncation below every segment): every segment, producer
    /// snapshot and epoch entry goes, and the log restarts empty at `new_offset` (log start =
    /// log end = `new_offset`). Durable before it returns (see the crash notes on this `impl`).
    pub fn truncate_fully_and_start_at(&mut self, new_offset: i64) -> Result<()> {
        if new_offset < 0 {
            return Err(StorageError::OffsetOutOfRange {
                offset: new_offset,
                log_start_offset: self.log_start_offset,
                log_end_offset: self.log_end_offset(),
            });
        }
        self.truncations += 1;
        producer_snapshot::remove_after(&self.dir, -1)?;
        while let Some(seg) = self.segments.pop() {
            seg.delete_files()?;
            durability::fsync_dir(&self.dir)?;
        }
        self.log_start_offset = new_offset;
        write_log_start_offset(&self.dir, new_offset)?;
        let seg = LogSegment::create(&self.dir, new_offset, self.config.index_interval_bytes)?;
        self.segments.push(seg);
        self.epoch_cache.clear();
        self.persist_epoch_cache()?;
        self.cleaner.first_dirty = new_offset;
        self.cleaner.earliest_horizon = None;
        crate::cleaner::write_checkpoint(&self.dir, new_offset)?;
        Ok(())
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
